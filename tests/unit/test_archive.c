/* test_archive.c - the archive service in-process against real PostgreSQL and Redis: seq and
 * chain, duplicates, conflicts, dead letters, store errors, PostgreSQL outages, the admin HTTP,
 * the standby and the shutdown flush. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <glob.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../services/archive/archive.h"
#include "em.h"
#include "em_testsrv.h"

typedef struct {
    archive_t *arch; /* the archive under test (the writer) */
    void *zctx;      /* the test's own sockets */
    void *push;      /* -> [bus] validated */
    void *acks;      /* <- [bus] acks, topic "ing-test" */
    void *events;    /* <- [bus] events, topic "ev" */
    PGconn *pg;      /* a second connection, to look at the rows */
    em_cache_t *cache;
    char ep_validated[64], ep_acks[64], ep_events[64];
    long long req;   /* next request number */
} ctx_t;

static ctx_t C;

/* ---------------------------------------------------------------------------------------- */

static char *s_event(const char *id, const char *data)
{
    char *out = NULL;
    if (asprintf(&out,
                 "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/pk/test\","
                 "\"type\":\"pk.gov.emining.licence.granted\",\"time\":\"2026-01-02T03:04:05.123456Z\","
                 "\"visibility\":\"public\",\"projectid\":\"prj-1\",\"province\":\"PK-BA\","
                 "\"subject\":\"licence/1\",\"data\":%s}",
                 id, data) < 0)
        abort();
    return out;
}

/* Sends one pipeline message: header (verdict ok with the JCS digest, or the given verdict and
 * errors) and raw text. */
static void s_push(long long req, int idx, const char *id, const char *raw, const char *verdict,
                   const char *errors)
{
    char digest[65] = "";
    json_t *errs = NULL;
    json_t *ev = em_json_parse(raw, strlen(raw), 64, &errs);
    if (ev)
        assert_int_equal(em_jcs_digest_hex(ev, digest), 0);
    json_decref(ev);
    json_decref(errs);
    json_t *h = json_pack("{s:s, s:I, s:i, s:s, s:I, s:s, s:s, s:s, s:s}", "ing", "ing-test",
                          "req", (json_int_t)req, "idx", idx, "prod", "tester", "rcv",
                          (json_int_t)em_now_ms(), "digest", digest, "id", id, "source",
                          "/pk/test", "verdict", verdict);
    if (errors)
        json_object_set_new(h, "errors", json_loads(errors, 0, NULL));
    char *ht = json_dumps(h, JSON_COMPACT);
    const void *data[2] = {ht, raw};
    size_t lens[2] = {strlen(ht), strlen(raw)};
    assert_int_equal(em_bus_sendv(C.push, data, lens, 2, 0), 0);
    free(ht);
    json_decref(h);
}

/* The same as s_push_ok with validate's "notes" (JSON text) in the header. */
static void s_push_notes(long long req, int idx, const char *id, const char *raw,
                         const char *notes)
{
    char digest[65] = "";
    json_t *errs = NULL;
    json_t *ev = em_json_parse(raw, strlen(raw), 64, &errs);
    assert_non_null(ev);
    assert_int_equal(em_jcs_digest_hex(ev, digest), 0);
    json_decref(ev);
    json_t *h = json_pack("{s:s, s:I, s:i, s:s, s:I, s:s, s:s, s:s, s:s, s:o}", "ing",
                          "ing-test", "req", (json_int_t)req, "idx", idx, "prod", "tester",
                          "rcv", (json_int_t)em_now_ms(), "digest", digest, "id", id, "source",
                          "/pk/test", "verdict", "ok", "notes", json_loads(notes, JSON_ALLOW_NUL, NULL));
    assert_non_null(h);
    char *ht = json_dumps(h, JSON_COMPACT);
    const void *data[2] = {ht, raw};
    size_t lens[2] = {strlen(ht), strlen(raw)};
    assert_int_equal(em_bus_sendv(C.push, data, lens, 2, 0), 0);
    free(ht);
    json_decref(h);
}

static void s_push_ok(long long req, int idx, const char *id, const char *raw)
{
    s_push(req, idx, id, raw, "ok", NULL);
}

