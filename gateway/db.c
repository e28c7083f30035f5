/*-------------------------------------------------------------------------
 *
 * gateway/db.c
 *		A fixed pool of libpq connections.  A connection that breaks (the
 *		server restarted, the network dropped) is closed and reopened by
 *		its next user, at most once per GW_RECONNECT_BACKOFF; meanwhile
 *		requests get 503.  Each request's statements go in one pipeline.
 *
 *		The pool has three lanes, so that one kind of request cannot take
 *		the connections of another: USAGE_POOL connections for API calls,
 *		USAGE_EXPORT_POOL for streamed CSV exports (a slow reader holds
 *		one for as long as it reads), and one for /healthz.
 *
 *-------------------------------------------------------------------------
 */
#include "gateway.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * Statements are prepared once per connection, under a name, the first
 * time they run: a request then costs no parse and no plan on the server.
 * The texts are the gateway's own (a handful per route); the first
 * GW_PREPARED_MAX of them are kept, later ones run unnamed, as do those
 * with more than GW_PREPARED_PARAMS parameters (API calls with many named
 * arguments: their texts vary with the arguments given).
 */
#define GW_PREPARED_MAX 64
#define GW_PREPARED_PARAMS 8

typedef struct prepared_stmt
{
	int			id;				/* its name is gw_<id> */
	char	   *sql;			/* malloc */
	int			nparams;
	Oid			types[GW_PREPARED_PARAMS];	/* the parameter types, 0 = unspecified */
} prepared_stmt;

struct gw_conn
{
	PGconn	   *conn;
	double		last_attempt;	/* of a failed (re)connect */
	int			index;
	int			busy;
	int			nprepared;
	int			next_id;
	prepared_stmt prepared[GW_PREPARED_MAX];
};

static gw_conn *pool;
static int	pool_size;			/* all lanes */
static int	lane_start[GW_LANES + 1];	/* lane l is pool[lane_start[l] .. lane_start[l + 1]) */
static char *pool_conninfo;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond;

static void
notice_quiet(void *arg, const PGresult *res)
{
	(void) arg;
	(void) res;
}

static void
forget_prepared(gw_conn *c)
{
	for (int i = 0; i < c->nprepared; i++)
		free(c->prepared[i].sql);
	c->nprepared = 0;
}

static void
stmt_types(const db_stmt *st, Oid *types)
{
	for (int k = 0; k < GW_PREPARED_PARAMS; k++)
		types[k] = (st->types && k < st->nparams) ? st->types[k] : 0;
}

/*
 * Drop the cache entries (indexes ks, in the order they were added) of
 * statements whose Parse failed or never ran (an unknown function, or an
 * earlier statement of the pipeline failed): the server does not have them.
 */
static void
forget_unprepared(gw_conn *c, const int *ks, int n)
{
	for (int j = n - 1; j >= 0; j--)
	{
		int			k = ks[j];

		free(c->prepared[k].sql);
		memmove(&c->prepared[k], &c->prepared[k + 1],
				sizeof(prepared_stmt) * (c->nprepared - k - 1));
		c->nprepared--;
	}
}

/* The index of st among the connection's prepared statements, or -1. */
static int
find_prepared(gw_conn *c, const db_stmt *st)
{
	Oid			types[GW_PREPARED_PARAMS];

	if (st->nparams > GW_PREPARED_PARAMS)
		return -1;
	stmt_types(st, types);
	for (int i = 0; i < c->nprepared; i++)
		if (c->prepared[i].nparams == st->nparams &&
			memcmp(c->prepared[i].types, types, sizeof(types)) == 0 &&
			strcmp(c->prepared[i].sql, st->sql) == 0)
			return i;
	return -1;
}

static int
db_connect(gw_conn *c)
{
	/* Later keywords override earlier ones; the URL can override ours. */
	const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
	const char *const vals[] = {"3", "usage-gateway", pool_conninfo, NULL};

	if (c->conn)
	{
		PQfinish(c->conn);
		c->conn = NULL;
	}
	forget_prepared(c);
	c->conn = PQconnectdbParams(keys, vals, 1);
	if (c->conn == NULL || PQstatus(c->conn) != CONNECTION_OK)
	{
		char		msg[256];

		snprintf(msg, sizeof(msg), "%s", c->conn ? PQerrorMessage(c->conn) : "out of memory");
		msg[strcspn(msg, "\n")] = '\0';
		fprintf(stderr, "usage-gateway: connection %d: %s\n", c->index, msg);
		if (c->conn)
			PQfinish(c->conn);
		c->conn = NULL;
		c->last_attempt = gw_now();
		return -1;
	}
	PQsetNoticeReceiver(c->conn, notice_quiet, NULL);
	return 0;
}

