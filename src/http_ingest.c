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
 * usage_tracking.error_codes.  Doing this in C, rather than in a PL/pgSQL
 * EXCEPTION block, spares every request a subtransaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "usage_tracking.h"

PG_FUNCTION_INFO_V1(usage_api_ingest);

extern Datum usage_tracking_ingest(PG_FUNCTION_ARGS);

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

/* Re-raise a whole-request error of ingest as PostgREST expects it. */
static void
raise_http(ErrorData *edata, const HttpError *he)
{
	StringInfoData msg;
	StringInfoData det;

	initStringInfo(&msg);
	appendStringInfoString(&msg, "{\"code\" : ");
	escape_json(&msg, he->error);
	appendStringInfoString(&msg, ", \"message\" : ");
	append_json_or_null(&msg, edata->message);
	appendStringInfoString(&msg, ", \"details\" : ");
	append_json_or_null(&msg, edata->detail);
	appendStringInfoString(&msg, ", \"hint\" : ");
	append_json_or_null(&msg, edata->hint);
	appendStringInfoChar(&msg, '}');

	initStringInfo(&det);
	appendStringInfo(&det, "{\"status\" : %d, \"headers\" : ", he->status);
	if (he->status == 429)
	{
		long		retry = 1;
		const char *p = edata->detail ? strstr(edata->detail, "\"retry_after_s\":") : NULL;

		if (p != NULL)
		{
			long		v = strtol(p + strlen("\"retry_after_s\":"), NULL, 10);

			if (v > retry)
				retry = v;
		}
		appendStringInfo(&det, "{\"Retry-After\": \"%ld\"}}", retry);
	}
	else
		appendStringInfoString(&det, "{}}");

	ereport(ERROR,
			(errcode(MAKE_SQLSTATE('P', 'G', 'R', 'S', 'T')),
			 errmsg_internal("%s", msg.data),
			 errdetail_internal("%s", det.data)));
}

/* SQL function: usage_api.ingest(json) returns jsonb */
Datum
usage_api_ingest(PG_FUNCTION_ARGS)
{
	char	   *signature;
	char	   *account;
	char	   *role;
	MemoryContext cxt = CurrentMemoryContext;
	volatile Datum result = (Datum) 0;
	LOCAL_FCINFO(inner, 4);

	load_http_errors();
	signature = setting_field("request.headers", "x-install-signature");
	account = setting_field("request.jwt.claims", "account_id");
	role = setting_field("request.jwt.claims", "role");

	InitFunctionCallInfoData(*inner, NULL, 4, InvalidOid, NULL, NULL);
	inner->args[0].value = PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0);
	inner->args[0].isnull = PG_ARGISNULL(0);
	inner->args[1].value = signature ? CStringGetTextDatum(signature) : (Datum) 0;
	inner->args[1].isnull = (signature == NULL);
	inner->args[2].value = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	inner->args[2].isnull = false;
	inner->args[3].value = account ? CStringGetTextDatum(account) : (Datum) 0;
	inner->args[3].isnull = (account == NULL);

	PG_TRY();
	{
		/* A site's token must name its tenant; only an admin may post for any. */
		if (account == NULL && (role == NULL || strcmp(role, "usage_tracking_admin") != 0))
			ereport(ERROR,
					(errcode(UT_ERRCODE_ACCOUNT_MISMATCH),
					 errmsg("the token names no account"),
					 errhint("Issue ingest tokens with an account_id claim.")));
		result = usage_tracking_ingest(inner);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		for (int i = 0; i < n_http_errors; i++)
		{
			if (http_errors[i].sqlstate == edata->sqlerrcode)
			{
				FlushErrorState();
				raise_http(edata, &http_errors[i]);
			}
		}
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();

	PG_RETURN_DATUM(result);
}