static int s_row_exists(long long seq)
{
    char s[32];
    snprintf(s, sizeof s, "%lld", seq);
    const char *v[] = {s};
    PGresult *r = PQexecParams(C.pg, "SELECT 1 FROM events WHERE seq = $1::bigint", 1, NULL, v,
                               NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    PQclear(r);
    return ok;
}

/* Steps `arch` and collects ack entries until n arrived (or timeout).  Each accepted ack is
 * checked against a second connection: its row must already be visible.  New reference. */
static json_t *s_acks(archive_t *arch, size_t n, int timeout_ms)
{
    json_t *all = json_array();
    int64_t end = em_mono_ms() + timeout_ms;
    while (json_array_size(all) < n && em_mono_ms() < end) {
        assert_int_equal(archive_step(arch, 10), 0);
        em_msg_t msg;
        while (em_msg_recv(C.acks, &msg, ZMQ_DONTWAIT) >= 0) {
            size_t tl, bl;
            const char *topic = em_msg_data(&msg, 0, &tl);
            const char *body = em_msg_data(&msg, 1, &bl);
            assert_int_equal(msg.nframes, 2);
            assert_memory_equal(topic, "ing-test", 8);
            json_t *arr = json_loadb(body, bl, 0, NULL);
            assert_true(json_is_array(arr));
            size_t i;
            json_t *r;
            json_array_foreach(arr, i, r)
            {
                const char *st = json_string_value(json_object_get(r, "status"));
                if (strcmp(st, "accepted") == 0)
                    assert_true(s_row_exists(json_integer_value(json_object_get(r, "seq"))));
                json_array_append(all, r);
            }
            json_decref(arr);
            em_msg_close(&msg);
        }
    }
    return all;
}

static json_t *s_find(json_t *acks, long long req, int idx)
{
    size_t i;
    json_t *r;
    json_array_foreach(acks, i, r)
    {
        if (json_integer_value(json_object_get(r, "req")) == req &&
            json_integer_value(json_object_get(r, "idx")) == idx)
            return r;
    }
    fail_msg("no ack for req %lld idx %d", req, idx);
    return NULL;
}

static void s_expect(json_t *acks, long long req, int idx, const char *status, long long seq)
{
    json_t *r = s_find(acks, req, idx);
    assert_string_equal(json_string_value(json_object_get(r, "status")), status);
    assert_int_equal(json_integer_value(json_object_get(r, "seq")), seq);
}

/* One-value query on the test connection.  Caller owns return value. */
static char *s_scalar(const char *sql, const char *param)
{
    const char *v[] = {param};
    PGresult *r = PQexecParams(C.pg, sql, param ? 1 : 0, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1) {
        fprintf(stderr, "query failed: %s\n", PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    char *out = PQgetisnull(r, 0, 0) ? strdup("(null)") : strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

static void s_assert_scalar(const char *sql, const char *param, const char *want)
{
    char *got = s_scalar(sql, param);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

/* Steps until the archive holds the writer lock (bound sockets). */
static void s_until_active(archive_t *arch, int timeout_ms)
{
    int64_t end = em_mono_ms() + timeout_ms;
    while (!archive_is_active(arch) && em_mono_ms() < end)
        assert_int_equal(archive_step(arch, 20), 0);
    assert_true(archive_is_active(arch));
}

/* Steps the archive for ms.  The test's SUB sockets are touched too (ZMQ_EVENTS), as a
 * service's poll loop would: a SUB re-sends its subscriptions after a reconnect only when its
 * owner thread processes the socket's commands. */
static void s_settle(archive_t *arch, int ms)
{
    int64_t end = em_mono_ms() + ms;
    while (em_mono_ms() < end) {
        int ev;
        size_t sz = sizeof ev;
        archive_step(arch, 10);
        if (C.acks)
            zmq_getsockopt(C.acks, ZMQ_EVENTS, &ev, &sz);
        sz = sizeof ev;
        if (C.events)
            zmq_getsockopt(C.events, ZMQ_EVENTS, &ev, &sz);
    }
}

/* A blocking HTTP GET in a thread while the test thread steps the archive. */
typedef struct {
    int port;
    const char *path;
    char resp[65536];
    int done;
} http_get_t;

static void *s_http_thread(void *arg)
{
    http_get_t *g = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    size_t len = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        char req[512];
        int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", g->path);
        if (write(fd, req, (size_t)n) == n) {
            ssize_t r;
            while (len + 1 < sizeof g->resp &&
                   (r = read(fd, g->resp + len, sizeof g->resp - 1 - len)) > 0)
                len += (size_t)r;
        }
    }
    g->resp[len] = '\0';
    close(fd);
    __atomic_store_n(&g->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* Returns the HTTP status; body points into g->resp. */
static int s_http_get(archive_t *arch, http_get_t *g, const char *path, const char **body)
{
    pthread_t t;
    memset(g, 0, sizeof *g);
    g->port = archive_http_port(arch);
    g->path = path;
    assert_int_equal(pthread_create(&t, NULL, s_http_thread, g), 0);
    int64_t end = em_mono_ms() + 5000;
    while (!__atomic_load_n(&g->done, __ATOMIC_SEQ_CST) && em_mono_ms() < end)
        archive_step(arch, 5);
    pthread_join(t, NULL);
    int status = 0;
    sscanf(g->resp, "HTTP/1.%*d %d", &status);
    const char *b = strstr(g->resp, "\r\n\r\n");
    *body = b ? b + 4 : "";
    return status;
}

/* ---------------------------------------------------------------------------------------- */

static int s_setup(void **state)
{
    (void)state;
    const char *dsn = em_testsrv_pg_start();
    const char *url = em_testsrv_redis_start();
    snprintf(C.ep_validated, sizeof C.ep_validated, "tcp://127.0.0.1:%d", em_testsrv_free_port());
    snprintf(C.ep_acks, sizeof C.ep_acks, "tcp://127.0.0.1:%d", em_testsrv_free_port());
    snprintf(C.ep_events, sizeof C.ep_events, "tcp://127.0.0.1:%d", em_testsrv_free_port());
    setenv("EMINE_PG_DSN", dsn, 1);
    setenv("EMINE_REDIS_URL", url, 1);
    setenv("EMINE_BUS_VALIDATED", C.ep_validated, 1);
    setenv("EMINE_BUS_ACKS", C.ep_acks, 1);
    setenv("EMINE_BUS_EVENTS", C.ep_events, 1);
    setenv("EMINE_ARCHIVE_HTTP", "127.0.0.1:0", 1);
    setenv("EMINE_LOG_LEVEL", getenv("TEST_VERBOSE") ? "debug" : "error", 1);

    C.arch = archive_new(NULL);
    assert_non_null(C.arch);
    s_until_active(C.arch, 15000);

    char err[256];
    C.zctx = zmq_ctx_new();
    char ep[80];
    snprintf(ep, sizeof ep, ">%s", C.ep_validated);
    C.push = em_bus_socket(C.zctx, ZMQ_PUSH, ep, 1000, 0, err, sizeof err);
    snprintf(ep, sizeof ep, ">%s", C.ep_acks);
    C.acks = em_bus_socket(C.zctx, ZMQ_SUB, ep, 0, 0, err, sizeof err);
    snprintf(ep, sizeof ep, ">%s", C.ep_events);
    C.events = em_bus_socket(C.zctx, ZMQ_SUB, ep, 0, 0, err, sizeof err);
    assert_non_null(C.push);
    assert_non_null(C.acks);
    assert_non_null(C.events);
    zmq_setsockopt(C.acks, ZMQ_SUBSCRIBE, "ing-test", 8);
    zmq_setsockopt(C.events, ZMQ_SUBSCRIBE, "ev", 2);
    C.pg = PQconnectdb(dsn);
    assert_int_equal(PQstatus(C.pg), CONNECTION_OK);
    C.cache = em_cache_new(url, 500, err, sizeof err);
    s_settle(C.arch, 300); /* let the subscriptions reach the publisher */
    C.req = 1;
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    archive_destroy(&C.arch);
    em_bus_close(&C.push);
    em_bus_close(&C.acks);
    em_bus_close(&C.events);
    zmq_ctx_term(C.zctx);
    PQfinish(C.pg);
    em_cache_destroy(&C.cache);
    em_testsrv_stop_all();
    return 0;
}

/* ---------------------------------------------------------------------------------------- */

static void test_migrations_applied(void **state)
{
    (void)state;
    /* 001 first; later migrations (002_subscriptions, ...) all applied, none skipped. */
    s_assert_scalar("SELECT string_agg(version || ':' || name, ',' ORDER BY version)"
                    " FROM schema_migrations WHERE version = 1",
                    NULL, "1:001_init.sql");
    /* Every NNN_name.sql of the folder is recorded (numbers need not be contiguous: each
     * branch of development takes its own). */
    glob_t gl;
    assert_int_equal(glob("services/archive/migrations/[0-9][0-9][0-9]_*.sql", 0, NULL, &gl), 0);
    char want[16];
    snprintf(want, sizeof want, "%zu", gl.gl_pathc);
    globfree(&gl);
    s_assert_scalar("SELECT count(*) FROM schema_migrations", NULL, want);
    s_assert_scalar("SELECT count(*) FROM schema_migrations WHERE name = '006_notes.sql'", NULL,
                    "1");
    s_assert_scalar("SELECT count(*) FROM information_schema.tables WHERE table_name IN"
                    " ('events', 'rejected_events', 'cursors')",
                    NULL, "3");
}

static void test_accepts_in_order(void **state)
{
    (void)state;
    long long req = C.req++;
    char *raws[5];
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "ev-%d", i + 1);
        raws[i] = s_event(id, i == 0 ? "{\"tonnes\":52.76,\"big\":1.000000000000000000001}"
                                     : "{\"tonnes\":1}");
        s_push_ok(req, i, id, raws[i]);
    }
    json_t *acks = s_acks(C.arch, 5, 5000);
    assert_int_equal(json_array_size(acks), 5);
    for (int i = 0; i < 5; i++) {
        s_expect(acks, req, i, "accepted", i + 1);
        json_t *r = s_find(acks, req, i);
        char id[32];
        snprintf(id, sizeof id, "ev-%d", i + 1);
        assert_string_equal(json_string_value(json_object_get(r, "id")), id);
        assert_string_equal(json_string_value(json_object_get(r, "source")), "/pk/test");
    }
    json_decref(acks);
    assert_int_equal(archive_last_seq(C.arch), 5);

    /* The committed events, in seq order, with the producer's own text. */
    for (int i = 0; i < 5; i++) {
        em_msg_t msg;
        int64_t end = em_mono_ms() + 2000;
        int rc;
        while ((rc = em_msg_recv(C.events, &msg, ZMQ_DONTWAIT)) < 0 && em_mono_ms() < end)
            usleep(1000);
        assert_int_equal(rc, 3);
        size_t l0, l1, l2;
        const char *f0 = em_msg_data(&msg, 0, &l0);
        const char *f1 = em_msg_data(&msg, 1, &l1);
        const char *f2 = em_msg_data(&msg, 2, &l2);
        char want[32];
        snprintf(want, sizeof want, "{\"seq\":%d}", i + 1);
        assert_int_equal(l0, 2);
        assert_memory_equal(f0, "ev", 2);
        assert_int_equal(l1, strlen(want));
        assert_memory_equal(f1, want, l1);
        assert_int_equal(l2, strlen(raws[i]));
        assert_memory_equal(f2, raws[i], l2);
        em_msg_close(&msg);
    }

    /* Columns; numbers kept exactly as sent. */
    s_assert_scalar("SELECT envelope->'data'->>'tonnes' || ' ' || (envelope->'data'->>'big')"
                    " FROM events WHERE seq = 1",
                    NULL, "52.76 1.000000000000000000001");
    s_assert_scalar("SELECT type || '|' || subject || '|' || visibility || '|' || projectid ||"
                    " '|' || province || '|' || producer || '|' ||"
                    " to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
                    " FROM events WHERE seq = 2",
                    NULL,
                    "pk.gov.emining.licence.granted|licence/1|public|prj-1|PK-BA|tester|"
                    "2026-01-02 03:04:05.123456");

    /* The seen cache was written after the commit. */
    int64_t seq = 0;
    char d[65];
    assert_int_equal(em_cache_seen_get(C.cache, "/pk/test", "ev-3", &seq, d), 1);
    assert_int_equal(seq, 3);
    for (int i = 0; i < 5; i++)
        free(raws[i]);
}

static void test_duplicate_and_conflict(void **state)
{
    (void)state;
    long long req = C.req++;
    char *before = s_scalar("SELECT envelope::text || digest || chain FROM events WHERE seq = 1",
                            NULL);
    /* Same event, other key order and white space: same JCS digest -> duplicate. */
    const char *same = "{ \"data\" : {\"big\":1.000000000000000000001, \"tonnes\":52.76},"
                       " \"id\":\"ev-1\",\"source\":\"/pk/test\",\"specversion\":\"1.0\","
                       "\"type\":\"pk.gov.emining.licence.granted\","
                       "\"time\":\"2026-01-02T03:04:05.123456Z\",\"visibility\":\"public\","
                       "\"projectid\":\"prj-1\",\"province\":\"PK-BA\",\"subject\":\"licence/1\"}";
    s_push_ok(req, 0, "ev-1", same);
    char *changed = s_event("ev-1", "{\"tonnes\":99}");
    s_push_ok(req, 1, "ev-1", changed);
    json_t *acks = s_acks(C.arch, 2, 5000);
    assert_int_equal(json_array_size(acks), 2);
    s_expect(acks, req, 0, "duplicate", 1);
    s_expect(acks, req, 1, "conflict", 1);
    assert_true(json_array_size(json_object_get(s_find(acks, req, 1), "errors")) > 0);
    json_decref(acks);

    /* The original is untouched; the conflict is a dead letter with the new text. */
    char *after = s_scalar("SELECT envelope::text || digest || chain FROM events WHERE seq = 1",
                           NULL);
    assert_string_equal(before, after);
    free(before);
    free(after);
    s_assert_scalar("SELECT count(*) FROM events", NULL, "5");
    s_assert_scalar("SELECT reason || ' ' || existing_seq || ' ' || event_id || ' ' ||"
                    " (raw = $1) FROM rejected_events WHERE reason = 'conflict'",
                    changed, "conflict 1 ev-1 true");
    assert_int_equal(archive_last_seq(C.arch), 5);
    free(changed);
}

static void test_same_id_in_one_batch(void **state)
{
    (void)state;
    long long req = C.req++;
    char *a = s_event("ev-batch", "{\"n\":1}");
    char *b = s_event("ev-batch", "{\"n\":2}");
    s_push_ok(req, 0, "ev-batch", a);
    s_push_ok(req, 1, "ev-batch", a);
    s_push_ok(req, 2, "ev-batch", b);
    usleep(100000); /* all three in the socket: one batch */
    json_t *acks = s_acks(C.arch, 3, 5000);
    assert_int_equal(json_array_size(acks), 3);
    s_expect(acks, req, 0, "accepted", 6);
    s_expect(acks, req, 1, "duplicate", 6);
    s_expect(acks, req, 2, "conflict", 6);
    json_decref(acks);
    s_assert_scalar("SELECT envelope->'data'->>'n' FROM events WHERE id = 'ev-batch'", NULL,
                    "1");
    free(a);
    free(b);
}

static void test_rejected_verdict(void **state)
{
    (void)state;
    long long req = C.req++;
    const char *errs = "[{\"pointer\":\"/time\",\"keyword\":\"format\",\"message\":\"bad time\"}]";
    s_push(req, 0, "bad-1", "{\"specversion\":\"1.0\",\"id\":\"bad-1\",\"time\":\"nope\"}",
           "rejected", errs);
    /* Not JSON at all, although the verdict says ok: a dead letter too. */
    s_push(req, 1, "bad-2", "{not json", "ok", NULL);
    json_t *acks = s_acks(C.arch, 2, 5000);
    assert_int_equal(json_array_size(acks), 2);
    json_t *r = s_find(acks, req, 0);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "rejected");
    assert_null(json_object_get(r, "seq"));
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(r, "errors"), 0),
                                          "keyword")),
        "format");
    r = s_find(acks, req, 1);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "rejected");
    json_decref(acks);
    s_assert_scalar("SELECT string_agg(event_id || ':' || reason || ':' ||"
                    " (errors->0->>'keyword'), ',' ORDER BY id)"
                    " FROM rejected_events WHERE reason = 'invalid'",
                    NULL, "bad-1:invalid:format,bad-2:invalid:json");
    s_assert_scalar("SELECT raw FROM rejected_events WHERE event_id = 'bad-2'", NULL,
                    "{not json");
    assert_int_equal(archive_last_seq(C.arch), 6);
}

