/* archive.c - the single writer.  Reads validated events (PULL), writes them in batches of one
 * transaction each (event rows with the hash chain, dead letters), and only after COMMIT
 * publishes the acks (PUB, topic = ingest id), the committed events (PUB, topic "ev") and the
 * Redis seen cache.  A second instance waits as a standby on a PostgreSQL advisory lock while
 * its admin HTTP keeps answering. */
#include "archive.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "em.h"

#define MOD "archive"
/* The writer lock: pg_advisory_lock key ("emine" in ASCII). */
#define ARCHIVE_LOCK_KEY "435610365541"
#define ARCHIVE_MAX_DEPTH 256
#define ARCHIVE_BACKOFF_MIN_MS 200
#define ARCHIVE_BACKOFF_MAX_MS 5000
#define ARCHIVE_STANDBY_MS 500
#define ARCHIVE_HEARTBEAT_MS 1000
#define ARCHIVE_CHECK_MS 2000
#define ARCHIVE_PAGE_MAX 1000
#define GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

typedef struct {
    em_shared_cfg_t shared; /* [log] [pg] [redis] [bus] */
    char *http;             /* [archive] http: admin HTTP host:port */
    int batch_max;          /* [archive] batch_max: events per transaction */
    int batch_ms;           /* [archive] batch_ms: wait after the first event of a batch */
    char *migrations;       /* [archive] migrations: folder of NNN_name.sql */
    int seen_ttl_s;         /* [archive] seen_ttl_s: TTL of the Redis seen keys */
    int join_ms;            /* [archive] join_ms: wait after binding before reading */
} archive_cfg_t;

static const em_config_entry_t s_config[] = {
    EM_CONFIG_SHARED(archive_cfg_t, shared),
    {EM_CFG_STR, "archive", "http", "127.0.0.1:8003", offsetof(archive_cfg_t, http),
     "admin HTTP (/healthz /readyz /metrics, GET /v1/events)"},
    {EM_CFG_INT, "archive", "batch_max", "500", offsetof(archive_cfg_t, batch_max),
     "events per transaction at most"},
    {EM_CFG_INT, "archive", "batch_ms", "5", offsetof(archive_cfg_t, batch_ms),
     "milliseconds a batch waits for more events after its first one"},
    {EM_CFG_STR, "archive", "migrations", "services/archive/migrations",
     offsetof(archive_cfg_t, migrations), "folder of the NNN_name.sql schema migrations"},
    {EM_CFG_INT, "archive", "seen_ttl_s", "86400", offsetof(archive_cfg_t, seen_ttl_s),
     "seconds a committed (source,id) stays in the Redis duplicate cache"},
    {EM_CFG_INT, "archive", "join_ms", "500", offsetof(archive_cfg_t, join_ms),
     "after binding its PUB sockets, how long the writer waits before reading events, so that "
     "ingest and notify (re)connect first and no ack of the first batch is published to nobody"},
    {0},
};

enum { ST_ACCEPTED = 0, ST_DUPLICATE, ST_CONFLICT, ST_REJECTED, ST_COUNT };
static const char *const s_status_name[ST_COUNT] = {"accepted", "duplicate", "conflict",
                                                     "rejected"};

/* Outcome of a transaction attempt. */
enum { TX_OK = 0, TX_RETRY, TX_ROW_ERROR };

/* One message of the batch: the pipeline header, the producer's text, and the outcome. */
typedef struct {
    json_t *hdr;        /* header object (owned), never NULL (empty object if unreadable) */
    json_t *ev;         /* parsed event (owned) or NULL when the text is not JSON */
    char *raw;          /* producer's text, NUL-terminated (owned) */
    size_t rawlen;      /* its length */
    bool ok;            /* verdict ok and the event is archivable */
    json_t *in_errors;  /* errors of a rejected verdict or of archive's own checks (owned) */
    json_t *notes;      /* validate's non-rejecting findings: a non-empty array, or NULL (owned) */
    char *notes_text;   /* notes as JSON text for the notes column (owned), NULL when none */
    const char *ing;    /* borrowed from hdr: ingest id to ack, NULL for none */
    const char *id;     /* borrowed (hdr or ev) */
    const char *source; /* borrowed (hdr or ev) */
    const char *type;   /* borrowed (hdr or ev) */
    char digest[65];    /* JCS digest of the event (when ok) */
    /* Outcome of the last transaction attempt. */
    int status;            /* ST_* */
    int64_t seq;           /* assigned or original seq (0 for rejected) */
    char stored_digest[65];/* digest of the archived row (for the seen cache) */
    json_t *out_errors;    /* errors for the ack (owned) or NULL */
} archive_item_t;

struct archive {
    archive_cfg_t cfg;       /* effective configuration */
    bool cfg_loaded;         /* cfg strings need em_config_release */
    void *zctx;              /* ZeroMQ context */
    void *pull;              /* validated events in (bound once writer) */
    int64_t read_after_ms;   /* monotonic: no reading before (subscribers join first) */
    void *acks;              /* PUB of acks (bound once writer) */
    void *events;            /* PUB of committed events (bound once writer) */
    em_http_t *http;         /* admin HTTP */
    em_store_t *store;       /* PostgreSQL, NULL until the first connect */
    em_cache_t *cache;       /* Redis seen cache */
    em_metrics_t *metrics;   /* registry */
    bool writer;             /* holds the advisory lock on the current connection */
    bool migrated;           /* migrations applied by this process */
    bool prepared;           /* statements registered */
    bool held;               /* the batch failed for want of PostgreSQL and awaits a retry */
    int64_t next_try_ms;     /* monotonic time of the next connect/lock/retry attempt */
    int backoff_ms;          /* current reconnect backoff */
    int64_t last_hb_ms;      /* last heartbeat on the acks PUB */
    int64_t last_check_ms;   /* last time the writer's connection was known to work */
    int64_t last_seq;        /* last committed seq */
    char last_chain[65];     /* chain of last_seq (GENESIS when empty) */
    archive_item_t *batch;   /* batch_max slots */
    int n;                   /* messages in the batch */
    int64_t first_ms;        /* monotonic arrival of the batch's first message */
    const char *not_ready;   /* reason for /readyz, NULL when ready */
    em_metric_t *m_events[ST_COUNT];
    em_metric_t *m_batches, *m_batch_size, *m_commit, *m_last_seq, *m_standby;
};

/* ------------------------------------------------------------------------------------------ */
/* Items */

static void s_item_clear(archive_item_t *it)
{
    json_decref(it->hdr);
    json_decref(it->ev);
    json_decref(it->in_errors);
    json_decref(it->out_errors);
    json_decref(it->notes);
    free(it->notes_text);
    free(it->raw);
    memset(it, 0, sizeof *it);
}

/* A string attribute: the header's if present, else the event's. Borrowed. */
static const char *s_attr(const archive_item_t *it, const char *name)
{
    const char *v = json_string_value(json_object_get(it->hdr, name));
    if (v)
        return v;
    return it->ev ? em_event_str(it->ev, name) : NULL;
}

static void s_item_error(archive_item_t *it, const char *pointer, const char *keyword,
                         const char *msg)
{
    if (!it->in_errors)
        it->in_errors = em_errors_new();
    em_errors_add(it->in_errors, pointer, keyword, "%s", msg);
    it->ok = false;
}

/* Takes the header's "notes" when it is a non-empty array of objects (anything else is
 * ignored: notes never decide an outcome), with its text for the notes column: \u0000 made
 * U+FFFD so that jsonb takes it. */
static void s_scrub_nul(char *text);
static void s_item_notes(archive_item_t *it)
{
    json_t *n = json_object_get(it->hdr, "notes");
    size_t i;
    json_t *x;
    if (!json_is_array(n) || json_array_size(n) == 0)
        return;
    json_array_foreach(n, i, x)
    {
        if (!json_is_object(x))
            return;
    }
    it->notes_text = json_dumps(n, JSON_COMPACT);
    if (!it->notes_text)
        return;
    s_scrub_nul(it->notes_text);
    it->notes = json_incref(n);
}

