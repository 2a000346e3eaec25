/* test_filter.c - the Subscriptions API filter dialects, the domain filters, and the
 * visibility tiers of domain.md §6 with adversarial organisations (a competitor enterprise,
 * another province's department, the public) over every event of tests/fixtures/events in
 * every tier: zero leaks, and the rightful audiences do receive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_filter.h"

#define FIXTURES "tests/fixtures/events"
#define MAX_EVENTS 256

static json_t *s_json(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j)
        fail_msg("bad test JSON: %s: %s", text, jerr.text);
    return j;
}

/* ---------------------------------------------------------------------------------------- */
/* Dialects */

static const char *s_event_text =
    "{\"specversion\":\"1.0\",\"id\":\"e1\",\"source\":\"/pk/ba/mmdd/cadastre\","
    "\"type\":\"pk.gov.emining.licence.granted\",\"subject\":\"PK-BA/ML-SAINDAK\","
    "\"province\":\"PK-BA\",\"visibility\":\"public\",\"projectid\":\"saindak\","
    "\"revision\":3,\"flag\":true,\"data\":{\"licenceId\":\"PK-BA/ML-SAINDAK\","
    "\"minerals\":[\"copper\",\"gold\"]}}";

static void test_dialects(void **state)
{
    (void)state;
    static const struct {
        const char *filters;
        int want;
    } cases[] = {
        {"[]", 1},
        {"[{\"exact\":{\"type\":\"pk.gov.emining.licence.granted\"}}]", 1},
        {"[{\"exact\":{\"type\":\"pk.gov.emining.licence.Granted\"}}]", 0}, /* case-sensitive */
        {"[{\"exact\":{\"type\":\"pk.gov.emining.licence\"}}]", 0},
        {"[{\"prefix\":{\"type\":\"pk.gov.emining.licence.\"}}]", 1},
        {"[{\"prefix\":{\"type\":\"pk.gov.emining.royalty.\"}}]", 0},
        {"[{\"prefix\":{\"source\":\"\"}}]", 1},
        {"[{\"suffix\":{\"type\":\".granted\"}}]", 1},
        {"[{\"suffix\":{\"type\":\"xpk.gov.emining.licence.granted\"}}]", 0},
        {"[{\"exact\":{\"missingattr\":\"\"}}]", 0},
        {"[{\"prefix\":{\"missingattr\":\"\"}}]", 0},
        {"[{\"not\":{\"exact\":{\"missingattr\":\"x\"}}}]", 1},
        {"[{\"exact\":{\"revision\":\"3\"}}]", 1},
        {"[{\"exact\":{\"flag\":\"true\"}}]", 1},
        {"[{\"exact\":{\"province\":\"PK-BA\"}},{\"suffix\":{\"subject\":\"SAINDAK\"}}]", 1},
        {"[{\"exact\":{\"province\":\"PK-BA\"}},{\"suffix\":{\"subject\":\"THAR\"}}]", 0},
        {"[{\"all\":[{\"exact\":{\"province\":\"PK-BA\"}},{\"prefix\":{\"id\":\"e\"}}]}]", 1},
        {"[{\"all\":[{\"exact\":{\"province\":\"PK-BA\"}},{\"prefix\":{\"id\":\"x\"}}]}]", 0},
        {"[{\"any\":[{\"exact\":{\"province\":\"PK-SD\"}},{\"prefix\":{\"id\":\"e\"}}]}]", 1},
        {"[{\"any\":[{\"exact\":{\"province\":\"PK-SD\"}},{\"prefix\":{\"id\":\"x\"}}]}]", 0},
        {"[{\"not\":{\"exact\":{\"province\":\"PK-BA\"}}}]", 0},
        {"[{\"not\":{\"not\":{\"exact\":{\"province\":\"PK-BA\"}}}}]", 1},
        {"[{\"not\":{\"any\":[{\"exact\":{\"province\":\"PK-SD\"}},"
         "{\"all\":[{\"suffix\":{\"type\":\"granted\"}},{\"exact\":{\"projectid\":\"saindak\"}}]}]}}]",
         0},
        /* data is not an attribute: a value inside data never matches a filter */
        {"[{\"not\":{\"exact\":{\"subject\":\"\"}}}]", 1},
    };
    json_t *ev = s_json(s_event_text);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[256] = "";
        json_t *f = s_json(cases[i].filters);
        em_filter_t *flt = em_filter_new(f, err, sizeof err);
        if (!flt)
            fail_msg("case %zu %s: %s", i, cases[i].filters, err);
        if (em_filter_matches(flt, ev) != cases[i].want)
            fail_msg("case %zu %s: expected %d", i, cases[i].filters, cases[i].want);
        em_filter_destroy(&flt);
        em_filter_destroy(&flt);
        json_decref(f);
    }
    /* NULL filters match everything; a non-object event matches nothing. */
    char err[64];
    em_filter_t *all = em_filter_new(NULL, err, sizeof err);
    assert_non_null(all);
    assert_int_equal(em_filter_matches(all, ev), 1);
    json_t *arr = json_array();
    assert_int_equal(em_filter_matches(all, arr), 0);
    json_decref(arr);
    em_filter_destroy(&all);
    json_decref(ev);
}

