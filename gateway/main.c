/*-------------------------------------------------------------------------
 *
 * gateway/main.c
 *		usage-gateway: configuration from the environment, the HTTP daemon,
 *		and a clean stop on SIGTERM (in-flight requests finish, exit 0).
 *
 *		USAGE_DATABASE_URL   libpq conninfo or URL (required)
 *		USAGE_JWT_SECRET     HS256 key, at least 32 characters (required)
 *		USAGE_LISTEN         host:port, default 127.0.0.1:8080
 *		USAGE_POOL           database connections, default 4
 *		USAGE_CLIENT_TIMEOUT seconds an idle client connection is kept, default 10
 *		USAGE_CLIENT_CONNECTIONS  connections one client address may hold,
 *		                     default 128 (of 512 in all)
 *		USAGE_EXPORT_POOL    database connections for CSV exports, default 2
 *		USAGE_EXPORTS_PER_ACCOUNT  concurrent exports of one account, default 1
 *		USAGE_EXPORT_TIMEOUT seconds an export may take, default 300
 *		USAGE_EXPORT_MIN_RATE bytes/s an export must average once it has run
 *		                     10 s, default 16384
 *		USAGE_DASHBOARD_DIR  static files under /dashboard, default
 *		                     <repo>/dashboard/dist next to the binary
 *
 *-------------------------------------------------------------------------
 */
#include "gateway.h"
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_TIMEOUT_S 30

gw_config	gw_cfg;
volatile int gw_draining;

const char *const gw_allowed_roles[] = {
	"usage_tracking_ingest",
	"usage_tracking_reader",
	"usage_tracking_analyst",
	"usage_tracking_admin",
	NULL
};

double
gw_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die(const char *msg)
{
	fprintf(stderr, "usage-gateway: %s\n", msg);
	exit(2);
}

static int
env_int(const char *name, int dflt, int lo, int hi)
{
	const char *v = getenv(name);
	char	   *end;
	long		n;

	if (v == NULL || *v == '\0')
		return dflt;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || *end || n < lo || n > hi)
	{
		fprintf(stderr, "usage-gateway: %s must be an integer from %d to %d\n", name, lo, hi);
		exit(2);
	}
	return (int) n;
}

static void
load_config(void)
{
	const char *v;
	const char *colon;
	char		exe[PATH_MAX];
	ssize_t		n;
	long		port;

	gw_cfg.database_url = getenv("USAGE_DATABASE_URL");
	if (gw_cfg.database_url == NULL || *gw_cfg.database_url == '\0')
		die("USAGE_DATABASE_URL is not set (a libpq conninfo string or postgresql:// URL)");

	v = getenv("USAGE_JWT_SECRET");
	if (v == NULL || strlen(v) < 32)
		die("USAGE_JWT_SECRET must be set to at least 32 characters");
	gw_cfg.jwt_secret = (const unsigned char *) strdup(v);
	gw_cfg.jwt_secret_len = strlen(v);
	/* Keep the secret out of /proc/<pid>/environ of anything we start. */
	unsetenv("USAGE_JWT_SECRET");

	v = getenv("USAGE_LISTEN");
	if (v == NULL || *v == '\0')
		v = "127.0.0.1:8080";
	colon = strrchr(v, ':');
	if (colon == NULL || colon == v || (size_t) (colon - v) >= sizeof(gw_cfg.listen_host))
		die("USAGE_LISTEN must be host:port, e.g. 127.0.0.1:8080");
	memcpy(gw_cfg.listen_host, v, colon - v);
	gw_cfg.listen_host[colon - v] = '\0';
	port = strtol(colon + 1, NULL, 10);
	if (port < 1 || port > 65535)
		die("USAGE_LISTEN has an invalid port");
	gw_cfg.listen_port = (unsigned short) port;

	gw_cfg.pool_size = env_int("USAGE_POOL", 4, 1, 256);
	gw_cfg.client_timeout_s = env_int("USAGE_CLIENT_TIMEOUT", 10, 1, 3600);
	gw_cfg.client_connections = env_int("USAGE_CLIENT_CONNECTIONS", 128, 1, GW_MAX_CONNECTIONS);
	gw_cfg.export_pool = env_int("USAGE_EXPORT_POOL", 2, 1, 256);
	gw_cfg.exports_per_account = env_int("USAGE_EXPORTS_PER_ACCOUNT", 1, 1, 256);
	gw_cfg.export_timeout_s = env_int("USAGE_EXPORT_TIMEOUT", 300, 1, 86400);
	gw_cfg.export_min_rate = env_int("USAGE_EXPORT_MIN_RATE", 16384, 0, 1 << 30);

	v = getenv("USAGE_DASHBOARD_DIR");
	if (v && *v)
		snprintf(gw_cfg.dashboard_dir, sizeof(gw_cfg.dashboard_dir), "%s", v);
	else if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) > 0)
	{
		exe[n] = '\0';
		/* <repo>/gateway/usage-gateway → <repo>/dashboard/dist */
		snprintf(gw_cfg.dashboard_dir, sizeof(gw_cfg.dashboard_dir), "%s/../dashboard/dist",
				 dirname(exe));
	}
	else
		snprintf(gw_cfg.dashboard_dir, sizeof(gw_cfg.dashboard_dir), "dashboard/dist");
}

