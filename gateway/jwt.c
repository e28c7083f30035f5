/*-------------------------------------------------------------------------
 *
 * gateway/jwt.c
 *		HS256 JWT verification: the algorithm is pinned (alg none and every
 *		other algorithm are refused before any key is used), the MAC is
 *		compared in constant time, exp is required and nbf / iat honoured
 *		with JWT_LEEWAY_S of leeway (all three integers), and the role claim
 *		must be allowed.
 *
 *-------------------------------------------------------------------------
 */
#include "jwt.h"
#include "json.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static const char b64url_alphabet[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int
b64url_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

long
b64url_decode(const char *in, size_t len, unsigned char *out, size_t outsize)
{
	size_t		i,
				n = 0;
	unsigned long acc = 0;
	int			bits = 0;

	if (len % 4 == 1)
		return -1;
	for (i = 0; i < len; i++)
	{
		int			v = b64url_val((unsigned char) in[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			if (n >= outsize)
				return -1;
			out[n++] = (acc >> bits) & 0xFF;
		}
	}
	/* Non-canonical trailing bits are refused. */
	if (bits > 0 && (acc & ((1UL << bits) - 1)) != 0)
		return -1;
	return (long) n;
}

long
b64url_encode(const unsigned char *in, size_t len, char *out, size_t outsize)
{
	size_t		i,
				n = 0;
	unsigned long acc = 0;
	int			bits = 0;

	for (i = 0; i < len; i++)
	{
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 6)
		{
			bits -= 6;
			if (n + 1 >= outsize)
				return -1;
			out[n++] = b64url_alphabet[(acc >> bits) & 0x3F];
		}
	}
	if (bits > 0)
	{
		if (n + 1 >= outsize)
			return -1;
		out[n++] = b64url_alphabet[(acc << (6 - bits)) & 0x3F];
	}
	if (n >= outsize)
		return -1;
	out[n] = '\0';
	return (long) n;
}

/* Header checks ----------------------------------------------------------- */

typedef struct header_state
{
	int			alg_ok;
	int			alg_seen;
	int			bad;
} header_state;

static int
header_member(const char *key, size_t keylen, json_type type,
			  const char *val, size_t vallen, void *arg)
{
	header_state *hs = arg;

	if (json_string_equals(key, keylen, "alg"))
	{
		if (hs->alg_seen)
			hs->bad = 1;		/* duplicate alg: ambiguous */
		hs->alg_seen = 1;
		hs->alg_ok = (type == JSON_STRING && json_string_equals(val, vallen, "HS256"));
	}
	else if (json_string_equals(key, keylen, "crit"))
		hs->bad = 1;			/* no extension is understood */
	return 0;
}

/* Claims ------------------------------------------------------------------ */

typedef struct claims_state
{
	jwt_claims *out;
	int			has_exp;
	int			has_role;
	double		nbf;
	double		iat;
	int			has_nbf;
	int			has_iat;
	int			bad;			/* a claim of the wrong type */
	int			dup;			/* a claim given twice */
	unsigned	seen;
} claims_state;

/*
 * exp, nbf and iat: an integer number of seconds from 0 to JWT_MAX_TIME,
 * written with digits only.  A fraction, an exponent (1e999 would read as
 * infinity and never expire), a sign or a larger value is refused.
 */
static int
read_time(json_type type, const char *val, size_t vallen, double *out)
{
	long long	v = 0;
	size_t		i;

	if (type != JSON_NUMBER || vallen == 0 || vallen > 12)
		return -1;
	for (i = 0; i < vallen; i++)
	{
		if (val[i] < '0' || val[i] > '9')
			return -1;
		v = v * 10 + (val[i] - '0');
	}
	if (v > JWT_MAX_TIME)
		return -1;
	*out = (double) v;
	return 0;
}

static int
read_string(json_type type, const char *val, size_t vallen, char *out, size_t outsize)
{
	if (type != JSON_STRING)
		return -1;
	return json_string_decode(val, vallen, out, outsize) < 0 ? -1 : 0;
}

