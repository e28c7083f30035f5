/*-------------------------------------------------------------------------
 *
 * src/batch.c
 *		Parse a site's JSON batch in one pass with PostgreSQL's JSON lexer and
 *		check every event against the field rules of the wire contract.
 *
 * The body is walked with semantic actions rather than built into a jsonb
 * value: the fields we need are copied out, the context object is kept as a
 * slice of the raw text, and unknown fields are skipped.
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"

/* Built without the backend (fuzz/): there is nothing to interrupt. */
#define CHECK_FOR_INTERRUPTS() ((void) 0)
#else
#include "postgres.h"

#include "miscadmin.h"
#endif

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#ifndef FRONTEND
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#endif

#include "batch.h"

/* Which field of the object being read a value belongs to. */
typedef enum Field
{
	F_NONE,
	F_INSTALL_ID,
	F_ACCOUNT_ID,
	F_EVENTS,
	F_EVENT_ID,
	F_USER_HASH,
	F_SOURCE,
	F_MODEL,
	F_PROMPT,
	F_COMPLETION,
	F_TOTAL,
	F_CACHED,
	F_REQUEST_ID,
	F_CONTEXT,
	F_CREATED_AT
} Field;

typedef struct ParseState
{
	JsonLexContext *lex;
	Batch	   *batch;
	int			depth;			/* nesting depth inside the current value */
	Field		top_field;		/* field of the top object being read */
	Field		ev_field;		/* field of the event object being read */
	bool		seen_events;
	uint32		top_seen;		/* bit per Field: top-level keys read */
	uint32		ev_seen;		/* bit per Field: keys of the current event */
	bool		in_events;		/* inside the events array */
	bool		in_event;		/* inside an event object */
	const char *context_start;
	const char *value_start;	/* where the value of the field or element
								 * being read starts */
	bool		in_context;		/* inside an event's context object */
#ifndef FRONTEND
	JsonbParseState *jb;		/* the context being built as jsonb */
#endif
	const char *invalid;		/* batch-level problem found while parsing */
	const char *malformed;		/* a string we needed would not decode */
} ParseState;

#define EVENT_FIELD(name, field, type_error) \
	{name, sizeof(name) - 1, field, type_error, name " appears more than once"}
static const struct
{
	const char *name;
	int			len;
	Field		field;
	const char *type_error;
	const char *dup_error;
}			event_fields[] =
{
	EVENT_FIELD("event_id", F_EVENT_ID, "event_id must be a string"),
	EVENT_FIELD("wp_user_id_hash", F_USER_HASH, "wp_user_id_hash must be a string"),
	EVENT_FIELD("source", F_SOURCE, "source must be a string"),
	EVENT_FIELD("model", F_MODEL, "model must be a string"),
	EVENT_FIELD("prompt_tokens", F_PROMPT, "prompt_tokens must be an integer from 0 to 2147483647"),
	EVENT_FIELD("completion_tokens", F_COMPLETION, "completion_tokens must be an integer from 0 to 2147483647"),
	EVENT_FIELD("total_tokens", F_TOTAL, "total_tokens must be an integer"),
	EVENT_FIELD("cached_prompt_tokens", F_CACHED, "cached_prompt_tokens must be an integer from 0 to prompt_tokens"),
	EVENT_FIELD("request_id", F_REQUEST_ID, "request_id must be a string of at most 50 characters"),
	EVENT_FIELD("context", F_CONTEXT, "context must be a JSON object"),
	EVENT_FIELD("created_at", F_CREATED_AT, "created_at must be an RFC 3339 timestamp string"),
};

static BatchEvent *
current_event(ParseState *st)
{
	return &st->batch->events[st->batch->nevents - 1];
}

static void
event_error(ParseState *st, const char *msg)
{
	BatchEvent *ev = current_event(st);

	if (ev->error == NULL)
		ev->error = msg;
}

static const char *
field_dup_error(Field f)
{
	for (int i = 0; i < lengthof(event_fields); i++)
		if (event_fields[i].field == f)
			return event_fields[i].dup_error;
	return "a field appears more than once";
}

