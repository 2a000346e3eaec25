/* test_json.c - em_json: parsing with limits (JSONTestSuite), raw array splitting, error
 * lists, RFC 8785 canonical form, SHA-256 digests and the hash chain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_json.h"

/* Reads a whole file as raw bytes.  Caller owns return value; NULL on error. */
static char *s_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;

    if (!f) {
        return NULL;
    }
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            break;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static const char *s_shared(void)
{
    const char *s = getenv("EMINE_SHARED");
    return s && *s ? s : "../shared";
}

/* ---- RFC 8785 ---- */

static void s_expect_jcs(const json_t *v, const char *expected)
{
    size_t len = 0;
    char *out = em_jcs_encode(v, &len);
    assert_non_null(out);
    assert_string_equal(out, expected);
    assert_int_equal(len, strlen(expected));
    free(out);
}

static double s_bits(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text. */
static void test_jcs_numbers_appendix_b(void **state)
{
    (void) state;
    static const struct {
        uint64_t bits;
        const char *text;
    } table[] = {
        { 0x0000000000000000ULL, "0" },
        { 0x8000000000000000ULL, "0" },
        { 0x0000000000000001ULL, "5e-324" },
        { 0x8000000000000001ULL, "-5e-324" },
        { 0x7fefffffffffffffULL, "1.7976931348623157e+308" },
        { 0xffefffffffffffffULL, "-1.7976931348623157e+308" },
        { 0x4340000000000000ULL, "9007199254740992" },
        { 0xc340000000000000ULL, "-9007199254740992" },
        { 0x4430000000000000ULL, "295147905179352830000" },
        { 0x44b52d02c7e14af5ULL, "9.999999999999997e+22" },
        { 0x44b52d02c7e14af6ULL, "1e+23" },
        { 0x44b52d02c7e14af7ULL, "1.0000000000000001e+23" },
        { 0x444b1ae4d6e2ef4eULL, "999999999999999700000" },
        { 0x444b1ae4d6e2ef4fULL, "999999999999999900000" },
        { 0x444b1ae4d6e2ef50ULL, "1e+21" },
        { 0x3eb0c6f7a0b5ed8cULL, "9.999999999999997e-7" },
        { 0x3eb0c6f7a0b5ed8dULL, "0.000001" },
        { 0x41b3de4355555553ULL, "333333333.3333332" },
        { 0x41b3de4355555554ULL, "333333333.33333325" },
        { 0x41b3de4355555555ULL, "333333333.3333333" },
        { 0x41b3de4355555556ULL, "333333333.3333334" },
        { 0x41b3de4355555557ULL, "333333333.33333343" },
        { 0xbecbf647612f3696ULL, "-0.0000033333333333333333" },
        { 0x43143ff3c1cb0959ULL, "1424953923781206.2" },
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        json_t *v = json_real(s_bits(table[i].bits));
        assert_non_null(v);
        s_expect_jcs(v, table[i].text);
        json_decref(v);
    }
    /* NaN and Infinity cannot be Jansson reals at all: json_real refuses them. */
    assert_null(json_real(s_bits(0x7fffffffffffffffULL)));
    assert_null(json_real(s_bits(0x7ff0000000000000ULL)));
}

/* Values given as JSON text go through Jansson's reader first, as events do. */
static void test_jcs_numbers_from_text(void **state)
{
    (void) state;
    static const struct {
        const char *in, *out;
    } table[] = {
        { "[1e21]", "[1e+21]" },
        { "[1e-7]", "[1e-7]" },
        { "[0.000001]", "[0.000001]" },
        { "[123456789012345680000.0]", "[123456789012345680000]" },
        { "[5e-324]", "[5e-324]" },
        { "[1.7976931348623157e308]", "[1.7976931348623157e+308]" },
        { "[333333333.33333329]", "[333333333.3333333]" },
        { "[-0]", "[0]" },
        { "[-0.0]", "[0]" },
        { "[4.50]", "[4.5]" },
        { "[2e-3]", "[0.002]" },
        { "[1E30]", "[1e+30]" },
        { "[0.000000000000000000000000001]", "[1e-27]" },
        { "[100]", "[100]" },
        { "[9007199254740993]", "[9007199254740992]" },
        { "[-9223372036854775808]", "[-9223372036854776000]" },
        { "[52.76]", "[52.76]" },
        { "[0.1]", "[0.1]" },
        { "[1e22]", "[1e+22]" },
        { "[123e-20]", "[1.23e-18]" },
        { "[0.0000001]", "[1e-7]" },
        { "[1.5e300]", "[1.5e+300]" },
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        json_t *errors = NULL;
        json_t *v = em_json_parse(table[i].in, strlen(table[i].in), 64, &errors);
        assert_non_null(v);
        assert_null(errors);
        s_expect_jcs(v, table[i].out);
        json_decref(v);
    }
}

/* RFC 8785 section 3.2.2: the worked example. */
static void test_jcs_rfc_example(void **state)
{
    (void) state;
    const char *in = "{\n"
                     "  \"numbers\": [333333333.33333329, 1E30, 4.50,\n"
                     "              2e-3, 0.000000000000000000000000001],\n"
                     "  \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\\"\\/\",\n"
                     "  \"literals\": [null, true, false]\n"
                     "}";
    const char *out = "{\"literals\":[null,true,false],"
                      "\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],"
                      "\"string\":\"\xe2\x82\xac$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
    json_t *v = em_json_parse(in, strlen(in), 64, NULL);
    assert_non_null(v);
    s_expect_jcs(v, out);
    json_decref(v);
}

/* RFC 8785 section 3.2.3: members sorted by UTF-16 code units. */
static void test_jcs_sorting(void **state)
{
    (void) state;
    const char *in = "{\n"
                     "  \"\\u20ac\": \"Euro Sign\",\n"
                     "  \"\\r\": \"Carriage Return\",\n"
                     "  \"\\ufb33\": \"Hebrew Letter Dalet With Dagesh\",\n"
                     "  \"1\": \"One\",\n"
                     "  \"\\ud83d\\ude00\": \"Emoji: Grinning Face\",\n"
                     "  \"\\u0080\": \"Control\",\n"
                     "  \"\\u00f6\": \"Latin Small Letter O With Diaeresis\"\n"
                     "}";
    const char *out = "{\"\\r\":\"Carriage Return\","
                      "\"1\":\"One\","
                      "\"\xc2\x80\":\"Control\","
                      "\"\xc3\xb6\":\"Latin Small Letter O With Diaeresis\","
                      "\"\xe2\x82\xac\":\"Euro Sign\","
                      "\"\xf0\x9f\x98\x80\":\"Emoji: Grinning Face\","
                      "\"\xef\xac\xb3\":\"Hebrew Letter Dalet With Dagesh\"}";
    json_t *v = em_json_parse(in, strlen(in), 64, NULL);
    assert_non_null(v);
    s_expect_jcs(v, out);
    json_decref(v);

    /* U+E000 (one unit 0xE000) sorts after U+1F600 (units 0xD83D 0xDE00), although its UTF-8
     * bytes (EE ...) sort before F0 ...; and two supplementary keys with the same high
     * surrogate are ordered by the low one. */
    const char *in2 = "{\"\\ue000\":1,\"\\ud83d\\ude01\":2,\"\\ud83d\\ude00\":3,\"\\uffff\":4,"
                      "\"a\":5,\"\":6,\"ab\":7}";
    const char *out2 = "{\"\":6,\"a\":5,\"ab\":7,\"\xf0\x9f\x98\x80\":3,\"\xf0\x9f\x98\x81\":2,"
                       "\"\xee\x80\x80\":1,\"\xef\xbf\xbf\":4}";
    v = em_json_parse(in2, strlen(in2), 64, NULL);
    assert_non_null(v);
    s_expect_jcs(v, out2);
    json_decref(v);
}

static void test_jcs_strings_and_nesting(void **state)
{
    (void) state;
    /* Control characters: short escapes where JSON has them, else lower-case \u00xx; DEL,
     * U+2028 and "/" stay literal. */
    json_t *v = json_pack("{s:s,s:[i,{s:b,s:n}],s:{}, s:[]}", "s",
                          "\x01\x08\x09\x0a\x0b\x0c\x0d\x1f\x7f\xe2\x80\xa8/", "z", 1, "y", 1,
                          "x", "e", "d");
    assert_non_null(v);
    s_expect_jcs(v, "{\"d\":[],\"e\":{},\"s\":\"\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f\x7f"
                    "\xe2\x80\xa8/\",\"z\":[1,{\"x\":null,\"y\":true}]}");
    json_decref(v);

    json_t *s = json_stringn("a\0b", 3);
    assert_non_null(s);
    s_expect_jcs(s, "\"a\\u0000b\"");
    json_decref(s);
    assert_null(em_jcs_encode(NULL, NULL));
}

static void test_sha256_hex_chain(void **state)
{
    (void) state;
    uint8_t md[32], back[32];
    char hex[65], chain[65];
    char zero[65];

    em_sha256("abc", 3, md);
    em_hex_encode(md, 32, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(em_hex_decode(hex, back, 32), 0);
    assert_memory_equal(md, back, 32);
    assert_int_equal(em_hex_decode("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                                   back, 32),
                     0);
    assert_memory_equal(md, back, 32);
    assert_int_equal(em_hex_decode("abc", back, 1), -1);
    assert_int_equal(em_hex_decode("zz", back, 1), -1);
    assert_int_equal(em_hex_decode("", back, 0), 0);

    memset(zero, '0', 64);
    zero[64] = '\0';
    assert_int_equal(em_chain_next_hex(zero, hex, chain), 0);
    assert_string_equal(chain, "589f9ffed4c477966bfb8d41f37895b08c69047df8f911d6f3b57fbe08faee8d");
    char bad[65];
    memcpy(bad, zero, sizeof bad);
    bad[10] = 'x';
    assert_int_equal(em_chain_next_hex(bad, hex, chain), -1);

    /* The digest is over the JCS form: key order and white space do not matter. */
    json_t *a = em_json_parse("{ \"a\" : 1 }", 11, 64, NULL);
    json_t *b = json_pack("{s:i}", "a", 1);
    char da[65], db[65];
    assert_int_equal(em_jcs_digest_hex(a, da), 0);
    assert_int_equal(em_jcs_digest_hex(b, db), 0);
    assert_string_equal(da, "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862");
    assert_string_equal(da, db);
    json_decref(a);
    json_decref(b);
}

/* ---- parsing and error lists ---- */

static void s_expect_error(json_t *errors, const char *pointer, const char *keyword)
{
    assert_non_null(errors);
    assert_true(json_is_array(errors));
    assert_int_equal(json_array_size(errors), 1);
    json_t *e = json_array_get(errors, 0);
    assert_string_equal(json_string_value(json_object_get(e, "pointer")), pointer);
    assert_string_equal(json_string_value(json_object_get(e, "keyword")), keyword);
    assert_non_null(json_string_value(json_object_get(e, "message")));
}

static void test_parse_errors(void **state)
{
    (void) state;
    json_t *errors = NULL;
    json_t *v;

    v = em_json_parse("{\"a\": x}", 8, 64, &errors);
    assert_null(v);
    s_expect_error(errors, "", "json");
    const char *msg = json_string_value(json_object_get(json_array_get(errors, 0), "message"));
    assert_non_null(strstr(msg, "line 1, column 7"));
    json_decref(errors);

    v = em_json_parse("{\"a\":1,\"a\":2}", 13, 64, &errors);
    assert_null(v);
    s_expect_error(errors, "", "json");
    json_decref(errors);

    v = em_json_parse("[\"a\\u0000b\"]", 12, 64, &errors);
    assert_null(v);
    s_expect_error(errors, "", "json");
    json_decref(errors);

    v = em_json_parse("[1] x", 5, 64, &errors);
    assert_null(v);
    s_expect_error(errors, "", "json");
    json_decref(errors);

    v = em_json_parse("", 0, 64, &errors);
    assert_null(v);
    s_expect_error(errors, "", "json");
    json_decref(errors);

    /* Integers beyond the int64 range are refused (Jansson keeps integers as long long);
     * written with a fraction or exponent they are accepted as doubles. */
    v = em_json_parse("[123456789012345680000]", 23, 64, &errors);
    assert_null(v);
    s_expect_error(errors, "", "json");
    json_decref(errors);

    /* A raw NUL byte is never JSON, even after a complete value. */
    v = em_json_parse("123\0", 4, 64, &errors);
    assert_null(v);
    s_expect_error(errors, "", "json");
    msg = json_string_value(json_object_get(json_array_get(errors, 0), "message"));
    assert_non_null(strstr(msg, "line 1, column 4"));
    json_decref(errors);

    /* A NULL error list is allowed. */
    assert_null(em_json_parse("{", 1, 64, NULL));

    /* Depth: {"data":{"a/b":{"c~":[[ ... ]]}}} */
    const char *deep = "{\"data\":{\"a/b\":{\"c~\":[1,[[{}]]]}}}";
    v = em_json_parse(deep, strlen(deep), 7, &errors);
    assert_non_null(v);
    assert_null(errors);
    json_decref(v);
    v = em_json_parse(deep, strlen(deep), 6, &errors);
    assert_null(v);
    s_expect_error(errors, "/data/a~1b/c~0/1/0/0", "maxDepth");
    assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 0), "message")),
                        "nesting deeper than 6");
    json_decref(errors);
    v = em_json_parse(deep, strlen(deep), 2, &errors);
    assert_null(v);
    s_expect_error(errors, "/data/a~1b", "maxDepth");
    json_decref(errors);
    v = em_json_parse("[]", 2, 0, &errors);
    assert_null(v);
    s_expect_error(errors, "", "maxDepth");
    json_decref(errors);
    v = em_json_parse("7", 1, 0, &errors);
    assert_non_null(v);
    json_decref(v);

    /* A very long key path is cut at a '/' so that the pointer still names an ancestor. */
    char big[2000];
    int n = snprintf(big, sizeof big, "{\"%0300d\":{\"b\":[[]]}}", 0);
    assert_true(n > 0 && (size_t) n < sizeof big);
    v = em_json_parse(big, (size_t) n, 2, &errors);
    assert_null(v);
    s_expect_error(errors, "", "maxDepth");
    json_decref(errors);
}

