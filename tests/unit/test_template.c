/* test_template.c - the summary templates of config/templates: every event type rendered in
 * every language from the fixture events (tests/fixtures/events and the valid catalogue
 * fixtures), with every placeholder resolved; Urdu isolates around every left-to-right token
 * and never unbalanced; the glossary's Chinese and Urdu names; times in PKT and CST across
 * date boundaries; load errors that name the file and line; missing values, hostile strings
 * and oversized values. */
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
#include <sys/stat.h>
#include <unistd.h>

#include "em_template.h"

#define TEMPLATES "config/templates"
#define SCHEMAS "config/schemas"
#define FSI "\xe2\x81\xa8"
#define PDI "\xe2\x81\xa9"

static const char *s_types[] = {
    "licence.applied", "licence.granted", "licence.refused", "licence.renewed",
    "licence.transferred", "licence.relinquished", "licence.revoked", "project.statuschanged",
    "discovery.notified", "production.reported", "royalty.paid", "tender.published",
    "tender.awarded", "agreement.signed", "shipment.exported", "safety.incidentreported", NULL};
static const char *s_langs[] = {"en", "zh-Hans", "ur", NULL};
static const char *s_zones[] = {"Asia/Karachi", "Asia/Shanghai", NULL};

static em_template_t *s_load(void)
{
    char err[512] = "";
    em_template_t *t = em_template_load(TEMPLATES, SCHEMAS, err, sizeof err);
    if (!t)
        fail_msg("loading %s: %s", TEMPLATES, err);
    return t;
}

static json_t *s_json(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j)
        fail_msg("bad test JSON: %s: %s", text, jerr.text);
    return j;
}

/* Decodes one UTF-8 character; 0 when invalid. */
static size_t s_utf8(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len = (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t c = s[0] & (0xff >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3f);
    }
    *cp = c;
    return len;
}

/* Checks the invariants of any output: valid UTF-8, no control characters, no embeddings or
 * overrides, isolates balanced (never closed before opened).  When ltr_isolated, every ASCII
 * letter or digit must sit inside an isolate.  Returns the number of isolates. */
static int s_check_output(const char *what, const char *out, bool ltr_isolated)
{
    size_t n = strlen(out);
    int depth = 0, isolates = 0;
    assert_true(n <= EM_TEMPLATE_MAX_OUT);
    for (size_t i = 0; i < n;) {
        uint32_t c = 0;
        size_t k = s_utf8((const unsigned char *)out + i, n - i, &c);
        if (k == 0)
            fail_msg("%s: invalid UTF-8 at byte %zu: %s", what, i, out);
        if (c < 0x20 || (c >= 0x202a && c <= 0x202e) || c == 0x200e || c == 0x200f)
            fail_msg("%s: control or embedding U+%04X at byte %zu: %s", what, c, i, out);
        if (c == 0x2068) {
            depth++;
            isolates++;
        } else if (c == 0x2069) {
            if (--depth < 0)
                fail_msg("%s: PDI without FSI at byte %zu: %s", what, i, out);
        } else if (ltr_isolated && c < 0x80 &&
                   ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) &&
                   depth == 0) {
            fail_msg("%s: left-to-right '%c' outside an isolate at byte %zu: %s", what, (char)c,
                     i, out);
        }
        i += k;
    }
    if (depth != 0)
        fail_msg("%s: %d isolate(s) left open: %s", what, depth, out);
    return isolates;
}

/* ---------------------------------------------------------------------------------------- */

static void test_load(void **state)
{
    (void)state;
    em_template_t *t = s_load();
    assert_int_equal(em_template_language_count(t), 3);
    assert_string_equal(em_template_language(t, 0), "en");
    for (int l = 0; s_langs[l]; l++)
        for (int i = 0; s_types[i]; i++)
            if (!em_template_has(t, s_langs[l], s_types[i]))
                fail_msg("%s has no template for %s", s_langs[l], s_types[i]);
    em_template_destroy(&t);
    assert_null(t);
    em_template_destroy(&t); /* NULL is fine */
}