/*
 * A key the parser reads, given twice in one object, is refused: another
 * reader of the same signed body (a proxy, the access log, an auditor) may
 * take the first where we would take the last.  Returns true the second
 * time f is seen in *seen.
 */
static bool
seen_twice(uint32 *seen, Field f)
{
	uint32		bit = (uint32) 1 << f;

	if (*seen & bit)
		return true;
	*seen |= bit;
	return false;
}

static const char *
field_type_error(Field f)
{
	for (int i = 0; i < lengthof(event_fields); i++)
		if (event_fields[i].field == f)
			return event_fields[i].type_error;
	return "invalid field";
}

/*
 * Parse a JSON number token as a non-negative integer no larger than
 * PG_INT32_MAX (or PG_INT64_MAX / 4 for total_tokens, which may sum two
 * int32 values).  Fractions, exponents and signs are refused.
 */
static bool
parse_token_count(const char *tok, int64 max, int64 *result)
{
	int64		v = 0;

	if (*tok == '\0')
		return false;
	for (const char *p = tok; *p; p++)
	{
		int			digit = *p - '0';

		if (digit < 0 || digit > 9)
			return false;
		/* refuse before v * 10 + digit could pass max (or wrap) */
		if (v > (max - digit) / 10)
			return false;
		v = v * 10 + digit;
	}
	*result = v;
	return true;
}

#ifndef FRONTEND
/*
 * The context object is built into jsonb while it is parsed, so it is not
 * parsed a second time when stored.  Numbers go through numeric_in as
 * jsonb_in would send them; one it would refuse rejects the event.
 */
static bool
context_number_ok(const char *tok)
{
	const char *e = strpbrk(tok, "eE");

	if (strlen(tok) > 1000)
		return false;
	if (e != NULL)
	{
		long		exp = strtol(e + 1, NULL, 10);

		if (exp > 1000 || exp < -1000)
			return false;
	}
	return true;
}

/*
 * An integer that fits in int64 becomes the numeric numeric_in would make
 * of it (scale 0), without the general parser.
 */
static bool
context_integer(const char *tok, JsonbValue *v)
{
	int64		n;
	bool		negative = (*tok == '-');

	if (strlen(tok) > (negative ? 19 : 18) ||
		!parse_token_count(negative ? tok + 1 : tok, PG_INT64_MAX, &n))
		return false;
	v->type = jbvNumeric;
	v->val.numeric = int64_to_numeric(negative ? -n : n);
	return true;
}

static void
context_push_scalar(ParseState *st, char *token, JsonTokenType type)
{
	JsonbValue	v;
	bool		in_array = st->jb->contVal.type == jbvArray;

	switch (type)
	{
		case JSON_TOKEN_STRING:
			v.type = jbvString;
			v.val.string.val = token;
			v.val.string.len = strlen(token);
			break;
		case JSON_TOKEN_NUMBER:
			if (context_integer(token, &v))
				break;
			if (!context_number_ok(token))
			{
				event_error(st, "context holds a number out of range");
				v.type = jbvNull;
				break;
			}
			v.type = jbvNumeric;
			v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																CStringGetDatum(token),
																ObjectIdGetDatum(InvalidOid),
																Int32GetDatum(-1)));
			break;
		case JSON_TOKEN_TRUE:
		case JSON_TOKEN_FALSE:
			v.type = jbvBool;
			v.val.boolean = (type == JSON_TOKEN_TRUE);
			break;
		default:
			v.type = jbvNull;
			break;
	}
	pushJsonbValue(&st->jb, in_array ? WJB_ELEM : WJB_VALUE, &v);
}
#endif

/*
 * Strings are decoded only when they are needed.
 *
 * The lexer runs without de-escaping (which costs it a call per character
 * of every string), and a callback finds the string token it needs in the
 * input.  A value's token starts where the lexer stood when its field (or
 * array element) began, which on_field_start() and on_element_start()
 * note, and ends where the lexer has just passed.  A field name ends right
 * before its ':' and starts at the nearest earlier quote that no odd run
 * of backslashes escapes.  A string without a backslash is its own text;
 * one with escapes is decoded by the lexer itself, run on that one token
 * with de-escaping on.
 */

