/* tail.c - `eminectl tail`: follows notify's committed-event stream (services/PROTOCOL.md,
 * Stream protocol) and prints one JSON line per event, `{"seq":N,"event":{…}}`, in seq order.
 * Credit is granted in chunks; after a reconnect (a notify restart) it re-subscribes after the
 * last seq printed, so the output has no gap and no duplicate.  The subscription carries an
 * organisation API key (--key, else $EMINE_KEY): notify sends only the events that
 * organisation may see (an operator organisation sees every tier), narrowed by --type and
 * --filter.  Exit 0 after --count events or --timeout-ms without an event (1 if notify was
 * never reached, or refused the key or the filter), 2 on a usage error. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "em_bus.h"
#include "eminectl.h"
#include "em_signal.h"
#include "em_util.h"

#define TAIL_CHUNK 256          /* credit granted at a time */
#define TAIL_KEEPALIVE_MS 20000 /* a silent stream is probed this often */
#define TAIL_RESUB_DELAY_MS 1000
#define TAIL_MAX_TYPES 64

typedef struct {
    void *ctx;
    void *dealer;
    void *mon;
    int64_t last;        /* last seq printed */
    int64_t printed;     /* events printed */
    int64_t count;       /* stop after this many (-1: no limit) */
    int64_t outstanding; /* credit granted and not yet used, as far as we know */
    int64_t last_send;   /* monotonic ms of the last message sent */
    int64_t resub_at;    /* re-subscribe at this time (0: not scheduled) */
    int connects;        /* connections made so far */
    const char *key;     /* organisation API key */
    json_t *opts;        /* types / filters of the subscription (owned) */
    int fatal;           /* notify refused the key or the subscription: stop */
} tail_t;

static void s_usage(FILE *out)
{
    fprintf(out, "usage: eminectl tail [--key KEY] [--endpoint EP] [--from SEQ] [--count N] "
                 "[--timeout-ms T] [--type T]... [--filter JSON] [--server-key KEY]\n"
                 "  --key KEY        organisation API key (env EMINE_KEY); the stream holds what "
                 "that\n"
                 "                   organisation may see (an operator organisation: everything)\n"
                 "  --endpoint EP    notify stream endpoint (env EMINE_NOTIFY_ZMQ, default "
                 "tcp://127.0.0.1:7004)\n"
                 "  --from SEQ       print the events after SEQ (default 0: everything)\n"
                 "  --count N        stop after N events\n"
                 "  --timeout-ms T   stop when no event arrived for T ms\n"
                 "  --type T         only events of type T (repeatable)\n"
                 "  --filter JSON    CloudEvents filters, e.g. '[{\"prefix\":{\"source\":\"/pk/ba\"}}]'\n"
                 "  --server-key KEY notify's CURVE public key (Z85; env EMINE_CURVE_SERVER_KEY):\n"
                 "                   encrypt with CurveZMQ (an ephemeral client keypair)\n");
}

/* The credit to ask for now: a chunk, but never past --count. */
static int64_t s_want(const tail_t *t)
{
    int64_t want = TAIL_CHUNK;
    if (t->count >= 0) {
        int64_t left = t->count - t->printed - t->outstanding;
        if (left < want)
            want = left;
    }
    return want < 0 ? 0 : want;
}