/* Every event of the fixture folders (single events and batches). */
static int s_fixture_events(json_t *all)
{
    const char *dirs[] = {"tests/fixtures/events", NULL};
    int n = 0;
    for (int d = 0; dirs[d]; d++) {
        DIR *dir = opendir(dirs[d]);
        assert_non_null(dir);
        struct dirent *de;
        while ((de = readdir(dir)) != NULL) {
            size_t len = strlen(de->d_name);
            if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
                continue;
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dirs[d], de->d_name);
            json_t *j = json_load_file(path, 0, NULL);
            assert_non_null(j);
            if (json_is_array(j))
                json_array_extend(all, j);
            else
                json_array_append(all, j);
            json_decref(j);
            n++;
        }
        closedir(dir);
    }
    /* The catalogue's valid fixtures cover the types the demo events do not. */
    DIR *cat = opendir("tests/fixtures/schemas");
    assert_non_null(cat);
    struct dirent *te;
    while ((te = readdir(cat)) != NULL) {
        if (te->d_name[0] == '.')
            continue;
        char dpath[512];
        snprintf(dpath, sizeof dpath, "tests/fixtures/schemas/%s", te->d_name);
        DIR *dir = opendir(dpath);
        if (!dir)
            continue;
        struct dirent *de;
        while ((de = readdir(dir)) != NULL) {
            size_t len = strlen(de->d_name);
            if (strncmp(de->d_name, "valid-", 6) != 0 || len < 6 ||
                strcmp(de->d_name + len - 5, ".json") != 0)
                continue;
            char path[1100];
            snprintf(path, sizeof path, "%s/%s", dpath, de->d_name);
            json_t *j = json_load_file(path, 0, NULL);
            assert_non_null(j);
            json_array_append_new(all, j);
            n++;
        }
        closedir(dir);
    }
    closedir(cat);
    return n;
}

static void test_every_type_every_language(void **state)
{
    (void)state;
    em_template_t *t = s_load();
    json_t *events = json_array();
    s_fixture_events(events);
    assert_true(json_array_size(events) >= 12 + 16);
    bool covered[16] = {false};
    int rendered = 0, isolated = 0;
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        const char *type = json_string_value(json_object_get(ev, "type"));
        assert_non_null(type);
        for (int k = 0; s_types[k]; k++)
            if (strcmp(type + strlen("pk.gov.emining."), s_types[k]) == 0)
                covered[k] = true;
        for (int l = 0; s_langs[l]; l++) {
            for (int z = 0; s_zones[z]; z++) {
                char out[EM_TEMPLATE_MAX_OUT + 1], what[300];
                const char *used = NULL;
                int missing = -1;
                snprintf(what, sizeof what, "%s %s %s %s", type,
                         json_string_value(json_object_get(ev, "id")), s_langs[l], s_zones[z]);
                assert_int_equal(em_template_render(t, s_langs[l], s_zones[z], ev, out,
                                                    sizeof out, &used, &missing),
                                 0);
                assert_string_equal(used, s_langs[l]);
                if (missing != 0 || strstr(out, "[?"))
                    fail_msg("%s: %d missing value(s): %s", what, missing, out);
                assert_null(strstr(out, "{{"));
                assert_true(strlen(out) > 20);
                bool ur = strcmp(s_langs[l], "ur") == 0;
                int iso = s_check_output(what, out, ur);
                if (ur) {
                    if (iso == 0)
                        fail_msg("%s: no isolate in Urdu output: %s", what, out);
                    isolated += iso;
                } else {
                    assert_int_equal(iso, 0);
                }
                rendered++;
            }
        }
    }
    for (int k = 0; s_types[k]; k++)
        if (!covered[k])
            fail_msg("no fixture event of type %s", s_types[k]);
    print_message("rendered %d summaries of %zu events (16 types x 3 languages x 2 zones); "
                  "%d Urdu isolates\n",
                  rendered, json_array_size(events), isolated);
    json_decref(events);
    em_template_destroy(&t);
}

/* Renders the fixture file in lang/zone into out. */
static void s_render_file(em_template_t *t, const char *file, const char *lang, const char *zone,
                          char *out, size_t outlen)
{
    json_t *ev = json_load_file(file, 0, NULL);
    assert_non_null(ev);
    if (json_is_array(ev)) {
        json_t *first = json_incref(json_array_get(ev, 0));
        json_decref(ev);
        ev = first;
    }
    int missing = -1;
    assert_int_equal(em_template_render(t, lang, zone, ev, out, outlen, NULL, &missing), 0);
    assert_int_equal(missing, 0);
    json_decref(ev);
}

