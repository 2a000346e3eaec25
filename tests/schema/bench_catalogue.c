/* bench_catalogue.c - events/s of the catalogue check for one event: the JSON Schema of its type
 * (em_schema with the catalogue's store, $refs into defs.json) on its data, validate-only (the
 * event parsed once) and parse+validate (the whole event parsed each time with em_json_parse
 * and validate's default depth limit, as the validate service reads an event); then the
 * whole check of validate (schema + domain rules, vcat_check).
 * Usage: bench_catalogue SCHEMAS_DIR EVENT [SECONDS]. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "em_json.h"
#include "em_schema.h"
#include "catalogue_event.h"

/* the validate service's default max_depth */
#define S_MAX_DEPTH 32

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SCHEMAS_DIR EVENT [SECONDS]\n", argv[0]);
        return 2;
    }
    double secs = argc > 3 ? atof(argv[3]) : 2.0;
    catalogue_event_t ce;
    if (catalogue_event_load(&ce, argv[1], argv[2]) != 0)
        return 1;
    json_t *event = ce.event;
    char *text = ce.text;
    em_schema_t *s = ce.schema;
    em_schema_store_t *store = ce.store;
    char *err = NULL;
    vcat_t *cat = vcat_load(argv[1], &err);
    if (!cat) {
        fprintf(stderr, "catalogue: %s\n", err ? err : "?");
        return 1;
    }
    const json_t *data = json_object_get(event, "data");
    json_t *errors = json_array();
    if (em_schema_validate(s, data, NULL) != 1 || vcat_check(cat, event, false, errors, NULL) != 0) {
        fprintf(stderr, "the event is not valid\n");
        return 1;
    }
    size_t len = strlen(text);
    long n = 0;
    double t0 = s_now(), t;
    do {
        for (int i = 0; i < 1000; i++)
            n += em_schema_validate(s, data, NULL);
        t = s_now() - t0;
    } while (t < secs);
    printf("emine validate-only: %.0f events/s\n", (double)n / t);
    n = 0;
    t0 = s_now();
    do {
        for (int i = 0; i < 1000; i++) {
            json_t *e = em_json_parse(text, len, S_MAX_DEPTH, NULL);
            n += em_schema_validate(s, json_object_get(e, "data"), NULL);
            json_decref(e);
        }
        t = s_now() - t0;
    } while (t < secs);
    printf("emine parse+validate: %.0f events/s\n", (double)n / t);
    n = 0;
    t0 = s_now();
    do {
        for (int i = 0; i < 1000; i++) {
            json_t *e = em_json_parse(text, len, S_MAX_DEPTH, NULL);
            json_array_clear(errors);
            n += vcat_check(cat, e, false, errors, NULL) == 0;
            json_decref(e);
        }
        t = s_now() - t0;
    } while (t < secs);
    printf("emine parse+schema+rules: %.0f events/s\n", (double)n / t);
    json_decref(errors);
    vcat_unref(&cat);
    em_schema_destroy(&s);
    em_schema_store_destroy(&store);
    json_decref(event);
    free(text);
    return 0;
}
