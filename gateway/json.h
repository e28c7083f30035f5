/*-------------------------------------------------------------------------
 *
 * gateway/json.h
 *		A small, strict JSON (RFC 8259) validator and top-level object
 *		iterator, and a growable string buffer.  Pure C, no I/O: the JWT
 *		code and the fuzzers use it as well as the gateway.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_JSON_H
#define GATEWAY_JSON_H

#include <stddef.h>

#define JSON_MAX_DEPTH 64

typedef enum json_type
{
	JSON_STRING,
	JSON_NUMBER,
	JSON_OBJECT,
	JSON_ARRAY,
	JSON_TRUE,
	JSON_FALSE,
	JSON_NULL
} json_type;

/* Called for each member of a top-level object; key and val are raw tokens
 * (a string value keeps its quotes and escapes).  Return non-zero to stop. */
typedef int (*json_member_cb) (const char *key, size_t keylen, json_type type,
							   const char *val, size_t vallen, void *arg);

/* 0 when s[0..len) is exactly one JSON value (surrounding white space
 * allowed) with valid UTF-8 and escapes; -1 otherwise. */
extern int	json_validate(const char *s, size_t len);

/* Validate s as a JSON object and call cb for each member in order.
 * Returns 0, -1 when s is not a valid JSON object, or cb's non-zero value. */
extern int	json_object_members(const char *s, size_t len, json_member_cb cb, void *arg);

/* Decode a raw string token (with its quotes) into out as UTF-8 plus a
 * terminating NUL.  Returns the decoded length, or -1 when the token is
 * invalid, holds \u0000, or does not fit in outsize. */
extern long json_string_decode(const char *tok, size_t toklen, char *out, size_t outsize);

/* Whether the raw string token tok equals the plain ASCII text s. */
extern int	json_string_equals(const char *tok, size_t toklen, const char *s);

/* Growable NUL-terminated byte buffer. */
typedef struct strbuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	int			failed;			/* an allocation failed; data is unusable */
} strbuf;

extern void sb_init(strbuf *sb);
extern void sb_free(strbuf *sb);
extern void sb_append(strbuf *sb, const char *s, size_t n);
extern void sb_puts(strbuf *sb, const char *s);
extern void sb_printf(strbuf *sb, const char *fmt,...) __attribute__((format(printf, 2, 3)));
/* Append s[0..n) as a JSON string, quotes included. */
extern void sb_json_string(strbuf *sb, const char *s, size_t n);

#endif							/* GATEWAY_JSON_H */
