/* test_subs.c - /v1/subscriptions on notify's admin HTTP server, in-process against a real
 * PostgreSQL holding archive's migrations: API-key authentication, create/list/get/replace/
 * delete scoped to the caller's organisation, precise 400 answers, 405 with Allow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_testsrv.h"
#include "em_util.h"
#include "../../services/notify/notify.h"
#include "../../services/notify/subs.h"

#define KEY_BA "emk_test_balochistan_department_key"
#define KEY_MHD "emk_test_mhd_key"
#define KEY_REVOKED "emk_test_revoked_key"

static PGconn *s_pg;
static notify_t *s_notify;

static void s_sql(const char *sql)
{
    PGresult *r = PQexec(s_pg, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(s_pg));
    PQclear(r);
}

static char *s_sql_text(const char *sql, const char *param)
{
    const char *p[1] = {param};
    PGresult *r = PQexecParams(s_pg, sql, param ? 1 : 0, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    char *v = PQntuples(r) > 0 ? strdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
    return v;
}

static void s_add_key(const char *org, const char *key, int revoked)
{
    char hash[65];
    assert_int_equal(notify_subs_key_hash(key, hash), 0);
    const char *p[3] = {org, hash, revoked ? "now" : NULL};
    PGresult *r = PQexecParams(s_pg,
                               "INSERT INTO api_keys (org_id, key_hash, revoked_at)"
                               " VALUES ($1, $2, $3::timestamptz)",
                               3, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
}

typedef struct {
    int status;
    char headers[4096];
    char body[65536];
    json_t *json; /* parsed body or NULL */
} resp_t;

static void s_resp_clear(resp_t *r)
{
    json_decref(r->json);
    r->json = NULL;
}

/* One HTTP/1.0 request against notify's admin port, stepping notify meanwhile. */
static void s_http(const char *method, const char *path, const char *key, const char *body,
                   resp_t *out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)notify_http_port(s_notify));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    char *req = NULL;
    size_t reqlen = 0;
    FILE *m = open_memstream(&req, &reqlen);
    fprintf(m, "%s %s HTTP/1.0\r\nHost: x\r\n", method, path);
    if (key)
        fprintf(m, "Authorization: Bearer %s\r\n", key);
    if (body)
        fprintf(m, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                strlen(body), body);
    else
        fprintf(m, "\r\n");
    fclose(m);
    size_t sent = 0;
    static char resp[65536 + 4096];
    size_t got = 0;
    int64_t end = em_mono_ms() + 10000;
    while (em_mono_ms() < end) {
        if (sent < reqlen) {
            ssize_t w = send(fd, req + sent, reqlen - sent, 0);
            if (w > 0)
                sent += (size_t)w;
        }
        assert_int_equal(notify_step(s_notify, 5), 0);
        ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
        if (r == 0)
            break;
        if (r > 0)
            got += (size_t)r;
    }
    close(fd);
    free(req);
    resp[got] = '\0';
    memset(out, 0, sizeof *out);
    assert_int_equal(sscanf(resp, "HTTP/1.%*d %d", &out->status), 1);
    const char *b = strstr(resp, "\r\n\r\n");
    assert_non_null(b);
    snprintf(out->headers, sizeof out->headers, "%.*s", (int)(b - resp), resp);
    snprintf(out->body, sizeof out->body, "%s", b + 4);
    out->json = json_loads(out->body, JSON_DECODE_ANY, NULL);
}

