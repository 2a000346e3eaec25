/* test_deliver.c - webhook delivery by notify, in-process against a real PostgreSQL and a
 * local receiver (an em_http server pumped in the same loop): visibility before filters,
 * seq order, Standard Webhooks signatures, retries with Retry-After, dead letters, 410,
 * refused private sinks, and resumption from the persisted cursor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_http.h"
#include "em_testsrv.h"
#include "em_util.h"
#include "em_webhook.h"
#include "../../services/notify/deliver.h"
#include "../../services/notify/notify.h"

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define MAX_GOT 256

static PGconn *s_pg;

typedef struct {
    em_http_t *http;
    int n;                 /* requests received */
    int64_t seqs[MAX_GOT]; /* from webhook-id */
    int64_t at_ms[MAX_GOT];
    char paths[MAX_GOT][32];
    int bad_signatures;
    int bad_headers;
    int answers[MAX_GOT];  /* status to answer request i (0: 204) */
    const char *retry_after; /* sent with every non-2xx answer when set */
    char last_body[16384];   /* the body of the last request (cut) */
} receiver_t;

static receiver_t s_rx;

static void s_sql(const char *sql)
{
    PGresult *r = PQexec(s_pg, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(s_pg));
    PQclear(r);
}

static char *s_sql_text(const char *sql)
{
    PGresult *r = PQexec(s_pg, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    char *v = PQntuples(r) > 0 ? strdup(PQgetvalue(r, 0, 0)) : strdup("");
    PQclear(r);
    return v;
}

static void s_assert_sql(const char *sql, const char *want)
{
    char *got = s_sql_text(sql);
    if (strcmp(got, want) != 0)
        fail_msg("%s: got '%s', want '%s'", sql, got, want);
    free(got);
}

static const char *s_or_empty(const char *s)
{
    return s ? s : "";
}

static int s_sql_int(const char *sql)
{
    char *t = s_sql_text(sql);
    int v = atoi(t);
    free(t);
    return v;
}

static void s_receive(void *arg, em_http_req_t *req)
{
    receiver_t *rx = arg;
    size_t len;
    const char *body = em_http_req_body(req, &len);
    const char *id = em_http_req_header(req, "webhook-id");
    const char *ts = em_http_req_header(req, "webhook-timestamp");
    const char *sig = em_http_req_header(req, "webhook-signature");
    const char *ct = em_http_req_header(req, "Content-Type");
    char err[64];
    em_webhook_t *wh = em_webhook_new(SECRET, err, sizeof err);
    if (!em_webhook_verify(wh, id, ts, sig, body, len, em_now_ms() / 1000, NULL))
        rx->bad_signatures++;
    em_webhook_destroy(&wh);
    if (!ct || strcmp(ct, "application/cloudevents+json") != 0 || !id ||
        strncmp(id, "evt_", 4) != 0 || strcmp(em_http_req_method(req), "POST") != 0)
        rx->bad_headers++;
    int i = rx->n < MAX_GOT ? rx->n : MAX_GOT - 1;
    rx->seqs[i] = id ? strtoll(id + 4, NULL, 10) : -1;
    rx->at_ms[i] = em_mono_ms();
    snprintf(rx->paths[i], sizeof rx->paths[i], "%s", em_http_req_path(req));
    snprintf(rx->last_body, sizeof rx->last_body, "%.*s", (int)len, body);
    /* The body is the event itself, whose id names its seq. */
    json_t *ev = json_loadb(body, len, 0, NULL);
    char want[32];
    snprintf(want, sizeof want, "e%" PRId64, rx->seqs[i]);
    if (!ev || strcmp(s_or_empty(json_string_value(json_object_get(ev, "id"))), want) != 0)
        rx->bad_headers++;
    json_decref(ev);
    int status = rx->answers[i] ? rx->answers[i] : 204;
    rx->n++;
    if (status >= 300 && rx->retry_after)
        em_http_add_header(req, "Retry-After", rx->retry_after);
    em_http_respond(req, status, "text/plain", "", 0);
}

/* Steps notify and the receiver for ms. */
static void s_pump(notify_t *n, int ms)
{
    int64_t end = em_mono_ms() + ms;
    while (em_mono_ms() < end) {
        assert_int_equal(notify_step(n, 2), 0);
        em_http_run(s_rx.http);
    }
}

#define PUMP_UNTIL(n, cond, ms)                                                                \
    do {                                                                                       \
        int64_t end_ = em_mono_ms() + (ms);                                                    \
        while (!(cond) && em_mono_ms() < end_) {                                               \
            assert_int_equal(notify_step((n), 2), 0);                                          \
            em_http_run(s_rx.http);                                                            \
        }                                                                                      \
        if (!(cond))                                                                           \
            fail_msg("timed out waiting for %s", #cond);                                       \
    } while (0)

/* Commits event seq with the given visibility, province and data, as archive would. */
static void s_event(int64_t seq, const char *source, const char *vis, const char *province,
                    const char *data)
{
    char env[2048], s[32], id[32];
    snprintf(env, sizeof env,
             "{\"specversion\":\"1.0\",\"id\":\"e%" PRId64 "\",\"source\":\"%s\","
             "\"type\":\"pk.gov.emining.shipment.exported\",\"visibility\":\"%s\","
             "\"province\":\"%s\",\"data\":%s}",
             seq, source, vis, province, data);
    snprintf(s, sizeof s, "%" PRId64, seq);
    snprintf(id, sizeof id, "e%" PRId64, seq);
    const char *p[4] = {s, id, source, env};
    PGresult *r = PQexecParams(s_pg,
                               "INSERT INTO events (seq, source, id, type, envelope, digest, chain)"
                               " VALUES ($1, $3, $2, 't', $4::jsonb, repeat('0', 64), repeat('0', 64))",
                               4, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("insert: %s", PQerrorMessage(s_pg));
    PQclear(r);
}

/* A subscription of organisation org to the local receiver (cursor at after). */
static void s_subscribe(const char *id, const char *org, const char *filters, int64_t after)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO subscriptions (id, org_id, sink, secret, filters) VALUES"
             " ('%s', '%s', 'http://127.0.0.1:%d/hook/%s', '%s', '%s');"
             "INSERT INTO subscription_cursors (subscription_id, seq) VALUES ('%s', %" PRId64 ")",
             id, org, em_http_port(s_rx.http), id, SECRET, filters, id, after);
    s_sql(sql);
}

static int s_group_setup(void **state)
{
    (void)state;
    const char *dsn = em_testsrv_pg_start();
    s_pg = PQconnectdb(dsn);
    assert_int_equal(PQstatus(s_pg), CONNECTION_OK);
    s_sql("SET client_min_messages = warning");
    em_testsrv_pg_migrate(dsn);
    s_sql("INSERT INTO organisations (id, kind, party_ids, source_prefixes) VALUES"
          " ('mhd', 'enterprise', '{0045121}', '{/operators/mhd}'),"
          " ('rival', 'enterprise', '{999}', '{/operators/rival}');"
          "INSERT INTO organisations (id, kind, province) VALUES ('ba', 'authority', 'PK-BA'),"
          " ('sd', 'authority', 'PK-SD');"
          "INSERT INTO organisations (id, kind) VALUES ('portal', 'public')");
    char err[512];
    s_rx.http = em_http_new("127.0.0.1:0", 1 << 20, s_receive, &s_rx, err, sizeof err);
    assert_non_null(s_rx.http);
    setenv("EMINE_PG_DSN", dsn, 1);
    setenv("EMINE_BUS_EVENTS", "tcp://127.0.0.1:1", 1);
    setenv("EMINE_NOTIFY_ZMQ", "tcp://127.0.0.1:*", 1);
    setenv("EMINE_NOTIFY_HTTP", "127.0.0.1:0", 1);
    setenv("EMINE_NOTIFY_POLL_MS", "20", 1);
    setenv("EMINE_NOTIFY_CURSOR_FLUSH_MS", "50", 1);
    setenv("EMINE_NOTIFY_SUBS_RELOAD_MS", "50", 1);
    setenv("EMINE_NOTIFY_WEBHOOK_TIMEOUT_MS", "2000", 1);
    setenv("EMINE_LOG_LEVEL", getenv("TEST_VERBOSE") ? "debug" : "error", 1);
    unsetenv("EMINE_CONFIG");
    return 0;
}

static int s_group_teardown(void **state)
{
    (void)state;
    em_http_destroy(&s_rx.http);
    PQfinish(s_pg);
    em_testsrv_stop_all();
    return 0;
}

static int s_setup(void **state)
{
    (void)state;
    /* A test that failed half-way may leave a notify behind: end its sessions, so that its
     * subscription locks do not spill into the next test. */
    s_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
          " WHERE datname = current_database() AND pid <> pg_backend_pid()");
    s_sql("TRUNCATE events, cursors, subscriptions, subscription_cursors, delivery_dead_letters");
    em_http_t *keep = s_rx.http;
    memset(&s_rx, 0, sizeof s_rx);
    s_rx.http = keep;
    setenv("EMINE_NOTIFY_WEBHOOK_ALLOW_PRIVATE", "true", 1);
    setenv("EMINE_NOTIFY_WEBHOOK_RETRY_MS", "30,30", 1);
    unsetenv("EMINE_NOTIFY_WEBHOOK_BREAKER_FAILURES");
    unsetenv("EMINE_NOTIFY_WEBHOOK_BREAKER_OPEN_MS");
    unsetenv("EMINE_NOTIFY_WEBHOOK_MAX_INFLIGHT");
    return 0;
}

