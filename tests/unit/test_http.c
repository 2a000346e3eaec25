/* test_http.c - a real libmicrohttpd server on an ephemeral port, driven from this thread
 * with poll() the way a service's zmq_poll loop drives it, and plain-socket clients. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "em_http.h"

typedef struct {
    em_http_t *http;
    em_http_req_t *held; /* a /defer request the test answers later */
    em_http_req_t *many[64]; /* /many requests, answered later in bulk */
    int nmany;
    int calls;           /* handler invocations */
    char ce_id[64];      /* seen by the header visitor */
} t_state_t;

static void s_visit(void *arg, const char *name, const char *value)
{
    t_state_t *t = arg;
    if (strcasecmp(name, "ce-id") == 0)
        snprintf(t->ce_id, sizeof t->ce_id, "%s", value);
}

static void s_handler(void *arg, em_http_req_t *req)
{
    t_state_t *t = arg;
    const char *path = em_http_req_path(req);
    const char *method = em_http_req_method(req);
    char out[512];

    t->calls++;
    if (strcmp(path, "/hello") == 0 && strcmp(method, "GET") == 0) {
        const char *name = em_http_req_query(req, "name");
        const char *key = em_http_req_header(req, "X-API-KEY"); /* sent as x-api-key */
        int n = snprintf(out, sizeof out, "hello %s key=%s", name ? name : "?", key ? key : "-");
        em_http_add_header(req, "Retry-After", "3");
        em_http_respond(req, 200, "text/plain", out, (size_t)n);
    } else if (strcmp(path, "/v1/events") == 0 && strcmp(method, "POST") == 0) {
        size_t len;
        const char *body = em_http_req_body(req, &len);
        em_http_req_headers(req, s_visit, t);
        em_http_respond(req, 202, "application/json", body, len);
    } else if (strcmp(path, "/many") == 0 && t->nmany < 64) {
        t->many[t->nmany++] = req;
    } else if (strcmp(path, "/defer") == 0) {
        t->held = req; /* answered later by the test */
    } else {
        em_http_respond(req, 404, "application/json", "{\"error\":\"not found\"}", 21);
    }
}

/* Runs the server for up to ms, as a service loop would. */
static void s_pump(em_http_t *http, int ms)
{
    struct pollfd p = {.fd = em_http_fd(http), .events = POLLIN};
    for (int waited = 0; waited < ms; waited += 5) {
        long t = em_http_timeout_ms(http);
        poll(&p, 1, t >= 0 && t < 5 ? (int)t : 5);
        em_http_run(http);
    }
}

static int s_connect(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void s_write_all(em_http_t *http, int fd, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno == EAGAIN)
            s_pump(http, 5);
        else
            break;
    }
}

/* Reads until the server closes the connection or ms pass; returns what arrived (caller
 * frees). */
static char *s_read_until_close(em_http_t *http, int fd, int ms)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (int waited = 0; waited < ms; waited += 5) {
        s_pump(http, 5);
        for (;;) {
            if (len + 1024 > cap) {
                cap *= 2;
                buf = realloc(buf, cap);
                assert_non_null(buf);
            }
            ssize_t r = read(fd, buf + len, cap - len - 1);
            if (r > 0) {
                len += (size_t)r;
                continue;
            }
            if (r == 0 || (r < 0 && errno != EAGAIN))
                goto done;
            break;
        }
    }
done:
    buf[len] = '\0';
    return buf;
}

static char *s_request(t_state_t *t, const char *raw)
{
    int fd = s_connect(em_http_port(t->http));
    s_write_all(t->http, fd, raw, strlen(raw));
    char *resp = s_read_until_close(t->http, fd, 3000);
    close(fd);
    return resp;
}

static int s_setup(void **state)
{
    static t_state_t t;
    char err[256];
    memset(&t, 0, sizeof t);
    t.http = em_http_new("127.0.0.1:0", 1024, s_handler, &t, err, sizeof err);
    if (!t.http) {
        fprintf(stderr, "em_http_new: %s\n", err);
        return -1;
    }
    *state = &t;
    return 0;
}

static int s_teardown(void **state)
{
    t_state_t *t = *state;
    em_http_destroy(&t->http);
    em_http_destroy(&t->http); /* twice is safe */
    return 0;
}

static void test_basics(void **state)
{
    t_state_t *t = *state;
    assert_true(em_http_port(t->http) > 0);
    assert_true(em_http_fd(t->http) >= 0);
}

static void test_get_with_query_and_header(void **state)
{
    t_state_t *t = *state;
    char *resp = s_request(t, "GET /hello?name=Thar HTTP/1.1\r\nHost: x\r\n"
                              "x-api-key: k1\r\nConnection: close\r\n\r\n");
    assert_non_null(strstr(resp, "HTTP/1.1 200"));
    assert_non_null(strstr(resp, "Content-Type: text/plain"));
    assert_non_null(strstr(resp, "Retry-After: 3"));
    assert_non_null(strstr(resp, "\r\n\r\nhello Thar key=k1"));
    free(resp);
}

