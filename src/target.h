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

#include "access/genam.h"
#include "access/skey.h"
#include "executor/execPartition.h"
#include "nodes/execnodes.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

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

/*
 * A probe for stored keys in one result relation: its one unique index
 * scanned with a dirty snapshot, the scan kept open from key to key.  What
 * ExecCheckIndexConstraints() does per row (a scan and a slot set up and
 * torn down, the index datums formed), for the price of a descent.
 */
typedef struct UtProbe
{
	ResultRelInfo *rri;
	Relation	index;
	IndexScanDesc scan;
	SnapshotData dirty;
	TupleTableSlot *found;		/* the row found, as read */
	int			nkeys;
	ScanKeyData keys[INDEX_MAX_KEYS];
	AttrNumber	heap_attnos[INDEX_MAX_KEYS];	/* the column of each key */
} UtProbe;

extern Relation ut_table_open(const char *relname);
extern bool ut_map_columns(Relation rel, const char *const *names, int n,
						   AttrNumber *attnos);
extern UtTarget *ut_target_begin(Relation rel);
extern ResultRelInfo *ut_target_route(UtTarget *t);
extern void ut_target_to_partition(UtTarget *t, ResultRelInfo *rri,
								   TupleTableSlot *slot);
extern void ut_target_end(UtTarget *t);

extern UtProbe *ut_probe_begin(ResultRelInfo *rri);
extern bool ut_probe(UtProbe *p, const Datum *keys);
extern bool ut_probe_slot(UtProbe *p, TupleTableSlot *slot);
extern void ut_probe_end(UtProbe *p);

#endif							/* UT_TARGET_H */
