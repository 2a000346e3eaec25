/* test_notify.c - the notify service in-process against a real PostgreSQL and real ZeroMQ
 * sockets: a PUB standing in for archive, DEALER stream clients, the admin HTTP port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "em_testsrv.h"
#include "em_util.h"
#include "../../services/notify/notify.h"

#define MAX_GOT 4096
#define OPKEY "emk_test_operator"   /* an operator organisation's key: sees every tier */
#define PUBKEY "emk_test_public"    /* a public organisation's key */
#define REVKEY "emk_test_revoked"   /* revoked */

static PGconn *s_pg;
static void *s_zctx;
static void *s_pub;
static char s_pub_ep[256];
static void *s_socks[16]; /* client sockets still open (closed by the group teardown) */

/* What a client received while pumping. */
typedef struct {
    int nevents;
    int64_t seqs[MAX_GOT];
    int nerrors;
    char last_error[256];
    int exact_numbers; /* events whose text kept 52.76 as written */
} got_t;

static void s_sql(const char *sql)
{
    PGresult *r = PQexec(s_pg, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(s_pg));
    PQclear(r);
}

static int64_t s_sql_int(const char *sql)
{
    PGresult *r = PQexec(s_pg, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    int64_t v = PQntuples(r) > 0 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return v;
}

/* The envelope of event seq, pretty-printed as a producer might send it. */
static void s_envelope(int64_t seq, char *buf, size_t len)
{
    snprintf(buf, len,
             "{\n  \"specversion\": \"1.0\",\n  \"id\": \"ev-%" PRId64 "\",\n"
             "  \"source\": \"/pk/punjab/cadastre\",\n"
             "  \"type\": \"pk.gov.emining.production.reported\",\n"
             "  \"subject\": \"a b\\\" c\",\n"
             "  \"data\": {\"n\": %" PRId64 ", \"tonnes\": 52.76}\n}\n",
             seq, seq);
}

/* Commits events first..last as archive would, with the given visibility (NULL: none, which
 * counts as internal). */
static void s_insert_vis(int64_t first, int64_t last, const char *vis)
{
    for (int64_t seq = first; seq <= last; seq++) {
        char env[1024], s[32], id[32], body[512];
        s_envelope(seq, body, sizeof body);
        if (vis)
            snprintf(env, sizeof env, "{\"visibility\": \"%.32s\",%s", vis, body + 1);
        else
            snprintf(env, sizeof env, "%s", body);
        snprintf(s, sizeof s, "%" PRId64, seq);
        snprintf(id, sizeof id, "ev-%" PRId64, seq);
        const char *params[3] = {s, id, env};
        PGresult *r = PQexecParams(
            s_pg,
            "INSERT INTO events (seq, source, id, type, envelope, digest, chain) "
            "VALUES ($1, '/pk/punjab/cadastre', $2, 'pk.gov.emining.production.reported', "
            "$3::jsonb, repeat('d', 64), repeat('c', 64))",
            3, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            fail_msg("insert: %s", PQerrorMessage(s_pg));
        PQclear(r);
    }
}

static void s_insert(int64_t first, int64_t last)
{
    s_insert_vis(first, last, NULL);
}

/* Publishes event seq on the events bus as archive does after COMMIT. */
static void s_publish(int64_t seq)
{
    char env[512], hdr[64];
    s_envelope(seq, env, sizeof env);
    snprintf(hdr, sizeof hdr, "{\"seq\":%" PRId64 "}", seq);
    assert_int_equal(zmq_send(s_pub, "ev", 2, ZMQ_SNDMORE), 2);
    assert_true(zmq_send(s_pub, hdr, strlen(hdr), ZMQ_SNDMORE) > 0);
    assert_true(zmq_send(s_pub, env, strlen(env), 0) > 0);
}

static void *s_client(notify_t *n)
{
    void *d = zmq_socket(s_zctx, ZMQ_DEALER);
    int zero = 0;
    assert_non_null(d);
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(d, notify_stream_endpoint(n)), 0);
    for (size_t i = 0; i < sizeof s_socks / sizeof *s_socks; i++)
        if (!s_socks[i]) {
            s_socks[i] = d;
            return d;
        }
    fail_msg("too many client sockets");
    return NULL;
}

static void s_close(void *d)
{
    for (size_t i = 0; i < sizeof s_socks / sizeof *s_socks; i++)
        if (s_socks[i] == d)
            s_socks[i] = NULL;
    zmq_close(d);
}

static void s_say(void *d, const char *text)
{
    assert_int_equal(zmq_send(d, text, strlen(text), 0), (int)strlen(text));
}

/* Checks and records one frame the client received. */
static void s_record(got_t *g, const char *buf, size_t len)
{
    json_error_t jerr;
    json_t *o = json_loadb(buf, len, 0, &jerr);
    assert_non_null(o);
    assert_null(memchr(buf, '\n', len)); /* one line per event */
    json_t *err = json_object_get(o, "error");
    if (err) {
        assert_true(json_is_string(err));
        snprintf(g->last_error, sizeof g->last_error, "%s", json_string_value(err));
        g->nerrors++;
        json_decref(o);
        return;
    }
    json_t *seq = json_object_get(o, "seq");
    json_t *ev = json_object_get(o, "event");
    assert_true(json_is_integer(seq));
    assert_true(json_is_object(ev));
    char id[32];
    snprintf(id, sizeof id, "ev-%" PRId64, (int64_t)json_integer_value(seq));
    assert_string_equal(json_string_value(json_object_get(ev, "id")), id);
    assert_string_equal(json_string_value(json_object_get(ev, "subject")), "a b\" c");
    if (memmem(buf, len, "52.76", 5) && !memmem(buf, len, "52.759", 6))
        g->exact_numbers++;
    assert_true(g->nevents < MAX_GOT);
    g->seqs[g->nevents++] = json_integer_value(seq);
    json_decref(o);
}

/* Runs notify for ms milliseconds, collecting what the clients receive. */
static void s_pump2(notify_t *n, void *d1, got_t *g1, void *d2, got_t *g2, int ms)
{
    int64_t end = em_mono_ms() + ms;
    while (em_mono_ms() < end) {
        assert_int_equal(notify_step(n, 5), 0);
        void *ds[2] = {d1, d2};
        got_t *gs[2] = {g1, g2};
        for (int k = 0; k < 2; k++) {
            if (!ds[k])
                continue;
            for (;;) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, ds[k], ZMQ_DONTWAIT) < 0) {
                    zmq_msg_close(&m);
                    break;
                }
                s_record(gs[k], zmq_msg_data(&m), zmq_msg_size(&m));
                zmq_msg_close(&m);
            }
        }
    }
}

