/* em_config.c - config tables: defaults < file (libinih) < EMINE_<SECTION>_<KEY> environment. */
#include "em_config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Every section any emine program reads; a file may hold sections for all of them. */
static const char *const s_known_sections[] = {"log",      "pg",      "redis",  "bus",
                                               "ingest",   "validate", "archive", "notify",
                                               "eminectl", NULL};

/* Parse state shared by the inih callbacks. */
typedef struct {
    const char *path;
    const em_config_entry_t *table;
    size_t nentries;
    char **fval;      /* value from the file per entry, or NULL */
    int *fline;       /* line of that value */
    FILE *fp;
    char *line;       /* the raw line being parsed (getline buffer) */
    size_t line_cap;
    int lineno;       /* line number of the raw line, kept in step with inih */
    int prev_entry;   /* entry set by the previous handler call, or -1 */
    int prev_line;    /* line of that call */
    int err_line;     /* first error found by us, or 0 */
    char err[EM_ERR_LEN];
} s_parse_t;

static bool s_known_section(const char *section)
{
    for (int i = 0; s_known_sections[i]; i++)
        if (strcmp(section, s_known_sections[i]) == 0)
            return true;
    return false;
}

static bool s_table_has_section(const em_config_entry_t *table, const char *section)
{
    for (const em_config_entry_t *e = table; e->type != EM_CFG_END; e++)
        if (strcmp(e->section, section) == 0)
            return true;
    return false;
}

/* Key comparison treats '-' and '_' as the same character. */
static bool s_key_equal(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a == '-' ? '_' : *a, y = *b == '-' ? '_' : *b;
        if (x != y)
            return false;
    }
    return *a == *b;
}

