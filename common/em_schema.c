/* em_schema.c - JSON Schema 2020-12 / draft-07 validator (see em_schema.h).
 *
 * Documents are indexed once (every "$id", "$anchor", "$dynamicAnchor" and the base URI and
 * dialect of every schema object); compiling turns each reachable schema object into a node
 * holding a compact array of keywords, with references resolved to node pointers and patterns
 * compiled by PCRE2.  Validation walks nodes; instance and keyword locations are linked lists
 * on the C stack, so a valid instance costs no allocation unless "unevaluated*" keywords need
 * annotations. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "em_schema.h"
#include "em_json.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define S_MAX_DEPTH 512

/* ---------------------------------------------------------------- small helpers */

typedef struct {
    char *data;
    size_t len, cap;
    int failed;
} s_buf_t;

static void s_buf_putn(s_buf_t *b, const char *s, size_t n)
{
    if (b->failed) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *d = realloc(b->data, cap);
        if (!d) {
            b->failed = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void s_buf_puts(s_buf_t *b, const char *s)
{
    s_buf_putn(b, s, strlen(s));
}

static char *s_strcat3(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *r = malloc(la + lb + lc + 1);
    if (r) {
        memcpy(r, a, la);
        memcpy(r + la, b, lb);
        memcpy(r + la + lb, c, lc);
        r[la + lb + lc] = '\0';
    }
    return r;
}

/* Pointer-keyed hash map (open addressing, linear probing). */
typedef struct {
    const void **keys;
    void **vals;
    size_t cap, n;
} s_pmap_t;

static size_t s_phash(const void *p)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static void *s_pmap_get(const s_pmap_t *m, const void *k)
{
    if (!m->cap) {
        return NULL;
    }
    for (size_t i = s_phash(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) {
            return NULL;
        }
        if (m->keys[i] == k) {
            return m->vals[i];
        }
    }
}

static int s_pmap_put(s_pmap_t *m, const void *k, void *v)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        const void **keys = calloc(cap, sizeof(*keys));
        void **vals = calloc(cap, sizeof(*vals));
        if (!keys || !vals) {
            free(keys);
            free(vals);
            return -1;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (m->keys[i]) {
                size_t j = s_phash(m->keys[i]) & (cap - 1);
                while (keys[j]) {
                    j = (j + 1) & (cap - 1);
                }
                keys[j] = m->keys[i];
                vals[j] = m->vals[i];
            }
        }
        free(m->keys);
        free(m->vals);
        m->keys = keys;
        m->vals = vals;
        m->cap = cap;
    }
    size_t i = s_phash(k) & (m->cap - 1);
    while (m->keys[i] && m->keys[i] != k) {
        i = (i + 1) & (m->cap - 1);
    }
    if (!m->keys[i]) {
        m->n++;
    }
    m->keys[i] = k;
    m->vals[i] = v;
    return 0;
}

static void s_pmap_free(s_pmap_t *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

/* ---------------------------------------------------------------- URIs (RFC 3986) */

typedef struct {
    const char *scheme, *auth, *path, *query, *frag;
    size_t lscheme, lauth, lpath, lquery, lfrag;
    int has_scheme, has_auth, has_query, has_frag;
} s_uri_t;

static void s_uri_parse(const char *s, s_uri_t *u)
{
    memset(u, 0, sizeof(*u));
    const char *p = s;
    const char *q = p;
    if (isalpha((unsigned char)*q)) {
        while (isalnum((unsigned char)*q) || *q == '+' || *q == '-' || *q == '.') {
            q++;
        }
        if (*q == ':') {
            u->has_scheme = 1;
            u->scheme = p;
            u->lscheme = (size_t)(q - p);
            p = q + 1;
        }
    }
    if (p[0] == '/' && p[1] == '/') {
        p += 2;
        u->has_auth = 1;
        u->auth = p;
        while (*p && *p != '/' && *p != '?' && *p != '#') {
            p++;
        }
        u->lauth = (size_t)(p - u->auth);
    }
    u->path = p;
    while (*p && *p != '?' && *p != '#') {
        p++;
    }
    u->lpath = (size_t)(p - u->path);
    if (*p == '?') {
        u->has_query = 1;
        u->query = ++p;
        while (*p && *p != '#') {
            p++;
        }
        u->lquery = (size_t)(p - u->query);
    }
    if (*p == '#') {
        u->has_frag = 1;
        u->frag = ++p;
        u->lfrag = strlen(p);
    }
}

/* remove_dot_segments of RFC 3986 5.2.4, appended to out. */
static void s_remove_dots(s_buf_t *out, const char *in, size_t n)
{
    char *buf = malloc(n + 1);
    size_t olen0 = out->len;
    if (!buf) {
        out->failed = 1;
        return;
    }
    memcpy(buf, in, n);
    buf[n] = '\0';
    char *p = buf;
    while (*p) {
        if (!strncmp(p, "../", 3)) {
            p += 3;
        } else if (!strncmp(p, "./", 2)) {
            p += 2;
        } else if (!strncmp(p, "/./", 3)) {
            p += 2;
        } else if (!strcmp(p, "/.")) {
            p[1] = '\0';
        } else if (!strncmp(p, "/../", 4) || !strcmp(p, "/..")) {
            if (p[3] == '/') {
                p += 3;
            } else {
                p += 2;
                p[0] = '/';
            }
            /* remove the last segment of out */
            while (out->len > olen0 && out->data[out->len - 1] != '/') {
                out->len--;
            }
            if (out->len > olen0) {
                out->len--;
            }
            if (out->data) {
                out->data[out->len] = '\0';
            }
        } else if (!strcmp(p, ".") || !strcmp(p, "..")) {
            break;
        } else {
            char *e = p + (*p == '/' ? 1 : 0);
            while (*e && *e != '/') {
                e++;
            }
            s_buf_putn(out, p, (size_t)(e - p));
            p = e;
        }
    }
    free(buf);
}

/* Resolves ref against base (RFC 3986 5.2.2).  Returns a new string or NULL. */
static char *s_uri_resolve(const char *base, const char *ref)
{
    s_uri_t b, r;
    s_buf_t out = { 0 };
    s_uri_parse(ref, &r);
    s_uri_parse(base ? base : "", &b);
    const s_uri_t *sch = &r, *auth = &r;
    const char *qs = r.query;
    size_t lq = r.lquery;
    int hq = r.has_query;
    s_buf_t path = { 0 };
    s_buf_puts(&path, "");
    if (r.has_scheme) {
        s_remove_dots(&path, r.path, r.lpath);
    } else {
        sch = &b;
        if (r.has_auth) {
            s_remove_dots(&path, r.path, r.lpath);
        } else {
            auth = &b;
            if (r.lpath == 0) {
                s_buf_putn(&path, b.path, b.lpath);
                if (!r.has_query) {
                    qs = b.query;
                    lq = b.lquery;
                    hq = b.has_query;
                }
            } else if (r.path[0] == '/') {
                s_remove_dots(&path, r.path, r.lpath);
            } else {
                s_buf_t merged = { 0 };
                if (b.has_auth && b.lpath == 0) {
                    s_buf_puts(&merged, "/");
                } else {
                    size_t k = b.lpath;
                    while (k > 0 && b.path[k - 1] != '/') {
                        k--;
                    }
                    s_buf_putn(&merged, b.path, k);
                }
                s_buf_putn(&merged, r.path, r.lpath);
                if (merged.data) {
                    s_remove_dots(&path, merged.data, merged.len);
                }
                if (merged.failed) {
                    path.failed = 1;
                }
                free(merged.data);
            }
        }
    }
    if (sch->has_scheme) {
        s_buf_putn(&out, sch->scheme, sch->lscheme);
        s_buf_puts(&out, ":");
    }
    if (auth->has_auth) {
        s_buf_puts(&out, "//");
        s_buf_putn(&out, auth->auth, auth->lauth);
    }
    if (path.data) {
        s_buf_putn(&out, path.data, path.len);
    }
    if (hq) {
        s_buf_puts(&out, "?");
        s_buf_putn(&out, qs, lq);
    }
    if (r.has_frag) {
        s_buf_puts(&out, "#");
        s_buf_putn(&out, r.frag, r.lfrag);
    }
    s_buf_puts(&out, "");
    int failed = out.failed || path.failed;
    free(path.data);
    if (failed) {
        free(out.data);
        return NULL;
    }
    return out.data;
}

/* Splits uri at '#': returns the part before as a new string; *frag points into uri (NULL when
 * there is no '#'). */
static char *s_uri_split(const char *uri, const char **frag)
{
    const char *h = strchr(uri, '#');
    *frag = h ? h + 1 : NULL;
    return strndup(uri, h ? (size_t)(h - uri) : strlen(uri));
}


static char *s_pct_decode(const char *s)
{
    size_t n = strlen(s);
    char *r = malloc(n + 1), *o = r;
    if (!r) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n + 1 && em_hex_digit(s[i + 1]) >= 0 && em_hex_digit(s[i + 2]) >= 0) {
            *o++ = (char)(em_hex_digit(s[i + 1]) * 16 + em_hex_digit(s[i + 2]));
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return r;
}

/* Follows JSON Pointer ptr (already percent-decoded) from root; NULL if absent. */
static json_t *s_json_pointer(json_t *root, const char *ptr)
{
    json_t *cur = root;
    if (*ptr == '\0') {
        return root;
    }
    if (*ptr != '/') {
        return NULL;
    }
    char tok[1024];
    while (cur && *ptr == '/') {
        ptr++;
        size_t n = 0;
        while (*ptr && *ptr != '/' && n + 1 < sizeof(tok)) {
            if (*ptr == '~' && ptr[1] == '0') {
                tok[n++] = '~';
                ptr += 2;
            } else if (*ptr == '~' && ptr[1] == '1') {
                tok[n++] = '/';
                ptr += 2;
            } else {
                tok[n++] = *ptr++;
            }
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end;
            if (!n || (n > 1 && tok[0] == '0')) {
                return NULL;
            }
            unsigned long idx = strtoul(tok, &end, 10);
            cur = *end ? NULL : json_array_get(cur, idx);
        } else {
            return NULL;
        }
    }
    return cur;
}

/* ---------------------------------------------------------------- index of documents */

typedef struct {
    char *base;       /* base URI (no fragment) */
    char *schema_uri; /* "$schema" in force (may be NULL) */
    int draft;        /* 7, 2019 (a referenced 2019-09 document) or 2020 */
    json_t *resource; /* the schema object that is the root of the resource */
    char *dyn_anchor; /* "$dynamicAnchor" of this object, or NULL */
} s_info_t;

typedef struct {
    json_t *uris;    /* "uri" and "uri#anchor" -> schema (new refs) */
    json_t *dyn;     /* resource uri -> {name: schema} of its $dynamicAnchors */
    s_pmap_t infos;  /* json_t* -> s_info_t* */
    json_t *docs;    /* array of the documents (keeps them alive) */
} s_index_t;

struct em_schema_store {
    s_index_t idx;
};

static int s_index_init(s_index_t *x)
{
    memset(x, 0, sizeof(*x));
    x->uris = json_object();
    x->dyn = json_object();
    x->docs = json_array();
    return x->uris && x->dyn && x->docs ? 0 : -1;
}

static void s_index_free(s_index_t *x)
{
    for (size_t i = 0; i < x->infos.cap; i++) {
        if (x->infos.keys && x->infos.keys[i]) {
            s_info_t *in = x->infos.vals[i];
            free(in->base);
            free(in->schema_uri);
            free(in->dyn_anchor);
            free(in);
        }
    }
    s_pmap_free(&x->infos);
    json_decref(x->uris);
    json_decref(x->dyn);
    json_decref(x->docs);
}

static int s_draft_of(const char *schema_uri, int dflt)
{
    if (!schema_uri) {
        return dflt;
    }
    if (strstr(schema_uri, "json-schema.org/draft-07/schema") ||
        strstr(schema_uri, "json-schema.org/draft-06/schema") ||
        strstr(schema_uri, "json-schema.org/draft-04/schema")) {
        return 7;
    }
    if (strstr(schema_uri, "json-schema.org/draft/2020-12/schema")) {
        return 2020;
    }
    if (strstr(schema_uri, "json-schema.org/draft/2019-09/schema")) {
        return 2019; /* read as 2020-12 but for "items" (array form) and "additionalItems" */
    }
    return dflt;
}

static char *s_strip_empty_frag(const char *uri)
{
    size_t n = strlen(uri);
    if (n && uri[n - 1] == '#') {
        n--;
    }
    return strndup(uri, n);
}

static int s_walk(s_index_t *x, json_t *node, const char *base, const char *schema_uri, int draft,
                  json_t *resource, int is_root);

static int s_walk_map(s_index_t *x, json_t *m, const char *base, const char *su, int draft,
                      json_t *res)
{
    const char *k;
    json_t *v;
    if (!json_is_object(m)) {
        return 0;
    }
    json_object_foreach(m, k, v)
    {
        if (s_walk(x, v, base, su, draft, res, 0) < 0) {
            return -1;
        }
    }
    return 0;
}

static int s_walk_arr(s_index_t *x, json_t *a, const char *base, const char *su, int draft,
                      json_t *res)
{
    size_t i;
    json_t *v;
    if (!json_is_array(a)) {
        return 0;
    }
    json_array_foreach(a, i, v)
    {
        if (s_walk(x, v, base, su, draft, res, 0) < 0) {
            return -1;
        }
    }
    return 0;
}

static int s_walk(s_index_t *x, json_t *node, const char *base, const char *schema_uri, int draft,
                  json_t *resource, int is_root)
{
    if (!json_is_object(node) || s_pmap_get(&x->infos, node)) {
        return 0;
    }
    char *nbase = NULL;
    char *su = NULL;
    int rc = -1;
    json_t *sch = json_object_get(node, "$schema");
    json_t *id = json_object_get(node, "$id");
    if (draft == 7 && json_object_get(node, "$ref")) {
        id = NULL;
    }
    if (json_is_string(sch) && (is_root || json_is_string(id))) {
        su = s_strip_empty_frag(json_string_value(sch));
        draft = s_draft_of(su, draft);
        schema_uri = su;
    }
    if (json_is_string(id)) {
        const char *frag;
        char *abs = s_uri_resolve(base, json_string_value(id));
        char *doc = abs ? s_uri_split(abs, &frag) : NULL;
        if (!doc) {
            free(abs);
            goto out;
        }
        if (json_string_value(id)[0] == '#' && draft == 7) {
            /* draft-07 plain-name fragment: an anchor */
            char *key = s_strcat3(base, "#", frag);
            if (key) {
                json_object_set(x->uris, key, node);
            }
            free(key);
            free(doc);
        } else {
            nbase = doc;
            base = nbase;
            resource = node;
            json_object_set(x->uris, base, node);
            if (frag && *frag && draft == 7) {
                char *key = s_strcat3(base, "#", frag);
                if (key) {
                    json_object_set(x->uris, key, node);
                }
                free(key);
            }
        }
        free(abs);
    } else if (is_root) {
        json_object_set(x->uris, base, node);
    }
    s_info_t *in = calloc(1, sizeof(*in));
    if (!in) {
        goto out;
    }
    in->base = strdup(base);
    in->schema_uri = schema_uri ? strdup(schema_uri) : NULL;
    in->draft = draft;
    in->resource = resource;
    if (!in->base || s_pmap_put(&x->infos, node, in) < 0) {
        free(in->base);
        free(in->schema_uri);
        free(in);
        goto out;
    }
    if (draft >= 2019) {
        json_t *a = json_object_get(node, "$anchor");
        if (json_is_string(a)) {
            char *key = s_strcat3(base, "#", json_string_value(a));
            if (key) {
                json_object_set(x->uris, key, node);
            }
            free(key);
        }
        a = json_object_get(node, "$dynamicAnchor");
        if (json_is_string(a)) {
            char *key = s_strcat3(base, "#", json_string_value(a));
            if (key) {
                json_object_set(x->uris, key, node);
            }
            free(key);
            in->dyn_anchor = strdup(json_string_value(a));
            json_t *d = json_object_get(x->dyn, base);
            if (!d) {
                d = json_object();
                json_object_set_new(x->dyn, base, d);
            }
            json_object_set(d, json_string_value(a), node);
        }
    }
    /* subschemas */
    static const char *const single[] = { "not", "if", "then", "else", "contains",
                                          "additionalProperties", "propertyNames",
                                          "unevaluatedProperties", "unevaluatedItems",
                                          "additionalItems", "items", "contentSchema", NULL };
    static const char *const maps[] = { "properties", "patternProperties", "$defs",
                                        "definitions", "dependentSchemas", "dependencies", NULL };
    static const char *const arrs[] = { "allOf", "anyOf", "oneOf", "prefixItems", "items", NULL };
    for (int i = 0; single[i]; i++) {
        if (s_walk(x, json_object_get(node, single[i]), base, schema_uri, draft, resource, 0) < 0) {
            goto out;
        }
    }
    for (int i = 0; maps[i]; i++) {
        if (s_walk_map(x, json_object_get(node, maps[i]), base, schema_uri, draft, resource) < 0) {
            goto out;
        }
    }
    for (int i = 0; arrs[i]; i++) {
        if (s_walk_arr(x, json_object_get(node, arrs[i]), base, schema_uri, draft, resource) < 0) {
            goto out;
        }
    }
    rc = 0;
out:
    free(nbase);
    free(su);
    return rc;
}

static int s_index_add(s_index_t *x, const char *uri, json_t *doc, int draft)
{
    char *u = s_strip_empty_frag(uri);
    if (!u) {
        return -1;
    }
    json_array_append(x->docs, doc);
    json_object_set(x->uris, u, doc);
    int rc = s_walk(x, doc, u, NULL, draft, doc, 1);
    free(u);
    return rc;
}

em_schema_store_t *em_schema_store_new(void)
{
    em_schema_store_t *s = calloc(1, sizeof(*s));
    if (s && s_index_init(&s->idx) < 0) {
        s_index_free(&s->idx);
        free(s);
        s = NULL;
    }
    return s;
}

void em_schema_store_destroy(em_schema_store_t **store)
{
    if (store && *store) {
        s_index_free(&(*store)->idx);
        free(*store);
        *store = NULL;
    }
}

int em_schema_store_add(em_schema_store_t *store, const char *uri, json_t *doc,
                        em_draft_t default_draft)
{
    if (!store || !uri || !doc) {
        return -1;
    }
    return s_index_add(&store->idx, uri, doc, default_draft == EM_DRAFT_07 ? 7 : 2020);
}

json_t *em_schema_store_get(const em_schema_store_t *store, const char *uri)
{
    if (!store || !uri) {
        return NULL;
    }
    char *u = s_strip_empty_frag(uri);
    json_t *j = u ? json_object_get(store->idx.uris, u) : NULL;
    free(u);
    return j;
}

static int s_add_file(em_schema_store_t *store, const char *path, const char *uri, int draft)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_DECODE_ANY, &jerr);
    if (!doc) {
        return -1;
    }
    int rc = em_schema_store_add(store, uri, doc, draft);
    json_decref(doc);
    return rc;
}

