/*-------------------------------------------------------------------------
 *
 * src/pricing.c
 *		Model prices: a per-backend cache of usage_tracking.model_prices,
 *		the row in force for a model at a time, and the cost of a group of
 *		tokens at one price row: the one home of the pricing rule.  The
 *		summaries (summary.c) and usage_tracking.event_cost() (below, which
 *		reconcile() and void_event() call) price with it.
 *
 * The cache is loaded on first use and dropped whenever model_prices is
 * written: a statement trigger on the table sends a relcache invalidation,
 * which every backend receives (the writer at its next command, the others
 * at commit).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "usage_tracking.h"

PG_FUNCTION_INFO_V1(usage_tracking_prices_changed);
PG_FUNCTION_INFO_V1(usage_tracking_event_cost);

typedef struct ModelPrices
{
	char	   *model;
	PriceRow   *rows;			/* newest effective_from first */
	int			nrows;
} ModelPrices;

static MemoryContext price_context = NULL;
static ModelPrices *price_models = NULL;
static int	price_nmodels = 0;
static bool price_valid = false;
static bool price_callback_registered = false;
static Oid	price_relid = InvalidOid;
static Numeric per_million = NULL;	/* 0.000001 */

static void
price_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == price_relid)
		price_valid = false;
}

static int
model_cmp(const void *a, const void *b)
{
	return strcmp(((const ModelPrices *) a)->model,
				  ((const ModelPrices *) b)->model);
}

static void
price_cache_load(void)
{
	MemoryContext old;
	int			ret;
	uint64		n;

	if (!price_callback_registered)
	{
		CacheRegisterRelcacheCallback(price_invalidate, (Datum) 0);
		price_callback_registered = true;
	}
	if (price_context == NULL)
		price_context = AllocSetContextCreate(CacheMemoryContext,
											  "usage_tracking price cache",
											  ALLOCSET_SMALL_SIZES);
	MemoryContextReset(price_context);
	price_models = NULL;
	price_nmodels = 0;

	/* Mark valid first: an invalidation arriving while loading wins. */
	price_valid = true;
	price_relid = ut_relid("model_prices");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute("SELECT model, effective_from, prompt_usd_per_mtok, "
					  "completion_usd_per_mtok, "
					  "coalesce(cached_prompt_usd_per_mtok, prompt_usd_per_mtok) "
					  "FROM usage_tracking.model_prices "
					  "ORDER BY model, effective_from DESC", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read usage_tracking.model_prices");

	old = MemoryContextSwitchTo(price_context);
	per_million = DatumGetNumeric(DirectFunctionCall3(numeric_in,
													  CStringGetDatum("0.000001"),
													  ObjectIdGetDatum(InvalidOid),
													  Int32GetDatum(-1)));
	n = SPI_processed;
	price_models = palloc0(sizeof(ModelPrices) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *model = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
		ModelPrices *mp;
		PriceRow   *row;

		if (price_nmodels == 0 ||
			strcmp(price_models[price_nmodels - 1].model, model) != 0)
		{
			mp = &price_models[price_nmodels++];
			mp->model = model;
			mp->rows = palloc(sizeof(PriceRow) * (n - i));
			mp->nrows = 0;
		}
		mp = &price_models[price_nmodels - 1];
		row = &mp->rows[mp->nrows++];
		row->effective_from = DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull));
		row->prompt = datumCopy(SPI_getbinval(tup, desc, 3, &isnull), false, -1);
		row->completion = datumCopy(SPI_getbinval(tup, desc, 4, &isnull), false, -1);
		row->cached = datumCopy(SPI_getbinval(tup, desc, 5, &isnull), false, -1);
	}
	MemoryContextSwitchTo(old);
	SPI_finish();
}

static const PriceRow *
row_in_force(const ModelPrices *mp, TimestampTz at)
{
	for (int i = 0; i < mp->nrows; i++)
		if (mp->rows[i].effective_from <= at)
			return &mp->rows[i];
	return NULL;
}

/*
 * Make the cache current.  Called once before a set of lookups: the rows a
 * lookup returns stay valid until the next call, even if model_prices
 * changes meanwhile (the change is picked up by the next call), so a
 * summary never holds a pointer into a cache that was reloaded under it.
 */
void
ut_price_cache_begin(void)
{
	if (!price_valid || price_models == NULL)
		price_cache_load();
}

/*
 * The price row in force for model at time at: the model's own newest row
 * that has taken effect, else the '*' fallback's, else NULL (unpriced).
 * ut_price_cache_begin() must have been called.
 */
const PriceRow *
ut_price_lookup(const char *model, TimestampTz at)
{
	ModelPrices key;
	ModelPrices *mp;
	const PriceRow *row = NULL;

	Assert(price_models != NULL);

	key.model = (char *) model;
	mp = bsearch(&key, price_models, price_nmodels, sizeof(ModelPrices), model_cmp);
	if (mp)
		row = row_in_force(mp, at);
	if (row == NULL)
	{
		key.model = "*";
		mp = bsearch(&key, price_models, price_nmodels, sizeof(ModelPrices), model_cmp);
		if (mp)
			row = row_in_force(mp, at);
	}
	return row;
}

/* Exact cost in USD of the given token counts at one price row. */
Numeric
ut_price_cost(const PriceRow *price, int64 uncached_prompt,
			  int64 cached_prompt, int64 completion)
{
	Numeric		sum;

	sum = numeric_mul_opt_error(int64_to_numeric(uncached_prompt),
								DatumGetNumeric(price->prompt), NULL);
	sum = numeric_add_opt_error(sum,
								numeric_mul_opt_error(int64_to_numeric(cached_prompt),
													  DatumGetNumeric(price->cached), NULL),
								NULL);
	sum = numeric_add_opt_error(sum,
								numeric_mul_opt_error(int64_to_numeric(completion),
													  DatumGetNumeric(price->completion), NULL),
								NULL);
	return numeric_mul_opt_error(sum, per_million, NULL);
}

/* SQL function: prices_changed() returns trigger — drop every price cache */
Datum
usage_tracking_prices_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "prices_changed: not called by trigger manager");
	CacheInvalidateRelcache(trigdata->tg_relation);
	price_valid = false;
	return PointerGetDatum(NULL);
}

/*
 * SQL function: event_cost(model text, created_at timestamptz,
 *                          prompt_tokens bigint, completion_tokens bigint,
 *                          cached_prompt_tokens bigint) returns numeric
 * The cost of one event as ingest's summaries price it: the row in force at
 * created_at (the model's own, else '*'), cached prompt tokens at the cached
 * price; NULL when no price applies or an argument other than model is NULL
 * (a NULL model is priced by '*').
 */
Datum
usage_tracking_event_cost(PG_FUNCTION_ARGS)
{
	const PriceRow *price;
	int64		prompt;
	int64		cached;

	for (int i = 1; i <= 4; i++)
		if (PG_ARGISNULL(i))
			PG_RETURN_NULL();
	ut_price_cache_begin();
	price = ut_price_lookup(PG_ARGISNULL(0) ? "*" : text_to_cstring(PG_GETARG_TEXT_PP(0)),
							PG_GETARG_TIMESTAMPTZ(1));
	if (price == NULL)
		PG_RETURN_NULL();
	prompt = PG_GETARG_INT64(2);
	cached = PG_GETARG_INT64(4);
	PG_RETURN_NUMERIC(ut_price_cost(price, prompt - cached, cached, PG_GETARG_INT64(3)));
}
