/* publish.c - eminectl publish: sends CloudEvents to ingest with many requests in flight and
 * re-sends the same bytes when an answer does not come in time or says busy, so that a
 * restart of any service loses nothing (retries are safe: ingest answers duplicates). */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "em_bus.h"
#include "em_json.h"
#include "em_util.h"
#include "eminectl.h"

typedef struct {
    char *raw;        /* the event's own text */
    size_t len;
    char *status;     /* final status, NULL while unanswered */
    long long seq;
    json_t *errors;   /* errors of a rejection (owned) */
    char *file;       /* --raw: the file the bytes came from */
    json_t *reply;    /* --raw: the whole answer */
} pub_event_t;

typedef struct {
    size_t first, n;    /* events [first, first+n) */
    char *payload;      /* bytes sent: one event or an array */
    size_t len;
    int attempts;
    int64_t sent_ms;    /* last send (monotonic); 0 = waiting to be (re)sent */
    int64_t not_before; /* backoff after busy */
    bool done;
    bool inflight;
} pub_req_t;

typedef struct {
    pub_event_t *events;
    size_t nevents, cap;
    bool raw; /* each file is sent as it is, in one request */
} pub_input_t;

static void s_add_event(pub_input_t *in, const char *raw, size_t len)
{
    if (in->nevents == in->cap) {
        in->cap = in->cap ? in->cap * 2 : 256;
        in->events = realloc(in->events, in->cap * sizeof *in->events);
    }
    pub_event_t *e = &in->events[in->nevents++];
    memset(e, 0, sizeof *e);
    e->raw = malloc(len + 1);
    memcpy(e->raw, raw, len);
    e->raw[len] = '\0';
    e->len = len;
}

static void s_slice(void *arg, size_t index, const char *start, size_t len)
{
    (void)index;
    s_add_event(arg, start, len);
}

static char *s_read_all(FILE *f, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    *len = n;
    return buf;
}

/* A file holds one event, an array of events, or one event per line (NDJSON).  Events
 * keep the bytes they were written with.  Returns 0, or -1 with a message printed. */
