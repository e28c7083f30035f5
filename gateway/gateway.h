/*-------------------------------------------------------------------------
 *
 * gateway/gateway.h
 *		Declarations shared by the files of usage-gateway, the project's
 *		thin PostgREST-compatible HTTP front (SPEC section 8).
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_GATEWAY_H
#define GATEWAY_GATEWAY_H

#include <stddef.h>
#include <libpq-fe.h>

#include "json.h"

#define GW_MAX_BODY			(1024 * 1024)	/* bytes; larger bodies get 413 */
#define GW_ACQUIRE_TIMEOUT_MS 5000	/* waiting for a pooled connection */
#define GW_RECONNECT_BACKOFF 1.0	/* seconds between reconnect attempts */
#define GW_EXPORT_RATE_GRACE_S 10	/* seconds before the minimum rate applies */
#define GW_MAX_CONNECTIONS 512	/* client connections in all */
#define GW_EXPORT_SLOTS 256		/* exports waiting or streaming at once */
#define GW_EXPORT_SNDBUF (64 * 1024)	/* socket send buffer of an export */

/* Configuration, from the environment (main.c). */
typedef struct gw_config
{
	const char *database_url;
	const unsigned char *jwt_secret;
	size_t		jwt_secret_len;
	char		listen_host[64];
	unsigned short listen_port;
	int			pool_size;
	int			client_timeout_s;	/* idle client connections are closed */
	int			client_connections;	/* connections one client address may hold */
	int			export_pool;	/* connections for CSV exports */
	int			exports_per_account;	/* concurrent exports of one account */
	int			export_timeout_s;	/* an export's deadline, and its statement_timeout */
	int			export_min_rate;	/* bytes/s an export must average after the grace */
	char		dashboard_dir[4096];
} gw_config;

extern gw_config gw_cfg;
extern volatile int gw_draining;

/* The roles a JWT may ask for (main.c). */
extern const char *const gw_allowed_roles[];

extern double gw_now(void);

/* status.c: SQLSTATE → HTTP status, the gateway's one table. */
typedef struct gw_error
{
	int			status;
	char		code[64];
	char	   *message;		/* malloc */
	char	   *headers_json;	/* malloc, a JSON object of extra headers, or NULL */
} gw_error;

/* body_is_json: the request body was the call's json argument, so a
 * refused json input is the client's malformed_json. */
extern void gw_error_from_result(const PGresult *res, PGconn *conn, gw_error *err,
								 int body_is_json);
extern void gw_error_set(gw_error *err, int status, const char *code, const char *message);
extern void gw_error_free(gw_error *err);

/* db.c: the fixed pool of libpq connections. */
typedef struct gw_conn gw_conn;

/* The lanes of the pool: each kind of request has connections of its own. */
#define GW_LANE_API		0			/* USAGE_POOL: API calls */
#define GW_LANE_EXPORT	1			/* USAGE_EXPORT_POOL: streamed CSV exports */
#define GW_LANE_HEALTH	2			/* one connection: /healthz */
#define GW_LANES		3

/* size API connections, export_size export connections, one for health. */
extern int	db_pool_init(const char *conninfo, int size, int export_size);
extern void db_pool_close(void);
extern gw_conn *db_acquire(int timeout_ms);	/* an API connection */
extern gw_conn *db_acquire_lane(int lane, int timeout_ms);
extern void db_release(gw_conn *c);
/* Connect or reconnect when needed; 0 when the connection is usable. */
extern int	db_ensure(gw_conn *c);
extern PGconn *db_pgconn(gw_conn *c);
/* Forget a connection that failed; the next user reconnects. */
extern void db_mark_broken(gw_conn *c);

/* One statement of a pipeline. */
typedef struct db_stmt
{
	const char *sql;
	int			nparams;
	const Oid  *types;
	const char *const *values;
	const int  *lengths;
	const int  *formats;
	PGresult   *result;			/* filled in by db_pipeline */
} db_stmt;

/*
 * Send the statements in one pipeline and one round trip; fill each
 * stmt->result.  Returns 0 when every statement succeeded, 1 when one
 * failed (*failed is its index; later ones were skipped), -1 when the
 * connection broke before anything ran (safe to retry on a new one),
 * -2 when it broke midway.
 */
extern int	db_pipeline(gw_conn *c, db_stmt *stmts, int n, int *failed);
extern void db_clear(db_stmt *stmts, int n);
/* Roll back whatever transaction the connection is left in. */
extern void db_rollback_if_needed(gw_conn *c);

#endif							/* GATEWAY_GATEWAY_H */
