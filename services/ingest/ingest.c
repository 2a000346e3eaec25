/* ingest.c - the ingest service.
 *
 * One zmq_poll loop over: the producers' ROUTER, the HTTP server's epoll fd, and the SUB
 * socket on which archive publishes outcomes after COMMIT.  Each request becomes a pending
 * entry in a fixed table (bounded memory); each event of it is either answered here
 * (malformed, too large, known duplicate, busy) or forwarded to validate and answered when
 * archive's outcome arrives.  Nothing is ever answered "accepted" from here. */
#include "ingest.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "em.h"
#include "producers.h"

#define INGEST_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define INGEST_ANONYMOUS "anonymous"

#define INGEST_MAX_ENV 4 /* identity + up to 3 echoed envelope frames */

typedef struct {
    em_shared_cfg_t shared;
    char *zmq;             /* producer ROUTER endpoint */
    char *http;            /* HTTP address */
    int max_event_bytes;   /* one event's raw size */
    int max_request_bytes; /* one request's size */
    int max_batch;         /* events in one request */
    int max_depth;         /* JSON nesting */
    int max_inflight;      /* events forwarded and not yet answered by archive */
    int max_requests;      /* requests awaiting an answer */
    int ack_timeout_ms;    /* after this, an unanswered event is answered busy */
    int hwm;               /* ZeroMQ high-water marks */
    bool dedupe;           /* answer known duplicates from the Redis cache */
    int cache_timeout_ms;  /* Redis command timeout */
    bool auth;             /* producers must authenticate (PLAIN over ZeroMQ, Bearer over HTTP) */
    int producers_refresh_ms; /* how often the producers table is re-read */
    char *curve_secret_key;      /* Z85 CURVE secret key of the ROUTER; "" = CURVE off */
    char *curve_secret_key_file; /* or a file holding it */
} ingest_cfg_t;

static const em_config_entry_t s_config[] = {
    EM_CONFIG_SHARED(ingest_cfg_t, shared),
    {EM_CFG_STR, "ingest", "zmq", "tcp://127.0.0.1:7001", offsetof(ingest_cfg_t, zmq),
     "ROUTER endpoint producers send CloudEvents to"},
    {EM_CFG_STR, "ingest", "http", "127.0.0.1:8001", offsetof(ingest_cfg_t, http),
     "HTTP address: POST /v1/events, /healthz, /readyz, /metrics"},
    {EM_CFG_INT, "ingest", "max_event_bytes", "262144", offsetof(ingest_cfg_t, max_event_bytes),
     "largest event accepted (bytes of JSON)"},
    {EM_CFG_INT, "ingest", "max_request_bytes", "4194304",
     offsetof(ingest_cfg_t, max_request_bytes), "largest request accepted (bytes)"},
    {EM_CFG_INT, "ingest", "max_batch", "1000", offsetof(ingest_cfg_t, max_batch),
     "most events in one batch"},
    {EM_CFG_INT, "ingest", "max_depth", "32", offsetof(ingest_cfg_t, max_depth),
     "deepest JSON nesting accepted"},
    {EM_CFG_INT, "ingest", "max_inflight", "10000", offsetof(ingest_cfg_t, max_inflight),
     "events awaiting an archive answer before ingest answers busy"},
    {EM_CFG_INT, "ingest", "max_requests", "4096", offsetof(ingest_cfg_t, max_requests),
     "requests awaiting an answer before ingest answers busy"},
    {EM_CFG_INT, "ingest", "ack_timeout_ms", "15000", offsetof(ingest_cfg_t, ack_timeout_ms),
     "an event without an outcome after this is answered busy (the producer retries)"},
    {EM_CFG_INT, "ingest", "hwm", "10000", offsetof(ingest_cfg_t, hwm),
     "ZeroMQ high-water mark per socket (messages)"},
    {EM_CFG_BOOL, "ingest", "dedupe", "true", offsetof(ingest_cfg_t, dedupe),
     "answer known duplicates from the Redis cache without a round trip to archive"},
    {EM_CFG_INT, "ingest", "cache_timeout_ms", "200", offsetof(ingest_cfg_t, cache_timeout_ms),
     "Redis command timeout"},
    {EM_CFG_BOOL, "ingest", "auth", "true", offsetof(ingest_cfg_t, auth),
     "producers authenticate with their key (ZeroMQ PLAIN user/key, HTTP Authorization: Bearer) "
     "and publish only the sources and types the producers table allows them"},
    {EM_CFG_INT, "ingest", "producers_refresh_ms", "5000",
     offsetof(ingest_cfg_t, producers_refresh_ms),
     "how often the producers table is re-read (also on SIGHUP)"},
    {EM_CFG_STR, "ingest", "curve_secret_key", "", offsetof(ingest_cfg_t, curve_secret_key),
     "Z85 CurveZMQ secret key (eminectl keygen): the ROUTER becomes a CURVE server (encrypted; "
     "producers identified by their CURVE public key, producers.curve_public); empty: off"},
    {EM_CFG_STR, "ingest", "curve_secret_key_file", "",
     offsetof(ingest_cfg_t, curve_secret_key_file),
     "a file whose first line is the CURVE secret key (instead of curve_secret_key)"},
    {EM_CFG_END, NULL, NULL, NULL, 0, NULL},
};

typedef enum { KIND_ZMQ = 1, KIND_HTTP } ingest_kind_t;
typedef enum { HTTP_SINGLE = 1, HTTP_BATCH } ingest_shape_t;

