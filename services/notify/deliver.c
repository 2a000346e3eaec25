/* deliver.c - webhook delivery (see deliver.h): libcurl's multi_socket interface, whose
 * sockets and timer join notify's zmq_poll loop; one PostgreSQL connection of its own. */
#include "deliver.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "em_config.h"
#include "em_filter.h"
#include "em_log.h"
#include "em_signal.h"
#include "em_store.h"
#include "em_template.h"
#include "em_util.h"
#include "em_webhook.h"

#define MOD "deliver"
#define MAX_SCHEDULE 32
#define RETRY_AFTER_MAX_S 3600
#define PG_RETRY_MS 1000
#define SKIP_MAX 2000 /* non-matching events skipped per subscription per run */
#define WINDOW_MAX 4096                     /* events in the shared window */
#define WINDOW_BYTES ((size_t)64 << 20)     /* estimated bytes (text + parsed) it may hold */
#define WEV_COST(len) (sizeof(wev_t) + (len) * 6) /* text plus a rough Jansson tree */

/* A committed event read from PostgreSQL: its text, parsed once on first use, shared by the
 * window and every subscription page that holds a reference. */
typedef struct {
    int64_t seq;
    char *text;  /* envelope JSON text, NUL-terminated */
    size_t len;
    json_t *ev;  /* parsed on first use */
    bool parsed; /* ev was attempted (NULL then means not JSON) */
    int refs;
    /* The last delivered text built for it (summaries spliced in), and for which languages
     * and zone: subscriptions that share them share the rendering. */
    char *body_key;
    char *body;
    size_t body_len;
} wev_t;
#define TEMPLATES_DIR "config/templates"
#define SCHEMAS_DIR "config/schemas" /* checks data members of templates when present */

/* A list of strings owned by its subscription. */
typedef struct {
    char **v;
    size_t n;
} strv_t;

/* What a libcurl transfer's CURLOPT_PRIVATE points to: the first member of a subscription
 * (its in-order delivery) or of a redrive job. */
typedef enum { X_SUB, X_REDRIVE } xfer_kind_t;

typedef struct {
    xfer_kind_t kind;
    struct notify_deliver *owner;
    CURL *easy;           /* NULL when nothing is in flight */
    CURL *handle;         /* the easy handle, kept between requests (NULL before the first) */
    struct curl_slist *hdrs;
    long retry_after_s;   /* from the answer, -1 when none */
    bool refused;         /* the sink's address was refused (SSRF) */
} xfer_t;

typedef struct dsub {
    xfer_t x;             /* first member */
    char *id;
    char *updated;       /* updated_at text: a change reloads the definition */
    char *org_id;
    em_org_t org;        /* points into kind/province/parties/sources below */
    char *province;
    strv_t parties, sources, types, provinces, minerals, projects, licences;
    em_domain_filter_t domain;
    em_filter_t *filter;
    em_webhook_t *wh;
    char *sink;
    char *endpoint;       /* scheme://host:port of the sink: its circuit breaker */
    struct curl_slist *extra; /* protocolsettings.headers as "Name: value" */
    strv_t langs;         /* preferred languages, in order */
    char *zone;           /* time zone of the summaries */

    int64_t cursor;       /* every event <= cursor is done for this subscription */
    int64_t persisted;    /* cursor value in PostgreSQL */
    wev_t **page;         /* events after cursor, in seq order (references) */
    int page_n, page_i;   /* page[page_i .. page_n) are still to be done */
    bool seen;            /* mark for the reload sweep */
    bool gone;            /* deleted or disabled: freed once nothing is in flight */

    /* The event being delivered (page row page_i) */
    int64_t seq;
    char *body;           /* its delivered text (with summaries), NULL: the archived text */
    size_t body_len;
    int attempts;
    int64_t next_attempt; /* monotonic ms */
    long last_status;
    char last_error[256];
} dsub_t;

/* A dead letter being re-sent (one attempt; see notify_deliver_run). */
typedef struct {
    xfer_t x;             /* first member */
    int64_t dl_id;        /* delivery_dead_letters.id */
    int64_t seq;
    char sub_id[72];
    char *body;
    size_t len;
} redrive_t;

#define REDRIVE_MAX 16

/* A circuit breaker per endpoint: `failures` consecutive failed attempts (transport errors,
 * 5xx, 429) across every subscription to the endpoint open it for open_ms, during which no
 * request is sent to it (and no subscription's retry schedule is spent); then one probe is
 * let through: success closes it, failure opens it again. */
typedef struct {
    char *endpoint;
    int failures;
    int64_t open_until; /* monotonic ms; 0 when closed */
    bool probing;       /* half-open: the probe is in flight */
} breaker_t;

typedef struct {
    curl_socket_t fd;
    int what; /* CURL_POLL_IN / OUT / INOUT */
} sock_t;

struct notify_deliver {
    notify_deliver_cfg_t cfg;
    char *dsn;
    char *retry_text;
    int64_t schedule[MAX_SCHEDULE];
    int nschedule;
    em_store_t *store;
    char err[EM_ERR_LEN];
    int64_t pg_retry_at;
    CURLM *multi;
    int64_t curl_due;   /* monotonic ms of libcurl's timer, or -1 */
    sock_t socks[DELIVER_MAX_FDS];
    int nsocks;
    dsub_t **subs;
    int nsubs, capsubs;
    breaker_t *breakers;
    int nbreakers, capbreakers;
    redrive_t *redrives[REDRIVE_MAX]; /* in flight */
    int nredrives;
    bool redrive_more;    /* the last poll found work: poll again once these are done */
    int inflight;
    /* The shared window: the latest events read, seq win_lo .. win_lo + win_n - 1 with no
     * gap, so that subscriptions that keep up read each event from PostgreSQL and parse it
     * once between them.  Bounded by WINDOW_MAX events and WINDOW_BYTES. */
    wev_t *win[WINDOW_MAX];
    int win_first, win_n;
    int64_t win_lo;
    size_t win_bytes;
    int64_t m_pages;      /* PostgreSQL pages read (tests) */
    int64_t next_reload, next_flush;
    bool loaded;
    char *templates_dir;
    em_template_t *tmpl;  /* summaries; replaced on SIGHUP */
    unsigned tmpl_gen;    /* counts the replacements (keys of the rendered bodies) */
    int hup_seen;         /* em_signal_reload_count() when the templates were loaded */
    em_metric_t *m_ok, *m_fail, *m_dead, *m_refused, *m_disabled, *m_redriven, *m_opened;
};

/* ---------------------------------------------------------------------------------------- */
/* Addresses */

static int s_v4_refused(uint32_t a)
{
    return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 ||
           (a & 0xffc00000u) == 0x64400000u || /* 100.64/10 */
           (a & 0xffff0000u) == 0xa9fe0000u || /* 169.254/16 */
           (a & 0xfff00000u) == 0xac100000u || /* 172.16/12 */
           (a & 0xffffff00u) == 0xc0000000u || /* 192.0.0/24 */
           (a & 0xffffff00u) == 0xc0000200u || /* 192.0.2/24 */
           (a & 0xffff0000u) == 0xc0a80000u || /* 192.168/16 */
           (a & 0xfffe0000u) == 0xc6120000u || /* 198.18/15 */
           (a & 0xffffff00u) == 0xc6336400u || /* 198.51.100/24 */
           (a & 0xffffff00u) == 0xcb007100u || /* 203.0.113/24 */
           (a >> 28) >= 0xe;                   /* multicast, reserved, broadcast */
}

int notify_deliver_addr_refused(const struct sockaddr *sa)
{
    if (!sa)
        return 1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return s_v4_refused(ntohl(in->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        const uint8_t *b = in6->sin6_addr.s6_addr;
        static const uint8_t zero[16];
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
        if (memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1))
            return 1; /* :: and ::1 */
        if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0 || memcmp(b, zero, 12) == 0)
            return s_v4_refused((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
                                (uint32_t)b[14] << 8 | b[15]);
        if ((b[0] & 0xfe) == 0xfc)                 /* fc00::/7 unique local */
            return 1;
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) /* fe80::/10 link-local */
            return 1;
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) /* fec0::/10 site-local */
            return 1;
        if (b[0] == 0xff)                          /* multicast */
            return 1;
        if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) /* documentation */
            return 1;
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Subscriptions */