/* Fills an item from a received message: 2 frames (header, raw text).  Anything malformed
 * still becomes an item (a dead letter), so nothing that reached archive is lost. */
static void s_item_fill(archive_item_t *it, const em_msg_t *msg)
{
    size_t hlen = 0, rlen = 0;
    const char *h = msg->nframes >= 1 ? em_msg_data(msg, 0, &hlen) : NULL;
    const char *r = msg->nframes >= 2 ? em_msg_data(msg, msg->nframes - 1, &rlen) : NULL;
    memset(it, 0, sizeof *it);
    it->raw = malloc(rlen + 1);
    if (it->raw) {
        if (rlen)
            memcpy(it->raw, r, rlen);
        it->raw[rlen] = '\0';
        it->rawlen = rlen;
    }
    /* NUL is allowed: an error message may quote one (the dead letter copes with it). */
    it->hdr = h ? json_loadb(h, hlen, JSON_ALLOW_NUL, NULL) : NULL;
    if (!json_is_object(it->hdr)) {
        json_decref(it->hdr);
        it->hdr = json_object();
        s_item_error(it, "", "pipeline", "unreadable pipeline header");
    }
    if (msg->nframes != 2)
        s_item_error(it, "", "pipeline", "pipeline message must have 2 frames");
    json_t *perr = NULL;
    it->ev = it->raw ? em_json_parse(it->raw, it->rawlen, ARCHIVE_MAX_DEPTH, &perr) : NULL;
    it->ing = json_string_value(json_object_get(it->hdr, "ing"));
    it->id = s_attr(it, "id");
    it->source = s_attr(it, "source");
    it->type = s_attr(it, "type");
    const char *verdict = json_string_value(json_object_get(it->hdr, "verdict"));
    if (verdict && strcmp(verdict, "ok") == 0 && !it->in_errors) {
        it->ok = true;
    } else if (!it->in_errors) {
        json_t *e = json_object_get(it->hdr, "errors");
        it->in_errors = json_is_array(e) ? json_incref(e) : em_errors_new();
        if (json_array_size(it->in_errors) == 0)
            em_errors_add(it->in_errors, "", "verdict", "rejected by validation");
        it->ok = false;
    }
    if (it->ok && !it->ev) {
        json_decref(it->in_errors);
        it->in_errors = perr ? json_incref(perr) : em_errors_new();
        if (json_array_size(it->in_errors) == 0)
            em_errors_add(it->in_errors, "", "json", "event text is not JSON");
        it->ok = false;
    }
    json_decref(perr);
    s_item_notes(it);
    if (it->ok && !json_is_object(it->ev))
        s_item_error(it, "", "type", "event is not a JSON object");
    if (it->ok && (!it->id || !*it->id || !it->source || !*it->source || !it->type))
        s_item_error(it, "", "required", "event lacks id, source or type");
    if (it->ok && em_jcs_digest_hex(it->ev, it->digest) != 0)
        s_item_error(it, "", "jcs", "event has no canonical form");
    if (it->ok) {
        const char *hd = json_string_value(json_object_get(it->hdr, "digest"));
        if (hd && strcmp(hd, it->digest) != 0)
            EM_LOG_EV(EM_LOG_LVL_WARN, MOD, it->id,
                      "pipeline digest %s differs from the recomputed %s; using the latter", hd,
                      it->digest);
    }
}

/* The event's time attribute in microseconds since the epoch (the column keeps what
 * PostgreSQL can: microseconds; digits beyond are cut).  Returns false when absent or not an
 * RFC 3339 date-time (the column is then NULL). */
static bool s_time_us(const char *t, long long *us)
{
    long long ms;
    if (!t || !em_rfc3339_parse(t, &ms))
        return false;
    long long sub = 0; /* the 4th to 6th fraction digits */
    if (t[17] == '6' && t[18] == '0') {
        sub = 999; /* a leap second is the last instant of its minute */
    } else if (t[19] == '.') {
        int nd = 0;
        for (const char *p = t + 20; *p >= '0' && *p <= '9'; p++, nd++)
            if (nd >= 3 && nd < 6)
                sub = sub * 10 + (*p - '0');
        for (; nd < 6; nd++)
            if (nd >= 3)
                sub *= 10;
    }
    *us = ms * 1000 + sub;
    return true;
}

/* Copies text replacing NUL bytes and invalid UTF-8 by '?', so that PostgreSQL `text` takes
 * it.  Caller owns return value. */
static char *s_text_safe(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    char *out = malloc(len + 1);
    size_t i = 0;
    if (!out)
        return NULL;
    while (i < len) {
        unsigned char c = u[i];
        size_t n = 0;
        unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte (RFC 3629) */
        if (c >= 0x01 && c < 0x80)
            n = 1;
        else if (c >= 0xC2 && c <= 0xDF)
            n = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        }
        bool good = n > 0 && i + n <= len;
        if (good && n > 1)
            good = u[i + 1] >= lo && u[i + 1] <= hi;
        for (size_t k = 2; good && k < n; k++)
            good = (u[i + k] & 0xC0) == 0x80;
        if (good) {
            memcpy(out + i, s + i, n);
            i += n;
        } else {
            out[i++] = '?';
        }
    }
    out[len] = '\0';
    return out;
}

/* ------------------------------------------------------------------------------------------ */
/* PostgreSQL */

/* The insert and the lookup of an existing (source,id) in one round trip.  The lookup sees the
 * rows of earlier statements of the transaction, so a second (source,id) in the same batch is
 * a duplicate or a conflict of the first, as if it had been sent later. */
static const char *s_sql_insert =
    "WITH ins AS ("
    " INSERT INTO events (seq, source, id, type, subject, time, received_at, producer,"
    "  visibility, projectid, province, envelope, digest, chain, notes)"
    " VALUES ($1::bigint, $2, $3, $4, $5,"
    "  timestamptz 'epoch' + $6::bigint * interval '1 microsecond',"
    "  COALESCE(to_timestamp($7::double precision / 1000), now()), COALESCE($8, ''),"
    "  $9, $10, $11, $12::jsonb, $13, $14, $15::jsonb)"
    " ON CONFLICT (source, id) DO NOTHING RETURNING seq)"
    " SELECT 'new', seq, NULL::text FROM ins"
    " UNION ALL"
    " SELECT 'old', e.seq, e.digest FROM events e"
    "  WHERE e.source = $2 AND e.id = $3 AND NOT EXISTS (SELECT 1 FROM ins)";

static const char *s_sql_dead =
    "INSERT INTO rejected_events (received_at, producer, source, event_id, type, reason,"
    " errors, raw, existing_seq)"
    " VALUES (COALESCE(to_timestamp($1::double precision / 1000), now()), $2, $3, $4, $5, $6,"
    " $7::jsonb, $8, $9::bigint)";

/* Set-based statements of the fast path: each takes one jsonb array of rows (parameters only;
 * the event text travels as a JSON string and is cast to jsonb from the producer's own text). */
static const char *s_sql_lookup =
    "SELECT k.i, e.seq, e.digest FROM jsonb_to_recordset($1::jsonb) AS k(i integer, source text,"
    " id text) JOIN events e ON e.source = k.source AND e.id = k.id";

static const char *s_sql_insert_many =
    "INSERT INTO events (seq, source, id, type, subject, time, received_at, producer,"
    " visibility, projectid, province, envelope, digest, chain, notes)"
    " SELECT r.seq, r.source, r.id, r.type, r.subject,"
    "  timestamptz 'epoch' + r.tus * interval '1 microsecond',"
    "  COALESCE(to_timestamp(r.rcv / 1000), now()), COALESCE(r.prod, ''), r.visibility,"
    "  r.projectid, r.province, r.raw::jsonb, r.digest, r.chain, r.notes::jsonb"
    " FROM jsonb_to_recordset($1::jsonb) AS r(seq bigint, source text, id text, type text,"
    "  subject text, tus bigint, rcv double precision, prod text, visibility text,"
    "  projectid text, province text, raw text, digest text, chain text, notes text)"
    " ORDER BY r.seq";

