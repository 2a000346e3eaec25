/* test_config.c - config tables: defaults < file < environment, errors with file:line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "em_config.h"

typedef struct {
    em_shared_cfg_t shared;
    char *zmq;
    char *http;
    int max_inflight;
    bool strict;
} t_cfg_t;

static const em_config_entry_t s_table[] = {
    EM_CONFIG_SHARED(t_cfg_t, shared),
    {EM_CFG_STR, "ingest", "zmq", "tcp://127.0.0.1:7001", offsetof(t_cfg_t, zmq),
     "ROUTER endpoint"},
    {EM_CFG_STR, "ingest", "http", "127.0.0.1:8001", offsetof(t_cfg_t, http), "HTTP address"},
    {EM_CFG_INT, "ingest", "max_inflight", "10000", offsetof(t_cfg_t, max_inflight),
     "events awaiting an answer"},
    {EM_CFG_BOOL, "ingest", "strict", "false", offsetof(t_cfg_t, strict), "strict mode"},
    {0},
};

static char s_dir[64];

extern char **environ;

static int s_setup(void **state)
{
    (void)state;
    /* The expectations below assume no EMINE_* overrides from the caller's environment. */
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "EMINE_", 6) == 0 && strchr(*e, '=')) {
                char name[256];
                snprintf(name, sizeof name, "%.*s", (int)(strchr(*e, '=') - *e), *e);
                unsetenv(name);
                again = 1;
                break;
            }
        }
    }
    strcpy(s_dir, "/tmp/emcfgXXXXXX");
    return mkdtemp(s_dir) ? 0 : -1;
}

