/*-------------------------------------------------------------------------
 *
 * src/ingest.c
 *		usage_tracking.ingest(): verify a site's signed batch and store it
 *		exactly once.
 *
 * Order of checks: body size, signature header, timestamp window, JSON
 * shape, installation, MAC (constant time, current or rotated-out secret),
 * installation and account status, account match, then each event.  Any
 * whole-request failure raises before anything is written.  Valid events go
 * in with one INSERT ... ON CONFLICT DO NOTHING; the events trigger keeps the
 * daily summaries current in the same statement.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

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

/*
 * Store the valid events and summarize the new ones: directly when the
 * events table allows it (store.c), else through an INSERT statement whose
 * trigger summarizes.  Returns how many were new.
 */
static int64
store_events(const char *install_id, const char *account_id, BatchEvent **valid,
			 int n, TimestampTz now, UtQuotaWatch *watch)
{
	bool	   *is_new = palloc(sizeof(bool) * n);
	SummaryRow *rows;
	int			nnew = 0;

	if (!ut_store_events(install_id, valid, n, now, keys_digest(valid, n), is_new))
		return insert_events(install_id, valid, n, now);

	rows = palloc(sizeof(SummaryRow) * n);
	ut_price_cache_begin();
	for (int i = 0; i < n; i++)
	{
		BatchEvent *ev = valid[i];
		SummaryRow *r;

		if (!is_new[i])
			continue;
		r = &rows[nnew++];
		r->install_id = (char *) install_id;
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
	ut_summarize(rows, nnew, watch);
	return nnew;
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

/*
 * SQL function: ingest(body text, signature text, now timestamptz,
 *                      caller_account text) returns jsonb
 */
Datum
usage_tracking_ingest(PG_FUNCTION_ARGS)
{
	text	   *body_t;
	text	   *sig_t;
	TimestampTz now;
	char	   *caller_account = NULL;
	const char *body;
	int			body_len;
	uint8		mac[UT_MAC_LEN];
	int64		sig_ts;
	const char *ts_str;
	size_t		ts_len;
	int64		now_unix;
	Batch		batch;
	BatchStatus status;
	const char *errmsg_text = NULL;
	Installation inst;
	UtQuotaWatch watch = {0};
	BatchEvent **valid;
	int			nvalid = 0;
	int64		inserted = 0;
	UtQuotaPlan verdict;
	MemoryContext work;
	MemoryContext old;
	Datum		result;
	bool		signature_ok;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(UT_ERRCODE_INVALID_BATCH),
				 errmsg("request body is required")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(UT_ERRCODE_MISSING_SIGNATURE),
				 errmsg("X-Install-Signature is required")));
	now = PG_ARGISNULL(2) ? GetCurrentTransactionStartTimestamp() : PG_GETARG_TIMESTAMPTZ(2);
	if (!PG_ARGISNULL(3))
		caller_account = text_to_cstring(PG_GETARG_TEXT_PP(3));

	body_t = PG_GETARG_TEXT_PP(0);
	sig_t = PG_GETARG_TEXT_PP(1);
	body = VARDATA_ANY(body_t);
	body_len = VARSIZE_ANY_EXHDR(body_t);

	if (body_len > ut_max_body_bytes)
		ereport(ERROR,
				(errcode(UT_ERRCODE_BODY_TOO_LARGE),
				 errmsg("request body of %d bytes exceeds usage_tracking.max_body_bytes (%d)",
						body_len, ut_max_body_bytes)));

	if (VARSIZE_ANY_EXHDR(sig_t) == 0)
		ereport(ERROR,
				(errcode(UT_ERRCODE_MISSING_SIGNATURE),
				 errmsg("X-Install-Signature is required")));
	if (!ut_parse_signature_header(VARDATA_ANY(sig_t), VARSIZE_ANY_EXHDR(sig_t),
								   mac, &sig_ts, &ts_str, &ts_len))
		ereport(ERROR,
				(errcode(UT_ERRCODE_MISSING_SIGNATURE),
				 errmsg("malformed X-Install-Signature"),
				 errhint("Send \"<64 hex HMAC-SHA256>:<unix seconds>\".")));

	now_unix = (now / USECS_PER_SEC) +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
	if (sig_ts > now_unix + ut_signature_tolerance ||
		sig_ts < now_unix - ut_signature_tolerance)
		ereport(ERROR,
				(errcode(UT_ERRCODE_STALE_SIGNATURE),
				 errmsg("signature timestamp is more than %d seconds from the server clock",
						ut_signature_tolerance),
				 errhint("Check the site's clock; sign each request when it is sent.")));

	work = AllocSetContextCreate(CurrentMemoryContext, "usage_tracking ingest",
								 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(work);

	status = ut_batch_parse(body, body_len, ut_max_batch_events, &batch, &errmsg_text);
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

	if (!ut_valid_install_id(batch.install_id))
		ereport(ERROR,
				(errcode(UT_ERRCODE_INVALID_BATCH),
				 errmsg("invalid batch: install_id must be {uuid-v4}_{12 lowercase hex}")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * An unknown installation fails exactly like a wrong secret, so that
	 * nobody can probe which installations exist: not by the answer, nor by
	 * the time it takes.  Every post computes two MACs over its body, with
	 * the current and the previous secret, or with a dummy key where the
	 * installation or its previous secret is missing; a match under a dummy
	 * key counts for nothing.
	 */
	{
		bool		found = fetch_installation(batch.install_id, now, &inst);
		bool		current_ok,
					previous_ok;
		uint64		macs = ut_signature_macs;

		current_ok = ut_signature_matches(found ? inst.secret : dummy_key,
										  mac, ts_str, ts_len, body, body_len);
		previous_ok = ut_signature_matches(found && inst.previous_secret ? inst.previous_secret : dummy_key,
										   mac, ts_str, ts_len, body, body_len);
		elog(DEBUG1, "usage_tracking: signature checked with %d MACs over %d body bytes",
			 (int) (ut_signature_macs - macs), body_len);
		signature_ok = found && (current_ok || (inst.previous_secret != NULL && previous_ok));
	}
	if (!signature_ok)
		ereport(ERROR,
				(errcode(UT_ERRCODE_INVALID_SIGNATURE),
				 errmsg("signature verification failed"),
				 errhint("Sign \"<timestamp>.<body>\" with the installation secret.")));

	if (inst.suspended)
		ereport(ERROR,
				(errcode(UT_ERRCODE_SUSPENDED),
				 errmsg("installation or its account is suspended")));
	if (batch.account_id != NULL && strcmp(batch.account_id, inst.account_id) != 0)
		ereport(ERROR,
				(errcode(UT_ERRCODE_ACCOUNT_MISMATCH),
				 errmsg("account_id of the batch is not the installation's account")));
	if (caller_account != NULL && strcmp(caller_account, inst.account_id) != 0)
		ereport(ERROR,
				(errcode(UT_ERRCODE_ACCOUNT_MISMATCH),
				 errmsg("installation does not belong to the caller's account")));

	/*
	 * SPI calls leave SPI's procedure context current, and SPI_finish() frees
	 * it; what the response is built from must live in work.
	 */
	MemoryContextSwitchTo(work);

	/* Per-event rules. */
	valid = palloc(sizeof(BatchEvent *) * batch.nevents);
	for (int i = 0; i < batch.nevents; i++)
	{
		BatchEvent *ev = &batch.events[i];

		ut_event_validate(ev, now, (int64) ut_event_retention * USECS_PER_SEC);
		if (ev->error == NULL)
			valid[nvalid++] = ev;
	}
	reject_repeats(valid, nvalid);
	reject_erased(batch.install_id, valid, nvalid);
	{
		int			kept = 0;

		for (int i = 0; i < nvalid; i++)
			if (valid[i]->error == NULL)
				valid[kept++] = valid[i];
		nvalid = kept;
	}

	/*
	 * The installation row first, as void_event() takes it: then counters
	 * and summaries, in key order.
	 */
	if (nvalid > 0)
	{
		watch.account_id = inst.account_id;
		watch.month = ut_month_start(ut_utc_day(now));
		if (!inst.seen_recently)
			mark_seen(batch.install_id, now);
		inserted = store_events(batch.install_id, inst.account_id, valid, nvalid,
								now, &watch);
	}

	/*
	 * The month's usage as this post leaves it: as the counters wrote it,
	 * else read; ut_ingest_quota() reads it itself when they were kept by a
	 * statement.
	 */
	if (inserted == 0 || watch.counted)
		inst.plan.used = watch.updated ? watch.used : month_used(inst.account_id, now);
	ut_ingest_quota(batch.install_id, inst.account_id, inserted, now,
					inserted == 0 || watch.counted ? &inst.plan : NULL, &verdict);
	SPI_finish();

	/* The response, built as jsonb. */
	{
		JsonbParseState *st = NULL;

		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		push_key(&st, "success");
		push_bool(&st, WJB_VALUE, true);
		push_key(&st, "received");
		push_int(&st, WJB_VALUE, nvalid);
		push_key(&st, "duplicates");
		push_int(&st, WJB_VALUE, (int64) nvalid - inserted);
		push_key(&st, "event_ids");
		pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
		for (int i = 0; i < nvalid; i++)
			push_string(&st, WJB_ELEM, valid[i]->event_id);
		pushJsonbValue(&st, WJB_END_ARRAY, NULL);
		push_key(&st, "rejected");
		pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
		for (int i = 0; i < batch.nevents; i++)
		{
			BatchEvent *ev = &batch.events[i];

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
		push_string(&st, WJB_VALUE, ut_quota_level(&verdict));
		push_key(&st, "used");
		push_int(&st, WJB_VALUE, verdict.used);
		push_key(&st, "limit");
		if (verdict.unlimited)
			push_null(&st, WJB_VALUE);
		else
			push_int(&st, WJB_VALUE, verdict.monthly_requests);
		pushJsonbValue(&st, WJB_END_OBJECT, NULL);

		MemoryContextSwitchTo(old);
		result = JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL)));
	}
	MemoryContextDelete(work);
	PG_RETURN_DATUM(result);
}