int
db_pool_init(const char *conninfo, int size, int export_size)
{
	pthread_condattr_t attr;
	int			i,
				ok = 0;

	lane_start[GW_LANE_API] = 0;
	lane_start[GW_LANE_EXPORT] = size;
	lane_start[GW_LANE_HEALTH] = size + export_size;
	lane_start[GW_LANES] = size + export_size + 1;
	size = lane_start[GW_LANES];
	pool_conninfo = strdup(conninfo);
	pool = calloc(size, sizeof(gw_conn));
	if (pool == NULL || pool_conninfo == NULL)
		return -1;
	pool_size = size;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pool_cond, &attr);
	pthread_condattr_destroy(&attr);
	for (i = 0; i < size; i++)
	{
		pool[i].index = i;
		if (db_connect(&pool[i]) == 0)
			ok++;
	}
	return ok;
}

void
db_pool_close(void)
{
	int			i;

	for (i = 0; i < pool_size; i++)
		if (pool[i].conn)
		{
			PQfinish(pool[i].conn);
			pool[i].conn = NULL;
		}
}

gw_conn *
db_acquire(int timeout_ms)
{
	return db_acquire_lane(GW_LANE_API, timeout_ms);
}

gw_conn *
db_acquire_lane(int lane, int timeout_ms)
{
	struct timespec deadline;
	gw_conn    *found = NULL;
	int			i,
				lo = lane_start[lane],
				hi = lane_start[lane + 1];

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L)
	{
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&pool_lock);
	for (;;)
	{
		/* Prefer a live connection over one that must reconnect. */
		for (i = lo; i < hi; i++)
			if (!pool[i].busy && pool[i].conn)
			{
				found = &pool[i];
				break;
			}
		if (!found)
			for (i = lo; i < hi; i++)
				if (!pool[i].busy)
				{
					found = &pool[i];
					break;
				}
		if (found)
		{
			found->busy = 1;
			break;
		}
		if (pthread_cond_timedwait(&pool_cond, &pool_lock, &deadline) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&pool_lock);
	return found;
}

void
db_release(gw_conn *c)
{
	pthread_mutex_lock(&pool_lock);
	c->busy = 0;
	/* Waiters may wait for another lane: wake them all. */
	pthread_cond_broadcast(&pool_cond);
	pthread_mutex_unlock(&pool_lock);
}

int
db_ensure(gw_conn *c)
{
	if (c->conn && PQstatus(c->conn) == CONNECTION_OK)
		return 0;
	if (c->conn == NULL && gw_now() - c->last_attempt < GW_RECONNECT_BACKOFF)
		return -1;
	return db_connect(c);
}

PGconn *
db_pgconn(gw_conn *c)
{
	return c->conn;
}

void
db_mark_broken(gw_conn *c)
{
	if (c->conn)
	{
		PQfinish(c->conn);
		c->conn = NULL;
	}
	forget_prepared(c);
	c->last_attempt = 0;		/* the next user may reconnect at once */
}

void
db_clear(db_stmt *stmts, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		if (stmts[i].result)
			PQclear(stmts[i].result);
		stmts[i].result = NULL;
	}
}

