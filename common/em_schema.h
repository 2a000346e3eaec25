/* em_schema.h - JSON Schema (draft 2020-12 and draft-07) validator over Jansson values.
 *
 * A schema is compiled once into a tree of compact keyword arrays (patterns compiled with
 * PCRE2 at that time) and then validates any number of instances.  `$ref` to another document
 * resolves only from a store of preloaded documents keyed by URI: never from the network.
 * A compiled schema is immutable; validating is thread-safe (the store must outlive it and
 * must not change while schemas compiled from it are in use). */
#ifndef EM_SCHEMA_H
#define EM_SCHEMA_H
#include <jansson.h>
#include <stdbool.h>

typedef struct em_schema_store em_schema_store_t;
typedef struct em_schema em_schema_t;

/* Dialects.  A document whose "$schema" is draft 2019-09 is read as 2020-12 except that
 * "items" may be an array (with "additionalItems"); $recursiveRef is not supported. */
typedef enum {
    EM_DRAFT_AUTO = 0, /* from "$schema"; 2020-12 when absent or unknown */
    EM_DRAFT_07 = 7,
    EM_DRAFT_2020_12 = 2020,
} em_draft_t;

/* A store of documents by absolute URI (without fragment).  Returns NULL on allocation failure. */
em_schema_store_t *em_schema_store_new(void);
void em_schema_store_destroy(em_schema_store_t **store);
/* Adds doc (a new reference is taken) under uri; embedded "$id"s of doc are registered too.
 * default_draft decides the dialect when doc has no "$schema".  Returns 0, or -1 (bad uri,
 * allocation). */
int em_schema_store_add(em_schema_store_t *store, const char *uri, json_t *doc,
                        em_draft_t default_draft);
/* The document (or embedded resource, or "uri#anchor") registered under uri, borrowed; NULL if
 * none.  Compile it with opts.base_uri = uri so that its relative references resolve. */
json_t *em_schema_store_get(const em_schema_store_t *store, const char *uri);
/* Adds the draft 2020-12 and draft-07 meta-schemas from dir (the folder holding draft2020-12/
 * and draft-07/, e.g. ../shared/testdata/json-schema-metaschemas).  Returns 0 or -1. */
int em_schema_store_add_metaschemas(em_schema_store_t *store, const char *dir);
/* Adds every *.json under dir (recursively) as base_uri + relative path
 * (e.g. "http://localhost:1234/"), with default_draft for those without "$schema".
 * Returns the number of files added, or -1. */
int em_schema_store_add_dir(em_schema_store_t *store, const char *dir, const char *base_uri,
                            em_draft_t default_draft);

typedef struct {
    em_draft_t draft;   /* forced dialect when no "$schema" says otherwise (AUTO: 2020-12) */
    bool format_assert; /* "format" is an assertion (date, date-time, time, duration, email,
                         * hostname, ipv4, ipv6, uri, uri-reference, uuid, regex, json-pointer) */
    const char *base_uri; /* retrieval URI of the schema (NULL: a private URN) */
} em_schema_opts_t;

/* Compiles schema (borrowed; a reference is kept, and it must not be modified while the
 * compiled schema lives) against store (may be NULL; it must outlive the compiled schema).
 * opts may be NULL (defaults).  Returns NULL on failure and, if err != NULL, sets *err to a new string
 * (free it) naming the problem (unresolvable $ref, invalid pattern, not a schema...). */
em_schema_t *em_schema_compile(const json_t *schema, const em_schema_store_t *store,
                               const em_schema_opts_t *opts, char **err);
void em_schema_destroy(em_schema_t **schema);

/* Validates instance.  Returns 1 when valid, 0 when not, -1 on an internal error (recursion
 * deeper than 512 schema levels).  When errors != NULL (an array, see em_errors_add in
 * em_json.h), each failing assertion appends {"pointer": instance location (JSON Pointer),
 * "keyword", "schemaPath": keyword location (JSON Pointer through the schema, through "$ref"),
 * "message"}.  Failures inside anyOf, oneOf, not, if and contains are summed up by one error
 * at that keyword; "required" points at the object and names the property in its message.
 * With errors == NULL evaluation stops at the first failure; with errors, the instance is
 * first checked that way and only one that fails is evaluated again to build its errors
 * (the errors are the same as one full evaluation gives).  A valid instance costs no
 * allocation, except one string per member under "propertyNames" and, past 16 names or
 * indexes per object or array, the annotation lists of "unevaluated*". */
int em_schema_validate(const em_schema_t *schema, const json_t *instance, json_t *errors);

#endif