static void s_pump(notify_t *n, void *d, got_t *g, int ms)
{
    s_pump2(n, d, g, NULL, NULL, ms);
}

/* Steps until cond holds (or fails the test after 60 s: generous for valgrind). */
#define PUMP_UNTIL(n, d, g, cond)                                                              \
    do {                                                                                       \
        int64_t end_ = em_mono_ms() + 60000;                                                   \
        while (!(cond)) {                                                                      \
            if (em_mono_ms() > end_)                                                           \
                fail_msg("timed out waiting for %s", #cond);                                    \
            s_pump(n, d, g, 10);                                                               \
        }                                                                                      \
    } while (0)

/* Seqs first..first+count-1 exactly, in order. */
static void s_assert_seqs(const got_t *g, int64_t first, int count)
{
    assert_int_equal(g->nevents, count);
    for (int i = 0; i < count; i++)
        assert_int_equal(g->seqs[i], first + i);
}

static notify_t *s_notify_ready(void)
{
    notify_t *n = notify_new(NULL);
    assert_non_null(n);
    PUMP_UNTIL(n, NULL, NULL, notify_ready(n));
    s_pump(n, NULL, NULL, 200); /* let the SUB's subscription reach the PUB */
    return n;
}

/* A plain HTTP GET against the admin port, stepping notify meanwhile.  Returns the status;
 * body (may be NULL) receives the response. */
static int s_http_get(notify_t *n, const char *path, char *body, size_t bodylen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)notify_http_port(n));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    char req[256], resp[16384];
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    assert_int_equal(send(fd, req, (size_t)rl, 0), rl);
    size_t got = 0;
    int64_t end = em_mono_ms() + 5000;
    while (em_mono_ms() < end) {
        assert_int_equal(notify_step(n, 5), 0);
        ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
        if (r == 0)
            break;
        if (r > 0)
            got += (size_t)r;
    }
    close(fd);
    resp[got] = '\0';
    int status = 0;
    assert_int_equal(sscanf(resp, "HTTP/1.%*d %d", &status), 1);
    if (body) {
        const char *b = strstr(resp, "\r\n\r\n");
        snprintf(body, bodylen, "%s", b ? b + 4 : "");
    }
    return status;
}

/* Opens a connection to the admin port and sends request (raw HTTP).  Returns the socket. */
static int s_http_open(notify_t *n, const char *request)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)notify_http_port(n));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    assert_int_equal(send(fd, request, strlen(request), 0), (ssize_t)strlen(request));
    return fd;
}

/* Steps notify for ms, appending what fd receives to buf (NUL-terminated, at most len - 1
 * bytes kept).  Returns the number of bytes now in buf. */
static size_t s_http_read(notify_t *n, int fd, char *buf, size_t len, size_t have, int ms)
{
    int64_t end = em_mono_ms() + ms;
    while (em_mono_ms() < end) {
        assert_int_equal(notify_step(n, 5), 0);
        ssize_t r = recv(fd, buf + have, len - 1 - have, 0);
        if (r == 0)
            break;
        if (r > 0)
            have += (size_t)r;
    }
    buf[have] = '\0';
    return have;
}

/* Counts the SSE events ("\nid: ") of a transcript. */
static int s_sse_events(const char *t)
{
    int k = 0;
    for (const char *p = t; (p = strstr(p, "\nid: ")) != NULL; p++)
        k++;
    return k;
}

/* ---------------------------------------------------------------------------------------- */