static void test_errors_list(void **state)
{
    (void) state;
    json_t *errors = em_errors_new();
    assert_non_null(errors);
    em_errors_add(errors, "/time", "format", "not an RFC 3339 date-time: %s", "lunch\xff");
    em_errors_add(errors, NULL, NULL, "%d", 5);
    em_errors_add(NULL, "", "x", "ignored");
    assert_int_equal(json_array_size(errors), 2);
    json_t *e = json_array_get(errors, 0);
    assert_string_equal(json_string_value(json_object_get(e, "pointer")), "/time");
    assert_string_equal(json_string_value(json_object_get(e, "keyword")), "format");
    assert_string_equal(json_string_value(json_object_get(e, "message")),
                        "not an RFC 3339 date-time: lunch?");
    e = json_array_get(errors, 1);
    assert_string_equal(json_string_value(json_object_get(e, "pointer")), "");
    assert_string_equal(json_string_value(json_object_get(e, "message")), "5");
    json_decref(errors);
}

/* ---- em_json_split_array ---- */

typedef struct {
    const char *base;
    size_t count;
    size_t off[16];
    size_t len[16];
} s_slices_t;

static void s_collect(void *arg, size_t index, const char *start, size_t len)
{
    s_slices_t *s = arg;
    assert_int_equal(index, s->count);
    if (s->count < 16) {
        s->off[s->count] = (size_t) (start - s->base);
        s->len[s->count] = len;
    }
    s->count++;
}