static void test_filter_errors(void **state)
{
    (void)state;
    static const struct {
        const char *filters;
        const char *err;
    } cases[] = {
        {"{}", "filters: must be an array of filter expressions"},
        {"[1]", "filters/0: a filter expression is an object with exactly one dialect member"},
        {"[{}]", "filters/0: a filter expression is an object with exactly one dialect member"},
        {"[{\"exact\":{\"type\":\"a\"},\"prefix\":{\"type\":\"a\"}}]",
         "filters/0: a filter expression is an object with exactly one dialect member"},
        {"[{\"sql\":\"type = 'x'\"}]",
         "filters/0: unknown dialect 'sql' (expected exact, prefix, suffix, all, any or not)"},
        {"[{\"exact\":{}}]", "filters/0/exact: must be an object with exactly one attribute"},
        {"[{\"exact\":{\"type\":\"a\",\"source\":\"b\"}}]",
         "filters/0/exact: must be an object with exactly one attribute"},
        {"[{\"prefix\":\"type\"}]", "filters/0/prefix: must be an object with exactly one attribute"},
        {"[{\"suffix\":{\"type\":1}}]", "filters/0/suffix/type: the value must be a string"},
        {"[{\"exact\":{\"Type\":\"a\"}}]",
         "filters/0/exact: 'Type' is not a CloudEvents attribute name ([a-z0-9]{1,20}, not data)"},
        {"[{\"exact\":{\"data\":\"a\"}}]",
         "filters/0/exact: 'data' is not a CloudEvents attribute name ([a-z0-9]{1,20}, not data)"},
        {"[{\"all\":[]}]", "filters/0/all: must be a non-empty array of filter expressions"},
        {"[{\"any\":{}}]", "filters/0/any: must be a non-empty array of filter expressions"},
        {"[{\"not\":[]}]", "filters/0/not: must be one filter expression (an object)"},
        {"[{\"exact\":{\"type\":\"a\"}},{\"any\":[{\"exact\":{\"type\":\"a\"}},{\"regex\":1}]}]",
         "filters/1/any/1: unknown dialect 'regex' (expected exact, prefix, suffix, all, any or not)"},
        {"[{\"not\":{\"not\":{\"exact\":{\"id\":5}}}}]",
         "filters/0/not/not/exact/id: the value must be a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[256] = "";
        json_t *f = s_json(cases[i].filters);
        em_filter_t *flt = em_filter_new(f, err, sizeof err);
        if (flt)
            fail_msg("case %zu %s was accepted", i, cases[i].filters);
        assert_string_equal(err, cases[i].err);
        json_decref(f);
    }
    /* Nesting is bounded. */
    char deep[4096] = "[";
    for (int i = 0; i < 40; i++)
        strcat(deep, "{\"not\":");
    strcat(deep, "{\"exact\":{\"id\":\"x\"}}");
    for (int i = 0; i < 40; i++)
        strcat(deep, "}");
    strcat(deep, "]");
    json_t *f = s_json(deep);
    char err[256];
    assert_null(em_filter_new(f, err, sizeof err));
    assert_non_null(strstr(err, "nested deeper than 32"));
    json_decref(f);
}

static void test_domain_and_types(void **state)
{
    (void)state;
    json_t *ev = s_json(s_event_text);
    const char *ba[] = {"PK-BA"}, *sd[] = {"PK-SD"}, *gold[] = {"zinc", "gold"},
               *zinc[] = {"zinc"}, *saindak[] = {"saindak"}, *duddar[] = {"duddar"},
               *lic[] = {"PK-BA/ML-SAINDAK"}, *lic2[] = {"PK-BA/ML-EXAMPLE"};
    em_domain_filter_t d = {0};
    assert_int_equal(em_domain_matches(NULL, ev), 1);
    assert_int_equal(em_domain_matches(&d, ev), 1);
    d.provinces = ba, d.nprovinces = 1;
    assert_int_equal(em_domain_matches(&d, ev), 1);
    d.provinces = sd;
    assert_int_equal(em_domain_matches(&d, ev), 0);
    d.provinces = ba;
    d.minerals = gold, d.nminerals = 2;
    assert_int_equal(em_domain_matches(&d, ev), 1);
    d.minerals = zinc, d.nminerals = 1;
    assert_int_equal(em_domain_matches(&d, ev), 0);
    d.minerals = NULL, d.nminerals = 0;
    d.projects = saindak, d.nprojects = 1;
    assert_int_equal(em_domain_matches(&d, ev), 1);
    d.projects = duddar;
    assert_int_equal(em_domain_matches(&d, ev), 0);
    d.projects = NULL, d.nprojects = 0;
    d.licences = lic, d.nlicences = 1;
    assert_int_equal(em_domain_matches(&d, ev), 1);
    d.licences = lic2;
    assert_int_equal(em_domain_matches(&d, ev), 0);

    /* Minerals of production items. */
    json_t *prod = s_json("{\"type\":\"t\",\"data\":{\"items\":[{\"mineral\":\"lead\"},"
                          "{\"mineral\":\"zinc\"}]}}");
    em_domain_filter_t dz = {.minerals = zinc, .nminerals = 1};
    assert_int_equal(em_domain_matches(&dz, prod), 1);
    json_decref(prod);

    const char *types[] = {"pk.gov.emining.royalty.paid", "pk.gov.emining.licence.granted"};
    assert_int_equal(em_types_match(NULL, 0, ev), 1);
    assert_int_equal(em_types_match(types, 2, ev), 1);
    assert_int_equal(em_types_match(types, 1, ev), 0);
    json_decref(ev);
}

/* ---------------------------------------------------------------------------------------- */
/* Visibility */

/* The organisations of the test.  Party ids are what the tests write into the fixtures. */
#define MHD_SECP "0045121"                 /* MCC Huaye Duddar Mining Company (exporter) */
#define MCC_USCC "91110000100001234X"      /* MCC (consignee, China) */
#define SECMC_SECP "0077551"               /* Sindh Engro Coal Mining (holder, Thar II) */
#define POWERCHINA_USCC "91110000717825966F"
#define RIVAL_USCC "91650000MA77RIVAL1"    /* a competitor, Chinese parent of nothing here */

static const char *s_mhd_ids[] = {MHD_SECP};
static const char *s_mhd_src[] = {"/operators/mhd"};
static const char *s_mcc_ids[] = {MCC_USCC};
static const char *s_secmc_ids[] = {SECMC_SECP};
static const char *s_pc_ids[] = {POWERCHINA_USCC};
static const char *s_rival_ids[] = {RIVAL_USCC, ""};
static const char *s_rival_src[] = {"/operators/mhd-rival", "/operators/mh", "/pk/ba/mmd"};
static const char *s_ba_src[] = {"/pk/ba/mmdd/"};
static const char *s_sd_src[] = {"/pk/sd/coal"};
static const char *s_mw_src[] = {"/pk/fed/minerals-wing"};
static const char *s_pub_src[] = {"/pk/ba/mmdd", "/operators/mhd"}; /* ignored for public */

typedef struct {
    const char *name;
    em_org_t org;
    int adversary; /* must see public events only */
} org_case_t;

static const org_case_t s_orgs[] = {
    {"public portal", {EM_ORG_PUBLIC, NULL, NULL, 0, s_pub_src, 2}, 1},
    {"competitor enterprise", {EM_ORG_ENTERPRISE, NULL, s_rival_ids, 2, s_rival_src, 3}, 1},
    {"Gilgit-Baltistan department", {EM_ORG_AUTHORITY, "PK-GB", NULL, 0, NULL, 0}, 1},
    {"authority without province", {EM_ORG_AUTHORITY, NULL, NULL, 0, NULL, 0}, 1},
    {"enterprise named federal", {EM_ORG_ENTERPRISE, "federal", NULL, 0, NULL, 0}, 1},
    {"Sindh department", {EM_ORG_AUTHORITY, "PK-SD", NULL, 0, s_sd_src, 1}, 0},
    {"Balochistan department", {EM_ORG_AUTHORITY, "PK-BA", NULL, 0, s_ba_src, 1}, 0},
    {"Minerals Wing (federal)", {EM_ORG_AUTHORITY, "federal", NULL, 0, s_mw_src, 1}, 0},
    {"MHD (operator, exporter)", {EM_ORG_ENTERPRISE, NULL, s_mhd_ids, 1, s_mhd_src, 1}, 0},
    {"MCC (consignee)", {EM_ORG_ENTERPRISE, NULL, s_mcc_ids, 1, NULL, 0}, 0},
    {"SECMC (holder)", {EM_ORG_ENTERPRISE, NULL, s_secmc_ids, 1, NULL, 0}, 0},
    {"POWERCHINA (party)", {EM_ORG_ENTERPRISE, NULL, s_pc_ids, 1, NULL, 0}, 0},
};
#define NORGS (sizeof s_orgs / sizeof *s_orgs)

/* Loads every fixture event and writes party ids into the parties it names. */
static int s_load_fixtures(json_t **events)
{
    DIR *dir = opendir(FIXTURES);
    assert_non_null(dir);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(dir)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, FIXTURES "/%s", de->d_name);
        json_error_t jerr;
        json_t *doc = json_load_file(path, 0, &jerr);
        if (!doc)
            fail_msg("%s: %s", path, jerr.text);
        if (json_is_array(doc)) {
            size_t i;
            json_t *e;
            json_array_foreach(doc, i, e)
            {
                events[n++] = json_incref(e);
            }
            json_decref(doc);
        } else {
            events[n++] = doc;
        }
    }
    closedir(dir);
    for (int i = 0; i < n; i++) {
        json_t *data = json_object_get(events[i], "data");
        json_t *p;
        if ((p = json_object_get(data, "exporter")))
            json_object_set_new(p, "regNo", json_string(MHD_SECP));
        if ((p = json_object_get(data, "consignee")))
            json_object_set_new(p, "regNo", json_string(MCC_USCC));
        json_t *holders = json_object_get(data, "holders");
        if (json_array_size(holders) > 0)
            json_object_set_new(json_object_get(json_array_get(holders, 0), "party"), "regNo",
                                json_string(SECMC_SECP));
        json_t *parties = json_object_get(data, "parties");
        for (size_t k = 0; k < json_array_size(parties); k++) {
            const char *name = json_string_value(json_object_get(json_array_get(parties, k), "name"));
            if (name && strstr(name, "POWERCHINA"))
                json_object_set_new(json_array_get(parties, k), "regNo",
                                    json_string(POWERCHINA_USCC));
        }
    }
    return n;
}

