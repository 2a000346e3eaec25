/* validate.c - the validate service.
 *
 * Workers: each thread owns a PULL socket connected to ingest's pipeline and a PUSH socket
 * connected to archive.  Every event gets a verdict; rejected events travel on to archive
 * too, so that the dead letter is committed before the producer hears "rejected". */
#include "validate.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "catalogue.h"
#include "em.h"
#include "state.h"

#define VALIDATE_MAX_WORKERS 64

typedef struct {
    em_shared_cfg_t shared;
    char *http;     /* admin HTTP address */
    int workers;    /* worker threads */
    int hwm;        /* ZeroMQ high-water mark of each socket */
    int max_depth;  /* nesting limit, the same as ingest's */
    int drain_ms;   /* how long a worker keeps draining after SIGTERM */
    char *schemas;  /* the catalogue folder */
    char *unknown_types; /* reject | accept */
    bool state_rules;    /* run the rules that read the archive (state.h) */
    char *state_dsn;     /* their PostgreSQL (empty: [pg] dsn) */
    int state_timeout_ms; /* bound of a connection or a query */
    int state_retry_ms;  /* after a failure, no new connection attempt for this long */
} validate_cfg_t;

static const em_config_entry_t s_config[] = {
    EM_CONFIG_SHARED(validate_cfg_t, shared),
    {EM_CFG_STR, "validate", "http", "127.0.0.1:8002", offsetof(validate_cfg_t, http),
     "admin HTTP address (/healthz, /readyz, /metrics)"},
    {EM_CFG_INT, "validate", "workers", "2", offsetof(validate_cfg_t, workers),
     "worker threads sharing the pipeline"},
    {EM_CFG_INT, "validate", "hwm", "1000", offsetof(validate_cfg_t, hwm),
     "ZeroMQ high-water mark per socket (messages)"},
    {EM_CFG_INT, "validate", "max_depth", "32", offsetof(validate_cfg_t, max_depth),
     "maximum nesting depth of an event"},
    {EM_CFG_INT, "validate", "drain_ms", "2000", offsetof(validate_cfg_t, drain_ms),
     "after SIGTERM, how long to keep passing on what is already queued"},
    {EM_CFG_STR, "validate", "schemas", "config/schemas", offsetof(validate_cfg_t, schemas),
     "the event catalogue: <type>/<N>.json per type and version, defs.json (reloaded on SIGHUP)"},
    {EM_CFG_STR, "validate", "unknown_types", "reject", offsetof(validate_cfg_t, unknown_types),
     "an event whose type is not in the catalogue: reject (at /type) or accept unchecked"},
    {EM_CFG_BOOL, "validate", "state_rules", "true", offsetof(validate_cfg_t, state_rules),
     "run the domain rules that read a licence's archived history (licenceInForce, "
     "kpTransferAfter2YearsOfGrant, renewedAreaNotLarger)"},
    {EM_CFG_STR, "validate", "state_dsn", "", offsetof(validate_cfg_t, state_dsn),
     "PostgreSQL for those rules, read-only (empty: [pg] dsn); a role with SELECT on events "
     "is enough"},
    {EM_CFG_INT, "validate", "state_timeout_ms", "1000",
     offsetof(validate_cfg_t, state_timeout_ms),
     "bound of the connection and of each query of those rules; beyond it the rules are "
     "skipped with a note"},
    {EM_CFG_INT, "validate", "state_retry_ms", "2000", offsetof(validate_cfg_t, state_retry_ms),
     "after PostgreSQL failed them, how long those rules are skipped (with a note) before a "
     "new connection is tried"},
    {EM_CFG_END, NULL, NULL, NULL, 0, NULL},
};

typedef struct {
    validate_t *owner;
    pthread_t thread;
    bool started;
    void *in;  /* PULL from ingest */
    void *out; /* PUSH to archive */
    vhist_t *hist; /* the worker's reader of the archive for the stateful rules, or NULL */
    atomic_ullong ok;
    atomic_ullong rejected;
    atomic_ullong malformed; /* internal messages that were not 2 frames of header + event */
    atomic_int alive;
} validate_worker_t;