/* Each organisation receives, in seq order and signed, exactly the events it may see and
 * its filters select. */
static void test_visible_in_order_signed(void **state)
{
    (void)state;
    const char *mine = "{\"exporter\":{\"name\":\"MHD\",\"regNo\":\"0045121\"}}";
    const char *theirs = "{\"exporter\":{\"name\":\"X\",\"regNo\":\"555\"}}";
    s_event(1, "/pk/psw/customs", "public", "PK-BA", theirs);
    s_event(2, "/pk/psw/customs", "partner", "PK-BA", mine);
    s_event(3, "/pk/psw/customs", "partner", "PK-BA", theirs);   /* another's: never */
    s_event(4, "/pk/ba/mmdd/royalty", "restricted", "PK-BA", theirs);
    s_event(5, "/operators/mhd/reporting", "internal", "PK-BA", theirs); /* issued by mhd */
    s_event(6, "/pk/psw/customs", "internal", "PK-BA", mine);    /* internal: issuer only */
    s_event(7, "/pk/psw/customs", "public", "PK-SD", theirs);
    /* a filter that tries to widen: everything not public */
    s_subscribe("s_mhd", "mhd", "[{\"not\":{\"exact\":{\"visibility\":\"public\"}}}]", 0);
    notify_t *n = notify_new(NULL);
    assert_non_null(n);
    PUMP_UNTIL(n, s_rx.n >= 2, 10000);
    s_pump(n, 300);
    assert_int_equal(s_rx.n, 2);
    assert_int_equal(s_rx.seqs[0], 2);
    assert_int_equal(s_rx.seqs[1], 5);
    assert_int_equal(s_rx.bad_signatures, 0);
    assert_int_equal(s_rx.bad_headers, 0);
    s_pump(n, 200);
    s_assert_sql("SELECT seq FROM subscription_cursors WHERE subscription_id = 's_mhd'", "7");

    /* The public portal, another province's department and a competitor, all with no
     * filters: public events only (Sindh also gets nothing of Balochistan's). */
    s_subscribe("s_portal", "portal", "[]", 0);
    s_subscribe("s_sd", "sd", "[]", 0);
    s_subscribe("s_rival", "rival", "[]", 0);
    s_subscribe("s_ba", "ba", "[{\"prefix\":{\"source\":\"/pk/\"}}]", 0);
    s_rx.n = 0;
    PUMP_UNTIL(n, s_rx.n >= 11, 10000);
    s_pump(n, 300);
    /* portal, sd, rival: 1 and 7 each; ba (filter: sources under /pk/): 1, 2, 3, 4, 7 */
    int per[8] = {0};
    for (int i = 0; i < s_rx.n; i++)
        per[s_rx.seqs[i]]++;
    assert_int_equal(per[1], 4);
    assert_int_equal(per[2], 1);
    assert_int_equal(per[3], 1);
    assert_int_equal(per[4], 1);
    assert_int_equal(per[5], 0);
    assert_int_equal(per[6], 0);
    assert_int_equal(per[7], 4);
    assert_int_equal(s_rx.n, 11);
    assert_int_equal(s_rx.bad_signatures, 0);
    notify_destroy(&n);
}

