/* test_event.c - em_event: the CloudEvents 1.0 JSON format rules (conformance data and the
 * spec's examples), RFC 3339 time, and HTTP binary-mode conversion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "em_event.h"
#include "em_json.h"

static const char *s_shared(void)
{
    const char *s = getenv("EMINE_SHARED");
    return s && *s ? s : "../shared";
}

/* Reads and parses a JSON file under <shared>/testdata.  Returns a new reference. */
static json_t *s_load(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/testdata/%s", s_shared(), rel);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t) n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
    fclose(f);
    /* Some files start with a UTF-8 BOM, which is not JSON: skip it here. */
    size_t off = n >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
    json_t *errors = NULL;
    json_t *v = em_json_parse(buf + off, (size_t) n - off, 64, &errors);
    assert_non_null(v);
    free(buf);
    return v;
}

/* Checks one event; on failure the errors are printed when expect_ok. */
static int s_check(const json_t *event, json_t **errors_out)
{
    json_t *errors = em_errors_new();
    int rc = em_event_check(event, errors);
    assert_true(rc == 0 || rc == -1);
    /* A verdict and its error list always agree. */
    assert_int_equal(rc == 0, json_array_size(errors) == 0);
    if (errors_out) {
        *errors_out = errors;
    } else {
        json_decref(errors);
    }
    return rc;
}

static bool s_has_error(const json_t *errors, const char *pointer, const char *keyword)
{
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "pointer")), pointer) == 0 &&
            strcmp(json_string_value(json_object_get(e, "keyword")), keyword) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- golden samples (cloudevents-conformance/format/README.md), written by hand ---- */

static json_t *s_minimal(const char *id)
{
    return json_pack("{s:s,s:s,s:s,s:s}", "specversion", "1.0", "id", id, "type",
                     "io.cloudevents.test", "source", "https://cloudevents.io");
}

static json_t *s_golden_event(const char *sample)
{
    json_t *e;
    if (strcmp(sample, "minimal") == 0) {
        return s_minimal("minimal");
    }
    if (strcmp(sample, "minimalWithTime") == 0) {
        e = s_minimal("minimalWithTime");
        json_object_set_new(e, "time", json_string("2018-04-05T17:31:00Z"));
        return e;
    }
    if (strcmp(sample, "minimalWithRelativeSource") == 0) {
        e = s_minimal("minimalWithRelativeSource");
        json_object_set_new(e, "source", json_string("#fragment"));
        return e;
    }
    if (strcmp(sample, "allCore") == 0) {
        e = s_minimal("allCore");
        json_object_set_new(e, "datacontenttype", json_string("text/plain"));
        json_object_set_new(e, "dataschema", json_string("https://cloudevents.io/dataschema"));
        json_object_set_new(e, "subject", json_string("tests"));
        json_object_set_new(e, "time", json_string("2018-04-05T17:31:00Z"));
        return e;
    }
    if (strcmp(sample, "simpleTextData") == 0) {
        /* The README's prose says id "simpleData"; the test data uses "simpleTextData". */
        e = s_minimal("simpleTextData");
        json_object_set_new(e, "datacontenttype", json_string("text/plain"));
        json_object_set_new(e, "data", json_string("Simple text"));
        return e;
    }
    if (strcmp(sample, "allExtensionTypes") == 0) {
        e = s_minimal("allExtensionTypes");
        json_object_set_new(e, "extinteger", json_integer(10));
        json_object_set_new(e, "extboolean", json_true());
        json_object_set_new(e, "extstring", json_string("text"));
        json_object_set_new(e, "extbinary", json_string("TWE=")); /* bytes { 0x4d, 0x61 } */
        json_object_set_new(e, "exttimestamp", json_string("2023-03-31T15:12:00Z"));
        json_object_set_new(e, "exturi", json_string("https://cloudevents.io"));
        json_object_set_new(e, "exturiref", json_string("//authority/path"));
        return e;
    }
    return NULL;
}

static json_t *s_golden_batch(const char *sample)
{
    json_t *b = json_array();
    if (strcmp(sample, "empty") == 0) {
        return b;
    }
    if (strcmp(sample, "minimal") == 0) {
        json_array_append_new(b, s_golden_event("minimal"));
    } else if (strcmp(sample, "minimal2") == 0) {
        json_array_append_new(b, s_golden_event("minimal"));
        json_array_append_new(b, s_golden_event("minimal"));
    } else if (strcmp(sample, "minimalAndAllCore") == 0) {
        json_array_append_new(b, s_golden_event("minimal"));
        json_array_append_new(b, s_golden_event("allCore"));
    } else if (strcmp(sample, "minimalAndAllExtensionTypes") == 0) {
        json_array_append_new(b, s_golden_event("minimal"));
        json_array_append_new(b, s_golden_event("allExtensionTypes"));
    } else {
        json_decref(b);
        return NULL;
    }
    return b;
}

static int s_b64v(char c)
{
    const char *tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = c ? strchr(tbl, c) : NULL;
    return p ? (int) (p - tbl) : -1;
}

/* Decodes padded Base64 into out; returns the byte count or -1. */
static long s_b64_decode(const char *s, unsigned char *out, size_t cap)
{
    size_t n = strlen(s), o = 0;
    if (n % 4) {
        return -1;
    }
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            v[k] = s[i + k] == '=' ? 0 : s_b64v(s[i + k]);
            if (v[k] < 0) {
                return -1;
            }
        }
        unsigned long w = (unsigned long) v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3];
        int bytes = s[i + 2] == '=' ? 1 : s[i + 3] == '=' ? 2 : 3;
        for (int k = 0; k < bytes; k++) {
            if (o >= cap) {
                return -1;
            }
            out[o++] = (unsigned char) (w >> (16 - 8 * k));
        }
    }
    return (long) o;
}

