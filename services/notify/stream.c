/* stream.c - the organisation and the narrowing options of one live-stream client (see
 * stream.h).  Strings are kept in Jansson arrays owned by the view; the em_org_t and
 * em_domain_filter_t hold borrowed pointers into them. */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_util.h"

#define VIEW_LIST_MAX 256 /* entries of one list option */

typedef struct {
    json_t *arr;        /* owned array of strings */
    const char **v;     /* borrowed from arr */
    size_t n;
} strv_t;

struct notify_view {
    /* the organisation */
    bool authed;
    char key[65];       /* hex SHA-256 of the key */
    char *org_id;
    char *province;
    strv_t parties, sources;
    em_org_t org;
    int64_t auth_ms;
    /* the narrowing options */
    strv_t types, provinces, minerals, projects, licences;
    em_filter_t *filter; /* NULL: no filters */
    em_domain_filter_t domain;
    bool narrowed;       /* any option given */
};

static void s_strv_free(strv_t *s)
{
    json_decref(s->arr);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* Takes a new reference to arr (an array of strings).  Returns 0 or -1. */
static int s_strv_set(strv_t *s, json_t *arr)
{
    s_strv_free(s);
    size_t n = json_array_size(arr);
    s->v = calloc(n ? n : 1, sizeof *s->v);
    if (!s->v)
        return -1;
    s->arr = json_incref(arr);
    for (size_t i = 0; i < n; i++)
        s->v[i] = json_string_value(json_array_get(arr, i));
    s->n = n;
    return 0;
}

/* Checks a list option: an array of at most VIEW_LIST_MAX non-empty strings. */
static int s_check_list(json_t *v, const char *prefix, const char *name, char *err,
                        size_t errlen)
{
    if (!json_is_array(v)) {
        snprintf(err, errlen, "%s%s: expected an array of strings", prefix, name);
        return -1;
    }
    if (json_array_size(v) > VIEW_LIST_MAX) {
        snprintf(err, errlen, "%s%s: at most %d entries", prefix, name, VIEW_LIST_MAX);
        return -1;
    }
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e) || json_string_length(e) == 0) {
            snprintf(err, errlen, "%s%s/%zu: expected a non-empty string", prefix, name, i);
            return -1;
        }
    }
    return 0;
}

static void s_org_refresh(notify_view_t *self)
{
    self->org.province = self->province;
    self->org.party_ids = self->parties.v;
    self->org.nparty_ids = self->parties.n;
    self->org.source_prefixes = self->sources.v;
    self->org.nsource_prefixes = self->sources.n;
}

notify_view_t *notify_view_new(json_t *opts, const char *const *skip, const char *prefix,
                               char *err, size_t errlen)
{
    static const char *const lists[] = {"types", "provinces", "minerals", "projects",
                                        "licences"};
    notify_view_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!prefix)
        prefix = "";
    if (opts && !json_is_object(opts)) {
        snprintf(err, errlen, "%s: expected an object", prefix[0] ? prefix : "options");
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(opts, key, val)
    {
        bool known = strcmp(key, "filters") == 0;
        for (size_t i = 0; !known && i < sizeof lists / sizeof *lists; i++)
            known = strcmp(key, lists[i]) == 0;
        for (size_t i = 0; !known && skip && skip[i]; i++)
            known = strcmp(key, skip[i]) == 0;
        if (!known) {
            snprintf(err, errlen, "%s%s: unknown member (expected %stypes, filters, provinces, "
                                  "minerals, projects or licences)",
                     prefix, key, skip && skip[0] ? "after, key, " : "");
            goto fail;
        }
    }
    strv_t *dst[] = {&self->types, &self->provinces, &self->minerals, &self->projects,
                     &self->licences};
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
        json_t *v = json_object_get(opts, lists[i]);
        if (!v)
            continue;
        if (s_check_list(v, prefix, lists[i], err, errlen) != 0)
            goto fail;
        if (s_strv_set(dst[i], v) != 0) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        if (json_array_size(v) > 0)
            self->narrowed = true;
    }
    json_t *filters = json_object_get(opts, "filters");
    if (filters) {
        char ferr[512];
        self->filter = em_filter_new(filters, ferr, sizeof ferr);
        if (!self->filter) {
            /* em_filter_new names the path from "filters" on. */
            snprintf(err, errlen, "%s%s", prefix, ferr);
            goto fail;
        }
        if (json_array_size(filters) > 0)
            self->narrowed = true;
    }
    self->domain = (em_domain_filter_t){self->provinces.v, self->provinces.n,
                                        self->minerals.v,  self->minerals.n,
                                        self->projects.v,  self->projects.n,
                                        self->licences.v,  self->licences.n};
    return self;
