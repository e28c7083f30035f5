/*-------------------------------------------------------------------------
 *
 * src/store.c
 *		Store a batch's valid events in usage_tracking.events the way COPY
 *		does: tuples routed to their partition, duplicates found by probing
 *		the unique indexes, the new ones written with one multi-insert per
 *		partition and indexed.  No SQL statement, no per-event executor
 *		round trip, no transition table.
 *
 * The caller summarizes the new events itself (summary.c).  Whether this
 * path gives what INSERT ... ON CONFLICT DO NOTHING would is decided by the
 * gate (gate.c) for the table and for every partition the batch goes to,
 * before anything is written; otherwise ingest runs that statement, whose
 * trigger summarizes.  Constraints are checked for every event, a
 * duplicate included, as ExecInsert() checks them before it looks for a
 * conflict.  Concurrent batches holding the same key: a probe waits for a
 * transaction inserting it, and the optimistic pass turns a unique
 * violation into a probe of every event, so only an insert that races in
 * between a probe and the insert of the probe-all pass fails, cleanly, with
 * a unique violation (the post can be retried).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/execPartition.h"
#include "nodes/execnodes.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "compat.h"
#include "gate.h"
#include "target.h"
#include "usage_tracking.h"

enum
{
	COL_INSTALL_ID,
	COL_EVENT_ID,
	COL_USER_HASH,
	COL_SOURCE,
	COL_MODEL,
	COL_PROMPT,
	COL_COMPLETION,
	COL_CACHED,
	COL_REQUEST_ID,
	COL_CONTEXT,
	COL_CREATED_AT,
	COL_RECEIVED_AT,
	COL_BATCH_DIGEST,
	NUM_COLS
};

static const char *const col_names[NUM_COLS] = {
	"install_id", "event_id", "wp_user_id_hash", "source", "model",
	"prompt_tokens", "completion_tokens", "cached_prompt_tokens",
	"request_id", "context", "created_at", "received_at", "batch_digest"
};

/*
 * A probe for stored keys on one partition (target.c), with the column of
 * ours each index key is.
 */
typedef struct KeyProbe
{
	UtProbe    *p;
	ResultRelInfo *rri;
	int			cols[INDEX_MAX_KEYS];	/* our column of each index key */
	AttrNumber	digest_attno;	/* batch_digest in the partition */
} KeyProbe;

/*
 * Set up a probe for rri, or return NULL when its unique indexes are not
 * one plain index on columns we fill (then ExecCheckIndexConstraints()
 * probes instead).
 */
static KeyProbe *
probe_begin(ResultRelInfo *rri)
{
	AttrNumber	pattnos[NUM_COLS];
	KeyProbe   *kp;
	UtProbe    *p;

	if (!ut_map_columns(rri->ri_RelationDesc, col_names, NUM_COLS, pattnos))
		return NULL;
	p = ut_probe_begin(rri);
	if (p == NULL)
		return NULL;
	kp = palloc0(sizeof(KeyProbe));
	kp->p = p;
	kp->rri = rri;
	kp->digest_attno = pattnos[COL_BATCH_DIGEST];
	for (int k = 0; k < p->nkeys; k++)
	{
		kp->cols[k] = -1;
		for (int c = 0; c < NUM_COLS; c++)
			if (pattnos[c] == p->heap_attnos[k])
				kp->cols[k] = c;
		if (kp->cols[k] < 0)
		{
			ut_probe_end(p);
			pfree(kp);
			return NULL;
		}
	}
	return kp;
}

/* Whether a row with the key of values (ours, by column) is stored. */
static bool
probe_key(KeyProbe *kp, const Datum *values)
{
	Datum		keys[INDEX_MAX_KEYS];

	for (int k = 0; k < kp->p->nkeys; k++)
		keys[k] = values[kp->cols[k]];
	return ut_probe(kp->p, keys);
}

/*
 * Whether the row probe_key() just found carries digest as its batch_digest:
 * it is the first event of a batch with the very same keys.
 */
static bool
probe_found_digest(KeyProbe *p, const bytea *digest)
{
	bool		isnull;
	Datum		d = slot_getattr(p->p->found, p->digest_attno, &isnull);
	bytea	   *stored;

	if (isnull)
		return false;
	stored = DatumGetByteaPP(d);
	return VARSIZE_ANY_EXHDR(stored) == VARSIZE_ANY_EXHDR(digest) &&
		memcmp(VARDATA_ANY(stored), VARDATA_ANY(digest), VARSIZE_ANY_EXHDR(digest)) == 0;
}

static void
probe_end(KeyProbe *p)
{
	ut_probe_end(p->p);
	pfree(p);
}

typedef struct PartBuffer
{
	ResultRelInfo *rri;
	TupleTableSlot **slots;
	int			nslots;
} PartBuffer;

static void
flush_buffer(PartBuffer *buf, EState *estate, CommandId cid,
			 BulkInsertState bistate)
{
	if (buf->nslots == 0)
		return;
	table_multi_insert(buf->rri->ri_RelationDesc, buf->slots, buf->nslots,
					   cid, 0, bistate);
	for (int i = 0; i < buf->nslots; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (buf->rri->ri_NumIndices > 0)
		{
			List	   *conflicts;

			conflicts = ut_insert_index_tuples(buf->rri, buf->slots[i], estate,
											   false, false, NULL);
			list_free(conflicts);
		}
	}
	buf->nslots = 0;
}

