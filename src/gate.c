/*-------------------------------------------------------------------------
 *
 * src/gate.c
 *		The gate of the direct write path: whether writing a table without
 *		an SQL statement (store.c for raw events, counters.c for summary
 *		and counter rows) gives exactly what the plain statement would, and
 *		the constraints that path enforces the way the executor does.
 *
 * The direct path implements: routing to partitions, unique-index
 * conflicts (DO NOTHING / DO UPDATE), NOT NULL and CHECK constraints of the
 * partition written (ExecConstraints), foreign-key triggers of counter
 * tables (fired by the executor's own trigger queue), and the one trigger
 * the extension puts on usage_tracking.events, whose effect (summaries and
 * counters) the caller produces itself.  Everything else makes the gate
 * decline, and the caller runs the SQL statement instead:
 *
 *   - usage_tracking.direct_write is off;
 *   - an executor hook is set (a module that observes or changes writes:
 *     pgaudit, sepgsql, Citus, ...);
 *   - a rule on the table;
 *   - row-level security that applies to the current user;
 *   - a privilege the statement would need and the current user lacks;
 *   - a publication of the table (logical replication decides what the
 *     statement must log and check);
 *   - a trigger other than the ones above, judged by what it runs and
 *     whether it would fire now, not by its name; on a partition, any;
 *   - a relation that is not a plain or partitioned table.
 *
 * Columns the caller does not fill that need a value (a default, NOT NULL,
 * a generated expression) make ut_map_columns() (target.c) decline too.
 *
 * Constraints that restate what ingest has established of every event
 * (the shapes, by the same C routines; non-negative token counts) are
 * recognised by their expression, not their name, and need no evaluation:
 * they cannot fail.  Any other is evaluated for every row.
 *
 * CHECK expressions are compiled once per relation and kept until the
 * catalog changes: a relcache invalidation of the relation, or any change
 * to pg_proc (a CHECK may call a function, inlined when compiled), retires
 * the entry.  A retired entry may still be in use by the statement running,
 * so its memory is released at the end of the transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/partition.h"
#include "access/xact.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#include "gate.h"
#include "usage_tracking.h"

bool		ut_direct_write = true;

/* The C function of the summary trigger on usage_tracking.events. */
#define UT_SUMMARY_TRIGGER_SYMBOL "usage_tracking_events_summarize"

void
ut_gate_init(void)
{
	DefineCustomBoolVariable("usage_tracking.direct_write",
							 "Write events and counters without an SQL statement where that gives the same result.",
							 "Off: every write goes through the executor.",
							 &ut_direct_write,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
}

/* Whether function fn is a C function whose symbol is symbol. */
static bool
runs_c_symbol(Oid fn, const char *symbol)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	bool		ours = false;

	if (HeapTupleIsValid(tup))
	{
		Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(tup);
		bool		isnull;
		Datum		src;

		if (proc->prolang == ClanguageId)
		{
			src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);
			ours = !isnull && strcmp(TextDatumGetCString(src), symbol) == 0;
		}
		ReleaseSysCache(tup);
	}
	return ours;
}

/* Whether trigger tg fires for a row or statement now. */
static bool
trigger_fires(const Trigger *tg)
{
	if (tg->tgenabled == TRIGGER_DISABLED)
		return false;
	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
		return tg->tgenabled == TRIGGER_FIRES_ON_REPLICA ||
			tg->tgenabled == TRIGGER_FIRES_ALWAYS;
	return tg->tgenabled != TRIGGER_FIRES_ON_REPLICA;
}

/*
 * Whether tg is the summary trigger as shipped: AFTER INSERT FOR EACH
 * STATEMENT with a new-rows transition table, running the extension's C
 * function, and firing now.  Its effect is what the direct path's caller
 * does itself.
 */
static bool
is_summary_trigger(const Trigger *tg)
{
	if (!trigger_fires(tg) || TRIGGER_FOR_ROW(tg->tgtype) ||
		!TRIGGER_FOR_AFTER(tg->tgtype) || !TRIGGER_FOR_INSERT(tg->tgtype) ||
		TRIGGER_FOR_UPDATE(tg->tgtype) || TRIGGER_FOR_DELETE(tg->tgtype) ||
		TRIGGER_FOR_TRUNCATE(tg->tgtype) || tg->tgnewtable == NULL ||
		tg->tgqual != NULL || tg->tgnattr != 0)
		return false;
	return runs_c_symbol(tg->tgfoid, UT_SUMMARY_TRIGGER_SYMBOL);
}