/* A failing sink: retried per the schedule, honouring Retry-After, then dead-lettered; the
 * next event goes through. */
static void test_retry_then_dead_letter(void **state)
{
    (void)state;
    s_event(1, "/pk/x", "public", "PK-BA", "{}");
    s_event(2, "/pk/x", "public", "PK-BA", "{}");
    s_rx.answers[0] = 500;
    s_rx.answers[1] = 503;
    s_rx.answers[2] = 500;
    s_rx.retry_after = NULL;
    s_subscribe("s1", "portal", "[]", 0);
    setenv("EMINE_NOTIFY_WEBHOOK_RETRY_MS", "30,600", 1);
    notify_t *n = notify_new(NULL);
    assert_non_null(n);
    s_rx.retry_after = NULL;
    PUMP_UNTIL(n, s_rx.n >= 4, 10000);
    /* attempts of seq 1 at t0, ~t0+30 ms, ~t0+630 ms; then seq 2 */
    assert_int_equal(s_rx.seqs[0], 1);
    assert_int_equal(s_rx.seqs[1], 1);
    assert_int_equal(s_rx.seqs[2], 1);
    assert_int_equal(s_rx.seqs[3], 2);
    assert_true(s_rx.at_ms[2] - s_rx.at_ms[1] >= 400);
    s_pump(n, 200);
    s_assert_sql("SELECT subscription_id || ':' || seq || ':' || attempts || ':' ||"
                 " COALESCE(last_status::text, '-') || ':' || last_error"
                 " FROM delivery_dead_letters",
                 "s1:1:3:500:HTTP 500");
    s_assert_sql("SELECT seq FROM subscription_cursors WHERE subscription_id = 's1'", "2");
    notify_destroy(&n);
}