typedef enum StoreMode
{
	STORE_PROBE_ALL,			/* probe every event, insert the new ones */
	STORE_OPTIMISTIC			/* probe the first; if new, insert all unprobed */
} StoreMode;

typedef enum StoreResult
{
	STORE_DONE,
	STORE_NOT_APPLICABLE,		/* the table needs the INSERT statement path */
	STORE_FIRST_IS_DUPLICATE,	/* optimistic pass gave up, nothing written */
	STORE_ALL_DUPLICATES		/* the first event is the stored first event of
								 * a batch of the same keys: all are stored */
} StoreResult;

/*
 * Whether every partition the events go to passes the gate: each event is
 * routed by its created_at alone, before anything is written.  Sets
 * *checks_needed when one of them has a constraint that ingest's own
 * validation does not imply (gate.c), so that it must be evaluated for
 * every row, duplicates included.
 */
static bool
partitions_allow(UtTarget *t, BatchEvent **valid, int n, AttrNumber created_attno,
				 bool *checks_needed)
{
	TupleTableSlot *root = t->rootslot;
	int			natts = root->tts_tupleDescriptor->natts;
	List	   *checked = NIL;
	ResultRelInfo *last = NULL;
	bool		ok = true;

	for (int i = 0; i < n && ok; i++)
	{
		ResultRelInfo *rri;

		CHECK_FOR_INTERRUPTS();
		ExecClearTuple(root);
		memset(root->tts_isnull, true, sizeof(bool) * natts);
		root->tts_values[created_attno - 1] = TimestampTzGetDatum(valid[i]->created_at);
		root->tts_isnull[created_attno - 1] = false;
		ExecStoreVirtualTuple(root);
		rri = ut_target_route(t);
		if (rri == last || list_member_ptr(checked, rri))
			continue;
		ok = ut_gate_allows(rri->ri_RelationDesc, UT_GATE_EVENTS, false);
		if (!ut_constraints_implied(rri->ri_RelationDesc))
			*checks_needed = true;
		checked = lappend(checked, rri);
		last = rri;
	}
	list_free(checked);
	return ok;
}

/*
 * One pass over the valid events, from opening the table to closing it.
 */
