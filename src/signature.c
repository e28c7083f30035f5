/*-------------------------------------------------------------------------
 *
 * src/signature.c
 *		Parse the X-Install-Signature header, "<64 hex>:<unix seconds>".
 *
 * Free of backend dependencies so the fuzz harnesses can link it.
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "signature.h"

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Parse "<64 hex>:<unix seconds>".  On success fills the raw MAC, the
 * timestamp and the timestamp's text as sent (the signed message uses it).
 */
bool
ut_parse_signature_header(const char *hdr, size_t len, uint8 *mac, int64 *ts,
						  const char **ts_str, size_t *ts_len)
{
	int64		v = 0;
	size_t		ndigits;

	if (len < UT_MAC_LEN * 2 + 2 || hdr[UT_MAC_LEN * 2] != ':')
		return false;
	for (int i = 0; i < UT_MAC_LEN; i++)
	{
		int			hi = hex_value(hdr[2 * i]);
		int			lo = hex_value(hdr[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		mac[i] = (uint8) ((hi << 4) | lo);
	}
	ndigits = len - (UT_MAC_LEN * 2 + 1);
	if (ndigits < 1 || ndigits > 12)
		return false;
	for (size_t i = UT_MAC_LEN * 2 + 1; i < len; i++)
	{
		if (hdr[i] < '0' || hdr[i] > '9')
			return false;
		v = v * 10 + (hdr[i] - '0');
	}
	*ts = v;
	*ts_str = hdr + UT_MAC_LEN * 2 + 1;
	*ts_len = ndigits;
	return true;
}