int em_schema_store_add_metaschemas(em_schema_store_t *store, const char *dir)
{
    static const char *const names[] = { "core",      "applicator",        "unevaluated",
                                         "validation", "meta-data",        "format-annotation",
                                         "format-assertion", "content", NULL };
    char path[4096], uri[256];
    snprintf(path, sizeof(path), "%s/draft2020-12/schema.json", dir);
    if (s_add_file(store, path, "https://json-schema.org/draft/2020-12/schema", EM_DRAFT_2020_12) < 0) {
        return -1;
    }
    for (int i = 0; names[i]; i++) {
        snprintf(path, sizeof(path), "%s/draft2020-12/meta/%s.json", dir, names[i]);
        snprintf(uri, sizeof(uri), "https://json-schema.org/draft/2020-12/meta/%s", names[i]);
        if (s_add_file(store, path, uri, EM_DRAFT_2020_12) < 0) {
            return -1;
        }
    }
    snprintf(path, sizeof(path), "%s/draft-07/schema.json", dir);
    return s_add_file(store, path, "http://json-schema.org/draft-07/schema", EM_DRAFT_07);
}

static int s_add_dir(em_schema_store_t *store, const char *dir, const char *base, int draft)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d) {
        return -1;
    }
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char path[4096], uri[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &st) < 0) {
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            snprintf(uri, sizeof(uri), "%s%s/", base, e->d_name);
            int k = s_add_dir(store, path, uri, draft);
            if (k < 0) {
                n = -1;
                break;
            }
            n += k;
        } else {
            size_t l = strlen(e->d_name);
            if (l < 5 || strcmp(e->d_name + l - 5, ".json")) {
                continue;
            }
            snprintf(uri, sizeof(uri), "%s%s", base, e->d_name);
            if (s_add_file(store, path, uri, draft) < 0) {
                n = -1;
                break;
            }
            n++;
        }
    }
    closedir(d);
    return n;
}

int em_schema_store_add_dir(em_schema_store_t *store, const char *dir, const char *base_uri,
                            em_draft_t default_draft)
{
    return s_add_dir(store, dir, base_uri, default_draft);
}

/* ---------------------------------------------------------------- compiled form */

enum {
    K_REF,
    K_DYNREF,
    K_TYPE,
    K_ENUM,
    K_CONST,
    K_MULTIPLEOF,
    K_MAXIMUM,
    K_EXMAXIMUM,
    K_MINIMUM,
    K_EXMINIMUM,
    K_MAXLENGTH,
    K_MINLENGTH,
    K_PATTERN,
    K_FORMAT,
    K_MAXITEMS,
    K_MINITEMS,
    K_UNIQUE,
    K_MAXPROPS,
    K_MINPROPS,
    K_REQUIRED,
    K_DEPREQ,
    K_ALLOF,
    K_ANYOF,
    K_ONEOF,
    K_NOT,
    K_IF,
    K_DEPSCHEMAS,
    K_PROPS,
    K_PROPNAMES,
    K_ITEMS,
    K_CONTAINS,
    K_UNEVAL_PROPS,
    K_UNEVAL_ITEMS,
};

enum { T_NULL = 1, T_BOOL = 2, T_OBJECT = 4, T_ARRAY = 8, T_NUMBER = 16, T_STRING = 32, T_INT = 64 };

enum {
    F_NONE,
    F_DATE,
    F_DATETIME,
    F_TIME,
    F_DURATION,
    F_EMAIL,
    F_HOSTNAME,
    F_IPV4,
    F_IPV6,
    F_URI,
    F_URIREF,
    F_UUID,
    F_REGEX,
    F_JSONPTR,
};

typedef struct s_node s_node_t;
typedef struct s_resource s_resource_t;

/* A pattern matched by a DFA over bytes (see s_dfa_compile). */
typedef struct {
    uint8_t cls[256];  /* byte -> class */
    int ncls;
    uint16_t *next;    /* [state * ncls + class] -> state, S_DFA_DEAD for no match */
    uint8_t *accept;   /* [state] */
} s_dfa_t;

typedef struct {
    pcre2_code *code;
    const char *src;
    int jit;      /* JIT-compiled: pcre2_jit_match applies */
    s_dfa_t *dfa; /* a simple pattern: matched by the DFA instead */
} s_re_t;

typedef struct {
    const char *key; /* property name, pattern source or dependency name */
    size_t klen;
    uint32_t hash;
    s_node_t *node;
    s_re_t *re;
    json_t *req; /* draft-07 "dependencies" array form */
    int required; /* "properties": the name is also in the same schema's "required" */
} s_entry_t;

typedef struct {
    int op;
    const char *name; /* keyword as written (for schemaPath) */
    json_t *val;      /* the keyword's value (borrowed from the schema) */
    long double num;
    double dnum;   /* num as a double, when exact (num_exact) */
    int num_exact;
    size_t n;
    size_t n2;
    unsigned mask;
    int fmt;
    s_re_t *re;
    s_node_t *a, *b, *c;  /* single subschemas (if/then/else, not, contains, additional...) */
    s_node_t **list;      /* allOf/anyOf/oneOf/prefixItems */
    s_entry_t *ents;      /* properties, dependentSchemas */
    s_entry_t *pents;     /* patternProperties */
    const char *aname;    /* name of kw a (e.g. "items" / "additionalItems") */
    const char *dyn_name; /* $dynamicRef anchor */
    size_t max;           /* maxContains (SIZE_MAX: none) */
    uint32_t *tab;        /* properties: open-addressing table of entry index + 1 */
    uint32_t tmask;
    /* "required" whose names all are "properties" of the same schema: without errors to
     * report, "properties" counts the required members it meets (nreq of its entries are
     * required) and "required" (by_props set) does nothing more. */
    size_t nreq;
    int by_props;
    /* pass without errors (s_node_t.qkws): "items"/"properties" carrying the schema's "type"
     * (qtype, 0: none) and, for items, minItems/maxItems (qlo..qhi) */
    unsigned qtype;
    int qmerged;
    size_t qlo, qhi;
} s_kw_t;

/* Hash of a property name or enum string: its length and its first and last 8 bytes (the
 * names a schema lists rarely share all three; equal hashes are confirmed by memcmp). */
static inline uint32_t s_khash(const char *k, size_t n)
{
    uint64_t a = 0, b = 0;
    if (n >= 8) {
        memcpy(&a, k, 8);
        memcpy(&b, k + n - 8, 8);
    } else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, k, 4);
        memcpy(&y, k + n - 4, 4);
        a = (uint64_t)x | (uint64_t)y << 32;
    } else if (n > 0) {
        a = (uint64_t)(unsigned char)k[0] | (uint64_t)(unsigned char)k[n / 2] << 8 |
            (uint64_t)(unsigned char)k[n - 1] << 16;
    }
    uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ULL) ^ n) * 0xff51afd7ed558ccdULL;
    return (uint32_t)(h >> 32) ^ (uint32_t)h;
}

/* Fills k->tab from k->ents[0..k->n) (key, klen set).  Returns 0 or -1. */
static int s_build_tab(em_schema_t *s, s_kw_t *k);

/* memcmp(a, b, n) == 0, without a call for names of 8 to 16 bytes */
static inline int s_keq(const char *a, const char *b, size_t n)
{
    uint64_t x1, x2, y1, y2;
    if (n < 8 || n > 16) {
        return !memcmp(a, b, n);
    }
    memcpy(&x1, a, 8);
    memcpy(&y1, b, 8);
    memcpy(&x2, a + n - 8, 8);
    memcpy(&y2, b + n - 8, 8);
    return ((x1 ^ y1) | (x2 ^ y2)) == 0;
}

/* Index of the "properties" entry named key, or -1. */
static inline long s_props_find(const s_kw_t *k, const char *key, size_t klen)
{
    if (!k->tab) {
        return -1;
    }
    uint32_t h = s_khash(key, klen);
    for (uint32_t i = h & k->tmask;; i = (i + 1) & k->tmask) {
        uint32_t e = k->tab[i];
        if (!e) {
            return -1;
        }
        const s_entry_t *en = &k->ents[e - 1];
        if (en->hash == h && en->klen == klen && s_keq(en->key, key, klen)) {
            return (long)(e - 1);
        }
    }
}

typedef struct {
    const char *name;
    s_node_t *node;
} s_dyn_t;

struct s_resource {
    s_dyn_t *dyn;
    size_t ndyn;
};

struct s_node {
    int boolean; /* -1: object schema; 0: false; 1: true */
    s_kw_t *kws;
    size_t nkw;
    /* the keywords the pass without errors evaluates: kws, or fewer with "type", "minItems",
     * "maxItems" and "required" folded into "items" or "properties" */
    s_kw_t *qkws;
    size_t nqkw;
    s_resource_t *res; /* the resource holding this schema (dynamic scope; 2020-12 only) */
    int uneval;        /* has unevaluatedProperties/unevaluatedItems */
    int draft;
    /* The schema is only a "$ref" (and no $dynamicRef is compiled anywhere): without errors
     * to report, validating it is validating the target. */
    const struct s_node *fwd;
    /* where the chain of forwards ends (NULL: a cycle) and how many it passes */
    const struct s_node *fwd_end;
    int fwd_hops;
    /* only keywords on one value (type, enum, bounds, lengths, pattern, format): checked
     * in one go by s_scalar_ok when no error is reported */
    const struct s_scalar *scalar;
    /* the scalar node this one is or forwards to, and the forwards passed on the way */
    const struct s_scalar *qs;
    int qs_hops;
};

typedef struct s_scalar {
    const s_kw_t *type, *enm, *pattern, *format;
    const s_kw_t *bounds[4], *lengths[2];
    int nbounds, nlengths;
    /* all bounds are exact doubles: lo < x < hi (lo_ex, hi_ex) or lo <= x <= hi */
    int dbounds, lo_ex, hi_ex;
    double lo, hi;
} s_scalar_t;

typedef struct s_alloc {
    struct s_alloc *next;
} s_alloc_t;

struct em_schema {
    json_t *schema;
    s_node_t *root;
    s_index_t idx;
    const s_index_t *store;
    s_pmap_t nodes;     /* json_t* -> s_node_t* */
    s_pmap_t resources; /* resource root json_t* -> s_resource_t* */
    s_alloc_t *allocs;
    int format_assert;
    s_node_t true_node, false_node;
    pcre2_code **codes;
    size_t ncodes, capcodes;
    char *err;
    int has_dynref; /* a $dynamicRef was compiled: dynamic scopes are tracked */
};

/* All compile-time allocations are chained for em_schema_destroy. */
static void *s_alloc(em_schema_t *s, size_t n)
{
    s_alloc_t *a = calloc(1, sizeof(s_alloc_t) + n + 16);
    if (!a) {
        return NULL;
    }
    a->next = s->allocs;
    s->allocs = a;
    return (char *)a + sizeof(s_alloc_t) + 16 - (sizeof(s_alloc_t) % 16);
}

static char *s_sdup(em_schema_t *s, const char *str)
{
    size_t n = strlen(str);
    char *r = s_alloc(s, n + 1);
    if (r) {
        memcpy(r, str, n + 1);
    }
    return r;
}

static void s_set_err(em_schema_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_set_err(em_schema_t *s, const char *fmt, ...)
{
    if (s->err) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&s->err, fmt, ap) < 0) {
        s->err = NULL;
    }
    va_end(ap);
}

static s_info_t *s_info(const em_schema_t *s, const json_t *j)
{
    s_info_t *in = s_pmap_get(&s->idx.infos, j);
    if (!in && s->store) {
        in = s_pmap_get(&s->store->infos, j);
    }
    return in;
}

static json_t *s_lookup_uri(const em_schema_t *s, const char *uri)
{
    json_t *j = json_object_get(s->idx.uris, uri);
    if (!j && s->store) {
        j = json_object_get(s->store->uris, uri);
    }
    return j;
}


/* written for PCRE2_EXTRA_ALT_BSUX, where \\x takes two hex digits and \\u four */
#define S_ECMA_SPACE                                                                               \
    "\\t\\n\\x0b\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"

/* ECMA-262 spells Unicode general categories in long form (\p{Letter}); PCRE2 10.42 knows
 * the short ones.  Returns a new string with \p{Long} / \P{Long} rewritten. */
static char *s_re_translate(const char *src)
{
    static const char *const names[][2] = {
        { "Letter", "L" },           { "Cased_Letter", "LC" },     { "Uppercase_Letter", "Lu" },
        { "Lowercase_Letter", "Ll" }, { "Titlecase_Letter", "Lt" }, { "Modifier_Letter", "Lm" },
        { "Other_Letter", "Lo" },    { "Mark", "M" },              { "Nonspacing_Mark", "Mn" },
        { "Spacing_Mark", "Mc" },    { "Enclosing_Mark", "Me" },   { "Number", "N" },
        { "Decimal_Number", "Nd" },  { "digit", "Nd" },            { "Letter_Number", "Nl" },
        { "Other_Number", "No" },    { "Punctuation", "P" },       { "punct", "P" },
        { "Connector_Punctuation", "Pc" }, { "Dash_Punctuation", "Pd" },
        { "Open_Punctuation", "Ps" }, { "Close_Punctuation", "Pe" },
        { "Initial_Punctuation", "Pi" }, { "Final_Punctuation", "Pf" },
        { "Other_Punctuation", "Po" }, { "Symbol", "S" },          { "Math_Symbol", "Sm" },
        { "Currency_Symbol", "Sc" }, { "Modifier_Symbol", "Sk" },  { "Other_Symbol", "So" },
        { "Separator", "Z" },        { "Space_Separator", "Zs" },  { "Line_Separator", "Zl" },
        { "Paragraph_Separator", "Zp" }, { "Other", "C" },         { "Control", "Cc" },
        { "cntrl", "Cc" },           { "Format", "Cf" },           { "Surrogate", "Cs" },
        { "Private_Use", "Co" },     { "Unassigned", "Cn" },       { NULL, NULL }
    };
    s_buf_t b = { 0 };
    int in_class = 0;
    s_buf_puts(&b, "");
    for (const char *p = src; *p; p++) {
        if (p[0] == '\\' && (p[1] == 'p' || p[1] == 'P') && p[2] == '{') {
            const char *e = strchr(p + 3, '}');
            const char *eq = e ? memchr(p + 3, '=', (size_t)(e - p - 3)) : NULL;
            const char *name = eq ? eq + 1 : p + 3;
            int done = 0;
            for (int i = 0; e && names[i][0]; i++) {
                if (strlen(names[i][0]) == (size_t)(e - name) &&
                    !strncmp(name, names[i][0], (size_t)(e - name))) {
                    s_buf_putn(&b, p, 3);
                    s_buf_puts(&b, names[i][1]);
                    s_buf_puts(&b, "}");
                    p = e;
                    done = 1;
                    break;
                }
            }
            if (done) {
                continue;
            }
        }
        if (p[0] == '\\' && (p[1] == 's' || p[1] == 'S') && (!in_class || p[1] == 's')) {
            /* ECMA-262 \s is Unicode White_Space plus U+FEFF; PCRE2's (without UCP) is ASCII */
            if (in_class) {
                s_buf_puts(&b, S_ECMA_SPACE);
            } else {
                s_buf_puts(&b, p[1] == 's' ? "[" : "[^");
                s_buf_puts(&b, S_ECMA_SPACE);
                s_buf_puts(&b, "]");
            }
            p++;
            continue;
        }
        if (p[0] == '\\' && p[1]) {
            s_buf_putn(&b, p, 2);
            p++;
            continue;
        }
        if (p[0] == '[' && !in_class) {
            in_class = 1;
        } else if (p[0] == ']' && in_class) {
            in_class = 0;
        }
        s_buf_putn(&b, p, 1);
    }
    if (b.failed) {
        free(b.data);
        return NULL;
    }
    return b.data;
}

static pcre2_code *s_pcre_compile(const char *src)
{
    int errcode;
    PCRE2_SIZE erroff;
    char *tr = s_re_translate(src);
    if (!tr) {
        return NULL;
    }
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (cc) {
        pcre2_set_compile_extra_options(cc, PCRE2_EXTRA_ALT_BSUX);
    }
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)tr, PCRE2_ZERO_TERMINATED,
                                     PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &errcode, &erroff, cc);
    pcre2_compile_context_free(cc);
    free(tr);
    return code;
}

/* PCRE2's JIT code reads memory that valgrind's memcheck reports as uninitialised (the
 * library documents it); under valgrind's memcheck, helgrind or DRD (their preload library in
 * LD_PRELOAD) patterns are interpreted instead.  Callgrind, which only counts instructions,
 * runs the JIT code as a real run does. */
static int s_use_jit(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return !(pre && (strstr(pre, "vgpreload_memcheck") || strstr(pre, "vgpreload_helgrind") ||
                     strstr(pre, "vgpreload_drd")));
}

/* ---- simple patterns as DFAs ----
 * A pattern "^...$" made of ASCII literals, classes of ASCII characters and ranges (not
 * negated), \d, and groups of literal alternatives, each atom with ?, *, +, {n}, {n,} or {n,m},
 * is compiled into a DFA over bytes: a match is one table step per byte.  It answers as PCRE2
 * does for such a pattern: an ASCII atom never matches a byte of a multi-byte character, and
 * $ (PCRE2_DOLLAR_ENDONLY) is only the end.  Anything else, or a DFA past S_DFA_MAX_STATES
 * states, stays with PCRE2. */

#define S_DFA_DEAD 0xFFFF
#define S_DFA_MAX_STATES 512
#define S_NFA_MAX 1024
#define S_RX_MAX_ATOMS 64

