/* em_cache.c - Redis cache and de-duplication helpers (hiredis).  The wrapper owns the
 * connection: it connects lazily, and after any error frees the context and reconnects on a
 * later call, backing off from 200 ms doubling to 5 s while the server stays unreachable. */
#include "em_cache.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define S_BACKOFF_MIN_MS 200
#define S_BACKOFF_MAX_MS 5000
#define S_KEY_MAX 1024

struct em_cache {
    char *host;           /* server host name or address */
    int port;             /* server port */
    char *password;       /* AUTH password, NULL for none */
    char *user;           /* AUTH user (Redis 6 ACL), NULL for the default user */
    int db;               /* SELECT db */
    int timeout_ms;       /* connect and command timeout */
    redisContext *ctx;    /* current connection, NULL when down */
    int64_t next_try_ms;  /* monotonic time before which no connect is attempted */
    int backoff_ms;       /* delay after the next failed connect attempt */
    char errstr[256];     /* last error */
};

static int64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Drops the context after an error.  A connection that was working may be retried at once
 * (the server may just have restarted); repeated connect failures back off. */
static void s_drop(em_cache_t *self, const char *what, int was_connected)
{
    if (self->ctx) {
        snprintf(self->errstr, sizeof self->errstr, "%s: %s", what,
                 self->ctx->err ? self->ctx->errstr : "error");
        redisFree(self->ctx);
        self->ctx = NULL;
    }
    if (was_connected) {
        self->next_try_ms = s_mono_ms();
        self->backoff_ms = S_BACKOFF_MIN_MS;
    } else {
        self->next_try_ms = s_mono_ms() + self->backoff_ms;
        self->backoff_ms = self->backoff_ms * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS
                                                                   : self->backoff_ms * 2;
    }
}

/* Runs one setup command on a fresh context; returns 0 or -1 (errstr set). */
static int s_setup_cmd(em_cache_t *self, redisReply *reply, const char *what)
{
    if (!reply) {
        return -1;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(self->errstr, sizeof self->errstr, "%s: %s", what, reply->str);
        freeReplyObject(reply);
        return -1;
    }
    freeReplyObject(reply);
    return 0;
}

/* Makes sure there is a context.  Returns 0 when connected, -1 when down (or backing off). */
static int s_connect(em_cache_t *self)
{
    if (self->ctx)
        return 0;
    if (s_mono_ms() < self->next_try_ms)
        return -1;
    struct timeval tv = {self->timeout_ms / 1000, (self->timeout_ms % 1000) * 1000};
    self->ctx = redisConnectWithTimeout(self->host, self->port, tv);
    if (!self->ctx) {
        snprintf(self->errstr, sizeof self->errstr, "connect: out of memory");
        s_drop(self, "connect", 0);
        return -1;
    }
    if (self->ctx->err || redisSetTimeout(self->ctx, tv) != REDIS_OK) {
        s_drop(self, "connect", 0);
        return -1;
    }
    if (self->password) {
        redisReply *r = self->user ? redisCommand(self->ctx, "AUTH %s %s", self->user,
                                                  self->password)
                                   : redisCommand(self->ctx, "AUTH %s", self->password);
        if (s_setup_cmd(self, r, "AUTH") != 0) {
            if (!r)
                s_drop(self, "AUTH", 0);
            else {
                redisFree(self->ctx);
                self->ctx = NULL;
                s_drop(self, "AUTH", 0);
            }
            return -1;
        }
    }
    if (self->db != 0) {
        redisReply *r = redisCommand(self->ctx, "SELECT %d", self->db);
        if (s_setup_cmd(self, r, "SELECT") != 0) {
            if (r) {
                redisFree(self->ctx);
                self->ctx = NULL;
            }
            s_drop(self, "SELECT", 0);
            return -1;
        }
    }
    self->backoff_ms = S_BACKOFF_MIN_MS;
    return 0;
}

/* Parses redis://[[user]:password@]host[:port][/db] into self.  Returns 0 or -1. */
static int s_parse_url(em_cache_t *self, const char *url, char *err, size_t errlen)
{
    const char *p;
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "redis url must start with redis://: %s", url);
        return -1;
    }
    p = url + 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p)
                self->user = strndup(p, (size_t)(colon - p));
            self->password = strndup(colon + 1, (size_t)(at - colon - 1));
        } else {
            self->password = strndup(p, (size_t)(at - p));
        }
        if (self->password && !*self->password) {
            free(self->password);
            self->password = NULL;
        }
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    const char *hostend = slash ? slash : p + strlen(p);
    const char *colon = NULL;
    for (const char *q = p; q < hostend; q++)
        if (*q == ':')
            colon = q;
    self->port = 6379;
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end != hostend || port <= 0 || port > 65535) {
            snprintf(err, errlen, "bad port in redis url: %s", url);
            return -1;
        }
        self->port = (int)port;
        hostend = colon;
    }
    if (hostend == p) {
        snprintf(err, errlen, "no host in redis url: %s", url);
        return -1;
    }
    self->host = strndup(p, (size_t)(hostend - p));
    if (slash && slash[1]) {
        char *end;
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0 || db > 65535) {
            snprintf(err, errlen, "bad db in redis url: %s", url);
            return -1;
        }
        self->db = (int)db;
    }
    if (!self->host) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

em_cache_t *em_cache_new(const char *url, int timeout_ms, char *err, size_t errlen)
{
    em_cache_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
    self->backoff_ms = S_BACKOFF_MIN_MS;
    if (!url || s_parse_url(self, url, err, errlen) != 0) {
        if (!url)
            snprintf(err, errlen, "no redis url");
        em_cache_destroy(&self);
        return NULL;
    }
    snprintf(self->errstr, sizeof self->errstr, "not connected yet");
    return self;
}

