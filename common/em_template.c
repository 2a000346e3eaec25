/* em_template.c - human summaries of events from templates (see em_template.h).
 *
 * A language file is read whole, split into `[section]` and `key = value` lines (an indented
 * line continues the previous value), then compiled: each template becomes a list of parts,
 * literal text or a placeholder (a path and a chain of filters).  Rendering walks the parts
 * with a bounded output buffer; values flow through the filters as Jansson values (owned
 * references), and each final atom is sanitised, isolated (Urdu) and appended. */
#include "em_template.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE (1024 * 1024) /* bytes of one language file */
#define MAX_PATH_SEGS 16
#define MAX_FILTERS 8
#define TYPE_PREFIX "pk.gov.emining."
#define FSI "\xe2\x81\xa8" /* U+2068 FIRST STRONG ISOLATE */
#define PDI "\xe2\x81\xa9" /* U+2069 POP DIRECTIONAL ISOLATE */
#define ELLIPSIS "\xe2\x80\xa6"
#define CUT_RESERVE (3 + 4 * 3) /* the ellipsis and up to four PDIs after a cut */

/* ---------------------------------------------------------------------------------------- */
/* Compiled form */

typedef struct {
    char **seg;  /* decoded segments; a segment of digits also indexes arrays */
    int n;
    char *text;  /* as written, for markers and errors */
} path_t;

typedef enum {
    F_DATE, F_TIME, F_NUMBER, F_QTY, F_MONEY, F_TEXT, F_GLOSSARY, F_PICK, F_EACH, F_JOIN,
    F_COUNT, F_ELSE, F_DEFAULT
} ftype_t;

static const struct {
    const char *name;
    ftype_t type;
    int arg; /* 0 none, 1 required */
} s_filters[] = {
    {"date", F_DATE, 0},         {"time", F_TIME, 0},       {"number", F_NUMBER, 0},
    {"qty", F_QTY, 0},           {"money", F_MONEY, 0},     {"text", F_TEXT, 0},
    {"glossary", F_GLOSSARY, 1}, {"pick", F_PICK, 1},       {"each", F_EACH, 1},
    {"join", F_JOIN, 0},         {"count", F_COUNT, 0},     {"else", F_ELSE, 1},
    {"default", F_DEFAULT, 1},
};

typedef struct {
    ftype_t type;
    char *arg;   /* table, part or literal text */
    path_t path; /* pick, else */
} filter_t;

typedef struct {
    char *lit;   /* literal text when not NULL */
    path_t path;
    filter_t f[MAX_FILTERS];
    int nf;
} part_t;

typedef struct {
    char *key;
    part_t *parts;
    int nparts;
    int line;
} tmpl_t;

typedef struct {
    char *key;
    char *val;
    int line;
} kv_t;

typedef struct {
    char *name;
    kv_t *kv;
    int n, cap;
} table_t;

typedef struct {
    char *tag;      /* "en", "zh-Hans", "ur" */
    char *file;     /* for messages */
    char *date_fmt; /* [format] date */
    char *time_fmt; /* [format] time */
    char *list_sep; /* [format] list */
    char *group;    /* [format] group: thousands separator */
    bool isolate;   /* [format] isolate */
    table_t *tables; /* glossary tables, [zone] and [unit] included */
    int ntables, captables;
    tmpl_t *summary; /* [summary] */
    int nsummary, capsummary;
    tmpl_t *parts; /* [part]: templates for one element (each:NAME) */
    int nparts, capparts;
} lang_t;

struct em_template {
    lang_t *langs; /* langs[0] is en */
    int n;
};

static const char *s_roots[] = {"specversion", "id", "source", "type", "subject", "time",
                                "datacontenttype", "dataschema", "province", "visibility",
                                "projectid", "data", NULL};

/* ---------------------------------------------------------------------------------------- */
/* Small helpers */

static void s_err(char *err, size_t errlen, const char *file, int line, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(err, errlen, "%s:%d: %s", file, line, msg);
    else
        snprintf(err, errlen, "%s: %s", file, msg);
}

static char *s_strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Decodes one UTF-8 sequence at s (n bytes left); returns its length (0: invalid) and the
 * code point in *cp. */
static size_t s_utf8(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len = (s[0] & 0xe0) == 0xc0   ? 2
                 : (s[0] & 0xf0) == 0xe0 ? 3
                 : (s[0] & 0xf8) == 0xf0 ? 4
                                         : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t c = s[0] & (0xff >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3f);
    }
    if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
        c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

/* Bidi embedding, override, isolate and mark characters. */
static bool s_is_bidi_control(uint32_t c)
{
    return c == 0x200e || c == 0x200f || c == 0x061c || (c >= 0x202a && c <= 0x202e) ||
           (c >= 0x2066 && c <= 0x2069);
}

/* A character that makes a token left-to-right: ASCII letters and digits, and letters of
 * scripts other than Arabic/Hebrew (Latin-1 and beyond, CJK). */
