/*-------------------------------------------------------------------------
 *
 * src/gate.h
 *		The one decision whether a table may be written directly (gate.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef UT_GATE_H
#define UT_GATE_H

#include "postgres.h"

#include "nodes/execnodes.h"
#include "utils/relcache.h"

/* What the direct path writes to a table, and so what it must match. */
typedef enum UtGateKind
{
	UT_GATE_EVENTS,				/* INSERT ... ON CONFLICT DO NOTHING, summarized */
	UT_GATE_COUNTERS			/* INSERT ... ON CONFLICT DO UPDATE */
} UtGateKind;

extern bool ut_direct_write;

extern void ut_gate_init(void);
extern const char *ut_gate_decline(Relation rel, UtGateKind kind, bool root);
extern bool ut_gate_allows(Relation rel, UtGateKind kind, bool root);
extern bool ut_constraints_implied(Relation rel);
extern void ut_check_constraints(ResultRelInfo *rri, TupleTableSlot *slot,
								 EState *estate, UtGateKind kind);

#endif							/* UT_GATE_H */