static int s_has_party(json_t *ev, const char *const *ids, size_t n)
{
    int hit = 0;
    json_t *data = json_object_get(ev, "data");
    const char *fields[][2] = {{"exporter", NULL}, {"consignee", NULL}};
    for (size_t f = 0; f < 2; f++) {
        const char *r = json_string_value(json_object_get(json_object_get(data, fields[f][0]), "regNo"));
        for (size_t i = 0; r && i < n; i++)
            hit |= strcmp(r, ids[i]) == 0;
    }
    json_t *holders = json_object_get(data, "holders");
    for (size_t k = 0; k < json_array_size(holders); k++) {
        const char *r = json_string_value(
            json_object_get(json_object_get(json_array_get(holders, k), "party"), "regNo"));
        for (size_t i = 0; r && i < n; i++)
            hit |= strcmp(r, ids[i]) == 0;
    }
    json_t *parties = json_object_get(data, "parties");
    for (size_t k = 0; k < json_array_size(parties); k++) {
        const char *r = json_string_value(json_object_get(json_array_get(parties, k), "regNo"));
        for (size_t i = 0; r && i < n; i++)
            hit |= strcmp(r, ids[i]) == 0;
    }
    return hit;
}

/* The expected answer, written out per organisation from domain.md §6 (independently of the
 * implementation's structure). */