static int s_teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes text to a file in the temp dir; returns its path (static buffer). */
static const char *s_write(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_defaults(void **state)
{
    (void)state;
    t_cfg_t cfg = {0};
    char err[EM_ERR_LEN];
    assert_int_equal(em_config_load(NULL, s_table, &cfg, err, sizeof err), 0);
    assert_string_equal(cfg.shared.log_level, "info");
    assert_string_equal(cfg.shared.bus_pipeline, "tcp://127.0.0.1:7101");
    assert_string_equal(cfg.zmq, "tcp://127.0.0.1:7001");
    assert_int_equal(cfg.max_inflight, 10000);
    assert_false(cfg.strict);
    em_config_release(s_table, &cfg);
    assert_null(cfg.zmq);
    em_config_release(s_table, &cfg); /* twice is safe */
}

static void test_file_and_env(void **state)
{
    (void)state;
    t_cfg_t cfg = {0};
    char err[EM_ERR_LEN];
    const char *path = s_write("a.conf", "# comment\n"
                                         "[log]\nlevel = debug\n"
                                         "[ingest]\n"
                                         "zmq = tcp://0.0.0.0:9001\n"
                                         "max-inflight = 42\n"
                                         "strict = yes\n"
                                         "[notify]\n"          /* another service's section */
                                         "whatever = 1\n"
                                         "[bus]\n"
                                         "pipeline = tcp://a:1,\n"
                                         "  tcp://b:2\n");
    setenv("EMINE_INGEST_HTTP", "0.0.0.0:9999", 1);
    setenv("EMINE_INGEST_MAX_INFLIGHT", "7", 1);
    assert_int_equal(em_config_load(path, s_table, &cfg, err, sizeof err), 0);
    unsetenv("EMINE_INGEST_HTTP");
    unsetenv("EMINE_INGEST_MAX_INFLIGHT");
    assert_string_equal(cfg.shared.log_level, "debug");
    assert_string_equal(cfg.zmq, "tcp://0.0.0.0:9001");
    assert_string_equal(cfg.http, "0.0.0.0:9999"); /* env beats default */
    assert_int_equal(cfg.max_inflight, 7);        /* env beats file */
    assert_true(cfg.strict);
    assert_string_equal(cfg.shared.bus_pipeline, "tcp://a:1, tcp://b:2");
    assert_string_equal(cfg.shared.pg_dsn,
                        "host=127.0.0.1 port=55432 dbname=emine user=emine connect_timeout=5");

    /* Dump shows every key with its effective value, help and default. */
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    em_config_dump(s_table, &cfg, mem);
    fclose(mem);
    assert_non_null(strstr(text, "[ingest] max_inflight = 7  # events awaiting an answer "
                                 "(default: 10000)\n"));
    assert_non_null(strstr(text, "[ingest] strict = true  # strict mode (default: false)\n"));
    assert_non_null(strstr(text, "[log] level = debug  # error, warn, info or debug "
                                 "(default: info)\n"));
    free(text);
    em_config_release(s_table, &cfg);
}

static void test_real_config_file(void **state)
{
    (void)state;
    t_cfg_t cfg = {0};
    char err[EM_ERR_LEN];
    assert_int_equal(em_config_load("config/emine.conf", s_table, &cfg, err, sizeof err), 0);
    assert_string_equal(cfg.http, "127.0.0.1:8001");
    em_config_release(s_table, &cfg);
}

static void s_expect_error(const char *text, const char *want_suffix)
{
    t_cfg_t cfg = {0};
    char err[EM_ERR_LEN], want[EM_ERR_LEN];
    const char *path = s_write("bad.conf", text);
    snprintf(want, sizeof want, "%s%s", path, want_suffix);
    assert_int_equal(em_config_load(path, s_table, &cfg, err, sizeof err), -1);
    assert_string_equal(err, want);
    /* Nothing is left allocated on failure. */
    assert_null(cfg.zmq);
    assert_null(cfg.shared.log_level);
}

static void test_errors(void **state)
{
    (void)state;
    s_expect_error("[ingest]\nzmq = x\n\nfoo = 1\n", ":4: unknown key 'foo' in [ingest]");
    s_expect_error("[log]\nlevel=info\n[ingset]\nzmq = x\n", ":3: unknown section [ingset]");
    s_expect_error("[log]\n[nope]\n", ":2: unknown section [nope]");
    s_expect_error("zmq = x\n", ":1: key 'zmq' outside of any section");
    s_expect_error("[ingest]\nmax_inflight = 12abc\n",
                   ":2: invalid integer '12abc' for key 'max_inflight' in [ingest]");
    s_expect_error("[ingest]\nmax_inflight = 99999999999\n",
                   ":2: invalid integer '99999999999' for key 'max_inflight' in [ingest]");
    s_expect_error("[ingest]\n\n\nstrict = maybe\n",
                   ":4: invalid boolean 'maybe' (true/false, yes/no, on/off, 1/0) for key "
                   "'strict' in [ingest]");
    s_expect_error("[ingest]\nthis line is not ini\n",
                   ":2: syntax error (expected [section] or key = value)");
    char longline[400];
    snprintf(longline, sizeof longline, "[pg]\ndsn = %0300d\n", 0);
    s_expect_error(longline, ":2: line longer than 199 characters");
}

static void test_env_errors(void **state)
{
    (void)state;
    t_cfg_t cfg = {0};
    char err[EM_ERR_LEN];
    setenv("EMINE_INGEST_STRICT", "perhaps", 1);
    assert_int_equal(em_config_load(NULL, s_table, &cfg, err, sizeof err), -1);
    unsetenv("EMINE_INGEST_STRICT");
    assert_non_null(strstr(err, "EMINE_INGEST_STRICT"));
    assert_non_null(strstr(err, "'strict' in [ingest]"));

    char missing[128];
    snprintf(missing, sizeof missing, "%s/nope.conf", s_dir);
    assert_int_equal(em_config_load(missing, s_table, &cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "nope.conf: cannot open"));
}

static void test_args(void **state)
{
    (void)state;
    const char *path = "unset";
    int dump = -1;

    char *a1[] = {"emine-ingest", "-c", "x.conf", "--dump-config"};
    assert_int_equal(em_config_args(4, a1, &path, &dump), 0);
    assert_string_equal(path, "x.conf");
    assert_int_equal(dump, 1);

    char *a2[] = {"emine-ingest", "--config=y.conf"};
    assert_int_equal(em_config_args(2, a2, &path, &dump), 0);
    assert_string_equal(path, "y.conf");
    assert_int_equal(dump, 0);

    /* Defaults: $EMINE_CONFIG, else config/emine.conf (tests run at the repo root). */
    char *a3[] = {"emine-ingest"};
    setenv("EMINE_CONFIG", "/etc/emine.conf", 1);
    assert_int_equal(em_config_args(1, a3, &path, &dump), 0);
    assert_string_equal(path, "/etc/emine.conf");
    unsetenv("EMINE_CONFIG");
    assert_int_equal(em_config_args(1, a3, &path, &dump), 0);
    assert_string_equal(path, "config/emine.conf");

    char *a4[] = {"emine-ingest", "-c"};
    assert_int_equal(em_config_args(2, a4, &path, &dump), -1);
    char *a5[] = {"emine-ingest", "--bogus"};
    assert_int_equal(em_config_args(2, a5, &path, &dump), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),   cmocka_unit_test(test_file_and_env),
        cmocka_unit_test(test_real_config_file), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_env_errors), cmocka_unit_test(test_args),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