static const char *s_str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int s_group_setup(void **state)
{
    (void)state;
    const char *dsn = em_testsrv_pg_start();
    s_pg = PQconnectdb(dsn);
    assert_int_equal(PQstatus(s_pg), CONNECTION_OK);
    s_sql("SET client_min_messages = warning");
    em_testsrv_pg_migrate(dsn);
    s_sql("INSERT INTO organisations (id, name, kind, province, source_prefixes) VALUES"
          " ('ba-mmdd', 'Balochistan M&MDD', 'authority', 'PK-BA', '{/pk/ba/mmdd/}')");
    s_sql("INSERT INTO organisations (id, name, kind, party_ids) VALUES"
          " ('mhd', 'MCC Huaye Duddar', 'enterprise', '{0045121}')");
    s_add_key("ba-mmdd", KEY_BA, 0);
    s_add_key("mhd", KEY_MHD, 0);
    s_add_key("mhd", KEY_REVOKED, 1);
    for (int seq = 1; seq <= 3; seq++) {
        char sql[512];
        snprintf(sql, sizeof sql,
                 "INSERT INTO events (seq, source, id, type, envelope, digest, chain) VALUES"
                 " (%d, '/x', 'e%d', 't', '{}', repeat('0', 64), repeat('0', 64))",
                 seq, seq);
        s_sql(sql);
    }
    setenv("EMINE_PG_DSN", dsn, 1);
    setenv("EMINE_BUS_EVENTS", "tcp://127.0.0.1:1", 1);
    setenv("EMINE_NOTIFY_ZMQ", "tcp://127.0.0.1:*", 1);
    setenv("EMINE_NOTIFY_HTTP", "127.0.0.1:0", 1);
    setenv("EMINE_LOG_LEVEL", getenv("TEST_VERBOSE") ? "debug" : "error", 1);
    unsetenv("EMINE_CONFIG");
    s_notify = notify_new(NULL);
    assert_non_null(s_notify);
    return 0;
}

static int s_group_teardown(void **state)
{
    (void)state;
    notify_destroy(&s_notify);
    PQfinish(s_pg);
    em_testsrv_stop_all();
    return 0;
}

static void test_authentication(void **state)
{
    (void)state;
    resp_t r;
    s_http("GET", "/v1/subscriptions", NULL, NULL, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.headers, "WWW-Authenticate: Bearer"));
    assert_string_equal(s_str(r.json, "error"),
                        "missing Authorization: Bearer <organisation API key>");
    s_resp_clear(&r);
    s_http("GET", "/v1/subscriptions", "emk_wrong", NULL, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(s_str(r.json, "error"), "unknown or revoked API key");
    s_resp_clear(&r);
    s_http("POST", "/v1/subscriptions", KEY_REVOKED, "{\"sink\":\"https://a.example/\"}", &r);
    assert_int_equal(r.status, 401);
    s_resp_clear(&r);
    /* Not ours: the admin endpoints still answer as before. */
    s_http("GET", "/healthz", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    s_resp_clear(&r);
    s_http("POST", "/healthz", NULL, "{}", &r);
    assert_int_equal(r.status, 405);
    s_resp_clear(&r);
    s_http("GET", "/v1/subscriptionsx", KEY_MHD, NULL, &r);
    assert_int_equal(r.status, 404);
    s_resp_clear(&r);
}

static void test_crud(void **state)
{
    (void)state;
    resp_t r;
    s_http("POST", "/v1/subscriptions", KEY_MHD,
           "{\"sink\":\"https://hooks.mhd.example/emine\","
           "\"types\":[\"pk.gov.emining.shipment.exported\"],"
           "\"filters\":[{\"prefix\":{\"subject\":\"PK-BA/\"}}],"
           "\"languages\":[\"zh-Hans\",\"en\"],\"projects\":[\"duddar\"]}",
           &r);
    assert_int_equal(r.status, 201);
    char id[64];
    snprintf(id, sizeof id, "%s", s_str(r.json, "id"));
    assert_int_equal(strncmp(id, "sub_", 4), 0);
    char loc[128];
    snprintf(loc, sizeof loc, "Location: /v1/subscriptions/%s", id);
    assert_non_null(strstr(r.headers, loc));
    assert_string_equal(s_str(r.json, "organisation"), "mhd");
    assert_string_equal(s_str(r.json, "protocol"), "HTTP");
    assert_string_equal(s_str(r.json, "status"), "active");
    assert_int_equal(strncmp(s_str(r.json, "secret"), "whsec_", 6), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r.json, "languages"), 0)),
                        "zh-Hans");
    /* The time zone follows the first language when not given: zh-Hans -> CST. */
    assert_string_equal(s_str(r.json, "timezone"), "Asia/Shanghai");
    assert_int_equal(json_array_size(json_object_get(r.json, "minerals")), 0);
    assert_true(json_is_object(json_object_get(r.json, "protocolsettings")));
    s_resp_clear(&r);
    /* The cursor starts at the archive's head. */
    char *cur = s_sql_text("SELECT seq FROM subscription_cursors WHERE subscription_id = $1", id);
    assert_string_equal(cur, "3");
    free(cur);

    char path[128];
    snprintf(path, sizeof path, "/v1/subscriptions/%s", id);
    s_http("GET", path, KEY_MHD, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(s_str(r.json, "sink"), "https://hooks.mhd.example/emine");
    s_resp_clear(&r);
    s_http("GET", "/v1/subscriptions", KEY_MHD, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(r.json), 1);
    s_resp_clear(&r);

    /* Another organisation sees nothing of it and cannot touch it. */
    s_http("GET", "/v1/subscriptions", KEY_BA, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "[]");
    s_resp_clear(&r);
    s_http("GET", path, KEY_BA, NULL, &r);
    assert_int_equal(r.status, 404);
    s_resp_clear(&r);
    s_http("PUT", path, KEY_BA, "{\"sink\":\"https://evil.example/\"}", &r);
    assert_int_equal(r.status, 404);
    s_resp_clear(&r);
    s_http("DELETE", path, KEY_BA, NULL, &r);
    assert_int_equal(r.status, 404);
    s_resp_clear(&r);

    /* Replace: every member is taken from the body (the secret is kept when given). */
    s_http("PUT", path, KEY_MHD,
           "{\"sink\":\"http://hooks.mhd.example:8080/v2\",\"secret\":"
           "\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\",\"minerals\":[\"zinc\",\"lead\"],"
           "\"protocolsettings\":{\"headers\":{\"X-Tenant\":\"mhd\"}}}",
           &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(s_str(r.json, "timezone"), "Asia/Karachi"); /* languages: en */
    assert_string_equal(s_str(r.json, "sink"), "http://hooks.mhd.example:8080/v2");
    assert_string_equal(s_str(r.json, "secret"), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert_int_equal(json_array_size(json_object_get(r.json, "types")), 0);
    assert_int_equal(json_array_size(json_object_get(r.json, "minerals")), 2);
    assert_string_equal(s_str(r.json, "id"), id);
    s_resp_clear(&r);

    s_http("PATCH", path, KEY_MHD, "{}", &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.headers, "Allow: GET, PUT, DELETE"));
    s_resp_clear(&r);
    s_http("DELETE", "/v1/subscriptions", KEY_MHD, NULL, &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.headers, "Allow: GET, POST"));
    s_resp_clear(&r);

    s_http("DELETE", path, KEY_MHD, NULL, &r);
    assert_int_equal(r.status, 204);
    s_resp_clear(&r);
    s_http("GET", path, KEY_MHD, NULL, &r);
    assert_int_equal(r.status, 404);
    s_resp_clear(&r);
    cur = s_sql_text("SELECT count(*) FROM subscription_cursors WHERE subscription_id = $1", id);
    assert_string_equal(cur, "0");
    free(cur);
    s_http("GET", "/v1/subscriptions/bad%20id", KEY_MHD, NULL, &r);
    assert_int_equal(r.status, 404);
    s_resp_clear(&r);
}

