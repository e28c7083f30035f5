/*-------------------------------------------------------------------------
 *
 * src/quota.c
 *		The quota verdict each ingest response carries, and the post-rate
 *		limit of ingest: usage_tracking.ingest_quota().
 *
 * A post that stored new events is counted in the installation's sliding
 * five-minute window (ingest_windows, one slot per minute); over the plan's
 * rate_requests_5m it is refused with UTR01 and a DETAIL of
 * {"retry_after_s": N}, which rolls the whole request back.  The verdict is
 * the account's month: recorded + pending requests against the plan's limit
 * and thresholds (quota_usage, kept with the summaries).  Both are one
 * prepared statement each, so the check costs two index lookups on the hot
 * path; ingest reads the plan and the month with the installation, so a
 * post that stores nothing (a retry) runs neither.  authorize() and
 * quota_status() apply the same rules in SQL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "counters.h"
#include "usage_tracking.h"

PG_FUNCTION_INFO_V1(usage_tracking_ingest_quota);

#define WINDOW_SLOTS 5

static SPIPlanPtr window_plan = NULL;
static SPIPlanPtr verdict_plan = NULL;

/*
 * Count one post in the window whose slot 1 is the minute of now: a window
 * from an earlier minute moves on (older slots fall out), one five or more
 * minutes old starts afresh, one from a later minute is counted as it is.
 */
static const char *window_sql =
"INSERT INTO usage_tracking.ingest_windows AS w (install_id, minute, posts)"
" VALUES ($1, $2, '{1,0,0,0,0}')"
" ON CONFLICT ON CONSTRAINT ingest_windows_pkey DO UPDATE SET"
"  minute = greatest(w.minute, EXCLUDED.minute),"
"  posts = CASE"
"   WHEN EXCLUDED.minute >= w.minute + interval '5 minutes' THEN '{1,0,0,0,0}'::bigint[]"
"   WHEN EXCLUDED.minute <= w.minute THEN ARRAY[w.posts[1] + 1] || w.posts[2:5]"
"   ELSE ARRAY[1::bigint]"
"     || pg_catalog.array_fill(0::bigint,"
"          ARRAY[(extract(epoch FROM EXCLUDED.minute - w.minute) / 60)::integer - 1])"
"     || w.posts[1 : 5 - (extract(epoch FROM EXCLUDED.minute - w.minute) / 60)::integer]"
"  END"
" RETURNING w.minute, w.posts";