static bool s_is_ltr(uint32_t c)
{
    if (c < 0x80)
        return isalnum((int)c) != 0;
    if (c < 0xc0 || c == 0xd7 || c == 0xf7)
        return false;
    if (c >= 0x0590 && c <= 0x08ff) /* Hebrew, Arabic, Syriac, Thaana, NKo, ... */
        return false;
    if (c >= 0x2000 && c <= 0x2bff) /* punctuation, symbols, arrows */
        return false;
    if (c >= 0x3000 && c <= 0x303f) /* CJK punctuation */
        return false;
    if ((c >= 0xfb1d && c <= 0xfdff) || (c >= 0xfe70 && c <= 0xfeff)) /* presentation forms */
        return false;
    if (c >= 0xff00 && c <= 0xff0f) /* fullwidth punctuation */
        return false;
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Output buffer: at most cap - 1 bytes; once full, nothing more is appended. */

typedef struct {
    char *buf;
    size_t len, cap; /* cap includes the NUL */
    bool full;
} sb_t;

/* Appends n bytes, cut at a character boundary when they do not fit (then full). */
static void s_sb_put(sb_t *b, const char *s, size_t n, size_t reserve)
{
    if (b->full)
        return;
    size_t room = b->cap - 1 - b->len;
    room = room > reserve ? room - reserve : 0;
    if (n > room) {
        size_t k = room;
        while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80)
            k--;
        n = k;
        b->full = true;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

/* ---------------------------------------------------------------------------------------- */
/* Paths */

static void s_path_free(path_t *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->seg[i]);
    free(p->seg);
    free(p->text);
    memset(p, 0, sizeof *p);
}

/* Parses "a.b.0.c" or "/a/b/0/c" (JSON Pointer, ~0 ~1).  Returns 0 or -1 (why filled). */
static int s_path_parse(const char *text, path_t *p, char *why, size_t whylen)
{
    memset(p, 0, sizeof *p);
    size_t len = strlen(text);
    if (len == 0 || len > 200) {
        snprintf(why, whylen, "a placeholder needs a path (at most 200 characters)");
        return -1;
    }
    p->text = strdup(text);
    p->seg = calloc(MAX_PATH_SEGS, sizeof *p->seg);
    if (!p->text || !p->seg)
        goto oom;
    bool ptr = text[0] == '/';
    const char *s = ptr ? text + 1 : text;
    char sep = ptr ? '/' : '.';
    for (;;) {
        const char *e = strchr(s, sep);
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (p->n == MAX_PATH_SEGS) {
            snprintf(why, whylen, "path '%s' is too deep (at most %d segments)", text,
                     MAX_PATH_SEGS);
            goto fail;
        }
        if (n == 0 && !ptr) {
            snprintf(why, whylen, "path '%s' has an empty segment", text);
            goto fail;
        }
        char *seg = malloc(n + 1);
        if (!seg)
            goto oom;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (ptr && s[i] == '~' && i + 1 < n && (s[i + 1] == '0' || s[i + 1] == '1')) {
                seg[k++] = s[i + 1] == '0' ? '~' : '/';
                i++;
            } else if (!ptr && !(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-')) {
                free(seg);
                snprintf(why, whylen, "path '%s': unexpected character '%c' (write letters, "
                                      "digits, '_' and '-' between dots)", text, s[i]);
                goto fail;
            } else {
                seg[k++] = s[i];
            }
        }
        seg[k] = '\0';
        p->seg[p->n++] = seg;
        if (!e)
            break;
        s = e + 1;
    }
    return 0;
oom:
    snprintf(why, whylen, "out of memory");
fail:
    s_path_free(p);
    return -1;
}

/* The value at p in root (borrowed), or NULL. */
static json_t *s_path_get(const json_t *root, const path_t *p)
{
    const json_t *v = root;
    for (int i = 0; v && i < p->n; i++) {
        const char *seg = p->seg[i];
        if (json_is_object(v)) {
            v = json_object_get(v, seg);
        } else if (json_is_array(v) && seg[0] && strspn(seg, "0123456789") == strlen(seg) &&
                   strlen(seg) < 9) {
            v = json_array_get(v, (size_t)atol(seg));
        } else {
            v = NULL;
        }
    }
    return json_is_null(v) ? NULL : (json_t *)v;
}

/* ---------------------------------------------------------------------------------------- */
/* Tables */

static table_t *s_table(lang_t *l, const char *name, bool create)
{
    for (int i = 0; i < l->ntables; i++)
        if (strcmp(l->tables[i].name, name) == 0)
            return &l->tables[i];
    if (!create)
        return NULL;
    if (l->ntables == l->captables) {
        int cap = l->captables ? l->captables * 2 : 16;
        table_t *n = realloc(l->tables, (size_t)cap * sizeof *n);
        if (!n)
            return NULL;
        l->tables = n;
        l->captables = cap;
    }
    table_t *t = &l->tables[l->ntables];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name)
        return NULL;
    l->ntables++;
    return t;
}

static const char *s_table_get(const table_t *t, const char *key)
{
    for (int i = 0; t && i < t->n; i++)
        if (strcmp(t->kv[i].key, key) == 0)
            return t->kv[i].val;
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Freeing */

static void s_tmpl_free(tmpl_t *t)
{
    for (int i = 0; i < t->nparts; i++) {
        part_t *p = &t->parts[i];
        free(p->lit);
        s_path_free(&p->path);
        for (int k = 0; k < p->nf; k++) {
            free(p->f[k].arg);
            s_path_free(&p->f[k].path);
        }
    }
    free(t->parts);
    free(t->key);
}

static void s_lang_free(lang_t *l)
{
    free(l->tag);
    free(l->file);
    free(l->date_fmt);
    free(l->time_fmt);
    free(l->list_sep);
    free(l->group);
    for (int i = 0; i < l->ntables; i++) {
        for (int k = 0; k < l->tables[i].n; k++) {
            free(l->tables[i].kv[k].key);
            free(l->tables[i].kv[k].val);
        }
        free(l->tables[i].kv);
        free(l->tables[i].name);
    }
    free(l->tables);
    for (int i = 0; i < l->nsummary; i++)
        s_tmpl_free(&l->summary[i]);
    free(l->summary);
    for (int i = 0; i < l->nparts; i++)
        s_tmpl_free(&l->parts[i]);
    free(l->parts);
    memset(l, 0, sizeof *l);
}

void em_template_destroy(em_template_t **self_p)
{
    if (self_p && *self_p) {
        em_template_t *self = *self_p;
        for (int i = 0; i < self->n; i++)
            s_lang_free(&self->langs[i]);
        free(self->langs);
        free(self);
        *self_p = NULL;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Loading: raw entries */

typedef struct {
    char *section;
    char *key;
    char *val;
    int line;
} entry_t;

typedef struct {
    entry_t *e;
    int n, cap;
} entries_t;

static void s_entries_free(entries_t *es)
{
    for (int i = 0; i < es->n; i++) {
        free(es->e[i].section);
        free(es->e[i].key);
        free(es->e[i].val);
    }
    free(es->e);
    memset(es, 0, sizeof *es);
}

static char *s_trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Checks text (UTF-8, no control characters, no embeddings/overrides/marks, isolates
 * balanced).  Returns NULL or a reason. */
static const char *s_check_text(const char *s)
{
    size_t n = strlen(s);
    int depth = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t k = s_utf8((const unsigned char *)s + i, n - i, &c);
        if (k == 0)
            return "not valid UTF-8";
        if (c < 0x20 && c != '\t')
            return "control character";
        if (c >= 0x2066 && c <= 0x2068)
            depth++;
        else if (c == 0x2069 && --depth < 0)
            return "U+2069 without an opening isolate";
        else if (s_is_bidi_control(c))
            return "bidi embedding, override or mark character (use isolates U+2066..U+2069)";
        i += k;
    }
    return depth ? "isolate not closed by U+2069" : NULL;
}

/* Reads path into entries.  Returns 0 or -1 (err filled). */
static int s_read_file(const char *path, entries_t *es, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        s_err(err, errlen, path, 0, "%s", strerror(errno));
        return -1;
    }
    char *text = malloc(MAX_FILE + 1);
    size_t n = text ? fread(text, 1, MAX_FILE + 1, f) : 0;
    fclose(f);
    if (!text) {
        s_err(err, errlen, path, 0, "out of memory");
        return -1;
    }
    if (n > MAX_FILE) {
        free(text);
        s_err(err, errlen, path, 0, "larger than %d bytes", MAX_FILE);
        return -1;
    }
    text[n] = '\0';
    if (memchr(text, '\0', n)) {
        free(text);
        s_err(err, errlen, path, 0, "contains a NUL byte");
        return -1;
    }
    char *section = NULL;
    int lineno = 0, rc = 0;
    char *line;
    char *p = text;
    /* Skip a UTF-8 byte order mark. */
    if (strncmp(p, "\xef\xbb\xbf", 3) == 0)
        p += 3;
    while (p && *p) {
        line = p;
        char *nl = strchr(p, '\n');
        if (nl) {
            *nl = '\0';
            p = nl + 1;
        } else {
            p = NULL;
        }
        lineno++;
        bool indented = line[0] == ' ' || line[0] == '\t';
        char *t = s_trim(line);
        if (!*t || *t == '#' || *t == ';')
            continue;
        const char *why = s_check_text(t);
        if (why) {
            s_err(err, errlen, path, lineno, "%s", why);
            rc = -1;
            break;
        }
        if (indented && es->n > 0 && section) {
            /* continuation of the previous value */
            entry_t *e = &es->e[es->n - 1];
            size_t a = strlen(e->val), b = strlen(t);
            char *v = realloc(e->val, a + b + 2);
            if (!v) {
                rc = -1;
                s_err(err, errlen, path, lineno, "out of memory");
                break;
            }
            v[a] = ' ';
            memcpy(v + a + 1, t, b + 1);
            e->val = v;
            continue;
        }
        if (*t == '[') {
            size_t k = strlen(t);
            if (t[k - 1] != ']' || k < 3) {
                s_err(err, errlen, path, lineno, "a section is written [name]");
                rc = -1;
                break;
            }
            t[k - 1] = '\0';
            char *name = s_trim(t + 1);
            if (strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(name) || !*name) {
                s_err(err, errlen, path, lineno,
                      "section names are lower-case letters, digits and '_'");
                rc = -1;
                break;
            }
            free(section);
            section = strdup(name);
            continue;
        }
        char *eq = strchr(t, '=');
        if (!eq) {
            s_err(err, errlen, path, lineno, "expected 'key = value', '[section]' or '# comment'");
            rc = -1;
            break;
        }
        if (!section) {
            s_err(err, errlen, path, lineno, "'key = value' before any [section]");
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = s_trim(t), *val = s_trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') { /* quoted: keeps spaces */
            val[vl - 1] = '\0';
            val++;
        }
        if (!*key) {
            s_err(err, errlen, path, lineno, "empty key");
            rc = -1;
            break;
        }
        for (int i = 0; i < es->n; i++) {
            if (strcmp(es->e[i].section, section) == 0 && strcmp(es->e[i].key, key) == 0) {
                s_err(err, errlen, path, lineno, "'%s' is already defined in [%s] at line %d",
                      key, section, es->e[i].line);
                rc = -1;
                break;
            }
        }
        if (rc)
            break;
        if (es->n == es->cap) {
            int cap = es->cap ? es->cap * 2 : 64;
            entry_t *ne = realloc(es->e, (size_t)cap * sizeof *ne);
            if (!ne) {
                rc = -1;
                s_err(err, errlen, path, lineno, "out of memory");
                break;
            }
            es->e = ne;
            es->cap = cap;
        }
        entry_t *e = &es->e[es->n];
        e->section = strdup(section);
        e->key = strdup(key);
        e->val = strdup(val);
        e->line = lineno;
        es->n++;
        if (!e->section || !e->key || !e->val) {
            rc = -1;
            s_err(err, errlen, path, lineno, "out of memory");
            break;
        }
    }
    free(section);
    free(text);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Loading: compiling */

/* Checks a date/time format: %Y %m %d %-m %-d %H %M %Z %% and text. */
static const char *s_check_fmt(const char *f)
{
    for (const char *p = f; *p; p++) {
        if (*p != '%')
            continue;
        p++;
        if (*p == '-')
            p++;
        if (!*p || !strchr("YmdHMZ%", *p))
            return "unknown conversion (use %Y %m %d %-m %-d %H %M %Z %%)";
    }
    return NULL;
}

/* The data schemas of type key: {"versions": [each <schemas_dir>/<key>/<version>.json], "defs":
 * <schemas_dir>/defs.json or null}; NULL when there is no schema folder for it (new reference).
 */
static json_t *s_schema_load(const char *schemas_dir, const char *key)
{
    char dirpath[1024];
    snprintf(dirpath, sizeof dirpath, "%s/%s", schemas_dir, key);
    DIR *d = opendir(dirpath);
    if (!d)
        return NULL;
    json_t *versions = json_array();
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0)
            continue;
        char fp[1400];
        snprintf(fp, sizeof fp, "%s/%s", dirpath, de->d_name);
        json_t *v = json_load_file(fp, 0, NULL);
        if (v)
            json_array_append_new(versions, v);
    }
    closedir(d);
    snprintf(dirpath, sizeof dirpath, "%s/defs.json", schemas_dir);
    json_t *defs = json_load_file(dirpath, 0, NULL);
    return json_pack("{s:o,s:o}", "versions", versions, "defs", defs ? defs : json_null());
}

