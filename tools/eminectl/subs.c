/* subs.c - `eminectl subs`: the operator's view of organisations, their API keys and their
 * subscriptions, read and written in PostgreSQL directly (notify serves the same tables to
 * organisations over HTTP at /v1/subscriptions).
 *
 *   eminectl subs org-create ID --kind authority|enterprise|public|operator [--name N]
 *                            [--province PK-XX|federal] [--party REGNO]... [--source PREFIX]...
 *   eminectl subs orgs
 *   eminectl subs key-create ORG [--label L]     prints the new key once; stores its SHA-256
 *   eminectl subs keys ORG
 *   eminectl subs key-revoke KEY_ID
 *   eminectl subs list [--org ORG]
 *   eminectl subs show ID
 *   eminectl subs delete ID
 *   eminectl subs dead-letters [--sub ID]        deliveries given up (not yet redriven)
 *   eminectl subs redrive ID [--seq N]           ask notify to send them again
 *   eminectl subs replay ID [--from-seq A] [--to-seq B] [--since T] [--until T]
 *                           [--project P] [--licence L]
 *                           send again events already behind the cursor (at least one bound)
 * Every command takes --dsn DSN (default $EMINE_PG_DSN, else the local stack's). */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_json.h"
#include "em_util.h"
#include "eminectl.h"

#define SUBS_DEFAULT_DSN "host=127.0.0.1 port=55432 dbname=emine user=emine connect_timeout=5"
#define SUBS_MAX_VALUES 64

static int s_usage(void)
{
    fprintf(stderr,
            "usage: eminectl subs <command> [--dsn DSN]\n"
            "  org-create ID --kind authority|enterprise|public|operator [--name N]\n"
            "             [--province PK-XX|federal] [--party REGNO]... [--source PREFIX]...\n"
            "  orgs                          list organisations\n"
            "  key-create ORG [--label L]    new API key (printed once; only its hash is kept)\n"
            "  keys ORG                      list an organisation's keys\n"
            "  key-revoke KEY_ID             revoke a key\n"
            "  list [--org ORG]              list subscriptions\n"
            "  show ID                       one subscription as JSON\n"
            "  delete ID                     delete a subscription\n"
            "  dead-letters [--sub ID]       deliveries given up after the retry schedule\n"
            "  redrive ID [--seq N]          have notify send a subscription's dead letters again\n"
            "  replay ID [--from-seq A] [--to-seq B] [--since TIME] [--until TIME]\n"
            "         [--project P] [--licence L]   send past events again (visibility applies)\n"
            "  DSN defaults to $EMINE_PG_DSN, else \"" SUBS_DEFAULT_DSN "\"\n");
    return 2;
}

