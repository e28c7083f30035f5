/*-------------------------------------------------------------------------
 *
 * src/hmac.c
 *		HMAC-SHA256 signatures of batches: the X-Install-Signature header,
 *		verification in constant time, and secret generation.
 *
 * Uses PostgreSQL's own common/hmac.h, which wraps OpenSSL when the server
 * is built with it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hmac.h"
#include "fmgr.h"
#include "port.h"
#include "utils/builtins.h"

#include "usage_tracking.h"

PG_FUNCTION_INFO_V1(usage_tracking_hmac_sha256_hex);
PG_FUNCTION_INFO_V1(usage_tracking_generate_secret);

/* HMAC-SHA256 of the concatenation part1 || part2 || part3. */
void
ut_hmac_sha256(const uint8 *key, size_t keylen,
			   const uint8 *part1, size_t len1,
			   const uint8 *part2, size_t len2,
			   const uint8 *part3, size_t len3,
			   uint8 *out)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_hmac_init(ctx, key, keylen) < 0 ||
		(len1 > 0 && pg_hmac_update(ctx, part1, len1) < 0) ||
		(len2 > 0 && pg_hmac_update(ctx, part2, len2) < 0) ||
		(len3 > 0 && pg_hmac_update(ctx, part3, len3) < 0) ||
		pg_hmac_final(ctx, out, UT_MAC_LEN) < 0)
	{
		const char *why = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		elog(ERROR, "could not compute HMAC-SHA256: %s", why);
	}
	pg_hmac_free(ctx);
}

/* MACs ut_signature_matches() has computed in this backend (for tests). */
uint64		ut_signature_macs = 0;

/* Does mac sign "<ts>.<body>" under secret?  Constant time in the MAC. */
bool
ut_signature_matches(const char *secret, const uint8 *mac,
					 const char *ts_str, size_t ts_len,
					 const char *body, size_t body_len)
{
	uint8		expected[UT_MAC_LEN];
	bool		ok;

	if (secret == NULL)
		return false;
	ut_signature_macs++;
	ut_hmac_sha256((const uint8 *) secret, strlen(secret),
				   (const uint8 *) ts_str, ts_len,
				   (const uint8 *) ".", 1,
				   (const uint8 *) body, body_len,
				   expected);
	ok = timingsafe_bcmp(expected, mac, UT_MAC_LEN) == 0;
	explicit_bzero(expected, sizeof(expected));
	return ok;
}

/* SQL function: hmac_sha256_hex(key text, message text) returns text */
Datum
usage_tracking_hmac_sha256_hex(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	text	   *msg = PG_GETARG_TEXT_PP(1);
	uint8		mac[UT_MAC_LEN];
	char		hex[UT_MAC_LEN * 2 + 1];

	ut_hmac_sha256((const uint8 *) VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
				   (const uint8 *) VARDATA_ANY(msg), VARSIZE_ANY_EXHDR(msg),
				   NULL, 0, NULL, 0, mac);
	hex_encode((const char *) mac, UT_MAC_LEN, hex);
	hex[UT_MAC_LEN * 2] = '\0';
	PG_RETURN_TEXT_P(cstring_to_text(hex));
}

/* SQL function: generate_secret() returns text — 32 random bytes as hex */
Datum
usage_tracking_generate_secret(PG_FUNCTION_ARGS)
{
	uint8		buf[32];
	char		hex[65];

	if (!pg_strong_random(buf, sizeof(buf)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random secret")));
	hex_encode((const char *) buf, sizeof(buf), hex);
	hex[64] = '\0';
	explicit_bzero(buf, sizeof(buf));
	PG_RETURN_TEXT_P(cstring_to_text(hex));
}
