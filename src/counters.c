/*-------------------------------------------------------------------------
 *
 * src/counters.c
 *		Add to counter rows (daily summaries, quota and hourly counters)
 *		without an SQL statement: what INSERT ... ON CONFLICT DO UPDATE
 *		SET n = n + EXCLUDED.n does, one key at a time, through the table
 *		access method and the executor's index routines.
 *
 * For each key: probe the unique index (waiting for a transaction that is
 * inserting the same key; one index scan kept open, see target.c); if a row is there, lock it, add the deltas and
 * update it; if not, insert speculatively and, should another transaction
 * have inserted the key meanwhile, start again.  This is the protocol of
 * ON CONFLICT DO UPDATE, so it interlocks with the SQL statements other
 * paths use on the same tables.  CHECK constraints are evaluated and the
 * foreign-key triggers fire.
 *
 * The statement the SQL way runs per table costs more than all of its rows:
 * planning is cached, but executor start-up, partition routing set-up and
 * the ON CONFLICT projections are paid on every call.  Here a key costs an
 * index probe and a heap update.
 *
 * ut_counters_open() declines (returns NULL, and the caller runs the SQL
 * statement instead) whenever the gate (gate.c) says the statement would do
 * something this does not, or the table has a column we do not know.  A
 * partition that the gate declines is found when a key goes to it:
 * ut_counters_add() then writes nothing and returns false, and the caller
 * runs the statement for that key and the ones after it.  Keys are
 * independent, so some written here and the rest by the statement end as
 * the statement alone would leave them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "counters.h"
#include "gate.h"
#include "target.h"

struct UtCounters
{
	const UtCounterSpec *spec;
	UtTarget   *t;
	AttrNumber	attnos[UT_COUNTER_MAX_COLS];	/* of the root table */
	Snapshot	snapshot;
	/* slots of the last result relation used */
	ResultRelInfo *rri;
	TupleTableSlot *probe;		/* the row to insert, then the updated row */
	TupleTableSlot *existing;	/* the row found, locked */
	TupleTableSlot *existing_root;	/* the same in the root's column order */
	UtProbe    *keys;			/* rri's unique index, NULL: probed by the executor */
};

static bool
types_match(Relation rel, const UtCounterSpec *spec, const AttrNumber *attnos)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int c = 0; c < spec->ncols; c++)
	{
		Oid			type = TupleDescAttr(desc, attnos[c] - 1)->atttypid;

		switch (spec->cols[c].op)
		{
			case UT_COUNTER_KEY:
				break;
			case UT_COUNTER_ADD_NUMERIC:
				if (type != NUMERICOID)
					return false;
				break;
			case UT_COUNTER_CUSTOM:
				if (type != spec->cols[c].type)
					return false;
				break;
			default:
				if (type != INT8OID)
					return false;
				break;
		}
	}
	return true;
}

UtCounters *
ut_counters_open(const UtCounterSpec *spec)
{
	Relation	rel;
	UtCounters *c;
	const char *names[UT_COUNTER_MAX_COLS];
	AttrNumber	attnos[UT_COUNTER_MAX_COLS];
	Assert(spec->ncols <= UT_COUNTER_MAX_COLS);
	rel = ut_table_open(spec->relname);
	if (rel == NULL)
		return NULL;
	for (int i = 0; i < spec->ncols; i++)
		names[i] = spec->cols[i].name;
	if (!ut_gate_allows(rel, UT_GATE_COUNTERS, true) ||
		!ut_map_columns(rel, names, spec->ncols, attnos) ||
		!types_match(rel, spec, attnos))
	{
		table_close(rel, RowExclusiveLock);
		return NULL;
	}

	c = palloc0(sizeof(UtCounters));
	c->spec = spec;
	memcpy(c->attnos, attnos, sizeof(attnos));

	/*
	 * A command of its own, as each SQL statement would have: rows this
	 * transaction wrote before (even in the same outer statement) are then
	 * ours to update, not "invisible".
	 */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	c->snapshot = GetActiveSnapshot();
	c->t = ut_target_begin(rel);
	c->t->estate->es_snapshot = c->snapshot;
	AfterTriggerBeginQuery();
	return c;
}