/* Runs a statement; prints the error and returns NULL on failure. */
static PGresult *s_exec(PGconn *c, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        fprintf(stderr, "eminectl subs: %s", PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    return r;
}

/* A JSON array of strings (caller frees). */
static char *s_json_array(const char *const *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    char *text = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return text;
}

/* Prints every row as tab-separated columns under a header. */
static void s_print_table(PGresult *r)
{
    int nf = PQnfields(r);
    for (int f = 0; f < nf; f++)
        printf("%s%s", f ? "\t" : "", PQfname(r, f));
    printf("\n");
    for (int i = 0; i < PQntuples(r); i++) {
        for (int f = 0; f < nf; f++)
            printf("%s%s", f ? "\t" : "", PQgetvalue(r, i, f));
        printf("\n");
    }
}

static int s_org_create(PGconn *c, int argc, char **argv)
{
    const char *id = NULL, *kind = NULL, *name = "", *province = NULL;
    const char *parties[SUBS_MAX_VALUES], *sources[SUBS_MAX_VALUES];
    int np = 0, ns = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--kind") == 0 && v)
            kind = argv[++i];
        else if (strcmp(a, "--name") == 0 && v)
            name = argv[++i];
        else if (strcmp(a, "--province") == 0 && v)
            province = argv[++i];
        else if (strcmp(a, "--party") == 0 && v && np < SUBS_MAX_VALUES)
            parties[np++] = argv[++i];
        else if (strcmp(a, "--source") == 0 && v && ns < SUBS_MAX_VALUES)
            sources[ns++] = argv[++i];
        else if (a[0] != '-' && !id)
            id = a;
        else
            return s_usage();
    }
    if (!id || !kind)
        return s_usage();
    const char *bad = NULL;
    if (strcmp(kind, "authority") != 0 && strcmp(kind, "enterprise") != 0 &&
        strcmp(kind, "public") != 0 && strcmp(kind, "operator") != 0)
        bad = "--kind must be authority, enterprise, public or operator (sees every tier)";
    else if ((strcmp(kind, "authority") == 0) != (province != NULL))
        bad = "--province (PK-XX or federal) is required for an authority and only for one";
    else if (np > 0 && strcmp(kind, "enterprise") != 0)
        bad = "--party is for enterprises only";
    if (bad) {
        fprintf(stderr, "eminectl subs org-create: %s\n", bad);
        return 2;
    }
    char *pj = s_json_array(parties, np), *sj = s_json_array(sources, ns);
    const char *p[6] = {id, name, kind, province, pj, sj};
    PGresult *r = s_exec(c,
                         "INSERT INTO organisations (id, name, kind, province, party_ids,"
                         " source_prefixes) VALUES ($1, $2, $3, $4,"
                         " ARRAY(SELECT jsonb_array_elements_text($5::jsonb)),"
                         " ARRAY(SELECT jsonb_array_elements_text($6::jsonb)))",
                         6, p);
    free(pj);
    free(sj);
    if (!r)
        return 1;
    PQclear(r);
    printf("organisation %s created\n", id);
    return 0;
}

static int s_key_create(PGconn *c, int argc, char **argv)
{
    const char *org = NULL, *label = "";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--label") == 0 && i + 1 < argc)
            label = argv[++i];
        else if (argv[i][0] != '-' && !org)
            org = argv[i];
        else
            return s_usage();
    }
    if (!org)
        return s_usage();
    char key[4 + 64 + 1] = "emk_", hash[65];
    uint8_t d[32];
    em_random_hex(key + 4, 64);
    em_sha256(key, strlen(key), d);
    for (int i = 0; i < 32; i++)
        snprintf(hash + 2 * i, 3, "%02x", d[i]);
    const char *p[3] = {org, hash, label};
    PGresult *r = s_exec(c,
                         "INSERT INTO api_keys (org_id, key_hash, label) VALUES ($1, $2, $3)"
                         " RETURNING id",
                         3, p);
    if (!r)
        return 1;
    fprintf(stderr, "key %s for organisation %s (shown once; only its SHA-256 is stored):\n",
            PQgetvalue(r, 0, 0), org);
    printf("%s\n", key);
    PQclear(r);
    return 0;
}

static int s_query_print(PGconn *c, const char *sql, int n, const char *const *p)
{
    PGresult *r = s_exec(c, sql, n, p);
    if (!r)
        return 1;
    s_print_table(r);
    PQclear(r);
    return 0;
}

/* Queues events already behind the subscription's cursor for a second delivery (the redrive
 * lane of notify: one at a time, in seq order, visibility checked again). */