/* Follows "$ref" from node: "#/..." within *doc, "<file>#/..." naming defs.json in defs.
 * Returns the target (borrowed, *doc updated) or NULL when it cannot be followed. */
static const json_t *s_schema_deref(const json_t *node, const json_t **doc, const json_t *defs)
{
    for (int hops = 0; hops < 16; hops++) {
        const char *ref = json_string_value(json_object_get(node, "$ref"));
        if (!ref)
            return node;
        const char *hash = strchr(ref, '#');
        if (!hash)
            return NULL;
        if (hash != ref) {
            size_t n = (size_t)(hash - ref);
            if (n < 9 || strncmp(hash - 9, "defs.json", 9) != 0 || !json_is_object(defs))
                return NULL;
            *doc = defs;
        }
        const json_t *t = *doc;
        char seg[128];
        for (const char *p = hash + 1; t && *p == '/';) {
            size_t n = strcspn(p + 1, "/");
            if (n >= sizeof seg)
                return NULL;
            memcpy(seg, p + 1, n);
            seg[n] = '\0';
            t = json_object_get(t, seg);
            p += n + 1;
        }
        if (!t)
            return NULL;
        node = t;
    }
    return NULL;
}

/* Whether the member path seg[0..n) may exist under schema node: -1 yes (or the schema does
 * not say), else the index of the first segment it cannot have. */
static int s_schema_walk(const json_t *node, const json_t *doc, const json_t *defs,
                         char *const *seg, int n, int at, int depth)
{
    if (at == n || depth > 32)
        return -1;
    node = s_schema_deref(node, &doc, defs);
    if (!json_is_object(node))
        return -1;
    const json_t *props = json_object_get(node, "properties");
    const json_t *items = json_object_get(node, "items");
    const json_t *sub = json_object_get(props, seg[at]);
    if (sub)
        return s_schema_walk(sub, doc, defs, seg, n, at + 1, depth + 1);
    if (items && seg[at][0] && strspn(seg[at], "0123456789") == strlen(seg[at]))
        return s_schema_walk(items, doc, defs, seg, n, at + 1, depth + 1);
    bool combos = false;
    int worst = at;
    static const char *kw[] = {"allOf", "anyOf", "oneOf"};
    for (int k = 0; k < 3; k++) {
        size_t i;
        json_t *b;
        json_array_foreach(json_object_get(node, kw[k]), i, b)
        {
            combos = true;
            int r = s_schema_walk(b, doc, defs, seg, n, at, depth + 1);
            if (r < 0)
                return -1;
            if (r > worst)
                worst = r;
        }
    }
    static const char *cond[] = {"then", "else"};
    for (int k = 0; k < 2; k++) {
        const json_t *b = json_object_get(node, cond[k]);
        if (!b)
            continue;
        combos = true;
        int r = s_schema_walk(b, doc, defs, seg, n, at, depth + 1);
        if (r < 0)
            return -1;
        if (r > worst)
            worst = r;
    }
    if (!props && !items && !combos)
        return -1; /* a shape the schema leaves open */
    return worst;
}