/* One request awaiting outcomes.  req == 0 marks a free slot. */
typedef struct {
    uint64_t req;
    ingest_kind_t kind;
    int nenv;                      /* ZeroMQ: identity + echoed frames */
    void *env[INGEST_MAX_ENV];
    size_t envlen[INGEST_MAX_ENV];
    em_http_req_t *http;           /* HTTP: the suspended request */
    ingest_shape_t shape;
    size_t n;                      /* events in the request */
    size_t remaining;              /* events still awaiting an outcome */
    json_t *results;               /* array of n result objects */
    int64_t deadline_ms;           /* monotonic */
    int64_t started_us;            /* monotonic, for the ack latency histogram */
} ingest_pending_t;

struct ingest {
    ingest_cfg_t cfg;
    bool cfg_loaded;
    char id[17];                   /* this instance's topic on the acks PUB */
    void *ctx;
    void *router;                  /* producers */
    void *push;                    /* to validate */
    void *acks;                    /* SUB: outcomes from archive */
    em_http_t *http;
    em_cache_t *cache;
    em_store_t *store;             /* read-only: the producers table */
    ingest_producers_t *producers;
    void *zap;                     /* REP: ZeroMQ authentication requests (ZAP) */
    char curve_secret[EM_CURVE_KEY_LEN + 1]; /* "" when CURVE is off */
    char curve_public[EM_CURVE_KEY_LEN + 1];
    int64_t next_refresh_ms;
    em_metrics_t *metrics;
    em_metric_t *m_req_zmq, *m_req_http, *m_inflight, *m_latency;
    em_metric_t *m_status[7];
    ingest_pending_t *pending;     /* max_requests slots, indexed by req % max_requests */
    size_t npending;
    uint64_t next_req;
    long inflight;                 /* events forwarded, outcome not yet received */
    int64_t last_archive_ms;       /* last ack or heartbeat from archive (monotonic) */
    bool draining;
};

static const char *s_statuses[] = {"accepted", "duplicate", "conflict", "rejected",
                                   "busy",     "unauthorized", NULL};

static void s_count_status(ingest_t *self, const char *status)
{
    for (int i = 0; s_statuses[i]; i++)
        if (strcmp(s_statuses[i], status) == 0)
            em_metric_add(self->m_status[i], 1);
}

static json_t *s_error(const char *pointer, const char *keyword, const char *message)
{
    json_t *errs = em_errors_new();
    em_errors_add(errs, pointer, keyword, "%s", message);
    return errs;
}

/* Sets the outcome of event idx of p (steals errors). */
static void s_set_result(ingest_t *self, ingest_pending_t *p, size_t idx, const char *status,
                         json_int_t seq, json_t *errors)
{
    json_t *r = json_array_get(p->results, idx);
    if (!r || json_object_get(r, "status")) {
        json_decref(errors);
        return; /* already answered (an outcome after a timeout) */
    }
    json_object_set_new(r, "status", json_string(status));
    if (seq > 0)
        json_object_set_new(r, "seq", json_integer(seq));
    if (errors)
        json_object_set_new(r, "errors", errors);
    s_count_status(self, status);
    p->remaining--;
}

static int s_http_status(const char *status)
{
    if (!status)
        return 500;
    if (strcmp(status, "accepted") == 0)
        return 201;
    if (strcmp(status, "duplicate") == 0)
        return 200;
    if (strcmp(status, "conflict") == 0)
        return 409;
    if (strcmp(status, "rejected") == 0)
        return 400;
    if (strcmp(status, "busy") == 0)
        return 429;
    if (strcmp(status, "unauthorized") == 0)
        return 403; /* authenticated, not allowed this source or type */
    return 500;
}

static void s_reply_zmq(ingest_t *self, void *const *env, const size_t *envlen, int nenv,
                        json_t *body)
{
    const void *frames[INGEST_MAX_ENV + 1];
    size_t lens[INGEST_MAX_ENV + 1];
    char *text = json_dumps(body, JSON_COMPACT);

    for (int i = 0; i < nenv; i++) {
        frames[i] = env[i];
        lens[i] = envlen[i];
    }
    frames[nenv] = text;
    lens[nenv] = strlen(text);
    if (em_bus_sendv(self->router, frames, lens, nenv + 1, ZMQ_DONTWAIT) != 0)
        EM_LOG_WARN("zmq", "reply to a producer dropped: %s", zmq_strerror(errno));
    free(text);
}

static void s_reply_http(em_http_req_t *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    size_t len = strlen(text);

    text = realloc(text, len + 2);
    text[len++] = '\n';
    text[len] = '\0';
    if (status == 429 || status == 503)
        em_http_add_header(req, "Retry-After", "1");
    em_http_respond(req, status, "application/json", text, len);
    free(text);
}

/* Answers a finished request and frees its slot. */
static void s_finish(ingest_t *self, ingest_pending_t *p)
{
    json_t *body;

    if (p->kind == KIND_HTTP && p->shape == HTTP_SINGLE) {
        json_t *r = json_array_get(p->results, 0);
        s_reply_http(p->http, s_http_status(json_string_value(json_object_get(r, "status"))), r);
    } else {
        body = json_pack("{sO}", "results", p->results);
        if (p->kind == KIND_HTTP) {
            /* A batch is 200 with a result per event, unless every event was busy. */
            size_t i, busy = 0;
            json_t *r;
            json_array_foreach(p->results, i, r) busy +=
                strcmp(json_string_value(json_object_get(r, "status")), "busy") == 0;
            s_reply_http(p->http, busy == p->n ? 429 : 200, body);
        } else {
            s_reply_zmq(self, p->env, p->envlen, p->nenv, body);
        }
        json_decref(body);
    }
    em_metric_observe(self->m_latency, (double)(em_mono_us() - p->started_us) / 1e6);
    for (int i = 0; i < p->nenv; i++)
        free(p->env[i]);
    json_decref(p->results);
    memset(p, 0, sizeof *p);
    self->npending--;
}