/* CloudEvent-relevant equality: same attributes (null counts as absent), timestamps as
 * instants to the millisecond, Binary attributes as bytes. */
static bool s_same_event(const json_t *event, const json_t *golden)
{
    const char *key;
    json_t *want, *got;

    json_object_foreach((json_t *) golden, key, want)
    {
        got = json_object_get(event, key);
        if (!got || json_is_null(got)) {
            print_message("missing attribute %s\n", key);
            return false;
        }
        if (strcmp(key, "time") == 0 || strcmp(key, "exttimestamp") == 0) {
            long long a, b;
            if (!em_rfc3339_parse(json_string_value(got), &a) ||
                !em_rfc3339_parse(json_string_value(want), &b) || a != b) {
                print_message("attribute %s: different instant\n", key);
                return false;
            }
        } else if (strcmp(key, "extbinary") == 0) {
            unsigned char a[16], b[16];
            long na = s_b64_decode(json_string_value(got) ? json_string_value(got) : "!", a, 16);
            long nb = s_b64_decode(json_string_value(want), b, 16);
            if (na < 0 || na != nb || memcmp(a, b, (size_t) na) != 0) {
                return false;
            }
        } else if (!json_equal(got, want)) {
            print_message("attribute %s differs\n", key);
            return false;
        }
    }
    json_object_foreach((json_t *) event, key, got)
    {
        if (!json_is_null(got) && !json_object_get(golden, key)) {
            print_message("unexpected attribute %s\n", key);
            return false;
        }
    }
    return true;
}

/* ---- the conformance data ---- */

/* The error each invalid test must produce (pointer within the event, keyword); for
 * batches, index is the element at fault. */
static const struct {
    const char *test;
    int index;
    const char *pointer;
    const char *keyword;
} s_expected[] = {
    { "invalidNoSpecVersion", 0, "/specversion", "required" },
    { "invalidNoId", 0, "/id", "required" },
    { "invalidNoType", 0, "/type", "required" },
    { "invalidNoSource", 0, "/source", "required" },
    { "invalidTimeGarbage", 0, "/time", "format" },
    { "invalidTimeToMinute", 0, "/time", "format" },
    { "invalidTimeOffsetX", 0, "/time", "format" },
    { "invalidTimeOffsetOutOfRange", 0, "/time", "format" },
    { "invalidTimeOffsetNonInteger", 0, "/time", "format" },
    { "invalidTimeOffsetHourOnly", 0, "/time", "format" },
    { "invalidEmptyId", 0, "/id", "minLength" },
    { "invalidEmptyType", 0, "/type", "minLength" },
    { "invalidEmptySource", 0, "/source", "minLength" },
    { "invalidEmptySpecVersion", 0, "/specversion", "enum" },
    { "invalidUnknownSpecVersion", 0, "/specversion", "enum" },
    { "invalidNonRfc2046DataContentType", 0, "/datacontenttype", "format" },
    { "invalidEmptyDataContentType", 0, "/datacontenttype", "minLength" },
    { "invalidEmptyDataSchema", 0, "/dataschema", "minLength" },
    { "invalidEmptySubject", 0, "/subject", "minLength" },
    { "invalidNumericId", 0, "/id", "type" },
    { "invalidObjectId", 0, "/id", "type" },
    { "invalidCapitalizedExtension", 0, "/MyExtension", "pattern" },
    { "invalidPunctuatedExtension", 0, "/my.extension", "pattern" },
    { "invalidNonIntegerExtensionValue", 0, "/my.extension", "type" },
    { "invalidBothDataAndDataBase64", 0, "/data_base64", "exclusive" },
    { "invalidBatchMixedSpecVersions", 1, "/specversion", "enum" },
    { "invalidBatchContainingInvalidCloudEvent", 0, "/id", "required" },
    { "invalidBatchContainingNonObject", 0, "", "type" },
};

typedef struct {
    const char *text;
    json_t *events; /* elements parsed from their own raw bytes */
} s_batch_parse_t;

static void s_collect_element(void *arg, size_t index, const char *start, size_t len)
{
    s_batch_parse_t *b = arg;
    (void) index;
    json_t *el = em_json_parse(start, len, 64, NULL);
    assert_non_null(el);
    json_array_append_new(b->events, el);
}