/* Checks a path into data (path, then pick, the path within each item, when not NULL)
 * against every version of schema.  Returns NULL when some version may have it, else the name
 * of the first member none has. */
static const char *s_schema_check(const json_t *schema, const path_t *p, const path_t *pick)
{
    char *seg[2 * MAX_PATH_SEGS + 1];
    int n = 0;
    for (int i = 1; i < p->n; i++)
        seg[n++] = p->seg[i];
    if (pick) {
        static char zero[] = "0";
        seg[n++] = zero;
        for (int i = 0; i < pick->n; i++)
            seg[n++] = pick->seg[i];
    }
    const json_t *defs = json_object_get(schema, "defs");
    const char *bad = NULL;
    size_t i;
    json_t *root;
    json_array_foreach(json_object_get(schema, "versions"), i, root)
    {
        int r = s_schema_walk(root, root, defs, seg, n, 0, 0);
        if (r < 0)
            return NULL;
        bad = seg[r];
    }
    return bad;
}

/* Compiles the text of a template into t.  kind: 's' summary (path roots checked, schema
 * may be NULL), 'p' part (paths are relative to the element).  Returns 0 or -1. */
static int s_compile(tmpl_t *t, const char *text, char kind, const json_t *schema,
                     const char *file, char *err, size_t errlen)
{
    const char *s = text;
    int cap = 8;
    t->parts = calloc((size_t)cap, sizeof *t->parts);
    if (!t->parts)
        goto oom;
    while (*s) {
        if (t->nparts + 1 >= cap) {
            part_t *n = realloc(t->parts, (size_t)cap * 2 * sizeof *n);
            if (!n)
                goto oom;
            memset(n + cap, 0, (size_t)cap * sizeof *n);
            t->parts = n;
            cap *= 2;
        }
        part_t *p = &t->parts[t->nparts];
        const char *open = strstr(s, "{{");
        if (open != s) {
            size_t n = open ? (size_t)(open - s) : strlen(s);
            p->lit = s_strndup(s, n);
            if (!p->lit)
                goto oom;
            t->nparts++;
            s += n;
            continue;
        }
        const char *close = strstr(s + 2, "}}");
        if (!close) {
            s_err(err, errlen, file, t->line, "'%s': '{{' without '}}'", t->key);
            return -1;
        }
        char inner[600];
        size_t n = (size_t)(close - s - 2);
        if (n >= sizeof inner) {
            s_err(err, errlen, file, t->line, "'%s': placeholder too long", t->key);
            return -1;
        }
        memcpy(inner, s + 2, n);
        inner[n] = '\0';
        if (strstr(inner, "{{")) {
            s_err(err, errlen, file, t->line, "'%s': '{{' inside a placeholder", t->key);
            return -1;
        }
        t->nparts++;
        s = close + 2;
        char orig[600];
        memcpy(orig, inner, n + 1); /* for messages: strtok_r cuts inner */
        /* path|filter:arg|filter */
        char *save = NULL, *tok = strtok_r(inner, "|", &save);
        char why[300], empty[1] = "";
        char *pathtext = tok ? s_trim(tok) : empty;
        if (s_path_parse(pathtext, &p->path, why, sizeof why) != 0) {
            s_err(err, errlen, file, t->line, "'%s': %s", t->key, why);
            return -1;
        }
        if (kind == 's') {
            bool known = false;
            for (int i = 0; s_roots[i]; i++)
                known = known || strcmp(p->path.seg[0], s_roots[i]) == 0;
            if (!known) {
                s_err(err, errlen, file, t->line,
                      "'%s': unknown placeholder {{%s}} (a path starts with an envelope "
                      "attribute such as subject, time, province, projectid, or with data)",
                      t->key, pathtext);
                return -1;
            }
            const char *bad = schema && strcmp(p->path.seg[0], "data") == 0
                                  ? s_schema_check(schema, &p->path, NULL)
                                  : NULL;
            if (bad) {
                s_err(err, errlen, file, t->line,
                      "'%s': unknown placeholder {{%s}}: the schema of %s has no data member "
                      "'%s'", t->key, pathtext, t->key, bad);
                return -1;
            }
        }
        while ((tok = strtok_r(NULL, "|", &save)) != NULL) {
            char *ft = s_trim(tok);
            char *colon = strchr(ft, ':');
            char *arg = NULL;
            if (colon) {
                *colon = '\0';
                arg = colon + 1; /* not trimmed: default:" text" keeps its spaces */
                ft = s_trim(ft);
            }
            int fi = -1;
            for (size_t i = 0; i < sizeof s_filters / sizeof *s_filters; i++)
                if (strcmp(ft, s_filters[i].name) == 0)
                    fi = (int)i;
            if (fi < 0) {
                s_err(err, errlen, file, t->line,
                      "'%s': unknown filter '%s' in {{%s}} (known: date, time, number, qty, "
                      "money, text, glossary:TABLE, pick:PATH, each:PART, join, count, "
                      "else:PATH, default:TEXT)", t->key, ft, orig);
                return -1;
            }
            if (s_filters[fi].arg && (!arg || !*arg)) {
                s_err(err, errlen, file, t->line, "'%s': filter '%s' needs an argument (%s:...)",
                      t->key, ft, ft);
                return -1;
            }
            if (!s_filters[fi].arg && arg) {
                s_err(err, errlen, file, t->line, "'%s': filter '%s' takes no argument", t->key,
                      ft);
                return -1;
            }
            if (p->nf == MAX_FILTERS) {
                s_err(err, errlen, file, t->line, "'%s': more than %d filters", t->key,
                      MAX_FILTERS);
                return -1;
            }
            filter_t *f = &p->f[p->nf++];
            f->type = s_filters[fi].type;
            if (kind == 'p' && f->type == F_EACH) {
                s_err(err, errlen, file, t->line, "'%s': each: cannot be used inside a [part]",
                      t->key);
                return -1;
            }
            if (arg) {
                f->arg = strdup(f->type == F_DEFAULT ? arg : s_trim(arg));
                if (!f->arg)
                    goto oom;
            }
            if (f->type == F_PICK || f->type == F_ELSE) {
                if (s_path_parse(f->arg, &f->path, why, sizeof why) != 0) {
                    s_err(err, errlen, file, t->line, "'%s': %s", t->key, why);
                    return -1;
                }
                if (f->type == F_ELSE && kind == 's') {
                    bool known = false;
                    for (int i = 0; s_roots[i]; i++)
                        known = known || strcmp(f->path.seg[0], s_roots[i]) == 0;
                    if (!known || (schema && strcmp(f->path.seg[0], "data") == 0 &&
                                   s_schema_check(schema, &f->path, NULL))) {
                        s_err(err, errlen, file, t->line, "'%s': unknown placeholder else:%s",
                              t->key, f->arg);
                        return -1;
                    }
                }
                /* The first filter picking from a data list: the items must have it. */
                const char *bad = NULL;
                if (f->type == F_PICK && p->nf == 1 && kind == 's' && schema &&
                    strcmp(p->path.seg[0], "data") == 0 &&
                    (bad = s_schema_check(schema, &p->path, &f->path)) != NULL) {
                    s_err(err, errlen, file, t->line,
                          "'%s': unknown member pick:%s of {{%s}}: the schema of %s has no "
                          "member '%s' there", t->key, f->arg, pathtext, t->key, bad);
                    return -1;
                }
            }
        }
    }
    return 0;
oom:
    s_err(err, errlen, file, t->line, "out of memory");
    return -1;
}

