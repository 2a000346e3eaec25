/* test_schema.c - em_schema: the official JSON-Schema-Test-Suite (draft 2020-12 and draft-07,
 * required tests and the asserted formats), plus the error shape and the compile API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_json.h"
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "em_schema.h"

/* Floors: the pass counts reached; a regression makes the test fail.
 * - draft2020-12 required: 1299 of 1299; draft7 required: 927 of 927 (no failure).
 * - optional/format (date, date-time, time, duration, email, hostname, ipv4, ipv6, uri,
 *   uri-reference, uuid, regex, json-pointer): 2020-12 537 of 537, draft7 450 of 450.
 * - the other optional files: 2020-12 162 of 162, draft7 114 of 118.  draft7 content.json (4
 *   failures): contentMediaType/contentEncoding are annotations only (draft-07 allows either).
 *   bignum.json is read with integers beyond int64 as doubles (the test data only). */
#define FLOOR_2020_REQUIRED 1299
#define FLOOR_7_REQUIRED 927
#define FLOOR_2020_FORMAT 537
#define FLOOR_7_FORMAT 450
#define FLOOR_2020_OPTIONAL 162
#define FLOOR_7_OPTIONAL 114

static const char *s_shared(void)
{
    const char *s = getenv("EMINE_SHARED");
    return s && *s ? s : "../shared";
}

static em_schema_store_t *s_store(em_draft_t draft)
{
    char dir[4096];
    em_schema_store_t *st = em_schema_store_new();
    assert_non_null(st);
    snprintf(dir, sizeof(dir), "%s/testdata/json-schema-metaschemas", s_shared());
    assert_int_equal(em_schema_store_add_metaschemas(st, dir), 0);
    snprintf(dir, sizeof(dir), "%s/testdata/json-schema-test-suite/remotes", s_shared());
    assert_true(em_schema_store_add_dir(st, dir, "http://localhost:1234/", draft) > 0);
    return st;
}

typedef struct {
    int pass, fail;
} s_count_t;

static int s_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs one suite file; prints its failures.  verbose lists each failing test. */
static void s_run_file(const em_schema_store_t *st, const char *path, const char *label,
                       em_draft_t draft, bool fmt, s_count_t *cnt)
{
    json_error_t jerr;
    json_t *cases = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!cases) {
        /* bignum.json: integers beyond int64 are read as doubles */
        cases = json_load_file(path, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
    }
    int pass = 0, fail = 0;
    if (!cases) {
        printf("  %s: cannot load (%s)\n", label, jerr.text);
        cnt->fail++;
        return;
    }
    size_t ci;
    json_t *tc;
    json_array_foreach(cases, ci, tc)
    {
        json_t *tests = json_object_get(tc, "tests");
        em_schema_opts_t opts = { .draft = draft, .format_assert = fmt };
        char *err = NULL;
        em_schema_t *sc = em_schema_compile(json_object_get(tc, "schema"), st, &opts, &err);
        if (!sc) {
            printf("  %s: [%s] does not compile: %s (%zu tests)\n", label,
                   json_string_value(json_object_get(tc, "description")), err ? err : "?",
                   json_array_size(tests));
            fail += (int)json_array_size(tests);
            free(err);
            continue;
        }
        size_t ti;
        json_t *t;
        json_array_foreach(tests, ti, t)
        {
            bool want = json_is_true(json_object_get(t, "valid"));
            json_t *data = json_object_get(t, "data");
            int r = em_schema_validate(sc, data, NULL);
            json_t *errors = em_errors_new();
            int r2 = em_schema_validate(sc, data, errors);
            bool ok = (r == 1) == want && r2 == r && (r == 1) == (json_array_size(errors) == 0);
            if (ok) {
                pass++;
            } else {
                fail++;
                printf("  %s: [%s] %s: expected %s, got %d/%d\n", label,
                       json_string_value(json_object_get(tc, "description")),
                       json_string_value(json_object_get(t, "description")),
                       want ? "valid" : "invalid", r, r2);
            }
            json_decref(errors);
        }
        em_schema_destroy(&sc);
    }
    json_decref(cases);
    if (fail) {
        printf("  %s: %d passed, %d failed\n", label, pass, fail);
    }
    cnt->pass += pass;
    cnt->fail += fail;
}

