/*-------------------------------------------------------------------------
 *
 * src/summary.c
 *		Keep usage_tracking.daily and the governance counters current for
 *		new events: sum them per key in memory, price them, and add to each
 *		row once, in key order — through counters.c, or an UPDATE and an
 *		INSERT statement per row where counters.c declines.  Ingest calls
 *		ut_summarize() with the events it stored; for any other INSERT an
 *		AFTER INSERT statement trigger on usage_tracking.events reads the
 *		rows the statement inserted (its transition table; duplicates
 *		skipped by ON CONFLICT are not there).
 *
 * Taking the keys in one fixed order means two transactions touching the
 * same summary rows wait for each other instead of deadlocking.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"

#include "access/htup_details.h"
#include "access/xact.h"
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

#include "counters.h"
#include "usage_tracking.h"

PG_FUNCTION_INFO_V1(usage_tracking_events_summarize);

/*
 * Where counters.c declines, each daily row is added by an UPDATE and, when
 * there is no row yet, an INSERT ... ON CONFLICT DO NOTHING; a row another
 * transaction inserted meanwhile is then updated.  Neither names a unique
 * index of the daily parent: since 1.1 only its partitions have one.
 */
static SPIPlanPtr daily_update_plan = NULL;
static SPIPlanPtr daily_insert_plan = NULL;

static const char *daily_update_sql =
"UPDATE usage_tracking.daily AS d SET"
"  total_requests = d.total_requests + $6,"
"  prompt_tokens = d.prompt_tokens + $7,"
"  completion_tokens = d.completion_tokens + $8,"
"  cached_prompt_tokens = d.cached_prompt_tokens + $9,"
"  estimated_cost_usd = CASE WHEN d.estimated_cost_usd IS NULL THEN $10"
"    WHEN $10 IS NULL THEN d.estimated_cost_usd"
"    ELSE d.estimated_cost_usd + $10 END,"
"  unpriced_requests = d.unpriced_requests + $11"
" WHERE d.install_id = $1 COLLATE \"C\" AND d.usage_date = $2"
"   AND d.wp_user_id_hash = $3 COLLATE \"C\" AND d.source = $4 COLLATE \"C\""
"   AND d.model = $5 COLLATE \"C\"";

static const char *daily_insert_sql =
"INSERT INTO usage_tracking.daily (install_id, usage_date, wp_user_id_hash,"
"  source, model, total_requests, prompt_tokens, completion_tokens,"
"  cached_prompt_tokens, estimated_cost_usd, unpriced_requests)"
" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
" ON CONFLICT DO NOTHING";