static int s_expected(size_t o, json_t *ev)
{
    const char *vis = json_string_value(json_object_get(ev, "visibility"));
    const char *prov = json_string_value(json_object_get(ev, "province"));
    const char *src = json_string_value(json_object_get(ev, "source"));
    int pub = vis && strcmp(vis, "public") == 0;
    int partner = vis && strcmp(vis, "partner") == 0;
    int restricted = vis && strcmp(vis, "restricted") == 0;
    const org_case_t *oc = &s_orgs[o];
    if (pub)
        return 1;
    if (oc->adversary)
        return 0;
    if (oc->org.kind == EM_ORG_AUTHORITY) {
        int mine = 0;
        if (strcmp(oc->name, "Sindh department") == 0)
            mine = strncmp(src, "/pk/sd/coal/", 12) == 0 || strcmp(src, "/pk/sd/coal") == 0;
        else if (strcmp(oc->name, "Balochistan department") == 0)
            mine = strncmp(src, "/pk/ba/mmdd/", 12) == 0;
        else
            mine = strncmp(src, "/pk/fed/minerals-wing/", 22) == 0 ||
                   strcmp(src, "/pk/fed/minerals-wing") == 0;
        int scope = strcmp(oc->org.province, "federal") == 0 ||
                    (prov && strcmp(prov, oc->org.province) == 0);
        return mine || ((partner || restricted) && scope);
    }
    /* enterprises */
    int issuer = oc->org.nsource_prefixes > 0 && strncmp(src, "/operators/mhd/", 15) == 0;
    if (issuer)
        return 1;
    return partner && s_has_party(ev, oc->org.party_ids, oc->org.nparty_ids);
}

