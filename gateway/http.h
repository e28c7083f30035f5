/*-------------------------------------------------------------------------
 *
 * gateway/http.h
 *		The libmicrohttpd callbacks of usage-gateway (http.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_HTTP_H
#define GATEWAY_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <microhttpd.h>

extern enum MHD_Result http_handle(void *cls, struct MHD_Connection *conn, const char *url,
								   const char *method, const char *version,
								   const char *upload_data, size_t *upload_data_size,
								   void **con_cls);
extern void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
						   enum MHD_RequestTerminationCode toe);
/* Requests begun and not yet completed. */
extern int	http_inflight(void);

#endif							/* GATEWAY_HTTP_H */
