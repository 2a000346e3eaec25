/* test_curve.c - CurveZMQ helpers of em_bus over real ZeroMQ TCP sockets, and the startup
 * error of ingest and notify on a bad [ingest]/[notify] curve_secret_key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "em_bus.h"
#include "em_config.h"
#include "../../services/ingest/ingest.h"
#include "../../services/notify/notify.h"

static void test_key_valid(void **state)
{
    (void)state;
    char pub[41], sec[41];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    assert_int_equal(em_curve_key_valid(pub), 1);
    assert_int_equal(em_curve_key_valid(sec), 1);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(zmq_curve_keypair(pub, sec), 0);
        assert_int_equal(em_curve_key_valid(pub) + em_curve_key_valid(sec), 2);
    }
    /* Z85 characters, but a group of five whose value does not fit in 32 bits. */
    assert_int_equal(em_curve_key_valid("########################################"), 0);
    assert_int_equal(em_curve_key_valid(NULL), 0);
    assert_int_equal(em_curve_key_valid(""), 0);
    assert_int_equal(em_curve_key_valid("short"), 0);
    char bad[41];
    memcpy(bad, pub, 41);
    bad[7] = '"'; /* not in the Z85 alphabet */
    assert_int_equal(em_curve_key_valid(bad), 0);
    bad[7] = ' ';
    assert_int_equal(em_curve_key_valid(bad), 0);
    memcpy(bad, pub, 41);
    bad[39] = '\0'; /* 39 characters */
    assert_int_equal(em_curve_key_valid(bad), 0);
}

static void test_secret_load(void **state)
{
    (void)state;
    char pub[41], sec[41], out[41], err[EM_ERR_LEN];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);

    assert_int_equal(em_curve_secret_load("", "", "[x] curve_secret_key", out, err, sizeof err), 0);
    assert_int_equal(em_curve_secret_load(NULL, NULL, "[x] curve_secret_key", out, err, sizeof err), 0);
    assert_int_equal(em_curve_secret_load(sec, "", "[x] curve_secret_key", out, err, sizeof err), 1);
    assert_string_equal(out, sec);

    assert_int_equal(em_curve_secret_load("not a key", "", "[x] curve_secret_key", out, err, sizeof err), -1);
    assert_non_null(strstr(err, "[x] curve_secret_key: a CURVE secret key is 40 Z85 characters, got 9"));
    char bad[41];
    memcpy(bad, sec, 41);
    bad[0] = '~';
    assert_int_equal(em_curve_secret_load(bad, "", "[x] curve_secret_key", out, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a Z85 CURVE key"));

    char path[] = "/tmp/emine-curve-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "  %s  \r\n# ignored\n", sec);
    fclose(f);
    memset(out, 0, sizeof out);
    assert_int_equal(em_curve_secret_load("", path, "[x] curve_secret_key", out, err, sizeof err), 1);
    assert_string_equal(out, sec);
    assert_int_equal(em_curve_secret_load(sec, path, "[x] curve_secret_key", out, err, sizeof err), -1);
    assert_non_null(strstr(err, "both set"));
    f = fopen(path, "w");
    fprintf(f, "%s\n", pub + 1);
    fclose(f);
    assert_int_equal(em_curve_secret_load("", path, "[x] curve_secret_key", out, err, sizeof err), -1);
    assert_non_null(strstr(err, "got 39"));
    unlink(path);
    assert_int_equal(em_curve_secret_load("", path, "[x] curve_secret_key", out, err, sizeof err), -1);
    assert_non_null(strstr(err, "[x] curve_secret_key_file: cannot read"));
}

/* Waits up to ms for a message on sock; returns its frame count or -1. */
static int s_recv(void *sock, em_msg_t *msg, int ms)
{
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, ms) <= 0)
        return -1;
    return em_msg_recv(sock, msg, ZMQ_DONTWAIT);
}

