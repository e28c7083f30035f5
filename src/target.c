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
#include "catalog/pg_class.h"
#include "executor/executor.h"
#include "executor/execPartition.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "target.h"
#include "usage_tracking.h"

/*
 * Open usage_tracking.<relname> for writing; NULL when it does not exist.
 */
Relation
ut_table_open(const char *relname)
{
	Oid			relid;

	relid = ut_relid(relname);
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

	t->rel = rel;
	t->estate = CreateExecutorState();
	ut_init_range_table(t->estate, rel, ACL_INSERT);
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

/*
 * Make the unique indexes of a result relation ready for conflict probes.
 * A partition must have one: since 1.1 the partitioned parents carry no
 * index (so that pg_dump output restores), and a partition attached by hand
 * without the primary key would take every resent key again.
 */
static void
prepare_probes(UtTarget *t, ResultRelInfo *rri)
{
	bool		unique = false;

	for (int i = 0; i < rri->ri_NumIndices; i++)
	{
		IndexInfo  *ii = rri->ri_IndexRelationInfo[i];

		if (ii->ii_Unique && ii->ii_UniqueOps == NULL)
			BuildSpeculativeIndexInfo(rri->ri_IndexRelationDescs[i], ii);
		unique |= ii->ii_Unique;
	}
	if (t->proute != NULL && !unique)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("partition \"%s\" of %s has no primary key",
						RelationGetRelationName(rri->ri_RelationDesc),
						RelationGetRelationName(t->rel)),
				 errhint("Partitions made by usage_tracking.ensure_partitions() have one; "
						 "give a partition attached by hand the primary key of the others.")));
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
		prepare_probes(t, rri);
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

/*
 * Set up a probe for rri, or return NULL when its unique indexes are not
 * exactly one plain index on columns, NULLs distinct (the caller then uses
 * ExecCheckIndexConstraints()).  ut_target_route() has prepared rri.
 */
UtProbe *
ut_probe_begin(ResultRelInfo *rri)
{
	UtProbe    *p;
	IndexInfo  *ii = NULL;
	int			which = -1;

	for (int i = 0; i < rri->ri_NumIndices; i++)
	{
		IndexInfo  *cand = rri->ri_IndexRelationInfo[i];

		if (!cand->ii_Unique && cand->ii_ExclusionOps == NULL)
			continue;
		if (which >= 0)
			return NULL;
		which = i;
		ii = cand;
	}
	if (ii == NULL || ii->ii_Expressions != NIL || ii->ii_Predicate != NIL ||
		ii->ii_ExclusionOps != NULL || ii->ii_UniqueProcs == NULL ||
		ii->ii_NullsNotDistinct || !ii->ii_ReadyForInserts)
		return NULL;

	p = palloc0(sizeof(UtProbe));
	p->rri = rri;
	p->index = rri->ri_IndexRelationDescs[which];
	p->nkeys = ii->ii_NumIndexKeyAttrs;
	for (int k = 0; k < p->nkeys; k++)
	{
		p->heap_attnos[k] = ii->ii_IndexAttrNumbers[k];
		ScanKeyEntryInitialize(&p->keys[k], 0, k + 1, ii->ii_UniqueStrats[k],
							   InvalidOid, p->index->rd_indcollation[k],
							   ii->ii_UniqueProcs[k], (Datum) 0);
	}
	InitDirtySnapshot(p->dirty);
	p->scan = index_beginscan(rri->ri_RelationDesc, p->index, &p->dirty, p->nkeys, 0);
	p->found = table_slot_create(rri->ri_RelationDesc, NULL);
	return p;
}

/*
 * Whether a row with these key values (in index column order) is stored;
 * if so it is in p->found.  A row that another transaction is inserting or
 * deleting is waited for, and the probe made again.
 */
bool
ut_probe(UtProbe *p, const Datum *keys)
{
	for (int k = 0; k < p->nkeys; k++)
		p->keys[k].sk_argument = keys[k];
	for (;;)
	{
		bool		waited = false;

		index_rescan(p->scan, p->keys, p->nkeys, NULL, 0);
		while (index_getnext_slot(p->scan, ForwardScanDirection, p->found))
		{
			TransactionId xwait = TransactionIdIsValid(p->dirty.xmin)
				? p->dirty.xmin : p->dirty.xmax;

			if (!TransactionIdIsValid(xwait))
				return true;
			if (p->dirty.speculativeToken)
				SpeculativeInsertionWait(p->dirty.xmin, p->dirty.speculativeToken);
			else
				XactLockTableWait(xwait, p->rri->ri_RelationDesc,
								  &p->found->tts_tid, XLTW_InsertIndex);
			waited = true;
			break;
		}
		if (!waited)
			return false;
	}
}

/*
 * ut_probe() with the key of the row in slot (of rri's row type).  A key
 * with a NULL conflicts with nothing.
 */
bool
ut_probe_slot(UtProbe *p, TupleTableSlot *slot)
{
	Datum		keys[INDEX_MAX_KEYS];

	for (int k = 0; k < p->nkeys; k++)
	{
		bool		isnull;

		keys[k] = slot_getattr(slot, p->heap_attnos[k], &isnull);
		if (isnull)
			return false;
	}
	return ut_probe(p, keys);
}

void
ut_probe_end(UtProbe *p)
{
	index_endscan(p->scan);
	ExecDropSingleTupleTableSlot(p->found);
	pfree(p);
}