/* The whole file (caller frees), or NULL when it cannot be read. */
static int s_group_setup(void **state)
{
    (void)state;
    const char *dsn = em_testsrv_pg_start();
    s_pg = PQconnectdb(dsn);
    assert_int_equal(PQstatus(s_pg), CONNECTION_OK);
    s_sql("SET client_min_messages = warning");
    em_testsrv_pg_migrate(dsn); /* archive's schema */
    s_sql("INSERT INTO organisations (id, kind) VALUES ('ops', 'operator'), "
          "('portal', 'public')");
    s_sql("INSERT INTO api_keys (org_id, key_hash, revoked_at) VALUES "
          "('ops', encode(sha256('" OPKEY "'), 'hex'), NULL), "
          "('portal', encode(sha256('" PUBKEY "'), 'hex'), NULL), "
          "('ops', encode(sha256('" REVKEY "'), 'hex'), now())");

    s_zctx = zmq_ctx_new();
    s_pub = zmq_socket(s_zctx, ZMQ_PUB);
    int zero = 0;
    zmq_setsockopt(s_pub, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(s_pub, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof s_pub_ep;
    assert_int_equal(zmq_getsockopt(s_pub, ZMQ_LAST_ENDPOINT, s_pub_ep, &len), 0);

    setenv("EMINE_PG_DSN", dsn, 1);
    setenv("EMINE_BUS_EVENTS", s_pub_ep, 1);
    setenv("EMINE_NOTIFY_ZMQ", "tcp://127.0.0.1:*", 1);
    setenv("EMINE_NOTIFY_HTTP", "127.0.0.1:0", 1);
    setenv("EMINE_LOG_LEVEL", getenv("TEST_VERBOSE") ? "debug" : "error", 1);
    unsetenv("EMINE_CONFIG");
    return 0;
}

static int s_group_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof s_socks / sizeof *s_socks; i++)
        if (s_socks[i])
            zmq_close(s_socks[i]);
    zmq_close(s_pub);
    zmq_ctx_term(s_zctx);
    PQfinish(s_pg);
    em_testsrv_stop_all();
    return 0;
}

/* Every test starts from an empty archive and no cursor, with the default timers. */
static int s_setup(void **state)
{
    (void)state;
    s_sql("TRUNCATE events, cursors");
    setenv("EMINE_NOTIFY_POLL_MS", "100", 1);
    setenv("EMINE_NOTIFY_CURSOR_FLUSH_MS", "50", 1);
    setenv("EMINE_NOTIFY_BATCH", "7", 1); /* several pages even for small tests */
    return 0;
}

/* A client subscribed after 0 gets every event in order, with no gaps, never more than its
 * credit: first from PostgreSQL, then live. */
static void test_stream_in_order_within_credit(void **state)
{
    (void)state;
    got_t g = {0};
    s_insert(1, 20);
    notify_t *n = s_notify_ready();
    PUMP_UNTIL(n, NULL, NULL, notify_head(n) == 20);

    void *d = s_client(n);
    s_say(d, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0},\"credit\":5}");
    s_pump(n, d, &g, 300);
    s_assert_seqs(&g, 1, 5);
    s_say(d, "{\"credit\":7}");
    s_pump(n, d, &g, 300);
    s_assert_seqs(&g, 1, 12);
    s_say(d, "{\"credit\":100}");
    PUMP_UNTIL(n, d, &g, g.nevents == 20);

    for (int64_t seq = 21; seq <= 30; seq++) { /* live: committed, then published */
        s_insert(seq, seq);
        s_publish(seq);
    }
    PUMP_UNTIL(n, d, &g, g.nevents == 30);
    s_pump(n, d, &g, 200);
    s_assert_seqs(&g, 1, 30);
    assert_int_equal(g.exact_numbers, 30); /* 52.76 stays 52.76 on both paths */
    assert_int_equal(g.nerrors, 0);
    assert_int_equal(notify_head(n), 30);

    /* 100 + 7 + 5 granted, 30 used: the rest still flows to a second wave. */
    for (int64_t seq = 31; seq <= 40; seq++) {
        s_insert(seq, seq);
        s_publish(seq);
    }
    PUMP_UNTIL(n, d, &g, g.nevents == 40);
    s_assert_seqs(&g, 1, 40);

    s_close(d);
    notify_destroy(&n);
    assert_null(n);
}

/* A live event after a gap (the PUB dropped some) makes notify read the gap from PostgreSQL;
 * the periodic poll is out of the picture. */
static void test_gap_filled_from_pg(void **state)
{
    (void)state;
    got_t g = {0};
    setenv("EMINE_NOTIFY_POLL_MS", "600000", 1);
    notify_t *n = s_notify_ready();
    assert_int_equal(notify_head(n), 0);
    void *d = s_client(n);
    s_say(d, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0},\"credit\":1000}");
    s_pump(n, d, &g, 100);

    s_insert(1, 12);
    s_publish(1);
    s_publish(2);
    s_publish(12); /* 3..11 were dropped */
    PUMP_UNTIL(n, d, &g, g.nevents == 12);
    s_insert(13, 15);
    s_publish(15); /* 13 and 14 dropped */
    PUMP_UNTIL(n, d, &g, g.nevents == 15);
    s_publish(14); /* late duplicates are ignored */
    s_publish(3);
    s_pump(n, d, &g, 200);
    s_assert_seqs(&g, 1, 15);
    assert_int_equal(notify_head(n), 15);

    s_close(d);
    notify_destroy(&n);
}

/* The cursor is persisted on the flush timer and on destroy; a new instance resumes from it
 * and catches up with what was committed meanwhile. */
