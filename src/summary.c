/*-------------------------------------------------------------------------
 *
 * src/summary.c
 *		Keep usage_tracking.daily current: an AFTER INSERT statement trigger
 *		on usage_tracking.events reads the rows the statement inserted (its
 *		transition table; duplicates skipped by ON CONFLICT are not there),
 *		sums them per (install, UTC day, user hash, source, model) in memory,
 *		prices them, and upserts each key once, in key order, in a single
 *		statement.
 *
 * Taking the keys in one fixed order means two transactions touching the
 * same summary rows wait for each other instead of deadlocking.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "usage_tracking.h"

PG_FUNCTION_INFO_V1(usage_tracking_events_summarize);

static SPIPlanPtr upsert_plan = NULL;

static const char *upsert_sql =
"INSERT INTO usage_tracking.daily AS d (install_id, usage_date, wp_user_id_hash,"
"  source, model, total_requests, prompt_tokens, completion_tokens,"
"  cached_prompt_tokens, estimated_cost_usd, unpriced_requests)"
" SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::text[], $5::text[],"
"  $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::numeric[], $11::int8[])"
" ON CONFLICT (install_id, usage_date, wp_user_id_hash, source, model) DO UPDATE SET"
"  total_requests = d.total_requests + EXCLUDED.total_requests,"
"  prompt_tokens = d.prompt_tokens + EXCLUDED.prompt_tokens,"
"  completion_tokens = d.completion_tokens + EXCLUDED.completion_tokens,"
"  cached_prompt_tokens = d.cached_prompt_tokens + EXCLUDED.cached_prompt_tokens,"
"  estimated_cost_usd = CASE WHEN d.estimated_cost_usd IS NULL THEN EXCLUDED.estimated_cost_usd"
"    WHEN EXCLUDED.estimated_cost_usd IS NULL THEN d.estimated_cost_usd"
"    ELSE d.estimated_cost_usd + EXCLUDED.estimated_cost_usd END,"
"  unpriced_requests = d.unpriced_requests + EXCLUDED.unpriced_requests";

static int
key_cmp(const SummaryRow *a, const SummaryRow *b)
{
	int			c;

	if ((c = strcmp(a->install_id, b->install_id)) != 0)
		return c;
	if (a->day != b->day)
		return a->day < b->day ? -1 : 1;
	if ((c = strcmp(a->user_hash, b->user_hash)) != 0)
		return c;
	if ((c = strcmp(a->source, b->source)) != 0)
		return c;
	return strcmp(a->model, b->model);
}

static int
row_cmp(const void *pa, const void *pb)
{
	const SummaryRow *a = pa;
	const SummaryRow *b = pb;
	int			c = key_cmp(a, b);

	if (c != 0)
		return c;
	/* group rows priced alike together */
	if (a->price != b->price)
		return (uintptr_t) a->price < (uintptr_t) b->price ? -1 : 1;
	return 0;
}

static ArrayType *
text_array(Datum *values, int n)
{
	return construct_array(values, n, TEXTOID, -1, false, TYPALIGN_INT);
}