static void test_retry_after_honoured(void **state)
{
    (void)state;
    s_event(1, "/pk/x", "public", "PK-BA", "{}");
    s_rx.answers[0] = 429;
    s_rx.retry_after = "1";
    s_subscribe("s1", "portal", "[]", 0);
    setenv("EMINE_NOTIFY_WEBHOOK_RETRY_MS", "10", 1);
    notify_t *n = notify_new(NULL);
    assert_non_null(n);
    PUMP_UNTIL(n, s_rx.n >= 2, 10000);
    assert_true(s_rx.at_ms[1] - s_rx.at_ms[0] >= 950);
    s_pump(n, 100);
    s_assert_sql("SELECT count(*) FROM delivery_dead_letters", "0");
    notify_destroy(&n);
}

static void test_gone_disables(void **state)
{
    (void)state;
    s_event(1, "/pk/x", "public", "PK-BA", "{}");
    s_event(2, "/pk/x", "public", "PK-BA", "{}");
    s_rx.answers[0] = 410;
    s_subscribe("s1", "portal", "[]", 0);
    notify_t *n = notify_new(NULL);
    assert_non_null(n);
    PUMP_UNTIL(n, s_rx.n >= 1, 10000);
    s_pump(n, 400);
    assert_int_equal(s_rx.n, 1);
    s_assert_sql("SELECT status || ':' || status_reason FROM subscriptions",
                 "disabled:the sink answered 410 Gone");
    s_assert_sql("SELECT seq FROM subscription_cursors", "0");
    notify_destroy(&n);
}