struct validate {
    validate_cfg_t cfg;
    bool cfg_loaded;
    void *ctx;
    em_http_t *http;
    em_metrics_t *metrics;
    em_metric_t *m_ok, *m_rejected, *m_malformed, *m_workers, *m_reloads, *m_reload_fail;
    em_metric_t *m_state_ok, *m_state_failed;
    bool accept_unknown;
    pthread_mutex_t cat_mu; /* guards cat (the pointer, not the catalogue: that is immutable) */
    bool cat_mu_init;
    vcat_t *cat;            /* the catalogue in force; workers take a reference per event */
    int nworkers;
    validate_worker_t workers[VALIDATE_MAX_WORKERS];
};

static const char *s_attrs[] = {"type", "subject", "time", "visibility", "projectid", "province"};

json_t *validate_event(const json_t *hdr, const char *raw, size_t len, int max_depth)
{
    return validate_event_cat(NULL, false, hdr, raw, len, max_depth);
}

json_t *validate_event_cat(const struct vcat *cat, bool accept_unknown, const json_t *hdr,
                           const char *raw, size_t len, int max_depth)
{
    return validate_event_state(cat, accept_unknown, NULL, hdr, raw, len, max_depth);
}

json_t *validate_event_state(const struct vcat *cat, bool accept_unknown, struct vhist *hist,
                             const json_t *hdr, const char *raw, size_t len, int max_depth)
{
    json_t *out = json_is_object(hdr) ? json_deep_copy(hdr) : json_object();
    json_t *errors = NULL;
    json_t *notes = json_array();
    json_t *event = em_json_parse(raw, len, max_depth, &errors);

    if (event) {
        errors = em_errors_new();
        if (!json_is_object(event))
            em_errors_add(errors, "", "type", "a CloudEvent must be a JSON object");
        else
            em_event_check(event, errors);
        if (cat && json_is_object(event))
            vcat_check(cat, event, accept_unknown, errors, notes);
        /* Only an event that passed everything else costs a query. */
        if (hist && json_is_object(event) && json_array_size(errors) == 0)
            vstate_check(hist, event, errors, notes);
        for (size_t i = 0; json_is_object(event) && i < sizeof s_attrs / sizeof *s_attrs; i++) {
            const char *v = em_event_str(event, s_attrs[i]);
            if (v)
                json_object_set_new(out, s_attrs[i], json_string(v));
        }
    }
    if (json_array_size(errors) > 0) {
        json_object_set_new(out, "verdict", json_string("rejected"));
        json_object_set(out, "errors", errors);
    } else {
        json_object_set_new(out, "verdict", json_string("ok"));
        json_object_del(out, "errors");
    }
    if (json_array_size(notes) > 0)
        json_object_set(out, "notes", notes);
    else
        json_object_del(out, "notes");
    json_decref(notes);
    json_decref(errors);
    json_decref(event);
    return out;
}

/* Passes one message on; blocks (with a timeout, so SIGTERM is noticed) while archive's
 * queue is full: that is the back-pressure that reaches ingest. */
static void s_worker_handle(validate_worker_t *w)
{
    validate_t *self = w->owner;
    em_msg_t msg;
    size_t hlen, rlen;

    if (em_msg_recv(w->in, &msg, ZMQ_DONTWAIT) < 0)
        return;
    const char *htext = em_msg_data(&msg, 0, &hlen);
    const char *raw = em_msg_data(&msg, 1, &rlen);
    json_t *hdr = msg.nframes == 2 ? json_loadb(htext, hlen, 0, NULL) : NULL;
    if (!json_is_object(hdr)) {
        atomic_fetch_add(&w->malformed, 1);
        EM_LOG_WARN("worker", "dropped a pipeline message that is not header + event (%d frames)",
                    msg.nframes);
        json_decref(hdr);
        em_msg_close(&msg);
        return;
    }
    pthread_mutex_lock(&self->cat_mu);
    vcat_t *cat = vcat_ref(self->cat);
    pthread_mutex_unlock(&self->cat_mu);
    json_t *verdict = validate_event_state(cat, self->accept_unknown, w->hist, hdr, raw, rlen,
                                           self->cfg.max_depth);
    vcat_unref(&cat);
    const char *v = json_string_value(json_object_get(verdict, "verdict"));
    bool ok = v && strcmp(v, "ok") == 0;
    char *vtext = json_dumps(verdict, JSON_COMPACT);
    const void *frames[2] = {vtext, raw};
    size_t lens[2] = {strlen(vtext), rlen};

    if (!ok)
        EM_LOG_EV(EM_LOG_LVL_INFO, "worker", json_string_value(json_object_get(hdr, "id")),
                  "rejected: %s",
                  json_string_value(json_object_get(
                      json_array_get(json_object_get(verdict, "errors"), 0), "message")));
    while (em_bus_sendv(w->out, frames, lens, 2, 0) != 0) {
        if (errno == ETERM)
            break;
        /* EAGAIN after ZMQ_SNDTIMEO: archive is not taking messages; keep trying. */
    }
    atomic_fetch_add(ok ? &w->ok : &w->rejected, 1);
    free(vtext);
    json_decref(verdict);
    json_decref(hdr);
    em_msg_close(&msg);
}

