/*-------------------------------------------------------------------------
 *
 * src/lookup.h
 *		Reading a row by its primary key (lookup.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef UT_LOOKUP_H
#define UT_LOOKUP_H

#include "postgres.h"

extern bool ut_fetch_by_key(const char *relname, int nkeys, const Datum *keys,
							int ncols, const char *const *cols,
							Datum *values, bool *nulls);

#endif							/* UT_LOOKUP_H */