static void test_private_sink_refused(void **state)
{
    (void)state;
    setenv("EMINE_NOTIFY_WEBHOOK_ALLOW_PRIVATE", "false", 1);
    s_event(1, "/pk/x", "public", "PK-BA", "{}");
    s_subscribe("s1", "portal", "[]", 0);
    notify_t *n = notify_new(NULL);
    assert_non_null(n);
    PUMP_UNTIL(n, s_sql_int("SELECT count(*) FROM delivery_dead_letters") == 1, 10000);
    assert_int_equal(s_rx.n, 0);
    char *err = s_sql_text("SELECT last_error FROM delivery_dead_letters");
    assert_non_null(strstr(err, "refused"));
    free(err);
    s_assert_sql("SELECT attempts FROM delivery_dead_letters", "1");
    notify_destroy(&n);

    /* The address classes. */
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    const char *refused4[] = {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255",
                              "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
                              "224.0.0.1", "255.255.255.255"};
    const char *allowed4[] = {"8.8.8.8", "172.32.0.1", "100.128.0.1", "193.0.0.1"};
    for (size_t i = 0; i < sizeof refused4 / sizeof *refused4; i++) {
        inet_pton(AF_INET, refused4[i], &a4.sin_addr);
        if (!notify_deliver_addr_refused((struct sockaddr *)&a4))
            fail_msg("%s allowed", refused4[i]);
    }
    for (size_t i = 0; i < sizeof allowed4 / sizeof *allowed4; i++) {
        inet_pton(AF_INET, allowed4[i], &a4.sin_addr);
        if (notify_deliver_addr_refused((struct sockaddr *)&a4))
            fail_msg("%s refused", allowed4[i]);
    }
    const char *refused6[] = {"::1", "::", "fe80::1", "fd00::1", "::ffff:127.0.0.1",
                              "::ffff:10.0.0.1", "ff02::1", "64:ff9b::a00:1"};
    const char *allowed6[] = {"2a00:1450:4001::1", "::ffff:8.8.8.8"};
    for (size_t i = 0; i < sizeof refused6 / sizeof *refused6; i++) {
        inet_pton(AF_INET6, refused6[i], &a6.sin6_addr);
        if (!notify_deliver_addr_refused((struct sockaddr *)&a6))
            fail_msg("%s allowed", refused6[i]);
    }
    for (size_t i = 0; i < sizeof allowed6 / sizeof *allowed6; i++) {
        inet_pton(AF_INET6, allowed6[i], &a6.sin6_addr);
        if (notify_deliver_addr_refused((struct sockaddr *)&a6))
            fail_msg("%s refused", allowed6[i]);
    }
}

/* A failing endpoint: retries, dead letter, a redrive that fails again, one that succeeds. */
static void test_dead_letter_redrive(void **state)
{
    (void)state;
    s_event(1, "/pk/x", "public", "PK-BA", "{}");
    s_event(2, "/pk/x", "public", "PK-BA", "{}");
    s_rx.answers[0] = s_rx.answers[1] = s_rx.answers[2] = 500; /* seq 1: dead */
    s_rx.answers[4] = 502;                                     /* first redrive fails */
    s_subscribe("s1", "portal", "[]", 0);
    notify_t *n = notify_new(NULL);
    assert_non_null(n);
    PUMP_UNTIL(n, s_rx.n >= 4, 10000);
    assert_int_equal(s_rx.seqs[3], 2);
    s_pump(n, 100);
    s_assert_sql("SELECT seq || ':' || attempts FROM delivery_dead_letters", "1:3");
    s_sql("UPDATE delivery_dead_letters SET redriven_at = now()");
    PUMP_UNTIL(n, s_rx.n >= 5, 10000);
    assert_int_equal(s_rx.seqs[4], 1);
    PUMP_UNTIL(n, s_sql_int("SELECT count(*) FROM delivery_dead_letters"
                            " WHERE redriven_at IS NULL AND attempts = 4") == 1, 5000);
    s_assert_sql("SELECT last_status || ':' || last_error FROM delivery_dead_letters",
                 "502:HTTP 502");
    s_sql("UPDATE delivery_dead_letters SET redriven_at = now()");
    PUMP_UNTIL(n, s_sql_int("SELECT count(*) FROM delivery_dead_letters") == 0, 5000);
    assert_int_equal(s_rx.n, 6);
    assert_int_equal(s_rx.seqs[5], 1);
    assert_int_equal(s_rx.bad_signatures, 0);
    s_assert_sql("SELECT seq FROM subscription_cursors", "2");
    notify_destroy(&n);
}

/* Consecutive failures of one endpoint (across subscriptions) open its circuit: nothing is
 * sent for open_ms, then one probe; its success lets everything through, no attempt spent. */