static void test_cursor_resumes(void **state)
{
    (void)state;
    got_t g = {0};
    s_insert(1, 10);
    notify_t *n = s_notify_ready();
    PUMP_UNTIL(n, NULL, NULL, notify_head(n) == 10);
    PUMP_UNTIL(n, NULL, NULL, s_sql_int("SELECT seq FROM cursors WHERE name = 'notify'") == 10);

    s_insert(11, 13);
    s_publish(11);
    s_publish(12);
    s_publish(13);
    PUMP_UNTIL(n, NULL, NULL, notify_head(n) == 13);
    setenv("EMINE_NOTIFY_CURSOR_FLUSH_MS", "600000", 1); /* only destroy persists now */
    notify_destroy(&n);
    assert_int_equal(s_sql_int("SELECT seq FROM cursors WHERE name = 'notify'"), 13);

    s_insert(14, 16); /* committed while notify was down */
    n = notify_new(NULL);
    assert_non_null(n);
    assert_int_equal(notify_head(n), 13); /* resumed, not restarted from 0 */
    void *d = s_client(n);
    s_say(d, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":13},\"credit\":10}");
    PUMP_UNTIL(n, d, &g, g.nevents == 3);
    s_pump(n, d, &g, 200);
    s_assert_seqs(&g, 14, 3);
    assert_int_equal(notify_head(n), 16);
    s_close(d);
    notify_destroy(&n);
    assert_int_equal(s_sql_int("SELECT seq FROM cursors WHERE name = 'notify'"), 16);
}

/* A client with credit 0 receives nothing until it grants credit, then exactly that much. */
static void test_zero_credit(void **state)
{
    (void)state;
    got_t g = {0};
    s_insert(1, 5);
    notify_t *n = s_notify_ready();
    PUMP_UNTIL(n, NULL, NULL, notify_head(n) == 5);
    void *d = s_client(n);
    s_say(d, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0},\"credit\":0}");
    s_pump(n, d, &g, 300);
    assert_int_equal(g.nevents, 0);
    assert_int_equal(notify_client_count(n), 1);
    s_say(d, "{\"credit\":2}");
    s_pump(n, d, &g, 300);
    s_assert_seqs(&g, 1, 2);
    s_say(d, "{\"credit\":0}"); /* a keepalive grants nothing */
    s_pump(n, d, &g, 200);
    s_assert_seqs(&g, 1, 2);
    /* re-subscribing moves the cursor */
    s_say(d, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":3},\"credit\":9}");
    PUMP_UNTIL(n, d, &g, g.nevents == 4);
    assert_int_equal(g.seqs[2], 4);
    assert_int_equal(g.seqs[3], 5);
    s_close(d);
    notify_destroy(&n);
}

/* Garbage from a client gets an error frame each, changes nothing, and the service keeps
 * serving that client and the others. */
static void test_bad_client_messages(void **state)
{
    (void)state;
    got_t bad = {0}, good = {0};
    s_insert(1, 3);
    notify_t *n = s_notify_ready();
    PUMP_UNTIL(n, NULL, NULL, notify_head(n) == 3);
    void *b = s_client(n);
    void *d = s_client(n);
    s_say(d, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0},\"credit\":2}");
    const char *garbage[] = {
        "not json",
        "{\"subscribe\":",
        "[1,2]",
        "42",
        "{\"credit\":\"x\"}",
        "{\"credit\":-1}",
        "{\"credit\":1.5}",
        "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":-1},\"credit\":1}",
        "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":\"0\"}}",
        "{\"subscribe\":[0]}",
        "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0,\"filter\":1}}",
        "{\"credit\":5}", /* not subscribed */
        "{\"bogus\":1}",
        "{}",
        "{\"credit\":1,\"credit\":2}",
    };
    size_t ng = sizeof garbage / sizeof *garbage;
    for (size_t i = 0; i < ng; i++)
        s_say(b, garbage[i]);
    zmq_send(b, "a", 1, ZMQ_SNDMORE); /* two frames */
    zmq_send(b, "b", 1, 0);
    s_pump2(n, b, &bad, d, &good, 400);
    assert_int_equal(bad.nerrors, (int)ng + 1);
    assert_int_equal(bad.nevents, 0);
    assert_int_equal(notify_client_count(n), 1); /* only the good client */
    s_assert_seqs(&good, 1, 2);

    /* a good message from the same peer works afterwards */
    s_say(b, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":1},\"credit\":5}");
    s_say(d, "{\"credit\":5}");
    s_pump2(n, b, &bad, d, &good, 300);
    s_assert_seqs(&bad, 2, 2);
    s_assert_seqs(&good, 1, 3);
    assert_int_equal(notify_client_count(n), 2);

    s_close(b);
    s_close(d);
    notify_destroy(&n);
}

/* A client silent for client_idle_s without credit left is forgotten (and told so when it
 * speaks again); a client whose peer vanished is dropped at the next send. */
