/*-------------------------------------------------------------------------
 *
 * fuzz/fuzz_jwt.c
 *		libFuzzer harness for the gateway's JWT verification and the JSON
 *		and header-string code it rests on (gateway/jwt.c, gateway/json.c).
 *		The first input byte picks a mode:
 *
 *		0  the rest is a bearer token as a client sends it;
 *		1  the rest is a claims object, signed with the right key, so the
 *		   claims checks are reached (a fuzzer cannot forge the MAC);
 *		2  the rest is "<header JSON>\n<claims JSON>", signed with the right
 *		   key: whatever the header says, only alg HS256 may verify
 *		   (algorithm confusion: none, HS384, RS256, "hs256", duplicates);
 *		3  the rest is a request header value: the gateway's JSON string
 *		   encoding of it (request.headers) must be valid JSON that decodes
 *		   back to the value, and anything json_validate() accepts must be
 *		   JSON to PostgreSQL's own parser too.
 *
 *		PostgreSQL's JSON parser (libpgcommon) is the independent oracle.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fuzz_common.h"
#include "json.h"
#include "jwt.h"

static const unsigned char KEY[] = "fuzz-jwt-secret-0123456789abcdef";
#define KEYLEN (sizeof(KEY) - 1)
#define NOW 1762171200.0		/* 2025-11-03 12:00:00 UTC */

static const char *const ROLES[] = {"usage_tracking_ingest", "usage_tracking_reader", NULL};

/* What PostgreSQL's parser sees at the top level of a JSON object. */
typedef struct TopState
{
	int			depth;
	bool		is_object;
	bool		in_alg;
	int			nalg;
	bool		alg_hs256;
	bool		crit;
} TopState;

static void
top_object_start(void *state)
{
	TopState   *ts = state;

	if (ts->depth == 0)
		ts->is_object = true;
	ts->depth++;
}

static void
top_nest_end(void *state)
{
	((TopState *) state)->depth--;
}

static void
top_array_start(void *state)
{
	((TopState *) state)->depth++;
}

static void
top_field(void *state, char *fname, bool isnull)
{
	TopState   *ts = state;

	if (ts->depth != 1 || fname == NULL)
		return;
	ts->in_alg = (strcmp(fname, "alg") == 0);
	if (ts->in_alg)
		ts->nalg++;
	if (strcmp(fname, "crit") == 0)
		ts->crit = true;
}

static void
top_scalar(void *state, char *token, JsonTokenType type)
{
	TopState   *ts = state;

	if (ts->depth == 1 && ts->in_alg && token != NULL)
		ts->alg_hs256 = (type == JSON_TOKEN_STRING && strcmp(token, "HS256") == 0);
}

/* Parse with PostgreSQL's JSON parser; false when it refuses the text. */
static bool
pg_json(const char *s, size_t len, bool need_escapes, TopState *ts)
{
	JsonLexContext *lex;
	JsonSemAction sem;

	if (len > PG_INT32_MAX ||
		pg_encoding_verifymbstr(PG_UTF8, s, (int) len) != (int) len)
		return false;
	memset(ts, 0, sizeof(*ts));
	memset(&sem, 0, sizeof(sem));
	sem.semstate = ts;
	sem.object_start = top_object_start;
	sem.object_end = top_nest_end;
	sem.array_start = top_array_start;
	sem.array_end = top_nest_end;
	sem.object_field_start = top_field;
	sem.scalar = top_scalar;
	lex = makeJsonLexContextCstringLen((char *) s, (int) len, PG_UTF8, need_escapes);
	return pg_parse_json(lex, &sem) == JSON_SUCCESS;
}

static bool
valid_utf8_no_nul(const uint8_t *s, size_t len)
{
	return len <= PG_INT32_MAX && memchr(s, '\0', len) == NULL &&
		pg_encoding_verifymbstr(PG_UTF8, (const char *) s, (int) len) == (int) len;
}

/* b64url(header) "." b64url(claims) "." b64url(HMAC), in out. */
static long
make_token(const uint8_t *header, size_t hlen, const uint8_t *claims, size_t clen,
		   char *out, size_t outsize)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	long		n,
				k;

	n = b64url_encode(header, hlen, out, outsize);
	if (n < 0 || (size_t) n + 2 >= outsize)
		return -1;
	out[n++] = '.';
	k = b64url_encode(claims, clen, out + n, outsize - n);
	if (k < 0)
		return -1;
	n += k;
	FUZZ_ASSERT(HMAC(EVP_sha256(), KEY, KEYLEN, (unsigned char *) out, n, mac, &maclen) != NULL);
	if ((size_t) n + 2 >= outsize)
		return -1;
	out[n++] = '.';
	k = b64url_encode(mac, maclen, out + n, outsize - n);
	return k < 0 ? -1 : n + k;
}