static void test_split_array(void **state)
{
    (void) state;
    const char *text = " [ {\"a\":\"]}\\\"[\"} ,\n\t\"x\\\\\" ,-1.5e3,true,null,[[],{}] , {} ]\r\n";
    s_slices_t s = { .base = text };
    long n = em_json_split_array(text, strlen(text), s_collect, &s);
    assert_int_equal(n, 7);
    assert_int_equal(s.count, 7);
    const char *want[] = { "{\"a\":\"]}\\\"[\"}", "\"x\\\\\"", "-1.5e3", "true", "null",
                           "[[],{}]", "{}" };
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(s.len[i], strlen(want[i]));
        assert_memory_equal(text + s.off[i], want[i], s.len[i]);
    }
    assert_int_equal(em_json_split_array("[]", 2, s_collect, &s), 0);
    assert_int_equal(em_json_split_array(" [ \n] ", 6, NULL, NULL), 0);
    assert_int_equal(em_json_split_array("{}", 2, NULL, NULL), -1);
    assert_int_equal(em_json_split_array("\"[1]\"", 5, NULL, NULL), -1);
    assert_int_equal(em_json_split_array("", 0, NULL, NULL), -1);
    /* Malformed input is refused without reading past the buffer. */
    assert_int_equal(em_json_split_array("[1", 2, NULL, NULL), -1);
    assert_int_equal(em_json_split_array("[\"ab", 4, NULL, NULL), -1);
    assert_int_equal(em_json_split_array("[1 2]", 5, NULL, NULL), -1);
    assert_int_equal(em_json_split_array("[{]", 3, NULL, NULL), -1);
}

