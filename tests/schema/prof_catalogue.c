/* prof_catalogue.c - a fixed amount of catalogue work for instruction counting under
 * valgrind --tool=callgrind (see callgrind_catalogue.sh): N times one step on one event.
 * MODE: validate (em_schema_validate on the event's data, parsed once), parse (em_json_parse
 * of the whole event, depth limit 32 as validate uses), parse+validate (both), json_loadb
 * (Jansson's own parser, for comparison).
 * Usage: prof_catalogue SCHEMAS_DIR EVENT MODE N. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_json.h"
#include "em_schema.h"
#include "catalogue_event.h"

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s SCHEMAS_DIR EVENT MODE N\n", argv[0]);
        return 2;
    }
    const char *mode = argv[3];
    long iters = atol(argv[4]);
    catalogue_event_t ce;
    if (catalogue_event_load(&ce, argv[1], argv[2]) != 0)
        return 1;
    json_t *event = ce.event;
    char *text = ce.text;
    em_schema_t *s = ce.schema;
    em_schema_store_t *store = ce.store;
    const json_t *data = json_object_get(event, "data");
    if (em_schema_validate(s, data, NULL) != 1) {
        fprintf(stderr, "the event is not valid\n");
        return 1;
    }
    size_t len = strlen(text);
    long n = 0;
    for (long i = 0; i < iters; i++) {
        if (strcmp(mode, "validate") == 0) {
            n += em_schema_validate(s, data, NULL);
        } else if (strcmp(mode, "json_loadb") == 0) {
            json_t *e = json_loadb(text, len, 0, NULL);
            n += e != NULL;
            json_decref(e);
        } else {
            json_t *e = em_json_parse(text, len, 32, NULL);
            if (strcmp(mode, "parse") == 0)
                n += e != NULL;
            else
                n += em_schema_validate(s, json_object_get(e, "data"), NULL);
            json_decref(e);
        }
    }
    em_schema_destroy(&s);
    em_schema_store_destroy(&store);
    json_decref(event);
    free(text);
    return n == iters ? 0 : 1;
}
