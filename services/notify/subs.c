/* subs.c - /v1/subscriptions CRUD on notify's admin HTTP server (see subs.h).  Requests are
 * answered on the loop's thread with short parameterised statements on a connection of its
 * own; the organisation is always taken from the API key, never from the body. */
#include "subs.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <jansson.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "em_config.h"
#include "em_event.h"
#include "em_filter.h"
#include "em_json.h"
#include "em_log.h"
#include "em_store.h"
#include "em_template.h"
#include "em_util.h"
#include "em_webhook.h"
#include "deliver.h"

#define MOD "subs"
#define PREFIX "/v1/subscriptions"
#define MAX_LIST 1000       /* entries in one list member (types, minerals, ...) */
#define MAX_STR 2048        /* length of one string member */
#define MAX_HEADERS 32      /* protocolsettings.headers entries */
#define RETRY_AFTER_S "2"

struct notify_subs {
    char *dsn;
    bool allow_private; /* accept sinks on loopback, private or reserved literal addresses */
    em_store_t *store;
    char err[EM_ERR_LEN];
};

/* The resource as JSON text, built by PostgreSQL from a row `s` of subscriptions. */
#define SUB_JSON                                                                               \
    "jsonb_build_object('id', s.id, 'organisation', s.org_id, 'types', to_jsonb(s.types),"    \
    " 'filters', s.filters, 'sink', s.sink, 'protocol', s.protocol,"                           \
    " 'protocolsettings', s.protocolsettings, 'languages', to_jsonb(s.languages),"             \
    " 'secret', s.secret, 'provinces', to_jsonb(s.provinces),"                                 \
    " 'minerals', to_jsonb(s.minerals), 'projects', to_jsonb(s.project_ids),"                  \
    " 'licences', to_jsonb(s.licence_ids), 'status', s.status,"                                \
    " 'timezone', COALESCE(s.timezone, CASE WHEN s.languages[1] = 'zh-Hans'"                   \
    "  THEN 'Asia/Shanghai' ELSE 'Asia/Karachi' END),"                                         \
    " 'statusreason', s.status_reason, 'created', s.created_at,"                               \
    " 'updated', s.updated_at)::text"

#define ARR(n) "ARRAY(SELECT jsonb_array_elements_text($" #n "::jsonb))"

static const char *s_minerals[] = {
    "copper", "gold", "silver", "molybdenum", "lead", "zinc", "coal", "iron_ore",
    "chromite", "barite", "antimony", "manganese", "nickel", "cobalt", "lithium",
    "rare_earths", "gemstones", "rock_salt", "gypsum", "limestone", "marble", "granite",
    "other", NULL};
static const char *s_languages[] = {"en", "zh-Hans", "ur", NULL};
static const char *s_timezones[] = {"Asia/Karachi", "Asia/Shanghai", NULL};

notify_subs_t *notify_subs_new(const char *dsn)
{
    notify_subs_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->dsn = strdup(dsn ? dsn : "");
    if (!self->dsn) {
        free(self);
        return NULL;
    }
    return self;
}

void notify_subs_destroy(notify_subs_t **self_p)
{
    if (self_p && *self_p) {
        notify_subs_t *self = *self_p;
        em_store_destroy(&self->store);
        free(self->dsn);
        free(self);
        *self_p = NULL;
    }
}

int notify_subs_key_hash(const char *key, char out[65])
{
    uint8_t d[32];
    if (!key)
        return -1;
    em_sha256(key, strlen(key), d);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Answers */

static void s_json_respond(em_http_req_t *req, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text) {
        em_http_respond(req, 500, "application/json", "{\"error\":\"out of memory\"}", 25);
        return;
    }
    em_http_respond(req, status, "application/json", text, strlen(text));
    free(text);
}

static void s_error(em_http_req_t *req, int status, const char *pointer, const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    if (o && pointer)
        json_object_set_new(o, "pointer", json_string(pointer));
    if (status == 401)
        em_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"emine\"");
    if (status == 503)
        em_http_add_header(req, "Retry-After", RETRY_AFTER_S);
    s_json_respond(req, status, o);
    json_decref(o);
}