static void test_idle_and_vanished_clients(void **state)
{
    (void)state;
    got_t g = {0}, h = {0};
    setenv("EMINE_NOTIFY_CLIENT_IDLE_S", "1", 1);
    s_insert(1, 2);
    notify_t *n = s_notify_ready();
    PUMP_UNTIL(n, NULL, NULL, notify_head(n) == 2);
    void *idle = s_client(n);
    void *waiting = s_client(n);
    void *gone = s_client(n);
    s_say(idle, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0},\"credit\":2}");
    s_say(waiting, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":2},\"credit\":5}");
    s_say(gone, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":2},\"credit\":5}");
    s_pump2(n, idle, &g, waiting, &h, 200);
    assert_int_equal(notify_client_count(n), 3);
    s_close(gone); /* vanishes with credit left */
    /* idle used up its credit and is forgotten; waiting keeps its credit and its place */
    PUMP_UNTIL(n, waiting, &h, notify_client_count(n) == 2);
    s_assert_seqs(&g, 1, 2);
    s_insert(3, 3);
    s_publish(3);
    PUMP_UNTIL(n, waiting, &h, h.nevents == 1);
    PUMP_UNTIL(n, waiting, &h, notify_client_count(n) == 1); /* gone: EHOSTUNREACH */
    s_say(idle, "{\"credit\":5}");
    PUMP_UNTIL(n, idle, &g, g.nerrors == 1);
    assert_string_equal(g.last_error, "not subscribed");
    s_close(idle);
    s_close(waiting);
    unsetenv("EMINE_NOTIFY_CLIENT_IDLE_S");
    notify_destroy(&n);
}

/* A client that does not read fills its pipe: notify stops at the high-water mark instead of
 * queueing, and resumes where it stopped, with no gap, once the client reads. */
static void test_slow_client_backpressure(void **state)
{
    (void)state;
    static got_t g;
    memset(&g, 0, sizeof g);
    s_sql("INSERT INTO events (seq, source, id, type, envelope, digest, chain) "
          "SELECT i, '/pk/punjab/cadastre', 'ev-' || i, 't', jsonb_build_object("
          "'specversion', '1.0', 'id', 'ev-' || i, 'source', '/pk/punjab/cadastre', "
          "'type', 't', 'subject', 'a b\" c', 'data', jsonb_build_object('tonnes', 52.76, "
          "'pad', repeat('x', 2000))), repeat('d', 64), repeat('c', 64) "
          "FROM generate_series(1, 4000) AS i");
    setenv("EMINE_NOTIFY_BATCH", "500", 1);
    notify_t *n = s_notify_ready();
    PUMP_UNTIL(n, NULL, NULL, notify_head(n) == 4000);
    void *d = s_client(n);
    int hwm = 10;
    zmq_setsockopt(d, ZMQ_RCVHWM, &hwm, sizeof hwm);
    s_say(d, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0},\"credit\":4000}");
    s_pump(n, NULL, NULL, 500); /* the client does not read */
    PUMP_UNTIL(n, d, &g, g.nevents == 4000);
    s_pump(n, d, &g, 100);
    s_assert_seqs(&g, 1, 4000);
    char body[16384];
    assert_int_equal(s_http_get(n, "/metrics", body, sizeof body), 200);
    const char *b = strstr(body, "\nemine_notify_stream_blocked_total ");
    assert_non_null(b);
    assert_true(atof(b + strlen("\nemine_notify_stream_blocked_total ")) > 0);
    s_close(d);
    notify_destroy(&n);
}

/* Admin HTTP: health, readiness and the metrics. */
static void test_admin_http(void **state)
{
    (void)state;
    got_t g = {0};
    char body[16384];
    s_insert(1, 4);
    notify_t *n = s_notify_ready();
    PUMP_UNTIL(n, NULL, NULL, notify_head(n) == 4);
    void *d = s_client(n);
    s_say(d, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0},\"credit\":3}");
    PUMP_UNTIL(n, d, &g, g.nevents == 3);

    assert_int_equal(s_http_get(n, "/healthz", NULL, 0), 200);
    assert_int_equal(s_http_get(n, "/readyz", NULL, 0), 200);
    assert_int_equal(s_http_get(n, "/nope", NULL, 0), 404);
    assert_int_equal(s_http_get(n, "/metrics", body, sizeof body), 200);
    assert_non_null(strstr(body, "emine_notify_head 4"));
    assert_non_null(strstr(body, "emine_notify_events_seen_total 4"));
    assert_non_null(strstr(body, "emine_notify_stream_clients 1"));
    assert_non_null(strstr(body, "emine_notify_stream_sent_total 3"));
    assert_non_null(strstr(body, "emine_notify_catchup_queries_total"));
    s_close(d);
    notify_destroy(&n);
}

/* PostgreSQL down: readyz 503, live events still flow to caught-up clients; PostgreSQL back:
 * ready again, and what was missed is read from it. */
