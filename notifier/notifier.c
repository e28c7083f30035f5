/*-------------------------------------------------------------------------
 *
 * notifier/notifier.c
 *		usage-notifier: deliver usage_tracking alerts to the channels of
 *		their accounts.
 *
 * The delivery table is the source of truth: the notifier claims due rows
 * with usage_tracking.claim_deliveries() (one at a time, leased, SKIP
 * LOCKED, so several notifiers may run), sends, and records the outcome
 * with usage_tracking.record_delivery(), which schedules retries with
 * exponential backoff.  LISTEN usage_tracking_alerts only wakes it up early;
 * between notifications it polls, so alerts raised while it was down are
 * delivered when it starts.  On SIGTERM or SIGINT it finishes the delivery
 * in hand and exits.
 *
 *-------------------------------------------------------------------------
 */
#include "notifier.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

typedef struct Options
{
	const char *conninfo;
	double		poll_s;
	long		retry_base_s;
	int			max_attempts;
	long		lease_s;
	bool		once;
	bool		verbose;
	SendConfig	send;
} Options;

static volatile sig_atomic_t stop_requested = 0;

static void
handle_stop(int signo)
{
	(void) signo;
	stop_requested = 1;
}

static void
logmsg(const char *fmt,...)
{
	char		stamp[32];
	time_t		now = time(NULL);
	struct tm	tm;
	va_list		ap;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(stderr, "%s usage-notifier: ", stamp);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
usage(void)
{
	printf("usage-notifier delivers usage_tracking alerts to webhooks, Slack, Discord and email.\n\n"
		   "Usage: usage-notifier [OPTION]...\n\n"
		   "  -d, --dbname=CONNINFO     database to connect to (default: libpq environment)\n"
		   "      --smtp-url=URL        SMTP server for email channels, e.g. smtp://127.0.0.1:25\n"
		   "      --mail-from=ADDRESS   sender of alert emails (default usage-tracking@localhost)\n"
		   "      --poll=SECONDS        longest wait between looks at the delivery table (default 30)\n"
		   "      --retry-base=SECONDS  first retry delay, doubled each attempt (default 30)\n"
		   "      --max-attempts=N      attempts before a delivery is given up (default 10)\n"
		   "      --lease=SECONDS       how long a claimed delivery is held (default 300)\n"
		   "      --timeout=SECONDS     HTTP and SMTP timeout (default 10)\n"
		   "      --once                deliver what is due, then exit\n"
		   "  -v, --verbose             log every delivery, not only failures\n"
		   "  -h, --help                show this help\n");
}

static bool
parse_long(const char *s, long min, long max, long *out)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static PGconn *
connect_db(const Options *opt)
{
	PGconn	   *conn = PQconnectdb(opt->conninfo);
	PGresult   *res;

	if (PQstatus(conn) != CONNECTION_OK)
	{
		logmsg("cannot connect: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	res = PQexec(conn, "LISTEN usage_tracking_alerts");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		logmsg("LISTEN failed: %s", PQerrorMessage(conn));
		PQclear(res);
		PQfinish(conn);
		return NULL;
	}
	PQclear(res);
	return conn;
}

/*
 * Record the outcome of one delivery.  Returns false when the database
 * could not be told (the lease then expires and the delivery is retried).
 */
static bool
record(PGconn *conn, const Options *opt, const char *alert_id, const char *channel_id,
	   bool ok, const char *status)
{
	char		retry[32];
	char		attempts[32];
	const char *params[6];
	PGresult   *res;
	bool		done;

	snprintf(retry, sizeof(retry), "%ld", opt->retry_base_s);
	snprintf(attempts, sizeof(attempts), "%d", opt->max_attempts);
	params[0] = alert_id;
	params[1] = channel_id;
	params[2] = ok ? "true" : "false";
	params[3] = status;
	params[4] = retry;
	params[5] = attempts;
	res = PQexecParams(conn,
					   "SELECT usage_tracking.record_delivery($1::bigint, $2::bigint, $3::boolean, $4,"
					   " make_interval(secs => $5::double precision), $6::integer)",
					   6, NULL, params, NULL, NULL, 0);
	done = PQresultStatus(res) == PGRES_TUPLES_OK;
	if (!done)
		logmsg("cannot record delivery of alert %s: %s", alert_id, PQerrorMessage(conn));
	PQclear(res);
	return done;
}

/*
 * Claim and send due deliveries one at a time until none is due.  Returns
 * the number sent, or -1 on a database error.
 */
static int
deliver_due(PGconn *conn, const Options *opt)
{
	int			sent = 0;
	char		lease[32];
	const char *params[1];

	snprintf(lease, sizeof(lease), "%ld", opt->lease_s);
	params[0] = lease;
	while (!stop_requested)
	{
		PGresult   *res;
		Delivery	d;
		char		status[256];
		bool		ok;

		res = PQexecParams(conn,
						   "SELECT alert_id, channel_id, attempt, kind, target, secret,"
						   " message_id, subject, body"
						   " FROM usage_tracking.claim_deliveries(1,"
						   " make_interval(secs => $1::double precision))",
						   1, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			logmsg("cannot claim deliveries: %s", PQerrorMessage(conn));
			PQclear(res);
			return -1;
		}
		if (PQntuples(res) == 0)
		{
			PQclear(res);
			break;
		}
		d.alert_id = PQgetvalue(res, 0, 0);
		d.channel_id = PQgetvalue(res, 0, 1);
		d.attempt = PQgetvalue(res, 0, 2);
		d.kind = PQgetvalue(res, 0, 3);
		d.target = PQgetvalue(res, 0, 4);
		d.secret = PQgetisnull(res, 0, 5) ? NULL : PQgetvalue(res, 0, 5);
		d.message_id = PQgetvalue(res, 0, 6);
		d.subject = PQgetvalue(res, 0, 7);
		d.body = PQgetvalue(res, 0, 8);

		ok = send_delivery(&opt->send, &d, status, sizeof(status));
		if (!ok || opt->verbose)
			logmsg("alert %s to %s channel %s, attempt %s: %s", d.alert_id, d.kind,
				   d.channel_id, d.attempt, status);
		if (!record(conn, opt, d.alert_id, d.channel_id, ok, status))
		{
			PQclear(res);
			return -1;
		}
		PQclear(res);
		sent++;
	}
	return sent;
}

/* Seconds until the next delivery is due, at most the poll interval. */
static double
next_wait(PGconn *conn, const Options *opt)
{
	PGresult   *res;
	double		wait = opt->poll_s;

	res = PQexec(conn,
				 "SELECT extract(epoch FROM min(next_attempt_at) - clock_timestamp())"
				 " FROM usage_tracking.alert_deliveries"
				 " WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
	{
		double		due = strtod(PQgetvalue(res, 0, 0), NULL);

		if (due < wait)
			wait = due;
	}
	PQclear(res);
	if (wait < 0.05)
		wait = 0.05;
	return wait;
}

/*
 * Sleep until a notification arrives, the wait is over or a signal comes.
 * Returns false when the connection is broken.
 */
static bool
wait_for_work(PGconn *conn, double seconds)
{
	int			sock = PQsocket(conn);
	fd_set		fds;
	struct timeval tv;
	PGnotify   *n;

	if (sock < 0)
		return false;
	FD_ZERO(&fds);
	FD_SET(sock, &fds);
	tv.tv_sec = (time_t) seconds;
	tv.tv_usec = (suseconds_t) ((seconds - (double) tv.tv_sec) * 1e6);
	if (select(sock + 1, &fds, NULL, NULL, &tv) < 0 && errno != EINTR)
		return false;
	if (!PQconsumeInput(conn))
		return false;
	while ((n = PQnotifies(conn)) != NULL)
		PQfreemem(n);
	return PQstatus(conn) == CONNECTION_OK;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"smtp-url", required_argument, NULL, 1},
		{"mail-from", required_argument, NULL, 2},
		{"poll", required_argument, NULL, 3},
		{"retry-base", required_argument, NULL, 4},
		{"max-attempts", required_argument, NULL, 5},
		{"lease", required_argument, NULL, 6},
		{"timeout", required_argument, NULL, 7},
		{"once", no_argument, NULL, 8},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	Options		opt = {
		.conninfo = "",
		.poll_s = 30,
		.retry_base_s = 30,
		.max_attempts = 10,
		.lease_s = 300,
		.send = {.smtp_url = NULL, .mail_from = "usage-tracking@localhost", .timeout_s = 10},
	};
	struct sigaction sa;
	PGconn	   *conn = NULL;
	int			backoff = 1;
	int			c;
	long		v;

	while ((c = getopt_long(argc, argv, "d:vh", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				opt.conninfo = optarg;
				break;
			case 1:
				opt.send.smtp_url = optarg;
				break;
			case 2:
				opt.send.mail_from = optarg;
				break;
			case 3:
				if (!parse_long(optarg, 1, 86400, &v))
					goto bad;
				opt.poll_s = (double) v;
				break;
			case 4:
				if (!parse_long(optarg, 1, 86400, &opt.retry_base_s))
					goto bad;
				break;
			case 5:
				if (!parse_long(optarg, 1, 1000, &v))
					goto bad;
				opt.max_attempts = (int) v;
				break;
			case 6:
				if (!parse_long(optarg, 10, 86400, &opt.lease_s))
					goto bad;
				break;
			case 7:
				if (!parse_long(optarg, 1, 600, &opt.send.timeout_s))
					goto bad;
				break;
			case 8:
				opt.once = true;
				break;
			case 'v':
				opt.verbose = true;
				break;
			case 'h':
				usage();
				return 0;
			default:
				fprintf(stderr, "Try \"usage-notifier --help\" for more information.\n");
				return 2;
		}
	}
	if (optind < argc)
	{
		fprintf(stderr, "usage-notifier: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	if (opt.lease_s <= opt.send.timeout_s)
	{
		fprintf(stderr, "usage-notifier: --lease must be longer than --timeout\n");
		return 2;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!send_init())
	{
		fprintf(stderr, "usage-notifier: cannot initialize libcurl\n");
		return 1;
	}

	logmsg("started");
	while (!stop_requested)
	{
		int			sent;

		if (conn == NULL)
		{
			conn = connect_db(&opt);
			if (conn == NULL)
			{
				if (opt.once)
					break;
				sleep((unsigned) backoff);
				backoff = backoff < 30 ? backoff * 2 : 30;
				continue;
			}
			backoff = 1;
		}
		sent = deliver_due(conn, &opt);
		if (sent < 0 && PQstatus(conn) != CONNECTION_OK)
		{
			PQfinish(conn);
			conn = NULL;
			continue;
		}
		if (opt.once)
			break;
		if (!wait_for_work(conn, sent < 0 ? 1.0 : next_wait(conn, &opt)))
		{
			logmsg("connection lost, reconnecting");
			PQfinish(conn);
			conn = NULL;
		}
	}
	if (conn != NULL)
		PQfinish(conn);
	send_cleanup();
	logmsg("stopped");
	return (opt.once && conn == NULL && !stop_requested) ? 1 : 0;

bad:
	fprintf(stderr, "usage-notifier: invalid option value \"%s\"\n", optarg);
	return 2;
}
