/* verify.c - `eminectl verify [--dsn DSN]`: recomputes every archived event's digest (RFC 8785
 * over the stored envelope) and the hash chain, in seq order, and names the first bad row. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_json.h"
#include "eminectl.h"

#define VERIFY_PAGE "1000"
#define VERIFY_DEFAULT_DSN "host=127.0.0.1 port=55432 dbname=emine user=emine connect_timeout=5"
#define VERIFY_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

static int s_usage(void)
{
    fprintf(stderr, "usage: eminectl verify [--dsn DSN]\n"
                    "  DSN defaults to $EMINE_PG_DSN, else \"" VERIFY_DEFAULT_DSN "\"\n");
    return 2;
}

/* Checks one row against the running state.  Returns 0, or 1 after printing the problem. */
static int s_check_row(long long seq, const char *envelope, const char *digest,
                       const char *chain, long long *expect, char head[65])
{
    char computed[65], next[65];
    if (seq != *expect) {
        printf("seq %lld: missing (gap)\n", *expect);
        return 1;
    }
    json_t *errors = NULL;
    json_t *ev = em_json_parse(envelope, strlen(envelope), 100000, &errors);
    int bad = !ev || em_jcs_digest_hex(ev, computed) != 0 || strcmp(computed, digest) != 0;
    json_decref(ev);
    json_decref(errors);
    if (bad) {
        printf("seq %lld: digest mismatch (row altered)\n", seq);
        return 1;
    }
    if (em_chain_next_hex(head, computed, next) != 0 || strcmp(next, chain) != 0) {
        printf("seq %lld: chain mismatch\n", seq);
        return 1;
    }
    memcpy(head, next, 65);
    (*expect)++;
    return 0;
}

int cmd_verify(int argc, char **argv)
{
    const char *dsn = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dsn") == 0 && i + 1 < argc)
            dsn = argv[++i];
        else if (strncmp(argv[i], "--dsn=", 6) == 0)
            dsn = argv[i] + 6;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return s_usage() - 2;
        else
            return s_usage();
    }
    if (!dsn)
        dsn = ctl_env("EMINE_PG_DSN", VERIFY_DEFAULT_DSN);

    PGconn *conn = PQconnectdb(dsn);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "eminectl verify: cannot connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return 1;
    }
    /* One snapshot for the whole walk, so that a concurrent writer cannot make a gap appear. */
    PGresult *res = PQexec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) {
        fprintf(stderr, "eminectl verify: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return 1;
    }

    char head[65] = VERIFY_GENESIS;
    long long expect = 1, count = 0;
    char after[32] = "0";
    int rc = 0;
    for (;;) {
        const char *params[2] = {after, VERIFY_PAGE};
        res = PQexecParams(conn,
                           "SELECT seq, envelope::text, digest, chain FROM events"
                           " WHERE seq > $1::bigint ORDER BY seq LIMIT $2::integer",
                           2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            fprintf(stderr, "eminectl verify: %s", PQresultErrorMessage(res));
            PQclear(res);
            rc = 1;
            break;
        }
        int n = PQntuples(res);
        for (int i = 0; i < n && rc == 0; i++) {
            long long seq = strtoll(PQgetvalue(res, i, 0), NULL, 10);
            rc = s_check_row(seq, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                             PQgetvalue(res, i, 3), &expect, head);
            if (rc == 0)
                count++;
            snprintf(after, sizeof after, "%lld", seq);
        }
        PQclear(res);
        if (rc != 0 || n == 0)
            break;
    }
    res = PQexec(conn, "ROLLBACK");
    PQclear(res);
    PQfinish(conn);
    if (rc == 0)
        printf("verified %lld events, chain head %s\n", count, head);
    return rc;
}