static const char *s_sql_dead_many =
    "INSERT INTO rejected_events (received_at, producer, source, event_id, type, reason, errors,"
    " raw, existing_seq)"
    " SELECT COALESCE(to_timestamp(r.rcv / 1000), now()), r.prod, r.source, r.id, r.type,"
    "  r.reason, r.errors, r.raw, r.existing_seq"
    " FROM jsonb_to_recordset($1::jsonb) AS r(i integer, rcv double precision, prod text,"
    "  source text, id text, type text, reason text, errors jsonb, raw text,"
    "  existing_seq bigint)"
    " ORDER BY r.i";

/* Applies the migrations not yet recorded in schema_migrations, in file name order, each in
 * its own transaction.  Returns TX_OK, TX_RETRY (PostgreSQL went away) or TX_ROW_ERROR (a
 * broken migration: fatal). */
static int s_migrate(archive_t *self)
{
    struct dirent **names = NULL;
    int count, rc = TX_OK;
    if (em_store_command(self->store,
                         "CREATE TABLE IF NOT EXISTS schema_migrations ("
                         " version integer PRIMARY KEY, name text NOT NULL,"
                         " applied_at timestamptz NOT NULL DEFAULT now())") != 0)
        return em_store_retryable(self->store) ? TX_RETRY : TX_ROW_ERROR;
    count = scandir(self->cfg.migrations, &names, NULL, alphasort);
    if (count < 0) {
        EM_LOG_ERROR(MOD, "cannot read migrations folder %s: %s", self->cfg.migrations,
                     strerror(errno));
        return TX_ROW_ERROR;
    }
    for (int i = 0; i < count && rc == TX_OK; i++) {
        const char *name = names[i]->d_name;
        size_t len = strlen(name);
        char path[4096], version[16];
        if (len < 8 || strspn(name, "0123456789") != 3 || name[3] != '_' ||
            strcmp(name + len - 4, ".sql") != 0)
            continue;
        snprintf(version, sizeof version, "%d", atoi(name));
        const char *pv[] = {version};
        PGresult *res = em_store_query(
            self->store, "SELECT 1 FROM schema_migrations WHERE version = $1::integer", 1, pv);
        if (!res) {
            rc = em_store_retryable(self->store) ? TX_RETRY : TX_ROW_ERROR;
            break;
        }
        int done = PQntuples(res) > 0;
        PQclear(res);
        if (done)
            continue;
        snprintf(path, sizeof path, "%s/%s", self->cfg.migrations, name);
        FILE *f = fopen(path, "rb");
        char *sql = NULL;
        long size = -1;
        if (f && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 &&
            fseek(f, 0, SEEK_SET) == 0 && (sql = malloc((size_t)size + 1)) != NULL &&
            fread(sql, 1, (size_t)size, f) == (size_t)size) {
            sql[size] = '\0';
        } else {
            EM_LOG_ERROR(MOD, "cannot read migration %s", path);
            free(sql);
            sql = NULL;
        }
        if (f)
            fclose(f);
        if (!sql) {
            rc = TX_ROW_ERROR;
            break;
        }
        const char *pr[] = {version, name};
        if (em_store_command(self->store, "BEGIN") != 0 ||
            em_store_command(self->store, sql) != 0 ||
            !(res = em_store_query(self->store,
                                   "INSERT INTO schema_migrations (version, name)"
                                   " VALUES ($1::integer, $2)",
                                   2, pr)) ||
            (PQclear(res), em_store_command(self->store, "COMMIT") != 0)) {
            rc = em_store_retryable(self->store) ? TX_RETRY : TX_ROW_ERROR;
            EM_LOG_ERROR(MOD, "migration %s failed: %s", name, em_store_errstr(self->store));
            em_store_command(self->store, "ROLLBACK");
        } else {
            EM_LOG_INFO(MOD, "applied migration %s", name);
        }
        free(sql);
    }
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* Loads the last seq and chain.  Returns 0 or -1. */
static int s_load_head(archive_t *self)
{
    PGresult *res = em_store_query(self->store,
                                   "SELECT seq, chain FROM events ORDER BY seq DESC LIMIT 1", 0,
                                   NULL);
    if (!res)
        return -1;
    if (PQntuples(res) == 1) {
        self->last_seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        snprintf(self->last_chain, sizeof self->last_chain, "%s", PQgetvalue(res, 0, 1));
    } else {
        self->last_seq = 0;
        memcpy(self->last_chain, GENESIS, sizeof self->last_chain);
    }
    PQclear(res);
    em_metric_set(self->m_last_seq, (double)self->last_seq);
    return 0;
}

/* Binds the bus sockets (once this instance is the writer).  Returns 0 or -1. */
static int s_bind(archive_t *self)
{
    char ep[1024], err[EM_ERR_LEN];
    struct {
        void **sock;
        int type;
        const char *cfg;
        int hwm;
    } socks[] = {
        {&self->pull, ZMQ_PULL, self->cfg.shared.bus_validated, self->cfg.batch_max * 2},
        {&self->acks, ZMQ_PUB, self->cfg.shared.bus_acks, 100000},
        {&self->events, ZMQ_PUB, self->cfg.shared.bus_events, 100000},
    };
    for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++) {
        if (*socks[i].sock)
            continue;
        const char *c = socks[i].cfg;
        snprintf(ep, sizeof ep, "%s%s", c[0] == '@' || c[0] == '>' ? "" : "@", c);
        *socks[i].sock = em_bus_socket(self->zctx, socks[i].type, ep, socks[i].hwm, 2000, err,
                                       sizeof err);
        if (!*socks[i].sock) {
            EM_LOG_ERROR(MOD, "bus: %s", err);
            return -1;
        }
    }
    return 0;
}

static void s_unbind(archive_t *self)
{
    em_bus_close(&self->pull);
    em_bus_close(&self->acks);
    em_bus_close(&self->events);
}

static void s_backoff(archive_t *self)
{
    self->next_try_ms = em_mono_ms() + self->backoff_ms;
    self->backoff_ms = self->backoff_ms * 2 > ARCHIVE_BACKOFF_MAX_MS ? ARCHIVE_BACKOFF_MAX_MS
                                                                     : self->backoff_ms * 2;
}

static void s_drop_batch(archive_t *self)
{
    for (int i = 0; i < self->n; i++)
        s_item_clear(&self->batch[i]);
    self->n = 0;
    self->held = false;
}

/* Connects, takes the writer lock, migrates, loads the head and binds the bus, as far as
 * possible right now.  Returns 0, or -1 on a fatal error. */
