/* test_cache.c - em_cache against a real Redis (password, restarts, FLUSHALL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "em_cache.h"
#include "em_testsrv.h"

static const char *s_url;
static const char *s_digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static int s_setup(void **state)
{
    (void)state;
    s_url = em_testsrv_redis_start();
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    em_testsrv_stop_all();
    return 0;
}

/* Retries get for up to 3 s (the wrapper may be backing off after a restart). */
static int s_get_eventually(em_cache_t *c, const char *src, const char *id, int64_t *seq,
                            char d[65])
{
    for (int i = 0; i < 60; i++) {
        if (em_cache_seen_get(c, src, id, seq, d) == 1)
            return 1;
        usleep(50000);
    }
    return 0;
}

static void test_bad_urls(void **state)
{
    (void)state;
    char err[256];
    assert_null(em_cache_new("http://x", 100, err, sizeof err));
    assert_null(em_cache_new("redis://h:notaport/0", 100, err, sizeof err));
    assert_null(em_cache_new("redis://:pw@", 100, err, sizeof err));
    assert_null(em_cache_new("redis://h:1/x", 100, err, sizeof err));
    em_cache_t *c = em_cache_new("redis://localhost", 100, err, sizeof err);
    assert_non_null(c);
    em_cache_destroy(&c);
    assert_null(c);
    em_cache_destroy(&c);
}

static void test_unreachable_is_not_fatal(void **state)
{
    (void)state;
    char err[256], url[128];
    snprintf(url, sizeof url, "redis://:x@127.0.0.1:%d/0", em_testsrv_free_port());
    em_cache_t *c = em_cache_new(url, 200, err, sizeof err);
    assert_non_null(c);
    int64_t seq = 0;
    char d[65];
    assert_int_equal(em_cache_ping(c), 0);
    assert_int_equal(em_cache_seen_get(c, "s", "i", &seq, d), 0);
    em_seen_t it = {"s", "i", 1, s_digest};
    assert_int_equal(em_cache_seen_put(c, &it, 1, 60), -1);
    em_cache_destroy(&c);
}

static void test_wrong_password(void **state)
{
    (void)state;
    char err[256], url[300];
    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d/0",
             em_testsrv__state()->redis_port);
    em_cache_t *c = em_cache_new(url, 500, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(em_cache_ping(c), 0);
    assert_non_null(strstr(em_cache_errstr(c), "AUTH"));
    em_cache_destroy(&c);
}

static void test_put_get(void **state)
{
    (void)state;
    char err[256];
    em_cache_t *c = em_cache_new(s_url, 500, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(em_cache_ping(c), 1);
    em_seen_t items[] = {
        {"/pk/cadastre", "e-1", 7, s_digest},
        {"a", "b:c", 8, s_digest},
        {"a:b", "c", 9, s_digest},
    };
    assert_int_equal(em_cache_seen_put(c, items, 3, 60), 0);
    int64_t seq = 0;
    char d[65] = "";
    assert_int_equal(em_cache_seen_get(c, "/pk/cadastre", "e-1", &seq, d), 1);
    assert_int_equal(seq, 7);
    assert_string_equal(d, s_digest);
    /* The keys are unambiguous even with ':' in source or id. */
    assert_int_equal(em_cache_seen_get(c, "a", "b:c", &seq, d), 1);
    assert_int_equal(seq, 8);
    assert_int_equal(em_cache_seen_get(c, "a:b", "c", &seq, d), 1);
    assert_int_equal(seq, 9);
    assert_int_equal(em_cache_seen_get(c, "/pk/cadastre", "e-2", &seq, d), 0);

    /* The TTL was set. */
    char out[64];
    assert_int_equal(em_cache_command(c, out, sizeof out, "TTL %s", "em:seen:1:a:b:c"), 0);
    assert_true(atoi(out) > 0 && atoi(out) <= 60);
    /* Error replies are -1 with the message, and the connection stays usable. */
    assert_int_equal(em_cache_command(c, out, sizeof out, "NOSUCHCOMMAND"), -1);
    assert_int_equal(em_cache_ping(c), 1);

    /* FLUSHALL: everything is simply not found. */
    assert_int_equal(em_cache_command(c, out, sizeof out, "FLUSHALL"), 0);
    assert_int_equal(em_cache_seen_get(c, "/pk/cadastre", "e-1", &seq, d), 0);
    em_cache_destroy(&c);
}

static void test_survives_restart(void **state)
{
    (void)state;
    char err[256];
    em_cache_t *c = em_cache_new(s_url, 500, err, sizeof err);
    assert_non_null(c);
    em_seen_t it = {"src", "id-1", 11, s_digest};
    assert_int_equal(em_cache_seen_put(c, &it, 1, 60), 0);

    em_testsrv_redis_stop();
    int64_t seq = 0;
    char d[65];
    assert_int_equal(em_cache_seen_get(c, "src", "id-1", &seq, d), 0); /* down: not found */
    assert_int_equal(em_cache_seen_put(c, &it, 1, 60), -1);
    assert_int_equal(em_cache_ping(c), 0);

    em_testsrv_redis_start(); /* same port, empty (no persistence) */
    int ok = 0;
    for (int i = 0; i < 60 && !ok; i++) {
        ok = em_cache_seen_put(c, &it, 1, 60) == 0;
        if (!ok)
            usleep(50000);
    }
    assert_true(ok);
    assert_int_equal(s_get_eventually(c, "src", "id-1", &seq, d), 1);
    assert_int_equal(seq, 11);

    /* A restart the wrapper did not see: one call fails, the next reconnects. */
    em_testsrv_redis_stop();
    em_testsrv_redis_start();
    assert_int_equal(em_cache_seen_put(c, &it, 1, 60) == 0 ||
                         em_cache_seen_put(c, &it, 1, 60) == 0,
                     1);
    assert_int_equal(em_cache_seen_get(c, "src", "id-1", &seq, d), 1);
    em_cache_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_unreachable_is_not_fatal),
        cmocka_unit_test(test_wrong_password),
        cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_survives_restart),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