/* ---- JSONTestSuite ---- */

/* Files JSONTestSuite says must be accepted that em_json_parse refuses on purpose. */
static const struct {
    const char *file;
    const char *why;
} s_policy_rejects[] = {
    /* Duplicate keys are ambiguous (which value wins differs between parsers), and the
     * digest of an event must not depend on that choice: JSON_REJECT_DUPLICATES. */
    { "y_object_duplicated_key.json", "duplicate key" },
    { "y_object_duplicated_key_and_value.json", "duplicate key" },
    /* PostgreSQL jsonb cannot store U+0000 in a string. */
    { "y_string_null_escape.json", "\\u0000 in a string" },
    { "y_object_escaped_null_in_key.json", "\\u0000 in a key" },
};

static bool s_policy_reject(const char *name)
{
    for (size_t i = 0; i < sizeof s_policy_rejects / sizeof s_policy_rejects[0]; i++) {
        if (strcmp(s_policy_rejects[i].file, name) == 0) {
            return true;
        }
    }
    return false;
}

typedef struct {
    json_t *array;
    size_t bad;
} s_split_check_t;

/* Each raw slice must parse on its own to the element the whole parse produced. */
static void s_split_check(void *arg, size_t index, const char *start, size_t len)
{
    s_split_check_t *c = arg;
    json_error_t jerr;
    json_t *el = json_loadb(start, len, JSON_DECODE_ANY, &jerr);
    if (!el || !json_equal(el, json_array_get(c->array, index))) {
        c->bad++;
    }
    json_decref(el);
}

