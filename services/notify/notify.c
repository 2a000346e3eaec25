/* notify.c - the committed-event stream: one zmq_poll loop over the archive SUB, the stream
 * ROUTER, the SUB's monitor and the admin HTTP fd.
 *
 * `head` is the highest seq such that every event 1..head has been seen.  It starts at the
 * persisted cursor (cursors.name = 'notify') and advances by live events (seq == head+1) or by
 * pages read from PostgreSQL when a gap shows up (a live seq > head+1, or the periodic poll).
 * The last events up to head are kept in a ring bounded by count and bytes; clients that are
 * behind the ring are served from PostgreSQL in pages.  Per client, notify keeps only a cursor
 * and a credit, and never sends more than the credit or past head. */
#include "notify.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "em_bus.h"
#include "em_config.h"
#include "em_http.h"
#include "em_log.h"
#include "em_metrics.h"
#include "em_signal.h"
#include "em_store.h"
#include "em_util.h"
#include "deliver.h"
#include "stream.h"
#include "subs.h"

#define MOD "notify"
#define CURSOR_NAME "notify"
#define CLIENT_ID_MAX 256           /* ZeroMQ routing ids are at most 255 bytes */
#define CLIENT_MSG_MAX 65536        /* ZMQ_MAXMSGSIZE of the stream ROUTER */
#define CREDIT_MAX (INT64_C(1) << 40)
#define DRAIN_MAX 1000              /* messages read from one socket per iteration */
#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 5000
#define BLOCKED_RETRY_MS 10         /* a client whose pipe was full is retried after this */
#define HTTP_MAX_BODY 65536         /* admin HTTP request bodies (subscriptions) */
#define KEY_CACHE_MS 60000          /* a re-subscribe with the same key within this reuses the
                                       organisation read from PostgreSQL */
#define SSE_PAGE 64                 /* catch-up rows held per SSE connection */
#define KEY_RECHECK_MS 60000        /* a subscribed client's key is checked again this often
                                       (a revoked key ends the subscription) */

typedef struct {
    em_shared_cfg_t shared;
    char *http;          /* [notify] http: admin HTTP host:port */
    char *zmq;           /* [notify] zmq: stream ROUTER endpoint (bound) */
    int cursor_flush_ms; /* [notify] cursor_flush_ms */
    int poll_ms;         /* [notify] poll_ms: PostgreSQL poll for a dropped tail */
    int batch;           /* [notify] batch: rows per PostgreSQL page */
    int client_idle_s;   /* [notify] client_idle_s */
    int max_clients;     /* [notify] max_clients */
    int ring;            /* [notify] ring: events kept in memory */
    int ring_kb;         /* [notify] ring_kb: bytes kept in memory, KiB */
    bool webhook_allow_private; /* [notify] webhook_allow_private */
    int webhook_timeout_ms;     /* [notify] webhook_timeout_ms */
    char *webhook_retry_ms;     /* [notify] webhook_retry_ms: comma-separated delays */
    int webhook_max_inflight;   /* [notify] webhook_max_inflight */
    int subs_reload_ms;         /* [notify] subs_reload_ms */
    int webhook_breaker_failures; /* [notify] webhook_breaker_failures */
    int webhook_breaker_open_ms;  /* [notify] webhook_breaker_open_ms */
    char *templates;              /* [notify] templates: folder of <language>.tmpl */
    int sse_max_clients;          /* [notify] sse_max_clients */
    int sse_keepalive_ms;         /* [notify] sse_keepalive_ms */
    char *curve_secret_key;       /* [notify] curve_secret_key: Z85; "" = CURVE off */
    char *curve_secret_key_file;  /* [notify] curve_secret_key_file: or a file holding it */
    char curve_secret[EM_CURVE_KEY_LEN + 1]; /* resolved from the two above; "" = off */
} notify_cfg_t;

static const em_config_entry_t s_config[] = {
    EM_CONFIG_SHARED(notify_cfg_t, shared),
    {EM_CFG_STR, "notify", "http", "127.0.0.1:8004", offsetof(notify_cfg_t, http),
     "admin HTTP (healthz, readyz, metrics) host:port"},
    {EM_CFG_STR, "notify", "zmq", "tcp://127.0.0.1:7004", offsetof(notify_cfg_t, zmq),
     "stream ROUTER endpoint (bound) for eminectl tail and stream clients"},
    {EM_CFG_INT, "notify", "cursor_flush_ms", "1000", offsetof(notify_cfg_t, cursor_flush_ms),
     "persist the cursor at most this often (and on SIGTERM)"},
    {EM_CFG_INT, "notify", "poll_ms", "500", offsetof(notify_cfg_t, poll_ms),
     "look in PostgreSQL for events the PUB dropped this often"},
    {EM_CFG_INT, "notify", "batch", "500", offsetof(notify_cfg_t, batch),
     "rows per PostgreSQL catch-up page"},
    {EM_CFG_INT, "notify", "client_idle_s", "60", offsetof(notify_cfg_t, client_idle_s),
     "a stream client silent this long without credit left is forgotten"},
    {EM_CFG_INT, "notify", "max_clients", "1024", offsetof(notify_cfg_t, max_clients),
     "stream clients served at once"},
    {EM_CFG_INT, "notify", "ring", "4096", offsetof(notify_cfg_t, ring),
     "latest events kept in memory for clients that are slightly behind"},
    {EM_CFG_INT, "notify", "ring_kb", "32768", offsetof(notify_cfg_t, ring_kb),
     "upper bound of the memory the ring may use, KiB"},
    {EM_CFG_BOOL, "notify", "webhook_allow_private", "false",
     offsetof(notify_cfg_t, webhook_allow_private),
     "deliver webhooks to sinks on loopback, private or link-local addresses"},
    {EM_CFG_INT, "notify", "webhook_timeout_ms", "10000",
     offsetof(notify_cfg_t, webhook_timeout_ms), "a webhook request taking longer fails"},
    {EM_CFG_STR, "notify", "webhook_retry_ms", "5000,30000,120000,600000,1800000,7200000",
     offsetof(notify_cfg_t, webhook_retry_ms),
     "delays before each retry (ms, +-20 % jitter); then the delivery is dead-lettered"},
    {EM_CFG_INT, "notify", "webhook_max_inflight", "64",
     offsetof(notify_cfg_t, webhook_max_inflight), "webhook requests in flight at once"},
    {EM_CFG_INT, "notify", "subs_reload_ms", "1000", offsetof(notify_cfg_t, subs_reload_ms),
     "re-read the subscriptions this often"},
    {EM_CFG_INT, "notify", "webhook_breaker_failures", "5",
     offsetof(notify_cfg_t, webhook_breaker_failures),
     "consecutive failures that open an endpoint's circuit breaker (0 disables it)"},
    {EM_CFG_INT, "notify", "webhook_breaker_open_ms", "30000",
     offsetof(notify_cfg_t, webhook_breaker_open_ms),
     "how long an open circuit sends nothing before one probe"},
    {EM_CFG_INT, "notify", "sse_max_clients", "64", offsetof(notify_cfg_t, sse_max_clients),
     "GET /v1/stream (SSE) connections served at once; more are answered 503"},
    {EM_CFG_INT, "notify", "sse_keepalive_ms", "15000", offsetof(notify_cfg_t, sse_keepalive_ms),
     "an SSE connection with nothing to send gets a `: ping` comment this often"},
    {EM_CFG_STR, "notify", "templates", "config/templates", offsetof(notify_cfg_t, templates),
     "folder of the summary templates (<language>.tmpl), reloaded on SIGHUP"},
    {EM_CFG_STR, "notify", "curve_secret_key", "", offsetof(notify_cfg_t, curve_secret_key),
     "Z85 CurveZMQ secret key (eminectl keygen): the stream ROUTER becomes a CURVE server "
     "(encrypted; any client key; the API key in subscribe still authenticates); empty: off"},
    {EM_CFG_STR, "notify", "curve_secret_key_file", "",
     offsetof(notify_cfg_t, curve_secret_key_file),
     "a file whose first line is the CURVE secret key (instead of curve_secret_key)"},
    {0},
};