static int s_load(pub_input_t *in, const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "eminectl publish: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t len;
    char *buf = s_read_all(f, &len);
    if (f != stdin)
        fclose(f);
    if (in->raw) {
        s_add_event(in, buf, len);
        in->events[in->nevents - 1].file = strdup(path);
        free(buf);
        return 0;
    }
    json_t *root = json_loadb(buf, len, 0, NULL);
    if (json_is_array(root)) {
        em_json_split_array(buf, len, s_slice, in);
    } else if (json_is_object(root)) {
        s_add_event(in, buf, len);
    } else {
        /* NDJSON: every non-blank line is sent as it is (ingest judges it). */
        size_t start = 0;
        for (size_t i = 0; i <= len; i++) {
            if (i == len || buf[i] == '\n') {
                size_t a = start, b = i;
                while (a < b && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r'))
                    a++;
                while (b > a && (buf[b - 1] == ' ' || buf[b - 1] == '\t' || buf[b - 1] == '\r'))
                    b--;
                if (b > a)
                    s_add_event(in, buf + a, b - a);
                start = i + 1;
            }
        }
    }
    json_decref(root);
    free(buf);
    return 0;
}

static void s_build_payload(pub_input_t *in, pub_req_t *r, bool as_batch)
{
    if (!as_batch) {
        r->payload = in->events[r->first].raw;
        r->len = in->events[r->first].len;
        return;
    }
    size_t total = 2;
    for (size_t i = 0; i < r->n; i++)
        total += in->events[r->first + i].len + 1;
    r->payload = malloc(total + 1);
    size_t off = 0;
    r->payload[off++] = '[';
    for (size_t i = 0; i < r->n; i++) {
        if (i)
            r->payload[off++] = ',';
        memcpy(r->payload + off, in->events[r->first + i].raw, in->events[r->first + i].len);
        off += in->events[r->first + i].len;
    }
    r->payload[off++] = ']';
    r->payload[off] = '\0';
    r->len = off;
}

static void s_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Applies one answer (a reply body) to request r.  Returns true when r is finished, false
 * when it must be re-sent (busy). */
static bool s_apply(pub_input_t *in, pub_req_t *r, const char *text, size_t len)
{
    json_t *body = json_loadb(text, len, 0, NULL);
    if (in->events[r->first].file) {
        json_decref(in->events[r->first].reply);
        in->events[r->first].reply = json_incref(body);
    }
    json_t *results = json_object_get(body, "results");
    const char *top = json_string_value(json_object_get(body, "status"));
    bool finished = true;

    if (json_is_object(body) && !json_object_get(body, "results") &&
        json_object_get(body, "status")) {
        /* HTTP single-event answer: the result object itself. */
        results = json_pack("[O]", body);
    } else {
        json_incref(results);
    }
    if (top && strcmp(top, "busy") == 0) {
        finished = false;
    } else if (top && json_array_size(results) == 0) {
        /* The request as a whole was rejected (not JSON, too large, ...). */
        for (size_t i = 0; i < r->n; i++) {
            pub_event_t *e = &in->events[r->first + i];
            e->status = strdup(top);
            e->errors = json_incref(json_object_get(body, "errors"));
        }
    } else {
        for (size_t i = 0; i < r->n; i++) {
            json_t *res = json_array_get(results, i);
            const char *st = json_string_value(json_object_get(res, "status"));
            if (!st || strcmp(st, "busy") == 0) {
                finished = false;
                continue;
            }
            pub_event_t *e = &in->events[r->first + i];
            free(e->status);
            e->status = strdup(st);
            e->seq = json_integer_value(json_object_get(res, "seq"));
            json_decref(e->errors);
            e->errors = json_incref(json_object_get(res, "errors"));
        }
    }
    json_decref(results);
    json_decref(body);
    return finished;
}

typedef struct {
    char *data;
    size_t len;
} pub_buf_t;

static size_t s_curl_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    pub_buf_t *b = arg;
    size_t n = size * nmemb;
    b->data = realloc(b->data, b->len + n + 1);
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static void s_help(void)
{
    printf("usage: eminectl publish [options] FILE... (- for stdin)\n"
           "  a FILE holds one CloudEvent, a JSON array of them, or one per line (NDJSON)\n"
           "  --zmq EP          ingest ROUTER (default $EMINE_INGEST_ZMQ or tcp://127.0.0.1:7001)\n"
           "  --http ADDR       use HTTP POST /v1/events at host:port instead (e.g. $EMINE_INGEST_HTTP)\n"
           "  --batch N         events per request (default 1; >1 sends batches)\n"
           "  --inflight N      requests in flight (default 32)\n"
           "  --timeout-ms T    re-send a request unanswered after T ms (default 5000)\n"
           "  --deadline-s S    give up after S seconds (default 600)\n"
           "  --results FILE    write one JSON line per event: id, source, status, seq, errors\n"
           "  --producer NAME   authenticate as this producer (default $EMINE_PRODUCER)\n"
           "  --key KEY         the producer's key (default $EMINE_PRODUCER_KEY): ZeroMQ PLAIN\n"
           "                    user/password, HTTP Authorization: Bearer\n"
           "  --server-key KEY  ingest's CURVE public key (Z85; default $EMINE_CURVE_SERVER_KEY):\n"
           "                    encrypt with CurveZMQ (the producer is named by its own key)\n"
           "  --curve-secret K  this producer's CURVE secret key (Z85; default\n"
           "                    $EMINE_CURVE_SECRET); without it an ephemeral keypair is used\n"
           "  --quiet           no summary line\n"
           "  --raw             send each FILE's bytes as they are, one request per file; the\n"
           "                    results lines carry the file name and ingest's whole answer\n"
           "exit: 0 all accepted or duplicate; 1 some rejected or conflict; 3 some unanswered\n");
}

int cmd_publish(int argc, char **argv)
{
    static const struct option opts[] = {
        {"zmq", required_argument, 0, 'z'},        {"http", required_argument, 0, 'H'},
        {"batch", required_argument, 0, 'b'},      {"inflight", required_argument, 0, 'i'},
        {"timeout-ms", required_argument, 0, 't'}, {"deadline-s", required_argument, 0, 'd'},
        {"results", required_argument, 0, 'r'},    {"quiet", no_argument, 0, 'q'},
        {"raw", no_argument, 0, 'R'},              {"help", no_argument, 0, 'h'},
        {"producer", required_argument, 0, 'u'},   {"key", required_argument, 0, 'k'},
        {"server-key", required_argument, 0, 'S'}, {"curve-secret", required_argument, 0, 'C'},
        {0, 0, 0, 0}};
    const char *zep = ctl_env("EMINE_INGEST_ZMQ", "tcp://127.0.0.1:7001");
    const char *http = NULL, *results_path = NULL;
    const char *user = ctl_env("EMINE_PRODUCER", NULL), *key = ctl_env("EMINE_PRODUCER_KEY", NULL);
    const char *server_key = ctl_env("EMINE_CURVE_SERVER_KEY", NULL);
    const char *curve_secret = ctl_env("EMINE_CURVE_SECRET", NULL);
    long batch = 1, window = 32, timeout_ms = 5000, deadline_s = 600;
    bool quiet = false;
    pub_input_t in = {0};
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'z': zep = optarg; break;
        case 'H': http = optarg; break;
        case 'b': batch = atol(optarg); break;
        case 'i': window = atol(optarg); break;
        case 't': timeout_ms = atol(optarg); break;
        case 'd': deadline_s = atol(optarg); break;
        case 'r': results_path = optarg; break;
        case 'q': quiet = true; break;
        case 'R': in.raw = true; break;
        case 'u': user = optarg; break;
        case 'k': key = optarg; break;
        case 'S': server_key = optarg; break;
        case 'C': curve_secret = optarg; break;
        case 'h': s_help(); return 0;
        default: s_help(); return 2;
        }
    }
    if (optind >= argc || batch < 1 || window < 1 || timeout_ms < 1 || (in.raw && batch > 1)) {
        s_help();
        return 2;
    }
    for (int i = optind; i < argc; i++)
        if (s_load(&in, argv[i]) != 0)
            return 1;
    size_t nreq = (in.nevents + (size_t)batch - 1) / (size_t)batch;
    pub_req_t *reqs = calloc(nreq ? nreq : 1, sizeof *reqs);
    for (size_t i = 0; i < nreq; i++) {
        reqs[i].first = i * (size_t)batch;
        reqs[i].n = in.nevents - reqs[i].first < (size_t)batch ? in.nevents - reqs[i].first
                                                                : (size_t)batch;
        s_build_payload(&in, &reqs[i], batch > 1);
    }
    double *lat = calloc(nreq ? nreq : 1, sizeof *lat);
    size_t nlat = 0, done = 0, next = 0, lo = 0, inflight = 0, resends = 0;
    int64_t t0 = em_mono_ms(), deadline = t0 + deadline_s * 1000;

    if (http) {
        /* HTTP: one request at a time (a simple, dependable client for scripts). */
        CURL *curl = curl_easy_init();
        char url[512];
        snprintf(url, sizeof url, "http://%s/v1/events", http);
        struct curl_slist *hdrs = curl_slist_append(
            NULL, batch > 1 ? "Content-Type: application/cloudevents-batch+json"
                            : "Content-Type: application/cloudevents+json");
        if (key) {
            char authz[600];
            snprintf(authz, sizeof authz, "Authorization: Bearer %s", key);
            hdrs = curl_slist_append(hdrs, authz);
        }
        for (size_t i = 0; i < nreq && em_mono_ms() < deadline;) {
            pub_buf_t b = {0};
            curl_easy_setopt(curl, CURLOPT_URL, url);
            curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, reqs[i].payload);
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)reqs[i].len);
            curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_curl_write);
            curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
            curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
            int64_t s = em_mono_us();
            CURLcode rc = curl_easy_perform(curl);
            if (rc == CURLE_OK && b.data && s_apply(&in, &reqs[i], b.data, b.len)) {
                lat[nlat++] = (double)(em_mono_us() - s) / 1000.0;
                reqs[i].done = true;
                done++;
                i++;
            } else {
                resends++;
                s_sleep_ms(rc == CURLE_OK ? 200 : 500);
            }
            free(b.data);
        }
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(curl);
    } else {
        void *ctx = zmq_ctx_new();
        char err[256];
        void *sock = zmq_socket(ctx, ZMQ_DEALER);
        int zero = 0;
        zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
        err[0] = '\0';
        if (server_key) {
            /* CURVE: the connection is encrypted and ingest knows the producer by its public
             * key (PLAIN cannot be combined with it). */
            if (em_bus_curve_client(sock, server_key, curve_secret, NULL, err, sizeof err) != 0) {
                zmq_close(sock);
                sock = NULL;
            }
        } else if (user && key) {
            zmq_setsockopt(sock, ZMQ_PLAIN_USERNAME, user, strlen(user));
            zmq_setsockopt(sock, ZMQ_PLAIN_PASSWORD, key, strlen(key));
        }
        if (sock && zmq_connect(sock, zep) != 0) {
            snprintf(err, sizeof err, "cannot connect %s: %s", zep, zmq_strerror(errno));
            zmq_close(sock);
            sock = NULL;
        }
        if (!sock) {
            fprintf(stderr, "eminectl publish: %s\n", err);
            zmq_ctx_term(ctx);
            return 1;
        }
        while (done < nreq && em_mono_ms() < deadline) {
            int64_t now = em_mono_ms();
            /* Fill the window with new requests, then send what is due (new or re-sends). */
            while (inflight < (size_t)window && next < nreq) {
                reqs[next].inflight = true;
                reqs[next++].sent_ms = 0;
                inflight++;
            }
            while (lo < next && reqs[lo].done)
                lo++;
            for (size_t i = lo; i < next; i++) {
                pub_req_t *r = &reqs[i];
                if (r->done || !r->inflight)
                    continue;
                bool due = r->sent_ms == 0 ? now >= r->not_before
                                           : now - r->sent_ms >= timeout_ms;
                if (!due)
                    continue;
                if (r->sent_ms != 0)
                    resends++;
                char tag[32];
                int tl = snprintf(tag, sizeof tag, "%zu", i);
                const void *frames[2] = {tag, r->payload};
                size_t lens[2] = {(size_t)tl, r->len};
                if (em_bus_sendv(sock, frames, lens, 2, ZMQ_DONTWAIT) == 0) {
                    r->sent_ms = now;
                    r->attempts++;
                }
            }
            zmq_pollitem_t items[] = {{sock, 0, ZMQ_POLLIN, 0}};
            if (zmq_poll(items, 1, 20) <= 0)
                continue;
            em_msg_t msg;
            while (em_msg_recv(sock, &msg, ZMQ_DONTWAIT) >= 0) {
                size_t tl, bl;
                const char *tag = em_msg_data(&msg, 0, &tl);
                const char *body = em_msg_data(&msg, 1, &bl);
                char tbuf[32] = {0};
                size_t idx = nreq;
                if (msg.nframes == 2 && tl < sizeof tbuf) {
                    memcpy(tbuf, tag, tl);
                    idx = (size_t)strtoull(tbuf, NULL, 10);
                }
                if (idx < nreq && !reqs[idx].done && reqs[idx].sent_ms != 0) {
                    pub_req_t *r = &reqs[idx];
                    int64_t t = em_mono_ms();
                    if (s_apply(&in, r, body, bl)) {
                        lat[nlat++] = (double)(t - r->sent_ms);
                        r->done = true;
                        r->inflight = false;
                        inflight--;
                        done++;
                    } else {
                        /* busy: back off a little, then re-send the same bytes */
                        r->sent_ms = 0;
                        r->not_before = t + 50 + (r->attempts > 10 ? 500 : r->attempts * 50);
                    }
                }
                em_msg_close(&msg);
            }
        }
        em_bus_close(&sock);
        zmq_ctx_term(ctx);
    }

    double secs = (double)(em_mono_ms() - t0) / 1000.0;
    size_t n_acc = 0, n_dup = 0, n_conf = 0, n_rej = 0, n_other = 0, n_none = 0;
    FILE *rf = results_path ? fopen(results_path, "w") : NULL;
    for (size_t i = 0; i < in.nevents; i++) {
        pub_event_t *e = &in.events[i];
        if (!e->status)
            n_none++;
        else if (strcmp(e->status, "accepted") == 0)
            n_acc++;
        else if (strcmp(e->status, "duplicate") == 0)
            n_dup++;
        else if (strcmp(e->status, "conflict") == 0)
            n_conf++;
        else if (strcmp(e->status, "rejected") == 0)
            n_rej++;
        else
            n_other++;
        if (rf) {
            json_t *ev = json_loadb(e->raw, e->len, 0, NULL);
            json_t *line = json_pack("{s:s?, s:s?, s:s, s:I}", "id",
                                     json_string_value(json_object_get(ev, "id")), "source",
                                     json_string_value(json_object_get(ev, "source")), "status",
                                     e->status ? e->status : "unanswered", "seq",
                                     (json_int_t)e->seq);
            if (e->errors)
                json_object_set(line, "errors", e->errors);
            if (e->file) {
                json_object_set_new(line, "file", json_string(e->file));
                json_object_set(line, "reply", e->reply ? e->reply : json_null());
            }
            char *t = json_dumps(line, JSON_COMPACT);
            fprintf(rf, "%s\n", t);
            free(t);
            json_decref(line);
            json_decref(ev);
        }
    }
    if (rf)
        fclose(rf);
    qsort(lat, nlat, sizeof *lat, s_cmp_double);
    if (!quiet)
        fprintf(stderr,
                "published %zu events in %.2f s (%.0f events/s): accepted %zu, duplicate %zu, "
                "conflict %zu, rejected %zu, other %zu, unanswered %zu; ack latency p50 %.1f ms "
                "p99 %.1f ms; re-sends %zu\n",
                in.nevents, secs, secs > 0 ? (double)in.nevents / secs : 0.0, n_acc, n_dup,
                n_conf, n_rej, n_other, n_none, nlat ? lat[nlat / 2] : 0.0,
                nlat ? lat[(size_t)((double)nlat * 0.99) < nlat ? (size_t)((double)nlat * 0.99)
                                                                : nlat - 1]
                     : 0.0,
                resends);
    for (size_t i = 0; i < in.nevents; i++) {
        free(in.events[i].raw);
        free(in.events[i].status);
        free(in.events[i].file);
        json_decref(in.events[i].reply);
        json_decref(in.events[i].errors);
    }
    for (size_t i = 0; batch > 1 && i < nreq; i++)
        free(reqs[i].payload);
    free(in.events);
    free(reqs);
    free(lat);
    if (n_none)
        return 3;
    return n_conf || n_rej || n_other ? 1 : 0;
}
