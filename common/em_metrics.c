/* em_metrics.c - a registry of counters, gauges and histograms rendered in the Prometheus
 * text exposition format 0.0.4.  Single-threaded: the owner's poll loop touches it. */
#include "em_metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { S_COUNTER, S_GAUGE, S_HISTOGRAM } s_kind_t;

struct em_metric {
    s_kind_t kind;
    char *labels;         /* inside of the braces, or NULL */
    double value;         /* counter/gauge */
    double *bounds;       /* histogram upper bounds, ascending */
    unsigned long long *counts; /* per bound, not cumulative; counts[nbounds] is +Inf */
    size_t nbounds;
    double sum;
    unsigned long long count;
};

typedef struct {
    char *name;           /* full name: prefix_name */
    char *help;
    s_kind_t kind;
    em_metric_t **series;
    size_t nseries;
} s_family_t;

struct em_metrics {
    char *prefix;
    s_family_t *families; /* in registration order */
    size_t nfamilies;
};

em_metrics_t *em_metrics_new(const char *prefix)
{
    em_metrics_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->prefix = strdup(prefix ? prefix : "");
    if (!self->prefix) {
        free(self);
        return NULL;
    }
    return self;
}

static void s_metric_free(em_metric_t *m)
{
    if (m) {
        free(m->labels);
        free(m->bounds);
        free(m->counts);
        free(m);
    }
}

void em_metrics_destroy(em_metrics_t **self_p)
{
    if (self_p && *self_p) {
        em_metrics_t *self = *self_p;
        for (size_t f = 0; f < self->nfamilies; f++) {
            s_family_t *fam = &self->families[f];
            for (size_t i = 0; i < fam->nseries; i++)
                s_metric_free(fam->series[i]);
            free(fam->series);
            free(fam->name);
            free(fam->help);
        }
        free(self->families);
        free(self->prefix);
        free(self);
        *self_p = NULL;
    }
}

static bool s_same_labels(const char *a, const char *b)
{
    if (!a || !*a)
        return !b || !*b;
    return b && strcmp(a, b) == 0;
}

/* Finds or creates the series; NULL when name is registered with another type. */
static em_metric_t *s_series(em_metrics_t *self, s_kind_t kind, const char *name,
                             const char *labels, const char *help, const double *bounds,
                             size_t nbounds)
{
    s_family_t *fam = NULL;
    char *full;
    size_t flen;

    if (!self || !name)
        return NULL;
    flen = strlen(self->prefix) + strlen(name) + 2;
    full = malloc(flen);
    if (!full)
        return NULL;
    if (*self->prefix)
        snprintf(full, flen, "%s_%s", self->prefix, name);
    else
        snprintf(full, flen, "%s", name);

    for (size_t f = 0; f < self->nfamilies; f++) {
        if (strcmp(self->families[f].name, full) == 0) {
            fam = &self->families[f];
            break;
        }
    }
    if (fam) {
        free(full);
        if (fam->kind != kind)
            return NULL;
        for (size_t i = 0; i < fam->nseries; i++)
            if (s_same_labels(fam->series[i]->labels, labels))
                return fam->series[i];
    } else {
        s_family_t *grown = realloc(self->families, (self->nfamilies + 1) * sizeof *grown);
        if (!grown) {
            free(full);
            return NULL;
        }
        self->families = grown;
        fam = &self->families[self->nfamilies];
        memset(fam, 0, sizeof *fam);
        fam->name = full;
        fam->help = strdup(help ? help : "");
        fam->kind = kind;
        if (!fam->help) {
            free(full);
            return NULL;
        }
        self->nfamilies++;
    }

    em_metric_t *m = calloc(1, sizeof *m);
    em_metric_t **series = realloc(fam->series, (fam->nseries + 1) * sizeof *series);
    if (!m || !series) {
        free(m);
        if (series)
            fam->series = series;
        return NULL;
    }
    fam->series = series;
    m->kind = kind;
    if (labels && *labels && !(m->labels = strdup(labels)))
        goto fail;
    if (kind == S_HISTOGRAM) {
        m->nbounds = nbounds;
        m->bounds = malloc((nbounds ? nbounds : 1) * sizeof *m->bounds);
        m->counts = calloc(nbounds + 1, sizeof *m->counts);
        if (!m->bounds || !m->counts)
            goto fail;
        if (nbounds)
            memcpy(m->bounds, bounds, nbounds * sizeof *bounds);
    }
    fam->series[fam->nseries++] = m;
    return m;
fail:
    s_metric_free(m);
    return NULL;
}

em_metric_t *em_metrics_counter(em_metrics_t *self, const char *name, const char *labels,
                                const char *help)
{
    return s_series(self, S_COUNTER, name, labels, help, NULL, 0);
}