/* One event as it is sent to clients: `{"seq":N,"event":<envelope>}`. */
typedef struct {
    int64_t seq;
    char *frame; /* owned */
    size_t len;
} ring_entry_t;

/* One GET /v1/stream (Server-Sent Events) connection.  Its memory is bounded: the text of
 * one event being written (out) and at most one page of catch-up rows (page); the next event
 * is produced only when MHD asks for more bytes, i.e. as the socket drains. */
typedef struct sse {
    struct notify *owner;
    em_http_req_t *req;    /* valid until s_sse_done */
    notify_view_t *view;   /* owned */
    int64_t cursor;        /* last seq sent or skipped */
    char *out;             /* text being sent (owned), out_len bytes, out_off already sent */
    size_t out_len, out_off;
    PGresult *page;        /* catch-up rows after cursor (seq, envelope) */
    int page_i;
    int64_t next_ping;     /* monotonic ms */
    bool parked;           /* fill returned 0: waiting for em_http_stream_wake */
    struct sse *prev, *next;
} sse_t;

typedef struct {
    uint8_t id[CLIENT_ID_MAX]; /* routing id */
    size_t idlen;
    int64_t cursor;        /* last seq sent */
    int64_t credit;        /* events that may still be sent */
    int64_t last_seen_ms;  /* last valid message (monotonic) */
    int64_t blocked_until; /* pipe was full: retry after this (monotonic ms) */
    notify_view_t *view;   /* organisation and narrowing options (owned) */
} client_t;

struct notify {
    notify_cfg_t cfg;
    bool cfg_loaded;
    void *zctx;
    void *sub;    /* archive PUB -> us */
    void *router; /* stream clients */
    void *mon;    /* PAIR receiving the SUB's monitor events */
    char endpoint[256];
    em_http_t *http;
    notify_subs_t *subs;   /* /v1/subscriptions (subs.c) */
    notify_deliver_t *deliver; /* webhooks (deliver.c) */
    em_metrics_t *metrics;
    em_metric_t *m_seen, *m_head, *m_clients, *m_sent, *m_catchup, *m_blocked;

    em_store_t *store;
    bool pg_up;            /* the last PostgreSQL operation succeeded */
    char pg_err[EM_ERR_LEN]; /* why the last connection attempt failed */
    int64_t pg_retry_at;   /* no PostgreSQL operation before this (monotonic ms) */
    int pg_backoff_ms;
    bool sub_connected;

    int64_t head;          /* -1 until the cursor is loaded */
    int64_t known_max;     /* highest seq known to exist (live or PostgreSQL) */
    int64_t persisted;     /* the cursor value last written */
    int64_t next_flush;    /* monotonic ms */
    int64_t next_poll;     /* monotonic ms */
    int64_t next_reap;     /* monotonic ms */

    ring_entry_t *ring;    /* circular, capacity cfg.ring */
    size_t ring_first, ring_count, ring_bytes;
    int64_t ring_base;     /* the ring holds every event in (ring_base, head] */

    client_t *clients;
    int nclients;

    sse_t *sse;            /* SSE connections */
    int nsse;
    em_metric_t *m_sse, *m_sse_sent;
};

/* ---------------------------------------------------------------------------------------- */
/* Frames */

/* Builds `{"seq":N,"event":<envelope>}` from the envelope's JSON text with white space outside
 * strings removed (one line; numbers and strings are kept byte for byte).  Returns a malloc'd
 * buffer (caller frees) or NULL when the text is not a JSON object. */
static char *s_frame_new(int64_t seq, const char *env, size_t len, size_t *out_len)
{
    char prefix[64];
    int plen = snprintf(prefix, sizeof prefix, "{\"seq\":%" PRId64 ",\"event\":", seq);
    char *buf = malloc((size_t)plen + len + 2);
    if (!buf)
        return NULL;
    memcpy(buf, prefix, (size_t)plen);
    size_t o = (size_t)plen;
    bool in_str = false, esc = false;
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        char c = env[i];
        if (c == '\0')
            goto bad;
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
            buf[o++] = c;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            continue;
        if (o == (size_t)plen && c != '{')
            goto bad;
        if (o > (size_t)plen && depth == 0)
            goto bad; /* text after the object */
        if (c == '"')
            in_str = true;
        else if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']') {
            if (--depth < 0)
                goto bad;
        }
        buf[o++] = c;
    }
    if (in_str || depth != 0 || o == (size_t)plen)
        goto bad;
    buf[o++] = '}';
    buf[o] = '\0';
    *out_len = o;
    return buf;
bad:
    free(buf);
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* The ring of the latest events */

static void s_ring_evict(notify_t *self)
{
    ring_entry_t *e = &self->ring[self->ring_first];
    self->ring_base = e->seq;
    self->ring_bytes -= e->len;
    free(e->frame);
    e->frame = NULL;
    self->ring_first = (self->ring_first + 1) % (size_t)self->cfg.ring;
    self->ring_count--;
}

/* Takes ownership of frame. */
static void s_ring_push(notify_t *self, int64_t seq, char *frame, size_t len)
{
    size_t cap = (size_t)self->cfg.ring;
    size_t max_bytes = (size_t)self->cfg.ring_kb * 1024;
    while (self->ring_count > 0 &&
           (self->ring_count == cap || self->ring_bytes + len > max_bytes))
        s_ring_evict(self);
    if (len > max_bytes) { /* larger than the whole ring: clients read it from PostgreSQL */
        free(frame);
        self->ring_base = seq;
        return;
    }
    ring_entry_t *e = &self->ring[(self->ring_first + self->ring_count) % cap];
    e->seq = seq;
    e->frame = frame;
    e->len = len;
    self->ring_count++;
    self->ring_bytes += len;
}

static ring_entry_t *s_ring_at(notify_t *self, size_t i)
{
    return &self->ring[(self->ring_first + i) % (size_t)self->cfg.ring];
}

