/* dlq.c - eminectl dlq: the dead letters of the archive (table rejected_events: events that
 * validate rejected, conflicts, store errors).  list and show read them; redrive submits the
 * stored raw text to ingest again over ZeroMQ (as eminectl publish does), reports the new
 * outcome and marks the dead letter redriven (redriven_at, redrive_status, redrive_seq). */
#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "em_bus.h"
#include "em_json.h"
#include "em_util.h"
#include "eminectl.h"

static void s_help(FILE *out)
{
    fprintf(out,
            "usage: eminectl dlq <command>   (PostgreSQL from $EMINE_PG_DSN)\n"
            "  list [--all] [--reason R] [--type T] [--limit N] [--json]\n"
            "        dead letters not yet redriven (--all: every one), newest first:\n"
            "        id, time, reason, producer, source, event id, type, first error\n"
            "  show ID              one dead letter as JSON: reason, errors, producer, time, raw\n"
            "  redrive [--zmq EP] [--producer NAME] [--key KEY] [--timeout-ms MS] ID...\n"
            "        submits each stored event to ingest again (default $EMINE_INGEST_ZMQ,\n"
            "        $EMINE_PRODUCER and $EMINE_PRODUCER_KEY for PLAIN authentication); prints\n"
            "        \"ID status seq\" or \"ID status pointer keyword message\"; exit 0 when\n"
            "        every one was accepted (or duplicate), 1 otherwise\n");
}

static PGconn *s_connect(void)
{
    const char *dsn = ctl_env("EMINE_PG_DSN",
                              "host=127.0.0.1 port=55432 dbname=emine user=emine connect_timeout=5");
    PGconn *pg = PQconnectdb(dsn);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "eminectl dlq: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

static const char *s_val(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

#define DLQ_COLS                                                                                 \
    "id, to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), reason, " \
    "producer, source, event_id, type, errors::text, raw, existing_seq, "                       \
    "to_char(redriven_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "             \
    "redrive_status, redrive_seq"

/* One row of DLQ_COLS as a JSON object (raw included when with_raw). */
static json_t *s_row(PGresult *r, int i, int with_raw)
{
    static const char *names[] = {"id",       "receivedAt", "reason",       "producer",
                                  "source",   "eventId",    "type",         "errors",
                                  "raw",      "existingSeq", "redrivenAt",  "redriveStatus",
                                  "redriveSeq"};
    json_t *o = json_object();
    for (int c = 0; c < 13; c++) {
        const char *v = s_val(r, i, c);
        if (!v || (c == 8 && !with_raw))
            continue;
        if (c == 0 || c == 9 || c == 12)
            json_object_set_new(o, names[c], json_integer(strtoll(v, NULL, 10)));
        else if (c == 7)
            json_object_set_new(o, names[c], json_loads(v, JSON_DECODE_ANY, NULL));
        else
            json_object_set_new(o, names[c], json_string(v));
    }
    return o;
}

static int s_list(PGconn *pg, int argc, char **argv)
{
    const char *reason = NULL, *type = NULL, *limit = "100";
    int all = 0, as_json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0)
            all = 1;
        else if (strcmp(argv[i], "--json") == 0)
            as_json = 1;
        else if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc)
            reason = argv[++i];
        else if (strcmp(argv[i], "--type") == 0 && i + 1 < argc)
            type = argv[++i];
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc)
            limit = argv[++i];
        else {
            s_help(stderr);
            return 2;
        }
    }
    const char *params[4] = {all ? "t" : "f", reason, type, limit};
    PGresult *r = PQexecParams(pg,
                               "SELECT " DLQ_COLS " FROM rejected_events"
                               " WHERE ($1::bool OR redriven_at IS NULL)"
                               " AND ($2::text IS NULL OR reason = $2)"
                               " AND ($3::text IS NULL OR type = $3)"
                               " ORDER BY id DESC LIMIT $4::int",
                               4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "eminectl dlq: %s", PQerrorMessage(pg));
        PQclear(r);
        return 1;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *o = s_row(r, i, 0);
        if (as_json) {
            char *t = json_dumps(o, JSON_COMPACT);
            printf("%s\n", t);
            free(t);
        } else {
            json_t *e = json_array_get(json_object_get(o, "errors"), 0);
            const char *st = json_string_value(json_object_get(o, "redriveStatus"));
            printf("%-6s %s %-8s %-14s %-26s %-28s %-40s %s %s%s%s\n", s_val(r, i, 0),
                   s_val(r, i, 1), s_val(r, i, 2), s_val(r, i, 3) ? s_val(r, i, 3) : "-",
                   s_val(r, i, 4) ? s_val(r, i, 4) : "-", s_val(r, i, 5) ? s_val(r, i, 5) : "-",
                   s_val(r, i, 6) ? s_val(r, i, 6) : "-",
                   e ? json_string_value(json_object_get(e, "pointer")) : "",
                   e ? json_string_value(json_object_get(e, "keyword")) : "",
                   st ? "  redriven: " : "", st ? st : "");
        }
        json_decref(o);
    }
    PQclear(r);
    return 0;
}

