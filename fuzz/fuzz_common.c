/*-------------------------------------------------------------------------
 *
 * fuzz/fuzz_common.c
 *		palloc and friends for the fuzz harnesses: every allocation is its
 *		own malloc (so AddressSanitizer sees each one's bounds) and is linked
 *		into a list that fuzz_reset() frees after each input, the way a
 *		backend's memory context is reset after each request.
 *
 * These definitions take the place of libpgcommon's fe_memutils.o.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "fuzz_common.h"

typedef struct Chunk
{
	struct Chunk *prev;
	struct Chunk *next;
	size_t		size;
	/* 16-byte alignment for whatever the caller stores */
	max_align_t align[];
} Chunk;

static Chunk *chunks = NULL;

static void *
chunk_alloc(size_t size, bool zero)
{
	Chunk	   *c = malloc(sizeof(Chunk) + size);

	if (c == NULL)
		abort();
	if (zero)
		memset(c->align, 0, size);
	c->size = size;
	c->prev = NULL;
	c->next = chunks;
	if (chunks)
		chunks->prev = c;
	chunks = c;
	return c->align;
}

static void
chunk_unlink(Chunk *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		chunks = c->next;
	if (c->next)
		c->next->prev = c->prev;
}

void
fuzz_reset(void)
{
	while (chunks)
	{
		Chunk	   *c = chunks;

		chunks = c->next;
		free(c);
	}
}

void *
palloc(Size size)
{
	return chunk_alloc(size, false);
}

void *
palloc0(Size size)
{
	return chunk_alloc(size, true);
}

void *
palloc_extended(Size size, int flags)
{
	return chunk_alloc(size, (flags & MCXT_ALLOC_ZERO) != 0);
}

void
pfree(void *pointer)
{
	Chunk	   *c = (Chunk *) ((char *) pointer - offsetof(Chunk, align));

	chunk_unlink(c);
	free(c);
}

void *
repalloc(void *pointer, Size size)
{
	Chunk	   *c = (Chunk *) ((char *) pointer - offsetof(Chunk, align));
	void	   *n = chunk_alloc(size, false);

	memcpy(n, pointer, Min(size, c->size));
	pfree(pointer);
	return n;
}

char *
pstrdup(const char *in)
{
	return pnstrdup(in, strlen(in));
}

char *
pnstrdup(const char *in, Size size)
{
	size_t		len = strnlen(in, size);
	char	   *out = chunk_alloc(len + 1, false);

	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

/* The rest of fe_memutils' surface, for any common code that wants it. */
void *
pg_malloc(size_t size)
{
	return chunk_alloc(size, false);
}

void *
pg_malloc0(size_t size)
{
	return chunk_alloc(size, true);
}

void *
pg_malloc_extended(size_t size, int flags)
{
	return chunk_alloc(size, (flags & MCXT_ALLOC_ZERO) != 0);
}

void *
pg_realloc(void *pointer, size_t size)
{
	return pointer ? repalloc(pointer, size) : chunk_alloc(size, false);
}

char *
pg_strdup(const char *in)
{
	return pstrdup(in);
}

void
pg_free(void *pointer)
{
	if (pointer)
		pfree(pointer);
}

/* A copy of data in a buffer of exactly len bytes, nothing after it. */
char *
fuzz_exact_copy(const uint8_t *data, size_t len)
{
	char	   *buf = chunk_alloc(len, false);

	memcpy(buf, data, len);
	return buf;
}

/*
 * PostgreSQL 15 builds json_errdetail() into the backend's copy of the JSON
 * lexer only; the frontend library lacks it.  The message text does not
 * matter to the harnesses, only that there is one.
 */
#include "common/jsonapi.h"

char *
json_errdetail(JsonParseErrorType error, JsonLexContext *lex)
{
	return psprintf("JSON parse error %d", (int) error);
}