static int s_replay(PGconn *c, int argc, char **argv)
{
    const char *id = NULL, *v[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    static const char *opts[6] = {"--from-seq", "--to-seq", "--since", "--until", "--project",
                                  "--licence"};
    for (int i = 0; i < argc; i++) {
        int k = 0;
        while (k < 6 && strcmp(argv[i], opts[k]) != 0)
            k++;
        if (k < 6 && i + 1 < argc)
            v[k] = argv[++i];
        else if (argv[i][0] != '-' && !id)
            id = argv[i];
        else
            return s_usage();
    }
    if (!id || (!v[0] && !v[1] && !v[2] && !v[3] && !v[4] && !v[5]))
        return s_usage();
    const char *p[7] = {id, v[0], v[1], v[2], v[3], v[4], v[5]};
    PGresult *r = s_exec(
        c,
        "INSERT INTO delivery_dead_letters (subscription_id, seq, attempts, last_error,"
        " redriven_at)"
        " SELECT $1, e.seq, 0, 'replay requested', now() FROM events e"
        " WHERE EXISTS (SELECT 1 FROM subscriptions WHERE id = $1)"
        " AND e.seq <= COALESCE((SELECT seq FROM subscription_cursors"
        "  WHERE subscription_id = $1), 0)"
        " AND ($2::bigint IS NULL OR e.seq >= $2::bigint)"
        " AND ($3::bigint IS NULL OR e.seq <= $3::bigint)"
        " AND ($4::timestamptz IS NULL OR e.time >= $4::timestamptz)"
        " AND ($5::timestamptz IS NULL OR e.time < $5::timestamptz)"
        " AND ($6::text IS NULL OR e.projectid = $6 OR e.envelope->'data'->>'projectId' = $6)"
        " AND ($7::text IS NULL OR e.envelope->'data'->>'licenceId' = $7 OR e.subject = $7)"
        " ON CONFLICT (subscription_id, seq) DO UPDATE SET redriven_at = now()"
        " RETURNING seq",
        7, p);
    if (!r)
        return 1;
    printf("%d event(s) queued for replay to %s\n", PQntuples(r), id);
    PQclear(r);
    return 0;
}

int cmd_subs(int argc, char **argv)
{
    const char *dsn = NULL;
    char *rest[64];
    int nrest = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dsn") == 0 && i + 1 < argc)
            dsn = argv[++i];
        else if (strncmp(argv[i], "--dsn=", 6) == 0)
            dsn = argv[i] + 6;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return s_usage() - 2;
        else if (nrest < (int)(sizeof rest / sizeof *rest))
            rest[nrest++] = argv[i];
        else
            return s_usage();
    }
    if (nrest < 1)
        return s_usage();
    if (!dsn)
        dsn = ctl_env("EMINE_PG_DSN", SUBS_DEFAULT_DSN);
    const char *cmd = rest[0];
    int n = nrest - 1;
    char **args = rest + 1;
    static const char *known[] = {"org-create", "orgs", "key-create", "keys", "key-revoke",
                                  "list", "show", "delete", "dead-letters", "redrive", "replay",
                                  NULL};
    int ok = 0;
    for (int i = 0; known[i]; i++)
        ok |= strcmp(cmd, known[i]) == 0;
    if (!ok) {
        fprintf(stderr, "eminectl subs: unknown command '%s'\n", cmd);
        return s_usage();
    }

    PGconn *c = PQconnectdb(dsn);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "eminectl subs: cannot connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return 1;
    }
    int rc;
    if (strcmp(cmd, "org-create") == 0) {
        rc = s_org_create(c, n, args);
    } else if (strcmp(cmd, "orgs") == 0) {
        rc = n ? s_usage()
               : s_query_print(c,
                               "SELECT id, kind, COALESCE(province, '') AS province,"
                               " array_to_string(party_ids, ',') AS party_ids,"
                               " array_to_string(source_prefixes, ',') AS sources, name"
                               " FROM organisations ORDER BY id",
                               0, NULL);
    } else if (strcmp(cmd, "key-create") == 0) {
        rc = s_key_create(c, n, args);
    } else if (strcmp(cmd, "keys") == 0) {
        const char *p[1] = {n == 1 ? args[0] : NULL};
        rc = n != 1 ? s_usage()
                    : s_query_print(c,
                                    "SELECT id, label, created_at,"
                                    " COALESCE(revoked_at::text, '') AS revoked_at"
                                    " FROM api_keys WHERE org_id = $1 ORDER BY id",
                                    1, p);
    } else if (strcmp(cmd, "key-revoke") == 0) {
        const char *p[1] = {n == 1 ? args[0] : NULL};
        PGresult *r = n != 1 ? NULL
                             : s_exec(c,
                                      "UPDATE api_keys SET revoked_at = now()"
                                      " WHERE id = $1::bigint AND revoked_at IS NULL RETURNING id",
                                      1, p);
        rc = n != 1 ? s_usage() : !r ? 1 : PQntuples(r) == 1 ? 0 : 1;
        if (r && rc)
            fprintf(stderr, "eminectl subs: no active key %s\n", args[0]);
        else if (r)
            printf("key %s revoked\n", args[0]);
        PQclear(r);
    } else if (strcmp(cmd, "list") == 0) {
        const char *org = NULL;
        if (n == 2 && strcmp(args[0], "--org") == 0)
            org = args[1];
        const char *p[1] = {org};
        rc = (n != 0 && !org)
                 ? s_usage()
                 : s_query_print(c,
                                 "SELECT s.id, s.org_id AS organisation, s.status, s.sink,"
                                 " array_to_string(s.types, ',') AS types,"
                                 " COALESCE(c.seq, 0) AS cursor,"
                                 " (SELECT count(*) FROM delivery_dead_letters d"
                                 "  WHERE d.subscription_id = s.id AND d.redriven_at IS NULL)"
                                 " AS dead_letters"
                                 " FROM subscriptions s LEFT JOIN subscription_cursors c"
                                 " ON c.subscription_id = s.id"
                                 " WHERE $1::text IS NULL OR s.org_id = $1"
                                 " ORDER BY s.org_id, s.created_at, s.id",
                                 1, p);
    } else if (strcmp(cmd, "show") == 0) {
        const char *p[1] = {n == 1 ? args[0] : NULL};
        PGresult *r = n != 1 ? NULL
                             : s_exec(c,
                                      "SELECT jsonb_pretty(to_jsonb(s) - 'secret'"
                                      " || jsonb_build_object('cursor', c.seq))"
                                      " FROM subscriptions s LEFT JOIN subscription_cursors c"
                                      " ON c.subscription_id = s.id WHERE s.id = $1",
                                      1, p);
        rc = n != 1 ? s_usage() : !r ? 1 : PQntuples(r) == 1 ? 0 : 1;
        if (r && rc)
            fprintf(stderr, "eminectl subs: no subscription %s\n", args[0]);
        else if (r)
            printf("%s\n", PQgetvalue(r, 0, 0));
        PQclear(r);
    } else if (strcmp(cmd, "dead-letters") == 0) {
        const char *sub = NULL;
        if (n == 2 && strcmp(args[0], "--sub") == 0)
            sub = args[1];
        const char *p[1] = {sub};
        rc = (n != 0 && !sub)
                 ? s_usage()
                 : s_query_print(c,
                                 "SELECT subscription_id AS subscription, seq, attempts,"
                                 " COALESCE(last_status::text, '') AS last_status, created_at,"
                                 " CASE WHEN redriven_at IS NULL THEN '' ELSE 'requested' END"
                                 " AS redrive, last_error"
                                 " FROM delivery_dead_letters"
                                 " WHERE $1::text IS NULL OR subscription_id = $1"
                                 " ORDER BY subscription_id, seq",
                                 1, p);
    } else if (strcmp(cmd, "redrive") == 0) {
        const char *seq = NULL;
        if (n == 3 && strcmp(args[1], "--seq") == 0)
            seq = args[2];
        const char *p[2] = {n >= 1 ? args[0] : NULL, seq};
        PGresult *r = (n != 1 && !seq) ? NULL
                      : s_exec(c,
                               "UPDATE delivery_dead_letters SET redriven_at = now()"
                               " WHERE subscription_id = $1 AND redriven_at IS NULL"
                               " AND ($2::bigint IS NULL OR seq = $2::bigint) RETURNING seq",
                               2, p);
        rc = (n != 1 && !seq) ? s_usage() : !r ? 1 : 0;
        if (r)
            printf("%d dead letter(s) of %s queued for redrive\n", PQntuples(r), args[0]);
        PQclear(r);
    } else if (strcmp(cmd, "replay") == 0) {
        rc = s_replay(c, n, args);
    } else { /* delete */
        const char *p[1] = {n == 1 ? args[0] : NULL};
        PGresult *r = n != 1 ? NULL
                             : s_exec(c, "DELETE FROM subscriptions WHERE id = $1 RETURNING id",
                                      1, p);
        rc = n != 1 ? s_usage() : !r ? 1 : PQntuples(r) == 1 ? 0 : 1;
        if (r && rc)
            fprintf(stderr, "eminectl subs: no subscription %s\n", args[0]);
        else if (r)
            printf("subscription %s deleted\n", args[0]);
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}
