/* rules.c - the named domain rules of the e-mining catalogue (see rules.h). */
#include "rules.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "em_event.h"
#include "em_json.h"

#define DAY_MS (24LL * 3600 * 1000)

bool vrules_time(const char *s, long long *ms)
{
    char buf[40];

    if (!s)
        return false;
    if (strlen(s) == 10 && s[4] == '-' && s[7] == '-') {
        snprintf(buf, sizeof buf, "%sT00:00:00Z", s);
        return em_rfc3339_parse(buf, ms);
    }
    return em_rfc3339_parse(s, ms);
}

static bool s_time_at(const json_t *obj, const char *key, long long *ms)
{
    return vrules_time(json_string_value(json_object_get(obj, key)), ms);
}

static double s_num(const json_t *v, bool *ok)
{
    *ok = json_is_number(v);
    return *ok ? json_number_value(v) : 0;
}

/* Errors (or notes) "b is not after a" for two dates of obj at ptr; strict: b must be > a. */
static void s_order(const json_t *obj, const char *ptr, const char *a, const char *b, bool strict,
                    const char *rule, json_t *errors)
{
    long long ta, tb;
    char p[256];

    if (!json_is_object(obj) || !s_time_at(obj, a, &ta) || !s_time_at(obj, b, &tb))
        return;
    if (strict ? tb > ta : tb >= ta)
        return;
    snprintf(p, sizeof p, "%s/%s", ptr, b);
    em_errors_add(errors, p, rule, "%s (%s) must be %s %s (%s)", b,
                  json_string_value(json_object_get(obj, b)), strict ? "after" : "on or after", a,
                  json_string_value(json_object_get(obj, a)));
}

static void r_holders(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    const json_t *holders = json_object_get(data, "holders");
    double sum = 0;
    size_t i;
    json_t *h;

    if (!json_is_array(holders) || json_array_size(holders) == 0)
        return;
    json_array_foreach(holders, i, h)
    {
        bool ok;
        double v = s_num(json_object_get(h, "sharePct"), &ok);
        if (!ok)
            return; /* the schema reports it */
        sum += v;
    }
    if (fabs(sum - 100.0) > 1e-6)
        em_errors_add(errors, "/data/holders", "holdersShareSum",
                      "the holders' sharePct add up to %g, not 100", sum);
}

static void r_valid_to(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    s_order(data, "/data", "validFrom", "validTo", true, "validToAfterValidFrom", errors);
}

static void r_period(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    s_order(json_object_get(data, "period"), "/data/period", "start", "end", false,
            "periodStartNotAfterEnd", errors);
}

static void r_renewed(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    s_order(data, "/data", "previousValidTo", "newValidTo", true, "newValidToAfterPrevious",
            errors);
}

static void s_grades(const json_t *grades, const char *ptr, json_t *errors)
{
    size_t i;
    json_t *g;
    char p[256];

    json_array_foreach(grades, i, g)
    {
        bool ok;
        double v = s_num(json_object_get(g, "value"), &ok);
        const char *unit = json_string_value(json_object_get(g, "unit"));
        if (ok && unit && strcmp(unit, "pct") == 0 && v > 100) {
            snprintf(p, sizeof p, "%s/%zu/value", ptr, i);
            em_errors_add(errors, p, "gradePctAtMost100",
                          "a grade in pct is at most 100, not %g", v);
        }
    }
}

static void r_grade_pct(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    const json_t *items = json_object_get(data, "items");
    size_t i;
    json_t *it;
    char p[128];

    json_array_foreach(items, i, it)
    {
        snprintf(p, sizeof p, "/data/items/%zu/grades", i);
        s_grades(json_object_get(it, "grades"), p, errors);
    }
    s_grades(json_object_get(data, "assays"), "/data/assays", errors);
}

static void r_tender_period(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    s_order(json_object_get(data, "tenderPeriod"), "/data/tenderPeriod", "start", "end", true,
            "tenderPeriodStartBeforeEnd", errors);
}