static void test_unstorable_dead_letter(void **state)
{
    (void)state;
    long long req = C.req++;
    /* Errors jsonb refuses (\u0000) and raw text `text` refuses (NUL, invalid UTF-8). */
    const char *errs = "[{\"pointer\":\"\",\"keyword\":\"json\",\"message\":\"bad \\u0000\"}]";
    static const char raw[] = "{\"id\":\"bin\xff\xc0\xed\xa0\x80-1\"}";
    json_t *h = json_pack("{s:s, s:I, s:i, s:s, s:s, s:s}", "ing", "ing-test", "req",
                          (json_int_t)req, "idx", 0, "id", "bin-1", "source", "/pk/test",
                          "verdict", "rejected");
    json_object_set_new(h, "errors", json_loads(errs, JSON_ALLOW_NUL, NULL));
    char *ht = json_dumps(h, JSON_COMPACT);
    char rawnul[sizeof raw + 2];
    memcpy(rawnul, raw, sizeof raw);
    rawnul[sizeof raw - 1] = '\0'; /* a NUL byte inside the frame */
    rawnul[sizeof raw] = 'x';
    const void *data[2] = {ht, rawnul};
    size_t lens[2] = {strlen(ht), sizeof raw + 1};
    assert_int_equal(em_bus_sendv(C.push, data, lens, 2, 0), 0);
    free(ht);
    json_decref(h);
    json_t *acks = s_acks(C.arch, 1, 5000);
    assert_int_equal(json_array_size(acks), 1);
    json_t *r = s_find(acks, req, 0);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "rejected");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(r, "errors"), 0), "keyword")),
                        "json");
    json_decref(acks);
    s_assert_scalar("SELECT reason || ' ' || (errors IS NULL) || ' ' || raw"
                    " FROM rejected_events WHERE event_id = 'bin-1'",
                    NULL, "invalid true {\"id\":\"bin\?\?\?\?\?-1\"}\?x");
}

