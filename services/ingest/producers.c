/* producers.c - the producer registry of ingest (PostgreSQL table producers). */
#include "producers.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_json.h"

struct ingest_producers {
    ingest_producer_t *list;
    int n;
    bool loaded;
};

static void s_free_list(ingest_producer_t *list, int n)
{
    for (int i = 0; i < n; i++) {
        free(list[i].name);
        for (int j = 0; j < list[i].nsources; j++)
            free(list[i].sources[j]);
        for (int j = 0; j < list[i].ntypes; j++)
            free(list[i].types[j]);
        free(list[i].sources);
        free(list[i].types);
    }
    free(list);
}

ingest_producers_t *ingest_producers_new(void)
{
    return calloc(1, sizeof(ingest_producers_t));
}

void ingest_producers_destroy(ingest_producers_t **self_p)
{
    if (self_p && *self_p) {
        s_free_list((*self_p)->list, (*self_p)->n);
        free(*self_p);
        *self_p = NULL;
    }
}

static char **s_strings(const char *json_text, int *n)
{
    json_t *arr = json_loads(json_text ? json_text : "[]", 0, NULL);
    size_t i;
    json_t *v;
    char **out = calloc(json_array_size(arr) + 1, sizeof *out);
    *n = 0;
    json_array_foreach(arr, i, v) if (json_is_string(v)) out[(*n)++] = strdup(json_string_value(v));
    json_decref(arr);
    return out;
}

int ingest_producers_load(ingest_producers_t *self, em_store_t *store)
{
    PGresult *res = em_store_query(store,
                                   "SELECT name, key_sha256, array_to_json(sources)::text, "
                                   "array_to_json(types)::text, coalesce(curve_public, '') "
                                   "FROM producers "
                                   "WHERE NOT disabled ORDER BY name",
                                   0, NULL);
    if (!res)
        return -1;
    int n = PQntuples(res);
    ingest_producer_t *list = calloc((size_t)(n ? n : 1), sizeof *list);
    for (int i = 0; i < n; i++) {
        list[i].name = strdup(PQgetvalue(res, i, 0));
        snprintf(list[i].key_sha256, sizeof list[i].key_sha256, "%s", PQgetvalue(res, i, 1));
        list[i].sources = s_strings(PQgetvalue(res, i, 2), &list[i].nsources);
        list[i].types = s_strings(PQgetvalue(res, i, 3), &list[i].ntypes);
        snprintf(list[i].curve_public, sizeof list[i].curve_public, "%s", PQgetvalue(res, i, 4));
    }
    PQclear(res);
    s_free_list(self->list, self->n);
    self->list = list;
    self->n = n;
    self->loaded = true;
    return n;
}

bool ingest_producers_loaded(const ingest_producers_t *self)
{
    return self && self->loaded;
}

/* Constant-time comparison of two 64-character hex digests. */
static bool s_same_digest(const char *a, const char *b)
{
    unsigned char diff = 0;
    for (int i = 0; i < 64; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

static void s_key_digest(const char *key, char out[65])
{
    uint8_t d[32];
    em_sha256(key, strlen(key), d);
    em_hex_encode(d, 32, out);
}

const ingest_producer_t *ingest_producers_by_key(const ingest_producers_t *self, const char *key)
{
    char digest[65];
    const ingest_producer_t *found = NULL;

    if (!self || !key || !*key)
        return NULL;
    s_key_digest(key, digest);
    for (int i = 0; i < self->n; i++)
        if (s_same_digest(self->list[i].key_sha256, digest))
            found = &self->list[i];
    return found;
}

const ingest_producer_t *ingest_producers_by_curve(const ingest_producers_t *self,
                                                   const char *z85)
{
    for (int i = 0; self && z85 && *z85 && i < self->n; i++)
        if (self->list[i].curve_public[0] && strcmp(self->list[i].curve_public, z85) == 0)
            return &self->list[i];
    return NULL;
}

const ingest_producer_t *ingest_producers_by_name(const ingest_producers_t *self,
                                                  const char *name)
{
    for (int i = 0; self && name && i < self->n; i++)
        if (strcmp(self->list[i].name, name) == 0)
            return &self->list[i];
    return NULL;
}

const ingest_producer_t *ingest_producers_check(const ingest_producers_t *self, const char *name,
                                                const char *key)
{
    const ingest_producer_t *p = ingest_producers_by_key(self, key);
    return p && name && strcmp(p->name, name) == 0 ? p : NULL;
}

static bool s_type_matches(const char *pattern, const char *type)
{
    size_t n = strlen(pattern);
    if (n > 0 && pattern[n - 1] == '*')
        return strncmp(pattern, type, n - 1) == 0;
    return strcmp(pattern, type) == 0;
}

bool ingest_producer_allows(const ingest_producer_t *p, const char *source, const char *type,
                            const char **pointer, const char **why)
{
    bool ok = false;
    for (int i = 0; i < p->nsources && !ok; i++)
        ok = strcmp(p->sources[i], "*") == 0 ||
             strncmp(p->sources[i], source, strlen(p->sources[i])) == 0;
    if (!ok) {
        *pointer = "/source";
        *why = "this producer may not publish events of this source";
        return false;
    }
    if (!type) {
        *pointer = "/type";
        *why = "type is required";
        return false;
    }
    ok = false;
    for (int i = 0; i < p->ntypes && !ok; i++)
        ok = s_type_matches(p->types[i], type);
    if (!ok) {
        *pointer = "/type";
        *why = "this producer may not publish events of this type";
        return false;
    }
    return true;
}