static void test_visibility_zero_leaks(void **state)
{
    (void)state;
    json_t *fixtures[MAX_EVENTS];
    int nfix = s_load_fixtures(fixtures);
    assert_true(nfix >= 12);
    static const char *tiers[] = {"public", "partner", "restricted", "internal", NULL,
                                  "Public", "secret", ""};
    const size_t ntiers = sizeof tiers / sizeof *tiers;
    /* Filters that try to widen what an organisation sees. */
    static const char *widen[] = {
        "[]",
        "[{\"exact\":{\"visibility\":\"restricted\"}}]",
        "[{\"any\":[{\"prefix\":{\"source\":\"\"}},{\"not\":{\"prefix\":{\"source\":\"\"}}}]}]",
        "[{\"not\":{\"exact\":{\"visibility\":\"public\"}}}]",
    };
    em_filter_t *filters[4];
    for (int f = 0; f < 4; f++) {
        char err[256];
        json_t *j = s_json(widen[f]);
        filters[f] = em_filter_new(j, err, sizeof err);
        assert_non_null(filters[f]);
        json_decref(j);
    }

    int checks = 0, leaks = 0, misses = 0, delivered[NORGS] = {0};
    for (int i = 0; i < nfix; i++) {
        for (size_t t = 0; t < ntiers; t++) {
            json_t *ev = json_deep_copy(fixtures[i]);
            if (tiers[t])
                json_object_set_new(ev, "visibility", json_string(tiers[t]));
            else
                json_object_del(ev, "visibility");
            for (size_t o = 0; o < NORGS; o++) {
                int want = s_expected(o, ev);
                int got = em_visibility_allows(&s_orgs[o].org, ev);
                checks++;
                if (got && !want) {
                    leaks++;
                    fprintf(stderr, "LEAK: %s sees %s (%s, visibility %s)\n", s_orgs[o].name,
                            json_string_value(json_object_get(ev, "id")),
                            json_string_value(json_object_get(ev, "source")),
                            tiers[t] ? tiers[t] : "(none)");
                } else if (!got && want) {
                    misses++;
                    fprintf(stderr, "MISS: %s does not see %s (visibility %s)\n",
                            s_orgs[o].name, json_string_value(json_object_get(ev, "id")),
                            tiers[t] ? tiers[t] : "(none)");
                }
                delivered[o] += got && tiers[t] && strcmp(tiers[t], "public") != 0;
                for (int f = 0; f < 4; f++) {
                    int m = em_subscription_matches(&s_orgs[o].org, NULL, 0, filters[f], NULL, ev);
                    checks++;
                    if (m && !got) {
                        leaks++;
                        fprintf(stderr, "LEAK through filter %s: %s\n", widen[f], s_orgs[o].name);
                    }
                }
            }
            json_decref(ev);
        }
    }
    printf("visibility: %d checks over %d events x %zu tiers x %zu organisations, %d leaks, "
           "%d misses\n",
           checks, nfix, ntiers, NORGS, leaks, misses);
    for (size_t o = 0; o < NORGS; o++)
        printf("  %-28s non-public events seen: %d\n", s_orgs[o].name, delivered[o]);
    assert_int_equal(leaks, 0);
    assert_int_equal(misses, 0);
    /* The rightful audiences do receive something beyond public. */
    for (size_t o = 0; o < NORGS; o++)
        assert_true(s_orgs[o].adversary ? delivered[o] == 0 : delivered[o] > 0);

    /* The fixtures as published: the royalty payment (restricted, PK-BA) reaches Balochistan
     * and the Minerals Wing only; the Duddar shipment (partner) reaches MHD, MCC, Balochistan
     * and the Minerals Wing. */
    for (int i = 0; i < nfix; i++) {
        const char *type = json_string_value(json_object_get(fixtures[i], "type"));
        char seen[256] = "";
        for (size_t o = 0; o < NORGS; o++)
            if (em_visibility_allows(&s_orgs[o].org, fixtures[i])) {
                strcat(seen, s_orgs[o].name);
                strcat(seen, ";");
            }
        if (strcmp(type, "pk.gov.emining.royalty.paid") == 0)
            assert_string_equal(seen, "Balochistan department;Minerals Wing (federal);");
        if (strcmp(type, "pk.gov.emining.shipment.exported") == 0)
            assert_string_equal(seen, "Balochistan department;Minerals Wing (federal);"
                                      "MHD (operator, exporter);MCC (consignee);");
    }
    for (int f = 0; f < 4; f++)
        em_filter_destroy(&filters[f]);
    for (int i = 0; i < nfix; i++)
        json_decref(fixtures[i]);
}

