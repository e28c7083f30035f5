/*-------------------------------------------------------------------------
 *
 * src/usage_tracking.h
 *		Declarations shared by the C files of the usage_tracking extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef USAGE_TRACKING_H
#define USAGE_TRACKING_H

#include "postgres.h"

#include "utils/date.h"
#include "utils/numeric.h"

#include "batch.h"
#include "signature.h"

/*
 * SQLSTATEs raised for whole-request errors.  The HTTP front maps each one to
 * a status through usage_tracking.error_codes; keep both in step.
 */
#define UT_ERRCODE_MALFORMED_JSON		MAKE_SQLSTATE('U','T','B','0','1')
#define UT_ERRCODE_INVALID_BATCH		MAKE_SQLSTATE('U','T','B','0','2')
#define UT_ERRCODE_MISSING_SIGNATURE	MAKE_SQLSTATE('U','T','A','0','1')
#define UT_ERRCODE_INVALID_SIGNATURE	MAKE_SQLSTATE('U','T','A','0','2')
#define UT_ERRCODE_STALE_SIGNATURE		MAKE_SQLSTATE('U','T','A','0','3')
#define UT_ERRCODE_SUSPENDED			MAKE_SQLSTATE('U','T','F','0','1')
#define UT_ERRCODE_ACCOUNT_MISMATCH		MAKE_SQLSTATE('U','T','F','0','2')
#define UT_ERRCODE_BODY_TOO_LARGE		MAKE_SQLSTATE('U','T','L','0','1')
#define UT_ERRCODE_TOO_MANY_EVENTS		MAKE_SQLSTATE('U','T','L','0','2')
#define UT_ERRCODE_RATE_LIMITED			MAKE_SQLSTATE('U','T','R','0','1')

/* GUCs (usage_tracking.c) */
extern int	ut_signature_tolerance;	/* seconds */
extern int	ut_max_batch_events;
extern int	ut_max_body_bytes;
extern int	ut_secret_grace;		/* seconds */
extern int	ut_event_retention;		/* seconds */
extern int	ut_daily_retention;		/* seconds */

/* usage_tracking.c */
struct _SPI_plan;
extern struct _SPI_plan *ut_prepare_kept(const char *sql, int nargs, Oid *types);
extern Oid	ut_relid(const char *relname);

/* hmac.c */
extern void ut_hmac_sha256(const uint8 *key, size_t keylen,
						   const uint8 *part1, size_t len1,
						   const uint8 *part2, size_t len2,
						   const uint8 *part3, size_t len3,
						   uint8 *out);
extern uint64 ut_signature_macs;
extern bool ut_signature_matches(const char *secret, const uint8 *mac,
								 const char *ts_str, size_t ts_len,
								 const char *body, size_t body_len);

/* pricing.c */
typedef struct PriceRow
{
	TimestampTz effective_from;
	Datum		prompt;			/* Numeric, per 1 M tokens */
	Datum		completion;
	Datum		cached;			/* prompt price when no cached rate */
} PriceRow;

extern void ut_price_cache_begin(void);
extern const PriceRow *ut_price_lookup(const char *model, TimestampTz at);
extern Numeric ut_price_cost(const PriceRow *price, int64 uncached_prompt,
							 int64 cached_prompt, int64 completion);

/* summary.c */
typedef struct SummaryRow
{
	char	   *install_id;
	char	   *user_hash;
	char	   *source;
	char	   *model;
	DateADT		day;
	TimestampTz created;
	const char *account_id;		/* NULL for an unknown installation */
	const PriceRow *price;		/* NULL when unpriced */
	int64		prompt;
	int64		completion;
	int64		cached;
} SummaryRow;

/* What ut_summarize() tells about one account's month of quota_usage. */
typedef struct UtQuotaWatch
{
	const char *account_id;
	DateADT		month;
	bool		counted;		/* quota_usage was written directly */
	bool		updated;		/* ... and this row was */
	int64		used;			/* its recorded + pending then */
} UtQuotaWatch;

extern void ut_summarize(SummaryRow *rows, int n, UtQuotaWatch *watch);
extern DateADT ut_utc_day(TimestampTz ts);
extern DateADT ut_month_start(DateADT day);

/* quota.c */
typedef struct UtQuotaPlan
{
	int			rate_requests_5m;
	bool		unlimited;
	int64		monthly_requests;
	int			warning_pct;
	int			critical_pct;
	int			block_pct;
	int64		used;			/* recorded + pending this month */
} UtQuotaPlan;

/* A post refused for its rate: the plan's limit and when to retry. */
typedef struct UtRateLimited
{
	int			rate_requests_5m;
	bool		can_retry;		/* false: not even an empty window admits it */
	int			retry_after_s;	/* when can_retry */
} UtRateLimited;

#define UT_WINDOW_SLOTS 5

extern void ut_window_shift(int64 *slots, TimestampTz slot_minute, TimestampTz at_minute);
extern void ut_window_from_array(Datum array, int64 *slots);
extern bool ut_window_retry_after(const int64 *slots, TimestampTz at_minute,
								  TimestampTz now, int64 excess, int *seconds);
extern bool ut_window_admit(int64 *slots, TimestampTz *slot_minute, TimestampTz now,
							int64 n, int64 limit, bool *can_retry, int *retry_after_s);
extern void ut_rate_limited_text(const UtRateLimited *r, char **message, char **detail,
								 const char **hint);
extern void ut_raise_rate_limited(const UtRateLimited *r) pg_attribute_noreturn();
extern bool ut_ingest_quota(const char *install_id, const char *account_id,
							int64 new_requests, TimestampTz now,
							const UtQuotaPlan *known, UtQuotaPlan *verdict,
							UtRateLimited *limited);
extern const char *ut_quota_level(const UtQuotaPlan *plan);

/* ingest.c: the ingest API both SQL entry points call */
typedef struct UtIngestRequest
{
	const char *body;			/* the raw body; NULL: none */
	int			body_len;
	const char *signature;		/* X-Install-Signature; NULL: none */
	int			signature_len;
	TimestampTz now;
	const char *caller_account; /* the caller's account; NULL: not checked */
} UtIngestRequest;

typedef struct UtIngestResult
{
	Datum		response;		/* jsonb; 0 when rate_limited */
	bool		rate_limited;	/* the caller must raise it */
	UtRateLimited limited;
} UtIngestResult;

extern void ut_ingest(const UtIngestRequest *req, UtIngestResult *result);

/* store.c */
extern bool ut_store_events(const char *install_id, BatchEvent **valid, int n,
							TimestampTz now, const bytea *digest,
							bool *is_new);

#endif							/* USAGE_TRACKING_H */
