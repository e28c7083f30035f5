/*-------------------------------------------------------------------------
 *
 * src/counters.h
 *		Adding to counter rows without an SQL statement (counters.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef UT_COUNTERS_H
#define UT_COUNTERS_H

#include "postgres.h"

#define UT_COUNTER_MAX_COLS 16

typedef enum UtCounterOp
{
	UT_COUNTER_KEY,				/* part of the unique key */
	UT_COUNTER_ADD,				/* bigint: old + delta */
	UT_COUNTER_KEEP,			/* bigint: old, 0 in a new row */
	UT_COUNTER_SUB_CLAMP,		/* bigint: greatest(old - delta of column arg, 0) */
	UT_COUNTER_ADD_NUMERIC		/* numeric, NULL meaning none: old + delta */
} UtCounterOp;

typedef struct UtCounterColumn
{
	const char *name;
	UtCounterOp op;
	int			arg;
} UtCounterColumn;

/* A counter table: every column a new row needs a value for is listed. */
typedef struct UtCounterSpec
{
	const char *relname;		/* in schema usage_tracking */
	int			ncols;
	const UtCounterColumn *cols;
} UtCounterSpec;

typedef struct UtCounters UtCounters;

extern UtCounters *ut_counters_open(const UtCounterSpec *spec);
extern void ut_counters_add(UtCounters *c, const Datum *values, const bool *nulls);
extern void ut_counters_close(UtCounters *c);

#endif							/* UT_COUNTERS_H */