static void test_roundtrip(void **state)
{
    (void)state;
    void *ctx = zmq_ctx_new();
    char spub[41], ssec[41], derived[41], cpub[41], csec[41], err[256], ep[256];
    assert_int_equal(zmq_curve_keypair(spub, ssec), 0);
    assert_int_equal(zmq_curve_keypair(cpub, csec), 0);

    void *server = zmq_socket(ctx, ZMQ_ROUTER);
    assert_int_equal(em_bus_curve_server(server, "bad", NULL, err, sizeof err), -1);
    assert_int_equal(em_bus_curve_server(server, ssec, derived, err, sizeof err), 0);
    assert_string_equal(derived, spub);
    assert_int_equal(zmq_bind(server, "tcp://127.0.0.1:*"), 0);
    assert_int_equal(em_bus_endpoint(server, ep, sizeof ep), 0);

    /* The right server key and the client's own secret: the public key is derived. */
    void *good = zmq_socket(ctx, ZMQ_DEALER);
    char got[41];
    assert_int_equal(em_bus_curve_client(good, spub, csec, got, err, sizeof err), 0);
    assert_string_equal(got, cpub);
    assert_int_equal(zmq_connect(good, ep), 0);
    assert_int_equal(zmq_send(good, "hello", 5, 0), 5);
    em_msg_t msg;
    assert_int_equal(s_recv(server, &msg, 5000), 2);
    size_t len;
    const char *text = em_msg_data(&msg, 1, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(text, "hello", 5);
    em_msg_close(&msg);

    /* An ephemeral keypair works too (no ZAP handler: any client key). */
    void *eph = zmq_socket(ctx, ZMQ_DEALER);
    assert_int_equal(em_bus_curve_client(eph, spub, NULL, got, err, sizeof err), 0);
    assert_int_equal(em_curve_key_valid(got), 1);
    assert_string_not_equal(got, cpub);
    assert_int_equal(zmq_connect(eph, ep), 0);
    assert_int_equal(zmq_send(eph, "two", 3, 0), 3);
    assert_int_equal(s_recv(server, &msg, 5000), 2);
    em_msg_close(&msg);

    /* The wrong server key, or no CURVE at all: nothing gets through. */
    void *wrong = zmq_socket(ctx, ZMQ_DEALER);
    assert_int_equal(em_bus_curve_client(wrong, cpub, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(zmq_connect(wrong, ep), 0);
    zmq_send(wrong, "wrong", 5, ZMQ_DONTWAIT);
    void *clear = zmq_socket(ctx, ZMQ_DEALER);
    assert_int_equal(zmq_connect(clear, ep), 0);
    zmq_send(clear, "clear", 5, ZMQ_DONTWAIT);
    assert_int_equal(s_recv(server, &msg, 700), -1);

    assert_int_equal(em_bus_curve_client(wrong, "short", NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "server key"));
    assert_int_equal(em_bus_curve_client(wrong, spub, "short", NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "client secret"));

    void *socks[] = {server, good, eph, wrong, clear};
    int zero = 0;
    for (int i = 0; i < 5; i++) {
        zmq_setsockopt(socks[i], ZMQ_LINGER, &zero, sizeof zero);
        em_bus_close(&socks[i]);
    }
    zmq_ctx_term(ctx);
}

/* A bad key is a startup error, before any socket or connection is made. */
static void test_service_config_error(void **state)
{
    (void)state;
    unsetenv("EMINE_CONFIG");
    setenv("EMINE_LOG_LEVEL", "error", 1);
    setenv("EMINE_INGEST_CURVE_SECRET_KEY", "0123456789", 1);
    ingest_t *ingest = ingest_new(NULL);
    assert_null(ingest);
    assert_int_equal(ingest_dump_config(NULL, stdout), -1);
    unsetenv("EMINE_INGEST_CURVE_SECRET_KEY");

    setenv("EMINE_NOTIFY_CURVE_SECRET_KEY", "this is not a z85 key at all, 40 chars!!", 1);
    notify_t *notify = notify_new(NULL);
    assert_null(notify);
    assert_int_equal(notify_dump_config(NULL, stdout), -1);
    setenv("EMINE_NOTIFY_CURVE_SECRET_KEY", "0000000000000000000000000000000000000000", 1);
    setenv("EMINE_NOTIFY_CURVE_SECRET_KEY_FILE", "/nonexistent", 1);
    assert_null(notify_new(NULL));
    unsetenv("EMINE_NOTIFY_CURVE_SECRET_KEY_FILE");
    unsetenv("EMINE_NOTIFY_CURVE_SECRET_KEY");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_valid),
        cmocka_unit_test(test_secret_load),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_service_config_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
