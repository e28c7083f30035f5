/*-------------------------------------------------------------------------
 *
 * src/ingest.c
 *		usage_tracking.ingest(): verify a site's signed batch and store it
 *		exactly once.
 *
 * Five stages: verify (body size, signature header, timestamp window, JSON
 * shape, installation, MAC in constant time against the current or
 * rotated-out secret, installation and account status, account match),
 * validate (each event), store (directly, store.c, or with one INSERT ...
 * ON CONFLICT DO NOTHING whose trigger summarizes), summarise (the daily
 * summaries and counters of the direct path, the rate window, the quota
 * verdict) and respond.  Any whole-request failure raises before anything
 * is written, or rolls back what was.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"

#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "port/pg_bswap.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/inval.h"
#include "utils/timestamp.h"

#include "lookup.h"
#include "usage_tracking.h"

PG_FUNCTION_INFO_V1(usage_tracking_ingest);

#define NUM_INSERT_ARGS 12

/*
 * The key an unknown installation's post is checked with, so that it costs
 * what a known one's does.  Nothing it matches is ever accepted.
 */
static const char dummy_key[] =
"usage_tracking-no-such-installation-0123456789abcdef0123456789ab";

static SPIPlanPtr seen_plan = NULL;
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr ensure_plan = NULL;

/*
 * The UTC days known to have their partitions (events for the day, daily for
 * its month), per backend.  Any relcache invalidation of either parent (a
 * partition attached, detached or dropped, here or elsewhere, or this
 * transaction's creations rolled back) empties it.  Since 1.1 there is no
 * default partition; under the 1.0 SQL (before ALTER EXTENSION ... UPDATE)
 * there is one and nothing is created here.
 */
#define COVERED_MAX 64

static DateADT covered[COVERED_MAX];
static int	ncovered = 0;
static bool covered_valid = false;
static bool covered_has_default = false;
static bool covered_callback = false;
static Oid	covered_events = InvalidOid;
static Oid	covered_daily = InvalidOid;

typedef struct Installation
{
	char	   *account_id;
	bool		suspended;
	char	   *secret;
	char	   *previous_secret;	/* NULL once its grace has ended */
	bool		seen_recently;	/* last_seen_at within the minute before now */
	UtQuotaPlan plan;			/* the account's plan (month so far: see month_used) */
} Installation;

/*
 * Look up an installation with its secrets, whether it was seen in the last
 * minute, and its account's plan.  Nothing is locked: concurrent
 * batches of one installation are kept apart by the unique index on events
 * (an insert waits for another transaction inserting the same key) and take
 * summary and counter rows in key order.
 */
static bool
fetch_installation(const char *install_id, TimestampTz now, Installation *inst)
{
	static const char *const inst_cols[] = {"account_id", "status", "last_seen_at"};
	static const char *const acct_cols[] = {"status", "plan"};
	static const char *const plan_cols[] = {"rate_requests_5m", "monthly_requests",
	"warning_pct", "critical_pct", "block_pct"};
	static const char *const secret_cols[] = {"secret", "previous_secret",
	"previous_expires_at"};
	Datum		v[5];
	bool		n[5];
	Datum		key[2];
	Datum		account;

	key[0] = CStringGetTextDatum(install_id);
	if (!ut_fetch_by_key("installations", 1, key, 3, inst_cols, v, n))
		return false;
	inst->account_id = TextDatumGetCString(v[0]);
	inst->suspended = strcmp(TextDatumGetCString(v[1]), "active") != 0;
	inst->seen_recently = !n[2] &&
		DatumGetTimestampTz(v[2]) > now - USECS_PER_MINUTE;

	if (!ut_fetch_by_key("installation_secrets", 1, key, 3, secret_cols, v, n))
		return false;
	inst->secret = TextDatumGetCString(v[0]);
	inst->previous_secret = !n[1] && !n[2] && DatumGetTimestampTz(v[2]) > now
		? TextDatumGetCString(v[1]) : NULL;

	account = CStringGetTextDatum(inst->account_id);
	if (!ut_fetch_by_key("accounts", 1, &account, 2, acct_cols, v, n))
		return false;
	if (strcmp(TextDatumGetCString(v[0]), "active") != 0)
		inst->suspended = true;

	key[0] = v[1];				/* the plan */
	if (!ut_fetch_by_key("plans", 1, key, 5, plan_cols, v, n))
		return false;
	inst->plan.rate_requests_5m = DatumGetInt32(v[0]);
	inst->plan.unlimited = n[1];
	inst->plan.monthly_requests = n[1] ? 0 : DatumGetInt64(v[1]);
	inst->plan.warning_pct = DatumGetInt32(v[2]);
	inst->plan.critical_pct = DatumGetInt32(v[3]);
	inst->plan.block_pct = DatumGetInt32(v[4]);
	inst->plan.used = 0;
	return true;
}