/* A request-level answer that is not per event (status "rejected" or "unauthorized"). */
static void s_reject_status(ingest_t *self, ingest_kind_t kind, em_http_req_t *http,
                            void *const *env, const size_t *envlen, int nenv, int http_status,
                            const char *status, json_t *errors)
{
    json_t *body = json_pack("{s:s, s:[], s:o}", "status", status, "results", "errors", errors);
    s_count_status(self, status);
    if (http_status == 401 && kind == KIND_HTTP)
        em_http_add_header(http, "WWW-Authenticate", "Bearer realm=\"emine\"");
    if (kind == KIND_HTTP)
        s_reply_http(http, http_status, body);
    else
        s_reply_zmq(self, env, envlen, nenv, body);
    json_decref(body);
}

/* A request-level rejection: not JSON, too large, too deep, a bad batch. */
static void s_reject_request(ingest_t *self, ingest_kind_t kind, em_http_req_t *http,
                             void *const *env, const size_t *envlen, int nenv, int http_status,
                             json_t *errors)
{
    json_t *body = json_pack("{s:s, s:[], s:o}", "status", "rejected", "results", "errors", errors);
    em_metric_add(self->m_status[3], 1);
    if (kind == KIND_HTTP)
        s_reply_http(http, http_status, body);
    else
        s_reply_zmq(self, env, envlen, nenv, body);
    json_decref(body);
}

typedef struct {
    const char *start;
    size_t len;
} ingest_slice_t;

static void s_collect_slice(void *arg, size_t index, const char *start, size_t len)
{
    ingest_slice_t *slices = arg;
    slices[index].start = start;
    slices[index].len = len;
}

/* Checks and forwards event idx of p.  Returns nothing: the outcome is set in p when known. */
static void s_handle_event(ingest_t *self, ingest_pending_t *p, size_t idx, json_t *event,
                           const char *raw, size_t rawlen, const ingest_producer_t *prod)
{
    json_t *r = json_array_get(p->results, idx);
    char digest[65];

    if (!json_is_object(event)) {
        s_set_result(self, p, idx, "rejected", 0,
                     s_error("", "type", "a CloudEvent must be a JSON object"));
        return;
    }
    const char *id = em_event_str(event, "id");
    const char *source = em_event_str(event, "source");
    if (id)
        json_object_set_new(r, "id", json_string(id));
    if (source)
        json_object_set_new(r, "source", json_string(source));
    if ((size_t)self->cfg.max_event_bytes < rawlen) {
        json_t *errs = em_errors_new();
        em_errors_add(errs, "", "maxBytes", "event is %zu bytes; the limit is %d", rawlen,
                      self->cfg.max_event_bytes);
        s_set_result(self, p, idx, "rejected", 0, errs);
        return;
    }
    if (!id || !*id || !source || !*source) {
        json_t *errs = em_errors_new();
        if (!id || !*id)
            em_errors_add(errs, "/id", "required", "id is required: a non-empty string");
        if (!source || !*source)
            em_errors_add(errs, "/source", "required",
                          "source is required: a non-empty URI-reference");
        s_set_result(self, p, idx, "rejected", 0, errs);
        return;
    }
    const char *ptr, *why;
    if (prod && !ingest_producer_allows(prod, source, em_event_str(event, "type"), &ptr, &why)) {
        s_set_result(self, p, idx, "unauthorized", 0, s_error(ptr, "authorization", why));
        return;
    }
    if (em_jcs_digest_hex(event, digest) != 0) {
        s_set_result(self, p, idx, "rejected", 0,
                     s_error("", "type", "the event holds a number JSON cannot represent"));
        return;
    }
    if (self->cfg.dedupe && self->cache) {
        int64_t seq;
        char seen[65];
        if (em_cache_seen_get(self->cache, source, id, &seq, seen) == 1 &&
            strcmp(seen, digest) == 0) {
            s_set_result(self, p, idx, "duplicate", seq, NULL);
            return;
        }
        /* A different digest is a conflict, which archive decides and dead-letters. */
    }
    if (self->inflight >= self->cfg.max_inflight) {
        s_set_result(self, p, idx, "busy", 0,
                     s_error("", "busy", "too many events in flight; retry later"));
        return;
    }
    json_t *hdr = json_pack("{s:s, s:I, s:I, s:s, s:I, s:s, s:s, s:s}", "ing", self->id, "req",
                            (json_int_t)p->req, "idx", (json_int_t)idx, "prod", prod ? prod->name : INGEST_ANONYMOUS, "rcv",
                            (json_int_t)em_now_ms(), "digest", digest, "id", id, "source", source);
    char *htext = json_dumps(hdr, JSON_COMPACT);
    const void *frames[2] = {htext, raw};
    size_t lens[2] = {strlen(htext), rawlen};
    if (em_bus_sendv(self->push, frames, lens, 2, ZMQ_DONTWAIT) == 0) {
        self->inflight++;
    } else {
        s_set_result(self, p, idx, "busy", 0,
                     s_error("", "busy", "the pipeline is full or down; retry later"));
    }
    free(htext);
    json_decref(hdr);
}

/* Finds a free slot for a new request, or NULL when the table is full. */
static ingest_pending_t *s_new_pending(ingest_t *self, size_t n)
{
    uint64_t req = self->next_req;
    ingest_pending_t *p = &self->pending[req % (uint64_t)self->cfg.max_requests];

    if (p->req != 0)
        return NULL;
    self->next_req++;
    p->req = req;
    p->n = p->remaining = n;
    p->results = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(p->results, json_object());
    p->started_us = em_mono_us();
    p->deadline_ms = em_mono_ms() + self->cfg.ack_timeout_ms;
    self->npending++;
    return p;
}

