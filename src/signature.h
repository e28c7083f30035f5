/*-------------------------------------------------------------------------
 *
 * src/signature.h
 *		The X-Install-Signature header parser (backend-independent).
 *
 *-------------------------------------------------------------------------
 */
#ifndef UT_SIGNATURE_H
#define UT_SIGNATURE_H

#define UT_MAC_LEN 32

extern bool ut_parse_signature_header(const char *hdr, size_t len,
									  uint8 *mac, int64 *ts,
									  const char **ts_str, size_t *ts_len);

#endif							/* UT_SIGNATURE_H */
