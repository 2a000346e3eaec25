/* em_metrics.h - counters, gauges and histograms rendered in the Prometheus text format.
 * Single-threaded: a service owns one registry and touches it from its poll loop only. */
#ifndef EM_METRICS_H
#define EM_METRICS_H
#include <stddef.h>

typedef struct em_metrics em_metrics_t;
typedef struct em_metric em_metric_t;

em_metrics_t *em_metrics_new(const char *prefix /* e.g. "emine_ingest" */);
void em_metrics_destroy(em_metrics_t **self_p);

/* Registers (or returns the existing) series.  labels is NULL or the inside of the braces,
 * e.g. "status=\"accepted\"".  The registry owns the returned pointer. */
em_metric_t *em_metrics_counter(em_metrics_t *self, const char *name, const char *labels,
                                const char *help);
em_metric_t *em_metrics_gauge(em_metrics_t *self, const char *name, const char *labels,
                              const char *help);
/* bounds: ascending upper bounds (seconds or counts), +Inf is implicit. */
em_metric_t *em_metrics_histogram(em_metrics_t *self, const char *name, const char *labels,
                                  const char *help, const double *bounds, size_t nbounds);

void em_metric_add(em_metric_t *m, double v); /* counter/gauge */
void em_metric_set(em_metric_t *m, double v); /* gauge */
void em_metric_observe(em_metric_t *m, double v); /* histogram */
double em_metric_value(const em_metric_t *m); /* counter/gauge value, histogram count */

/* Removes every series of the family `name` (for per-object series whose objects come and go:
 * clear, then register the current ones).  Pointers to those series become invalid. */
void em_metrics_clear(em_metrics_t *self, const char *name);

/* Caller owns return value (free). */
char *em_metrics_render(const em_metrics_t *self);

#endif
