/*-------------------------------------------------------------------------
 *
 * fuzz/fuzz_signature.c
 *		libFuzzer harness for the X-Install-Signature parser
 *		(src/signature.c): any bytes, in a buffer of exactly their length.
 *		What it accepts must be exactly "<64 hex>:<1-12 digits>", with the
 *		MAC and timestamp decoded from it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "signature.h"
#include "fuzz_common.h"

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *hdr = fuzz_exact_copy(data, size);
	uint8		mac[UT_MAC_LEN];
	int64		ts = -1;
	const char *ts_str = NULL;
	size_t		ts_len = 0;
	bool		ok;
	bool		expect = size >= 66 && size <= 64 + 1 + 12 && hdr[64] == ':';

	for (size_t i = 0; expect && i < size; i++)
	{
		if (i < 64)
			expect = hexval(hdr[i]) >= 0;
		else if (i > 64)
			expect = hdr[i] >= '0' && hdr[i] <= '9';
	}

	ok = ut_parse_signature_header(hdr, size, mac, &ts, &ts_str, &ts_len);
	FUZZ_ASSERT(ok == expect);
	if (ok)
	{
		int64		v = 0;

		FUZZ_ASSERT(ts_str == hdr + 65 && ts_len == size - 65);
		for (size_t i = 0; i < ts_len; i++)
			v = v * 10 + (ts_str[i] - '0');
		FUZZ_ASSERT(v == ts && ts >= 0 && ts < INT64CONST(1000000000000));
		for (int i = 0; i < UT_MAC_LEN; i++)
			FUZZ_ASSERT(mac[i] == ((hexval(hdr[2 * i]) << 4) | hexval(hdr[2 * i + 1])));
	}
	fuzz_reset();
	return 0;
}
