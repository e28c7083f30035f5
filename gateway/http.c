/*-------------------------------------------------------------------------
 *
 * gateway/http.c
 *		Requests: body limit, routing, the JWT, one transaction per request
 *		(BEGIN; role and request.* GUCs set local; the usage_api call;
 *		COMMIT), responses, static dashboard files and the access log.
 *
 *-------------------------------------------------------------------------
 */
#include "gateway.h"
#include "http.h"
#include "jwt.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TEXT_OID 25

typedef enum route_kind
{
	ROUTE_RAW_BODY,				/* the body is the single unnamed argument (text) */
	ROUTE_ARGS,					/* named arguments: query string (GET) or JSON body keys (POST) */
	ROUTE_CSV					/* POST with JSON body keys, text/csv answer streamed */
} route_kind;

typedef struct route
{
	const char *method;
	const char *path;
	const char *function;		/* in schema usage_api */
	route_kind	kind;
	const char *alias_from;		/* a query argument renamed for the function */
	const char *alias_to;
} route;

/* The named routes of SPEC 2.1 and 2.3; each calls one usage_api function. */
static const route routes[] = {
	{"POST", "/api/usage/event", "ingest", ROUTE_RAW_BODY, NULL, NULL},
	{"GET", "/api/usage/summary", "summary", ROUTE_ARGS, NULL, NULL},
	/* limit is PostgREST's own query parameter, so the function says lim. */
	{"GET", "/api/usage/events", "events", ROUTE_ARGS, "limit", "lim"},
	{"GET", "/api/usage/installations", "installations", ROUTE_ARGS, NULL, NULL},
	{"POST", "/api/usage/export", "export", ROUTE_CSV, NULL, NULL},
	{"GET", "/api/usage/quota", "quota", ROUTE_ARGS, NULL, NULL},
};

typedef struct request
{
	double		start;
	char		method[16];
	char		path[512];
	strbuf		body;
	size_t		discarded;
	int			too_large;
	int			status;
	char		install_id[104];
} request;

static pthread_mutex_t inflight_lock = PTHREAD_MUTEX_INITIALIZER;
static int	inflight;

int
http_inflight(void)
{
	int			n;

	pthread_mutex_lock(&inflight_lock);
	n = inflight;
	pthread_mutex_unlock(&inflight_lock);
	return n;
}

/* Responses ---------------------------------------------------------------- */

/*
 * The dashboard's policy: its own script, style sheet and API only; no
 * inline script or style, no framing.  Every other answer is data and may
 * load nothing at all.
 */
#define DASHBOARD_CSP "default-src 'none'; script-src 'self'; style-src 'self'; " \
	"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; " \
	"frame-ancestors 'none'"
#define API_CSP "default-src 'none'; frame-ancestors 'none'"

static void
add_security_headers(struct MHD_Response *resp, const char *csp)
{
	MHD_add_response_header(resp, "Content-Security-Policy", csp);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
}

typedef struct header_add_state
{
	struct MHD_Response *resp;
	int			n;
} header_add_state;

static int
add_header_member(const char *key, size_t keylen, json_type type,
				  const char *val, size_t vallen, void *arg)
{
	header_add_state *st = arg;
	char		k[128],
				v[512];
	size_t		i;

	if (type != JSON_STRING ||
		json_string_decode(key, keylen, k, sizeof(k)) <= 0 ||
		json_string_decode(val, vallen, v, sizeof(v)) < 0)
		return 0;
	for (i = 0; k[i]; i++)
		if (!(isalnum((unsigned char) k[i]) || k[i] == '-'))
			return 0;
	for (i = 0; v[i]; i++)
		if ((unsigned char) v[i] < 0x20)
			return 0;
	MHD_add_response_header(st->resp, k, v);
	st->n++;
	return 0;
}

static enum MHD_Result
send_response(struct MHD_Connection *conn, request *rq, int status,
			  const char *ctype, const char *body, size_t len,
			  const char *headers_json)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, (void *) body, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", ctype);
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	add_security_headers(resp, API_CSP);
	if (headers_json)
	{
		header_add_state st = {resp, 0};

		json_object_members(headers_json, strlen(headers_json), add_header_member, &st);
	}
	if (status == 401)
		MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
	if (gw_draining)
		MHD_add_response_header(resp, "Connection", "close");
	rq->status = status;
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
send_json(struct MHD_Connection *conn, request *rq, int status, const char *json, size_t len,
		  const char *headers_json)
{
	return send_response(conn, rq, status, "application/json; charset=utf-8", json, len, headers_json);
}

static enum MHD_Result
send_error(struct MHD_Connection *conn, request *rq, int status, const char *code,
		   const char *message, const char *headers_json)
{
	strbuf		sb;
	enum MHD_Result ret;

	sb_init(&sb);
	sb_puts(&sb, "{\"success\": false, \"error\": ");
	sb_json_string(&sb, code, strlen(code));
	sb_puts(&sb, ", \"message\": ");
	sb_json_string(&sb, message ? message : "", message ? strlen(message) : 0);
	sb_puts(&sb, "}");
	if (sb.failed)
		ret = MHD_NO;
	else
		ret = send_json(conn, rq, status, sb.data, sb.len, headers_json);
	sb_free(&sb);
	return ret;
}

static enum MHD_Result
send_gw_error(struct MHD_Connection *conn, request *rq, gw_error *err)
{
	enum MHD_Result ret = send_error(conn, rq, err->status, err->code, err->message,
									 err->headers_json);

	gw_error_free(err);
	return ret;
}

/* Request context for SQL -------------------------------------------------- */