/* Runs every *.json of tests/<draft>/<sub> (only the names in only[] when given). */
static s_count_t s_run_group(const char *draft_dir, em_draft_t draft, const char *sub,
                             const char *const *only, bool fmt)
{
    char dir[4096];
    s_count_t cnt = { 0, 0 };
    em_schema_store_t *st = s_store(draft);
    snprintf(dir, sizeof(dir), "%s/testdata/json-schema-test-suite/tests/%s%s%s", s_shared(),
             draft_dir, sub ? "/" : "", sub ? sub : "");
    DIR *d = opendir(dir);
    assert_non_null(d);
    char *names[256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".json")) {
            bool keep = !only;
            for (int i = 0; only && only[i]; i++) {
                if (!strncmp(e->d_name, only[i], l - 5) && only[i][l - 5] == '\0') {
                    keep = true;
                }
            }
            if (keep) {
                names[n++] = strdup(e->d_name);
            }
        }
    }
    closedir(d);
    qsort(names, n, sizeof(char *), s_cmp);
    for (size_t i = 0; i < n; i++) {
        char path[8192], label[512];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        snprintf(label, sizeof(label), "%s%s%s", sub ? sub : "", sub ? "/" : "", names[i]);
        s_run_file(st, path, label, draft, fmt, &cnt);
        free(names[i]);
    }
    printf("%s %s: %d passed, %d failed\n", draft_dir, sub ? sub : "required", cnt.pass, cnt.fail);
    fflush(stdout);
    em_schema_store_destroy(&st);
    return cnt;
}

static const char *const s_formats[] = { "date",     "date-time", "time",          "duration",
                                         "email",    "hostname",  "ipv4",          "ipv6",
                                         "uri",      "uri-reference", "uuid",      "regex",
                                         "json-pointer", NULL };

static void test_suite_2020_required(void **state)
{
    (void)state;
    s_count_t c = s_run_group("draft2020-12", EM_DRAFT_2020_12, NULL, NULL, false);
    assert_true(c.pass >= FLOOR_2020_REQUIRED);
    assert_int_equal(c.fail, 0);
}

static void test_suite_7_required(void **state)
{
    (void)state;
    s_count_t c = s_run_group("draft7", EM_DRAFT_07, NULL, NULL, false);
    assert_true(c.pass >= FLOOR_7_REQUIRED);
    assert_int_equal(c.fail, 0);
}

static void test_suite_2020_format(void **state)
{
    (void)state;
    s_count_t c = s_run_group("draft2020-12", EM_DRAFT_2020_12, "optional/format", s_formats, true);
    assert_true(c.pass >= FLOOR_2020_FORMAT);
}

static void test_suite_7_format(void **state)
{
    (void)state;
    s_count_t c = s_run_group("draft7", EM_DRAFT_07, "optional/format", s_formats, true);
    assert_true(c.pass >= FLOOR_7_FORMAT);
}

/* The other optional files (bignum, ecmascript-regex, cross-draft...): reported, with a floor. */
static void test_suite_2020_optional(void **state)
{
    (void)state;
    s_count_t c = s_run_group("draft2020-12", EM_DRAFT_2020_12, "optional", NULL, false);
    assert_true(c.pass >= FLOOR_2020_OPTIONAL);
}

static void test_suite_7_optional(void **state)
{
    (void)state;
    s_count_t c = s_run_group("draft7", EM_DRAFT_07, "optional", NULL, false);
    assert_true(c.pass >= FLOOR_7_OPTIONAL);
}

/* An invalid instance yields errors with the instance pointer, keyword and schema path. */
static void test_error_shape(void **state)
{
    (void)state;
    json_t *schema = json_loads(
        "{\"$defs\":{\"qty\":{\"type\":\"object\",\"required\":[\"value\"],"
        "\"properties\":{\"value\":{\"type\":\"number\",\"minimum\":0}}}},"
        "\"type\":\"object\",\"properties\":{\"items\":{\"type\":\"array\","
        "\"items\":{\"$ref\":\"#/$defs/qty\"}}},\"additionalProperties\":false}",
        0, NULL);
    assert_non_null(schema);
    char *err = NULL;
    em_schema_t *s = em_schema_compile(schema, NULL, NULL, &err);
    assert_non_null(s);
    json_t *ok = json_loads("{\"items\":[{\"value\":1}]}", 0, NULL);
    assert_int_equal(em_schema_validate(s, ok, NULL), 1);
    json_t *bad = json_loads("{\"items\":[{\"value\":-1},{}],\"x\":1}", 0, NULL);
    json_t *errors = em_errors_new();
    assert_int_equal(em_schema_validate(s, bad, NULL), 0);
    assert_int_equal(em_schema_validate(s, bad, errors), 0);
    assert_int_equal(json_array_size(errors), 3);
    const char *want[3][3] = {
        { "/items/0/value", "minimum", "/properties/items/items/$ref/properties/value/minimum" },
        { "/items/1", "required", "/properties/items/items/$ref/required" },
        { "/x", "additionalProperties", "/additionalProperties" },
    };
    for (int i = 0; i < 3; i++) {
        json_t *e = json_array_get(errors, (size_t)i);
        assert_string_equal(json_string_value(json_object_get(e, "pointer")), want[i][0]);
        assert_string_equal(json_string_value(json_object_get(e, "keyword")), want[i][1]);
        assert_string_equal(json_string_value(json_object_get(e, "schemaPath")), want[i][2]);
        assert_non_null(json_string_value(json_object_get(e, "message")));
    }
    /* enum and const errors quote the allowed values */
    json_t *es = json_loads("{\"properties\":{\"u\":{\"enum\":[\"t\",\"kg\"]},\"v\":{\"const\":1}}}", 0, NULL);
    em_schema_t *s2 = em_schema_compile(es, NULL, NULL, NULL);
    json_t *ei = json_loads("{\"u\":\"lb\",\"v\":2}", 0, NULL);
    json_t *ee = em_errors_new();
    assert_int_equal(em_schema_validate(s2, ei, ee), 0);
    assert_int_equal(json_array_size(ee), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ee, 0), "message")),
                        "value is not one of [\"t\",\"kg\"]");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ee, 1), "message")),
                        "value must be 1");
    json_decref(ee);
    json_decref(ei);
    json_decref(es);
    em_schema_destroy(&s2);
    json_decref(errors);
    json_decref(ok);
    json_decref(bad);
    json_decref(schema);
    em_schema_destroy(&s);
    em_schema_destroy(&s);
}