/* Index of the first entry with seq > after (ring_count when none). */
static size_t s_ring_find(notify_t *self, int64_t after)
{
    size_t lo = 0, hi = self->ring_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s_ring_at(self, mid)->seq <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void s_ring_clear(notify_t *self)
{
    while (self->ring_count > 0)
        s_ring_evict(self);
}

/* ---------------------------------------------------------------------------------------- */
/* PostgreSQL */

static void s_pg_failed(notify_t *self, const char *what)
{
    if (self->pg_up || self->pg_backoff_ms == 0 || self->pg_backoff_ms >= PG_BACKOFF_MAX_MS)
        EM_LOG_WARN(MOD, "%s failed, retrying in %d ms: %s", what,
                    self->pg_backoff_ms ? self->pg_backoff_ms : PG_BACKOFF_MIN_MS,
                    self->store ? em_store_errstr(self->store) : self->pg_err);
    self->pg_up = false;
    if (self->pg_backoff_ms == 0)
        self->pg_backoff_ms = PG_BACKOFF_MIN_MS;
    self->pg_retry_at = em_mono_ms() + self->pg_backoff_ms;
    self->pg_backoff_ms *= 2;
    if (self->pg_backoff_ms > PG_BACKOFF_MAX_MS)
        self->pg_backoff_ms = PG_BACKOFF_MAX_MS;
}

static void s_pg_ok(notify_t *self)
{
    if (!self->pg_up)
        EM_LOG_INFO(MOD, "PostgreSQL reachable");
    self->pg_up = true;
    self->pg_backoff_ms = 0;
    self->pg_retry_at = 0;
}

/* Returns true when a PostgreSQL operation may be tried now (connecting if needed). */
static bool s_pg_usable(notify_t *self)
{
    if (self->pg_up && self->store && em_store_connected(self->store))
        return true;
    if (em_mono_ms() < self->pg_retry_at)
        return false;
    if (!self->store) {
        self->store = em_store_new(self->cfg.shared.pg_dsn, self->pg_err, sizeof self->pg_err);
        if (!self->store) {
            s_pg_failed(self, "connecting to PostgreSQL");
            return false;
        }
    } else if (!em_store_ensure(self->store)) {
        s_pg_failed(self, "reconnect");
        return false;
    }
    return true; /* pg_up is set by the first successful statement */
}

/* Reads the persisted cursor.  Returns 0 (head set) or -1 (retry later). */
static int s_load_cursor(notify_t *self)
{
    if (!s_pg_usable(self))
        return -1;
    const char *params[1] = {CURSOR_NAME};
    PGresult *res =
        em_store_query(self->store, "SELECT seq FROM cursors WHERE name = $1", 1, params);
    if (!res) {
        s_pg_failed(self, "reading the cursor (does table cursors exist yet?)");
        return -1;
    }
    int64_t seq = 0;
    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    s_pg_ok(self);
    self->head = seq < 0 ? 0 : seq;
    self->persisted = self->head;
    self->ring_base = self->head;
    if (self->known_max < self->head)
        self->known_max = self->head;
    em_metric_set(self->m_head, (double)self->head);
    EM_LOG_INFO(MOD, "resuming after seq %" PRId64, self->head);
    return 0;
}

/* Writes head as the persisted cursor.  Returns 0 or -1. */
static int s_flush_cursor(notify_t *self)
{
    if (self->head < 0 || self->head == self->persisted)
        return 0;
    if (!s_pg_usable(self))
        return -1;
    char seq[32];
    snprintf(seq, sizeof seq, "%" PRId64, self->head);
    const char *params[2] = {CURSOR_NAME, seq};
    PGresult *res = em_store_query(self->store,
                                   "INSERT INTO cursors (name, seq) VALUES ($1, $2) "
                                   "ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq, updated_at = now()",
                                   2, params);
    if (!res) {
        s_pg_failed(self, "persisting the cursor");
        return -1;
    }
    PQclear(res);
    s_pg_ok(self);
    self->persisted = self->head;
    return 0;
}

/* Reads events with after < seq <= upto, at most limit, in seq order.  Returns a PGresult
 * (caller PQclears; column 0 seq, column 1 envelope text) or NULL (PostgreSQL unusable). */
static PGresult *s_fetch_page(notify_t *self, int64_t after, int64_t upto, int64_t limit)
{
    if (!s_pg_usable(self))
        return NULL;
    char a[32], u[32], l[32];
    snprintf(a, sizeof a, "%" PRId64, after);
    snprintf(u, sizeof u, "%" PRId64, upto);
    snprintf(l, sizeof l, "%" PRId64, limit);
    const char *params[3] = {a, u, l};
    em_metric_add(self->m_catchup, 1);
    PGresult *res = em_store_query(self->store,
                                   "SELECT seq, envelope::text FROM events "
                                   "WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
                                   3, params);
    if (!res) {
        s_pg_failed(self, "reading events");
        return NULL;
    }
    s_pg_ok(self);
    return res;
}

/* ---------------------------------------------------------------------------------------- */
/* head */

/* Records the next event (seq > head) and takes ownership of frame. */
static void s_advance(notify_t *self, int64_t seq, char *frame, size_t len)
{
    self->head = seq;
    if (self->known_max < seq)
        self->known_max = seq;
    s_ring_push(self, seq, frame, len);
    em_metric_add(self->m_seen, 1);
    em_metric_set(self->m_head, (double)seq);
}

/* Reads one page after head from PostgreSQL and advances through it.  Returns the number of
 * rows read, or -1 when PostgreSQL is unusable. */
static int s_catchup_page(notify_t *self)
{
    PGresult *res = s_fetch_page(self, self->head, INT64_MAX, self->cfg.batch);
    if (!res)
        return -1;
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        int64_t seq = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        if (seq <= self->head)
            continue;
        size_t flen;
        char *frame = s_frame_new(seq, PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1),
                                  &flen);
        if (!frame) {
            EM_LOG_ERROR(MOD, "event %" PRId64 " in PostgreSQL is not a JSON object", seq);
            PQclear(res);
            self->known_max = self->head; /* retried at the next poll */
            return n;
        }
        if (seq != self->head + 1)
            EM_LOG_WARN(MOD, "no event between seq %" PRId64 " and %" PRId64, self->head, seq);
        s_advance(self, seq, frame, flen);
    }
    PQclear(res);
    if (n < self->cfg.batch && self->known_max > self->head)
        self->known_max = self->head; /* PostgreSQL has nothing more (yet) */
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* Clients */

static client_t *s_client_find(notify_t *self, const void *id, size_t idlen)
{
    for (int i = 0; i < self->nclients; i++)
        if (self->clients[i].idlen == idlen && memcmp(self->clients[i].id, id, idlen) == 0)
            return &self->clients[i];
    return NULL;
}

static void s_client_remove(notify_t *self, client_t *c)
{
    int i = (int)(c - self->clients);
    notify_view_destroy(&c->view);
    self->clients[i] = self->clients[self->nclients - 1];
    self->nclients--;
    em_metric_set(self->m_clients, self->nclients);
}

/* Sends one frame to the peer with the given routing id without blocking.  Returns 0, or -1
 * with errno EAGAIN (pipe full) or EHOSTUNREACH (the peer is gone). */
static int s_send_to(notify_t *self, const void *id, size_t idlen, const void *data, size_t len)
{
    if (zmq_send(self->router, id, idlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    if (zmq_send(self->router, data, len, ZMQ_DONTWAIT) < 0)
        return -1;
    return 0;
}

/* Sends {"error":msg} (plus "retry_ms" when retry_ms >= 0). */
static void s_send_error_retry(notify_t *self, const void *id, size_t idlen, const char *msg,
                               int64_t retry_ms)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    if (o && retry_ms >= 0)
        json_object_set_new(o, "retry_ms", json_integer(retry_ms));
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text)
        (void)s_send_to(self, id, idlen, text, strlen(text));
    free(text);
    json_decref(o);
}

static void s_send_error(notify_t *self, const void *id, size_t idlen, const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text)
        (void)s_send_to(self, id, idlen, text, strlen(text));
    free(text);
    json_decref(o);
}

/* Sends one event frame to c.  Returns 0 (sent), 1 (stop for now: pipe full) or -1 (the client
 * is gone and must be removed). */
static int s_client_send(notify_t *self, client_t *c, int64_t seq, const char *frame,
                         size_t len)
{
    if (s_send_to(self, c->id, c->idlen, frame, len) < 0) {
        if (errno == EAGAIN) {
            em_metric_add(self->m_blocked, 1);
            c->blocked_until = em_mono_ms() + BLOCKED_RETRY_MS;
            return 1;
        }
        return -1;
    }
    c->cursor = seq;
    c->credit--;
    em_metric_add(self->m_sent, 1);
    return 0;
}

/* Sends c at most one page of the events it may receive.  Events its view does not match
 * (another organisation's, or filtered out) advance its cursor without using credit; at most
 * one page of events is looked at per call.  Returns -1 when the client is gone, else 0. */
static int s_client_serve(notify_t *self, client_t *c, int64_t now)
{
    if (c->credit <= 0 || c->cursor >= self->head || now < c->blocked_until)
        return 0;
    int64_t scan = self->cfg.batch;
    if (c->cursor >= self->ring_base) {
        for (size_t i = s_ring_find(self, c->cursor);
             i < self->ring_count && scan > 0 && c->credit > 0; i++, scan--) {
            ring_entry_t *e = s_ring_at(self, i);
            if (!notify_view_matches_frame(c->view, e->frame, e->len)) {
                c->cursor = e->seq; /* not for this client: skipped, no credit used */
                continue;
            }
            int rc = s_client_send(self, c, e->seq, e->frame, e->len);
            if (rc != 0)
                return rc < 0 ? -1 : 0;
        }
        return 0;
    }
    PGresult *res = s_fetch_page(self, c->cursor, self->head, scan);
    if (!res)
        return 0;
    int rc = 0, n = PQntuples(res), i;
    for (i = 0; i < n && rc == 0 && c->credit > 0; i++) {
        int64_t seq = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        size_t flen;
        char *frame = s_frame_new(seq, PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1),
                                  &flen);
        if (!frame) {
            EM_LOG_ERROR(MOD, "event %" PRId64 " in PostgreSQL is not a JSON object", seq);
            c->blocked_until = now + self->cfg.poll_ms;
            rc = 1;
            break;
        }
        if (notify_view_matches_frame(c->view, frame, flen))
            rc = s_client_send(self, c, seq, frame, flen);
        else
            c->cursor = seq;
        free(frame);
    }
    PQclear(res);
    if (rc == 0 && i == n && n < scan)
        c->cursor = self->head; /* PostgreSQL holds nothing else up to head */
    return rc < 0 ? -1 : 0;
}