static enum MHD_Result
collect_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	strbuf	   *sb = cls;
	char		lower[256];
	size_t		i,
				n = strlen(key);

	(void) kind;
	if (n == 0 || n >= sizeof(lower))
		return MHD_YES;
	for (i = 0; i < n; i++)
		lower[i] = tolower((unsigned char) key[i]);
	lower[n] = '\0';
	/* The token is verified here and its claims passed on; never the token. */
	if (strcmp(lower, "authorization") == 0 || strcmp(lower, "cookie") == 0)
		return MHD_YES;
	if (sb->len > 1)
		sb_puts(sb, ",");
	sb_json_string(sb, lower, n);
	sb_puts(sb, ":");
	sb_json_string(sb, value ? value : "", value ? strlen(value) : 0);
	return MHD_YES;
}

static int
valid_identifier(const char *s)
{
	size_t		i;

	if (s == NULL || !(islower((unsigned char) s[0]) || s[0] == '_'))
		return 0;
	for (i = 0; s[i]; i++)
		if (!(islower((unsigned char) s[i]) || isdigit((unsigned char) s[i]) || s[i] == '_') || i >= 62)
			return 0;
	return 1;
}

/* Named arguments of a call. */
#define MAX_ARGS 32
typedef struct call_args
{
	int			n;
	char	   *names[MAX_ARGS];
	char	   *values[MAX_ARGS];	/* NULL is SQL NULL */
	int			bad;			/* 1 invalid name, 2 too many, 3 duplicate */
	const char *alias_from;
	const char *alias_to;
} call_args;

static void
args_free(call_args *a)
{
	int			i;

	for (i = 0; i < a->n; i++)
	{
		free(a->names[i]);
		free(a->values[i]);
	}
	a->n = 0;
}

static void
args_add(call_args *a, const char *name, char *value)
{
	int			i;

	if (a->alias_from && strcmp(name, a->alias_from) == 0)
		name = a->alias_to;
	if (!valid_identifier(name))
	{
		a->bad = 1;
		free(value);
		return;
	}
	for (i = 0; i < a->n; i++)
		if (strcmp(a->names[i], name) == 0)
		{
			a->bad = 3;
			free(value);
			return;
		}
	if (a->n >= MAX_ARGS)
	{
		a->bad = 2;
		free(value);
		return;
	}
	a->names[a->n] = strdup(name);
	a->values[a->n] = value;
	a->n++;
}

static enum MHD_Result
collect_query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void) kind;
	args_add(cls, key, strdup(value ? value : ""));
	return MHD_YES;
}

static int
collect_body_arg(const char *key, size_t keylen, json_type type,
				 const char *val, size_t vallen, void *arg)
{
	call_args  *a = arg;
	char		name[128];
	char	   *value = NULL;

	if (json_string_decode(key, keylen, name, sizeof(name)) <= 0)
	{
		a->bad = 1;
		return 0;
	}
	if (type == JSON_STRING)
	{
		value = malloc(vallen + 1);
		if (value && json_string_decode(val, vallen, value, vallen + 1) < 0)
		{
			free(value);
			a->bad = 1;
			return 0;
		}
	}
	else if (type != JSON_NULL)
	{
		value = malloc(vallen + 1);
		if (value)
		{
			memcpy(value, val, vallen);
			value[vallen] = '\0';
		}
	}
	args_add(a, name, value);
	return 0;
}

/* {uuid-v4}_{12 lowercase hex}, the shape the database requires. */
static int
install_id_shaped(const char *s)
{
	static const char pattern[] = "xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx_xxxxxxxxxxxx";
	size_t		i;

	for (i = 0; pattern[i]; i++)
	{
		char		c = s[i];

		if (pattern[i] == 'x' ? !(isdigit((unsigned char) c) || (c >= 'a' && c <= 'f')) :
			pattern[i] == 'V' ? !(c == '8' || c == '9' || c == 'a' || c == 'b') :
			c != pattern[i])
			return 0;
	}
	return s[i] == '\0';
}

/*
 * For the access log: install_id of the body or the query.  It is logged
 * only when the database accepted the request that named it (a 2xx answer)
 * and it has the shape of an install_id: never a secret a site sent by
 * mistake, never a value that could forge a field.
 */
static int
find_install_member(const char *key, size_t keylen, json_type type,
					const char *val, size_t vallen, void *arg)
{
	request    *rq = arg;

	if (type == JSON_STRING && json_string_equals(key, keylen, "install_id"))
	{
		if (json_string_decode(val, vallen, rq->install_id, sizeof(rq->install_id)) < 0)
			rq->install_id[0] = '\0';
		return 1;
	}
	return 0;
}

static void
note_install_id(request *rq, struct MHD_Connection *conn)
{
	const char *q = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "install_id");

	if (q && strlen(q) < sizeof(rq->install_id))
		strcpy(rq->install_id, q);
	else if (rq->body.len > 0 && rq->body.data[0] == '{')
		json_object_members(rq->body.data, rq->body.len, find_install_member, rq);
	if (!install_id_shaped(rq->install_id))
		rq->install_id[0] = '\0';
}

/* Calls ------------------------------------------------------------------- */

static const char CONTEXT_SQL[] =
"SELECT pg_catalog.set_config('role', $1, true), "
"pg_catalog.set_config('request.headers', $2, true), "
"pg_catalog.set_config('request.jwt.claims', $3, true), "
"pg_catalog.set_config('request.method', $4, true), "
"pg_catalog.set_config('request.path', $5, true)";

static const char LOOKUP_SQL[] =
"SELECT bool_or(p.proretset), "
"bool_or(p.pronargs = 1 AND coalesce(p.proargnames[1], '') = '' "
"AND p.proargtypes[0] IN ('json'::regtype, 'jsonb'::regtype, 'text'::regtype)) "
"FROM pg_catalog.pg_proc p "
"WHERE p.pronamespace = 'usage_api'::regnamespace AND p.proname = $1";