static void test_circuit_breaker(void **state)
{
    (void)state;
    setenv("EMINE_NOTIFY_WEBHOOK_BREAKER_FAILURES", "3", 1);
    setenv("EMINE_NOTIFY_WEBHOOK_BREAKER_OPEN_MS", "600", 1);
    setenv("EMINE_NOTIFY_WEBHOOK_RETRY_MS", "20,20,20,20", 1);
    /* One request at a time, so that no request already in flight when the circuit opens
     * lands inside the open period (such a request is allowed; it would make timing racy). */
    setenv("EMINE_NOTIFY_WEBHOOK_MAX_INFLIGHT", "1", 1);
    s_event(1, "/pk/x", "public", "PK-BA", "{}");
    s_rx.answers[0] = s_rx.answers[1] = s_rx.answers[2] = 500;
    s_subscribe("s1", "portal", "[]", 0);
    s_subscribe("s2", "portal", "[]", 0);
    notify_t *n = notify_new(NULL);
    assert_non_null(n);
    PUMP_UNTIL(n, s_rx.n >= 5, 10000);
    s_pump(n, 200);
    assert_int_equal(s_rx.n, 5); /* 3 failures, the probe, the other subscription */
    assert_true(s_rx.at_ms[3] - s_rx.at_ms[2] >= 550);
    assert_true(s_rx.at_ms[2] - s_rx.at_ms[0] < 500);
    s_assert_sql("SELECT count(*) FROM delivery_dead_letters", "0");
    s_assert_sql("SELECT string_agg(seq::text, ',') FROM subscription_cursors", "1,1");
    notify_destroy(&n);
}

/* Two notify processes share the subscriptions (no event delivered twice); when one goes,
 * the other takes its share over from the persisted cursors. */
