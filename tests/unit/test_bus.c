/* test_bus.c - sockets with '@'/'>' endpoints and multipart messages over real ZeroMQ. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "em_bus.h"

static void *s_ctx;

static int s_setup(void **state)
{
    (void)state;
    s_ctx = zmq_ctx_new();
    return s_ctx ? 0 : -1;
}

static int s_teardown(void **state)
{
    (void)state;
    return zmq_ctx_term(s_ctx);
}

static void s_send_strs(void *sock, const char **parts, int n)
{
    const void *data[EM_MSG_MAX_FRAMES + 4];
    size_t lens[EM_MSG_MAX_FRAMES + 4];
    for (int i = 0; i < n; i++) {
        data[i] = parts[i];
        lens[i] = strlen(parts[i]);
    }
    assert_int_equal(em_bus_sendv(sock, data, lens, n, 0), 0);
}

static void s_assert_frame(const em_msg_t *msg, int i, const char *want)
{
    size_t len;
    const void *p = em_msg_data(msg, i, &len);
    assert_non_null(p);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(p, want, len);
}

static void test_inproc_push_pull(void **state)
{
    (void)state;
    char err[256];
    void *pull = em_bus_socket(s_ctx, ZMQ_PULL, "@inproc://pipeline", 100, 0, err, sizeof err);
    assert_non_null(pull);
    void *push = em_bus_socket(s_ctx, ZMQ_PUSH, ">inproc://pipeline", 100, 0, err, sizeof err);
    assert_non_null(push);

    int hwm = 0;
    size_t sz = sizeof hwm;
    assert_int_equal(zmq_getsockopt(push, ZMQ_SNDHWM, &hwm, &sz), 0);
    assert_int_equal(hwm, 100);

    const char *parts[] = {"event", "", "{\"id\":\"1\"}"};
    s_send_strs(push, parts, 3);

    em_msg_t msg;
    assert_int_equal(em_msg_recv(pull, &msg, 0), 3);
    s_assert_frame(&msg, 0, "event");
    s_assert_frame(&msg, 1, "");
    s_assert_frame(&msg, 2, "{\"id\":\"1\"}");
    size_t len = 99;
    assert_null(em_msg_data(&msg, 3, &len));
    assert_int_equal(len, 0);
    em_msg_close(&msg);
    em_msg_close(&msg); /* twice is safe */

    /* Nothing waiting: DONTWAIT fails with EAGAIN. */
    assert_int_equal(em_msg_recv(pull, &msg, ZMQ_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);

    em_bus_close(&push);
    em_bus_close(&pull);
    assert_null(pull);
    em_bus_close(&pull);
    em_bus_close(NULL);
}

static void test_tcp_router_dealer(void **state)
{
    (void)state;
    char err[256], endpoint[256], connect[300];
    void *router =
        em_bus_socket(s_ctx, ZMQ_ROUTER, "@tcp://127.0.0.1:*", 1000, 0, err, sizeof err);
    assert_non_null(router);
    assert_int_equal(em_bus_endpoint(router, endpoint, sizeof endpoint), 0);
    assert_non_null(strstr(endpoint, "tcp://127.0.0.1:"));
    assert_null(strstr(endpoint, "*"));

    snprintf(connect, sizeof connect, ">%s", endpoint);
    void *dealer = em_bus_socket(s_ctx, ZMQ_DEALER, connect, 1000, 0, err, sizeof err);
    assert_non_null(dealer);

    const char *req[] = {"hello"};
    s_send_strs(dealer, req, 1);

    em_msg_t msg;
    assert_int_equal(em_msg_recv(router, &msg, 0), 2); /* identity + payload */
    s_assert_frame(&msg, 1, "hello");

    /* Reply through the identity frame. */
    size_t idlen;
    const void *id = em_msg_data(&msg, 0, &idlen);
    const void *data[] = {id, "world"};
    size_t lens[] = {idlen, 5};
    assert_int_equal(em_bus_sendv(router, data, lens, 2, 0), 0);
    em_msg_close(&msg);

    assert_int_equal(em_msg_recv(dealer, &msg, 0), 1);
    s_assert_frame(&msg, 0, "world");
    em_msg_close(&msg);

    em_bus_close(&dealer);
    em_bus_close(&router);
}