static void test_store_error_only_that_event(void **state)
{
    (void)state;
    long long req = C.req++;
    /* A row PostgreSQL refuses (a constraint standing in for any per-row failure). */
    PGresult *r = PQexec(C.pg, "ALTER TABLE events ADD CONSTRAINT test_no_poison"
                               " CHECK (id <> 'poison')");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    char *e1 = s_event("ok-a", "{}");
    char *e2 = s_event("poison", "{}");
    char *e3 = s_event("ok-b", "{}");
    s_push_ok(req, 0, "ok-a", e1);
    s_push_ok(req, 1, "poison", e2);
    s_push_ok(req, 2, "ok-b", e3);
    usleep(100000);
    json_t *acks = s_acks(C.arch, 3, 5000);
    assert_int_equal(json_array_size(acks), 3);
    s_expect(acks, req, 0, "accepted", 7);
    s_expect(acks, req, 2, "accepted", 8);
    json_t *p = s_find(acks, req, 1);
    assert_string_equal(json_string_value(json_object_get(p, "status")), "rejected");
    assert_non_null(strstr(json_string_value(json_object_get(
                               json_array_get(json_object_get(p, "errors"), 0), "message")),
                           "test_no_poison"));
    json_decref(acks);
    s_assert_scalar("SELECT reason FROM rejected_events WHERE event_id = 'poison'", NULL,
                    "store_error");
    r = PQexec(C.pg, "ALTER TABLE events DROP CONSTRAINT test_no_poison");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    free(e1);
    free(e2);
    free(e3);
}