/*
 * The account's requests so far this month (recorded and pending), read
 * when the counters did not just write them.
 */
static int64
month_used(const char *account_id, TimestampTz now)
{
	static const char *const quota_cols[] = {"recorded", "pending"};
	Datum		key[2];
	Datum		v[2];
	bool		n[2];

	key[0] = CStringGetTextDatum(account_id);
	key[1] = DateADTGetDatum(ut_month_start(ut_utc_day(now)));
	if (ut_fetch_by_key("quota_usage", 2, key, 2, quota_cols, v, n))
		return DatumGetInt64(v[0]) + DatumGetInt64(v[1]);
	return 0;
}

static ArrayType *
text_array_or_nulls(Datum *values, bool *nulls, int n)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};

	return construct_md_array(values, nulls, 1, dims, lbs, TEXTOID, -1, false,
							  TYPALIGN_INT);
}

/*
 * Insert the valid events; return how many were new (the rest were
 * already stored).
 */
static int64
insert_events(const char *install_id, BatchEvent **valid, int n, TimestampTz now)
{
	Datum	   *event_id = palloc(sizeof(Datum) * n);
	Datum	   *user_hash = palloc(sizeof(Datum) * n);
	Datum	   *source = palloc(sizeof(Datum) * n);
	Datum	   *model = palloc(sizeof(Datum) * n);
	Datum	   *prompt = palloc(sizeof(Datum) * n);
	Datum	   *completion = palloc(sizeof(Datum) * n);
	Datum	   *cached = palloc(sizeof(Datum) * n);
	Datum	   *request_id = palloc(sizeof(Datum) * n);
	bool	   *request_null = palloc(sizeof(bool) * n);
	Datum	   *context = palloc(sizeof(Datum) * n);
	bool	   *context_null = palloc(sizeof(bool) * n);
	Datum	   *created = palloc(sizeof(Datum) * n);
	Datum		args[NUM_INSERT_ARGS];
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			ret;
	bool		isnull;

	for (int i = 0; i < n; i++)
	{
		BatchEvent *ev = valid[i];

		event_id[i] = CStringGetTextDatum(ev->event_id);
		user_hash[i] = CStringGetTextDatum(ev->wp_user_id_hash);
		source[i] = CStringGetTextDatum(ev->source);
		model[i] = CStringGetTextDatum(ev->model);
		prompt[i] = Int32GetDatum((int32) ev->prompt_tokens);
		completion[i] = Int32GetDatum((int32) ev->completion_tokens);
		cached[i] = Int32GetDatum((int32) ev->cached_prompt_tokens);
		request_null[i] = (ev->request_id == NULL);
		request_id[i] = request_null[i] ? (Datum) 0 : CStringGetTextDatum(ev->request_id);
		context_null[i] = (ev->context == NULL);
		context[i] = context_null[i] ? (Datum) 0 :
			PointerGetDatum(cstring_to_text_with_len(ev->context, ev->context_len));
		created[i] = TimestampTzGetDatum(ev->created_at);
	}

	args[0] = CStringGetTextDatum(install_id);
	args[1] = PointerGetDatum(text_array_or_nulls(event_id, NULL, n));
	args[2] = PointerGetDatum(text_array_or_nulls(user_hash, NULL, n));
	args[3] = PointerGetDatum(text_array_or_nulls(source, NULL, n));
	args[4] = PointerGetDatum(text_array_or_nulls(model, NULL, n));
	args[5] = PointerGetDatum(construct_array(prompt, n, INT4OID, 4, true, TYPALIGN_INT));
	args[6] = PointerGetDatum(construct_array(completion, n, INT4OID, 4, true, TYPALIGN_INT));
	args[7] = PointerGetDatum(construct_array(cached, n, INT4OID, 4, true, TYPALIGN_INT));
	args[8] = PointerGetDatum(text_array_or_nulls(request_id, request_null, n));
	args[9] = PointerGetDatum(construct_md_array(context, context_null, 1, dims, lbs,
												 TEXTOID, -1, false, TYPALIGN_INT));
	args[10] = PointerGetDatum(construct_array(created, n, TIMESTAMPTZOID, 8,
											   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[11] = TimestampTzGetDatum(now);

	if (insert_plan == NULL)
	{
		Oid			types[NUM_INSERT_ARGS] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID,
			TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID, INT4ARRAYOID, INT4ARRAYOID,
			TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID};

		insert_plan = ut_prepare_kept(
								   "WITH ins AS (INSERT INTO usage_tracking.events (install_id, event_id,"
								   " wp_user_id_hash, source, model, prompt_tokens, completion_tokens,"
								   " cached_prompt_tokens, request_id, context, created_at, received_at)"
								   " SELECT $1, e.event_id, e.user_hash, e.source, e.model, e.prompt,"
								   " e.completion, e.cached, e.request_id, e.context::jsonb, e.created_at, $12"
								   " FROM unnest($2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
								   " AS e(event_id, user_hash, source, model, prompt, completion,"
								   " cached, request_id, context, created_at)"
								   " ON CONFLICT DO NOTHING"
								   " RETURNING 1)"
								   " SELECT count(*) FROM ins",
								   NUM_INSERT_ARGS, types);
	}
	ret = SPI_execute_plan(insert_plan, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "event insert failed: %s", SPI_result_code_string(ret));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * SHA-256 of the idempotency keys of the valid events, in order: each
 * event_id, a NUL byte, created_at (microseconds since 2000-01-01 UTC, 8
 * bytes big-endian).  Two posts with the same digest hold the same keys; see
 * ut_store_events().
 */
static bytea *
keys_digest(BatchEvent **valid, int n)
{
	bytea	   *d = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	bool		ok = (ctx != NULL && pg_cryptohash_init(ctx) == 0);

	for (int i = 0; ok && i < n; i++)
	{
		uint64		created = pg_hton64((uint64) valid[i]->created_at);

		ok = pg_cryptohash_update(ctx, (const uint8 *) valid[i]->event_id,
								  strlen(valid[i]->event_id) + 1) == 0 &&
			pg_cryptohash_update(ctx, (const uint8 *) &created, sizeof(created)) == 0;
	}
	if (!ok ||
		pg_cryptohash_final(ctx, (uint8 *) VARDATA(d), PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not compute the batch digest: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	SET_VARSIZE(d, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	return d;
}

static void
covered_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == covered_events || relid == covered_daily)
		covered_valid = false;
}

/* (Re)start the cache of covered days, empty. */
static void
covered_reset(void)
{
	if (!covered_callback)
	{
		CacheRegisterRelcacheCallback(covered_invalidate, (Datum) 0);
		covered_callback = true;
	}
	covered_events = ut_relid("events");
	covered_daily = ut_relid("daily");
	covered_has_default =
		(OidIsValid(covered_events) &&
		 OidIsValid(get_default_partition_oid(covered_events))) ||
		(OidIsValid(covered_daily) &&
		 OidIsValid(get_default_partition_oid(covered_daily)));
	ncovered = 0;
	covered_valid = true;
}

static bool
covered_has(DateADT day)
{
	for (int i = 0; i < ncovered; i++)
		if (covered[i] == day)
			return true;
	return false;
}

/*
 * Make sure the partitions of the valid events' days exist (events for the
 * day, daily for its month) before anything is stored, so that neither the
 * direct path nor the INSERT statement finds a row without a partition.
 * Only a day missing from the cache costs a call of ensure_partitions().
 */
static void
ensure_days(BatchEvent **valid, int n)
{
	DateADT    *missing = NULL;
	int			nmissing = 0;
	DateADT		last = DATEVAL_NOEND;
	MemoryContext mcxt = CurrentMemoryContext;

	if (!covered_valid)
		covered_reset();
	if (covered_has_default)
		return;
	for (int i = 0; i < n; i++)
	{
		DateADT		day = ut_utc_day(valid[i]->created_at);
		bool		seen = false;

		if (day == last || covered_has(day))
		{
			last = day;
			continue;
		}
		if (missing == NULL)
			missing = palloc(sizeof(DateADT) * n);
		for (int j = 0; j < nmissing && !seen; j++)
			seen = (missing[j] == day);
		if (!seen)
			missing[nmissing++] = day;
	}
	if (nmissing == 0)
		return;

	if (ensure_plan == NULL)
	{
		Oid			types[1] = {TIMESTAMPTZOID};

		ensure_plan = ut_prepare_kept("SELECT usage_tracking.ensure_partitions($1, $1)",
									  1, types);
	}
	for (int j = 0; j < nmissing; j++)
	{
		Datum		args[1];
		int			ret;

		args[0] = TimestampTzGetDatum((TimestampTz) missing[j] * USECS_PER_DAY);
		ret = SPI_execute_plan(ensure_plan, args, NULL, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "ensure_partitions failed: %s", SPI_result_code_string(ret));
	}
	MemoryContextSwitchTo(mcxt);

	/*
	 * What was created invalidated the cache; the days are covered now (a
	 * rollback invalidates it again).
	 */
	if (!covered_valid)
		covered_reset();
	for (int j = 0; j < nmissing; j++)
	{
		if (ncovered == COVERED_MAX)
			ncovered = 0;
		covered[ncovered++] = missing[j];
	}
	pfree(missing);
}

/*
 * Record that the installation was seen at now, at one-minute resolution:
 * the row is rewritten (and locked) only when last_seen_at moves on by a
 * minute or more, so a retry within the minute writes nothing.
 */
static void
mark_seen(const char *install_id, TimestampTz now)
{
	Datum		args[2];
	int			ret;

	if (seen_plan == NULL)
	{
		Oid			types[2] = {TEXTOID, TIMESTAMPTZOID};

		seen_plan = ut_prepare_kept(
								 "UPDATE usage_tracking.installations"
								 " SET first_seen_at = coalesce(first_seen_at, $2),"
								 " last_seen_at = $2"
								 " WHERE install_id = $1"
								 " AND (last_seen_at IS NULL OR last_seen_at <= $2 - interval '1 minute')",
								 2, types);
	}
	args[0] = CStringGetTextDatum(install_id);
	args[1] = TimestampTzGetDatum(now);
	ret = SPI_execute_plan(seen_plan, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "installation update failed: %s", SPI_result_code_string(ret));
}

static int
event_ptr_cmp(const void *a, const void *b)
{
	const BatchEvent *ea = *(BatchEvent *const *) a;
	const BatchEvent *eb = *(BatchEvent *const *) b;
	int			c = strcmp(ea->event_id, eb->event_id);

	if (c != 0)
		return c;
	return ea->index - eb->index;
}

/*
 * Reject every repeat of an event_id within the batch after its first
 * occurrence.
 */
static void
reject_repeats(BatchEvent **valid, int n)
{
	BatchEvent **sorted;
	BatchEvent *first = NULL;

	if (n < 2)
		return;
	sorted = palloc(sizeof(BatchEvent *) * n);
	memcpy(sorted, valid, sizeof(BatchEvent *) * n);
	qsort(sorted, n, sizeof(BatchEvent *), event_ptr_cmp);
	for (int i = 0; i < n; i++)
	{
		if (first != NULL && strcmp(first->event_id, sorted[i]->event_id) == 0)
			sorted[i]->error = psprintf("event_id repeats the event at index %d",
										first->index);
		else
			first = sorted[i];
	}
}

/* SHA-256 of a..b as a bytea, the digests erasure_tombstones holds. */
static bytea *
tombstone_digest(const char *a, const char *b)
{
	bytea	   *d = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	bool		ok = (ctx != NULL && pg_cryptohash_init(ctx) == 0 &&
					  pg_cryptohash_update(ctx, (const uint8 *) a, strlen(a)) == 0);

	if (ok && b != NULL)
		ok = pg_cryptohash_update(ctx, (const uint8 *) ":", 1) == 0 &&
			pg_cryptohash_update(ctx, (const uint8 *) b, strlen(b)) == 0;
	if (!ok ||
		pg_cryptohash_final(ctx, (uint8 *) VARDATA(d), PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not compute a digest: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	SET_VARSIZE(d, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	return d;
}

/*
 * Refuse the events forget_user() or forget_installation() erased: those of
 * an erased user (or installation) created before its erasure, should a
 * captured request be replayed or the plugin send what it still had queued.
 * One primary-key probe per post; digests only when the installation has a
 * tombstone.  Without the table (the 1.0 SQL) there is nothing to refuse.
 */
static void
reject_erased(const char *install_id, BatchEvent **valid, int n)
{
	static const char *const cols[] = {"installation_erased_at", "user_keys", "user_erased_at"};
	Datum		key;
	Datum		v[3];
	bool		isnull[3];
	Datum	   *ukeys = NULL;
	Datum	   *utimes = NULL;
	int			nkeys = 0,
				ntimes = 0;

	if (n == 0 || !OidIsValid(ut_relid("erasure_tombstones")))
		return;
	key = PointerGetDatum(tombstone_digest(install_id, NULL));
	if (!ut_fetch_by_key("erasure_tombstones", 1, &key, 3, cols, v, isnull))
		return;
	if (!isnull[1] && !isnull[2])
	{
		deconstruct_array(DatumGetArrayTypeP(v[1]), BYTEAOID, -1, false, TYPALIGN_INT,
						  &ukeys, NULL, &nkeys);
		deconstruct_array(DatumGetArrayTypeP(v[2]), TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL,
						  TYPALIGN_DOUBLE, &utimes, NULL, &ntimes);
		if (ntimes < nkeys)
			nkeys = ntimes;
	}
	for (int i = 0; i < n; i++)
	{
		BatchEvent *ev = valid[i];
		bytea	   *ukey;

		if (!isnull[0] && ev->created_at < DatumGetTimestampTz(v[0]))
		{
			ev->error = "the installation was erased after this event was created";
			continue;
		}
		if (nkeys == 0)
			continue;
		ukey = tombstone_digest(install_id, ev->wp_user_id_hash);
		for (int j = 0; j < nkeys; j++)
		{
			bytea	   *k = DatumGetByteaPP(ukeys[j]);

			if (VARSIZE_ANY_EXHDR(k) == PG_SHA256_DIGEST_LENGTH &&
				memcmp(VARDATA_ANY(k), VARDATA(ukey), PG_SHA256_DIGEST_LENGTH) == 0 &&
				ev->created_at < DatumGetTimestampTz(utimes[j]))
			{
				ev->error = "this user's events were erased after this event was created";
				break;
			}
		}
	}
}

/* Pieces of the jsonb response. */
static void
push_string(JsonbParseState **st, JsonbIteratorToken as, const char *str)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) str;
	v.val.string.len = strlen(str);
	pushJsonbValue(st, as, &v);
}

static void
push_key(JsonbParseState **st, const char *key)
{
	push_string(st, WJB_KEY, key);
}

static void
push_int(JsonbParseState **st, JsonbIteratorToken as, int64 n)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(n);
	pushJsonbValue(st, as, &v);
}

static void
push_bool(JsonbParseState **st, JsonbIteratorToken as, bool b)
{
	JsonbValue	v;

	v.type = jbvBool;
	v.val.boolean = b;
	pushJsonbValue(st, as, &v);
}

static void
push_null(JsonbParseState **st, JsonbIteratorToken as)
{
	JsonbValue	v;

	v.type = jbvNull;
	pushJsonbValue(st, as, &v);
}

/* One request on its way through the stages. */
typedef struct IngestState
{
	const UtIngestRequest *req;
	uint8		mac[UT_MAC_LEN];	/* of the signature header */
	const char *ts_str;			/* its timestamp, as signed */
	size_t		ts_len;
	Batch		batch;
	Installation inst;
	BatchEvent **valid;			/* events that passed validation */
	int			nvalid;
	bool	   *is_new;			/* per valid event, on the direct path */
	bool		direct;			/* stored directly (else by a statement) */
	int64		inserted;		/* new events */
	UtQuotaWatch watch;
	UtQuotaPlan verdict;
} IngestState;

/*
 * Stage 1, verify: the request as a whole, before anything is written.
 * Body size, signature header, timestamp window, JSON shape, installation,
 * MAC (constant time, current or rotated-out secret), installation and
 * account status, account match.  Connects SPI (the caller finishes it).
 */
static void
ingest_verify(IngestState *s)
{
	const UtIngestRequest *req = s->req;
	int64		sig_ts;
	int64		now_unix;
	BatchStatus status;
	const char *errmsg_text = NULL;
	bool		signature_ok;

	if (req->body == NULL)
		ereport(ERROR,
				(errcode(UT_ERRCODE_INVALID_BATCH),
				 errmsg("request body is required")));
	if (req->signature == NULL)
		ereport(ERROR,
				(errcode(UT_ERRCODE_MISSING_SIGNATURE),
				 errmsg("X-Install-Signature is required")));
	if (req->body_len > ut_max_body_bytes)
		ereport(ERROR,
				(errcode(UT_ERRCODE_BODY_TOO_LARGE),
				 errmsg("request body of %d bytes exceeds usage_tracking.max_body_bytes (%d)",
						req->body_len, ut_max_body_bytes)));

	if (req->signature_len == 0)
		ereport(ERROR,
				(errcode(UT_ERRCODE_MISSING_SIGNATURE),
				 errmsg("X-Install-Signature is required")));
	if (!ut_parse_signature_header(req->signature, req->signature_len,
								   s->mac, &sig_ts, &s->ts_str, &s->ts_len))
		ereport(ERROR,
				(errcode(UT_ERRCODE_MISSING_SIGNATURE),
				 errmsg("malformed X-Install-Signature"),
				 errhint("Send \"<64 hex HMAC-SHA256>:<unix seconds>\".")));

	now_unix = (req->now / USECS_PER_SEC) +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
	if (sig_ts > now_unix + ut_signature_tolerance ||
		sig_ts < now_unix - ut_signature_tolerance)
		ereport(ERROR,
				(errcode(UT_ERRCODE_STALE_SIGNATURE),
				 errmsg("signature timestamp is more than %d seconds from the server clock",
						ut_signature_tolerance),
				 errhint("Check the site's clock; sign each request when it is sent.")));

	status = ut_batch_parse(req->body, req->body_len, ut_max_batch_events, &s->batch,
							&errmsg_text);
	if (status == BATCH_MALFORMED_JSON)
		ereport(ERROR,
				(errcode(UT_ERRCODE_MALFORMED_JSON),
				 errmsg("request body is not valid JSON"),
				 errdetail_internal("%s", errmsg_text)));
	if (status == BATCH_INVALID)
		ereport(ERROR,
				(errcode(UT_ERRCODE_INVALID_BATCH),
				 errmsg("invalid batch: %s", errmsg_text)));
	if (status == BATCH_TOO_MANY_EVENTS)
		ereport(ERROR,
				(errcode(UT_ERRCODE_TOO_MANY_EVENTS),
				 errmsg("too many events: %s", errmsg_text),
				 errhint("Split the batch; see usage_tracking.max_batch_events.")));

	if (!ut_valid_install_id(s->batch.install_id))
		ereport(ERROR,
				(errcode(UT_ERRCODE_INVALID_BATCH),
				 errmsg("invalid batch: install_id must be {uuid-v4}_{12 lowercase hex}")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * An unknown installation fails exactly like a wrong secret, so that
	 * nobody can probe which installations exist: not by the answer, nor by
	 * the time it takes.  Every post that is not signed with the current
	 * secret computes two MACs over its body, with the current and the
	 * previous secret, or with a dummy key where the installation or its
	 * previous secret is missing; a match under a dummy key counts for
	 * nothing.  Only a post signed with the current secret of an existing
	 * installation stops after the first, and that tells its sender nothing
	 * the answer does not.
	 */
	{
		bool		found = fetch_installation(s->batch.install_id, req->now, &s->inst);
		bool		current_ok,
					previous_ok = false;
		uint64		macs = ut_signature_macs;
		int			n;

		current_ok = ut_signature_matches(found ? s->inst.secret : dummy_key,
										  s->mac, s->ts_str, s->ts_len,
										  req->body, req->body_len);
		if (!(found && current_ok))
			previous_ok = ut_signature_matches(found && s->inst.previous_secret
											   ? s->inst.previous_secret : dummy_key,
											   s->mac, s->ts_str, s->ts_len,
											   req->body, req->body_len);
		n = (int) (ut_signature_macs - macs);
		elog(DEBUG1, "usage_tracking: signature checked with %d MAC%s over %d body bytes",
			 n, n == 1 ? "" : "s", (int) req->body_len);
		signature_ok = found &&
			(current_ok || (s->inst.previous_secret != NULL && previous_ok));
	}
	if (!signature_ok)
		ereport(ERROR,
				(errcode(UT_ERRCODE_INVALID_SIGNATURE),
				 errmsg("signature verification failed"),
				 errhint("Sign \"<timestamp>.<body>\" with the installation secret.")));

	if (s->inst.suspended)
		ereport(ERROR,
				(errcode(UT_ERRCODE_SUSPENDED),
				 errmsg("installation or its account is suspended")));
	if (s->batch.account_id != NULL && strcmp(s->batch.account_id, s->inst.account_id) != 0)
		ereport(ERROR,
				(errcode(UT_ERRCODE_ACCOUNT_MISMATCH),
				 errmsg("account_id of the batch is not the installation's account")));
	if (req->caller_account != NULL && strcmp(req->caller_account, s->inst.account_id) != 0)
		ereport(ERROR,
				(errcode(UT_ERRCODE_ACCOUNT_MISMATCH),
				 errmsg("installation does not belong to the caller's account")));
}

/*
 * Stage 2, validate: each event's rules (rejected ones are answered, not
 * stored), then every repeat of an event_id after its first occurrence.
 */
static void
ingest_validate(IngestState *s)
{
	int			kept = 0;

	s->valid = palloc(sizeof(BatchEvent *) * Max(s->batch.nevents, 1));
	s->nvalid = 0;
	for (int i = 0; i < s->batch.nevents; i++)
	{
		BatchEvent *ev = &s->batch.events[i];

		CHECK_FOR_INTERRUPTS();
		ut_event_validate(ev, s->req->now, (int64) ut_event_retention * USECS_PER_SEC);
		if (ev->error == NULL)
			s->valid[s->nvalid++] = ev;
	}
	reject_repeats(s->valid, s->nvalid);
	reject_erased(s->batch.install_id, s->valid, s->nvalid);
	for (int i = 0; i < s->nvalid; i++)
		if (s->valid[i]->error == NULL)
			s->valid[kept++] = s->valid[i];
	s->nvalid = kept;
}

/*
 * Stage 3, store: the installation row first, as void_event() takes it;
 * then the events, directly when the events table allows it (store.c, which
 * tells which ones are new), else through an INSERT statement whose trigger
 * also summarizes them.
 */
static void
ingest_store(IngestState *s)
{
	const char *install_id = s->batch.install_id;
	TimestampTz now = s->req->now;

	s->inserted = 0;
	s->direct = false;
	if (s->nvalid == 0)
		return;
	if (!s->inst.seen_recently)
		mark_seen(install_id, now);
	ensure_days(s->valid, s->nvalid);
	s->is_new = palloc(sizeof(bool) * s->nvalid);
	s->direct = ut_store_events(install_id, s->valid, s->nvalid, now,
								keys_digest(s->valid, s->nvalid), s->is_new);
	if (s->direct)
	{
		for (int i = 0; i < s->nvalid; i++)
			s->inserted += s->is_new[i];
	}
	else
		s->inserted = insert_events(install_id, s->valid, s->nvalid, now);
}

/*
 * Stage 4, summarise: the new events of the direct path into the daily
 * summaries and the counters (counters and summaries in key order), then
 * the post into the rate window and the quota verdict.  Returns false when
 * the post is over the plan's rate (*limited says how).
 */
static bool
ingest_summarise(IngestState *s, UtRateLimited *limited)
{
	const char *account_id = s->inst.account_id;
	TimestampTz now = s->req->now;

	s->watch.account_id = account_id;
	s->watch.month = ut_month_start(ut_utc_day(now));
	if (s->direct && s->inserted > 0)
	{
		SummaryRow *rows = palloc(sizeof(SummaryRow) * s->inserted);
		int			nnew = 0;

		ut_price_cache_begin();
		for (int i = 0; i < s->nvalid; i++)
		{
			BatchEvent *ev = s->valid[i];
			SummaryRow *r;

			if (!s->is_new[i])
				continue;
			r = &rows[nnew++];
			r->install_id = (char *) s->batch.install_id;
			r->account_id = account_id;
			r->user_hash = ev->wp_user_id_hash;
			r->source = ev->source;
			r->model = ev->model;
			r->day = ut_utc_day(ev->created_at);
			r->created = ev->created_at;
			r->price = ut_price_lookup(ev->model, ev->created_at);
			r->prompt = ev->prompt_tokens;
			r->completion = ev->completion_tokens;
			r->cached = ev->cached_prompt_tokens;
		}
		ut_summarize(rows, nnew, &s->watch);
	}

	/*
	 * The month's usage as this post leaves it: as the counters wrote it,
	 * else read; ut_ingest_quota() reads it itself when they were kept by a
	 * statement.
	 */
	if (s->inserted == 0 || s->watch.counted)
		s->inst.plan.used = s->watch.updated ? s->watch.used
			: month_used(account_id, now);
	return ut_ingest_quota(s->batch.install_id, account_id, s->inserted, now,
						   s->inserted == 0 || s->watch.counted ? &s->inst.plan : NULL,
						   &s->verdict, limited);
}

/*
 * Stage 5, respond: {success, received, duplicates, event_ids, rejected,
 * quota}, built as jsonb.
 */
static Jsonb *
ingest_respond(IngestState *s, MemoryContext result_cxt)
{
	JsonbParseState *st = NULL;
	JsonbValue *v;
	MemoryContext old;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_key(&st, "success");
	push_bool(&st, WJB_VALUE, true);
	push_key(&st, "received");
	push_int(&st, WJB_VALUE, s->nvalid);
	push_key(&st, "duplicates");
	push_int(&st, WJB_VALUE, (int64) s->nvalid - s->inserted);
	push_key(&st, "event_ids");
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < s->nvalid; i++)
		push_string(&st, WJB_ELEM, s->valid[i]->event_id);
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	push_key(&st, "rejected");
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < s->batch.nevents; i++)
	{
		BatchEvent *ev = &s->batch.events[i];

		if (ev->error == NULL)
			continue;
		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		push_key(&st, "index");
		push_int(&st, WJB_VALUE, ev->index);
		push_key(&st, "event_id");
		if (ev->event_id && ut_valid_event_id(ev->event_id))
			push_string(&st, WJB_VALUE, ev->event_id);
		else
			push_null(&st, WJB_VALUE);
		push_key(&st, "error");
		push_string(&st, WJB_VALUE, ev->error);
		pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	}
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	push_key(&st, "quota");
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_key(&st, "level");
	push_string(&st, WJB_VALUE, ut_quota_level(&s->verdict));
	push_key(&st, "used");
	push_int(&st, WJB_VALUE, s->verdict.used);
	push_key(&st, "limit");
	if (s->verdict.unlimited)
		push_null(&st, WJB_VALUE);
	else
		push_int(&st, WJB_VALUE, s->verdict.monthly_requests);
	pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	v = pushJsonbValue(&st, WJB_END_OBJECT, NULL);

	old = MemoryContextSwitchTo(result_cxt);
	{
		Jsonb	   *result = JsonbValueToJsonb(v);

		MemoryContextSwitchTo(old);
		return result;
	}
}

/*
 * The ingest API: verify, validate, store, summarise, respond.  Any
 * whole-request failure raises (one of usage_tracking.error_codes' SQLSTATEs)
 * and, as the caller's error, rolls back whatever was written.  A post over
 * its plan's rate returns with result->rate_limited set and the response
 * NULL: the caller must raise it (ut_raise_rate_limited(), or as HTTP 429),
 * which rolls the post back.  The response is allocated in the caller's
 * memory context.
 */
void
ut_ingest(const UtIngestRequest *req, UtIngestResult *result)
{
	IngestState s = {0};
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext work;

	s.req = req;
	result->response = (Datum) 0;
	result->rate_limited = false;

	work = AllocSetContextCreate(caller, "usage_tracking ingest", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(work);

	ingest_verify(&s);			/* connects SPI */

	/*
	 * SPI calls leave SPI's procedure context current, and SPI_finish() frees
	 * it; what the response is built from must live in work.
	 */
	MemoryContextSwitchTo(work);
	ingest_validate(&s);
	ingest_store(&s);
	if (!ingest_summarise(&s, &result->limited))
		result->rate_limited = true;
	SPI_finish();

	MemoryContextSwitchTo(work);
	if (!result->rate_limited)
		result->response = JsonbPGetDatum(ingest_respond(&s, caller));
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(work);
}

/*
 * SQL function: ingest(body text, signature text, now timestamptz,
 *                      caller_account text) returns jsonb
 */
Datum
usage_tracking_ingest(PG_FUNCTION_ARGS)
{
	UtIngestRequest req = {0};
	UtIngestResult result;

	if (!PG_ARGISNULL(0))
	{
		text	   *body = PG_GETARG_TEXT_PP(0);

		req.body = VARDATA_ANY(body);
		req.body_len = VARSIZE_ANY_EXHDR(body);
	}
	if (!PG_ARGISNULL(1))
	{
		text	   *sig = PG_GETARG_TEXT_PP(1);

		req.signature = VARDATA_ANY(sig);
		req.signature_len = VARSIZE_ANY_EXHDR(sig);
	}
	req.now = PG_ARGISNULL(2) ? GetCurrentTransactionStartTimestamp()
		: PG_GETARG_TIMESTAMPTZ(2);
	req.caller_account = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));

	ut_ingest(&req, &result);
	if (result.rate_limited)
		ut_raise_rate_limited(&result.limited);
	PG_RETURN_DATUM(result.response);
}
