/* test_util.c - clocks, random hex and the signal flags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "em_signal.h"
#include "em_util.h"

static void test_clocks(void **state)
{
    (void)state;
    int64_t now = em_now_ms();
    assert_true(now > 1700000000000LL); /* after 2023 */
    assert_true(llabs(now - (int64_t)time(NULL) * 1000) < 2000);

    int64_t m1 = em_mono_ms(), u1 = em_mono_us();
    usleep(20000);
    int64_t m2 = em_mono_ms(), u2 = em_mono_us();
    assert_true(m2 - m1 >= 19);
    assert_true(u2 - u1 >= 19000);
    assert_true(llabs(u1 / 1000 - m1) <= 1);
}

static void test_random_hex(void **state)
{
    (void)state;
    char a[65], b[65], odd[8];

    memset(a, 'x', sizeof a);
    em_random_hex(a, 64);
    assert_int_equal(strlen(a), 64);
    for (int i = 0; i < 64; i++)
        assert_true(isxdigit((unsigned char)a[i]) && !isupper((unsigned char)a[i]));
    em_random_hex(b, 64);
    assert_string_not_equal(a, b);

    memset(odd, 'x', sizeof odd);
    em_random_hex(odd, 7);
    assert_int_equal(strlen(odd), 7);

    em_random_hex(odd, 0);
    assert_string_equal(odd, "");

    /* Long requests are served in chunks. */
    char big[301];
    em_random_hex(big, 300);
    assert_int_equal(strlen(big), 300);
}

static void test_signals(void **state)
{
    (void)state;
    em_signal_install();
    assert_false(em_signal_interrupted());
    assert_false(em_signal_reload_requested());

    raise(SIGHUP);
    assert_true(em_signal_reload_requested());
    assert_false(em_signal_reload_requested()); /* once per signal */

    raise(SIGPIPE); /* ignored: the process survives */

    raise(SIGTERM);
    assert_true(em_signal_interrupted());
    em_signal_set_interrupted(false);
    assert_false(em_signal_interrupted());

    raise(SIGINT);
    assert_true(em_signal_interrupted());
    em_signal_set_interrupted(false);

    em_signal_set_interrupted(true);
    assert_true(em_signal_interrupted());
    em_signal_set_interrupted(false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_random_hex),
        cmocka_unit_test(test_signals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
