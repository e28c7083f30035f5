/*-------------------------------------------------------------------------
 *
 * fuzz/fuzz_common.h
 *		Shared pieces of the fuzz harnesses.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Free everything palloc'd since the last reset. */
extern void fuzz_reset(void);

/* A palloc'd copy of data, exactly len bytes long (no terminator). */
extern char *fuzz_exact_copy(const uint8_t *data, size_t len);

/* Abort with a message: libFuzzer reports it as a crash with the input. */
#define FUZZ_ASSERT(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

#endif							/* FUZZ_COMMON_H */
