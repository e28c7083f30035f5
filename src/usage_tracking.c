/*-------------------------------------------------------------------------
 *
 * src/usage_tracking.c
 *		Entry point of the usage_tracking extension: module magic and the
 *		usage_tracking.* configuration parameters.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "gate.h"
#include "usage_tracking.h"

PG_MODULE_MAGIC;

int			ut_signature_tolerance = 300;
int			ut_max_batch_events = 1000;
int			ut_max_body_bytes = 1024 * 1024;
int			ut_secret_grace = 24 * 3600;
int			ut_event_retention = 90 * 86400;
int			ut_daily_retention = 730 * 86400;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(usage_tracking_retention);

void
_PG_init(void)
{
	DefineCustomIntVariable("usage_tracking.signature_tolerance",
							"How far a signature timestamp may be from the server clock, either way.",
							NULL,
							&ut_signature_tolerance,
							300, 1, 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("usage_tracking.max_batch_events",
							"Largest number of events one batch may carry.",
							NULL,
							&ut_max_batch_events,
							1000, 1, 100000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("usage_tracking.max_body_bytes",
							"Largest request body ingest accepts.",
							NULL,
							&ut_max_body_bytes,
							1024 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("usage_tracking.secret_grace",
							"How long a rotated-out installation secret keeps verifying.",
							NULL,
							&ut_secret_grace,
							24 * 3600, 0, 90 * 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("usage_tracking.event_retention",
							"How long raw events are kept; older events are refused at ingest.",
							NULL,
							&ut_event_retention,
							90 * 86400, 86400, 3650 * 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("usage_tracking.daily_retention",
							"How long daily summaries are kept.",
							NULL,
							&ut_daily_retention,
							730 * 86400, 86400, 20000 * 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	ut_gate_init();

	MarkGUCPrefixReserved("usage_tracking");
}

/*
 * SQL function: retention(kind text) returns interval
 *
 * The retention settings as intervals, for SQL maintenance code that runs
 * before anything else has loaded the library in its backend.
 */
Datum
usage_tracking_retention(PG_FUNCTION_ARGS)
{
	char	   *kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Interval   *result = palloc0(sizeof(Interval));
	int			seconds;

	if (strcmp(kind, "events") == 0)
		seconds = ut_event_retention;
	else if (strcmp(kind, "daily") == 0)
		seconds = ut_daily_retention;
	else if (strcmp(kind, "secret_grace") == 0)
		seconds = ut_secret_grace;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown retention kind \"%s\"", kind),
				 errhint("Use events, daily or secret_grace.")));

	result->day = seconds / 86400;
	result->time = (int64) (seconds % 86400) * USECS_PER_SEC;
	PG_RETURN_INTERVAL_P(result);
}

/*
 * Prepare a statement once per backend, its plan kept beyond SPI_finish.
 */
SPIPlanPtr
ut_prepare_kept(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/* The OID of usage_tracking.<relname>, InvalidOid when there is none. */
Oid
ut_relid(const char *relname)
{
	return get_relname_relid(relname, get_namespace_oid("usage_tracking", false));
}