typedef struct {
    int group;
    uint64_t set[2];   /* !group: the bytes it matches (bit b of set[b >> 6]) */
    char lits[256];    /* group: the alternatives, NUL-separated */
    size_t nlits;      /* bytes used in lits */
    size_t min, max;   /* max SIZE_MAX: unbounded */
} s_rx_atom_t;

static void s_rx_set_add(uint64_t set[2], unsigned lo, unsigned hi)
{
    for (unsigned b = lo; b <= hi; b++) {
        set[b >> 6] |= (uint64_t)1 << (b & 63);
    }
}

/* A literal outside a class at *p: its byte in *c, p advanced.  Returns 0, or -1. */
static int s_rx_literal(const char **p, unsigned char *c)
{
    const unsigned char *q = (const unsigned char *)*p;
    if (*q == '\\') {
        if (q[1] && strchr("\\^$.|?*+()[]{}/-", q[1])) {
            *c = q[1];
            *p += 2;
            return 0;
        }
        return -1;
    }
    if (*q < 0x20 || *q >= 0x7F || strchr("^$.|?*+()[]{}", *q)) {
        return -1;
    }
    *c = *q;
    *p += 1;
    return 0;
}

/* One class member at *q (a plain ASCII character or an escaped one).  Returns the byte or -1. */
static int s_rx_class_char(const char **q)
{
    const unsigned char *r = (const unsigned char *)*q;
    if (*r == '\\') {
        if (r[1] && strchr("\\]-[^./", r[1])) {
            *q += 2;
            return r[1];
        }
        return -1;
    }
    if (*r < 0x20 || *r >= 0x7F || *r == '[' || *r == ']') {
        return -1;
    }
    *q += 1;
    return *r;
}

/* "[...]" at *p.  Returns 0 or -1. */
static int s_rx_class(const char **p, uint64_t set[2])
{
    const char *q = *p + 1;
    if (*q == '^' || *q == ']') {
        return -1;
    }
    while (*q != ']') {
        if (q[0] == '\\' && q[1] == 'd') {
            s_rx_set_add(set, '0', '9');
            q += 2;
            continue;
        }
        int lo = s_rx_class_char(&q);
        if (lo < 0) {
            return -1;
        }
        if (q[0] == '-' && q[1] != ']') {
            q++;
            if (q[0] == '\\' && q[1] == 'd') {
                return -1;
            }
            int hi = s_rx_class_char(&q);
            if (hi < lo) {
                return -1;
            }
            s_rx_set_add(set, (unsigned)lo, (unsigned)hi);
        } else {
            s_rx_set_add(set, (unsigned)lo, (unsigned)lo);
        }
    }
    *p = q + 1;
    return 0;
}

/* ?, *, +, {n}, {n,}, {n,m} at *p (none: exactly once).  Returns 0 or -1. */
static int s_rx_quant(const char **p, size_t *min, size_t *max)
{
    const char *q = *p;
    *min = *max = 1;
    if (*q == '?') {
        *min = 0;
        q++;
    } else if (*q == '*') {
        *min = 0;
        *max = SIZE_MAX;
        q++;
    } else if (*q == '+') {
        *max = SIZE_MAX;
        q++;
    } else if (*q == '{') {
        char *e;
        q++;
        if (*q < '0' || *q > '9') {
            return -1;
        }
        unsigned long n = strtoul(q, &e, 10), m = n;
        q = e;
        int unbounded = 0;
        if (*q == ',') {
            q++;
            if (*q == '}') {
                unbounded = 1;
            } else {
                if (*q < '0' || *q > '9') {
                    return -1;
                }
                m = strtoul(q, &e, 10);
                q = e;
            }
        }
        if (*q != '}' || n > 256 || (!unbounded && (m > 256 || m < n))) {
            return -1;
        }
        q++;
        *min = n;
        *max = unbounded ? SIZE_MAX : m;
    } else {
        return 0;
    }
    if (*q == '?' || *q == '+' || *q == '*' || *q == '{') {
        return -1; /* lazy, possessive or repeated quantifiers stay with PCRE2 */
    }
    *p = q;
    return 0;
}

/* The atoms of src; -1 when src is not a simple pattern. */
static int s_rx_parse(const char *src, s_rx_atom_t *atoms, size_t *n)
{
    const char *p = src;
    *n = 0;
    if (*p++ != '^') {
        return -1;
    }
    while (!(p[0] == '$' && p[1] == '\0')) {
        if (!*p || *n == S_RX_MAX_ATOMS) {
            return -1;
        }
        s_rx_atom_t *a = &atoms[*n];
        memset(a, 0, sizeof(*a));
        if (*p == '[') {
            if (s_rx_class(&p, a->set) < 0) {
                return -1;
            }
        } else if (p[0] == '\\' && p[1] == 'd') {
            s_rx_set_add(a->set, '0', '9');
            p += 2;
        } else if (*p == '(') {
            p++;
            if (p[0] == '?' && p[1] == ':') {
                p += 2;
            } else if (*p == '?') {
                return -1;
            }
            int empty = 0;
            size_t start = 0;
            a->group = 1;
            for (;;) {
                if (*p == '|' || *p == ')') {
                    if (a->nlits == start) {
                        empty = 1;
                    } else {
                        if (a->nlits == sizeof(a->lits)) {
                            return -1;
                        }
                        a->lits[a->nlits++] = '\0';
                        start = a->nlits;
                    }
                    if (*p++ == ')') {
                        break;
                    }
                    continue;
                }
                unsigned char c;
                if (a->nlits + 1 >= sizeof(a->lits) || s_rx_literal(&p, &c) < 0) {
                    return -1;
                }
                a->lits[a->nlits++] = (char)c;
            }
            if (s_rx_quant(&p, &a->min, &a->max) < 0) {
                return -1;
            }
            if (empty) {
                a->min = 0; /* an empty alternative makes every round optional */
            }
            (*n)++;
            continue;
        } else {
            unsigned char c;
            if (s_rx_literal(&p, &c) < 0) {
                return -1;
            }
            s_rx_set_add(a->set, c, c);
        }
        if (s_rx_quant(&p, &a->min, &a->max) < 0) {
            return -1;
        }
        (*n)++;
    }
    return 0;
}

/* Thompson NFA: a state consumes a byte of `set` to `next`, and/or moves freely to `eps`. */
typedef struct {
    uint64_t set[2];
    int next;      /* -1: no byte edge */
    int eps[2];    /* -1: none */
    int more;      /* index into s_nfa_t.alts of extra free moves (groups), -1: none */
} s_nstate_t;

typedef struct {
    s_nstate_t *st;
    int n;
    int *extra;    /* groups: lists of free moves, each ended by -1 */
    int nextra, capextra;
    int failed;
} s_nfa_t;

static int s_nfa_new(s_nfa_t *f)
{
    if (f->failed || f->n == S_NFA_MAX) {
        f->failed = 1;
        return 0;
    }
    s_nstate_t *s = &f->st[f->n];
    memset(s, 0, sizeof(*s));
    s->next = s->eps[0] = s->eps[1] = s->more = -1;
    return f->n++;
}

static void s_nfa_eps(s_nfa_t *f, int from, int to)
{
    if (f->failed) {
        return;
    }
    s_nstate_t *s = &f->st[from];
    if (s->eps[0] < 0) {
        s->eps[0] = to;
    } else if (s->eps[1] < 0) {
        s->eps[1] = to;
    } else {
        f->failed = 1; /* every state made here has at most two free moves */
    }
}

/* One copy of atom a entered from `in`; returns its exit state. */
static int s_nfa_atom(s_nfa_t *f, const s_rx_atom_t *a, int in)
{
    int out = s_nfa_new(f);
    if (f->failed) {
        return 0;
    }
    if (!a->group) {
        f->st[in].set[0] = a->set[0];
        f->st[in].set[1] = a->set[1];
        f->st[in].next = out;
        return out;
    }
    /* a group: a free move from `in` to the first state of each alternative */
    int nalt = 0;
    for (size_t i = 0; i < a->nlits; i += strlen(a->lits + i) + 1) {
        nalt++;
    }
    if (f->nextra + nalt + 1 > f->capextra) {
        int cap = f->capextra ? f->capextra * 2 : 64;
        while (cap < f->nextra + nalt + 1) {
            cap *= 2;
        }
        int *e = realloc(f->extra, (size_t)cap * sizeof(*e));
        if (!e) {
            f->failed = 1;
            return 0;
        }
        f->extra = e;
        f->capextra = cap;
    }
    int base = f->nextra;
    f->nextra += nalt + 1;
    f->extra[base + nalt] = -1;
    f->st[in].more = base;
    int k = 0;
    for (size_t i = 0; i < a->nlits; i += strlen(a->lits + i) + 1, k++) {
        int cur = s_nfa_new(f);
        f->extra[base + k] = cur;
        for (const char *c = a->lits + i; *c && !f->failed; c++) {
            int nx = s_nfa_new(f);
            s_rx_set_add(f->st[cur].set, (unsigned char)*c, (unsigned char)*c);
            f->st[cur].next = nx;
            cur = nx;
        }
        s_nfa_eps(f, cur, out);
    }
    return out;
}

/* Adds NFA state q and what it reaches by free moves to the set `in` (bits). */
static void s_nfa_close(const s_nfa_t *f, uint64_t *in, int q)
{
    int stack[S_NFA_MAX];
    int top = 0;
    if (in[q >> 6] >> (q & 63) & 1) {
        return;
    }
    in[q >> 6] |= (uint64_t)1 << (q & 63);
    stack[top++] = q;
    while (top) {
        const s_nstate_t *s = &f->st[stack[--top]];
        int to[2] = { s->eps[0], s->eps[1] };
        for (int i = 0; i < 2; i++) {
            if (to[i] >= 0 && !(in[to[i] >> 6] >> (to[i] & 63) & 1)) {
                in[to[i] >> 6] |= (uint64_t)1 << (to[i] & 63);
                stack[top++] = to[i];
            }
        }
        for (int j = s->more; j >= 0 && f->extra[j] >= 0; j++) {
            int t = f->extra[j];
            if (!(in[t >> 6] >> (t & 63) & 1)) {
                in[t >> 6] |= (uint64_t)1 << (t & 63);
                stack[top++] = t;
            }
        }
    }
}

#define S_NFA_WORDS (S_NFA_MAX / 64)

/* The DFA of src, or NULL (not a simple pattern, too many states, out of memory). */
static s_dfa_t *s_dfa_compile(em_schema_t *s, const char *src)
{
    s_rx_atom_t *atoms = malloc(S_RX_MAX_ATOMS * sizeof(*atoms));
    s_nfa_t f = { 0 };
    s_dfa_t *dfa = NULL;
    uint64_t *sets = NULL;  /* DFA states as NFA state sets */
    uint16_t *next = NULL;
    uint8_t *accept = NULL;
    size_t natoms;
    f.st = malloc(S_NFA_MAX * sizeof(*f.st));
    if (!atoms || !f.st || s_rx_parse(src, atoms, &natoms) < 0) {
        goto done;
    }
    /* the NFA: atoms in sequence, each repeated min..max times */
    int start = s_nfa_new(&f), cur = start;
    for (size_t i = 0; i < natoms && !f.failed; i++) {
        const s_rx_atom_t *a = &atoms[i];
        for (size_t r = 0; r < a->min && !f.failed; r++) {
            cur = s_nfa_atom(&f, a, cur);
        }
        if (a->max == SIZE_MAX) {
            /* cur -> (atom -> back to loop) | exit */
            int loop = s_nfa_new(&f), out = s_nfa_new(&f);
            s_nfa_eps(&f, cur, loop);
            int in = s_nfa_new(&f);
            s_nfa_eps(&f, loop, in);
            s_nfa_eps(&f, loop, out);
            int back = s_nfa_atom(&f, a, in);
            s_nfa_eps(&f, back, loop);
            cur = out;
        } else if (a->max > a->min) {
            int out = s_nfa_new(&f);
            for (size_t r = a->min; r < a->max && !f.failed; r++) {
                int in = s_nfa_new(&f);
                s_nfa_eps(&f, cur, in);
                s_nfa_eps(&f, cur, out);
                cur = s_nfa_atom(&f, a, in);
            }
            s_nfa_eps(&f, cur, out);
            cur = out;
        }
    }
    if (f.failed) {
        goto done;
    }
    int final = cur;
    /* byte classes: bytes that every NFA state treats alike; bytes >= 0x80 never match */
    s_dfa_t d = { 0 };
    int rep[256];
    d.ncls = 1; /* class 0: the bytes no state consumes */
    rep[0] = -1;
    for (int b = 0; b < 256; b++) {
        int used = 0;
        for (int q = 0; q < f.n && !used && b < 128; q++) {
            used = f.st[q].next >= 0 && (f.st[q].set[b >> 6] >> (b & 63) & 1);
        }
        if (!used) {
            d.cls[b] = 0;
            continue;
        }
        int c;
        for (c = 1; c < d.ncls; c++) {
            int same = 1;
            for (int q = 0; q < f.n && same; q++) {
                same = (f.st[q].set[b >> 6] >> (b & 63) & 1) ==
                       (f.st[q].set[rep[c] >> 6] >> (rep[c] & 63) & 1);
            }
            if (same) {
                break;
            }
        }
        if (c == d.ncls) {
            rep[d.ncls++] = b;
        }
        d.cls[b] = (uint8_t)c;
    }
    /* subset construction */
    sets = calloc((size_t)S_DFA_MAX_STATES * S_NFA_WORDS, sizeof(*sets));
    next = malloc((size_t)S_DFA_MAX_STATES * (size_t)d.ncls * sizeof(*next));
    accept = calloc(S_DFA_MAX_STATES, 1);
    if (!sets || !next || !accept) {
        goto done;
    }
    int nd = 1;
    s_nfa_close(&f, sets, start);
    for (int i = 0; i < nd; i++) {
        const uint64_t *si = sets + (size_t)i * S_NFA_WORDS;
        accept[i] = (uint8_t)(si[final >> 6] >> (final & 63) & 1);
        next[(size_t)i * (size_t)d.ncls] = S_DFA_DEAD;
        for (int c = 1; c < d.ncls; c++) {
            uint64_t to[S_NFA_WORDS] = { 0 };
            int any = 0;
            for (int q = 0; q < f.n; q++) {
                const s_nstate_t *st = &f.st[q];
                if ((si[q >> 6] >> (q & 63) & 1) && st->next >= 0 &&
                    (st->set[rep[c] >> 6] >> (rep[c] & 63) & 1)) {
                    s_nfa_close(&f, to, st->next);
                    any = 1;
                }
            }
            int t = S_DFA_DEAD;
            if (any) {
                for (t = 0; t < nd; t++) {
                    if (!memcmp(sets + (size_t)t * S_NFA_WORDS, to, sizeof(to))) {
                        break;
                    }
                }
                if (t == nd) {
                    if (nd == S_DFA_MAX_STATES) {
                        goto done;
                    }
                    memcpy(sets + (size_t)nd * S_NFA_WORDS, to, sizeof(to));
                    nd++;
                }
            }
            next[(size_t)i * (size_t)d.ncls + (size_t)c] = (uint16_t)t;
        }
    }
    dfa = s_alloc(s, sizeof(*dfa));
    uint16_t *tab = s_alloc(s, (size_t)nd * (size_t)d.ncls * sizeof(*tab));
    uint8_t *acc = s_alloc(s, (size_t)nd);
    if (!dfa || !tab || !acc) {
        dfa = NULL;
        goto done;
    }
    memcpy(tab, next, (size_t)nd * (size_t)d.ncls * sizeof(*tab));
    memcpy(acc, accept, (size_t)nd);
    *dfa = d;
    dfa->next = tab;
    dfa->accept = acc;
done:
    free(atoms);
    free(f.st);
    free(f.extra);
    free(sets);
    free(next);
    free(accept);
    return dfa;
}

static inline int s_dfa_match(const s_dfa_t *d, const unsigned char *str, size_t len)
{
    unsigned st = 0;
    for (size_t i = 0; i < len; i++) {
        st = d->next[st * (unsigned)d->ncls + d->cls[str[i]]];
        if (st == S_DFA_DEAD) {
            return 0;
        }
    }
    return d->accept[st];
}

static s_re_t *s_re_compile(em_schema_t *s, const char *src)
{
    pcre2_code *code = s_pcre_compile(src);
    if (!code) {
        return NULL;
    }
    int jit = s_use_jit() && pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    if (s->ncodes == s->capcodes) {
        size_t cap = s->capcodes ? s->capcodes * 2 : 16;
        pcre2_code **c = realloc(s->codes, cap * sizeof(*c));
        if (!c) {
            pcre2_code_free(code);
            return NULL;
        }
        s->codes = c;
        s->capcodes = cap;
    }
    s->codes[s->ncodes++] = code;
    s_re_t *re = s_alloc(s, sizeof(*re));
    if (!re) {
        return NULL;
    }
    re->code = code;
    re->jit = jit;
    re->src = s_sdup(s, src);
    re->dfa = s_dfa_compile(s, src);
    return re;
}

/* One match-data block per thread, made on first use and freed when the thread ends. */
static pthread_key_t s_md_key;
static pthread_once_t s_md_once = PTHREAD_ONCE_INIT;

static void s_md_free(void *md)
{
    pcre2_match_data_free(md);
}

static void s_md_init(void)
{
    if (pthread_key_create(&s_md_key, s_md_free) != 0) {
        abort();
    }
}

static int s_re_match(const s_re_t *re, const char *str, size_t len)
{
    if (re->dfa) {
        return s_dfa_match(re->dfa, (const unsigned char *)str, len);
    }
    pthread_once(&s_md_once, s_md_init);
    pcre2_match_data *tl_md = pthread_getspecific(s_md_key);
    if (!tl_md) {
        tl_md = pcre2_match_data_create(1, NULL);
        if (!tl_md || pthread_setspecific(s_md_key, tl_md) != 0) {
            pcre2_match_data_free(tl_md);
            return -1;
        }
    }
    /* Jansson strings are valid UTF-8: no need for PCRE2 to check them again */
    int rc = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)str, len, 0, 0, tl_md, NULL)
                     : pcre2_match(re->code, (PCRE2_SPTR)str, len, 0, PCRE2_NO_UTF_CHECK, tl_md, NULL);
    return rc >= 0 ? 1 : (rc == PCRE2_ERROR_NOMATCH ? 0 : -1);
}