/* Unresolvable references and bad patterns fail at compile time with a reason. */
static void test_compile_errors(void **state)
{
    (void)state;
    const char *bad[] = { "{\"$ref\":\"http://example.com/nowhere.json\"}",
                          "{\"$ref\":\"#/$defs/missing\"}", "{\"pattern\":\"(\"}", "42" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        char *err = NULL;
        assert_null(em_schema_compile(j, NULL, NULL, &err));
        assert_non_null(err);
        free(err);
        json_decref(j);
    }
}

/* A remote document is taken from the store only. */
static void test_store(void **state)
{
    (void)state;
    em_schema_store_t *st = em_schema_store_new();
    json_t *doc = json_loads("{\"$defs\":{\"id\":{\"type\":\"string\",\"format\":\"uuid\"}}}", 0, NULL);
    assert_int_equal(em_schema_store_add(st, "https://emine.example/defs.json", doc, EM_DRAFT_AUTO), 0);
    json_decref(doc);
    json_t *schema = json_loads("{\"$id\":\"https://emine.example/event.json\","
                                "\"properties\":{\"id\":{\"$ref\":\"defs.json#/$defs/id\"}}}",
                                0, NULL);
    em_schema_opts_t opts = { .format_assert = true };
    em_schema_t *s = em_schema_compile(schema, st, &opts, NULL);
    assert_non_null(s);
    json_t *good = json_loads("{\"id\":\"0b6e4e5a-8f0b-4d3c-9a1e-2f1c3b4d5e6f\"}", 0, NULL);
    json_t *bad = json_loads("{\"id\":\"nope\"}", 0, NULL);
    assert_int_equal(em_schema_validate(s, good, NULL), 1);
    assert_int_equal(em_schema_validate(s, bad, NULL), 0);
    json_decref(good);
    json_decref(bad);
    json_decref(schema);
    em_schema_destroy(&s);
    /* a document of the store compiled by its URI */
    json_t *defs = em_schema_store_get(st, "https://emine.example/defs.json#");
    assert_non_null(defs);
    assert_non_null(em_schema_store_get(st, "https://emine.example/defs.json"));
    assert_null(em_schema_store_get(st, "https://emine.example/other.json"));
    json_t *ref = json_loads("{\"$ref\":\"defs.json#/$defs/id\"}", 0, NULL);
    em_schema_opts_t o2 = { .format_assert = true, .base_uri = "https://emine.example/x.json" };
    s = em_schema_compile(ref, st, &o2, NULL);
    assert_non_null(s);
    json_t *str = json_string("nope");
    json_t *errors = em_errors_new();
    assert_int_equal(em_schema_validate(s, str, errors), 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 0), "keyword")),
                        "format");
    json_decref(errors);
    json_decref(str);
    json_decref(ref);
    em_schema_destroy(&s);
    em_schema_store_destroy(&st);
    em_schema_store_destroy(&st);
}

/* Schemas validated against the meta-schemas ($dynamicRef through the 2020-12 vocabularies);
 * "$schema" picks the dialect. */