static wev_t *s_wev_new(int64_t seq, const char *text, size_t len)
{
    wev_t *e = malloc(sizeof *e);
    if (!e)
        return NULL;
    e->text = malloc(len + 1);
    if (!e->text) {
        free(e);
        return NULL;
    }
    memcpy(e->text, text, len);
    e->text[len] = '\0';
    e->seq = seq;
    e->len = len;
    e->ev = NULL;
    e->parsed = false;
    e->refs = 1;
    e->body_key = e->body = NULL;
    e->body_len = 0;
    return e;
}

static void s_wev_unref(wev_t *e)
{
    if (!e || --e->refs > 0)
        return;
    json_decref(e->ev);
    free(e->body_key);
    free(e->body);
    free(e->text);
    free(e);
}

/* The parsed event (borrowed), or NULL when the text is not JSON. */
static json_t *s_wev_json(wev_t *e)
{
    if (!e->parsed) {
        e->ev = json_loadb(e->text, e->len, 0, NULL);
        e->parsed = true;
    }
    return e->ev;
}

static void s_strv_free(strv_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* Fills s from a JSON array text of strings.  Returns 0 or -1. */
static int s_strv_parse(strv_t *s, const char *text)
{
    json_t *a = json_loads(text, 0, NULL);
    int rc = 0;
    s_strv_free(s);
    if (!json_is_array(a)) {
        json_decref(a);
        return -1;
    }
    s->v = calloc(json_array_size(a) + 1, sizeof *s->v);
    for (size_t i = 0; s->v && i < json_array_size(a); i++) {
        const char *v = json_string_value(json_array_get(a, i));
        if (!v || !(s->v[s->n] = strdup(v))) {
            rc = -1;
            break;
        }
        s->n++;
    }
    if (!s->v)
        rc = -1;
    json_decref(a);
    return rc;
}

/* Frees the definition (not the delivery state). */
static void s_def_free(dsub_t *s)
{
    free(s->updated);
    free(s->org_id);
    free(s->province);
    free(s->sink);
    free(s->endpoint);
    free(s->zone);
    s->updated = s->org_id = s->province = s->sink = s->endpoint = s->zone = NULL;
    s_strv_free(&s->langs);
    s_strv_free(&s->parties);
    s_strv_free(&s->sources);
    s_strv_free(&s->types);
    s_strv_free(&s->provinces);
    s_strv_free(&s->minerals);
    s_strv_free(&s->projects);
    s_strv_free(&s->licences);
    em_filter_destroy(&s->filter);
    em_webhook_destroy(&s->wh);
    curl_slist_free_all(s->extra);
    s->extra = NULL;
}

static void s_page_clear(dsub_t *s)
{
    for (int i = s->page_i; i < s->page_n; i++)
        s_wev_unref(s->page[i]);
    s->page_n = s->page_i = 0;
}

static void s_sub_free(dsub_t *s)
{
    if (!s)
        return;
    s_def_free(s);
    s_page_clear(s);
    free(s->page);
    if (s->x.handle)
        curl_easy_cleanup(s->x.handle);
    curl_slist_free_all(s->x.hdrs);
    free(s->body);
    free(s->id);
    free(s);
}

/* Columns of the subscription query. */
enum {
    C_ID, C_UPDATED, C_ORG, C_KIND, C_PROVINCE, C_PARTIES, C_SOURCES, C_TYPES, C_FILTERS,
    C_SINK, C_SETTINGS, C_SECRET, C_PROVINCES, C_MINERALS, C_PROJECTS, C_LICENCES, C_CURSOR,
    C_HELD, C_LANGS, C_ZONE
};

/* Sharing between notify processes: each deliverer holds the shared advisory lock
 * (LOCK_PRESENCE, 0) while it runs, so that the live ones can be counted, and the exclusive
 * lock (LOCK_SUB, hashtext(id)) of every subscription it delivers.  Each takes at most
 * ceil(active subscriptions / live deliverers) and gives one back per reload while it holds
 * more, after persisting its cursor.  The locks go with the connection: a crashed process's
 * subscriptions are taken over from their persisted cursors. */
#define LOCK_PRESENCE 1701671795
#define LOCK_SUB 1701671796

static const char s_subs_sql[] =
    "SELECT s.id, s.updated_at::text, s.org_id, o.kind, o.province,"
    " to_jsonb(o.party_ids)::text, to_jsonb(o.source_prefixes)::text,"
    " to_jsonb(s.types)::text, s.filters::text, s.sink, s.protocolsettings::text, s.secret,"
    " to_jsonb(s.provinces)::text, to_jsonb(s.minerals)::text, to_jsonb(s.project_ids)::text,"
    " to_jsonb(s.licence_ids)::text,"
    " COALESCE(c.seq, (SELECT COALESCE(max(seq), 0) FROM events)),"
    " EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
    "  AND l.pid = pg_backend_pid() AND l.classid = 1701671796 AND l.objsubid = 2"
    "  AND l.objid = (hashtext(s.id)::bigint & 4294967295)::oid),"
    " to_jsonb(s.languages)::text, COALESCE(s.timezone, CASE WHEN s.languages[1] = 'zh-Hans'"
    "  THEN 'Asia/Shanghai' ELSE 'Asia/Karachi' END)"
    " FROM subscriptions s JOIN organisations o ON o.id = s.org_id"
    " LEFT JOIN subscription_cursors c ON c.subscription_id = s.id"
    " WHERE s.status = 'active' ORDER BY s.id";

/* "scheme://host:port" of a URL (malloc'd), or a copy of the URL when it cannot be parsed. */
static char *s_endpoint_of(const char *url)
{
    CURLU *u = url ? curl_url() : NULL;
    char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        size_t n = strlen(scheme) + strlen(host) + strlen(port) + 5;
        out = malloc(n);
        if (out) {
            snprintf(out, n, "%s://%s:%s", scheme, host, port);
            for (char *c = out; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c = (char)(*c - 'A' + 'a');
        }
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return out ? out : strdup(url ? url : "");
}

/* Loads the definition of row i into s.  Returns 0, or -1 (logged; the subscription is
 * skipped). */
static int s_def_load(dsub_t *s, PGresult *r, int i)
{
    char err[EM_ERR_LEN];
    const char *kind = PQgetvalue(r, i, C_KIND);
    s_def_free(s);
    s->updated = strdup(PQgetvalue(r, i, C_UPDATED));
    s->org_id = strdup(PQgetvalue(r, i, C_ORG));
    s->sink = strdup(PQgetvalue(r, i, C_SINK));
    if (!PQgetisnull(r, i, C_PROVINCE))
        s->province = strdup(PQgetvalue(r, i, C_PROVINCE));
    s->endpoint = s_endpoint_of(s->sink);
    s->zone = strdup(PQgetvalue(r, i, C_ZONE));
    if (!s->updated || !s->org_id || !s->sink || !s->zone ||
        s_strv_parse(&s->langs, PQgetvalue(r, i, C_LANGS)) != 0 ||
        s_strv_parse(&s->parties, PQgetvalue(r, i, C_PARTIES)) != 0 ||
        s_strv_parse(&s->sources, PQgetvalue(r, i, C_SOURCES)) != 0 ||
        s_strv_parse(&s->types, PQgetvalue(r, i, C_TYPES)) != 0 ||
        s_strv_parse(&s->provinces, PQgetvalue(r, i, C_PROVINCES)) != 0 ||
        s_strv_parse(&s->minerals, PQgetvalue(r, i, C_MINERALS)) != 0 ||
        s_strv_parse(&s->projects, PQgetvalue(r, i, C_PROJECTS)) != 0 ||
        s_strv_parse(&s->licences, PQgetvalue(r, i, C_LICENCES)) != 0) {
        EM_LOG_ERROR(MOD, "subscription %s: unreadable definition", s->id);
        return -1;
    }
    memset(&s->org, 0, sizeof s->org);
    s->org.kind = strcmp(kind, "authority") == 0    ? EM_ORG_AUTHORITY
                  : strcmp(kind, "enterprise") == 0 ? EM_ORG_ENTERPRISE
                  : strcmp(kind, "operator") == 0   ? EM_ORG_OPERATOR
                                                    : EM_ORG_PUBLIC;
    s->org.province = s->province;
    s->org.party_ids = (const char *const *)s->parties.v;
    s->org.nparty_ids = s->parties.n;
    s->org.source_prefixes = (const char *const *)s->sources.v;
    s->org.nsource_prefixes = s->sources.n;
    s->domain = (em_domain_filter_t){(const char *const *)s->provinces.v, s->provinces.n,
                                     (const char *const *)s->minerals.v,  s->minerals.n,
                                     (const char *const *)s->projects.v,  s->projects.n,
                                     (const char *const *)s->licences.v,  s->licences.n};
    json_t *filters = json_loads(PQgetvalue(r, i, C_FILTERS), 0, NULL);
    s->filter = em_filter_new(filters, err, sizeof err);
    json_decref(filters);
    if (!s->filter) {
        EM_LOG_ERROR(MOD, "subscription %s: %s", s->id, err);
        return -1;
    }
    s->wh = em_webhook_new(PQgetvalue(r, i, C_SECRET), err, sizeof err);
    if (!s->wh) {
        EM_LOG_ERROR(MOD, "subscription %s: %s", s->id, err);
        return -1;
    }
    json_t *ps = json_loads(PQgetvalue(r, i, C_SETTINGS), 0, NULL);
    const char *hn;
    json_t *hv;
    json_object_foreach(json_object_get(ps, "headers"), hn, hv)
    {
        char line[1200];
        if (!json_is_string(hv))
            continue;
        snprintf(line, sizeof line, "%s: %s", hn, json_string_value(hv));
        struct curl_slist *n = curl_slist_append(s->extra, line);
        if (n)
            s->extra = n;
    }
    json_decref(ps);
    return 0;
}

static dsub_t *s_find(notify_deliver_t *self, const char *id)
{
    for (int i = 0; i < self->nsubs; i++)
        if (strcmp(self->subs[i]->id, id) == 0)
            return self->subs[i];
    return NULL;
}

static void s_remove_at(notify_deliver_t *self, int i)
{
    s_sub_free(self->subs[i]);
    self->subs[i] = self->subs[--self->nsubs];
}

/* ---------------------------------------------------------------------------------------- */
/* PostgreSQL */

static bool s_pg(notify_deliver_t *self)
{
    if (self->store && em_store_connected(self->store))
        return true;
    if (em_mono_ms() < self->pg_retry_at)
        return false;
    if (!self->store)
        self->store = em_store_new(self->dsn, self->err, sizeof self->err);
    else if (!em_store_ensure(self->store)) {
        snprintf(self->err, sizeof self->err, "%s", em_store_errstr(self->store));
        em_store_destroy(&self->store);
    }
    if (!self->store || !em_store_connected(self->store)) {
        EM_LOG_WARN(MOD, "PostgreSQL unreachable: %s", self->err);
        self->pg_retry_at = em_mono_ms() + PG_RETRY_MS;
        return false;
    }
    return true;
}

static void s_pg_failed(notify_deliver_t *self, const char *what)
{
    EM_LOG_WARN(MOD, "%s failed: %s", what, self->store ? em_store_errstr(self->store) : "");
    self->pg_retry_at = em_mono_ms() + PG_RETRY_MS;
}

/* Runs a one-value statement with one text parameter; returns the value's first character
 * ('t'/'f' for booleans) or 0 when it failed. */
static char s_scalar(notify_deliver_t *self, const char *sql, const char *param)
{
    const char *p[1] = {param};
    PGresult *r = em_store_query(self->store, sql, param ? 1 : 0, p);
    char c = r && PQntuples(r) == 1 ? PQgetvalue(r, 0, 0)[0] : 0;
    PQclear(r);
    return c;
}

static void s_unlock(notify_deliver_t *self, const char *id)
{
    (void)s_scalar(self, "SELECT pg_advisory_unlock(1701671796, hashtext($1))", id);
}

/* Persists one subscription's cursor.  Returns 0 or -1. */
static int s_flush_one(notify_deliver_t *self, dsub_t *s)
{
    if (s->cursor == s->persisted)
        return 0;
    char seq[32];
    snprintf(seq, sizeof seq, "%" PRId64, s->cursor);
    const char *p[2] = {s->id, seq};
    PGresult *r = em_store_query(self->store,
                                 "INSERT INTO subscription_cursors (subscription_id, seq)"
                                 " SELECT $1, $2::bigint WHERE EXISTS"
                                 " (SELECT 1 FROM subscriptions WHERE id = $1)"
                                 " ON CONFLICT (subscription_id) DO UPDATE"
                                 " SET seq = EXCLUDED.seq, updated_at = now()",
                                 2, p);
    if (!r)
        return -1;
    PQclear(r);
    s->persisted = s->cursor;
    return 0;
}

/* The number of live deliverers (taking this one's presence lock first if needed), or -1. */
static int s_live(notify_deliver_t *self)
{
    PGresult *r = em_store_query(
        self->store,
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
        "  AND pid = pg_backend_pid() AND classid = 1701671795 AND objid = 0 AND objsubid = 2),"
        " (SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        "  AND classid = 1701671795 AND objid = 0 AND objsubid = 2)",
        0, NULL);
    if (!r)
        return -1;
    bool present = PQgetvalue(r, 0, 0)[0] == 't';
    int live = atoi(PQgetvalue(r, 0, 1));
    PQclear(r);
    if (!present) {
        if (s_scalar(self, "SELECT pg_try_advisory_lock_shared(1701671795, 0)", NULL) != 't')
            return -1;
        live++;
    }
    return live;
}

/* Re-reads the active subscriptions and takes or gives back shares.  Returns 0 or -1. */
static int s_reload(notify_deliver_t *self)
{
    if (!s_pg(self))
        return -1;
    int live = s_live(self);
    PGresult *r = live > 0 ? em_store_query(self->store, s_subs_sql, 0, NULL) : NULL;
    if (!r) {
        s_pg_failed(self, "reading subscriptions");
        return -1;
    }
    int total = PQntuples(r), share = (total + live - 1) / live, owned = 0;
    for (int i = 0; i < self->nsubs; i++) {
        self->subs[i]->seen = false;
        owned += !self->subs[i]->gone;
    }
    for (int i = 0; i < total; i++) {
        const char *id = PQgetvalue(r, i, C_ID);
        bool held = PQgetvalue(r, i, C_HELD)[0] == 't';
        dsub_t *s = s_find(self, id);
        if (s && !s->gone) {
            if (!held) { /* the lock went with a lost connection: another may have it now */
                EM_LOG_WARN(MOD, "subscription %s: lock lost, letting it go", id);
                continue; /* unseen: swept below */
            }
            s->seen = true;
            if (strcmp(s->updated, PQgetvalue(r, i, C_UPDATED)) != 0 && !s->x.easy) {
                if (s_def_load(s, r, i) != 0)
                    s->seen = false;
                else
                    EM_LOG_INFO(MOD, "subscription %s changed", id);
            }
            continue;
        }
        if (s)
            continue; /* gone, still in flight */
        if (owned >= share)
            continue; /* another deliverer's share */
        if (!held &&
            s_scalar(self, "SELECT pg_try_advisory_lock(1701671796, hashtext($1))", id) != 't')
            continue; /* delivered by another process */
        if (self->nsubs == self->capsubs) {
            int cap = self->capsubs ? self->capsubs * 2 : 16;
            dsub_t **n = realloc(self->subs, (size_t)cap * sizeof *n);
            if (!n) {
                s_unlock(self, id);
                break;
            }
            self->subs = n;
            self->capsubs = cap;
        }
        s = calloc(1, sizeof *s);
        if (!s || !(s->id = strdup(id))) {
            free(s);
            s_unlock(self, id);
            break;
        }
        s->x.kind = X_SUB;
        s->x.owner = self;
        /* The cursor as the previous owner left it (read after taking the lock). */
        PGresult *c = em_store_query(self->store,
                                     "SELECT seq FROM subscription_cursors"
                                     " WHERE subscription_id = $1",
                                     1, (const char *const[]){id});
        s->cursor = c && PQntuples(c) == 1 ? strtoll(PQgetvalue(c, 0, 0), NULL, 10)
                                           : strtoll(PQgetvalue(r, i, C_CURSOR), NULL, 10);
        PQclear(c);
        s->persisted = -1; /* write it once, so that a missing cursor row gets created */
        if (s_def_load(s, r, i) != 0) {
            s_unlock(self, id);
            s_sub_free(s);
            continue;
        }
        s->seen = true;
        self->subs[self->nsubs++] = s;
        owned++;
        EM_LOG_INFO(MOD, "delivering subscription %s to %s after seq %" PRId64 " (%d of %d, "
                         "%d deliverer(s))",
                    id, s->sink, s->cursor, owned, total, live);
    }
    PQclear(r);
    for (int i = 0; i < self->nsubs;) {
        dsub_t *s = self->subs[i];
        if (!s->seen) {
            if (!s->gone)
                owned--;
            s->gone = true;
            if (!s->x.easy) {
                EM_LOG_INFO(MOD, "subscription %s no longer delivered here", s->id);
                s_unlock(self, s->id);
                s_remove_at(self, i);
                continue;
            }
        }
        i++;
    }
    /* More than a fair share: give one back (idle, cursor persisted first). */
    for (int i = 0; owned > share && i < self->nsubs; i++) {
        dsub_t *s = self->subs[i];
        if (s->gone || s->x.easy || s->attempts > 0 || s_flush_one(self, s) != 0)
            continue;
        EM_LOG_INFO(MOD, "subscription %s handed over (%d deliverers)", s->id, live);
        s_unlock(self, s->id);
        s_remove_at(self, i);
        break;
    }
    self->loaded = true;
    return 0;
}

int notify_deliver_flush(notify_deliver_t *self)
{
    for (int i = 0; i < self->nsubs; i++) {
        dsub_t *s = self->subs[i];
        if (s->gone || s->cursor == s->persisted)
            continue; /* a subscription let go is not written: another may own it */
        if (!s_pg(self))
            return -1;
        if (s_flush_one(self, s) != 0) {
            s_pg_failed(self, "persisting a cursor");
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* libcurl plumbing */

static int s_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    notify_deliver_t *self = userp;
    (void)easy;
    (void)socketp;
    for (int i = 0; i < self->nsocks; i++) {
        if (self->socks[i].fd != fd)
            continue;
        if (what == CURL_POLL_REMOVE)
            self->socks[i] = self->socks[--self->nsocks];
        else
            self->socks[i].what = what;
        return 0;
    }
    if (what != CURL_POLL_REMOVE && self->nsocks < DELIVER_MAX_FDS)
        self->socks[self->nsocks++] = (sock_t){fd, what};
    return 0;
}

static int s_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    notify_deliver_t *self = userp;
    (void)multi;
    self->curl_due = timeout_ms < 0 ? -1 : em_mono_ms() + timeout_ms;
    return 0;
}

static curl_socket_t s_opensocket_cb(void *clientp, curlsocktype purpose,
                                     struct curl_sockaddr *address)
{
    xfer_t *x = clientp;
    (void)purpose;
    if (!x->owner->cfg.allow_private && notify_deliver_addr_refused(&address->addr)) {
        x->refused = true;
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype, address->protocol);
}

static size_t s_header_cb(char *buf, size_t size, size_t n, void *userp)
{
    xfer_t *x = userp;
    size_t len = size * n;
    if (len > 12 && strncasecmp(buf, "Retry-After:", 12) == 0) {
        char tmp[32];
        size_t k = len - 12 < sizeof tmp - 1 ? len - 12 : sizeof tmp - 1;
        memcpy(tmp, buf + 12, k);
        tmp[k] = '\0';
        char *end;
        long v = strtol(tmp, &end, 10);
        if (end != tmp && v >= 0)
            x->retry_after_s = v > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : v;
    }
    return len;
}

static size_t s_discard_cb(char *buf, size_t size, size_t n, void *userp)
{
    (void)buf;
    (void)userp;
    return size * n;
}

static breaker_t *s_breaker(notify_deliver_t *self, const char *endpoint)
{
    for (int i = 0; i < self->nbreakers; i++)
        if (strcmp(self->breakers[i].endpoint, endpoint) == 0)
            return &self->breakers[i];
    if (self->nbreakers == self->capbreakers) {
        int cap = self->capbreakers ? self->capbreakers * 2 : 16;
        breaker_t *n = realloc(self->breakers, (size_t)cap * sizeof *n);
        if (!n)
            return NULL;
        self->breakers = n;
        self->capbreakers = cap;
    }
    breaker_t *b = &self->breakers[self->nbreakers];
    memset(b, 0, sizeof *b);
    b->endpoint = strdup(endpoint);
    if (!b->endpoint)
        return NULL;
    self->nbreakers++;
    return b;
}

/* true when a request may go to s's endpoint now (taking the half-open probe if it is due);
 * else sets s->next_attempt to when to look again. */
static bool s_breaker_allows(notify_deliver_t *self, dsub_t *s, int64_t now)
{
    if (self->cfg.breaker_failures <= 0)
        return true;
    breaker_t *b = s_breaker(self, s->endpoint);
    if (!b || b->open_until == 0)
        return true;
    if (now < b->open_until) {
        s->next_attempt = b->open_until;
        return false;
    }
    if (b->probing) {
        s->next_attempt = now + 50;
        return false;
    }
    b->probing = true;
    return true;
}

/* Records the outcome of a request to endpoint: healthy (it answered, even 4xx) or failed. */
static void s_breaker_result(notify_deliver_t *self, const char *endpoint, bool healthy)
{
    if (self->cfg.breaker_failures <= 0 || !endpoint)
        return;
    breaker_t *b = s_breaker(self, endpoint);
    if (!b)
        return;
    bool was_probe = b->probing;
    b->probing = false;
    if (healthy) {
        if (b->open_until)
            EM_LOG_INFO(MOD, "endpoint %s answers again: circuit closed", endpoint);
        b->failures = 0;
        b->open_until = 0;
        return;
    }
    b->failures++;
    if (was_probe || (b->open_until == 0 && b->failures >= self->cfg.breaker_failures)) {
        b->open_until = em_mono_ms() + self->cfg.breaker_open_ms;
        em_metric_add(self->m_opened, 1);
        EM_LOG_WARN(MOD, "endpoint %s failed %d time(s) in a row: circuit open for %d ms",
                    endpoint, b->failures, self->cfg.breaker_open_ms);
    }
}

/* Starts the signed POST of event seq (body: its archived text, which must outlive the
 * transfer) to s's sink as transfer x.  Returns 0, or -1 (could not start: retried later). */
static int s_post(notify_deliver_t *self, dsub_t *s, xfer_t *x, int64_t seq, const char *body,
                  size_t len)
{
    char msgid[40], ts[32], sig[EM_WEBHOOK_SIG_LEN], h[160];
    int64_t now_s = em_now_ms() / 1000;
    snprintf(msgid, sizeof msgid, "evt_%" PRId64, seq);
    snprintf(ts, sizeof ts, "%" PRId64, now_s);
    if (em_webhook_sign(s->wh, msgid, now_s, body, len, sig, sizeof sig) != 0)
        return -1;
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    for (const struct curl_slist *e = s->extra; e; e = e->next)
        x->hdrs = curl_slist_append(x->hdrs, e->data);
    x->hdrs = curl_slist_append(x->hdrs, "Content-Type: application/cloudevents+json");
    x->hdrs = curl_slist_append(x->hdrs, "Expect:");
    snprintf(h, sizeof h, "webhook-id: %s", msgid);
    x->hdrs = curl_slist_append(x->hdrs, h);
    snprintf(h, sizeof h, "webhook-timestamp: %s", ts);
    x->hdrs = curl_slist_append(x->hdrs, h);
    snprintf(h, sizeof h, "webhook-signature: %s", sig);
    x->hdrs = curl_slist_append(x->hdrs, h);
    CURL *e = x->handle ? x->handle : curl_easy_init();
    if (!e || !x->hdrs)
        return -1;
    x->handle = e; /* kept for the next request: libcurl reuses its buffers */
    curl_easy_setopt(e, CURLOPT_URL, s->sink);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "emine-notify");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)self->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)self->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, s_opensocket_cb);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, s_header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s_discard_cb);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    x->owner = self;
    x->refused = false;
    x->retry_after_s = -1;
    if (curl_multi_add_handle(self->multi, e) != CURLM_OK)
        return -1;
    x->easy = e;
    self->inflight++;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Summaries */