/* Runs one conformance test; returns true when it passed. */
static bool s_run_conformance(const char *default_type, const json_t *test)
{
    const char *id = json_string_value(json_object_get(test, "id"));
    const char *type = json_string_value(json_object_get(test, "testType"));
    const char *sample = json_string_value(json_object_get(test, "sampleId"));
    bool valid, batch;
    bool ok = true;

    type = type ? type : default_type;
    valid = strncmp(type, "Valid", 5) == 0;
    batch = strstr(type, "Batch") != NULL;

    json_t *events;
    if (batch) {
        /* As ingest does: split the batch text into each element's own bytes. */
        const json_t *arr = json_object_get(test, "batch");
        char *text = json_dumps(arr, JSON_ENCODE_ANY | JSON_COMPACT);
        assert_non_null(text);
        s_batch_parse_t b = { text, json_array() };
        long n = em_json_split_array(text, strlen(text), s_collect_element, &b);
        assert_int_equal(n, (long) json_array_size(arr));
        assert_true(json_equal(b.events, (json_t *) arr));
        free(text);
        events = b.events;
    } else {
        events = json_array();
        json_array_append(events, json_object_get(test, "event"));
    }

    size_t i;
    json_t *ev;
    int failures = 0, bad_index = -1;
    json_t *bad_errors = NULL;
    json_array_foreach(events, i, ev)
    {
        json_t *errors = NULL;
        if (s_check(ev, &errors) != 0) {
            failures++;
            if (bad_index < 0) {
                bad_index = (int) i;
                bad_errors = json_incref(errors);
            }
            if (valid) {
                char *dump = json_dumps(errors, JSON_COMPACT);
                print_message("%s: element %zu rejected: %s\n", id, i, dump);
                free(dump);
            }
        }
        json_decref(errors);
    }

    if (valid) {
        ok = failures == 0;
        json_t *golden = batch ? s_golden_batch(sample) : s_golden_event(sample);
        if (!golden) {
            print_message("%s: no golden sample %s\n", id, sample ? sample : "(none)");
            ok = false;
        } else if (batch) {
            if (json_array_size(golden) != json_array_size(events)) {
                ok = false;
            }
            for (i = 0; ok && i < json_array_size(events); i++) {
                ok = s_same_event(json_array_get(events, i), json_array_get(golden, i));
            }
        } else {
            ok = ok && s_same_event(json_array_get(events, 0), golden);
        }
        json_decref(golden);
    } else {
        ok = failures > 0;
        bool found = false;
        for (i = 0; i < sizeof s_expected / sizeof s_expected[0]; i++) {
            if (strcmp(s_expected[i].test, id) == 0) {
                found = true;
                if (bad_index != s_expected[i].index ||
                    !s_has_error(bad_errors, s_expected[i].pointer, s_expected[i].keyword)) {
                    char *dump = bad_errors ? json_dumps(bad_errors, JSON_COMPACT) : NULL;
                    print_message("%s: expected %s %s, got %s\n", id, s_expected[i].pointer,
                                  s_expected[i].keyword, dump ? dump : "no error");
                    free(dump);
                    ok = false;
                }
            }
        }
        if (!found) {
            print_message("%s: no expected error listed\n", id);
            ok = false;
        }
    }
    if (!ok) {
        print_message("conformance test %s failed\n", id);
    }
    json_decref(bad_errors);
    json_decref(events);
    return ok;
}

static void test_cloudevents_conformance(void **state)
{
    (void) state;
    static const char *files[] = {
        "cloudevents-conformance/format/json/valid-events.json",
        "cloudevents-conformance/format/json/invalid-events.json",
        "cloudevents-conformance/format/json/valid-batches.json",
        "cloudevents-conformance/format/json/invalid-batches.json",
    };
    size_t passed = 0, failed = 0;
    for (size_t f = 0; f < 4; f++) {
        json_t *doc = s_load(files[f]);
        const char *default_type = json_string_value(json_object_get(doc, "testType"));
        assert_non_null(default_type);
        size_t i;
        json_t *test;
        json_array_foreach(json_object_get(doc, "tests"), i, test)
        {
            if (s_run_conformance(default_type, test)) {
                passed++;
            } else {
                failed++;
            }
        }
        json_decref(doc);
    }
    print_message("cloudevents-conformance: %zu passed, %zu failed\n", passed, failed);
    assert_int_equal(failed, 0);
    assert_int_equal(passed, 43);
}

/* ---- the spec's JSON-format examples, structured and binary ---- */

static void s_enumerate_headers(void *src, em_header_visit_fn *fn, void *arg)
{
    const char *name;
    json_t *value;
    json_object_foreach((json_t *) src, name, value)
    {
        fn(arg, name, json_string_value(value));
    }
}

/* The string form a binary-mode header carries for a structured attribute value. */
static char *s_canonical_string(const json_t *v)
{
    char buf[64];
    if (json_is_string(v)) {
        return strdup(json_string_value(v));
    }
    if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%lld", (long long) json_integer_value(v));
        return strdup(buf);
    }
    if (json_is_boolean(v)) {
        return strdup(json_is_true(v) ? "true" : "false");
    }
    return NULL;
}

