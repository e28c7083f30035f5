/*-------------------------------------------------------------------------
 *
 * fuzz/fuzz_rfc3339.c
 *		libFuzzer harness for the RFC 3339 timestamp parser (src/rfc3339.c).
 *		Whatever it accepts is checked against the C library's timegm() of
 *		the same fields, and must survive a round trip through a canonical
 *		"YYYY-MM-DDTHH:MM:SS.ffffffZ" rendering.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <time.h>

#include "batch.h"
#include "fuzz_common.h"

#define PG_UNIX_OFFSET_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC)

static int
num(const char *s, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *s = malloc(size + 1);
	TimestampTz ts;

	memcpy(s, data, size);
	s[size] = '\0';
	if (ut_parse_rfc3339(s, &ts))
	{
		struct tm	tm = {0};
		int64		unix_usecs = ts + PG_UNIX_OFFSET_USECS;
		int64		secs = unix_usecs / USECS_PER_SEC - (unix_usecs % USECS_PER_SEC < 0 ? 1 : 0);
		int64		usecs = unix_usecs - secs * USECS_PER_SEC;
		int64		offset = 0;
		const char *tz;
		char		canon[64];
		struct tm	out;
		time_t		t;
		TimestampTz again;

		/* The fixed-position fields of what was accepted. */
		FUZZ_ASSERT(strlen(s) >= 20);
		FUZZ_ASSERT(s[4] == '-' && s[7] == '-' && s[13] == ':' && s[16] == ':');
		tm.tm_year = num(s, 4) - 1900;
		tm.tm_mon = num(s + 5, 2) - 1;
		tm.tm_mday = num(s + 8, 2);
		tm.tm_hour = num(s + 11, 2);
		tm.tm_min = num(s + 14, 2);
		tm.tm_sec = num(s + 17, 2);
		tz = s + 19;
		if (*tz == '.')
			for (tz++; *tz >= '0' && *tz <= '9'; tz++)
				;
		if (*tz == '+' || *tz == '-')
			offset = (*tz == '-' ? -1 : 1) * (num(tz + 1, 2) * 3600 + num(tz + 4, 2) * 60);
		else
			FUZZ_ASSERT(*tz == 'Z' || *tz == 'z');

		t = timegm(&tm);
		FUZZ_ASSERT((int64) t - offset == secs);
		FUZZ_ASSERT(usecs >= 0 && usecs < USECS_PER_SEC);

		/* Canonical rendering parses back to the same instant. */
		t = (time_t) secs;
		FUZZ_ASSERT(gmtime_r(&t, &out) != NULL);
		snprintf(canon, sizeof(canon), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
				 out.tm_year + 1900, out.tm_mon + 1, out.tm_mday,
				 out.tm_hour, out.tm_min, out.tm_sec, (int) usecs);
		if (out.tm_year + 1900 >= 1 && out.tm_year + 1900 <= 9999)
		{
			FUZZ_ASSERT(ut_parse_rfc3339(canon, &again));
			FUZZ_ASSERT(again == ts);
		}
	}
	free(s);
	fuzz_reset();
	return 0;
}