static int
claims_member(const char *key, size_t keylen, json_type type,
			  const char *val, size_t vallen, void *arg)
{
	claims_state *cs = arg;
	static const char *const names[] = {"exp", "nbf", "iat", "role", "account_id", "sub"};
	unsigned	i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (json_string_equals(key, keylen, names[i]))
			break;
	if (i == sizeof(names) / sizeof(names[0]))
		return 0;
	if (cs->seen & (1u << i))
	{
		cs->dup = 1;
		return 0;
	}
	cs->seen |= 1u << i;
	switch (i)
	{
		case 0:
			if (read_time(type, val, vallen, &cs->out->exp) != 0)
				cs->bad = 1;
			cs->has_exp = 1;
			break;
		case 1:
			if (read_time(type, val, vallen, &cs->nbf) != 0)
				cs->bad = 1;
			cs->has_nbf = 1;
			break;
		case 2:
			if (read_time(type, val, vallen, &cs->iat) != 0)
				cs->bad = 1;
			cs->has_iat = 1;
			break;
		case 3:
			if (read_string(type, val, vallen, cs->out->role, sizeof(cs->out->role)) != 0)
				cs->bad = 1;
			cs->has_role = 1;
			break;
		case 4:
			if (type != JSON_NULL &&
				read_string(type, val, vallen, cs->out->account_id, sizeof(cs->out->account_id)) != 0)
				cs->bad = 1;
			break;
		case 5:
			if (type != JSON_NULL &&
				read_string(type, val, vallen, cs->out->sub, sizeof(cs->out->sub)) != 0)
				cs->bad = 1;
			break;
	}
	return 0;
}

jwt_result
jwt_verify(const char *token, size_t len,
		   const unsigned char *key, size_t keylen,
		   double now, const char *const *allowed_roles,
		   jwt_claims *out)
{
	const char *dot1,
			   *dot2;
	unsigned char header[1024];
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned char given[64];
	unsigned int maclen = 0;
	long		hlen,
				plen,
				glen;
	header_state hs = {0, 0, 0};
	claims_state cs;
	size_t		i;

	memset(out, 0, sizeof(*out));
	if (token == NULL || len == 0 || len > JWT_MAX_TOKEN)
		return JWT_MALFORMED;
	for (i = 0; i < len; i++)
		if (token[i] != '.' && b64url_val((unsigned char) token[i]) < 0)
			return JWT_MALFORMED;
	dot1 = memchr(token, '.', len);
	if (dot1 == NULL)
		return JWT_MALFORMED;
	dot2 = memchr(dot1 + 1, '.', len - (dot1 + 1 - token));
	if (dot2 == NULL || memchr(dot2 + 1, '.', len - (dot2 + 1 - token)) != NULL)
		return JWT_MALFORMED;

	/* The header decides the algorithm before anything else is trusted. */
	hlen = b64url_decode(token, dot1 - token, header, sizeof(header));
	if (hlen <= 0 || json_object_members((const char *) header, hlen, header_member, &hs) != 0)
		return JWT_MALFORMED;
	if (!hs.alg_ok || hs.bad)
		return JWT_BAD_ALG;

	/* Signature: HMAC-SHA256 over "<header>.<payload>", constant time. */
	glen = b64url_decode(dot2 + 1, len - (dot2 + 1 - token), given, sizeof(given));
	if (glen != 32)
		return JWT_BAD_SIGNATURE;
	if (HMAC(EVP_sha256(), key, (int) keylen, (const unsigned char *) token,
			 dot2 - token, mac, &maclen) == NULL || maclen != 32)
		return JWT_BAD_SIGNATURE;
	if (CRYPTO_memcmp(mac, given, 32) != 0)
		return JWT_BAD_SIGNATURE;

	/* Claims. */
	out->payload = malloc((dot2 - dot1) + 1);
	if (out->payload == NULL)
		return JWT_MALFORMED;
	plen = b64url_decode(dot1 + 1, dot2 - dot1 - 1, (unsigned char *) out->payload, dot2 - dot1);
	if (plen <= 0)
		return JWT_MALFORMED;
	out->payload[plen] = '\0';
	out->payload_len = plen;
	memset(&cs, 0, sizeof(cs));
	cs.out = out;
	if (memchr(out->payload, '\0', plen) != NULL ||
		json_object_members(out->payload, plen, claims_member, &cs) != 0)
		return JWT_MALFORMED;
	if (cs.dup || cs.bad)
		return JWT_BAD_CLAIM;
	if (!cs.has_exp)
		return JWT_MISSING_EXP;
	if (now - JWT_LEEWAY_S >= out->exp)
		return JWT_EXPIRED;
	if ((cs.has_nbf && now + JWT_LEEWAY_S < cs.nbf) ||
		(cs.has_iat && now + JWT_LEEWAY_S < cs.iat))
		return JWT_NOT_YET_VALID;
	if (!cs.has_role || out->role[0] == '\0')
		return JWT_ROLE_NOT_ALLOWED;
	if (allowed_roles)
	{
		const char *const *r;

		for (r = allowed_roles; *r; r++)
			if (strcmp(*r, out->role) == 0)
				break;
		if (*r == NULL)
			return JWT_ROLE_NOT_ALLOWED;
	}
	return JWT_OK;
}