static void test_exact_texts(void **state)
{
    (void)state;
    em_template_t *t = s_load();
    char out[EM_TEMPLATE_MAX_OUT + 1];
    const char *grant = "tests/fixtures/events/01-licence-granted-thar-block-2.json";

    s_render_file(t, grant, "en", "Asia/Karachi", out, sizeof out);
    assert_string_equal(out, "Mining lease PK-SD/ML-THAR-BLOCK-II (coal, Sindh) granted to Sindh "
                             "Engro Coal Mining Company (SECMC), valid 2014-04-01 to 2044-03-31");

    s_render_file(t, grant, "zh-Hans", "Asia/Shanghai", out, sizeof out);
    assert_string_equal(out, "采矿租约PK-SD/ML-THAR-BLOCK-II（信德省，矿种：煤）已授予Sindh Engro "
                             "Coal Mining Company (SECMC)，有效期2014年4月1日至2044年3月31日");

    s_render_file(t, grant, "ur", "Asia/Karachi", out, sizeof out);
    assert_string_equal(out, "مائننگ لیز " FSI "PK-SD/ML-THAR-BLOCK-II" PDI " (کوئلہ، سندھ) " FSI
                             "Sindh Engro Coal Mining Company (SECMC)" PDI
                             " کو عطا کر دیا گیا، مدت " FSI "2014-04-01" PDI " تا " FSI
                             "2044-03-31" PDI);

    /* The glossary's names: projects, provinces, minerals, licence types. */
    s_render_file(t, "tests/fixtures/events/03-production-reported-duddar-2017.json", "en",
                  "Asia/Karachi", out, sizeof out);
    assert_non_null(strstr(out, "28,153 t zinc concentrate, 3,703 t lead concentrate"));
    s_render_file(t, "tests/fixtures/events/03-production-reported-duddar-2017.json", "zh-Hans",
                  "Asia/Shanghai", out, sizeof out);
    assert_non_null(strstr(out, "杜达项目"));
    assert_non_null(strstr(out, "锌精矿28,153 吨、铅精矿3,703 吨"));
    s_render_file(t, "tests/fixtures/events/07-project-statuschanged-reko-diq.json", "zh-Hans",
                  "Asia/Shanghai", out, sizeof out);
    assert_non_null(strstr(out, "雷科迪克项目（俾路支省）"));
    s_render_file(t, "tests/fixtures/events/07-project-statuschanged-reko-diq.json", "ur",
                  "Asia/Karachi", out, sizeof out);
    assert_non_null(strstr(out, "ریکوڈک منصوبہ (بلوچستان)"));
    s_render_file(t, "tests/fixtures/events/05-project-statuschanged-thar-block-1.json",
                  "zh-Hans", "Asia/Shanghai", out, sizeof out);
    assert_non_null(strstr(out, "塔尔煤田一区"));
    s_render_file(t, "tests/fixtures/events/05-project-statuschanged-thar-block-1.json", "ur",
                  "Asia/Karachi", out, sizeof out);
    assert_non_null(strstr(out, "تھر بلاک ون"));
    s_render_file(t, "tests/fixtures/events/02-licence-renewed-saindak.json", "ur",
                  "Asia/Karachi", out, sizeof out);
    assert_non_null(strstr(out, FSI "PK-BA/ML-SAINDAK" PDI));
    s_render_file(t, "tests/fixtures/schemas/licence.granted/valid-reko-diq-el-5.json", "zh-Hans",
                  "Asia/Shanghai", out, sizeof out);
    assert_non_null(strstr(out, "勘查许可证PK-BA/EL-5（俾路支省，矿种：铜、金）"));
    s_render_file(t, "tests/fixtures/schemas/licence.granted/valid-reko-diq-el-5.json", "ur",
                  "Asia/Karachi", out, sizeof out);
    assert_non_null(strstr(out, "ایکسپلوریشن لائسنس " FSI "PK-BA/EL-5" PDI " (تانبا، سونا، بلوچستان)"));
    /* HS code and number isolated in Urdu. */
    s_render_file(t, "tests/fixtures/events/09-shipment-exported-duddar.json", "ur",
                  "Asia/Karachi", out, sizeof out);
    assert_non_null(strstr(out, "(ایچ ایس کوڈ " FSI "2608" PDI ")"));
    em_template_destroy(&t);
}

