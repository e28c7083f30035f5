/*-------------------------------------------------------------------------
 *
 * src/target.h
 *		Writing a table of the extension without an SQL statement (target.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef UT_TARGET_H
#define UT_TARGET_H

#include "postgres.h"

#include "executor/execPartition.h"
#include "nodes/execnodes.h"
#include "utils/relcache.h"

typedef struct UtTarget
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *root;
	ModifyTableState *mtstate;	/* partitioned tables only */
	PartitionTupleRouting *proute;
	TupleTableSlot *rootslot;	/* a row of rel's own type, to route */
	CommandId	cid;
	List	   *prepared;		/* result relations ready for probes */
} UtTarget;

extern Relation ut_table_open(const char *relname);
extern bool ut_map_columns(Relation rel, const char *const *names, int n,
						   AttrNumber *attnos);
extern UtTarget *ut_target_begin(Relation rel);
extern ResultRelInfo *ut_target_route(UtTarget *t);
extern void ut_target_to_partition(UtTarget *t, ResultRelInfo *rri,
								   TupleTableSlot *slot);
extern void ut_target_end(UtTarget *t);

#endif							/* UT_TARGET_H */