/* A foreign-key check: fired by the executor's trigger queue, as is. */
static bool
is_foreign_key_trigger(const Trigger *tg)
{
	return tg->tgisinternal && OidIsValid(tg->tgconstraint) &&
		TRIGGER_FOR_ROW(tg->tgtype) && TRIGGER_FOR_AFTER(tg->tgtype);
}

/* Why the triggers of rel keep the direct path off, NULL when they do not. */
static const char *
triggers_decline(Relation rel, UtGateKind kind, bool root)
{
	TriggerDesc *td = rel->trigdesc;

	if (td == NULL)
		return NULL;
	for (int i = 0; i < td->numtriggers; i++)
	{
		const Trigger *tg = &td->triggers[i];

		if (kind == UT_GATE_COUNTERS && is_foreign_key_trigger(tg))
			continue;
		if (kind == UT_GATE_EVENTS && root && is_summary_trigger(tg))
			continue;
		if (kind == UT_GATE_EVENTS && root &&
			strcmp(tg->tgname, "events_summarize") == 0)
			return "the summary trigger is not the one shipped, or would not fire";
		return "a trigger";
	}
	return NULL;
}

static bool
hooks_set(void)
{
	return ExecutorStart_hook != NULL || ExecutorRun_hook != NULL ||
		ExecutorFinish_hook != NULL || ExecutorEnd_hook != NULL ||
		ExecutorCheckPerms_hook != NULL;
}

static bool
published(Relation rel)
{
	PublicationDesc pd;

	RelationBuildPublicationDesc(rel, &pd);
	return pd.pubactions.pubinsert || pd.pubactions.pubupdate ||
		pd.pubactions.pubdelete || pd.pubactions.pubtruncate;
}

/*
 * Why rel (the table named in the statement when root, else one of its
 * partitions that a row goes to) may not be written directly for kind;
 * NULL when it may.
 */