static void test_bad_bodies(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *pointer;
        const char *error;
    } cases[] = {
        {"not json", "", "the body is not JSON (or nested too deeply)"},
        {"[]", "", "the body must be a JSON object (a subscription)"},
        {"{}", "/sink", "required: the URL events are delivered to"},
        {"{\"sink\":5}", "/sink", "must be a string (an http or https URL)"},
        {"{\"sink\":\"ftp://x.example/\"}", "/sink", "must be an http or https URL"},
        {"{\"sink\":\"http://\"}", "/sink", "not a valid URL"},
        {"{\"sink\":\"https://u:p@x.example/\"}", "/sink", "must not carry user information"},
        {"{\"sink\":\"https://x.example/#f\"}", "/sink", "must not carry a fragment"},
        {"{\"sink\":\"http://127.0.0.1:8080/x\"}", "/sink",
         "resolves to a loopback, private, link-local or reserved address: events are not delivered there ([notify] webhook_allow_private)"},
        {"{\"sink\":\"http://10.1.2.3/\"}", "/sink",
         "resolves to a loopback, private, link-local or reserved address: events are not delivered there ([notify] webhook_allow_private)"},
        {"{\"sink\":\"https://192.168.1.1/\"}", "/sink",
         "resolves to a loopback, private, link-local or reserved address: events are not delivered there ([notify] webhook_allow_private)"},
        {"{\"sink\":\"http://[::1]:9/\"}", "/sink",
         "resolves to a loopback, private, link-local or reserved address: events are not delivered there ([notify] webhook_allow_private)"},
        {"{\"sink\":\"http://[fe80::1]/\"}", "/sink",
         "resolves to a loopback, private, link-local or reserved address: events are not delivered there ([notify] webhook_allow_private)"},
        {"{\"sink\":\"http://169.254.169.254/latest/meta-data\"}", "/sink",
         "resolves to a loopback, private, link-local or reserved address: events are not delivered there ([notify] webhook_allow_private)"},
        {"{\"sink\":\"http://0.0.0.0/\"}", "/sink",
         "resolves to a loopback, private, link-local or reserved address: events are not delivered there ([notify] webhook_allow_private)"},
        {"{\"sink\":\"http://LOCALHOST./\"}", "/sink",
         "resolves to a loopback, private, link-local or reserved address: events are not delivered there ([notify] webhook_allow_private)"},
        {"{\"sink\":\"http://metadata.localhost/\"}", "/sink",
         "resolves to a loopback, private, link-local or reserved address: events are not delivered there ([notify] webhook_allow_private)"},
        {"{\"sink\":\"https://x.example/\",\"id\":\"mine\"}", "/id", "'id' is set by the server"},
        {"{\"sink\":\"https://x.example/\",\"colour\":1}", "/colour",
         "unknown member 'colour' (expected types, filters, sink, protocol, protocolsettings, "
         "languages, secret, provinces, minerals, projects, licences, timezone)"},
        {"{\"sink\":\"https://x.example/\",\"timezone\":\"Europe/London\"}", "/timezone",
         "must be \"Asia/Karachi\" (PKT) or \"Asia/Shanghai\" (CST)"},
        {"{\"sink\":\"https://x.example/\",\"timezone\":480}", "/timezone",
         "must be \"Asia/Karachi\" (PKT) or \"Asia/Shanghai\" (CST)"},
        {"{\"sink\":\"https://x.example/\",\"protocol\":\"MQTT\"}", "/protocol",
         "only \"HTTP\" is supported"},
        {"{\"sink\":\"https://x.example/\",\"protocolsettings\":{\"method\":\"GET\"}}",
         "/protocolsettings/method", "only \"POST\" is supported"},
        {"{\"sink\":\"https://x.example/\",\"protocolsettings\":{\"headers\":"
         "{\"webhook-id\":\"x\"}}}",
         "/protocolsettings/headers/webhook-id", "this header is set by notify"},
        {"{\"sink\":\"https://x.example/\",\"protocolsettings\":{\"headers\":"
         "{\"X-A\":\"a\\r\\nb\"}}}",
         "/protocolsettings/headers/X-A", "must be a string of at most 1024 characters on one line"},
        {"{\"sink\":\"https://x.example/\",\"protocolsettings\":{\"qos\":1}}",
         "/protocolsettings/qos", "unknown HTTP protocol setting (expected headers, method)"},
        {"{\"sink\":\"https://x.example/\",\"types\":\"a\"}", "/types", "must be an array of strings"},
        {"{\"sink\":\"https://x.example/\",\"types\":[\"a\",3]}", "/types/1", "must be a string"},
        {"{\"sink\":\"https://x.example/\",\"languages\":[]}", "/languages", "must not be empty"},
        {"{\"sink\":\"https://x.example/\",\"languages\":[\"fr\"]}", "/languages/0",
         "'fr' is not one of the allowed values"},
        {"{\"sink\":\"https://x.example/\",\"provinces\":[\"PK-XX\"]}", "/provinces/0",
         "'PK-XX' does not match ^PK-(BA|SD|PB|KP|GB|JK|IS)$"},
        {"{\"sink\":\"https://x.example/\",\"minerals\":[\"unobtainium\"]}", "/minerals/0",
         "'unobtainium' is not one of the allowed values"},
        {"{\"sink\":\"https://x.example/\",\"filters\":[{\"exact\":{\"type\":\"a\"}},"
         "{\"any\":[{\"sql\":\"x\"}]}]}",
         "/filters/1/any/0",
         "unknown dialect 'sql' (expected exact, prefix, suffix, all, any or not)"},
        {"{\"sink\":\"https://x.example/\",\"filters\":{}}", "/filters",
         "must be an array of filter expressions"},
        {"{\"sink\":\"https://x.example/\",\"secret\":\"whsec_\"}", "/secret",
         "empty webhook secret after the whsec_ prefix"},
        {"{\"sink\":\"https://x.example/\",\"secret\":\"whsec_***\"}", "/secret",
         "webhook secret is not base64"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        resp_t r;
        s_http("POST", "/v1/subscriptions", KEY_BA, cases[i].body, &r);
        if (r.status != 400)
            fail_msg("case %zu %s: status %d %s", i, cases[i].body, r.status, r.body);
        assert_non_null(r.json);
        assert_string_equal(s_str(r.json, "pointer"), cases[i].pointer);
        assert_string_equal(s_str(r.json, "error"), cases[i].error);
        s_resp_clear(&r);
    }
    char *n = s_sql_text("SELECT count(*) FROM subscriptions WHERE org_id = 'ba-mmdd'", NULL);
    assert_string_equal(n, "0"); /* nothing was written */
    free(n);
}