static void r_discovery_late(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)errors;
    long long d, n;

    if (!s_time_at(data, "discoveredOn", &d) || !s_time_at(data, "notifiedOn", &n))
        return;
    if (n - d > 30 * DAY_MS)
        em_errors_add(notes, "/data/notifiedOn", "discoveryNotifiedLate",
                      "late: notified %lld days after the discovery (BMR r.31(1)(g): within 30)",
                      (n - d) / DAY_MS);
}

static void r_discovery_order(const json_t *ev, const json_t *data, json_t *errors,
                              json_t *notes)
{
    (void)ev, (void)notes;
    s_order(data, "/data", "discoveredOn", "notifiedOn", false, "notifiedNotBeforeDiscovered",
            errors);
}

static void r_applied_area(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    const char *t = json_string_value(json_object_get(data, "licenceType"));

    if (t && (strcmp(t, "EL") == 0 || strcmp(t, "ML") == 0 || strcmp(t, "MDRL") == 0) &&
        !json_object_get(data, "area"))
        em_errors_add(errors, "/data", "appliedAreaRequired",
                      "an application for an %s must carry its area", t);
}

/* "PK-XX" of a licence id, into out[6]; false when id does not start with one. */
static bool s_licence_province(const char *id, char out[6])
{
    if (!id || strncmp(id, "PK-", 3) != 0 || strlen(id) < 6 || id[5] != '/')
        return false;
    memcpy(out, id, 5);
    out[5] = '\0';
    return true;
}

static void r_province(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)notes;
    const char *prov = json_string_value(json_object_get(ev, "province"));
    const json_t *ids = json_object_get(data, "licenceIds");
    char p[6], ptr[64];
    size_t i;
    json_t *id;

    if (!prov)
        return;
    if (s_licence_province(json_string_value(json_object_get(data, "licenceId")), p) &&
        strcmp(p, prov) != 0)
        em_errors_add(errors, "/data/licenceId", "licenceProvinceMatches",
                      "the licence belongs to %s but the event's province is %s", p, prov);
    json_array_foreach(ids, i, id)
    {
        if (s_licence_province(json_string_value(id), p) && strcmp(p, prov) != 0) {
            snprintf(ptr, sizeof ptr, "/data/licenceIds/%zu", i);
            em_errors_add(errors, ptr, "licenceProvinceMatches",
                          "the licence belongs to %s but the event's province is %s", p, prov);
        }
    }
}

static void r_licence_type(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    const char *id = json_string_value(json_object_get(data, "licenceId"));
    const char *t = json_string_value(json_object_get(data, "licenceType"));
    const char *slash = id ? strchr(id, '/') : NULL;
    const char *dash = slash ? strchr(slash, '-') : NULL;

    if (!t || !dash)
        return;
    if ((size_t)(dash - slash - 1) != strlen(t) || strncmp(slash + 1, t, strlen(t)) != 0)
        em_errors_add(errors, "/data/licenceType", "licenceTypeMatchesId",
                      "licenceType %s does not match the licence id %s", t, id);
}

static void r_revoked(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    s_order(data, "/data", "noticeIssuedOn", "effectiveOn", false, "revocationAfterNotice",
            errors);
}

static void r_agreement(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    s_order(data, "/data", "effectiveFrom", "effectiveTo", true, "agreementEffectiveRange",
            errors);
}

static void r_incident(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    const char *sev = json_string_value(json_object_get(data, "severity"));
    const json_t *f = json_object_get(data, "fatalities"), *in = json_object_get(data, "injuries");

    if (!sev || !json_is_integer(f) || !json_is_integer(in))
        return;
    long long nf = json_integer_value(f), ni = json_integer_value(in);
    if (strcmp(sev, "fatality") == 0 && nf < 1)
        em_errors_add(errors, "/data/fatalities", "incidentSeverityConsistent",
                      "severity fatality needs at least one fatality");
    else if (strcmp(sev, "fatality") != 0 && nf > 0)
        em_errors_add(errors, "/data/severity", "incidentSeverityConsistent",
                      "%lld fatalities make the severity fatality, not %s", nf, sev);
    else if (strcmp(sev, "injury") == 0 && ni < 1)
        em_errors_add(errors, "/data/injuries", "incidentSeverityConsistent",
                      "severity injury needs at least one injury");
    else if (strcmp(sev, "near_miss") == 0 && ni > 0)
        em_errors_add(errors, "/data/severity", "incidentSeverityConsistent",
                      "%lld injuries make the severity injury, not near_miss", ni);
}