static int s_send(tail_t *t, const char *text)
{
    t->last_send = em_mono_ms();
    return zmq_send(t->dealer, text, strlen(text), ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

static void s_subscribe(tail_t *t)
{
    t->outstanding = 0;
    int64_t credit = s_want(t);
    json_t *sub = json_deep_copy(t->opts);
    json_object_set_new(sub, "after", json_integer(t->last));
    json_object_set_new(sub, "key", json_string(t->key));
    json_t *msg = json_pack("{s:o,s:I}", "subscribe", sub, "credit", (json_int_t)credit);
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    if (text && s_send(t, text) == 0)
        t->outstanding = credit;
    free(text);
    json_decref(msg);
    t->resub_at = 0;
}

/* Grants more credit when less than half a chunk is left. */
static void s_grant(tail_t *t)
{
    if (t->outstanding >= TAIL_CHUNK / 2)
        return;
    int64_t credit = s_want(t);
    if (credit <= 0)
        return;
    char buf[64];
    snprintf(buf, sizeof buf, "{\"credit\":%" PRId64 "}", credit);
    if (s_send(t, buf) == 0)
        t->outstanding += credit;
}

/* Handles one frame from notify.  Returns 0, or -1 when stdout failed. */
static int s_handle_frame(tail_t *t, const char *buf, size_t len)
{
    static const char prefix[] = "{\"seq\":";
    if (len > sizeof prefix - 1 && memcmp(buf, prefix, sizeof prefix - 1) == 0) {
        char num[24];
        size_t i = 0, p = sizeof prefix - 1;
        while (p < len && i < sizeof num - 1 && buf[p] >= '0' && buf[p] <= '9')
            num[i++] = buf[p++];
        num[i] = '\0';
        int64_t seq = i ? strtoll(num, NULL, 10) : -1;
        if (t->outstanding > 0)
            t->outstanding--;
        if (seq <= t->last)
            return 0; /* already printed (a re-subscription overlapping the old one) */
        if (t->count >= 0 && t->printed >= t->count)
            return 0;
        if (fwrite(buf, 1, len, stdout) != len || fputc('\n', stdout) == EOF ||
            fflush(stdout) != 0)
            return -1;
        t->last = seq;
        t->printed++;
        return 0;
    }
    json_error_t jerr;
    json_t *o = json_loadb(buf, len, 0, &jerr);
    const char *err = json_string_value(json_object_get(o, "error"));
    json_t *retry = json_object_get(o, "retry_ms");
    if (err && strcmp(err, "unauthorized") == 0)
        fprintf(stderr, "eminectl tail: notify refused the key (unknown or revoked; see "
                        "`eminectl subs key-create`)\n");
    else
        fprintf(stderr, "eminectl tail: notify says: %s\n", err ? err : "(unexpected message)");
    /* Forgotten or not known (a notify restart): subscribe again at once; busy (too many
     * clients, PostgreSQL unavailable): after a pause; a refused key or subscription: stop. */
    if (err && strcmp(err, "not subscribed") == 0)
        s_subscribe(t);
    else if (err && (strcmp(err, "unauthorized") == 0 || strncmp(err, "subscribe.", 10) == 0))
        t->fatal = 1;
    else if (!t->resub_at)
        t->resub_at = em_mono_ms() + (json_is_integer(retry) && json_integer_value(retry) > 0
                                          ? json_integer_value(retry)
                                          : TAIL_RESUB_DELAY_MS);
    json_decref(o);
    return 0;
}

static void s_handle_monitor(tail_t *t, const char *endpoint)
{
    for (int event; (event = em_bus_monitor_read(t->mon)) >= 0;) {
        if (event == ZMQ_EVENT_CONNECTED) {
            if (t->connects++ > 0) {
                fprintf(stderr, "eminectl tail: reconnected to %s, resuming after seq %" PRId64
                                "\n", endpoint, t->last);
                s_subscribe(t);
            }
        } else if (event == ZMQ_EVENT_DISCONNECTED) {
            fprintf(stderr, "eminectl tail: disconnected from %s\n", endpoint);
        }
    }
}

static int s_parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0)
        return -1;
    *out = v;
    return 0;
}

