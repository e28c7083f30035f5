/*-------------------------------------------------------------------------
 *
 * src/http_ingest.c
 *		usage_api.ingest(json): the ingest route as PostgREST (or the
 *		project's gateway) calls it.
 *
 * The raw body arrives as the single json argument, X-Install-Signature in
 * the request.headers setting, the tenant in request.jwt.claims.  A site's
 * token must name its account; only an admin token may post for any.
 * Whole-request errors of ingest are re-raised the way PostgREST turns them
 * into HTTP answers: SQLSTATE PGRST, the message a JSON object {code,
 * message, details, hint}, the detail {"status": N, "headers": {...}} with
 * Retry-After on 429.  The status of each SQLSTATE comes from
 * usage_tracking.error_codes, the one table of SQLSTATE -> HTTP status.
 * Doing this in C, rather than in a PL/pgSQL EXCEPTION block, spares every
 * request a subtransaction.  A post over its plan's rate comes back from
 * ut_ingest() as data, so its Retry-After is the number itself.
 * usage_tracking.raise_http_error() is the same translation for SQL
 * exception handlers, which only have the caught error's text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "usage_tracking.h"

PG_FUNCTION_INFO_V1(usage_api_ingest);
PG_FUNCTION_INFO_V1(usage_tracking_raise_http_error);

typedef struct HttpError
{
	int			sqlstate;
	char	   *error;
	int			status;
} HttpError;

static HttpError *http_errors = NULL;
static int	n_http_errors = 0;

/* Load usage_tracking.error_codes once per backend. */
static void
load_http_errors(void)
{
	MemoryContext old;

	if (http_errors != NULL)
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT sqlstate, error, http_status FROM usage_tracking.error_codes",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read usage_tracking.error_codes");
	old = MemoryContextSwitchTo(TopMemoryContext);
	http_errors = palloc(sizeof(HttpError) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *st = SPI_getvalue(tup, desc, 1);
		bool		isnull;

		http_errors[i].sqlstate = MAKE_SQLSTATE(st[0], st[1], st[2], st[3], st[4]);
		http_errors[i].error = pstrdup(SPI_getvalue(tup, desc, 2));
		http_errors[i].status = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
	}
	n_http_errors = (int) SPI_processed;
	MemoryContextSwitchTo(old);
	SPI_finish();
}

/* The text of key in a JSON object held in a setting, or NULL. */
static char *
setting_field(const char *setting, const char *key)
{
	const char *value = GetConfigOption(setting, true, false);
	Jsonb	   *jb;
	JsonbValue *v;

	if (value == NULL || value[0] == '\0')
		return NULL;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(value)));
	if (!JB_ROOT_IS_OBJECT(jb))
		return NULL;
	v = getKeyJsonValueFromContainer(&jb->root, key, strlen(key), NULL);
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static void
append_json_or_null(StringInfo buf, const char *s)
{
	if (s == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, s);
}

/* The error_codes row of a SQLSTATE, or NULL. */
static const HttpError *
http_error_of(int sqlstate)
{
	load_http_errors();
	for (int i = 0; i < n_http_errors; i++)
		if (http_errors[i].sqlstate == sqlstate)
			return &http_errors[i];
	return NULL;
}

/*
 * Raise an error of error_codes as PostgREST expects it: SQLSTATE PGRST,
 * message {"code", "message", "details", "hint"}, detail {"status",
 * "headers"}; on 429 a Retry-After of retry_after_s seconds (at least 1).
 */
static void
raise_http(const HttpError *he, const char *message, const char *detail,
		   const char *hint, int64 retry_after_s)
{
	StringInfoData msg;
	StringInfoData det;

	initStringInfo(&msg);
	appendStringInfoString(&msg, "{\"code\" : ");
	escape_json(&msg, he->error);
	appendStringInfoString(&msg, ", \"message\" : ");
	append_json_or_null(&msg, message);
	appendStringInfoString(&msg, ", \"details\" : ");
	append_json_or_null(&msg, detail);
	appendStringInfoString(&msg, ", \"hint\" : ");
	append_json_or_null(&msg, hint);
	appendStringInfoChar(&msg, '}');

	initStringInfo(&det);
	appendStringInfo(&det, "{\"status\" : %d, \"headers\" : ", he->status);
	if (he->status == 429)
		appendStringInfo(&det, "{\"Retry-After\": \"" INT64_FORMAT "\"}}",
						 Max(retry_after_s, 1));
	else
		appendStringInfoString(&det, "{}}");

	ereport(ERROR,
			(errcode(MAKE_SQLSTATE('P', 'G', 'R', 'S', 'T')),
			 errmsg_internal("%s", msg.data),
			 errdetail_internal("%s", det.data)));
}