static void test_metaschema(void **state)
{
    (void)state;
    em_schema_store_t *st = s_store(EM_DRAFT_2020_12);
    const struct {
        const char *meta, *doc;
        int valid;
    } cases[] = {
        { "{\"$ref\":\"https://json-schema.org/draft/2020-12/schema\"}", "{\"type\":\"string\"}", 1 },
        { "{\"$ref\":\"https://json-schema.org/draft/2020-12/schema\"}", "{\"type\":12}", 0 },
        { "{\"$ref\":\"https://json-schema.org/draft/2020-12/schema\"}",
          "{\"properties\":{\"a\":{\"minLength\":-1}}}", 0 },
        { "{\"$ref\":\"http://json-schema.org/draft-07/schema#\"}", "{\"items\":[{},{}]}", 1 },
        { "{\"$ref\":\"http://json-schema.org/draft-07/schema#\"}", "{\"required\":\"a\"}", 0 },
        /* draft-07 by "$schema": items as an array is a tuple, $ref hides its siblings */
        { "{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"items\":[{\"type\":\"string\"}],"
          "\"additionalItems\":false}", "[\"a\"]", 1 },
        { "{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"items\":[{\"type\":\"string\"}],"
          "\"additionalItems\":false}", "[\"a\",1]", 0 },
        { "{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"definitions\":{\"s\":{}},"
          "\"$ref\":\"#/definitions/s\",\"type\":\"string\"}", "1", 1 },
        { "{\"definitions\":{\"s\":{}},\"$ref\":\"#/definitions/s\",\"type\":\"string\"}", "1", 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *m = json_loads(cases[i].meta, 0, NULL);
        json_t *d = json_loads(cases[i].doc, JSON_DECODE_ANY, NULL);
        assert_non_null(m);
        assert_non_null(d);
        em_schema_t *s = em_schema_compile(m, st, NULL, NULL);
        assert_non_null(s);
        json_t *errors = em_errors_new();
        assert_int_equal(em_schema_validate(s, d, NULL), cases[i].valid);
        assert_int_equal(em_schema_validate(s, d, errors), cases[i].valid);
        assert_int_equal(json_array_size(errors) == 0, cases[i].valid);
        json_decref(errors);
        em_schema_destroy(&s);
        json_decref(m);
        json_decref(d);
    }
    em_schema_store_destroy(&st);
}

/* unevaluatedProperties sees through $ref and allOf; its error names the property. */
static void test_unevaluated_errors(void **state)
{
    (void)state;
    json_t *schema = json_loads("{\"$defs\":{\"base\":{\"properties\":{\"a\":true}}},"
                                "\"allOf\":[{\"$ref\":\"#/$defs/base\"}],"
                                "\"properties\":{\"b\":true},\"unevaluatedProperties\":false}",
                                0, NULL);
    em_schema_t *s = em_schema_compile(schema, NULL, NULL, NULL);
    assert_non_null(s);
    json_t *ok = json_loads("{\"a\":1,\"b\":2}", 0, NULL);
    json_t *bad = json_loads("{\"a\":1,\"c\":3}", 0, NULL);
    json_t *errors = em_errors_new();
    assert_int_equal(em_schema_validate(s, ok, errors), 1);
    assert_int_equal(json_array_size(errors), 0);
    assert_int_equal(em_schema_validate(s, bad, errors), 0);
    assert_int_equal(json_array_size(errors), 1);
    json_t *e = json_array_get(errors, 0);
    assert_string_equal(json_string_value(json_object_get(e, "pointer")), "/c");
    assert_string_equal(json_string_value(json_object_get(e, "keyword")), "unevaluatedProperties");
    assert_string_equal(json_string_value(json_object_get(e, "schemaPath")), "/unevaluatedProperties");
    json_decref(errors);
    json_decref(ok);
    json_decref(bad);
    json_decref(schema);
    em_schema_destroy(&s);
}

/* A schema that refers to itself without consuming the instance stops at the depth limit. */
static void test_recursion_limit(void **state)
{
    (void)state;
    json_t *schema = json_loads("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},"
                                "\"$ref\":\"#/$defs/a\"}",
                                0, NULL);
    em_schema_t *s = em_schema_compile(schema, NULL, NULL, NULL);
    assert_non_null(s);
    json_t *errors = em_errors_new();
    assert_int_equal(em_schema_validate(s, json_true(), errors), -1);
    assert_true(json_array_size(errors) >= 1);
    assert_int_equal(em_schema_validate(s, json_true(), NULL), -1);
    json_decref(errors);
    json_decref(schema);
    em_schema_destroy(&s);
}

/* One compiled schema validates from several threads at once. */
typedef struct {
    const em_schema_t *s;
    json_t *good, *bad;
    int wrong;
} s_thr_t;

/* "required" names that are all "properties": the same verdict with and without an error
 * list, and the same "required" errors, whichever way the members are looked up (fewer or more
 * members than properties, extra members, patternProperties, a name listed twice). */
static void test_required_with_properties(void **state)
{
    (void)state;
    static const char *const schemas[] = {
        "{\"properties\":{\"a\":{},\"b\":{\"type\":\"integer\"}},\"required\":[\"a\",\"b\"]}",
        "{\"properties\":{\"a\":{},\"b\":{}},\"required\":[\"b\",\"a\",\"b\"]}",
        "{\"properties\":{\"a\":{},\"b\":{}},\"patternProperties\":{\"^x\":{}},\"required\":[\"a\",\"b\"]}",
        "{\"properties\":{\"a\":{},\"b\":{}},\"additionalProperties\":true,\"required\":[\"a\",\"b\"]}",
        "{\"properties\":{\"a\":{}},\"required\":[\"a\",\"c\"]}",
    };
    static const struct {
        const char *inst;
        int valid[5];
        size_t nreq[5]; /* "required" errors expected */
    } cases[] = {
        { "{\"a\":1,\"b\":2}", { 1, 1, 1, 1, 0 }, { 0, 0, 0, 0, 1 } },
        { "{\"a\":1}", { 0, 0, 0, 0, 0 }, { 1, 2, 1, 1, 1 } },
        { "{}", { 0, 0, 0, 0, 0 }, { 2, 3, 2, 2, 2 } },
        { "{\"a\":1,\"c\":2,\"d\":3}", { 0, 0, 0, 0, 1 }, { 1, 2, 1, 1, 0 } },
        { "{\"a\":1,\"b\":2,\"c\":3}", { 1, 1, 1, 1, 1 }, { 0, 0, 0, 0, 0 } },
        { "{\"x1\":1,\"x2\":2,\"b\":3}", { 0, 0, 0, 0, 0 }, { 1, 1, 1, 1, 2 } },
        { "{\"a\":1,\"b\":\"s\"}", { 0, 1, 1, 1, 0 }, { 0, 0, 0, 0, 1 } },
        { "[1]", { 1, 1, 1, 1, 1 }, { 0, 0, 0, 0, 0 } },
    };
    for (size_t i = 0; i < sizeof schemas / sizeof *schemas; i++) {
        json_t *schema = json_loads(schemas[i], 0, NULL);
        em_schema_t *s = em_schema_compile(schema, NULL, NULL, NULL);
        assert_non_null(s);
        for (size_t j = 0; j < sizeof cases / sizeof *cases; j++) {
            json_t *inst = json_loads(cases[j].inst, JSON_DECODE_ANY, NULL);
            json_t *errors = em_errors_new();
            int quiet = em_schema_validate(s, inst, NULL);
            int loud = em_schema_validate(s, inst, errors);
            size_t nreq = 0, k;
            json_t *e;
            json_array_foreach(errors, k, e)
            {
                nreq += strcmp(json_string_value(json_object_get(e, "keyword")), "required") == 0;
            }
            if (quiet != cases[j].valid[i] || loud != quiet || nreq != cases[j].nreq[i] ||
                (loud == 1) != (json_array_size(errors) == 0)) {
                print_message("schema %zu, instance %s: %d %d, %zu required errors\n", i,
                              cases[j].inst, quiet, loud, nreq);
            }
            assert_int_equal(quiet, cases[j].valid[i]);
            assert_int_equal(loud, quiet);
            assert_int_equal(nreq, cases[j].nreq[i]);
            assert_int_equal(loud == 1, json_array_size(errors) == 0);
            json_decref(errors);
            json_decref(inst);
        }
        em_schema_destroy(&s);
        json_decref(schema);
    }
}

/* "pattern" answers as PCRE2 (UTF, $ only at the end) does for patterns that need no
 * translation from ECMA-262 (anchored or not, groups, classes, quantifiers, backtracking):
 * every pattern against every string. */
static void test_pattern_same_as_pcre2(void **state)
{
    (void)state;
    static const char *const patterns[] = {
        "^[a-z0-9][a-z0-9-]{0,63}$",
        "^PK-(BA|SD|PB|KP|GB|JK|IS)/(RL|EL|MDRL|ML|SSPL|SSML|QL)-[0-9A-Za-z/-]{1,32}$",
        "^[A-Z]{2}$", "^\\d{4}-\\d{2}$", "^(a|ab)+c$", "^(a|ab|)*$", "^(?:x|y){2,3}z?$",
        "^a*a*a*a*a*a*a*a*a*a*a*a*b$", "^[\\-\\]\\\\.]+$", "^[a-]+$", "^$", "^a?$", "^\\.\\*\\$$",
        "^(ab){2}$", "^[0-9]{3,}$", "^x{0}y$", "^(a|b)(c|d)?e+$", "^(|a)b$",
        "a+", "^a", "b$", "^[^a]$", "^.$", "^a+?$", "^\\w+$", "^(a(b))$", "^a|b$", "^\\s$",
        "^[[:alpha:]]$", "^\\p{L}+$", "^caf\xc3\xa9$", "^a{2,1}$",
    };
    static const char *const strings[] = {
        "", "a", "b", "ab", "abc", "aabc", "abab", "xxz", "xyx", "xyxy", "duddar", "-duddar",
        "PK-BA/ML-EXAMPLE", "PK-BA/ML-", "PK-XX/ML-1", "PK-SD/SSML-a/b-c", "PK", "pk", "PKR",
        "2017-09", "2017-9", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "-]\\.", "a-a", ".*$", "123", "12", "y", "ace", "bdeee", "ade", "caf\xc3\xa9", "\xc3\xa9",
        "a\n", "\n", "ab\nab", "x", "yy",
    };
    size_t checked = 0;
    for (size_t i = 0; i < sizeof patterns / sizeof *patterns; i++) {
        int errcode;
        PCRE2_SIZE erroff;
        pcre2_code *code = pcre2_compile((PCRE2_SPTR)patterns[i], PCRE2_ZERO_TERMINATED,
                                         PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &errcode, &erroff, NULL);
        json_t *schema = json_pack("{s:s}", "pattern", patterns[i]);
        em_schema_t *s = em_schema_compile(schema, NULL, NULL, NULL);
        assert_true((code != NULL) == (s != NULL));
        if (!code) {
            json_decref(schema);
            continue;
        }
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
        for (size_t j = 0; j < sizeof strings / sizeof *strings; j++) {
            int want = pcre2_match(code, (PCRE2_SPTR)strings[j], strlen(strings[j]), 0, 0, md,
                                   NULL) >= 0;
            json_t *inst = json_string(strings[j]);
            int got = em_schema_validate(s, inst, NULL);
            if (got != want) {
                print_message("pattern %s on \"%s\": %d, PCRE2 %d\n", patterns[i], strings[j],
                              got, want);
            }
            assert_int_equal(got, want);
            json_decref(inst);
            checked++;
        }
        pcre2_match_data_free(md);
        pcre2_code_free(code);
        em_schema_destroy(&s);
        json_decref(schema);
    }
    print_message("patterns vs PCRE2: %zu checks\n", checked);
    assert_true(checked > 1000);
}

/* Numeric bounds, alone and combined, near 2^53 and beyond: the same verdict with and
 * without an error list.  (Values are chosen so that the answer does not depend on long double
 * having more than 53 bits: valgrind computes long double as double.) */
static void test_bounds(void **state)
{
    (void)state;
    static const struct {
        const char *schema, *inst;
        int valid;
    } cases[] = {
        { "{\"minimum\":0,\"exclusiveMinimum\":0}", "0", 0 },
        { "{\"exclusiveMinimum\":0,\"minimum\":0}", "0", 0 },
        { "{\"minimum\":0,\"exclusiveMinimum\":0}", "0.5", 1 },
        { "{\"minimum\":5,\"exclusiveMinimum\":3}", "4", 0 },
        { "{\"minimum\":5,\"exclusiveMinimum\":3}", "5", 1 },
        { "{\"maximum\":3,\"exclusiveMaximum\":3}", "3", 0 },
        { "{\"maximum\":3,\"exclusiveMaximum\":3}", "2.999", 1 },
        { "{\"type\":\"number\",\"minimum\":0.1}", "0.1", 1 },
        { "{\"type\":\"number\",\"minimum\":0.1}", "0.09999999999999999", 0 },
        { "{\"maximum\":9007199254740993}", "9007199254740993", 1 },
        { "{\"maximum\":9007199254740993}", "9007199254740994", 0 },
        { "{\"maximum\":9007199254740992}", "9007199254741000", 0 },
        { "{\"minimum\":-9007199254740993}", "-9007199254740994", 0 },
        { "{\"minimum\":-9007199254740993}", "-9007199254740993", 1 },
        { "{\"maximum\":9007199254740992.0}", "9007199254740994", 0 },
        { "{\"exclusiveMaximum\":1e308}", "9223372036854775807", 1 },
        { "{\"type\":\"integer\",\"minimum\":-180,\"maximum\":180}", "180.0", 1 },
        { "{\"type\":\"integer\",\"minimum\":-180,\"maximum\":180}", "180.5", 0 },
        { "{\"minimum\":1,\"maximum\":2}", "\"x\"", 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *schema = json_loads(cases[i].schema, 0, NULL);
        json_t *inst = json_loads(cases[i].inst, JSON_DECODE_ANY, NULL);
        assert_non_null(schema);
        assert_non_null(inst);
        em_schema_t *s = em_schema_compile(schema, NULL, NULL, NULL);
        assert_non_null(s);
        json_t *errors = em_errors_new();
        int quiet = em_schema_validate(s, inst, NULL);
        int loud = em_schema_validate(s, inst, errors);
        if (quiet != cases[i].valid || loud != quiet) {
            print_message("%s on %s: %d %d\n", cases[i].schema, cases[i].inst, quiet, loud);
        }
        assert_int_equal(quiet, cases[i].valid);
        assert_int_equal(loud, quiet);
        assert_int_equal(json_array_size(errors) == 0, quiet == 1);
        json_decref(errors);
        json_decref(inst);
        em_schema_destroy(&s);
        json_decref(schema);
    }
}

/* Random patterns of the simple kind (anchored; literals, classes, \d, groups of literal
 * alternatives; ?, *, +, {n}, {n,}, {n,m}) with strings drawn from them and random strings:
 * "pattern" answers as PCRE2 does.  Fixed seed: the same cases every run. */
static unsigned s_rand_state = 12345;
static unsigned s_rand(unsigned n)
{
    s_rand_state = s_rand_state * 1103515245u + 12345u;
    return (s_rand_state >> 16) % n;
}

static void s_append(char *buf, size_t cap, const char *s)
{
    size_t l = strlen(buf);
    snprintf(buf + l, cap - l, "%s", s);
}

static void test_pattern_random_same_as_pcre2(void **state)
{
    (void)state;
    static const char *const lits[] = { "a", "b", "c", "-", "/", "0", "9", "Z", "\\.", "\\-" };
    static const char *const classes[] = { "[a-c]", "[0-9A-Z]", "[a-z0-9-]", "[/-]", "\\d",
                                           "[abc\\-]", "[x]" };
    static const char *const alphabet[] = { "a", "b", "c", "-", "/", "0", "5", "9", "Z", ".",
                                            "x", "\xc3\xa9", "\n", "" };
    size_t checked = 0, matched = 0;
    for (int round = 0; round < 400; round++) {
        char pat[256] = "^";
        int natoms = 1 + (int)s_rand(5);
        for (int i = 0; i < natoms; i++) {
            int kind = (int)s_rand(3);
            if (kind == 0) {
                s_append(pat, sizeof pat, lits[s_rand(10)]);
            } else if (kind == 1) {
                s_append(pat, sizeof pat, classes[s_rand(7)]);
            } else {
                s_append(pat, sizeof pat, "(");
                int nalt = 1 + (int)s_rand(3);
                for (int k = 0; k < nalt; k++) {
                    if (k) {
                        s_append(pat, sizeof pat, "|");
                    }
                    int len = (int)s_rand(3);
                    for (int m = 0; m < len; m++) {
                        s_append(pat, sizeof pat, lits[s_rand(8)]);
                    }
                }
                s_append(pat, sizeof pat, ")");
            }
            static const char *const quants[] = { "", "", "?", "*", "+", "{2}", "{1,3}", "{0,2}",
                                                  "{2,}" };
            s_append(pat, sizeof pat, quants[s_rand(9)]);
        }
        s_append(pat, sizeof pat, "$");
        int errcode;
        PCRE2_SIZE erroff;
        pcre2_code *code = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                         PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &errcode, &erroff, NULL);
        assert_non_null(code);
        json_t *schema = json_pack("{s:s}", "pattern", pat);
        em_schema_t *sc = em_schema_compile(schema, NULL, NULL, NULL);
        assert_non_null(sc);
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
        for (int j = 0; j < 60; j++) {
            char str[64] = "";
            int len = (int)s_rand(9);
            for (int m = 0; m < len; m++) {
                s_append(str, sizeof str, alphabet[s_rand(14)]);
            }
            int want = pcre2_match(code, (PCRE2_SPTR)str, strlen(str), 0, 0, md, NULL) >= 0;
            json_t *inst = json_string(str);
            int got = em_schema_validate(sc, inst, NULL);
            if (got != want) {
                print_message("pattern %s on \"%s\": %d, PCRE2 %d\n", pat, str, got, want);
            }
            assert_int_equal(got, want);
            json_decref(inst);
            checked++;
            matched += (size_t)want;
        }
        pcre2_match_data_free(md);
        pcre2_code_free(code);
        em_schema_destroy(&sc);
        json_decref(schema);
    }
    print_message("random patterns vs PCRE2: %zu checks, %zu matches\n", checked, matched);
    assert_true(matched > 300);
}

/* "type", "minItems", "maxItems" and "required" evaluated together with "items" or
 * "properties": every combination gives the verdict it gives alone, with and without an
 * error list. */
static void test_folded_keywords(void **state)
{
    (void)state;
    static const struct {
        const char *schema, *inst;
        int valid;
    } cases[] = {
        { "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}", "[1,2]", 1 },
        { "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}", "[1]", 0 },
        { "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}", "[1,2,3,4]", 0 },
        { "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}", "[1,\"a\"]", 0 },
        { "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}", "{}", 0 },
        { "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}", "\"ab\"", 0 },
        { "{\"items\":{\"type\":\"integer\"},\"minItems\":2}", "\"ab\"", 1 },
        { "{\"items\":{\"type\":\"integer\"},\"minItems\":2}", "[1]", 0 },
        { "{\"type\":\"string\",\"items\":{\"type\":\"integer\"},\"minItems\":2}", "[1,2]", 0 },
        { "{\"type\":\"string\",\"items\":{\"type\":\"integer\"},\"minItems\":2}", "\"x\"", 1 },
        { "{\"type\":[\"array\",\"null\"],\"prefixItems\":[{\"type\":\"number\"}],\"maxItems\":1}", "null", 1 },
        { "{\"type\":[\"array\",\"null\"],\"prefixItems\":[{\"type\":\"number\"}],\"maxItems\":1}", "[1,2]", 0 },
        { "{\"type\":[\"array\",\"null\"],\"prefixItems\":[{\"type\":\"number\"}],\"maxItems\":1}", "[true]", 0 },
        { "{\"type\":[\"array\",\"null\"],\"prefixItems\":[{\"type\":\"number\"}],\"maxItems\":1}", "1", 0 },
        { "{\"type\":\"integer\",\"items\":{}}", "1.0", 1 },
        { "{\"type\":\"integer\",\"items\":{}}", "1.5", 0 },
        { "{\"type\":\"object\",\"required\":[\"a\"],\"properties\":{\"a\":{\"type\":\"string\"}}}", "{\"a\":\"x\"}", 1 },
        { "{\"type\":\"object\",\"required\":[\"a\"],\"properties\":{\"a\":{\"type\":\"string\"}}}", "{}", 0 },
        { "{\"type\":\"object\",\"required\":[\"a\"],\"properties\":{\"a\":{\"type\":\"string\"}}}", "[]", 0 },
        { "{\"type\":\"object\",\"required\":[\"a\"],\"properties\":{\"a\":{\"type\":\"string\"}}}", "{\"a\":1}", 0 },
        { "{\"required\":[\"a\"],\"properties\":{\"a\":{}}}", "[]", 1 },
        { "{\"type\":\"array\",\"properties\":{\"a\":{}}}", "{\"a\":1}", 0 },
        { "{\"type\":\"array\",\"properties\":{\"a\":{}}}", "[]", 1 },
        { "{\"type\":\"object\",\"items\":{\"type\":\"string\"},\"properties\":{\"a\":{\"type\":\"string\"}}}", "{\"a\":\"x\"}", 1 },
        { "{\"type\":\"object\",\"items\":{\"type\":\"string\"},\"properties\":{\"a\":{\"type\":\"string\"}}}", "{\"a\":1}", 0 },
        { "{\"type\":\"object\",\"items\":{\"type\":\"string\"},\"properties\":{\"a\":{\"type\":\"string\"}}}", "[\"x\"]", 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *schema = json_loads(cases[i].schema, 0, NULL);
        json_t *inst = json_loads(cases[i].inst, JSON_DECODE_ANY, NULL);
        assert_non_null(schema);
        assert_non_null(inst);
        em_schema_t *s = em_schema_compile(schema, NULL, NULL, NULL);
        assert_non_null(s);
        json_t *errors = em_errors_new();
        int quiet = em_schema_validate(s, inst, NULL);
        int loud = em_schema_validate(s, inst, errors);
        if (quiet != cases[i].valid || loud != quiet) {
            print_message("%s on %s: %d %d\n", cases[i].schema, cases[i].inst, quiet, loud);
        }
        assert_int_equal(quiet, cases[i].valid);
        assert_int_equal(loud, quiet);
        assert_int_equal(json_array_size(errors) == 0, quiet == 1);
        json_decref(errors);
        json_decref(inst);
        em_schema_destroy(&s);
        json_decref(schema);
    }
}

static void *s_thr(void *arg)
{
    s_thr_t *t = arg;
    for (int i = 0; i < 2000; i++) {
        if (em_schema_validate(t->s, t->good, NULL) != 1 || em_schema_validate(t->s, t->bad, NULL) != 0) {
            t->wrong++;
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    json_t *schema = json_loads("{\"type\":\"object\",\"patternProperties\":{\"^x-\":{\"type\":\"string\","
                                "\"pattern\":\"^[a-z]+$\"}},\"unevaluatedProperties\":false}",
                                0, NULL);
    em_schema_t *s = em_schema_compile(schema, NULL, NULL, NULL);
    assert_non_null(s);
    s_thr_t t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (s_thr_t){ s, json_loads("{\"x-a\":\"abc\"}", 0, NULL), json_loads("{\"x-a\":\"ABC\"}", 0, NULL), 0 };
        assert_int_equal(pthread_create(&th[i], NULL, s_thr, &t[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].wrong, 0);
        json_decref(t[i].good);
        json_decref(t[i].bad);
    }
    json_decref(schema);
    em_schema_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_shape),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_metaschema),
        cmocka_unit_test(test_unevaluated_errors),
        cmocka_unit_test(test_recursion_limit),
        cmocka_unit_test(test_required_with_properties),
        cmocka_unit_test(test_pattern_same_as_pcre2),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_folded_keywords),
        cmocka_unit_test(test_pattern_random_same_as_pcre2),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_suite_2020_required),
        cmocka_unit_test(test_suite_7_required),
        cmocka_unit_test(test_suite_2020_format),
        cmocka_unit_test(test_suite_7_format),
        cmocka_unit_test(test_suite_2020_optional),
        cmocka_unit_test(test_suite_7_optional),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