static void test_spec_examples(void **state)
{
    (void) state;
    json_t *doc = s_load("cloudevents-spec/json-format-examples.json");
    size_t passed = 0, failed = 0, binary = 0;
    size_t i;
    json_t *ex;

    json_array_foreach(json_object_get(doc, "examples"), i, ex)
    {
        const char *id = json_string_value(json_object_get(ex, "id"));
        bool placeholder = json_is_true(json_object_get(ex, "placeholder"));
        json_t *structured = json_object_get(ex, "structured");
        json_t *events = json_is_array(structured) ? json_incref(structured) : json_array();
        bool ok = true;
        if (json_is_object(structured)) {
            json_array_append(events, structured);
        }
        size_t k;
        json_t *ev;
        json_array_foreach(events, k, ev)
        {
            json_t *errors = NULL;
            int rc = s_check(ev, &errors);
            bool placeholder_b64 = placeholder && json_is_string(json_object_get(ev, "data_base64"));
            if (placeholder_b64) {
                /* "... base64 encoded string ..." is a placeholder, not Base64: that must be
                 * the one and only complaint. */
                ok = ok && rc == -1 && json_array_size(errors) == 1 &&
                     s_has_error(errors, "/data_base64", "contentEncoding");
            } else if (rc != 0) {
                char *dump = json_dumps(errors, JSON_COMPACT);
                print_message("%s: element %zu rejected: %s\n", id, k, dump);
                free(dump);
                ok = false;
            }
            json_decref(errors);
        }

        json_t *bm = json_object_get(ex, "binary_mode");
        if (bm) {
            binary++;
            const char *body = json_string_value(json_object_get(bm, "body"));
            json_t *errors = em_errors_new();
            json_t *conv = em_event_from_binary(s_enumerate_headers, json_object_get(bm, "headers"),
                                                body, strlen(body), errors);
            assert_non_null(conv);
            assert_int_equal(json_array_size(errors), 0);
            /* Same attributes; binary mode carries every value as its string form. */
            const char *key;
            json_t *v;
            json_object_foreach(structured, key, v)
            {
                if (json_is_null(v) || strcmp(key, "data") == 0 ||
                    strcmp(key, "data_base64") == 0) {
                    continue;
                }
                char *want = s_canonical_string(v);
                const char *got = em_event_str(conv, key);
                if (!want || !got || strcmp(want, got) != 0) {
                    print_message("%s: attribute %s: %s vs %s\n", id, key, want ? want : "-",
                                  got ? got : "-");
                    ok = false;
                }
                free(want);
            }
            json_object_foreach(conv, key, v)
            {
                /* A JSON-format event without datacontenttype implies application/json, which
                 * binary mode states explicitly (example 5). */
                bool implied = strcmp(key, "datacontenttype") == 0 &&
                               strcmp(json_string_value(v), "application/json") == 0;
                if (strcmp(key, "data") != 0 && strcmp(key, "data_base64") != 0 && !implied &&
                    !json_object_get(structured, key)) {
                    print_message("%s: extra attribute %s\n", id, key);
                    ok = false;
                }
            }
            /* The data, in the member the structured form uses. */
            if (json_object_get(structured, "data")) {
                ok = ok && json_equal(json_object_get(conv, "data"),
                                      json_object_get(structured, "data"));
                ok = ok && !json_object_get(conv, "data_base64");
            } else if (json_object_get(structured, "data_base64")) {
                ok = ok && json_is_string(json_object_get(conv, "data_base64"));
                ok = ok && !json_object_get(conv, "data");
                if (!placeholder) {
                    ok = ok && json_equal(json_object_get(conv, "data_base64"),
                                          json_object_get(structured, "data_base64"));
                }
            }
            if (!placeholder) {
                ok = ok && s_check(conv, NULL) == 0;
            }
            json_decref(conv);
            json_decref(errors);
        }
        if (ok) {
            passed++;
        } else {
            print_message("spec example %s failed\n", id);
            failed++;
        }
        json_decref(events);
    }
    json_decref(doc);
    print_message("cloudevents-spec examples: %zu passed, %zu failed (%zu binary mode)\n", passed,
                  failed, binary);
    assert_int_equal(failed, 0);
    assert_int_equal(passed, 8);
    assert_int_equal(binary, 6);
}

/* ---- the rules one by one ---- */

static json_t *s_with(const char *attr, json_t *value)
{
    json_t *e = s_minimal("x");
    json_object_set_new(e, attr, value);
    return e;
}

/* Checks minimal + {attr: value}: expect_ok, or the error pointer/keyword. */
static void s_expect(const char *attr, json_t *value, const char *keyword)
{
    json_t *e = s_with(attr, value);
    json_t *errors = NULL;
    int rc = s_check(e, &errors);
    if (!keyword) {
        if (rc != 0) {
            char *dump = json_dumps(errors, JSON_COMPACT);
            print_message("%s unexpectedly rejected: %s\n", attr, dump);
            free(dump);
        }
        assert_int_equal(rc, 0);
    } else {
        char ptr[128];
        snprintf(ptr, sizeof ptr, "/%s", attr);
        if (rc == 0) {
            print_message("%s unexpectedly accepted\n", attr);
        }
        assert_int_equal(rc, -1);
        assert_true(s_has_error(errors, ptr, keyword));
    }
    json_decref(errors);
    json_decref(e);
}