/* A subscriber replays events already behind its cursor, by seq range, time and entity;
 * another organisation's subscription is not found; bad selectors name their member. */
static void test_replay(void **state)
{
    (void)state;
    resp_t r;
    s_http("POST", "/v1/subscriptions", KEY_BA, "{\"sink\":\"https://ba.example/hook\"}", &r);
    assert_int_equal(r.status, 201);
    char path[160];
    snprintf(path, sizeof path, "/v1/subscriptions/%s/replay", s_str(r.json, "id"));
    char *id = strdup(s_str(r.json, "id"));
    s_resp_clear(&r);
    s_http("POST", path, KEY_BA, "{\"fromSeq\":2}", &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(json_integer_value(json_object_get(r.json, "queued")), 2); /* 2 and 3 */
    s_resp_clear(&r);
    char *rows = s_sql_text("SELECT string_agg(seq || ':' || attempts, ',' ORDER BY seq)"
                            " FROM delivery_dead_letters WHERE subscription_id = $1"
                            " AND redriven_at IS NOT NULL", id);
    assert_string_equal(rows, "2:0,3:0");
    free(rows);
    s_http("POST", path, KEY_BA, "{\"fromSeq\":1,\"toSeq\":1,\"since\":\"2000-01-01T00:00:00Z\"}",
           &r);
    assert_int_equal(r.status, 202); /* the test events have no time: none selected */
    assert_int_equal(json_integer_value(json_object_get(r.json, "queued")), 0);
    s_resp_clear(&r);
    s_http("POST", path, KEY_MHD, "{\"fromSeq\":1}", &r);
    assert_int_equal(r.status, 404); /* another organisation's */
    s_resp_clear(&r);
    s_http("GET", path, KEY_BA, NULL, &r);
    assert_int_equal(r.status, 405);
    s_resp_clear(&r);
    static const struct {
        const char *body, *pointer;
    } bad[] = {{"{}", ""},
               {"[]", ""},
               {"{\"fromSeq\":-1}", "/fromSeq"},
               {"{\"toSeq\":\"5\"}", "/toSeq"},
               {"{\"since\":\"yesterday\"}", "/since"},
               {"{\"until\":5}", "/until"},
               {"{\"project\":\"\"}", "/project"},
               {"{\"colour\":1}", "/colour"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        s_http("POST", path, KEY_BA, bad[i].body, &r);
        if (r.status != 400)
            fail_msg("%s: %d %s", bad[i].body, r.status, r.body);
        assert_string_equal(s_str(r.json, "pointer"), bad[i].pointer);
        s_resp_clear(&r);
    }
    rows = s_sql_text("SELECT count(*) FROM delivery_dead_letters WHERE subscription_id = $1",
                      id);
    assert_string_equal(rows, "2"); /* the refused requests queued nothing */
    free(rows);
    free(id);
}

static void test_pg_down(void **state)
{
    (void)state;
    resp_t r;
    em_testsrv_pg_stop();
    s_http("GET", "/v1/subscriptions", KEY_MHD, NULL, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.headers, "Retry-After: "));
    s_resp_clear(&r);
    em_testsrv_pg_start();
    PQreset(s_pg);
    s_http("GET", "/v1/subscriptions", KEY_MHD, NULL, &r);
    assert_int_equal(r.status, 200);
    s_resp_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authentication),
        cmocka_unit_test(test_crud),
        cmocka_unit_test(test_bad_bodies),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_pg_down),
    };
    return cmocka_run_group_tests(tests, s_group_setup, s_group_teardown);
}
