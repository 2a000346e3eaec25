/* catalogue.c - the compiled schema set of the event catalogue (see catalogue.h). */
#include "catalogue.h"

#include <dirent.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_event.h"
#include "em_json.h"
#include "em_schema.h"
#include "rules.h"

typedef struct {
    char *uri;          /* VCAT_BASE_URI "<type>/<N>.json" */
    int version;        /* N */
    em_schema_t *schema;
} vcat_version_t;

typedef struct {
    char *type;               /* without VCAT_TYPE_PREFIX, e.g. "licence.granted" */
    vcat_version_t *versions; /* ascending by version */
    size_t nversions;
} vcat_type_t;

struct vcat {
    atomic_int refs;
    em_schema_store_t *store;
    vcat_type_t *types; /* sorted by type */
    size_t ntypes;
};

static void s_free(vcat_t *cat)
{
    for (size_t i = 0; i < cat->ntypes; i++) {
        for (size_t j = 0; j < cat->types[i].nversions; j++) {
            em_schema_destroy(&cat->types[i].versions[j].schema);
            free(cat->types[i].versions[j].uri);
        }
        free(cat->types[i].versions);
        free(cat->types[i].type);
    }
    free(cat->types);
    em_schema_store_destroy(&cat->store);
    free(cat);
}

static void s_err(char **err, const char *fmt, const char *a, const char *b)
{
    if (err && !*err) {
        size_t n = strlen(fmt) + strlen(a) + (b ? strlen(b) : 0) + 1;
        *err = malloc(n);
        if (*err)
            snprintf(*err, n, fmt, a, b ? b : "");
    }
}

static int s_cmp_type(const void *a, const void *b)
{
    return strcmp(((const vcat_type_t *)a)->type, ((const vcat_type_t *)b)->type);
}

static int s_cmp_version(const void *a, const void *b)
{
    return ((const vcat_version_t *)a)->version - ((const vcat_version_t *)b)->version;
}

/* Names the first *.json under dir (recursively) that is not JSON, with Jansson's reason. */
static void s_find_bad_json(const char *dir, char **err)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    if (!d)
        return;
    while (!(err && *err) && (de = readdir(d)) != NULL) {
        char path[1024];
        struct stat st;
        size_t n = strlen(de->d_name);
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (stat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            s_find_bad_json(path, err);
        } else if (n > 5 && strcmp(de->d_name + n - 5, ".json") == 0) {
            json_error_t je;
            json_t *doc = json_load_file(path, 0, &je);
            if (!doc) {
                char why[256];
                snprintf(why, sizeof why, "line %d column %d: %s", je.line, je.column, je.text);
                s_err(err, "%s: not JSON, %s", path, why);
            }
            json_decref(doc);
        }
    }
    closedir(d);
}

/* Compiles every "<N>.json" of dir/name into t.  Returns 0 or -1 (with *err). */
static int s_load_type(vcat_t *cat, const char *dir, const char *name, vcat_type_t *t, char **err)
{
    char path[1024];
    DIR *d;
    struct dirent *de;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    d = opendir(path);
    if (!d) {
        s_err(err, "%s: cannot open%s", path, NULL);
        return -1;
    }
    t->type = strdup(name);
    while ((de = readdir(d)) != NULL) {
        char *end;
        long v = strtol(de->d_name, &end, 10);
        if (de->d_name[0] < '1' || de->d_name[0] > '9' || strcmp(end, ".json") != 0 || v > 1000000)
            continue;
        vcat_version_t *nv = realloc(t->versions, (t->nversions + 1) * sizeof *nv);
        if (!nv)
            break;
        t->versions = nv;
        vcat_version_t *ver = &t->versions[t->nversions++];
        memset(ver, 0, sizeof *ver);
        ver->version = (int)v;
        size_t n = strlen(VCAT_BASE_URI) + strlen(name) + strlen(de->d_name) + 2;
        ver->uri = malloc(n);
        if (!ver->uri)
            break;
        snprintf(ver->uri, n, VCAT_BASE_URI "%s/%s", name, de->d_name);
        json_t *doc = em_schema_store_get(cat->store, ver->uri);
        if (!doc) {
            s_err(err, "%s: not in the schema store (its $id must be %s)", ver->uri, ver->uri);
            break;
        }
        em_schema_opts_t opts = {EM_DRAFT_2020_12, true, ver->uri};
        char *cerr = NULL;
        ver->schema = em_schema_compile(doc, cat->store, &opts, &cerr);
        if (!ver->schema) {
            s_err(err, "%s: %s", ver->uri, cerr ? cerr : "does not compile");
            free(cerr);
            break;
        }
    }
    closedir(d);
    for (size_t i = 0; i < t->nversions; i++)
        if (!t->versions[i].uri || !t->versions[i].schema) {
            s_err(err, "%s: cannot load a schema", path, NULL);
            return -1;
        }
    if (t->nversions == 0) {
        s_err(err, "%s: no <N>.json schema in the folder%s", path, NULL);
        return -1;
    }
    qsort(t->versions, t->nversions, sizeof *t->versions, s_cmp_version);
    return 0;
}

