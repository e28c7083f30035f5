/*-------------------------------------------------------------------------
 *
 * gateway/jwt.h
 *		HS256 JSON Web Token verification (SPEC 2.4) as pure functions: no
 *		HTTP, no globals, no clock of its own, so it can be fuzzed alone.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_JWT_H
#define GATEWAY_JWT_H

#include <stddef.h>

#define JWT_LEEWAY_S	30
/* The largest exp, nbf or iat taken: 9999-12-31T23:59:59Z. */
#define JWT_MAX_TIME	253402300799LL
#define JWT_MAX_TOKEN	8192

typedef enum jwt_result
{
	JWT_OK = 0,
	JWT_MALFORMED,				/* not three base64url parts of JSON objects */
	JWT_BAD_ALG,				/* alg is not HS256 (alg none included) */
	JWT_BAD_SIGNATURE,			/* the HMAC does not verify */
	JWT_MISSING_EXP,			/* no numeric exp claim */
	JWT_EXPIRED,				/* exp is past, beyond the leeway */
	JWT_NOT_YET_VALID,			/* nbf or iat is in the future, beyond the leeway */
	JWT_BAD_CLAIM,				/* role, account_id or sub is not a string */
	JWT_ROLE_NOT_ALLOWED		/* role missing or not one of allowed_roles */
} jwt_result;

typedef struct jwt_claims
{
	char		role[64];
	char		account_id[128];	/* "" when absent */
	char		sub[128];			/* "" when absent */
	double		exp;
	char	   *payload;			/* the decoded claims JSON, NUL-terminated (malloc) */
	size_t		payload_len;
} jwt_claims;

/*
 * Verify token[0..len) with the HS256 key at time now (Unix seconds).
 * allowed_roles is a NULL-terminated list the role claim must be in.
 * On JWT_OK, *out holds the claims; call jwt_claims_free afterwards (also
 * safe after a failure).
 */
extern jwt_result jwt_verify(const char *token, size_t len,
							 const unsigned char *key, size_t keylen,
							 double now, const char *const *allowed_roles,
							 jwt_claims *out);

extern void jwt_claims_free(jwt_claims *c);

/* A short machine-readable reason ("token_expired", …). */
extern const char *jwt_result_code(jwt_result r);
/* A human sentence for the error body. */
extern const char *jwt_result_message(jwt_result r);

/*
 * Sign payload_json with HS256 into out (NUL-terminated).  Returns the token
 * length, or -1 when out is too small.  For tools and tests.
 */
extern long jwt_sign_hs256(const char *payload_json, size_t len,
						   const unsigned char *key, size_t keylen,
						   char *out, size_t outsize);

/* base64url without padding; -1 on invalid input or overflow. */
extern long b64url_decode(const char *in, size_t len, unsigned char *out, size_t outsize);
extern long b64url_encode(const unsigned char *in, size_t len, char *out, size_t outsize);

#endif							/* GATEWAY_JWT_H */