static void test_http(void **state)
{
    (void)state;
    http_get_t g;
    const char *body;
    assert_int_equal(s_http_get(C.arch, &g, "/healthz", &body), 200);
    assert_int_equal(s_http_get(C.arch, &g, "/readyz", &body), 200);
    assert_int_equal(s_http_get(C.arch, &g, "/metrics", &body), 200);
    assert_non_null(strstr(body, "emine_archive_events_total{status=\"accepted\"} 8"));
    assert_non_null(strstr(body, "emine_archive_last_seq 8"));
    assert_int_equal(s_http_get(C.arch, &g, "/v1/events?after=0&limit=2", &body), 200);
    json_t *j = json_loads(body, 0, NULL);
    json_t *evs = json_object_get(j, "events");
    assert_int_equal(json_array_size(evs), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 1), "seq")), 2);
    json_decref(j);
    assert_non_null(strstr(body, "52.76")); /* the stored numeric, not 52.759999999999998 */
    assert_int_equal(s_http_get(C.arch, &g, "/v1/events?after=7", &body), 200);
    j = json_loads(body, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(j, "events")), 1);
    json_decref(j);
    assert_int_equal(s_http_get(C.arch, &g, "/v1/events?after=x", &body), 400);
    assert_int_equal(s_http_get(C.arch, &g, "/v1/events?after=0&source=%2Fpk%2Ftest&type=nope",
                                &body),
                     200);
    assert_non_null(strstr(body, "{\"events\":[]}"));
    assert_int_equal(
        s_http_get(C.arch, &g, "/v1/events?after=1&limit=1&projectid=prj-1&subject=licence%2F1",
                   &body),
        200);
    j = json_loads(body, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(j, "events"), 0), "seq")),
                     2);
    json_decref(j);
    assert_int_equal(s_http_get(C.arch, &g, "/nope", &body), 404);
}