static int s_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static void test_jsontestsuite(void **state)
{
    (void) state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/testdata/jsontestsuite/test_parsing", s_shared());
    DIR *d = opendir(dir);
    assert_non_null(d);
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strlen(de->d_name) < 6 || strcmp(de->d_name + strlen(de->d_name) - 5, ".json") != 0) {
            continue;
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 512;
            names = realloc(names, cap * sizeof *names);
            assert_non_null(names);
        }
        names[count++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof *names, s_name_cmp);
    assert_int_equal(count, 318);

    size_t y_ok = 0, y_policy = 0, y_fail = 0, n_ok = 0, n_fail = 0, i_acc = 0, i_rej = 0;
    size_t split_arrays = 0, split_fail = 0;
    for (size_t k = 0; k < count; k++) {
        char path[2048];
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        char *buf = s_read_file(path, &len);
        assert_non_null(buf);
        json_t *errors = NULL;
        json_t *v = em_json_parse(buf, len, 64, &errors);
        /* Either a value or a non-empty error list, never both. */
        if (v) {
            assert_null(errors);
        } else {
            assert_non_null(errors);
            assert_true(json_array_size(errors) >= 1);
        }
        char kind = names[k][0];
        if (kind == 'y') {
            if (s_policy_reject(names[k])) {
                if (v) {
                    print_message("y_ policy file accepted: %s\n", names[k]);
                    y_fail++;
                } else {
                    y_policy++;
                }
            } else if (v) {
                y_ok++;
            } else {
                print_message("y_ rejected: %s: %s\n", names[k],
                              json_string_value(json_object_get(json_array_get(errors, 0),
                                                                "message")));
                y_fail++;
            }
            if (v && json_is_array(v)) {
                s_split_check_t c = { .array = v };
                long n = em_json_split_array(buf, len, s_split_check, &c);
                split_arrays++;
                if (n != (long) json_array_size(v) || c.bad) {
                    print_message("split mismatch: %s\n", names[k]);
                    split_fail++;
                }
            }
        } else if (kind == 'n') {
            if (v) {
                print_message("n_ accepted: %s\n", names[k]);
                n_fail++;
            } else {
                n_ok++;
            }
        } else {
            /* Implementation-defined: only record the outcome. */
            if (v) {
                i_acc++;
            } else {
                i_rej++;
            }
            print_message("  %s: %s\n", names[k], v ? "accepted" : "rejected");
            /* Pinned so that a change of behaviour is noticed: only the two underflows (read
             * as 0) are accepted; overflowing numbers, integers beyond int64, invalid UTF-8,
             * lone surrogates, UTF-16, the BOM and 500 levels of nesting are refused. */
            bool expect = strcmp(names[k], "i_number_double_huge_neg_exp.json") == 0 ||
                          strcmp(names[k], "i_number_real_underflow.json") == 0;
            assert_int_equal(v != NULL, expect);
        }
        /* Every outcome is a well-formed error list or a value that can be canonicalised
         * (Jansson never yields a non-finite number). */
        if (v) {
            char *jcs = em_jcs_encode(v, NULL);
            assert_non_null(jcs);
            free(jcs);
        }
        json_decref(v);
        json_decref(errors);
        free(buf);
        free(names[k]);
    }
    free(names);
    print_message("jsontestsuite: %zu passed, %zu failed (y_: %zu accepted, %zu policy "
                  "rejections; n_: %zu rejected; i_: %zu accepted, %zu rejected)\n",
                  y_ok + y_policy + n_ok, y_fail + n_fail, y_ok, y_policy, n_ok, i_acc, i_rej);
    print_message("jsontestsuite split: %zu passed, %zu failed\n", split_arrays - split_fail,
                  split_fail);
    assert_int_equal(y_fail, 0);
    assert_int_equal(n_fail, 0);
    assert_int_equal(split_fail, 0);
    assert_int_equal(n_ok, 188);
    assert_int_equal(y_ok + y_policy, 95);
}