static void test_endpoint_list(void **state)
{
    (void)state;
    char err[256];
    /* Two binds in one list; the second entry inherits '@'. */
    void *pull = em_bus_socket(s_ctx, ZMQ_PULL, "@inproc://a, inproc://b", -1, 0, err,
                               sizeof err);
    assert_non_null(pull);
    void *pa = em_bus_socket(s_ctx, ZMQ_PUSH, ">inproc://a", 10, 0, err, sizeof err);
    void *pb = em_bus_socket(s_ctx, ZMQ_PUSH, ">inproc://b", 10, 0, err, sizeof err);
    assert_non_null(pa);
    assert_non_null(pb);
    const char *m1[] = {"from-a"}, *m2[] = {"from-b"};
    s_send_strs(pa, m1, 1);
    s_send_strs(pb, m2, 1);
    int seen_a = 0, seen_b = 0;
    for (int i = 0; i < 2; i++) {
        em_msg_t msg;
        size_t len;
        assert_int_equal(em_msg_recv(pull, &msg, 0), 1);
        const char *p = em_msg_data(&msg, 0, &len);
        seen_a += len == 6 && memcmp(p, "from-a", 6) == 0;
        seen_b += len == 6 && memcmp(p, "from-b", 6) == 0;
        em_msg_close(&msg);
    }
    assert_int_equal(seen_a, 1);
    assert_int_equal(seen_b, 1);
    em_bus_close(&pa);
    em_bus_close(&pb);

    /* A connect list: one PUSH to two PULLs. */
    void *q1 = em_bus_socket(s_ctx, ZMQ_PULL, "@inproc://q1", 10, 0, err, sizeof err);
    void *q2 = em_bus_socket(s_ctx, ZMQ_PULL, "@inproc://q2", 10, 0, err, sizeof err);
    void *push = em_bus_socket(s_ctx, ZMQ_PUSH, ">inproc://q1,>inproc://q2", 10, 0, err,
                               sizeof err);
    assert_non_null(push);
    const char *m[] = {"x"};
    s_send_strs(push, m, 1);
    s_send_strs(push, m, 1);
    em_msg_t msg;
    assert_int_equal(em_msg_recv(q1, &msg, 0), 1);
    em_msg_close(&msg);
    assert_int_equal(em_msg_recv(q2, &msg, 0), 1); /* round robin */
    em_msg_close(&msg);
    em_bus_close(&push);
    em_bus_close(&q1);
    em_bus_close(&q2);
    em_bus_close(&pull);
}

static void test_errors(void **state)
{
    (void)state;
    char err[256];
    assert_null(em_bus_socket(s_ctx, ZMQ_PULL, "inproc://noprefix", 10, 0, err, sizeof err));
    assert_non_null(strstr(err, "needs a prefix"));
    assert_null(em_bus_socket(s_ctx, ZMQ_PULL, "@bogus://x", 10, 0, err, sizeof err));
    assert_non_null(strstr(err, "cannot bind bogus://x"));
    assert_null(em_bus_socket(s_ctx, ZMQ_PULL, " , ", 10, 0, err, sizeof err));
    assert_non_null(strstr(err, "no endpoint"));

    /* A message with more frames than EM_MSG_MAX_FRAMES fails as a whole; the next one is
     * received normally. */
    void *pull = em_bus_socket(s_ctx, ZMQ_PULL, "@inproc://big", 10, 0, err, sizeof err);
    void *push = em_bus_socket(s_ctx, ZMQ_PUSH, ">inproc://big", 10, 0, err, sizeof err);
    const char *many[EM_MSG_MAX_FRAMES + 2];
    for (int i = 0; i < EM_MSG_MAX_FRAMES + 2; i++)
        many[i] = "f";
    s_send_strs(push, many, EM_MSG_MAX_FRAMES + 2);
    const char *one[] = {"after"};
    s_send_strs(push, one, 1);
    em_msg_t msg;
    assert_int_equal(em_msg_recv(pull, &msg, 0), -1);
    assert_int_equal(errno, EMSGSIZE);
    assert_int_equal(em_msg_recv(pull, &msg, 0), 1);
    s_assert_frame(&msg, 0, "after");
    em_msg_close(&msg);

    /* Exactly EM_MSG_MAX_FRAMES is fine. */
    s_send_strs(push, many, EM_MSG_MAX_FRAMES);
    assert_int_equal(em_msg_recv(pull, &msg, 0), EM_MSG_MAX_FRAMES);
    em_msg_close(&msg);

    assert_int_equal(em_bus_sendv(push, NULL, NULL, 0, 0), -1);
    assert_int_equal(errno, EINVAL);
    em_bus_close(&push);
    em_bus_close(&pull);

    /* A PUSH whose queue is full answers EAGAIN under DONTWAIT instead of blocking. */
    push = em_bus_socket(s_ctx, ZMQ_PUSH, ">inproc://nobody", 1, 0, err, sizeof err);
    assert_non_null(push);
    const void *d[] = {"x"};
    size_t l[] = {1};
    int sent = 0;
    while (sent < 1000 && em_bus_sendv(push, d, l, 1, ZMQ_DONTWAIT) == 0)
        sent++;
    assert_true(sent < 1000); /* bounded by the HWM */
    assert_int_equal(errno, EAGAIN);
    em_bus_close(&push);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inproc_push_pull),
        cmocka_unit_test(test_tcp_router_dealer),
        cmocka_unit_test(test_endpoint_list),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