/* The same, through counters.c. */
static void
window_merge(bool found, const Datum *old, const bool *old_null,
			 const Datum *delta, const bool *delta_null,
			 Datum *out, bool *out_null)
{
	TimestampTz minute = DatumGetTimestampTz(delta[1]);
	int64		slots[WINDOW_SLOTS] = {1, 0, 0, 0, 0};
	Datum		elems[WINDOW_SLOTS];

	if (found && !old_null[1] && !old_null[2])
	{
		TimestampTz was = DatumGetTimestampTz(old[1]);
		Datum	   *prev;
		int			nprev;

		deconstruct_array(DatumGetArrayTypeP(old[2]), INT8OID, 8, FLOAT8PASSBYVAL,
						  TYPALIGN_DOUBLE, &prev, NULL, &nprev);
		if (minute <= was)
		{
			/* this minute (or one from the future): count in slot 1 */
			minute = was;
			for (int i = 0; i < WINDOW_SLOTS && i < nprev; i++)
				slots[i] = DatumGetInt64(prev[i]);
			slots[0]++;
		}
		else if (minute < was + WINDOW_SLOTS * USECS_PER_MINUTE)
		{
			int			k = (int) ((minute - was) / USECS_PER_MINUTE);

			for (int i = k; i < WINDOW_SLOTS && i - k < nprev; i++)
				slots[i] = DatumGetInt64(prev[i - k]);
		}
	}
	for (int i = 0; i < WINDOW_SLOTS; i++)
		elems[i] = Int64GetDatum(slots[i]);
	out[1] = TimestampTzGetDatum(minute);
	out_null[1] = false;
	out[2] = PointerGetDatum(construct_array(elems, WINDOW_SLOTS, INT8OID, 8,
											 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	out_null[2] = false;
}

static const UtCounterColumn window_cols[] = {
	{"install_id", UT_COUNTER_KEY},
	{"minute", UT_COUNTER_CUSTOM, 0, TIMESTAMPTZOID},
	{"posts", UT_COUNTER_CUSTOM, 0, INT8ARRAYOID},
};
static const UtCounterSpec window_spec = {
	"ingest_windows", lengthof(window_cols), window_cols, window_merge
};

static const char *verdict_sql =
"SELECT p.rate_requests_5m, p.monthly_requests, p.warning_pct, p.critical_pct,"
" p.block_pct,"
" coalesce((SELECT q.recorded + q.pending FROM usage_tracking.quota_usage q"
"           WHERE q.account_id = a.account_id AND q.month = $2), 0)"
" FROM usage_tracking.accounts a JOIN usage_tracking.plans p USING (plan)"
" WHERE a.account_id = $1";

/*
 * Seconds from now until the oldest slots of the window (slot 1 = minute)
 * that add up to excess have left it; -1 when they never can.
 */
static int
retry_after(const int64 *slots, TimestampTz minute, TimestampTz now, int64 excess)
{
	int64		freed = 0;

	for (int i = WINDOW_SLOTS; i >= 1; i--)
	{
		freed += slots[i - 1];
		if (freed >= excess)
		{
			TimestampTz leaves = minute + (int64) (WINDOW_SLOTS + 1 - i) * USECS_PER_MINUTE;
			int64		usecs = leaves - now;

			return (int) ((usecs + USECS_PER_SEC - 1) / USECS_PER_SEC);
		}
	}
	return -1;
}

const char *
ut_quota_level(const UtQuotaPlan *p)
{
	int64		used100 = p->used * 100;

	if (p->unlimited)
		return "ok";
	if (used100 >= p->monthly_requests * p->block_pct)
		return "blocked";
	if (used100 >= p->monthly_requests * p->critical_pct)
		return "critical";
	if (used100 >= p->monthly_requests * p->warning_pct)
		return "warning";
	return "ok";
}

/* The verdict: {"level", "used", "limit"}. */
static char *
quota_json(const UtQuotaPlan *p)
{
	if (p->unlimited)
		return psprintf("{\"level\": \"ok\", \"used\": " INT64_FORMAT ", \"limit\": null}",
						p->used);
	return psprintf("{\"level\": \"%s\", \"used\": " INT64_FORMAT ", \"limit\": " INT64_FORMAT "}",
					ut_quota_level(p), p->used, p->monthly_requests);
}

/*
 * Read a plan and the month's usage from columns first.. of a tuple:
 * rate_requests_5m, monthly_requests, warning_pct, critical_pct, block_pct,
 * recorded + pending.
 */
static void
quota_plan_from_tuple(HeapTuple tup, TupleDesc desc, int first, UtQuotaPlan *plan)
{
	bool		isnull;

	plan->rate_requests_5m = DatumGetInt32(SPI_getbinval(tup, desc, first, &isnull));
	plan->monthly_requests = DatumGetInt64(SPI_getbinval(tup, desc, first + 1,
														 &plan->unlimited));
	plan->warning_pct = DatumGetInt32(SPI_getbinval(tup, desc, first + 2, &isnull));
	plan->critical_pct = DatumGetInt32(SPI_getbinval(tup, desc, first + 3, &isnull));
	plan->block_pct = DatumGetInt32(SPI_getbinval(tup, desc, first + 4, &isnull));
	plan->used = DatumGetInt64(SPI_getbinval(tup, desc, first + 5, &isnull));
}

/*
 * Count the post (when it stored something) and give the verdict: the plan
 * and the month's usage (ut_quota_level() names the level).
 * known, when given, is the plan and the month's usage as they stand after
 * this post (ingest reads them with the installation and learns from the
 * counters what its events added), so no statement reads them again.
 */
void
ut_ingest_quota(const char *install_id, const char *account_id,
				int64 new_requests, TimestampTz now, const UtQuotaPlan *known,
				UtQuotaPlan *verdict)
{
	TimestampTz minute = now - now % USECS_PER_MINUTE;
	Datum		args[2];
	bool		isnull;
	int			ret;
	int64		slots[WINDOW_SLOTS] = {0};
	TimestampTz window_minute = minute;
	UtQuotaPlan plan;
	HeapTuple	tup;
	TupleDesc	desc;

	if (new_requests > 0)
	{
		UtCounters *c = ut_counters_open(&window_spec);
		Datum		row[3];
		bool		row_null[3];
		Datum		posts;

		args[0] = CStringGetTextDatum(install_id);
		args[1] = TimestampTzGetDatum(minute);
		if (c != NULL)
		{
			bool		nulls[3] = {false, false, true};

			if (ut_counters_add(c, args, nulls, row, row_null))
			{
				window_minute = DatumGetTimestampTz(row[1]);
				posts = row[2];
			}
			else
			{
				ut_counters_close(c);
				c = NULL;
			}
		}
		if (c == NULL)
		{
			if (window_plan == NULL)
			{
				Oid			wtypes[2] = {TEXTOID, TIMESTAMPTZOID};

				window_plan = ut_prepare_kept(window_sql, 2, wtypes);
			}
			ret = SPI_execute_plan(window_plan, args, NULL, false, 0);
			if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
				elog(ERROR, "post window update failed: %s", SPI_result_code_string(ret));
			tup = SPI_tuptable->vals[0];
			desc = SPI_tuptable->tupdesc;
			window_minute = DatumGetTimestampTz(SPI_getbinval(tup, desc, 1, &isnull));
			posts = SPI_getbinval(tup, desc, 2, &isnull);
		}
		{
			Datum	   *elems;
			int			nelems;

			deconstruct_array(DatumGetArrayTypeP(posts), INT8OID, 8, FLOAT8PASSBYVAL,
							  TYPALIGN_DOUBLE, &elems, NULL, &nelems);
			for (int i = 0; i < nelems && i < WINDOW_SLOTS; i++)
				slots[i] = DatumGetInt64(elems[i]);
		}
		if (c != NULL)
			ut_counters_close(c);
	}

	if (known != NULL)
		plan = *known;
	else
	{
		if (verdict_plan == NULL)
		{
			Oid			vtypes[2] = {TEXTOID, DATEOID};

			verdict_plan = ut_prepare_kept(verdict_sql, 2, vtypes);
		}
		args[0] = CStringGetTextDatum(account_id);
		args[1] = DateADTGetDatum(ut_month_start(ut_utc_day(now)));
		ret = SPI_execute_plan(verdict_plan, args, NULL, false, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "quota lookup failed: %s", SPI_result_code_string(ret));
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown account")));
		quota_plan_from_tuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &plan);
	}

	if (new_requests > 0)
	{
		int64		total = 0;

		for (int i = 0; i < WINDOW_SLOTS; i++)
			total += slots[i];
		if (total > plan.rate_requests_5m)
		{
			int			retry = retry_after(slots, window_minute, now,
											total - plan.rate_requests_5m);

			ereport(ERROR,
					(errcode(UT_ERRCODE_RATE_LIMITED),
					 errmsg("rate limited: more than %d batches in 5 minutes",
							plan.rate_requests_5m),
					 retry >= 0 ? errdetail_internal("{\"retry_after_s\": %d}", retry)
					 : errdetail_internal("{\"retry_after_s\": null}"),
					 errhint("Post the same events again after retry_after_s seconds.")));
		}
	}
	*verdict = plan;
}

/*
 * SQL function: ingest_quota(install_id text, account_id text,
 *                            new_requests bigint, new_tokens bigint,
 *                            now timestamptz) returns jsonb
 */
Datum
usage_tracking_ingest_quota(PG_FUNCTION_ARGS)
{
	char	   *install_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *account_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		new_requests = PG_GETARG_INT64(2);
	TimestampTz now = PG_GETARG_TIMESTAMPTZ(4);
	UtQuotaPlan verdict;
	Datum		result;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ut_ingest_quota(install_id, account_id, new_requests, now, NULL, &verdict);
	result = DirectFunctionCall1(jsonb_in, CStringGetDatum(quota_json(&verdict)));
	result = SPI_datumTransfer(result, false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