static int s_add_tmpl(tmpl_t **arr, int *n, int *cap, const entry_t *e)
{
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 32;
        tmpl_t *na = realloc(*arr, (size_t)c * sizeof *na);
        if (!na)
            return -1;
        *arr = na;
        *cap = c;
    }
    tmpl_t *t = &(*arr)[*n];
    memset(t, 0, sizeof *t);
    t->key = strdup(e->key);
    t->line = e->line;
    if (!t->key)
        return -1;
    (*n)++;
    return 0;
}

/* Builds language l from the entries of its file.  Returns 0 or -1. */
static int s_build_lang(lang_t *l, entries_t *es, const char *schemas_dir, char *err,
                        size_t errlen)
{
    for (int i = 0; i < es->n; i++) {
        entry_t *e = &es->e[i];
        if (strcmp(e->section, "format") == 0) {
            char **dst = strcmp(e->key, "date") == 0   ? &l->date_fmt
                         : strcmp(e->key, "time") == 0 ? &l->time_fmt
                         : strcmp(e->key, "list") == 0 ? &l->list_sep
                         : strcmp(e->key, "group") == 0 ? &l->group
                                                         : NULL;
            if (strcmp(e->key, "isolate") == 0) {
                if (strcmp(e->val, "true") != 0 && strcmp(e->val, "false") != 0) {
                    s_err(err, errlen, l->file, e->line, "isolate is true or false");
                    return -1;
                }
                l->isolate = strcmp(e->val, "true") == 0;
                continue;
            }
            if (!dst) {
                s_err(err, errlen, l->file, e->line,
                      "unknown key '%s' in [format] (date, time, list, group, isolate)", e->key);
                return -1;
            }
            const char *why = (dst == &l->date_fmt || dst == &l->time_fmt) ? s_check_fmt(e->val)
                                                                            : NULL;
            if (why) {
                s_err(err, errlen, l->file, e->line, "%s: %s", e->key, why);
                return -1;
            }
            free(*dst);
            *dst = strdup(e->val);
            if (!*dst)
                return -1;
        } else if (strcmp(e->section, "summary") == 0 || strcmp(e->section, "part") == 0) {
            bool summary = e->section[0] == 's';
            if (s_add_tmpl(summary ? &l->summary : &l->parts, summary ? &l->nsummary : &l->nparts,
                           summary ? &l->capsummary : &l->capparts, e) != 0) {
                s_err(err, errlen, l->file, e->line, "out of memory");
                return -1;
            }
            tmpl_t *t = summary ? &l->summary[l->nsummary - 1] : &l->parts[l->nparts - 1];
            json_t *schema = NULL;
            if (summary && schemas_dir && strcmp(e->key, "default") != 0) {
                const char *key = strncmp(e->key, TYPE_PREFIX, strlen(TYPE_PREFIX)) == 0
                                      ? e->key + strlen(TYPE_PREFIX)
                                      : e->key;
                schema = s_schema_load(schemas_dir, key);
                if (!schema) {
                    s_err(err, errlen, l->file, e->line,
                          "unknown event type '%s' (no schema folder %s/%s)", e->key,
                          schemas_dir, key);
                    return -1;
                }
            }
            int rc = s_compile(t, e->val, summary ? 's' : 'p', schema, l->file, err, errlen);
            json_decref(schema);
            if (rc != 0)
                return -1;
        } else {
            table_t *t = s_table(l, e->section, true);
            if (!t) {
                s_err(err, errlen, l->file, e->line, "out of memory");
                return -1;
            }
            if (t->n == t->cap) {
                int c = t->cap ? t->cap * 2 : 16;
                kv_t *nk = realloc(t->kv, (size_t)c * sizeof *nk);
                if (!nk)
                    return -1;
                t->kv = nk;
                t->cap = c;
            }
            kv_t *kv = &t->kv[t->n];
            kv->key = strdup(e->key);
            kv->val = strdup(e->val);
            kv->line = e->line;
            if (!kv->key || !kv->val) {
                free(kv->key);
                free(kv->val);
                return -1;
            }
            t->n++;
        }
    }
    return 0;
}

/* Defaults of [format] taken from en when a language leaves them out. */
static int s_inherit_format(lang_t *l, const lang_t *en)
{
    static const char *dflt[] = {"%Y-%m-%d", "%Y-%m-%d %H:%M %Z", ", ", ","};
    char **dst[] = {&l->date_fmt, &l->time_fmt, &l->list_sep, &l->group};
    const char *src[] = {en ? en->date_fmt : NULL, en ? en->time_fmt : NULL,
                         en ? en->list_sep : NULL, en ? en->group : NULL};
    for (int i = 0; i < 4; i++) {
        if (*dst[i])
            continue;
        *dst[i] = strdup(src[i] ? src[i] : dflt[i]);
        if (!*dst[i])
            return -1;
    }
    return 0;
}

static const tmpl_t *s_find_tmpl(const tmpl_t *arr, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(arr[i].key, key) == 0)
            return &arr[i];
    return NULL;
}

/* Every glossary:T and each:P of l names a table / part of l or of en. */
static int s_check_refs(const em_template_t *self, lang_t *l, char *err, size_t errlen)
{
    const lang_t *en = &self->langs[0];
    for (int k = 0; k < 2; k++) {
        tmpl_t *arr = k == 0 ? l->summary : l->parts;
        int n = k == 0 ? l->nsummary : l->nparts;
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < arr[i].nparts; j++) {
                part_t *p = &arr[i].parts[j];
                for (int f = 0; f < p->nf; f++) {
                    const char *a = p->f[f].arg;
                    if (p->f[f].type == F_GLOSSARY && !s_table(l, a, false) &&
                        !s_table((lang_t *)en, a, false)) {
                        s_err(err, errlen, l->file, arr[i].line,
                              "'%s': unknown glossary table '%s' (no [%s] section here or in "
                              "en.tmpl)", arr[i].key, a, a);
                        return -1;
                    }
                    if (p->f[f].type == F_EACH && !s_find_tmpl(l->parts, l->nparts, a) &&
                        !s_find_tmpl(en->parts, en->nparts, a)) {
                        s_err(err, errlen, l->file, arr[i].line,
                              "'%s': unknown part '%s' (no '%s = ...' in [part] here or in "
                              "en.tmpl)", arr[i].key, a, a);
                        return -1;
                    }
                }
            }
        }
    }
    return 0;
}

static int s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