static s_node_t *s_compile_node(em_schema_t *s, json_t *j, const s_info_t *parent);
static s_resource_t *s_resource(em_schema_t *s, const s_info_t *in);

static s_node_t *s_compile_ref(em_schema_t *s, const char *base, const char *ref,
                               const s_info_t *from)
{
    char *abs = s_uri_resolve(base, ref);
    const char *frag;
    char *doc = abs ? s_uri_split(abs, &frag) : NULL;
    s_node_t *n = NULL;
    json_t *target = NULL;
    if (!doc) {
        s_set_err(s, "out of memory");
        goto out;
    }
    json_t *r = s_lookup_uri(s, doc);
    if (!r) {
        s_set_err(s, "cannot resolve $ref \"%s\" (%s)", ref, doc);
        goto out;
    }
    if (!frag || !*frag) {
        target = r;
    } else {
        char *dec = s_pct_decode(frag);
        if (!dec) {
            goto out;
        }
        if (dec[0] == '/') {
            target = s_json_pointer(r, dec);
        } else {
            char *key = s_strcat3(doc, "#", dec);
            target = key ? s_lookup_uri(s, key) : NULL;
            free(key);
        }
        free(dec);
    }
    if (!target) {
        s_set_err(s, "cannot resolve $ref \"%s\"", ref);
        goto out;
    }
    const s_info_t *ti = s_info(s, r);
    n = s_compile_node(s, target, ti ? ti : from);
out:
    free(abs);
    free(doc);
    return n;
}

static int s_size_of(const json_t *v, size_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (size_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v) && json_real_value(v) >= 0 && floor(json_real_value(v)) == json_real_value(v)) {
        double d = json_real_value(v);
        *out = d > 1e18 ? SIZE_MAX : (size_t)d;
        return 0;
    }
    return -1;
}

static long double s_num(const json_t *v)
{
    return json_is_integer(v) ? (long double)json_integer_value(v) : (long double)json_real_value(v);
}

static unsigned s_type_bit(const char *t)
{
    if (!strcmp(t, "null")) {
        return T_NULL;
    }
    if (!strcmp(t, "boolean")) {
        return T_BOOL;
    }
    if (!strcmp(t, "object")) {
        return T_OBJECT;
    }
    if (!strcmp(t, "array")) {
        return T_ARRAY;
    }
    if (!strcmp(t, "number")) {
        return T_NUMBER;
    }
    if (!strcmp(t, "string")) {
        return T_STRING;
    }
    if (!strcmp(t, "integer")) {
        return T_INT;
    }
    return 0;
}

static int s_format_id(const char *f)
{
    static const struct {
        const char *n;
        int id;
    } t[] = { { "date", F_DATE },       { "date-time", F_DATETIME },
              { "time", F_TIME },       { "duration", F_DURATION },
              { "email", F_EMAIL },     { "hostname", F_HOSTNAME },
              { "ipv4", F_IPV4 },       { "ipv6", F_IPV6 },
              { "uri", F_URI },         { "uri-reference", F_URIREF },
              { "uuid", F_UUID },       { "regex", F_REGEX },
              { "json-pointer", F_JSONPTR }, { NULL, 0 } };
    for (int i = 0; t[i].n; i++) {
        if (!strcmp(t[i].n, f)) {
            return t[i].id;
        }
    }
    return F_NONE;
}

enum { V_APPLICATOR = 1, V_VALIDATION = 2, V_UNEVAL = 4, V_FORMAT = 8, V_ALL = 7 };

static unsigned s_vocab(em_schema_t *s, const s_info_t *in)
{
    if (!in || !in->schema_uri || in->draft < 2019) {
        return V_ALL;
    }
    json_t *m = s_lookup_uri(s, in->schema_uri);
    json_t *voc = m ? json_object_get(m, "$vocabulary") : NULL;
    if (!json_is_object(voc)) {
        return V_ALL;
    }
    unsigned v = 0;
    const char *k;
    json_t *val;
    json_object_foreach(voc, k, val)
    {
        if (strstr(k, "/vocab/applicator")) {
            v |= V_APPLICATOR;
        } else if (strstr(k, "/vocab/validation")) {
            v |= V_VALIDATION;
        } else if (strstr(k, "/vocab/unevaluated")) {
            v |= V_UNEVAL;
        } else if (strstr(k, "/vocab/format-assertion")) {
            v |= V_FORMAT;
        }
    }
    return v;
}

typedef struct {
    s_kw_t *v;
    size_t n, cap;
} s_kwv_t;

static s_kw_t *s_kw_push(s_kwv_t *kv, int op, const char *name)
{
    if (kv->n == kv->cap) {
        size_t cap = kv->cap ? kv->cap * 2 : 8;
        s_kw_t *v = realloc(kv->v, cap * sizeof(*v));
        if (!v) {
            return NULL;
        }
        kv->v = v;
        kv->cap = cap;
    }
    s_kw_t *k = &kv->v[kv->n++];
    memset(k, 0, sizeof(*k));
    k->op = op;
    k->name = name;
    k->max = SIZE_MAX;
    return k;
}

static int s_build_tab(em_schema_t *s, s_kw_t *k)
{
    uint32_t cap = 4;
    while (cap < 2 * k->n) {
        cap *= 2;
    }
    k->tab = s_alloc(s, cap * sizeof(uint32_t));
    if (!k->tab) {
        return -1;
    }
    k->tmask = cap - 1;
    for (size_t e = 0; e < k->n; e++) {
        k->ents[e].hash = s_khash(k->ents[e].key, k->ents[e].klen);
        uint32_t t = k->ents[e].hash & k->tmask;
        while (k->tab[t]) {
            t = (t + 1) & k->tmask;
        }
        k->tab[t] = (uint32_t)e + 1;
    }
    return 0;
}

static s_node_t **s_compile_list(em_schema_t *s, json_t *arr, const s_info_t *in, size_t *n)
{
    *n = json_array_size(arr);
    s_node_t **l = s_alloc(s, (*n + 1) * sizeof(*l));
    if (!l) {
        return NULL;
    }
    for (size_t i = 0; i < *n; i++) {
        l[i] = s_compile_node(s, json_array_get(arr, i), in);
        if (!l[i]) {
            return NULL;
        }
    }
    return l;
}

/* Lets "properties" check "required" when every required name is a property (see nreq). */
static void s_fuse_required(s_kw_t *kws, size_t n)
{
    s_kw_t *req = NULL, *props = NULL;
    for (size_t i = 0; i < n; i++) {
        if (kws[i].op == K_REQUIRED) {
            req = &kws[i];
        } else if (kws[i].op == K_PROPS) {
            props = &kws[i];
        }
    }
    if (!req || !props || !props->tab) {
        return;
    }
    for (size_t i = 0; i < req->n; i++) {
        if (s_props_find(props, req->ents[i].key, req->ents[i].klen) < 0) {
            return;
        }
    }
    for (size_t i = 0; i < req->n; i++) {
        long e = s_props_find(props, req->ents[i].key, req->ents[i].klen);
        if (!props->ents[e].required) {
            props->ents[e].required = 1;
            props->nreq++;
        }
    }
    req->by_props = 1;
}

#define S_NEED(x)                                                                                  \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

static int s_compile_kws(em_schema_t *s, s_node_t *node, json_t *j, const s_info_t *in)
{
    s_kwv_t kv = { 0 };
    s_kw_t *k;
    json_t *v;
    int d7 = in->draft == 7;
    unsigned voc = s_vocab(s, in);
    int fmt_assert = s->format_assert || (voc & V_FORMAT);

    if ((v = json_object_get(j, "$ref"))) {
        S_NEED(json_is_string(v));
        S_NEED(k = s_kw_push(&kv, K_REF, "$ref"));
        S_NEED(k->a = s_compile_ref(s, in->base, json_string_value(v), in));
        if (d7) {
            goto done; /* draft-07: $ref overrides its siblings */
        }
    }
    if (!d7 && (v = json_object_get(j, "$dynamicRef"))) {
        S_NEED(json_is_string(v));
        S_NEED(k = s_kw_push(&kv, K_DYNREF, "$dynamicRef"));
        s->has_dynref = 1;
        S_NEED(k->a = s_compile_ref(s, in->base, json_string_value(v), in));
        const char *h = strchr(json_string_value(v), '#');
        if (h && h[1] && h[1] != '/') {
            /* dynamic only if the initially resolved schema has a matching $dynamicAnchor */
            char *abs = s_uri_resolve(in->base, json_string_value(v));
            const char *frag;
            char *doc = abs ? s_uri_split(abs, &frag) : NULL;
            json_t *t = NULL;
            if (doc && frag) {
                char *key = s_strcat3(doc, "#", frag);
                t = key ? s_lookup_uri(s, key) : NULL;
                free(key);
            }
            const s_info_t *ti = t ? s_info(s, t) : NULL;
            if (ti && ti->dyn_anchor && frag && !strcmp(ti->dyn_anchor, frag)) {
                k->dyn_name = s_sdup(s, frag);
            }
            free(abs);
            free(doc);
        }
    }
    if (voc & V_VALIDATION) {
        if ((v = json_object_get(j, "type"))) {
            S_NEED(k = s_kw_push(&kv, K_TYPE, "type"));
            k->val = v;
            if (json_is_string(v)) {
                k->mask = s_type_bit(json_string_value(v));
            } else {
                size_t i;
                json_t *t;
                json_array_foreach(v, i, t)
                {
                    if (json_is_string(t)) {
                        k->mask |= s_type_bit(json_string_value(t));
                    }
                }
            }
            if (k->mask & T_NUMBER) {
                k->mask |= T_INT;
            }
        }
        if ((v = json_object_get(j, "enum")) && json_is_array(v)) {
            S_NEED(k = s_kw_push(&kv, K_ENUM, "enum"));
            k->val = v;
            /* the strings also go into a hash table */
            S_NEED(k->ents = s_alloc(s, (json_array_size(v) + 1) * sizeof(s_entry_t)));
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e)
            {
                if (json_is_string(e)) {
                    k->ents[k->n].key = json_string_value(e);
                    k->ents[k->n].klen = json_string_length(e);
                    k->n++;
                }
            }
            S_NEED(s_build_tab(s, k) == 0);
        }
        if ((v = json_object_get(j, "const"))) {
            S_NEED(k = s_kw_push(&kv, K_CONST, "const"));
            k->val = v;
        }
        static const struct {
            const char *n;
            int op;
        } nums[] = { { "multipleOf", K_MULTIPLEOF },     { "maximum", K_MAXIMUM },
                     { "exclusiveMaximum", K_EXMAXIMUM }, { "minimum", K_MINIMUM },
                     { "exclusiveMinimum", K_EXMINIMUM }, { NULL, 0 } };
        for (int i = 0; nums[i].n; i++) {
            if ((v = json_object_get(j, nums[i].n)) && json_is_number(v)) {
                S_NEED(k = s_kw_push(&kv, nums[i].op, nums[i].n));
                k->val = v;
                k->num = s_num(v);
                k->dnum = (double)k->num;
                k->num_exact = (long double)k->dnum == k->num;
            }
        }
        static const struct {
            const char *n;
            int op;
        } sizes[] = { { "maxLength", K_MAXLENGTH },     { "minLength", K_MINLENGTH },
                      { "maxItems", K_MAXITEMS },       { "minItems", K_MINITEMS },
                      { "maxProperties", K_MAXPROPS },  { "minProperties", K_MINPROPS },
                      { NULL, 0 } };
        for (int i = 0; sizes[i].n; i++) {
            size_t n;
            if ((v = json_object_get(j, sizes[i].n)) && s_size_of(v, &n) == 0) {
                S_NEED(k = s_kw_push(&kv, sizes[i].op, sizes[i].n));
                k->n = n;
            }
        }
        if ((v = json_object_get(j, "pattern")) && json_is_string(v)) {
            S_NEED(k = s_kw_push(&kv, K_PATTERN, "pattern"));
            k->re = s_re_compile(s, json_string_value(v));
            if (!k->re) {
                s_set_err(s, "invalid pattern \"%s\"", json_string_value(v));
                goto fail;
            }
        }
        if ((v = json_object_get(j, "uniqueItems")) && json_is_true(v)) {
            S_NEED(k = s_kw_push(&kv, K_UNIQUE, "uniqueItems"));
        }
        if ((v = json_object_get(j, "required")) && json_is_array(v) && json_array_size(v)) {
            S_NEED(k = s_kw_push(&kv, K_REQUIRED, "required"));
            k->val = v;
            S_NEED(k->ents = s_alloc(s, json_array_size(v) * sizeof(s_entry_t)));
            size_t i;
            json_t *r;
            json_array_foreach(v, i, r)
            {
                if (json_is_string(r)) {
                    k->ents[k->n].key = json_string_value(r);
                    k->ents[k->n].klen = json_string_length(r);
                    k->n++;
                }
            }
        }
        if (!d7 && (v = json_object_get(j, "dependentRequired")) && json_is_object(v)) {
            S_NEED(k = s_kw_push(&kv, K_DEPREQ, "dependentRequired"));
            k->val = v;
        }
    }
    if (fmt_assert && (v = json_object_get(j, "format")) && json_is_string(v)) {
        int f = s_format_id(json_string_value(v));
        if (f != F_NONE) {
            S_NEED(k = s_kw_push(&kv, K_FORMAT, "format"));
            k->fmt = f;
        }
    }
    if (voc & V_APPLICATOR) {
        static const struct {
            const char *n;
            int op;
        } lists[] = { { "allOf", K_ALLOF }, { "anyOf", K_ANYOF }, { "oneOf", K_ONEOF }, { NULL, 0 } };
        for (int i = 0; lists[i].n; i++) {
            if ((v = json_object_get(j, lists[i].n)) && json_is_array(v)) {
                S_NEED(k = s_kw_push(&kv, lists[i].op, lists[i].n));
                S_NEED(k->list = s_compile_list(s, v, in, &k->n));
            }
        }
        if ((v = json_object_get(j, "not"))) {
            S_NEED(k = s_kw_push(&kv, K_NOT, "not"));
            S_NEED(k->a = s_compile_node(s, v, in));
        }
        if ((v = json_object_get(j, "if"))) {
            json_t *t = json_object_get(j, "then"), *e = json_object_get(j, "else");
            if (t || e) {
                S_NEED(k = s_kw_push(&kv, K_IF, "if"));
                S_NEED(k->a = s_compile_node(s, v, in));
                if (t) {
                    S_NEED(k->b = s_compile_node(s, t, in));
                }
                if (e) {
                    S_NEED(k->c = s_compile_node(s, e, in));
                }
            } else if (!d7) {
                /* "if" alone still produces annotations */
                S_NEED(k = s_kw_push(&kv, K_IF, "if"));
                S_NEED(k->a = s_compile_node(s, v, in));
            }
        }
        for (int pass = 0; pass < 2; pass++) {
        /* 2020-12 also honours draft-07's "dependencies" (compatibility) */
        const char *dname = pass == 0 ? "dependencies" : (d7 ? NULL : "dependentSchemas");
        v = dname ? json_object_get(j, dname) : NULL;
        if (json_is_object(v) && json_object_size(v)) {
            S_NEED(k = s_kw_push(&kv, K_DEPSCHEMAS, dname));
            k->n = json_object_size(v);
            S_NEED(k->ents = s_alloc(s, k->n * sizeof(s_entry_t)));
            const char *key;
            json_t *sub;
            size_t i = 0;
            json_object_foreach(v, key, sub)
            {
                S_NEED(k->ents[i].key = s_sdup(s, key));
                if (json_is_array(sub)) {
                    k->ents[i].req = sub;
                } else {
                    S_NEED(k->ents[i].node = s_compile_node(s, sub, in));
                }
                i++;
            }
        }
        }
        json_t *pr = json_object_get(j, "properties");
        json_t *pp = json_object_get(j, "patternProperties");
        json_t *ap = json_object_get(j, "additionalProperties");
        if (json_is_object(pr) || json_is_object(pp) || ap) {
            S_NEED(k = s_kw_push(&kv, K_PROPS, "properties"));
            k->val = json_is_object(pr) ? pr : NULL;
            if (k->val) {
                k->n = json_object_size(pr);
                S_NEED(k->ents = s_alloc(s, (k->n + 1) * sizeof(s_entry_t)));
                const char *key;
                json_t *sub;
                size_t i = 0;
                json_object_foreach(pr, key, sub)
                {
                    S_NEED(k->ents[i].key = s_sdup(s, key));
                    k->ents[i].klen = strlen(key);
                    S_NEED(k->ents[i].node = s_compile_node(s, sub, in));
                    i++;
                }
                S_NEED(s_build_tab(s, k) == 0);
            }
            if (json_is_object(pp)) {
                k->n2 = json_object_size(pp);
                S_NEED(k->pents = s_alloc(s, (k->n2 + 1) * sizeof(s_entry_t)));
                const char *key;
                json_t *sub;
                size_t i = 0;
                json_object_foreach(pp, key, sub)
                {
                    S_NEED(k->pents[i].key = s_sdup(s, key));
                    k->pents[i].re = s_re_compile(s, key);
                    if (!k->pents[i].re) {
                        s_set_err(s, "invalid pattern \"%s\"", key);
                        goto fail;
                    }
                    S_NEED(k->pents[i].node = s_compile_node(s, sub, in));
                    i++;
                }
            }
            if (ap) {
                S_NEED(k->a = s_compile_node(s, ap, in));
            }
        }
        if ((v = json_object_get(j, "propertyNames"))) {
            S_NEED(k = s_kw_push(&kv, K_PROPNAMES, "propertyNames"));
            S_NEED(k->a = s_compile_node(s, v, in));
        }
        json_t *it = json_object_get(j, "items");
        if (in->draft < 2020) {
            json_t *ai = json_object_get(j, "additionalItems");
            if (json_is_array(it)) {
                S_NEED(k = s_kw_push(&kv, K_ITEMS, "items"));
                S_NEED(k->list = s_compile_list(s, it, in, &k->n));
                if (ai) {
                    S_NEED(k->a = s_compile_node(s, ai, in));
                    k->aname = "additionalItems";
                }
            } else if (it) {
                S_NEED(k = s_kw_push(&kv, K_ITEMS, "items"));
                S_NEED(k->a = s_compile_node(s, it, in));
                k->aname = "items";
            }
        } else {
            json_t *pi = json_object_get(j, "prefixItems");
            if (json_is_array(pi) || it) {
                S_NEED(k = s_kw_push(&kv, K_ITEMS, "prefixItems"));
                if (json_is_array(pi)) {
                    S_NEED(k->list = s_compile_list(s, pi, in, &k->n));
                }
                if (it) {
                    S_NEED(k->a = s_compile_node(s, it, in));
                    k->aname = "items";
                }
            }
        }
        if ((v = json_object_get(j, "contains"))) {
            S_NEED(k = s_kw_push(&kv, K_CONTAINS, "contains"));
            S_NEED(k->a = s_compile_node(s, v, in));
            k->n = 1;
            if (!d7) {
                size_t n;
                if (s_size_of(json_object_get(j, "minContains"), &n) == 0) {
                    k->n = n;
                }
                if (s_size_of(json_object_get(j, "maxContains"), &n) == 0) {
                    k->max = n;
                }
            }
        }
    }
    if (!d7 && (voc & V_UNEVAL)) {
        if ((v = json_object_get(j, "unevaluatedItems"))) {
            S_NEED(k = s_kw_push(&kv, K_UNEVAL_ITEMS, "unevaluatedItems"));
            S_NEED(k->a = s_compile_node(s, v, in));
            node->uneval = 1;
        }
        if ((v = json_object_get(j, "unevaluatedProperties"))) {
            S_NEED(k = s_kw_push(&kv, K_UNEVAL_PROPS, "unevaluatedProperties"));
            S_NEED(k->a = s_compile_node(s, v, in));
            node->uneval = 1;
        }
    }