static void test_visibility_edges(void **state)
{
    (void)state;
    json_t *ev = s_json("{\"source\":\"/pk/ba/mmdd\",\"visibility\":\"internal\","
                        "\"province\":\"PK-BA\",\"data\":[1]}");
    em_org_t ba = {EM_ORG_AUTHORITY, "PK-BA", NULL, 0, s_ba_src, 1};
    /* "/pk/ba/mmdd/" owns "/pk/ba/mmdd/x" but not "/pk/ba/mmdd" itself (prefix with slash). */
    assert_int_equal(em_visibility_allows(&ba, ev), 0);
    const char *exact_src[] = {"/pk/ba/mmdd"};
    ba.source_prefixes = exact_src;
    assert_int_equal(em_visibility_allows(&ba, ev), 1);
    assert_int_equal(em_visibility_allows(NULL, ev), 0);
    json_t *notobj = json_string("x");
    assert_int_equal(em_visibility_allows(&ba, notobj), 0);
    json_decref(notobj);
    assert_int_equal(em_visibility_of(ev), EM_VIS_INTERNAL);
    json_object_set_new(ev, "visibility", json_integer(0));
    assert_int_equal(em_visibility_of(ev), EM_VIS_INTERNAL);
    /* A partner event whose parties carry no regNo reaches no enterprise by party. */
    json_t *p = s_json("{\"source\":\"/x\",\"visibility\":\"partner\",\"data\":{\"parties\":"
                       "[{\"name\":\"A\"},{\"name\":\"B\",\"regNo\":\"\"}],\"to\":[{\"regNo\":\"R1\"}],"
                       "\"from\":[{\"regNo\":\"R2\"}],\"applicant\":[{\"regNo\":\"R3\"}],"
                       "\"suppliers\":[{\"regNo\":\"R4\"}],\"buyer\":{\"regNo\":\"R5\"}}}");
    const char *none[] = {""}, *r[] = {"R1", "R2", "R3", "R4", "R5"};
    em_org_t ent = {EM_ORG_ENTERPRISE, NULL, none, 1, NULL, 0};
    assert_int_equal(em_visibility_allows(&ent, p), 0);
    for (int i = 0; i < 5; i++) {
        ent.party_ids = &r[i];
        assert_int_equal(em_visibility_allows(&ent, p), i < 4); /* buyer is not a party field */
    }
    json_decref(p);
    json_decref(ev);
}

/* An operator organisation sees every tier (also a missing or unknown one); types and filters
 * still narrow what it receives. */
static void test_visibility_operator(void **state)
{
    (void)state;
    em_org_t ops = {EM_ORG_OPERATOR, NULL, NULL, 0, NULL, 0};
    const char *tiers[] = {"public", "partner", "restricted", "internal", "unheard-of", NULL};
    for (int i = 0; i < 6; i++) {
        json_t *ev = s_json("{\"source\":\"/pk/ba/mmdd\",\"type\":\"t\",\"province\":\"PK-BA\"}");
        if (tiers[i])
            json_object_set_new(ev, "visibility", json_string(tiers[i]));
        assert_int_equal(em_visibility_allows(&ops, ev), 1);
        const char *other[] = {"u"};
        assert_int_equal(em_subscription_matches(&ops, other, 1, NULL, NULL, ev), 0);
        json_decref(ev);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dialects),
        cmocka_unit_test(test_filter_errors),
        cmocka_unit_test(test_domain_and_types),
        cmocka_unit_test(test_visibility_zero_leaks),
        cmocka_unit_test(test_visibility_edges),
        cmocka_unit_test(test_visibility_operator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