/*
 * Whether the quote at q is not escaped (no odd run of backslashes before
 * it).  In a valid token such a quote is where a string begins or ends.
 */
static inline bool
quote_unescaped(const char *input, const char *q)
{
	const char *b = q;

	while (b > input && b[-1] == '\\')
		b--;
	return ((q - b) & 1) == 0;
}

/* The opening quote of the string token that ends right before end. */
static const char *
string_open(ParseState *st, const char *end)
{
	const char *input = st->lex->input;
	const char *close = end - 1;

	if (close > input && *close == '"')
	{
		for (const char *open = close - 1; open >= input; open--)
			if (*open == '"' && quote_unescaped(input, open))
				return open;
	}
	st->malformed = "a string token could not be located";
	return NULL;
}

/* The text of the string token from open (its quote) to end (past its closing quote). */
static char *
string_token(ParseState *st, const char *open, const char *end)
{
	int			len = (int) (end - open - 2);
	JsonLexContext *lex;
	JsonParseErrorType rc;

	if (memchr(open + 1, '\\', len) == NULL)
		return pnstrdup(open + 1, len);
	lex = makeJsonLexContextCstringLen((char *) open, len + 2, PG_UTF8, true);
	rc = json_lex(lex);
	if (rc != JSON_SUCCESS || lex->token_type != JSON_TOKEN_STRING)
	{
		if (st->malformed == NULL)
			st->malformed = rc != JSON_SUCCESS ? json_errdetail(rc, lex)
				: "a string token could not be decoded";
		return pstrdup("");
	}
	return lex->strval->data;
}

/* The string value the lexer has just passed. */
static char *
string_value(ParseState *st)
{
	const char *end = st->lex->prev_token_terminator;
	const char *open = st->value_start;

	st->value_start = NULL;
	if (open == NULL || open < st->lex->input || end - open < 2 || *open != '"')
		open = string_open(st, end);
	return open ? string_token(st, open, end) : pstrdup("");
}

/*
 * The closing quote of the name of the field whose ':' the lexer has just
 * passed, or NULL.
 */