static void *s_worker_main(void *arg)
{
    validate_worker_t *w = arg;
    int64_t drain_until = 0;

    atomic_store(&w->alive, 1);
    for (;;) {
        zmq_pollitem_t items[] = {{w->in, 0, ZMQ_POLLIN, 0}};
        if (em_signal_interrupted() && drain_until == 0)
            drain_until = em_mono_ms() + w->owner->cfg.drain_ms;
        int rc = zmq_poll(items, 1, drain_until ? 50 : 200);
        if (rc == -1 && errno == EINTR)
            continue;
        if (rc == -1)
            break;
        if (items[0].revents & ZMQ_POLLIN) {
            s_worker_handle(w);
            continue;
        }
        if (drain_until && (rc == 0 || em_mono_ms() > drain_until))
            break; /* nothing left queued, or out of time */
    }
    atomic_store(&w->alive, 0);
    return NULL;
}

static void s_sync_counter(em_metric_t *m, unsigned long long now)
{
    em_metric_add(m, (double)now - em_metric_value(m));
}

static void s_handle_http(void *arg, em_http_req_t *req)
{
    validate_t *self = arg;
    const char *path = em_http_req_path(req);
    int alive = 0;
    unsigned long long ok = 0, rej = 0, bad = 0, sok = 0, sfail = 0;

    for (int i = 0; i < self->nworkers; i++) {
        alive += atomic_load(&self->workers[i].alive);
        ok += atomic_load(&self->workers[i].ok);
        rej += atomic_load(&self->workers[i].rejected);
        bad += atomic_load(&self->workers[i].malformed);
        sok += vhist_reads_ok(self->workers[i].hist);
        sfail += vhist_reads_failed(self->workers[i].hist);
    }
    if (strcmp(path, "/healthz") == 0) {
        em_http_respond(req, 200, "text/plain", "ok\n", 3);
    } else if (strcmp(path, "/readyz") == 0) {
        char body[128];
        int n = snprintf(body, sizeof body, "{\"ready\":%s,\"workers\":%d,\"alive\":%d}\n",
                         alive == self->nworkers ? "true" : "false", self->nworkers, alive);
        em_http_respond(req, alive == self->nworkers ? 200 : 503, "application/json", body,
                        (size_t)n);
    } else if (strcmp(path, "/metrics") == 0) {
        s_sync_counter(self->m_ok, ok);
        s_sync_counter(self->m_rejected, rej);
        s_sync_counter(self->m_malformed, bad);
        s_sync_counter(self->m_state_ok, sok);
        s_sync_counter(self->m_state_failed, sfail);
        em_metric_set(self->m_workers, alive);
        char *text = em_metrics_render(self->metrics);
        em_http_respond(req, 200, "text/plain; version=0.0.4", text, strlen(text));
        free(text);
    } else {
        em_http_respond(req, 404, "application/json", "{\"error\":\"not found\"}\n", 22);
    }
}

int validate_dump_config(const char *config_path, FILE *out)
{
    validate_cfg_t cfg;
    char err[EM_ERR_LEN];

    memset(&cfg, 0, sizeof cfg);
    if (em_config_load(config_path, s_config, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "emine-validate: %s\n", err);
        return -1;
    }
    em_config_dump(s_config, &cfg, out);
    em_config_release(s_config, &cfg);
    return 0;
}