/* JSONTestSuite test_transform: inputs whose parsed value differs between parsers.  Our
 * behaviour, pinned: the JCS text of what we accept, NULL for a refusal. */
static void test_jsontestsuite_transform(void **state)
{
    (void) state;
    static const struct {
        const char *file;
        const char *jcs;
    } table[] = {
        { "number_-9223372036854775808.json", "[-9223372036854776000]" },
        { "number_-9223372036854775809.json", NULL }, /* beyond int64 */
        { "number_1.0.json", "[1]" },
        { "number_1.000000000000000005.json", "[1]" },
        { "number_1000000000000000.json", "[1000000000000000]" },
        { "number_10000000000000000999.json", NULL }, /* beyond int64 */
        { "number_1e-999.json", "[0]" },              /* underflows to 0 */
        { "number_1e6.json", "[1000000]" },
        { "number_9223372036854775807.json", "[9223372036854776000]" }, /* as a double */
        { "number_9223372036854775808.json", NULL }, /* beyond int64 */
        /* Keys are not normalised: NFC and NFD stay two keys, ordered by UTF-16 units. */
        { "object_key_nfc_nfd.json", "{\"e\xcc\x81\":\"NFD\",\"\xc3\xa9\":\"NFC\"}" },
        { "object_key_nfd_nfc.json", "{\"e\xcc\x81\":\"NFD\",\"\xc3\xa9\":\"NFC\"}" },
        { "object_same_key_different_values.json", NULL }, /* duplicate keys */
        { "object_same_key_same_value.json", NULL },
        { "object_same_key_unclear_values.json", NULL },
        { "string_1_escaped_invalid_codepoint.json", NULL }, /* lone surrogates */
        { "string_1_invalid_codepoint.json", NULL },
        { "string_2_escaped_invalid_codepoints.json", NULL },
        { "string_2_invalid_codepoints.json", NULL },
        { "string_3_escaped_invalid_codepoints.json", NULL },
        { "string_3_invalid_codepoints.json", NULL },
        { "string_with_escaped_NULL.json", NULL }, /* \u0000 */
    };
    size_t passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        char path[2048];
        size_t len = 0;
        snprintf(path, sizeof path, "%s/testdata/jsontestsuite/test_transform/%s", s_shared(),
                 table[i].file);
        char *buf = s_read_file(path, &len);
        assert_non_null(buf);
        json_t *errors = NULL;
        json_t *v = em_json_parse(buf, len, 64, &errors);
        char *jcs = v ? em_jcs_encode(v, NULL) : NULL;
        bool ok = table[i].jcs ? jcs && strcmp(jcs, table[i].jcs) == 0 : !v && errors;
        if (!ok) {
            print_message("transform %s: got %s\n", table[i].file, jcs ? jcs : "(rejected)");
            failed++;
        } else {
            passed++;
        }
        free(jcs);
        json_decref(v);
        json_decref(errors);
        free(buf);
    }
    print_message("jsontestsuite transform: %zu passed, %zu failed\n", passed, failed);
    assert_int_equal(failed, 0);
    assert_int_equal(passed, 22);
}

