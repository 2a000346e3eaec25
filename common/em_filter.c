/* em_filter.c - Subscriptions API filter dialects, domain filters and visibility tiers. */
#include "em_filter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILTER_MAX_DEPTH 32   /* nesting of all/any/not */
#define FILTER_MAX_NODES 1024 /* expressions in one subscription */

typedef enum { F_EXACT, F_PREFIX, F_SUFFIX, F_ALL, F_ANY, F_NOT } f_kind_t;

typedef struct f_node {
    f_kind_t kind;
    char *attr;  /* exact/prefix/suffix */
    char *value; /* exact/prefix/suffix */
    size_t vlen;
    struct f_node **kids; /* all/any (n >= 1), not (n == 1) */
    size_t nkids;
} f_node_t;

struct em_filter {
    f_node_t root; /* F_ALL over the filters array (may be empty) */
    int nodes;
};

/* ---------------------------------------------------------------------------------------- */
/* Compilation */

static void s_node_free(f_node_t *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nkids; i++) {
        s_node_free(n->kids[i]);
        free(n->kids[i]);
    }
    free(n->kids);
    free(n->attr);
    free(n->value);
}

static int s_attr_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > 20 || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789") != n)
        return 0;
    return strcmp(name, "data") != 0 && strcmp(name, "data_base64") != 0;
}

static int s_compile(em_filter_t *f, f_node_t *n, json_t *expr, const char *path, int depth,
                     char *err, size_t errlen);