static void test_postgres_down_holds_batch(void **state)
{
    (void)state;
    long long req = C.req++;
    em_testsrv_pg_stop();
    char *e = s_event("during-outage", "{}");
    s_push_ok(req, 0, "during-outage", e);
    json_t *acks = s_acks(C.arch, 1, 1500);
    assert_int_equal(json_array_size(acks), 0); /* never acked while not committed */
    json_decref(acks);
    http_get_t g;
    const char *body;
    assert_int_equal(s_http_get(C.arch, &g, "/readyz", &body), 503);
    assert_non_null(strstr(body, "postgres"));

    em_testsrv_pg_start();
    PQreset(C.pg);
    assert_int_equal(PQstatus(C.pg), CONNECTION_OK);
    acks = s_acks(C.arch, 1, 15000);
    assert_int_equal(json_array_size(acks), 1);
    s_expect(acks, req, 0, "accepted", 9);
    json_decref(acks);
    assert_int_equal(s_http_get(C.arch, &g, "/readyz", &body), 200);
    free(e);
}

static void test_postgres_restart_while_idle(void **state)
{
    (void)state;
    em_testsrv_pg_stop();
    s_settle(C.arch, 2500); /* the idle check notices the lost session */
    assert_false(archive_is_active(C.arch));
    em_testsrv_pg_start();
    PQreset(C.pg);
    s_until_active(C.arch, 15000);
    assert_int_equal(archive_last_seq(C.arch), 9);
}

static void test_standby_then_shutdown_flush(void **state)
{
    (void)state;
    /* A second archive waits for the lock while answering HTTP. */
    setenv("EMINE_ARCHIVE_BATCH_MS", "60000", 1); /* keeps its batch open until shutdown */
    archive_t *second = archive_new(NULL);
    unsetenv("EMINE_ARCHIVE_BATCH_MS");
    assert_non_null(second);
    s_settle(second, 800);
    assert_false(archive_is_active(second));
    http_get_t g;
    const char *body;
    assert_int_equal(s_http_get(second, &g, "/readyz", &body), 503);
    assert_non_null(strstr(body, "standby"));
    assert_int_equal(s_http_get(second, &g, "/healthz", &body), 200);

    /* The writer goes away; the standby takes over from the archived state. */
    archive_destroy(&C.arch);
    s_until_active(second, 10000);
    assert_int_equal(archive_last_seq(second), 9);
    /* The subscribers reconnect to the new writer: its heartbeat arrives. */
    zmq_setsockopt(C.acks, ZMQ_SUBSCRIBE, "hb", 2);
    int64_t hb_end = em_mono_ms() + 10000;
    int got_hb = 0;
    while (!got_hb && em_mono_ms() < hb_end) {
        em_msg_t m;
        s_settle(second, 10);
        while (em_msg_recv(C.acks, &m, ZMQ_DONTWAIT) >= 0) {
            size_t l;
            const char *t = em_msg_data(&m, 0, &l);
            got_hb |= l == 2 && memcmp(t, "hb", 2) == 0;
            em_msg_close(&m);
        }
    }
    zmq_setsockopt(C.acks, ZMQ_UNSUBSCRIBE, "hb", 2);
    assert_true(got_hb);

    /* Shutdown: what is in hand is committed and acked before archive_run returns. */
    long long req = C.req++;
    char *e1 = s_event("last-1", "{}");
    char *e2 = s_event("last-2", "{}");
    s_push_ok(req, 0, "last-1", e1);
    s_push_ok(req, 1, "last-2", e2);
    s_settle(second, 300); /* read into the batch, not flushed (batch_ms is long) */
    s_assert_scalar("SELECT count(*) FROM events", NULL, "9");
    em_signal_set_interrupted(true);
    assert_int_equal(archive_run(second), 0);
    em_signal_set_interrupted(false);
    s_assert_scalar("SELECT count(*) FROM events", NULL, "11");
    C.arch = second; /* s_acks steps it; the acks are already queued */
    json_t *acks = s_acks(C.arch, 2, 3000);
    assert_int_equal(json_array_size(acks), 2);
    s_expect(acks, req, 0, "accepted", 10);
    s_expect(acks, req, 1, "accepted", 11);
    json_decref(acks);
    /* And the committed events reached the events subscriber, after the ones before. */
    long long last = 0;
    int64_t end = em_mono_ms() + 3000;
    while (last < 11 && em_mono_ms() < end) {
        em_msg_t m;
        if (em_msg_recv(C.events, &m, ZMQ_DONTWAIT) < 0) {
            usleep(1000);
            continue;
        }
        size_t l;
        const char *d = em_msg_data(&m, 1, &l);
        json_t *j = json_loadb(d, l, 0, NULL);
        last = json_integer_value(json_object_get(j, "seq"));
        json_decref(j);
        em_msg_close(&m);
    }
    assert_int_equal(last, 11);
    free(e1);
    free(e2);
}

