/* test_signal.c - the signal flags: SIGTERM/SIGINT set "interrupted", SIGHUP is reported once
 * per signal, SIGPIPE is ignored (a write to a closed peer must not kill a service). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

#include <cmocka.h>

#include "em_signal.h"

static void test_term_and_int_interrupt(void **state)
{
    (void)state;
    em_signal_install();
    em_signal_set_interrupted(false);
    assert_false(em_signal_interrupted());
    raise(SIGTERM);
    assert_true(em_signal_interrupted());
    em_signal_set_interrupted(false);
    raise(SIGINT);
    assert_true(em_signal_interrupted());
    em_signal_set_interrupted(false);
}

static void test_hup_is_reported_once(void **state)
{
    (void)state;
    em_signal_install();
    assert_false(em_signal_reload_requested());
    int count = em_signal_reload_count();
    raise(SIGHUP);
    assert_true(em_signal_reload_requested());
    assert_false(em_signal_reload_requested());
    assert_false(em_signal_interrupted());
    /* The count is not consumed by em_signal_reload_requested: each reader compares it. */
    assert_int_equal(em_signal_reload_count(), count + 1);
    raise(SIGHUP);
    assert_int_equal(em_signal_reload_count(), count + 2);
    assert_int_equal(em_signal_reload_count(), count + 2);
    assert_true(em_signal_reload_requested());
}

static void test_sigpipe_is_ignored(void **state)
{
    (void)state;
    int fds[2];
    em_signal_install();
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    /* Without SIG_IGN this write would end the process. */
    assert_int_equal(write(fds[1], "x", 1), -1);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_term_and_int_interrupt),
        cmocka_unit_test(test_hup_is_reported_once),
        cmocka_unit_test(test_sigpipe_is_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