/* Parses and dispatches one request.  The caller has set up kind/env or http; this either
 * answers at once or leaves a pending entry.  text need not be NUL-terminated. */
static void s_handle_request(ingest_t *self, ingest_kind_t kind, em_http_req_t *http,
                             void *const *env, const size_t *envlen, int nenv, const char *text,
                             size_t len, bool force_batch, const ingest_producer_t *producer)
{
    json_t *errors = NULL;
    json_t *root;

    if (len > (size_t)self->cfg.max_request_bytes) {
        json_t *errs = em_errors_new();
        em_errors_add(errs, "", "maxBytes", "request is %zu bytes; the limit is %d", len,
                      self->cfg.max_request_bytes);
        s_reject_request(self, kind, http, env, envlen, nenv, 413, errs);
        return;
    }
    /* The depth limit is per event: the events of a batch sit one level deeper. */
    size_t lead = 0;
    while (lead < len && (text[lead] == ' ' || text[lead] == '\t' || text[lead] == '\n' ||
                          text[lead] == '\r'))
        lead++;
    int depth = self->cfg.max_depth + (lead < len && text[lead] == '[' ? 1 : 0);
    root = em_json_parse(text, len, depth, &errors);
    if (!root) {
        s_reject_request(self, kind, http, env, envlen, nenv, 400, errors);
        return;
    }
    bool batch = json_is_array(root);
    size_t n = batch ? json_array_size(root) : 1;
    if (force_batch && !batch) {
        s_reject_request(self, kind, http, env, envlen, nenv, 400,
                         s_error("", "type", "a batch must be a JSON array of CloudEvents"));
        json_decref(root);
        return;
    }
    if (batch && n == 0) {
        s_reject_request(self, kind, http, env, envlen, nenv, 400,
                         s_error("", "minItems", "an empty batch"));
        json_decref(root);
        return;
    }
    if (n > (size_t)self->cfg.max_batch) {
        json_t *errs = em_errors_new();
        em_errors_add(errs, "", "maxItems", "batch of %zu events; the limit is %d", n,
                      self->cfg.max_batch);
        s_reject_request(self, kind, http, env, envlen, nenv, 413, errs);
        json_decref(root);
        return;
    }
    ingest_pending_t *p =
        self->draining ? NULL
                       : (self->inflight + (long)n > self->cfg.max_inflight ? NULL
                                                                           : s_new_pending(self, n));
    if (!p) {
        json_t *body = json_pack("{s:s, s:[], s:o}", "status", "busy", "results", "errors",
                                 s_error("", "busy", self->draining ? "shutting down; retry"
                                                                    : "overloaded; retry later"));
        em_metric_add(self->m_status[4], (double)n);
        if (kind == KIND_HTTP)
            s_reply_http(http, self->draining ? 503 : 429, body);
        else
            s_reply_zmq(self, env, envlen, nenv, body);
        json_decref(body);
        json_decref(root);
        return;
    }
    p->kind = kind;
    p->http = http;
    p->shape = batch ? HTTP_BATCH : HTTP_SINGLE;
    for (int i = 0; i < nenv; i++) {
        p->env[i] = malloc(envlen[i] ? envlen[i] : 1);
        memcpy(p->env[i], env[i], envlen[i]);
        p->envlen[i] = envlen[i];
    }
    p->nenv = nenv;
    if (batch) {
        ingest_slice_t *slices = calloc(n, sizeof *slices);
        em_json_split_array(text, len, s_collect_slice, slices);
        for (size_t i = 0; i < n; i++) {
            s_handle_event(self, p, i, json_array_get(root, i), slices[i].start, slices[i].len,
                           producer);
        }
        free(slices);
    } else {
        s_handle_event(self, p, 0, root, text, len, producer);
    }
    json_decref(root);
    if (p->remaining == 0)
        s_finish(self, p);
}

static void s_handle_router(ingest_t *self)
{
    em_msg_t msg;
    void *env[INGEST_MAX_ENV];
    size_t envlen[INGEST_MAX_ENV];

    if (em_msg_recv(self->router, &msg, ZMQ_DONTWAIT) < 0)
        return;
    em_metric_add(self->m_req_zmq, 1);
    int nenv = msg.nframes - 1;
    if (nenv < 1 || nenv > INGEST_MAX_ENV) {
        EM_LOG_WARN("zmq", "dropped a producer message of %d frames", msg.nframes);
        em_msg_close(&msg);
        return;
    }
    for (int i = 0; i < nenv; i++)
        env[i] = (void *)em_msg_data(&msg, i, &envlen[i]);
    size_t len;
    const char *text = em_msg_data(&msg, nenv, &len);
    const ingest_producer_t *prod = NULL;
    if (self->cfg.auth) {
        /* The ZAP handler admitted the connection and named its producer. */
        const char *user = zmq_msg_gets(&msg.frames[nenv], "User-Id");
        prod = ingest_producers_by_name(self->producers, user);
        if (!prod) {
            s_reject_status(self, KIND_ZMQ, NULL, env, envlen, nenv, 401, "unauthorized",
                            s_error("", "authorization", "unknown or disabled producer"));
            em_msg_close(&msg);
            return;
        }
    }
    s_handle_request(self, KIND_ZMQ, NULL, env, envlen, nenv, text, len, false, prod);
    em_msg_close(&msg);
}