em_metric_t *em_metrics_gauge(em_metrics_t *self, const char *name, const char *labels,
                              const char *help)
{
    return s_series(self, S_GAUGE, name, labels, help, NULL, 0);
}

em_metric_t *em_metrics_histogram(em_metrics_t *self, const char *name, const char *labels,
                                  const char *help, const double *bounds, size_t nbounds)
{
    if (nbounds && !bounds)
        return NULL;
    return s_series(self, S_HISTOGRAM, name, labels, help, bounds, nbounds);
}

void em_metric_add(em_metric_t *m, double v)
{
    if (!m || m->kind == S_HISTOGRAM)
        return;
    if (m->kind == S_COUNTER && !(v >= 0))
        return; /* counters only go up */
    m->value += v;
}

void em_metric_set(em_metric_t *m, double v)
{
    if (m && m->kind == S_GAUGE)
        m->value = v;
}

void em_metric_observe(em_metric_t *m, double v)
{
    size_t i;
    if (!m || m->kind != S_HISTOGRAM)
        return;
    for (i = 0; i < m->nbounds; i++)
        if (v <= m->bounds[i])
            break;
    m->counts[i]++;
    m->sum += v;
    m->count++;
}

double em_metric_value(const em_metric_t *m)
{
    if (!m)
        return 0;
    return m->kind == S_HISTOGRAM ? (double)m->count : m->value;
}

/* A growable output string. */
typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} s_out_t;

static void s_printf(s_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_printf(s_out_t *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->failed = 1;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
}

/* Shortest text that reads back as the same double; Prometheus spellings for the rest. */
static const char *s_num(double v, char *buf, size_t len)
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

/* HELP text escapes backslash and newline. */
static void s_help(s_out_t *o, const char *help)
{
    for (const char *c = help; *c; c++) {
        if (*c == '\\')
            s_printf(o, "\\\\");
        else if (*c == '\n')
            s_printf(o, "\\n");
        else
            s_printf(o, "%c", *c);
    }
}

static void s_render_series(s_out_t *o, const s_family_t *fam, const em_metric_t *m)
{
    char b1[40], b2[40];
    const char *lb = m->labels ? m->labels : "";
    const char *sep = m->labels ? "," : "";

    if (m->kind != S_HISTOGRAM) {
        if (m->labels)
            s_printf(o, "%s{%s} %s\n", fam->name, lb, s_num(m->value, b1, sizeof b1));
        else
            s_printf(o, "%s %s\n", fam->name, s_num(m->value, b1, sizeof b1));
        return;
    }
    unsigned long long cum = 0;
    for (size_t i = 0; i <= m->nbounds; i++) {
        cum += m->counts[i];
        const char *le = i < m->nbounds ? s_num(m->bounds[i], b1, sizeof b1) : "+Inf";
        s_printf(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", fam->name, lb, sep, le, cum);
    }
    if (m->labels) {
        s_printf(o, "%s_sum{%s} %s\n", fam->name, lb, s_num(m->sum, b2, sizeof b2));
        s_printf(o, "%s_count{%s} %llu\n", fam->name, lb, m->count);
    } else {
        s_printf(o, "%s_sum %s\n", fam->name, s_num(m->sum, b2, sizeof b2));
        s_printf(o, "%s_count %llu\n", fam->name, m->count);
    }
}

char *em_metrics_render(const em_metrics_t *self)
{
    static const char *const kinds[] = {"counter", "gauge", "histogram"};
    s_out_t o = {.p = malloc(1024), .len = 0, .cap = 1024, .failed = 0};

    if (!o.p)
        return NULL;
    o.p[0] = '\0';
    for (size_t f = 0; self && f < self->nfamilies; f++) {
        const s_family_t *fam = &self->families[f];
        s_printf(&o, "# HELP %s ", fam->name);
        s_help(&o, fam->help);
        s_printf(&o, "\n# TYPE %s %s\n", fam->name, kinds[fam->kind]);
        for (size_t i = 0; i < fam->nseries; i++)
            s_render_series(&o, fam, fam->series[i]);
    }
    if (o.failed) {
        free(o.p);
        return NULL;
    }
    return o.p;
}

void em_metrics_clear(em_metrics_t *self, const char *name)
{
    size_t plen = strlen(self->prefix);
    for (size_t f = 0; f < self->nfamilies; f++) {
        s_family_t *fam = &self->families[f];
        const char *n = fam->name;
        if (plen && strncmp(n, self->prefix, plen) == 0 && n[plen] == '_')
            n += plen + 1;
        if (strcmp(n, name) != 0)
            continue;
        for (size_t i = 0; i < fam->nseries; i++)
            s_metric_free(fam->series[i]);
        fam->nseries = 0;
    }
}