/* ---------------------------------------------------------------------------------------- */
/* PostgreSQL */

/* Returns true when a statement may be tried (connecting or reconnecting as needed). */
static bool s_pg(notify_subs_t *self)
{
    if (self->store && em_store_connected(self->store))
        return true;
    if (!self->store) {
        self->store = em_store_new(self->dsn, self->err, sizeof self->err);
        if (!self->store) {
            EM_LOG_WARN(MOD, "PostgreSQL unreachable: %s", self->err);
            return false;
        }
        return true;
    }
    return em_store_ensure(self->store) != 0;
}

/* Answers the failure of the last statement: 503 when PostgreSQL went away, else 500. */
static void s_pg_error(notify_subs_t *self, em_http_req_t *req)
{
    const char *why = self->store ? em_store_errstr(self->store) : self->err;
    if (!self->store || em_store_retryable(self->store)) {
        EM_LOG_WARN(MOD, "PostgreSQL unavailable: %s", why);
        s_error(req, 503, NULL, "the subscription store is unavailable; retry later");
    } else {
        EM_LOG_ERROR(MOD, "statement failed: %s", why);
        s_error(req, 500, NULL, "internal error");
    }
}

/* The organisation of the bearer key into org (size EM_ERR_LEN).  Returns 0 (found), 1 (no
 * or unknown key: answered 401) or -1 (PostgreSQL failed: answered). */