static int
key_cmp(const SummaryRow *a, const SummaryRow *b)
{
	int			c;

	/* rows of one batch share their install_id string */
	if (a->install_id != b->install_id &&
		(c = strcmp(a->install_id, b->install_id)) != 0)
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

/* One daily row's deltas. */
typedef struct DailyDelta
{
	const SummaryRow *key;
	int64		requests;
	int64		prompt;
	int64		completion;
	int64		cached;
	Numeric		cost;			/* NULL: no priced request */
	int64		unpriced;
} DailyDelta;

/* One quota_usage or hourly_usage row's deltas. */
typedef struct CounterDelta
{
	const char *key;			/* account or installation */
	Datum		when;			/* month (date) or hour (timestamptz) */
	int64		requests;
	int64		tokens;
} CounterDelta;

static const UtCounterColumn daily_cols[] = {
	{"install_id", UT_COUNTER_KEY},
	{"usage_date", UT_COUNTER_KEY},
	{"wp_user_id_hash", UT_COUNTER_KEY},
	{"source", UT_COUNTER_KEY},
	{"model", UT_COUNTER_KEY},
	{"total_requests", UT_COUNTER_ADD},
	{"prompt_tokens", UT_COUNTER_ADD},
	{"completion_tokens", UT_COUNTER_ADD},
	{"cached_prompt_tokens", UT_COUNTER_ADD},
	{"estimated_cost_usd", UT_COUNTER_ADD_NUMERIC},
	{"unpriced_requests", UT_COUNTER_ADD},
};
static const UtCounterSpec daily_spec = {"daily", lengthof(daily_cols), daily_cols};

static const UtCounterColumn quota_cols[] = {
	{"account_id", UT_COUNTER_KEY},
	{"month", UT_COUNTER_KEY},
	{"recorded", UT_COUNTER_ADD},
	{"recorded_tokens", UT_COUNTER_ADD},
	{"admitted", UT_COUNTER_KEEP},
	{"pending", UT_COUNTER_SUB_CLAMP, 2},	/* admitted calls now recorded */
};
static const UtCounterSpec quota_spec = {"quota_usage", lengthof(quota_cols), quota_cols};

static const UtCounterColumn hourly_cols[] = {
	{"install_id", UT_COUNTER_KEY},
	{"hour", UT_COUNTER_KEY},
	{"requests", UT_COUNTER_ADD},
	{"tokens", UT_COUNTER_ADD},
};
static const UtCounterSpec hourly_spec = {"hourly_usage", lengthof(hourly_cols), hourly_cols};

/*
 * Sum rows (sorted by key) into one delta per daily key, priced.
 */
static int
daily_deltas(SummaryRow *rows, int n, DailyDelta *out)
{
	int			nkeys = 0;
	int			i = 0;

	while (i < n)
	{
		DailyDelta *d = &out[nkeys++];
		int			start = i;

		CHECK_FOR_INTERRUPTS();
		memset(d, 0, sizeof(DailyDelta));
		d->key = &rows[start];
		/* one key, possibly several price groups */
		while (i < n && key_cmp(&rows[start], &rows[i]) == 0)
		{
			int			g = i;
			int64		g_uncached = 0,
						g_cached = 0,
						g_completion = 0;

			while (i < n && row_cmp(&rows[g], &rows[i]) == 0)
			{
				d->requests++;
				d->prompt += rows[i].prompt;
				d->completion += rows[i].completion;
				d->cached += rows[i].cached;
				g_uncached += rows[i].prompt - rows[i].cached;
				g_cached += rows[i].cached;
				g_completion += rows[i].completion;
				if (rows[i].price == NULL)
					d->unpriced++;
				i++;
			}
			if (rows[g].price != NULL)
			{
				Numeric		c = ut_price_cost(rows[g].price, g_uncached,
											  g_cached, g_completion);

				d->cost = d->cost ? numeric_add_opt_error(d->cost, c, NULL) : c;
			}
		}
	}
	return nkeys;
}

#define DAILY_NCOLS 11

/* One daily row's values, by column of daily_cols. */
static void
daily_row(const DailyDelta *d, Datum *v, bool *nulls)
{
	StaticAssertStmt(lengthof(daily_cols) == DAILY_NCOLS, "daily_row fills daily_cols");
	memset(nulls, false, sizeof(bool) * DAILY_NCOLS);
	v[0] = CStringGetTextDatum(d->key->install_id);
	v[1] = DateADTGetDatum(d->key->day);
	v[2] = CStringGetTextDatum(d->key->user_hash);
	v[3] = CStringGetTextDatum(d->key->source);
	v[4] = CStringGetTextDatum(d->key->model);
	v[5] = Int64GetDatum(d->requests);
	v[6] = Int64GetDatum(d->prompt);
	v[7] = Int64GetDatum(d->completion);
	v[8] = Int64GetDatum(d->cached);
	v[9] = d->cost ? NumericGetDatum(d->cost) : (Datum) 0;
	nulls[9] = (d->cost == NULL);
	v[10] = Int64GetDatum(d->unpriced);
}

/*
 * Add the daily deltas row by row (counters.c); returns how many keys were
 * added before one went to a partition the gate declines.
 */
static int
add_daily(UtCounters *c, DailyDelta *d, int nkeys)
{
	for (int k = 0; k < nkeys; k++)
	{
		Datum		v[DAILY_NCOLS];
		bool		nulls[DAILY_NCOLS];

		daily_row(&d[k], v, nulls);
		if (!ut_counters_add(c, v, nulls, NULL, NULL))
			return k;
	}
	return nkeys;
}

/* Add the daily deltas with SQL statements, row by row, in key order. */
static void
upsert_daily(DailyDelta *d, int nkeys)
{
	static const Oid types[DAILY_NCOLS] = {TEXTOID, DATEOID, TEXTOID, TEXTOID,
		TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, NUMERICOID, INT8OID};

	if (daily_update_plan == NULL)
		daily_update_plan = ut_prepare_kept(daily_update_sql, DAILY_NCOLS, (Oid *) types);
	if (daily_insert_plan == NULL)
		daily_insert_plan = ut_prepare_kept(daily_insert_sql, DAILY_NCOLS, (Oid *) types);

	for (int k = 0; k < nkeys; k++)
	{
		Datum		v[DAILY_NCOLS];
		bool		nulls[DAILY_NCOLS];
		char		n[DAILY_NCOLS];
		int			ret;

		daily_row(&d[k], v, nulls);
		for (int c = 0; c < DAILY_NCOLS; c++)
			n[c] = nulls[c] ? 'n' : ' ';
		for (int attempt = 0;; attempt++)
		{
			ret = SPI_execute_plan(daily_update_plan, v, n, false, 0);
			if (ret != SPI_OK_UPDATE)
				elog(ERROR, "summary update failed: %s", SPI_result_code_string(ret));
			if (SPI_processed > 0)
				break;
			ret = SPI_execute_plan(daily_insert_plan, v, n, false, 0);
			if (ret != SPI_OK_INSERT)
				elog(ERROR, "summary insert failed: %s", SPI_result_code_string(ret));
			if (SPI_processed > 0)
				break;
			/* another transaction inserted the row meanwhile */
			if (IsolationUsesXactSnapshot() || attempt >= 3)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent insert"),
						 errhint("Retry the transaction.")));
		}
	}
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
" SELECT u.account_id, u.month, u.requests, u.tokens"
" FROM unnest($1::text[], $2::date[], $3::int8[], $4::int8[]) AS u(account_id, month, requests, tokens)"
" ON CONFLICT (account_id, month) DO UPDATE SET"
"  recorded = q.recorded + EXCLUDED.recorded,"
"  recorded_tokens = q.recorded_tokens + EXCLUDED.recorded_tokens,"
"  pending = greatest(q.pending - EXCLUDED.recorded, 0)";