typedef struct call
{
	const char *function;
	route_kind	kind;
	int			lookup;			/* resolve raw-body and set-returning from pg_proc */
	int			read_only;
	int			body_not_object;	/* a POST body that is not a JSON object */
	call_args	args;
} call;

/*
 * The settings a request runs with: the role claim, the request headers as
 * a JSON object, the JWT claims, the method and the path (in the order of
 * the set_config calls).  headers must be initialised by the caller.
 */
static void
request_context(struct MHD_Connection *conn, const request *rq, const jwt_claims *claims,
				strbuf *headers, const char *ctx_values[5])
{
	sb_puts(headers, "{");
	MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, headers);
	sb_puts(headers, "}");
	ctx_values[0] = claims->role;
	ctx_values[1] = headers->data;
	ctx_values[2] = claims->payload;
	ctx_values[3] = rq->method;
	ctx_values[4] = rq->path;
}

/* Build "SELECT … FROM usage_api.f(a => $1, …) _r". */
static void
build_call_sql(strbuf *sql, const call *c, int retset, int raw)
{
	int			i;

	if (raw)
	{
		sb_printf(sql, "SELECT pg_catalog.to_json(_r)::text FROM usage_api.\"%s\"($1) AS _r", c->function);
		return;
	}
	if (retset)
		sb_puts(sql, "SELECT coalesce(pg_catalog.json_agg(_r), '[]')::text FROM usage_api.");
	else
		sb_puts(sql, "SELECT pg_catalog.to_json(_r)::text FROM usage_api.");
	sb_printf(sql, "\"%s\"(", c->function);
	for (i = 0; i < c->args.n; i++)
		sb_printf(sql, "%s\"%s\" => $%d", i ? ", " : "", c->args.names[i], i + 1);
	sb_puts(sql, ") AS _r");
}

static enum MHD_Result
run_call(struct MHD_Connection *conn, request *rq, call *c, const jwt_claims *claims)
{
	strbuf		headers,
				sql;
	gw_conn    *gc = NULL;
	gw_error	err = {0};
	enum MHD_Result ret;
	const char *ctx_values[5];
	db_stmt		stmts[4];
	int			attempt,
				rc = 0,
				failed,
				retset = 0,
				raw = (c->kind == ROUTE_RAW_BODY);
	Oid			raw_type = TEXT_OID;	/* usage_api.ingest(text): the body is parsed once */
	int			raw_format = 1;
	int			raw_len = (int) rq->body.len;
	const char *raw_value = rq->body.data ? rq->body.data : "";

	sb_init(&headers);
	sb_init(&sql);
	request_context(conn, rq, claims, &headers, ctx_values);

	for (attempt = 0; attempt < 2; attempt++)
	{
		int			n = 0;

		gc = db_acquire(GW_ACQUIRE_TIMEOUT_MS);
		if (gc == NULL)
		{
			gw_error_set(&err, 503, "database_unavailable", "no database connection is free, retry later");
			err.headers_json = strdup("{\"Retry-After\":\"1\"}");
			goto fail;
		}
		if (db_ensure(gc) != 0)
		{
			gw_error_set(&err, 503, "database_unavailable", "the database is unavailable, retry later");
			err.headers_json = strdup("{\"Retry-After\":\"1\"}");
			goto fail;
		}
		memset(stmts, 0, sizeof(stmts));
		stmts[n++].sql = c->read_only ? "BEGIN READ ONLY" : "BEGIN";
		stmts[n].sql = CONTEXT_SQL;
		stmts[n].nparams = 5;
		stmts[n++].values = ctx_values;
		if (c->lookup)
		{
			stmts[n].sql = LOOKUP_SQL;
			stmts[n].nparams = 1;
			stmts[n++].values = &c->function;
		}
		else
		{
			sql.len = 0;
			build_call_sql(&sql, c, 0, raw);
			stmts[n].sql = sql.data;
			if (raw)
			{
				stmts[n].nparams = 1;
				stmts[n].types = &raw_type;
				stmts[n].values = &raw_value;
				stmts[n].lengths = &raw_len;
				stmts[n].formats = &raw_format;
			}
			else
			{
				stmts[n].nparams = c->args.n;
				stmts[n].values = (const char *const *) c->args.values;
			}
			n++;
			stmts[n++].sql = "COMMIT";
		}
		rc = db_pipeline(gc, stmts, n, &failed);
		if (rc == -1 && attempt == 0)
		{
			/* The connection died before anything ran: reconnect once. */
			db_clear(stmts, n);
			db_mark_broken(gc);
			db_release(gc);
			gc = NULL;
			continue;
		}
		if (rc < 0)
		{
			db_clear(stmts, n);
			db_mark_broken(gc);
			gw_error_set(&err, 503, "database_unavailable", "the database connection was lost, retry later");
			err.headers_json = strdup("{\"Retry-After\":\"1\"}");
			goto fail;
		}
		if (rc == 1)
		{
			gw_error_from_result(stmts[failed].result, db_pgconn(gc), &err, raw && failed == 2);
			db_clear(stmts, n);
			goto fail;
		}
		if (c->lookup)
		{
			PGresult   *lr = stmts[2].result;
			db_stmt		second[2];

			if (PQntuples(lr) != 1 || PQgetisnull(lr, 0, 0))
			{
				db_clear(stmts, n);
				gw_error_set(&err, 404, "not_found", "no such function");
				goto fail;
			}
			retset = PQgetvalue(lr, 0, 0)[0] == 't';
			raw = PQgetvalue(lr, 0, 1)[0] == 't' && strcmp(rq->method, "POST") == 0;
			db_clear(stmts, n);
			memset(second, 0, sizeof(second));
			sql.len = 0;
			build_call_sql(&sql, c, retset, raw);
			second[0].sql = sql.data;
			if (raw)
			{
				raw_type = 0;	/* json, jsonb or text: let PostgreSQL resolve */
				raw_format = 0;
				second[0].nparams = 1;
				second[0].values = &raw_value;
			}
			else
			{
				second[0].nparams = c->args.n;
				second[0].values = (const char *const *) c->args.values;
			}
			second[1].sql = "COMMIT";
			if (raw && memchr(raw_value, '\0', rq->body.len) != NULL)
			{
				gw_error_set(&err, 400, "invalid_input", "the body holds a NUL byte");
				goto fail;
			}
			if (!raw && c->body_not_object)
			{
				gw_error_set(&err, 400, "malformed_json", "the body must be a JSON object");
				goto fail;
			}
			if (!raw && c->args.bad)
			{
				gw_error_set(&err, 400, "invalid_input",
							 "arguments must be distinct lower-case identifiers, at most 32");
				goto fail;
			}
			rc = db_pipeline(gc, second, 2, &failed);
			if (rc < 0)
			{
				db_clear(second, 2);
				db_mark_broken(gc);
				gw_error_set(&err, 503, "database_unavailable", "the database connection was lost, retry later");
				err.headers_json = strdup("{\"Retry-After\":\"1\"}");
				goto fail;
			}
			if (rc == 1)
			{
				gw_error_from_result(second[failed].result, db_pgconn(gc), &err, raw && failed == 0);
				db_clear(second, 2);
				goto fail;
			}
			stmts[2].result = second[0].result;
			second[0].result = NULL;
			db_clear(second, 2);
			n = 3;
		}
		{
			PGresult   *res = stmts[2].result;
			const char *value = (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) ? PQgetvalue(res, 0, 0) : "null";

			ret = send_json(conn, rq, 200, value, strlen(value), NULL);
		}
		db_clear(stmts, 4);
		db_release(gc);
		sb_free(&headers);
		sb_free(&sql);
		return ret;
	}
	gw_error_set(&err, 503, "database_unavailable", "the database is unavailable, retry later");
	err.headers_json = strdup("{\"Retry-After\":\"1\"}");

fail:
	if (gc)
	{
		db_rollback_if_needed(gc);
		db_release(gc);
	}
	sb_free(&headers);
	sb_free(&sql);
	/* A named route with an argument the function does not take. */
	if (!c->lookup && strcmp(err.code, "undefined_function") == 0)
		gw_error_set(&err, 400, "invalid_input", "unknown argument, or a required one is missing");
	return send_gw_error(conn, rq, &err);
}

