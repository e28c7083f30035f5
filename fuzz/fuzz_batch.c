/*-------------------------------------------------------------------------
 *
 * fuzz/fuzz_batch.c
 *		libFuzzer harness for the batch parser and validator (src/batch.c,
 *		src/rfc3339.c): parse any body, validate every event, and check that
 *		whatever the validator accepts also satisfies the table's CHECK
 *		constraints and the wire contract, so an accepted event can never
 *		turn into a server error at INSERT time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "mb/pg_wchar.h"

#include "batch.h"
#include "fuzz_common.h"

/* 2025-11-03 12:00:00+00 in PostgreSQL microseconds; 90 days retention. */
#define FUZZ_NOW		INT64CONST(815486400000000)
#define FUZZ_RETENTION	(INT64CONST(90) * 86400 * 1000000)
#define FUZZ_MAX_EVENTS 1000
#define FUZZ_MAX_DEPTH	1000

/* Deepest bracket nesting outside strings. */
static int
nesting_depth(const uint8_t *data, size_t size)
{
	int			depth = 0;
	int			max = 0;
	bool		in_string = false;

	for (size_t i = 0; i < size; i++)
	{
		uint8_t		c = data[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
			max = Max(max, ++depth);
		else if (c == ']' || c == '}')
			depth--;
	}
	return max;
}

static bool
chars_in(const char *s, size_t minlen, size_t maxlen, const char *extra)
{
	size_t		n = strlen(s);

	if (n < minlen || n > maxlen)
		return false;
	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || (c != '\0' && strchr(extra, c))))
			return false;
	}
	return true;
}

/* Characters of a UTF-8 string: the bytes that do not continue one. */
static size_t
utf8_length(const char *s)
{
	size_t		n = 0;

	for (; *s; s++)
		n += ((unsigned char) *s & 0xC0) != 0x80;
	return n;
}

static bool
lower_hex(const char *s, size_t len)
{
	if (strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}_[0-9a-f]{12}$ */
static bool
install_id_ok(const char *s)
{
	if (strlen(s) != 49)
		return false;
	for (int i = 0; i < 49; i++)
	{
		char		c = s[i];

		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (c != '-')
				return false;
		}
		else if (i == 36)
		{
			if (c != '_')
				return false;
		}
		else if (i == 14)
		{
			if (c != '4')
				return false;
		}
		else if (i == 19)
		{
			if (!strchr("89ab", c) || c == '\0')
				return false;
		}
		else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

static void
check_accepted(const char *body, size_t len, const BatchEvent *ev)
{
	/* events.event_id CHECK (event_id ~ '^[A-Za-z0-9_.:-]{1,50}$') */
	FUZZ_ASSERT(ev->event_id && chars_in(ev->event_id, 1, 50, "_.:-"));
	/* wp_user_id_hash ~ '^[0-9a-f]{64}$' */
	FUZZ_ASSERT(ev->wp_user_id_hash && lower_hex(ev->wp_user_id_hash, 64));
	FUZZ_ASSERT(ev->source &&
				(strcmp(ev->source, "manual") == 0 || strcmp(ev->source, "bulk") == 0 ||
				 strcmp(ev->source, "queue") == 0 || strcmp(ev->source, "inline") == 0));
	/* model ~ '^[A-Za-z0-9._:/@-]{1,100}$' */
	FUZZ_ASSERT(ev->model && chars_in(ev->model, 1, 100, "._:/@-"));
	/* integer columns, >= 0, cached <= prompt */
	FUZZ_ASSERT(ev->has_prompt && ev->prompt_tokens >= 0 && ev->prompt_tokens <= PG_INT32_MAX);
	FUZZ_ASSERT(ev->has_completion && ev->completion_tokens >= 0 &&
				ev->completion_tokens <= PG_INT32_MAX);
	FUZZ_ASSERT(ev->cached_prompt_tokens >= 0 &&
				ev->cached_prompt_tokens <= ev->prompt_tokens);
	FUZZ_ASSERT(!ev->has_total ||
				ev->total_tokens == ev->prompt_tokens + ev->completion_tokens);
	/* request_id: length(request_id) <= 50, in characters (UTF-8) */
	FUZZ_ASSERT(ev->request_id == NULL || utf8_length(ev->request_id) <= 50);
	/* context: a JSON object slice of the body, at most 4 KiB */
	if (ev->context)
	{
		FUZZ_ASSERT(ev->context >= body && ev->context + ev->context_len <= body + len);
		FUZZ_ASSERT(ev->context_len >= 2 && ev->context_len <= UT_CONTEXT_MAX_BYTES);
		FUZZ_ASSERT(ev->context[0] == '{' && ev->context[ev->context_len - 1] == '}');
	}
	/* created_at inside [now - retention, now + 5 min] */
	FUZZ_ASSERT(ev->created_at_text != NULL);
	FUZZ_ASSERT(ev->created_at >= FUZZ_NOW - FUZZ_RETENTION &&
				ev->created_at <= FUZZ_NOW + UT_FUTURE_TOLERANCE_USECS);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *body;
	Batch		batch;
	BatchStatus status;
	const char *errmsg = NULL;

	/*
	 * The backend only ever hands ingest a valid UTF-8 text without NUL
	 * bytes; anything else is refused before ingest runs.
	 */
	if (size > PG_INT32_MAX ||
		pg_encoding_verifymbstr(PG_UTF8, (const char *) data, (int) size) != (int) size)
		return 0;

	/*
	 * PostgreSQL's JSON parser recurses once per nesting level; the backend
	 * stops it with check_stack_depth(), which a frontend build lacks.  Deep
	 * nesting is exercised against the server by the bad-input tests.
	 */
	if (nesting_depth(data, size) > FUZZ_MAX_DEPTH)
		return 0;

	body = fuzz_exact_copy(data, size);
	status = ut_batch_parse(body, (int) size, FUZZ_MAX_EVENTS, &batch, &errmsg);
	switch (status)
	{
		case BATCH_OK:
			FUZZ_ASSERT(batch.install_id != NULL);
			FUZZ_ASSERT(batch.nevents >= 1 && batch.nevents <= FUZZ_MAX_EVENTS);
			if (ut_valid_install_id(batch.install_id))
				FUZZ_ASSERT(install_id_ok(batch.install_id));
			for (int i = 0; i < batch.nevents; i++)
			{
				BatchEvent *ev = &batch.events[i];

				FUZZ_ASSERT(ev->index == i);
				ut_event_validate(ev, FUZZ_NOW, FUZZ_RETENTION);
				if (ev->error == NULL)
					check_accepted(body, size, ev);
				else
					FUZZ_ASSERT(strlen(ev->error) > 0);
				if (ev->event_id && ut_valid_event_id(ev->event_id))
					FUZZ_ASSERT(chars_in(ev->event_id, 1, 50, "_.:-"));
			}
			break;
		case BATCH_MALFORMED_JSON:
		case BATCH_INVALID:
		case BATCH_TOO_MANY_EVENTS:
			FUZZ_ASSERT(errmsg != NULL && strlen(errmsg) > 0);
			break;
		default:
			FUZZ_ASSERT(!"unknown batch status");
	}
	fuzz_reset();
	return 0;
}