static const char *hourly_counter_sql =
"INSERT INTO usage_tracking.hourly_usage AS h (install_id, hour, requests, tokens)"
" SELECT u.install_id, u.hour, u.requests, u.tokens"
" FROM unnest($1::text[], $2::timestamptz[], $3::int8[], $4::int8[]) AS u(install_id, hour, requests, tokens)"
" ON CONFLICT (install_id, hour) DO UPDATE SET"
"  requests = h.requests + EXCLUDED.requests,"
"  tokens = h.tokens + EXCLUDED.tokens";

DateADT
ut_month_start(DateADT day)
{
	int			y, m, d;

	j2date(day + POSTGRES_EPOCH_JDATE, &y, &m, &d);
	return date2j(y, m, 1) - POSTGRES_EPOCH_JDATE;
}

static int
counter_cmp(const void *pa, const void *pb)
{
	const CounterDelta *a = pa;
	const CounterDelta *b = pb;
	int			c = strcmp(a->key, b->key);

	if (c != 0)
		return c;
	if (a->when != b->when)
		return (int64) a->when < (int64) b->when ? -1 : 1;
	return 0;
}

/* Sort deltas by key and sum the ones of one key; returns the key count. */
static int
merge_counters(CounterDelta *d, int n)
{
	int			nkeys = 0;

	qsort(d, n, sizeof(CounterDelta), counter_cmp);
	for (int i = 0; i < n; i++)
	{
		if (nkeys > 0 && counter_cmp(&d[nkeys - 1], &d[i]) == 0)
		{
			d[nkeys - 1].requests += d[i].requests;
			d[nkeys - 1].tokens += d[i].tokens;
		}
		else
			d[nkeys++] = d[i];
	}
	return nkeys;
}

