/* test_catalogue.c - the event catalogue (config/schemas) through validate_event_cat: every
 * fixture of tests/fixtures/schemas/<type>/ gets its verdict (valid-*.json accepted,
 * invalid-*.json rejected with the pointer and keyword of its .expect sidecar), the demo
 * events and generated production reports are valid, unknown types and dataschemas are
 * refused, and a catalogue swapped under worker threads stays sound. */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "em.h"
#include "../../services/validate/catalogue.h"
#include "../../services/validate/validate.h"

#define SCHEMAS "config/schemas"
#define FIXTURES "tests/fixtures/schemas"

static vcat_t *s_cat;

static int s_setup(void **state)
{
    (void)state;
    char *err = NULL;
    s_cat = vcat_load(SCHEMAS, &err);
    if (!s_cat)
        fprintf(stderr, "catalogue: %s\n", err ? err : "?");
    free(err);
    return s_cat ? 0 : -1;
}

static int s_teardown(void **state)
{
    (void)state;
    vcat_unref(&s_cat);
    return 0;
}

static char *s_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else if (buf) {
            buf[n] = '\0';
            *len = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

static json_t *s_check(const vcat_t *cat, bool accept_unknown, const char *raw, size_t len)
{
    json_t *hdr = json_pack("{s:s}", "ing", "t");
    json_t *v = validate_event_cat(cat, accept_unknown, hdr, raw, len, 32);
    json_decref(hdr);
    return v;
}

static const char *s_verdict(json_t *v) { return json_string_value(json_object_get(v, "verdict")); }

/* true when list has an entry with this pointer and keyword */
static bool s_has(json_t *list, const char *pointer, const char *keyword)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "pointer")), pointer) == 0 &&
            strcmp(json_string_value(json_object_get(e, "keyword")), keyword) == 0)
            return true;
    }
    return false;
}

/* One fixture: its verdict, and the expectation of its sidecar "<file>.expect" (lines
 * "error POINTER KEYWORD" or "note POINTER KEYWORD"; POINTER "" is written as -). */
static int s_fixture(const char *dir, const char *name, int *nvalid, int *ninvalid)
{
    char path[1024], xpath[1100];
    size_t len = 0, xlen = 0;
    int bad = 0;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(xpath, sizeof xpath, "%s.expect", path);
    char *raw = s_read(path, &len);
    if (!raw) {
        fprintf(stderr, "%s: cannot read\n", path);
        return 1;
    }
    bool want_ok = strncmp(name, "valid-", 6) == 0;
    json_t *v = s_check(s_cat, false, raw, len);
    if (strcmp(s_verdict(v), want_ok ? "ok" : "rejected") != 0) {
        char *t = json_dumps(v, JSON_COMPACT);
        fprintf(stderr, "%s: want %s, got %s\n", path, want_ok ? "ok" : "rejected", t);
        free(t);
        bad++;
    }
    *(want_ok ? nvalid : ninvalid) += 1;
    if (getenv("EM_CATALOGUE_VERBOSE")) {
        char *t = json_dumps(json_object_get(v, want_ok ? "notes" : "errors"), JSON_COMPACT);
        fprintf(stderr, "%s: %s %s\n", path, s_verdict(v), t ? t : "");
        free(t);
    }
    char *x = s_read(xpath, &xlen);
    if (!want_ok && !x) {
        fprintf(stderr, "%s: an invalid fixture needs %s\n", path, xpath);
        bad++;
    }
    for (char *line = x ? strtok(x, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        char kind[16], ptr[512], kw[128];
        if (line[0] == '#' || sscanf(line, "%15s %511s %127s", kind, ptr, kw) != 3)
            continue;
        const char *p = strcmp(ptr, "-") == 0 ? "" : ptr;
        json_t *list = json_object_get(v, strcmp(kind, "note") == 0 ? "notes" : "errors");
        if (!s_has(list, p, kw)) {
            char *t = json_dumps(v, JSON_COMPACT);
            fprintf(stderr, "%s: want %s %s %s, got %s\n", path, kind, p, kw, t);
            free(t);
            bad++;
        }
    }
    free(x);
    free(raw);
    json_decref(v);
    return bad;
}

static void test_every_fixture_gets_its_verdict(void **state)
{
    (void)state;
    DIR *top = opendir(FIXTURES);
    struct dirent *de;
    int bad = 0, types = 0;

    assert_non_null(top);
    while ((de = readdir(top)) != NULL) {
        char dir[512];
        if (de->d_name[0] == '.')
            continue;
        snprintf(dir, sizeof dir, "%s/%s", FIXTURES, de->d_name);
        DIR *d = opendir(dir);
        if (!d)
            continue;
        types++;
        int nvalid = 0, ninvalid = 0;
        struct dirent *fe;
        while ((fe = readdir(d)) != NULL) {
            size_t n = strlen(fe->d_name);
            if (n > 5 && strcmp(fe->d_name + n - 5, ".json") == 0)
                bad += s_fixture(dir, fe->d_name, &nvalid, &ninvalid);
        }
        closedir(d);
        if (nvalid < 1 || ninvalid < 2) {
            fprintf(stderr, "%s: %d valid and %d invalid fixtures (want >= 1 and >= 2)\n", dir,
                    nvalid, ninvalid);
            bad++;
        }
    }
    closedir(top);
    assert_int_equal(types, 16);
    assert_int_equal(vcat_types(s_cat), 16);
    assert_int_equal(bad, 0);
}

static void s_expect_ok(const char *what, const char *raw, size_t len, int *bad)
{
    json_t *v = s_check(s_cat, false, raw, len);
    if (strcmp(s_verdict(v), "ok") != 0) {
        char *t = json_dumps(v, JSON_COMPACT);
        fprintf(stderr, "%s: %s\n", what, t);
        free(t);
        (*bad)++;
    }
    json_decref(v);
}

static void test_demo_events_are_valid(void **state)
{
    (void)state;
    DIR *d = opendir("tests/fixtures/events");
    struct dirent *de;
    int bad = 0, n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        char path[512];
        size_t len = 0, l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        snprintf(path, sizeof path, "tests/fixtures/events/%s", de->d_name);
        char *raw = s_read(path, &len);
        assert_non_null(raw);
        json_t *doc = json_loadb(raw, len, 0, NULL);
        assert_non_null(doc);
        json_t *one = json_is_array(doc) ? doc : NULL;
        for (size_t i = 0; i < (one ? json_array_size(one) : 1); i++) {
            char *text = json_dumps(one ? json_array_get(one, i) : doc, JSON_COMPACT);
            s_expect_ok(path, text, strlen(text), &bad);
            free(text);
            n++;
        }
        json_decref(doc);
        free(raw);
    }
    closedir(d);
    assert_true(n >= 12);
    assert_int_equal(bad, 0);
}

