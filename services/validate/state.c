/* state.c - the stateful domain rules and their read-only archive reader (see state.h). */
#include "state.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "catalogue.h"
#include "em_json.h"
#include "em_util.h"
#include "rules.h"

struct vhist {
    char *dsn;          /* libpq connection string */
    char options[128];  /* "-c statement_timeout=N -c default_transaction_read_only=on" */
    int timeout_ms;     /* bound of the connection and of each query */
    int retry_ms;       /* no new attempt for this long after a failure */
    PGconn *conn;       /* NULL until connected (and after a failure) */
    int64_t retry_at;   /* monotonic ms before which no attempt is made */
    char last_err[256]; /* reason of the last failure */
    atomic_ullong ok;     /* reads that succeeded */
    atomic_ullong failed; /* reads that failed */
};

#define S_STR2(x) #x
#define S_STR(x) S_STR2(x)

/* The licence lifecycle types a history holds.  The query's $2. */
static const char *s_types_param =
    "{pk.gov.emining.licence.granted,pk.gov.emining.licence.renewed,"
    "pk.gov.emining.licence.transferred,pk.gov.emining.licence.relinquished,"
    "pk.gov.emining.licence.revoked}";

/* Read through the partial index events_licence_seq (migration 006).  When the event itself
 * ($3 source, $4 id) is archived already, only what came before it counts. */
static const char *s_sql_history =
    "SELECT seq, type, envelope -> 'data' FROM ("
    " SELECT seq, type, envelope FROM events"
    " WHERE type LIKE 'pk.gov.emining.licence.%' AND (envelope #>> '{data,licenceId}') = $1"
    "  AND type = ANY($2::text[])"
    "  AND seq < COALESCE((SELECT seq FROM events WHERE source = $3 AND id = $4),"
    "   9223372036854775807)"
    " ORDER BY seq DESC LIMIT " S_STR(VHIST_MAX) ") AS h ORDER BY seq";

vhist_t *vhist_new(const char *dsn, int timeout_ms, int retry_ms)
{
    vhist_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->dsn = strdup(dsn ? dsn : "");
    if (!self->dsn) {
        free(self);
        return NULL;
    }
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
    self->retry_ms = retry_ms >= 0 ? retry_ms : 0;
    snprintf(self->options, sizeof self->options,
             "-c statement_timeout=%d -c default_transaction_read_only=on", self->timeout_ms);
    return self;
}

void vhist_destroy(vhist_t **self_p)
{
    if (self_p && *self_p) {
        vhist_t *self = *self_p;
        if (self->conn)
            PQfinish(self->conn);
        free(self->dsn);
        free(self);
        *self_p = NULL;
    }
}

/* Waits until fd is ready for events or the deadline passes.  Returns 1 ready, 0 timed out,
 * -1 error. */
static int s_wait(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - em_mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        return rc < 0 ? -1 : rc > 0;
    }
}

/* Records a failure: the connection is dropped and no attempt is made for retry_ms. */
static int s_fail(vhist_t *self, const char *what, char *err, size_t errlen)
{
    const char *detail = self->conn ? PQerrorMessage(self->conn) : "";
    snprintf(self->last_err, sizeof self->last_err, "%s%s%.*s", what, *detail ? ": " : "",
             (int)strcspn(detail, "\n"), detail);
    if (self->conn)
        PQfinish(self->conn);
    self->conn = NULL;
    self->retry_at = em_mono_ms() + self->retry_ms;
    snprintf(err, errlen, "%s", self->last_err);
    return -1;
}