/* Outcomes from archive: [topic = our id, JSON array of results]; or a heartbeat. */
static void s_handle_acks(ingest_t *self)
{
    em_msg_t msg;
    size_t len;

    if (em_msg_recv(self->acks, &msg, ZMQ_DONTWAIT) < 0)
        return;
    self->last_archive_ms = em_mono_ms();
    if (msg.nframes != 2) {
        em_msg_close(&msg);
        return;
    }
    const char *text = em_msg_data(&msg, 1, &len);
    json_t *results = json_loadb(text, len, 0, NULL);
    size_t i;
    json_t *r;
    json_array_foreach(results, i, r)
    {
        uint64_t req = (uint64_t)json_integer_value(json_object_get(r, "req"));
        size_t idx = (size_t)json_integer_value(json_object_get(r, "idx"));
        const char *status = json_string_value(json_object_get(r, "status"));
        ingest_pending_t *p = &self->pending[req % (uint64_t)self->cfg.max_requests];
        if (!status || req == 0 || p->req != req || idx >= p->n ||
            json_object_get(json_array_get(p->results, idx), "status"))
            continue; /* answered already (timed out: counted then), or not ours */
        if (self->inflight > 0)
            self->inflight--;
        json_t *errors = json_object_get(r, "errors");
        json_t *notes = json_object_get(r, "notes");
        s_set_result(self, p, idx, status, json_integer_value(json_object_get(r, "seq")),
                     errors ? json_incref(errors) : NULL);
        /* validate's findings that did not reject (e.g. a discovery notified late) reach the
         * producer with the outcome: the result object is the HTTP body of a single event
         * and an entry of "results" otherwise. */
        if (json_is_array(notes) && json_array_size(notes) > 0)
            json_object_set(json_array_get(p->results, idx), "notes", notes);
        if (p->remaining == 0)
            s_finish(self, p);
    }
    json_decref(results);
    em_msg_close(&msg);
}

/* Answers busy for every event whose outcome did not arrive in time. */
static void s_expire(ingest_t *self)
{
    int64_t now = em_mono_ms();

    if (self->npending == 0)
        return;
    for (int s = 0; s < self->cfg.max_requests; s++) {
        ingest_pending_t *p = &self->pending[s];
        if (p->req == 0 || p->deadline_ms > now)
            continue;
        for (size_t i = 0; i < p->n; i++) {
            if (!json_object_get(json_array_get(p->results, i), "status")) {
                s_set_result(self, p, i, "busy", 0,
                             s_error("", "timeout",
                                     "no outcome from the archive in time; retry (retries are "
                                     "safe)"));
                if (self->inflight > 0)
                    self->inflight--;
            }
        }
        s_finish(self, p);
    }
}

/* --- producers --------------------------------------------------------------------- */

/* ZAP (ZeroMQ RFC 27).  PLAIN: user name = producer name, password = its key.  CURVE (the
 * ROUTER is a CURVE server): the client's public key, which must be an enabled producer's
 * curve_public.  The reply's user id is the producer name, which each message then carries
 * as "User-Id". */
static void s_handle_zap(ingest_t *self)
{
    em_msg_t msg;
    size_t len[8] = {0};
    const char *f[8] = {0};

    if (em_msg_recv(self->zap, &msg, ZMQ_DONTWAIT) < 0)
        return;
    for (int i = 0; i < msg.nframes && i < 8; i++)
        f[i] = em_msg_data(&msg, i, &len[i]);
    char user[128] = "", key[256] = "";
    bool curve = self->curve_secret[0] != '\0';
    bool plain = !curve && msg.nframes >= 8 && len[5] == 5 && memcmp(f[5], "PLAIN", 5) == 0;
    bool cclient = curve && msg.nframes >= 7 && len[5] == 5 && memcmp(f[5], "CURVE", 5) == 0 &&
                   len[6] == 32;
    const ingest_producer_t *prod = NULL;
    if (plain && len[6] < sizeof user && len[7] < sizeof key) {
        memcpy(user, f[6], len[6]);
        memcpy(key, f[7], len[7]);
        prod = ingest_producers_check(self->producers, user, key);
    } else if (cclient && zmq_z85_encode(user, (const uint8_t *)f[6], 32)) {
        prod = ingest_producers_by_curve(self->producers, user); /* user: the public key */
    }
    const char *status = prod ? "200" : "400";
    const char *text = prod      ? "OK"
                       : plain   ? "unknown producer or wrong key"
                       : cclient ? "no enabled producer has this CURVE public key"
                       : curve   ? "CURVE required"
                                 : "PLAIN required";
    const void *out[6] = {"1.0", f[1] ? f[1] : "", status, text, prod ? prod->name : "", ""};
    size_t outlen[6] = {3, f[1] ? len[1] : 0, 3, strlen(text), prod ? strlen(prod->name) : 0, 0};
    em_bus_sendv(self->zap, out, outlen, 6, 0);
    if (!prod)
        EM_LOG_WARN("auth", "refused a ZeroMQ producer (%s '%s'): %s",
                    cclient ? "CURVE public key" : "user", user, text);
    memset(key, 0, sizeof key);
    em_msg_close(&msg);
}

/* Re-reads the producers table when due (or on SIGHUP).  PostgreSQL being away keeps the
 * set in force. */
static void s_refresh_producers(ingest_t *self, bool now)
{
    char err[EM_ERR_LEN];

    if (!self->cfg.auth || (!now && em_mono_ms() < self->next_refresh_ms))
        return;
    self->next_refresh_ms = em_mono_ms() + self->cfg.producers_refresh_ms;
    if (!self->store)
        self->store = em_store_new(self->cfg.shared.pg_dsn, err, sizeof err);
    if (!self->store || !em_store_ensure(self->store)) {
        EM_LOG_WARN("auth", "cannot read the producers table: %s",
                    self->store ? em_store_errstr(self->store) : err);
        return;
    }
    int n = ingest_producers_load(self->producers, self->store);
    if (n < 0)
        EM_LOG_WARN("auth", "cannot read the producers table: %s", em_store_errstr(self->store));
    else if (now)
        EM_LOG_INFO("auth", "%d producers admitted", n);
}