static PGresult *s_fetch(PGconn *pg, const char *id)
{
    const char *params[1] = {id};
    char *end;
    strtoll(id, &end, 10);
    if (!*id || *end) {
        fprintf(stderr, "eminectl dlq: %s is not a dead-letter id\n", id);
        return NULL;
    }
    PGresult *r = PQexecParams(pg, "SELECT " DLQ_COLS " FROM rejected_events WHERE id = $1::bigint",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            fprintf(stderr, "eminectl dlq: %s", PQerrorMessage(pg));
        else
            fprintf(stderr, "eminectl dlq: no dead letter %s\n", id);
        PQclear(r);
        return NULL;
    }
    return r;
}

static int s_show(PGconn *pg, int argc, char **argv)
{
    if (argc != 2) {
        s_help(stderr);
        return 2;
    }
    PGresult *r = s_fetch(pg, argv[1]);
    if (!r)
        return 1;
    json_t *o = s_row(r, 0, 1);
    char *t = json_dumps(o, JSON_INDENT(2));
    printf("%s\n", t);
    free(t);
    json_decref(o);
    PQclear(r);
    return 0;
}

/* Sends raw to ingest and waits for its answer; re-sends after busy or silence until
 * deadline_ms.  Returns the reply's first result (new reference), or NULL (*why set). */
static json_t *s_submit(void *sock, const char *raw, size_t len, long timeout_ms,
                        int64_t deadline, const char **why)
{
    static unsigned long s_tag;
    char tag[32];
    *why = "no answer from ingest";
    while (em_mono_ms() < deadline) {
        int tl = snprintf(tag, sizeof tag, "dlq-%lu", ++s_tag);
        const void *frames[2] = {tag, raw};
        size_t lens[2] = {(size_t)tl, len};
        if (em_bus_sendv(sock, frames, lens, 2, 0) != 0)
            return NULL;
        int64_t until = em_mono_ms() + timeout_ms;
        while (em_mono_ms() < until) {
            zmq_pollitem_t items[] = {{sock, 0, ZMQ_POLLIN, 0}};
            if (zmq_poll(items, 1, 50) <= 0)
                continue;
            em_msg_t msg;
            if (em_msg_recv(sock, &msg, ZMQ_DONTWAIT) < 0)
                continue;
            size_t ttl, bl;
            const char *t = em_msg_data(&msg, 0, &ttl);
            const char *body = em_msg_data(&msg, 1, &bl);
            json_t *reply = NULL;
            if (msg.nframes == 2 && ttl == (size_t)tl && memcmp(t, tag, ttl) == 0)
                reply = json_loadb(body, bl, 0, NULL);
            em_msg_close(&msg);
            if (!reply)
                continue; /* an answer to an earlier attempt */
            json_t *res = json_array_get(json_object_get(reply, "results"), 0);
            const char *st = json_string_value(json_object_get(res, "status"));
            if (!res) { /* answered as a whole: rejected or busy */
                res = reply;
                st = json_string_value(json_object_get(reply, "status"));
            }
            if (st && strcmp(st, "busy") == 0) {
                json_decref(reply);
                break; /* re-send */
            }
            json_incref(res);
            json_decref(reply);
            return res;
        }
    }
    return NULL;
}