int
main(int argc, char **argv)
{
	struct sockaddr_in addr;
	struct MHD_Daemon *daemon;
	sigset_t	sigs;
	int			sig = 0,
				live;
	double		drain_start;

	(void) argv;
	if (argc > 1)
	{
		fprintf(stderr, "usage: usage-gateway (configured by USAGE_* environment variables, see docs/http-api.md)\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	load_config();

	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons(gw_cfg.listen_port);
	if (inet_pton(AF_INET, strcmp(gw_cfg.listen_host, "localhost") == 0 ? "127.0.0.1" : gw_cfg.listen_host,
				  &addr.sin_addr) != 1)
		die("USAGE_LISTEN host must be an IPv4 address");

	/* Signals are taken by sigwait in this thread only. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	live = db_pool_init(gw_cfg.database_url, gw_cfg.pool_size, gw_cfg.export_pool);
	if (live < 0)
		die("out of memory");
	if (live == 0)
		fprintf(stderr, "usage-gateway: the database is not reachable yet; answering 503 until it is\n");

	/*
	 * One thread per connection: a handler blocks on the database, and must
	 * not hold up other clients that happen to share its thread.  The
	 * database pool, not the thread count, bounds the concurrency.
	 */
	daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
							  MHD_USE_AUTO | MHD_USE_ITC | MHD_USE_ERROR_LOG,
							  0, NULL, NULL, http_handle, NULL,
							  MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
							  MHD_OPTION_THREAD_STACK_SIZE, (size_t) 512 * 1024,
							  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) gw_cfg.client_timeout_s,
							  MHD_OPTION_CONNECTION_LIMIT, (unsigned int) GW_MAX_CONNECTIONS,
							  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int) gw_cfg.client_connections,
							  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 64 * 1024,
							  MHD_OPTION_NOTIFY_COMPLETED, http_completed, NULL,
							  MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int) 1,
							  MHD_OPTION_END);
	if (daemon == NULL)
		die("cannot listen on USAGE_LISTEN (address in use?)");
	fprintf(stderr, "usage-gateway: listening on http://%s:%u/ with %d database connections "
			"(%d for API calls, %d for exports, 1 for /healthz)\n",
			gw_cfg.listen_host, gw_cfg.listen_port, gw_cfg.pool_size + gw_cfg.export_pool + 1,
			gw_cfg.pool_size, gw_cfg.export_pool);

	while (sigwait(&sigs, &sig) != 0)
		;
	fprintf(stderr, "usage-gateway: %s received, finishing requests in flight\n",
			sig == SIGTERM ? "SIGTERM" : "SIGINT");
	gw_draining = 1;
	{
		MHD_socket	fd = MHD_quiesce_daemon(daemon);

		if (fd != MHD_INVALID_SOCKET)
			close(fd);
	}
	drain_start = gw_now();
	while (http_inflight() > 0 && gw_now() - drain_start < DRAIN_TIMEOUT_S)
		usleep(20 * 1000);
	MHD_stop_daemon(daemon);
	db_pool_close();
	fprintf(stderr, "usage-gateway: stopped\n");
	return 0;
}