const char *
ut_gate_decline(Relation rel, UtGateKind kind, bool root)
{
	Oid			relid = RelationGetRelid(rel);
	char		relkind = rel->rd_rel->relkind;

	if (!ut_direct_write)
		return "usage_tracking.direct_write is off";
	if (hooks_set())
		return "an executor hook is set";
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		return "not a table";
	if (rel->rd_rules != NULL)
		return "a rule";
	if (check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
		return "row-level security";
	if (root)
	{
		AclMode		need = kind == UT_GATE_EVENTS
			? ACL_INSERT : ACL_INSERT | ACL_UPDATE | ACL_SELECT;

		if (pg_class_aclmask(relid, GetUserId(), need, ACLMASK_ALL) != need)
			return "a privilege the current user lacks";
	}
	if (published(rel))
		return "a publication";
	return triggers_decline(rel, kind, root);
}

bool
ut_gate_allows(Relation rel, UtGateKind kind, bool root)
{
	return ut_gate_decline(rel, kind, root) == NULL;
}

PG_FUNCTION_INFO_V1(usage_tracking_write_path);

/*
 * SQL function: write_path(tbl regclass) returns text
 *
 * How ingest writes tbl (usage_tracking.events or a counter table, or one
 * of their partitions) now, for the current user: 'direct', or the reason
 * the gate declines and the executor is used.
 */
Datum
usage_tracking_write_path(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Relation	rel;
	Oid			events = ut_relid("events");
	Oid			root = relid;
	const char *why;

	if (get_rel_relispartition(relid))
	{
		List	   *ancestors = get_partition_ancestors(relid);

		root = llast_oid(ancestors);
		list_free(ancestors);
	}
	rel = table_open(relid, AccessShareLock);
	why = ut_gate_decline(rel, root == events ? UT_GATE_EVENTS : UT_GATE_COUNTERS,
						  root == relid);
	table_close(rel, AccessShareLock);
	PG_RETURN_TEXT_P(cstring_to_text(why == NULL ? "direct" : why));
}

/* Compiled CHECK constraints ----------------------------------------------- */

/*
 * What ingest has already established of every event it stores (batch.c):
 * the four shapes, by the same C routines valid_shape() runs, and token
 * counts that are non-negative integers with cached <= prompt, a
 * request_id of at most 50 characters, a context that is an object.  A CHECK
 * that only restates these, on the events table, cannot fail for a row
 * ingest writes; anything else is evaluated.
 */
static bool
is_shape_check(FuncExpr *f, TupleDesc desc)
{
	static const struct
	{
		char		kind;
		const char *column;
	}			shapes[] = {
		{'e', "event_id"}, {'u', "wp_user_id_hash"}, {'s', "source"}, {'m', "model"}
	};
	Const	   *k;
	Var		   *v;

	if (list_length(f->args) != 2 || !IsA(linitial(f->args), Const) ||
		!IsA(lsecond(f->args), Var))
		return false;
	k = linitial(f->args);
	v = lsecond(f->args);
	if (k->constisnull || k->consttype != CHAROID || v->varattno <= 0 ||
		v->varattno > desc->natts)
		return false;
	if (!runs_c_symbol(f->funcid, "usage_tracking_valid_shape"))
		return false;
	for (int i = 0; i < lengthof(shapes); i++)
		if (shapes[i].kind == DatumGetChar(k->constvalue))
			return strcmp(NameStr(TupleDescAttr(desc, v->varattno - 1)->attname),
						  shapes[i].column) == 0;
	return false;
}

static bool
is_column(Node *n, TupleDesc desc, const char *column)
{
	Var		   *v = (Var *) n;

	return IsA(n, Var) && v->varattno > 0 && v->varattno <= desc->natts &&
		strcmp(NameStr(TupleDescAttr(desc, v->varattno - 1)->attname), column) == 0;
}

static bool
implied_by_ingest(Node *n, TupleDesc desc)
{
	if (IsA(n, BoolExpr) && ((BoolExpr *) n)->boolop == AND_EXPR)
	{
		ListCell   *lc;

		foreach(lc, ((BoolExpr *) n)->args)
			if (!implied_by_ingest(lfirst(lc), desc))
				return false;
		return true;
	}
	if (IsA(n, FuncExpr))
		return is_shape_check((FuncExpr *) n, desc);
	if (IsA(n, OpExpr) && list_length(((OpExpr *) n)->args) == 2)
	{
		OpExpr	   *op = (OpExpr *) n;
		Node	   *l = linitial(op->args);
		Node	   *r = lsecond(op->args);

		/* a token count >= 0 */
		if (op->opfuncid == F_INT4GE && IsA(r, Const) && !((Const *) r)->constisnull &&
			DatumGetInt32(((Const *) r)->constvalue) == 0 &&
			(is_column(l, desc, "prompt_tokens") || is_column(l, desc, "completion_tokens") ||
			 is_column(l, desc, "cached_prompt_tokens")))
			return true;
		/* cached_prompt_tokens <= prompt_tokens */
		if (op->opfuncid == F_INT4LE && is_column(l, desc, "cached_prompt_tokens") &&
			is_column(r, desc, "prompt_tokens"))
			return true;
		/* length(request_id) <= n, n >= 50: ingest counts UTF-8 characters */
		if (op->opfuncid == F_INT4LE && IsA(l, FuncExpr) && IsA(r, Const) &&
			(((FuncExpr *) l)->funcid == F_LENGTH_TEXT || ((FuncExpr *) l)->funcid == F_TEXTLEN) &&
			list_length(((FuncExpr *) l)->args) == 1 &&
			is_column(linitial(((FuncExpr *) l)->args), desc, "request_id") &&
			!((Const *) r)->constisnull && DatumGetInt32(((Const *) r)->constvalue) >= 50 &&
			GetDatabaseEncoding() == PG_UTF8)
			return true;
		/* jsonb_typeof(context) = 'object': ingest keeps context as an object */
		if (op->opfuncid == F_TEXTEQ && IsA(l, FuncExpr) && IsA(r, Const) &&
			((FuncExpr *) l)->funcid == F_JSONB_TYPEOF &&
			list_length(((FuncExpr *) l)->args) == 1 &&
			is_column(linitial(((FuncExpr *) l)->args), desc, "context") &&
			!((Const *) r)->constisnull &&
			strcmp(TextDatumGetCString(((Const *) r)->constvalue), "object") == 0)
			return true;
	}
	return false;
}

typedef struct CheckEntry
{
	Oid			relid;
	MemoryContext cxt;			/* holds the entry and its expressions */
	int			ncheck;
	ExprState **exprs;
	bool		implied;		/* events: every constraint is implied by ingest */
} CheckEntry;

static List *check_entries = NIL;	/* in TopMemoryContext */
static List *retired = NIL;		/* contexts to free at transaction end */
static bool callbacks_registered = false;

static void
retire(CheckEntry *e)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	retired = lappend(retired, e->cxt);
	MemoryContextSwitchTo(old);
}