/* The new value of column col: the existing one (or the empty row's) plus the delta. */
static void
apply(const UtCounterSpec *spec, int col, const Datum *delta, const bool *delta_null,
	  Datum old, bool old_null, Datum *out, bool *out_null)
{
	const UtCounterColumn *cc = &spec->cols[col];
	int64		base = old_null ? 0 : DatumGetInt64(old);
	int64		v;

	*out_null = false;
	switch (cc->op)
	{
		case UT_COUNTER_KEY:
			*out = delta[col];
			*out_null = delta_null[col];
			return;
		case UT_COUNTER_ADD:
			if (pg_add_s64_overflow(base, DatumGetInt64(delta[col]), &v))
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("bigint out of range in %s.%s", spec->relname, cc->name)));
			*out = Int64GetDatum(v);
			return;
		case UT_COUNTER_KEEP:
			*out = Int64GetDatum(base);
			return;
		case UT_COUNTER_SUB_CLAMP:
			v = base - DatumGetInt64(delta[cc->arg]);
			*out = Int64GetDatum(v > 0 ? v : 0);
			return;
		case UT_COUNTER_ADD_NUMERIC:
			if (delta_null[col])
			{
				*out = old;
				*out_null = old_null;
			}
			else if (old_null)
				*out = delta[col];
			else
				*out = NumericGetDatum(numeric_add_opt_error(DatumGetNumeric(old),
															 DatumGetNumeric(delta[col]),
															 NULL));
			return;
		case UT_COUNTER_CUSTOM:
			*out = old;			/* spec->merge decides */
			*out_null = old_null;
			return;
	}
}

/*
 * Fill root (the root table's row type) with the row to write: old (root
 * order; NULL for a new row) with the deltas applied.  Columns not in the
 * spec keep their old values.
 */
static void
new_row(UtCounters *c, TupleTableSlot *old, const Datum *delta, const bool *delta_null)
{
	const UtCounterSpec *spec = c->spec;
	TupleTableSlot *root = c->t->rootslot;
	int			natts = RelationGetDescr(c->t->rel)->natts;
	Datum		ov[UT_COUNTER_MAX_COLS];
	bool		on[UT_COUNTER_MAX_COLS];
	Datum		nv[UT_COUNTER_MAX_COLS];
	bool		nn[UT_COUNTER_MAX_COLS];

	ExecClearTuple(root);
	if (old != NULL)
	{
		memcpy(root->tts_values, old->tts_values, sizeof(Datum) * natts);
		memcpy(root->tts_isnull, old->tts_isnull, sizeof(bool) * natts);
	}
	else
		memset(root->tts_isnull, true, sizeof(bool) * natts);

	for (int i = 0; i < spec->ncols; i++)
	{
		AttrNumber	a = c->attnos[i] - 1;

		ov[i] = old ? old->tts_values[a] : (Datum) 0;
		on[i] = old ? old->tts_isnull[a] : true;
		apply(spec, i, delta, delta_null, ov[i], on[i], &nv[i], &nn[i]);
	}
	if (spec->merge != NULL)
		spec->merge(old != NULL, ov, on, delta, delta_null, nv, nn);
	for (int i = 0; i < spec->ncols; i++)
	{
		AttrNumber	a = c->attnos[i] - 1;

		root->tts_values[a] = nv[i];
		root->tts_isnull[a] = nn[i];
	}
	ExecStoreVirtualTuple(root);
}

/*
 * Slots of rri's row type (kept for the last result relation used).  False
 * when rri is a partition the gate declines.
 */
static bool
use_relation(UtCounters *c, ResultRelInfo *rri)
{
	List	  **tt = &c->t->estate->es_tupleTable;

	if (c->rri == rri)
		return true;
	if (rri != c->t->root &&
		!ut_gate_allows(rri->ri_RelationDesc, UT_GATE_COUNTERS, false))
		return false;
	c->rri = rri;
	if (c->keys != NULL)
		ut_probe_end(c->keys);
	c->keys = ut_probe_begin(rri);
	c->probe = table_slot_create(rri->ri_RelationDesc, tt);
	c->existing = table_slot_create(rri->ri_RelationDesc, tt);
	c->existing_root = rri->ri_RootToPartitionMap != NULL
		? table_slot_create(c->t->rel, tt) : NULL;
	return true;
}

/*
 * Lock the row at tid into c->existing.  False when it was updated or
 * deleted meanwhile (the caller probes again).
 */
static bool
lock_existing(UtCounters *c, Relation rel, ItemPointer tid)
{
	TM_FailureData tmfd;
	TM_Result	res;

	res = table_tuple_lock(rel, tid, c->snapshot, c->existing, c->t->cid,
						   LockTupleNoKeyExclusive, LockWaitBlock, 0, &tmfd);
	switch (res)
	{
		case TM_Ok:
			break;
		case TM_Invisible:
			ereport(ERROR,
					(errcode(ERRCODE_CARDINALITY_VIOLATION),
					 errmsg("a row of %s was counted twice in one command",
							c->spec->relname)));
			break;
		case TM_Updated:
		case TM_Deleted:
			if (IsolationUsesXactSnapshot())
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent update")));
			ExecClearTuple(c->existing);
			return false;
		default:
			elog(ERROR, "unexpected result %d locking a row of %s",
				 (int) res, c->spec->relname);
	}

	/* Repeatable read: the row must be one our snapshot sees, or our own. */
	if (IsolationUsesXactSnapshot() &&
		!table_tuple_satisfies_snapshot(rel, c->existing, c->snapshot))
	{
		bool		isnull;
		TransactionId xmin;

		xmin = DatumGetTransactionId(slot_getsysattr(c->existing,
													 MinTransactionIdAttributeNumber,
													 &isnull));
		if (!TransactionIdIsCurrentTransactionId(xmin))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update")));
	}
	return true;
}

