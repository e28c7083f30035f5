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
	UT_COUNTER_ADD_NUMERIC,		/* numeric, NULL meaning none: old + delta */
	UT_COUNTER_CUSTOM			/* of type "type": the spec's merge function sets it */
} UtCounterOp;

typedef struct UtCounterColumn
{
	const char *name;
	UtCounterOp op;
	int			arg;			/* UT_COUNTER_SUB_CLAMP: the column subtracted */
	Oid			type;			/* UT_COUNTER_CUSTOM: its type */
} UtCounterColumn;

/*
 * Sets the UT_COUNTER_CUSTOM columns of out from the old row (found is
 * false for a new key: old is then all NULL) and the deltas; all arrays are
 * by spec column, and out already holds the other columns' new values.
 */
typedef void (*UtCounterMerge) (bool found, const Datum *old, const bool *old_null,
								const Datum *delta, const bool *delta_null,
								Datum *out, bool *out_null);

/* A counter table: every column a new row needs a value for is listed. */
typedef struct UtCounterSpec
{
	const char *relname;		/* in schema usage_tracking */
	int			ncols;
	const UtCounterColumn *cols;
	UtCounterMerge merge;		/* NULL: no UT_COUNTER_CUSTOM column */
} UtCounterSpec;

typedef struct UtCounters UtCounters;

extern UtCounters *ut_counters_open(const UtCounterSpec *spec);
extern bool ut_counters_add(UtCounters *c, const Datum *values, const bool *nulls,
							Datum *result, bool *result_null);
extern void ut_counters_close(UtCounters *c);

#endif							/* UT_COUNTERS_H */