static void test_pg_down(void **state)
{
    (void)state;
    got_t g = {0};
    s_insert(1, 3);
    notify_t *n = s_notify_ready();
    PUMP_UNTIL(n, NULL, NULL, notify_head(n) == 3);
    void *d = s_client(n);
    s_say(d, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0},\"credit\":100}");
    PUMP_UNTIL(n, d, &g, g.nevents == 3);

    s_insert(4, 6);
    PQfinish(s_pg);
    em_testsrv_pg_stop();
    PUMP_UNTIL(n, d, &g, !notify_ready(n));
    assert_int_equal(s_http_get(n, "/readyz", NULL, 0), 503);
    s_publish(4);
    s_publish(5);
    PUMP_UNTIL(n, d, &g, g.nevents == 5);
    s_publish(7); /* a gap that only PostgreSQL can fill (7 is committed below) */
    s_pump(n, d, &g, 300);
    assert_int_equal(g.nevents, 5);
    /* a new client's key cannot be looked up: "unavailable" with a retry hint */
    got_t u = {0};
    void *nd = s_client(n);
    s_say(nd, "{\"subscribe\":{\"key\":\"" PUBKEY "\",\"after\":0},\"credit\":5}");
    PUMP_UNTIL(n, nd, &u, u.nerrors == 1);
    assert_string_equal(u.last_error, "unavailable");
    assert_int_equal(u.nevents, 0);
    s_close(nd);

    s_pg = PQconnectdb(em_testsrv_pg_start());
    assert_int_equal(PQstatus(s_pg), CONNECTION_OK);
    s_insert(7, 7);
    PUMP_UNTIL(n, d, &g, g.nevents == 7);
    PUMP_UNTIL(n, d, &g, notify_ready(n));
    s_assert_seqs(&g, 1, 7);
    s_close(d);
    notify_destroy(&n);
    assert_int_equal(s_sql_int("SELECT seq FROM cursors WHERE name = 'notify'"), 7);
}


/* The subscribe message carries an organisation key: missing, unknown or revoked keys are
 * answered "unauthorized" and get nothing; an organisation gets only what it may see, and the
 * events it may not see cost no credit; types and filters narrow; a bad filter is answered
 * with its path and changes nothing. */
static void test_stream_auth_and_visibility(void **state)
{
    (void)state;
    got_t op = {0}, pub = {0}, bad = {0}, nar = {0};
    s_insert_vis(1, 2, NULL);          /* no visibility: internal */
    s_insert_vis(3, 3, "public");
    s_insert_vis(4, 4, "partner");
    s_insert_vis(5, 5, "public");
    s_insert_vis(6, 6, "restricted");
    s_insert_vis(7, 7, "public");
    notify_t *n = s_notify_ready();
    PUMP_UNTIL(n, NULL, NULL, notify_head(n) == 7);

    void *b = s_client(n);
    const char *refused[] = {
        "{\"subscribe\":{\"after\":0},\"credit\":10}",
        "{\"subscribe\":{\"after\":0,\"key\":\"\"},\"credit\":10}",
        "{\"subscribe\":{\"after\":0,\"key\":\"emk_nobody\"},\"credit\":10}",
        "{\"subscribe\":{\"after\":0,\"key\":\"" REVKEY "\"},\"credit\":10}",
    };
    for (size_t i = 0; i < 4; i++)
        s_say(b, refused[i]);
    s_pump(n, b, &bad, 300);
    assert_int_equal(bad.nerrors, 4);
    assert_string_equal(bad.last_error, "unauthorized");
    assert_int_equal(bad.nevents, 0);
    assert_int_equal(notify_client_count(n), 0);

    /* public: 3 and 5 with a credit of 2 (1, 2 and 4 skipped without using it), then 7 */
    void *p = s_client(n);
    s_say(p, "{\"subscribe\":{\"key\":\"" PUBKEY "\",\"after\":0},\"credit\":2}");
    PUMP_UNTIL(n, p, &pub, pub.nevents == 2);
    s_pump(n, p, &pub, 200);
    assert_int_equal(pub.nevents, 2);
    assert_int_equal(pub.seqs[0], 3);
    assert_int_equal(pub.seqs[1], 5);
    s_say(p, "{\"credit\":10}");
    PUMP_UNTIL(n, p, &pub, pub.nevents == 3);
    assert_int_equal(pub.seqs[2], 7);

    /* operator: everything */
    void *o = s_client(n);
    s_say(o, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0},\"credit\":100}");
    PUMP_UNTIL(n, o, &op, op.nevents == 7);
    s_assert_seqs(&op, 1, 7);

    /* the operator narrowed by a filter: only 4 */
    void *f = s_client(n);
    s_say(f, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0,"
             "\"filters\":[{\"exact\":{\"visibility\":\"partner\"}}],"
             "\"types\":[\"pk.gov.emining.production.reported\"]},\"credit\":100}");
    PUMP_UNTIL(n, f, &nar, nar.nevents == 1);
    s_pump(n, f, &nar, 200);
    assert_int_equal(nar.nevents, 1);
    assert_int_equal(nar.seqs[0], 4);

    /* a bad filter: its path in the error; the subscription in place is unchanged */
    s_say(f, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0,"
             "\"filters\":[{\"not\":{\"regex\":{\"type\":\".*\"}}}]},\"credit\":100}");
    s_say(f, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0,\"types\":[\"\"]}}");
    s_say(f, "{\"subscribe\":{\"key\":7,\"after\":0}}");
    s_pump(n, f, &nar, 300);
    assert_int_equal(nar.nerrors, 3);
    assert_string_equal(nar.last_error,
                        "subscribe.key must be a string (an organisation API key)");
    assert_int_equal(nar.nevents, 1);
    s_insert_vis(8, 8, "partner");
    PUMP_UNTIL(n, f, &nar, nar.nevents == 2);
    assert_int_equal(nar.seqs[1], 8);

    /* a public client that loses its key (re-subscribing with a revoked one) is dropped */
    assert_int_equal(notify_client_count(n), 3);
    s_say(p, "{\"subscribe\":{\"key\":\"" REVKEY "\",\"after\":0},\"credit\":10}");
    s_pump(n, p, &pub, 200);
    assert_string_equal(pub.last_error, "unauthorized");
    assert_int_equal(notify_client_count(n), 2);
    s_close(b);
    s_close(p);
    s_close(o);
    s_close(f);
    notify_destroy(&n);
}

