/*-------------------------------------------------------------------------
 *
 * src/quota.c
 *		The sliding five-minute window, admission to it, retry-after and
 *		the quota level: the one home of these rules.  ingest counts its
 *		posts here; usage_tracking.window_shift(), window_admit(),
 *		window_retry_after() and quota_level() are these functions, called
 *		from SQL by authorize(), quota_status() and evaluate_alerts().
 *
 * A post that stored new events is counted in the installation's sliding
 * five-minute window (ingest_windows, one slot per minute); over the plan's
 * rate_requests_5m it is refused with UTR01 and a DETAIL of
 * {"retry_after_s": N}, which rolls the whole request back (ut_ingest_quota()
 * reports the refusal as data; the entry points raise it).  The verdict is
 * the account's month: recorded + pending requests against the plan's limit
 * and thresholds (quota_usage, kept with the summaries).  Both are one
 * prepared statement each, so the check costs two index lookups on the hot
 * path; ingest reads the plan and the month with the installation, so a
 * post that stores nothing (a retry) runs neither.  authorize() and
 * quota_status() call the same rules from SQL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "counters.h"
#include "usage_tracking.h"

PG_FUNCTION_INFO_V1(usage_tracking_ingest_quota);
PG_FUNCTION_INFO_V1(usage_tracking_window_shift);
PG_FUNCTION_INFO_V1(usage_tracking_window_retry_after);
PG_FUNCTION_INFO_V1(usage_tracking_quota_level);
PG_FUNCTION_INFO_V1(usage_tracking_window_admit);

#define WINDOW_SLOTS UT_WINDOW_SLOTS

static SPIPlanPtr window_plan = NULL;
static SPIPlanPtr verdict_plan = NULL;

/*
 * Count one post in the window whose slot 1 is the minute of now: the window
 * moved on to that minute by window_shift() (ut_window_shift()), then one
 * more in slot 1.  A window from a later minute is counted as it is.  The
 * statement behind counters.c when the direct path declines.
 */
static const char *window_sql =
"INSERT INTO usage_tracking.ingest_windows AS w (install_id, minute, posts)"
" VALUES ($1, $2, '{1,0,0,0,0}')"
" ON CONFLICT ON CONSTRAINT ingest_windows_pkey DO UPDATE SET"
"  minute = greatest(w.minute, EXCLUDED.minute),"
"  posts = (SELECT ARRAY[s[1] + 1] || s[2:5] FROM usage_tracking.window_shift("
"            w.posts, w.minute, greatest(w.minute, EXCLUDED.minute)) s)"
" RETURNING w.minute, w.posts";

/* The minute now is in (UTC minutes: zones have whole-minute offsets). */
static inline TimestampTz
minute_of(TimestampTz now)
{
	return now - ((now % USECS_PER_MINUTE) + USECS_PER_MINUTE) % USECS_PER_MINUTE;
}

/*
 * The window rule.  slots[0] counts the minute slot_minute, slots[i] the
 * minute i minutes earlier; moved on to at_minute, older slots fall out and
 * new ones are 0.  A window from a later minute (at_minute <= slot_minute)
 * stays as it is.  The minutes between are rounded to whole minutes.
 */
void
ut_window_shift(int64 *slots, TimestampTz slot_minute, TimestampTz at_minute)
{
	int64		k;

	if (at_minute <= slot_minute)
		return;
	k = (at_minute - slot_minute + USECS_PER_MINUTE / 2) / USECS_PER_MINUTE;
	if (k <= 0)
		return;
	for (int i = WINDOW_SLOTS - 1; i >= 0; i--)
		slots[i] = i >= k ? slots[i - k] : 0;
}

