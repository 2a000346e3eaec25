/* archive.h - the single writer: validated events -> PostgreSQL (hash chain, dead letters),
 * then acks and committed events on the bus, then the Redis seen cache. */
#ifndef ARCHIVE_H
#define ARCHIVE_H
#include <stdio.h>

typedef struct archive archive_t;

/* Loads the config (path may be NULL: defaults and environment only), opens the admin HTTP
 * server and the ZeroMQ context.  PostgreSQL need not be up: the connection, the writer lock,
 * the migrations and the bus sockets come later, from archive_run/archive_step.  Returns NULL
 * after logging the reason (bad config, HTTP port taken). */
archive_t *archive_new(const char *config_path);

/* Runs the poll loop until em_signal_interrupted(), then stops reading, commits and acks the
 * batch in hand, and returns 0.  Returns -1 on a fatal error (a migration that fails, the
 * migrations folder missing, zmq_poll failing).  PostgreSQL being away, another archive
 * holding the writer lock or the bus ports being taken are not fatal: it waits and retries
 * with backoff while /healthz answers 200 and /readyz 503 with the reason. */
int archive_run(archive_t *self);

/* One iteration of the loop (for tests): waits at most timeout_ms for input, then connects,
 * reads, flushes and answers HTTP as due.  Returns 0, or -1 on a fatal error. */
int archive_step(archive_t *self, int timeout_ms);

/* Commits and acks the batch in hand now (the shutdown path of archive_run).  Returns 0, or
 * -1 when PostgreSQL could not take it (the messages stay unacknowledged). */
int archive_flush(archive_t *self);

/* Tears down everything archive_new and the loop created; accepts NULL, sets *self_p NULL. */
void archive_destroy(archive_t **self_p);

/* Prints the effective configuration (defaults < file < environment).  Returns 0 or -1. */
int archive_dump_config(const char *config_path, FILE *out);

/* State for tests and /readyz: 1 when this instance is the writer with PostgreSQL up. */
int archive_is_active(const archive_t *self);
/* Port of the admin HTTP server (useful when configured with port 0). */
int archive_http_port(archive_t *self);
/* Last committed seq known to this instance (0 when the archive is empty). */
long long archive_last_seq(const archive_t *self);

#endif