em_template_t *em_template_load(const char *dir, const char *schemas_dir, char *err,
                                size_t errlen)
{
    em_template_t *self = calloc(1, sizeof *self);
    char *names[64];
    int nnames = 0;
    DIR *d = dir ? opendir(dir) : NULL;
    if (!self) {
        snprintf(err, errlen, "out of memory");
        if (d)
            closedir(d);
        return NULL;
    }
    if (!d) {
        snprintf(err, errlen, "%s: %s", dir ? dir : "(null)", strerror(errno));
        goto fail;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".tmpl") != 0 || de->d_name[0] == '.')
            continue;
        if (nnames == 64)
            break;
        names[nnames] = s_strndup(de->d_name, n - 5);
        if (names[nnames])
            nnames++;
    }
    closedir(d);
    qsort(names, (size_t)nnames, sizeof *names, s_cmp_str);
    /* en first: it is the fallback every other language leans on. */
    int en = -1;
    for (int i = 0; i < nnames; i++)
        if (strcmp(names[i], "en") == 0)
            en = i;
    if (en < 0) {
        snprintf(err, errlen, "%s/en.tmpl: missing (English is the fallback language)", dir);
        goto fail;
    }
    char *tmp = names[0];
    names[0] = names[en];
    names[en] = tmp;
    self->langs = calloc((size_t)nnames, sizeof *self->langs);
    if (!self->langs) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (int i = 0; i < nnames; i++) {
        lang_t *l = &self->langs[self->n++];
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.tmpl", dir, names[i]);
        l->tag = strdup(names[i]);
        l->file = strdup(path);
        if (!l->tag || !l->file) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        entries_t es = {0};
        int rc = s_read_file(path, &es, err, errlen);
        if (rc == 0)
            rc = s_build_lang(l, &es, schemas_dir, err, errlen);
        s_entries_free(&es);
        if (rc != 0)
            goto fail;
        if (s_inherit_format(l, i == 0 ? NULL : &self->langs[0]) != 0) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        if (i > 0) {
            /* A type translated here must exist in English (the fallback). */
            for (int k = 0; k < l->nsummary; k++) {
                if (!s_find_tmpl(self->langs[0].summary, self->langs[0].nsummary,
                                 l->summary[k].key)) {
                    s_err(err, errlen, l->file, l->summary[k].line,
                          "'%s' has no English template in en.tmpl", l->summary[k].key);
                    goto fail;
                }
            }
        }
    }
    for (int i = 0; i < self->n; i++)
        if (s_check_refs(self, &self->langs[i], err, errlen) != 0)
            goto fail;
    for (int i = 0; i < nnames; i++)
        free(names[i]);
    return self;
fail:
    for (int i = 0; i < nnames; i++)
        free(names[i]);
    em_template_destroy(&self);
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Time */

int em_template_zone_offset(const char *zone)
{
    if (!zone)
        return -1;
    if (strcmp(zone, "Asia/Karachi") == 0)
        return 300;
    if (strcmp(zone, "Asia/Shanghai") == 0)
        return 480;
    if (strcmp(zone, "UTC") == 0)
        return 0;
    return -1;
}