static void test_shared_between_processes(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "s%d", i);
        s_subscribe(id, "portal", "[]", 0);
    }
    notify_t *a = notify_new(NULL), *b = notify_new(NULL);
    assert_non_null(a);
    assert_non_null(b);
    const char *locks = "SELECT string_agg(n::text, ',' ORDER BY n) FROM (SELECT count(*) AS n"
                        " FROM pg_locks WHERE locktype = 'advisory' AND classid = 1701671796"
                        " GROUP BY pid) x";
    int64_t end = em_mono_ms() + 10000;
    char *got = NULL;
    for (;;) {
        free(got);
        got = s_sql_text(locks);
        if (strcmp(got, "2,2") == 0 || em_mono_ms() > end)
            break;
        for (int k = 0; k < 20; k++) {
            assert_int_equal(notify_step(a, 2), 0);
            assert_int_equal(notify_step(b, 2), 0);
            em_http_run(s_rx.http);
        }
    }
    assert_string_equal(got, "2,2");
    free(got);
    for (int64_t seq = 1; seq <= 10; seq++)
        s_event(seq, "/pk/x", "public", "PK-BA", "{}");
    end = em_mono_ms() + 10000;
    while (s_rx.n < 40 && em_mono_ms() < end) {
        assert_int_equal(notify_step(a, 2), 0);
        assert_int_equal(notify_step(b, 2), 0);
        em_http_run(s_rx.http);
    }
    for (int k = 0; k < 100; k++) {
        assert_int_equal(notify_step(a, 2), 0);
        assert_int_equal(notify_step(b, 2), 0);
        em_http_run(s_rx.http);
    }
    assert_int_equal(s_rx.n, 40); /* 4 subscriptions x 10 events, none twice */
    for (int i = 0; i < s_rx.n; i++)
        for (int j = 0; j < i; j++)
            assert_false(s_rx.seqs[i] == s_rx.seqs[j] && strcmp(s_rx.paths[i], s_rx.paths[j]) == 0);

    notify_destroy(&a);
    PUMP_UNTIL(b, s_sql_int("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                            " AND classid = 1701671796") == 4, 30000);
    for (int64_t seq = 11; seq <= 15; seq++)
        s_event(seq, "/pk/x", "public", "PK-BA", "{}");
    PUMP_UNTIL(b, s_rx.n >= 60, 10000);
    s_pump(b, 200);
    assert_int_equal(s_rx.n, 60);
    s_assert_sql("SELECT string_agg(seq::text, ',') FROM subscription_cursors", "15,15,15,15");
    notify_destroy(&b);
}

/* A restarted notify resumes from the persisted cursor: every event at least once, in order. */
static void test_resume_after_restart(void **state)
{
    (void)state;
    for (int64_t seq = 1; seq <= 40; seq++)
        s_event(seq, "/pk/x", "public", "PK-BA", "{}");
    s_subscribe("s1", "portal", "[]", 0);
    notify_t *n = notify_new(NULL);
    assert_non_null(n);
    PUMP_UNTIL(n, s_rx.n >= 15, 10000);
    notify_destroy(&n); /* persists the cursor */
    int first = s_rx.n;
    n = notify_new(NULL);
    assert_non_null(n);
    PUMP_UNTIL(n, s_rx.n >= first && s_rx.seqs[s_rx.n - 1] == 40, 10000);
    s_pump(n, 200);
    /* In order, no gap; a duplicate only where the second run took over. */
    int64_t last = 0;
    int dups = 0;
    for (int i = 0; i < s_rx.n; i++) {
        if (s_rx.seqs[i] == last)
            dups++;
        else
            assert_int_equal(s_rx.seqs[i], last + 1);
        last = s_rx.seqs[i];
    }
    assert_int_equal(last, 40);
    assert_true(dups <= 1);
    s_assert_sql("SELECT seq FROM subscription_cursors", "40");
    notify_destroy(&n);
}

/* Steps a bare deliverer (no notify around it) and the receiver until cond or ms. */
#define DELIVER_UNTIL(d, head, cond, ms)                                                       \
    do {                                                                                       \
        int64_t end_ = em_mono_ms() + (ms);                                                    \
        while (!(cond) && em_mono_ms() < end_) {                                               \
            zmq_pollitem_t items_[DELIVER_MAX_FDS];                                            \
            int n_ = notify_deliver_pollitems((d), items_, DELIVER_MAX_FDS);                   \
            long t_ = notify_deliver_timeout_ms((d), (head));                                  \
            zmq_poll(items_, n_, t_ > 2 ? 2 : t_);                                             \
            notify_deliver_run((d), items_, n_, (head));                                       \
            em_http_run(s_rx.http);                                                            \
        }                                                                                      \
        if (!(cond))                                                                           \
            fail_msg("timed out waiting for %s", #cond);                                       \
    } while (0)

/* Subscriptions that keep up share the events read from PostgreSQL: 8 subscriptions over 30
 * events read a handful of pages, not one (or more) each; each still receives every event in
 * order. */
static void test_shared_window(void **state)
{
    (void)state;
    for (int64_t seq = 1; seq <= 20; seq++)
        s_event(seq, "/pk/x", "public", "PK-BA", "{}");
    char id[16];
    for (int i = 0; i < 8; i++) {
        snprintf(id, sizeof id, "w%d", i);
        s_subscribe(id, "portal", "[]", 0);
    }
    notify_deliver_cfg_t cfg = {.allow_private = true, .timeout_ms = 2000, .retry_ms = "30",
                                .max_inflight = 64, .reload_ms = 50, .flush_ms = 50,
                                .batch = 500};
    char err[256];
    notify_deliver_t *d = notify_deliver_new(getenv("EMINE_PG_DSN"), &cfg, NULL, err, sizeof err);
    assert_non_null(d);
    DELIVER_UNTIL(d, 20, s_rx.n >= 160, 10000);
    for (int64_t seq = 21; seq <= 30; seq++)
        s_event(seq, "/pk/x", "public", "PK-BA", "{}");
    DELIVER_UNTIL(d, 30, s_rx.n >= 240, 10000);
    assert_int_equal(s_rx.n, 240);
    assert_int_equal(s_rx.bad_signatures, 0);
    /* one page per head the subscriptions caught up to, plus the odd empty read */
    int64_t pages = notify_deliver_pages_read(d);
    assert_true(pages >= 2);
    assert_true(pages <= 4);
    for (int i = 0; i < 8; i++) {
        char path[32];
        snprintf(path, sizeof path, "/hook/w%d", i);
        int64_t last = 0;
        for (int k = 0; k < s_rx.n; k++) {
            if (strcmp(s_rx.paths[k], path) != 0)
                continue;
            assert_int_equal(s_rx.seqs[k], last + 1);
            last = s_rx.seqs[k];
        }
        assert_int_equal(last, 30);
    }
    notify_deliver_destroy(&d);
}

/* Deliveries carry the summaries in the subscription's languages and zone as string extension
 * attributes; the archived members keep their exact text; the signature covers it all; an
 * attribute the event already has is left alone. */
static void test_summaries(void **state)
{
    (void)state;
    const char *data =
        "{\"shipmentId\":\"PSW-1\",\"exporter\":{\"name\":\"MHD\",\"country\":\"PK\"},"
        "\"consignee\":{\"name\":\"MCC\",\"country\":\"CN\"},\"hsCode\":\"2608\","
        "\"product\":\"concentrate\",\"netWeight\":{\"value\":5000,\"unit\":\"dmt\"},"
        "\"portOfLoading\":\"PKKHI\",\"mode\":\"sea\",\"departedOn\":\"2017-10-20\","
        "\"moisturePct\":52.76}";
    s_event(1, "/pk/psw/customs", "public", "PK-BA", data);
    s_subscribe("s_ur", "portal", "[]", 0);
    s_sql("UPDATE subscriptions SET languages = '{ur,zh-Hans}' WHERE id = 's_ur'");
    notify_t *n = notify_new(NULL);
    assert_non_null(n);
    PUMP_UNTIL(n, s_rx.n >= 1, 10000);
    assert_int_equal(s_rx.bad_signatures, 0);
    assert_int_equal(s_rx.bad_headers, 0);
    json_t *ev = json_loads(s_rx.last_body, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(ev);
    const char *sum = json_string_value(json_object_get(ev, "summary"));
    assert_non_null(sum);
    assert_string_equal(json_string_value(json_object_get(ev, "summarylang")), "ur");
    assert_string_equal(json_string_value(json_object_get(ev, "summaryur")), sum);
    assert_non_null(strstr(sum, "\xe2\x81\xa8" "2608" "\xe2\x81\xa9"));
    const char *zh = json_string_value(json_object_get(ev, "summaryzhhans"));
    assert_non_null(zh);
    assert_non_null(strstr(zh, "2017年10月20日经海运从PKKHI向MCC出口精矿5,000 干吨（HS 2608）"));
    assert_null(json_object_get(ev, "summaryen"));
    json_decref(ev);
    /* The producer's number text is delivered as archived. */
    assert_non_null(strstr(s_rx.last_body, "52.76"));
    assert_null(strstr(s_rx.last_body, "52.759"));

    /* An event with a summary attribute of its own keeps it; the languages still come. */
    const char *p[1] = {
        "{\"specversion\":\"1.0\",\"id\":\"e2\",\"source\":\"/pk/psw/customs\","
        "\"type\":\"pk.gov.emining.shipment.exported\",\"visibility\":\"public\","
        "\"province\":\"PK-BA\",\"summary\":\"producer's own\",\"data\":{}}"};
    PGresult *r = PQexecParams(s_pg,
                               "INSERT INTO events (seq, source, id, type, envelope, digest, chain)"
                               " VALUES (2, '/pk/psw/customs', 'e2', 't', $1::jsonb,"
                               " repeat('0', 64), repeat('0', 64))",
                               1, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PUMP_UNTIL(n, s_rx.n >= 2, 10000);
    assert_int_equal(s_rx.bad_signatures, 0);
    ev = json_loads(s_rx.last_body, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "summary")), "producer's own");
    assert_null(json_object_get(ev, "summarylang"));
    assert_non_null(strstr(json_string_value(json_object_get(ev, "summaryur")),
                           "[?data.shipmentId]"));
    json_decref(ev);
    notify_destroy(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_visible_in_order_signed, s_setup),
        cmocka_unit_test_setup(test_retry_then_dead_letter, s_setup),
        cmocka_unit_test_setup(test_retry_after_honoured, s_setup),
        cmocka_unit_test_setup(test_gone_disables, s_setup),
        cmocka_unit_test_setup(test_private_sink_refused, s_setup),
        cmocka_unit_test_setup(test_dead_letter_redrive, s_setup),
        cmocka_unit_test_setup(test_resume_after_restart, s_setup),
        cmocka_unit_test_setup(test_shared_between_processes, s_setup),
        cmocka_unit_test_setup(test_circuit_breaker, s_setup),
        cmocka_unit_test_setup(test_shared_window, s_setup),
        cmocka_unit_test_setup(test_summaries, s_setup),
    };
    return cmocka_run_group_tests(tests, s_group_setup, s_group_teardown);
}