static void r_royalty_currency(const json_t *ev, const json_t *data, json_t *errors,
                               json_t *notes)
{
    (void)ev, (void)notes;
    const char *due = json_string_value(json_object_get(json_object_get(data, "amountDue"), "currency"));
    const char *paid = json_string_value(json_object_get(json_object_get(data, "amountPaid"), "currency"));

    if (due && paid && strcmp(due, paid) != 0)
        em_errors_add(errors, "/data/amountPaid/currency", "royaltyCurrencyConsistent",
                      "amountPaid is in %s but amountDue in %s", paid, due);
}

static bool s_same_position(const json_t *a, const json_t *b)
{
    if (!json_is_array(a) || !json_is_array(b) || json_array_size(a) != json_array_size(b))
        return false;
    for (size_t i = 0; i < json_array_size(a); i++)
        if (!json_is_number(json_array_get(a, i)) || !json_is_number(json_array_get(b, i)) ||
            json_number_value(json_array_get(a, i)) != json_number_value(json_array_get(b, i)))
            return false;
    return true;
}

static void s_rings(const json_t *polygon, const char *ptr, json_t *errors)
{
    size_t i;
    json_t *ring;
    char p[256];

    json_array_foreach(polygon, i, ring)
    {
        size_t n = json_array_size(ring);
        if (n >= 4 && !s_same_position(json_array_get(ring, 0), json_array_get(ring, n - 1))) {
            snprintf(p, sizeof p, "%s/%zu", ptr, i);
            em_errors_add(errors, p, "areaRingClosed",
                          "a GeoJSON linear ring ends where it starts (RFC 7946 3.1.6)");
        }
    }
}

static void s_area(const json_t *area, const char *ptr, json_t *errors)
{
    const char *t = json_string_value(json_object_get(area, "type"));
    const json_t *c = json_object_get(area, "coordinates");
    char p[192];
    size_t i;
    json_t *poly;

    if (!t || !json_is_array(c))
        return;
    if (strcmp(t, "Polygon") == 0) {
        snprintf(p, sizeof p, "%s/coordinates", ptr);
        s_rings(c, p, errors);
    } else if (strcmp(t, "MultiPolygon") == 0) {
        json_array_foreach(c, i, poly)
        {
            snprintf(p, sizeof p, "%s/coordinates/%zu", ptr, i);
            s_rings(poly, p, errors);
        }
    }
}

static void r_rings(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    s_area(json_object_get(data, "area"), "/data/area", errors);
    s_area(json_object_get(data, "remainingArea"), "/data/remainingArea", errors);
    s_area(json_object_get(data, "location"), "/data/location", errors);
}

static void r_kp_transfer(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    const char *id = json_string_value(json_object_get(data, "licenceId"));
    long long issued, eff;

    if (!id || strncmp(id, "PK-KP/EL-", 9) != 0 || !s_time_at(data, "issuedOn", &issued) ||
        !s_time_at(data, "effectiveOn", &eff))
        return;
    if (eff - issued < 730 * DAY_MS)
        em_errors_add(errors, "/data/effectiveOn", "kpExplorationTransferAfter2Years",
                      "Khyber Pakhtunkhwa forbids transferring an exploration licence within 2 "
                      "years of its issue (%s)",
                      json_string_value(json_object_get(data, "issuedOn")));
}

static void r_weight_unit(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    const char *hs = json_string_value(json_object_get(data, "hsCode"));
    const char *unit =
        json_string_value(json_object_get(json_object_get(data, "netWeight"), "unit"));

    if (!hs || !unit)
        return;
    if (strncmp(hs, "26", 2) == 0 && strcmp(unit, "dmt") != 0)
        em_errors_add(errors, "/data/netWeight/unit", "shipmentWeightUnit",
                      "ores and concentrates (HS %s) are weighed in dmt, not %s", hs, unit);
    else if (strncmp(hs, "74", 2) == 0 && strcmp(unit, "t") != 0)
        em_errors_add(errors, "/data/netWeight/unit", "shipmentWeightUnit",
                      "metal (HS %s) is weighed in t, not %s", hs, unit);
}