/* CSV export, streamed ------------------------------------------------------ */

typedef struct csv_stream
{
	gw_conn    *gc;
	strbuf		buf;
	size_t		off;
	int			state;			/* 0 rows pending, 1 finished and committed, 2 failed */
	int			slot;			/* its entry in export_slots */
	double		start;
	uint64_t	sent;
	int			client_fd;		/* the client's socket, to abort it */
} csv_stream;

/*
 * Exports streaming or waiting for a connection, by account: one account
 * may run USAGE_EXPORTS_PER_ACCOUNT at once (an admin's all-tenant export
 * counts under the account ""), so one tenant's slow readers cannot hold
 * every export connection.
 */
static pthread_mutex_t export_lock = PTHREAD_MUTEX_INITIALIZER;
static char export_slots[GW_EXPORT_SLOTS][sizeof(((jwt_claims *) 0)->account_id)];
static int	export_slot_used[GW_EXPORT_SLOTS];

/* A slot for account, or -1 (*full: every slot is taken) over its cap. */
static int
export_slot_take(const char *account, int *full)
{
	int			i,
				mine = 0,
				free_slot = -1;

	*full = 0;
	pthread_mutex_lock(&export_lock);
	for (i = 0; i < GW_EXPORT_SLOTS; i++)
	{
		if (!export_slot_used[i])
		{
			if (free_slot < 0)
				free_slot = i;
		}
		else if (strcmp(export_slots[i], account) == 0)
			mine++;
	}
	if (mine >= gw_cfg.exports_per_account || free_slot < 0)
	{
		*full = free_slot < 0;
		free_slot = -1;
	}
	else
	{
		export_slot_used[free_slot] = 1;
		snprintf(export_slots[free_slot], sizeof(export_slots[free_slot]), "%s", account);
	}
	pthread_mutex_unlock(&export_lock);
	return free_slot;
}

static void
export_slot_give(int slot)
{
	if (slot < 0)
		return;
	pthread_mutex_lock(&export_lock);
	export_slot_used[slot] = 0;
	pthread_mutex_unlock(&export_lock);
}

/*
 * Whether an export has overstayed: past USAGE_EXPORT_TIMEOUT, or, after
 * GW_EXPORT_RATE_GRACE_S, averaging less than USAGE_EXPORT_MIN_RATE bytes
 * a second.  A client that reads slowly keeps its connection busy, so
 * MHD's idle timeout never fires; this does.
 */
static int
export_overdue(const csv_stream *cs)
{
	double		elapsed = gw_now() - cs->start;

	if (elapsed > gw_cfg.export_timeout_s)
		return 1;
	return elapsed > GW_EXPORT_RATE_GRACE_S &&
		(double) cs->sent < (double) gw_cfg.export_min_rate * elapsed;
}

static void
csv_take(csv_stream *cs, PGresult *res)
{
	switch (PQresultStatus(res))
	{
		case PGRES_SINGLE_TUPLE:
			if (!PQgetisnull(res, 0, 0))
			{
				sb_append(&cs->buf, PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0));
				sb_append(&cs->buf, "\n", 1);
			}
			if (cs->buf.failed)
				cs->state = 2;
			break;
		case PGRES_TUPLES_OK:
			break;				/* the end of the rows; NULL follows */
		default:
			fprintf(stderr, "usage-gateway: export failed: %s", PQresultErrorMessage(res));
			cs->state = 2;
			break;
	}
}