/* The earliest time (monotonic ms) at which some client can be sent something: <= now when
 * one can be served right away, INT64_MAX when none is waiting for events notify has. */
static int64_t s_clients_due(notify_t *self, int64_t now)
{
    bool pg_ok = self->pg_up || now >= self->pg_retry_at;
    int64_t due = INT64_MAX;
    for (int i = 0; i < self->nclients; i++) {
        client_t *c = &self->clients[i];
        if (c->credit <= 0 || c->cursor >= self->head)
            continue;
        int64_t at = c->blocked_until;
        if (c->cursor < self->ring_base && !pg_ok && at < self->pg_retry_at)
            at = self->pg_retry_at;
        if (at < due)
            due = at;
        if (due <= now)
            break;
    }
    return due;
}

static void s_serve_clients(notify_t *self)
{
    int64_t now = em_mono_ms();
    for (int i = 0; i < self->nclients;) {
        client_t *c = &self->clients[i];
        if (s_client_serve(self, c, now) < 0) {
            EM_LOG_INFO(MOD, "stream client gone");
            s_client_remove(self, c);
            continue;
        }
        i++;
    }
}

/* Forgets clients silent for client_idle_s without credit left.  Also checks again the key
 * of at most one client whose key was last checked KEY_RECHECK_MS ago: a revoked key (or a
 * deleted organisation) is answered "unauthorized" and the client forgotten. */
static void s_reap_clients(notify_t *self, int64_t now)
{
    int64_t idle_ms = (int64_t)self->cfg.client_idle_s * 1000;
    bool rechecked = false;
    for (int i = 0; i < self->nclients;) {
        client_t *c = &self->clients[i];
        if (c->credit <= 0 && now - c->last_seen_ms >= idle_ms) {
            EM_LOG_INFO(MOD, "forgetting an idle stream client");
            s_client_remove(self, c);
            continue;
        }
        if (!rechecked && now - notify_view_auth_ms(c->view) >= KEY_RECHECK_MS &&
            s_pg_usable(self)) {
            rechecked = true;
            char key[65];
            snprintf(key, sizeof key, "%s", notify_view_key(c->view));
            int rc = notify_view_auth(c->view, self->store, key);
            if (rc < 0) {
                s_pg_failed(self, "checking a stream client's key");
            } else if (rc == 0) {
                EM_LOG_INFO(MOD, "stream client of organisation %s: key revoked",
                            notify_view_org_id(c->view));
                s_send_error(self, c->id, c->idlen, "unauthorized");
                s_client_remove(self, c);
                continue;
            } else {
                s_pg_ok(self);
            }
        }
        i++;
    }
}

/* Reads an optional non-negative integer member.  Returns 0 (absent: *out untouched), 1 (set)
 * or -1 (wrong type). */
static int s_get_count(json_t *obj, const char *key, int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = json_integer_value(v);
    return 1;
}

/* Authenticates a subscribe message's key into view.  c is the client's current state (NULL
 * when new): the same key within KEY_CACHE_MS reuses its organisation.  Returns 0, or -1 with
 * *error set ("unauthorized", "unavailable": *retry_ms set). */
static int s_client_auth(notify_t *self, client_t *c, notify_view_t *view, json_t *key,
                         const char **error, int64_t *retry_ms)
{
    const char *k = json_string_value(key);
    char hash[65];
    if (!k || !*k || notify_subs_key_hash(k, hash) != 0) {
        *error = "unauthorized";
        return -1;
    }
    if (c && c->view && strcmp(notify_view_key(c->view), hash) == 0 &&
        em_mono_ms() - notify_view_auth_ms(c->view) < KEY_CACHE_MS &&
        notify_view_copy_org(view, c->view) == 0)
        return 0;
    if (!s_pg_usable(self)) {
        *error = "unavailable";
        *retry_ms = self->pg_retry_at > em_mono_ms() ? self->pg_retry_at - em_mono_ms()
                                                     : PG_BACKOFF_MIN_MS;
        return -1;
    }
    int rc = notify_view_auth(view, self->store, hash);
    if (rc < 0) {
        s_pg_failed(self, "looking up a stream client's key");
        *error = "unavailable";
        *retry_ms = self->pg_backoff_ms ? self->pg_backoff_ms : PG_BACKOFF_MIN_MS;
        return -1;
    }
    s_pg_ok(self);
    if (rc == 0) {
        *error = "unauthorized";
        return -1;
    }
    return 0;
}

static void s_handle_client_msg(notify_t *self, const void *id, size_t idlen, const char *buf,
                                size_t len)
{
    static const char *const sub_own[] = {"after", "key", NULL};
    if (idlen == 0 || idlen > CLIENT_ID_MAX)
        return; /* not a ROUTER routing id */
    json_error_t jerr;
    json_t *msg = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *error = NULL;
    char errbuf[EM_ERR_LEN];
    int64_t after = 0, credit = 0, retry_ms = -1;
    int has_after = 0, has_credit = 0;
    json_t *sub = NULL;
    notify_view_t *view = NULL;
    client_t *c = NULL;

    if (!msg) {
        error = "not JSON";
        goto reply;
    }
    if (!json_is_object(msg)) {
        error = "expected a JSON object";
        goto reply;
    }
    const char *key;
    json_t *val;
    json_object_foreach(msg, key, val)
    {
        if (strcmp(key, "subscribe") != 0 && strcmp(key, "credit") != 0) {
            error = "unknown member (expected subscribe and/or credit)";
            goto reply;
        }
    }
    sub = json_object_get(msg, "subscribe");
    if (sub) {
        if (!json_is_object(sub)) {
            error = "subscribe must be an object";
            goto reply;
        }
        view = notify_view_new(sub, sub_own, "subscribe.", errbuf, sizeof errbuf);
        if (!view) {
            error = errbuf;
            goto reply;
        }
        has_after = s_get_count(sub, "after", &after);
        if (has_after < 0) {
            error = "subscribe.after must be a non-negative integer";
            goto reply;
        }
        json_t *k = json_object_get(sub, "key");
        if (k && !json_is_string(k)) {
            error = "subscribe.key must be a string (an organisation API key)";
            goto reply;
        }
    }
    has_credit = s_get_count(msg, "credit", &credit);
    if (has_credit < 0) {
        error = "credit must be a non-negative integer";
        goto reply;
    }
    if (!sub && !has_credit) {
        error = "expected subscribe or credit";
        goto reply;
    }
    if (credit > CREDIT_MAX)
        credit = CREDIT_MAX;

    int64_t now = em_mono_ms();
    c = s_client_find(self, id, idlen);
    if (!sub && !c) {
        error = "not subscribed";
        goto reply;
    }
    if (sub && s_client_auth(self, c, view, json_object_get(sub, "key"), &error, &retry_ms) != 0) {
        if (c && strcmp(error, "unauthorized") == 0) {
            s_client_remove(self, c); /* nothing more for a client that lost its key */
            c = NULL;
        }
        goto reply;
    }
    if (sub && !c) {
        if (self->nclients >= self->cfg.max_clients) {
            s_reap_clients(self, now);
            if (self->nclients >= self->cfg.max_clients) {
                error = "too many clients";
                goto reply;
            }
        }
        c = &self->clients[self->nclients++];
        memset(c, 0, sizeof *c);
        memcpy(c->id, id, idlen);
        c->idlen = idlen;
        em_metric_set(self->m_clients, self->nclients);
    }
    if (sub) {
        notify_view_destroy(&c->view);
        c->view = view;
        view = NULL;
        c->cursor = after;
        c->credit = credit;
        c->blocked_until = 0;
        EM_LOG_INFO(MOD, "stream client of organisation %s subscribed after seq %" PRId64,
                    notify_view_org_id(c->view), after);
    } else {
        c->credit += credit;
        if (c->credit > CREDIT_MAX)
            c->credit = CREDIT_MAX;
    }
    c->last_seen_ms = now;
reply:
    if (error) {
        EM_LOG_DEBUG(MOD, "bad stream client message: %s", error);
        s_send_error_retry(self, id, idlen, error, retry_ms);
    }
    notify_view_destroy(&view);
    json_decref(msg);
}