/* Checks that hold for every token jwt_verify accepts. */
static void
check_accepted(const char *token, size_t len, const jwt_claims *c)
{
	const char *dot1 = memchr(token, '.', len);
	const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (dot1 + 1 - token)) : NULL;
	unsigned char header[2048];
	long		hlen;
	TopState	ts;
	bool		role_ok = false;

	FUZZ_ASSERT(dot1 && dot2);
	hlen = b64url_decode(token, dot1 - token, header, sizeof(header));
	FUZZ_ASSERT(hlen > 0);
	/*
	 * To PostgreSQL's parser too, the header is an object with one alg,
	 * HS256.  (It refuses to decode \u0000 and lone surrogates; then the
	 * structure at least must be JSON.)
	 */
	if (pg_json((const char *) header, hlen, true, &ts))
		FUZZ_ASSERT(ts.is_object && ts.nalg == 1 && ts.alg_hs256 && !ts.crit);
	else
		FUZZ_ASSERT(pg_json((const char *) header, hlen, false, &ts) &&
					memmem(header, hlen, "\\u", 2) != NULL);
	/* exp is in force, the role is allowed, the claims are JSON. */
	FUZZ_ASSERT(NOW - JWT_LEEWAY_S < c->exp);
	/* ... and is a whole number of seconds no later than JWT_MAX_TIME. */
	FUZZ_ASSERT(c->exp == (double) (long long) c->exp && c->exp <= (double) JWT_MAX_TIME);
	for (const char *const *r = ROLES; *r; r++)
		role_ok |= strcmp(*r, c->role) == 0;
	FUZZ_ASSERT(role_ok);
	FUZZ_ASSERT(c->payload != NULL && strlen(c->payload) == c->payload_len);
	FUZZ_ASSERT(pg_json(c->payload, c->payload_len, false, &ts) && ts.is_object);
}

static void
verify(const char *token, size_t len)
{
	jwt_claims	c;
	jwt_result	r;

	r = jwt_verify(token, len, KEY, KEYLEN, NOW, ROLES, &c);
	FUZZ_ASSERT(jwt_result_code(r) != NULL && jwt_result_message(r) != NULL);
	if (r == JWT_OK)
		check_accepted(token, len, &c);
	jwt_claims_free(&c);
}

static void
check_header_value(const uint8_t *v, size_t len)
{
	strbuf		sb;
	char	   *decoded;
	long		n;
	TopState	ts;

	sb_init(&sb);
	sb_json_string(&sb, (const char *) v, len);
	FUZZ_ASSERT(!sb.failed);
	if (valid_utf8_no_nul(v, len))
	{
		/* What goes into request.headers is JSON to both parsers ... */
		FUZZ_ASSERT(json_validate(sb.data, sb.len) == 0);
		FUZZ_ASSERT(pg_json(sb.data, sb.len, true, &ts));
		/* ... and decodes back to the header value. */
		decoded = malloc(len + 1);
		n = json_string_decode(sb.data, sb.len, decoded, len + 1);
		FUZZ_ASSERT(n == (long) len && memcmp(decoded, v, len) == 0);
		free(decoded);
	}
	sb_free(&sb);

	/* The gateway's validator accepts nothing PostgreSQL would refuse. */
	if (json_validate((const char *) v, len) == 0 && memchr(v, '\0', len) == NULL)
		FUZZ_ASSERT(pg_json((const char *) v, len, false, &ts));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t		mode;
	const uint8_t *rest;
	size_t		len;
	char	   *token;
	long		tlen;
	size_t		cap;

	if (size < 1)
		return 0;
	mode = data[0] % 4;
	rest = data + 1;
	len = size - 1;
	cap = 2 * len + 128;

	switch (mode)
	{
		case 0:
			token = fuzz_exact_copy(rest, len);
			verify(token, len);
			break;
		case 1:
			token = malloc(cap);
			tlen = jwt_sign_hs256((const char *) rest, len, KEY, KEYLEN, token, cap);
			if (tlen > 0)
				verify(token, tlen);
			free(token);
			break;
		case 2:
			{
				const uint8_t *nl = memchr(rest, '\n', len);
				size_t		hlen = nl ? (size_t) (nl - rest) : len;
				const uint8_t *claims = nl ? nl + 1 : (const uint8_t *) "";
				size_t		clen = nl ? len - hlen - 1 : 0;

				token = malloc(cap);
				tlen = make_token(rest, hlen, claims, clen, token, cap);
				if (tlen > 0)
					verify(token, tlen);
				free(token);
				break;
			}
		case 3:
			check_header_value(rest, len);
			break;
	}
	fuzz_reset();
	return 0;
}
