/* catalogue_event.h - what bench_catalogue.c and prof_catalogue.c both start from: a catalogue
 * event read from a file and the JSON Schema of its type compiled against the catalogue's store
 * (config/schemas, $refs into defs.json), as the validate service compiles it. */
#ifndef CATALOGUE_EVENT_H
#define CATALOGUE_EVENT_H
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "em_schema.h"
#include "../../services/validate/catalogue.h"

typedef struct {
    json_t *event; /* the event as read */
    char *text;    /* its compact text */
    em_schema_t *schema;
    em_schema_store_t *store;
} catalogue_event_t;

/* Fills ce from SCHEMAS_DIR and EVENT.  Returns 0, or -1 after printing why. */
static int catalogue_event_load(catalogue_event_t *ce, const char *schemas_dir,
                                const char *event_path)
{
    ce->event = json_load_file(event_path, 0, NULL);
    ce->text = ce->event ? json_dumps(ce->event, JSON_COMPACT) : NULL;
    const char *type = json_string_value(json_object_get(ce->event, "type"));
    if (!ce->text || !type || strncmp(type, VCAT_TYPE_PREFIX, strlen(VCAT_TYPE_PREFIX)) != 0) {
        fprintf(stderr, "cannot load a catalogue event from %s\n", event_path);
        return -1;
    }
    char uri[512];
    snprintf(uri, sizeof uri, VCAT_BASE_URI "%s/1.json", type + strlen(VCAT_TYPE_PREFIX));
    ce->store = em_schema_store_new();
    if (em_schema_store_add_dir(ce->store, schemas_dir, VCAT_BASE_URI, EM_DRAFT_2020_12) < 0) {
        fprintf(stderr, "cannot load %s\n", schemas_dir);
        return -1;
    }
    em_schema_opts_t opts = {EM_DRAFT_2020_12, true, uri};
    char *err = NULL;
    ce->schema = em_schema_compile(em_schema_store_get(ce->store, uri), ce->store, &opts, &err);
    if (!ce->schema) {
        fprintf(stderr, "compile: %s\n", err ? err : "?");
        return -1;
    }
    return 0;
}
#endif