static void test_rfc3339(void **state)
{
    (void) state;
    long long ms = -1, ms2 = -2;
    assert_true(em_rfc3339_parse("1970-01-01T00:00:00Z", &ms));
    assert_int_equal(ms, 0);
    assert_true(em_rfc3339_parse("2018-04-05T17:31:00Z", &ms));
    assert_int_equal(ms, 1522949460000LL);
    assert_true(em_rfc3339_parse("2018-04-05t18:31:00.1234+01:00", &ms2));
    assert_int_equal(ms2, 1522949460123LL);
    assert_true(em_rfc3339_parse("2018-04-05T16:31:00.5-01:00", &ms2));
    assert_int_equal(ms2, 1522949460500LL);
    assert_true(em_rfc3339_parse("2018-04-05T17:31:00z", NULL));
    assert_true(em_rfc3339_parse("1969-12-31T23:59:59Z", &ms));
    assert_int_equal(ms, -1000);
    /* Leap years. */
    assert_true(em_rfc3339_parse("2020-02-29T00:00:00Z", NULL));
    assert_true(em_rfc3339_parse("2000-02-29T00:00:00Z", NULL));
    assert_false(em_rfc3339_parse("2019-02-29T00:00:00Z", NULL));
    assert_false(em_rfc3339_parse("1900-02-29T00:00:00Z", NULL));
    assert_false(em_rfc3339_parse("2018-04-31T00:00:00Z", NULL));
    assert_true(em_rfc3339_parse("2018-12-31T23:59:59Z", NULL));
    /* Leap second: only at 23:59 UTC. */
    assert_true(em_rfc3339_parse("1998-12-31T23:59:60Z", NULL));
    assert_true(em_rfc3339_parse("1998-12-31T15:59:60.123-08:00", NULL));
    assert_false(em_rfc3339_parse("1998-12-31T22:59:60Z", NULL));
    /* Malformed. */
    static const char *bad[] = {
        "lunchtime", "2018-04-05T18:31Z", "2018-04-05T18:31:00X", "2018-04-05T18:31:00+25:00",
        "2018-04-05T18:31:00+xx:00", "2018-04-05T18:31:00+05", "2018-04-05 18:31:00Z",
        "2018-04-05T18:31:00", "2018-13-05T18:31:00Z", "2018-00-05T18:31:00Z",
        "2018-04-00T18:31:00Z", "2018-04-05T24:00:00Z", "2018-04-05T23:60:00Z",
        "2018-04-05T18:31:00.Z", "2018-04-05T18:31:00+01:60", "18-04-05T18:31:00Z",
        "2018-4-05T18:31:00Z", "2018-04-05T18:31:00Zjunk", "", "2018-04-05T18:31:00+0100",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (em_rfc3339_parse(bad[i], NULL)) {
            print_message("accepted %s\n", bad[i]);
        }
        assert_false(em_rfc3339_parse(bad[i], NULL));
    }
    assert_false(em_rfc3339_parse(NULL, NULL));
}

static void test_attribute_rules(void **state)
{
    (void) state;
    /* datacontenttype: RFC 2046 type/subtype with parameters. */
    s_expect("datacontenttype", json_string("application/json"), NULL);
    s_expect("datacontenttype", json_string("text/plain; charset=utf-8"), NULL);
    s_expect("datacontenttype", json_string("multipart/form-data;boundary=\"a b;c\""), NULL);
    s_expect("datacontenttype", json_string("application/vnd.apache.thrift.binary"), NULL);
    s_expect("datacontenttype", json_string("xyz"), "format");
    s_expect("datacontenttype", json_string("text/"), "format");
    s_expect("datacontenttype", json_string("/plain"), "format");
    s_expect("datacontenttype", json_string("text/plain;"), "format");
    s_expect("datacontenttype", json_string("text/plain; charset"), "format");
    s_expect("datacontenttype", json_string("te xt/plain"), "format");
    s_expect("datacontenttype", json_integer(1), "type");
    /* dataschema: an absolute URI. */
    s_expect("dataschema", json_string("https://example.com/schema#v1"), NULL);
    s_expect("dataschema", json_string("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"), NULL);
    s_expect("dataschema", json_string("/relative/schema"), "format");
    s_expect("dataschema", json_string("https://exa mple.com"), "format");
    s_expect("dataschema", json_string("1http://x"), "format");
    /* source: a URI-reference. */
    s_expect("source", json_string("/sensors/tn-1234567/alerts"), NULL);
    s_expect("source", json_string("1-555-123-4567"), NULL);
    s_expect("source", json_string("mailto:cncf-wg-serverless@lists.cncf.io"), NULL);
    s_expect("source", json_string("urn:pk:gov:emining:cadastre%20kp"), NULL);
    s_expect("source", json_string("has space"), "format");
    s_expect("source", json_string("bad%zzpct"), "format");
    s_expect("source", json_string("a\nb"), "format");
    s_expect("source", json_string("1ab:c"), "format");
    s_expect("source", json_integer(5), "type");
    /* subject, time. */
    s_expect("subject", json_string("mynewfile.jpg"), NULL);
    s_expect("subject", json_false(), "type");
    s_expect("time", json_string("2018-04-05T17:31:00Z"), NULL);
    s_expect("time", json_integer(1522949460), "type");
    /* Extensions: string, integer (32-bit) or boolean; null means absent. */
    s_expect("province", json_string("PK-KP"), NULL);
    s_expect("ext1", json_integer(-2147483648LL), NULL);
    s_expect("ext1", json_integer(2147483647LL), NULL);
    s_expect("ext1", json_integer(2147483648LL), "type");
    s_expect("ext1", json_true(), NULL);
    s_expect("unsetextension", json_null(), NULL);
    s_expect("ext1", json_real(1.5), "type");
    s_expect("ext1", json_pack("{}"), "type");
    s_expect("ext1", json_pack("[]"), "type");
    /* Names longer than 20 characters are only a SHOULD NOT in the spec: accepted. */
    s_expect("abcdefghijklmnopqrstuvwxyz0123", json_string("v"), NULL);
    s_expect("ext_1", json_string("v"), "pattern");
    s_expect("Ext", json_string("v"), "pattern");
    s_expect("", json_string("v"), "pattern");
    /* data / data_base64. */
    s_expect("data", json_pack("{s:i}", "a", 1), NULL);
    s_expect("data", json_null(), NULL);
    s_expect("data_base64", json_string("TWE="), NULL);
    s_expect("data_base64", json_string(""), NULL);
    s_expect("data_base64", json_string("TWE"), "contentEncoding");
    s_expect("data_base64", json_string("T=WE"), "contentEncoding");
    s_expect("data_base64", json_string("TW=="), NULL);
    s_expect("data_base64", json_string("T==="), "contentEncoding");
    s_expect("data_base64", json_string("TW=E"), "contentEncoding");
    s_expect("data_base64", json_string("TWE-"), "contentEncoding");
    s_expect("data_base64", json_integer(3), "type");

    /* Not an object at all. */
    json_t *errors = NULL;
    json_t *arr = json_array();
    assert_int_equal(s_check(arr, &errors), -1);
    assert_true(s_has_error(errors, "", "type"));
    json_decref(errors);
    json_decref(arr);

    /* Every problem is reported, not only the first. */
    json_t *e = json_pack("{s:s,s:i,s:s,s:s}", "specversion", "0.3", "id", 1, "time", "x",
                          "Bad", "y");
    assert_int_equal(s_check(e, &errors), -1);
    assert_true(s_has_error(errors, "/specversion", "enum"));
    assert_true(s_has_error(errors, "/id", "type"));
    assert_true(s_has_error(errors, "/source", "required"));
    assert_true(s_has_error(errors, "/type", "required"));
    assert_true(s_has_error(errors, "/time", "format"));
    assert_true(s_has_error(errors, "/Bad", "pattern"));
    assert_int_equal(json_array_size(errors), 6);
    json_decref(errors);
    json_decref(e);

    /* Pointers escape '/' and '~'; long names are named in full. */
    char longname[401];
    memset(longname, 'q', 400);
    longname[400] = '\0';
    longname[200] = '/';
    e = s_with("a/b~c", json_string("v"));
    json_object_set_new(e, longname, json_string("v"));
    assert_int_equal(s_check(e, &errors), -1);
    assert_true(s_has_error(errors, "/a~1b~0c", "pattern"));
    char want[420];
    snprintf(want, sizeof want, "/%.200s~1%s", longname, longname + 201);
    assert_true(s_has_error(errors, want, "pattern"));
    assert_int_equal(json_array_size(errors), 2);
    json_decref(errors);
    json_decref(e);

    e = s_minimal("x");
    assert_string_equal(em_event_str(e, "id"), "x");
    assert_null(em_event_str(e, "time"));
    assert_null(em_event_str(NULL, "id"));
    json_decref(e);
}

