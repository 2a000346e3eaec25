/* status.c - eminectl status: each service's readiness and the archive's head. */
#include <curl/curl.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eminectl.h"

static size_t s_discard(char *ptr, size_t size, size_t nmemb, void *arg)
{
    (void)ptr;
    (void)arg;
    return size * nmemb;
}

/* Returns the HTTP status of GET url, or 0 when nothing answered. */
static long s_get(CURL *curl, const char *url)
{
    long code = 0;
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_discard);
    if (curl_easy_perform(curl) == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

int cmd_status(int argc, char **argv)
{
    static const struct {
        const char *name, *env, *dflt;
    } services[] = {
        {"ingest", "EMINE_INGEST_HTTP", "127.0.0.1:8001"},
        {"validate", "EMINE_VALIDATE_HTTP", "127.0.0.1:8002"},
        {"archive", "EMINE_ARCHIVE_HTTP", "127.0.0.1:8003"},
        {"notify", "EMINE_NOTIFY_HTTP", "127.0.0.1:8004"},
    };
    int bad = 0;

    if (argc > 1) {
        printf("usage: eminectl status\n  reads EMINE_<SERVICE>_HTTP and EMINE_PG_DSN "
               "(see var/emine.env)\nexit: 0 when every service is ready\n");
        return strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    CURL *curl = curl_easy_init();
    for (size_t i = 0; i < sizeof services / sizeof *services; i++) {
        char url[300];
        const char *addr = ctl_env(services[i].env, services[i].dflt);
        snprintf(url, sizeof url, "http://%s/readyz", addr);
        long code = s_get(curl, url);
        printf("%-9s %-22s %s\n", services[i].name, addr,
               code == 200 ? "ready" : code ? "not ready" : "down");
        bad += code != 200;
    }
    curl_easy_cleanup(curl);
    const char *dsn = ctl_env("EMINE_PG_DSN",
                              "host=127.0.0.1 port=55432 dbname=emine user=emine connect_timeout=5");
    PGconn *pg = PQconnectdb(dsn);
    if (PQstatus(pg) == CONNECTION_OK) {
        PGresult *r = PQexecParams(pg,
                                   "SELECT (SELECT count(*) FROM events), "
                                   "(SELECT coalesce(max(seq),0) FROM events), "
                                   "(SELECT count(*) FROM rejected_events)",
                                   0, NULL, NULL, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            printf("archive   events %s, head seq %s, dead letters %s\n", PQgetvalue(r, 0, 0),
                   PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
        else
            printf("archive   %s", PQerrorMessage(pg));
        PQclear(r);
    } else {
        printf("postgres  %s", PQerrorMessage(pg));
        bad++;
    }
    PQfinish(pg);
    return bad ? 1 : 0;
}