static void
retire_relation(Datum arg, Oid relid)
{
	ListCell   *lc;

	foreach(lc, check_entries)
	{
		CheckEntry *e = lfirst(lc);

		if (!OidIsValid(relid) || e->relid == relid)
		{
			retire(e);
			check_entries = foreach_delete_current(check_entries, lc);
		}
	}
}

static void
retire_all(Datum arg, int cacheid, uint32 hashvalue)
{
	retire_relation(arg, InvalidOid);
}

static void
free_retired(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT)
		return;
	foreach(lc, retired)
		MemoryContextDelete((MemoryContext) lfirst(lc));
	list_free(retired);
	retired = NIL;
}

/* The NOT NULL columns ingest fills in every event row. */
static bool
not_nulls_filled(TupleDesc desc)
{
	static const char *const filled[] = {
		"install_id", "event_id", "wp_user_id_hash", "source", "model",
		"prompt_tokens", "completion_tokens", "cached_prompt_tokens",
		"created_at", "received_at"
	};

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		known = false;

		if (att->attisdropped || !att->attnotnull)
			continue;
		for (int f = 0; f < lengthof(filled); f++)
			known |= strcmp(NameStr(att->attname), filled[f]) == 0;
		if (!known)
			return false;
	}
	return true;
}

/*
 * The entry of rel's constraints, built when missing.  kind says what is
 * written: the CHECKs of an events table that ingest's validation implies
 * compile to true.
 */
static CheckEntry *
check_entry(Relation rel, UtGateKind kind)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TupleConstr *constr = desc->constr;
	int			ncheck = constr ? constr->num_check : 0;
	Oid			relid = RelationGetRelid(rel);
	ListCell   *lc;
	CheckEntry *e;
	MemoryContext cxt;
	MemoryContext old;

	foreach(lc, check_entries)
	{
		e = lfirst(lc);
		if (e->relid == relid && e->ncheck == ncheck)
			return e;
	}

	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(retire_relation, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, retire_all, (Datum) 0);
		RegisterXactCallback(free_retired, NULL);
		callbacks_registered = true;
	}

	cxt = AllocSetContextCreate(TopMemoryContext, "usage_tracking CHECK constraints",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	e = palloc0(sizeof(CheckEntry));
	e->relid = relid;
	e->cxt = cxt;
	e->ncheck = ncheck;
	e->exprs = palloc0(sizeof(ExprState *) * Max(ncheck, 1));
	e->implied = kind == UT_GATE_EVENTS && not_nulls_filled(desc);
	for (int i = 0; i < ncheck; i++)
	{
		Node	   *expr = stringToNode(constr->check[i].ccbin);

		if (kind == UT_GATE_EVENTS && implied_by_ingest(expr, desc))
			expr = (Node *) makeBoolConst(true, false);
		else
			e->implied = false;
		e->exprs[i] = ExecInitExpr(expression_planner((Expr *) expr), NULL);
	}
	MemoryContextSwitchTo(TopMemoryContext);
	check_entries = lappend(check_entries, e);
	MemoryContextSwitchTo(old);
	return e;
}

/*
 * Whether every constraint of rel (an events table or partition) holds for
 * any row ingest writes, so that checking them is what the INSERT would do
 * and cannot fail.
 */
bool
ut_constraints_implied(Relation rel)
{
	return check_entry(rel, UT_GATE_EVENTS)->implied;
}

/*
 * NOT NULL and CHECK constraints of rri's relation on the row in slot (of
 * its row type), as an INSERT or UPDATE checks them: a violation raises the
 * statement's error.
 */
void
ut_check_constraints(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate,
					 UtGateKind kind)
{
	TupleConstr *constr = rri->ri_RelationDesc->rd_att->constr;
	CheckEntry *e;

	if (constr == NULL)
		return;
	e = check_entry(rri->ri_RelationDesc, kind);
	if (e->implied)
		return;
	if (constr->num_check > 0 && rri->ri_ConstraintExprs == NULL)
		rri->ri_ConstraintExprs = e->exprs;
	ExecConstraints(rri, slot, estate);
}