fail:
    notify_view_destroy(&self);
    return NULL;
}

void notify_view_destroy(notify_view_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    notify_view_t *self = *self_p;
    free(self->org_id);
    free(self->province);
    s_strv_free(&self->parties);
    s_strv_free(&self->sources);
    s_strv_free(&self->types);
    s_strv_free(&self->provinces);
    s_strv_free(&self->minerals);
    s_strv_free(&self->projects);
    s_strv_free(&self->licences);
    em_filter_destroy(&self->filter);
    free(self);
    *self_p = NULL;
}

static int s_kind_of(const char *kind, em_org_kind_t *out)
{
    if (strcmp(kind, "public") == 0)
        *out = EM_ORG_PUBLIC;
    else if (strcmp(kind, "enterprise") == 0)
        *out = EM_ORG_ENTERPRISE;
    else if (strcmp(kind, "authority") == 0)
        *out = EM_ORG_AUTHORITY;
    else if (strcmp(kind, "operator") == 0)
        *out = EM_ORG_OPERATOR;
    else
        return -1;
    return 0;
}

int notify_view_auth(notify_view_t *self, em_store_t *store, const char *key_hash)
{
    const char *p[1] = {key_hash};
    PGresult *res = em_store_query(store,
                                   "SELECT o.id, o.kind, o.province,"
                                   " to_jsonb(o.party_ids)::text, to_jsonb(o.source_prefixes)::text"
                                   " FROM api_keys k JOIN organisations o ON o.id = k.org_id"
                                   " WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
                                   1, p);
    if (!res)
        return -1;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return 0;
    }
    em_org_kind_t kind;
    json_t *parties = json_loads(PQgetvalue(res, 0, 3), 0, NULL);
    json_t *sources = json_loads(PQgetvalue(res, 0, 4), 0, NULL);
    char *org_id = strdup(PQgetvalue(res, 0, 0));
    char *province = PQgetisnull(res, 0, 2) ? NULL : strdup(PQgetvalue(res, 0, 2));
    int rc = 0;
    if (s_kind_of(PQgetvalue(res, 0, 1), &kind) == 0 && json_is_array(parties) &&
        json_is_array(sources) && org_id && (province || PQgetisnull(res, 0, 2)) &&
        s_strv_set(&self->parties, parties) == 0 && s_strv_set(&self->sources, sources) == 0) {
        free(self->org_id);
        free(self->province);
        self->org_id = org_id;
        self->province = province;
        org_id = province = NULL;
        self->org.kind = kind;
        s_org_refresh(self);
        snprintf(self->key, sizeof self->key, "%s", key_hash);
        self->authed = true;
        self->auth_ms = em_mono_ms();
        rc = 1;
    }
    /* An unknown kind (a newer schema) or an unreadable row: no organisation, fail closed. */
    free(org_id);
    free(province);
    json_decref(parties);
    json_decref(sources);
    PQclear(res);
    return rc;
}

int notify_view_copy_org(notify_view_t *self, const notify_view_t *from)
{
    if (!from->authed)
        return 0;
    char *org_id = strdup(from->org_id);
    char *province = from->province ? strdup(from->province) : NULL;
    if (!org_id || (from->province && !province) ||
        s_strv_set(&self->parties, from->parties.arr) != 0 ||
        s_strv_set(&self->sources, from->sources.arr) != 0) {
        free(org_id);
        free(province);
        return -1;
    }
    free(self->org_id);
    free(self->province);
    self->org_id = org_id;
    self->province = province;
    self->org.kind = from->org.kind;
    s_org_refresh(self);
    memcpy(self->key, from->key, sizeof self->key);
    self->auth_ms = from->auth_ms;
    self->authed = true;
    return 0;
}

const char *notify_view_key(const notify_view_t *self)
{
    return self->key;
}

const char *notify_view_org_id(const notify_view_t *self)
{
    return self->org_id ? self->org_id : "";
}

int64_t notify_view_auth_ms(const notify_view_t *self)
{
    return self->auth_ms;
}

int notify_view_all(const notify_view_t *self)
{
    return self->authed && self->org.kind == EM_ORG_OPERATOR && !self->narrowed;
}

int notify_view_matches(const notify_view_t *self, json_t *event)
{
    if (!self->authed)
        return 0;
    return em_subscription_matches(&self->org, self->types.v, self->types.n, self->filter,
                                   &self->domain, event);
}

int notify_view_matches_frame(const notify_view_t *self, const char *text, size_t len)
{
    if (!self->authed)
        return 0;
    if (notify_view_all(self))
        return 1;
    json_t *o = json_loadb(text, len, 0, NULL);
    int m = notify_view_matches(self, json_object_get(o, "event"));
    json_decref(o);
    return m;
}