static void test_generated_production_reports_are_valid(void **state)
{
    (void)state;
    FILE *p = popen("bash tests/fixtures/gen_events.sh 60 unit", "r");
    char line[4096];
    int bad = 0, n = 0;

    assert_non_null(p);
    while (fgets(line, sizeof line, p)) {
        s_expect_ok("gen_events.sh", line, strlen(line), &bad);
        n++;
    }
    assert_int_equal(pclose(p), 0);
    assert_int_equal(n, 60);
    assert_int_equal(bad, 0);
}

static const char *s_refused =
    "{\"specversion\":\"1.0\",\"id\":\"r1\",\"source\":\"/pk/ba/mmdd/cadastre\","
    "\"type\":\"%s\",%s\"data\":{\"applicationId\":\"BA-APP-2011-0215\","
    "\"decidedOn\":\"2011-11-15\",\"reasonCode\":\"feasibility_inadequate\"}}";

static json_t *s_refused_with(const char *type, const char *extra, bool accept)
{
    char raw[1024];
    snprintf(raw, sizeof raw, s_refused, type, extra);
    return s_check(s_cat, accept, raw, strlen(raw));
}

static void test_unknown_type_rejected_or_accepted(void **state)
{
    (void)state;
    json_t *v = s_refused_with("pk.gov.emining.licence.lost", "", false);
    assert_string_equal(s_verdict(v), "rejected");
    assert_true(s_has(json_object_get(v, "errors"), "/type", "unknownType"));
    json_decref(v);
    v = s_refused_with("pk.gov.emining.licence.lost", "", true);
    assert_string_equal(s_verdict(v), "ok");
    json_decref(v);
    v = s_refused_with("pk.gov.emining.licence.refused", "", false);
    assert_string_equal(s_verdict(v), "ok");
    json_decref(v);
}

static void test_dataschema_chooses_the_version(void **state)
{
    (void)state;
    json_t *v = s_refused_with("pk.gov.emining.licence.refused",
                               "\"dataschema\":\"https://schemas.emining.example/licence.refused/1.json\",",
                               false);
    assert_string_equal(s_verdict(v), "ok");
    json_decref(v);
    v = s_refused_with("pk.gov.emining.licence.refused",
                       "\"dataschema\":\"https://schemas.emining.example/licence.refused/9.json\",",
                       false);
    assert_string_equal(s_verdict(v), "rejected");
    assert_true(s_has(json_object_get(v, "errors"), "/dataschema", "dataschema"));
    json_decref(v);
    /* another type's schema is not this type's */
    v = s_refused_with("pk.gov.emining.licence.refused",
                       "\"dataschema\":\"https://schemas.emining.example/licence.granted/1.json\",",
                       false);
    assert_true(s_has(json_object_get(v, "errors"), "/dataschema", "dataschema"));
    json_decref(v);
}