done:
    s_fuse_required(kv.v, kv.n);
    if (kv.n) {
        S_NEED(node->kws = s_alloc(s, kv.n * sizeof(s_kw_t)));
        memcpy(node->kws, kv.v, kv.n * sizeof(s_kw_t));
    }
    node->nkw = kv.n;
    free(kv.v);
    return 0;
fail:
    free(kv.v);
    s_set_err(s, "invalid schema keyword");
    return -1;
}

/* The resource (dynamic scope entry) of the schema described by in; made once per resource. */
static s_resource_t *s_resource(em_schema_t *s, const s_info_t *in)
{
    s_resource_t *r = s_pmap_get(&s->resources, in->resource);
    if (r) {
        return r;
    }
    r = s_alloc(s, sizeof(*r));
    if (!r || s_pmap_put(&s->resources, in->resource, r) < 0) {
        s_set_err(s, "out of memory");
        return NULL;
    }
    json_t *d = json_object_get(s->idx.dyn, in->base);
    if (!d && s->store) {
        d = json_object_get(s->store->dyn, in->base);
    }
    if (d && json_object_size(d)) {
        r->dyn = s_alloc(s, json_object_size(d) * sizeof(s_dyn_t));
        if (!r->dyn) {
            return NULL;
        }
        const char *key;
        json_t *sub;
        json_object_foreach(d, key, sub)
        {
            s_dyn_t *e = &r->dyn[r->ndyn];
            e->name = s_sdup(s, key);
            e->node = s_compile_node(s, sub, in);
            if (!e->name || !e->node) {
                return NULL;
            }
            r->ndyn++;
        }
    }
    return r;
}

static s_node_t *s_compile_node(em_schema_t *s, json_t *j, const s_info_t *parent)
{
    if (json_is_true(j)) {
        return &s->true_node;
    }
    if (json_is_false(j)) {
        return &s->false_node;
    }
    if (!json_is_object(j)) {
        s_set_err(s, "a schema must be an object or a boolean");
        return NULL;
    }
    s_node_t *n = s_pmap_get(&s->nodes, j);
    if (n) {
        return n;
    }
    const s_info_t *in = s_info(s, j);
    s_info_t tmp;
    if (!in) {
        tmp = *parent;
        in = &tmp;
    }
    n = s_alloc(s, sizeof(*n));
    if (!n || s_pmap_put(&s->nodes, j, n) < 0) {
        s_set_err(s, "out of memory");
        return NULL;
    }
    n->boolean = -1;
    n->draft = in->draft;
    if (s_compile_kws(s, n, j, in) < 0) {
        return NULL;
    }
    if (in->draft >= 2019) {
        n->res = s_resource(s, in);
        if (!n->res) {
            return NULL;
        }
    }
    return n;
}

static void s_re_free_all(em_schema_t *s)
{
    for (size_t i = 0; i < s->ncodes; i++) {
        pcre2_code_free(s->codes[i]);
    }
    free(s->codes);
    s->codes = NULL;
    s->ncodes = 0;
}

static unsigned long s_seq;

/* Sets n->qkws: kws with "type" (and "minItems", "maxItems") folded into "items", or "type"
 * and a "required" that "properties" checks (by_props) folded into "properties".
 * Returns 0 or -1. */
static int s_fold_build(em_schema_t *s, s_node_t *n)
{
    n->qkws = n->kws;
    n->nqkw = n->nkw;
    if (n->boolean >= 0 || !n->nkw) {
        return 0;
    }
    long type = -1, items = -1, props = -1, minit = -1, maxit = -1, req = -1;
    for (size_t i = 0; i < n->nkw; i++) {
        switch (n->kws[i].op) {
        case K_TYPE:
            type = (long)i;
            break;
        case K_ITEMS:
            items = (long)i;
            break;
        case K_PROPS:
            props = (long)i;
            break;
        case K_MINITEMS:
            minit = (long)i;
            break;
        case K_MAXITEMS:
            maxit = (long)i;
            break;
        case K_REQUIRED:
            req = n->kws[i].by_props ? (long)i : -1;
            break;
        default:
            break;
        }
    }
    long host = items >= 0 ? items : props;
    if (host < 0) {
        return 0;
    }
    s_kw_t *q = s_alloc(s, n->nkw * sizeof(*q));
    if (!q) {
        return -1;
    }
    size_t nq = 0;
    for (size_t i = 0; i < n->nkw; i++) {
        long li = (long)i;
        if (li == type || (items >= 0 && (li == minit || li == maxit)) ||
            (items < 0 && li == req)) {
            continue; /* folded into the host */
        }
        q[nq] = n->kws[i];
        if (li == host) {
            s_kw_t *h = &q[nq];
            h->qmerged = 1;
            h->qtype = type >= 0 ? n->kws[type].mask : 0;
            h->qlo = 0;
            h->qhi = SIZE_MAX;
            if (items >= 0 && minit >= 0) {
                h->qlo = n->kws[minit].n;
            }
            if (items >= 0 && maxit >= 0) {
                h->qhi = n->kws[maxit].n;
            }
        }
        nq++;
    }
    n->qkws = q;
    n->nqkw = nq;
    return 0;
}

/* Sets n->scalar when every keyword of n is one s_scalar_ok checks.  Returns 0 or -1. */
static int s_scalar_build(em_schema_t *s, s_node_t *n)
{
    s_scalar_t sc = { 0 };
    for (size_t i = 0; i < n->nkw; i++) {
        const s_kw_t *k = &n->kws[i];
        switch (k->op) {
        case K_TYPE:
            sc.type = k;
            break;
        case K_ENUM:
            sc.enm = k;
            break;
        case K_PATTERN:
            sc.pattern = k;
            break;
        case K_FORMAT:
            sc.format = k;
            break;
        case K_MAXIMUM:
        case K_EXMAXIMUM:
        case K_MINIMUM:
        case K_EXMINIMUM:
            sc.bounds[sc.nbounds++] = k;
            break;
        case K_MAXLENGTH:
        case K_MINLENGTH:
            sc.lengths[sc.nlengths++] = k;
            break;
        default:
            return 0;
        }
    }
    sc.dbounds = 1;
    sc.lo = -INFINITY;
    sc.hi = INFINITY;
    for (int i = 0; i < sc.nbounds; i++) {
        const s_kw_t *k = sc.bounds[i];
        int lower = k->op == K_MINIMUM || k->op == K_EXMINIMUM;
        int ex = k->op == K_EXMINIMUM || k->op == K_EXMAXIMUM;
        if (!k->num_exact) {
            sc.dbounds = 0;
        } else if (lower && (k->dnum > sc.lo || (k->dnum == sc.lo && ex))) {
            sc.lo = k->dnum;
            sc.lo_ex = ex;
        } else if (!lower && (k->dnum < sc.hi || (k->dnum == sc.hi && ex))) {
            sc.hi = k->dnum;
            sc.hi_ex = ex;
        }
    }
    s_scalar_t *p = s_alloc(s, sizeof(*p));
    if (!p) {
        return -1;
    }
    *p = sc;
    n->scalar = p;
    return 0;
}

em_schema_t *em_schema_compile(const json_t *schema, const em_schema_store_t *store,
                               const em_schema_opts_t *opts, char **err)
{
    em_schema_t *s = calloc(1, sizeof(*s));
    char urn[64];
    if (err) {
        *err = NULL;
    }
    if (!s || s_index_init(&s->idx) < 0) {
        if (s) {
            s_index_free(&s->idx);
        }
        free(s);
        if (err) {
            *err = strdup("out of memory");
        }
        return NULL;
    }
    s->true_node.boolean = 1;
    s->false_node.boolean = 0;
    s->store = store ? &store->idx : NULL;
    s->format_assert = opts && opts->format_assert;
    int draft = opts && opts->draft == EM_DRAFT_07 ? 7 : 2020;
    s->schema = json_incref((json_t *)schema);
    const char *base = opts && opts->base_uri ? opts->base_uri : NULL;
    if (!base) {
        snprintf(urn, sizeof(urn), "urn:emine:schema:%lu", __atomic_add_fetch(&s_seq, 1, __ATOMIC_RELAXED));
        base = urn;
    }
    if (json_is_object(schema)) {
        if (s_index_add(&s->idx, base, s->schema, draft) < 0) {
            s_set_err(s, "out of memory");
        }
    }
    if (!s->err) {
        s_info_t root = { .base = (char *)base, .draft = draft, .resource = s->schema };
        s->root = s_compile_node(s, s->schema, &root);
    }
    if (!s->root) {
        if (err) {
            *err = s->err ? strdup(s->err) : strdup("cannot compile schema");
        }
        em_schema_destroy(&s);
        return NULL;
    }
    if (!s->has_dynref) {
        /* Dynamic scopes matter only to $dynamicRef: without one, none is kept, and a
         * schema that is only a "$ref" forwards to its target when no error is reported. */
        for (size_t i = 0; i < s->nodes.cap; i++) {
            s_node_t *n = s->nodes.vals[i];
            if (!s->nodes.keys[i] || !n) {
                continue;
            }
            n->res = NULL;
            if (n->nkw == 1 && n->kws[0].op == K_REF && !n->uneval) {
                n->fwd = n->kws[0].a;
            }
        }
        for (size_t i = 0; i < s->nodes.cap; i++) {
            s_node_t *n = s->nodes.vals[i];
            if (s->nodes.keys[i] && n && !n->fwd && !n->uneval && n->nkw &&
                s_scalar_build(s, n) < 0) {
                s_set_err(s, "out of memory");
                char *e = strdup(s->err);
                if (err) {
                    *err = e;
                } else {
                    free(e);
                }
                em_schema_destroy(&s);
                return NULL;
            }
            if (!s->nodes.keys[i] || !n || !n->fwd) {
                continue;
            }
            const s_node_t *t = n;
            int hops = 0;
            while (t->fwd && hops < 64) {
                t = t->fwd;
                hops++;
            }
            if (!t->fwd) {
                n->fwd_end = t;
                n->fwd_hops = hops;
            }
        }
        for (size_t i = 0; i < s->nodes.cap; i++) {
            s_node_t *n = s->nodes.vals[i];
            if (!s->nodes.keys[i] || !n) {
                continue;
            }
            if (n->scalar) {
                n->qs = n->scalar;
            } else if (n->fwd_end && n->fwd_end->scalar) {
                n->qs = n->fwd_end->scalar;
                n->qs_hops = n->fwd_hops;
            }
            if (s_fold_build(s, n) < 0) {
                if (err) {
                    *err = strdup("out of memory");
                }
                em_schema_destroy(&s);
                return NULL;
            }
        }
    }
    return s;
}

void em_schema_destroy(em_schema_t **schema)
{
    if (schema && *schema) {
        em_schema_t *s = *schema;
        s_re_free_all(s);
        s_pmap_free(&s->nodes);
        s_pmap_free(&s->resources);
        while (s->allocs) {
            s_alloc_t *a = s->allocs;
            s->allocs = a->next;
            free(a);
        }
        s_index_free(&s->idx);
        json_decref(s->schema);
        free(s->err);
        free(s);
        *schema = NULL;
    }
}

/* ---------------------------------------------------------------- formats */

static int s_digits(const char *s, int n)
{
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}

static int s_num2(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

static int s_fmt_date(const char *s, size_t len)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (len != 10 || !s_digits(s, 4) || s[4] != '-' || !s_digits(s + 5, 2) || s[7] != '-' ||
        !s_digits(s + 8, 2)) {
        return 0;
    }
    int y = s_num2(s) * 100 + s_num2(s + 2), m = s_num2(s + 5), d = s_num2(s + 8);
    if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1]) {
        return 0;
    }
    if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) {
        return 0;
    }
    return 1;
}

static int s_fmt_time(const char *s, size_t len)
{
    if (len < 9 || !s_digits(s, 2) || s[2] != ':' || !s_digits(s + 3, 2) || s[5] != ':' ||
        !s_digits(s + 6, 2)) {
        return 0;
    }
    int h = s_num2(s), m = s_num2(s + 3), sec = s_num2(s + 6);
    size_t i = 8;
    if (h > 23 || m > 59 || sec > 60) {
        return 0;
    }
    if (s[i] == '.') {
        i++;
        size_t st = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        if (i == st) {
            return 0;
        }
    }
    int off = 0;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
        if (len - i != 6 || !s_digits(s + i + 1, 2) || s[i + 3] != ':' || !s_digits(s + i + 4, 2)) {
            return 0;
        }
        int oh = s_num2(s + i + 1), om = s_num2(s + i + 4);
        if (oh > 23 || om > 59) {
            return 0;
        }
        off = (oh * 60 + om) * (s[i] == '+' ? 1 : -1);
        i += 6;
    } else {
        return 0;
    }
    if (i != len) {
        return 0;
    }
    if (sec == 60) {
        int utc = ((h * 60 + m - off) % 1440 + 1440) % 1440;
        if (utc != 23 * 60 + 59) {
            return 0;
        }
    }
    return 1;
}

static int s_fmt_datetime(const char *s, size_t len)
{
    if (len < 11 || (s[10] != 'T' && s[10] != 't')) {
        return 0;
    }
    return s_fmt_date(s, 10) && s_fmt_time(s + 11, len - 11);
}

static int s_fmt_duration(const char *s, size_t len)
{
    size_t i = 0;
    if (len < 2 || s[i++] != 'P') {
        return 0;
    }
    static const char date_units[] = "YMWD";
    static const char time_units[] = "HMS";
    int in_time = 0, any = 0, any_time = 0, week = 0, others = 0;
    int last = -1;
    while (i < len) {
        if (s[i] == 'T') {
            if (in_time) {
                return 0;
            }
            in_time = 1;
            last = -1;
            i++;
            continue;
        }
        size_t st = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        if (i == st || i >= len) {
            return 0;
        }
        const char *units = in_time ? time_units : date_units;
        const char *u = strchr(units, s[i]);
        if (!u || !s[i]) {
            return 0;
        }
        int pos = (int)(u - units);
        if (pos <= last || (last >= 0 && pos != last + 1 && !(in_time == 0 && pos == 3 && last == 1))) {
            return 0;
        }
        last = pos;
        if (!in_time && s[i] == 'W') {
            week = 1;
        } else {
            others = 1;
        }
        any = 1;
        if (in_time) {
            any_time = 1;
        }
        i++;
    }
    if (!any || (in_time && !any_time) || (week && others)) {
        return 0;
    }
    return 1;
}

static int s_fmt_ipv4(const char *s, size_t len)
{
    int parts = 0;
    size_t i = 0;
    while (parts < 4) {
        size_t st = i;
        int v = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9' && i - st < 3) {
            v = v * 10 + (s[i] - '0');
            i++;
        }
        if (i == st || v > 255 || (i - st > 1 && s[st] == '0')) {
            return 0;
        }
        parts++;
        if (parts < 4) {
            if (i >= len || s[i] != '.') {
                return 0;
            }
            i++;
        }
    }
    return i == len;
}

static int s_fmt_ipv6(const char *s, size_t len)
{
    /* RFC 4291 text forms: up to 8 groups of 1-4 hex digits, one "::", optional IPv4 tail */
    int groups = 0, dbl = 0;
    size_t i = 0;
    if (len >= 2 && s[0] == ':' && s[1] == ':') {
        dbl = 1;
        i = 2;
    } else if (len && s[0] == ':') {
        return 0;
    }
    while (i < len) {
        size_t st = i;
        while (i < len && isxdigit((unsigned char)s[i]) && i - st < 5) {
            i++;
        }
        if (i < len && s[i] == '.') {
            /* IPv4 tail */
            if (!s_fmt_ipv4(s + st, len - st)) {
                return 0;
            }
            groups += 2;
            i = len;
            break;
        }
        if (i == st || i - st > 4) {
            return 0;
        }
        groups++;
        if (i == len) {
            break;
        }
        if (s[i] != ':') {
            return 0;
        }
        i++;
        if (i < len && s[i] == ':') {
            if (dbl) {
                return 0;
            }
            dbl = 1;
            i++;
            if (i == len) {
                break;
            }
        } else if (i == len) {
            return 0;
        }
    }
    return dbl ? groups <= 7 : groups == 8;
}

/* RFC 3492 Punycode decoding of an A-label's tail.  Returns the number of code points written
 * to out (at most cap), or -1. */
