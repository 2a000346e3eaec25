/* notify.h - the notify service: follows the committed-event stream (archive PUB plus
 * PostgreSQL catch-up) and serves it to stream clients over a ZeroMQ ROUTER with credit-based
 * flow control and as Server-Sent Events (GET /v1/stream), each client authenticated by an
 * organisation API key and sent only what that organisation may see (services/PROTOCOL.md,
 * Stream protocol and Server-Sent Events); webhooks are deliver.c, /v1/subscriptions subs.c. */
#ifndef NOTIFY_H
#define NOTIFY_H
#include <stdint.h>
#include <stdio.h>

typedef struct notify notify_t;

/* Loads the config (defaults < file at config_path, may be NULL < EMINE_<SECTION>_<KEY>),
 * binds the stream ROUTER and the admin HTTP server and connects the SUB.  PostgreSQL being
 * down is not an error here: the service retries with backoff and reports 503 on /readyz.
 * Returns NULL after logging the reason (bad config, endpoint in use). */
notify_t *notify_new(const char *config_path);

/* Runs the poll loop until em_signal_interrupted(), then persists the cursor.  Returns 0, or
 * -1 on a fatal error (the ZeroMQ context went away). */
int notify_run(notify_t *self);

/* One iteration of the poll loop waiting at most timeout_ms (for tests and embedding).
 * Returns 0, or -1 on a fatal error. */
int notify_step(notify_t *self, int timeout_ms);

/* Persists the cursor when it moved (best effort), closes everything and sets *self_p to
 * NULL; accepts NULL. */
void notify_destroy(notify_t **self_p);

/* Prints the effective configuration (see em_config_dump).  Returns 0, or -1 on a config
 * error (printed to stderr). */
int notify_dump_config(const char *config_path, FILE *out);

/* The highest seq such that every event 1..head has been seen; -1 until the persisted cursor
 * has been read from PostgreSQL. */
int64_t notify_head(const notify_t *self);
/* The endpoint the stream ROUTER is bound to (resolves a "tcp://host:*" wildcard); borrowed. */
const char *notify_stream_endpoint(const notify_t *self);
/* The admin HTTP port (resolves port 0). */
int notify_http_port(notify_t *self);
/* 1 when /readyz would answer 200: PostgreSQL reachable, cursor loaded, SUB connected. */
int notify_ready(const notify_t *self);
/* The number of stream clients currently known. */
int notify_client_count(const notify_t *self);

#endif