int
db_pipeline(gw_conn *c, db_stmt *stmts, int n, int *failed)
{
	PGconn	   *conn = c->conn;
	PGresult   *res;
	int			i,
				rc = 0;
	int			preparing[64];	/* cache index of a statement prepared now, or -1 */
	int			unprepared[64];
	int			nunprepared = 0;

	*failed = -1;
	if (n > (int) (sizeof(preparing) / sizeof(preparing[0])))
		return -1;
	for (i = 0; i < n; i++)
		stmts[i].result = NULL;
	if (conn == NULL || PQenterPipelineMode(conn) != 1)
		return -1;
	for (i = 0; i < n; i++)
	{
		int			k = find_prepared(c, &stmts[i]);
		char		name[32];

		preparing[i] = -1;
		if (k < 0 && c->nprepared < GW_PREPARED_MAX && stmts[i].nparams <= GW_PREPARED_PARAMS)
		{
			prepared_stmt *p = &c->prepared[c->nprepared];

			p->id = c->next_id++;
			snprintf(name, sizeof(name), "gw_%d", p->id);
			p->sql = strdup(stmts[i].sql);
			if (p->sql == NULL)
				return -1;
			p->nparams = stmts[i].nparams;
			stmt_types(&stmts[i], p->types);
			if (PQsendPrepare(conn, name, stmts[i].sql, stmts[i].nparams, stmts[i].types) != 1)
				return -1;
			k = c->nprepared++;
			preparing[i] = k;
		}
		if (k >= 0)
		{
			snprintf(name, sizeof(name), "gw_%d", c->prepared[k].id);
			if (PQsendQueryPrepared(conn, name, stmts[i].nparams, stmts[i].values,
									stmts[i].lengths, stmts[i].formats, 0) != 1)
				return -1;
		}
		else if (PQsendQueryParams(conn, stmts[i].sql, stmts[i].nparams, stmts[i].types,
								   stmts[i].values, stmts[i].lengths, stmts[i].formats, 0) != 1)
			return -1;
	}
	if (PQpipelineSync(conn) != 1)
		return -1;

	for (i = 0; i < n; i++)
	{
		PGresult   *extra;

		if (preparing[i] >= 0)
		{
			/*
			 * The Parse of a statement prepared now.  If it failed (say, an
			 * unknown function) that is the statement's result, and the
			 * statement is not kept.
			 */
			res = PQgetResult(conn);
			if (res == NULL)
				return i == 0 ? -1 : -2;
			while ((extra = PQgetResult(conn)) != NULL)
				PQclear(extra);
			if (PQresultStatus(res) != PGRES_COMMAND_OK)
			{
				unprepared[nunprepared++] = preparing[i];
				if (PQresultStatus(res) != PGRES_PIPELINE_ABORTED)
				{
					stmts[i].result = res;
					/* the execution that followed was skipped */
					extra = PQgetResult(conn);
					if (extra == NULL)
						return i == 0 ? -1 : -2;
					PQclear(extra);
					while ((extra = PQgetResult(conn)) != NULL)
						PQclear(extra);
					if (PQstatus(conn) == CONNECTION_BAD)
						return i == 0 ? -1 : -2;
					if (rc == 0)
					{
						rc = 1;
						*failed = i;
					}
					continue;
				}
			}
			PQclear(res);
		}
		res = PQgetResult(conn);
		if (res == NULL)
			return i == 0 ? -1 : -2;
		stmts[i].result = res;
		/* Each statement's results end with NULL. */
		while ((extra = PQgetResult(conn)) != NULL)
			PQclear(extra);
		switch (PQresultStatus(res))
		{
			case PGRES_COMMAND_OK:
			case PGRES_TUPLES_OK:
				break;
			case PGRES_PIPELINE_ABORTED:
				break;
			default:
				if (PQstatus(conn) == CONNECTION_BAD)
					return i == 0 ? -1 : -2;
				if (rc == 0)
				{
					rc = 1;
					*failed = i;
				}
				break;
		}
	}
	res = PQgetResult(conn);
	if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC)
	{
		if (res)
			PQclear(res);
		return -2;
	}
	PQclear(res);
	if (PQexitPipelineMode(conn) != 1)
		return -2;
	forget_unprepared(c, unprepared, nunprepared);
	return rc;
}

void
db_rollback_if_needed(gw_conn *c)
{
	PGresult   *res;

	if (c->conn == NULL)
		return;
	if (PQpipelineStatus(c->conn) != PQ_PIPELINE_OFF || PQstatus(c->conn) != CONNECTION_OK)
	{
		db_mark_broken(c);
		return;
	}
	if (PQtransactionStatus(c->conn) == PQTRANS_IDLE)
		return;
	res = PQexec(c->conn, "ROLLBACK");
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
		db_mark_broken(c);
	if (res)
		PQclear(res);
}
