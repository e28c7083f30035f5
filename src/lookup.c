/*-------------------------------------------------------------------------
 *
 * src/lookup.c
 *		Read one row of an extension table by its primary key, without an
 *		SQL statement: one descent of the key's index under the current
 *		snapshot.  Ingest reads its installation, account, plan, secrets
 *		and month of usage this way; as one joined query the executor
 *		start-up cost more than the five index probes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_am.h"
#include "executor/tuptable.h"
#include "parser/parse_relation.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"

#include "lookup.h"
#include "usage_tracking.h"

/*
 * Find the row of usage_tracking.relname whose primary key is keys (in the
 * key's column order) and copy the columns named in cols into values and
 * nulls (in the caller's memory context).  False when there is none.
 */
bool
ut_fetch_by_key(const char *relname, int nkeys, const Datum *keys,
				int ncols, const char *const *cols, Datum *values, bool *nulls)
{
	Oid			relid;
	Relation	rel;
	Relation	index;
	Oid			indexid;
	ScanKeyData skey[INDEX_MAX_KEYS];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	bool		found;

	relid = ut_relid(relname);
	if (!OidIsValid(relid))
		elog(ERROR, "table usage_tracking.%s is missing", relname);
	rel = table_open(relid, AccessShareLock);
	indexid = RelationGetPrimaryKeyIndex(rel);
	if (!OidIsValid(indexid))
		elog(ERROR, "table usage_tracking.%s has no primary key", relname);
	index = index_open(indexid, AccessShareLock);
	if (index->rd_rel->relam != BTREE_AM_OID ||
		IndexRelationGetNumberOfKeyAttributes(index) != nkeys)
		elog(ERROR, "unexpected primary key on usage_tracking.%s", relname);

	for (int k = 0; k < nkeys; k++)
	{
		Oid			opfamily = index->rd_opfamily[k];
		Oid			type = index->rd_opcintype[k];
		Oid			eqop = get_opfamily_member(opfamily, type, type, BTEqualStrategyNumber);

		if (!OidIsValid(eqop))
			elog(ERROR, "no equality operator for the key of usage_tracking.%s", relname);
		ScanKeyEntryInitialize(&skey[k], 0, k + 1, BTEqualStrategyNumber, InvalidOid,
							   index->rd_indcollation[k], get_opcode(eqop), keys[k]);
	}

	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, GetActiveSnapshot(), nkeys, 0);
	index_rescan(scan, skey, nkeys, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
	{
		TupleDesc	desc = RelationGetDescr(rel);

		for (int c = 0; c < ncols; c++)
		{
			AttrNumber	a = attnameAttNum(rel, cols[c], false);
			Form_pg_attribute att;
			Datum		v;

			if (a == InvalidAttrNumber)
				elog(ERROR, "column %s of usage_tracking.%s is missing", cols[c], relname);
			att = TupleDescAttr(desc, a - 1);
			v = slot_getattr(slot, a, &nulls[c]);

			values[c] = nulls[c] ? (Datum) 0 : datumCopy(v, att->attbyval, att->attlen);
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return found;
}