/* SQL function: usage_api.ingest(json) returns jsonb (and (text)) */
Datum
usage_api_ingest(PG_FUNCTION_ARGS)
{
	char	   *signature;
	char	   *account;
	char	   *role;
	MemoryContext cxt = CurrentMemoryContext;
	UtIngestRequest req = {0};
	UtIngestResult result;

	load_http_errors();
	signature = setting_field("request.headers", "x-install-signature");
	account = setting_field("request.jwt.claims", "account_id");
	role = setting_field("request.jwt.claims", "role");

	if (!PG_ARGISNULL(0))
	{
		text	   *body = PG_GETARG_TEXT_PP(0);

		req.body = VARDATA_ANY(body);
		req.body_len = VARSIZE_ANY_EXHDR(body);
	}
	if (signature != NULL)
	{
		req.signature = signature;
		req.signature_len = strlen(signature);
	}
	req.now = GetCurrentTransactionStartTimestamp();
	req.caller_account = account;

	PG_TRY();
	{
		/* A site's token must name its tenant; only an admin may post for any. */
		if (account == NULL && (role == NULL || strcmp(role, "usage_tracking_admin") != 0))
			ereport(ERROR,
					(errcode(UT_ERRCODE_ACCOUNT_MISMATCH),
					 errmsg("the token names no account"),
					 errhint("Issue ingest tokens with an account_id claim.")));
		ut_ingest(&req, &result);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		const HttpError *he;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		he = http_error_of(edata->sqlerrcode);
		if (he != NULL)
		{
			FlushErrorState();
			raise_http(he, edata->message, edata->detail, edata->hint, 1);
		}
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (result.rate_limited)
	{
		const HttpError *he = http_error_of(UT_ERRCODE_RATE_LIMITED);
		char	   *message;
		char	   *detail;
		const char *hint;

		if (he == NULL)
			ut_raise_rate_limited(&result.limited);
		ut_rate_limited_text(&result.limited, &message, &detail, &hint);
		raise_http(he, message, detail, hint,
				   result.limited.can_retry ? result.limited.retry_after_s : 1);
	}
	PG_RETURN_DATUM(result.response);
}

/*
 * retry_after_s of a DETAIL {"retry_after_s": N}, rounded up; 1 when the
 * DETAIL is not such a JSON object.
 */
static int64
retry_after_of_detail(const char *detail)
{
	JsonLexContext *lex;
	Jsonb	   *jb;
	JsonbValue *v;
	Datum		n;

	if (detail == NULL)
		return 1;
	lex = makeJsonLexContextCstringLen((char *) detail, strlen(detail),
									   GetDatabaseEncoding(), false);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return 1;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(detail)));
	if (!JB_ROOT_IS_OBJECT(jb))
		return 1;
	v = getKeyJsonValueFromContainer(&jb->root, "retry_after_s", strlen("retry_after_s"), NULL);
	if (v == NULL || v->type != jbvNumeric)
		return 1;
	n = DirectFunctionCall1(numeric_ceil, NumericGetDatum(v->val.numeric));
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, n));
}

/*
 * SQL function: raise_http_error(sqlstate text, message text, detail text,
 *                                hint text) returns void
 * For exception handlers of usage_api functions: an extension SQLSTATE of
 * error_codes raised again as PGRST (Retry-After from the DETAIL's
 * retry_after_s on 429); any other SQLSTATE raised again unchanged.
 */
Datum
usage_tracking_raise_http_error(PG_FUNCTION_ARGS)
{
	char	   *sqlstate = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *message = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *detail = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *hint = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	int			code;
	const HttpError *he;

	if (sqlstate == NULL || strlen(sqlstate) != 5 ||
		strspn(sqlstate, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 5)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid SQLSTATE code")));
	code = MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2], sqlstate[3], sqlstate[4]);
	he = http_error_of(code);
	if (he != NULL)
		raise_http(he, message, detail, hint,
				   he->status == 429 ? retry_after_of_detail(detail) : 1);
	ereport(ERROR,
			(errcode(code),
			 errmsg_internal("%s", message ? message : sqlstate),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
	PG_RETURN_VOID();
}
