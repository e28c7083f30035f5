/*-------------------------------------------------------------------------
 *
 * bench/http_load.c
 *		Load client of bench/http.sh: N threads post signed 50-event
 *		batches either over HTTP to the gateway (libcurl, keep-alive) or
 *		straight to usage_tracking.ingest() over libpq (a prepared
 *		statement), built and signed the same way in both modes, and report
 *		batches per second.
 *
 *		http_load http|sql URL|CONNINFO CLIENTS BATCHES EVENTS PREFIX
 *		          INSTALLS SECRET TOKEN
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static int	use_http;
static const char *target;
static long batches,
			events;
static const char *prefix;
static int	installs;
static const char *secret;
static const char *token;
static char created_at[32];
static atomic_long next_batch;
static atomic_long errors;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Body of batch k, and its X-Install-Signature. */
static size_t
make_batch(long k, char *body, size_t size, char *sig)
{
	size_t		n = 0;
	long		j;
	unsigned char mac[32];
	unsigned int maclen = 0;
	char		msg_ts[32];
	unsigned char *buf;
	size_t		tslen;
	int			i;

	n += snprintf(body + n, size - n,
				  "{\"install_id\":\"b3c40000-0000-4000-8000-%012d_%012d\",\"events\":[",
				  (int) (k % installs), (int) (k % installs));
	for (j = 0; j < events; j++)
		n += snprintf(body + n, size - n,
					  "%s{\"event_id\":\"evt_%s_%ld_%ld\",\"wp_user_id_hash\":\"%064lx\","
					  "\"source\":\"%s\",\"model\":\"%s\",\"prompt_tokens\":%ld,"
					  "\"completion_tokens\":%ld,\"total_tokens\":%ld,\"cached_prompt_tokens\":0,"
					  "\"request_id\":\"req_%ld\",\"context\":{\"attachment_id\":%ld,\"width\":1024,\"height\":768},"
					  "\"created_at\":\"%s\"}",
					  j ? "," : "", prefix, k, j, (unsigned long) (j % 7 + 1),
					  (j % 3 == 0) ? "bulk" : "queue", (j % 2) ? "gpt-4o-mini" : "gpt-4.1-mini",
					  120 + j, 20 + j % 9, 140 + j + j % 9, j, 1000 + j, created_at);
	n += snprintf(body + n, size - n, "]}");

	tslen = snprintf(msg_ts, sizeof(msg_ts), "%ld.", (long) time(NULL));
	buf = malloc(tslen + n);
	memcpy(buf, msg_ts, tslen);
	memcpy(buf + tslen, body, n);
	HMAC(EVP_sha256(), secret, strlen(secret), buf, tslen + n, mac, &maclen);
	free(buf);
	for (i = 0; i < 32; i++)
		sprintf(sig + 2 * i, "%02x", mac[i]);
	sprintf(sig + 64, ":%.*s", (int) (tslen - 1), msg_ts);
	return n;
}

static size_t
discard(void *p, size_t s, size_t n, void *u)
{
	(void) p;
	(void) u;
	return s * n;
}

static void *
worker(void *arg)
{
	size_t		size = 1024 + events * 400;
	char	   *body = malloc(size);
	char		sig[128];
	char		hdr_sig[160],
				hdr_auth[4096];
	long		k;
	CURL	   *curl = NULL;
	PGconn	   *pg = NULL;

	(void) arg;
	if (use_http)
	{
		curl = curl_easy_init();
		curl_easy_setopt(curl, CURLOPT_URL, target);
		curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
		snprintf(hdr_auth, sizeof(hdr_auth), "Authorization: Bearer %s", token);
	}
	else
	{
		pg = PQconnectdb(target);
		if (PQstatus(pg) != CONNECTION_OK)
		{
			fprintf(stderr, "%s", PQerrorMessage(pg));
			exit(1);
		}
		PQclear(PQprepare(pg, "ingest", "SELECT usage_tracking.ingest($1, $2)", 2, NULL));
	}
	while ((k = atomic_fetch_add(&next_batch, 1)) < batches)
	{
		size_t		n = make_batch(k, body, size, sig);

		if (use_http)
		{
			struct curl_slist *h = NULL;
			long		code = 0;

			snprintf(hdr_sig, sizeof(hdr_sig), "X-Install-Signature: %s", sig);
			h = curl_slist_append(h, hdr_auth);
			h = curl_slist_append(h, hdr_sig);
			h = curl_slist_append(h, "Content-Type: application/json");
			h = curl_slist_append(h, "Expect:");
			curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
			curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
			curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long) n);
			if (curl_easy_perform(curl) != CURLE_OK ||
				curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK || code != 200)
			{
				if (atomic_fetch_add(&errors, 1) < 3)
					fprintf(stderr, "http_load: batch %ld answered %ld\n", k, code);
			}
			curl_slist_free_all(h);
		}
		else
		{
			const char *vals[2] = {body, sig};
			PGresult   *res = PQexecPrepared(pg, "ingest", 2, vals, NULL, NULL, 0);

			if (PQresultStatus(res) != PGRES_TUPLES_OK)
			{
				if (atomic_fetch_add(&errors, 1) < 3)
					fprintf(stderr, "http_load: batch %ld: %s", k, PQresultErrorMessage(res));
			}
			PQclear(res);
		}
	}
	if (curl)
		curl_easy_cleanup(curl);
	if (pg)
		PQfinish(pg);
	free(body);
	return NULL;
}

int
main(int argc, char **argv)
{
	int			clients,
				i;
	pthread_t  *threads;
	double		t0,
				t1;
	time_t		at;
	struct tm	tm;

	if (argc != 10)
	{
		fprintf(stderr, "usage: %s http|sql URL|CONNINFO CLIENTS BATCHES EVENTS PREFIX INSTALLS SECRET TOKEN\n", argv[0]);
		return 2;
	}
	use_http = strcmp(argv[1], "http") == 0;
	target = argv[2];
	clients = atoi(argv[3]);
	batches = atol(argv[4]);
	events = atol(argv[5]);
	prefix = argv[6];
	installs = atoi(argv[7]);
	secret = argv[8];
	token = argv[9];
	at = time(NULL) - 60;
	gmtime_r(&at, &tm);
	strftime(created_at, sizeof(created_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	curl_global_init(CURL_GLOBAL_DEFAULT);

	threads = calloc(clients, sizeof(pthread_t));
	t0 = now_s();
	for (i = 0; i < clients; i++)
		pthread_create(&threads[i], NULL, worker, NULL);
	for (i = 0; i < clients; i++)
		pthread_join(threads[i], NULL);
	t1 = now_s();
	printf("%s %ld %ld %.3f %.1f\n", argv[1], batches, (long) atomic_load(&errors), t1 - t0,
		   batches / (t1 - t0));
	return atomic_load(&errors) ? 1 : 0;
}
