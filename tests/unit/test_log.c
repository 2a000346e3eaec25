/* test_log.c - logfmt lines, escaping and level filtering (stderr captured in a temp file). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "em_log.h"

/* Runs fn with stderr redirected; returns what it wrote (caller frees). */
static char *s_capture(void (*fn)(void))
{
    char path[] = "/tmp/emlogXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);

    off_t len = lseek(fd, 0, SEEK_END);
    char *out = calloc(1, (size_t)len + 1);
    assert_non_null(out);
    assert_int_equal(pread(fd, out, (size_t)len, 0), len);
    close(fd);
    return out;
}

static void s_basic(void)
{
    em_log_init("ingest", EM_LOG_LVL_INFO);
    EM_LOG_INFO("bus", "connected to %s", "tcp://127.0.0.1:7101");
}

static void test_line_format(void **state)
{
    (void)state;
    char *out = s_capture(s_basic);
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                             "level=info svc=ingest mod=bus msg=\"connected to "
                             "tcp://127\\.0\\.0\\.1:7101\"\n$",
                             REG_EXTENDED),
                     0);
    assert_int_equal(regexec(&re, out, 0, NULL, 0), 0);
    regfree(&re);
    free(out);
}

static void s_escape(void)
{
    em_log_init("archive", EM_LOG_LVL_DEBUG);
    EM_LOG_EV(EM_LOG_LVL_WARN, "store", "ev-\"1\"", "say \"hi\"\\ back\nnext\tcol\x01 end");
}

static void test_escaping(void **state)
{
    (void)state;
    char *out = s_capture(s_escape);
    const char *want = " level=warn svc=archive mod=store "
                       "msg=\"say \\\"hi\\\"\\\\ back\\nnext\\tcol\\u0001 end\" "
                       "event_id=\"ev-\\\"1\\\"\"\n";
    assert_non_null(strstr(out, want));
    /* Exactly one line. */
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out));
    free(out);
}

static void s_levels(void)
{
    em_log_init("validate", EM_LOG_LVL_WARN);
    EM_LOG_DEBUG("x", "hidden debug");
    EM_LOG_INFO("x", "hidden info");
    EM_LOG_WARN("x", "shown warn");
    EM_LOG_ERROR("x", "shown error");
}

static void test_levels(void **state)
{
    (void)state;
    char *out = s_capture(s_levels);
    assert_null(strstr(out, "hidden"));
    assert_non_null(strstr(out, "level=warn svc=validate mod=x msg=\"shown warn\""));
    assert_non_null(strstr(out, "level=error svc=validate mod=x msg=\"shown error\""));
    assert_int_equal(em_log_level(), EM_LOG_LVL_WARN);
    free(out);
}

static void s_long(void)
{
    char big[5001];
    memset(big, 'a', 5000);
    big[5000] = '\0';
    em_log_init("notify", EM_LOG_LVL_INFO);
    em_log_write(EM_LOG_LVL_ERROR, "mod with space", NULL, "%s", big);
}

static void test_long_message(void **state)
{
    (void)state;
    char *out = s_capture(s_long);
    assert_non_null(strstr(out, "mod=\"mod with space\" msg=\""));
    assert_true(strlen(out) > 5000);
    assert_string_equal(out + strlen(out) - 3, "a\"\n");
    free(out);
}

static void test_level_parse(void **state)
{
    (void)state;
    assert_int_equal(em_log_level_parse("error"), EM_LOG_LVL_ERROR);
    assert_int_equal(em_log_level_parse("warn"), EM_LOG_LVL_WARN);
    assert_int_equal(em_log_level_parse("INFO"), EM_LOG_LVL_INFO);
    assert_int_equal(em_log_level_parse("debug"), EM_LOG_LVL_DEBUG);
    assert_int_equal(em_log_level_parse("loud"), -1);
    assert_int_equal(em_log_level_parse(NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_format), cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_levels),      cmocka_unit_test(test_long_message),
        cmocka_unit_test(test_level_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