/* Connects without blocking past the deadline.  Returns 0 or -1 (s_fail done). */
static int s_connect(vhist_t *self, int64_t deadline, char *err, size_t errlen)
{
    const char *keys[] = {"dbname", "options", "application_name", NULL};
    const char *vals[] = {self->dsn, self->options, "emine-validate", NULL};
    self->conn = PQconnectStartParams(keys, vals, 1);
    if (!self->conn || PQstatus(self->conn) == CONNECTION_BAD)
        return s_fail(self, "postgres connection failed", err, errlen);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED)
            return s_fail(self, "postgres connection failed", err, errlen);
        int rc = s_wait(PQsocket(self->conn), st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
                        deadline);
        if (rc <= 0)
            return s_fail(self, rc == 0 ? "postgres connection timed out" : "poll failed", err,
                          errlen);
        st = PQconnectPoll(self->conn);
    }
    if (PQsetnonblocking(self->conn, 1) != 0)
        return s_fail(self, "postgres connection failed", err, errlen);
    return 0;
}

/* Runs the history query with the deadline.  Returns the result (PQclear it) or NULL
 * (s_fail done). */
static PGresult *s_query(vhist_t *self, const char *licence_id, const char *source,
                         const char *id, int64_t deadline, char *err, size_t errlen)
{
    const char *vals[4] = {licence_id, s_types_param, source, id};
    PGresult *res = NULL, *r;
    int rc;

    if (!PQsendQueryParams(self->conn, s_sql_history, 4, NULL, vals, NULL, NULL, 0)) {
        s_fail(self, "postgres query failed", err, errlen);
        return NULL;
    }
    while ((rc = PQflush(self->conn)) == 1)
        if (s_wait(PQsocket(self->conn), POLLOUT, deadline) <= 0) {
            s_fail(self, "postgres query timed out", err, errlen);
            return NULL;
        }
    if (rc < 0) {
        s_fail(self, "postgres query failed", err, errlen);
        return NULL;
    }
    for (;;) {
        while (PQisBusy(self->conn)) {
            if ((rc = s_wait(PQsocket(self->conn), POLLIN, deadline)) <= 0 ||
                !PQconsumeInput(self->conn)) {
                PQclear(res);
                s_fail(self, rc == 0 ? "postgres query timed out" : "postgres query failed",
                       err, errlen);
                return NULL;
            }
        }
        if (!(r = PQgetResult(self->conn)))
            break;
        if (!res)
            res = r;
        else
            PQclear(r);
    }
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        char msg[200];
        snprintf(msg, sizeof msg, "postgres query failed: %.*s",
                 res ? (int)strcspn(PQresultErrorMessage(res), "\n") : 0,
                 res ? PQresultErrorMessage(res) : "");
        PQclear(res);
        /* A statement error (e.g. the events table not there yet) keeps the connection. */
        if (PQstatus(self->conn) == CONNECTION_OK) {
            snprintf(self->last_err, sizeof self->last_err, "%s", msg);
            snprintf(err, errlen, "%s", msg);
            self->retry_at = em_mono_ms() + self->retry_ms;
        } else {
            s_fail(self, "postgres query failed", err, errlen);
        }
        return NULL;
    }
    return res;
}

unsigned long long vhist_reads_ok(const vhist_t *self)
{
    return self ? atomic_load(&((vhist_t *)self)->ok) : 0;
}

unsigned long long vhist_reads_failed(const vhist_t *self)
{
    return self ? atomic_load(&((vhist_t *)self)->failed) : 0;
}

static int s_read(vhist_t *self, const char *licence_id, const char *source, const char *id,
                  json_t **out, char *err, size_t errlen);

int vhist_licence(vhist_t *self, const char *licence_id, const char *source, const char *id,
                  json_t **out, char *err, size_t errlen)
{
    int rc = s_read(self, licence_id, source, id, out, err, errlen);
    atomic_fetch_add(rc == 0 ? &self->ok : &self->failed, 1);
    return rc;
}