vcat_t *vcat_load(const char *dir, char **err)
{
    vcat_t *cat = calloc(1, sizeof *cat);
    DIR *d = NULL;
    struct dirent *de;

    if (err)
        *err = NULL;
    if (!cat)
        return NULL;
    atomic_init(&cat->refs, 1);
    cat->store = em_schema_store_new();
    if (!cat->store)
        goto fail;
    if (em_schema_store_add_dir(cat->store, dir, VCAT_BASE_URI, EM_DRAFT_2020_12) < 0) {
        s_find_bad_json(dir, err);
        s_err(err, "%s: a schema file cannot be read or is not JSON%s", dir, NULL);
        goto fail;
    }
    d = opendir(dir);
    if (!d) {
        s_err(err, "%s: cannot open the schema folder%s", dir, NULL);
        goto fail;
    }
    while ((de = readdir(d)) != NULL) {
        char sub[1024];
        struct stat st;
        snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name);
        if (de->d_name[0] == '.' || strchr(de->d_name, '.') == NULL || stat(sub, &st) != 0 ||
            !S_ISDIR(st.st_mode))
            continue; /* type folders are "<aggregate>.<pasttense>" */
        vcat_type_t *nt = realloc(cat->types, (cat->ntypes + 1) * sizeof *nt);
        if (!nt)
            goto fail;
        cat->types = nt;
        memset(&cat->types[cat->ntypes], 0, sizeof *nt);
        if (s_load_type(cat, dir, de->d_name, &cat->types[cat->ntypes++], err) != 0)
            goto fail;
    }
    closedir(d);
    d = NULL;
    if (cat->ntypes == 0) {
        s_err(err, "%s: no event type folder%s", dir, NULL);
        goto fail;
    }
    qsort(cat->types, cat->ntypes, sizeof *cat->types, s_cmp_type);
    return cat;
fail:
    if (d)
        closedir(d);
    s_err(err, "%s: cannot load the catalogue%s", dir, NULL);
    s_free(cat);
    return NULL;
}

vcat_t *vcat_ref(vcat_t *cat)
{
    if (cat)
        atomic_fetch_add(&cat->refs, 1);
    return cat;
}

void vcat_unref(vcat_t **cat_p)
{
    if (cat_p && *cat_p) {
        if (atomic_fetch_sub(&(*cat_p)->refs, 1) == 1)
            s_free(*cat_p);
        *cat_p = NULL;
    }
}

size_t vcat_types(const vcat_t *cat) { return cat ? cat->ntypes : 0; }

size_t vcat_versions(const vcat_t *cat)
{
    size_t n = 0;
    for (size_t i = 0; cat && i < cat->ntypes; i++)
        n += cat->types[i].nversions;
    return n;
}

static const vcat_type_t *s_find_type(const vcat_t *cat, const char *name)
{
    vcat_type_t key = {.type = (char *)name};
    return bsearch(&key, cat->types, cat->ntypes, sizeof *cat->types, s_cmp_type);
}

/* Appends the schema errors of data with their pointers moved under /data. */
static void s_move_errors(json_t *from, json_t *errors)
{
    size_t i;
    json_t *e;

    json_array_foreach(from, i, e)
    {
        const char *p = json_string_value(json_object_get(e, "pointer"));
        size_t n = 6 + (p ? strlen(p) : 0);
        char *np = malloc(n);
        if (!np)
            continue;
        snprintf(np, n, "/data%s", p ? p : "");
        json_object_set_new(e, "pointer", json_string(np));
        free(np);
        json_array_append(errors, e);
    }
}

int vcat_check(const vcat_t *cat, const json_t *event, bool accept_unknown, json_t *errors,
               json_t *notes)
{
    size_t before = json_array_size(errors);
    const char *type = json_string_value(json_object_get(event, "type"));
    const char *ds = json_string_value(json_object_get(event, "dataschema"));
    const size_t plen = strlen(VCAT_TYPE_PREFIX);

    if (!cat || !type)
        return 0; /* a missing type is the envelope's error */
    const vcat_type_t *t =
        strncmp(type, VCAT_TYPE_PREFIX, plen) == 0 ? s_find_type(cat, type + plen) : NULL;
    if (!t) {
        if (!accept_unknown)
            em_errors_add(errors, "/type", "unknownType",
                          "\"%s\" is not an event type of the catalogue (%zu types, "
                          VCAT_TYPE_PREFIX "<aggregate>.<pasttense>)",
                          type, cat->ntypes);
        return (int)(json_array_size(errors) - before);
    }
    const vcat_version_t *ver = &t->versions[t->nversions - 1];
    if (ds) {
        ver = NULL;
        for (size_t i = 0; i < t->nversions; i++)
            if (strcmp(t->versions[i].uri, ds) == 0)
                ver = &t->versions[i];
        if (!ver) {
            em_errors_add(errors, "/dataschema", "dataschema",
                          "%s is not a schema of %s; the catalogue has versions 1..%d at "
                          VCAT_BASE_URI "%s/<N>.json",
                          ds, type, t->versions[t->nversions - 1].version, t->type);
            return (int)(json_array_size(errors) - before);
        }
    }
    if (json_object_get(event, "data_base64")) {
        em_errors_add(errors, "/data_base64", "datacontenttype",
                      "the data of %s is JSON (application/json), not base64", type);
        return (int)(json_array_size(errors) - before);
    }
    const json_t *data = json_object_get(event, "data");
    if (!data) {
        em_errors_add(errors, "", "required", "an event of type %s carries data (%s)", type,
                      ver->uri);
        return (int)(json_array_size(errors) - before);
    }
    json_t *serr = json_array();
    if (em_schema_validate(ver->schema, data, serr) < 0)
        em_errors_add(errors, "/data", "maxDepth", "the data nests too deeply to validate");
    s_move_errors(serr, errors);
    json_decref(serr);
    vrules_apply(t->type, event, data, errors, notes);
    return (int)(json_array_size(errors) - before);
}