int cmd_tail(int argc, char **argv)
{
    const char *endpoint = ctl_env("EMINE_NOTIFY_ZMQ", "tcp://127.0.0.1:7004");
    const char *key = getenv("EMINE_KEY");
    const char *server_key = ctl_env("EMINE_CURVE_SERVER_KEY", NULL);
    int64_t from = 0, count = -1, timeout_ms = -1;
    json_t *opts = json_object(), *types = json_array();

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            s_usage(stdout);
            return 0;
        }
        const char *names[] = {"--endpoint", "--from",  "--count",     "--timeout-ms",
                               "--key",      "--type",  "--filter",    "--server-key"};
        int which = -1;
        const char *val = NULL;
        for (int k = 0; k < 8; k++) {
            size_t n = strlen(names[k]);
            if (strcmp(a, names[k]) == 0) {
                which = k;
                if (i + 1 < argc)
                    val = argv[++i];
            } else if (strncmp(a, names[k], n) == 0 && a[n] == '=') {
                which = k;
                val = a + n + 1;
            }
        }
        if (which < 0 || !val) {
            fprintf(stderr, "eminectl tail: %s %s\n", which < 0 ? "unknown option" : "missing value for", a);
            s_usage(stderr);
            json_decref(opts);
            json_decref(types);
            return 2;
        }
        int bad = 0;
        if (which == 4) {
            key = val;
            continue;
        }
        if (which == 7) {
            server_key = val;
            continue;
        }
        if (which == 5) {
            if (!*val || json_array_size(types) >= TAIL_MAX_TYPES) {
                fprintf(stderr, "eminectl tail: --type needs a type (at most %d)\n",
                        TAIL_MAX_TYPES);
                json_decref(opts);
                json_decref(types);
                return 2;
            }
            json_array_append_new(types, json_string(val));
            continue;
        }
        if (which == 6) {
            json_error_t jerr;
            json_t *f = json_loads(val, JSON_DECODE_ANY, &jerr);
            if (!json_is_array(f)) {
                fprintf(stderr, "eminectl tail: --filter needs a JSON array of filter "
                                "expressions%s%s\n", f ? "" : ": ", f ? "" : jerr.text);
                json_decref(f);
                json_decref(opts);
                json_decref(types);
                return 2;
            }
            json_object_set_new(opts, "filters", f);
            continue;
        }
        if (which == 0)
            endpoint = val;
        else if (which == 1)
            bad = s_parse_i64(val, &from);
        else if (which == 2)
            bad = s_parse_i64(val, &count);
        else
            bad = s_parse_i64(val, &timeout_ms);
        if (bad) {
            fprintf(stderr, "eminectl tail: %s needs a non-negative integer, got '%s'\n",
                    names[which], val);
            json_decref(opts);
            json_decref(types);
            return 2;
        }
    }
    if (json_array_size(types) > 0)
        json_object_set(opts, "types", types);
    json_decref(types);
    if (!key || !*key) {
        fprintf(stderr, "eminectl tail: no API key: pass --key KEY or set EMINE_KEY (an "
                        "organisation key from `eminectl subs key-create ORG`; an operator "
                        "organisation sees every event)\n");
        json_decref(opts);
        return 2;
    }
    if (count == 0) {
        json_decref(opts);
        return 0;
    }

    em_signal_install();
    tail_t t = {.last = from, .count = count, .key = key, .opts = opts};
    int rc = 1, zero = 0, ivl = 100, ivl_max = 2000;
    t.ctx = zmq_ctx_new();
    t.dealer = t.ctx ? zmq_socket(t.ctx, ZMQ_DEALER) : NULL;
    if (!t.dealer) {
        fprintf(stderr, "eminectl tail: zmq: %s\n", zmq_strerror(errno));
        goto done;
    }
    zmq_setsockopt(t.dealer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(t.dealer, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(t.dealer, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    if (server_key) {
        char err[256];
        if (em_bus_curve_client(t.dealer, server_key, NULL, NULL, err, sizeof err) != 0) {
            fprintf(stderr, "eminectl tail: --server-key: %s\n", err);
            rc = 2;
            goto done;
        }
    }
    char monep[64];
    snprintf(monep, sizeof monep, "inproc://tail-monitor-%p", (void *)&t);
    if (zmq_socket_monitor(t.dealer, monep, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0 ||
        !(t.mon = zmq_socket(t.ctx, ZMQ_PAIR)) || zmq_connect(t.mon, monep) != 0) {
        fprintf(stderr, "eminectl tail: zmq monitor: %s\n", zmq_strerror(errno));
        goto done;
    }
    zmq_setsockopt(t.mon, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(t.dealer, endpoint) != 0) {
        fprintf(stderr, "eminectl tail: connect %s: %s\n", endpoint, zmq_strerror(errno));
        goto done;
    }
    s_subscribe(&t); /* queued until the connection is up */

    int64_t last_event = em_mono_ms();
    rc = 0;
    while (!em_signal_interrupted() && !t.fatal && (t.count < 0 || t.printed < t.count)) {
        int64_t now = em_mono_ms();
        long wait = 1000;
        if (timeout_ms >= 0) {
            int64_t left = last_event + timeout_ms - now;
            if (left <= 0) {
                if (t.connects == 0) {
                    fprintf(stderr, "eminectl tail: no connection to %s within %" PRId64
                                    " ms\n", endpoint, timeout_ms);
                    rc = 1;
                }
                break;
            }
            if (left < wait)
                wait = (long)left;
        }
        zmq_pollitem_t items[] = {{t.dealer, 0, ZMQ_POLLIN, 0}, {t.mon, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, wait) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "eminectl tail: zmq_poll: %s\n", zmq_strerror(errno));
            rc = 1;
            break;
        }
        if (items[1].revents & ZMQ_POLLIN)
            s_handle_monitor(&t, endpoint);
        if (items[0].revents & ZMQ_POLLIN) {
            for (int n = 0; n < 1000; n++) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, t.dealer, ZMQ_DONTWAIT) < 0) {
                    zmq_msg_close(&m);
                    break;
                }
                int64_t before = t.printed;
                int bad = s_handle_frame(&t, zmq_msg_data(&m), zmq_msg_size(&m));
                zmq_msg_close(&m);
                if (bad) {
                    if (errno != EPIPE)
                        fprintf(stderr, "eminectl tail: stdout: %s\n", strerror(errno));
                    rc = errno == EPIPE ? 0 : 1;
                    goto done;
                }
                if (t.printed > before)
                    last_event = em_mono_ms();
                if (t.count >= 0 && t.printed >= t.count)
                    break;
            }
        }
        now = em_mono_ms();
        if (t.resub_at && now >= t.resub_at)
            s_subscribe(&t);
        s_grant(&t);
        if (now - t.last_send >= TAIL_KEEPALIVE_MS)
            (void)s_send(&t, "{\"credit\":0}"); /* answered "not subscribed" if forgotten */
    }
done:
    if (t.dealer)
        zmq_socket_monitor(t.dealer, NULL, 0);
    if (t.mon)
        zmq_close(t.mon);
    if (t.dealer)
        zmq_close(t.dealer);
    if (t.ctx)
        zmq_ctx_term(t.ctx);
    json_decref(t.opts);
    return t.fatal ? 1 : rc;
}
