/* deliver.h - webhook delivery of committed events to subscriptions (libcurl multi, driven by
 * notify's zmq_poll loop).
 *
 * Per active subscription, in seq order and one at a time: events after the subscription's
 * cursor are read from PostgreSQL; an event is delivered when
 * em_subscription_matches(organisation, types, filters, domain, event) holds (visibility
 * first: no filter widens it) and skipped otherwise.  A delivery is an HTTP POST of the
 * archived CloudEvent (structured mode) with Standard Webhooks headers: webhook-id
 * "evt_<seq>" (stable across retries and restarts), webhook-timestamp (now) and
 * webhook-signature "v1,<HMAC-SHA256>" under the subscription's secret.  The body carries,
 * besides the archived attributes, the human summaries rendered from the templates
 * (em_template.h) in the subscription's languages and time zone, as string extension
 * attributes: `summary` and `summarylang` (the first language), and `summary<lang>` for each
 * language (summaryen, summaryzhhans, summaryur); see services/PROTOCOL.md.  The templates
 * are loaded by notify_deliver_new from $EMINE_NOTIFY_TEMPLATES, else config/templates (a bad
 * set is an error), and again on SIGHUP (a bad set is logged and the old one kept).
 *
 *   2xx            delivered: the cursor moves past the event.
 *   410            the subscription is disabled (status_reason says why); nothing more is sent.
 *   other / error  retried after retry_ms[attempt] (±20 % jitter; at least Retry-After when
 *                  the sink sent one); when the schedule is exhausted the event is written to
 *                  delivery_dead_letters and the cursor moves on.
 *   open circuit   after breaker_failures consecutive failed attempts (transport errors, 5xx,
 *                  429) to one endpoint (scheme://host:port), nothing is sent to it for
 *                  breaker_open_ms; then one probe: success closes, failure re-opens.  Waiting
 *                  on an open circuit spends no attempt of the retry schedule.
 *   refused sink   a sink that resolves to a loopback, private, link-local, CGNAT, multicast
 *                  or reserved address is not connected to unless allow_private; the event is
 *                  dead-lettered at once (no retries).
 * Redrive: a dead letter whose redriven_at is set (eminectl subs redrive) is sent once more,
 * out of band of the in-order stream and after visibility and filters are checked again;
 * delivered, its row is deleted; failed, redriven_at is cleared and attempts/last_* updated.
 * A replay (eminectl subs replay) is the same: rows with attempts 0 and redriven_at set, one
 * per event already behind the cursor; those the subscription may not see or does not select
 * are dropped.  A subscription's redrives go out one at a time, in seq order.
 * Cursors are persisted every flush_ms and by notify_deliver_flush (at least once: a crash
 * re-sends from the persisted cursor; receivers dedupe on webhook-id).  Subscriptions are
 * re-read every reload_ms.  Redirects are not followed and proxies from the environment are
 * not used. */
#ifndef NOTIFY_DELIVER_H
#define NOTIFY_DELIVER_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <zmq.h>

#include "em_metrics.h"

#define DELIVER_MAX_FDS 256 /* sockets polled at once (also the bound of deliveries in flight) */

typedef struct {
    bool allow_private;   /* deliver to loopback/private sinks (tests, local stacks) */
    int timeout_ms;       /* whole request */
    const char *retry_ms; /* comma-separated delays, e.g. "5000,30000,120000" */
    int max_inflight;     /* deliveries in flight at once (<= DELIVER_MAX_FDS) */
    int reload_ms;        /* re-read subscriptions this often */
    int flush_ms;         /* persist moved cursors this often */
    int batch;            /* events read per page for one subscription */
    int breaker_failures; /* consecutive failures that open an endpoint's circuit (0: off) */
    int breaker_open_ms;  /* how long it stays open before one probe */
    const char *templates; /* folder of the summary templates; NULL: "config/templates" */
} notify_deliver_cfg_t;

typedef struct notify_deliver notify_deliver_t;

/* Copies dsn and cfg; metrics (may be NULL) receives counters.  Returns NULL with err filled
 * (bad retry schedule, templates that do not load, curl initialisation). */
notify_deliver_t *notify_deliver_new(const char *dsn, const notify_deliver_cfg_t *cfg,
                                     em_metrics_t *metrics, char *err, size_t errlen);
/* Persists cursors (best effort), aborts deliveries in flight, frees everything. */
void notify_deliver_destroy(notify_deliver_t **self_p);

/* Fills items with the sockets libcurl waits on; returns how many (<= max). */
int notify_deliver_pollitems(notify_deliver_t *self, zmq_pollitem_t *items, int max);
/* Milliseconds until notify_deliver_run must be called even without socket activity (0 when
 * there is work now), given the stream head (every event <= head is committed). */
long notify_deliver_timeout_ms(notify_deliver_t *self, int64_t head);
/* Handles the revents of the n items notify_deliver_pollitems filled, timers, completions,
 * reloads and starts the deliveries that are due. */
void notify_deliver_run(notify_deliver_t *self, const zmq_pollitem_t *items, int n,
                        int64_t head);
/* Persists every moved cursor now.  Returns 0 or -1 (PostgreSQL unusable). */
int notify_deliver_flush(notify_deliver_t *self);

/* 1 when a sink at this address is refused without allow_private, else 0. */
int notify_deliver_addr_refused(const struct sockaddr *sa);

/* Subscriptions currently handled and deliveries in flight (for tests). */
/* Sets, in m, the gauges subscription_lag_events{subscription} (events up to head not yet
 * delivered or dead-lettered, for each subscription this process serves) and
 * webhook_inflight. */
void notify_deliver_metrics(const notify_deliver_t *self, em_metrics_t *m, int64_t head);
int notify_deliver_sub_count(const notify_deliver_t *self);
/* Pages of events read from PostgreSQL so far (subscriptions that keep up share them). */
int64_t notify_deliver_pages_read(const notify_deliver_t *self);
int notify_deliver_inflight(const notify_deliver_t *self);

#endif