static ArrayType *
int8_array(Datum *values, int n)
{
	return construct_array(values, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/*
 * Sum rows (sorted by key) into one upsert row per key, and run the upsert.
 */
static void
upsert_summaries(SummaryRow *rows, int n)
{
	Datum	   *install = palloc(sizeof(Datum) * n);
	Datum	   *days = palloc(sizeof(Datum) * n);
	Datum	   *users = palloc(sizeof(Datum) * n);
	Datum	   *sources = palloc(sizeof(Datum) * n);
	Datum	   *models = palloc(sizeof(Datum) * n);
	Datum	   *requests = palloc(sizeof(Datum) * n);
	Datum	   *prompt = palloc(sizeof(Datum) * n);
	Datum	   *completion = palloc(sizeof(Datum) * n);
	Datum	   *cached = palloc(sizeof(Datum) * n);
	Datum	   *cost = palloc(sizeof(Datum) * n);
	bool	   *cost_null = palloc(sizeof(bool) * n);
	Datum	   *unpriced = palloc(sizeof(Datum) * n);
	int			nkeys = 0;
	int			i = 0;
	Datum		args[11];
	char		nulls[11];
	int			dims[1];
	int			lbs[1] = {1};
	int			ret;

	while (i < n)
	{
		int64		k_requests = 0,
					k_prompt = 0,
					k_completion = 0,
					k_cached = 0,
					k_unpriced = 0;
		Numeric		k_cost = NULL;
		int			start = i;

		/* one key, possibly several price groups */
		while (i < n && key_cmp(&rows[start], &rows[i]) == 0)
		{
			int			g = i;
			int64		g_uncached = 0,
						g_cached = 0,
						g_completion = 0;

			while (i < n && row_cmp(&rows[g], &rows[i]) == 0)
			{
				k_requests++;
				k_prompt += rows[i].prompt;
				k_completion += rows[i].completion;
				k_cached += rows[i].cached;
				g_uncached += rows[i].prompt - rows[i].cached;
				g_cached += rows[i].cached;
				g_completion += rows[i].completion;
				if (rows[i].price == NULL)
					k_unpriced++;
				i++;
			}
			if (rows[g].price != NULL)
			{
				Numeric		c = ut_price_cost(rows[g].price, g_uncached,
											  g_cached, g_completion);

				k_cost = k_cost ? numeric_add_opt_error(k_cost, c, NULL) : c;
			}
		}

		install[nkeys] = CStringGetTextDatum(rows[start].install_id);
		days[nkeys] = DateADTGetDatum(rows[start].day);
		users[nkeys] = CStringGetTextDatum(rows[start].user_hash);
		sources[nkeys] = CStringGetTextDatum(rows[start].source);
		models[nkeys] = CStringGetTextDatum(rows[start].model);
		requests[nkeys] = Int64GetDatum(k_requests);
		prompt[nkeys] = Int64GetDatum(k_prompt);
		completion[nkeys] = Int64GetDatum(k_completion);
		cached[nkeys] = Int64GetDatum(k_cached);
		cost[nkeys] = k_cost ? NumericGetDatum(k_cost) : (Datum) 0;
		cost_null[nkeys] = (k_cost == NULL);
		unpriced[nkeys] = Int64GetDatum(k_unpriced);
		nkeys++;
	}

	dims[0] = nkeys;
	args[0] = PointerGetDatum(text_array(install, nkeys));
	args[1] = PointerGetDatum(construct_array(days, nkeys, DATEOID, 4, true, TYPALIGN_INT));
	args[2] = PointerGetDatum(text_array(users, nkeys));
	args[3] = PointerGetDatum(text_array(sources, nkeys));
	args[4] = PointerGetDatum(text_array(models, nkeys));
	args[5] = PointerGetDatum(int8_array(requests, nkeys));
	args[6] = PointerGetDatum(int8_array(prompt, nkeys));
	args[7] = PointerGetDatum(int8_array(completion, nkeys));
	args[8] = PointerGetDatum(int8_array(cached, nkeys));
	args[9] = PointerGetDatum(construct_md_array(cost, cost_null, 1, dims, lbs,
												 NUMERICOID, -1, false, TYPALIGN_INT));
	args[10] = PointerGetDatum(int8_array(unpriced, nkeys));
	memset(nulls, ' ', sizeof(nulls));

	if (upsert_plan == NULL)
	{
		Oid			types[11] = {TEXTARRAYOID, DATEARRAYOID, TEXTARRAYOID,
			TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
			INT8ARRAYOID, INT8ARRAYOID, NUMERICARRAYOID, INT8ARRAYOID};
		SPIPlanPtr	plan = SPI_prepare(upsert_sql, 11, types);

		if (plan == NULL)
			elog(ERROR, "could not prepare summary upsert: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		upsert_plan = plan;
	}
	ret = SPI_execute_plan(upsert_plan, args, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "summary upsert failed: %s", SPI_result_code_string(ret));
}

/*
 * The governance counters: requests and tokens per account and calendar
 * month (quota_usage, consuming calls authorize() admitted) and per
 * installation and hour (hourly_usage, for abuse detection).  Rows of an
 * unknown installation are not counted.  Keys are taken in order, accounts
 * before hours, as authorize() and alert evaluation take them.
 */
static SPIPlanPtr quota_counter_plan = NULL;
static SPIPlanPtr hourly_counter_plan = NULL;

static const char *quota_counter_sql =
"INSERT INTO usage_tracking.quota_usage AS q (account_id, month, recorded, recorded_tokens)"
" SELECT i.account_id, u.month, count(*), sum(u.tokens)::int8"
" FROM unnest($1::text[], $2::date[], $3::int8[]) AS u(install_id, month, tokens)"
" JOIN usage_tracking.installations i ON i.install_id = u.install_id"
" GROUP BY 1, 2 ORDER BY 1, 2"
" ON CONFLICT (account_id, month) DO UPDATE SET"
"  recorded = q.recorded + EXCLUDED.recorded,"
"  recorded_tokens = q.recorded_tokens + EXCLUDED.recorded_tokens,"
"  pending = greatest(q.pending - EXCLUDED.recorded, 0)";

static const char *hourly_counter_sql =
"INSERT INTO usage_tracking.hourly_usage AS h (install_id, hour, requests, tokens)"
" SELECT u.install_id, u.hour, count(*), sum(u.tokens)::int8"
" FROM unnest($1::text[], $2::timestamptz[], $3::int8[]) AS u(install_id, hour, tokens)"
" WHERE EXISTS (SELECT 1 FROM usage_tracking.installations i WHERE i.install_id = u.install_id)"
" GROUP BY 1, 2 ORDER BY 1, 2"
" ON CONFLICT (install_id, hour) DO UPDATE SET"
"  requests = h.requests + EXCLUDED.requests,"
"  tokens = h.tokens + EXCLUDED.tokens";

static DateADT
month_start(DateADT day)
{
	int			y, m, d;

	j2date(day + POSTGRES_EPOCH_JDATE, &y, &m, &d);
	return date2j(y, m, 1) - POSTGRES_EPOCH_JDATE;
}

static void
count_usage(SummaryRow *rows, int n)
{
	Datum	   *install = palloc(sizeof(Datum) * n);
	Datum	   *months = palloc(sizeof(Datum) * n);
	Datum	   *hours = palloc(sizeof(Datum) * n);
	Datum	   *tokens = palloc(sizeof(Datum) * n);
	Datum		args[3];
	int			ret;

	for (int i = 0; i < n; i++)
	{
		TimestampTz hour = rows[i].created - rows[i].created % USECS_PER_HOUR;

		if (rows[i].created < 0 && rows[i].created % USECS_PER_HOUR != 0)
			hour -= USECS_PER_HOUR;
		install[i] = CStringGetTextDatum(rows[i].install_id);
		months[i] = DateADTGetDatum(month_start(rows[i].day));
		hours[i] = TimestampTzGetDatum(hour);
		tokens[i] = Int64GetDatum(rows[i].prompt + rows[i].completion);
	}

	if (quota_counter_plan == NULL)
	{
		Oid			qtypes[3] = {TEXTARRAYOID, DATEARRAYOID, INT8ARRAYOID};
		Oid			htypes[3] = {TEXTARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID};
		SPIPlanPtr	q = SPI_prepare(quota_counter_sql, 3, qtypes);
		SPIPlanPtr	h = SPI_prepare(hourly_counter_sql, 3, htypes);

		if (q == NULL || h == NULL)
			elog(ERROR, "could not prepare usage counters: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(q);
		SPI_keepplan(h);
		quota_counter_plan = q;
		hourly_counter_plan = h;
	}

	args[0] = PointerGetDatum(text_array(install, n));
	args[1] = PointerGetDatum(construct_array(months, n, DATEOID, 4, true, TYPALIGN_INT));
	args[2] = PointerGetDatum(int8_array(tokens, n));
	ret = SPI_execute_plan(quota_counter_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "quota counter upsert failed: %s", SPI_result_code_string(ret));

	args[1] = PointerGetDatum(construct_array(hours, n, TIMESTAMPTZOID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	ret = SPI_execute_plan(hourly_counter_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "hourly counter upsert failed: %s", SPI_result_code_string(ret));
}

/*
 * Account for rows (new events, priced): the governance counters, then the
 * daily summaries, each key upserted once, in key order.  SPI must be
 * connected.
 */
void
ut_summarize(SummaryRow *rows, int n)
{
	if (n == 0)
		return;
	qsort(rows, n, sizeof(SummaryRow), row_cmp);
	count_usage(rows, n);
	upsert_summaries(rows, n);
}

DateADT
ut_utc_day(TimestampTz ts)
{
	TimestampTz days = ts / USECS_PER_DAY;

	if (ts < 0 && ts % USECS_PER_DAY != 0)
		days--;
	return (DateADT) days;
}

/*
 * SQL function: events_summarize() returns trigger
 *
 * Statements that insert into usage_tracking.events (a DBA's INSERT, COPY,
 * ingest when it cannot store directly) account for their rows here.
 */
Datum
usage_tracking_events_summarize(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Tuplestorestate *store;
	TupleDesc	desc;
	TupleTableSlot *slot;
	SummaryRow *rows;
	int			n = 0;
	int			cap = 64;
	int			a_install, a_user, a_source, a_model, a_prompt,
				a_completion, a_cached, a_created;
	MemoryContext work;
	MemoryContext old;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "events_summarize: not called by trigger manager");
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		trigdata->tg_newtable == NULL)
		elog(ERROR, "events_summarize must run AFTER INSERT FOR EACH STATEMENT with a NEW TABLE");

	store = trigdata->tg_newtable;
	desc = RelationGetDescr(trigdata->tg_relation);

	a_install = SPI_fnumber(desc, "install_id");
	a_user = SPI_fnumber(desc, "wp_user_id_hash");
	a_source = SPI_fnumber(desc, "source");
	a_model = SPI_fnumber(desc, "model");
	a_prompt = SPI_fnumber(desc, "prompt_tokens");
	a_completion = SPI_fnumber(desc, "completion_tokens");
	a_cached = SPI_fnumber(desc, "cached_prompt_tokens");
	a_created = SPI_fnumber(desc, "created_at");

	work = AllocSetContextCreate(CurrentMemoryContext,
								 "usage_tracking summary",
								 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(work);

	rows = palloc(sizeof(SummaryRow) * cap);
	ut_price_cache_begin();
	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	tuplestore_rescan(store);
	while (tuplestore_gettupleslot(store, true, false, slot))
	{
		SummaryRow *r;
		TimestampTz created;

		if (n == cap)
		{
			cap *= 2;
			rows = repalloc(rows, sizeof(SummaryRow) * cap);
		}
		r = &rows[n++];
		slot_getallattrs(slot);
		r->install_id = TextDatumGetCString(slot->tts_values[a_install - 1]);
		r->user_hash = TextDatumGetCString(slot->tts_values[a_user - 1]);
		r->source = TextDatumGetCString(slot->tts_values[a_source - 1]);
		r->model = TextDatumGetCString(slot->tts_values[a_model - 1]);
		r->prompt = DatumGetInt32(slot->tts_values[a_prompt - 1]);
		r->completion = DatumGetInt32(slot->tts_values[a_completion - 1]);
		r->cached = DatumGetInt32(slot->tts_values[a_cached - 1]);
		created = DatumGetTimestampTz(slot->tts_values[a_created - 1]);
		r->day = ut_utc_day(created);
		r->created = created;
		r->price = ut_price_lookup(r->model, created);
	}
	ExecDropSingleTupleTableSlot(slot);

	if (n > 0)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		ut_summarize(rows, n);
		SPI_finish();
	}

	MemoryContextSwitchTo(old);
	MemoryContextDelete(work);
	return PointerGetDatum(NULL);
}