static int s_connect(archive_t *self)
{
    char err[EM_ERR_LEN];
    if (em_mono_ms() < self->next_try_ms)
        return 0;
    if (!self->store) {
        self->store = em_store_new(self->cfg.shared.pg_dsn, err, sizeof err);
        if (!self->store) {
            self->not_ready = "postgres unavailable";
            EM_LOG_WARN(MOD, "postgres: %s; retrying in %d ms", err, self->backoff_ms);
            s_backoff(self);
            return 0;
        }
    } else {
        /* A lost session lost its advisory lock with it: a new one must take it again. */
        if (!em_store_connected(self->store))
            self->writer = false;
        if (!em_store_ensure(self->store)) {
            self->not_ready = "postgres unavailable";
            self->writer = false;
            EM_LOG_WARN(MOD, "postgres: %s; retrying in %d ms", em_store_errstr(self->store),
                        self->backoff_ms);
            s_backoff(self);
            return 0;
        }
    }
    if (!self->writer) {
        PGresult *res = em_store_query(self->store,
                                       "SELECT pg_try_advisory_lock(" ARCHIVE_LOCK_KEY ")", 0,
                                       NULL);
        if (!res) {
            self->not_ready = "postgres unavailable";
            s_backoff(self);
            return 0;
        }
        bool got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        self->backoff_ms = ARCHIVE_BACKOFF_MIN_MS;
        if (!got) {
            if (self->pull || self->n > 0) {
                EM_LOG_WARN(MOD, "another archive holds the writer lock: standing by; %d "
                                 "unacknowledged messages left to their producers' retries",
                            self->n);
                s_drop_batch(self);
                s_unbind(self);
            }
            self->not_ready = "standby: another archive holds the writer lock";
            em_metric_set(self->m_standby, 1);
            self->next_try_ms = em_mono_ms() + ARCHIVE_STANDBY_MS;
            return 0;
        }
        self->writer = true;
        em_metric_set(self->m_standby, 0);
        EM_LOG_INFO(MOD, "holding the writer lock");
    }
    if (!self->migrated) {
        int rc = s_migrate(self);
        if (rc == TX_ROW_ERROR)
            return -1;
        if (rc == TX_RETRY) {
            self->writer = false;
            s_backoff(self);
            return 0;
        }
        self->migrated = true;
    }
    if (!self->prepared) {
        if (em_store_prepare(self->store, "archive_insert", s_sql_insert, 15) != 0 ||
            em_store_prepare(self->store, "archive_dead", s_sql_dead, 9) != 0 ||
            em_store_prepare(self->store, "archive_lookup", s_sql_lookup, 1) != 0 ||
            em_store_prepare(self->store, "archive_insert_many", s_sql_insert_many, 1) != 0 ||
            em_store_prepare(self->store, "archive_dead_many", s_sql_dead_many, 1) != 0) {
            EM_LOG_ERROR(MOD, "prepare: %s", em_store_errstr(self->store));
            if (!em_store_retryable(self->store))
                return -1;
            self->writer = false;
            s_backoff(self);
            return 0;
        }
        self->prepared = true;
    }
    if (s_load_head(self) != 0) {
        self->writer = false;
        s_backoff(self);
        return 0;
    }
    if (s_bind(self) != 0) {
        /* Most likely the previous writer on this host has not let go of the ports yet: give
         * the lock back so that nothing is written without the bus, and try again later. */
        PGresult *res = em_store_query(self->store,
                                       "SELECT pg_advisory_unlock_all()", 0, NULL);
        PQclear(res);
        s_unbind(self);
        self->writer = false;
        self->not_ready = "bus endpoints unavailable";
        s_backoff(self);
        return 0;
    }
    self->backoff_ms = ARCHIVE_BACKOFF_MIN_MS;
    self->last_check_ms = em_mono_ms();
    self->read_after_ms = em_mono_ms() + self->cfg.join_ms;
    self->not_ready = NULL;
    EM_LOG_INFO(MOD, "writer: last seq %lld; reading %s", (long long)self->last_seq,
                self->cfg.shared.bus_validated);
    return 0;
}

/* Writes one dead letter.  level 0 keeps everything (text made valid UTF-8 without NUL);
 * level 1 drops the error list (it may hold what jsonb refuses, e.g. \u0000); level 2 keeps
 * only the reason, the times and a note instead of the text.  Returns 0 or -1 (store
 * errstr); after -1 the transaction is aborted. */