static long s_punycode_decode(const char *in, size_t len, uint32_t *out, size_t cap)
{
    enum { BASE = 36, TMIN = 1, TMAX = 26, SKEW = 38, DAMP = 700 };
    size_t n_out = 0, b = 0;
    for (size_t j = 0; j < len; j++) {
        if (in[j] == '-') {
            b = j;
        }
    }
    if (b > cap) {
        return -1;
    }
    for (size_t j = 0; j < b; j++) {
        if ((unsigned char)in[j] >= 0x80) {
            return -1;
        }
        out[n_out++] = (unsigned char)in[j];
    }
    uint32_t n = 128, bias = 72;
    uint64_t i = 0;
    for (size_t p = b > 0 ? b + 1 : 0; p < len;) {
        uint64_t oldi = i, w = 1;
        for (uint32_t k = BASE;; k += BASE) {
            if (p >= len) {
                return -1;
            }
            int c = (unsigned char)in[p++];
            uint32_t digit = c >= '0' && c <= '9'   ? (uint32_t)(c - '0' + 26)
                             : c >= 'A' && c <= 'Z' ? (uint32_t)(c - 'A')
                             : c >= 'a' && c <= 'z' ? (uint32_t)(c - 'a')
                                                    : BASE;
            if (digit >= BASE) {
                return -1;
            }
            i += digit * w;
            if (i > 0x7fffffff) {
                return -1;
            }
            uint32_t t = k <= bias ? TMIN : k >= bias + TMAX ? TMAX : k - bias;
            if (digit < t) {
                break;
            }
            w *= BASE - t;
            if (w > 0x7fffffff) {
                return -1;
            }
        }
        /* adapt */
        uint64_t delta = oldi == 0 ? (i - oldi) / DAMP : (i - oldi) / 2;
        delta += delta / (n_out + 1);
        uint32_t k = 0;
        while (delta > ((BASE - TMIN) * TMAX) / 2) {
            delta /= BASE - TMIN;
            k += BASE;
        }
        bias = (uint32_t)(k + (BASE - TMIN + 1) * delta / (delta + SKEW));
        n += (uint32_t)(i / (n_out + 1));
        i %= (n_out + 1);
        if (n > 0x10FFFF || (n >= 0xD800 && n <= 0xDFFF) || n_out >= cap) {
            return -1;
        }
        memmove(out + i + 1, out + i, (n_out - i) * sizeof(uint32_t));
        out[i++] = n;
        n_out++;
    }
    return (long)n_out;
}

/* Unicode classes for the IDNA2008 checks, through PCRE2's Unicode tables. */
enum { U_MARK, U_GREEK, U_HEBREW, U_HKH, U_VIRAMA, U_NCLASSES };
static pcre2_code *s_uclass[U_NCLASSES];
static pthread_once_t s_uclass_once = PTHREAD_ONCE_INIT;

static void s_uclass_init(void)
{
    static const char *const src[U_NCLASSES] = {
        "^\\p{M}$", "^\\p{Greek}$", "^\\p{Hebrew}$", "^[\\p{Hiragana}\\p{Katakana}\\p{Han}]$",
        /* code points with canonical combining class 9 (Virama), the common ones */
        "^[\\x{94D}\\x{9CD}\\x{A4D}\\x{ACD}\\x{B4D}\\x{BCD}\\x{C4D}\\x{CCD}\\x{D3B}\\x{D3C}"
        "\\x{D4D}\\x{DCA}\\x{E3A}\\x{EBA}\\x{F84}\\x{1039}\\x{103A}\\x{1714}\\x{1715}\\x{1734}"
        "\\x{17D2}\\x{1A60}\\x{1B44}\\x{1BAA}\\x{1BAB}\\x{1BF2}\\x{1BF3}\\x{2D7F}\\x{A806}"
        "\\x{A82C}\\x{A8C4}\\x{A953}\\x{A9C0}\\x{AAF6}\\x{ABED}\\x{10A3F}\\x{11046}\\x{11070}"
        "\\x{1107F}\\x{110B9}\\x{11133}\\x{11134}\\x{111C0}\\x{11235}\\x{112EA}\\x{1134D}"
        "\\x{11442}\\x{114C2}\\x{115BF}\\x{1163F}\\x{116B6}\\x{1172B}\\x{11839}\\x{1193D}"
        "\\x{1193E}\\x{119E0}\\x{11A34}\\x{11A47}\\x{11A99}\\x{11C3F}\\x{11D44}\\x{11D45}"
        "\\x{11D97}]$",
    };
    for (int i = 0; i < U_NCLASSES; i++) {
        int errcode;
        PCRE2_SIZE erroff;
        s_uclass[i] = pcre2_compile((PCRE2_SPTR)src[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF,
                                    &errcode, &erroff, NULL);
    }
}

static int s_cp_in(int cls, uint32_t cp)
{
    unsigned char buf[4];
    size_t n;
    pthread_once(&s_uclass_once, s_uclass_init);
    if (!s_uclass[cls]) {
        return 0;
    }
    if (cp < 0x80) {
        buf[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        buf[0] = (unsigned char)(0xC0 | (cp >> 6));
        buf[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        buf[0] = (unsigned char)(0xE0 | (cp >> 12));
        buf[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        buf[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        buf[0] = (unsigned char)(0xF0 | (cp >> 18));
        buf[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        buf[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        buf[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) {
        return 0;
    }
    int rc = pcre2_match(s_uclass[cls], buf, n, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

/* An "xn--" label: its Punycode must decode to a U-label that IDNA2008 (RFC 5891, 5892 and
 * the contextual rules of its appendix A) allows.  The checks made: decoding, no "--" at
 * positions 3-4, no leading combining mark, the DISALLOWED exceptions of RFC 5892 2.6, and the
 * CONTEXTJ/CONTEXTO rules for U+200D, U+00B7, U+0375, U+05F3, U+05F4, U+30FB and the
 * Arabic-Indic digits. */
static int s_alabel_ok(const char *lab, size_t len)
{
    uint32_t cp[64];
    long n = s_punycode_decode(lab + 4, len - 4, cp, 64);
    if (n <= 0) {
        return 0;
    }
    if (n >= 4 && cp[2] == '-' && cp[3] == '-') {
        return 0;
    }
    if (s_cp_in(U_MARK, cp[0])) {
        return 0;
    }
    int arabic = 0, ext_arabic = 0, katakana_dot = 0, hkh = 0;
    for (long i = 0; i < n; i++) {
        uint32_t c = cp[i];
        if (c == 0x0640 || c == 0x07FA || c == 0x302E || c == 0x302F ||
            (c >= 0x3031 && c <= 0x3035) || c == 0x303B) {
            return 0;
        }
        if (c == 0x00B7 && !(i > 0 && cp[i - 1] == 'l' && i + 1 < n && cp[i + 1] == 'l')) {
            return 0;
        }
        if (c == 0x0375 && !(i + 1 < n && s_cp_in(U_GREEK, cp[i + 1]))) {
            return 0;
        }
        if ((c == 0x05F3 || c == 0x05F4) && !(i > 0 && s_cp_in(U_HEBREW, cp[i - 1]))) {
            return 0;
        }
        if (c == 0x200D && !(i > 0 && s_cp_in(U_VIRAMA, cp[i - 1]))) {
            return 0;
        }
        if (c == 0x30FB) {
            katakana_dot = 1;
        } else if (c >= 0x2E80 && s_cp_in(U_HKH, c)) {
            hkh = 1;
        }
        arabic |= c >= 0x0660 && c <= 0x0669;
        ext_arabic |= c >= 0x06F0 && c <= 0x06F9;
    }
    if ((katakana_dot && !hkh) || (arabic && ext_arabic)) {
        return 0;
    }
    return 1;
}

static int s_fmt_hostname(const char *s, size_t len)
{
    if (len == 0 || len > 253) {
        return 0;
    }
    size_t st = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            size_t l = i - st;
            if (l == 0 || l > 63 || s[st] == '-' || s[i - 1] == '-') {
                return 0;
            }
            if (l >= 4 && s[st + 2] == '-' && s[st + 3] == '-') {
                if (!(tolower((unsigned char)s[st]) == 'x' && tolower((unsigned char)s[st + 1]) == 'n')) {
                    return 0;
                }
                if (!s_alabel_ok(s + st, l)) {
                    return 0;
                }
            }
            st = i + 1;
        } else if (!isalnum((unsigned char)s[i]) && s[i] != '-') {
            return 0;
        }
    }
    return 1;
}

static int s_fmt_email(const char *s, size_t len)
{
    const char *at = NULL;
    size_t i = 0;
    if (len && s[0] == '"') {
        i = 1;
        while (i < len && s[i] != '"') {
            if (s[i] == '\\') {
                i++;
            }
            i++;
        }
        if (i >= len || i + 1 >= len || s[i + 1] != '@') {
            return 0;
        }
        at = s + i + 1;
    } else {
        at = memchr(s, '@', len);
        if (!at) {
            return 0;
        }
        size_t ll = (size_t)(at - s);
        if (ll == 0 || s[0] == '.' || s[ll - 1] == '.') {
            return 0;
        }
        for (i = 0; i < ll; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '.' && s[i + 1] == '.') {
                return 0;
            }
            if (!(isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~.", c)) || c == 0) {
                return 0;
            }
        }
    }
    const char *dom = at + 1;
    size_t dl = len - (size_t)(dom - s);
    if (dl >= 2 && dom[0] == '[' && dom[dl - 1] == ']') {
        if (dl > 7 && !strncmp(dom + 1, "IPv6:", 5)) {
            return s_fmt_ipv6(dom + 6, dl - 7);
        }
        return s_fmt_ipv4(dom + 1, dl - 2);
    }
    return s_fmt_hostname(dom, dl);
}

static int s_fmt_uuid(const char *s, size_t len)
{
    if (len != 36) {
        return 0;
    }
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return 0;
            }
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

static int s_fmt_jsonptr(const char *s, size_t len)
{
    if (len && s[0] != '/') {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '~' && (i + 1 >= len || (s[i + 1] != '0' && s[i + 1] != '1'))) {
            return 0;
        }
    }
    return 1;
}

/* RFC 3986 characters: unreserved / sub-delims / ":" "@" "/" "?" plus pct-encoded. */
static const unsigned char s_uri_ok[256] = {
    ['a' ... 'z'] = 1, ['A' ... 'Z'] = 1, ['0' ... '9'] = 1, ['-'] = 1, ['.'] = 1, ['_'] = 1,
    ['~'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1,
    ['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1, [':'] = 1, ['@'] = 1, ['/'] = 1, ['?'] = 1,
};

static int s_uri_chars(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (s_uri_ok[c]) {
            continue;
        }
        if (c != '%' || i + 2 >= len || !isxdigit((unsigned char)s[i + 1]) ||
            !isxdigit((unsigned char)s[i + 2])) {
            return 0;
        }
        i += 2;
    }
    return 1;
}

static int s_fmt_uriref(const char *s, size_t len, int need_scheme)
{
    s_uri_t u;
    int ok = 0;
    if (strlen(s) != len) {
        return 0; /* a NUL inside */
    }
    s_uri_parse(s, &u);
    if (need_scheme && !u.has_scheme) {
        goto out;
    }
    if (!u.has_scheme) {
        /* a relative reference's first segment may not contain ':' */
        const char *slash = memchr(u.path, '/', u.lpath);
        size_t seg = slash ? (size_t)(slash - u.path) : u.lpath;
        if (!u.has_auth && memchr(u.path, ':', seg)) {
            goto out;
        }
    }
    if (u.has_auth) {
        const char *a = u.auth;
        size_t al = u.lauth;
        const char *at = memchr(a, '@', al);
        if (at) {
            if (!s_uri_chars(a, (size_t)(at - a)) || memchr(a, '/', (size_t)(at - a))) {
                goto out;
            }
            al -= (size_t)(at + 1 - a);
            a = at + 1;
        }
        const char *hostend = a + al;
        if (al && a[0] == '[') {
            const char *rb = memchr(a, ']', al);
            if (!rb || !s_fmt_ipv6(a + 1, (size_t)(rb - a - 1))) {
                goto out;
            }
            hostend = rb + 1;
        } else {
            const char *colon = memchr(a, ':', al);
            if (colon) {
                hostend = colon;
            }
            for (const char *p = a; p < hostend; p++) {
                if (*p == '[' || *p == ']' || *p == '@') {
                    goto out;
                }
            }
            if (!s_uri_chars(a, (size_t)(hostend - a))) {
                goto out;
            }
        }
        if (hostend < a + al) {
            if (*hostend != ':') {
                goto out;
            }
            for (const char *p = hostend + 1; p < a + al; p++) {
                if (!isdigit((unsigned char)*p)) {
                    goto out;
                }
            }
        }
    }
    if (!s_uri_chars(u.path, u.lpath) || (u.has_query && !s_uri_chars(u.query, u.lquery)) ||
        (u.has_frag && !s_uri_chars(u.frag, u.lfrag))) {
        goto out;
    }
    ok = 1;
out:
    return ok;
}

static int s_fmt_regex(const char *s, size_t len)
{
    char *dup = strndup(s, len);
    pcre2_code *code = dup && strlen(dup) == len ? s_pcre_compile(dup) : NULL;
    free(dup);
    if (!code) {
        return 0;
    }
    pcre2_code_free(code);
    return 1;
}

static int s_format_ok(int fmt, const json_t *inst)
{
    if (!json_is_string(inst)) {
        return 1;
    }
    const char *s = json_string_value(inst);
    size_t len = json_string_length(inst);
    switch (fmt) {
    case F_DATE:
        return s_fmt_date(s, len);
    case F_DATETIME:
        return s_fmt_datetime(s, len);
    case F_TIME:
        return s_fmt_time(s, len);
    case F_DURATION:
        return s_fmt_duration(s, len);
    case F_EMAIL:
        return s_fmt_email(s, len);
    case F_HOSTNAME:
        return s_fmt_hostname(s, len);
    case F_IPV4:
        return s_fmt_ipv4(s, len);
    case F_IPV6:
        return s_fmt_ipv6(s, len);
    case F_URI:
        return s_fmt_uriref(s, len, 1);
    case F_URIREF:
        return s_fmt_uriref(s, len, 0);
    case F_UUID:
        return s_fmt_uuid(s, len);
    case F_REGEX:
        return s_fmt_regex(s, len);
    case F_JSONPTR:
        return s_fmt_jsonptr(s, len);
    default:
        return 1;
    }
}

static const char *s_format_name(int fmt)
{
    static const char *const n[] = { "", "date", "date-time", "time", "duration", "email",
                                     "hostname", "ipv4", "ipv6", "uri", "uri-reference", "uuid",
                                     "regex", "json-pointer" };
    return fmt >= 0 && fmt <= F_JSONPTR ? n[fmt] : "";
}

/* ---------------------------------------------------------------- validation */

typedef struct s_path {
    const struct s_path *up;
    const char *key; /* NULL: idx */
    size_t idx;
} s_path_t;

typedef struct s_scope {
    const struct s_scope *up;
    const s_resource_t *res;
} s_scope_t;

typedef struct {
    int all_props, all_items;
    const char **keys;
    size_t nkeys, capkeys;
    size_t upto;
    size_t *idx;
    size_t nidx, capidx;
    int failed;
    /* the first names and indexes live here: no allocation for small instances */
    const char *kbuf[16];
    size_t ibuf[16];
} s_ann_t;

typedef struct {
    json_t *errors;
    int depth;
    int internal;
    int quick; /* no $dynamicRef in the schema: s_check may take over (see s_validate) */
} s_ctx_t;

static void s_ann_init(s_ann_t *a)
{
    a->all_props = a->all_items = 0;
    a->keys = NULL;
    a->nkeys = a->capkeys = 0;
    a->upto = 0;
    a->idx = NULL;
    a->nidx = a->capidx = 0;
    a->failed = 0;
}

static void s_ann_key(s_ann_t *a, const char *k)
{
    if (!a || a->all_props) {
        return;
    }
    if (!a->keys) {
        a->keys = a->kbuf;
        a->capkeys = 16;
    }
    if (a->nkeys == a->capkeys) {
        size_t cap = a->capkeys * 2;
        const char **v = malloc(cap * sizeof(*v));
        if (!v) {
            a->failed = 1;
            return;
        }
        memcpy(v, a->keys, a->nkeys * sizeof(*v));
        if (a->keys != a->kbuf) {
            free(a->keys);
        }
        a->keys = v;
        a->capkeys = cap;
    }
    a->keys[a->nkeys++] = k;
}

static void s_ann_item(s_ann_t *a, size_t i)
{
    if (!a || a->all_items) {
        return;
    }
    if (!a->idx) {
        a->idx = a->ibuf;
        a->capidx = 16;
    }
    if (a->nidx == a->capidx) {
        size_t cap = a->capidx * 2;
        size_t *v = malloc(cap * sizeof(*v));
        if (!v) {
            a->failed = 1;
            return;
        }
        memcpy(v, a->idx, a->nidx * sizeof(*v));
        if (a->idx != a->ibuf) {
            free(a->idx);
        }
        a->idx = v;
        a->capidx = cap;
    }
    a->idx[a->nidx++] = i;
}

static void s_ann_merge(s_ann_t *d, const s_ann_t *s)
{
    if (!d) {
        return;
    }
    d->all_props |= s->all_props;
    d->all_items |= s->all_items;
    if (s->upto > d->upto) {
        d->upto = s->upto;
    }
    for (size_t i = 0; i < s->nkeys; i++) {
        s_ann_key(d, s->keys[i]);
    }
    for (size_t i = 0; i < s->nidx; i++) {
        s_ann_item(d, s->idx[i]);
    }
    d->failed |= s->failed;
}

static void s_ann_free(s_ann_t *a)
{
    if (a->keys != a->kbuf) {
        free(a->keys); /* NULL or a heap block */
    }
    if (a->idx != a->ibuf) {
        free(a->idx);
    }
}

static int s_ann_has_key(const s_ann_t *a, const char *k)
{
    if (a->all_props) {
        return 1;
    }
    for (size_t i = 0; i < a->nkeys; i++) {
        if (!strcmp(a->keys[i], k)) {
            return 1;
        }
    }
    return 0;
}

static int s_ann_has_item(const s_ann_t *a, size_t i)
{
    if (a->all_items || i < a->upto) {
        return 1;
    }
    for (size_t k = 0; k < a->nidx; k++) {
        if (a->idx[k] == i) {
            return 1;
        }
    }
    return 0;
}

static void s_path_str(s_buf_t *b, const s_path_t *p)
{
    if (!p) {
        return;
    }
    s_path_str(b, p->up);
    s_buf_puts(b, "/");
    if (p->key) {
        for (const char *c = p->key; *c; c++) {
            if (*c == '~') {
                s_buf_puts(b, "~0");
            } else if (*c == '/') {
                s_buf_puts(b, "~1");
            } else {
                s_buf_putn(b, c, 1);
            }
        }
    } else {
        char num[32];
        snprintf(num, sizeof(num), "%zu", p->idx);
        s_buf_puts(b, num);
    }
}

static void s_err(s_ctx_t *c, const s_path_t *ip, const s_path_t *sp, const char *kw,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void s_err(s_ctx_t *c, const s_path_t *ip, const s_path_t *sp, const char *kw,
                  const char *fmt, ...)
{
    if (!c->errors) {
        return;
    }
    s_buf_t ib = { 0 }, sb = { 0 };
    s_path_t kwseg = { sp, kw, 0 };
    char *msg = NULL;
    va_list ap;
    s_buf_puts(&ib, "");
    s_buf_puts(&sb, "");
    s_path_str(&ib, ip);
    s_path_str(&sb, &kwseg);
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0) {
        msg = NULL;
    }
    va_end(ap);
    if (ib.data && sb.data && msg) {
        size_t before = json_array_size(c->errors);
        em_errors_add(c->errors, ib.data, kw, "%s", msg);
        json_t *e = json_array_get(c->errors, before);
        if (e) {
            json_object_set_new(e, "schemaPath", json_string(sb.data));
        }
    }
    free(msg);
    free(ib.data);
    free(sb.data);
}

/* An error whose message ends with the compact JSON of v (cut at 200 bytes). */
static void s_err_value(s_ctx_t *c, const s_path_t *ip, const s_path_t *sp, const char *kw,
                        const char *what, const json_t *v)
{
    if (!c->errors) {
        return;
    }
    char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (txt && strlen(txt) > 200) {
        strcpy(txt + 196, "...");
    }
    s_err(c, ip, sp, kw, "%s %s", what, txt ? txt : "the allowed values");
    free(txt);
}

static int s_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b)) {
            return json_integer_value(a) == json_integer_value(b);
        }
        return s_num(a) == s_num(b);
    }
    if (json_typeof(a) != json_typeof(b)) {
        return 0;
    }
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               !memcmp(json_string_value(a), json_string_value(b), json_string_length(a));
    case JSON_ARRAY: {
        size_t n = json_array_size(a);
        if (n != json_array_size(b)) {
            return 0;
        }
        for (size_t i = 0; i < n; i++) {
            if (!s_equal(json_array_get(a, i), json_array_get(b, i))) {
                return 0;
            }
        }
        return 1;
    }
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b)) {
            return 0;
        }
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v)
        {
            json_t *w = json_object_get(b, k);
            if (!w || !s_equal(v, w)) {
                return 0;
            }
        }
        return 1;
    }
    default:
        return 1; /* true, false, null */
    }
}

