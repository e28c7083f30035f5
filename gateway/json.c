/*-------------------------------------------------------------------------
 *
 * gateway/json.c
 *		Strict JSON validation, top-level object iteration, string
 *		decoding and a growable buffer for the gateway.  No allocation in
 *		the parser; recursion is bounded by JSON_MAX_DEPTH.
 *
 *-------------------------------------------------------------------------
 */
#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser
{
	const unsigned char *p;
	const unsigned char *end;
	int			depth;
} parser;

static int	parse_value(parser *ps, json_type *type);

static void
skip_ws(parser *ps)
{
	while (ps->p < ps->end &&
		   (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Read \uXXXX at p (pointing at 'u'); returns the code unit or -1. */
static long
read_u4(const unsigned char *p, const unsigned char *end)
{
	long		v = 0;
	int			i;

	if (end - p < 5 || p[0] != 'u')
		return -1;
	for (i = 1; i <= 4; i++)
	{
		int			h = hexval(p[i]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* Length of the valid UTF-8 sequence at p, or 0 when invalid. */
static int
utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned char c = p[0];
	int			n,
				i;
	unsigned long cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
	{
		n = 2;
		cp = c & 0x1F;
	}
	else if (c >= 0xE0 && c <= 0xEF)
	{
		n = 3;
		cp = c & 0x0F;
	}
	else if (c >= 0xF0 && c <= 0xF4)
	{
		n = 4;
		cp = c & 0x07;
	}
	else
		return 0;
	if (end - p < n)
		return 0;
	for (i = 1; i < n; i++)
	{
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
		(n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return n;
}

/* String token; ps->p at the opening quote. */
static int
parse_string(parser *ps)
{
	ps->p++;
	while (ps->p < ps->end)
	{
		unsigned char c = *ps->p;

		if (c == '"')
		{
			ps->p++;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c == '\\')
		{
			if (ps->end - ps->p < 2)
				return -1;
			c = ps->p[1];
			if (c == 'u')
			{
				long		u = read_u4(ps->p + 1, ps->end);

				if (u < 0)
					return -1;
				ps->p += 6;
				if (u >= 0xD800 && u <= 0xDBFF)
				{
					long		lo;

					if (ps->end - ps->p < 6 || ps->p[0] != '\\')
						return -1;
					lo = read_u4(ps->p + 1, ps->end);
					if (lo < 0xDC00 || lo > 0xDFFF)
						return -1;
					ps->p += 6;
				}
				else if (u >= 0xDC00 && u <= 0xDFFF)
					return -1;
				continue;
			}
			if (!strchr("\"\\/bfnrt", c) || c == '\0')
				return -1;
			ps->p += 2;
			continue;
		}
		{
			int			n = utf8_len(ps->p, ps->end);

			if (n == 0)
				return -1;
			ps->p += n;
		}
	}
	return -1;
}

static int
parse_number(parser *ps)
{
	const unsigned char *p = ps->p;

	if (p < ps->end && *p == '-')
		p++;
	if (p >= ps->end)
		return -1;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	else
		return -1;
	if (p < ps->end && *p == '.')
	{
		p++;
		if (p >= ps->end || *p < '0' || *p > '9')
			return -1;
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < ps->end && (*p == 'e' || *p == 'E'))
	{
		p++;
		if (p < ps->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= ps->end || *p < '0' || *p > '9')
			return -1;
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	}
	ps->p = p;
	return 0;
}

static int
parse_literal(parser *ps, const char *lit)
{
	size_t		n = strlen(lit);

	if ((size_t) (ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0)
		return -1;
	ps->p += n;
	return 0;
}

/*
 * Object or array; when cb is set (top level only), members are reported.
 */
static int
parse_container(parser *ps, int is_object, json_member_cb cb, void *arg)
{
	unsigned char close = is_object ? '}' : ']';

	if (++ps->depth > JSON_MAX_DEPTH)
		return -1;
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close)
	{
		ps->p++;
		ps->depth--;
		return 0;
	}
	for (;;)
	{
		const unsigned char *key = NULL,
				   *val;
		size_t		keylen = 0;
		json_type	type;
		int			rc;

		skip_ws(ps);
		if (is_object)
		{
			if (ps->p >= ps->end || *ps->p != '"')
				return -1;
			key = ps->p;
			if (parse_string(ps) != 0)
				return -1;
			keylen = ps->p - key;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':')
				return -1;
			ps->p++;
			skip_ws(ps);
		}
		val = ps->p;
		if (parse_value(ps, &type) != 0)
			return -1;
		if (cb)
		{
			rc = cb((const char *) key, keylen, type, (const char *) val, ps->p - val, arg);
			if (rc != 0)
				return rc;
		}
		skip_ws(ps);
		if (ps->p >= ps->end)
			return -1;
		if (*ps->p == ',')
		{
			ps->p++;
			continue;
		}
		if (*ps->p == close)
		{
			ps->p++;
			ps->depth--;
			return 0;
		}
		return -1;
	}
}

static int
parse_value(parser *ps, json_type *type)
{
	if (ps->p >= ps->end)
		return -1;
	switch (*ps->p)
	{
		case '"':
			*type = JSON_STRING;
			return parse_string(ps);
		case '{':
			*type = JSON_OBJECT;
			return parse_container(ps, 1, NULL, NULL);
		case '[':
			*type = JSON_ARRAY;
			return parse_container(ps, 0, NULL, NULL);
		case 't':
			*type = JSON_TRUE;
			return parse_literal(ps, "true");
		case 'f':
			*type = JSON_FALSE;
			return parse_literal(ps, "false");
		case 'n':
			*type = JSON_NULL;
			return parse_literal(ps, "null");
		default:
			*type = JSON_NUMBER;
			return parse_number(ps);
	}
}

int
json_validate(const char *s, size_t len)
{
	parser		ps = {(const unsigned char *) s, (const unsigned char *) s + len, 0};
	json_type	type;

	skip_ws(&ps);
	if (parse_value(&ps, &type) != 0)
		return -1;
	skip_ws(&ps);
	return ps.p == ps.end ? 0 : -1;
}

int
json_object_members(const char *s, size_t len, json_member_cb cb, void *arg)
{
	parser		ps = {(const unsigned char *) s, (const unsigned char *) s + len, 0};
	int			rc;

	skip_ws(&ps);
	if (ps.p >= ps.end || *ps.p != '{')
		return -1;
	/* Validate the whole text first so that cb never sees a partial object. */
	if (json_validate(s, len) != 0)
		return -1;
	rc = parse_container(&ps, 1, cb, arg);
	return rc;
}

static int
put_utf8(unsigned long cp, char *out, size_t outsize, size_t *n)
{
	unsigned char buf[4];
	int			k,
				i;

	if (cp < 0x80)
	{
		buf[0] = cp;
		k = 1;
	}
	else if (cp < 0x800)
	{
		buf[0] = 0xC0 | (cp >> 6);
		buf[1] = 0x80 | (cp & 0x3F);
		k = 2;
	}
	else if (cp < 0x10000)
	{
		buf[0] = 0xE0 | (cp >> 12);
		buf[1] = 0x80 | ((cp >> 6) & 0x3F);
		buf[2] = 0x80 | (cp & 0x3F);
		k = 3;
	}
	else
	{
		buf[0] = 0xF0 | (cp >> 18);
		buf[1] = 0x80 | ((cp >> 12) & 0x3F);
		buf[2] = 0x80 | ((cp >> 6) & 0x3F);
		buf[3] = 0x80 | (cp & 0x3F);
		k = 4;
	}
	if (*n + k >= outsize)
		return -1;
	for (i = 0; i < k; i++)
		out[(*n)++] = buf[i];
	return 0;
}

long
json_string_decode(const char *tok, size_t toklen, char *out, size_t outsize)
{
	parser		ps = {(const unsigned char *) tok, (const unsigned char *) tok + toklen, 0};
	const unsigned char *p,
			   *end;
	size_t		n = 0;

	if (toklen < 2 || tok[0] != '"' || parse_string(&ps) != 0 || ps.p != ps.end || outsize == 0)
		return -1;
	p = (const unsigned char *) tok + 1;
	end = (const unsigned char *) tok + toklen - 1;
	while (p < end)
	{
		if (*p != '\\')
		{
			if (n + 1 >= outsize)
				return -1;
			out[n++] = *p++;
			continue;
		}
		switch (p[1])
		{
			case 'u':
				{
					unsigned long cp = read_u4(p + 1, end);

					p += 6;
					if (cp >= 0xD800 && cp <= 0xDBFF)
					{
						unsigned long lo = read_u4(p + 1, end);

						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
						p += 6;
					}
					if (cp == 0 || put_utf8(cp, out, outsize, &n) != 0)
						return -1;
					continue;
				}
			case 'b':
				out[n] = '\b';
				break;
			case 'f':
				out[n] = '\f';
				break;
			case 'n':
				out[n] = '\n';
				break;
			case 'r':
				out[n] = '\r';
				break;
			case 't':
				out[n] = '\t';
				break;
			default:
				out[n] = p[1];
				break;
		}
		if (n + 1 >= outsize)
			return -1;
		n++;
		p += 2;
	}
	out[n] = '\0';
	return (long) n;
}

int
json_string_equals(const char *tok, size_t toklen, const char *s)
{
	size_t		n = strlen(s);

	/* Fast path: no escapes. */
	if (toklen == n + 2 && tok[0] == '"' && memcmp(tok + 1, s, n) == 0)
		return 1;
	if (toklen <= 2 * n + 64)
	{
		char		buf[512];
		long		k;

		if (n >= sizeof(buf))
			return 0;
		k = json_string_decode(tok, toklen, buf, sizeof(buf));
		return k == (long) n && memcmp(buf, s, n) == 0;
	}
	return 0;
}

/* strbuf ------------------------------------------------------------------ */

void
sb_init(strbuf *sb)
{
	sb->data = NULL;
	sb->len = 0;
	sb->cap = 0;
	sb->failed = 0;
}

void
sb_free(strbuf *sb)
{
	free(sb->data);
	sb_init(sb);
}

static int
sb_reserve(strbuf *sb, size_t extra)
{
	size_t		need = sb->len + extra + 1;
	char	   *nd;
	size_t		cap;

	if (sb->failed)
		return -1;
	if (need <= sb->cap)
		return 0;
	cap = sb->cap ? sb->cap : 256;
	while (cap < need)
		cap *= 2;
	nd = realloc(sb->data, cap);
	if (nd == NULL)
	{
		sb->failed = 1;
		return -1;
	}
	sb->data = nd;
	sb->cap = cap;
	return 0;
}

void
sb_append(strbuf *sb, const char *s, size_t n)
{
	if (sb_reserve(sb, n) != 0)
		return;
	memcpy(sb->data + sb->len, s, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
}

void
sb_puts(strbuf *sb, const char *s)
{
	sb_append(sb, s, strlen(s));
}

void
sb_printf(strbuf *sb, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || sb_reserve(sb, n) != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(sb->data + sb->len, n + 1, fmt, ap);
	va_end(ap);
	sb->len += n;
}

void
sb_json_string(strbuf *sb, const char *s, size_t n)
{
	size_t		i;

	sb_append(sb, "\"", 1);
	for (i = 0; i < n; i++)
	{
		unsigned char c = s[i];

		if (c == '"' || c == '\\')
		{
			char		e[2] = {'\\', c};

			sb_append(sb, e, 2);
		}
		else if (c < 0x20)
			sb_printf(sb, "\\u%04x", c);
		else
			sb_append(sb, (const char *) &s[i], 1);
	}
	sb_append(sb, "\"", 1);
}
