/* em_cache.h - Redis (hiredis) as a cache only: committed facts, never the source of truth.
 * Owns reconnects: after an error the context is dropped and re-created lazily with backoff;
 * callers see 0/-1 (or "not found") and go on without the cache. */
#ifndef EM_CACHE_H
#define EM_CACHE_H
#include <stddef.h>
#include <stdint.h>

typedef struct em_cache em_cache_t;

/* url: redis://[:password@]host:port[/db].  Never fails for an unreachable server (the
 * connection is made lazily); returns NULL only for a malformed url (err filled). */
em_cache_t *em_cache_new(const char *url, int timeout_ms, char *err, size_t errlen);
void em_cache_destroy(em_cache_t **self_p);
const char *em_cache_errstr(const em_cache_t *self);
/* 1 when connected right now (tries to connect if the backoff allows). */
int em_cache_ping(em_cache_t *self);

/* The duplicate cache: em:seen:<source>:<id> -> "<seq> <digest hex>".
 * get: returns 1 found (fills seq, digest), 0 not found or cache down, -1 never. */
int em_cache_seen_get(em_cache_t *self, const char *source, const char *id, int64_t *seq,
                      char digest[65]);
typedef struct {
    const char *source;
    const char *id;
    int64_t seq;
    const char *digest;
} em_seen_t;
/* Pipelines SET with a TTL for n committed events.  Returns 0 or -1. */
int em_cache_seen_put(em_cache_t *self, const em_seen_t *items, size_t n, int ttl_s);

/* Runs any command (for tests and tools); returns 0 or -1.  reply text copied to out. */
int em_cache_command(em_cache_t *self, char *out, size_t outlen, const char *fmt, ...);

#endif