static void test_mixed_batch(void **state)
{
    (void)state;
    long long req = C.req++;
    char *a = s_event("mix-a", "{}");
    char *b = s_event("mix-b", "{}");
    char *dup2 = s_event("ev-2", "{\"tonnes\":1}");
    char *conf3 = s_event("ev-3", "{\"tonnes\":2}");
    s_push_ok(req, 0, "mix-a", a);
    s_push(req, 1, "mix-r", "{\"id\":\"mix-r\"}", "rejected",
           "[{\"pointer\":\"/source\",\"keyword\":\"required\",\"message\":\"missing\"}]");
    s_push_ok(req, 2, "ev-2", dup2);
    s_push_ok(req, 3, "mix-b", b);
    s_push_ok(req, 4, "ev-3", conf3);
    s_push_ok(req, 5, "mix-a", a);
    /* The current archive keeps its batch open (long batch_ms): read, then flush by hand. */
    s_settle(C.arch, 300);
    assert_int_equal(archive_flush(C.arch), 0);
    json_t *acks = s_acks(C.arch, 6, 5000);
    assert_int_equal(json_array_size(acks), 6);
    s_expect(acks, req, 0, "accepted", 12);
    json_t *r = s_find(acks, req, 1);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "rejected");
    s_expect(acks, req, 2, "duplicate", 2);
    s_expect(acks, req, 3, "accepted", 13);
    s_expect(acks, req, 4, "conflict", 3);
    s_expect(acks, req, 5, "duplicate", 12);
    json_decref(acks);
    s_assert_scalar("SELECT string_agg(coalesce(event_id, '?') || ':' || reason || ':' ||"
                    " coalesce(existing_seq::text, '-'), ',' ORDER BY id) FROM rejected_events"
                    " WHERE event_id IN ('mix-r', 'ev-3')",
                    NULL, "mix-r:invalid:-,ev-3:conflict:3");
    free(a);
    free(b);
    free(dup2);
    free(conf3);
}

static void test_chain_recomputed(void **state)
{
    (void)state;
    PGresult *r = PQexec(C.pg, "SELECT seq, envelope::text, digest, chain FROM events ORDER BY seq");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    char head[65] = "0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(PQntuples(r), 13);
    /* Every path (set, event by event, savepoints) keeps the time to the microsecond. */
    s_assert_scalar("SELECT count(*) FROM events"
                    " WHERE time = timestamptz '2026-01-02 03:04:05.123456+00'",
                    NULL, "13");
    for (int i = 0; i < PQntuples(r); i++) {
        assert_int_equal(atoll(PQgetvalue(r, i, 0)), i + 1);
        const char *env = PQgetvalue(r, i, 1);
        json_t *errs = NULL;
        json_t *ev = em_json_parse(env, strlen(env), 64, &errs);
        assert_non_null(ev);
        char d[65], next[65];
        assert_int_equal(em_jcs_digest_hex(ev, d), 0);
        json_decref(ev);
        assert_string_equal(d, PQgetvalue(r, i, 2));
        assert_int_equal(em_chain_next_hex(head, d, next), 0);
        assert_string_equal(next, PQgetvalue(r, i, 3));
        memcpy(head, next, 65);
    }
    PQclear(r);
}

/* The archive under test keeps its batch open (test_standby_then_shutdown_flush left it with
 * a long batch_ms): reads what was pushed, flushes by hand and collects n acks. */
static json_t *s_flush_acks(size_t n)
{
    s_settle(C.arch, 300);
    assert_int_equal(archive_flush(C.arch), 0);
    return s_acks(C.arch, n, 5000);
}

/* Notes travel from the header to the ack and to the notes column in the same transaction as
 * the row, on the set path and on the event-by-event path; GET /v1/events returns them; a
 * duplicate's ack carries none; the chain covers the event, not the notes. */
