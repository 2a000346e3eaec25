/* catalogue.h - the e-mining event catalogue: one compiled JSON Schema per event type and
 * version (config/schemas/<type>/<N>.json, shared $defs in config/schemas/defs.json), checked
 * against an event's `data`, followed by the domain rules of rules.h.
 *
 * A catalogue is immutable once loaded and may be used by any number of threads at once.  It
 * carries a reference count so that a reload (SIGHUP) can swap in a new set while workers
 * still hold the old one: the last vcat_unref frees it. */
#ifndef VALIDATE_CATALOGUE_H
#define VALIDATE_CATALOGUE_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Where every schema lives: "<base>/<type>/<N>.json" is the $id and the `dataschema` of version
 * N of the data of "pk.gov.emining.<type>". */
#define VCAT_BASE_URI "https://schemas.emining.example/"
#define VCAT_TYPE_PREFIX "pk.gov.emining."

typedef struct vcat vcat_t;

/* Loads and compiles every schema under dir.  Returns a catalogue with one reference, or NULL
 * when any file fails to parse or compile (then *err, if err != NULL, is a new string naming
 * the file and the problem; free it).  A catalogue without any type is an error too. */
vcat_t *vcat_load(const char *dir, char **err);
/* Takes one more reference; returns cat. */
vcat_t *vcat_ref(vcat_t *cat);
/* Drops one reference (frees the catalogue with the last) and sets *cat_p to NULL. */
void vcat_unref(vcat_t **cat_p);

/* Number of event types, and of schema versions over all types. */
size_t vcat_types(const vcat_t *cat);
size_t vcat_versions(const vcat_t *cat);

/* Checks event (a JSON object whose envelope has been checked) against the catalogue: the
 * schema is chosen by `type` and by `dataschema` when present (else the latest version of the
 * type); errors point into the event (pointers start with "/data").  An unknown type is an
 * error at /type (keyword "unknownType") unless accept_unknown, in which case nothing is
 * checked.  Each error appended to errors is {"pointer","keyword","message"} (plus
 * "schemaPath" for schema errors); the domain rules add theirs with the rule's name as keyword,
 * and non-blocking findings (e.g. a late discovery) go to notes in the same form.
 * Returns the number of errors appended. */
int vcat_check(const vcat_t *cat, const json_t *event, bool accept_unknown, json_t *errors,
               json_t *notes);

#endif