void
jwt_claims_free(jwt_claims *c)
{
	free(c->payload);
	c->payload = NULL;
	c->payload_len = 0;
}

const char *
jwt_result_code(jwt_result r)
{
	switch (r)
	{
		case JWT_OK:
			return "ok";
		case JWT_MALFORMED:
			return "invalid_token";
		case JWT_BAD_ALG:
			return "invalid_token";
		case JWT_BAD_SIGNATURE:
			return "invalid_token";
		case JWT_MISSING_EXP:
			return "invalid_token";
		case JWT_EXPIRED:
			return "token_expired";
		case JWT_NOT_YET_VALID:
			return "invalid_token";
		case JWT_BAD_CLAIM:
			return "invalid_token";
		case JWT_ROLE_NOT_ALLOWED:
			return "role_not_allowed";
	}
	return "invalid_token";
}

const char *
jwt_result_message(jwt_result r)
{
	switch (r)
	{
		case JWT_OK:
			return "ok";
		case JWT_MALFORMED:
			return "the bearer token is not a well-formed JWT";
		case JWT_BAD_ALG:
			return "the bearer token is not signed with HS256";
		case JWT_BAD_SIGNATURE:
			return "the bearer token signature does not verify";
		case JWT_MISSING_EXP:
			return "the bearer token has no exp claim";
		case JWT_EXPIRED:
			return "the bearer token has expired";
		case JWT_NOT_YET_VALID:
			return "the bearer token is not valid yet";
		case JWT_BAD_CLAIM:
			return "the bearer token has a malformed claim";
		case JWT_ROLE_NOT_ALLOWED:
			return "the bearer token's role may not use this API";
	}
	return "invalid token";
}

long
jwt_sign_hs256(const char *payload_json, size_t len,
			   const unsigned char *key, size_t keylen,
			   char *out, size_t outsize)
{
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	long		n,
				k;

	n = b64url_encode((const unsigned char *) header, sizeof(header) - 1, out, outsize);
	if (n < 0 || (size_t) n + 1 >= outsize)
		return -1;
	out[n++] = '.';
	k = b64url_encode((const unsigned char *) payload_json, len, out + n, outsize - n);
	if (k < 0)
		return -1;
	n += k;
	if (HMAC(EVP_sha256(), key, (int) keylen, (const unsigned char *) out, n, mac, &maclen) == NULL)
		return -1;
	if ((size_t) n + 1 >= outsize)
		return -1;
	out[n++] = '.';
	k = b64url_encode(mac, maclen, out + n, outsize - n);
	if (k < 0)
		return -1;
	return n + k;
}
