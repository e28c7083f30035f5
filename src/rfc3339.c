/*-------------------------------------------------------------------------
 *
 * src/rfc3339.c
 *		Strict RFC 3339 timestamp parsing ("2025-11-03T10:30:00Z",
 *		"2025-11-03T12:30:00.250+02:00") into PostgreSQL microseconds.
 *
 * Kept free of backend dependencies so the fuzz harnesses can link it.
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "batch.h"

static bool
read_digits(const char **p, int n, int *out)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		char		c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static bool
expect(const char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

static bool
is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64
days_from_epoch(int y, int m, int d)
{
	static const int cumulative[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
	int64		yy = y - 1;
	int64		days;

	days = yy * 365 + yy / 4 - yy / 100 + yy / 400;	/* days before year y */
	days += cumulative[m - 1] + (m > 2 && is_leap(y) ? 1 : 0) + (d - 1);
	return days - 719162;		/* days before 1970-01-01 */
}

bool
ut_parse_rfc3339(const char *s, TimestampTz *result)
{
	static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const char *p = s;
	int			year, month, day, hour, minute, second;
	int64		usec = 0;
	int64		offset_sec = 0;
	int64		unix_usec;

	if (!read_digits(&p, 4, &year) || !expect(&p, '-') ||
		!read_digits(&p, 2, &month) || !expect(&p, '-') ||
		!read_digits(&p, 2, &day))
		return false;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return false;
	p++;
	if (!read_digits(&p, 2, &hour) || !expect(&p, ':') ||
		!read_digits(&p, 2, &minute) || !expect(&p, ':') ||
		!read_digits(&p, 2, &second))
		return false;

	if (year < 1 || month < 1 || month > 12 || day < 1 ||
		day > mdays[month - 1] + (month == 2 && is_leap(year) ? 1 : 0) ||
		hour > 23 || minute > 59 || second > 59)
		return false;

	if (*p == '.')
	{
		int			ndigits = 0;
		int64		scale = 100000;

		p++;
		while (*p >= '0' && *p <= '9')
		{
			if (ndigits < 6)
			{
				usec += (*p - '0') * scale;
				scale /= 10;
			}
			ndigits++;
			p++;
			if (ndigits > 9)
				return false;
		}
		if (ndigits == 0)
			return false;
	}

	if (*p == 'Z' || *p == 'z')
		p++;
	else if (*p == '+' || *p == '-')
	{
		int			sign = (*p == '-') ? -1 : 1;
		int			oh, om;

		p++;
		if (!read_digits(&p, 2, &oh) || !expect(&p, ':') ||
			!read_digits(&p, 2, &om) || oh > 23 || om > 59)
			return false;
		offset_sec = sign * (oh * 3600 + om * 60);
	}
	else
		return false;

	if (*p != '\0')
		return false;

	unix_usec = ((days_from_epoch(year, month, day) * 86400 +
				  hour * 3600 + minute * 60 + second - offset_sec) * USECS_PER_SEC) + usec;
	*result = unix_usec -
		((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC);
	return true;
}
