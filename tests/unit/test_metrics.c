/* test_metrics.c - the Prometheus text exposition of counters, gauges and histograms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "em_metrics.h"

static void test_render(void **state)
{
    (void)state;
    em_metrics_t *reg = em_metrics_new("emine_ingest");
    assert_non_null(reg);

    em_metric_t *acc = em_metrics_counter(reg, "events_total", "status=\"accepted\"",
                                          "Events answered, by status");
    em_metric_t *up = em_metrics_gauge(reg, "inflight", NULL, "Events awaiting archive");
    em_metric_t *rej = em_metrics_counter(reg, "events_total", "status=\"rejected\"",
                                          "Events answered, by status");
    double bounds[] = {0.005, 0.1, 1};
    em_metric_t *lat = em_metrics_histogram(reg, "ack_seconds", "path=\"zmq\"",
                                            "Time from receipt to answer", bounds, 3);
    em_metric_t *plain = em_metrics_histogram(reg, "batch_size", NULL, "Events per batch\nline2",
                                              (double[]){10, 100}, 2);
    assert_non_null(acc);
    assert_non_null(rej);
    assert_non_null(up);
    assert_non_null(lat);
    assert_non_null(plain);

    /* Same name and labels: the same series. */
    assert_ptr_equal(em_metrics_counter(reg, "events_total", "status=\"accepted\"", "x"), acc);
    /* Same name, other type: refused. */
    assert_null(em_metrics_gauge(reg, "events_total", NULL, "x"));

    em_metric_add(acc, 3);
    em_metric_add(acc, -1); /* counters never go down */
    em_metric_add(rej, 1);
    em_metric_set(up, 12.5);
    em_metric_add(up, -2);
    em_metric_observe(lat, 0.001);
    em_metric_observe(lat, 0.05);
    em_metric_observe(lat, 0.1); /* le is inclusive */
    em_metric_observe(lat, 7);
    em_metric_observe(plain, 5);

    assert_true(em_metric_value(acc) == 3);
    assert_true(em_metric_value(up) == 10.5);
    assert_true(em_metric_value(lat) == 4);

    char *text = em_metrics_render(reg);
    assert_non_null(text);
    const char *want =
        "# HELP emine_ingest_events_total Events answered, by status\n"
        "# TYPE emine_ingest_events_total counter\n"
        "emine_ingest_events_total{status=\"accepted\"} 3\n"
        "emine_ingest_events_total{status=\"rejected\"} 1\n"
        "# HELP emine_ingest_inflight Events awaiting archive\n"
        "# TYPE emine_ingest_inflight gauge\n"
        "emine_ingest_inflight 10.5\n"
        "# HELP emine_ingest_ack_seconds Time from receipt to answer\n"
        "# TYPE emine_ingest_ack_seconds histogram\n"
        "emine_ingest_ack_seconds_bucket{path=\"zmq\",le=\"0.005\"} 1\n"
        "emine_ingest_ack_seconds_bucket{path=\"zmq\",le=\"0.1\"} 3\n"
        "emine_ingest_ack_seconds_bucket{path=\"zmq\",le=\"1\"} 3\n"
        "emine_ingest_ack_seconds_bucket{path=\"zmq\",le=\"+Inf\"} 4\n"
        "emine_ingest_ack_seconds_sum{path=\"zmq\"} 7.151\n"
        "emine_ingest_ack_seconds_count{path=\"zmq\"} 4\n"
        "# HELP emine_ingest_batch_size Events per batch\\nline2\n"
        "# TYPE emine_ingest_batch_size histogram\n"
        "emine_ingest_batch_size_bucket{le=\"10\"} 1\n"
        "emine_ingest_batch_size_bucket{le=\"100\"} 1\n"
        "emine_ingest_batch_size_bucket{le=\"+Inf\"} 1\n"
        "emine_ingest_batch_size_sum 5\n"
        "emine_ingest_batch_size_count 1\n";
    assert_string_equal(text, want);
    free(text);
    em_metrics_destroy(&reg);
    assert_null(reg);
    em_metrics_destroy(&reg);
}

static void test_numbers(void **state)
{
    (void)state;
    em_metrics_t *reg = em_metrics_new(NULL);
    em_metric_t *g = em_metrics_gauge(reg, "g", NULL, "");
    char *text;

    em_metric_set(g, 0.1);
    text = em_metrics_render(reg);
    assert_non_null(strstr(text, "\ng 0.1\n"));
    free(text);

    em_metric_set(g, 1e21);
    text = em_metrics_render(reg);
    assert_non_null(strstr(text, "\ng 1e+21\n"));
    free(text);

    em_metric_set(g, INFINITY);
    text = em_metrics_render(reg);
    assert_non_null(strstr(text, "\ng +Inf\n"));
    free(text);

    em_metric_set(g, NAN);
    text = em_metrics_render(reg);
    assert_non_null(strstr(text, "\ng NaN\n"));
    free(text);

    em_metric_set(g, 123456789012);
    text = em_metrics_render(reg);
    assert_non_null(strstr(text, "\ng 123456789012\n"));
    free(text);
    em_metrics_destroy(&reg);

    /* An empty registry renders an empty document. */
    reg = em_metrics_new("x");
    text = em_metrics_render(reg);
    assert_string_equal(text, "");
    free(text);
    em_metrics_destroy(&reg);
}

/* Per-object series: clear drops the family's series (not the others), then the current
 * objects are registered again. */
static void test_clear(void **state)
{
    (void)state;
    em_metrics_t *m = em_metrics_new("emine_notify");
    em_metric_set(em_metrics_gauge(m, "lag", "subscription=\"a\"", "lag"), 3);
    em_metric_set(em_metrics_gauge(m, "lag", "subscription=\"b\"", "lag"), 4);
    em_metric_set(em_metrics_gauge(m, "head", NULL, "head"), 9);
    em_metrics_clear(m, "lag");
    em_metric_set(em_metrics_gauge(m, "lag", "subscription=\"b\"", "lag"), 1);
    char *text = em_metrics_render(m);
    assert_null(strstr(text, "subscription=\"a\""));
    assert_non_null(strstr(text, "emine_notify_lag{subscription=\"b\"} 1\n"));
    assert_non_null(strstr(text, "emine_notify_head 9\n"));
    free(text);
    em_metrics_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