/* --- HTTP ---------------------------------------------------------------------------- */

static void s_enum_headers(void *src, em_header_visit_fn *fn, void *arg)
{
    em_http_req_headers(src, fn, arg);
}

static bool s_ctype_is(const char *ctype, const char *want)
{
    size_t n = strlen(want);
    return ctype && strncasecmp(ctype, want, n) == 0 &&
           (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ');
}

/* Binary mode: the attributes come from ce-* headers and the body is the data.  The archived
 * text keeps the producer's own bytes of a JSON body (numbers stay exact). */
static void s_handle_binary(ingest_t *self, em_http_req_t *req, const ingest_producer_t *prod)
{
    size_t len;
    const char *body = em_http_req_body(req, &len);
    json_t *errors = em_errors_new();
    json_t *event = em_event_from_binary(s_enum_headers, req, body, len, errors);

    if (!event) {
        s_reject_request(self, KIND_HTTP, req, NULL, NULL, 0, 400, errors);
        return;
    }
    json_decref(errors);
    char *text;
    json_t *data = json_object_get(event, "data");
    if (data && !json_is_string(data) && len > 0) {
        json_t *attrs = json_copy(event);
        json_object_del(attrs, "data");
        char *head = json_dumps(attrs, JSON_COMPACT);
        size_t hl = strlen(head);
        text = malloc(hl + len + 16);
        memcpy(text, head, hl - 1); /* drop the closing brace */
        size_t off = hl - 1;
        off += (size_t)sprintf(text + off, "%s\"data\":", hl > 2 ? "," : "");
        memcpy(text + off, body, len);
        off += len;
        text[off++] = '}';
        text[off] = '\0';
        free(head);
        json_decref(attrs);
    } else {
        text = json_dumps(event, JSON_COMPACT);
    }
    json_decref(event);
    s_handle_request(self, KIND_HTTP, req, NULL, NULL, 0, text, strlen(text), false, prod);
    free(text);
}

static void s_handle_http(void *arg, em_http_req_t *req)
{
    ingest_t *self = arg;
    const char *path = em_http_req_path(req);
    const char *method = em_http_req_method(req);

    if (strcmp(path, "/v1/events") == 0) {
        if (strcmp(method, "POST") != 0) {
            em_http_add_header(req, "Allow", "POST");
            em_http_respond(req, 405, "application/json", "{\"error\":\"use POST\"}\n", 20);
            return;
        }
        em_metric_add(self->m_req_http, 1);
        const ingest_producer_t *prod = NULL;
        if (self->cfg.auth) {
            const char *authz = em_http_req_header(req, "Authorization");
            if (!ingest_producers_loaded(self->producers)) {
                s_reject_status(self, KIND_HTTP, req, NULL, NULL, 0, 503, "busy",
                                s_error("", "busy", "credentials cannot be checked yet; retry"));
                return;
            }
            if (authz && strncasecmp(authz, "Bearer ", 7) == 0)
                prod = ingest_producers_by_key(self->producers, authz + 7);
            if (!prod) {
                s_reject_status(self, KIND_HTTP, req, NULL, NULL, 0, 401, "unauthorized",
                                s_error("", "authorization",
                                        authz ? "unknown or disabled producer key"
                                              : "send Authorization: Bearer <producer key>"));
                return;
            }
        }
        const char *ctype = em_http_req_header(req, "Content-Type");
        size_t len;
        const char *body = em_http_req_body(req, &len);
        if (s_ctype_is(ctype, "application/cloudevents-batch+json"))
            s_handle_request(self, KIND_HTTP, req, NULL, NULL, 0, body, len, true, prod);
        else if (s_ctype_is(ctype, "application/cloudevents+json"))
            s_handle_request(self, KIND_HTTP, req, NULL, NULL, 0, body, len, false, prod);
        else if (em_http_req_header(req, "ce-specversion"))
            s_handle_binary(self, req, prod);
        else if (s_ctype_is(ctype, "application/json"))
            s_handle_request(self, KIND_HTTP, req, NULL, NULL, 0, body, len, false, prod);
        else
            s_reject_request(
                self, KIND_HTTP, req, NULL, NULL, 0, 415,
                s_error("", "contentType",
                        "send application/cloudevents+json (structured), "
                        "application/cloudevents-batch+json (batch), or ce-* headers (binary)"));
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        em_http_respond(req, 200, "text/plain", "ok\n", 3);
    } else if (strcmp(path, "/readyz") == 0) {
        bool archive_seen = self->last_archive_ms && em_mono_ms() - self->last_archive_ms < 5000;
        bool producers = !self->cfg.auth || ingest_producers_loaded(self->producers);
        bool ready = archive_seen && producers && !self->draining;
        json_t *body = json_pack("{s:b, s:b, s:b, s:b, s:b, s:I}", "ready", ready, "archive",
                                 archive_seen, "producers", producers, "cache",
                                 em_cache_ping(self->cache) == 1, "draining", self->draining,
                                 "inflight", (json_int_t)self->inflight);
        s_reply_http(req, ready ? 200 : 503, body);
        json_decref(body);
    } else if (strcmp(path, "/metrics") == 0) {
        em_metric_set(self->m_inflight, (double)self->inflight);
        char *text = em_metrics_render(self->metrics);
        em_http_respond(req, 200, "text/plain; version=0.0.4", text, strlen(text));
        free(text);
    } else {
        em_http_respond(req, 404, "application/json", "{\"error\":\"not found\"}\n", 22);
    }
}

/* --- lifecycle ----------------------------------------------------------------------- */

int ingest_dump_config(const char *config_path, FILE *out)
{
    ingest_cfg_t cfg;
    char err[EM_ERR_LEN];

    memset(&cfg, 0, sizeof cfg);
    if (em_config_load(config_path, s_config, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "emine-ingest: %s\n", err);
        return -1;
    }
    char secret[EM_CURVE_KEY_LEN + 1];
    int curve = em_curve_secret_load(cfg.curve_secret_key, cfg.curve_secret_key_file,
                                     "[ingest] curve_secret_key", secret, err, sizeof err);
    memset(secret, 0, sizeof secret);
    if (curve < 0) {
        fprintf(stderr, "emine-ingest: %s\n", err);
        em_config_release(s_config, &cfg);
        return -1;
    }
    if (cfg.curve_secret_key && *cfg.curve_secret_key) {
        /* The secret itself is not shown. */
        free(cfg.curve_secret_key);
        cfg.curve_secret_key = strdup("(set)");
    }
    em_config_dump(s_config, &cfg, out);
    em_config_release(s_config, &cfg);
    return 0;
}

ingest_t *ingest_new(const char *config_path)
{
    char err[EM_ERR_LEN], ep[512];
    ingest_t *self = calloc(1, sizeof *self);

    if (!self)
        return NULL;
    if (em_config_load(config_path, s_config, &self->cfg, err, sizeof err) != 0) {
        em_log_init("ingest", EM_LOG_LVL_INFO);
        EM_LOG_ERROR("config", "%s", err);
        goto fail;
    }
    self->cfg_loaded = true;
    int level = em_log_level_parse(self->cfg.shared.log_level);
    em_log_init("ingest", level < 0 ? EM_LOG_LVL_INFO : level);
    if (self->cfg.max_requests < 1 || self->cfg.max_inflight < 1 || self->cfg.max_batch < 1 ||
        self->cfg.max_depth < 1 || self->cfg.max_event_bytes < 64) {
        EM_LOG_ERROR("config", "ingest limits must be positive");
        goto fail;
    }
    if (em_curve_secret_load(self->cfg.curve_secret_key, self->cfg.curve_secret_key_file,
                             "[ingest] curve_secret_key", self->curve_secret, err,
                             sizeof err) < 0) {
        EM_LOG_ERROR("config", "%s", err);
        goto fail;
    }
    em_random_hex(self->id, 16);
    self->next_req = 1;
    self->pending = calloc((size_t)self->cfg.max_requests, sizeof *self->pending);
    self->ctx = zmq_ctx_new();
    self->producers = ingest_producers_new();
    bool curve = self->curve_secret[0] != '\0';
    if (self->cfg.auth) {
        /* The ZAP handler must be bound before the socket it authenticates for. */
        self->zap = em_bus_socket(self->ctx, ZMQ_REP, "@" INGEST_ZAP_ENDPOINT, 0, 0, err,
                                  sizeof err);
        if (!self->zap)
            goto fail_bus;
    }
    if (self->cfg.auth || curve) {
        /* PLAIN and CURVE exclude each other on one socket: with CURVE, the ZAP handler
         * identifies producers by their public key (without auth there is no ZAP handler
         * and any client key is admitted: encryption only). */
        self->router = zmq_socket(self->ctx, ZMQ_ROUTER);
        int one = 1, zero = 0;
        if (curve) {
            if (em_bus_curve_server(self->router, self->curve_secret, self->curve_public, err,
                                    sizeof err) != 0)
                goto fail_bus;
        } else {
            zmq_setsockopt(self->router, ZMQ_PLAIN_SERVER, &one, sizeof one);
        }
        if (self->cfg.auth)
            zmq_setsockopt(self->router, ZMQ_ZAP_DOMAIN, "emine", 5);
        zmq_setsockopt(self->router, ZMQ_SNDHWM, &self->cfg.hwm, sizeof self->cfg.hwm);
        zmq_setsockopt(self->router, ZMQ_RCVHWM, &self->cfg.hwm, sizeof self->cfg.hwm);
        zmq_setsockopt(self->router, ZMQ_LINGER, &zero, sizeof zero);
        if (zmq_bind(self->router, self->cfg.zmq) != 0) {
            snprintf(err, sizeof err, "cannot bind %s: %s", self->cfg.zmq, zmq_strerror(errno));
            goto fail_bus;
        }
        if (curve)
            EM_LOG_INFO("auth", "CURVE on %s; server public key %s", self->cfg.zmq,
                        self->curve_public);
        if (self->cfg.auth)
            s_refresh_producers(self, true);
    }
    if (!self->cfg.auth && curve) {
        EM_LOG_WARN("auth", "producers are not authenticated ([ingest] auth = false): any "
                            "CURVE client key is admitted");
    } else if (!self->cfg.auth) {
        snprintf(ep, sizeof ep, "@%s", self->cfg.zmq);
        self->router =
            em_bus_socket(self->ctx, ZMQ_ROUTER, ep, self->cfg.hwm, 0, err, sizeof err);
        if (!self->router)
            goto fail_bus;
        EM_LOG_WARN("auth", "producers are not authenticated ([ingest] auth = false)");
    }
    snprintf(ep, sizeof ep, "@%s", self->cfg.shared.bus_pipeline);
    self->push = em_bus_socket(self->ctx, ZMQ_PUSH, ep, self->cfg.hwm, 0, err, sizeof err);
    if (!self->push)
        goto fail_bus;
    snprintf(ep, sizeof ep, ">%s", self->cfg.shared.bus_acks);
    self->acks = em_bus_socket(self->ctx, ZMQ_SUB, ep, 0, 0, err, sizeof err);
    if (!self->acks)
        goto fail_bus;
    zmq_setsockopt(self->acks, ZMQ_SUBSCRIBE, self->id, strlen(self->id));
    zmq_setsockopt(self->acks, ZMQ_SUBSCRIBE, "hb", 2);
    self->cache = em_cache_new(self->cfg.shared.redis_url, self->cfg.cache_timeout_ms, err,
                               sizeof err);
    if (!self->cache) {
        EM_LOG_ERROR("cache", "%s", err);
        goto fail;
    }
    self->metrics = em_metrics_new("emine_ingest");
    self->m_req_zmq = em_metrics_counter(self->metrics, "requests_total", "transport=\"zmq\"",
                                         "requests received, by transport");
    self->m_req_http = em_metrics_counter(self->metrics, "requests_total", "transport=\"http\"",
                                          "requests received, by transport");
    for (int i = 0; s_statuses[i]; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "status=\"%s\"", s_statuses[i]);
        self->m_status[i] = em_metrics_counter(self->metrics, "events_total", labels,
                                               "events answered, by outcome");
    }
    self->m_inflight = em_metrics_gauge(self->metrics, "inflight_events", NULL,
                                        "events forwarded and awaiting an outcome");
    static const double lat[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
    self->m_latency = em_metrics_histogram(self->metrics, "ack_latency_seconds", NULL,
                                           "request received to answer sent",
                                           lat, sizeof lat / sizeof *lat);
    self->http = em_http_new(self->cfg.http, (size_t)self->cfg.max_request_bytes, s_handle_http,
                             self, err, sizeof err);
    if (!self->http) {
        EM_LOG_ERROR("http", "%s", err);
        goto fail;
    }
    return self;
fail_bus:
    EM_LOG_ERROR("bus", "%s", err);
fail:
    ingest_destroy(&self);
    return NULL;
}

int ingest_run(ingest_t *self)
{
    int64_t drain_until = 0, next_expire = 0;

    EM_LOG_INFO("main", "accepting on %s and http %s; pipeline %s; acks %s (topic %s)",
                self->cfg.zmq, self->cfg.http, self->cfg.shared.bus_pipeline,
                self->cfg.shared.bus_acks, self->id);
    for (;;) {
        if (em_signal_interrupted() && !self->draining) {
            self->draining = true;
            drain_until = em_mono_ms() + self->cfg.ack_timeout_ms;
            EM_LOG_INFO("main", "draining %zu requests", self->npending);
        }
        if (self->draining && (self->npending == 0 || em_mono_ms() > drain_until))
            break;
        long t = em_http_timeout_ms(self->http);
        zmq_pollitem_t items[] = {
            {self->acks, 0, ZMQ_POLLIN, 0},
            {NULL, em_http_fd(self->http), ZMQ_POLLIN, 0},
            {self->router, 0, ZMQ_POLLIN, 0},
            {self->zap, 0, ZMQ_POLLIN, 0},
        };
        /* While draining, producers' new requests wait in their queue (they will time out
         * and retry elsewhere or later); HTTP is still served and answers 503. */
        int n = self->draining ? 2 : self->zap ? 4 : 3;
        int rc = zmq_poll(items, n, t < 0 || t > 100 ? 100 : t);
        if (rc == -1 && errno == EINTR)
            continue;
        if (rc == -1)
            break;
        for (int i = 0; i < 256 && (items[0].revents & ZMQ_POLLIN); i++) {
            int events = 0;
            size_t sz = sizeof events;
            s_handle_acks(self);
            zmq_getsockopt(self->acks, ZMQ_EVENTS, &events, &sz);
            if (!(events & ZMQ_POLLIN))
                break;
        }
        em_http_run(self->http);
        for (int i = 0; n >= 3 && i < 64 && (items[2].revents & ZMQ_POLLIN); i++) {
            int events = 0;
            size_t sz = sizeof events;
            s_handle_router(self);
            zmq_getsockopt(self->router, ZMQ_EVENTS, &events, &sz);
            if (!(events & ZMQ_POLLIN))
                break;
        }
        if (n == 4 && (items[3].revents & ZMQ_POLLIN))
            s_handle_zap(self);
        s_refresh_producers(self, em_signal_reload_requested());
        if (em_mono_ms() >= next_expire) {
            s_expire(self);
            next_expire = em_mono_ms() + 100;
        }
    }
    /* Whatever is still pending is answered busy: the producer retries, retries are safe. */
    for (int s = 0; s < self->cfg.max_requests; s++)
        if (self->pending[s].req)
            self->pending[s].deadline_ms = 0;
    s_expire(self);
    em_http_run(self->http);
    EM_LOG_INFO("main", "stopped");
    return 0;
}

void ingest_destroy(ingest_t **self_p)
{
    if (self_p && *self_p) {
        ingest_t *self = *self_p;
        if (self->pending) {
            for (int s = 0; s < self->cfg.max_requests; s++) {
                ingest_pending_t *p = &self->pending[s];
                if (!p->req)
                    continue;
                if (p->http)
                    em_http_respond(p->http, 503, "application/json",
                                    "{\"status\":\"busy\"}\n", 18);
                for (int i = 0; i < p->nenv; i++)
                    free(p->env[i]);
                json_decref(p->results);
            }
            free(self->pending);
        }
        em_http_destroy(&self->http);
        em_bus_close(&self->router);
        em_bus_close(&self->push);
        em_bus_close(&self->acks);
        em_bus_close(&self->zap);
        if (self->ctx)
            zmq_ctx_term(self->ctx);
        em_cache_destroy(&self->cache);
        em_store_destroy(&self->store);
        ingest_producers_destroy(&self->producers);
        em_metrics_destroy(&self->metrics);
        if (self->cfg_loaded)
            em_config_release(s_config, &self->cfg);
        memset(self->curve_secret, 0, sizeof self->curve_secret);
        free(self);
        *self_p = NULL;
    }
}
