/* test_rules.c - every named domain rule of services/validate/rules.c on an event that keeps it
 * and one that breaks it: the pointer and keyword (the rule's name) of the error, or the note
 * for rules that only annotate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "em.h"
#include "../../services/validate/rules.h"

typedef struct {
    const char *rule;
    const char *event;   /* the whole event: {"province"?, "data": {...}} */
    const char *pointer; /* NULL: the rule is kept */
    bool note;           /* the finding is a note, not an error */
} rule_case_t;

#define RING_OK "[[[62.38,28.92],[62.48,28.92],[62.48,29.02],[62.38,29.02],[62.38,28.92]]]"
#define RING_OPEN "[[[62.38,28.92],[62.48,28.92],[62.48,29.02],[62.38,29.02],[62.0,28.0]]]"

static const rule_case_t s_cases[] = {
    {"holdersShareSum", "{\"data\":{\"holders\":[{\"sharePct\":50},{\"sharePct\":25},{\"sharePct\":25}]}}", NULL, false},
    {"holdersShareSum", "{\"data\":{\"holders\":[{\"sharePct\":33.3},{\"sharePct\":33.3},{\"sharePct\":33.3}]}}", "/data/holders", false},
    {"validToAfterValidFrom", "{\"data\":{\"validFrom\":\"2014-04-01\",\"validTo\":\"2044-03-31\"}}", NULL, false},
    {"validToAfterValidFrom", "{\"data\":{\"validFrom\":\"2014-04-01\",\"validTo\":\"2014-04-01\"}}", "/data/validTo", false},
    {"licenceTypeMatchesId", "{\"data\":{\"licenceId\":\"PK-BA/MDRL-3\",\"licenceType\":\"MDRL\"}}", NULL, false},
    {"licenceTypeMatchesId", "{\"data\":{\"licenceId\":\"PK-BA/MDRL-3\",\"licenceType\":\"ML\"}}", "/data/licenceType", false},
    {"periodStartNotAfterEnd", "{\"data\":{\"period\":{\"start\":\"2017-01-01\",\"end\":\"2017-01-01\"}}}", NULL, false},
    {"periodStartNotAfterEnd", "{\"data\":{\"period\":{\"start\":\"2017-09-30\",\"end\":\"2017-01-01\"}}}", "/data/period/end", false},
    {"newValidToAfterPrevious", "{\"data\":{\"previousValidTo\":\"2022-10-31\",\"newValidTo\":\"2037-10-31\"}}", NULL, false},
    {"newValidToAfterPrevious", "{\"data\":{\"previousValidTo\":\"2022-10-31\",\"newValidTo\":\"2022-10-30\"}}", "/data/newValidTo", false},
    {"gradePctAtMost100", "{\"data\":{\"items\":[{\"grades\":[{\"value\":100,\"unit\":\"pct\"},{\"value\":250,\"unit\":\"g_per_t\"}]}]}}", NULL, false},
    {"gradePctAtMost100", "{\"data\":{\"items\":[{},{\"grades\":[{\"value\":8.6,\"unit\":\"pct\"},{\"value\":100.5,\"unit\":\"pct\"}]}]}}", "/data/items/1/grades/1/value", false},
    {"gradePctAtMost100", "{\"data\":{\"assays\":[{\"value\":101,\"unit\":\"pct\"}]}}", "/data/assays/0/value", false},
    {"tenderPeriodStartBeforeEnd", "{\"data\":{\"tenderPeriod\":{\"start\":\"2026-02-02T09:00:00+05:00\",\"end\":\"2026-02-02T05:00:01Z\"}}}", NULL, false},
    {"tenderPeriodStartBeforeEnd", "{\"data\":{\"tenderPeriod\":{\"start\":\"2026-02-02T09:00:00+05:00\",\"end\":\"2026-02-02T04:00:00Z\"}}}", "/data/tenderPeriod/end", false},
    {"discoveryNotifiedLate", "{\"data\":{\"discoveredOn\":\"2024-02-20\",\"notifiedOn\":\"2024-03-21\"}}", NULL, false},
    {"discoveryNotifiedLate", "{\"data\":{\"discoveredOn\":\"2024-02-20\",\"notifiedOn\":\"2024-03-22\"}}", "/data/notifiedOn", true},
    {"notifiedNotBeforeDiscovered", "{\"data\":{\"discoveredOn\":\"2024-02-20\",\"notifiedOn\":\"2024-02-20\"}}", NULL, false},
    {"notifiedNotBeforeDiscovered", "{\"data\":{\"discoveredOn\":\"2024-02-20\",\"notifiedOn\":\"2024-02-19\"}}", "/data/notifiedOn", false},
    {"appliedAreaRequired", "{\"data\":{\"licenceType\":\"QL\"}}", NULL, false},
    {"appliedAreaRequired", "{\"data\":{\"licenceType\":\"MDRL\"}}", "/data", false},
    {"licenceProvinceMatches", "{\"province\":\"PK-SD\",\"data\":{\"licenceId\":\"PK-SD/ML-THAR-BLOCK-II\"}}", NULL, false},
    {"licenceProvinceMatches", "{\"province\":\"PK-BA\",\"data\":{\"licenceId\":\"PK-SD/ML-THAR-BLOCK-II\"}}", "/data/licenceId", false},
    {"licenceProvinceMatches", "{\"province\":\"PK-BA\",\"data\":{\"licenceIds\":[\"PK-BA/EL-5\",\"PK-KP/EL-1\"]}}", "/data/licenceIds/1", false},
    {"revocationAfterNotice", "{\"data\":{\"noticeIssuedOn\":\"2024-06-01\",\"effectiveOn\":\"2024-06-01\"}}", NULL, false},
    {"revocationAfterNotice", "{\"data\":{\"noticeIssuedOn\":\"2024-06-01\",\"effectiveOn\":\"2024-05-31\"}}", "/data/effectiveOn", false},
    {"agreementEffectiveRange", "{\"data\":{\"effectiveFrom\":\"2022-11-01\",\"effectiveTo\":\"2037-10-31\"}}", NULL, false},
    {"agreementEffectiveRange", "{\"data\":{\"effectiveFrom\":\"2022-11-01\",\"effectiveTo\":\"2022-11-01\"}}", "/data/effectiveTo", false},
    {"incidentSeverityConsistent", "{\"data\":{\"severity\":\"near_miss\",\"fatalities\":0,\"injuries\":0}}", NULL, false},
    {"incidentSeverityConsistent", "{\"data\":{\"severity\":\"injury\",\"fatalities\":2,\"injuries\":1}}", "/data/severity", false},
    {"incidentSeverityConsistent", "{\"data\":{\"severity\":\"near_miss\",\"fatalities\":0,\"injuries\":1}}", "/data/severity", false},
    {"royaltyCurrencyConsistent", "{\"data\":{\"amountDue\":{\"currency\":\"PKR\"},\"amountPaid\":{\"currency\":\"PKR\"}}}", NULL, false},
    {"royaltyCurrencyConsistent", "{\"data\":{\"amountDue\":{\"currency\":\"PKR\"},\"amountPaid\":{\"currency\":\"CNY\"}}}", "/data/amountPaid/currency", false},
    {"areaRingClosed", "{\"data\":{\"area\":{\"type\":\"Polygon\",\"coordinates\":" RING_OK "}}}", NULL, false},
    {"areaRingClosed", "{\"data\":{\"area\":{\"type\":\"MultiPolygon\",\"coordinates\":[" RING_OK "," RING_OPEN "]}}}", "/data/area/coordinates/1/0", false},
    {"kpExplorationTransferAfter2Years", "{\"data\":{\"licenceId\":\"PK-KP/EL-7\",\"issuedOn\":\"2022-01-10\",\"effectiveOn\":\"2024-01-10\"}}", NULL, false},
    {"kpExplorationTransferAfter2Years", "{\"data\":{\"licenceId\":\"PK-KP/EL-7\",\"issuedOn\":\"2022-01-10\",\"effectiveOn\":\"2023-12-31\"}}", "/data/effectiveOn", false},
    {"kpExplorationTransferAfter2Years", "{\"data\":{\"licenceId\":\"PK-BA/EL-7\",\"issuedOn\":\"2022-01-10\",\"effectiveOn\":\"2023-12-31\"}}", NULL, false},
    {"shipmentWeightUnit", "{\"data\":{\"hsCode\":\"2608\",\"netWeight\":{\"unit\":\"dmt\"}}}", NULL, false},
    {"shipmentWeightUnit", "{\"data\":{\"hsCode\":\"7402\",\"netWeight\":{\"unit\":\"t\"}}}", NULL, false},
    {"shipmentWeightUnit", "{\"data\":{\"hsCode\":\"2603.00\",\"netWeight\":{\"unit\":\"t\"}}}", "/data/netWeight/unit", false},
    {"shipmentWeightUnit", "{\"data\":{\"hsCode\":\"7402\",\"netWeight\":{\"unit\":\"dmt\"}}}", "/data/netWeight/unit", false},
    {"hsCodeExpected", "{\"data\":{\"hsCode\":\"2701.12\"}}", NULL, false},
    {"hsCodeExpected", "{\"data\":{\"hsCode\":\"2501\"}}", "/data/hsCode", true},
    {"noPersonalIdentifiers", "{\"data\":{\"incidentId\":\"INS-BA-2021-0042\",\"n\":\"12345-67\",\"d\":{\"en\":\"call 0300\"}}}", NULL, false},
    {"noPersonalIdentifiers", "{\"data\":{\"description\":{\"en\":\"Injured: CNIC 35202-1234567-1\"}}}", "/data/description/en", false},
    {"noPersonalIdentifiers", "{\"data\":{\"parties\":[{},{\"a/b\":\"tel +92 300 1234567\"}]}}", "/data/parties/1/a~1b", false},
    {"noPersonalIdentifiers", "{\"data\":{\"note\":\"0321-7654321\"}}", "/data/note", false},
    {"provinceCode", "{\"province\":\"PK-GB\",\"data\":{}}", NULL, false},
    {"provinceCode", "{\"province\":\"PK-XX\",\"data\":{}}", "/province", false},
    {"projectIdMatches", "{\"projectid\":\"duddar\",\"data\":{\"projectId\":\"duddar\"}}", NULL, false},
    {"projectIdMatches", "{\"projectid\":\"saindak\",\"data\":{\"projectId\":\"duddar\"}}", "/data/projectId", false},
};