/* Compiles an array of expressions into n->kids.  Returns 0 or -1. */
static int s_compile_list(em_filter_t *f, f_node_t *n, json_t *arr, const char *path,
                          int depth, char *err, size_t errlen)
{
    size_t count = json_array_size(arr);
    if (count == 0)
        return 0;
    n->kids = calloc(count, sizeof *n->kids);
    if (!n->kids) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s/%zu", path, i);
        n->kids[i] = calloc(1, sizeof *n->kids[i]);
        if (!n->kids[i]) {
            snprintf(err, errlen, "%s: out of memory", sub);
            return -1;
        }
        n->nkids = i + 1;
        if (s_compile(f, n->kids[i], json_array_get(arr, i), sub, depth + 1, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static int s_compile(em_filter_t *f, f_node_t *n, json_t *expr, const char *path, int depth,
                     char *err, size_t errlen)
{
    if (depth > FILTER_MAX_DEPTH) {
        snprintf(err, errlen, "%s: filters nested deeper than %d", path, FILTER_MAX_DEPTH);
        return -1;
    }
    if (++f->nodes > FILTER_MAX_NODES) {
        snprintf(err, errlen, "%s: more than %d filter expressions", path, FILTER_MAX_NODES);
        return -1;
    }
    if (!json_is_object(expr) || json_object_size(expr) != 1) {
        snprintf(err, errlen,
                 "%s: a filter expression is an object with exactly one dialect member", path);
        return -1;
    }
    const char *dialect = json_object_iter_key(json_object_iter(expr));
    json_t *arg = json_object_iter_value(json_object_iter(expr));
    char sub[512];
    snprintf(sub, sizeof sub, "%s/%s", path, dialect);
    if (strcmp(dialect, "exact") == 0 || strcmp(dialect, "prefix") == 0 ||
        strcmp(dialect, "suffix") == 0) {
        n->kind = dialect[0] == 'e' ? F_EXACT : dialect[0] == 'p' ? F_PREFIX : F_SUFFIX;
        if (!json_is_object(arg) || json_object_size(arg) != 1) {
            snprintf(err, errlen, "%s: must be an object with exactly one attribute", sub);
            return -1;
        }
        const char *attr = json_object_iter_key(json_object_iter(arg));
        json_t *val = json_object_iter_value(json_object_iter(arg));
        if (!s_attr_name_ok(attr)) {
            snprintf(err, errlen,
                     "%s: '%.64s' is not a CloudEvents attribute name ([a-z0-9]{1,20}, not data)",
                     sub, attr);
            return -1;
        }
        if (!json_is_string(val)) {
            snprintf(err, errlen, "%s/%s: the value must be a string", sub, attr);
            return -1;
        }
        n->attr = strdup(attr);
        n->vlen = json_string_length(val);
        n->value = malloc(n->vlen + 1);
        if (!n->attr || !n->value) {
            snprintf(err, errlen, "%s: out of memory", sub);
            return -1;
        }
        memcpy(n->value, json_string_value(val), n->vlen + 1);
        return 0;
    }
    if (strcmp(dialect, "all") == 0 || strcmp(dialect, "any") == 0) {
        n->kind = dialect[1] == 'l' ? F_ALL : F_ANY;
        if (!json_is_array(arg) || json_array_size(arg) == 0) {
            snprintf(err, errlen, "%s: must be a non-empty array of filter expressions", sub);
            return -1;
        }
        return s_compile_list(f, n, arg, sub, depth, err, errlen);
    }
    if (strcmp(dialect, "not") == 0) {
        n->kind = F_NOT;
        if (!json_is_object(arg)) {
            snprintf(err, errlen, "%s: must be one filter expression (an object)", sub);
            return -1;
        }
        n->kids = calloc(1, sizeof *n->kids);
        if (!n->kids || !(n->kids[0] = calloc(1, sizeof *n->kids[0]))) {
            snprintf(err, errlen, "%s: out of memory", sub);
            return -1;
        }
        n->nkids = 1;
        return s_compile(f, n->kids[0], arg, sub, depth + 1, err, errlen);
    }
    snprintf(err, errlen,
             "%s: unknown dialect '%.32s' (expected exact, prefix, suffix, all, any or not)",
             path, dialect);
    return -1;
}

em_filter_t *em_filter_new(json_t *filters, char *err, size_t errlen)
{
    em_filter_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->root.kind = F_ALL;
    if (filters && !json_is_array(filters)) {
        snprintf(err, errlen, "filters: must be an array of filter expressions");
        goto fail;
    }
    if (filters && s_compile_list(self, &self->root, filters, "filters", 0, err, errlen) != 0)
        goto fail;
    return self;
fail:
    em_filter_destroy(&self);
    return NULL;
}

void em_filter_destroy(em_filter_t **self_p)
{
    if (self_p && *self_p) {
        s_node_free(&(*self_p)->root);
        free(*self_p);
        *self_p = NULL;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Evaluation */

/* The text of a context attribute: strings as they are, integers and booleans as JSON text.
 * Returns 0 with *out and *len set, or -1 when the event has no such attribute. */
static int s_attr_text(json_t *event, const char *name, const char **out, size_t *len,
                       char buf[32])
{
    json_t *v = json_object_get(event, name);
    if (json_is_string(v)) {
        *out = json_string_value(v);
        *len = json_string_length(v);
        return 0;
    }
    if (json_is_integer(v)) {
        *len = (size_t)snprintf(buf, 32, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        *out = buf;
        return 0;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v) ? "true" : "false";
        *len = strlen(*out);
        return 0;
    }
    return -1;
}

static int s_eval(const f_node_t *n, json_t *event)
{
    const char *text;
    size_t len;
    char buf[32];
    switch (n->kind) {
    case F_EXACT:
    case F_PREFIX:
    case F_SUFFIX:
        if (s_attr_text(event, n->attr, &text, &len, buf) != 0)
            return 0;
        if (n->kind == F_EXACT)
            return len == n->vlen && memcmp(text, n->value, len) == 0;
        if (n->vlen > len)
            return 0;
        if (n->kind == F_PREFIX)
            return memcmp(text, n->value, n->vlen) == 0;
        return memcmp(text + len - n->vlen, n->value, n->vlen) == 0;
    case F_ALL:
        for (size_t i = 0; i < n->nkids; i++)
            if (!s_eval(n->kids[i], event))
                return 0;
        return 1;
    case F_ANY:
        for (size_t i = 0; i < n->nkids; i++)
            if (s_eval(n->kids[i], event))
                return 1;
        return 0;
    case F_NOT:
        return !s_eval(n->kids[0], event);
    }
    return 0;
}

int em_filter_matches(const em_filter_t *self, json_t *event)
{
    if (!json_is_object(event))
        return 0;
    return self ? s_eval(&self->root, event) : 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Domain filters and types */

static int s_in_list(const char *v, const char *const *list, size_t n)
{
    if (!v)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (list[i] && strcmp(list[i], v) == 0)
            return 1;
    return 0;
}

/* 1 when the string value, or any string of the array value, is in the list. */
static int s_json_in_list(json_t *v, const char *const *list, size_t n)
{
    if (json_is_string(v))
        return s_in_list(json_string_value(v), list, n);
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            if (json_is_string(e) && s_in_list(json_string_value(e), list, n))
                return 1;
        }
    }
    return 0;
}

int em_domain_matches(const em_domain_filter_t *d, json_t *event)
{
    if (!json_is_object(event))
        return 0;
    if (!d)
        return 1;
    json_t *data = json_object_get(event, "data");
    if (d->nprovinces &&
        !s_json_in_list(json_object_get(event, "province"), d->provinces, d->nprovinces))
        return 0;
    if (d->nminerals) {
        int hit = s_json_in_list(json_object_get(data, "minerals"), d->minerals, d->nminerals) ||
                  s_json_in_list(json_object_get(data, "mineral"), d->minerals, d->nminerals);
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(data, "items"), i, item)
        {
            if (hit)
                break;
            hit = s_json_in_list(json_object_get(item, "mineral"), d->minerals, d->nminerals);
        }
        if (!hit)
            return 0;
    }
    if (d->nprojects &&
        !s_json_in_list(json_object_get(event, "projectid"), d->projects, d->nprojects) &&
        !s_json_in_list(json_object_get(data, "projectId"), d->projects, d->nprojects) &&
        !s_json_in_list(json_object_get(data, "projectIds"), d->projects, d->nprojects))
        return 0;
    if (d->nlicences &&
        !s_json_in_list(json_object_get(data, "licenceId"), d->licences, d->nlicences) &&
        !s_json_in_list(json_object_get(data, "licenceIds"), d->licences, d->nlicences))
        return 0;
    return 1;
}

int em_types_match(const char *const *types, size_t ntypes, json_t *event)
{
    if (ntypes == 0)
        return 1;
    return s_json_in_list(json_object_get(event, "type"), types, ntypes) &&
           json_is_string(json_object_get(event, "type"));
}

/* ---------------------------------------------------------------------------------------- */
/* Visibility */

em_visibility_t em_visibility_of(json_t *event)
{
    const char *v = json_string_value(json_object_get(event, "visibility"));
    if (!v)
        return EM_VIS_INTERNAL;
    if (strcmp(v, "public") == 0)
        return EM_VIS_PUBLIC;
    if (strcmp(v, "partner") == 0)
        return EM_VIS_PARTNER;
    if (strcmp(v, "restricted") == 0)
        return EM_VIS_RESTRICTED;
    return EM_VIS_INTERNAL;
}

static void s_party_regno(json_t *party, void (*fn)(void *, const char *), void *arg)
{
    const char *r = json_string_value(json_object_get(party, "regNo"));
    if (r && *r)
        fn(arg, r);
}

static void s_party_list(json_t *arr, const char *nested, void (*fn)(void *, const char *),
                         void *arg)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        s_party_regno(nested ? json_object_get(e, nested) : e, fn, arg);
    }
}

void em_event_party_ids(json_t *event, void (*fn)(void *arg, const char *regno), void *arg)
{
    json_t *data = json_object_get(event, "data");
    if (!json_is_object(data))
        return;
    s_party_list(json_object_get(data, "holders"), "party", fn, arg);
    s_party_list(json_object_get(data, "applicant"), NULL, fn, arg);
    s_party_list(json_object_get(data, "parties"), NULL, fn, arg);
    s_party_regno(json_object_get(data, "exporter"), fn, arg);
    s_party_regno(json_object_get(data, "consignee"), fn, arg);
    s_party_list(json_object_get(data, "from"), NULL, fn, arg);
    s_party_list(json_object_get(data, "to"), NULL, fn, arg);
    s_party_list(json_object_get(data, "suppliers"), NULL, fn, arg);
}

typedef struct {
    const em_org_t *org;
    int hit;
} party_probe_t;

static void s_probe_party(void *arg, const char *regno)
{
    party_probe_t *p = arg;
    if (!p->hit && s_in_list(regno, p->org->party_ids, p->org->nparty_ids))
        p->hit = 1;
}

/* 1 when org owns a source prefix of the event's source (on a path boundary). */
static int s_is_issuer(const em_org_t *org, json_t *event)
{
    const char *src = json_string_value(json_object_get(event, "source"));
    if (!src || !*src)
        return 0;
    size_t slen = strlen(src);
    for (size_t i = 0; i < org->nsource_prefixes; i++) {
        const char *p = org->source_prefixes[i];
        size_t plen = p ? strlen(p) : 0;
        if (plen == 0 || plen > slen || memcmp(src, p, plen) != 0)
            continue;
        if (plen == slen || p[plen - 1] == '/' || src[plen] == '/')
            return 1;
    }
    return 0;
}

/* 1 when org is an authority whose scope covers the event's province. */
static int s_authority_in_scope(const em_org_t *org, json_t *event)
{
    if (org->kind != EM_ORG_AUTHORITY || !org->province || !*org->province)
        return 0;
    if (strcmp(org->province, "federal") == 0)
        return 1;
    const char *prov = json_string_value(json_object_get(event, "province"));
    return prov && strcmp(prov, org->province) == 0;
}

int em_visibility_allows(const em_org_t *org, json_t *event)
{
    if (!org || !json_is_object(event))
        return 0;
    em_visibility_t tier = em_visibility_of(event);
    if (tier == EM_VIS_PUBLIC)
        return 1;
    if (org->kind == EM_ORG_OPERATOR)
        return 1;
    if (org->kind == EM_ORG_PUBLIC)
        return 0;
    if (s_is_issuer(org, event))
        return 1;
    switch (tier) {
    case EM_VIS_PARTNER:
        if (s_authority_in_scope(org, event))
            return 1;
        if (org->kind == EM_ORG_ENTERPRISE) {
            party_probe_t p = {org, 0};
            em_event_party_ids(event, s_probe_party, &p);
            return p.hit;
        }
        return 0;
    case EM_VIS_RESTRICTED:
        return s_authority_in_scope(org, event);
    default:
        return 0;
    }
}

int em_subscription_matches(const em_org_t *org, const char *const *types, size_t ntypes,
                            const em_filter_t *filter, const em_domain_filter_t *domain,
                            json_t *event)
{
    return em_visibility_allows(org, event) && em_types_match(types, ntypes, event) &&
           em_filter_matches(filter, event) && em_domain_matches(domain, event);
}
