/* test_validate.c - validate's pure part: the verdict and the indexed attributes it adds to
 * a pipeline header, for valid, invalid, malformed and too-deep events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "em.h"
#include "../../services/validate/validate.h"

static json_t *s_verdict(const char *raw, int max_depth)
{
    json_t *hdr = json_pack("{s:s, s:i, s:i}", "ing", "abc", "req", 7, "idx", 0);
    json_t *out = validate_event(hdr, raw, strlen(raw), max_depth);
    json_decref(hdr);
    return out;
}

static const char *s_str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static void test_valid_event_passes_with_attributes(void **state)
{
    (void)state;
    json_t *v = s_verdict(
        "{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"/pk/ba/mmdd/cadastre\","
        "\"type\":\"pk.gov.emining.licence.granted\",\"subject\":\"PK-BA/EL-5\","
        "\"time\":\"2026-01-28T10:00:00+05:00\",\"province\":\"PK-BA\",\"visibility\":\"public\","
        "\"projectid\":\"reko-diq\",\"data\":{\"x\":52.76}}",
        32);
    assert_string_equal(s_str(v, "verdict"), "ok");
    assert_null(json_object_get(v, "errors"));
    assert_string_equal(s_str(v, "type"), "pk.gov.emining.licence.granted");
    assert_string_equal(s_str(v, "subject"), "PK-BA/EL-5");
    assert_string_equal(s_str(v, "province"), "PK-BA");
    assert_string_equal(s_str(v, "visibility"), "public");
    assert_string_equal(s_str(v, "projectid"), "reko-diq");
    /* The incoming header travels on unchanged. */
    assert_string_equal(s_str(v, "ing"), "abc");
    assert_int_equal(json_integer_value(json_object_get(v, "req")), 7);
    json_decref(v);
}

static void test_invalid_envelope_names_pointer_and_keyword(void **state)
{
    (void)state;
    json_t *v = s_verdict("{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"/x\","
                          "\"type\":\"t\",\"time\":\"not a time\"}",
                          32);
    assert_string_equal(s_str(v, "verdict"), "rejected");
    json_t *e = json_array_get(json_object_get(v, "errors"), 0);
    assert_non_null(e);
    assert_string_equal(s_str(e, "pointer"), "/time");
    assert_string_equal(s_str(e, "keyword"), "format");
    assert_non_null(s_str(e, "message"));
    json_decref(v);
}

static void test_missing_required_attributes_each_reported(void **state)
{
    (void)state;
    json_t *v = s_verdict("{\"specversion\":\"1.0\"}", 32);
    assert_string_equal(s_str(v, "verdict"), "rejected");
    json_t *errs = json_object_get(v, "errors");
    int id = 0, source = 0, type = 0;
    size_t i;
    json_t *e;
    json_array_foreach(errs, i, e)
    {
        id += strcmp(s_str(e, "pointer"), "/id") == 0;
        source += strcmp(s_str(e, "pointer"), "/source") == 0;
        type += strcmp(s_str(e, "pointer"), "/type") == 0;
    }
    assert_int_equal(id + source + type, 3);
    json_decref(v);
}

static void test_malformed_and_deep_and_non_object(void **state)
{
    (void)state;
    json_t *v = s_verdict("{\"id\":", 32);
    assert_string_equal(s_str(v, "verdict"), "rejected");
    assert_string_equal(s_str(json_array_get(json_object_get(v, "errors"), 0), "keyword"), "json");
    json_decref(v);

    v = s_verdict("{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"/x\",\"type\":\"t\","
                  "\"data\":[[[[[[1]]]]]]}",
                  4);
    assert_string_equal(s_str(v, "verdict"), "rejected");
    assert_string_equal(s_str(json_array_get(json_object_get(v, "errors"), 0), "keyword"),
                        "maxDepth");
    json_decref(v);

    v = s_verdict("[1,2]", 32);
    assert_string_equal(s_str(v, "verdict"), "rejected");
    assert_string_equal(s_str(json_array_get(json_object_get(v, "errors"), 0), "keyword"), "type");
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_event_passes_with_attributes),
        cmocka_unit_test(test_invalid_envelope_names_pointer_and_keyword),
        cmocka_unit_test(test_missing_required_attributes_each_reported),
        cmocka_unit_test(test_malformed_and_deep_and_non_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