static void test_missing_data_and_base64_data(void **state)
{
    (void)state;
    const char *raw = "{\"specversion\":\"1.0\",\"id\":\"r1\",\"source\":\"/x\","
                      "\"type\":\"pk.gov.emining.licence.refused\"}";
    json_t *v = s_check(s_cat, false, raw, strlen(raw));
    assert_true(s_has(json_object_get(v, "errors"), "", "required"));
    json_decref(v);
    raw = "{\"specversion\":\"1.0\",\"id\":\"r1\",\"source\":\"/x\","
          "\"type\":\"pk.gov.emining.licence.refused\",\"datacontenttype\":\"application/octet-stream\","
          "\"data_base64\":\"AAAA\"}";
    v = s_check(s_cat, false, raw, strlen(raw));
    assert_true(s_has(json_object_get(v, "errors"), "/data_base64", "datacontenttype"));
    json_decref(v);
}

static void test_a_broken_schema_folder_does_not_load(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/emcatXXXXXX", cmd[512], *err = NULL;
    assert_non_null(mkdtemp(tmpl));
    snprintf(cmd, sizeof cmd,
             "cp -r " SCHEMAS "/. %s/ && printf '{\"$id\":\"https://schemas.emining.example/"
             "licence.refused/2.json\",\"pattern\":\"(\"}' >%s/licence.refused/2.json",
             tmpl, tmpl);
    assert_int_equal(system(cmd), 0);
    vcat_t *c = vcat_load(tmpl, &err);
    assert_null(c);
    assert_non_null(err);
    assert_non_null(strstr(err, "licence.refused/2.json"));
    free(err);
    /* a file that is not JSON is named too */
    snprintf(cmd, sizeof cmd, "printf '{\"$id\":' >%s/licence.refused/2.json", tmpl);
    assert_int_equal(system(cmd), 0);
    c = vcat_load(tmpl, &err);
    assert_null(c);
    assert_non_null(err);
    assert_non_null(strstr(err, "licence.refused/2.json: not JSON"));
    free(err);
    /* a fixed version 2 becomes the latest */
    snprintf(cmd, sizeof cmd,
             "printf '{\"$id\":\"https://schemas.emining.example/licence.refused/2.json\","
             "\"type\":\"object\",\"required\":[\"appealBy\"]}' >%s/licence.refused/2.json", tmpl);
    assert_int_equal(system(cmd), 0);
    c = vcat_load(tmpl, &err);
    assert_non_null(c);
    assert_int_equal(vcat_versions(c), 17);
    char raw[1024];
    snprintf(raw, sizeof raw, s_refused, "pk.gov.emining.licence.refused", "");
    json_t *v = s_check(c, false, raw, strlen(raw));
    assert_string_equal(s_verdict(v), "rejected");
    assert_true(s_has(json_object_get(v, "errors"), "/data", "required"));
    json_decref(v);
    vcat_unref(&c);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpl);
    assert_int_equal(system(cmd), 0);
}

/* Workers validating while the catalogue is swapped, as validate does on SIGHUP. */
static pthread_mutex_t s_mu = PTHREAD_MUTEX_INITIALIZER;
static vcat_t *s_shared;

static void *s_worker(void *arg)
{
    int *bad = arg;
    char raw[1024];
    snprintf(raw, sizeof raw, s_refused, "pk.gov.emining.licence.refused", "");
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&s_mu);
        vcat_t *c = vcat_ref(s_shared);
        pthread_mutex_unlock(&s_mu);
        json_t *v = s_check(c, false, raw, strlen(raw));
        *bad += strcmp(s_verdict(v), "ok") != 0;
        json_decref(v);
        vcat_unref(&c);
    }
    return NULL;
}

static void test_swap_under_workers(void **state)
{
    (void)state;
    pthread_t t[4];
    int bad[4] = {0};
    s_shared = vcat_load(SCHEMAS, NULL);
    assert_non_null(s_shared);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, s_worker, &bad[i]), 0);
    for (int i = 0; i < 5; i++) {
        vcat_t *fresh = vcat_load(SCHEMAS, NULL);
        assert_non_null(fresh);
        pthread_mutex_lock(&s_mu);
        vcat_t *old = s_shared;
        s_shared = fresh;
        pthread_mutex_unlock(&s_mu);
        vcat_unref(&old);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(bad[i], 0);
    }
    vcat_unref(&s_shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_fixture_gets_its_verdict),
        cmocka_unit_test(test_demo_events_are_valid),
        cmocka_unit_test(test_generated_production_reports_are_valid),
        cmocka_unit_test(test_unknown_type_rejected_or_accepted),
        cmocka_unit_test(test_dataschema_chooses_the_version),
        cmocka_unit_test(test_missing_data_and_base64_data),
        cmocka_unit_test(test_a_broken_schema_folder_does_not_load),
        cmocka_unit_test(test_swap_under_workers),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
