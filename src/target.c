/*-------------------------------------------------------------------------
 *
 * src/target.c
 *		A table of the extension written without an SQL statement: the
 *		executor state, result relation and partition routing that
 *		store.c (raw events) and counters.c (summaries and counters) share.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/executor.h"
#include "executor/execPartition.h"
#include "nodes/makefuncs.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "target.h"

/*
 * Open usage_tracking.<relname> for writing; NULL when it does not exist.
 */
Relation
ut_table_open(const char *relname)
{
	Oid			relid;

	relid = get_relname_relid(relname, get_namespace_oid("usage_tracking", false));
	if (!OidIsValid(relid))
		return NULL;
	return table_open(relid, RowExclusiveLock);
}

/*
 * Map column names to attribute numbers of rel.  False when one is missing
 * or when the table has another column that would need a value we do not
 * give it (NOT NULL, a default or a generated expression).
 */
bool
ut_map_columns(Relation rel, const char *const *names, int n, AttrNumber *attnos)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int c = 0; c < n; c++)
		attnos[c] = InvalidAttrNumber;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		known = false;

		if (att->attisdropped)
			continue;
		for (int c = 0; c < n; c++)
		{
			if (strcmp(NameStr(att->attname), names[c]) == 0)
			{
				attnos[c] = att->attnum;
				known = true;
				break;
			}
		}
		if (!known && (att->attnotnull || att->atthasdef || att->attgenerated))
			return false;
	}
	for (int c = 0; c < n; c++)
		if (attnos[c] == InvalidAttrNumber)
			return false;
	return true;
}

/*
 * Executor state for writing rel (opened by ut_table_open), which the
 * target now owns.
 */
UtTarget *
ut_target_begin(Relation rel)
{
	UtTarget   *t = palloc0(sizeof(UtTarget));
	RangeTblEntry *rte;

	t->rel = rel;
	t->estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = ACL_INSERT;
	ExecInitRangeTable(t->estate, list_make1(rte));
	t->root = makeNode(ResultRelInfo);
	ExecInitResultRelation(t->estate, t->root, 1);

	if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		t->mtstate = makeNode(ModifyTableState);
		t->mtstate->ps.plan = NULL;
		t->mtstate->ps.state = t->estate;
		t->mtstate->operation = CMD_INSERT;
		t->mtstate->mt_nrels = 1;
		t->mtstate->resultRelInfo = t->root;
		t->mtstate->rootResultRelInfo = t->root;
		t->proute = ExecSetupPartitionTupleRouting(t->estate, rel);
	}
	else
		ExecOpenIndices(t->root, true);

	t->rootslot = table_slot_create(rel, &t->estate->es_tupleTable);
	t->cid = GetCurrentCommandId(true);
	t->estate->es_output_cid = t->cid;
	return t;
}

/* Make the unique indexes of a result relation ready for conflict probes. */
static void
prepare_probes(ResultRelInfo *rri)
{
	for (int i = 0; i < rri->ri_NumIndices; i++)
	{
		IndexInfo  *ii = rri->ri_IndexRelationInfo[i];

		if (ii->ii_Unique && ii->ii_UniqueOps == NULL)
			BuildSpeculativeIndexInfo(rri->ri_IndexRelationDescs[i], ii);
	}
}

/*
 * The result relation (the partition, for a partitioned table) that the
 * row in t->rootslot belongs to, its unique indexes ready for probes.
 */
ResultRelInfo *
ut_target_route(UtTarget *t)
{
	ResultRelInfo *rri;

	if (t->proute == NULL)
		rri = t->root;
	else
		rri = ExecFindPartition(t->mtstate, t->root, t->proute, t->rootslot,
								t->estate);
	if (!list_member_ptr(t->prepared, rri))
	{
		prepare_probes(rri);
		t->prepared = lappend(t->prepared, rri);
	}
	return rri;
}

/*
 * Copy t->rootslot into slot, a slot of rri's row type, converting the
 * column order for a partition whose columns differ from its parent's.
 */
void
ut_target_to_partition(UtTarget *t, ResultRelInfo *rri, TupleTableSlot *slot)
{
	TupleConversionMap *map = rri->ri_RootToPartitionMap;

	if (map != NULL)
		execute_attr_map_slot(map->attrMap, t->rootslot, slot);
	else
		ExecCopySlot(slot, t->rootslot);
	ExecMaterializeSlot(slot);
}

/* Release everything ut_target_begin set up, and the relation. */
void
ut_target_end(UtTarget *t)
{
	if (t->proute != NULL)
		ExecCleanupTupleRouting(t->mtstate, t->proute);
	ExecResetTupleTable(t->estate->es_tupleTable, false);
	ExecCloseResultRelations(t->estate);
	ExecCloseRangeTableRelations(t->estate);
	FreeExecutorState(t->estate);
	table_close(t->rel, NoLock);
	pfree(t);
}