static void test_each_case(void **state)
{
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < sizeof s_cases / sizeof *s_cases; i++) {
        const rule_case_t *c = &s_cases[i];
        const vrule_t *r = vrules_find(c->rule);
        json_t *ev = json_loads(c->event, 0, NULL);
        json_t *errors = json_array(), *notes = json_array();
        assert_non_null(r);
        assert_non_null(ev);
        r->check(ev, json_object_get(ev, "data"), errors, notes);
        json_t *found = c->note ? notes : errors, *other = c->note ? errors : notes;
        json_t *e = json_array_get(found, 0);
        bool ok = c->pointer ? json_array_size(found) == 1 && json_array_size(other) == 0 &&
                                   strcmp(json_string_value(json_object_get(e, "pointer")), c->pointer) == 0 &&
                                   strcmp(json_string_value(json_object_get(e, "keyword")), c->rule) == 0 &&
                                   json_string_length(json_object_get(e, "message")) > 0
                             : json_array_size(errors) == 0 && json_array_size(notes) == 0;
        if (!ok) {
            char *a = json_dumps(errors, JSON_COMPACT), *b = json_dumps(notes, JSON_COMPACT);
            fprintf(stderr, "case %zu (%s): want %s, got errors %s notes %s\n", i, c->rule,
                    c->pointer ? c->pointer : "nothing", a, b);
            free(a);
            free(b);
            bad++;
        }
        json_decref(errors);
        json_decref(notes);
        json_decref(ev);
    }
    assert_int_equal(bad, 0);
}