/* The error of a bad filter names its path. */
static void test_stream_bad_filter_message(void **state)
{
    (void)state;
    got_t g = {0};
    notify_t *n = s_notify_ready();
    void *d = s_client(n);
    s_say(d, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0,"
             "\"filters\":[{\"exact\":{\"type\":\"a\"}},{\"any\":[{\"sql\":\"1\"}]}]},"
             "\"credit\":1}");
    s_say(d, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0,\"colour\":\"red\"}}");
    PUMP_UNTIL(n, d, &g, g.nerrors == 2);
    assert_int_equal(notify_client_count(n), 0);
    assert_non_null(strstr(g.last_error, "subscribe.colour: unknown member"));
    s_close(d);
    d = s_client(n);
    memset(&g, 0, sizeof g);
    s_say(d, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0,"
             "\"filters\":[{\"exact\":{\"type\":\"a\"}},{\"any\":[{\"sql\":\"1\"}]}]},"
             "\"credit\":1}");
    PUMP_UNTIL(n, d, &g, g.nerrors == 1);
    assert_non_null(strstr(g.last_error, "subscribe.filters/1/any/0: unknown dialect 'sql'"));
    s_close(d);
    notify_destroy(&n);
}

/* GET /v1/stream: 401 without a valid key; an operator gets every event as SSE (id, event,
 * data), a public organisation only the public ones; Last-Event-ID resumes; over
 * sse_max_clients: 503. */
static void test_sse(void **state)
{
    (void)state;
    static char t1[65536], t2[65536], t3[65536], t4[8192];
    setenv("EMINE_NOTIFY_SSE_MAX_CLIENTS", "2", 1);
    setenv("EMINE_NOTIFY_SSE_KEEPALIVE_MS", "200", 1);
    s_insert_vis(1, 2, "public");
    s_insert_vis(3, 3, NULL);
    s_insert_vis(4, 4, "public");
    notify_t *n = s_notify_ready();
    PUMP_UNTIL(n, NULL, NULL, notify_head(n) == 4);

    int fd = s_http_open(n, "GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n");
    s_http_read(n, fd, t4, sizeof t4, 0, 300);
    close(fd);
    assert_non_null(strstr(t4, " 401 "));
    fd = s_http_open(n, "GET /v1/stream HTTP/1.1\r\nHost: x\r\n"
                        "Authorization: Bearer " REVKEY "\r\n\r\n");
    s_http_read(n, fd, t4, sizeof t4, 0, 300);
    close(fd);
    assert_non_null(strstr(t4, " 401 "));
    assert_non_null(strstr(t4, "{\"error\":\"unauthorized\"}"));

    int op = s_http_open(n, "GET /v1/stream HTTP/1.1\r\nHost: x\r\n"
                            "Authorization: Bearer " OPKEY "\r\n\r\n");
    int pub = s_http_open(n, "GET /v1/stream?after=1 HTTP/1.1\r\nHost: x\r\n"
                             "Authorization: Bearer " PUBKEY "\r\n\r\n");
    size_t h1 = s_http_read(n, op, t1, sizeof t1, 0, 400);
    size_t h2 = s_http_read(n, pub, t2, sizeof t2, 0, 100);
    assert_non_null(strstr(t1, "HTTP/1.1 200"));
    assert_non_null(strstr(t1, "text/event-stream"));
    assert_int_equal(s_sse_events(t1), 4);
    const char *e3 = strstr(t1, "id: 3\nevent: pk.gov.emining.production.reported\ndata: {");
    assert_non_null(e3);
    assert_non_null(strstr(e3, "\"id\":\"ev-3\"")); /* the compact CloudEvent */
    assert_true(strstr(e3, "\"id\":\"ev-3\"") < strstr(e3, "\n\n"));
    assert_int_equal(s_sse_events(t2), 2); /* 2 and 4 */
    assert_non_null(strstr(t2, "id: 2\n"));
    assert_non_null(strstr(t2, "id: 4\n"));

    /* a third connection: over the cap */
    fd = s_http_open(n, "GET /v1/stream HTTP/1.1\r\nHost: x\r\n"
                        "Authorization: Bearer " OPKEY "\r\n\r\n");
    s_http_read(n, fd, t4, sizeof t4, 0, 300);
    close(fd);
    assert_non_null(strstr(t4, " 503 "));
    assert_non_null(strstr(t4, "Retry-After"));

    /* live: 5 (public) reaches both, 6 (internal) only the operator */
    s_insert_vis(5, 5, "public");
    s_insert_vis(6, 6, "internal"); /* found by the PostgreSQL poll */
    h1 = s_http_read(n, op, t1, sizeof t1, h1, 400);
    h2 = s_http_read(n, pub, t2, sizeof t2, h2, 100);
    (void)h1;
    (void)h2;
    assert_int_equal(s_sse_events(t1), 6);
    assert_int_equal(s_sse_events(t2), 3);
    assert_non_null(strstr(t2, ": ping\n")); /* keepalive while idle */
    close(op);
    close(pub);
    s_pump(n, NULL, NULL, 500); /* the next keepalive finds them gone: their slots are free */

    /* resume after 4 */
    fd = s_http_open(n, "GET /v1/stream?types=pk.gov.emining.production.reported HTTP/1.1\r\n"
                        "Host: x\r\nAuthorization: Bearer " OPKEY "\r\nLast-Event-ID: 4\r\n\r\n");
    s_http_read(n, fd, t3, sizeof t3, 0, 400);
    close(fd);
    assert_int_equal(s_sse_events(t3), 2);
    assert_non_null(strstr(t3, "id: 5\n"));
    assert_non_null(strstr(t3, "id: 6\n"));
    fd = s_http_open(n, "GET /v1/stream?filters=%5B%7B%22sql%22%3A1%7D%5D HTTP/1.1\r\n"
                        "Host: x\r\nAuthorization: Bearer " OPKEY "\r\n\r\n");
    s_http_read(n, fd, t4, sizeof t4, 0, 300);
    close(fd);
    assert_non_null(strstr(t4, " 400 "));
    assert_non_null(strstr(t4, "filters/0: unknown dialect 'sql'"));
    notify_destroy(&n);
    unsetenv("EMINE_NOTIFY_SSE_MAX_CLIENTS");
    unsetenv("EMINE_NOTIFY_SSE_KEEPALIVE_MS");
}