static ssize_t
csv_read(void *cls, uint64_t pos, char *out, size_t max)
{
	csv_stream *cs = cls;
	PGconn	   *pg = db_pgconn(cs->gc);
	size_t		avail = cs->buf.len - cs->off;

	(void) pos;
	if (cs->state == 0 && export_overdue(cs))
	{
		fprintf(stderr, "usage-gateway: export cut off after %.0f s and %llu bytes "
				"(USAGE_EXPORT_TIMEOUT %d s, USAGE_EXPORT_MIN_RATE %d B/s)\n",
				gw_now() - cs->start, (unsigned long long) cs->sent,
				gw_cfg.export_timeout_s, gw_cfg.export_min_rate);
		cs->state = 2;
		/*
		 * Reset rather than close: what the kernel still buffers for the
		 * slow reader is dropped, so it cannot keep reading for minutes.
		 */
		if (cs->client_fd >= 0)
		{
			struct linger lg = {1, 0};

			setsockopt(cs->client_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	if (avail < max && cs->state == 0)
	{
		if (cs->off > 0)
		{
			memmove(cs->buf.data, cs->buf.data + cs->off, avail);
			cs->buf.len = avail;
			cs->off = 0;
		}
		while (cs->buf.len < max && cs->state == 0)
		{
			PGresult   *res = pg ? PQgetResult(pg) : NULL;

			if (res == NULL)
			{
				res = pg ? PQexec(pg, "COMMIT") : NULL;
				cs->state = (res && PQresultStatus(res) == PGRES_COMMAND_OK) ? 1 : 2;
				if (res)
					PQclear(res);
				break;
			}
			csv_take(cs, res);
			PQclear(res);
		}
		avail = cs->buf.len - cs->off;
	}
	if (avail > 0)
	{
		size_t		n = avail < max ? avail : max;

		memcpy(out, cs->buf.data + cs->off, n);
		cs->off += n;
		cs->sent += n;
		return (ssize_t) n;
	}
	return cs->state == 1 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void
csv_free(void *cls)
{
	csv_stream *cs = cls;
	PGconn	   *pg = db_pgconn(cs->gc);

	if (cs->state != 1 && pg)
	{
		/* The client went away or the query failed: stop it, roll back. */
		PGcancel   *cancel = PQgetCancel(pg);
		PGresult   *res;
		char		errbuf[256];

		if (cancel)
		{
			PQcancel(cancel, errbuf, sizeof(errbuf));
			PQfreeCancel(cancel);
		}
		while ((res = PQgetResult(pg)) != NULL)
			PQclear(res);
	}
	db_rollback_if_needed(cs->gc);
	db_release(cs->gc);
	export_slot_give(cs->slot);
	sb_free(&cs->buf);
	free(cs);
}

static enum MHD_Result
run_csv(struct MHD_Connection *conn, request *rq, call *c, const jwt_claims *claims)
{
	strbuf		headers,
				sql;
	gw_conn    *gc = NULL;
	gw_error	err = {0};
	const char *ctx_values[5];
	db_stmt		stmts[3];
	int			attempt,
				rc,
				failed,
				i,
				slot,
				full;
	char		timeout_ms[32];
	const char *timeout_value = timeout_ms;
	PGconn	   *pg;
	PGresult   *res;
	csv_stream *cs;
	struct MHD_Response *resp;
	enum MHD_Result ret;

	slot = export_slot_take(claims->account_id, &full);
	if (slot < 0)
		return full ?
			send_error(conn, rq, 503, "too_many_exports", "too many exports are running, retry later",
					   "{\"Retry-After\":\"5\"}") :
			send_error(conn, rq, 429, "too_many_exports",
					   "this account already runs as many exports as it may, retry when one ends",
					   "{\"Retry-After\":\"5\"}");
	sb_init(&headers);
	sb_init(&sql);
	request_context(conn, rq, claims, &headers, ctx_values);
	/* The database bounds the export too: the whole query, however slowly read. */
	snprintf(timeout_ms, sizeof(timeout_ms), "%d", gw_cfg.export_timeout_s * 1000);

	for (attempt = 0;; attempt++)
	{
		gc = db_acquire_lane(GW_LANE_EXPORT, GW_ACQUIRE_TIMEOUT_MS);
		if (gc == NULL || db_ensure(gc) != 0)
		{
			gw_error_set(&err, 503, "database_unavailable", "the database is unavailable, retry later");
			err.headers_json = strdup("{\"Retry-After\":\"1\"}");
			goto fail;
		}
		memset(stmts, 0, sizeof(stmts));
		stmts[0].sql = "BEGIN READ ONLY";
		stmts[1].sql = CONTEXT_SQL;
		stmts[1].nparams = 5;
		stmts[1].values = ctx_values;
		stmts[2].sql = "SELECT pg_catalog.set_config('statement_timeout', $1, true)";
		stmts[2].nparams = 1;
		stmts[2].values = &timeout_value;
		rc = db_pipeline(gc, stmts, 3, &failed);
		if (rc == -1 && attempt == 0)
		{
			db_clear(stmts, 3);
			db_mark_broken(gc);
			db_release(gc);
			gc = NULL;
			continue;
		}
		if (rc < 0)
		{
			db_clear(stmts, 3);
			db_mark_broken(gc);
			gw_error_set(&err, 503, "database_unavailable", "the database connection was lost, retry later");
			err.headers_json = strdup("{\"Retry-After\":\"1\"}");
			goto fail;
		}
		if (rc == 1)
		{
			gw_error_from_result(stmts[failed].result, db_pgconn(gc), &err, 0);
			db_clear(stmts, 3);
			goto fail;
		}
		db_clear(stmts, 3);
		break;
	}

	sb_printf(&sql, "SELECT _r FROM usage_api.\"%s\"(", c->function);
	for (i = 0; i < c->args.n; i++)
		sb_printf(&sql, "%s\"%s\" => $%d", i ? ", " : "", c->args.names[i], i + 1);
	sb_puts(&sql, ") AS _r");
	pg = db_pgconn(gc);
	if (PQsendQueryParams(pg, sql.data, c->args.n, NULL, (const char *const *) c->args.values,
						  NULL, NULL, 0) != 1 || PQsetSingleRowMode(pg) != 1)
	{
		db_mark_broken(gc);
		gw_error_set(&err, 503, "database_unavailable", "the database connection was lost, retry later");
		goto fail;
	}
	/* Wait for the first row (or the error) before answering. */
	res = PQgetResult(pg);
	if (res == NULL || (PQresultStatus(res) != PGRES_SINGLE_TUPLE &&
						PQresultStatus(res) != PGRES_TUPLES_OK))
	{
		PGresult   *extra;

		gw_error_from_result(res, pg, &err, 0);
		if (res)
			PQclear(res);
		while ((extra = PQgetResult(pg)) != NULL)
			PQclear(extra);
		goto fail;
	}
	cs = calloc(1, sizeof(csv_stream));
	if (cs == NULL)
	{
		PQclear(res);
		gw_error_set(&err, 500, "internal_error", "out of memory");
		goto fail;
	}
	cs->gc = gc;
	cs->slot = slot;
	cs->start = gw_now();
	{
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

		cs->client_fd = ci ? (int) ci->connect_fd : -1;
		/*
		 * A small send buffer: the kernel then asks for more often, so the
		 * deadline and the rate are checked as the client reads, and little
		 * is left queued for a client that is cut off.
		 */
		if (cs->client_fd >= 0)
		{
			int			sndbuf = GW_EXPORT_SNDBUF;

			setsockopt(cs->client_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
		}
	}
	sb_init(&cs->buf);
	csv_take(cs, res);
	PQclear(res);
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, csv_read, cs, csv_free);
	if (resp == NULL)
	{
		csv_free(cs);			/* gives the slot back */
		sb_free(&headers);
		sb_free(&sql);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "text/csv; charset=utf-8");
	MHD_add_response_header(resp, "Content-Disposition", "attachment; filename=\"usage.csv\"");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	add_security_headers(resp, API_CSP);
	if (gw_draining)
		MHD_add_response_header(resp, "Connection", "close");
	rq->status = 200;
	ret = MHD_queue_response(conn, 200, resp);
	MHD_destroy_response(resp);
	sb_free(&headers);
	sb_free(&sql);
	return ret;

fail:
	if (gc)
	{
		db_rollback_if_needed(gc);
		db_release(gc);
	}
	export_slot_give(slot);
	sb_free(&headers);
	sb_free(&sql);
	if (strcmp(err.code, "undefined_function") == 0)
		gw_error_set(&err, 400, "invalid_input", "unknown argument, or a required one is missing");
	return send_gw_error(conn, rq, &err);
}

/* Health ------------------------------------------------------------------ */

static enum MHD_Result
handle_health(struct MHD_Connection *conn, request *rq)
{
	/* A connection of its own: busy API calls or exports do not fail it. */
	gw_conn    *gc = db_acquire_lane(GW_LANE_HEALTH, GW_ACQUIRE_TIMEOUT_MS);
	int			ok = 0;

	if (gc && db_ensure(gc) == 0)
	{
		PGresult   *res = PQexec(db_pgconn(gc), "SELECT 1");

		ok = res && PQresultStatus(res) == PGRES_TUPLES_OK;
		if (res)
			PQclear(res);
		if (!ok)
		{
			db_mark_broken(gc);
			/* One fresh try: the server may just have restarted. */
			if (db_ensure(gc) == 0)
			{
				res = PQexec(db_pgconn(gc), "SELECT 1");
				ok = res && PQresultStatus(res) == PGRES_TUPLES_OK;
				if (res)
					PQclear(res);
			}
		}
	}
	if (gc)
		db_release(gc);
	if (ok)
		return send_json(conn, rq, 200, "{\"status\": \"ok\"}", 16, NULL);
	return send_error(conn, rq, 503, "database_unavailable", "the database does not answer",
					  "{\"Retry-After\":\"1\"}");
}

/* Dashboard --------------------------------------------------------------- */

static const char *
content_type_for(const char *path)
{
	static const char *const types[][2] = {
		{".html", "text/html; charset=utf-8"},
		{".js", "text/javascript; charset=utf-8"},
		{".mjs", "text/javascript; charset=utf-8"},
		{".css", "text/css; charset=utf-8"},
		{".json", "application/json"},
		{".svg", "image/svg+xml"},
		{".png", "image/png"},
		{".ico", "image/x-icon"},
		{".map", "application/json"},
		{".txt", "text/plain; charset=utf-8"},
	};
	const char *dot = strrchr(path, '.');
	size_t		i;

	if (dot)
		for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (strcmp(dot, types[i][0]) == 0)
				return types[i][1];
	return "application/octet-stream";
}

/*
 * Open rel (a relative path of plain names) beneath dir, following no
 * symbolic link on the way: each directory is opened with O_NOFOLLOW from
 * the one before, so a link anywhere under dir leads nowhere.  dir itself
 * is the operator's choice and may be a link.  Returns an fd or -1.
 */
static int
open_beneath(const char *dir, char *rel)
{
	int			dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char	   *name = rel,
			   *slash;

	while (dfd >= 0 && (slash = strchr(name, '/')) != NULL)
	{
		int			next;

		*slash = '\0';
		next = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		*slash = '/';
		close(dfd);
		dfd = next;
		name = slash + 1;
	}
	if (dfd < 0)
		return -1;
	{
		int			fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

		close(dfd);
		return fd;
	}
}

static enum MHD_Result
handle_dashboard(struct MHD_Connection *conn, request *rq, const char *url)
{
	const char *rel = url + strlen("/dashboard");
	char		path[PATH_MAX];
	struct stat st;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	size_t		i;
	int			fd;

	if (*rel == '/')
		rel++;
	if (*rel == '\0')
		rel = "index.html";
	/* Plain relative names only: no "..", no hidden files, no odd bytes. */
	for (i = 0; rel[i]; i++)
		if (!(isalnum((unsigned char) rel[i]) || strchr("._-/", rel[i])))
			return send_error(conn, rq, 404, "not_found", "no such file", NULL);
	if (strstr(rel, "..") || rel[0] == '.' || strstr(rel, "/.") || strstr(rel, "//"))
		return send_error(conn, rq, 404, "not_found", "no such file", NULL);
	if (snprintf(path, sizeof(path), "%s", rel) >= (int) sizeof(path))
		return send_error(conn, rq, 404, "not_found", "no such file", NULL);
	fd = open_beneath(gw_cfg.dashboard_dir, path);
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		if (fd >= 0)
			close(fd);
		return send_error(conn, rq, 404, "not_found", "no such file", NULL);
	}
	resp = MHD_create_response_from_fd((uint64_t) st.st_size, fd);
	if (resp == NULL)
	{
		close(fd);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", content_type_for(path));
	add_security_headers(resp, DASHBOARD_CSP);
	if (gw_draining)
		MHD_add_response_header(resp, "Connection", "close");
	rq->status = 200;
	ret = MHD_queue_response(conn, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Dispatch ---------------------------------------------------------------- */

static enum MHD_Result
authenticate(struct MHD_Connection *conn, request *rq, jwt_claims *claims, int *done)
{
	const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	jwt_result	r;

	*done = 1;
	if (auth == NULL)
		return send_error(conn, rq, 401, "missing_token", "an Authorization: Bearer token is required", NULL);
	if (strncasecmp(auth, "Bearer ", 7) != 0)
		return send_error(conn, rq, 401, "invalid_token", "the Authorization header is not a Bearer token", NULL);
	auth += 7;
	while (*auth == ' ')
		auth++;
	r = jwt_verify(auth, strlen(auth), gw_cfg.jwt_secret, gw_cfg.jwt_secret_len,
				   gw_now(), gw_allowed_roles, claims);
	if (r != JWT_OK)
	{
		jwt_claims_free(claims);
		return send_error(conn, rq, r == JWT_ROLE_NOT_ALLOWED ? 403 : 401,
						  jwt_result_code(r), jwt_result_message(r), NULL);
	}
	*done = 0;
	return MHD_YES;
}

/* No body, or white space only. */
static int
body_blank(const request *rq)
{
	size_t		i;

	for (i = 0; i < rq->body.len; i++)
		if (!strchr(" \t\r\n", rq->body.data[i]) || rq->body.data[i] == '\0')
			return 0;
	return 1;
}

static enum MHD_Result
dispatch(struct MHD_Connection *conn, request *rq, const char *url, const char *method)
{
	const route *rt = NULL;
	call		c;
	jwt_claims	claims;
	enum MHD_Result ret;
	int			done,
				path_known = 0;
	size_t		i;

	if (strcmp(url, "/healthz") == 0)
	{
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			return send_error(conn, rq, 405, "method_not_allowed", "use GET", "{\"Allow\":\"GET\"}");
		return handle_health(conn, rq);
	}
	if (strcmp(url, "/dashboard") == 0 || strncmp(url, "/dashboard/", 11) == 0)
	{
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			return send_error(conn, rq, 405, "method_not_allowed", "use GET", "{\"Allow\":\"GET\"}");
		return handle_dashboard(conn, rq, url);
	}

	memset(&c, 0, sizeof(c));
	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (strcmp(url, routes[i].path) == 0)
		{
			path_known = 1;
			if (strcmp(method, routes[i].method) == 0)
			{
				rt = &routes[i];
				break;
			}
		}
	if (rt)
	{
		c.function = rt->function;
		c.kind = rt->kind;
		c.read_only = strcmp(method, "GET") == 0;
		c.args.alias_from = rt->alias_from;
		c.args.alias_to = rt->alias_to;
		if (rt->kind == ROUTE_ARGS && strcmp(method, "GET") == 0)
			MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_query_arg, &c.args);
		else if (rt->kind != ROUTE_RAW_BODY && rq->body.len > 0 &&
				 json_object_members(rq->body.data, rq->body.len, collect_body_arg, &c.args) != 0)
		{
			args_free(&c.args);
			return send_error(conn, rq, 400, "invalid_input", "the body must be a JSON object", NULL);
		}
	}
	else if (strncmp(url, "/rpc/", 5) == 0 && valid_identifier(url + 5))
	{
		if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
			return send_error(conn, rq, 405, "method_not_allowed", "use GET or POST", "{\"Allow\":\"GET, POST\"}");
		c.function = url + 5;
		c.kind = ROUTE_ARGS;
		c.lookup = 1;
		c.read_only = strcmp(method, "GET") == 0;
		if (strcmp(method, "GET") == 0)
			MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_query_arg, &c.args);
		else if (!body_blank(rq))
		{
			/*
			 * Keys become named arguments, unless the function takes the raw
			 * body; which one is known after the lookup, where a body that is
			 * not a JSON object is refused for a function taking arguments.
			 */
			if (json_object_members(rq->body.data, rq->body.len, collect_body_arg, &c.args) != 0)
			{
				args_free(&c.args);
				c.args.bad = 0;
				c.body_not_object = 1;
			}
		}
	}
	else if (path_known)
		return send_error(conn, rq, 405, "method_not_allowed", "this route does not take this method", NULL);
	else
		return send_error(conn, rq, 404, "not_found", "no such route", NULL);

	if (c.args.bad && !c.lookup)
	{
		args_free(&c.args);
		return send_error(conn, rq, 400, "invalid_input",
						  "arguments must be distinct lower-case identifiers, at most 32", NULL);
	}
	ret = authenticate(conn, rq, &claims, &done);
	if (done)
	{
		args_free(&c.args);
		return ret;
	}
	if (c.kind == ROUTE_CSV)
		ret = run_csv(conn, rq, &c, &claims);
	else
		ret = run_call(conn, rq, &c, &claims);
	if (rq->status >= 200 && rq->status < 300)
		note_install_id(rq, conn);
	jwt_claims_free(&claims);
	args_free(&c.args);
	return ret;
}

/* MHD callbacks ----------------------------------------------------------- */

typedef struct framing_count
{
	int			content_length;
	int			transfer_encoding;
} framing_count;

static enum MHD_Result
count_framing(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	framing_count *fc = cls;

	(void) kind;
	(void) value;
	if (strcasecmp(key, "Content-Length") == 0)
		fc->content_length++;
	else if (strcasecmp(key, "Transfer-Encoding") == 0)
		fc->transfer_encoding++;
	return MHD_YES;
}

/* Content-Length with Transfer-Encoding, or either of them twice. */
static int
ambiguous_framing(struct MHD_Connection *conn)
{
	framing_count fc = {0, 0};

	MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &fc);
	return fc.content_length > 1 || fc.transfer_encoding > 1 ||
		(fc.content_length > 0 && fc.transfer_encoding > 0);
}

enum MHD_Result
http_handle(void *cls, struct MHD_Connection *conn, const char *url,
			const char *method, const char *version, const char *upload_data,
			size_t *upload_data_size, void **con_cls)
{
	request    *rq = *con_cls;

	(void) cls;
	(void) version;
	if (rq == NULL)
	{
		const char *cl;

		rq = calloc(1, sizeof(request));
		if (rq == NULL)
			return MHD_NO;
		rq->start = gw_now();
		snprintf(rq->method, sizeof(rq->method), "%s", method);
		snprintf(rq->path, sizeof(rq->path), "%s", url);
		sb_init(&rq->body);
		*con_cls = rq;
		pthread_mutex_lock(&inflight_lock);
		inflight++;
		pthread_mutex_unlock(&inflight_lock);

		/*
		 * Request smuggling: a body framed two ways (Content-Length and
		 * Transfer-Encoding, or Content-Length twice) is read differently
		 * by a proxy in front and by us.  Refuse it and close, so nothing
		 * behind it on this connection is read as a request.
		 */
		if (ambiguous_framing(conn))
			return send_error(conn, rq, 400, "bad_request",
							  "the body length is ambiguous (Content-Length with Transfer-Encoding, or twice)",
							  "{\"Connection\":\"close\"}");
		/* Refuse an announced oversized body before reading any of it. */
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
		if (cl && strtoull(cl, NULL, 10) > GW_MAX_BODY)
			return send_error(conn, rq, 413, "body_too_large", "the body exceeds 1 MiB", NULL);
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		if (!rq->too_large && rq->body.len + *upload_data_size > GW_MAX_BODY)
		{
			rq->too_large = 1;
			sb_free(&rq->body);
		}
		if (rq->too_large)
		{
			rq->discarded += *upload_data_size;
			if (rq->discarded > 4 * (size_t) GW_MAX_BODY)
				return MHD_NO;
		}
		else
		{
			sb_append(&rq->body, upload_data, *upload_data_size);
			if (rq->body.failed)
				return MHD_NO;
		}
		/* A client that trickles its body is cut off. */
		if (gw_now() - rq->start > 3.0 * gw_cfg.client_timeout_s)
			return MHD_NO;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (rq->status != 0)
		return MHD_YES;			/* already answered (413 up front) */
	if (rq->too_large)
		return send_error(conn, rq, 413, "body_too_large", "the body exceeds 1 MiB", NULL);
	return dispatch(conn, rq, url, method);
}

/*
 * A value for the access log, percent-encoded: every byte but letters,
 * digits and "-._~/" becomes %XX, so a decoded path can carry no space,
 * control byte or newline into the log.  out holds 3 * strlen(in) + 1.
 */
static void
log_escape(const char *in, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t		o = 0;

	for (; *in && o + 4 <= outsz; in++)
	{
		unsigned char c = (unsigned char) *in;

		if (isalnum(c) || strchr("-._~/", c))
			out[o++] = (char) c;
		else
		{
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
}

void
http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			   enum MHD_RequestTerminationCode toe)
{
	request    *rq = *con_cls;
	time_t		t;
	struct tm	tm;
	char		when[32],
				method[3 * sizeof(rq->method)],
				path[3 * sizeof(rq->path)];
	int			status;

	(void) cls;
	(void) conn;
	if (rq == NULL)
		return;
	status = rq->status;
	if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED && status == 0)
		status = 408;
	else if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && status == 0)
		status = 499;
	/* The path is percent-decoded: encode it again so it is one field. */
	log_escape(rq->path, path, sizeof(path));
	log_escape(rq->method, method, sizeof(method));
	t = time(NULL);
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	/* One line per request; never the query string, a header or the body. */
	fprintf(stdout, "%s %s %s %d %.1fms install=%s%s\n", when, method, path, status,
			(gw_now() - rq->start) * 1000.0, rq->install_id[0] ? rq->install_id : "-",
			toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed)");
	fflush(stdout);
	sb_free(&rq->body);
	free(rq);
	*con_cls = NULL;
	pthread_mutex_lock(&inflight_lock);
	inflight--;
	pthread_mutex_unlock(&inflight_lock);
}