static void s_set_error(s_parse_t *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_set_error(s_parse_t *p, int line, const char *fmt, ...)
{
    va_list ap;
    if (p->err_line)
        return; /* keep the first */
    p->err_line = line;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
}

/* inih reader: one call per physical line, so our line count matches inih's. */
static char *s_reader(char *str, int num, void *stream)
{
    s_parse_t *p = stream;
    ssize_t len = getline(&p->line, &p->line_cap, p->fp);
    if (len < 0)
        return NULL;
    p->lineno++;
    ssize_t content = len - (p->line[len - 1] == '\n');
    if (content > num - 1)
        s_set_error(p, p->lineno, "line longer than %d characters", num - 1);
    /* Check section headers here, so that an unknown section is reported at its own line
     * even when it holds no keys. */
    const char *c = p->line;
    while (*c == ' ' || *c == '\t')
        c++;
    const char *close = *c == '[' ? strchr(c, ']') : NULL;
    if (close) {
        char name[64];
        size_t n = (size_t)(close - c - 1);
        if (n >= sizeof name)
            n = sizeof name - 1;
        memcpy(name, c + 1, n);
        name[n] = '\0';
        if (!s_known_section(name))
            s_set_error(p, p->lineno, "unknown section [%s]", name);
    }
    if (num <= 0)
        return NULL;
    size_t n = (size_t)len < (size_t)num - 1 ? (size_t)len : (size_t)num - 1;
    memcpy(str, p->line, n);
    str[n] = '\0';
    return str;
}

static int s_handler(void *user, const char *section, const char *name, const char *value)
{
    s_parse_t *p = user;
    int line = p->lineno;

    if (!*section) {
        s_set_error(p, line, "key '%s' outside of any section", name);
        return 0;
    }
    if (!s_known_section(section)) {
        s_set_error(p, line, "unknown section [%s]", section);
        return 0;
    }
    if (!s_table_has_section(p->table, section))
        return 1; /* another program's section */

    for (size_t i = 0; i < p->nentries; i++) {
        const em_config_entry_t *e = &p->table[i];
        if (strcmp(e->section, section) != 0 || !s_key_equal(e->key, name))
            continue;
        /* An indented line right after a key continues that key's value (inih multi-line):
         * the parts are joined with one space. */
        bool continuation = p->prev_entry == (int)i && p->prev_line == line - 1 &&
                            (p->line[0] == ' ' || p->line[0] == '\t');
        char *nv;
        if (continuation && p->fval[i]) {
            size_t a = strlen(p->fval[i]), b = strlen(value);
            nv = malloc(a + b + 2);
            if (nv) {
                memcpy(nv, p->fval[i], a);
                nv[a] = ' ';
                memcpy(nv + a + 1, value, b + 1);
            }
        } else {
            nv = strdup(value);
            p->fline[i] = line;
        }
        if (!nv) {
            s_set_error(p, line, "out of memory");
            return 0;
        }
        free(p->fval[i]);
        p->fval[i] = nv;
        p->prev_entry = (int)i;
        p->prev_line = line;
        return 1;
    }
    s_set_error(p, line, "unknown key '%s' in [%s]", name, section);
    return 0;
}

/* Converts text into the entry's field.  Returns 0, or -1 with a reason in why. */
static int s_assign(const em_config_entry_t *e, void *cfg, const char *text, char *why,
                    size_t whylen)
{
    char *field = (char *)cfg + e->offset;

    switch (e->type) {
    case EM_CFG_STR: {
        char *copy = strdup(text);
        if (!copy) {
            snprintf(why, whylen, "out of memory");
            return -1;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case EM_CFG_INT: {
        char *end;
        errno = 0;
        long v = strtol(text, &end, 10);
        while (end && isspace((unsigned char)*end))
            end++;
        if (errno || end == text || *end || v < INT_MIN || v > INT_MAX) {
            snprintf(why, whylen, "invalid integer '%s'", text);
            return -1;
        }
        *(int *)field = (int)v;
        return 0;
    }
    case EM_CFG_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1", NULL};
        static const char *const no[] = {"false", "no", "off", "0", NULL};
        for (int i = 0; yes[i]; i++) {
            if (strcasecmp(text, yes[i]) == 0) {
                *(bool *)field = true;
                return 0;
            }
            if (strcasecmp(text, no[i]) == 0) {
                *(bool *)field = false;
                return 0;
            }
        }
        snprintf(why, whylen, "invalid boolean '%s' (true/false, yes/no, on/off, 1/0)", text);
        return -1;
    }
    default:
        snprintf(why, whylen, "unknown entry type %d", (int)e->type);
        return -1;
    }
}

/* EMINE_<SECTION>_<KEY>: upper case, '-' and '.' become '_'. */
static void s_env_name(const em_config_entry_t *e, char *out, size_t outlen)
{
    snprintf(out, outlen, "EMINE_%s_%s", e->section, e->key);
    for (char *c = out; *c; c++) {
        if (*c == '-' || *c == '.')
            *c = '_';
        else
            *c = (char)toupper((unsigned char)*c);
    }
}

int em_config_load(const char *path, const em_config_entry_t *table, void *cfg, char *err,
                   size_t errlen)
{
    s_parse_t p;
    int rc = -1;
    char dummy[EM_ERR_LEN];

    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    memset(&p, 0, sizeof p);
    p.path = path;
    p.table = table;
    p.prev_entry = -1;
    while (table[p.nentries].type != EM_CFG_END)
        p.nentries++;
    p.fval = calloc(p.nentries + 1, sizeof *p.fval);
    p.fline = calloc(p.nentries + 1, sizeof *p.fline);
    if (!p.fval || !p.fline) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }

    if (path) {
        p.fp = fopen(path, "r");
        if (!p.fp) {
            snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
            goto done;
        }
        int prc = ini_parse_stream(s_reader, &p, s_handler, &p);
        if (p.err_line && (prc <= 0 || prc >= p.err_line)) {
            snprintf(err, errlen, "%s:%d: %s", path, p.err_line, p.err);
            goto done;
        }
        if (prc > 0) {
            snprintf(err, errlen, "%s:%d: syntax error (expected [section] or key = value)",
                     path, prc);
            goto done;
        }
        if (prc != 0) {
            snprintf(err, errlen, "%s: cannot parse", path);
            goto done;
        }
    }

    for (size_t i = 0; i < p.nentries; i++) {
        const em_config_entry_t *e = &table[i];
        char envname[128], why[EM_ERR_LEN / 2], where[EM_ERR_LEN / 2];
        const char *env, *text;

        s_env_name(e, envname, sizeof envname);
        env = getenv(envname);
        if (env) {
            text = env;
            snprintf(where, sizeof where, "environment %s", envname);
        } else if (p.fval[i]) {
            text = p.fval[i];
            snprintf(where, sizeof where, "%s:%d", path, p.fline[i]);
        } else {
            text = e->dflt ? e->dflt : "";
            snprintf(where, sizeof where, "default");
        }
        if (s_assign(e, cfg, text, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: %s for key '%s' in [%s]", where, why, e->key, e->section);
            goto done;
        }
    }
    rc = 0;

done:
    if (rc != 0)
        em_config_release(table, cfg);
    if (p.fp)
        fclose(p.fp);
    free(p.line);
    if (p.fval)
        for (size_t i = 0; i < p.nentries; i++)
            free(p.fval[i]);
    free(p.fval);
    free(p.fline);
    return rc;
}

void em_config_release(const em_config_entry_t *table, void *cfg)
{
    if (!table || !cfg)
        return;
    for (const em_config_entry_t *e = table; e->type != EM_CFG_END; e++) {
        if (e->type == EM_CFG_STR) {
            char **field = (char **)((char *)cfg + e->offset);
            free(*field);
            *field = NULL;
        }
    }
}

void em_config_dump(const em_config_entry_t *table, const void *cfg, FILE *out)
{
    for (const em_config_entry_t *e = table; e->type != EM_CFG_END; e++) {
        const char *field = (const char *)cfg + e->offset;
        fprintf(out, "[%s] %s = ", e->section, e->key);
        switch (e->type) {
        case EM_CFG_STR: {
            const char *v = *(char *const *)field;
            fputs(v ? v : "", out);
            break;
        }
        case EM_CFG_INT:
            fprintf(out, "%d", *(const int *)field);
            break;
        case EM_CFG_BOOL:
            fputs(*(const bool *)field ? "true" : "false", out);
            break;
        default:
            break;
        }
        fprintf(out, "  # %s (default: %s)\n", e->help ? e->help : "", e->dflt ? e->dflt : "");
    }
}

static void s_usage(const char *prog)
{
    fprintf(stderr, "usage: %s [-c|--config PATH] [--dump-config]\n", prog ? prog : "emine");
}

int em_config_args(int argc, char **argv, const char **path, int *dump)
{
    const char *chosen = NULL;
    const char *prog = argc > 0 ? argv[0] : NULL;

    if (dump)
        *dump = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: option %s needs a path\n", prog ? prog : "emine", a);
                s_usage(prog);
                return -1;
            }
            chosen = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            chosen = a + 9;
        } else if (strcmp(a, "--dump-config") == 0) {
            if (dump)
                *dump = 1;
        } else {
            fprintf(stderr, "%s: unknown argument '%s'\n", prog ? prog : "emine", a);
            s_usage(prog);
            return -1;
        }
    }
    if (!chosen) {
        const char *env = getenv("EMINE_CONFIG");
        if (env && *env)
            chosen = env;
        else if (access("config/emine.conf", R_OK) == 0)
            chosen = "config/emine.conf";
    }
    if (path)
        *path = chosen;
    return 0;
}
