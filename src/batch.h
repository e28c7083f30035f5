/*-------------------------------------------------------------------------
 *
 * src/batch.h
 *		Parsing and validation of a site's JSON batch.  The parser has no
 *		backend dependencies beyond palloc and the common JSON lexer, so the
 *		fuzz harnesses link it outside the server.
 *
 *-------------------------------------------------------------------------
 */
#ifndef UT_BATCH_H
#define UT_BATCH_H

#include "datatype/timestamp.h"

#define UT_CONTEXT_MAX_BYTES	4096
#define UT_FUTURE_TOLERANCE_USECS	(INT64CONST(300) * USECS_PER_SEC)

typedef struct BatchEvent
{
	int			index;			/* position in the events array */
	const char *error;			/* first reason to reject, or NULL */
	char	   *event_id;
	char	   *wp_user_id_hash;
	char	   *source;
	char	   *model;
	char	   *request_id;
	char	   *created_at_text;
	const char *context;		/* raw JSON text of the context object */
	int			context_len;
	void	   *context_jsonb;	/* the same as a Jsonb (server builds only) */
	int64		prompt_tokens;
	int64		completion_tokens;
	int64		total_tokens;
	int64		cached_prompt_tokens;
	bool		has_prompt;
	bool		has_completion;
	bool		has_total;
	bool		has_cached;
	TimestampTz created_at;
} BatchEvent;

typedef struct Batch
{
	char	   *install_id;
	char	   *account_id;
	BatchEvent *events;
	int			nevents;
	int			capacity;
} Batch;

typedef enum BatchStatus
{
	BATCH_OK,
	BATCH_MALFORMED_JSON,		/* not JSON at all */
	BATCH_INVALID,				/* JSON, but not a batch */
	BATCH_TOO_MANY_EVENTS
} BatchStatus;

/*
 * Parse body (len bytes, not necessarily NUL-terminated) into *batch.  On
 * failure *errmsg says why, in words safe to show the client.
 */
extern BatchStatus ut_batch_parse(const char *body, int len, int max_events,
								  Batch *batch, const char **errmsg);

/* Set ev->error when the event breaks a field rule. */
extern void ut_event_validate(BatchEvent *ev, TimestampTz now,
							  int64 retention_usecs);

/* Shape checks shared with SQL-facing code. */
extern bool ut_valid_install_id(const char *s);
extern bool ut_valid_event_id(const char *s);
extern bool ut_valid_user_hash(const char *s);
extern bool ut_valid_source(const char *s);
extern bool ut_valid_model(const char *s);

/* RFC 3339 timestamp to PostgreSQL microseconds; false when malformed. */
extern bool ut_parse_rfc3339(const char *s, TimestampTz *result);

#endif							/* UT_BATCH_H */