static void r_hs_expected(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)errors;
    static const char *expected[] = {"2603", "2607", "2608", "7402", "2701", "2610"};
    const char *hs = json_string_value(json_object_get(data, "hsCode"));

    if (!hs || strlen(hs) < 4)
        return;
    for (size_t i = 0; i < sizeof expected / sizeof *expected; i++)
        if (strncmp(hs, expected[i], 4) == 0)
            return;
    em_errors_add(notes, "/data/hsCode", "hsCodeExpected",
                  "HS %.4s is not one of the headings expected for mineral exports "
                  "(2603, 2607, 2608, 7402, 2701, 2610)",
                  hs);
}

/* A CNIC (NNNNN-NNNNNNN-N) or a Pakistani phone number (+92 or 03NN, 10 digits after the
 * country code) somewhere in s. */
static bool s_personal(const char *s)
{
    for (const char *c = s; *c; c++) {
        int d = 0;
        const char *q = c;
        /* CNIC */
        while (d < 5 && q[d] >= '0' && q[d] <= '9')
            d++;
        if (d == 5 && (c == s || c[-1] < '0' || c[-1] > '9') && q[5] == '-') {
            q += 6;
            int m = 0;
            while (m < 7 && q[m] >= '0' && q[m] <= '9')
                m++;
            if (m == 7 && q[7] == '-' && q[8] >= '0' && q[8] <= '9')
                return true;
        }
        /* +92 3NN NNNNNNN or 03NN-NNNNNNN (spaces and dashes allowed between digits) */
        const char *p = NULL;
        if (strncmp(c, "+92", 3) == 0)
            p = c + 3;
        else if (c[0] == '0' && c[1] == '3' && (c == s || c[-1] < '0' || c[-1] > '9'))
            p = c + 1;
        if (p) {
            int n = 0;
            for (; *p && n < 10; p++) {
                if (*p >= '0' && *p <= '9')
                    n++;
                else if (*p != ' ' && *p != '-')
                    break;
            }
            if (n == 10 && !(*p >= '0' && *p <= '9'))
                return true;
        }
    }
    return false;
}

static void s_scan_personal(const json_t *v, char *ptr, size_t cap, json_t *errors)
{
    size_t n = strlen(ptr), i;
    const char *k;
    json_t *x;

    if (json_is_string(v)) {
        if (s_personal(json_string_value(v)))
            em_errors_add(errors, ptr, "noPersonalIdentifiers",
                          "events never carry CNIC or phone numbers (domain.md 6(b)); use ids");
    } else if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, x)
        {
            /* escape per RFC 6901 */
            size_t w = n;
            if (w + 1 < cap)
                ptr[w++] = '/';
            for (const char *c = k; *c && w + 2 < cap; c++) {
                if (*c == '~' || *c == '/') {
                    ptr[w++] = '~';
                    ptr[w++] = *c == '~' ? '0' : '1';
                } else {
                    ptr[w++] = *c;
                }
            }
            ptr[w] = '\0';
            s_scan_personal(x, ptr, cap, errors);
            ptr[n] = '\0';
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x)
        {
            snprintf(ptr + n, cap - n, "/%zu", i);
            s_scan_personal(x, ptr, cap, errors);
            ptr[n] = '\0';
        }
    }
}

static void r_personal(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    char ptr[512] = "/data";
    s_scan_personal(data, ptr, sizeof ptr, errors);
}

static void r_province_code(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)data, (void)notes;
    static const char *codes[] = {"PK-BA", "PK-SD", "PK-PB", "PK-KP", "PK-GB", "PK-JK", "PK-IS"};
    const json_t *p = json_object_get(ev, "province");

    if (!json_is_string(p))
        return; /* absent, or the envelope's error */
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        if (strcmp(json_string_value(p), codes[i]) == 0)
            return;
    em_errors_add(errors, "/province", "provinceCode",
                  "province is an ISO 3166-2:PK code (PK-BA, PK-SD, PK-PB, PK-KP, PK-GB, PK-JK, "
                  "PK-IS)");
}