static void test_time_zones(void **state)
{
    (void)state;
    em_template_t *t = s_load();
    static const struct {
        const char *end, *lang, *zone, *want;
    } cases[] = {
        /* 21:30 PKT is 16:30 UTC is 00:30 CST the next day. */
        {"2026-04-02T21:30:00+05:00", "en", "Asia/Karachi", "bids close 2026-04-02 21:30 PKT"},
        {"2026-04-02T21:30:00+05:00", "en", "Asia/Shanghai", "bids close 2026-04-03 00:30 CST"},
        {"2026-04-02T21:30:00+05:00", "zh-Hans", "Asia/Shanghai",
         "投标截止时间2026年4月3日 00:30（北京时间）"},
        {"2026-04-02T21:30:00+05:00", "ur", "Asia/Shanghai", FSI "2026-04-03 00:30 CST" PDI},
        /* UTC across the end of a month and of a year. */
        {"2026-01-31T19:00:00Z", "en", "Asia/Karachi", "2026-02-01 00:00 PKT"},
        {"2025-12-31T19:30:00Z", "en", "Asia/Karachi", "2026-01-01 00:30 PKT"},
        {"2025-12-31T15:59:59.5Z", "en", "Asia/Shanghai", "2025-12-31 23:59 CST"},
        {"2025-12-31T16:00:00Z", "zh-Hans", "Asia/Shanghai", "2026年1月1日 00:00（北京时间）"},
        /* A negative offset, and a leap day. */
        {"2024-02-28T23:00:00-03:00", "en", "Asia/Karachi", "2024-02-29 07:00 PKT"},
        {"2024-02-29T20:00:00+00:00", "en", "Asia/Shanghai", "2024-03-01 04:00 CST"},
        /* CST seen from PKT goes back a day. */
        {"2026-03-01T02:00:00+08:00", "en", "Asia/Karachi", "2026-02-28 23:00 PKT"},
        {"2026-03-01T02:00:00+08:00", "zh-Hans", "Asia/Karachi",
         "2026年2月28日 23:00（巴基斯坦时间）"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *ev = json_load_file("tests/fixtures/events/11-tender-published-pmdc.json", 0, NULL);
        assert_non_null(ev);
        json_object_set_new(json_object_get(json_object_get(ev, "data"), "tenderPeriod"), "end",
                            json_string(cases[i].end));
        char out[EM_TEMPLATE_MAX_OUT + 1];
        assert_int_equal(
            em_template_render(t, cases[i].lang, cases[i].zone, ev, out, sizeof out, NULL, NULL),
            0);
        if (!strstr(out, cases[i].want))
            fail_msg("%s in %s/%s: want '%s' in: %s", cases[i].end, cases[i].lang, cases[i].zone,
                     cases[i].want, out);
        json_decref(ev);
    }
    /* Dates without a time are calendar dates: never shifted. */
    char out[EM_TEMPLATE_MAX_OUT + 1];
    s_render_file(t, "tests/fixtures/events/01-licence-granted-thar-block-2.json", "en",
                  "Asia/Shanghai", out, sizeof out);
    assert_non_null(strstr(out, "valid 2014-04-01 to 2044-03-31"));
    /* A stamped receipt time (date-time) is shown in the subscriber's zone. */
    s_render_file(t, "tests/fixtures/schemas/licence.applied/valid-small-scale-without-area.json",
                  "en", "Asia/Shanghai", out, sizeof out);
    assert_non_null(strstr(out, "at 2011-06-01 12:00 CST"));

    assert_int_equal(em_template_zone_offset("Asia/Karachi"), 300);
    assert_int_equal(em_template_zone_offset("Asia/Shanghai"), 480);
    assert_int_equal(em_template_zone_offset("Europe/London"), -1);
    assert_int_equal(em_template_zone_offset(NULL), -1);
    assert_string_equal(em_template_default_zone("zh-Hans"), "Asia/Shanghai");
    assert_string_equal(em_template_default_zone("ur"), "Asia/Karachi");
    assert_string_equal(em_template_default_zone("en"), "Asia/Karachi");
    assert_string_equal(em_template_default_zone("zhx"), "Asia/Karachi");
    em_template_destroy(&t);
}

/* ---------------------------------------------------------------------------------------- */
/* Load errors */

/* Writes files (name, text, name, text, ..., NULL) into a new temporary folder. */
static char *s_tmpdir(const char *first, ...)
{
    char *dir = strdup("/tmp/em-template-test.XXXXXX");
    assert_non_null(mkdtemp(dir));
    va_list ap;
    va_start(ap, first);
    for (const char *name = first; name; name = va_arg(ap, const char *)) {
        const char *text = va_arg(ap, const char *);
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
    }
    va_end(ap);
    return dir;
}

static void s_rmdir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    free(dir);
}