validate_t *validate_new(const char *config_path)
{
    char err[EM_ERR_LEN], ep[512];
    validate_t *self = calloc(1, sizeof *self);

    if (!self)
        return NULL;
    if (em_config_load(config_path, s_config, &self->cfg, err, sizeof err) != 0) {
        em_log_init("validate", EM_LOG_LVL_INFO);
        EM_LOG_ERROR("config", "%s", err);
        goto fail;
    }
    self->cfg_loaded = true;
    em_log_init("validate", em_log_level_parse(self->cfg.shared.log_level) < 0
                                ? EM_LOG_LVL_INFO
                                : em_log_level_parse(self->cfg.shared.log_level));
    if (self->cfg.workers < 1 || self->cfg.workers > VALIDATE_MAX_WORKERS) {
        EM_LOG_ERROR("config", "validate.workers must be 1..%d", VALIDATE_MAX_WORKERS);
        goto fail;
    }
    if (self->cfg.state_timeout_ms < 1 || self->cfg.state_retry_ms < 0) {
        EM_LOG_ERROR("config", "validate.state_timeout_ms must be >= 1 and state_retry_ms >= 0");
        goto fail;
    }
    if (strcmp(self->cfg.unknown_types, "reject") != 0 &&
        strcmp(self->cfg.unknown_types, "accept") != 0) {
        EM_LOG_ERROR("config", "validate.unknown_types must be reject or accept, not %s",
                     self->cfg.unknown_types);
        goto fail;
    }
    self->accept_unknown = strcmp(self->cfg.unknown_types, "accept") == 0;
    pthread_mutex_init(&self->cat_mu, NULL);
    self->cat_mu_init = true;
    char *cerr = NULL;
    self->cat = vcat_load(self->cfg.schemas, &cerr);
    if (!self->cat) {
        EM_LOG_ERROR("schemas", "%s", cerr ? cerr : "cannot load the catalogue");
        free(cerr);
        goto fail;
    }
    EM_LOG_INFO("schemas", "catalogue %s: %zu types, %zu schema versions", self->cfg.schemas,
                vcat_types(self->cat), vcat_versions(self->cat));
    self->ctx = zmq_ctx_new();
    self->nworkers = self->cfg.workers;
    for (int i = 0; i < self->nworkers; i++) {
        validate_worker_t *w = &self->workers[i];
        w->owner = self;
        snprintf(ep, sizeof ep, ">%s", self->cfg.shared.bus_pipeline);
        w->in = em_bus_socket(self->ctx, ZMQ_PULL, ep, self->cfg.hwm, 0, err, sizeof err);
        if (!w->in) {
            EM_LOG_ERROR("bus", "%s", err);
            goto fail;
        }
        snprintf(ep, sizeof ep, ">%s", self->cfg.shared.bus_validated);
        w->out = em_bus_socket(self->ctx, ZMQ_PUSH, ep, self->cfg.hwm, 2000, err, sizeof err);
        if (!w->out) {
            EM_LOG_ERROR("bus", "%s", err);
            goto fail;
        }
        int timeout = 500;
        zmq_setsockopt(w->out, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
        if (self->cfg.state_rules) {
            w->hist = vhist_new(*self->cfg.state_dsn ? self->cfg.state_dsn
                                                     : self->cfg.shared.pg_dsn,
                                self->cfg.state_timeout_ms, self->cfg.state_retry_ms);
            if (!w->hist) {
                EM_LOG_ERROR("state", "out of memory");
                goto fail;
            }
        }
    }
    self->metrics = em_metrics_new("emine_validate");
    self->m_ok = em_metrics_counter(self->metrics, "events_total", "verdict=\"ok\"",
                                    "events checked, by verdict");
    self->m_rejected = em_metrics_counter(self->metrics, "events_total", "verdict=\"rejected\"",
                                          "events checked, by verdict");
    self->m_malformed = em_metrics_counter(self->metrics, "malformed_messages_total", NULL,
                                           "pipeline messages that were not header + event");
    self->m_state_ok = em_metrics_counter(
        self->metrics, "state_reads_total", "result=\"ok\"",
        "licence histories read for the stateful rules, by result (failed: rules skipped with a "
        "note)");
    self->m_state_failed = em_metrics_counter(
        self->metrics, "state_reads_total", "result=\"failed\"",
        "licence histories read for the stateful rules, by result (failed: rules skipped with a "
        "note)");
    self->m_workers = em_metrics_gauge(self->metrics, "workers_alive", NULL,
                                       "worker threads running");
    self->m_reloads = em_metrics_counter(self->metrics, "schema_reloads_total", "result=\"ok\"",
                                         "SIGHUP reloads of the catalogue, by result");
    self->m_reload_fail = em_metrics_counter(self->metrics, "schema_reloads_total",
                                             "result=\"failed\"",
                                             "SIGHUP reloads of the catalogue, by result");
    self->http = em_http_new(self->cfg.http, 65536, s_handle_http, self, err, sizeof err);
    if (!self->http) {
        EM_LOG_ERROR("http", "%s", err);
        goto fail;
    }
    return self;
fail:
    validate_destroy(&self);
    return NULL;
}

/* SIGHUP: loads the catalogue again; on success the new set replaces the old one for the
 * next event of every worker (events in progress finish with the set they took), otherwise
 * the old set stays in force and the failure is logged. */
static void s_reload(validate_t *self)
{
    char *err = NULL;
    vcat_t *fresh = vcat_load(self->cfg.schemas, &err);

    if (!fresh) {
        EM_LOG_ERROR("schemas", "reload failed, the previous catalogue stays in force: %s",
                     err ? err : "cannot load");
        free(err);
        em_metric_add(self->m_reload_fail, 1);
        return;
    }
    pthread_mutex_lock(&self->cat_mu);
    vcat_t *old = self->cat;
    self->cat = fresh;
    pthread_mutex_unlock(&self->cat_mu);
    vcat_unref(&old);
    em_metric_add(self->m_reloads, 1);
    EM_LOG_INFO("schemas", "reloaded %s: %zu types, %zu schema versions", self->cfg.schemas,
                vcat_types(fresh), vcat_versions(fresh));
}

int validate_run(validate_t *self)
{
    for (int i = 0; i < self->nworkers; i++) {
        if (pthread_create(&self->workers[i].thread, NULL, s_worker_main, &self->workers[i]) != 0) {
            EM_LOG_ERROR("worker", "cannot start worker %d", i);
            em_signal_set_interrupted(true);
            break;
        }
        self->workers[i].started = true;
    }
    EM_LOG_INFO("main", "validating with %d workers: %s -> %s, admin http %s", self->nworkers,
                self->cfg.shared.bus_pipeline, self->cfg.shared.bus_validated, self->cfg.http);
    while (!em_signal_interrupted()) {
        long t = em_http_timeout_ms(self->http);
        zmq_pollitem_t items[] = {{NULL, em_http_fd(self->http), ZMQ_POLLIN, 0}};
        int rc = zmq_poll(items, 1, t < 0 || t > 200 ? 200 : t);
        if (rc == -1 && errno != EINTR)
            break;
        if (em_signal_reload_requested())
            s_reload(self);
        em_http_run(self->http);
    }
    for (int i = 0; i < self->nworkers; i++) {
        if (self->workers[i].started)
            pthread_join(self->workers[i].thread, NULL);
        self->workers[i].started = false;
    }
    EM_LOG_INFO("main", "stopped");
    return 0;
}

void validate_destroy(validate_t **self_p)
{
    if (self_p && *self_p) {
        validate_t *self = *self_p;
        for (int i = 0; i < self->nworkers; i++) {
            if (self->workers[i].started)
                pthread_join(self->workers[i].thread, NULL);
            em_bus_close(&self->workers[i].in);
            em_bus_close(&self->workers[i].out);
            vhist_destroy(&self->workers[i].hist);
        }
        em_http_destroy(&self->http);
        em_metrics_destroy(&self->metrics);
        vcat_unref(&self->cat);
        if (self->cat_mu_init)
            pthread_mutex_destroy(&self->cat_mu);
        if (self->ctx)
            zmq_ctx_term(self->ctx);
        if (self->cfg_loaded)
            em_config_release(s_config, &self->cfg);
        free(self);
        *self_p = NULL;
    }
}