static void test_base64_vectors(void **state)
{
    (void) state;
    json_t *doc = s_load("rfc4648-base64/vectors.json");
    size_t i;
    json_t *v;
    size_t n = 0;
    json_array_foreach(json_object_get(doc, "base64"), i, v)
    {
        const char *in = json_string_value(json_object_get(v, "input"));
        const char *b64 = json_string_value(json_object_get(v, "base64"));
        /* Valid in data_base64. */
        s_expect("data_base64", json_string(b64), NULL);
        /* And what binary mode produces for the raw bytes. */
        json_t *hdr = json_pack("{s:s,s:s,s:s,s:s}", "ce-specversion", "1.0", "ce-id", "1",
                                "ce-source", "/s", "ce-type", "t");
        json_t *conv = em_event_from_binary(s_enumerate_headers, hdr, in, strlen(in), NULL);
        assert_non_null(conv);
        if (*in) {
            assert_string_equal(em_event_str(conv, "data_base64"), b64);
        } else {
            assert_null(json_object_get(conv, "data_base64"));
        }
        json_decref(conv);
        json_decref(hdr);
        n++;
    }
    assert_int_equal(n, 7);
    json_decref(doc);
}

static void s_enumerate_pairs(void *src, em_header_visit_fn *fn, void *arg)
{
    for (const char *const *p = src; *p; p += 2) {
        fn(arg, p[0], p[1]);
    }
}

static json_t *s_binary(const char *const *headers, const char *body, size_t len,
                        json_t **errors_out)
{
    json_t *errors = em_errors_new();
    json_t *ev = em_event_from_binary(s_enumerate_pairs, (void *) headers, body, len, errors);
    assert_true(ev ? json_array_size(errors) == 0 : json_array_size(errors) > 0);
    if (errors_out) {
        *errors_out = errors;
    } else {
        json_decref(errors);
    }
    return ev;
}

