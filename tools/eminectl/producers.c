/* producers.c - eminectl producers: who may publish what.  Writes the producers table that
 * ingest re-reads every few seconds; a key is shown once, when it is made, and only its
 * SHA-256 is stored. */
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_bus.h"
#include "em_json.h"
#include "em_util.h"
#include "eminectl.h"

static void s_help(FILE *out)
{
    fprintf(out,
            "usage: eminectl producers <command>   (PostgreSQL from $EMINE_PG_DSN)\n"
            "  add NAME --source PREFIX... --type PATTERN...   new producer; prints its key once\n"
            "      PREFIX: allowed CloudEvents source prefix ('*' = any)\n"
            "      PATTERN: allowed type, exact or ending in '*' (e.g. pk.gov.emining.licence.*)\n"
            "      --curve-public KEY: its CurveZMQ public key (Z85, from eminectl keygen), by\n"
            "      which ingest knows it when [ingest] curve_secret_key is set\n"
            "  set NAME --curve-public KEY|none   set or clear its CurveZMQ public key\n"
            "  list                 producers and what they may publish\n"
            "  rotate NAME          a new key (the old one stops working within seconds)\n"
            "  disable NAME | enable NAME | remove NAME\n");
}

/* A PostgreSQL text[] literal parameter from argv items: {"a","b"} with quotes escaped. */
static char *s_array(char **items, int n)
{
    size_t cap = 3;
    for (int i = 0; i < n; i++)
        cap += strlen(items[i]) * 2 + 3;
    char *out = malloc(cap), *w = out;
    *w++ = '{';
    for (int i = 0; i < n; i++) {
        if (i)
            *w++ = ',';
        *w++ = '"';
        for (const char *c = items[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                *w++ = '\\';
            *w++ = *c;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    return out;
}

static void s_new_key(char key[65], char digest[65])
{
    uint8_t d[32];
    em_random_hex(key, 64);
    em_sha256(key, 64, d);
    em_hex_encode(d, 32, digest);
}

static int s_exec(PGconn *pg, const char *sql, int n, const char *const *params, int want_rows)
{
    PGresult *r = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "eminectl producers: %s", PQerrorMessage(pg));
    else if (want_rows && atoi(PQcmdTuples(r)) == 0) {
        fprintf(stderr, "eminectl producers: no producer '%s'\n", params[0]);
        ok = 0;
    }
    PQclear(r);
    return ok ? 0 : 1;
}

int cmd_producers(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        s_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *dsn = ctl_env("EMINE_PG_DSN",
                              "host=127.0.0.1 port=55432 dbname=emine user=emine connect_timeout=5");
    PGconn *pg = PQconnectdb(dsn);
    int rc = 0;
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "eminectl producers: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return 1;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "add") == 0 && argc >= 3) {
        char **sources = calloc((size_t)argc, sizeof *sources), **types = calloc((size_t)argc, sizeof *types);
        int ns = 0, nt = 0;
        const char *curve = NULL;
        for (int i = 3; i < argc; i++) {
            if (strcmp(argv[i], "--source") == 0 && i + 1 < argc)
                sources[ns++] = argv[++i];
            else if (strcmp(argv[i], "--curve-public") == 0 && i + 1 < argc)
                curve = argv[++i];
            else if (strcmp(argv[i], "--type") == 0 && i + 1 < argc)
                types[nt++] = argv[++i];
            else {
                s_help(stderr);
                rc = 2;
            }
        }
        if (rc == 0 && (ns == 0 || nt == 0)) {
            fprintf(stderr, "eminectl producers add: give at least one --source and one --type\n");
            rc = 2;
        }
        if (rc == 0 && curve && !em_curve_key_valid(curve)) {
            fprintf(stderr, "eminectl producers add: --curve-public needs a 40-character Z85 "
                            "key (eminectl keygen)\n");
            rc = 2;
        }
        if (rc == 0) {
            char key[65], digest[65];
            s_new_key(key, digest);
            char *sa = s_array(sources, ns), *ta = s_array(types, nt);
            const char *p[5] = {argv[2], digest, sa, ta, curve};
            rc = s_exec(pg, "INSERT INTO producers (name, key_sha256, sources, types, curve_public) "
                            "VALUES ($1, $2, $3::text[], $4::text[], $5)", 5, p, 0);
            if (rc == 0)
                printf("producer %s added; its key (shown only now):\n%s\n", argv[2], key);
            free(sa);
            free(ta);
        }
        free(sources);
        free(types);
    } else if (strcmp(cmd, "set") == 0 && argc == 5 && strcmp(argv[3], "--curve-public") == 0) {
        bool clear = strcmp(argv[4], "none") == 0;
        if (!clear && !em_curve_key_valid(argv[4])) {
            fprintf(stderr, "eminectl producers set: --curve-public needs a 40-character Z85 key "
                            "(eminectl keygen) or none\n");
            rc = 2;
        } else {
            const char *p[2] = {argv[2], clear ? NULL : argv[4]};
            rc = s_exec(pg, "UPDATE producers SET curve_public = $2 WHERE name = $1", 2, p, 1);
        }
    } else if (strcmp(cmd, "list") == 0) {
        PGresult *r = PQexecParams(pg,
                                   "SELECT name, array_to_string(sources, ' '), "
                                   "array_to_string(types, ' '), disabled, "
                                   "coalesce(curve_public, '') FROM producers ORDER BY name",
                                   0, NULL, NULL, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            fprintf(stderr, "eminectl producers: %s", PQerrorMessage(pg));
            rc = 1;
        }
        for (int i = 0; rc == 0 && i < PQntuples(r); i++)
            printf("%-20s %s sources: %s  types: %s%s%s\n", PQgetvalue(r, i, 0),
                   strcmp(PQgetvalue(r, i, 3), "t") == 0 ? "disabled" : "enabled ",
                   PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                   *PQgetvalue(r, i, 4) ? "  curve: " : "", PQgetvalue(r, i, 4));
        PQclear(r);
    } else if (strcmp(cmd, "rotate") == 0 && argc == 3) {
        char key[65], digest[65];
        s_new_key(key, digest);
        const char *p[2] = {argv[2], digest};
        rc = s_exec(pg, "UPDATE producers SET key_sha256 = $2 WHERE name = $1", 2, p, 1);
        if (rc == 0)
            printf("producer %s has a new key (shown only now):\n%s\n", argv[2], key);
    } else if ((strcmp(cmd, "disable") == 0 || strcmp(cmd, "enable") == 0) && argc == 3) {
        const char *p[2] = {argv[2], strcmp(cmd, "disable") == 0 ? "true" : "false"};
        rc = s_exec(pg, "UPDATE producers SET disabled = $2::boolean WHERE name = $1", 2, p, 1);
    } else if (strcmp(cmd, "remove") == 0 && argc == 3) {
        const char *p[1] = {argv[2]};
        rc = s_exec(pg, "DELETE FROM producers WHERE name = $1", 1, p, 1);
    } else {
        s_help(stderr);
        rc = 2;
    }
    PQfinish(pg);
    return rc;
}
