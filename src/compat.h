/*-------------------------------------------------------------------------
 *
 * src/compat.h
 *		The PostgreSQL internals whose signatures change between major
 *		versions, wrapped once so that a port touches this file only.
 *		Built and tested on 15; the branches for 16 and later follow the
 *		signatures of those releases.
 *
 *-------------------------------------------------------------------------
 */
#ifndef UT_COMPAT_H
#define UT_COMPAT_H

#include "postgres.h"

#include "access/tableam.h"
#include "executor/executor.h"
#include "nodes/parsenodes.h"

#if PG_VERSION_NUM < 150000
#error "usage_tracking needs PostgreSQL 15 or later"
#endif

/*
 * ExecInsertIndexTuples(): 16 added onlySummarizing (false: every index,
 * as an INSERT or a non-HOT UPDATE does).
 */
static inline List *
ut_insert_index_tuples(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate,
					   bool update, bool noDupErr, bool *specConflict)
{
#if PG_VERSION_NUM >= 160000
	return ExecInsertIndexTuples(rri, slot, estate, update, noDupErr,
								 specConflict, NIL, false);
#else
	return ExecInsertIndexTuples(rri, slot, estate, update, noDupErr,
								 specConflict, NIL);
#endif
}

/*
 * simple_table_tuple_update(): 16 reports which indexes need new entries
 * as TU_UpdateIndexes instead of a bool.  *update_indexes is true when the
 * new row version needs index entries (not a HOT update).
 */
static inline void
ut_table_update(Relation rel, ItemPointer otid, TupleTableSlot *slot,
				Snapshot snapshot, bool *update_indexes)
{
#if PG_VERSION_NUM >= 160000
	TU_UpdateIndexes u;

	simple_table_tuple_update(rel, otid, slot, snapshot, &u);
	*update_indexes = (u != TU_None);
#else
	simple_table_tuple_update(rel, otid, slot, snapshot, update_indexes);
#endif
}

/*
 * The range table of an executor state with one relation, checked for
 * perms: 16 moved the required permissions to RTEPermissionInfo.
 */
static inline void
ut_init_range_table(EState *estate, Relation rel, AclMode perms)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
#if PG_VERSION_NUM >= 160000
	{
		RTEPermissionInfo *pi = makeNode(RTEPermissionInfo);

		pi->relid = rte->relid;
		pi->inh = true;
		pi->requiredPerms = perms;
		pi->checkAsUser = InvalidOid;
		rte->perminfoindex = 1;
		ExecInitRangeTable(estate, list_make1(rte), list_make1(pi));
	}
#else
	rte->requiredPerms = perms;
	ExecInitRangeTable(estate, list_make1(rte));
#endif
}

#endif							/* UT_COMPAT_H */