static size_t s_cp_len(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    return c;
}

static unsigned s_inst_type(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        return T_NULL;
    case JSON_TRUE:
    case JSON_FALSE:
        return T_BOOL;
    case JSON_OBJECT:
        return T_OBJECT;
    case JSON_ARRAY:
        return T_ARRAY;
    case JSON_STRING:
        return T_STRING;
    case JSON_INTEGER:
        return T_INT | T_NUMBER;
    case JSON_REAL: {
        double d = json_real_value(v);
        return isfinite(d) && floor(d) == d ? (T_INT | T_NUMBER) : T_NUMBER;
    }
    }
    return 0;
}

static const char *s_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        return "null";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    default:
        return "number";
    }
}

static int s_validate(s_ctx_t *c, const s_node_t *n, const json_t *inst, const s_path_t *ip,
                      const s_path_t *sp, const s_scope_t *sc, s_ann_t *ann);

static int s_multiple_of(const json_t *inst, const s_kw_t *k)
{
    if (json_is_integer(inst) && json_is_integer(k->val)) {
        json_int_t d = json_integer_value(k->val);
        return d == 0 || json_integer_value(inst) % d == 0;
    }
    double x = json_is_integer(inst) ? (double)json_integer_value(inst) : json_real_value(inst);
    double d = (double)k->num;
    if (d == 0) {
        return 1;
    }
    double q = x / d;
    if (!isfinite(q)) {
        return fmod(x, d) == 0; /* the quotient overflows: the exact remainder decides */
    }
    return fabs(q - nearbyint(q)) < 1e-9;
}

#define S_QUIET(c, saved)                                                                          \
    json_t *saved = (c)->errors;                                                                   \
    (c)->errors = NULL
#define S_LOUD(c, saved) (c)->errors = saved

static int s_eval_kw(s_ctx_t *c, const s_kw_t *k, const json_t *inst, const s_path_t *ip,
                     const s_path_t *sp, const s_scope_t *sc, s_ann_t *a)
{
    s_path_t ks = { sp, k->name, 0 };
    switch (k->op) {
    case K_REF:
        return s_validate(c, k->a, inst, ip, &ks, sc, a);
    case K_DYNREF: {
        const s_node_t *t = k->a;
        if (k->dyn_name) {
            for (const s_scope_t *p = sc; p; p = p->up) {
                for (size_t i = 0; i < p->res->ndyn; i++) {
                    if (!strcmp(p->res->dyn[i].name, k->dyn_name)) {
                        t = p->res->dyn[i].node;
                    }
                }
            }
        }
        return s_validate(c, t, inst, ip, &ks, sc, a);
    }
    case K_TYPE:
        if (json_is_real(inst) ? (k->mask & T_NUMBER) || (k->mask & s_inst_type(inst))
                               : (k->mask & s_inst_type(inst))) {
            return 1;
        }
        if (c->errors) {
            char want[128] = "";
            size_t i;
            json_t *t;
            if (json_is_string(k->val)) {
                snprintf(want, sizeof(want), "%s", json_string_value(k->val));
            }
            json_array_foreach(k->val, i, t)
            {
                size_t l = strlen(want);
                snprintf(want + l, sizeof(want) - l, "%s%s", i ? " or " : "",
                         json_is_string(t) ? json_string_value(t) : "?");
            }
            s_err(c, ip, sp, "type", "expected %s, got %s", want, s_type_name(inst));
        }
        return 0;
    case K_ENUM: {
        size_t i;
        json_t *v;
        if (json_is_string(inst)) {
            if (s_props_find(k, json_string_value(inst), json_string_length(inst)) >= 0) {
                return 1;
            }
            s_err_value(c, ip, sp, "enum", "value is not one of", k->val);
            return 0;
        }
        json_array_foreach(k->val, i, v)
        {
            if (s_equal(v, inst)) {
                return 1;
            }
        }
        s_err_value(c, ip, sp, "enum", "value is not one of", k->val);
        return 0;
    }
    case K_CONST:
        if (s_equal(k->val, inst)) {
            return 1;
        }
        s_err_value(c, ip, sp, "const", "value must be", k->val);
        return 0;
    case K_MULTIPLEOF:
        if (!json_is_number(inst) || s_multiple_of(inst, k)) {
            return 1;
        }
        s_err(c, ip, sp, k->name, "not a multiple of %Lg", k->num);
        return 0;
    case K_MAXIMUM:
    case K_EXMAXIMUM:
    case K_MINIMUM:
    case K_EXMINIMUM: {
        if (!json_is_number(inst)) {
            return 1;
        }
        long double x = s_num(inst);
        int ok = k->op == K_MAXIMUM     ? x <= k->num
                 : k->op == K_EXMAXIMUM ? x < k->num
                 : k->op == K_MINIMUM   ? x >= k->num
                                        : x > k->num;
        if (ok) {
            return 1;
        }
        s_err(c, ip, sp, k->name, "%Lg is %s %Lg", x,
              k->op == K_MAXIMUM     ? "greater than"
              : k->op == K_EXMAXIMUM ? "not less than"
              : k->op == K_MINIMUM   ? "less than"
                                     : "not greater than",
              k->num);
        return 0;
    }
    case K_MAXLENGTH:
    case K_MINLENGTH: {
        if (!json_is_string(inst)) {
            return 1;
        }
        /* a string of b bytes has between (b + 3) / 4 and b code points */
        size_t b = json_string_length(inst);
        if (k->op == K_MAXLENGTH ? b <= k->n : (b + 3) / 4 >= k->n) {
            return 1;
        }
        size_t l = s_cp_len(json_string_value(inst), b);
        if (k->op == K_MAXLENGTH ? l <= k->n : l >= k->n) {
            return 1;
        }
        s_err(c, ip, sp, k->name, "length %zu is %s %zu", l,
              k->op == K_MAXLENGTH ? "more than" : "less than", k->n);
        return 0;
    }
    case K_PATTERN: {
        if (!json_is_string(inst)) {
            return 1;
        }
        int r = s_re_match(k->re, json_string_value(inst), json_string_length(inst));
        if (r == 1) {
            return 1;
        }
        s_err(c, ip, sp, "pattern", "does not match the pattern %s", k->re->src);
        return 0;
    }
    case K_FORMAT:
        if (s_format_ok(k->fmt, inst)) {
            return 1;
        }
        s_err(c, ip, sp, "format", "not a valid %s", s_format_name(k->fmt));
        return 0;
    case K_MAXITEMS:
    case K_MINITEMS: {
        if (!json_is_array(inst)) {
            return 1;
        }
        size_t l = json_array_size(inst);
        if (k->op == K_MAXITEMS ? l <= k->n : l >= k->n) {
            return 1;
        }
        s_err(c, ip, sp, k->name, "%zu items, %s %zu", l,
              k->op == K_MAXITEMS ? "more than" : "fewer than", k->n);
        return 0;
    }
    case K_MAXPROPS:
    case K_MINPROPS: {
        if (!json_is_object(inst)) {
            return 1;
        }
        size_t l = json_object_size(inst);
        if (k->op == K_MAXPROPS ? l <= k->n : l >= k->n) {
            return 1;
        }
        s_err(c, ip, sp, k->name, "%zu properties, %s %zu", l,
              k->op == K_MAXPROPS ? "more than" : "fewer than", k->n);
        return 0;
    }
    case K_UNIQUE: {
        if (!json_is_array(inst)) {
            return 1;
        }
        size_t n = json_array_size(inst);
        for (size_t i = 0; i < n; i++) {
            for (size_t j = i + 1; j < n; j++) {
                if (s_equal(json_array_get(inst, i), json_array_get(inst, j))) {
                    s_err(c, ip, sp, "uniqueItems", "items %zu and %zu are equal", i, j);
                    return 0;
                }
            }
        }
        return 1;
    }
    case K_REQUIRED: {
        if (!json_is_object(inst) || (k->by_props && !c->errors)) {
            return 1;
        }
        int ok = 1;
        for (size_t i = 0; i < k->n; i++) {
            if (!json_object_getn(inst, k->ents[i].key, k->ents[i].klen)) {
                ok = 0;
                s_err(c, ip, sp, "required", "required property '%s' is missing", k->ents[i].key);
                if (!c->errors) {
                    break;
                }
            }
        }
        return ok;
    }
    case K_DEPREQ: {
        if (!json_is_object(inst)) {
            return 1;
        }
        int ok = 1;
        const char *key;
        json_t *req;
        json_object_foreach(k->val, key, req)
        {
            if (!json_object_get(inst, key)) {
                continue;
            }
            size_t i;
            json_t *v;
            json_array_foreach(req, i, v)
            {
                if (json_is_string(v) && !json_object_get(inst, json_string_value(v))) {
                    ok = 0;
                    s_err(c, ip, sp, "dependentRequired", "property '%s' requires '%s'", key,
                          json_string_value(v));
                    if (!c->errors) {
                        return 0;
                    }
                }
            }
        }
        return ok;
    }
    case K_ALLOF: {
        int ok = 1;
        for (size_t i = 0; i < k->n; i++) {
            s_path_t is = { &ks, NULL, i };
            if (!s_validate(c, k->list[i], inst, ip, &is, sc, a)) {
                ok = 0;
                if (!c->errors) {
                    break;
                }
            }
        }
        return ok;
    }
    case K_ANYOF:
    case K_ONEOF: {
        size_t count = 0;
        S_QUIET(c, saved);
        for (size_t i = 0; i < k->n; i++) {
            s_path_t is = { &ks, NULL, i };
            s_ann_t t;
            if (a) {
                s_ann_init(&t);
            }
            int r = s_validate(c, k->list[i], inst, ip, &is, sc, a ? &t : NULL);
            if (r) {
                count++;
            }
            if (a) {
                if (r) {
                    s_ann_merge(a, &t);
                }
                s_ann_free(&t);
            }
            if (c->internal) {
                break;
            }
            if (r && !a && k->op == K_ANYOF) {
                break;
            }
            if (count > 1 && k->op == K_ONEOF) {
                break;
            }
        }
        S_LOUD(c, saved);
        if (k->op == K_ANYOF ? count >= 1 : count == 1) {
            return 1;
        }
        if (k->op == K_ANYOF) {
            s_err(c, ip, sp, "anyOf", "value matches none of the %zu alternatives", k->n);
        } else {
            s_err(c, ip, sp, "oneOf", "value matches %s of the %zu alternatives",
                  count ? "more than one" : "none", k->n);
        }
        return 0;
    }
    case K_NOT: {
        S_QUIET(c, saved);
        int r = s_validate(c, k->a, inst, ip, &ks, sc, NULL);
        S_LOUD(c, saved);
        if (!r || c->internal) {
            return 1;
        }
        s_err(c, ip, sp, "not", "value must not match the schema");
        return 0;
    }
    case K_IF: {
        s_ann_t t;
        if (a) {
            s_ann_init(&t);
        }
        S_QUIET(c, saved);
        int r = s_validate(c, k->a, inst, ip, &ks, sc, a ? &t : NULL);
        S_LOUD(c, saved);
        if (a) {
            if (r) {
                s_ann_merge(a, &t);
            }
            s_ann_free(&t);
        }
        if (r && k->b) {
            s_path_t ts = { sp, "then", 0 };
            return s_validate(c, k->b, inst, ip, &ts, sc, a);
        }
        if (!r && k->c) {
            s_path_t es = { sp, "else", 0 };
            return s_validate(c, k->c, inst, ip, &es, sc, a);
        }
        return 1;
    }
    case K_DEPSCHEMAS: {
        if (!json_is_object(inst)) {
            return 1;
        }
        int ok = 1;
        for (size_t i = 0; i < k->n; i++) {
            const s_entry_t *e = &k->ents[i];
            if (!json_object_get(inst, e->key)) {
                continue;
            }
            s_path_t es = { &ks, e->key, 0 };
            if (e->req) {
                size_t j;
                json_t *v;
                json_array_foreach(e->req, j, v)
                {
                    if (json_is_string(v) && !json_object_get(inst, json_string_value(v))) {
                        ok = 0;
                        s_err(c, ip, sp, k->name, "property '%s' requires '%s'", e->key,
                              json_string_value(v));
                    }
                }
            } else if (!s_validate(c, e->node, inst, ip, &es, sc, a)) {
                ok = 0;
            }
            if (!ok && !c->errors) {
                break;
            }
        }
        return ok;
    }
    case K_PROPS: {
        if (!json_is_object(inst)) {
            return 1;
        }
        int ok = 1;
        size_t nreq = c->errors ? 0 : k->nreq, seen = 0; /* required members to meet, met */
        if (!k->n2 && !k->a && json_object_size(inst) > k->n) {
            /* only "properties", and fewer of them than the instance has members */
            for (size_t i = 0; i < k->n; i++) {
                json_t *v = json_object_getn(inst, k->ents[i].key, k->ents[i].klen);
                if (!v) {
                    if (k->ents[i].required && nreq) {
                        return 0;
                    }
                    continue;
                }
                s_ann_key(a, k->ents[i].key);
                s_path_t cip = { ip, k->ents[i].key, 0 };
                s_path_t csp = { &ks, k->ents[i].key, 0 };
                if (!s_validate(c, k->ents[i].node, v, &cip, &csp, sc, NULL)) {
                    ok = 0;
                    if (!c->errors) {
                        return 0;
                    }
                }
            }
            return ok;
        }
        if (nreq && json_object_size(inst) < nreq) {
            return 0;
        }
        /* one pass over the instance's members */
        for (void *it = json_object_iter((json_t *)inst); it;
             it = json_object_iter_next((json_t *)inst, it)) {
            const char *key = json_object_iter_key(it);
            size_t klen = json_object_iter_key_len(it);
            json_t *v = json_object_iter_value(it);
            s_path_t cip = { ip, key, 0 };
            long e = s_props_find(k, key, klen);
            int matched = e >= 0;
            if (matched) {
                seen += (size_t)k->ents[e].required;
                s_ann_key(a, key);
                s_path_t csp = { &ks, key, 0 };
                if (!s_validate(c, k->ents[e].node, v, &cip, &csp, sc, NULL)) {
                    ok = 0;
                    if (!c->errors) {
                        return 0;
                    }
                }
            }
            for (size_t p = 0; p < k->n2; p++) {
                int m = s_re_match(k->pents[p].re, key, klen);
                if (m != 1) {
                    continue;
                }
                matched = 1;
                s_ann_key(a, key);
                s_path_t pps = { sp, "patternProperties", 0 };
                s_path_t csp = { &pps, k->pents[p].key, 0 };
                if (!s_validate(c, k->pents[p].node, v, &cip, &csp, sc, NULL)) {
                    ok = 0;
                    if (!c->errors) {
                        return 0;
                    }
                }
            }
            if (!matched && k->a) {
                s_ann_key(a, key);
                s_path_t aps = { sp, "additionalProperties", 0 };
                if (k->a->boolean == 0) {
                    s_err(c, &cip, sp, "additionalProperties", "property '%s' is not allowed", key);
                    ok = 0;
                } else if (!s_validate(c, k->a, v, &cip, &aps, sc, NULL)) {
                    ok = 0;
                }
                if (!ok && !c->errors) {
                    return 0;
                }
            }
        }
        return seen == nreq ? ok : 0;
    }
    case K_PROPNAMES: {
        if (!json_is_object(inst)) {
            return 1;
        }
        int ok = 1;
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)inst, key, v)
        {
            json_t *name = json_string(key);
            s_path_t cip = { ip, key, 0 };
            if (!name || !s_validate(c, k->a, name, &cip, &ks, sc, NULL)) {
                ok = 0;
            }
            json_decref(name);
            if (!ok && !c->errors) {
                break;
            }
        }
        return ok;
    }
    case K_ITEMS: {
        if (!json_is_array(inst)) {
            return 1;
        }
        int ok = 1;
        size_t n = json_array_size(inst);
        size_t np = k->n < n ? k->n : n;
        for (size_t i = 0; i < np; i++) {
            s_path_t cip = { ip, NULL, i };
            s_path_t csp = { &ks, NULL, i };
            if (!s_validate(c, k->list[i], json_array_get(inst, i), &cip, &csp, sc, NULL)) {
                ok = 0;
                if (!c->errors) {
                    return 0;
                }
            }
        }
        if (a && np > a->upto) {
            a->upto = np;
        }
        if (k->a) {
            s_path_t as = { sp, k->aname, 0 };
            for (size_t i = np; i < n; i++) {
                s_path_t cip = { ip, NULL, i };
                if (k->a->boolean == 0) {
                    s_err(c, &cip, sp, k->aname, "no item allowed at index %zu (at most %zu)", i,
                          k->n);
                    ok = 0;
                } else if (!s_validate(c, k->a, json_array_get(inst, i), &cip, &as, sc, NULL)) {
                    ok = 0;
                }
                if (!ok && !c->errors) {
                    return 0;
                }
            }
            if (a && n > np) {
                a->all_items = 1;
            }
        }
        return ok;
    }
    case K_CONTAINS: {
        if (!json_is_array(inst)) {
            return 1;
        }
        size_t n = json_array_size(inst), count = 0;
        S_QUIET(c, saved);
        for (size_t i = 0; i < n; i++) {
            s_path_t cip = { ip, NULL, i };
            if (s_validate(c, k->a, json_array_get(inst, i), &cip, &ks, sc, NULL)) {
                count++;
                s_ann_item(a, i);
                if (!a && count >= k->n && k->max == SIZE_MAX) {
                    break;
                }
            }
            if (c->internal) {
                break;
            }
        }
        S_LOUD(c, saved);
        if (count < k->n) {
            s_err(c, ip, sp, k->n == 1 ? "contains" : "minContains",
                  "%zu items match \"contains\", fewer than %zu", count, k->n);
            return 0;
        }
        if (count > k->max) {
            s_err(c, ip, sp, "maxContains", "%zu items match \"contains\", more than %zu", count,
                  k->max);
            return 0;
        }
        return 1;
    }
    case K_UNEVAL_ITEMS: {
        if (!json_is_array(inst)) {
            return 1;
        }
        int ok = 1;
        size_t n = json_array_size(inst);
        for (size_t i = 0; i < n; i++) {
            if (s_ann_has_item(a, i)) {
                continue;
            }
            s_path_t cip = { ip, NULL, i };
            if (k->a->boolean == 0) {
                s_err(c, &cip, sp, "unevaluatedItems", "item %zu is not allowed", i);
                ok = 0;
            } else if (!s_validate(c, k->a, json_array_get(inst, i), &cip, &ks, sc, NULL)) {
                ok = 0;
            }
            if (!ok && !c->errors) {
                return 0;
            }
        }
        if (ok) {
            a->all_items = 1;
        }
        return ok;
    }
    case K_UNEVAL_PROPS: {
        if (!json_is_object(inst)) {
            return 1;
        }
        int ok = 1;
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)inst, key, v)
        {
            if (s_ann_has_key(a, key)) {
                continue;
            }
            s_path_t cip = { ip, key, 0 };
            if (k->a->boolean == 0) {
                s_err(c, &cip, sp, "unevaluatedProperties", "property '%s' is not allowed", key);
                ok = 0;
            } else if (!s_validate(c, k->a, v, &cip, &ks, sc, NULL)) {
                ok = 0;
            }
            if (!ok && !c->errors) {
                return 0;
            }
        }
        if (ok) {
            a->all_props = 1;
        }
        return ok;
    }
    }
    return 1;
}

