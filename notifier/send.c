/*-------------------------------------------------------------------------
 *
 * notifier/send.c
 *		Deliver one alert to one channel with libcurl: a POST of JSON to a
 *		webhook (generic, signed in the Standard Webhooks style; Slack;
 *		Discord), or a plain-text email over SMTP.
 *
 *-------------------------------------------------------------------------
 */
#include "notifier.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>

bool
send_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

void
send_cleanup(void)
{
	curl_global_cleanup();
}

/* The response body is not needed: drop it. */
static size_t
discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	(void) ptr;
	(void) userdata;
	return size * nmemb;
}

bool
webhook_signature(const char *secret, const char *id, const char *timestamp,
				  const char *body, char *out, size_t out_len)
{
	const char *b64;
	size_t		b64_len;
	unsigned char key[256];
	int			key_len;
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t		mac_len = 0;
	unsigned char encoded[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
	size_t		msg_len;
	char	   *msg;

	if (secret == NULL || strncmp(secret, "whsec_", 6) != 0)
		return false;
	b64 = secret + 6;
	b64_len = strlen(b64);
	if (b64_len == 0 || b64_len % 4 != 0 || b64_len / 4 * 3 > sizeof(key))
		return false;
	key_len = EVP_DecodeBlock(key, (const unsigned char *) b64, (int) b64_len);
	if (key_len < 0)
		return false;
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	if (b64[b64_len - 1] == '=')
		key_len--;
	if (b64[b64_len - 2] == '=')
		key_len--;

	msg_len = strlen(id) + 1 + strlen(timestamp) + 1 + strlen(body);
	msg = malloc(msg_len + 1);
	if (msg == NULL)
		return false;
	snprintf(msg, msg_len + 1, "%s.%s.%s", id, timestamp, body);
	if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, (size_t) key_len,
				  (unsigned char *) msg, msg_len, mac, sizeof(mac), &mac_len) == NULL)
	{
		free(msg);
		return false;
	}
	free(msg);
	EVP_EncodeBlock(encoded, mac, (int) mac_len);
	return (size_t) snprintf(out, out_len, "v1,%s", encoded) < out_len;
}

/* Copy a header value without CR or LF, so that nothing can add headers. */
static void
header_value(char *dst, size_t len, const char *src)
{
	size_t		n = 0;

	for (; *src != '\0' && n + 1 < len; src++)
		if (*src != '\r' && *src != '\n')
			dst[n++] = *src;
	dst[n] = '\0';
}

static bool
send_http(const SendConfig *cfg, const Delivery *d, char *status, size_t status_len)
{
	CURL	   *curl = curl_easy_init();
	struct curl_slist *headers = NULL;
	char		line[512];
	CURLcode	rc;
	long		code = 0;
	bool		ok = false;

	if (curl == NULL)
	{
		snprintf(status, status_len, "curl_easy_init failed");
		return false;
	}
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, "User-Agent: usage-notifier/1.0");
	if (strcmp(d->kind, "webhook") == 0)
	{
		char		ts[32];
		char		sig[128];
		char		id[200];

		header_value(id, sizeof(id), d->message_id);
		snprintf(ts, sizeof(ts), "%lld", (long long) time(NULL));
		if (!webhook_signature(d->secret, id, ts, d->body, sig, sizeof(sig)))
		{
			snprintf(status, status_len, "malformed webhook secret");
			curl_slist_free_all(headers);
			curl_easy_cleanup(curl);
			return false;
		}
		snprintf(line, sizeof(line), "webhook-id: %s", id);
		headers = curl_slist_append(headers, line);
		snprintf(line, sizeof(line), "webhook-timestamp: %s", ts);
		headers = curl_slist_append(headers, line);
		snprintf(line, sizeof(line), "webhook-signature: %s", sig);
		headers = curl_slist_append(headers, line);
	}

	curl_easy_setopt(curl, CURLOPT_URL, d->target);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, d->body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long) strlen(d->body));
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, cfg->timeout_s);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);

	rc = curl_easy_perform(curl);
	if (rc != CURLE_OK)
		snprintf(status, status_len, "%s", curl_easy_strerror(rc));
	else
	{
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
		snprintf(status, status_len, "HTTP %ld", code);
		ok = code >= 200 && code < 300;
	}
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	return ok;
}