/* The same, through counters.c. */
static void
window_merge(bool found, const Datum *old, const bool *old_null,
			 const Datum *delta, const bool *delta_null,
			 Datum *out, bool *out_null)
{
	TimestampTz minute = DatumGetTimestampTz(delta[1]);
	int64		slots[WINDOW_SLOTS] = {0};
	Datum		elems[WINDOW_SLOTS];

	if (found && !old_null[1] && !old_null[2])
	{
		TimestampTz was = DatumGetTimestampTz(old[1]);

		ut_window_from_array(old[2], slots);
		ut_window_shift(slots, was, Max(was, minute));
		minute = Max(was, minute);
	}
	slots[0]++;
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
 * The slots of a bigint[] window (NULL elements count 0; missing ones too).
 */
void
ut_window_from_array(Datum array, int64 *slots)
{
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;

	deconstruct_array(DatumGetArrayTypeP(array), INT8OID, 8, FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &elems, &nulls, &nelems);
	for (int i = 0; i < WINDOW_SLOTS; i++)
		slots[i] = i < nelems && !nulls[i] ? DatumGetInt64(elems[i]) : 0;
}

/*
 * The retry-after rule: seconds from now (rounded up; negative when they
 * have left already) until the oldest slots of the window (slots[0] =
 * at_minute) that add up to excess have left it.  False when they never can.
 */
bool
ut_window_retry_after(const int64 *slots, TimestampTz at_minute, TimestampTz now,
					  int64 excess, int *seconds)
{
	int64		freed = 0;

	for (int i = WINDOW_SLOTS; i >= 1; i--)
	{
		freed += slots[i - 1];
		if (freed >= excess)
		{
			TimestampTz leaves = at_minute + (int64) (WINDOW_SLOTS + 1 - i) * USECS_PER_MINUTE;
			int64		usecs = leaves - now;

			*seconds = (int) (usecs >= 0 ? (usecs + USECS_PER_SEC - 1) / USECS_PER_SEC
							  : -((-usecs) / USECS_PER_SEC));
			return true;
		}
	}
	return false;
}

/*
 * The admission rule of a window: moved on to the minute of now (a window
 * from a later minute stays as it is), it admits n more while its slots then
 * hold at most limit - n; admitted, they are counted in slot 1.  Refused,
 * *can_retry and *retry_after_s tell when the excess will have left.
 * ingest asks it with n = 0 once its post is counted; authorize() (through
 * window_admit()) before it counts.
 */
bool
ut_window_admit(int64 *slots, TimestampTz *slot_minute, TimestampTz now, int64 n,
				int64 limit, bool *can_retry, int *retry_after_s)
{
	TimestampTz minute = minute_of(now);
	int64		total = 0;

	if (minute > *slot_minute)
	{
		ut_window_shift(slots, *slot_minute, minute);
		*slot_minute = minute;
	}
	for (int i = 0; i < WINDOW_SLOTS; i++)
		total += slots[i];
	if (total + n > limit)
	{
		*can_retry = ut_window_retry_after(slots, *slot_minute, now, total + n - limit,
										   retry_after_s);
		return false;
	}
	slots[0] += n;
	return true;
}

/* used * 100 >= limit * pct, in bigint arithmetic (out of range: an error) */
static bool
reaches(int64 used, int64 limit, int32 pct)
{
	int64		a;
	int64		b;

	if (pg_mul_s64_overflow(used, 100, &a) || pg_mul_s64_overflow(limit, pct, &b))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("bigint out of range")));
	return a >= b;
}

/*
 * The quota level rule: ok, warning, critical or blocked for used requests
 * against a monthly limit and its thresholds in percent, pct = {block,
 * critical, warning} (a NULL one, pct_null, is never reached).
 */
static const char *
quota_level(int64 used, int64 limit, const int32 *pct, const bool *pct_null)
{
	static const char *const names[3] = {"blocked", "critical", "warning"};

	for (int i = 0; i < 3; i++)
		if (!pct_null[i] && reaches(used, limit, pct[i]))
			return names[i];
	return "ok";
}