/* s_validate without errors, annotations or dynamic scope: the pass that decides validity
 * (used when no error is wanted, no annotation is collected and the schema has no
 * $dynamicRef).  The hot keywords are evaluated here; the others through s_eval_kw. */
static int s_check(s_ctx_t *c, const s_node_t *n, const json_t *inst);

/* s_inst_type of each Jansson type but reals (whose T_INT depends on the value) */
static const unsigned s_type_bits[] = {
    [JSON_OBJECT] = T_OBJECT,          [JSON_ARRAY] = T_ARRAY, [JSON_STRING] = T_STRING,
    [JSON_INTEGER] = T_INT | T_NUMBER, [JSON_REAL] = 0,        [JSON_TRUE] = T_BOOL,
    [JSON_FALSE] = T_BOOL,             [JSON_NULL] = T_NULL,
};

/* x compared with the bound of k (maximum, exclusiveMaximum, minimum, exclusiveMinimum) */
static inline int s_bound_ok(const s_kw_t *k, const json_t *inst)
{
    if (k->num_exact && (json_is_real(inst) || (json_integer_value(inst) <= (1LL << 53) &&
                                                 json_integer_value(inst) >= -(1LL << 53)))) {
        /* both exact as doubles: the same comparison as in long double */
        double x = json_is_real(inst) ? json_real_value(inst) : (double)json_integer_value(inst);
        return k->op == K_MAXIMUM     ? x <= k->dnum
               : k->op == K_EXMAXIMUM ? x < k->dnum
               : k->op == K_MINIMUM   ? x >= k->dnum
                                      : x > k->dnum;
    }
    long double x = s_num(inst);
    return k->op == K_MAXIMUM     ? x <= k->num
           : k->op == K_EXMAXIMUM ? x < k->num
           : k->op == K_MINIMUM   ? x >= k->num
                                  : x > k->num;
}


/* The keywords of a scalar node (see s_scalar_build), none of which reaches another schema. */
static int s_scalar_ok(s_ctx_t *c, const s_scalar_t *sc, const json_t *inst)
{
    json_type t = json_typeof(inst);
    if (sc->type) {
        unsigned mask = sc->type->mask;
        if (t != JSON_REAL ? !(mask & s_type_bits[t])
                           : !(mask & T_NUMBER) && !(mask & s_inst_type(inst))) {
            return 0;
        }
    }
    if (t == JSON_STRING) {
        const char *str = json_string_value(inst);
        size_t len = json_string_length(inst);
        for (int i = 0; i < sc->nlengths; i++) {
            const s_kw_t *k = sc->lengths[i];
            if (k->op == K_MAXLENGTH ? len > k->n : (len + 3) / 4 < k->n) {
                size_t l = s_cp_len(str, len);
                if (k->op == K_MAXLENGTH ? l > k->n : l < k->n) {
                    return 0;
                }
            }
        }
        if (sc->enm && s_props_find(sc->enm, str, len) < 0) {
            return 0;
        }
        if (sc->pattern && s_re_match(sc->pattern->re, str, len) != 1) {
            return 0;
        }
        return !sc->format || s_format_ok(sc->format->fmt, inst);
    }
    if (t == JSON_INTEGER || t == JSON_REAL) {
        if (!sc->nbounds) {
            return !sc->enm || s_eval_kw(c, sc->enm, inst, NULL, NULL, NULL, NULL);
        }
        if (sc->dbounds) {
            double x;
            if (t == JSON_REAL) {
                x = json_real_value(inst);
            } else {
                json_int_t v = json_integer_value(inst);
                if (v > (1LL << 53) || v < -(1LL << 53)) {
                    goto each;
                }
                x = (double)v;
            }
            /* both sides exact doubles: as the long double comparisons of s_eval_kw */
            if (sc->lo_ex ? !(x > sc->lo) : !(x >= sc->lo)) {
                return 0;
            }
            if (sc->hi_ex ? !(x < sc->hi) : !(x <= sc->hi)) {
                return 0;
            }
            return !sc->enm || s_eval_kw(c, sc->enm, inst, NULL, NULL, NULL, NULL);
        }
    each:
        for (int i = 0; i < sc->nbounds; i++) {
            if (!s_bound_ok(sc->bounds[i], inst)) {
                return 0;
            }
        }
    }
    return !sc->enm || s_eval_kw(c, sc->enm, inst, NULL, NULL, NULL, NULL);
}

/* s_check of a subschema, a scalar one without the call (the same depth limit). */
static inline int s_check_sub(s_ctx_t *c, const s_node_t *n, const json_t *inst)
{
    if (n->qs && c->depth + n->qs_hops < S_MAX_DEPTH) {
        return s_scalar_ok(c, n->qs, inst);
    }
    return s_check(c, n, inst);
}

/* "type" with mask on inst */
static inline int s_type_ok(unsigned mask, const json_t *inst)
{
    json_type t = json_typeof(inst);
    if (t != JSON_REAL) {
        return (mask & s_type_bits[t]) != 0;
    }
    return (mask & T_NUMBER) || (mask & s_inst_type(inst));
}

static inline __attribute__((always_inline)) int s_check_kw(s_ctx_t *c, const s_kw_t *k,
                                                             const json_t *inst)
{
    switch (k->op) {
    case K_REF:
        return s_check_sub(c, k->a, inst);
    case K_TYPE: {
        json_type t = json_typeof(inst);
        if (t != JSON_REAL) {
            return (k->mask & s_type_bits[t]) != 0;
        }
        return (k->mask & T_NUMBER) || (k->mask & s_inst_type(inst));
    }
    case K_CONST:
        return s_equal(k->val, inst);
    case K_MAXLENGTH:
    case K_MINLENGTH: {
        if (!json_is_string(inst)) {
            return 1;
        }
        size_t b = json_string_length(inst);
        if (k->op == K_MAXLENGTH ? b <= k->n : (b + 3) / 4 >= k->n) {
            return 1;
        }
        size_t l = s_cp_len(json_string_value(inst), b);
        return k->op == K_MAXLENGTH ? l <= k->n : l >= k->n;
    }
    case K_ENUM:
        if (json_is_string(inst)) {
            return s_props_find(k, json_string_value(inst), json_string_length(inst)) >= 0;
        }
        break;
    case K_MAXIMUM:
    case K_EXMAXIMUM:
    case K_MINIMUM:
    case K_EXMINIMUM:
        return !json_is_number(inst) || s_bound_ok(k, inst);
    case K_PATTERN:
        return !json_is_string(inst) ||
               s_re_match(k->re, json_string_value(inst), json_string_length(inst)) == 1;
    case K_FORMAT:
        return s_format_ok(k->fmt, inst);
    case K_MAXITEMS:
    case K_MINITEMS: {
        if (!json_is_array(inst)) {
            return 1;
        }
        size_t l = json_array_size(inst);
        return k->op == K_MAXITEMS ? l <= k->n : l >= k->n;
    }
    case K_REQUIRED:
        if (k->by_props || !json_is_object(inst)) {
            return 1;
        }
        for (size_t i = 0; i < k->n; i++) {
            if (!json_object_getn(inst, k->ents[i].key, k->ents[i].klen)) {
                return 0;
            }
        }
        return 1;
    case K_ALLOF:
        for (size_t i = 0; i < k->n; i++) {
            if (!s_check(c, k->list[i], inst)) {
                return 0;
            }
        }
        return 1;
    case K_ANYOF:
    case K_ONEOF: {
        size_t count = 0;
        for (size_t i = 0; i < k->n; i++) {
            count += (size_t)s_check(c, k->list[i], inst);
            if (c->internal || (count && k->op == K_ANYOF) || count > 1) {
                break;
            }
        }
        return k->op == K_ANYOF ? count >= 1 : count == 1;
    }
    case K_NOT:
        return !s_check(c, k->a, inst);
    case K_IF: {
        int r = s_check(c, k->a, inst);
        if (c->internal) {
            return 0;
        }
        if (r && k->b) {
            return s_check(c, k->b, inst);
        }
        if (!r && k->c) {
            return s_check(c, k->c, inst);
        }
        return 1;
    }
    case K_PROPS: {
        if (!json_is_object(inst)) {
            return !k->qtype || s_type_ok(k->qtype, inst);
        }
        if (k->qtype && !(k->qtype & T_OBJECT)) {
            return 0;
        }
        size_t size = json_object_size(inst);
        if (!k->n2 && !k->a && size > k->n) {
            /* only "properties", and fewer of them than the instance has members */
            for (size_t i = 0; i < k->n; i++) {
                json_t *v = json_object_getn(inst, k->ents[i].key, k->ents[i].klen);
                if (!v) {
                    if (k->ents[i].required) {
                        return 0;
                    }
                } else if (!s_check_sub(c, k->ents[i].node, v)) {
                    return 0;
                }
            }
            return 1;
        }
        if (size < k->nreq) {
            return 0;
        }
        size_t seen = 0;
        for (void *it = json_object_iter((json_t *)inst); it;
             it = json_object_iter_next((json_t *)inst, it)) {
            const char *key = json_object_iter_key(it);
            size_t klen = json_object_iter_key_len(it);
            json_t *v = json_object_iter_value(it);
            long e = s_props_find(k, key, klen);
            int matched = e >= 0;
            if (matched) {
                seen += (size_t)k->ents[e].required;
                if (!s_check_sub(c, k->ents[e].node, v)) {
                    return 0;
                }
            }
            for (size_t p = 0; p < k->n2; p++) {
                int m = s_re_match(k->pents[p].re, key, klen);
                if (m == 1) {
                    matched = 1;
                    if (!s_check_sub(c, k->pents[p].node, v)) {
                        return 0;
                    }
                }
            }
            if (!matched && k->a && !s_check(c, k->a, v)) {
                return 0;
            }
        }
        return seen == k->nreq;
    }
    case K_ITEMS: {
        if (!json_is_array(inst)) {
            return !k->qtype || s_type_ok(k->qtype, inst);
        }
        size_t n = json_array_size(inst);
        if (k->qmerged && ((k->qtype && !(k->qtype & T_ARRAY)) || n < k->qlo || n > k->qhi)) {
            return 0;
        }
        size_t np = k->n < n ? k->n : n;
        for (size_t i = 0; i < np; i++) {
            if (!s_check_sub(c, k->list[i], json_array_get(inst, i))) {
                return 0;
            }
        }
        if (k->a) {
            for (size_t i = np; i < n; i++) {
                if (!s_check_sub(c, k->a, json_array_get(inst, i))) {
                    return 0;
                }
            }
        }
        return 1;
    }
    default:
        break;
    }
    return s_eval_kw(c, k, inst, NULL, NULL, NULL, NULL);
}

static int s_check(s_ctx_t *c, const s_node_t *n, const json_t *inst)
{
    int hops = 0;
    if (n->fwd_end) {
        hops = n->fwd_hops;
        n = n->fwd_end;
        if (c->depth + hops >= S_MAX_DEPTH) {
            c->internal = 1;
            return 0;
        }
    }
    while (n->fwd) {
        n = n->fwd;
        if (c->depth + ++hops >= S_MAX_DEPTH) {
            c->internal = 1;
            return 0;
        }
    }
    if (n->boolean >= 0) {
        return n->boolean;
    }
    if (n->scalar) {
        if (c->depth + hops >= S_MAX_DEPTH) {
            c->internal = 1;
            return 0;
        }
        return s_scalar_ok(c, n->scalar, inst);
    }
    if (n->uneval) {
        /* its own annotations are needed */
        c->depth += hops;
        int r = s_validate(c, n, inst, NULL, NULL, NULL, NULL);
        c->depth -= hops;
        return r;
    }
    if (c->depth + hops >= S_MAX_DEPTH) {
        c->internal = 1;
        return 0;
    }
    c->depth += hops + 1;
    int ok = 1;
    for (size_t i = 0; i < n->nqkw; i++) {
        if (!s_check_kw(c, &n->qkws[i], inst) || c->internal) {
            ok = 0;
            break;
        }
    }
    c->depth -= hops + 1;
    return ok && !c->internal;
}

static int s_validate(s_ctx_t *c, const s_node_t *n, const json_t *inst, const s_path_t *ip,
                      const s_path_t *sp, const s_scope_t *sc, s_ann_t *ann)
{
    if (!c->errors && !ann && c->quick && !n->uneval) {
        return s_check(c, n, inst);
    }
    int hops = 0;
    if (!c->errors) {
        /* each "$ref" passed counts as the level it would have taken */
        while (n->fwd) {
            n = n->fwd;
            if (c->depth + ++hops >= S_MAX_DEPTH) {
                c->internal = 1;
                return 0;
            }
        }
    }
    if (n->boolean >= 0) {
        if (n->boolean == 1) {
            return 1;
        }
        s_err(c, ip, sp, "false", "no value is allowed here");
        return 0;
    }
    if (c->depth + hops >= S_MAX_DEPTH) {
        c->internal = 1;
        return 0;
    }
    c->depth += hops + 1;
    s_scope_t here;
    if (n->res && (!sc || sc->res != n->res)) {
        here.up = sc;
        here.res = n->res;
        sc = &here;
    }
    s_ann_t local;
    s_ann_t *a = ann;
    if (n->uneval) {
        s_ann_init(&local);
        a = &local;
    }
    int ok = 1;
    for (size_t i = 0; i < n->nkw; i++) {
        if (!s_eval_kw(c, &n->kws[i], inst, ip, sp, sc, a)) {
            ok = 0;
            if (!c->errors || c->internal) {
                break;
            }
        }
    }
    if (n->uneval) {
        if (ok && ann) {
            s_ann_merge(ann, &local);
        }
        if (local.failed) {
            c->internal = 1;
        }
        s_ann_free(&local);
    }
    c->depth -= hops + 1;
    return ok && !c->internal;
}

int em_schema_validate(const em_schema_t *schema, const json_t *instance, json_t *errors)
{
    if (!schema || !instance) {
        return -1;
    }
    /* A first pass reports nothing and stops at the first failure; only an instance that
     * fails it is evaluated again to build its errors (a valid instance takes the same path
     * through the schema either way). */
    s_ctx_t q = { .errors = NULL, .quick = !schema->has_dynref };
    int r = q.quick && !schema->root->uneval
                ? s_check(&q, schema->root, instance)
                : s_validate(&q, schema->root, instance, NULL, NULL, NULL, NULL);
    if (r == 1 && !q.internal) {
        return 1;
    }
    if (!json_is_array(errors)) {
        return q.internal ? -1 : r;
    }
    s_ctx_t c = { .errors = errors };
    r = s_validate(&c, schema->root, instance, NULL, NULL, NULL, NULL);
    if (c.internal) {
        if (c.errors) {
            em_errors_add(c.errors, "", "schema", "schema recursion deeper than %d levels",
                          S_MAX_DEPTH);
        }
        return -1;
    }
    return r;
}
