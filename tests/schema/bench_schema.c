/* bench_schema.c - events/s of em_schema for one schema and one event: validate-only (the
 * event parsed once) and parse+validate.  Usage: bench_schema SCHEMA EVENT [SECONDS [validate-only]]. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "em_schema.h"

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SCHEMA EVENT [SECONDS]\n", argv[0]);
        return 2;
    }
    double secs = argc > 3 ? atof(argv[3]) : 2.0;
    json_t *schema = json_load_file(argv[1], 0, NULL);
    json_t *event = json_load_file(argv[2], 0, NULL);
    char *text = event ? json_dumps(event, JSON_COMPACT) : NULL;
    if (!schema || !event || !text) {
        fprintf(stderr, "cannot load the schema or the event\n");
        return 1;
    }
    em_schema_opts_t opts = { .format_assert = true };
    char *err = NULL;
    em_schema_t *s = em_schema_compile(schema, NULL, &opts, &err);
    if (!s) {
        fprintf(stderr, "compile: %s\n", err);
        return 1;
    }
    if (em_schema_validate(s, event, NULL) != 1) {
        fprintf(stderr, "the event is not valid\n");
        return 1;
    }
    size_t len = strlen(text);
    long n = 0;
    double t0 = s_now(), t;
    do {
        for (int i = 0; i < 1000; i++) {
            n += em_schema_validate(s, event, NULL);
        }
        t = s_now() - t0;
    } while (t < secs);
    printf("emine validate-only: %.0f events/s\n", (double)n / t);
    if (argc > 4 && !strcmp(argv[4], "validate-only")) {
        secs = 0;
    }
    n = 0;
    t0 = s_now();
    do {
        for (int i = 0; i < 1000; i++) {
            json_t *e = json_loadb(text, len, 0, NULL);
            n += em_schema_validate(s, e, NULL);
            json_decref(e);
        }
        t = s_now() - t0;
    } while (t < secs);
    printf("emine parse+validate: %.0f events/s\n", (double)n / t);
    em_schema_destroy(&s);
    json_decref(schema);
    json_decref(event);
    free(text);
    return 0;
}