static StoreResult
store_pass(const char *install_id, BatchEvent **valid, int n,
		   TimestampTz now, const bytea *digest, bool *is_new, StoreMode mode)
{
	Relation	rel;
	AttrNumber	attnos[NUM_COLS];
	UtTarget   *t;
	TupleTableSlot *rootslot;
	TupleDesc	desc;
	PartBuffer	buf;
	Datum		install_datum;
	StoreResult result = STORE_DONE;
	KeyProbe   *probe = NULL;
	ResultRelInfo *scratch_rri = NULL;
	TupleTableSlot *scratch = NULL;
	bool		checks_needed = false;

	rel = ut_table_open("events");
	if (rel == NULL)
		return STORE_NOT_APPLICABLE;
	if (rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE ||
		!ut_gate_allows(rel, UT_GATE_EVENTS, true) ||
		!ut_map_columns(rel, col_names, NUM_COLS, attnos))
	{
		table_close(rel, RowExclusiveLock);
		return STORE_NOT_APPLICABLE;
	}
	desc = RelationGetDescr(rel);
	t = ut_target_begin(rel);
	rootslot = t->rootslot;
	if (!partitions_allow(t, valid, n, attnos[COL_CREATED_AT], &checks_needed))
	{
		ut_target_end(t);
		return STORE_NOT_APPLICABLE;
	}

	buf.rri = NULL;
	buf.slots = palloc(sizeof(TupleTableSlot *) * n);
	buf.nslots = 0;
	install_datum = CStringGetTextDatum(install_id);

	for (int i = 0; i < n; i++)
	{
		BatchEvent *ev = valid[i];
		Datum	   *values;
		bool	   *nulls;
		ResultRelInfo *rri;
		TupleTableSlot *slot;
		Datum		ours[NUM_COLS];

		CHECK_FOR_INTERRUPTS();
		ResetPerTupleExprContext(t->estate);
		ExecClearTuple(rootslot);
		values = rootslot->tts_values;
		nulls = rootslot->tts_isnull;
		memset(nulls, true, sizeof(bool) * desc->natts);

#define SET(col, datum) \
		do { ours[col] = (datum); values[attnos[col] - 1] = ours[col]; nulls[attnos[col] - 1] = false; } while (0)
		SET(COL_INSTALL_ID, install_datum);
		SET(COL_EVENT_ID, CStringGetTextDatum(ev->event_id));
		SET(COL_USER_HASH, CStringGetTextDatum(ev->wp_user_id_hash));
		SET(COL_SOURCE, CStringGetTextDatum(ev->source));
		SET(COL_MODEL, CStringGetTextDatum(ev->model));
		SET(COL_PROMPT, Int32GetDatum((int32) ev->prompt_tokens));
		SET(COL_COMPLETION, Int32GetDatum((int32) ev->completion_tokens));
		SET(COL_CACHED, Int32GetDatum((int32) ev->cached_prompt_tokens));
		ours[COL_REQUEST_ID] = ours[COL_CONTEXT] = (Datum) 0;
		if (ev->request_id != NULL)
			SET(COL_REQUEST_ID, CStringGetTextDatum(ev->request_id));
		if (ev->context_jsonb != NULL)
			SET(COL_CONTEXT, PointerGetDatum(ev->context_jsonb));
		SET(COL_CREATED_AT, TimestampTzGetDatum(ev->created_at));
		SET(COL_RECEIVED_AT, TimestampTzGetDatum(now));
		ours[COL_BATCH_DIGEST] = (Datum) 0;
		if (i == 0 && digest != NULL)
			SET(COL_BATCH_DIGEST, PointerGetDatum(digest));
#undef SET
		ExecStoreVirtualTuple(rootslot);

		rri = ut_target_route(t);

		/*
		 * A row that turns out to be stored already is still checked
		 * against the constraints, as the INSERT statement would check it:
		 * in a slot of the partition's type reused from row to row.
		 */
		if (scratch_rri != rri)
		{
			scratch = table_slot_create(rri->ri_RelationDesc, &t->estate->es_tupleTable);
			scratch_rri = rri;
		}

		if (result == STORE_ALL_DUPLICATES)
		{
			if (!checks_needed)
				break;
			ut_target_to_partition(t, rri, scratch);
			ut_check_constraints(rri, scratch, t->estate, UT_GATE_EVENTS);
			continue;
		}

		if (mode == STORE_PROBE_ALL || i == 0)
		{
			if (probe == NULL || probe->rri != rri)
			{
				if (probe != NULL)
					probe_end(probe);
				probe = probe_begin(rri);
			}
			if (probe != NULL)
				is_new[i] = !probe_key(probe, ours);
			else
			{
				ItemPointerData conflict;

				ut_target_to_partition(t, rri, scratch);
				is_new[i] = ExecCheckIndexConstraints(rri, scratch, t->estate, &conflict, NIL);
			}
			if (!is_new[i])
			{
				if (checks_needed)
				{
					ut_target_to_partition(t, rri, scratch);
					ut_check_constraints(rri, scratch, t->estate, UT_GATE_EVENTS);
				}
				if (i == 0 && probe != NULL && digest != NULL &&
					probe_found_digest(probe, digest))
				{
					memset(is_new, false, sizeof(bool) * n);
					result = STORE_ALL_DUPLICATES;
					if (!checks_needed)
						break;
					continue;
				}
				if (mode == STORE_OPTIMISTIC)
				{
					result = STORE_FIRST_IS_DUPLICATE;
					break;
				}
				continue;
			}
		}
		else
			is_new[i] = true;

		/* a slot of the partition's own row type that outlives this loop */
		slot = table_slot_create(rri->ri_RelationDesc, &t->estate->es_tupleTable);
		ut_target_to_partition(t, rri, slot);
		ut_check_constraints(rri, slot, t->estate, UT_GATE_EVENTS);

		if (buf.rri != rri)
		{
			flush_buffer(&buf, t->estate, t->cid, NULL);
			buf.rri = rri;
		}
		buf.slots[buf.nslots++] = slot;
	}
	if (probe != NULL)
		probe_end(probe);
	if (result == STORE_DONE)
		flush_buffer(&buf, t->estate, t->cid, NULL);
	if (result == STORE_ALL_DUPLICATES)
		result = STORE_DONE;

	ut_target_end(t);
	return result;
}

/*
 * Store the valid events; set is_new[i] for the ones that were not already
 * stored.  Returns false, having done nothing, when the direct path does not
 * apply (the caller then uses an INSERT statement).
 *
 * A batch is usually all new or, when a site retries, all old.  So the first
 * event is probed: if it is new, every event is inserted without probing, in
 * a subtransaction, and only if a unique violation shows the batch was a
 * partial resend is that undone and every event probed.  This halves the
 * index work of the common case.
 *
 * digest identifies the batch's keys (the event_id and created_at of every
 * event, in order); it is stored with the first event.  A retry with the
 * same keys finds its first event stored with that digest: every key was
 * stored in that batch, so none is probed again.
 */
bool
ut_store_events(const char *install_id, BatchEvent **valid, int n,
				TimestampTz now, const bytea *digest, bool *is_new)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile StoreResult r = STORE_DONE;
	volatile bool conflict = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		r = store_pass(install_id, valid, n, now, digest, is_new,
					   STORE_OPTIMISTIC);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			ReThrowError(edata);
		FlushErrorState();
		FreeErrorData(edata);
		conflict = true;
	}
	PG_END_TRY();

	if (!conflict && r == STORE_NOT_APPLICABLE)
		return false;
	if (conflict || r == STORE_FIRST_IS_DUPLICATE)
		r = store_pass(install_id, valid, n, now, digest, is_new,
					   STORE_PROBE_ALL);
	return r == STORE_DONE;
}