const char *em_template_default_zone(const char *lang)
{
    if (lang && strncmp(lang, "zh", 2) == 0 && (lang[2] == '\0' || lang[2] == '-'))
        return "Asia/Shanghai";
    return "Asia/Karachi";
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t s_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void s_civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

typedef struct {
    int y, m, d, H, M;
    bool has_time;
} civil_t;

static bool s_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Parses an RFC 3339 date ("2014-04-01") or date-time ("2014-04-01T10:00:00+05:00", "...Z",
 * fractions allowed) and converts a date-time to the zone offset_min.  Returns 0 or -1. */
static int s_parse_time(const char *s, int offset_min, civil_t *out)
{
    int y, mo, d, H = 0, M = 0, S = 0;
    memset(out, 0, sizeof *out);
    if (strlen(s) < 10 || !s_digits(s, 4, &y) || s[4] != '-' || !s_digits(s + 5, 2, &mo) ||
        s[7] != '-' || !s_digits(s + 8, 2, &d) || mo < 1 || mo > 12 || d < 1 || d > 31)
        return -1;
    if (s[10] == '\0') {
        *out = (civil_t){y, mo, d, 0, 0, false};
        return 0;
    }
    const char *t = s + 10;
    if ((*t != 'T' && *t != 't' && *t != ' ') || !s_digits(t + 1, 2, &H) || t[3] != ':' ||
        !s_digits(t + 4, 2, &M) || t[6] != ':' || !s_digits(t + 7, 2, &S) || H > 23 || M > 59 ||
        S > 60)
        return -1;
    t += 9;
    if (*t == '.') {
        t++;
        if (!isdigit((unsigned char)*t))
            return -1;
        while (isdigit((unsigned char)*t))
            t++;
    }
    int off;
    if ((*t == 'Z' || *t == 'z') && t[1] == '\0') {
        off = 0;
    } else if ((*t == '+' || *t == '-') && strlen(t) == 6 && t[3] == ':') {
        int oh, om;
        if (!s_digits(t + 1, 2, &oh) || !s_digits(t + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off = (oh * 60 + om) * (*t == '-' ? -1 : 1);
    } else {
        return -1;
    }
    int64_t minutes = s_days_from_civil(y, mo, d) * 1440 + H * 60 + M - off + offset_min;
    int64_t days = minutes >= 0 ? minutes / 1440 : -((-minutes + 1439) / 1440);
    int64_t rem = minutes - days * 1440;
    s_civil_from_days(days, &out->y, &out->m, &out->d);
    out->H = (int)(rem / 60);
    out->M = (int)(rem % 60);
    out->has_time = true;
    return 0;
}

static void s_format_time(const char *fmt, const civil_t *c, const char *zone_label, char *out,
                          size_t outlen)
{
    size_t k = 0;
    for (const char *p = fmt; *p && k + 1 < outlen; p++) {
        char tmp[32];
        const char *ins = NULL;
        if (*p != '%') {
            out[k++] = *p;
            continue;
        }
        bool nopad = p[1] == '-';
        if (nopad)
            p++;
        switch (*++p) {
        case 'Y': snprintf(tmp, sizeof tmp, "%04d", c->y); break;
        case 'm': snprintf(tmp, sizeof tmp, nopad ? "%d" : "%02d", c->m); break;
        case 'd': snprintf(tmp, sizeof tmp, nopad ? "%d" : "%02d", c->d); break;
        case 'H': snprintf(tmp, sizeof tmp, nopad ? "%d" : "%02d", c->H); break;
        case 'M': snprintf(tmp, sizeof tmp, "%02d", c->M); break;
        case '%': snprintf(tmp, sizeof tmp, "%%"); break;
        case 'Z': ins = zone_label; break;
        default: p--; continue; /* unreachable: formats are checked at load */
        }
        if (!ins)
            ins = tmp;
        size_t n = strlen(ins);
        if (k + n >= outlen)
            n = outlen - 1 - k;
        memcpy(out + k, ins, n);
        k += n;
    }
    out[k] = '\0';
}

/* ---------------------------------------------------------------------------------------- */
/* Rendering */

typedef struct {
    const em_template_t *self;
    const lang_t *l;     /* language used */
    const lang_t *en;
    const char *ltag;    /* "zh" for zh-Hans: the key of i18nText */
    int offset;          /* zone offset, minutes */
    const char *zone;    /* zone name */
    sb_t *out;
    int missing;
} ctx_t;

static const char *s_lookup(const ctx_t *c, const char *table, const char *key)
{
    const char *v = s_table_get(s_table((lang_t *)c->l, table, false), key);
    if (!v)
        v = s_table_get(s_table((lang_t *)c->en, table, false), key);
    return v;
}

/* Groups the integer digits of a decimal text ("-1234567.50" -> "-1,234,567.50"). */
static void s_group(const char *num, const char *sep, char *out, size_t outlen)
{
    const char *p = num;
    size_t k = 0;
    if (*p == '-' || *p == '+') {
        if (k + 1 < outlen)
            out[k++] = *p;
        p++;
    }
    size_t digits = strspn(p, "0123456789");
    size_t sl = strlen(sep);
    for (size_t i = 0; i < digits; i++) {
        if (i > 0 && (digits - i) % 3 == 0 && k + sl < outlen) {
            memcpy(out + k, sep, sl);
            k += sl;
        }
        if (k + 1 < outlen)
            out[k++] = p[i];
    }
    p += digits;
    size_t rest = strlen(p);
    if (k + rest >= outlen)
        rest = outlen - 1 - k;
    memcpy(out + k, p, rest);
    k += rest;
    out[k] = '\0';
}

/* The text of a number or a decimal string, grouped; NULL when v is neither. */
static json_t *s_number(const ctx_t *c, const json_t *v)
{
    char raw[64], out[128];
    if (json_is_integer(v))
        snprintf(raw, sizeof raw, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(raw, sizeof raw, "%.15g", json_real_value(v));
    else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = strlen(s), i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
        size_t dg = strspn(s + i, "0123456789");
        if (dg == 0 || n >= sizeof raw ||
            !(s[i + dg] == '\0' ||
              (s[i + dg] == '.' && strspn(s + i + dg + 1, "0123456789") == n - i - dg - 1)))
            return NULL;
        memcpy(raw, s, n + 1);
    } else
        return NULL;
    if (strchr(raw, 'e') || strchr(raw, 'n') || strchr(raw, 'i')) /* exponent, nan, inf */
        return json_string(raw);
    s_group(raw, c->l->group, out, sizeof out);
    return json_string(out);
}

/* Applies an atom filter to one value (not an array).  Returns a new reference (the value
 * itself when the filter does not apply to it). */
static json_t *s_atom_filter(const ctx_t *c, const filter_t *f, json_t *v)
{
    char buf[256];
    switch (f->type) {
    case F_DATE:
    case F_TIME: {
        civil_t cv;
        const char *s = json_string_value(v);
        if (!s || s_parse_time(s, c->offset, &cv) != 0)
            break;
        const char *label = s_lookup(c, "zone", c->zone);
        s_format_time(f->type == F_TIME && cv.has_time ? c->l->time_fmt : c->l->date_fmt, &cv,
                      label ? label : c->zone, buf, sizeof buf);
        return json_string(buf);
    }
    case F_NUMBER: {
        json_t *n = s_number(c, v);
        if (n)
            return n;
        break;
    }
    case F_QTY: {
        json_t *n = s_number(c, json_object_get(v, "value"));
        const char *unit = json_string_value(json_object_get(v, "unit"));
        if (!n || !unit) {
            json_decref(n);
            break;
        }
        const char *u = s_lookup(c, "unit", unit);
        snprintf(buf, sizeof buf, "%s %s", json_string_value(n), u ? u : unit);
        json_decref(n);
        return json_string(buf);
    }
    case F_MONEY: {
        json_t *n = s_number(c, json_object_get(v, "amount"));
        const char *cur = json_string_value(json_object_get(v, "currency"));
        if (!n || !cur) {
            json_decref(n);
            break;
        }
        snprintf(buf, sizeof buf, "%s %s", cur, json_string_value(n));
        json_decref(n);
        return json_string(buf);
    }
    case F_TEXT: {
        if (!json_is_object(v))
            break;
        json_t *t = json_object_get(v, c->ltag);
        if (!json_is_string(t))
            t = json_object_get(v, "en");
        if (!json_is_string(t))
            break;
        return json_incref(t);
    }
    case F_GLOSSARY: {
        const char *s = json_string_value(v);
        const char *g = s ? s_lookup(c, f->arg, s) : NULL;
        if (g)
            return json_string(g);
        break;
    }
    default:
        break;
    }
    return json_incref(v);
}

static void s_render_parts(ctx_t *c, const tmpl_t *t, const json_t *root);

/* Renders part template name for element el into a new string value (no markers shown twice:
 * missing values inside count once). */
static json_t *s_each(ctx_t *c, const char *name, const json_t *el)
{
    const tmpl_t *t = s_find_tmpl(c->l->parts, c->l->nparts, name);
    if (!t)
        t = s_find_tmpl(c->en->parts, c->en->nparts, name);
    if (!t)
        return NULL;
    char buf[EM_TEMPLATE_MAX_OUT + 1];
    sb_t sb = {buf, 0, sizeof buf, false};
    buf[0] = '\0';
    sb_t *saved = c->out;
    c->out = &sb;
    s_render_parts(c, t, el);
    c->out = saved;
    return json_string(buf);
}

/* Appends one atom: sanitised (controls become spaces, bidi controls dropped), isolated when
 * the language asks for it and the atom has a left-to-right character. */
static void s_put_atom(ctx_t *c, const char *s, bool rendered)
{
    size_t n = strlen(s);
    if (rendered) { /* a part, already sanitised and isolated: whole or not at all */
        if (n > c->out->cap - 1 - c->out->len)
            c->out->full = true;
        else
            s_sb_put(c->out, s, n, 0);
        return;
    }
    char clean[EM_TEMPLATE_MAX_OUT + 1];
    size_t k = 0;
    bool ltr = false;
    for (size_t i = 0; i < n && k + 4 < sizeof clean;) {
        uint32_t cp;
        size_t len = s_utf8((const unsigned char *)s + i, n - i, &cp);
        if (len == 0) { /* Jansson strings are UTF-8; be safe anyway */
            i++;
            continue;
        }
        if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0) || cp == 0x2028 ||
            cp == 0x2029)
            clean[k++] = ' ';
        else if (!s_is_bidi_control(cp)) {
            memcpy(clean + k, s + i, len);
            k += len;
            ltr = ltr || s_is_ltr(cp);
        }
        i += len;
    }
    clean[k] = '\0';
    if (c->l->isolate && ltr) {
        sb_t *b = c->out;
        if (b->full)
            return;
        /* Room for FSI, at least one character and PDI, or nothing. */
        if (b->cap - 1 - b->len < 3 + 4 + 3) {
            b->full = true;
            return;
        }
        s_sb_put(b, FSI, 3, 0);
        s_sb_put(b, clean, k, 3);
        bool was_full = b->full;
        b->full = false;
        s_sb_put(b, PDI, 3, 0);
        b->full = was_full;
    } else {
        s_sb_put(c->out, clean, k, 0);
    }
}

static void s_put_marker(ctx_t *c, const char *path)
{
    char m[260];
    snprintf(m, sizeof m, "[?%s]", path);
    c->missing++;
    s_put_atom(c, m, false);
}

/* Stringifies a final scalar value. */
static bool s_scalar_text(const ctx_t *c, const json_t *v, char *buf, size_t len)
{
    if (json_is_string(v))
        snprintf(buf, len, "%s", json_string_value(v));
    else if (json_is_integer(v) || json_is_real(v)) {
        json_t *n = s_number(c, v);
        snprintf(buf, len, "%s", n ? json_string_value(n) : "");
        json_decref(n);
    } else if (json_is_boolean(v)) {
        const char *b = s_lookup(c, "boolean", json_is_true(v) ? "true" : "false");
        snprintf(buf, len, "%s", b ? b : json_is_true(v) ? "true" : "false");
    } else
        return false;
    return true;
}

static void s_render_placeholder(ctx_t *c, const part_t *p, const json_t *root)
{
    json_t *v = s_path_get(root, &p->path);
    const char *shown = p->path.text; /* the path named by a marker */
    bool rendered = false;
    json_incref(v);
    for (int i = 0; i < p->nf; i++) {
        const filter_t *f = &p->f[i];
        json_t *nv = NULL;
        if (f->type == F_ELSE) {
            if (!v) {
                v = json_incref(s_path_get(root, &f->path));
                shown = f->path.text;
            }
            continue;
        }
        if (f->type == F_DEFAULT) {
            if (!v)
                v = json_string(f->arg);
            continue;
        }
        if (!v)
            continue;
        if (f->type == F_COUNT) {
            nv = json_is_array(v) ? json_integer((json_int_t)json_array_size(v)) : json_incref(v);
        } else if (f->type == F_JOIN) {
            nv = json_incref(v); /* arrays are joined at the end anyway */
        } else if (f->type == F_PICK || f->type == F_EACH || json_is_array(v)) {
            bool arr = json_is_array(v);
            size_t n = arr ? json_array_size(v) : 1;
            nv = arr ? json_array() : NULL;
            for (size_t k = 0; k < n; k++) {
                json_t *el = arr ? json_array_get(v, k) : v;
                json_t *r = f->type == F_PICK   ? json_incref(s_path_get(el, &f->path))
                            : f->type == F_EACH ? s_each(c, f->arg, el)
                                                : s_atom_filter(c, f, el);
                if (arr) {
                    if (r)
                        json_array_append_new(nv, r);
                } else
                    nv = r;
            }
            if (f->type == F_EACH)
                rendered = true;
        } else {
            nv = s_atom_filter(c, f, v);
        }
        json_decref(v);
        v = nv;
    }
    if (!v || (json_is_array(v) && json_array_size(v) == 0)) {
        s_put_marker(c, shown);
        json_decref(v);
        return;
    }
    char buf[EM_TEMPLATE_MAX_OUT + 1];
    if (json_is_array(v)) {
        size_t k;
        json_t *el;
        json_array_foreach(v, k, el)
        {
            if (k > 0)
                s_sb_put(c->out, c->l->list_sep, strlen(c->l->list_sep), 0);
            if (s_scalar_text(c, el, buf, sizeof buf))
                s_put_atom(c, buf, rendered);
            else
                s_put_marker(c, shown);
        }
    } else if (s_scalar_text(c, v, buf, sizeof buf)) {
        s_put_atom(c, buf, rendered);
    } else {
        s_put_marker(c, shown);
    }
    json_decref(v);
}

static void s_render_parts(ctx_t *c, const tmpl_t *t, const json_t *root)
{
    for (int i = 0; i < t->nparts && !c->out->full; i++) {
        const part_t *p = &t->parts[i];
        if (p->lit)
            s_sb_put(c->out, p->lit, strlen(p->lit), 0);
        else
            s_render_placeholder(c, p, root);
    }
}

static const lang_t *s_lang(const em_template_t *self, const char *tag)
{
    for (int i = 0; tag && i < self->n; i++)
        if (strcmp(self->langs[i].tag, tag) == 0)
            return &self->langs[i];
    return NULL;
}

static const tmpl_t *s_summary(const lang_t *l, const char *type, bool dflt)
{
    const tmpl_t *t = NULL;
    if (type) {
        t = s_find_tmpl(l->summary, l->nsummary, type);
        if (!t && strncmp(type, TYPE_PREFIX, strlen(TYPE_PREFIX)) == 0)
            t = s_find_tmpl(l->summary, l->nsummary, type + strlen(TYPE_PREFIX));
    }
    if (!t && dflt)
        t = s_find_tmpl(l->summary, l->nsummary, "default");
    return t;
}

int em_template_render(const em_template_t *self, const char *lang, const char *zone,
                       const json_t *event, char *out, size_t outlen, const char **used_lang,
                       int *missing)
{
    if (missing)
        *missing = 0;
    if (used_lang)
        *used_lang = NULL;
    if (!out || outlen == 0)
        return -1;
    out[0] = '\0';
    if (!self || !json_is_object(event))
        return -1;
    const char *type = json_string_value(json_object_get(event, "type"));
    const lang_t *en = &self->langs[0];
    const lang_t *l = s_lang(self, lang);
    const tmpl_t *t = NULL;
    /* The language's own template for the type, else English's, else the language's default,
     * else English's default. */
    if (l)
        t = s_summary(l, type, false);
    if (!t && (t = s_summary(en, type, false)) != NULL)
        l = en;
    if (!t && l)
        t = s_summary(l, type, true);
    if (!t && (t = s_summary(en, type, true)) != NULL)
        l = en;
    if (!t)
        return -1;
    int off = em_template_zone_offset(zone);
    sb_t sb = {out, 0, outlen < EM_TEMPLATE_MAX_OUT + 1 ? outlen : EM_TEMPLATE_MAX_OUT + 1,
               false};
    /* Keep room for closing isolates a cut literal left open, and the ellipsis. */
    sb_t body = sb;
    body.cap = sb.cap > CUT_RESERVE + 1 ? sb.cap - CUT_RESERVE : sb.cap;
    ctx_t c = {self, l, en, NULL, off < 0 ? 0 : off, off < 0 ? "UTC" : zone, &body, 0};
    char ltag[16];
    snprintf(ltag, sizeof ltag, "%s", l->tag);
    char *dash = strchr(ltag, '-');
    if (dash)
        *dash = '\0';
    c.ltag = ltag;
    s_render_parts(&c, t, event);
    if (body.full && sb.cap > CUT_RESERVE + 1) {
        int depth = 0;
        for (size_t i = 0; i + 2 < body.len; i++) {
            if (memcmp(out + i, FSI, 3) == 0 || memcmp(out + i, "\xe2\x81\xa6", 3) == 0 ||
                memcmp(out + i, "\xe2\x81\xa7", 3) == 0)
                depth++;
            else if (memcmp(out + i, PDI, 3) == 0)
                depth--;
        }
        size_t k = body.len;
        memcpy(out + k, ELLIPSIS, 3);
        k += 3;
        for (; depth > 0 && k + 3 < sb.cap; depth--, k += 3)
            memcpy(out + k, PDI, 3);
        out[k] = '\0';
    }
    if (used_lang)
        *used_lang = l->tag;
    if (missing)
        *missing = c.missing;
    return 0;
}

bool em_template_has(const em_template_t *self, const char *lang, const char *key)
{
    const lang_t *l = self ? s_lang(self, lang) : NULL;
    return l && s_find_tmpl(l->summary, l->nsummary, key) != NULL;
}

int em_template_language_count(const em_template_t *self)
{
    return self ? self->n : 0;
}

const char *em_template_language(const em_template_t *self, int i)
{
    return self && i >= 0 && i < self->n ? self->langs[i].tag : NULL;
}