/* Add counter deltas through counters.c, or upsert them with one statement. */
static void
add_counters(const UtCounterSpec *spec, SPIPlanPtr *plan, const char *sql,
			 Oid when_type, CounterDelta *d, int nkeys, UtQuotaWatch *watch)
{
	UtCounters *c;
	int			done = 0;

	if (nkeys == 0)
		return;
	c = ut_counters_open(spec);
	if (c != NULL)
	{
		if (watch != NULL)
			watch->counted = true;
		for (; done < nkeys; done++)
		{
			int			k = done;
			Datum		v[6];
			bool		nulls[6] = {false};
			Datum		row[6];
			bool		row_null[6];

			v[0] = CStringGetTextDatum(d[k].key);
			v[1] = d[k].when;
			v[2] = Int64GetDatum(d[k].requests);
			v[3] = Int64GetDatum(d[k].tokens);
			v[4] = Int64GetDatum(0);	/* quota_usage.admitted: kept */
			v[5] = Int64GetDatum(0);	/* quota_usage.pending: from column 2 */
			if (!ut_counters_add(c, v, nulls, row, row_null))
				break;
			if (watch != NULL && strcmp(d[k].key, watch->account_id) == 0 &&
				DatumGetDateADT(d[k].when) == watch->month)
			{
				/* quota_usage: recorded + pending */
				watch->updated = true;
				watch->used = DatumGetInt64(row[2]) + DatumGetInt64(row[5]);
			}
		}
		ut_counters_close(c);
		if (done < nkeys && watch != NULL)
			watch->counted = watch->updated = false;	/* the statement counts the rest */
	}
	if (done < nkeys)
	{
		Datum	   *keys;
		Datum	   *whens;
		Datum	   *requests;
		Datum	   *tokens;
		Datum		args[4];
		int			ret;

		d += done;
		nkeys -= done;
		keys = palloc(sizeof(Datum) * nkeys);
		whens = palloc(sizeof(Datum) * nkeys);
		requests = palloc(sizeof(Datum) * nkeys);
		tokens = palloc(sizeof(Datum) * nkeys);
		for (int k = 0; k < nkeys; k++)
		{
			keys[k] = CStringGetTextDatum(d[k].key);
			whens[k] = d[k].when;
			requests[k] = Int64GetDatum(d[k].requests);
			tokens[k] = Int64GetDatum(d[k].tokens);
		}
		if (*plan == NULL)
		{
			Oid			types[4] = {TEXTARRAYOID,
				when_type == DATEOID ? DATEARRAYOID : TIMESTAMPTZARRAYOID,
				INT8ARRAYOID, INT8ARRAYOID};

			*plan = ut_prepare_kept(sql, 4, types);
		}
		args[0] = PointerGetDatum(text_array(keys, nkeys));
		args[1] = when_type == DATEOID
			? PointerGetDatum(construct_array(whens, nkeys, DATEOID, 4, true, TYPALIGN_INT))
			: PointerGetDatum(construct_array(whens, nkeys, TIMESTAMPTZOID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[2] = PointerGetDatum(int8_array(requests, nkeys));
		args[3] = PointerGetDatum(int8_array(tokens, nkeys));
		ret = SPI_execute_plan(*plan, args, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "%s upsert failed: %s", spec->relname,
				 SPI_result_code_string(ret));
	}
}

static void
count_usage(SummaryRow *rows, int n, UtQuotaWatch *watch)
{
	CounterDelta *months = palloc(sizeof(CounterDelta) * n);
	CounterDelta *hours = palloc(sizeof(CounterDelta) * n);
	int			m = 0;

	for (int i = 0; i < n; i++)
	{
		TimestampTz hour = rows[i].created - rows[i].created % USECS_PER_HOUR;
		int64		tokens = rows[i].prompt + rows[i].completion;

		CHECK_FOR_INTERRUPTS();
		if (rows[i].account_id == NULL)
			continue;			/* an unknown installation */
		if (rows[i].created < 0 && rows[i].created % USECS_PER_HOUR != 0)
			hour -= USECS_PER_HOUR;
		months[m].key = rows[i].account_id;
		months[m].when = DateADTGetDatum(ut_month_start(rows[i].day));
		months[m].requests = 1;
		months[m].tokens = tokens;
		hours[m].key = rows[i].install_id;
		hours[m].when = TimestampTzGetDatum(hour);
		hours[m].requests = 1;
		hours[m].tokens = tokens;
		m++;
	}
	add_counters(&quota_spec, &quota_counter_plan, quota_counter_sql, DATEOID,
				 months, merge_counters(months, m), watch);
	add_counters(&hourly_spec, &hourly_counter_plan, hourly_counter_sql,
				 TIMESTAMPTZOID, hours, merge_counters(hours, m), NULL);
}

/*
 * Account for rows (new events, priced, account_id set for known
 * installations): the governance counters, then the daily summaries, each
 * key once, in key order.  SPI must be connected.  watch, when given, learns
 * whether quota_usage was written here (counted) and, if the row of its
 * account and month was, its recorded + pending after the update.
 */
void
ut_summarize(SummaryRow *rows, int n, UtQuotaWatch *watch)
{
	DailyDelta *deltas;
	int			nkeys;
	int			done = 0;
	UtCounters *c;

	if (n == 0)
		return;
	qsort(rows, n, sizeof(SummaryRow), row_cmp);
	count_usage(rows, n, watch);

	deltas = palloc(sizeof(DailyDelta) * n);
	nkeys = daily_deltas(rows, n, deltas);
	c = ut_counters_open(&daily_spec);
	if (c != NULL)
	{
		done = add_daily(c, deltas, nkeys);
		ut_counters_close(c);
	}
	if (done < nkeys)
		upsert_daily(deltas + done, nkeys - done);
}

/*
 * Set account_id of rows (sorted by installation) from usage_tracking.
 * installations; NULL for an unknown installation.
 */
static void
resolve_accounts(SummaryRow *rows, int n)
{
	static SPIPlanPtr plan = NULL;

	if (plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan = ut_prepare_kept("SELECT account_id FROM usage_tracking.installations"
							" WHERE install_id = $1", 1, types);
	}
	for (int i = 0; i < n; i++)
	{
		Datum		arg;
		int			ret;

		CHECK_FOR_INTERRUPTS();
		if (i > 0 && strcmp(rows[i].install_id, rows[i - 1].install_id) == 0)
		{
			rows[i].account_id = rows[i - 1].account_id;
			continue;
		}
		arg = CStringGetTextDatum(rows[i].install_id);
		ret = SPI_execute_plan(plan, &arg, NULL, true, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "installation lookup failed: %s", SPI_result_code_string(ret));
		rows[i].account_id = SPI_processed == 1
			? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)
			: NULL;
	}
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

		CHECK_FOR_INTERRUPTS();
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
		qsort(rows, n, sizeof(SummaryRow), row_cmp);
		resolve_accounts(rows, n);
		ut_summarize(rows, n, NULL);
		SPI_finish();
	}

	MemoryContextSwitchTo(old);
	MemoryContextDelete(work);
	return PointerGetDatum(NULL);
}
