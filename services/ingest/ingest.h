/* ingest.h - the ingest service: the producers' front door (ZeroMQ ROUTER and HTTP).
 * It parses and bounds what arrives, answers known duplicates from the cache, forwards the
 * rest to validate, and answers each producer only when archive reports the committed
 * outcome (or at once for what it can decide itself). */
#ifndef INGEST_H
#define INGEST_H
#include <stdio.h>

typedef struct ingest ingest_t;

/* Returns NULL (reason logged) when the config is invalid or a socket cannot be set up. */
ingest_t *ingest_new(const char *config_path);
/* Runs until interrupted; then stops accepting, waits for the outcomes of what is in flight
 * (bounded by ack_timeout_ms) and returns 0; -1 on a fatal error. */
int ingest_run(ingest_t *self);
void ingest_destroy(ingest_t **self_p);
int ingest_dump_config(const char *config_path, FILE *out);

#endif