static void test_binary_mode(void **state)
{
    (void) state;
    json_t *errors = NULL;
    /* Header names are case-insensitive; values are percent-decoded and trimmed. */
    const char *h1[] = { "CE-SpecVersion", "1.0", "ce-id", " 42 ", "Ce-Source", "/a%20b",
                         "ce-type", "t", "ce-subject", "%E2%82%AC%25", "Content-Type",
                         "text/plain; charset=utf-8", "x-other", "ignored", NULL };
    json_t *ev = s_binary(h1, "h\xc3\xa9llo", 6, NULL);
    assert_non_null(ev);
    assert_string_equal(em_event_str(ev, "specversion"), "1.0");
    assert_string_equal(em_event_str(ev, "id"), "42");
    assert_string_equal(em_event_str(ev, "source"), "/a b");
    assert_string_equal(em_event_str(ev, "subject"), "\xe2\x82\xac%");
    assert_string_equal(em_event_str(ev, "datacontenttype"), "text/plain; charset=utf-8");
    assert_string_equal(em_event_str(ev, "data"), "h\xc3\xa9llo");
    assert_null(json_object_get(ev, "x-other"));
    assert_int_equal(json_object_size(ev), 7);
    json_decref(ev);

    /* JSON bodies become JSON data; a text body that is not UTF-8 becomes data_base64. */
    const char *h2[] = { "ce-id", "1", "content-type", "application/cloudevents-x+json", NULL };
    ev = s_binary(h2, "{\"a\":[1,2]}", 11, NULL);
    assert_non_null(ev);
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(json_object_get(ev, "data"), "a"), 1)),
                     2);
    json_decref(ev);
    const char *h3[] = { "ce-id", "1", "content-type", "text/plain", NULL };
    ev = s_binary(h3, "\xff\x00", 2, NULL);
    assert_non_null(ev);
    assert_string_equal(em_event_str(ev, "data_base64"), "/wA=");
    assert_null(json_object_get(ev, "data"));
    json_decref(ev);
    /* No body, no data. */
    ev = s_binary(h3, NULL, 0, NULL);
    assert_non_null(ev);
    assert_null(json_object_get(ev, "data"));
    assert_null(json_object_get(ev, "data_base64"));
    json_decref(ev);

    /* Refusals. */
    const char *bad_json[] = { "ce-id", "1", "content-type", "application/json", NULL };
    assert_null(s_binary(bad_json, "{oops", 5, &errors));
    assert_true(s_has_error(errors, "/data", "json"));
    json_decref(errors);
    const char *bad_pct[] = { "ce-id", "1%zz", NULL };
    assert_null(s_binary(bad_pct, NULL, 0, &errors));
    assert_true(s_has_error(errors, "/id", "format"));
    json_decref(errors);
    const char *bad_pct2[] = { "ce-id", "1%2", NULL };
    assert_null(s_binary(bad_pct2, NULL, 0, &errors));
    json_decref(errors);
    const char *bad_utf8[] = { "ce-id", "%FF", NULL };
    assert_null(s_binary(bad_utf8, NULL, 0, &errors));
    assert_true(s_has_error(errors, "/id", "format"));
    json_decref(errors);
    const char *nul[] = { "ce-id", "a%00b", NULL };
    assert_null(s_binary(nul, NULL, 0, &errors));
    json_decref(errors);
    const char *bad_name[] = { "ce-my.ext", "1", NULL };
    assert_null(s_binary(bad_name, NULL, 0, &errors));
    assert_true(s_has_error(errors, "/my.ext", "pattern"));
    json_decref(errors);
    const char *data_hdr[] = { "ce-data", "1", NULL };
    assert_null(s_binary(data_hdr, NULL, 0, &errors));
    json_decref(errors);
    const char *dup[] = { "ce-id", "1", "CE-ID", "2", NULL };
    assert_null(s_binary(dup, NULL, 0, &errors));
    assert_true(s_has_error(errors, "/id", "duplicate"));
    json_decref(errors);

    /* Media type helpers. */
    assert_true(em_media_type_is_json("application/json"));
    assert_true(em_media_type_is_json("Application/JSON; charset=utf-8"));
    assert_true(em_media_type_is_json("application/cloudevents+json"));
    assert_false(em_media_type_is_json("application/jsonx"));
    assert_false(em_media_type_is_json("+json"));
    assert_false(em_media_type_is_json("text/plain"));
    assert_false(em_media_type_is_json(NULL));
}

/* ---- features/http-protocol-binding.feature: raw HTTP requests, both content modes ---- */

typedef struct {
    char *request;    /* the docstring after "Given an HTTP request" */
    char *attrs[16];  /* key, value pairs of "the attributes are" */
    size_t nattrs;
    char *data;       /* the docstring after "the data is equal to" */
    char *examples[8];
    size_t nexamples;
    bool binary;
} s_scenario_t;

static void s_scenario_clear(s_scenario_t *sc)
{
    free(sc->request);
    free(sc->data);
    for (size_t i = 0; i < sc->nattrs; i++) {
        free(sc->attrs[i]);
    }
    for (size_t i = 0; i < sc->nexamples; i++) {
        free(sc->examples[i]);
    }
    memset(sc, 0, sizeof *sc);
}

/* Replaces every "<contentType>" in s.  Caller owns return value. */
static char *s_subst(const char *s, const char *ct)
{
    const char *tag = "<contentType>";
    size_t n = strlen(s) + 1, tl = strlen(tag);
    for (const char *p = strstr(s, tag); p; p = strstr(p + tl, tag)) {
        n += strlen(ct);
    }
    char *out = malloc(n), *o = out;
    assert_non_null(out);
    while (*s) {
        if (strncmp(s, tag, tl) == 0) {
            o = stpcpy(o, ct);
            s += tl;
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    return out;
}

static char *s_trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) {
        s[--n] = '\0';
    }
    return s;
}

typedef struct {
    char *names[32];
    char *values[32];
    size_t n;
} s_headers_t;

static void s_enumerate_parsed(void *src, em_header_visit_fn *fn, void *arg)
{
    s_headers_t *h = src;
    for (size_t i = 0; i < h->n; i++) {
        fn(arg, h->names[i], h->values[i]);
    }
}

