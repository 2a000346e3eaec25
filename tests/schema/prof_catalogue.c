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
#include "../../services/validate/catalogue.h"

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s SCHEMAS_DIR EVENT MODE N\n", argv[0]);
        return 2;
    }
    const char *mode = argv[3];
    long iters = atol(argv[4]);
    json_t *event = json_load_file(argv[2], 0, NULL);
    char *text = event ? json_dumps(event, JSON_COMPACT) : NULL;
    const char *type = json_string_value(json_object_get(event, "type"));
    if (!text || !type || strncmp(type, VCAT_TYPE_PREFIX, strlen(VCAT_TYPE_PREFIX)) != 0) {
        fprintf(stderr, "cannot load a catalogue event from %s\n", argv[2]);
        return 1;
    }
    char uri[512];
    snprintf(uri, sizeof uri, VCAT_BASE_URI "%s/1.json", type + strlen(VCAT_TYPE_PREFIX));
    em_schema_store_t *store = em_schema_store_new();
    if (em_schema_store_add_dir(store, argv[1], VCAT_BASE_URI, EM_DRAFT_2020_12) < 0) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    em_schema_opts_t opts = {EM_DRAFT_2020_12, true, uri};
    char *err = NULL;
    em_schema_t *s = em_schema_compile(em_schema_store_get(store, uri), store, &opts, &err);
    if (!s) {
        fprintf(stderr, "compile: %s\n", err ? err : "?");
        return 1;
    }
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