/* em_json_parse reads text with its own single-pass parser and hands what that parser does
 * not handle to json_loadb: the outcome must be exactly json_loadb's (JSON_REJECT_DUPLICATES |
 * JSON_DECODE_ANY, raw NUL refused): the same value (types, numbers, strings, member order, as
 * json_dumps prints them) or a refusal with the same message. */
static int s_diff_one(const char *buf, size_t len, const char *what)
{
    json_error_t jerr;
    json_t *want = memchr(buf, '\0', len)
                       ? NULL
                       : json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    json_t *errors = NULL;
    json_t *got = em_json_parse(buf, len, -1, &errors);
    int bad = 0;
    if (!want != !got) {
        bad = 1;
    } else if (want) {
        char *a = json_dumps(want, JSON_ENCODE_ANY | JSON_COMPACT);
        char *b = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
        bad = !a || !b || strcmp(a, b) != 0;
        free(a);
        free(b);
    } else if (!memchr(buf, '\0', len) && em_utf8_valid(jerr.text, strlen(jerr.text))) {
        /* (em_errors_add writes invalid UTF-8 in a message as '?') */
        char msg[400];
        snprintf(msg, sizeof msg, "invalid JSON at line %d, column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        const char *m = json_string_value(json_object_get(json_array_get(errors, 0), "message"));
        bad = !m || strcmp(m, msg) != 0;
    }
    if (bad) {
        print_message("parse differs from json_loadb: %s\n", what);
    }
    json_decref(want);
    json_decref(got);
    json_decref(errors);
    return bad;
}

static int s_diff_dir(const char *sub, size_t *files)
{
    char dir[1024];
    int bad = 0;
    snprintf(dir, sizeof dir, "%s/%s", s_shared(), sub);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0) {
            continue;
        }
        char path[2048];
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        char *buf = s_read_file(path, &len);
        assert_non_null(buf);
        bad += s_diff_one(buf, len, de->d_name);
        /* and every prefix of the small files: truncated text at each position */
        for (size_t k = 0; len <= 64 && k < len; k++) {
            bad += s_diff_one(buf, k, de->d_name);
        }
        free(buf);
        (*files)++;
    }
    closedir(d);
    return bad;
}