static void test_notes(void **state)
{
    (void)state;
    static const char *late = "[{\"pointer\":\"/data/notifiedOn\","
                              "\"keyword\":\"discoveryNotifiedLate\",\"message\":\"late\"}]";
    long long req = C.req++;
    char *a = s_event("notes-a", "{}");
    char *b = s_event("notes-b", "{}");
    s_push_notes(req, 0, "notes-a", a, late);
    s_push_ok(req, 1, "notes-b", b);
    /* not an array of objects: ignored */
    char *c = s_event("notes-c", "{}");
    s_push_notes(req, 2, "notes-c", c, "[1]");
    json_t *acks = s_flush_acks(3);
    assert_int_equal(json_array_size(acks), 3);
    s_expect(acks, req, 0, "accepted", 14);
    s_expect(acks, req, 1, "accepted", 15);
    s_expect(acks, req, 2, "accepted", 16);
    json_t *n = json_object_get(s_find(acks, req, 0), "notes");
    assert_int_equal(json_array_size(n), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(n, 0), "keyword")),
                        "discoveryNotifiedLate");
    assert_null(json_object_get(s_find(acks, req, 1), "notes"));
    assert_null(json_object_get(s_find(acks, req, 2), "notes"));
    json_decref(acks);
    s_assert_scalar("SELECT string_agg(id || '=' || coalesce(notes->0->>'keyword', '-'), ','"
                    " ORDER BY seq) FROM events WHERE id LIKE 'notes-%'",
                    NULL, "notes-a=discoveryNotifiedLate,notes-b=-,notes-c=-");

    /* A duplicate re-send: the original seq, no notes. */
    req = C.req++;
    s_push_notes(req, 0, "notes-a", a, late);
    acks = s_flush_acks(1);
    s_expect(acks, req, 0, "duplicate", 14);
    assert_null(json_object_get(s_find(acks, req, 0), "notes"));
    json_decref(acks);

    /* The event-by-event path (a refused row in the batch) keeps the notes of the others. */
    PGresult *r = PQexec(C.pg, "ALTER TABLE events ADD CONSTRAINT test_no_poison2"
                               " CHECK (id <> 'poison2')");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    req = C.req++;
    char *d = s_event("notes-d", "{}");
    char *p = s_event("poison2", "{}");
    s_push_notes(req, 0, "poison2", p, late);
    s_push_notes(req, 1, "notes-d", d, "[{\"pointer\":\"\",\"keyword\":\"k\",\"message\":\"a\\u0000b\"}]");
    acks = s_flush_acks(2);
    s_expect(acks, req, 1, "accepted", 17);
    assert_string_equal(json_string_value(json_object_get(s_find(acks, req, 0), "status")),
                        "rejected");
    json_decref(acks);
    r = PQexec(C.pg, "ALTER TABLE events DROP CONSTRAINT test_no_poison2");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    s_assert_scalar("SELECT notes->0->>'keyword' FROM events WHERE id = 'notes-d'", NULL, "k");

    /* GET /v1/events: notes beside the event, only where there are some. */
    http_get_t g;
    const char *body;
    assert_int_equal(s_http_get(C.arch, &g, "/v1/events?after=13&limit=4", &body), 200);
    json_t *j = json_loads(body, 0, NULL);
    json_t *evs = json_object_get(j, "events");
    assert_int_equal(json_array_size(evs), 4);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(json_array_get(evs, 0), "notes"), 0),
                            "keyword")),
                        "discoveryNotifiedLate");
    assert_null(json_object_get(json_array_get(evs, 1), "notes"));
    assert_non_null(json_object_get(json_array_get(evs, 3), "notes"));
    json_decref(j);

    /* The chain and the digests are those of the events alone. */
    r = PQexec(C.pg, "SELECT envelope::text, digest FROM events WHERE seq >= 14 ORDER BY seq");
    assert_int_equal(PQntuples(r), 4);
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *errs = NULL;
        json_t *ev = em_json_parse(PQgetvalue(r, i, 0), strlen(PQgetvalue(r, i, 0)), 64, &errs);
        char dg[65];
        assert_int_equal(em_jcs_digest_hex(ev, dg), 0);
        assert_string_equal(dg, PQgetvalue(r, i, 1));
        json_decref(ev);
    }
    PQclear(r);
    free(a);
    free(b);
    free(c);
    free(d);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrations_applied),
        cmocka_unit_test(test_accepts_in_order),
        cmocka_unit_test(test_duplicate_and_conflict),
        cmocka_unit_test(test_same_id_in_one_batch),
        cmocka_unit_test(test_rejected_verdict),
        cmocka_unit_test(test_unstorable_dead_letter),
        cmocka_unit_test(test_store_error_only_that_event),
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_postgres_down_holds_batch),
        cmocka_unit_test(test_postgres_restart_while_idle),
        cmocka_unit_test(test_standby_then_shutdown_flush),
        cmocka_unit_test(test_mixed_batch),
        cmocka_unit_test(test_chain_recomputed),
        cmocka_unit_test(test_notes),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