const char *
ut_quota_level(const UtQuotaPlan *p)
{
	int32		pct[3] = {p->block_pct, p->critical_pct, p->warning_pct};
	bool		pct_null[3] = {false, false, false};

	if (p->unlimited)
		return "ok";
	return quota_level(p->used, p->monthly_requests, pct, pct_null);
}

/*
 * A post refused for the plan's rate: its message, DETAIL and hint, as
 * SQLSTATE UTR01 carries them.  The DETAIL is the JSON {"retry_after_s": N}
 * that usage_tracking.ingest's callers read; usage_api.ingest takes
 * retry_after_s from r itself.
 */
void
ut_rate_limited_text(const UtRateLimited *r, char **message, char **detail,
					 const char **hint)
{
	*message = psprintf("rate limited: more than %d batches in 5 minutes",
						r->rate_requests_5m);
	*detail = r->can_retry
		? psprintf("{\"retry_after_s\": %d}", r->retry_after_s)
		: pstrdup("{\"retry_after_s\": null}");
	*hint = "Post the same events again after retry_after_s seconds.";
}

void
ut_raise_rate_limited(const UtRateLimited *r)
{
	char	   *message;
	char	   *detail;
	const char *hint;

	ut_rate_limited_text(r, &message, &detail, &hint);
	ereport(ERROR,
			(errcode(UT_ERRCODE_RATE_LIMITED),
			 errmsg_internal("%s", message),
			 errdetail_internal("%s", detail),
			 errhint("%s", hint)));
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
 * and the month's usage (ut_quota_level() names the level).  A post over the
 * plan's rate is refused: the function returns false and fills *limited
 * (the caller raises it, which rolls the request back).
 * known, when given, is the plan and the month's usage as they stand after
 * this post (ingest reads them with the installation and learns from the
 * counters what its events added), so no statement reads them again.
 */
bool
ut_ingest_quota(const char *install_id, const char *account_id,
				int64 new_requests, TimestampTz now, const UtQuotaPlan *known,
				UtQuotaPlan *verdict, UtRateLimited *limited)
{
	TimestampTz minute = minute_of(now);
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
		ut_window_from_array(posts, slots);
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

	*verdict = plan;

	/* The window with this post counted must hold no more than the rate. */
	if (new_requests > 0 &&
		!ut_window_admit(slots, &window_minute, now, 0, plan.rate_requests_5m,
						 &limited->can_retry, &limited->retry_after_s))
	{
		limited->rate_requests_5m = plan.rate_requests_5m;
		return false;
	}
	return true;
}

/*
 * SQL function of 1.0: ingest_quota(install_id text, account_id text,
 *                            new_requests bigint, new_tokens bigint,
 *                            now timestamptz) returns jsonb
 * Dropped by the upgrade to 1.1; kept so the 1.0 script loads.
 */
Datum
usage_tracking_ingest_quota(PG_FUNCTION_ARGS)
{
	char	   *install_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *account_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		new_requests = PG_GETARG_INT64(2);
	TimestampTz now = PG_GETARG_TIMESTAMPTZ(4);
	UtQuotaPlan verdict;
	UtRateLimited limited;
	Datum		result;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (!ut_ingest_quota(install_id, account_id, new_requests, now, NULL, &verdict,
						 &limited))
		ut_raise_rate_limited(&limited);
	result = DirectFunctionCall1(jsonb_in, CStringGetDatum(quota_json(&verdict)));
	result = SPI_datumTransfer(result, false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * SQL function: window_shift(slots bigint[], slot_minute timestamptz,
 *                            at_minute timestamptz) returns bigint[]
 * A NULL window is an empty one; a window at an unknown minute, NULL.
 */
Datum
usage_tracking_window_shift(PG_FUNCTION_ARGS)
{
	int64		slots[WINDOW_SLOTS] = {0};
	Datum		elems[WINDOW_SLOTS];

	if (!PG_ARGISNULL(0))
	{
		if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
			PG_RETURN_NULL();
		ut_window_from_array(PG_GETARG_DATUM(0), slots);
		ut_window_shift(slots, PG_GETARG_TIMESTAMPTZ(1), PG_GETARG_TIMESTAMPTZ(2));
	}
	for (int i = 0; i < WINDOW_SLOTS; i++)
		elems[i] = Int64GetDatum(slots[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, WINDOW_SLOTS, INT8OID, 8,
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * SQL function: window_retry_after(slots bigint[], at_minute timestamptz,
 *                                  now timestamptz, excess bigint) returns integer
 */
Datum
usage_tracking_window_retry_after(PG_FUNCTION_ARGS)
{
	int64		slots[WINDOW_SLOTS];
	int			retry;

	ut_window_from_array(PG_GETARG_DATUM(0), slots);
	if (!ut_window_retry_after(slots, PG_GETARG_TIMESTAMPTZ(1),
							   PG_GETARG_TIMESTAMPTZ(2), PG_GETARG_INT64(3), &retry))
		PG_RETURN_NULL();
	PG_RETURN_INT32(retry);
}

/*
 * SQL function: quota_level(used bigint, monthly_requests bigint,
 *                           warning_pct integer, critical_pct integer,
 *                           block_pct integer) returns text
 * An unknown used or monthly_requests (NULL: unlimited) is ok; a NULL
 * threshold is never reached.
 */
Datum
usage_tracking_quota_level(PG_FUNCTION_ARGS)
{
	int32		pct[3];
	bool		pct_null[3];

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_TEXT_P(cstring_to_text("ok"));
	for (int i = 0; i < 3; i++)
	{
		pct_null[i] = PG_ARGISNULL(4 - i);
		pct[i] = pct_null[i] ? 0 : PG_GETARG_INT32(4 - i);
	}
	PG_RETURN_TEXT_P(cstring_to_text(quota_level(PG_GETARG_INT64(0), PG_GETARG_INT64(1),
												 pct, pct_null)));
}

/*
 * SQL function: window_admit(slots bigint[], slot_minute timestamptz,
 *                            now timestamptz, n bigint, lim bigint,
 *                            OUT admitted boolean, OUT at_minute timestamptz,
 *                            OUT new_slots bigint[], OUT retry_after_s integer)
 * ut_window_admit() from SQL.  A NULL window is an empty one at the minute
 * of now; new_slots is the window moved on, with n counted when admitted.
 */
Datum
usage_tracking_window_admit(PG_FUNCTION_ARGS)
{
	int64		slots[WINDOW_SLOTS] = {0};
	Datum		elems[WINDOW_SLOTS];
	TimestampTz now;
	TimestampTz minute;
	bool		admitted;
	bool		can_retry = false;
	int			retry = 0;
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	if (PG_ARGISNULL(2) || PG_ARGISNULL(3) || PG_ARGISNULL(4))
		PG_RETURN_NULL();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "window_admit must return a record");
	now = PG_GETARG_TIMESTAMPTZ(2);
	minute = minute_of(now);
	if (!PG_ARGISNULL(0) && !PG_ARGISNULL(1))
	{
		ut_window_from_array(PG_GETARG_DATUM(0), slots);
		minute = PG_GETARG_TIMESTAMPTZ(1);
	}
	admitted = ut_window_admit(slots, &minute, now, PG_GETARG_INT64(3), PG_GETARG_INT64(4),
							   &can_retry, &retry);
	for (int i = 0; i < WINDOW_SLOTS; i++)
		elems[i] = Int64GetDatum(slots[i]);
	values[0] = BoolGetDatum(admitted);
	values[1] = TimestampTzGetDatum(minute);
	values[2] = PointerGetDatum(construct_array(elems, WINDOW_SLOTS, INT8OID, 8,
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[3] = Int32GetDatum(retry);
	nulls[3] = admitted || !can_retry;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