static int s_read(vhist_t *self, const char *licence_id, const char *source, const char *id,
                  json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    int64_t now = em_mono_ms();
    if (now < self->retry_at) {
        snprintf(err, errlen, "%s (next attempt in %lld ms)", self->last_err,
                 (long long)(self->retry_at - now));
        return -1;
    }
    int64_t deadline = now + self->timeout_ms;
    if (self->conn && PQstatus(self->conn) != CONNECTION_OK) {
        PQfinish(self->conn);
        self->conn = NULL;
    }
    if (!self->conn && s_connect(self, deadline, err, errlen) != 0)
        return -1;
    PGresult *res = s_query(self, licence_id, source, id, deadline, err, errlen);
    if (!res)
        return -1;
    json_t *arr = json_array();
    size_t plen = strlen(VCAT_TYPE_PREFIX);
    for (int i = 0; i < PQntuples(res); i++) {
        const char *type = PQgetvalue(res, i, 1);
        const char *data = PQgetvalue(res, i, 2);
        json_t *d = PQgetisnull(res, i, 2) ? json_null() : json_loads(data, 0, NULL);
        json_array_append_new(
            arr, json_pack("{s:I, s:s, s:o}", "seq", (json_int_t)strtoll(PQgetvalue(res, i, 0),
                                                                         NULL, 10),
                           "type", strncmp(type, VCAT_TYPE_PREFIX, plen) == 0 ? type + plen : type,
                           "data", d ? d : json_null()));
    }
    PQclear(res);
    *out = arr;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The rules */

static const char *s_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* The standing of a licence after its history: the last grant (borrowed, NULL when none) and
 * the event that ended it after that grant (revocation not overturned, or surrender). */
typedef struct {
    const json_t *grant;   /* data of the last licence.granted */
    json_int_t grant_seq;  /* its seq */
    const json_t *ended;   /* data of the revocation or surrender after it, or NULL */
    const char *ended_how; /* "revoked" or "surrendered" */
    json_int_t ended_seq;
} standing_t;

static standing_t s_standing(const json_t *history)
{
    standing_t st = {0};
    size_t i;
    json_t *h;
    json_array_foreach(history, i, h)
    {
        const char *t = s_str(h, "type");
        const json_t *d = json_object_get(h, "data");
        json_int_t seq = json_integer_value(json_object_get(h, "seq"));
        if (!t || !json_is_object(d))
            continue;
        if (strcmp(t, "licence.granted") == 0) {
            st.grant = d;
            st.grant_seq = seq;
            st.ended = NULL;
        } else if (strcmp(t, "licence.revoked") == 0 && st.grant) {
            const char *appeal = s_str(d, "appealStatus");
            if (!appeal || strcmp(appeal, "overturned") != 0) {
                st.ended = d;
                st.ended_how = "revoked";
                st.ended_seq = seq;
            }
        } else if (strcmp(t, "licence.relinquished") == 0 && st.grant) {
            const char *kind = s_str(d, "kind");
            if (kind && strcmp(kind, "surrender") == 0) {
                st.ended = d;
                st.ended_how = "surrendered";
                st.ended_seq = seq;
            }
        }
    }
    return st;
}

static void r_in_force(const json_t *ev, const json_t *data, const json_t *history,
                       json_t *errors, json_t *notes)
{
    const char *id = s_str(data, "licenceId");
    const char *type = s_str(ev, "type");
    const char *what = type && strstr(type, "renewed") ? "renewed" : "transferred";
    standing_t st = s_standing(history);

    if (!st.grant) {
        em_errors_add(notes, "/data/licenceId", "licenceInForce",
                      "not checked: no licence.granted for %s in the archive (the platform may "
                      "not hold the licence's whole history)",
                      id);
        return;
    }
    if (st.ended)
        em_errors_add(errors, "/data/licenceId", "licenceInForce",
                      "licence %s was %s (seq %lld, effective %s) after its grant (seq %lld): "
                      "it cannot be %s",
                      id, st.ended_how, (long long)st.ended_seq,
                      s_str(st.ended, "effectiveOn") ? s_str(st.ended, "effectiveOn") : "?",
                      (long long)st.grant_seq, what);
}

/* "YYYY-MM-DD..." into y, m, d; false when s does not start with a date. */
static bool s_ymd(const char *s, int *y, int *m, int *d)
{
    long long ms;
    char day[11];
    if (!s || strlen(s) < 10)
        return false;
    memcpy(day, s, 10);
    day[10] = '\0';
    if (!vrules_time(day, &ms))
        return false;
    return sscanf(day, "%4d-%2d-%2d", y, m, d) == 3;
}

static void r_kp_transfer(const json_t *ev, const json_t *data, const json_t *history,
                          json_t *errors, json_t *notes)
{
    (void)ev, (void)notes;
    const char *id = s_str(data, "licenceId");
    standing_t st = s_standing(history);
    int iy, im, id_, ey, em, ed;

    if (!id || strncmp(id, "PK-KP/", 6) != 0 || !st.grant)
        return;
    const char *lt = s_str(st.grant, "licenceType");
    if (lt ? strcmp(lt, "EL") != 0 : strncmp(id, "PK-KP/EL-", 9) != 0)
        return;
    const char *issued = s_str(st.grant, "grantedOn");
    if (!s_ymd(issued, &iy, &im, &id_)) {
        issued = s_str(st.grant, "validFrom");
        if (!s_ymd(issued, &iy, &im, &id_))
            return;
    }
    if (!s_ymd(s_str(data, "effectiveOn"), &ey, &em, &ed))
        return;
    /* Two calendar years from issue: allowed from (y+2)-m-d on. */
    long a = (long)ey * 10000 + em * 100 + ed, b = (long)(iy + 2) * 10000 + im * 100 + id_;
    if (a < b)
        em_errors_add(errors, "/data/effectiveOn", "kpTransferAfter2YearsOfGrant",
                      "Khyber Pakhtunkhwa forbids transferring an exploration licence before two "
                      "years from its issue: %s was issued on %.10s (seq %lld), so not before "
                      "%04d-%02d-%02d",
                      id, issued, (long long)st.grant_seq, iy + 2, im, id_);
}

/* areaKm2 of a grant or a remaining area: the member, or the one inside `area`. */
static bool s_area_km2(const json_t *d, const char *area_key, double *out)
{
    const json_t *v = json_object_get(d, "areaKm2");
    if (!json_is_number(v))
        v = json_object_get(json_object_get(d, area_key), "areaKm2");
    if (!json_is_number(v))
        return false;
    *out = json_number_value(v);
    return true;
}

static void r_renewed_area(const json_t *ev, const json_t *data, const json_t *history,
                           json_t *errors, json_t *notes)
{
    (void)ev;
    const json_t *after = json_object_get(data, "areaKm2After");
    const char *id = s_str(data, "licenceId");
    bool known = false, granted = false;
    double area = 0, v;
    json_int_t from = 0;
    size_t i;
    json_t *h;

    if (!json_is_number(after))
        return;
    /* The area in force: the grant's, then each renewal's areaKm2After and each
     * relinquishment's remaining area (or the area less what was relinquished). */
    json_array_foreach(history, i, h)
    {
        const char *t = s_str(h, "type");
        const json_t *d = json_object_get(h, "data");
        json_int_t seq = json_integer_value(json_object_get(h, "seq"));
        if (!t || !json_is_object(d))
            continue;
        if (strcmp(t, "licence.granted") == 0) {
            granted = true;
            known = s_area_km2(d, "area", &area);
            from = seq;
        } else if (!granted) {
            continue;
        } else if (strcmp(t, "licence.renewed") == 0 &&
                   json_is_number(json_object_get(d, "areaKm2After"))) {
            area = json_number_value(json_object_get(d, "areaKm2After"));
            known = true;
            from = seq;
        } else if (strcmp(t, "licence.relinquished") == 0) {
            const json_t *rem = json_object_get(d, "remainingArea");
            if (json_is_number(json_object_get(rem, "areaKm2"))) {
                area = json_number_value(json_object_get(rem, "areaKm2"));
                known = true;
                from = seq;
            } else if (known && json_is_number(json_object_get(d, "areaKm2Relinquished"))) {
                area -= json_number_value(json_object_get(d, "areaKm2Relinquished"));
                from = seq;
            }
        }
    }
    if (!granted)
        return; /* licenceInForce notes the unknown licence */
    if (!known) {
        em_errors_add(notes, "/data/areaKm2After", "renewedAreaNotLarger",
                      "not checked: the archived grant of %s states no areaKm2", id);
        return;
    }
    v = json_number_value(after);
    if (v > area + 1e-9 * fmax(1.0, area))
        em_errors_add(errors, "/data/areaKm2After", "renewedAreaNotLarger",
                      "a renewal does not enlarge the licence: areaKm2After %g exceeds the %g "
                      "km2 in force (seq %lld)",
                      v, area, (long long)from);
}

static const vsrule_t s_rules[] = {
    {"licenceInForce", "licence.renewed",
     "a renewal names a licence that was granted and not since revoked or surrendered "
     "(unknown to the archive: a note)",
     r_in_force},
    {"licenceInForce", "licence.transferred",
     "a transfer names a licence that was granted and not since revoked or surrendered "
     "(unknown to the archive: a note)",
     r_in_force},
    {"kpTransferAfter2YearsOfGrant", "licence.transferred",
     "KP: an exploration licence is not transferred before two years from its archived grant "
     "(grantedOn, else validFrom)",
     r_kp_transfer},
    {"renewedAreaNotLarger", "licence.renewed",
     "areaKm2After is at most the area in force (the grant's, as renewed or relinquished since)",
     r_renewed_area},
};

const vsrule_t *vstate_rules(size_t *count)
{
    *count = sizeof s_rules / sizeof *s_rules;
    return s_rules;
}

int vstate_needed(const char *type, const json_t *data)
{
    if (!type || !json_is_string(json_object_get(data, "licenceId")))
        return 0;
    for (size_t i = 0; i < sizeof s_rules / sizeof *s_rules; i++)
        if (strcmp(s_rules[i].type, type) == 0)
            return 1;
    return 0;
}

int vstate_apply(const char *type, const json_t *event, const json_t *data,
                 const json_t *history, const char *unavailable, json_t *errors,
                 json_t *notes)
{
    size_t before = json_array_size(errors);
    if (!vstate_needed(type, data))
        return 0;
    for (size_t i = 0; i < sizeof s_rules / sizeof *s_rules; i++) {
        if (strcmp(s_rules[i].type, type) != 0)
            continue;
        if (history)
            s_rules[i].check(event, data, history, errors, notes);
        else
            em_errors_add(notes, "/data/licenceId", s_rules[i].name,
                          "not checked: the archive could not be read (%s)",
                          unavailable ? unavailable : "no connection");
    }
    return (int)(json_array_size(errors) - before);
}

int vstate_check(vhist_t *hist, const json_t *event, json_t *errors, json_t *notes)
{
    const char *type = s_str(event, "type");
    const json_t *data = json_object_get(event, "data");
    size_t plen = strlen(VCAT_TYPE_PREFIX);
    char err[300] = "";
    json_t *history = NULL;

    if (!type || strncmp(type, VCAT_TYPE_PREFIX, plen) != 0)
        return 0;
    type += plen;
    if (!vstate_needed(type, data))
        return 0;
    if (!hist || vhist_licence(hist, s_str(data, "licenceId"), s_str(event, "source"),
                               s_str(event, "id"), &history, err, sizeof err) != 0)
        history = NULL;
    int n = vstate_apply(type, event, data, history, hist ? err : "no reader", errors, notes);
    json_decref(history);
    return n;
}