static void s_expect_error(const char *en, const char *other, const char *want_file_line,
                           const char *want_reason)
{
    char *dir = other ? s_tmpdir("en.tmpl", en, "ur.tmpl", other, NULL)
                      : s_tmpdir("en.tmpl", en, NULL);
    char err[512] = "";
    em_template_t *t = em_template_load(dir, SCHEMAS, err, sizeof err);
    if (t)
        fail_msg("loaded although it should fail with %s", want_reason);
    char want[300];
    snprintf(want, sizeof want, "%s/%s", dir, want_file_line);
    if (!strstr(err, want) || !strstr(err, want_reason))
        fail_msg("error '%s' does not name '%s' and '%s'", err, want, want_reason);
    s_rmdir(dir);
}

static void test_load_errors(void **state)
{
    (void)state;
    const char *head = "[format]\ndate = %Y-%m-%d\n[mineral]\ncopper = copper\n[summary]\n";
    char en[1024];
    snprintf(en, sizeof en, "%slicence.granted = {{data.licenceId|shout}}\n", head);
    s_expect_error(en, NULL, "en.tmpl:6:", "unknown filter 'shout'");
    snprintf(en, sizeof en, "%s# a comment\nlicence.granted = {{dta.licenceId}}\n", head);
    s_expect_error(en, NULL, "en.tmpl:7:", "unknown placeholder {{dta.licenceId}}");
    snprintf(en, sizeof en, "%slicence.granted = granted\n    to {{data.licenseId}}\n", head);
    s_expect_error(en, NULL, "en.tmpl:6:", "no data member 'licenseId'");
    snprintf(en, sizeof en, "%sproduction.reported = {{data.period.strat|date}}\n", head);
    s_expect_error(en, NULL, "en.tmpl:6:", "no data member 'strat'");
    snprintf(en, sizeof en, "%stender.published = {{data.buyer.nmae}}\n", head);
    s_expect_error(en, NULL, "en.tmpl:6:", "no data member 'nmae'");
    snprintf(en, sizeof en, "%slicence.granted = {{data.holders|pick:party.nam}}\n", head);
    s_expect_error(en, NULL, "en.tmpl:6:", "unknown member pick:party.nam");
    snprintf(en, sizeof en, "%slicence.granted = {{data.holders.0.party.regNo}} "
             "{{data.area.coordinates}} {{data.conditions.0.ur}}\n", head);
    char *okdir = s_tmpdir("en.tmpl", en, NULL);
    char okerr[512] = "";
    em_template_t *ok = em_template_load(okdir, SCHEMAS, okerr, sizeof okerr);
    if (!ok)
        fail_msg("nested members the schema has were refused: %s", okerr);
    em_template_destroy(&ok);
    s_rmdir(okdir);
    snprintf(en, sizeof en, "%slicence.granted = {{data.minerals|glossary:minerals}}\n", head);
    s_expect_error(en, NULL, "en.tmpl:6:", "unknown glossary table 'minerals'");
    snprintf(en, sizeof en, "%sproduction.reported = {{data.items|each:row}}\n", head);
    s_expect_error(en, NULL, "en.tmpl:6:", "unknown part 'row'");
    snprintf(en, sizeof en, "%slicence.granted = {{data.licenceId\n", head);
    s_expect_error(en, NULL, "en.tmpl:6:", "'{{' without '}}'");
    snprintf(en, sizeof en, "%slicence.granted = {{data.licenceId|glossary}}\n", head);
    s_expect_error(en, NULL, "en.tmpl:6:", "needs an argument");
    snprintf(en, sizeof en, "%slicence.grantd = {{data.licenceId}}\n", head);
    s_expect_error(en, NULL, "en.tmpl:6:", "unknown event type 'licence.grantd'");
    snprintf(en, sizeof en, "%slicence.granted = a\nlicence.granted = b\n", head);
    s_expect_error(en, NULL, "en.tmpl:7:", "already defined in [summary] at line 6");
    s_expect_error("[format]\ndate = %Y/%q\n", NULL, "en.tmpl:2:", "unknown conversion");
    s_expect_error("[summary]\nlicence.granted = \xe2\x80\xae{{data.licenceId}}\n", NULL,
                   "en.tmpl:2:", "override");
    s_expect_error("[summary]\nlicence.granted = " FSI "{{data.licenceId}}\n", NULL, "en.tmpl:2:",
                   "isolate not closed");
    s_expect_error("[summary]\nlicence.granted = \xff\n", NULL, "en.tmpl:2:", "UTF-8");
    s_expect_error("licence.granted = x\n", NULL, "en.tmpl:1:", "before any [section]");
    s_expect_error("[summary]\nlicence.granted: x\n", NULL, "en.tmpl:2:", "expected 'key = value'");
    snprintf(en, sizeof en, "%slicence.granted = {{data.licenceId}}\n", head);
    s_expect_error(en, "[summary]\nlicence.revoked = {{data.licenceId}}\n", "ur.tmpl:2:",
                   "no English template");
    s_expect_error(en, "[summary]\nlicence.granted = {{data.minerals|glossary:grade}}\n",
                   "ur.tmpl:2:", "unknown glossary table 'grade'");
    s_expect_error(en, "[format]\nisolate = yes\n", "ur.tmpl:2:", "isolate is true or false");
    /* No English file at all. */
    char *dir = s_tmpdir("ur.tmpl", "[summary]\n", NULL);
    char err[512];
    assert_null(em_template_load(dir, NULL, err, sizeof err));
    assert_non_null(strstr(err, "en.tmpl: missing"));
    s_rmdir(dir);
    assert_null(em_template_load("/nonexistent/templates", NULL, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/templates"));
    /* Without a schema folder, data members are not checked (any type key is accepted). */
    dir = s_tmpdir("en.tmpl", "[summary]\nx.y = {{data.whatever}} {{subject}}\n", NULL);
    em_template_t *t = em_template_load(dir, NULL, err, sizeof err);
    assert_non_null(t);
    em_template_destroy(&t);
    s_rmdir(dir);
}

/* ---------------------------------------------------------------------------------------- */
/* Rendering edge cases */

static void test_missing_fallback_hostile(void **state)
{
    (void)state;
    em_template_t *t = s_load();
    char out[EM_TEMPLATE_MAX_OUT + 1];
    const char *used;
    int missing;

    /* Missing values: a visible marker, counted, no crash. */
    json_t *ev = s_json("{\"type\":\"pk.gov.emining.licence.granted\",\"id\":\"x\","
                        "\"data\":{\"licenceType\":\"ML\",\"holders\":[]}}");
    assert_int_equal(em_template_render(t, "en", "Asia/Karachi", ev, out, sizeof out, &used,
                                        &missing), 0);
    assert_true(missing >= 5);
    assert_non_null(strstr(out, "Mining lease [?data.licenceId]"));
    assert_non_null(strstr(out, "granted to [?data.holders]"));
    assert_int_equal(em_template_render(t, "ur", "Asia/Karachi", ev, out, sizeof out, &used,
                                        &missing), 0);
    assert_non_null(strstr(out, FSI "[?data.licenceId]" PDI));
    s_check_output("ur missing", out, true);
    json_decref(ev);

    /* Values of the wrong shape are shown as they are or marked, never crash. */
    ev = s_json("{\"type\":\"pk.gov.emining.shipment.exported\",\"id\":\"x\",\"data\":{"
                "\"shipmentId\":{\"a\":1},\"netWeight\":\"heavy\",\"hsCode\":2608,"
                "\"departedOn\":\"yesterday\",\"exporter\":[1,2],\"mode\":true}}");
    assert_int_equal(em_template_render(t, "zh-Hans", "Asia/Shanghai", ev, out, sizeof out,
                                        &used, &missing), 0);
    assert_non_null(strstr(out, "[?data.shipmentId]"));
    assert_non_null(strstr(out, "heavy"));
    assert_non_null(strstr(out, "yesterday"));
    s_check_output("wrong shapes", out, false);
    json_decref(ev);

    /* An unknown language falls back to English; an unknown type to the default template. */
    ev = json_load_file("tests/fixtures/events/01-licence-granted-thar-block-2.json", 0, NULL);
    assert_int_equal(em_template_render(t, "fr", "Asia/Karachi", ev, out, sizeof out, &used,
                                        &missing), 0);
    assert_string_equal(used, "en");
    assert_int_equal(strncmp(out, "Mining lease", 12), 0);
    json_object_set_new(ev, "type", json_string("org.example.thing.happened"));
    assert_int_equal(em_template_render(t, "zh-Hans", "Asia/Karachi", ev, out, sizeof out, &used,
                                        &missing), 0);
    assert_string_equal(used, "zh-Hans");
    assert_string_equal(out, "事件org.example.thing.happened（sd-coal-ml-thar-block-ii-grant），"
                             "来源/pk/sd/coal/cadastre");
    assert_int_equal(em_template_render(t, "ur", NULL, ev, out, sizeof out, &used, &missing), 0);
    s_check_output("ur default", out, true);
    json_decref(ev);
    assert_int_equal(em_template_render(t, "en", NULL, NULL, out, sizeof out, NULL, NULL), -1);
    assert_string_equal(out, "");
    ev = s_json("[1]");
    assert_int_equal(em_template_render(t, "en", NULL, ev, out, sizeof out, NULL, NULL), -1);
    json_decref(ev);

    /* Hostile strings: newlines, a right-to-left override and stray isolates are removed. */
    ev = s_json("{\"type\":\"pk.gov.emining.licence.granted\",\"province\":\"PK-BA\","
                "\"data\":{\"licenceId\":\"PK-BA/ML-1\\n\\u202eevil\\u2069\\u2069\","
                "\"licenceType\":\"ML\",\"minerals\":[\"copper\"],\"validFrom\":\"2020-01-01\","
                "\"validTo\":\"2030-01-01\",\"holders\":[{\"party\":{\"name\":\"\\u2066A\"}}]}}");
    for (int l = 0; s_langs[l]; l++) {
        assert_int_equal(em_template_render(t, s_langs[l], NULL, ev, out, sizeof out, NULL,
                                            &missing), 0);
        assert_int_equal(missing, 0);
        s_check_output("hostile", out, strcmp(s_langs[l], "ur") == 0);
        assert_non_null(strstr(out, "PK-BA/ML-1 evil"));
    }
    json_decref(ev);

    /* Oversized values: bounded output, valid UTF-8, balanced isolates. */
    char *big = malloc(20000);
    assert_non_null(big);
    for (int i = 0; i < 19998; i += 2)
        memcpy(big + i, i % 6 == 0 ? "\xd8\xa7" : "ab", 2); /* Arabic alif and Latin */
    big[19998] = '\0';
    ev = json_pack("{s:s,s:{s:s,s:s,s:[s],s:s,s:s,s:[{s:{s:s}},{s:{s:s}}]}}", "type",
                   "pk.gov.emining.licence.granted", "data", "licenceId", big, "licenceType",
                   "ML", "minerals", "copper", "validFrom", "2020-01-01", "validTo",
                   "2030-01-01", "holders", "party", "name", big, "party", "name", big);
    assert_non_null(ev);
    for (int l = 0; s_langs[l]; l++) {
        for (size_t cap = 1; cap < 64; cap += 7) {
            assert_int_equal(em_template_render(t, s_langs[l], NULL, ev, out, cap, NULL, NULL),
                             0);
            assert_true(strlen(out) < cap);
            s_check_output("small buffer", out, false);
        }
        assert_int_equal(em_template_render(t, s_langs[l], NULL, ev, out, sizeof out, NULL, NULL),
                         0);
        assert_true(strlen(out) <= EM_TEMPLATE_MAX_OUT);
        assert_true(strlen(out) > EM_TEMPLATE_MAX_OUT - 64);
        s_check_output("oversized", out, false);
    }
    /* An oversized production report with many items (parts) stays bounded too. */
    json_t *items = json_array();
    for (int i = 0; i < 400; i++)
        json_array_append_new(items, json_pack("{s:s,s:s,s:{s:i,s:s}}", "product", "concentrate",
                                               "mineral", "zinc", "quantity", "value", 28153,
                                               "unit", "t"));
    json_t *prod = json_pack("{s:s,s:{s:s,s:s,s:i,s:{s:s,s:s},s:o}}", "type",
                             "pk.gov.emining.production.reported", "data", "projectId", "duddar",
                             "licenceId", "PK-BA/ML-X", "revision", 0, "period", "start",
                             "2017-01-01", "end", "2017-09-30", "items", items);
    for (int l = 0; s_langs[l]; l++) {
        assert_int_equal(em_template_render(t, s_langs[l], NULL, prod, out, sizeof out, NULL,
                                            NULL), 0);
        assert_true(strlen(out) <= EM_TEMPLATE_MAX_OUT);
        s_check_output("many items", out, false);
    }
    json_decref(prod);
    json_decref(ev);
    free(big);
    em_template_destroy(&t);
}

/* Every data member of every fixture replaced by hostile or odd values, many times over: the
 * output invariants hold in every language (Urdu: every Latin letter and digit isolated). */
static void test_random_values(void **state)
{
    (void)state;
    static const char *pool[] = {
        "null", "true", "0", "-1", "1e300", "-0.000001", "123456789012345678", "52.76",
        "\"\"", "\"PK-BA/ML-1\"", "\"\\u202e\\u2066x\\u2069\\u2069\"", "\"a\\nb\\tc\"",
        "\"2026-04-02T21:30:00+05:00\"", "\"2026-13-40\"", "\"2024-02-29\"", "\"\\u0628\\u0644\"",
        "\"\\u94dc\"", "\"copper\"", "\"ML\"", "[]", "[1,[2,[3]]]", "[\"zinc\",\"lead\",null]",
        "{}", "{\"en\":\"x\",\"ur\":\"\\u0633\"}", "{\"value\":\"9\",\"unit\":\"t\"}",
        "{\"amount\":\"-12345.678\",\"currency\":\"PKR\"}", "[{\"party\":{\"name\":7}}]",
        "[{\"quantity\":{\"value\":1.5,\"unit\":\"kg\"},\"mineral\":{},\"product\":[]}]"};
    const size_t npool = sizeof pool / sizeof *pool;
    em_template_t *t = s_load();
    json_t *events = json_array();
    s_fixture_events(events);
    unsigned seed = 12345;
    int renders = 0;
    for (int round = 0; round < 20; round++) {
        size_t i;
        json_t *orig;
        json_array_foreach(events, i, orig)
        {
            json_t *ev = json_deep_copy(orig);
            json_t *data = json_object_get(ev, "data");
            const char *k;
            json_t *v;
            void *tmp;
            json_object_foreach_safe(data, tmp, k, v)
            {
                seed = seed * 1103515245u + 12345u;
                if ((seed >> 16) % 3 == 0)
                    continue; /* keep some members as they are */
                json_t *nv = json_loads(pool[(seed >> 8) % npool], JSON_DECODE_ANY, NULL);
                assert_non_null(nv);
                json_object_set_new(data, k, nv);
            }
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 16) % 5 == 0)
                json_object_set_new(ev, "province", json_integer(7));
            for (int l = 0; s_langs[l]; l++) {
                char out[EM_TEMPLATE_MAX_OUT + 1];
                int missing = -1;
                assert_int_equal(em_template_render(t, s_langs[l], s_zones[round % 2], ev, out,
                                                    sizeof out, NULL, &missing),
                                 0);
                assert_true(missing >= 0);
                s_check_output("random values", out, strcmp(s_langs[l], "ur") == 0);
                renders++;
            }
            json_decref(ev);
        }
    }
    print_message("%d renders of randomly altered events\n", renders);
    json_decref(events);
    em_template_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_every_type_every_language),
        cmocka_unit_test(test_exact_texts),
        cmocka_unit_test(test_time_zones),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_missing_fallback_hostile),
        cmocka_unit_test(test_random_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