static int s_dead(archive_t *self, archive_item_t *it, const char *reason, const json_t *errors,
                  int64_t existing_seq, int level)
{
    char rcv[32], ex[32];
    char *errs = errors && level == 0 ? json_dumps(errors, JSON_COMPACT) : NULL;
    char *raw = level < 2 ? s_text_safe(it->raw ? it->raw : "", it->raw ? it->rawlen : 0)
                          : strdup("(the raw text could not be stored)");
    json_t *rj = json_object_get(it->hdr, "rcv");
    snprintf(rcv, sizeof rcv, "%" JSON_INTEGER_FORMAT, json_integer_value(rj));
    snprintf(ex, sizeof ex, "%" PRId64, existing_seq);
    const char *v[9] = {json_is_integer(rj) ? rcv : NULL,
                        json_string_value(json_object_get(it->hdr, "prod")),
                        it->source,
                        it->id,
                        it->type,
                        reason,
                        errs,
                        raw ? raw : "",
                        existing_seq > 0 ? ex : NULL};
    char *safe[5] = {NULL};
    for (int k = 1; k <= 4; k++) { /* identifiers may carry bytes `text` refuses */
        if (v[k] && level < 2) {
            safe[k] = s_text_safe(v[k], strlen(v[k]));
            v[k] = safe[k];
        } else if (level >= 2) {
            v[k] = NULL;
        }
    }
    PGresult *res = em_store_exec(self->store, "archive_dead", 9, v);
    for (int k = 1; k <= 4; k++)
        free(safe[k]);
    free(errs);
    free(raw);
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

/* A one-entry error list for the whole event.  Caller owns return value. */
static json_t *s_one_error(const char *keyword, const char *msg)
{
    json_t *e = em_errors_new();
    em_errors_add(e, "", keyword, "%s", msg);
    return e;
}

/* Archives one item inside the open transaction.  On success fills the outcome and advances
 * *seq/chain for a new row.  Returns 0, or -1 when a statement failed (store errstr). */
static int s_apply(archive_t *self, archive_item_t *it, int64_t *seq, char chain[65])
{
    json_decref(it->out_errors);
    it->out_errors = NULL;
    it->seq = 0;
    if (!it->ok) {
        if (s_dead(self, it, "invalid", it->in_errors, 0, 0) != 0)
            return -1;
        it->status = ST_REJECTED;
        it->out_errors = json_incref(it->in_errors);
        return 0;
    }
    char next[32], next_chain[65], tus[32], rcv[32];
    const char *time_param = NULL;
    long long us;
    if (s_time_us(s_attr(it, "time"), &us)) {
        snprintf(tus, sizeof tus, "%lld", us);
        time_param = tus;
    }
    json_t *rj = json_object_get(it->hdr, "rcv");
    snprintf(rcv, sizeof rcv, "%" JSON_INTEGER_FORMAT, json_integer_value(rj));
    snprintf(next, sizeof next, "%" PRId64, *seq + 1);
    if (em_chain_next_hex(chain, it->digest, next_chain) != 0) {
        EM_LOG_ERROR(MOD, "chain: bad hex in the previous chain or digest");
        return -1;
    }
    const char *v[15] = {next,
                         it->source,
                         it->id,
                         it->type,
                         s_attr(it, "subject"),
                         time_param,
                         json_is_integer(rj) ? rcv : NULL,
                         json_string_value(json_object_get(it->hdr, "prod")),
                         s_attr(it, "visibility"),
                         s_attr(it, "projectid"),
                         s_attr(it, "province"),
                         it->raw,
                         it->digest,
                         next_chain,
                         it->notes_text};
    PGresult *res = em_store_exec(self->store, "archive_insert", 15, v);
    if (!res)
        return -1;
    if (PQntuples(res) != 1) {
        PQclear(res);
        EM_LOG_ERROR(MOD, "insert returned no row");
        return -1;
    }
    bool fresh = strcmp(PQgetvalue(res, 0, 0), "new") == 0;
    int64_t got = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    if (fresh) {
        *seq = got;
        memcpy(chain, next_chain, 65);
        it->status = ST_ACCEPTED;
        it->seq = got;
        memcpy(it->stored_digest, it->digest, 65);
        PQclear(res);
        return 0;
    }
    snprintf(it->stored_digest, sizeof it->stored_digest, "%s", PQgetvalue(res, 0, 2));
    PQclear(res);
    it->seq = got;
    if (strcmp(it->stored_digest, it->digest) == 0) {
        it->status = ST_DUPLICATE;
        return 0;
    }
    it->status = ST_CONFLICT;
    char msg[256];
    snprintf(msg, sizeof msg,
             "(source, id) already archived at seq %lld with a different payload; the "
             "original is kept",
             (long long)got);
    it->out_errors = s_one_error("conflict", msg);
    return s_dead(self, it, "conflict", it->out_errors, got, 0);
}

/* One attempt at the whole batch in one transaction.  per_event: each event under its own
 * savepoint, so that an event PostgreSQL refuses becomes a store_error dead letter alone. */
static int s_transaction(archive_t *self, bool per_event)
{
    int64_t seq = self->last_seq;
    char chain[65];
    memcpy(chain, self->last_chain, sizeof chain);
    if (em_store_command(self->store, "BEGIN") != 0)
        return TX_RETRY;
    for (int i = 0; i < self->n; i++) {
        archive_item_t *it = &self->batch[i];
        if (per_event && em_store_command(self->store, "SAVEPOINT ev") != 0)
            goto retry;
        if (s_apply(self, it, &seq, chain) == 0)
            continue;
        if (em_store_retryable(self->store))
            goto retry;
        if (!per_event) {
            EM_LOG_EV(EM_LOG_LVL_WARN, MOD, it->id,
                      "event refused by postgres (%s): redoing the batch event by event",
                      em_store_errstr(self->store));
            em_store_command(self->store, "ROLLBACK");
            return TX_ROW_ERROR;
        }
        /* Keep the message before ROLLBACK TO overwrites it.  An event that was already a
         * dead letter (its letter was refused) stays "invalid" with its own errors. */
        const char *reason = it->ok ? "store_error" : "invalid";
        json_decref(it->out_errors);
        if (it->ok) {
            char msg[600];
            snprintf(msg, sizeof msg, "postgres refused the event: %s",
                     em_store_errstr(self->store));
            it->out_errors = s_one_error("store", msg);
        } else {
            it->out_errors = json_incref(it->in_errors);
        }
        EM_LOG_EV(EM_LOG_LVL_WARN, MOD, it->id, "dead letter (%s) after postgres refused: %s",
                  reason, em_store_errstr(self->store));
        /* The dead letter, with less of the event at each attempt, so that no content can
         * block the pipeline. */
        int stored = -1;
        for (int level = it->ok ? 0 : 1; level < 3 && stored != 0; level++) {
            if (em_store_command(self->store, "ROLLBACK TO SAVEPOINT ev") != 0)
                goto retry;
            stored = s_dead(self, it, reason, it->out_errors, 0, level);
            if (stored != 0 && em_store_retryable(self->store))
                goto retry;
        }
        if (stored != 0)
            goto retry; /* not even the dead letter goes in: try the batch again later */
        it->status = ST_REJECTED;
        it->seq = 0;
    }
    if (em_store_command(self->store, "COMMIT") != 0) {
        if (!per_event && !em_store_retryable(self->store)) {
            em_store_command(self->store, "ROLLBACK");
            return TX_ROW_ERROR;
        }
        goto retry;
    }
    self->last_seq = seq;
    memcpy(self->last_chain, chain, sizeof chain);
    return TX_OK;
retry:
    EM_LOG_WARN(MOD, "batch of %d not committed: %s", self->n, em_store_errstr(self->store));
    if (em_store_connected(self->store))
        em_store_command(self->store, "ROLLBACK");
    return TX_RETRY;
}

/* Sets key to a JSON string copy of s (NULL or not UTF-8: JSON null).  Returns 0 or -1. */
static int s_set_str(json_t *obj, const char *key, const char *s)
{
    return json_object_set_new(obj, key, s ? json_string(s) : json_null());
}

/* Runs one set-based statement with a jsonb array parameter.  Returns the result or NULL. */
static PGresult *s_exec_rows(archive_t *self, const char *name, json_t *rows)
{
    char *text = json_dumps(rows, JSON_COMPACT);
    if (!text)
        return NULL;
    const char *v[1] = {text};
    PGresult *res = em_store_exec(self->store, name, 1, v);
    free(text);
    return res;
}

/* The fast path: the whole batch in a handful of round trips (lookup, multi-row insert of the
 * new events, multi-row insert of the dead letters) whatever its size.  The outcome is the
 * same as applying the events one after another.  Returns TX_OK, TX_RETRY, or TX_ROW_ERROR
 * when PostgreSQL refused something (the caller then goes event by event). */
static int s_transaction_set(archive_t *self)
{
    int64_t seq = self->last_seq;
    char chain[65];
    int rc = TX_ROW_ERROR;
    json_t *keys = json_array(), *rows = json_array(), *dead = json_array();
    PGresult *res = NULL;
    memcpy(chain, self->last_chain, sizeof chain);
    for (int i = 0; i < self->n; i++) {
        archive_item_t *it = &self->batch[i];
        json_decref(it->out_errors);
        it->out_errors = NULL;
        it->seq = 0;
        it->stored_digest[0] = '\0';
        it->status = -1;
        if (it->ok) {
            json_t *k = json_object();
            json_object_set_new(k, "i", json_integer(i));
            if (s_set_str(k, "source", it->source) || s_set_str(k, "id", it->id) ||
                json_array_append_new(keys, k))
                goto done;
        }
    }
    if (em_store_command(self->store, "BEGIN") != 0)
        goto fail;
    if (json_array_size(keys) > 0) {
        res = s_exec_rows(self, "archive_lookup", keys);
        if (!res)
            goto fail;
        for (int r = 0; r < PQntuples(res); r++) {
            int i = atoi(PQgetvalue(res, r, 0));
            if (i < 0 || i >= self->n)
                continue;
            self->batch[i].seq = strtoll(PQgetvalue(res, r, 1), NULL, 10);
            snprintf(self->batch[i].stored_digest, 65, "%s", PQgetvalue(res, r, 2));
        }
        PQclear(res);
        res = NULL;
    }
    for (int i = 0; i < self->n; i++) {
        archive_item_t *it = &self->batch[i];
        if (!it->ok) {
            it->status = ST_REJECTED;
            it->out_errors = json_incref(it->in_errors);
            continue;
        }
        if (it->seq == 0) { /* not archived before: maybe earlier in this batch */
            for (int j = 0; j < i; j++) {
                archive_item_t *o = &self->batch[j];
                if (o->ok && o->seq > 0 && strcmp(o->source, it->source) == 0 &&
                    strcmp(o->id, it->id) == 0) {
                    it->seq = o->seq;
                    memcpy(it->stored_digest, o->stored_digest, 65);
                    break;
                }
            }
        }
        if (it->seq == 0) {
            char next_chain[65];
            long long us = 0;
            bool has_time = s_time_us(s_attr(it, "time"), &us);
            if (em_chain_next_hex(chain, it->digest, next_chain) != 0)
                goto done;
            it->status = ST_ACCEPTED;
            it->seq = ++seq;
            memcpy(chain, next_chain, sizeof chain);
            memcpy(it->stored_digest, it->digest, 65);
            json_t *row = json_object();
            json_t *rcv = json_object_get(it->hdr, "rcv");
            json_object_set_new(row, "seq", json_integer(it->seq));
            json_object_set_new(row, "tus", has_time ? json_integer(us) : json_null());
            json_object_set_new(row, "rcv", json_is_integer(rcv) ? json_incref(rcv) : json_null());
            if (s_set_str(row, "source", it->source) || s_set_str(row, "id", it->id) ||
                s_set_str(row, "type", it->type) ||
                s_set_str(row, "subject", s_attr(it, "subject")) ||
                s_set_str(row, "prod", json_string_value(json_object_get(it->hdr, "prod"))) ||
                s_set_str(row, "visibility", s_attr(it, "visibility")) ||
                s_set_str(row, "projectid", s_attr(it, "projectid")) ||
                s_set_str(row, "province", s_attr(it, "province")) ||
                json_object_set_new(row, "raw", json_stringn(it->raw, it->rawlen)) ||
                s_set_str(row, "digest", it->digest) || s_set_str(row, "chain", next_chain) ||
                s_set_str(row, "notes", it->notes_text) || json_array_append_new(rows, row))
                goto done;
            continue;
        }
        if (strcmp(it->stored_digest, it->digest) == 0) {
            it->status = ST_DUPLICATE;
            continue;
        }
        char msg[256];
        snprintf(msg, sizeof msg,
                 "(source, id) already archived at seq %lld with a different payload; the "
                 "original is kept",
                 (long long)it->seq);
        it->status = ST_CONFLICT;
        it->out_errors = s_one_error("conflict", msg);
    }
    for (int i = 0; i < self->n; i++) {
        archive_item_t *it = &self->batch[i];
        if (it->status != ST_REJECTED && it->status != ST_CONFLICT)
            continue;
        char *raw = s_text_safe(it->raw ? it->raw : "", it->raw ? it->rawlen : 0);
        json_t *rcv = json_object_get(it->hdr, "rcv");
        json_t *d = json_pack("{s:i, s:O, s:s}", "i", i, "rcv",
                              json_is_integer(rcv) ? rcv : json_null(), "reason",
                              it->status == ST_CONFLICT ? "conflict" : "invalid");
        int bad = !d || !raw || json_object_set_new(d, "raw", json_string(raw)) ||
                  json_object_set(d, "errors", it->out_errors ? it->out_errors : json_null()) ||
                  json_object_set_new(d, "existing_seq", it->status == ST_CONFLICT
                                                             ? json_integer(it->seq)
                                                             : json_null());
        free(raw);
        const char *idents[4][2] = {{"prod", json_string_value(json_object_get(it->hdr, "prod"))},
                                    {"source", it->source},
                                    {"id", it->id},
                                    {"type", it->type}};
        for (int k = 0; k < 4 && !bad; k++) {
            char *safe = idents[k][1] ? s_text_safe(idents[k][1], strlen(idents[k][1])) : NULL;
            bad = s_set_str(d, idents[k][0], safe) != 0;
            free(safe);
        }
        if (bad || json_array_append_new(dead, d)) {
            if (bad)
                json_decref(d);
            goto fail_rollback;
        }
    }
    if (json_array_size(rows) > 0 && !(res = s_exec_rows(self, "archive_insert_many", rows)))
        goto fail;
    PQclear(res);
    res = NULL;
    if (json_array_size(dead) > 0 && !(res = s_exec_rows(self, "archive_dead_many", dead)))
        goto fail;
    PQclear(res);
    res = NULL;
    if (em_store_command(self->store, "COMMIT") != 0)
        goto fail;
    self->last_seq = seq;
    memcpy(self->last_chain, chain, sizeof chain);
    rc = TX_OK;
    goto done;
fail:
    rc = em_store_retryable(self->store) ? TX_RETRY : TX_ROW_ERROR;
    if (rc == TX_ROW_ERROR)
        EM_LOG_DEBUG(MOD, "batch of %d refused as a set (%s): going event by event", self->n,
                     em_store_errstr(self->store));
fail_rollback:
    if (em_store_connected(self->store))
        em_store_command(self->store, "ROLLBACK");
done:
    json_decref(keys);
    json_decref(rows);
    json_decref(dead);
    return rc;
}

/* Replaces the JSON escape \u0000 by \ufffd in place (same length): a consumer parsing with
 * Jansson's defaults refuses NUL in strings, and an ack must always be readable. */
static void s_scrub_nul(char *text)
{
    for (char *p = strstr(text, "\\u0000"); p; p = strstr(p + 1, "\\u0000")) {
        size_t backslashes = 0;
        for (char *q = p; q >= text && *q == '\\'; q--)
            backslashes++;
        if (backslashes % 2 == 1)
            memcpy(p + 2, "fffd", 4);
    }
}

/* Publishes the acks, grouped by ingest id, in batch order. */
static void s_publish_acks(archive_t *self)
{
    bool *done = self->n > 0 ? calloc((size_t)self->n, sizeof *done) : NULL;
    if (!done)
        return;
    for (int i = 0; i < self->n; i++) {
        if (done[i] || !self->batch[i].ing) {
            if (!self->batch[i].ing && !done[i])
                EM_LOG_EV(EM_LOG_LVL_WARN, MOD, self->batch[i].id,
                          "no ingest id in the header: %s not acknowledged",
                          s_status_name[self->batch[i].status]);
            continue;
        }
        const char *ing = self->batch[i].ing;
        json_t *arr = json_array();
        for (int j = i; j < self->n; j++) {
            archive_item_t *it = &self->batch[j];
            if (done[j] || !it->ing || strcmp(it->ing, ing) != 0)
                continue;
            done[j] = true;
            json_t *r = json_object();
            json_t *req = json_object_get(it->hdr, "req");
            json_t *idx = json_object_get(it->hdr, "idx");
            json_object_set_new(r, "req", req ? json_incref(req) : json_integer(0));
            json_object_set_new(r, "idx", idx ? json_incref(idx) : json_integer(0));
            json_object_set_new(r, "status", json_string(s_status_name[it->status]));
            if (it->seq > 0)
                json_object_set_new(r, "seq", json_integer(it->seq));
            if (it->out_errors)
                json_object_set(r, "errors", it->out_errors);
            /* Notes with the outcome they belong to: the event just archived (or refused);
             * a duplicate's or a conflict's answer is about the original and carries none. */
            if (it->notes && (it->status == ST_ACCEPTED || it->status == ST_REJECTED))
                json_object_set(r, "notes", it->notes);
            if (it->id)
                json_object_set_new(r, "id", json_string(it->id));
            if (it->source)
                json_object_set_new(r, "source", json_string(it->source));
            json_array_append_new(arr, r);
        }
        char *text = json_dumps(arr, JSON_COMPACT);
        json_decref(arr);
        if (text) {
            s_scrub_nul(text);
            const void *data[2] = {ing, text};
            size_t lens[2] = {strlen(ing), strlen(text)};
            if (em_bus_sendv(self->acks, data, lens, 2, ZMQ_DONTWAIT) != 0)
                EM_LOG_WARN(MOD, "ack to %s not sent: %s", ing, zmq_strerror(errno));
            free(text);
        }
    }
    free(done);
}

/* Publishes the newly committed events in seq order (the batch order). */
static void s_publish_events(archive_t *self)
{
    char head[48];
    for (int i = 0; i < self->n; i++) {
        archive_item_t *it = &self->batch[i];
        if (it->status != ST_ACCEPTED)
            continue;
        int hl = snprintf(head, sizeof head, "{\"seq\":%" PRId64 "}", it->seq);
        const void *data[3] = {"ev", head, it->raw};
        size_t lens[3] = {2, (size_t)hl, it->rawlen};
        if (em_bus_sendv(self->events, data, lens, 3, ZMQ_DONTWAIT) != 0)
            EM_LOG_WARN(MOD, "event %" PRId64 " not published: %s", it->seq,
                        zmq_strerror(errno));
    }
}

/* Writes the committed facts to the seen cache; failures only cost speed. */
static void s_cache_seen(archive_t *self)
{
    em_seen_t *items = self->n > 0 ? calloc((size_t)self->n, sizeof *items) : NULL;
    size_t k = 0;
    if (!items)
        return;
    for (int i = 0; i < self->n; i++) {
        archive_item_t *it = &self->batch[i];
        if (it->status == ST_REJECTED || it->seq <= 0 || !it->stored_digest[0])
            continue;
        items[k++] = (em_seen_t){it->source, it->id, it->seq, it->stored_digest};
    }
    if (k > 0 && em_cache_seen_put(self->cache, items, k, self->cfg.seen_ttl_s) != 0)
        EM_LOG_DEBUG(MOD, "seen cache not written: %s", em_cache_errstr(self->cache));
    free(items);
}

int archive_flush(archive_t *self)
{
    if (!self || self->n == 0)
        return 0;
    if (!self->writer || !self->pull) {
        self->held = true;
        return -1;
    }
    int64_t t0 = em_mono_us();
    int rc = s_transaction_set(self);
    if (rc == TX_ROW_ERROR)
        rc = s_transaction(self, false);
    if (rc == TX_ROW_ERROR)
        rc = s_transaction(self, true);
    if (rc != TX_OK) {
        /* PostgreSQL is away: keep the batch, stop reading, reconnect and retake the lock. */
        self->held = true;
        self->writer = false;
        self->not_ready = "postgres unavailable: batch held";
        s_backoff(self);
        return -1;
    }
    double secs = (double)(em_mono_us() - t0) / 1e6;
    s_publish_acks(self);
    s_publish_events(self);
    s_cache_seen(self);
    for (int i = 0; i < self->n; i++)
        em_metric_add(self->m_events[self->batch[i].status], 1);
    em_metric_add(self->m_batches, 1);
    em_metric_observe(self->m_batch_size, self->n);
    em_metric_observe(self->m_commit, secs);
    em_metric_set(self->m_last_seq, (double)self->last_seq);
    EM_LOG_DEBUG(MOD, "committed %d messages in %.1f ms, last seq %lld", self->n, secs * 1e3,
                 (long long)self->last_seq);
    s_drop_batch(self);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Admin HTTP */

typedef struct {
    char *p;
    size_t len, cap;
} s_buf_t;

static void s_buf_add(s_buf_t *b, const char *s, size_t n)
{
    if (!b->p && b->cap == SIZE_MAX)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            free(b->p);
            b->p = NULL;
            b->cap = SIZE_MAX;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void s_respond_json(em_http_req_t *req, int status, const char *body)
{
    em_http_respond(req, status, "application/json", body, strlen(body));
}

/* Parses a non-negative decimal; returns 0 or -1. */
static int s_parse_u64(const char *s, long long *out)
{
    char *end;
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno || v < 0)
        return -1;
    *out = v;
    return 0;
}

/* GET /v1/events?after=SEQ&limit=N[&type=T][&source=S][&subject=S][&projectid=P]
 * -> {"events":[{"seq":N,"event":{...}[,"notes":[...]]}]} in seq order (notes: validate's
 * findings that did not reject, present only when there are some), at most limit (<= 1000) events, with
 * the archived envelopes as PostgreSQL renders them (numbers exact).  Exact-match filters. */
static void s_http_events(archive_t *self, em_http_req_t *req)
{
    long long after = 0, limit = 100;
    const char *qa = em_http_req_query(req, "after");
    const char *ql = em_http_req_query(req, "limit");
    if ((qa && s_parse_u64(qa, &after) != 0) || (ql && s_parse_u64(ql, &limit) != 0) ||
        limit < 1) {
        s_respond_json(req, 400,
                       "{\"error\":\"after must be a seq >= 0 and limit an integer >= 1\"}");
        return;
    }
    if (limit > ARCHIVE_PAGE_MAX)
        limit = ARCHIVE_PAGE_MAX;
    if (!self->store || !em_store_connected(self->store)) {
        s_respond_json(req, 503, "{\"error\":\"postgres unavailable\"}");
        return;
    }
    char a[32], l[32];
    snprintf(a, sizeof a, "%lld", after);
    snprintf(l, sizeof l, "%lld", limit);
    const char *v[6] = {a,
                        l,
                        em_http_req_query(req, "type"),
                        em_http_req_query(req, "source"),
                        em_http_req_query(req, "subject"),
                        em_http_req_query(req, "projectid")};
    PGresult *res = em_store_query(self->store,
                                   "SELECT seq, envelope::text, notes::text FROM events"
                                   " WHERE seq > $1::bigint"
                                   " AND ($3::text IS NULL OR type = $3)"
                                   " AND ($4::text IS NULL OR source = $4)"
                                   " AND ($5::text IS NULL OR subject = $5)"
                                   " AND ($6::text IS NULL OR projectid = $6)"
                                   " ORDER BY seq LIMIT $2::integer",
                                   6, v);
    if (!res) {
        EM_LOG_WARN(MOD, "GET /v1/events: %s", em_store_errstr(self->store));
        s_respond_json(req, 503, "{\"error\":\"postgres unavailable\"}");
        return;
    }
    s_buf_t b = {0};
    s_buf_add(&b, "{\"events\":[", 11);
    for (int i = 0; i < PQntuples(res); i++) {
        const char *seq = PQgetvalue(res, i, 0);
        const char *env = PQgetvalue(res, i, 1);
        if (i > 0)
            s_buf_add(&b, ",", 1);
        s_buf_add(&b, "{\"seq\":", 7);
        s_buf_add(&b, seq, strlen(seq));
        s_buf_add(&b, ",\"event\":", 9);
        s_buf_add(&b, env, strlen(env));
        if (!PQgetisnull(res, i, 2)) {
            const char *notes = PQgetvalue(res, i, 2);
            s_buf_add(&b, ",\"notes\":", 9);
            s_buf_add(&b, notes, strlen(notes));
        }
        s_buf_add(&b, "}", 1);
    }
    s_buf_add(&b, "]}", 2);
    PQclear(res);
    if (!b.p) {
        s_respond_json(req, 500, "{\"error\":\"out of memory\"}");
        return;
    }
    em_http_respond(req, 200, "application/json", b.p, b.len);
    free(b.p);
}

static void s_http_handler(void *arg, em_http_req_t *req)
{
    archive_t *self = arg;
    const char *method = em_http_req_method(req);
    const char *path = em_http_req_path(req);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        em_http_add_header(req, "Allow", "GET");
        s_respond_json(req, 405, "{\"error\":\"method not allowed\"}");
    } else if (strcmp(path, "/healthz") == 0) {
        em_http_respond(req, 200, "text/plain", "ok\n", 3);
    } else if (strcmp(path, "/readyz") == 0) {
        if (archive_is_active(self)) {
            s_respond_json(req, 200, "{\"status\":\"ready\"}");
        } else {
            json_t *j = json_pack("{s:s, s:s}", "status", "not ready", "reason",
                                  self->not_ready ? self->not_ready : "postgres unavailable");
            char *t = json_dumps(j, JSON_COMPACT);
            s_respond_json(req, 503, t ? t : "{}");
            free(t);
            json_decref(j);
        }
    } else if (strcmp(path, "/metrics") == 0) {
        char *t = em_metrics_render(self->metrics);
        em_http_respond(req, 200, "text/plain; version=0.0.4", t ? t : "", t ? strlen(t) : 0);
        free(t);
    } else if (strcmp(path, "/v1/events") == 0) {
        s_http_events(self, req);
    } else {
        s_respond_json(req, 404, "{\"error\":\"not found\"}");
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Lifecycle and loop */

int archive_is_active(const archive_t *self)
{
    return self && self->writer && !self->held && self->pull && self->store &&
           em_store_connected(self->store);
}

int archive_http_port(archive_t *self)
{
    return self && self->http ? em_http_port(self->http) : -1;
}

long long archive_last_seq(const archive_t *self)
{
    return self ? (long long)self->last_seq : 0;
}

int archive_dump_config(const char *config_path, FILE *out)
{
    archive_cfg_t cfg;
    char err[EM_ERR_LEN];
    memset(&cfg, 0, sizeof cfg);
    if (em_config_load(config_path, s_config, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "emine-archive: %s\n", err);
        em_config_release(s_config, &cfg);
        return -1;
    }
    em_config_dump(s_config, &cfg, out);
    em_config_release(s_config, &cfg);
    return 0;
}

archive_t *archive_new(const char *config_path)
{
    char err[EM_ERR_LEN];
    archive_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    if (em_config_load(config_path, s_config, &self->cfg, err, sizeof err) != 0) {
        self->cfg_loaded = true;
        EM_LOG_ERROR(MOD, "config: %s", err);
        goto fail;
    }
    self->cfg_loaded = true;
    int level = em_log_level_parse(self->cfg.shared.log_level);
    if (level < 0) {
        EM_LOG_ERROR(MOD, "config: [log] level must be error, warn, info or debug");
        goto fail;
    }
    em_log_init("archive", level);
    if (self->cfg.batch_max < 1 || self->cfg.batch_max > 10000 || self->cfg.batch_ms < 0 ||
        self->cfg.seen_ttl_s < 1) {
        EM_LOG_ERROR(MOD, "config: [archive] batch_max must be 1..10000, batch_ms >= 0, "
                          "seen_ttl_s >= 1");
        goto fail;
    }
    self->batch = calloc((size_t)self->cfg.batch_max, sizeof *self->batch);
    self->metrics = em_metrics_new("emine_archive");
    self->zctx = zmq_ctx_new();
    if (!self->batch || !self->metrics || !self->zctx) {
        EM_LOG_ERROR(MOD, "out of memory");
        goto fail;
    }
    self->cache = em_cache_new(self->cfg.shared.redis_url, 500, err, sizeof err);
    if (!self->cache) {
        EM_LOG_ERROR(MOD, "config: [redis] url: %s", err);
        goto fail;
    }
    self->http = em_http_new(self->cfg.http, 4096, s_http_handler, self, err, sizeof err);
    if (!self->http) {
        EM_LOG_ERROR(MOD, "http %s: %s", self->cfg.http, err);
        goto fail;
    }
    for (int s = 0; s < ST_COUNT; s++) {
        char labels[64];
        snprintf(labels, sizeof labels, "status=\"%s\"", s_status_name[s]);
        self->m_events[s] = em_metrics_counter(self->metrics, "events_total", labels,
                                               "events archived, by outcome");
    }
    static const double sizes[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};
    static const double secs[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                  0.05,   0.1,   0.25,   0.5,   1,    2.5};
    self->m_batches = em_metrics_counter(self->metrics, "batches_total", NULL,
                                         "transactions committed");
    self->m_batch_size = em_metrics_histogram(self->metrics, "batch_size", NULL,
                                              "messages per committed batch", sizes,
                                              sizeof sizes / sizeof sizes[0]);
    self->m_commit = em_metrics_histogram(self->metrics, "commit_seconds", NULL,
                                          "seconds from BEGIN to COMMIT of a batch", secs,
                                          sizeof secs / sizeof secs[0]);
    self->m_last_seq = em_metrics_gauge(self->metrics, "last_seq", NULL, "last committed seq");
    self->m_standby = em_metrics_gauge(self->metrics, "standby", NULL,
                                       "1 while another archive holds the writer lock");
    self->backoff_ms = ARCHIVE_BACKOFF_MIN_MS;
    self->not_ready = "postgres unavailable";
    memcpy(self->last_chain, GENESIS, sizeof self->last_chain);
    EM_LOG_INFO(MOD, "admin http on %s (port %d)", self->cfg.http, em_http_port(self->http));
    return self;
fail:
    archive_destroy(&self);
    return NULL;
}

void archive_destroy(archive_t **self_p)
{
    if (self_p && *self_p) {
        archive_t *self = *self_p;
        if (self->batch) {
            s_drop_batch(self);
            free(self->batch);
        }
        s_unbind(self);
        if (self->zctx)
            zmq_ctx_term(self->zctx);
        em_http_destroy(&self->http);
        em_store_destroy(&self->store);
        em_cache_destroy(&self->cache);
        em_metrics_destroy(&self->metrics);
        if (self->cfg_loaded)
            em_config_release(s_config, &self->cfg);
        free(self);
        *self_p = NULL;
    }
}

/* Reads what the PULL socket has, up to a full batch. */
static void s_handle_pull(archive_t *self)
{
    while (self->n < self->cfg.batch_max) {
        em_msg_t msg;
        if (em_msg_recv(self->pull, &msg, ZMQ_DONTWAIT) < 0) {
            if (errno != EAGAIN && errno != EINTR)
                EM_LOG_WARN(MOD, "receive: %s", zmq_strerror(errno));
            break;
        }
        if (self->n == 0)
            self->first_ms = em_mono_ms();
        s_item_fill(&self->batch[self->n++], &msg);
        em_msg_close(&msg);
    }
}

/* While idle, checks every ARCHIVE_CHECK_MS that the writer's session (and so its lock) is
 * still there; a lost session means another archive may be the writer by now. */
static void s_check_writer(archive_t *self)
{
    int64_t now = em_mono_ms();
    if (!archive_is_active(self) || self->n > 0 || now - self->last_check_ms < ARCHIVE_CHECK_MS)
        return;
    self->last_check_ms = now;
    PGresult *res = em_store_query(self->store, "SELECT 1", 0, NULL);
    if (res) {
        PQclear(res);
        return;
    }
    EM_LOG_WARN(MOD, "postgres: %s; reconnecting", em_store_errstr(self->store));
    self->writer = false;
    self->not_ready = "postgres unavailable";
    self->next_try_ms = 0;
}

static void s_heartbeat(archive_t *self)
{
    char body[64];
    int64_t now = em_mono_ms();
    if (!self->acks || now - self->last_hb_ms < ARCHIVE_HEARTBEAT_MS)
        return;
    self->last_hb_ms = now;
    int len = snprintf(body, sizeof body, "{\"seq\":%" PRId64 "}", self->last_seq);
    const void *data[2] = {"hb", body};
    size_t lens[2] = {2, (size_t)len};
    em_bus_sendv(self->acks, data, lens, 2, ZMQ_DONTWAIT);
}

int archive_step(archive_t *self, int timeout_ms)
{
    int64_t now = em_mono_ms();
    bool reading = archive_is_active(self) && self->n < self->cfg.batch_max &&
                   now >= self->read_after_ms;
    long t = timeout_ms < 0 ? 1000 : timeout_ms;
    if (archive_is_active(self) && now < self->read_after_ms && self->read_after_ms - now < t)
        t = (long)(self->read_after_ms - now);
    long ht = em_http_timeout_ms(self->http);
    if (ht >= 0 && ht < t)
        t = ht;
    if (self->n > 0 && !self->held) {
        long due = (long)(self->first_ms + self->cfg.batch_ms - now);
        if (due < t)
            t = due < 0 ? 0 : due;
    }
    if (!archive_is_active(self) || self->held) {
        long due = (long)(self->next_try_ms - now);
        if (due < t)
            t = due < 0 ? 0 : due;
    }
    if (self->acks) {
        long due = (long)(self->last_hb_ms + ARCHIVE_HEARTBEAT_MS - now);
        if (due < t)
            t = due < 0 ? 0 : due;
    }
    zmq_pollitem_t items[2] = {{NULL, em_http_fd(self->http), ZMQ_POLLIN, 0},
                               {self->pull, 0, ZMQ_POLLIN, 0}};
    int rc = zmq_poll(items, reading ? 2 : 1, t);
    if (rc == -1 && errno != EINTR) {
        EM_LOG_ERROR(MOD, "zmq_poll: %s", zmq_strerror(errno));
        return -1;
    }
    if (rc > 0 && reading && (items[1].revents & ZMQ_POLLIN))
        s_handle_pull(self);
    em_http_run(self->http);
    if (!archive_is_active(self) || self->held) {
        if (s_connect(self) != 0)
            return -1;
        if (self->held && self->writer && self->pull && em_store_connected(self->store)) {
            self->held = false; /* connected again: retry the batch now */
            archive_flush(self);
        }
    }
    now = em_mono_ms();
    if (self->n > 0 && !self->held &&
        (self->n >= self->cfg.batch_max || now >= self->first_ms + self->cfg.batch_ms))
        archive_flush(self);
    s_check_writer(self);
    s_heartbeat(self);
    return 0;
}

int archive_run(archive_t *self)
{
    int rc = 0;
    while (!em_signal_interrupted()) {
        if (archive_step(self, 1000) != 0) {
            rc = -1;
            break;
        }
    }
    /* Stop reading; commit and ack what is in hand (one more try if PostgreSQL is away). */
    if (self->n > 0) {
        if (self->held) {
            self->next_try_ms = 0;
            s_connect(self);
            self->held = false;
        }
        if (archive_flush(self) != 0)
            EM_LOG_WARN(MOD, "%d messages not committed at shutdown: producers will retry",
                        self->n);
    }
    EM_LOG_INFO(MOD, "stopped at seq %lld", (long long)self->last_seq);
    return rc;
}