static int s_redrive(PGconn *pg, int argc, char **argv)
{
    const char *zep = ctl_env("EMINE_INGEST_ZMQ", "tcp://127.0.0.1:7001");
    const char *user = ctl_env("EMINE_PRODUCER", NULL), *key = ctl_env("EMINE_PRODUCER_KEY", NULL);
    long timeout_ms = 5000;
    int first = argc, failed = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--zmq") == 0 && i + 1 < argc)
            zep = argv[++i];
        else if (strcmp(argv[i], "--producer") == 0 && i + 1 < argc)
            user = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc)
            timeout_ms = atol(argv[++i]);
        else if (argv[i][0] == '-') {
            s_help(stderr);
            return 2;
        } else {
            first = i;
            break;
        }
    }
    if (first >= argc || timeout_ms < 1) {
        s_help(stderr);
        return 2;
    }
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    if (user && key) {
        zmq_setsockopt(sock, ZMQ_PLAIN_USERNAME, user, strlen(user));
        zmq_setsockopt(sock, ZMQ_PLAIN_PASSWORD, key, strlen(key));
    }
    if (zmq_connect(sock, zep) != 0) {
        fprintf(stderr, "eminectl dlq: cannot connect %s: %s\n", zep, zmq_strerror(errno));
        zmq_close(sock);
        zmq_ctx_term(ctx);
        return 1;
    }
    for (int i = first; i < argc; i++) {
        PGresult *r = s_fetch(pg, argv[i]);
        if (!r) {
            failed++;
            continue;
        }
        const char *raw = s_val(r, 0, 8), *done = s_val(r, 0, 12);
        if (done) {
            printf("%s already-redriven %s\n", argv[i], done);
            PQclear(r);
            continue;
        }
        const char *why;
        json_t *res = s_submit(sock, raw, strlen(raw), timeout_ms,
                               em_mono_ms() + 4 * timeout_ms, &why);
        const char *st = json_string_value(json_object_get(res, "status"));
        json_t *seqv = json_object_get(res, "seq");
        if (!res || !st) {
            printf("%s unanswered %s\n", argv[i], why);
            failed++;
        } else {
            char seq[32] = "";
            bool ok = strcmp(st, "accepted") == 0 || strcmp(st, "duplicate") == 0;
            if (json_is_integer(seqv))
                snprintf(seq, sizeof seq, "%lld", (long long)json_integer_value(seqv));
            if (ok && *seq) {
                printf("%s %s %s\n", argv[i], st, seq);
            } else {
                json_t *e = json_array_get(json_object_get(res, "errors"), 0);
                printf("%s %s %s %s %s\n", argv[i], st,
                       e ? json_string_value(json_object_get(e, "pointer")) : "-",
                       e ? json_string_value(json_object_get(e, "keyword")) : "-",
                       e ? json_string_value(json_object_get(e, "message")) : "");
                failed++;
            }
            /* busy/unauthorized change nothing; any other answer is the new outcome */
            if (strcmp(st, "unauthorized") != 0) {
                const char *params[3] = {argv[i], st, (ok && *seq) ? seq : NULL};
                PGresult *u = PQexecParams(pg,
                                           "UPDATE rejected_events SET redriven_at = now(),"
                                           " redrive_status = $2, redrive_seq = $3::bigint"
                                           " WHERE id = $1::bigint",
                                           3, NULL, params, NULL, NULL, 0);
                if (PQresultStatus(u) != PGRES_COMMAND_OK) {
                    fprintf(stderr, "eminectl dlq: %s", PQerrorMessage(pg));
                    failed++;
                }
                PQclear(u);
            }
        }
        json_decref(res);
        PQclear(r);
    }
    em_bus_close(&sock);
    zmq_ctx_term(ctx);
    return failed ? 1 : 0;
}

int cmd_dlq(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        s_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "list") != 0 && strcmp(cmd, "show") != 0 && strcmp(cmd, "redrive") != 0) {
        s_help(stderr);
        return 2;
    }
    PGconn *pg = s_connect();
    if (!pg)
        return 1;
    int rc = strcmp(cmd, "list") == 0   ? s_list(pg, argc - 1, argv + 1)
             : strcmp(cmd, "show") == 0 ? s_show(pg, argc - 1, argv + 1)
                                        : s_redrive(pg, argc - 1, argv + 1);
    PQfinish(pg);
    return rc;
}