/* Runs one example of a scenario; returns true when it passed. */
static bool s_run_http(const s_scenario_t *sc, const char *ct)
{
    /* Six attributes and the data in each scenario of the file. */
    assert_int_equal(sc->nattrs, 12);
    assert_non_null(sc->data);
    char *req = s_subst(sc->request, ct);
    s_headers_t h = { .n = 0 };
    char *line = strchr(req, '\n'); /* skip the request line */
    char *body = NULL;
    assert_non_null(line);
    line++;
    while (line && *line) {
        char *end = strchr(line, '\n');
        if (end) {
            *end = '\0';
        }
        if (*s_trim(line) == '\0') {
            body = end ? end + 1 : NULL;
            break;
        }
        char *colon = strchr(line, ':');
        assert_non_null(colon);
        *colon = '\0';
        assert_true(h.n < 32);
        h.names[h.n] = s_trim(line);
        h.values[h.n] = s_trim(colon + 1);
        h.n++;
        line = end ? end + 1 : NULL;
    }
    assert_non_null(body);

    json_t *errors = em_errors_new();
    json_t *ev = NULL;
    if (sc->binary) {
        ev = em_event_from_binary(s_enumerate_parsed, &h, body, strlen(body), errors);
    } else {
        const char *type = NULL;
        for (size_t i = 0; i < h.n; i++) {
            if (strcasecmp(h.names[i], "content-type") == 0) {
                type = h.values[i];
            }
        }
        assert_true(em_media_type_is_json(type));
        json_decref(errors);
        ev = em_json_parse(body, strlen(body), 64, &errors);
        if (!errors) {
            errors = em_errors_new();
        }
    }
    bool ok = ev && s_check(ev, NULL) == 0;
    for (size_t i = 0; ok && i < sc->nattrs; i += 2) {
        char *want = s_subst(sc->attrs[i + 1], ct);
        const char *got = em_event_str(ev, sc->attrs[i]);
        if (!got || strcmp(got, want) != 0) {
            print_message("attribute %s: %s vs %s\n", sc->attrs[i], got ? got : "-", want);
            ok = false;
        }
        free(want);
    }
    if (ok && sc->data) {
        json_t *want = em_json_parse(sc->data, strlen(sc->data), 64, NULL);
        assert_non_null(want);
        ok = json_equal(want, json_object_get(ev, "data"));
        json_decref(want);
    }
    json_decref(ev);
    json_decref(errors);
    free(req);
    return ok;
}

static void test_http_binding_feature(void **state)
{
    (void) state;
    char path[1024];
    snprintf(path, sizeof path,
             "%s/testdata/cloudevents-conformance/features/http-protocol-binding.feature",
             s_shared());
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    s_scenario_t sc = { .request = NULL };
    char line[1024];
    enum { NONE, ATTRS, EXAMPLES } table = NONE;
    char **doc = NULL;        /* where the open docstring goes */
    char buf[8192] = "";      /* docstring being read */
    size_t passed = 0, failed = 0;

    for (;;) {
        bool eof = !fgets(line, sizeof line, f);
        char *t = eof ? line : s_trim(line);
        if (eof || strncmp(t, "Scenario", 8) == 0) {
            for (size_t i = 0; i < sc.nexamples; i++) {
                if (s_run_http(&sc, sc.examples[i])) {
                    passed++;
                } else {
                    print_message("http binding %s mode, %s: failed\n",
                                  sc.binary ? "binary" : "structured", sc.examples[i]);
                    failed++;
                }
            }
            s_scenario_clear(&sc);
            if (eof) {
                break;
            }
            sc.binary = strstr(t, "Binary content mode") != NULL;
            table = NONE;
            continue;
        }
        if (doc) {
            if (strcmp(t, "\"\"\"") == 0) {
                *doc = strdup(buf);
                doc = NULL;
            } else {
                /* Docstring lines are indented by 8 spaces in the file. */
                size_t ind = 0;
                while (ind < 8 && line[ind] == ' ') {
                    ind++;
                }
                strncat(buf, line + ind, sizeof buf - strlen(buf) - 2);
                strcat(buf, "\n");
            }
            continue;
        }
        if (strcmp(t, "\"\"\"") == 0) {
            doc = sc.request ? &sc.data : &sc.request;
            buf[0] = '\0';
            continue;
        }
        if (strncmp(t, "Then the attributes are", 23) == 0) {
            table = ATTRS;
        } else if (strncmp(t, "Examples:", 9) == 0) {
            table = EXAMPLES;
        } else if (t[0] == '|' && table != NONE) {
            char *cells[2] = { NULL, NULL };
            size_t nc = 0;
            char *save = NULL;
            for (char *c = strtok_r(t, "|", &save); c && nc < 2; c = strtok_r(NULL, "|", &save)) {
                cells[nc++] = s_trim(c);
            }
            if (table == ATTRS && nc == 2 && strcmp(cells[0], "key") != 0) {
                assert_true(sc.nattrs + 2 <= 16);
                sc.attrs[sc.nattrs++] = strdup(cells[0]);
                sc.attrs[sc.nattrs++] = strdup(cells[1]);
            } else if (table == EXAMPLES && nc == 1 && strcmp(cells[0], "contentType") != 0) {
                assert_true(sc.nexamples < 8);
                sc.examples[sc.nexamples++] = strdup(cells[0]);
            }
        } else if (t[0] != '\0' && table != EXAMPLES) {
            table = NONE;
        }
    }
    fclose(f);
    print_message("cloudevents-http-binding: %zu passed, %zu failed\n", passed, failed);
    assert_int_equal(failed, 0);
    assert_int_equal(passed, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cloudevents_conformance),
        cmocka_unit_test(test_spec_examples),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_attribute_rules),
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_binary_mode),
        cmocka_unit_test(test_http_binding_feature),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