static const char *
name_close(ParseState *st)
{
	const char *input = st->lex->input;
	const char *p = st->lex->prev_token_terminator - 1;

	if (p < input || *p != ':')
		return NULL;
	for (p--; p >= input && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'); p--)
		;
	return p > input && *p == '"' ? p : NULL;
}

/*
 * The name of the field whose closing quote is at p (name_close()), as *len
 * bytes (not terminated: a name without escapes is read in place).
 */
static const char *
field_name_at(ParseState *st, const char *p, int *len)
{
	const char *open;
	char	   *decoded;

	*len = 0;
	if (p == NULL)
	{
		st->malformed = "a field name could not be located";
		return "";
	}
	open = string_open(st, p + 1);
	if (open == NULL)
		return "";
	if (memchr(open + 1, '\\', p - open - 1) == NULL)
	{
		*len = (int) (p - open - 1);
		return open + 1;
	}
	decoded = string_token(st, open, p + 1);
	*len = strlen(decoded);
	return decoded;
}

/* The name of the field whose ':' the lexer has just passed. */
static const char *
field_name(ParseState *st, int *len)
{
	return field_name_at(st, name_close(st), len);
}

/* Whether the name of len bytes is lit. */
static inline bool
name_is(const char *name, int len, const char *lit)
{
	return strncmp(name, lit, len) == 0 && lit[len] == '\0';
}

static void
on_object_start(void *state)
{
	ParseState *st = state;

	if (st->in_context)
	{
#ifndef FRONTEND
		pushJsonbValue(&st->jb, WJB_BEGIN_OBJECT, NULL);
#endif
		st->depth++;
		return;
	}

	if (st->depth == 0)
	{
		/* the batch object itself */
	}
	else if (st->depth == 1)
	{
		if (st->top_field == F_INSTALL_ID)
			st->invalid = "install_id must be a string";
		else if (st->top_field == F_ACCOUNT_ID)
			st->invalid = "account_id must be a string";
		else if (st->top_field == F_EVENTS)
			st->invalid = "events must be an array";
	}
	else if (st->depth == 2 && st->in_events)
		st->in_event = true;
	else if (st->depth == 3 && st->in_event)
	{
		if (st->ev_field == F_CONTEXT)
		{
			st->context_start = st->lex->token_start;
			st->in_context = true;
#ifndef FRONTEND
			st->jb = NULL;
			pushJsonbValue(&st->jb, WJB_BEGIN_OBJECT, NULL);
#endif
		}
		else if (st->ev_field != F_NONE)
			event_error(st, field_type_error(st->ev_field));
	}
	st->depth++;
}

static void
on_object_end(void *state)
{
	ParseState *st = state;

	st->depth--;
	if (st->in_context && st->depth > 3)
	{
#ifndef FRONTEND
		pushJsonbValue(&st->jb, WJB_END_OBJECT, NULL);
#endif
	}
	else if (st->in_context)
	{
		BatchEvent *ev = current_event(st);
		const char *end = st->lex->prev_token_terminator;

		ev->context = st->context_start;
		ev->context_len = (int) (end - st->context_start);
#ifndef FRONTEND
		ev->context_jsonb = JsonbValueToJsonb(pushJsonbValue(&st->jb, WJB_END_OBJECT, NULL));
		st->jb = NULL;
#endif
		st->context_start = NULL;
		st->in_context = false;
	}
	else if (st->depth == 2 && st->in_event)
		st->in_event = false;
}

static void
on_array_start(void *state)
{
	ParseState *st = state;

	if (st->in_context)
	{
#ifndef FRONTEND
		pushJsonbValue(&st->jb, WJB_BEGIN_ARRAY, NULL);
#endif
		st->depth++;
		return;
	}

	if (st->depth == 0)
		st->invalid = "the body must be a JSON object";
	else if (st->depth == 1)
	{
		if (st->top_field == F_EVENTS)
			st->in_events = true;
		else if (st->top_field == F_INSTALL_ID)
			st->invalid = "install_id must be a string";
		else if (st->top_field == F_ACCOUNT_ID)
			st->invalid = "account_id must be a string";
	}
	else if (st->depth == 3 && st->in_event && st->ev_field != F_NONE)
		event_error(st, field_type_error(st->ev_field));
	st->depth++;
}

static void
on_array_end(void *state)
{
	ParseState *st = state;

	st->depth--;
	if (st->in_context)
	{
#ifndef FRONTEND
		pushJsonbValue(&st->jb, WJB_END_ARRAY, NULL);
#endif
	}
	else if (st->depth == 1 && st->in_events)
		st->in_events = false;
}

/*
 * The field of an event whose ':' the lexer has just passed.  A name we
 * know, written without escapes, is recognised where it ends: its text right
 * before the closing quote, with an unescaped quote before that.  Any other
 * name is located and decoded first.
 */
static Field
event_field(ParseState *st)
{
	const char *input = st->lex->input;
	const char *close = name_close(st);
	const char *name;
	int			len;

	if (close != NULL)
	{
		for (int i = 0; i < lengthof(event_fields); i++)
		{
			int			n = event_fields[i].len;
			const char *open = close - n - 1;

			if (open >= input && close[-1] == event_fields[i].name[n - 1] &&
				*open == '"' && memcmp(open + 1, event_fields[i].name, n) == 0 &&
				quote_unescaped(input, open))
				return event_fields[i].field;
		}
	}
	name = field_name_at(st, close, &len);
	for (int i = 0; i < lengthof(event_fields); i++)
		if (name_is(name, len, event_fields[i].name))
			return event_fields[i].field;
	return F_NONE;
}

static void
on_field_start(void *state, char *fname, bool isnull)
{
	ParseState *st = state;
	const char *name;
	int			len;

	st->value_start = st->lex->token_start;
	if (st->in_context)
	{
#ifndef FRONTEND
		JsonbValue	k;

		name = field_name(st, &len);

		k.type = jbvString;
		k.val.string.val = (char *) name;
		k.val.string.len = len;
		pushJsonbValue(&st->jb, WJB_KEY, &k);
#endif
		return;
	}

	if (st->depth == 1)
	{
		name = field_name(st, &len);
		st->top_field = F_NONE;
		if (name_is(name, len, "install_id"))
			st->top_field = F_INSTALL_ID;
		else if (name_is(name, len, "account_id"))
			st->top_field = F_ACCOUNT_ID;
		else if (name_is(name, len, "events"))
		{
			st->seen_events = true;
			st->top_field = F_EVENTS;
		}
		if (st->top_field != F_NONE && seen_twice(&st->top_seen, st->top_field) &&
			st->invalid == NULL)
			st->invalid = st->top_field == F_INSTALL_ID ? "install_id appears more than once" :
				st->top_field == F_ACCOUNT_ID ? "account_id appears more than once" :
				"events appears more than once";
	}
	else if (st->depth == 3 && st->in_event)
	{
		st->ev_field = event_field(st);
		if (st->ev_field != F_NONE && seen_twice(&st->ev_seen, st->ev_field))
			event_error(st, field_dup_error(st->ev_field));
	}
}

static void
on_element_start(void *state, bool isnull)
{
	ParseState *st = state;
	Batch	   *b = st->batch;
	BatchEvent *ev;

	CHECK_FOR_INTERRUPTS();
	st->value_start = st->lex->token_start;
	if (!(st->depth == 2 && st->in_events))
		return;

	if (b->nevents == b->capacity)
	{
		b->capacity = b->capacity == 0 ? 64 : b->capacity * 2;
		if (b->events == NULL)
			b->events = palloc(sizeof(BatchEvent) * b->capacity);
		else
			b->events = repalloc(b->events, sizeof(BatchEvent) * b->capacity);
	}
	ev = &b->events[b->nevents];
	memset(ev, 0, sizeof(BatchEvent));
	ev->index = b->nevents;
	b->nevents++;
	st->ev_field = F_NONE;
	st->ev_seen = 0;
}

static void
event_scalar(ParseState *st, char *token, JsonTokenType type)
{
	BatchEvent *ev = current_event(st);
	Field		f = st->ev_field;
	bool		is_string = (type == JSON_TOKEN_STRING);

	if (f == F_NONE)
		return;
	if (type == JSON_TOKEN_NULL)
	{
		/* null reads as absent; required fields are checked later */
		return;
	}

	switch (f)
	{
		case F_EVENT_ID:
		case F_USER_HASH:
		case F_SOURCE:
		case F_MODEL:
		case F_REQUEST_ID:
		case F_CREATED_AT:
			if (!is_string)
			{
				event_error(st, field_type_error(f));
				return;
			}
			if (f == F_EVENT_ID)
				ev->event_id = token;
			else if (f == F_USER_HASH)
				ev->wp_user_id_hash = token;
			else if (f == F_SOURCE)
				ev->source = token;
			else if (f == F_MODEL)
				ev->model = token;
			else if (f == F_REQUEST_ID)
				ev->request_id = token;
			else
				ev->created_at_text = token;
			return;

		case F_PROMPT:
		case F_COMPLETION:
		case F_CACHED:
			{
				int64		v;

				if (type != JSON_TOKEN_NUMBER ||
					!parse_token_count(token, PG_INT32_MAX, &v))
				{
					event_error(st, field_type_error(f));
					return;
				}
				if (f == F_PROMPT)
				{
					ev->prompt_tokens = v;
					ev->has_prompt = true;
				}
				else if (f == F_COMPLETION)
				{
					ev->completion_tokens = v;
					ev->has_completion = true;
				}
				else
				{
					ev->cached_prompt_tokens = v;
					ev->has_cached = true;
				}
				return;
			}

		case F_TOTAL:
			{
				int64		v;

				if (type != JSON_TOKEN_NUMBER ||
					!parse_token_count(token, PG_INT64_MAX / 4, &v))
				{
					event_error(st, field_type_error(f));
					return;
				}
				ev->total_tokens = v;
				ev->has_total = true;
				return;
			}

		case F_CONTEXT:
			event_error(st, field_type_error(f));
			return;

		default:
			return;
	}
}

static void
on_scalar(void *state, char *token, JsonTokenType type)
{
	ParseState *st = state;

	if (type == JSON_TOKEN_STRING &&
		(st->in_context ||
		 (st->depth == 1 && (st->top_field == F_INSTALL_ID || st->top_field == F_ACCOUNT_ID)) ||
		 (st->depth == 3 && st->in_event && st->ev_field != F_NONE)))
		token = string_value(st);

	if (st->in_context)
	{
#ifndef FRONTEND
		context_push_scalar(st, token, type);
#endif
		return;
	}

	if (st->depth == 0)
		st->invalid = "the body must be a JSON object";
	else if (st->depth == 1)
	{
		if (st->top_field == F_INSTALL_ID)
		{
			if (type == JSON_TOKEN_STRING)
				st->batch->install_id = token;
			else
				st->invalid = "install_id must be a string";
		}
		else if (st->top_field == F_ACCOUNT_ID)
		{
			if (type == JSON_TOKEN_STRING)
				st->batch->account_id = token;
			else if (type != JSON_TOKEN_NULL)
				st->invalid = "account_id must be a string";
		}
		else if (st->top_field == F_EVENTS)
			st->invalid = "events must be an array";
	}
	else if (st->depth == 2 && st->in_events)
		event_error(st, "event must be a JSON object");
	else if (st->depth == 3 && st->in_event)
		event_scalar(st, token, type);
}

BatchStatus
ut_batch_parse(const char *body, int len, int max_events, Batch *batch,
			   const char **errmsg)
{
	ParseState	st;
	JsonSemAction sem;
	JsonParseErrorType rc;

	memset(batch, 0, sizeof(Batch));
	memset(&st, 0, sizeof(st));
	memset(&sem, 0, sizeof(sem));

	st.batch = batch;
	st.lex = makeJsonLexContextCstringLen((char *) body, len, PG_UTF8, false);

	sem.semstate = &st;
	sem.object_start = on_object_start;
	sem.object_end = on_object_end;
	sem.array_start = on_array_start;
	sem.array_end = on_array_end;
	sem.object_field_start = on_field_start;
	sem.array_element_start = on_element_start;
	sem.scalar = on_scalar;

	rc = pg_parse_json(st.lex, &sem);
	if (rc != JSON_SUCCESS)
	{
		*errmsg = json_errdetail(rc, st.lex);
		return BATCH_MALFORMED_JSON;
	}
	if (st.malformed)
	{
		*errmsg = st.malformed;
		return BATCH_MALFORMED_JSON;
	}
	if (st.invalid)
	{
		*errmsg = st.invalid;
		return BATCH_INVALID;
	}
	if (batch->install_id == NULL)
	{
		*errmsg = "install_id is required";
		return BATCH_INVALID;
	}
	if (!st.seen_events)
	{
		*errmsg = "events is required";
		return BATCH_INVALID;
	}
	if (batch->nevents == 0)
	{
		*errmsg = "events must hold at least one event";
		return BATCH_INVALID;
	}
	if (batch->nevents > max_events)
	{
		*errmsg = psprintf("the batch holds %d events; the limit is %d",
						   batch->nevents, max_events);
		return BATCH_TOO_MANY_EVENTS;
	}
	return BATCH_OK;
}

static bool
is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool
all_in_set(const char *s, int minlen, int maxlen, const char *extra)
{
	int			n = 0;

	for (const char *p = s; *p; p++, n++)
	{
		char		c = *p;

		if (n >= maxlen)
			return false;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9'))
			continue;
		if (strchr(extra, c) == NULL)
			return false;
	}
	return n >= minlen;
}

bool
ut_valid_event_id(const char *s)
{
	return s != NULL && all_in_set(s, 1, 50, "_.:-");
}

bool
ut_valid_model(const char *s)
{
	return s != NULL && all_in_set(s, 1, 100, "._:/@-");
}

/* {uuid-v4}_{12 lowercase hex} */
bool
ut_valid_install_id(const char *s)
{
	static const char pattern[] = "xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx_xxxxxxxxxxxx";
	int			i;

	if (s == NULL)
		return false;
	for (i = 0; pattern[i]; i++)
	{
		char		c = s[i];

		if (c == '\0')
			return false;
		switch (pattern[i])
		{
			case 'x':
				if (!is_lower_hex(c))
					return false;
				break;
			case 'V':
				if (c != '8' && c != '9' && c != 'a' && c != 'b')
					return false;
				break;
			default:
				if (c != pattern[i])
					return false;
		}
	}
	return s[i] == '\0';
}

bool
ut_valid_user_hash(const char *s)
{
	int			n = 0;

	for (const char *p = s; *p; p++, n++)
		if (n >= 64 || !is_lower_hex(*p))
			return false;
	return n == 64;
}

bool
ut_valid_source(const char *s)
{
	return strcmp(s, "manual") == 0 || strcmp(s, "bulk") == 0 ||
		strcmp(s, "queue") == 0 || strcmp(s, "inline") == 0;
}

/* Characters (not bytes) of a valid UTF-8 string. */
static size_t
utf8_chars(const char *s)
{
	size_t		n = 0;

	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
		if ((*p & 0xC0) != 0x80)
			n++;
	return n;
}

void
ut_event_validate(BatchEvent *ev, TimestampTz now, int64 retention_usecs)
{
	if (ev->error)
		return;

	if (ev->event_id == NULL)
		ev->error = "event_id is required";
	else if (!ut_valid_event_id(ev->event_id))
		ev->error = "event_id must be 1 to 50 characters of [A-Za-z0-9_.:-]";
	else if (ev->wp_user_id_hash == NULL)
		ev->error = "wp_user_id_hash is required";
	else if (!ut_valid_user_hash(ev->wp_user_id_hash))
		ev->error = "wp_user_id_hash must be 64 lowercase hex characters";
	else if (ev->source == NULL)
		ev->error = "source is required";
	else if (!ut_valid_source(ev->source))
		ev->error = "source must be one of manual, bulk, queue, inline";
	else if (ev->model == NULL)
		ev->error = "model is required";
	else if (!ut_valid_model(ev->model))
		ev->error = "model must be 1 to 100 characters of [A-Za-z0-9._:/@-]";
	else if (!ev->has_prompt)
		ev->error = "prompt_tokens is required";
	else if (!ev->has_completion)
		ev->error = "completion_tokens is required";
	else if (ev->has_total &&
			 ev->total_tokens != ev->prompt_tokens + ev->completion_tokens)
		ev->error = psprintf("total_tokens " INT64_FORMAT " is not prompt_tokens "
							 INT64_FORMAT " + completion_tokens " INT64_FORMAT,
							 ev->total_tokens, ev->prompt_tokens,
							 ev->completion_tokens);
	else if (ev->has_cached && ev->cached_prompt_tokens > ev->prompt_tokens)
		ev->error = "cached_prompt_tokens must be an integer from 0 to prompt_tokens";
	else if (ev->request_id != NULL && utf8_chars(ev->request_id) > 50)
		ev->error = "request_id must be a string of at most 50 characters";
	else if (ev->context != NULL && ev->context_len > UT_CONTEXT_MAX_BYTES)
		ev->error = "context must be a JSON object of at most 4096 bytes";
	else if (ev->created_at_text == NULL)
		ev->error = "created_at is required";
	else if (!ut_parse_rfc3339(ev->created_at_text, &ev->created_at))
		ev->error = "created_at must be an RFC 3339 timestamp with Z or an offset";
	else if (ev->created_at > now + UT_FUTURE_TOLERANCE_USECS)
		ev->error = "created_at is more than 5 minutes in the future";
	else if (ev->created_at < now - retention_usecs)
		ev->error = "created_at is older than the event retention";
}