/* Every rule of the table has a case that keeps it and one that breaks it. */
static void test_every_rule_is_tested(void **state)
{
    (void)state;
    size_t n;
    const vrule_t *t = vrules_table(&n);
    assert_true(n >= 10);
    for (size_t i = 0; i < n; i++) {
        int keep = 0, broken = 0;
        for (size_t j = 0; j < sizeof s_cases / sizeof *s_cases; j++)
            if (strcmp(s_cases[j].rule, t[i].name) == 0)
                *(s_cases[j].pointer ? &broken : &keep) += 1;
        if (!keep || !broken)
            fprintf(stderr, "rule %s: %d keeping and %d breaking cases\n", t[i].name, keep, broken);
        assert_true(keep > 0 && broken > 0);
        assert_non_null(t[i].summary);
    }
}

/* Fields of the wrong type are left to the schema: no rule crashes or reports them. */
static void test_rules_skip_wrong_types(void **state)
{
    (void)state;
    const char *odd = "{\"province\":7,\"data\":{\"holders\":\"x\",\"validFrom\":1,\"validTo\":[],"
                      "\"period\":\"2017\",\"items\":[1,{\"grades\":{}}],\"assays\":null,"
                      "\"tenderPeriod\":{\"start\":\"x\"},\"licenceType\":5,\"licenceId\":\"PK\","
                      "\"area\":{\"type\":\"Polygon\",\"coordinates\":[[1,2,3,4]]},"
                      "\"severity\":\"fatality\",\"fatalities\":\"1\",\"licenceIds\":{}}}";
    json_t *ev = json_loads(odd, 0, NULL), *errors = json_array(), *notes = json_array();
    assert_non_null(ev);
    vrules_apply("licence.granted", ev, json_object_get(ev, "data"), errors, notes);
    vrules_apply("safety.incidentreported", ev, json_object_get(ev, "data"), errors, notes);
    vrules_apply("tender.published", ev, json_object_get(ev, "data"), errors, notes);
    /* only the ring made of numbers instead of positions may be reported (not closed) */
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
        assert_string_equal(json_string_value(json_object_get(e, "keyword")), "areaRingClosed");
    assert_int_equal(json_array_size(notes), 0);
    json_decref(errors);
    json_decref(notes);
    json_decref(ev);
}

static void test_apply_selects_rules_by_type(void **state)
{
    (void)state;
    json_t *ev = json_loads("{\"data\":{\"validFrom\":\"2020-01-01\",\"validTo\":\"2019-01-01\"}}", 0, NULL);
    json_t *errors = json_array();
    assert_int_equal(vrules_apply("licence.renewed", ev, json_object_get(ev, "data"), errors, NULL), 0);
    assert_int_equal(vrules_apply("licence.granted", ev, json_object_get(ev, "data"), errors, NULL), 1);
    json_decref(errors);
    json_decref(ev);
}

static void test_time_parsing(void **state)
{
    (void)state;
    long long a, b;
    assert_true(vrules_time("2024-02-29", &a));
    assert_true(vrules_time("2024-02-29T05:00:00+05:00", &b));
    assert_true(a == b);
    assert_false(vrules_time("29/02/2024", &a));
    assert_false(vrules_time(NULL, &a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_case),
        cmocka_unit_test(test_every_rule_is_tested),
        cmocka_unit_test(test_rules_skip_wrong_types),
        cmocka_unit_test(test_apply_selects_rules_by_type),
        cmocka_unit_test(test_time_parsing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