/* A reader that does not read: notify keeps at most one event of it in memory and goes on
 * serving the others; the slow reader gets everything, in order, once it reads. */
static void test_sse_slow_reader(void **state)
{
    (void)state;
    got_t g = {0};
    s_insert_vis(1, 3000, "public");
    notify_t *n = s_notify_ready();
    PUMP_UNTIL(n, NULL, NULL, notify_head(n) == 3000);
    int slow = s_http_open(n, "GET /v1/stream HTTP/1.1\r\nHost: x\r\n"
                              "Authorization: Bearer " PUBKEY "\r\n\r\n");
    int rcv = 4096;
    setsockopt(slow, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    void *d = s_client(n);
    s_say(d, "{\"subscribe\":{\"key\":\"" OPKEY "\",\"after\":0},\"credit\":3000}");
    PUMP_UNTIL(n, d, &g, g.nevents == 3000); /* not held up by the slow reader */
    s_assert_seqs(&g, 1, 3000);
    /* now read the slow one to the end */
    static char buf[4 << 20];
    size_t have = 0;
    int64_t end = em_mono_ms() + 60000;
    while (!strstr(buf, "\nid: 3000\n") && em_mono_ms() < end) {
        assert_int_equal(notify_step(n, 1), 0);
        ssize_t r = recv(slow, buf + have, sizeof buf - 1 - have, 0);
        if (r > 0) {
            have += (size_t)r;
            buf[have] = '\0';
        }
    }
    int events = 0;
    int64_t last = 0;
    for (const char *q = buf; (q = strstr(q, "\nid: ")) != NULL; q += 5) {
        int64_t id = strtoll(q + 5, NULL, 10);
        assert_int_equal(id, last + 1); /* in order, no gap, no duplicate */
        last = id;
        events++;
    }
    assert_int_equal(events, 3000);
    s_close(d);
    notify_destroy(&n); /* with the SSE connection still open: it is ended, not leaked */
    close(slow);
}

/* The cursors table may not exist yet (archive applies the migrations): notify waits. */
static void test_waits_for_schema(void **state)
{
    (void)state;
    s_sql("ALTER TABLE cursors RENAME TO cursors_later");
    notify_t *n = notify_new(NULL);
    assert_non_null(n);
    s_pump(n, NULL, NULL, 300);
    assert_int_equal(notify_head(n), -1);
    assert_false(notify_ready(n));
    s_sql("ALTER TABLE cursors_later RENAME TO cursors");
    s_insert(1, 2);
    PUMP_UNTIL(n, NULL, NULL, notify_head(n) == 2); /* retried with a backoff of < 1 s */
    notify_destroy(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_stream_in_order_within_credit, s_setup),
        cmocka_unit_test_setup(test_gap_filled_from_pg, s_setup),
        cmocka_unit_test_setup(test_cursor_resumes, s_setup),
        cmocka_unit_test_setup(test_zero_credit, s_setup),
        cmocka_unit_test_setup(test_bad_client_messages, s_setup),
        cmocka_unit_test_setup(test_idle_and_vanished_clients, s_setup),
        cmocka_unit_test_setup(test_slow_client_backpressure, s_setup),
        cmocka_unit_test_setup(test_admin_http, s_setup),
        cmocka_unit_test_setup(test_waits_for_schema, s_setup),
        cmocka_unit_test_setup(test_pg_down, s_setup),
        cmocka_unit_test_setup(test_stream_auth_and_visibility, s_setup),
        cmocka_unit_test_setup(test_stream_bad_filter_message, s_setup),
        cmocka_unit_test_setup(test_sse, s_setup),
        cmocka_unit_test_setup(test_sse_slow_reader, s_setup),
    };
    return cmocka_run_group_tests(tests, s_group_setup, s_group_teardown);
}