static void test_parse_same_as_jansson(void **state)
{
    (void) state;
    static const char *const cases[] = {
        "{\"specversion\":\"1.0\",\"id\":\"a-1\",\"data\":{\"q\":[1,2.5,-0,-0.0,1e3,1E-3,2e+2],"
        "\"t\":true,\"f\":false,\"n\":null,\"s\":\"\",\"o\":{},\"a\":[]}}",
        " \t\r\n[ 1 , { \"a\" : [ ] } ] \n",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
        "\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00 caf\xc3\xa9 \xf0\x9f\x98\x80 \x7f\"",
        "{\"k\\u00e9y\":1,\"k\\u00e9z\":2}",
        "{\"a\":1,\"\\u0061\":2}",
        "{\"a\":{\"b\":1,\"b\":2}}",
        "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\ud800x\"", "\"\\u00\"",
        "\"\\u0000\"", "\"\\x\"", "\"a\x01\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
        "123456789012345678", "-123456789012345678", "1234567890123456789",
        "9223372036854775807", "-9223372036854775808", "9223372036854775808",
        "-9223372036854775809", "1e400", "-1e400", "1e-400", "0.1", "-0.000001e-5",
        "1.7976931348623157e308", "4.9e-324", "01", "-01", "1.", ".5", "+1", "1e", "1e+",
        "-", "--1", "1.5e3.2", "0x10", "Infinity", "NaN", "tru", "nul", "fals", "truex",
        "[1,]", "{\"a\":1,}", "{\"a\"}", "{\"a\":}", "{1:2}", "[1 2]", "{\"a\":1 \"b\":2}",
        "[", "{", "]", "}", "", " ", "[]]", "{}}", "[]x", "\xef\xbb\xbf[]", "[\"a\"\x00]",
        "{\"a\\u0000\":1}", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bad += s_diff_one(cases[i], strlen(cases[i]), cases[i]);
    }
    /* a NUL byte inside the text */
    bad += s_diff_one("[\"a\0\"]", 6, "NUL in a string");
    /* a key with escapes longer than the key buffer */
    char key[800];
    size_t n = 0;
    n += (size_t) snprintf(key + n, sizeof key - n, "{\"");
    for (int i = 0; i < 100; i++) {
        n += (size_t) snprintf(key + n, sizeof key - n, "\\u00e9");
    }
    snprintf(key + n, sizeof key - n, "\":\"\\n\",\"x\":1}");
    bad += s_diff_one(key, strlen(key), "long escaped key");
    /* nesting deeper than the single-pass parser goes */
    size_t deep = 3000;
    char *d = malloc(2 * deep);
    assert_non_null(d);
    memset(d, '[', deep);
    memset(d + deep, ']', deep);
    bad += s_diff_one(d, 2 * deep, "3000 levels");
    bad += s_diff_one(d + deep - 1500, 3000, "1500 levels");
    free(d);
    size_t files = 0;
    bad += s_diff_dir("testdata/jsontestsuite/test_parsing", &files);
    bad += s_diff_dir("testdata/jsontestsuite/test_transform", &files);
    print_message("parse vs json_loadb: %zu cases, %zu files, %d differences\n",
                  sizeof cases / sizeof cases[0] + 5, files, bad);
    assert_true(files >= 318);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jcs_numbers_appendix_b),
        cmocka_unit_test(test_jcs_numbers_from_text),
        cmocka_unit_test(test_jcs_rfc_example),
        cmocka_unit_test(test_jcs_sorting),
        cmocka_unit_test(test_jcs_strings_and_nesting),
        cmocka_unit_test(test_sha256_hex_chain),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_errors_list),
        cmocka_unit_test(test_split_array),
        cmocka_unit_test(test_jsontestsuite),
        cmocka_unit_test(test_jsontestsuite_transform),
        cmocka_unit_test(test_parse_same_as_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