static void r_project(const json_t *ev, const json_t *data, json_t *errors, json_t *notes)
{
    (void)notes;
    const char *ext = json_string_value(json_object_get(ev, "projectid"));
    const char *id = json_string_value(json_object_get(data, "projectId"));

    if (ext && id && strcmp(ext, id) != 0)
        em_errors_add(errors, "/data/projectId", "projectIdMatches",
                      "data.projectId %s differs from the event's projectid %s", id, ext);
}

static const vrule_t s_rules[] = {
    {"holdersShareSum", "licence.granted", "the holders' sharePct sum to 100", r_holders},
    {"validToAfterValidFrom", "licence.granted", "validTo is after validFrom", r_valid_to},
    {"licenceTypeMatchesId", "licence.granted", "licenceType is the type in the licence id",
     r_licence_type},
    {"periodStartNotAfterEnd", NULL, "a period does not end before it starts", r_period},
    {"newValidToAfterPrevious", "licence.renewed", "newValidTo is after previousValidTo",
     r_renewed},
    {"gradePctAtMost100", NULL, "a grade in pct is at most 100", r_grade_pct},
    {"tenderPeriodStartBeforeEnd", "tender.published", "tenderPeriod starts before it ends",
     r_tender_period},
    {"discoveryNotifiedLate", "discovery.notified",
     "notified more than 30 days after the discovery: flagged late (a note, not an error)",
     r_discovery_late},
    {"notifiedNotBeforeDiscovered", "discovery.notified", "notifiedOn is not before discoveredOn",
     r_discovery_order},
    {"appliedAreaRequired", "licence.applied", "an EL, ML or MDRL application carries its area",
     r_applied_area},
    {"licenceProvinceMatches", NULL, "a licence id's province is the event's province",
     r_province},
    {"revocationAfterNotice", "licence.revoked", "effectiveOn is not before noticeIssuedOn",
     r_revoked},
    {"agreementEffectiveRange", "agreement.signed", "effectiveTo is after effectiveFrom",
     r_agreement},
    {"incidentSeverityConsistent", "safety.incidentreported",
     "the severity agrees with the fatalities and injuries", r_incident},
    {"royaltyCurrencyConsistent", "royalty.paid", "amountPaid is in amountDue's currency",
     r_royalty_currency},
    {"areaRingClosed", NULL, "every GeoJSON linear ring is closed", r_rings},
    {"kpExplorationTransferAfter2Years", "licence.transferred",
     "KP: no EL transfer within 2 years of issue (when issuedOn is given)", r_kp_transfer},
    {"shipmentWeightUnit", "shipment.exported",
     "ores and concentrates (HS 26xx) in dmt, metal (HS 74xx) in t", r_weight_unit},
    {"hsCodeExpected", "shipment.exported",
     "an HS heading outside 2603/2607/2608/7402/2701/2610 is noted (not an error)", r_hs_expected},
    {"noPersonalIdentifiers", NULL, "no CNIC or phone number anywhere in the data",
     r_personal},
    {"provinceCode", NULL, "the province extension is an ISO 3166-2:PK code", r_province_code},
    {"projectIdMatches", NULL, "data.projectId is the event's projectid extension", r_project},
};

const vrule_t *vrules_table(size_t *count)
{
    *count = sizeof s_rules / sizeof *s_rules;
    return s_rules;
}

const vrule_t *vrules_find(const char *name)
{
    for (size_t i = 0; i < sizeof s_rules / sizeof *s_rules; i++)
        if (strcmp(s_rules[i].name, name) == 0)
            return &s_rules[i];
    return NULL;
}

int vrules_apply(const char *type, const json_t *event, const json_t *data, json_t *errors,
                 json_t *notes)
{
    size_t before = json_array_size(errors);
    json_t *scratch = notes ? NULL : json_array();

    if (!json_is_object(data)) {
        json_decref(scratch);
        return 0;
    }
    for (size_t i = 0; i < sizeof s_rules / sizeof *s_rules; i++)
        if (!s_rules[i].type || (type && strcmp(s_rules[i].type, type) == 0))
            s_rules[i].check(event, data, errors, notes ? notes : scratch);
    json_decref(scratch);
    return (int)(json_array_size(errors) - before);
}