static void test_post_body(void **state)
{
    t_state_t *t = *state;
    const char *body = "{\"specversion\":\"1.0\",\"id\":\"e-1\"}";
    char raw[512];
    snprintf(raw, sizeof raw,
             "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "ce-id: e-1\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
             strlen(body), body);
    char *resp = s_request(t, raw);
    assert_non_null(strstr(resp, "HTTP/1.1 202"));
    assert_non_null(strstr(resp, "Content-Type: application/json"));
    char *payload = strstr(resp, "\r\n\r\n");
    assert_non_null(payload);
    assert_string_equal(payload + 4, body);
    assert_string_equal(t->ce_id, "e-1");
    free(resp);

    /* A chunked body is read whole too. */
    char *resp2 = s_request(t, "POST /v1/events HTTP/1.1\r\nHost: x\r\n"
                               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                               "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    assert_non_null(strstr(resp2, "HTTP/1.1 202"));
    assert_non_null(strstr(resp2, "\r\n\r\nhello world"));
    free(resp2);

    /* Not found path. */
    char *resp3 = s_request(t, "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_non_null(strstr(resp3, "HTTP/1.1 404"));
    free(resp3);
}

static void test_too_large(void **state)
{
    t_state_t *t = *state;
    int before = t->calls;

    /* Announced by Content-Length: refused before the body is read. */
    char *raw = malloc(4096);
    int n = snprintf(raw, 4096,
                     "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n"
                     "Connection: close\r\n\r\n");
    memset(raw + n, 'a', 2000);
    raw[n + 2000] = '\0';
    char *resp = s_request(t, raw);
    assert_non_null(strstr(resp, "HTTP/1.1 413"));
    assert_non_null(strstr(resp, "{\"error\":\"payload too large\",\"limit\":1024}"));
    free(resp);

    /* Chunked: discovered while reading. */
    n = snprintf(raw, 4096,
                 "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 "Connection: close\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        n += snprintf(raw + n, (size_t)(4096 - n), "200\r\n");
        memset(raw + n, 'b', 512);
        n += 512;
        n += snprintf(raw + n, (size_t)(4096 - n), "\r\n");
    }
    n += snprintf(raw + n, (size_t)(4096 - n), "0\r\n\r\n");
    resp = s_request(t, raw);
    assert_non_null(strstr(resp, "HTTP/1.1 413"));
    assert_non_null(strstr(resp, "\"limit\":1024"));
    free(resp);
    free(raw);

    assert_int_equal(t->calls, before); /* the handler never saw them */
}

static void test_deferred(void **state)
{
    t_state_t *t = *state;
    int fd = s_connect(em_http_port(t->http));
    const char *raw = "GET /defer HTTP/1.1\r\nHost: x\r\nX-Trace: abc\r\nConnection: close\r\n\r\n";
    s_write_all(t->http, fd, raw, strlen(raw));
    for (int i = 0; i < 200 && !t->held; i++)
        s_pump(t->http, 5);
    assert_non_null(t->held);

    /* Nothing is sent while the request is held; the server keeps serving others. */
    char *other = s_request(t, "GET /hello?name=b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_non_null(strstr(other, "hello b"));
    free(other);
    char peek[16];
    assert_int_equal(read(fd, peek, sizeof peek), -1);
    assert_int_equal(errno, EAGAIN);

    /* The held request is still readable, then answered from outside the handler. */
    assert_string_equal(em_http_req_header(t->held, "x-trace"), "abc");
    em_http_add_header(t->held, "X-Later", "yes");
    em_http_respond(t->held, 201, "application/json", "{\"late\":true}", 13);
    t->held = NULL;
    assert_int_equal(em_http_timeout_ms(t->http), 0); /* run me now */

    char *resp = s_read_until_close(t->http, fd, 3000);
    close(fd);
    assert_non_null(strstr(resp, "HTTP/1.1 201"));
    assert_non_null(strstr(resp, "X-Later: yes"));
    assert_non_null(strstr(resp, "\r\n\r\n{\"late\":true}"));
    free(resp);
}

static void test_client_gone_while_held(void **state)
{
    t_state_t *t = *state;
    int fd = s_connect(em_http_port(t->http));
    const char *raw = "GET /defer HTTP/1.1\r\nHost: x\r\n\r\n";
    s_write_all(t->http, fd, raw, strlen(raw));
    for (int i = 0; i < 200 && !t->held; i++)
        s_pump(t->http, 5);
    assert_non_null(t->held);

    close(fd); /* the client gives up */
    s_pump(t->http, 50);

    /* Answering afterwards neither crashes nor leaks (checked under ASan and valgrind). */
    em_http_respond(t->held, 200, "text/plain", "too late", 8);
    t->held = NULL;
    s_pump(t->http, 100);

    /* The server still works. */
    char *resp = s_request(t, "GET /hello?name=c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_non_null(strstr(resp, "hello c"));
    free(resp);
}

static void test_keepalive_two_requests(void **state)
{
    t_state_t *t = *state;
    int fd = s_connect(em_http_port(t->http));
    const char *raw = "GET /hello?name=one HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /hello?name=two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    s_write_all(t->http, fd, raw, strlen(raw));
    char *resp = s_read_until_close(t->http, fd, 3000);
    close(fd);
    assert_non_null(strstr(resp, "hello one"));
    assert_non_null(strstr(resp, "hello two"));
    free(resp);
}

static void test_many_deferred(void **state)
{
    t_state_t *t = *state;
    enum { N = 50 };
    int fds[N];
    const char *raw = "GET /many HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    t->nmany = 0;
    for (int i = 0; i < N; i++) {
        fds[i] = s_connect(em_http_port(t->http));
        s_write_all(t->http, fds[i], raw, strlen(raw));
    }
    for (int i = 0; i < 400 && t->nmany < N; i++)
        s_pump(t->http, 5);
    assert_int_equal(t->nmany, N);
    /* Answer in reverse order, all outside the handler. */
    for (int i = N - 1; i >= 0; i--) {
        char body[32];
        int n = snprintf(body, sizeof body, "answer %d", i);
        em_http_respond(t->many[i], 200, "text/plain", body, (size_t)n);
    }
    for (int i = 0; i < N; i++) {
        char *resp = s_read_until_close(t->http, fds[i], 3000);
        close(fds[i]);
        assert_non_null(strstr(resp, "HTTP/1.1 200"));
        assert_non_null(strstr(resp, "\r\n\r\nanswer "));
        free(resp);
    }
    t->nmany = 0;
    long ms = em_http_timeout_ms(t->http);
    assert_true(ms != 0); /* nothing left to resume */
}

static void test_destroy_with_held_request(void **state)
{
    (void)state;
    t_state_t t2;
    char err[256];
    memset(&t2, 0, sizeof t2);
    t2.http = em_http_new("127.0.0.1:0", 1024, s_handler, &t2, err, sizeof err);
    assert_non_null(t2.http);
    int fd = s_connect(em_http_port(t2.http));
    const char *raw = "GET /defer HTTP/1.1\r\nHost: x\r\n\r\n";
    s_write_all(t2.http, fd, raw, strlen(raw));
    for (int i = 0; i < 200 && !t2.held; i++)
        s_pump(t2.http, 5);
    assert_non_null(t2.held);
    em_http_destroy(&t2.http); /* answers 503 and releases the held request */
    assert_null(t2.http);
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "HTTP/1.1 503"));
    close(fd);
}

static void test_bad_addresses(void **state)
{
    t_state_t *t = *state;
    char err[256], addr[64];
    /* "*:0" and ":0" listen on every IPv4 interface. */
    em_http_t *any = em_http_new("*:0", 10, s_handler, NULL, err, sizeof err);
    assert_non_null(any);
    assert_true(em_http_port(any) > 0);
    em_http_destroy(&any);
    any = em_http_new(":0", 10, s_handler, NULL, err, sizeof err);
    assert_non_null(any);
    em_http_destroy(&any);
    any = em_http_new("[::1]:0", 10, s_handler, NULL, err, sizeof err);
    if (any) /* IPv6 may be off in a container: then only the failure must be clean */
        assert_true(em_http_port(any) > 0);
    em_http_destroy(&any);

    assert_null(em_http_new("nonsense", 10, s_handler, NULL, err, sizeof err));
    assert_non_null(strstr(err, "want host:port"));
    assert_null(em_http_new("127.0.0.1:99999", 10, s_handler, NULL, err, sizeof err));
    assert_non_null(strstr(err, "bad port"));
    snprintf(addr, sizeof addr, "127.0.0.1:%d", em_http_port(t->http));
    assert_null(em_http_new(addr, 10, s_handler, NULL, err, sizeof err)); /* in use */
    assert_non_null(strstr(err, "cannot listen"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_get_with_query_and_header),
        cmocka_unit_test(test_post_body),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_deferred),
        cmocka_unit_test(test_client_gone_while_held),
        cmocka_unit_test(test_keepalive_two_requests),
        cmocka_unit_test(test_many_deferred),
        cmocka_unit_test(test_destroy_with_held_request),
        cmocka_unit_test(test_bad_addresses),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
