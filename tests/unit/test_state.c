/* test_state.c - validate's stateful domain rules (services/validate/state.h) against a real
 * PostgreSQL holding the archive's schema: a KP exploration licence transferred within two
 * years of its archived grant, renewals and transfers of revoked, surrendered and unknown
 * licences, a renewal that enlarges the area; and PostgreSQL stopped or not answering: the
 * rules are skipped with a note, within the timeout, and the event is not rejected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <glob.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../services/validate/catalogue.h"
#include "../../services/validate/state.h"
#include "../../services/validate/validate.h"
#include "em.h"
#include "em_testsrv.h"

static struct {
    const char *dsn;
    PGconn *pg;
    vcat_t *cat;
    vhist_t *hist;
    long long seq;
} C;

static char *s_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static void s_exec(const char *sql)
{
    PGresult *r = PQexec(C.pg, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

/* Archives an event of type (without prefix) for its data (JSON text), as archive would. */
static void s_archive(const char *type, const char *data)
{
    char seq[32], id[48], full[128], *env = NULL;
    snprintf(seq, sizeof seq, "%lld", ++C.seq);
    snprintf(id, sizeof id, "hist-%lld", C.seq);
    snprintf(full, sizeof full, "pk.gov.emining.%s", type);
    assert_true(asprintf(&env,
                         "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/pk/test\","
                         "\"type\":\"%s\",\"data\":%s}",
                         id, full, data) > 0);
    const char *v[] = {seq, id, full, env};
    PGresult *r = PQexecParams(C.pg,
                               "INSERT INTO events (seq, source, id, type, envelope, digest, chain)"
                               " VALUES ($1::bigint, '/pk/test', $2, $3, $4::jsonb,"
                               " repeat('0', 64), repeat('0', 64))",
                               4, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("insert: %s", PQresultErrorMessage(r));
    PQclear(r);
    free(env);
}

/* Archives the event raw itself (its own source and id), as archive would have. */
static void s_archive_raw(const char *raw)
{
    json_t *ev = json_loads(raw, 0, NULL);
    char seq[32];
    snprintf(seq, sizeof seq, "%lld", ++C.seq);
    const char *v[] = {seq, json_string_value(json_object_get(ev, "source")),
                       json_string_value(json_object_get(ev, "id")),
                       json_string_value(json_object_get(ev, "type")), raw};
    PGresult *r = PQexecParams(C.pg,
                               "INSERT INTO events (seq, source, id, type, envelope, digest, chain)"
                               " VALUES ($1::bigint, $2, $3, $4, $5::jsonb,"
                               " repeat('0', 64), repeat('0', 64))",
                               5, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("insert: %s", PQresultErrorMessage(r));
    PQclear(r);
    json_decref(ev);
}

/* A catalogue fixture with data members replaced (JSON object text) and removed (NULL-ended
 * list).  Caller frees. */
static char *s_fixture(const char *path, const char *set, const char *const *del)
{
    char *text = s_file(path);
    json_t *ev = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(ev);
    json_t *data = json_object_get(ev, "data");
    json_t *upd = json_loads(set, 0, NULL);
    assert_non_null(upd);
    json_object_update(data, upd);
    json_decref(upd);
    for (; del && *del; del++)
        json_object_del(data, *del);
    char *out = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    return out;
}

#define TRANSFER "tests/fixtures/schemas/licence.transferred/valid-kp-exploration-after-3-years.json"
#define RENEWAL "tests/fixtures/schemas/licence.renewed/valid-saindak-2022.json"

/* validate's verdict on raw with the test's reader (or hist). */
static json_t *s_verdict_with(vhist_t *hist, const char *raw)
{
    json_t *hdr = json_pack("{s:s}", "ing", "t");
    json_t *v = validate_event_state(C.cat, false, hist, hdr, raw, strlen(raw), 64);
    json_decref(hdr);
    return v;
}

static json_t *s_verdict(const char *raw)
{
    return s_verdict_with(C.hist, raw);
}

/* "pointer keyword" of every entry of the verdict's member ("errors" or "notes"), joined by
 * ",".  Caller frees. */
static char *s_list(const json_t *v, const char *member)
{
    char *out = calloc(1, 4096);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(v, member), i, e)
    {
        if (i)
            strcat(out, ",");
        snprintf(out + strlen(out), 4096 - strlen(out), "%s %s",
                 json_string_value(json_object_get(e, "pointer")),
                 json_string_value(json_object_get(e, "keyword")));
    }
    return out;
}

static void s_expect(const char *raw, const char *verdict, const char *errors, const char *notes)
{
    json_t *v = s_verdict(raw);
    char *e = s_list(v, "errors"), *n = s_list(v, "notes");
    if (strcmp(json_string_value(json_object_get(v, "verdict")), verdict) != 0 ||
        strcmp(e, errors) != 0 || strcmp(n, notes) != 0)
        fail_msg("verdict %s errors [%s] notes [%s]; want %s [%s] [%s]",
                 json_string_value(json_object_get(v, "verdict")), e, n, verdict, errors, notes);
    free(e);
    free(n);
    json_decref(v);
}

/* ---------------------------------------------------------------------------------------- */

static int s_setup(void **state)
{
    (void)state;
    C.dsn = em_testsrv_pg_start();
    C.pg = PQconnectdb(C.dsn);
    assert_int_equal(PQstatus(C.pg), CONNECTION_OK);
    /* The archive's schema, as archive applies it. */
    glob_t gl;
    assert_int_equal(glob("services/archive/migrations/[0-9][0-9][0-9]_*.sql", 0, NULL, &gl), 0);
    for (size_t i = 0; i < gl.gl_pathc; i++) {
        char *sql = s_file(gl.gl_pathv[i]);
        s_exec(sql);
        free(sql);
    }
    globfree(&gl);
    char *err = NULL;
    C.cat = vcat_load("config/schemas", &err);
    assert_non_null(C.cat);
    C.hist = vhist_new(C.dsn, 1000, 300);
    assert_non_null(C.hist);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    vhist_destroy(&C.hist);
    vcat_unref(&C.cat);
    PQfinish(C.pg);
    em_testsrv_stop_all();
    return 0;
}

/* ---------------------------------------------------------------------------------------- */

static void test_kp_transfer_within_two_years_of_grant(void **state)
{
    (void)state;
    static const char *no_issued[] = {"issuedOn", NULL};
    s_archive("licence.granted", "{\"licenceId\":\"PK-KP/EL-STATE-1\",\"licenceType\":\"EL\","
                                 "\"grantedOn\":\"2024-01-10\",\"validFrom\":\"2024-01-10\"}");
    /* Without issuedOn in the event only the archive knows the issue date. */
    char *early = s_fixture(TRANSFER,
                            "{\"licenceId\":\"PK-KP/EL-STATE-1\",\"effectiveOn\":\"2025-03-01\"}",
                            no_issued);
    s_expect(early, "rejected", "/data/effectiveOn kpTransferAfter2YearsOfGrant", "");
    json_t *v = s_verdict(early);
    const char *msg = json_string_value(
        json_object_get(json_array_get(json_object_get(v, "errors"), 0), "message"));
    assert_non_null(strstr(msg, "2024-01-10"));
    assert_non_null(strstr(msg, "2026-01-10"));
    json_decref(v);
    char *eve = s_fixture(TRANSFER,
                          "{\"licenceId\":\"PK-KP/EL-STATE-1\",\"effectiveOn\":\"2026-01-09\"}",
                          no_issued);
    s_expect(eve, "rejected", "/data/effectiveOn kpTransferAfter2YearsOfGrant", "");
    char *day = s_fixture(TRANSFER,
                          "{\"licenceId\":\"PK-KP/EL-STATE-1\",\"effectiveOn\":\"2026-01-10\"}",
                          no_issued);
    s_expect(day, "ok", "", "");
    /* Another province, or a mining lease in KP: the rule does not apply. */
    s_archive("licence.granted", "{\"licenceId\":\"PK-KP/ML-STATE-1\",\"licenceType\":\"ML\","
                                 "\"grantedOn\":\"2024-01-10\"}");
    char *ml = s_fixture(TRANSFER,
                         "{\"licenceId\":\"PK-KP/ML-STATE-1\",\"effectiveOn\":\"2024-03-01\"}",
                         no_issued);
    s_expect(ml, "ok", "", "");
    free(early);
    free(eve);
    free(day);
    free(ml);
}

static void test_licence_in_force(void **state)
{
    (void)state;
    /* Unknown to the archive: accepted with a note (the platform may not hold the history). */
    char *unknown = s_fixture(RENEWAL, "{\"licenceId\":\"PK-BA/ML-NEVER-SEEN\"}", NULL);
    s_expect(unknown, "ok", "", "/data/licenceId licenceInForce");
    /* Granted, then revoked: a renewal is rejected. */
    s_archive("licence.granted", "{\"licenceId\":\"PK-BA/ML-STATE-2\",\"licenceType\":\"ML\","
                                 "\"grantedOn\":\"2010-01-01\"}");
    char *renew = s_fixture(RENEWAL, "{\"licenceId\":\"PK-BA/ML-STATE-2\"}", NULL);
    s_expect(renew, "ok", "", "");
    s_archive("licence.revoked", "{\"licenceId\":\"PK-BA/ML-STATE-2\",\"grounds\":\"safety\","
                                 "\"effectiveOn\":\"2021-06-01\"}");
    s_expect(renew, "rejected", "/data/licenceId licenceInForce", "");
    /* The revocation overturned on appeal, then granted again: in force. */
    s_archive("licence.revoked", "{\"licenceId\":\"PK-BA/ML-STATE-3\",\"grounds\":\"safety\"}");
    s_archive("licence.granted", "{\"licenceId\":\"PK-BA/ML-STATE-3\",\"licenceType\":\"ML\"}");
    s_archive("licence.revoked", "{\"licenceId\":\"PK-BA/ML-STATE-3\",\"grounds\":\"safety\","
                                 "\"appealStatus\":\"overturned\"}");
    char *renew3 = s_fixture(RENEWAL, "{\"licenceId\":\"PK-BA/ML-STATE-3\"}", NULL);
    s_expect(renew3, "ok", "", "");
    s_archive("licence.revoked", "{\"licenceId\":\"PK-BA/ML-STATE-2\",\"grounds\":\"safety\"}");
    s_archive("licence.granted", "{\"licenceId\":\"PK-BA/ML-STATE-2\",\"licenceType\":\"ML\"}");
    s_expect(renew, "ok", "", "");
    /* Surrendered (a partial relinquishment is not the end): a transfer is rejected. */
    s_archive("licence.granted", "{\"licenceId\":\"PK-KP/EL-STATE-4\",\"licenceType\":\"EL\","
                                 "\"grantedOn\":\"2015-01-01\"}");
    s_archive("licence.relinquished", "{\"licenceId\":\"PK-KP/EL-STATE-4\","
                                      "\"kind\":\"partial_relinquishment\"}");
    char *tr = s_fixture(TRANSFER, "{\"licenceId\":\"PK-KP/EL-STATE-4\"}", NULL);
    s_expect(tr, "ok", "", "");
    s_archive("licence.relinquished", "{\"licenceId\":\"PK-KP/EL-STATE-4\","
                                      "\"kind\":\"surrender\",\"effectiveOn\":\"2020-01-01\"}");
    s_expect(tr, "rejected", "/data/licenceId licenceInForce", "");
    /* A transfer of an unknown licence: a note too. */
    char *tru = s_fixture(TRANSFER, "{\"licenceId\":\"PK-KP/EL-NEVER-SEEN\"}", NULL);
    s_expect(tru, "ok", "", "/data/licenceId licenceInForce");
    free(unknown);
    free(renew);
    free(renew3);
    free(tr);
    free(tru);
}

static void test_renewal_does_not_enlarge(void **state)
{
    (void)state;
    s_archive("licence.granted", "{\"licenceId\":\"PK-BA/ML-STATE-5\",\"licenceType\":\"ML\","
                                 "\"areaKm2\":95.5}");
    char *bigger = s_fixture(RENEWAL,
                             "{\"licenceId\":\"PK-BA/ML-STATE-5\",\"areaKm2After\":100}", NULL);
    s_expect(bigger, "rejected", "/data/areaKm2After renewedAreaNotLarger", "");
    char *same = s_fixture(RENEWAL,
                           "{\"licenceId\":\"PK-BA/ML-STATE-5\",\"areaKm2After\":95.5}", NULL);
    s_expect(same, "ok", "", "");
    /* Relinquished down to 50 km2 (remaining area), then less 10: 40 in force. */
    s_archive("licence.relinquished",
              "{\"licenceId\":\"PK-BA/ML-STATE-5\",\"kind\":\"partial_relinquishment\","
              "\"areaKm2Relinquished\":45.5,\"remainingArea\":{\"type\":\"Polygon\","
              "\"areaKm2\":50}}");
    s_archive("licence.relinquished",
              "{\"licenceId\":\"PK-BA/ML-STATE-5\",\"kind\":\"partial_relinquishment\","
              "\"areaKm2Relinquished\":10}");
    char *sixty = s_fixture(RENEWAL,
                            "{\"licenceId\":\"PK-BA/ML-STATE-5\",\"areaKm2After\":41}", NULL);
    s_expect(sixty, "rejected", "/data/areaKm2After renewedAreaNotLarger", "");
    char *forty = s_fixture(RENEWAL,
                            "{\"licenceId\":\"PK-BA/ML-STATE-5\",\"areaKm2After\":40}", NULL);
    s_expect(forty, "ok", "", "");
    /* An earlier renewal's area is the one in force. */
    s_archive("licence.renewed", "{\"licenceId\":\"PK-BA/ML-STATE-5\",\"areaKm2After\":30}");
    s_expect(forty, "rejected", "/data/areaKm2After renewedAreaNotLarger", "");
    /* A grant without areaKm2: a note, not an error. */
    s_archive("licence.granted", "{\"licenceId\":\"PK-BA/ML-STATE-6\",\"licenceType\":\"ML\","
                                 "\"area\":{\"type\":\"Polygon\"}}");
    char *noarea = s_fixture(RENEWAL,
                             "{\"licenceId\":\"PK-BA/ML-STATE-6\",\"areaKm2After\":10}", NULL);
    s_expect(noarea, "ok", "", "/data/areaKm2After renewedAreaNotLarger");
    free(bigger);
    free(same);
    free(sixty);
    free(forty);
    free(noarea);
}

/* A re-send of an archived event is judged on the history before it, so that it passes again
 * and archive answers it duplicate with the original seq, even after the licence's revocation;
 * a new renewal is rejected. */
static void test_resend_judged_as_before(void **state)
{
    (void)state;
    s_archive("licence.granted", "{\"licenceId\":\"PK-BA/ML-STATE-7\",\"licenceType\":\"ML\","
                                 "\"areaKm2\":10}");
    char *renew = s_fixture(RENEWAL, "{\"licenceId\":\"PK-BA/ML-STATE-7\",\"areaKm2After\":10}",
                            NULL);
    s_expect(renew, "ok", "", "");
    s_archive_raw(renew);
    s_archive("licence.revoked", "{\"licenceId\":\"PK-BA/ML-STATE-7\",\"grounds\":\"safety\"}");
    s_archive("licence.granted", "{\"licenceId\":\"PK-BA/ML-STATE-7\",\"licenceType\":\"ML\","
                                 "\"areaKm2\":10}");
    s_archive("licence.revoked", "{\"licenceId\":\"PK-BA/ML-STATE-7\",\"grounds\":\"safety\"}");
    s_expect(renew, "ok", "", "");
    char *other = s_fixture(RENEWAL, "{\"licenceId\":\"PK-BA/ML-STATE-7\",\"areaKm2After\":10}",
                            NULL);
    json_t *ev = json_loads(other, 0, NULL);
    json_object_set_new(ev, "id", json_string("a-new-renewal"));
    free(other);
    other = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    s_expect(other, "rejected", "/data/licenceId licenceInForce", "");
    free(renew);
    free(other);
}

/* A rejected event costs no query and gets no state note. */
static void test_rejected_event_not_queried(void **state)
{
    (void)state;
    char *bad = s_fixture(RENEWAL,
                          "{\"licenceId\":\"PK-BA/ML-NEVER-SEEN\",\"newValidTo\":\"2000-01-01\"}",
                          NULL);
    s_expect(bad, "rejected", "/data/newValidTo newValidToAfterPrevious", "");
    free(bad);
}

/* A server that accepts the connection and never answers: the reader gives up within its
 * timeout, the event passes with a note per rule, and during retry_ms the next event does not
 * wait at all. */
static void test_postgres_not_answering(void **state)
{
    (void)state;
    int port = em_testsrv_free_port();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    char dsn[128];
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=emine user=emine", port);
    vhist_t *h = vhist_new(dsn, 400, 5000);
    char *renew = s_fixture(RENEWAL,
                            "{\"licenceId\":\"PK-BA/ML-STATE-5\",\"areaKm2After\":1000}", NULL);
    int64_t t0 = em_mono_ms();
    json_t *v = s_verdict_with(h, renew);
    int64_t took = em_mono_ms() - t0;
    assert_true(took >= 350 && took < 1500);
    assert_string_equal(json_string_value(json_object_get(v, "verdict")), "ok");
    char *n = s_list(v, "notes");
    assert_string_equal(n, "/data/licenceId licenceInForce,/data/licenceId renewedAreaNotLarger");
    free(n);
    const char *msg = json_string_value(
        json_object_get(json_array_get(json_object_get(v, "notes"), 0), "message"));
    assert_non_null(strstr(msg, "not checked"));
    assert_non_null(strstr(msg, "timed out"));
    json_decref(v);
    t0 = em_mono_ms();
    v = s_verdict_with(h, renew);
    assert_true(em_mono_ms() - t0 < 100);
    assert_string_equal(json_string_value(json_object_get(v, "verdict")), "ok");
    assert_int_equal(json_array_size(json_object_get(v, "notes")), 2);
    json_decref(v);
    vhist_destroy(&h);
    close(fd);
    free(renew);
}

/* PostgreSQL stopped: notes, no rejection; started again: after retry_ms the rules run again
 * on a new connection. */
static void test_postgres_stopped_then_back(void **state)
{
    (void)state;
    char *bigger = s_fixture(RENEWAL,
                             "{\"licenceId\":\"PK-BA/ML-STATE-5\",\"areaKm2After\":1000}", NULL);
    s_expect(bigger, "rejected", "/data/areaKm2After renewedAreaNotLarger", "");
    em_testsrv_pg_stop();
    int64_t t0 = em_mono_ms();
    s_expect(bigger, "ok", "",
             "/data/licenceId licenceInForce,/data/licenceId renewedAreaNotLarger");
    assert_true(em_mono_ms() - t0 < 1500);
    em_testsrv_pg_start();
    usleep(400 * 1000); /* retry_ms of the test's reader is 300 */
    s_expect(bigger, "rejected", "/data/areaKm2After renewedAreaNotLarger", "");
    free(bigger);
}

/* The history query uses the index of migration 006. */
static void test_history_uses_index(void **state)
{
    (void)state;
    PQfinish(C.pg);
    C.pg = PQconnectdb(C.dsn);
    assert_int_equal(PQstatus(C.pg), CONNECTION_OK);
    s_exec("SET enable_seqscan = off");
    PGresult *r = PQexec(C.pg, "EXPLAIN SELECT seq FROM events"
                               " WHERE type LIKE 'pk.gov.emining.licence.%'"
                               " AND (envelope #>> '{data,licenceId}') = 'PK-BA/ML-STATE-5'"
                               " AND type = ANY('{pk.gov.emining.licence.granted}'::text[])"
                               " AND seq < COALESCE((SELECT seq FROM events"
                               "  WHERE source = '/pk/test' AND id = 'x'), 9223372036854775807)"
                               " ORDER BY seq DESC LIMIT 1000");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    int found = 0;
    for (int i = 0; i < PQntuples(r); i++)
        found |= strstr(PQgetvalue(r, i, 0), "events_licence_seq") != NULL;
    PQclear(r);
    assert_true(found);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kp_transfer_within_two_years_of_grant),
        cmocka_unit_test(test_licence_in_force),
        cmocka_unit_test(test_renewal_does_not_enlarge),
        cmocka_unit_test(test_resend_judged_as_before),
        cmocka_unit_test(test_rejected_event_not_queried),
        cmocka_unit_test(test_postgres_not_answering),
        cmocka_unit_test(test_postgres_stopped_then_back),
        cmocka_unit_test(test_history_uses_index),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