static void s_handle_router(notify_t *self)
{
    for (int n = 0; n < DRAIN_MAX; n++) {
        em_msg_t msg;
        if (em_msg_recv(self->router, &msg, ZMQ_DONTWAIT) < 0) {
            if (errno != EMSGSIZE)
                return; /* nothing more */
            EM_LOG_WARN(MOD, "stream message of too many frames dropped");
            continue;
        }
        size_t idlen, plen;
        const void *id = em_msg_data(&msg, 0, &idlen);
        if (msg.nframes >= 2 && msg.nframes <= 3) {
            /* DEALER: [id, payload]; REQ-style: [id, "", payload] */
            const void *payload = em_msg_data(&msg, msg.nframes - 1, &plen);
            s_handle_client_msg(self, id, idlen, payload, plen);
        } else {
            s_send_error(self, id, idlen, "expected one frame");
        }
        em_msg_close(&msg);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Live events and the SUB monitor */

static void s_handle_live(notify_t *self, const char *seqbuf, size_t seqlen, const char *env,
                          size_t envlen)
{
    json_error_t jerr;
    json_t *o = json_loadb(seqbuf, seqlen, 0, &jerr);
    json_t *s = o ? json_object_get(o, "seq") : NULL;
    int64_t seq = json_is_integer(s) ? json_integer_value(s) : -1;
    json_decref(o);
    if (seq <= 0) {
        EM_LOG_WARN(MOD, "live event without a valid seq ignored");
        return;
    }
    if (self->known_max < seq)
        self->known_max = seq;
    if (self->head < 0 || seq != self->head + 1)
        return; /* not loaded yet, already seen, or a gap: PostgreSQL fills it */
    size_t flen;
    char *frame = s_frame_new(seq, env, envlen, &flen);
    if (!frame) {
        EM_LOG_WARN(MOD, "live event %" PRId64 " is not a JSON object; reading it from "
                         "PostgreSQL", seq);
        return;
    }
    s_advance(self, seq, frame, flen);
}

static void s_handle_sub(notify_t *self)
{
    for (int n = 0; n < DRAIN_MAX; n++) {
        em_msg_t msg;
        int nf = em_msg_recv(self->sub, &msg, ZMQ_DONTWAIT);
        if (nf < 0 && errno != EMSGSIZE)
            return;
        size_t tlen = 0, slen, elen;
        const void *topic = nf == 3 ? em_msg_data(&msg, 0, &tlen) : NULL;
        if (topic && tlen == 2 && memcmp(topic, "ev", 2) == 0) {
            const char *seqbuf = em_msg_data(&msg, 1, &slen);
            const char *env = em_msg_data(&msg, 2, &elen);
            s_handle_live(self, seqbuf, slen, env, elen);
        } else {
            EM_LOG_WARN(MOD, "malformed message on the events bus ignored");
        }
        if (nf >= 0)
            em_msg_close(&msg);
    }
}

static void s_handle_monitor(notify_t *self)
{
    for (int event; (event = em_bus_monitor_read(self->mon)) >= 0;) {
        if (event == ZMQ_EVENT_CONNECTED) {
            self->sub_connected = true;
            EM_LOG_INFO(MOD, "connected to the events bus %s", self->cfg.shared.bus_events);
        } else if (event == ZMQ_EVENT_DISCONNECTED) {
            self->sub_connected = false;
            EM_LOG_WARN(MOD, "disconnected from the events bus %s", self->cfg.shared.bus_events);
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Server-Sent Events: GET /v1/stream */

/* Sets x->out to the SSE text of a frame when x's view matches it.  Returns 1 (set), 0 (not
 * for x) or -1 (out of memory). */
static int s_sse_format(sse_t *x, int64_t seq, const char *frame, size_t flen)
{
    json_t *o = json_loadb(frame, flen, 0, NULL);
    json_t *ev = json_object_get(o, "event");
    static const char marker[] = ",\"event\":";
    const char *data = memmem(frame, flen, marker, sizeof marker - 1);
    if (!json_is_object(ev) || !data || !notify_view_matches(x->view, ev)) {
        json_decref(o);
        return 0;
    }
    data += sizeof marker - 1;
    int dlen = (int)(frame + flen - 1 - data); /* up to the frame's closing brace */
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (!type || strpbrk(type, "\r\n"))
        type = "message"; /* never let a value break the SSE framing */
    char *text = NULL;
    int n = asprintf(&text, "id: %" PRId64 "\nevent: %s\ndata: %.*s\n\n", seq, type, dlen, data);
    json_decref(o);
    if (n < 0)
        return -1;
    x->out = text;
    x->out_len = (size_t)n;
    x->out_off = 0;
    return 1;
}

/* Produces x's next text: the next event after its cursor that it may see (looking at most
 * one page of events), else a keepalive comment when one is due.  Leaves x->out NULL when
 * there is nothing.  Returns 0, or -1 when out of memory. */
static int s_sse_next(notify_t *self, sse_t *x)
{
    int64_t now = em_mono_ms();
    for (int scan = self->cfg.batch; scan > 0 && self->head >= 0 && x->cursor < self->head;
         scan--) {
        int64_t seq;
        const char *frame;
        size_t flen;
        char *owned = NULL;
        if (x->page && x->page_i < PQntuples(x->page)) {
            seq = strtoll(PQgetvalue(x->page, x->page_i, 0), NULL, 10);
            owned = s_frame_new(seq, PQgetvalue(x->page, x->page_i, 1),
                                (size_t)PQgetlength(x->page, x->page_i, 1), &flen);
            x->page_i++;
            if (!owned) {
                EM_LOG_ERROR(MOD, "event %" PRId64 " in PostgreSQL is not a JSON object", seq);
                x->cursor = seq;
                continue;
            }
            frame = owned;
        } else if (x->cursor >= self->ring_base) {
            if (x->page) {
                PQclear(x->page);
                x->page = NULL;
            }
            size_t i = s_ring_find(self, x->cursor);
            if (i >= self->ring_count)
                break;
            ring_entry_t *e = s_ring_at(self, i);
            seq = e->seq;
            frame = e->frame;
            flen = e->len;
        } else {
            if (x->page)
                PQclear(x->page);
            x->page = s_fetch_page(self, x->cursor, self->head, SSE_PAGE);
            x->page_i = 0;
            if (!x->page)
                break; /* PostgreSQL unusable: tried again at the next wake */
            if (PQntuples(x->page) == 0) {
                PQclear(x->page);
                x->page = NULL;
                x->cursor = self->head; /* PostgreSQL holds nothing else up to head */
            }
            continue;
        }
        int rc = s_sse_format(x, seq, frame, flen);
        free(owned);
        x->cursor = seq;
        if (rc != 0) {
            if (rc > 0) {
                x->next_ping = now + self->cfg.sse_keepalive_ms;
                em_metric_add(self->m_sse_sent, 1);
            }
            return rc < 0 ? -1 : 0;
        }
    }
    if (now >= x->next_ping) {
        x->out = strdup(": ping\n\n");
        if (!x->out)
            return -1;
        x->out_len = strlen(x->out);
        x->out_off = 0;
        x->next_ping = now + self->cfg.sse_keepalive_ms;
    }
    return 0;
}

/* em_http_fill_fn: called by MHD when the socket can take more. */
static long s_sse_fill(void *arg, char *buf, size_t max)
{
    sse_t *x = arg;
    if (!x->view)
        return -1; /* ended (key revoked) */
    if (x->out_off >= x->out_len) {
        free(x->out);
        x->out = NULL;
        x->out_len = x->out_off = 0;
        if (s_sse_next(x->owner, x) != 0)
            return -1;
    }
    if (x->out_off < x->out_len) {
        size_t n = x->out_len - x->out_off;
        if (n > max)
            n = max;
        memcpy(buf, x->out + x->out_off, n);
        x->out_off += n;
        return (long)n;
    }
    x->parked = true;
    return 0;
}

/* em_http_done_fn: the connection is over. */
static void s_sse_done(void *arg)
{
    sse_t *x = arg;
    notify_t *self = x->owner;
    if (x->prev)
        x->prev->next = x->next;
    else
        self->sse = x->next;
    if (x->next)
        x->next->prev = x->prev;
    self->nsse--;
    em_metric_set(self->m_sse, self->nsse);
    EM_LOG_INFO(MOD, "SSE client of organisation %s gone after seq %" PRId64,
                x->view ? notify_view_org_id(x->view) : "?", x->cursor);
    free(x->out);
    if (x->page)
        PQclear(x->page);
    notify_view_destroy(&x->view);
    free(x);
}

/* Wakes the parked SSE connections that have something to send (events past their cursor, a
 * keepalive due); checks again the key of at most one connection authenticated
 * KEY_RECHECK_MS ago (a revoked key ends the connection). */
static void s_sse_wake(notify_t *self, int64_t now)
{
    bool pg_ok = self->pg_up || now >= self->pg_retry_at;
    bool rechecked = false;
    for (sse_t *x = self->sse; x; x = x->next) {
        if (x->view && !rechecked && now - notify_view_auth_ms(x->view) >= KEY_RECHECK_MS &&
            s_pg_usable(self)) {
            rechecked = true;
            char key[65];
            snprintf(key, sizeof key, "%s", notify_view_key(x->view));
            int rc = notify_view_auth(x->view, self->store, key);
            if (rc < 0) {
                s_pg_failed(self, "checking an SSE client's key");
            } else if (rc == 0) {
                EM_LOG_INFO(MOD, "SSE client of organisation %s: key revoked",
                            notify_view_org_id(x->view));
                notify_view_destroy(&x->view); /* the next fill ends the body */
                x->parked = false;
                em_http_stream_wake(x->req);
                continue;
            } else {
                s_pg_ok(self);
            }
        }
        if (!x->parked)
            continue;
        bool behind = self->head >= 0 && x->cursor < self->head &&
                      (pg_ok || x->cursor >= self->ring_base ||
                       (x->page && x->page_i < PQntuples(x->page)));
        if (behind || now >= x->next_ping) {
            x->parked = false;
            em_http_stream_wake(x->req);
        }
    }
}

static void s_sse_error(em_http_req_t *req, int status, const char *error, int64_t retry_ms)
{
    json_t *o = json_pack("{s:s}", "error", error);
    if (o && retry_ms >= 0) {
        char ra[32];
        json_object_set_new(o, "retry_ms", json_integer(retry_ms));
        snprintf(ra, sizeof ra, "%" PRId64, (retry_ms + 999) / 1000);
        em_http_add_header(req, "Retry-After", ra);
    }
    if (status == 401)
        em_http_add_header(req, "WWW-Authenticate", "Bearer");
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    em_http_respond(req, status, "application/json", text ? text : "{}",
                    text ? strlen(text) : 2);
    free(text);
    json_decref(o);
}

/* Parses a non-negative integer.  Returns 0 or -1. */
static int s_parse_seq(const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < 0 || text[0] == '-' || text[0] == '+')
        return -1;
    *out = v;
    return 0;
}

/* GET /v1/stream: Authorization: Bearer <organisation API key>; query types=a,b,
 * filters=<JSON array>, after=N; header Last-Event-ID (resume after that seq). */
static void s_handle_sse(notify_t *self, em_http_req_t *req)
{
    char err[EM_ERR_LEN];
    if (strcmp(em_http_req_method(req), "GET") != 0) {
        em_http_add_header(req, "Allow", "GET");
        s_sse_error(req, 405, "method not allowed (GET /v1/stream)", -1);
        return;
    }
    const char *auth = em_http_req_header(req, "Authorization");
    const char *key = auth && strncasecmp(auth, "Bearer ", 7) == 0 ? auth + 7 : NULL;
    while (key && *key == ' ')
        key++;
    if (!key || !*key) {
        s_sse_error(req, 401, "unauthorized", -1);
        return;
    }
    if (self->nsse >= self->cfg.sse_max_clients) {
        s_sse_error(req, 503, "too many stream clients", 5000);
        return;
    }
    int64_t after = 0;
    const char *a = em_http_req_query(req, "after");
    const char *last = em_http_req_header(req, "Last-Event-ID");
    if (a && s_parse_seq(a, &after) != 0) {
        s_sse_error(req, 400, "after: expected a non-negative integer (a seq)", -1);
        return;
    }
    if (last && s_parse_seq(last, &after) != 0) {
        s_sse_error(req, 400, "Last-Event-ID: expected a non-negative integer (a seq)", -1);
        return;
    }
    json_t *opts = json_object();
    const char *types = em_http_req_query(req, "types");
    const char *filters = em_http_req_query(req, "filters");
    if (types && *types) {
        json_t *arr = json_array();
        for (const char *p = types; *p;) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            json_array_append_new(arr, json_stringn(p, n));
            p += n + (comma ? 1 : 0);
        }
        json_object_set_new(opts, "types", arr);
    }
    if (filters) {
        json_error_t jerr;
        json_t *f = json_loads(filters, JSON_DECODE_ANY, &jerr);
        if (!f) {
            json_decref(opts);
            snprintf(err, sizeof err, "filters: not JSON (%s)", jerr.text);
            s_sse_error(req, 400, err, -1);
            return;
        }
        json_object_set_new(opts, "filters", f);
    }
    notify_view_t *view = notify_view_new(opts, NULL, "", err, sizeof err);
    json_decref(opts);
    if (!view) {
        s_sse_error(req, 400, err, -1);
        return;
    }
    char hash[65];
    int rc = -1;
    if (notify_subs_key_hash(key, hash) == 0 && s_pg_usable(self)) {
        rc = notify_view_auth(view, self->store, hash);
        if (rc < 0)
            s_pg_failed(self, "looking up an SSE client's key");
        else
            s_pg_ok(self);
    }
    if (rc <= 0) {
        notify_view_destroy(&view);
        if (rc == 0)
            s_sse_error(req, 401, "unauthorized", -1);
        else
            s_sse_error(req, 503, "unavailable",
                        self->pg_backoff_ms ? self->pg_backoff_ms : PG_BACKOFF_MIN_MS);
        return;
    }
    sse_t *x = calloc(1, sizeof *x);
    if (!x || asprintf(&x->out, ": emine stream after seq %" PRId64 "\n\n", after) < 0) {
        free(x);
        notify_view_destroy(&view);
        s_sse_error(req, 500, "out of memory", -1);
        return;
    }
    x->out_len = strlen(x->out);
    x->owner = self;
    x->req = req;
    x->view = view;
    x->cursor = after;
    x->next_ping = em_mono_ms() + self->cfg.sse_keepalive_ms;
    x->next = self->sse;
    if (self->sse)
        self->sse->prev = x;
    self->sse = x;
    self->nsse++;
    em_metric_set(self->m_sse, self->nsse);
    EM_LOG_INFO(MOD, "SSE client of organisation %s after seq %" PRId64,
                notify_view_org_id(view), after);
    em_http_add_header(req, "Cache-Control", "no-cache");
    em_http_add_header(req, "X-Accel-Buffering", "no");
    if (em_http_stream(req, 200, "text/event-stream; charset=utf-8", s_sse_fill, s_sse_done,
                       x) != 0)
        s_sse_done(x); /* req was answered 500; done will not be called */
}

/* ---------------------------------------------------------------------------------------- */
/* Admin HTTP */

static void s_handle_http(void *arg, em_http_req_t *req)
{
    notify_t *self = arg;
    const char *path = em_http_req_path(req);
    const char *method = em_http_req_method(req);
    if (strcmp(path, "/v1/stream") == 0) {
        s_handle_sse(self, req);
        return;
    }
    if (notify_subs_handle(self->subs, req))
        return;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        em_http_respond(req, 405, "text/plain", "method not allowed\n", 19);
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        em_http_respond(req, 200, "text/plain", "ok\n", 3);
    } else if (strcmp(path, "/readyz") == 0) {
        char body[160];
        int n;
        if (notify_ready(self))
            n = snprintf(body, sizeof body, "ready\n");
        else
            n = snprintf(body, sizeof body, "not ready:%s%s%s\n",
                         self->pg_up ? "" : " postgresql unreachable",
                         self->head >= 0 ? "" : " cursor not loaded",
                         self->sub_connected ? "" : " events bus not connected");
        em_http_respond(req, notify_ready(self) ? 200 : 503, "text/plain", body, (size_t)n);
    } else if (strcmp(path, "/metrics") == 0) {
        notify_deliver_metrics(self->deliver, self->metrics, self->head < 0 ? 0 : self->head);
        char *text = em_metrics_render(self->metrics);
        if (!text) {
            em_http_respond(req, 500, "text/plain", "out of memory\n", 14);
            return;
        }
        em_http_respond(req, 200, "text/plain; version=0.0.4", text, strlen(text));
        free(text);
    } else {
        em_http_respond(req, 404, "text/plain", "not found\n", 10);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Lifecycle */

static int s_load_config(const char *path, notify_cfg_t *cfg)
{
    char err[EM_ERR_LEN];
    memset(cfg, 0, sizeof *cfg);
    if (em_config_load(path, s_config, cfg, err, sizeof err) != 0) {
        fprintf(stderr, "emine-notify: %s\n", err);
        return -1;
    }
    const char *bad = NULL;
    if (cfg->cursor_flush_ms < 1)
        bad = "cursor_flush_ms must be >= 1";
    else if (cfg->poll_ms < 1)
        bad = "poll_ms must be >= 1";
    else if (cfg->batch < 1)
        bad = "batch must be >= 1";
    else if (cfg->client_idle_s < 1)
        bad = "client_idle_s must be >= 1";
    else if (cfg->max_clients < 1)
        bad = "max_clients must be >= 1";
    else if (cfg->ring < 1)
        bad = "ring must be >= 1";
    else if (cfg->ring_kb < 1 || cfg->ring_kb > INT_MAX / 1024)
        bad = "ring_kb must be between 1 and 2097151";
    else if (cfg->webhook_timeout_ms < 1)
        bad = "webhook_timeout_ms must be >= 1";
    else if (cfg->webhook_max_inflight < 1 || cfg->webhook_max_inflight > DELIVER_MAX_FDS)
        bad = "webhook_max_inflight must be between 1 and 256";
    else if (cfg->subs_reload_ms < 1)
        bad = "subs_reload_ms must be >= 1";
    else if (cfg->webhook_breaker_failures < 0 || cfg->webhook_breaker_open_ms < 1)
        bad = "webhook_breaker_failures must be >= 0 and webhook_breaker_open_ms >= 1";
    else if (cfg->sse_max_clients < 0 || cfg->sse_max_clients > 1000)
        bad = "sse_max_clients must be between 0 and 1000";
    else if (cfg->sse_keepalive_ms < 100)
        bad = "sse_keepalive_ms must be >= 100";
    if (bad) {
        fprintf(stderr, "emine-notify: [notify] %s\n", bad);
        em_config_release(s_config, cfg);
        return -1;
    }
    if (em_curve_secret_load(cfg->curve_secret_key, cfg->curve_secret_key_file,
                             "[notify] curve_secret_key", cfg->curve_secret, err,
                             sizeof err) < 0) {
        fprintf(stderr, "emine-notify: %s\n", err);
        em_config_release(s_config, cfg);
        return -1;
    }
    return 0;
}

int notify_dump_config(const char *config_path, FILE *out)
{
    notify_cfg_t cfg;
    if (s_load_config(config_path, &cfg) != 0)
        return -1;
    if (cfg.curve_secret_key && *cfg.curve_secret_key) {
        /* The secret itself is not shown. */
        free(cfg.curve_secret_key);
        cfg.curve_secret_key = strdup("(set)");
    }
    memset(cfg.curve_secret, 0, sizeof cfg.curve_secret);
    em_config_dump(s_config, &cfg, out);
    em_config_release(s_config, &cfg);
    return 0;
}

notify_t *notify_new(const char *config_path)
{
    notify_t *self = calloc(1, sizeof *self);
    char err[EM_ERR_LEN];
    if (!self)
        return NULL;
    self->head = -1;
    if (s_load_config(config_path, &self->cfg) != 0)
        goto fail;
    self->cfg_loaded = true;
    int lvl = em_log_level_parse(self->cfg.shared.log_level);
    em_log_init("notify", lvl < 0 ? EM_LOG_LVL_INFO : lvl);

    self->ring = calloc((size_t)self->cfg.ring, sizeof *self->ring);
    self->clients = calloc((size_t)self->cfg.max_clients, sizeof *self->clients);
    self->metrics = em_metrics_new("emine_notify");
    if (!self->ring || !self->clients || !self->metrics) {
        EM_LOG_ERROR(MOD, "out of memory");
        goto fail;
    }
    self->m_seen = em_metrics_counter(self->metrics, "events_seen_total", NULL,
                                      "committed events notify has seen, in seq order");
    self->m_head = em_metrics_gauge(self->metrics, "head", NULL,
                                    "highest seq such that every event up to it was seen");
    self->m_clients =
        em_metrics_gauge(self->metrics, "stream_clients", NULL, "stream clients known");
    self->m_sent = em_metrics_counter(self->metrics, "stream_sent_total", NULL,
                                      "events sent to stream clients");
    self->m_catchup = em_metrics_counter(self->metrics, "catchup_queries_total", NULL,
                                         "pages of events read from PostgreSQL");
    self->m_blocked = em_metrics_counter(self->metrics, "stream_blocked_total", NULL,
                                         "sends deferred because a client's pipe was full");
    self->m_sse = em_metrics_gauge(self->metrics, "sse_clients", NULL,
                                   "GET /v1/stream (SSE) connections open");
    self->m_sse_sent = em_metrics_counter(self->metrics, "sse_sent_total", NULL,
                                          "events sent to SSE clients");

    self->zctx = zmq_ctx_new();
    if (!self->zctx)
        goto fail_zmq;
    int zero = 0, one = 1, hwm = 10000, maxmsg = CLIENT_MSG_MAX;
    int64_t maxmsg64 = maxmsg;

    self->router = zmq_socket(self->zctx, ZMQ_ROUTER);
    if (!self->router)
        goto fail_zmq;
    zmq_setsockopt(self->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(self->router, ZMQ_MAXMSGSIZE, &maxmsg64, sizeof maxmsg64);
    char curve_public[EM_CURVE_KEY_LEN + 1] = "";
    if (self->cfg.curve_secret[0] &&
        em_bus_curve_server(self->router, self->cfg.curve_secret, curve_public, err,
                            sizeof err) != 0) {
        EM_LOG_ERROR(MOD, "[notify] curve_secret_key: %s", err);
        goto fail;
    }
    if (zmq_bind(self->router, self->cfg.zmq) != 0) {
        EM_LOG_ERROR(MOD, "bind %s: %s", self->cfg.zmq, zmq_strerror(errno));
        goto fail;
    }
    size_t eplen = sizeof self->endpoint;
    if (zmq_getsockopt(self->router, ZMQ_LAST_ENDPOINT, self->endpoint, &eplen) != 0)
        snprintf(self->endpoint, sizeof self->endpoint, "%s", self->cfg.zmq);
    if (curve_public[0])
        EM_LOG_INFO(MOD, "CURVE on %s (encryption; the API key authenticates); server public "
                         "key %s", self->endpoint, curve_public);

    self->sub = zmq_socket(self->zctx, ZMQ_SUB);
    if (!self->sub)
        goto fail_zmq;
    zmq_setsockopt(self->sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->sub, ZMQ_SUBSCRIBE, "ev", 2);
    char monep[64];
    snprintf(monep, sizeof monep, "inproc://notify-sub-monitor-%p", (void *)self);
    if (zmq_socket_monitor(self->sub, monep, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) !=
        0)
        goto fail_zmq;
    self->mon = zmq_socket(self->zctx, ZMQ_PAIR);
    if (!self->mon || zmq_connect(self->mon, monep) != 0)
        goto fail_zmq;
    zmq_setsockopt(self->mon, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(self->sub, self->cfg.shared.bus_events) != 0) {
        EM_LOG_ERROR(MOD, "connect %s: %s", self->cfg.shared.bus_events, zmq_strerror(errno));
        goto fail;
    }

    self->subs = notify_subs_new(self->cfg.shared.pg_dsn);
    if (self->subs)
        notify_subs_allow_private(self->subs, self->cfg.webhook_allow_private);
    if (!self->subs) {
        EM_LOG_ERROR(MOD, "out of memory");
        goto fail;
    }
    notify_deliver_cfg_t dcfg = {self->cfg.webhook_allow_private, self->cfg.webhook_timeout_ms,
                                 self->cfg.webhook_retry_ms, self->cfg.webhook_max_inflight,
                                 self->cfg.subs_reload_ms, self->cfg.cursor_flush_ms,
                                 self->cfg.batch, self->cfg.webhook_breaker_failures,
                                 self->cfg.webhook_breaker_open_ms, self->cfg.templates};
    self->deliver =
        notify_deliver_new(self->cfg.shared.pg_dsn, &dcfg, self->metrics, err, sizeof err);
    if (!self->deliver) {
        EM_LOG_ERROR(MOD, "webhooks: %s", err);
        goto fail;
    }
    self->http =
        em_http_new(self->cfg.http, HTTP_MAX_BODY, s_handle_http, self, err, sizeof err);
    if (!self->http) {
        EM_LOG_ERROR(MOD, "admin HTTP on %s: %s", self->cfg.http, err);
        goto fail;
    }

    int64_t now = em_mono_ms();
    self->next_flush = now + self->cfg.cursor_flush_ms;
    self->next_poll = now;
    self->next_reap = now + 1000;
    (void)s_load_cursor(self); /* PostgreSQL down: retried by the loop */
    EM_LOG_INFO(MOD, "streaming on %s, admin HTTP on port %d, events from %s", self->endpoint,
                em_http_port(self->http), self->cfg.shared.bus_events);
    return self;
fail_zmq:
    EM_LOG_ERROR(MOD, "zmq: %s", zmq_strerror(errno));
fail:
    notify_destroy(&self);
    return NULL;
}

void notify_destroy(notify_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    notify_t *self = *self_p;
    if (self->head >= 0 && self->head != self->persisted) {
        self->pg_retry_at = 0; /* one last try, whatever the backoff */
        if (s_flush_cursor(self) == 0)
            EM_LOG_INFO(MOD, "cursor persisted at seq %" PRId64, self->head);
    }
    if (self->sub)
        zmq_socket_monitor(self->sub, NULL, 0);
    if (self->mon)
        zmq_close(self->mon);
    if (self->sub)
        zmq_close(self->sub);
    if (self->router)
        zmq_close(self->router);
    if (self->zctx)
        zmq_ctx_term(self->zctx);
    em_http_destroy(&self->http);
    notify_subs_destroy(&self->subs);
    notify_deliver_destroy(&self->deliver);
    em_metrics_destroy(&self->metrics);
    em_store_destroy(&self->store);
    if (self->ring) {
        s_ring_clear(self);
        free(self->ring);
    }
    for (int i = 0; self->clients && i < self->nclients; i++)
        notify_view_destroy(&self->clients[i].view);
    free(self->clients);
    if (self->cfg_loaded)
        em_config_release(s_config, &self->cfg);
    memset(self->cfg.curve_secret, 0, sizeof self->cfg.curve_secret);
    free(self);
    *self_p = NULL;
}

/* Milliseconds until the next timer, capped by max_ms. */
static long s_timeout(notify_t *self, int64_t now, long max_ms, int64_t clients_due)
{
    long t = max_ms;
    int64_t due[5] = {self->next_poll, self->next_flush, self->next_reap,
                      self->pg_up ? INT64_MAX : self->pg_retry_at, clients_due};
    for (int i = 0; i < 5; i++) {
        int64_t d = due[i] - now;
        if (d < 0)
            d = 0;
        if (d < t)
            t = (long)d;
    }
    long h = em_http_timeout_ms(self->http);
    if (h >= 0 && h < t)
        t = h;
    return t;
}

int notify_step(notify_t *self, int timeout_ms)
{
    int64_t now = em_mono_ms();
    bool pg_ok = self->pg_up || now >= self->pg_retry_at;
    int64_t clients_due = s_clients_due(self, now);
    long timeout;
    if ((self->head >= 0 && self->known_max > self->head && pg_ok) || clients_due <= now)
        timeout = 0;
    else
        timeout = s_timeout(self, now, timeout_ms < 0 ? 1000 : timeout_ms, clients_due);

    long dt = notify_deliver_timeout_ms(self->deliver, self->head);
    if (dt < timeout)
        timeout = dt;

    zmq_pollitem_t items[4 + DELIVER_MAX_FDS] = {
        {self->sub, 0, ZMQ_POLLIN, 0},
        {self->router, 0, ZMQ_POLLIN, 0},
        {self->mon, 0, ZMQ_POLLIN, 0},
        {NULL, em_http_fd(self->http), ZMQ_POLLIN, 0},
    };
    int nd = notify_deliver_pollitems(self->deliver, items + 4, DELIVER_MAX_FDS);
    int rc = zmq_poll(items, 4 + nd, timeout);
    if (rc < 0) {
        if (errno == EINTR)
            return 0;
        EM_LOG_ERROR(MOD, "zmq_poll: %s", zmq_strerror(errno));
        return -1;
    }
    if (items[2].revents & ZMQ_POLLIN)
        s_handle_monitor(self);
    if (items[0].revents & ZMQ_POLLIN)
        s_handle_sub(self);
    if (items[1].revents & ZMQ_POLLIN)
        s_handle_router(self);
    em_http_run(self->http);

    now = em_mono_ms();
    if (self->head < 0) {
        (void)s_load_cursor(self);
    } else if (self->known_max > self->head || now >= self->next_poll) {
        self->next_poll = now + self->cfg.poll_ms;
        (void)s_catchup_page(self);
    }
    if (self->head >= 0)
        s_serve_clients(self);
    s_sse_wake(self, now);
    notify_deliver_run(self->deliver, items + 4, nd, self->head);
    if (now >= self->next_reap) {
        s_reap_clients(self, now);
        self->next_reap = now + 1000;
    }
    if (now >= self->next_flush) {
        (void)s_flush_cursor(self);
        self->next_flush = now + self->cfg.cursor_flush_ms;
    }
    return 0;
}

int notify_run(notify_t *self)
{
    int rc = 0;
    while (!em_signal_interrupted()) {
        if (notify_step(self, 1000) != 0) {
            rc = -1;
            break;
        }
    }
    EM_LOG_INFO(MOD, "stopping at seq %" PRId64, self->head);
    self->pg_retry_at = 0;
    if (s_flush_cursor(self) != 0)
        EM_LOG_ERROR(MOD, "could not persist the cursor at seq %" PRId64, self->head);
    return rc;
}

int64_t notify_head(const notify_t *self)
{
    return self->head;
}

const char *notify_stream_endpoint(const notify_t *self)
{
    return self->endpoint;
}

int notify_http_port(notify_t *self)
{
    return em_http_port(self->http);
}

int notify_ready(const notify_t *self)
{
    return self->pg_up && self->head >= 0 && self->sub_connected;
}

int notify_client_count(const notify_t *self)
{
    return self->nclients;
}