static int s_authenticate(notify_subs_t *self, em_http_req_t *req, char *org, size_t orglen)
{
    const char *auth = em_http_req_header(req, "Authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 || !auth[7]) {
        s_error(req, 401, NULL, "missing Authorization: Bearer <organisation API key>");
        return 1;
    }
    const char *key = auth + 7;
    while (*key == ' ')
        key++;
    char hash[65];
    if (notify_subs_key_hash(key, hash) != 0 || !s_pg(self)) {
        s_pg_error(self, req);
        return -1;
    }
    const char *p[1] = {hash};
    PGresult *res = em_store_query(self->store,
                                   "SELECT k.org_id FROM api_keys k"
                                   " WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
                                   1, p);
    if (!res) {
        s_pg_error(self, req);
        return -1;
    }
    int found = PQntuples(res) == 1;
    if (found)
        snprintf(org, orglen, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!found) {
        s_error(req, 401, NULL, "unknown or revoked API key");
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Validation of a request body */

typedef struct {
    char pointer[320];
    char msg[EM_ERR_LEN];
} verr_t;

static int s_fail(verr_t *e, const char *pointer, const char *msg)
{
    snprintf(e->pointer, sizeof e->pointer, "%s", pointer);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    return -1;
}

static bool s_in(const char *v, const char *const *set)
{
    for (int i = 0; set[i]; i++)
        if (strcmp(v, set[i]) == 0)
            return true;
    return false;
}

/* Checks an optional array of strings; allowed (NULL-terminated) or pattern restrict the
 * values.  Returns 0 or -1 (e filled). */
static int s_check_strings(json_t *body, const char *key, const char *const *allowed,
                           const char *pattern, bool nonempty, verr_t *e)
{
    json_t *v = json_object_get(body, key);
    char ptr[64];
    snprintf(ptr, sizeof ptr, "/%s", key);
    if (!v)
        return 0;
    if (!json_is_array(v))
        return s_fail(e, ptr, "must be an array of strings");
    if (json_array_size(v) > MAX_LIST)
        return s_fail(e, ptr, "too many entries (at most 1000)");
    if (nonempty && json_array_size(v) == 0)
        return s_fail(e, ptr, "must not be empty");
    regex_t re;
    if (pattern && regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
        return s_fail(e, ptr, "internal error (pattern)");
    size_t i;
    json_t *s;
    int rc = 0;
    json_array_foreach(v, i, s)
    {
        snprintf(ptr, sizeof ptr, "/%s/%zu", key, i);
        const char *str = json_string_value(s);
        char msg[256];
        if (!str)
            rc = s_fail(e, ptr, "must be a string");
        else if (!*str || json_string_length(s) > 256 || strlen(str) != json_string_length(s))
            rc = s_fail(e, ptr, "must be a non-empty string of at most 256 characters");
        else if (allowed && !s_in(str, allowed)) {
            snprintf(msg, sizeof msg, "'%s' is not one of the allowed values", str);
            rc = s_fail(e, ptr, msg);
        } else if (pattern && regexec(&re, str, 0, NULL, 0) != 0) {
            snprintf(msg, sizeof msg, "'%s' does not match %s", str, pattern);
            rc = s_fail(e, ptr, msg);
        }
        if (rc)
            break;
    }
    if (pattern)
        regfree(&re);
    return rc;
}

/* Checks the sink: an absolute http or https URL with a host, no user info or fragment. */
static int s_check_sink(json_t *v, verr_t *e)
{
    if (!v)
        return s_fail(e, "/sink", "required: the URL events are delivered to");
    const char *url = json_string_value(v);
    if (!url)
        return s_fail(e, "/sink", "must be a string (an http or https URL)");
    if (strlen(url) > MAX_STR || strlen(url) != json_string_length(v))
        return s_fail(e, "/sink", "too long (at most 2048 characters)");
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return s_fail(e, "/sink", "must be an http or https URL");
    CURLU *u = curl_url();
    char *host = NULL, *user = NULL, *frag = NULL;
    int rc = 0;
    if (!u)
        return s_fail(e, "/sink", "out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host)
        rc = s_fail(e, "/sink", "not a valid URL");
    else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK && user)
        rc = s_fail(e, "/sink", "must not carry user information");
    else if (curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK && frag)
        rc = s_fail(e, "/sink", "must not carry a fragment");
    curl_free(host);
    curl_free(user);
    curl_free(frag);
    curl_url_cleanup(u);
    return rc;
}

static int s_check_protocolsettings(json_t *v, verr_t *e)
{
    if (!v)
        return 0;
    if (!json_is_object(v))
        return s_fail(e, "/protocolsettings", "must be an object");
    const char *k;
    json_t *m;
    json_object_foreach(v, k, m)
    {
        char ptr[300];
        snprintf(ptr, sizeof ptr, "/protocolsettings/%.200s", k);
        if (strcmp(k, "method") == 0) {
            if (!json_is_string(m) || strcmp(json_string_value(m), "POST") != 0)
                return s_fail(e, ptr, "only \"POST\" is supported");
        } else if (strcmp(k, "headers") == 0) {
            if (!json_is_object(m))
                return s_fail(e, ptr, "must be an object of header names to string values");
            if (json_object_size(m) > MAX_HEADERS)
                return s_fail(e, ptr, "too many headers (at most 32)");
            const char *hn;
            json_t *hv;
            json_object_foreach(m, hn, hv)
            {
                snprintf(ptr, sizeof ptr, "/protocolsettings/headers/%.200s", hn);
                size_t n = strlen(hn);
                if (n == 0 || n > 64 ||
                    strspn(hn, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-") != n)
                    return s_fail(e, ptr, "not a valid header name");
                if (strncasecmp(hn, "webhook-", 8) == 0 || strcasecmp(hn, "content-type") == 0 ||
                    strcasecmp(hn, "content-length") == 0 || strcasecmp(hn, "host") == 0)
                    return s_fail(e, ptr, "this header is set by notify");
                const char *s = json_string_value(hv);
                if (!s || strlen(s) != json_string_length(hv) || strlen(s) > 1024 ||
                    strpbrk(s, "\r\n"))
                    return s_fail(e, ptr, "must be a string of at most 1024 characters on one line");
            }
        } else {
            return s_fail(e, ptr, "unknown HTTP protocol setting (expected headers, method)");
        }
    }
    return 0;
}

/* Validates a POST/PUT body and fills the normalised members into out (a new object with
 * every member present).  Returns 0 or -1 (e filled). */
static int s_validate(json_t *body, json_t **out, verr_t *e)
{
    static const char *known[] = {"types", "filters", "sink", "protocol", "protocolsettings",
                                  "languages", "secret", "provinces", "minerals", "projects",
                                  "licences", "timezone", NULL};
    static const char *server[] = {"id", "organisation", "status", "statusreason", "created",
                                   "updated", NULL};
    *out = NULL;
    if (!json_is_object(body))
        return s_fail(e, "", "the body must be a JSON object (a subscription)");
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        char ptr[300], msg[400];
        snprintf(ptr, sizeof ptr, "/%.200s", k);
        if (s_in(k, server)) {
            snprintf(msg, sizeof msg, "'%.200s' is set by the server", k);
            return s_fail(e, ptr, msg);
        }
        if (!s_in(k, known)) {
            snprintf(msg, sizeof msg,
                     "unknown member '%.200s' (expected types, filters, sink, protocol, "
                     "protocolsettings, languages, secret, provinces, minerals, projects, "
                     "licences, timezone)", k);
            return s_fail(e, ptr, msg);
        }
    }
    if (s_check_sink(json_object_get(body, "sink"), e) != 0)
        return -1;
    json_t *proto = json_object_get(body, "protocol");
    if (proto && (!json_is_string(proto) || strcmp(json_string_value(proto), "HTTP") != 0))
        return s_fail(e, "/protocol", "only \"HTTP\" is supported");
    if (s_check_protocolsettings(json_object_get(body, "protocolsettings"), e) != 0)
        return -1;
    if (s_check_strings(body, "types", NULL, NULL, false, e) != 0 ||
        s_check_strings(body, "languages", s_languages, NULL, true, e) != 0 ||
        s_check_strings(body, "provinces", NULL, "^PK-(BA|SD|PB|KP|GB|JK|IS)$", false, e) != 0 ||
        s_check_strings(body, "minerals", s_minerals, NULL, false, e) != 0 ||
        s_check_strings(body, "projects", NULL, NULL, false, e) != 0 ||
        s_check_strings(body, "licences", NULL, NULL, false, e) != 0)
        return -1;
    json_t *tz = json_object_get(body, "timezone");
    if (tz && (!json_is_string(tz) || !s_in(json_string_value(tz), s_timezones)))
        return s_fail(e, "/timezone", "must be \"Asia/Karachi\" (PKT) or \"Asia/Shanghai\" (CST)");
    json_t *filters = json_object_get(body, "filters");
    char ferr[EM_ERR_LEN];
    em_filter_t *f = em_filter_new(filters, ferr, sizeof ferr);
    if (!f) {
        /* "filters/1/any/0: message" -> pointer /filters/1/any/0 */
        char *colon = strstr(ferr, ": ");
        char ptr[300] = "/filters";
        if (colon) {
            *colon = '\0';
            snprintf(ptr, sizeof ptr, "/%.290s", ferr);
        }
        return s_fail(e, ptr, colon ? colon + 2 : ferr);
    }
    em_filter_destroy(&f);

    char secret[EM_WEBHOOK_SECRET_LEN];
    json_t *sec = json_object_get(body, "secret");
    if (sec) {
        char werr[128];
        const char *s = json_string_value(sec);
        if (!s || strlen(s) != json_string_length(sec) || strlen(s) > 200)
            return s_fail(e, "/secret", "must be a string (whsec_<base64>)");
        em_webhook_t *wh = em_webhook_new(s, werr, sizeof werr);
        if (!wh)
            return s_fail(e, "/secret", werr);
        em_webhook_destroy(&wh);
    } else if (em_webhook_secret_generate(secret, sizeof secret) != 0) {
        return s_fail(e, "/secret", "could not generate a secret");
    }

    json_t *o = json_object();
    json_object_set_new(o, "sink", json_incref(json_object_get(body, "sink")));
    json_object_set_new(o, "protocol", json_string("HTTP"));
    json_object_set_new(o, "protocolsettings",
                        json_object_get(body, "protocolsettings")
                            ? json_incref(json_object_get(body, "protocolsettings"))
                            : json_object());
    json_object_set_new(o, "filters", filters ? json_incref(filters) : json_array());
    json_object_set_new(o, "secret", sec ? json_incref(sec) : json_string(secret));
    static const char *lists[] = {"types", "provinces", "minerals", "projects", "licences"};
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
        json_t *l = json_object_get(body, lists[i]);
        json_object_set_new(o, lists[i], l ? json_incref(l) : json_array());
    }
    json_t *langs = json_object_get(body, "languages");
    json_object_set_new(o, "languages", langs ? json_incref(langs) : json_pack("[s]", "en"));
    /* Default zone by the first preferred language (zh-Hans: CST, else PKT). */
    json_object_set_new(o, "timezone",
                        tz ? json_incref(tz)
                           : json_string(em_template_default_zone(json_string_value(
                                 json_array_get(json_object_get(o, "languages"), 0)))));
    *out = o;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Handlers */

/* 1 when the sink's host is a literal address that delivery would refuse (loopback, private,
 * link-local, reserved; see notify_deliver_addr_refused) or a name under "localhost".  Names
 * are not resolved here (that would block the loop): delivery checks every address it
 * connects to. */
static int s_sink_refused(const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL;
    int refused = 0;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host) {
        size_t n = strlen(host);
        struct sockaddr_in a4 = {.sin_family = AF_INET};
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
        char inner[64];
        if (n > 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof inner) {
            memcpy(inner, host + 1, n - 2);
            inner[n - 2] = '\0';
            char *zone = strchr(inner, '%');
            if (zone)
                *zone = '\0';
            if (inet_pton(AF_INET6, inner, &a6.sin6_addr) == 1)
                refused = notify_deliver_addr_refused((struct sockaddr *)&a6);
        } else if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
            refused = notify_deliver_addr_refused((struct sockaddr *)&a4);
        } else {
            if (n > 0 && host[n - 1] == '.')
                host[--n] = '\0'; /* "localhost." is "localhost" */
            refused = strcasecmp(host, "localhost") == 0 ||
                      (n > 10 && strcasecmp(host + n - 10, ".localhost") == 0);
        }
    }
    curl_free(host);
    curl_url_cleanup(u);
    return refused;
}

void notify_subs_allow_private(notify_subs_t *self, bool allow)
{
    self->allow_private = allow;
}

/* Parses and validates the body; answers 400 itself.  Returns the normalised object or
 * NULL. */
static json_t *s_read_body(notify_subs_t *self, em_http_req_t *req)
{
    size_t len;
    const char *text = em_http_req_body(req, &len);
    json_t *errors = NULL;
    json_t *body = em_json_parse(text, len, 64, &errors);
    json_decref(errors);
    if (!body) {
        s_error(req, 400, "", "the body is not JSON (or nested too deeply)");
        return NULL;
    }
    verr_t e;
    json_t *norm = NULL;
    if (s_validate(body, &norm, &e) != 0) {
        s_error(req, 400, e.pointer, e.msg);
        json_decref(body);
        return NULL;
    }
    json_decref(body);
    if (!self->allow_private &&
        s_sink_refused(json_string_value(json_object_get(norm, "sink")))) {
        s_error(req, 400, "/sink",
                "resolves to a loopback, private, link-local or reserved address: events are "
                "not delivered there ([notify] webhook_allow_private)");
        json_decref(norm);
        return NULL;
    }
    return norm;
}

/* The text of member k (a JSON value) into a malloc'd string (caller frees). */
static char *s_member_text(json_t *o, const char *k)
{
    return json_dumps(json_object_get(o, k), JSON_COMPACT | JSON_ENCODE_ANY);
}

static void s_respond_text(em_http_req_t *req, int status, const char *text)
{
    em_http_respond(req, status, "application/json", text, strlen(text));
}

/* Runs an INSERT or UPDATE of the normalised body n; id and org as $1 and $2.  Answers. */
static void s_write(notify_subs_t *self, em_http_req_t *req, const char *sql, const char *id,
                    const char *org, json_t *n, int ok_status)
{
    char *types = s_member_text(n, "types"), *filters = s_member_text(n, "filters"),
         *ps = s_member_text(n, "protocolsettings"), *langs = s_member_text(n, "languages"),
         *provs = s_member_text(n, "provinces"), *mins = s_member_text(n, "minerals"),
         *projs = s_member_text(n, "projects"), *lics = s_member_text(n, "licences");
    const char *p[14] = {id, org, types, filters,
                         json_string_value(json_object_get(n, "sink")),
                         json_string_value(json_object_get(n, "protocol")), ps, langs,
                         json_string_value(json_object_get(n, "secret")), provs, mins, projs,
                         lics, json_string_value(json_object_get(n, "timezone"))};
    PGresult *res = NULL;
    if (!types || !filters || !ps || !langs || !provs || !mins || !projs || !lics)
        s_error(req, 500, NULL, "out of memory");
    else if (!s_pg(self) || !(res = em_store_query(self->store, sql, 14, p)))
        s_pg_error(self, req);
    else if (PQntuples(res) == 0)
        s_error(req, 404, NULL, "no such subscription");
    else {
        if (ok_status == 201) {
            char loc[128];
            snprintf(loc, sizeof loc, PREFIX "/%s", id);
            em_http_add_header(req, "Location", loc);
            EM_LOG_INFO(MOD, "organisation %s created subscription %s", org, id);
        }
        s_respond_text(req, ok_status, PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    free(types);
    free(filters);
    free(ps);
    free(langs);
    free(provs);
    free(mins);
    free(projs);
    free(lics);
}

static const char s_insert_sql[] =
    "WITH s AS (INSERT INTO subscriptions (id, org_id, types, filters, sink, protocol,"
    " protocolsettings, languages, secret, provinces, minerals, project_ids, licence_ids,"
    " timezone)"
    " VALUES ($1, $2, " ARR(3) ", $4::jsonb, $5, $6, $7::jsonb, " ARR(8) ", $9, " ARR(10)
    ", " ARR(11) ", " ARR(12) ", " ARR(13) ", $14) RETURNING *),"
    " c AS (INSERT INTO subscription_cursors (subscription_id, seq)"
    "  SELECT s.id, (SELECT COALESCE(max(seq), 0) FROM events) FROM s)"
    " SELECT " SUB_JSON " FROM s";

static const char s_update_sql[] =
    "UPDATE subscriptions s SET types = " ARR(3) ", filters = $4::jsonb, sink = $5,"
    " protocol = $6, protocolsettings = $7::jsonb, languages = " ARR(8) ", secret = $9,"
    " provinces = " ARR(10) ", minerals = " ARR(11) ", project_ids = " ARR(12) ","
    " licence_ids = " ARR(13) ", timezone = $14, updated_at = now()"
    " WHERE s.id = $1 AND s.org_id = $2 RETURNING " SUB_JSON;

static void s_create(notify_subs_t *self, em_http_req_t *req, const char *org)
{
    json_t *n = s_read_body(self, req);
    if (!n)
        return;
    char id[32] = "sub_";
    em_random_hex(id + 4, 24);
    s_write(self, req, s_insert_sql, id, org, n, 201);
    json_decref(n);
}

static void s_replace(notify_subs_t *self, em_http_req_t *req, const char *org, const char *id)
{
    json_t *n = s_read_body(self, req);
    if (!n)
        return;
    s_write(self, req, s_update_sql, id, org, n, 200);
    json_decref(n);
}

static void s_list(notify_subs_t *self, em_http_req_t *req, const char *org)
{
    const char *p[1] = {org};
    PGresult *res = NULL;
    if (!s_pg(self) ||
        !(res = em_store_query(self->store,
                               "SELECT COALESCE(jsonb_agg(j ORDER BY created, id), '[]')::text"
                               " FROM (SELECT (" SUB_JSON ")::jsonb AS j, s.created_at AS created,"
                               " s.id FROM subscriptions s WHERE s.org_id = $1) x",
                               1, p))) {
        s_pg_error(self, req);
        return;
    }
    s_respond_text(req, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}

static void s_get(notify_subs_t *self, em_http_req_t *req, const char *org, const char *id)
{
    const char *p[2] = {id, org};
    PGresult *res = NULL;
    if (!s_pg(self) ||
        !(res = em_store_query(self->store,
                               "SELECT " SUB_JSON " FROM subscriptions s"
                               " WHERE s.id = $1 AND s.org_id = $2",
                               2, p))) {
        s_pg_error(self, req);
        return;
    }
    if (PQntuples(res) == 0)
        s_error(req, 404, NULL, "no such subscription");
    else
        s_respond_text(req, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}

static void s_delete(notify_subs_t *self, em_http_req_t *req, const char *org, const char *id)
{
    const char *p[2] = {id, org};
    PGresult *res = NULL;
    if (!s_pg(self) ||
        !(res = em_store_query(self->store,
                               "DELETE FROM subscriptions WHERE id = $1 AND org_id = $2"
                               " RETURNING id",
                               2, p))) {
        s_pg_error(self, req);
        return;
    }
    if (PQntuples(res) == 0)
        s_error(req, 404, NULL, "no such subscription");
    else {
        EM_LOG_INFO(MOD, "organisation %s deleted subscription %s", org, id);
        em_http_respond(req, 204, "application/json", "", 0);
    }
    PQclear(res);
}

/* POST /v1/subscriptions/{id}/replay: queues the events already behind the subscription's
 * cursor that the selectors pick for a second delivery (notify's redrive lane: one at a time,
 * in seq order, visibility and filters checked again).  Body: at least one of
 *   {"fromSeq": n, "toSeq": n, "since": "<RFC 3339>", "until": "<RFC 3339>",
 *    "project": "<project id>", "licence": "<licence id>"}
 * Answers 202 {"queued": n}, 400 naming the member, 404 for another organisation's. */
static void s_replay(notify_subs_t *self, em_http_req_t *req, const char *org, const char *id)
{
    static const char *names[] = {"fromSeq", "toSeq", "since", "until", "project", "licence",
                                  NULL};
    size_t len;
    const char *text = em_http_req_body(req, &len);
    json_t *errors = NULL;
    json_t *body = em_json_parse(text, len, 8, &errors);
    json_decref(errors);
    char v[6][64] = {{0}};
    const char *p[8] = {id, org, NULL, NULL, NULL, NULL, NULL, NULL};
    char ptr[300], msg[400];
    int given = 0;
    if (!json_is_object(body)) {
        s_error(req, 400, "", "the body must be a JSON object: at least one of fromSeq, toSeq, "
                              "since, until, project, licence");
        goto done;
    }
    const char *k;
    json_t *val;
    json_object_foreach(body, k, val)
    {
        int i = 0;
        while (names[i] && strcmp(names[i], k) != 0)
            i++;
        snprintf(ptr, sizeof ptr, "/%.200s", k);
        if (!names[i]) {
            snprintf(msg, sizeof msg, "unknown member '%.200s' (expected fromSeq, toSeq, since, "
                                      "until, project, licence)", k);
            s_error(req, 400, ptr, msg);
            goto done;
        }
        if (i < 2) {
            if (!json_is_integer(val) || json_integer_value(val) < 0) {
                s_error(req, 400, ptr, "must be a non-negative integer (a seq)");
                goto done;
            }
            snprintf(v[i], sizeof v[i], "%" JSON_INTEGER_FORMAT, json_integer_value(val));
        } else {
            const char *str = json_string_value(val);
            long long ms;
            if (!str || !*str || json_string_length(val) >= sizeof v[i] ||
                (i < 4 && !em_rfc3339_parse(str, &ms))) {
                s_error(req, 400, ptr, i < 4 ? "must be an RFC 3339 date-time"
                                             : "must be a non-empty string of at most 63 bytes");
                goto done;
            }
            memcpy(v[i], str, json_string_length(val) + 1);
        }
        p[2 + i] = v[i];
        given++;
    }
    if (!given) {
        s_error(req, 400, "", "at least one of fromSeq, toSeq, since, until, project, licence");
        goto done;
    }
    PGresult *res = NULL;
    if (!s_pg(self) ||
        !(res = em_store_query(
              self->store,
              "WITH s AS (SELECT id FROM subscriptions WHERE id = $1 AND org_id = $2),"
              " q AS (INSERT INTO delivery_dead_letters (subscription_id, seq, attempts,"
              "  last_error, redriven_at)"
              "  SELECT s.id, e.seq, 0, 'replay requested', now() FROM s, events e"
              "  WHERE e.seq <= COALESCE((SELECT seq FROM subscription_cursors"
              "   WHERE subscription_id = s.id), 0)"
              "  AND ($3::bigint IS NULL OR e.seq >= $3::bigint)"
              "  AND ($4::bigint IS NULL OR e.seq <= $4::bigint)"
              "  AND ($5::timestamptz IS NULL OR e.time >= $5::timestamptz)"
              "  AND ($6::timestamptz IS NULL OR e.time < $6::timestamptz)"
              "  AND ($7::text IS NULL OR e.projectid = $7"
              "   OR e.envelope->'data'->>'projectId' = $7)"
              "  AND ($8::text IS NULL OR e.envelope->'data'->>'licenceId' = $8"
              "   OR e.subject = $8)"
              "  ON CONFLICT (subscription_id, seq) DO UPDATE SET redriven_at = now()"
              "  RETURNING seq)"
              " SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM q)",
              8, p))) {
        s_pg_error(self, req);
        goto done;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "0") == 0) {
        s_error(req, 404, NULL, "no such subscription");
    } else {
        char out[64];
        int n = snprintf(out, sizeof out, "{\"queued\":%s}", PQgetvalue(res, 0, 1));
        EM_LOG_INFO(MOD, "organisation %s queued %s event(s) for replay to %s", org,
                    PQgetvalue(res, 0, 1), id);
        em_http_respond(req, 202, "application/json", out, (size_t)n);
    }
    PQclear(res);
done:
    json_decref(body);
}

int notify_subs_handle(notify_subs_t *self, em_http_req_t *req)
{
    const char *path = em_http_req_path(req);
    const char *method = em_http_req_method(req);
    size_t plen = strlen(PREFIX);
    if (strncmp(path, PREFIX, plen) != 0 || (path[plen] != '\0' && path[plen] != '/'))
        return 0;
    const char *id = path[plen] == '/' ? path + plen + 1 : NULL;
    if (id && !*id)
        id = NULL; /* "/v1/subscriptions/" is the collection */
    bool collection = id == NULL;
    char idbuf[72];
    bool replay = false;
    const char *slash = id ? strchr(id, '/') : NULL;
    if (slash && strcmp(slash, "/replay") == 0 && (size_t)(slash - id) < sizeof idbuf) {
        memcpy(idbuf, id, (size_t)(slash - id));
        idbuf[slash - id] = '\0';
        id = idbuf;
        replay = true;
    }
    if (id && (strlen(id) > 64 || strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                             "0123456789_-") != strlen(id))) {
        s_error(req, 404, NULL, "no such subscription");
        return 1;
    }
    bool allowed = replay       ? strcmp(method, "POST") == 0
                   : collection ? (strcmp(method, "GET") == 0 || strcmp(method, "POST") == 0)
                                : (strcmp(method, "GET") == 0 || strcmp(method, "PUT") == 0 ||
                                   strcmp(method, "DELETE") == 0);
    if (!allowed) {
        em_http_add_header(req, "Allow",
                           replay ? "POST" : collection ? "GET, POST" : "GET, PUT, DELETE");
        s_error(req, 405, NULL, "method not allowed");
        return 1;
    }
    if (!self) {
        s_error(req, 503, NULL, "subscriptions are not available");
        return 1;
    }
    char org[EM_ERR_LEN];
    if (s_authenticate(self, req, org, sizeof org) != 0)
        return 1;
    if (replay)
        s_replay(self, req, org, id);
    else if (collection && strcmp(method, "POST") == 0)
        s_create(self, req, org);
    else if (collection)
        s_list(self, req, org);
    else if (strcmp(method, "GET") == 0)
        s_get(self, req, org, id);
    else if (strcmp(method, "PUT") == 0)
        s_replace(self, req, org, id);
    else
        s_delete(self, req, org, id);
    return 1;
}