/*
 * Add one key's deltas: values[i] / nulls[i] for spec column i (the key
 * columns' values, the other columns' deltas).  When result is given, it
 * receives the row as written, by spec column; the values live until the
 * next call.  False, with nothing written, when the key goes to a partition
 * the gate declines: the caller then uses the statement from this key on.
 */
bool
ut_counters_add(UtCounters *c, const Datum *values, const bool *nulls,
				Datum *result, bool *result_null)
{
	const UtCounterSpec *spec = c->spec;
	UtTarget   *t = c->t;
	EState	   *estate = t->estate;
	TupleTableSlot *root = t->rootslot;
	ResultRelInfo *rri;
	Relation	rel;

	ResetPerTupleExprContext(estate);

	/* the row as inserted: the deltas added to an empty row */
	new_row(c, NULL, values, nulls);

	CHECK_FOR_INTERRUPTS();
	rri = ut_target_route(t);
	rel = rri->ri_RelationDesc;
	if (!use_relation(c, rri))
		return false;

	for (;;)
	{
		ItemPointerData conflict;
		List	   *recheck;
		bool		spec_conflict = false;
		bool		stored;
		uint32		token;

		ut_target_to_partition(t, rri, c->probe);

		if (c->keys != NULL)
		{
			stored = ut_probe_slot(c->keys, c->probe);
			if (stored)
				conflict = c->keys->found->tts_tid;
		}
		else
			stored = !ExecCheckIndexConstraints(rri, c->probe, estate, &conflict, NIL);
		if (stored)
		{
			TupleTableSlot *old = c->existing;
			bool		update_indexes;

			if (!lock_existing(c, rel, &conflict))
				continue;

			/* the updated row, in the root's order, then the partition's */
			slot_getallattrs(old);
			if (c->existing_root != NULL)
				old = execute_attr_map_slot(ExecGetChildToRootMap(rri)->attrMap,
											old, c->existing_root);
			new_row(c, old, values, nulls);
			ut_target_to_partition(t, rri, c->probe);

			ut_check_constraints(rri, c->probe, estate, UT_GATE_COUNTERS);
			ut_table_update(rel, &c->existing->tts_tid, c->probe,
							c->snapshot, &update_indexes);
			recheck = NIL;
			if (update_indexes && rri->ri_NumIndices > 0)
				recheck = ut_insert_index_tuples(rri, c->probe, estate, true,
												 false, NULL);
			if (rri->ri_TrigDesc != NULL)
				ExecARUpdateTriggers(estate, rri, NULL, NULL, &c->existing->tts_tid,
									 NULL, c->probe, recheck, NULL, false);
			list_free(recheck);
			break;
		}

		/* a new key */
		ut_check_constraints(rri, c->probe, estate, UT_GATE_COUNTERS);
		token = SpeculativeInsertionLockAcquire(GetCurrentTransactionId());
		table_tuple_insert_speculative(rel, c->probe, t->cid, 0, NULL, token);
		recheck = ut_insert_index_tuples(rri, c->probe, estate, false, true,
										 &spec_conflict);
		table_tuple_complete_speculative(rel, c->probe, token, !spec_conflict);
		SpeculativeInsertionLockRelease(GetCurrentTransactionId());
		if (spec_conflict)
		{
			/* another transaction inserted the key first: update it */
			list_free(recheck);
			continue;
		}
		if (rri->ri_TrigDesc != NULL)
			ExecARInsertTriggers(estate, rri, c->probe, recheck, NULL);
		list_free(recheck);
		break;
	}

	/* the row written (root is still it), by spec column */
	if (result != NULL)
		for (int i = 0; i < spec->ncols; i++)
		{
			result[i] = root->tts_values[c->attnos[i] - 1];
			result_null[i] = root->tts_isnull[c->attnos[i] - 1];
		}
	return true;
}

/* Fire the foreign-key checks and release everything. */
void
ut_counters_close(UtCounters *c)
{
	if (c->keys != NULL)
		ut_probe_end(c->keys);
	AfterTriggerEndQuery(c->t->estate);
	ut_target_end(c->t);
	PopActiveSnapshot();
	pfree(c);
}