/* The message being uploaded to the SMTP server. */
typedef struct Upload
{
	char	   *data;
	size_t		len;
	size_t		pos;
} Upload;

static size_t
read_upload(char *buf, size_t size, size_t nmemb, void *userdata)
{
	Upload	   *up = userdata;
	size_t		n = size * nmemb;

	if (n > up->len - up->pos)
		n = up->len - up->pos;
	memcpy(buf, up->data + up->pos, n);
	up->pos += n;
	return n;
}

/* Headers, a blank line, and the body with CRLF line ends. */
static char *
build_email(const SendConfig *cfg, const Delivery *d, size_t *len)
{
	char		date[64];
	char		to[300];
	char		from[300];
	char		subject[300];
	char		id[200];
	time_t		now = time(NULL);
	struct tm	tm;
	size_t		cap = strlen(d->body) * 2 + 2048;
	char	   *out = malloc(cap);
	size_t		n;

	if (out == NULL)
		return NULL;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	header_value(to, sizeof(to), d->target);
	header_value(from, sizeof(from), cfg->mail_from);
	header_value(subject, sizeof(subject), d->subject);
	header_value(id, sizeof(id), d->message_id);
	n = (size_t) snprintf(out, cap,
						  "Date: %s\r\n"
						  "From: <%s>\r\n"
						  "To: <%s>\r\n"
						  "Subject: %s\r\n"
						  "Message-ID: <%s.%s@usage-tracking>\r\n"
						  "X-Alert-Id: %s\r\n"
						  "MIME-Version: 1.0\r\n"
						  "Content-Type: text/plain; charset=utf-8\r\n"
						  "\r\n",
						  date, from, to, subject, id, d->channel_id, id);
	for (const char *p = d->body; *p != '\0' && n + 3 < cap; p++)
	{
		if (*p == '\n' && (p == d->body || p[-1] != '\r'))
			out[n++] = '\r';
		out[n++] = *p;
	}
	out[n] = '\0';
	*len = n;
	return out;
}

static bool
send_email(const SendConfig *cfg, const Delivery *d, char *status, size_t status_len)
{
	CURL	   *curl;
	struct curl_slist *rcpt = NULL;
	char		addr[300];
	char		from[300];
	Upload		up = {0};
	CURLcode	rc;
	bool		ok;

	if (cfg->smtp_url == NULL)
	{
		snprintf(status, status_len, "no SMTP server configured (--smtp-url)");
		return false;
	}
	curl = curl_easy_init();
	if (curl == NULL)
	{
		snprintf(status, status_len, "curl_easy_init failed");
		return false;
	}
	up.data = build_email(cfg, d, &up.len);
	if (up.data == NULL)
	{
		curl_easy_cleanup(curl);
		snprintf(status, status_len, "out of memory");
		return false;
	}
	header_value(addr, sizeof(addr) - 2, d->target);
	snprintf(from, sizeof(from), "<%s>", cfg->mail_from);
	{
		char		bracketed[304];

		snprintf(bracketed, sizeof(bracketed), "<%s>", addr);
		rcpt = curl_slist_append(rcpt, bracketed);
	}
	curl_easy_setopt(curl, CURLOPT_URL, cfg->smtp_url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
	curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_upload);
	curl_easy_setopt(curl, CURLOPT_READDATA, &up);
	curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, cfg->timeout_s);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);

	rc = curl_easy_perform(curl);
	ok = rc == CURLE_OK;
	if (ok)
		snprintf(status, status_len, "SMTP accepted");
	else
	{
		long		code = 0;

		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
		snprintf(status, status_len, "SMTP %ld: %s", code, curl_easy_strerror(rc));
	}
	curl_slist_free_all(rcpt);
	curl_easy_cleanup(curl);
	free(up.data);
	return ok;
}

bool
send_delivery(const SendConfig *cfg, const Delivery *d, char *status, size_t status_len)
{
	if (strcmp(d->kind, "email") == 0)
		return send_email(cfg, d, status, status_len);
	if (strcmp(d->kind, "webhook") == 0 || strcmp(d->kind, "slack") == 0 ||
		strcmp(d->kind, "discord") == 0)
		return send_http(cfg, d, status, status_len);
	snprintf(status, status_len, "unknown channel kind \"%s\"", d->kind);
	return false;
}