void em_cache_destroy(em_cache_t **self_p)
{
    if (self_p && *self_p) {
        em_cache_t *self = *self_p;
        if (self->ctx)
            redisFree(self->ctx);
        free(self->host);
        free(self->user);
        free(self->password);
        free(self);
        *self_p = NULL;
    }
}

const char *em_cache_errstr(const em_cache_t *self)
{
    return self ? self->errstr : "no cache";
}

/* Runs one command; returns the reply (caller frees) or NULL after dropping the connection.
 * An error reply is returned as is (the connection stays usable). */
static redisReply *s_vcommand(em_cache_t *self, const char *fmt, va_list ap)
{
    if (s_connect(self) != 0)
        return NULL;
    redisReply *r = redisvCommand(self->ctx, fmt, ap);
    if (!r) {
        s_drop(self, "command", 1);
        return NULL;
    }
    return r;
}

static redisReply *s_command(em_cache_t *self, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = s_vcommand(self, fmt, ap);
    va_end(ap);
    return r;
}

int em_cache_ping(em_cache_t *self)
{
    if (!self)
        return 0;
    redisReply *r = s_command(self, "PING");
    if (!r)
        return 0;
    int ok = r->type == REDIS_REPLY_STATUS;
    if (!ok)
        snprintf(self->errstr, sizeof self->errstr, "PING: %s", r->str ? r->str : "bad reply");
    freeReplyObject(r);
    return ok;
}

/* Builds the seen key: em:seen:<strlen(source)>:<source>:<id>.  Returns its length or -1. */
static int s_seen_key(char *out, size_t outlen, const char *source, const char *id)
{
    int n = snprintf(out, outlen, "em:seen:%zu:%s:%s", strlen(source), source, id);
    return n < 0 || (size_t)n >= outlen ? -1 : n;
}

int em_cache_seen_get(em_cache_t *self, const char *source, const char *id, int64_t *seq,
                      char digest[65])
{
    char key[S_KEY_MAX];
    if (!self || !source || !id)
        return 0;
    int klen = s_seen_key(key, sizeof key, source, id);
    if (klen < 0)
        return 0;
    redisReply *r = s_command(self, "GET %b", key, (size_t)klen);
    if (!r)
        return 0;
    int found = 0;
    if (r->type == REDIS_REPLY_STRING) {
        long long s;
        char d[65];
        if (sscanf(r->str, "%lld %64[0-9a-f]", &s, d) == 2 && strlen(d) == 64 && s > 0) {
            if (seq)
                *seq = s;
            if (digest)
                memcpy(digest, d, 65);
            found = 1;
        }
    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(self->errstr, sizeof self->errstr, "GET: %s", r->str);
    }
    freeReplyObject(r);
    return found;
}

int em_cache_seen_put(em_cache_t *self, const em_seen_t *items, size_t n, int ttl_s)
{
    char key[S_KEY_MAX];
    char val[96];
    size_t sent = 0;
    int rc = 0;
    if (!self)
        return -1;
    if (n == 0)
        return 0;
    if (s_connect(self) != 0)
        return -1;
    if (ttl_s <= 0)
        ttl_s = 86400;
    for (size_t i = 0; i < n; i++) {
        int klen = s_seen_key(key, sizeof key, items[i].source, items[i].id);
        if (klen < 0 || !items[i].digest) {
            rc = -1; /* too long to cache: skipped, the database still answers */
            continue;
        }
        int vlen = snprintf(val, sizeof val, "%" PRId64 " %s", items[i].seq, items[i].digest);
        if (redisAppendCommand(self->ctx, "SET %b %b EX %d", key, (size_t)klen, val,
                               (size_t)vlen, ttl_s) != REDIS_OK) {
            s_drop(self, "SET", 1);
            return -1;
        }
        sent++;
    }
    for (size_t i = 0; i < sent; i++) {
        redisReply *r = NULL;
        if (redisGetReply(self->ctx, (void **)&r) != REDIS_OK || !r) {
            if (r)
                freeReplyObject(r);
            s_drop(self, "SET", 1);
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(self->errstr, sizeof self->errstr, "SET: %s", r->str);
            rc = -1;
        }
        freeReplyObject(r);
    }
    return rc;
}

/* Appends text to out (bounded, always NUL-terminated). */
static void s_append(char *out, size_t outlen, size_t *pos, const char *s, size_t len)
{
    if (!out || outlen == 0)
        return;
    if (*pos + 1 >= outlen)
        return;
    size_t room = outlen - 1 - *pos;
    if (len > room)
        len = room;
    memcpy(out + *pos, s, len);
    *pos += len;
    out[*pos] = '\0';
}

/* Renders a reply as text: strings as is, integers in decimal, nil as "", arrays one
 * element per line. */
static void s_render(const redisReply *r, char *out, size_t outlen, size_t *pos)
{
    char num[32];
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        s_append(out, outlen, pos, r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        snprintf(num, sizeof num, "%lld", r->integer);
        s_append(out, outlen, pos, num, strlen(num));
        break;
    case REDIS_REPLY_ARRAY:
        for (size_t i = 0; i < r->elements; i++) {
            if (i > 0)
                s_append(out, outlen, pos, "\n", 1);
            s_render(r->element[i], out, outlen, pos);
        }
        break;
    default:
        break;
    }
}

int em_cache_command(em_cache_t *self, char *out, size_t outlen, const char *fmt, ...)
{
    size_t pos = 0;
    if (out && outlen)
        out[0] = '\0';
    if (!self)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = s_vcommand(self, fmt, ap);
    va_end(ap);
    if (!r)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(self->errstr, sizeof self->errstr, "%s", r->str);
        rc = -1;
    }
    s_render(r, out, outlen, &pos);
    freeReplyObject(r);
    return rc;
}