/* The delivered text of an archived event (text, len; ev its parsed form) for s: the string
 * extension attributes summary, summarylang and summary<lang> (one per preferred language
 * rendered in that language) are spliced in after the opening brace, so that the archived
 * members keep their exact text (numbers are never re-serialised).  An attribute the event
 * already has is not added.  Returns malloc'd text with *outlen (caller frees), or NULL when
 * there is nothing to add or it failed: the archived text is then delivered as it is. */
static char *s_with_summaries(notify_deliver_t *self, const dsub_t *s, const json_t *ev,
                              const char *text, size_t len, size_t *outlen)
{
    size_t lead = strspn(text, " \t\r\n");
    if (!self->tmpl || !json_is_object(ev) || lead >= len || text[lead] != '{')
        return NULL;
    json_t *attrs = json_object();
    char buf[EM_TEMPLATE_MAX_OUT + 1];
    for (size_t i = 0; attrs && i < s->langs.n; i++) {
        const char *lang = s->langs.v[i], *used = NULL;
        int missing = 0;
        if (em_template_render(self->tmpl, lang, s->zone, ev, buf, sizeof buf, &used,
                               &missing) != 0)
            break; /* no template applies to this event */
        if (missing > 0)
            EM_LOG_DEBUG(MOD, "subscription %s: seq %" PRId64 ": %d value(s) missing in the %s "
                              "summary", s->id, s->seq, missing, used);
        if (i == 0 && !json_object_get(ev, "summary") && !json_object_get(ev, "summarylang")) {
            json_object_set_new(attrs, "summary", json_string(buf));
            json_object_set_new(attrs, "summarylang", json_string(used));
        }
        if (strcmp(used, lang) != 0)
            continue; /* fell back to English: summaryen carries that */
        char name[32] = "summary";
        size_t k = strlen(name);
        for (const char *c = lang; *c && k < 27; c++)
            if ((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9'))
                name[k++] = *c;
            else if (*c >= 'A' && *c <= 'Z')
                name[k++] = (char)(*c - 'A' + 'a');
        name[k] = '\0';
        if (!json_object_get(ev, name))
            json_object_set_new(attrs, name, json_string(buf));
    }
    char *members = json_object_size(attrs) ? json_dumps(attrs, JSON_COMPACT) : NULL;
    json_decref(attrs);
    if (!members)
        return NULL;
    /* members is {"a":"…",…}: its inside goes after the event's '{'. */
    size_t mlen = strlen(members) - 2;
    bool empty = json_object_size(ev) == 0;
    size_t n = len + mlen + 2;
    char *out = malloc(n + 1);
    if (out) {
        size_t k = 0;
        memcpy(out, text, lead + 1);
        k = lead + 1;
        memcpy(out + k, members + 1, mlen);
        k += mlen;
        if (!empty)
            out[k++] = ',';
        memcpy(out + k, text + lead + 1, len - lead - 1);
        k += len - lead - 1;
        out[k] = '\0';
        *outlen = k;
    }
    free(members);
    return out;
}

/* The delivered text of e for s (see s_with_summaries), rendered once for each set of
 * languages and zone in a row: the subscriptions reading the shared window mostly ask for the
 * same one.  Returns malloc'd text (caller frees) or NULL (deliver e->text as it is). */
static char *s_body_for(notify_deliver_t *self, const dsub_t *s, wev_t *e, const json_t *ev,
                        size_t *outlen)
{
    char key[256];
    size_t k = (size_t)snprintf(key, sizeof key, "%u|%s", self->tmpl_gen, s->zone);
    for (size_t i = 0; i < s->langs.n && k < sizeof key; i++)
        k += (size_t)snprintf(key + k, sizeof key - k, "|%s", s->langs.v[i]);
    bool cacheable = k < sizeof key;
    if (cacheable && e->body_key && strcmp(e->body_key, key) == 0) {
        if (!e->body)
            return NULL;
        char *copy = malloc(e->body_len + 1);
        if (copy) {
            memcpy(copy, e->body, e->body_len + 1);
            *outlen = e->body_len;
        }
        return copy;
    }
    char *body = s_with_summaries(self, s, ev, e->text, e->len, outlen);
    if (cacheable) {
        free(e->body_key);
        free(e->body);
        e->body_key = strdup(key);
        e->body = NULL;
        e->body_len = 0;
        if (body && e->body_key && (e->body = malloc(*outlen + 1)) != NULL) {
            memcpy(e->body, body, *outlen + 1);
            e->body_len = *outlen;
        } else if (body) {
            free(e->body_key); /* not cached */
            e->body_key = NULL;
        }
    }
    return body;
}

/* Loads the templates again (SIGHUP); a set that does not load leaves the old one in force. */
static void s_templates_reload(notify_deliver_t *self)
{
    char err[EM_ERR_LEN];
    DIR *d = opendir(SCHEMAS_DIR);
    if (d)
        closedir(d);
    em_template_t *t = em_template_load(self->templates_dir, d ? SCHEMAS_DIR : NULL, err,
                                        sizeof err);
    if (!t) {
        EM_LOG_ERROR(MOD, "templates not reloaded (the previous ones stay in force): %s", err);
        return;
    }
    em_template_destroy(&self->tmpl);
    self->tmpl = t;
    self->tmpl_gen++;
    EM_LOG_INFO(MOD, "templates reloaded from %s (%d languages)", self->templates_dir,
                em_template_language_count(t));
}

/* Starts the delivery of page[page_i] (the page, or the body built for it, holds it until
 * s_done). */
static int s_start(notify_deliver_t *self, dsub_t *s)
{
    if (s->body)
        return s_post(self, s, &s->x, s->seq, s->body, s->body_len);
    wev_t *e = s->page[s->page_i];
    return s_post(self, s, &s->x, s->seq, e->text, e->len);
}

/* Records the event at page_i as done (delivered or dead-lettered) and moves on. */
static void s_done(dsub_t *s)
{
    free(s->body);
    s->body = NULL;
    s->cursor = s->seq;
    if (s->page_i < s->page_n) {
        s_wev_unref(s->page[s->page_i]);
        s->page[s->page_i] = NULL;
        s->page_i++;
    }
    s->attempts = 0;
    s->next_attempt = 0;
    s->last_status = 0;
    s->last_error[0] = '\0';
}

/* Writes the dead letter of the current event.  Returns 0 or -1 (retried later). */
static int s_dead_letter(notify_deliver_t *self, dsub_t *s)
{
    if (!s_pg(self))
        return -1;
    char seq[32], att[16], st[16];
    snprintf(seq, sizeof seq, "%" PRId64, s->seq);
    snprintf(att, sizeof att, "%d", s->attempts);
    snprintf(st, sizeof st, "%ld", s->last_status);
    const char *p[5] = {s->id, seq, att, s->last_status ? st : NULL, s->last_error};
    PGresult *r = em_store_query(
        self->store,
        "INSERT INTO delivery_dead_letters (subscription_id, seq, attempts, last_status,"
        " last_error) SELECT $1, $2::bigint, $3::integer, $4::integer, $5"
        " WHERE EXISTS (SELECT 1 FROM subscriptions WHERE id = $1)"
        " ON CONFLICT (subscription_id, seq) DO UPDATE SET attempts = EXCLUDED.attempts,"
        " last_status = EXCLUDED.last_status, last_error = EXCLUDED.last_error,"
        " created_at = now(), redriven_at = NULL",
        5, p);
    if (!r) {
        s_pg_failed(self, "writing a dead letter");
        return -1;
    }
    PQclear(r);
    EM_LOG_WARN(MOD, "subscription %s: seq %" PRId64 " dead-lettered after %d attempt(s): %s",
                s->id, s->seq, s->attempts, s->last_error);
    return 0;
}

/* Disables the subscription after a 410.  Returns 0 or -1. */
static int s_disable(notify_deliver_t *self, dsub_t *s)
{
    if (!s_pg(self))
        return -1;
    const char *p[1] = {s->id};
    PGresult *r = em_store_query(self->store,
                                 "UPDATE subscriptions SET status = 'disabled',"
                                 " status_reason = 'the sink answered 410 Gone',"
                                 " updated_at = now() WHERE id = $1",
                                 1, p);
    if (!r) {
        s_pg_failed(self, "disabling a subscription");
        return -1;
    }
    PQclear(r);
    EM_LOG_WARN(MOD, "subscription %s disabled: the sink answered 410 Gone", s->id);
    s->gone = true;
    return 0;
}

/* The delay before attempt number `attempts + 1` (attempts >= 1 failures so far). */
static int64_t s_backoff_ms(notify_deliver_t *self, dsub_t *s)
{
    int64_t base = self->schedule[s->attempts - 1];
    unsigned char r;
    char hex[3];
    em_random_hex(hex, 2);
    r = (unsigned char)strtol(hex, NULL, 16);
    int64_t d = base * (80 + (int64_t)r * 40 / 255) / 100; /* 80 % .. 120 % */
    if (s->x.retry_after_s >= 0 && d < s->x.retry_after_s * 1000)
        d = s->x.retry_after_s * 1000;
    return d;
}

static void s_complete(notify_deliver_t *self, dsub_t *s, CURLcode cc)
{
    long status = 0;
    curl_easy_getinfo(s->x.easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(self->multi, s->x.easy);
    s->x.easy = NULL;
    self->inflight--;
    if (!s->x.refused)
        s_breaker_result(self, s->endpoint, cc == CURLE_OK && status != 429 && status < 500);
    if (s->gone)
        return; /* deleted meanwhile: the sweep frees it */
    s->attempts++;
    s->last_status = status;
    if (cc == CURLE_OK && status >= 200 && status < 300) {
        em_metric_add(self->m_ok, 1);
        EM_LOG_DEBUG(MOD, "subscription %s: seq %" PRId64 " delivered (%ld)", s->id, s->seq,
                     status);
        s_done(s);
        return;
    }
    if (cc == CURLE_OK && status == 410) {
        em_metric_add(self->m_disabled, 1);
        snprintf(s->last_error, sizeof s->last_error, "410 Gone");
        if (s_disable(self, s) != 0)
            s->next_attempt = em_mono_ms() + PG_RETRY_MS, s->attempts--;
        return;
    }
    em_metric_add(self->m_fail, 1);
    if (s->x.refused) {
        em_metric_add(self->m_refused, 1);
        snprintf(s->last_error, sizeof s->last_error,
                 "the sink resolves to a loopback, private or reserved address (refused; "
                 "[notify] webhook_allow_private)");
        s->last_status = 0;
    } else if (cc != CURLE_OK) {
        snprintf(s->last_error, sizeof s->last_error, "%s", curl_easy_strerror(cc));
        s->last_status = 0;
    } else {
        snprintf(s->last_error, sizeof s->last_error, "HTTP %ld", status);
    }
    if (s->x.refused || s->attempts > self->nschedule) {
        em_metric_add(self->m_dead, 1);
        if (s_dead_letter(self, s) == 0)
            s_done(s);
        else
            s->next_attempt = em_mono_ms() + PG_RETRY_MS; /* the send is retried too */
        return;
    }
    s->next_attempt = em_mono_ms() + s_backoff_ms(self, s);
    EM_LOG_INFO(MOD, "subscription %s: seq %" PRId64 " attempt %d failed (%s), retry in %" PRId64
                     " ms",
                s->id, s->seq, s->attempts, s->last_error, s->next_attempt - em_mono_ms());
}

/* ---------------------------------------------------------------------------------------- */
/* Redrive: dead letters whose redriven_at an operator set (eminectl subs redrive) are sent
 * again, once each, out of band of the subscription's in-order stream.  Delivered: the row is
 * deleted.  Failed again: redriven_at is cleared and attempts/last_* updated. */

static void s_redrive_free(redrive_t *r)
{
    if (!r)
        return;
    if (r->x.handle)
        curl_easy_cleanup(r->x.handle);
    curl_slist_free_all(r->x.hdrs);
    free(r->body);
    free(r);
}

static void s_redrive_complete(notify_deliver_t *self, redrive_t *r, CURLcode cc)
{
    long status = 0;
    curl_easy_getinfo(r->x.easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(self->multi, r->x.easy);
    r->x.easy = NULL;
    self->inflight--;
    for (int i = 0; i < self->nredrives; i++)
        if (self->redrives[i] == r)
            self->redrives[i] = self->redrives[--self->nredrives];
    bool ok = cc == CURLE_OK && status >= 200 && status < 300;
    dsub_t *s = s_find(self, r->sub_id);
    if (s && !r->x.refused)
        s_breaker_result(self, s->endpoint, cc == CURLE_OK && status != 429 && status < 500);
    char id[32], st[16], err[256];
    snprintf(id, sizeof id, "%" PRId64, r->dl_id);
    snprintf(st, sizeof st, "%ld", status);
    if (r->x.refused)
        snprintf(err, sizeof err, "the sink resolves to a loopback, private or reserved address");
    else if (cc != CURLE_OK)
        snprintf(err, sizeof err, "%s", curl_easy_strerror(cc));
    else
        snprintf(err, sizeof err, "HTTP %ld", status);
    const char *p[3] = {id, cc == CURLE_OK ? st : NULL, err};
    PGresult *res = NULL;
    if (s_pg(self))
        res = ok ? em_store_query(self->store,
                                  "DELETE FROM delivery_dead_letters WHERE id = $1::bigint", 1, p)
                 : em_store_query(self->store,
                                  "UPDATE delivery_dead_letters SET redriven_at = NULL,"
                                  " attempts = attempts + 1, last_status = $2::integer,"
                                  " last_error = $3 WHERE id = $1::bigint",
                                  3, p);
    if (!res)
        s_pg_failed(self, "recording a redrive"); /* still requested: sent again later */
    PQclear(res);
    if (ok)
        em_metric_add(self->m_redriven, 1);
    EM_LOG_INFO(MOD, "subscription %s: redrive of seq %" PRId64 " %s", r->sub_id, r->seq,
                ok ? "delivered" : err);
    s_redrive_free(r);
}

/* Starts the redrives requested, when none is in flight: the first of each subscription, so
 * that a subscription's redrives (and replays) go out one at a time in seq order. */
static void s_redrive_poll(notify_deliver_t *self)
{
    self->redrive_more = false;
    if (self->nredrives > 0 || !s_pg(self))
        return;
    char lim[16];
    snprintf(lim, sizeof lim, "%d", REDRIVE_MAX);
    const char *p[1] = {lim};
    PGresult *r = em_store_query(self->store,
                                 "SELECT DISTINCT ON (d.subscription_id) d.id, d.subscription_id,"
                                 " d.seq, e.envelope::text"
                                 " FROM delivery_dead_letters d JOIN events e ON e.seq = d.seq"
                                 " WHERE d.redriven_at IS NOT NULL"
                                 " ORDER BY d.subscription_id, d.seq LIMIT $1::integer",
                                 1, p);
    if (!r) {
        s_pg_failed(self, "reading redrive requests");
        return;
    }
    for (int i = 0; i < PQntuples(r) && self->inflight < self->cfg.max_inflight; i++) {
        dsub_t *s = s_find(self, PQgetvalue(r, i, 1));
        if (!s || s->gone || s->x.easy)
            continue; /* disabled, not active or busy: stays requested */
        if (self->cfg.breaker_failures > 0) {
            breaker_t *b = s_breaker(self, s->endpoint);
            if (b && b->open_until)
                continue; /* open or probing: the in-order stream probes it */
        }
        redrive_t *rd = calloc(1, sizeof *rd);
        if (!rd)
            break;
        rd->x.kind = X_REDRIVE;
        rd->dl_id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        rd->seq = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        snprintf(rd->sub_id, sizeof rd->sub_id, "%s", s->id);
        rd->len = (size_t)PQgetlength(r, i, 3);
        rd->body = malloc(rd->len + 1);
        /* Visibility and filters are checked again: the organisation may have changed. */
        json_t *ev = json_loads(PQgetvalue(r, i, 3), 0, NULL);
        int match = ev && em_subscription_matches(&s->org, (const char *const *)s->types.v,
                                                  s->types.n, s->filter, &s->domain, ev);
        json_decref(ev);
        if (!rd->body || !match) {
            if (!match) {
                char id[32];
                snprintf(id, sizeof id, "%" PRId64, rd->dl_id);
                const char *q[1] = {id};
                /* A replay request (attempts 0) is dropped; a dead letter stays, explained. */
                PGresult *u = em_store_query(self->store,
                                             "WITH d AS (DELETE FROM delivery_dead_letters"
                                             " WHERE id = $1::bigint AND attempts = 0 RETURNING id)"
                                             " UPDATE delivery_dead_letters SET redriven_at = NULL,"
                                             " last_error = 'no longer visible to or selected by"
                                             " the subscription' WHERE id = $1::bigint"
                                             " AND NOT EXISTS (SELECT 1 FROM d)",
                                             1, q);
                PQclear(u);
            }
            s_redrive_free(rd);
            continue;
        }
        memcpy(rd->body, PQgetvalue(r, i, 3), rd->len + 1);
        size_t blen = 0;
        json_t *pev = json_loads(rd->body, 0, NULL);
        char *b = s_with_summaries(self, s, pev, rd->body, rd->len, &blen);
        json_decref(pev);
        if (b) {
            free(rd->body);
            rd->body = b;
            rd->len = blen;
        }
        if (s_post(self, s, &rd->x, rd->seq, rd->body, rd->len) != 0) {
            s_redrive_free(rd);
            continue;
        }
        self->redrives[self->nredrives++] = rd;
    }
    self->redrive_more = self->nredrives > 0;
    PQclear(r);
}

static void s_read_completions(notify_deliver_t *self)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(self->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        xfer_t *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x && x->kind == X_SUB)
            s_complete(self, (dsub_t *)x, m->data.result);
        else if (x)
            s_redrive_complete(self, (redrive_t *)x, m->data.result);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Scheduling */

/* 1 when s has something to do now or could have (given head). */
static bool s_ready(const dsub_t *s, int64_t head, int64_t now)
{
    if (s->gone || s->x.easy || now < s->next_attempt)
        return false;
    return s->attempts > 0 || s->page_i < s->page_n || s->cursor < head;
}

/* ---------------------------------------------------------------------------------------- */
/* The shared window */

static wev_t *s_win_at(notify_deliver_t *self, int i)
{
    return self->win[(self->win_first + i) % WINDOW_MAX];
}

static void s_win_drop_first(notify_deliver_t *self)
{
    wev_t *e = self->win[self->win_first];
    self->win_bytes -= WEV_COST(e->len);
    s_wev_unref(e);
    self->win[self->win_first] = NULL;
    self->win_first = (self->win_first + 1) % WINDOW_MAX;
    self->win_n--;
    self->win_lo++;
}

static void s_win_clear(notify_deliver_t *self)
{
    while (self->win_n > 0)
        s_win_drop_first(self);
    self->win_first = 0;
}

/* Appends e (which must be seq win_lo + win_n, or the window empty), taking a reference and
 * evicting the oldest events beyond the bounds. */
static void s_win_push(notify_deliver_t *self, wev_t *e)
{
    if (self->win_n == 0) {
        self->win_first = 0;
        self->win_lo = e->seq;
    }
    while (self->win_n > 0 &&
           (self->win_n >= WINDOW_MAX || self->win_bytes + WEV_COST(e->len) > WINDOW_BYTES))
        s_win_drop_first(self);
    if (self->win_n == 0)
        self->win_lo = e->seq;
    e->refs++;
    self->win[(self->win_first + self->win_n) % WINDOW_MAX] = e;
    self->win_n++;
    self->win_bytes += WEV_COST(e->len);
}

/* Fills s's (empty) page with the events after its cursor, at most cfg.batch: from the shared
 * window when it holds them; else by reading (cursor, head] from PostgreSQL, into the window
 * when the page continues it (subscriptions that keep up), or for s alone when s is behind the
 * window.  An empty page with the cursor moved to head means nothing was committed in
 * (cursor, head].  Returns 0, or -1 when PostgreSQL failed. */
static int s_fill(notify_deliver_t *self, dsub_t *s, int64_t head)
{
    int64_t next = s->cursor + 1;
    int64_t top = self->win_lo + self->win_n - 1;
    if (!s->page) {
        s->page = calloc((size_t)self->cfg.batch, sizeof *s->page);
        if (!s->page)
            return -1;
    }
    bool shared = self->win_n == 0 || next >= top + 1;
    if (self->win_n == 0 || next < self->win_lo || next > top) {
        char after[32], upto[32], lim[16];
        snprintf(after, sizeof after, "%" PRId64, s->cursor);
        snprintf(upto, sizeof upto, "%" PRId64, head);
        snprintf(lim, sizeof lim, "%d", self->cfg.batch);
        const char *p[3] = {after, upto, lim};
        PGresult *r = em_store_query(self->store,
                                     "SELECT seq, envelope::text FROM events"
                                     " WHERE seq > $1::bigint AND seq <= $2::bigint"
                                     " ORDER BY seq LIMIT $3::integer",
                                     3, p);
        if (!r)
            return -1;
        self->m_pages++;
        int n = PQntuples(r);
        if (n == 0) {
            s->cursor = head; /* nothing committed in (cursor, head] */
            PQclear(r);
            return 0;
        }
        if (shared && next > top + 1)
            s_win_clear(self); /* the window is behind everyone that reads: start it again */
        for (int i = 0; i < n; i++) {
            int64_t seq = strtoll(PQgetvalue(r, i, 0), NULL, 10);
            wev_t *e = s_wev_new(seq, PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));
            if (!e) {
                PQclear(r);
                return -1;
            }
            if (shared && (self->win_n == 0 || seq == self->win_lo + self->win_n))
                s_win_push(self, e);
            s->page[s->page_n++] = e; /* the page's reference */
        }
        PQclear(r);
        return 0;
    }
    for (int64_t seq = next; seq <= top && s->page_n < self->cfg.batch; seq++) {
        wev_t *e = s_win_at(self, (int)(seq - self->win_lo));
        e->refs++;
        s->page[s->page_n++] = e;
    }
    return 0;
}

/* Moves s forward: skips events it must not or need not receive, starts the next delivery. */
static void s_advance(notify_deliver_t *self, dsub_t *s, int64_t head)
{
    for (int skipped = 0; skipped < SKIP_MAX;) {
        if (s->attempts > 0) { /* a retry of the current event */
            if (self->inflight < self->cfg.max_inflight &&
                s_breaker_allows(self, s, em_mono_ms()))
                (void)s_start(self, s);
            return;
        }
        if (s->page_i >= s->page_n) {
            s_page_clear(s);
            if (s->cursor >= head || !s_pg(self))
                return;
            if (s_fill(self, s, head) != 0) {
                s_pg_failed(self, "reading events");
                return;
            }
            if (s->page_n == 0)
                return;
        }
        wev_t *e = s->page[s->page_i];
        s->seq = e->seq;
        json_t *ev = s_wev_json(e);
        int match = ev && em_subscription_matches(&s->org, (const char *const *)s->types.v,
                                                  s->types.n, s->filter, &s->domain, ev);
        free(s->body);
        s->body = match ? s_body_for(self, s, e, ev, &s->body_len) : NULL;
        if (!match) {
            s_done(s);
            skipped++;
            continue;
        }
        if (self->inflight >= self->cfg.max_inflight || !s_breaker_allows(self, s, em_mono_ms()))
            return;
        if (s_start(self, s) != 0)
            s->next_attempt = em_mono_ms() + PG_RETRY_MS;
        return;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Public */

notify_deliver_t *notify_deliver_new(const char *dsn, const notify_deliver_cfg_t *cfg,
                                     em_metrics_t *metrics, char *err, size_t errlen)
{
    notify_deliver_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->cfg = *cfg;
    self->dsn = strdup(dsn ? dsn : "");
    self->retry_text = strdup(cfg->retry_ms ? cfg->retry_ms : "");
    self->cfg.retry_ms = self->retry_text;
    self->curl_due = -1;
    if (!self->dsn || !self->retry_text) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (self->cfg.max_inflight < 1 || self->cfg.max_inflight > DELIVER_MAX_FDS) {
        snprintf(err, errlen, "webhook_max_inflight must be between 1 and %d", DELIVER_MAX_FDS);
        goto fail;
    }
    for (const char *p = self->retry_text; *p;) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || v > 86400000LL || self->nschedule == MAX_SCHEDULE ||
            (*end && *end != ',')) {
            snprintf(err, errlen,
                     "webhook_retry_ms: expected up to %d comma-separated delays in ms, got '%s'",
                     MAX_SCHEDULE, self->retry_text);
            goto fail;
        }
        self->schedule[self->nschedule++] = v;
        p = *end ? end + 1 : end;
    }
    /* [notify] templates once notify's config table has the key; the same environment
     * override until then. */
    self->templates_dir = strdup(cfg->templates && *cfg->templates ? cfg->templates
                                                                   : TEMPLATES_DIR);
    if (!self->templates_dir) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    {
        char terr[EM_ERR_LEN];
        DIR *d = opendir(SCHEMAS_DIR);
        if (d)
            closedir(d);
        self->hup_seen = em_signal_reload_count();
        self->tmpl = em_template_load(self->templates_dir, d ? SCHEMAS_DIR : NULL, terr,
                                      sizeof terr);
        if (!self->tmpl) {
            snprintf(err, errlen, "summary templates: %s", terr);
            goto fail;
        }
    }
    self->multi = curl_multi_init();
    if (!self->multi) {
        snprintf(err, errlen, "curl_multi_init failed");
        goto fail;
    }
    curl_multi_setopt(self->multi, CURLMOPT_SOCKETFUNCTION, s_socket_cb);
    curl_multi_setopt(self->multi, CURLMOPT_SOCKETDATA, self);
    curl_multi_setopt(self->multi, CURLMOPT_TIMERFUNCTION, s_timer_cb);
    curl_multi_setopt(self->multi, CURLMOPT_TIMERDATA, self);
    if (metrics) {
        self->m_ok = em_metrics_counter(metrics, "webhook_delivered_total", NULL,
                                        "webhook deliveries answered 2xx");
        self->m_fail = em_metrics_counter(metrics, "webhook_failed_total", NULL,
                                          "webhook attempts that failed (retried or dead)");
        self->m_dead = em_metrics_counter(metrics, "webhook_dead_letters_total", NULL,
                                          "deliveries given up and dead-lettered");
        self->m_refused = em_metrics_counter(metrics, "webhook_refused_total", NULL,
                                             "sinks refused for a private or reserved address");
        self->m_disabled = em_metrics_counter(metrics, "webhook_disabled_total", NULL,
                                              "subscriptions disabled by a 410 answer");
        self->m_redriven = em_metrics_counter(metrics, "webhook_redriven_total", NULL,
                                              "dead letters delivered by a redrive");
        self->m_opened = em_metrics_counter(metrics, "webhook_circuit_opened_total", NULL,
                                            "times an endpoint's circuit breaker opened");
    }
    return self;
fail:
    notify_deliver_destroy(&self);
    return NULL;
}

void notify_deliver_destroy(notify_deliver_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    notify_deliver_t *self = *self_p;
    if (self->store && self->nsubs) {
        self->pg_retry_at = 0;
        (void)notify_deliver_flush(self);
    }
    for (int i = 0; i < self->nsubs; i++) {
        dsub_t *s = self->subs[i];
        if (s->x.easy)
            curl_multi_remove_handle(self->multi, s->x.easy);
        s_sub_free(s);
    }
    free(self->subs);
    for (int i = 0; i < self->nbreakers; i++)
        free(self->breakers[i].endpoint);
    free(self->breakers);
    for (int i = 0; i < self->nredrives; i++) {
        curl_multi_remove_handle(self->multi, self->redrives[i]->x.easy);
        s_redrive_free(self->redrives[i]);
    }
    s_win_clear(self);
    if (self->multi)
        curl_multi_cleanup(self->multi);
    em_store_destroy(&self->store);
    em_template_destroy(&self->tmpl);
    free(self->templates_dir);
    free(self->dsn);
    free(self->retry_text);
    free(self);
    *self_p = NULL;
}

int notify_deliver_pollitems(notify_deliver_t *self, zmq_pollitem_t *items, int max)
{
    int n = 0;
    for (int i = 0; i < self->nsocks && n < max; i++) {
        short ev = 0;
        if (self->socks[i].what & CURL_POLL_IN)
            ev |= ZMQ_POLLIN;
        if (self->socks[i].what & CURL_POLL_OUT)
            ev |= ZMQ_POLLOUT;
        items[n++] = (zmq_pollitem_t){NULL, self->socks[i].fd, ev, 0};
    }
    return n;
}

long notify_deliver_timeout_ms(notify_deliver_t *self, int64_t head)
{
    int64_t now = em_mono_ms(), due = self->next_reload;
    if (self->next_flush < due)
        due = self->next_flush;
    if (self->curl_due >= 0 && self->curl_due < due)
        due = self->curl_due;
    bool pg_ok = now >= self->pg_retry_at;
    for (int i = 0; i < self->nsubs && due > now; i++) {
        dsub_t *s = self->subs[i];
        if (s->gone || s->x.easy)
            continue;
        if (s->attempts > 0 || s->page_i < s->page_n ||
            (s->cursor < head && pg_ok)) {
            int64_t at = s->next_attempt;
            if (self->inflight >= self->cfg.max_inflight)
                continue; /* a completion wakes the loop */
            if (at < due)
                due = at;
        }
    }
    if (due <= now)
        return 0;
    return due - now > 1000 ? 1000 : (long)(due - now);
}

void notify_deliver_run(notify_deliver_t *self, const zmq_pollitem_t *items, int n,
                        int64_t head)
{
    int running = 0;
    for (int i = 0; i < n; i++) {
        int ev = 0;
        if (items[i].revents & ZMQ_POLLIN)
            ev |= CURL_CSELECT_IN;
        if (items[i].revents & ZMQ_POLLOUT)
            ev |= CURL_CSELECT_OUT;
        if (items[i].revents & ZMQ_POLLERR)
            ev |= CURL_CSELECT_ERR;
        if (ev)
            curl_multi_socket_action(self->multi, items[i].fd, ev, &running);
    }
    int64_t now = em_mono_ms();
    if (self->curl_due >= 0 && now >= self->curl_due) {
        self->curl_due = -1;
        curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    s_read_completions(self);
    if (em_signal_reload_count() != self->hup_seen) {
        self->hup_seen = em_signal_reload_count();
        s_templates_reload(self);
    }

    now = em_mono_ms();
    if (!self->loaded || now >= self->next_reload) {
        self->next_reload = now + self->cfg.reload_ms;
        if (s_reload(self) == 0)
            s_redrive_poll(self);
    } else if (self->redrive_more && self->nredrives == 0) {
        s_redrive_poll(self);
    }
    for (int i = 0; i < self->nsubs;) {
        dsub_t *s = self->subs[i];
        if (s->gone && !s->x.easy) {
            if (self->store && em_store_connected(self->store))
                s_unlock(self, s->id);
            s_remove_at(self, i);
            continue;
        }
        if (head >= 0 && s_ready(s, head, now))
            s_advance(self, s, head);
        i++;
    }
    if (now >= self->next_flush) {
        self->next_flush = now + self->cfg.flush_ms;
        (void)notify_deliver_flush(self);
    }
    /* Transfers added above start on the next socket_action; kick libcurl's timer now. */
    if (self->curl_due >= 0 && em_mono_ms() >= self->curl_due) {
        self->curl_due = -1;
        curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        s_read_completions(self);
    }
}

int64_t notify_deliver_pages_read(const notify_deliver_t *self)
{
    return self->m_pages;
}

int notify_deliver_sub_count(const notify_deliver_t *self)
{
    return self->nsubs;
}

int notify_deliver_inflight(const notify_deliver_t *self)
{
    return self->inflight;
}

void notify_deliver_metrics(const notify_deliver_t *self, em_metrics_t *m, int64_t head)
{
    em_metrics_clear(m, "subscription_lag_events");
    for (int i = 0; self && i < self->nsubs; i++) {
        const dsub_t *s = self->subs[i];
        char labels[300];
        snprintf(labels, sizeof labels, "subscription=\"%.200s\"", s->id);
        em_metric_t *g = em_metrics_gauge(m, "subscription_lag_events", labels,
                                          "committed events not yet delivered or dead-lettered, "
                                          "per subscription served by this process");
        em_metric_set(g, head > s->cursor ? (double)(head - s->cursor) : 0.0);
    }
    em_metric_set(em_metrics_gauge(m, "webhook_inflight", NULL, "webhook requests in flight"),
                  self ? (double)self->inflight : 0.0);
}
