/*-------------------------------------------------------------------------
 *
 * notifier/notifier.h
 *		Shared declarations of usage-notifier: the delivery of one alert
 *		to one channel (HTTP webhooks, Slack, Discord, email over SMTP).
 *
 *-------------------------------------------------------------------------
 */
#ifndef USAGE_NOTIFIER_H
#define USAGE_NOTIFIER_H

#include <stdbool.h>
#include <stddef.h>

/* One claimed delivery, as usage_tracking.claim_deliveries() returns it. */
typedef struct Delivery
{
	const char *alert_id;
	const char *channel_id;
	const char *attempt;
	const char *kind;			/* webhook, slack, discord, email */
	const char *target;			/* URL or email address */
	const char *secret;			/* whsec_... for webhooks, else NULL */
	const char *message_id;		/* stable across retries */
	const char *subject;
	const char *body;
} Delivery;

typedef struct SendConfig
{
	const char *smtp_url;		/* smtp://host:port, or NULL */
	const char *mail_from;
	long		timeout_s;
} SendConfig;

extern bool send_init(void);
extern void send_cleanup(void);

/*
 * Deliver; return true on success.  status receives a short description of
 * the outcome ("HTTP 200", "HTTP 503", a curl error) for the delivery log.
 */
extern bool send_delivery(const SendConfig *cfg, const Delivery *d,
						  char *status, size_t status_len);

/*
 * Standard Webhooks signature: "v1," and base64 of HMAC-SHA256 over
 * "<id>.<timestamp>.<body>" with the base64-decoded part of "whsec_...".
 * Returns false when the secret is malformed.
 */
extern bool webhook_signature(const char *secret, const char *id, const char *timestamp,
							  const char *body, char *out, size_t out_len);

#endif							/* USAGE_NOTIFIER_H */
