/* test_store.c - em_store against a real PostgreSQL started by the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "em_store.h"
#include "em_testsrv.h"

static const char *s_dsn;

static int s_setup(void **state)
{
    (void)state;
    s_dsn = em_testsrv_pg_start();
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    em_testsrv_stop_all();
    return 0;
}

static void test_connect_fails_cleanly(void **state)
{
    (void)state;
    char err[512] = "";
    char dsn[256];
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=x user=x connect_timeout=2",
             em_testsrv_free_port());
    em_store_t *st = em_store_new(dsn, err, sizeof err);
    assert_null(st);
    assert_true(strlen(err) > 0);
    em_store_destroy(&st); /* NULL is fine */
}

static void test_prepare_exec(void **state)
{
    (void)state;
    char err[512];
    em_store_t *st = em_store_new(s_dsn, err, sizeof err);
    assert_non_null(st);
    assert_int_equal(em_store_ensure(st), 1);
    assert_int_equal(em_store_command(st, "CREATE TABLE t1 (k text PRIMARY KEY, v bigint)"), 0);
    assert_int_equal(em_store_prepare(st, "ins", "INSERT INTO t1 (k, v) VALUES ($1, $2) "
                                                  "ON CONFLICT (k) DO NOTHING RETURNING v", 2),
                     0);
    assert_int_equal(em_store_prepare(st, "get", "SELECT v FROM t1 WHERE k = $1", 1), 0);
    /* A statement that does not prepare is refused and not registered. */
    assert_int_equal(em_store_prepare(st, "bad", "SELECT nope FROM nowhere", 0), -1);
    assert_int_equal(em_store_prepare(st, "ins", "SELECT 1", 0), -1); /* duplicate name */

    /* Values with quotes travel as parameters, never as SQL text. */
    const char *v1[] = {"it's; DROP TABLE t1; --", "42"};
    PGresult *r = em_store_exec(st, "ins", 2, v1);
    assert_non_null(r);
    assert_int_equal(PQntuples(r), 1);
    PQclear(r);
    r = em_store_exec(st, "ins", 2, v1); /* conflict: nothing returned */
    assert_non_null(r);
    assert_int_equal(PQntuples(r), 0);
    PQclear(r);
    const char *k[] = {"it's; DROP TABLE t1; --"};
    r = em_store_exec(st, "get", 1, k);
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "42");
    PQclear(r);

    /* A data error: NULL, errstr and SQLSTATE set, not retryable. */
    const char *bad[] = {"x", "not a number"};
    assert_null(em_store_exec(st, "ins", 2, bad));
    assert_string_equal(em_store_sqlstate(st), "22P02");
    assert_int_equal(em_store_retryable(st), 0);
    assert_true(strlen(em_store_errstr(st)) > 0);

    /* em_store_query with parameters and a NULL. */
    const char *q[] = {"7", NULL};
    r = em_store_query(st, "SELECT $1::int + 1, $2::text IS NULL", 2, q);
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "8");
    assert_string_equal(PQgetvalue(r, 0, 1), "t");
    PQclear(r);

    /* Transactions. */
    assert_int_equal(em_store_command(st, "BEGIN"), 0);
    const char *v2[] = {"rolled back", "1"};
    r = em_store_exec(st, "ins", 2, v2);
    assert_non_null(r);
    PQclear(r);
    assert_int_equal(em_store_command(st, "ROLLBACK"), 0);
    const char *k2[] = {"rolled back"};
    r = em_store_exec(st, "get", 1, k2);
    assert_non_null(r);
    assert_int_equal(PQntuples(r), 0);
    PQclear(r);

    assert_int_equal(em_store_command(st, "DROP TABLE t1"), 0);
    em_store_destroy(&st);
    assert_null(st);
}

static void test_reconnect_after_restart(void **state)
{
    (void)state;
    char err[512];
    em_store_t *st = em_store_new(s_dsn, err, sizeof err);
    assert_non_null(st);
    assert_int_equal(em_store_prepare(st, "one", "SELECT $1::int + 1", 1), 0);
    const char *v[] = {"1"};
    PGresult *r = em_store_exec(st, "one", 1, v);
    assert_non_null(r);
    PQclear(r);

    em_testsrv_pg_stop();
    /* Server down: the call fails, is retryable, and ensure reports down. */
    assert_null(em_store_exec(st, "one", 1, v));
    assert_int_equal(em_store_retryable(st), 1);
    assert_int_equal(em_store_ensure(st), 0);
    assert_null(em_store_exec(st, "one", 1, v));

    em_testsrv_pg_start();
    assert_int_equal(em_store_ensure(st), 1);
    /* The statement was re-prepared on the new connection. */
    r = em_store_exec(st, "one", 1, v);
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "2");
    PQclear(r);

    /* A restart the store did not see: the first call fails, ensure reconnects. */
    em_testsrv_pg_stop();
    em_testsrv_pg_start();
    r = em_store_exec(st, "one", 1, v);
    if (!r) {
        assert_int_equal(em_store_retryable(st), 1);
        assert_int_equal(em_store_ensure(st), 1);
        r = em_store_exec(st, "one", 1, v);
    }
    assert_non_null(r);
    PQclear(r);
    em_store_destroy(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_fails_cleanly),
        cmocka_unit_test(test_prepare_exec),
        cmocka_unit_test(test_reconnect_after_restart),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
