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

/* The duplicate cache: one key per committed event, value "<seq> <digest hex>", written only
 * after COMMIT (by archive).  The key is em:seen:<L>:<source>:<id> where <L> is the decimal
 * byte length of source, so that no (source, id) pair can produce another pair's key even
 * when source or id contain ':' (e.g. source "a" id "b:c" -> em:seen:1:a:b:c, source "a:b"
 * id "c" -> em:seen:3:a:b:c).  Keys longer than 1 KiB are not cached.
 * get: returns 1 found (fills seq, digest), 0 not found or cache down, -1 never. */
int em_cache_seen_get(em_cache_t *self, const char *source, const char *id, int64_t *seq,
                      char digest[65]);
typedef struct {
    const char *source;
    const char *id;
    int64_t seq;
    const char *digest;
} em_seen_t;
/* Pipelines SET key value EX ttl_s for n committed events (one round trip).  Returns 0, or -1
 * when the cache is down or any SET failed (the caller only logs: the cache is optional). */
int em_cache_seen_put(em_cache_t *self, const em_seen_t *items, size_t n, int ttl_s);

/* Runs any command (for tests and tools); returns 0 or -1.  reply text copied to out. */
int em_cache_command(em_cache_t *self, char *out, size_t outlen, const char *fmt, ...);

#endif
