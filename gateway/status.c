/*-------------------------------------------------------------------------
 *
 * gateway/status.c
 *		SQLSTATE → HTTP status: the gateway's one table.  It decides
 *		nothing of its own about the extension's errors: usage_api
 *		functions raise them as SQLSTATE 'PGRST' with the status of
 *		usage_tracking.error_codes, which is read from the error itself
 *		(as PostgREST does), and 'PTnnn' means status nnn.  The table below
 *		covers PostgreSQL's own SQLSTATEs, with PostgREST's choices; it
 *		holds none of the extension's, whose one table is error_codes (one
 *		that reached the gateway unmapped is a bug: 500).
 *
 *-------------------------------------------------------------------------
 */
#include "gateway.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sqlstate_status
{
	const char *prefix;			/* a SQLSTATE or its leading characters */
	int			status;
	const char *code;			/* "error" of the JSON body */
	int			hide_message;	/* answer a fixed message instead of PostgreSQL's */
} sqlstate_status;

/* First match wins: specific SQLSTATEs before their class. */
static const sqlstate_status sqlstate_table[] = {
	{"08", 503, "database_unavailable", 1},	/* connection exception */
	{"57P01", 503, "database_unavailable", 1},	/* admin shutdown */
	{"57P02", 503, "database_unavailable", 1},	/* crash shutdown */
	{"57P03", 503, "database_unavailable", 1},	/* cannot connect now */
	{"53", 503, "database_unavailable", 1},	/* insufficient resources */
	{"40001", 503, "serialization_failure", 0},	/* retry */
	{"40P01", 503, "deadlock_detected", 0},	/* retry */
	{"57014", 504, "query_canceled", 0},	/* statement_timeout */
	{"42501", 403, "forbidden", 0},	/* insufficient privilege */
	{"28", 403, "forbidden", 0},	/* invalid authorization */
	{"42883", 404, "undefined_function", 0},	/* wrong name or arguments */
	{"42P01", 404, "not_found", 0},	/* undefined table */
	{"25006", 405, "read_only", 0},	/* a write in a GET */
	{"23503", 409, "conflict", 0},
	{"23505", 409, "conflict", 0},
	{"54", 413, "too_large", 0},
	{"P0001", 400, "bad_request", 0},	/* RAISE EXCEPTION */
	{"22", 400, "invalid_input", 0},
	{"23", 400, "invalid_input", 0},
	{"42", 400, "bad_request", 0},
	{"", 500, "internal_error", 1},
};

static char *
xstrdup(const char *s)
{
	char	   *d = strdup(s ? s : "");

	if (d == NULL)
		abort();
	return d;
}

void
gw_error_set(gw_error *err, int status, const char *code, const char *message)
{
	gw_error_free(err);
	err->status = status;
	snprintf(err->code, sizeof(err->code), "%s", code);
	err->message = xstrdup(message);
}

void
gw_error_free(gw_error *err)
{
	free(err->message);
	free(err->headers_json);
	err->message = NULL;
	err->headers_json = NULL;
}

/* PGRST: message {"code","message","details","hint"}, detail {"status","headers"} */
typedef struct pgrst_state
{
	gw_error   *err;
	int			ok;
} pgrst_state;

static int
pgrst_message_member(const char *key, size_t keylen, json_type type,
					 const char *val, size_t vallen, void *arg)
{
	pgrst_state *st = arg;

	if (type != JSON_STRING)
		return 0;
	if (json_string_equals(key, keylen, "code"))
	{
		if (json_string_decode(val, vallen, st->err->code, sizeof(st->err->code)) >= 0)
			st->ok |= 1;
	}
	else if (json_string_equals(key, keylen, "message"))
	{
		char	   *m = malloc(vallen + 1);

		if (m && json_string_decode(val, vallen, m, vallen + 1) >= 0)
		{
			free(st->err->message);
			st->err->message = m;
			st->ok |= 2;
		}
		else
			free(m);
	}
	return 0;
}

static int
pgrst_detail_member(const char *key, size_t keylen, json_type type,
					const char *val, size_t vallen, void *arg)
{
	pgrst_state *st = arg;

	if (json_string_equals(key, keylen, "status") && type == JSON_NUMBER)
	{
		char		buf[16];

		if (vallen < sizeof(buf))
		{
			memcpy(buf, val, vallen);
			buf[vallen] = '\0';
			st->err->status = atoi(buf);
			if (st->err->status >= 100 && st->err->status <= 599)
				st->ok |= 4;
		}
	}
	else if (json_string_equals(key, keylen, "headers") && type == JSON_OBJECT)
	{
		free(st->err->headers_json);
		st->err->headers_json = malloc(vallen + 1);
		if (st->err->headers_json)
		{
			memcpy(st->err->headers_json, val, vallen);
			st->err->headers_json[vallen] = '\0';
		}
	}
	return 0;
}

void
gw_error_from_result(const PGresult *res, PGconn *conn, gw_error *err, int body_is_json)
{
	const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const sqlstate_status *row;

	if (sqlstate == NULL || (conn && PQstatus(conn) == CONNECTION_BAD))
	{
		gw_error_set(err, 503, "database_unavailable", "the database is unavailable, retry later");
		err->headers_json = xstrdup("{\"Retry-After\":\"1\"}");
		return;
	}

	if (strcmp(sqlstate, "PGRST") == 0)
	{
		const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
		pgrst_state st = {err, 0};

		gw_error_set(err, 500, "internal_error", "internal error");
		if (primary)
			json_object_members(primary, strlen(primary), pgrst_message_member, &st);
		if (detail)
			json_object_members(detail, strlen(detail), pgrst_detail_member, &st);
		if ((st.ok & 4) == 0)
			err->status = 500;
		return;
	}

	if (sqlstate[0] == 'P' && sqlstate[1] == 'T' &&
		sqlstate[2] >= '1' && sqlstate[2] <= '5' &&
		sqlstate[3] >= '0' && sqlstate[3] <= '9' &&
		sqlstate[4] >= '0' && sqlstate[4] <= '9')
	{
		gw_error_set(err, atoi(sqlstate + 2), sqlstate, primary);
		return;
	}

	/* The body is the json argument: PostgreSQL refused it before the call. */
	if (body_is_json && (strcmp(sqlstate, "22P02") == 0 || strcmp(sqlstate, "22021") == 0 ||
						 strcmp(sqlstate, "22P05") == 0))
	{
		gw_error_set(err, 400, "malformed_json", primary);
		return;
	}

	for (row = sqlstate_table;; row++)
		if (strncmp(sqlstate, row->prefix, strlen(row->prefix)) == 0)
			break;
	gw_error_set(err, row->status, row->code,
				 row->hide_message ? (row->status == 503 ? "the database is unavailable, retry later"
									  : "internal error")
				 : primary);
	if (row->status == 503)
		err->headers_json = xstrdup("{\"Retry-After\":\"1\"}");
}
