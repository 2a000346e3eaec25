/* em_http.c - HTTP server on libmicrohttpd in external epoll mode, driven by the service's
 * zmq_poll loop.  A handler answers at once or later: an unanswered request's connection is
 * suspended and resumed by em_http_respond. */
#include "em_http.h"

#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define S_CONNECTION_LIMIT 1024u
#define S_CONNECTION_TIMEOUT_S 60u

typedef enum {
    S_READING,  /* the body is arriving */
    S_HELD,     /* the handler has it and has not answered yet */
    S_ANSWERED, /* a response is queued or waiting for the connection to resume */
} s_state_t;

typedef struct {
    char *name;
    char *value;
} s_header_t;

/* A streaming body: owned by its MHD response (freed by s_stream_free), linked to its request
 * while the connection lasts. */
typedef struct {
    em_http_req_t *req; /* NULL once the request is completed */
    em_http_fill_fn *fill;
    em_http_done_fn *done;
    void *arg;
    bool parked;        /* suspended by the reader, waiting for em_http_stream_wake */
    bool ended;         /* no more fill calls */
    bool done_called;
} s_stream_t;

struct em_http_req {
    em_http_t *http;
    struct MHD_Connection *conn; /* NULL once MHD has finished with the connection */
    s_state_t state;
    bool suspended;     /* MHD_suspend_connection was called and not yet undone */
    bool in_handler;    /* inside the access callback: responses are queued directly */
    bool too_large;     /* the body exceeded max_body: answer 413 */
    bool resume_pending; /* resumed by em_http_respond, not yet called back by MHD */
    char *method;
    char *path;
    char *body;         /* NUL-terminated copy of the body */
    size_t body_len, body_cap;
    s_header_t *headers; /* response headers added with em_http_add_header */
    size_t nheaders;
    unsigned int status;
    struct MHD_Response *response; /* built by em_http_respond while suspended */
    s_stream_t *stream; /* a streaming response (em_http_stream), else NULL */
    em_http_req_t *prev, *next; /* every live request, for destroy */
};

struct em_http {
    struct MHD_Daemon *daemon;
    size_t max_body;
    em_http_handler_fn *fn;
    void *arg;
    int pending_resume; /* answered while suspended and not yet picked up by MHD_run */
    int woken;          /* streams unparked since the last MHD_run */
    em_http_req_t *reqs;
};

static void s_req_unlink_free(em_http_req_t *req)
{
    em_http_t *self = req->http;
    if (req->prev)
        req->prev->next = req->next;
    else if (self->reqs == req)
        self->reqs = req->next;
    if (req->next)
        req->next->prev = req->prev;
    if (req->stream)
        req->stream->req = NULL;
    for (size_t i = 0; i < req->nheaders; i++) {
        free(req->headers[i].name);
        free(req->headers[i].value);
    }
    free(req->headers);
    if (req->response)
        MHD_destroy_response(req->response);
    free(req->method);
    free(req->path);
    free(req->body);
    free(req);
}

static struct MHD_Response *s_build_response(em_http_req_t *req, const char *content_type,
                                             const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return NULL;
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (size_t i = 0; i < req->nheaders; i++)
        MHD_add_response_header(resp, req->headers[i].name, req->headers[i].value);
    return resp;
}

void em_http_respond(em_http_req_t *req, int status, const char *content_type, const char *body,
                     size_t len)
{
    if (!req || req->state == S_ANSWERED)
        return;
    if (!req->conn) {
        /* The connection went away while the handler held the request. */
        s_req_unlink_free(req);
        return;
    }
    req->state = S_ANSWERED;
    req->status = (unsigned int)status;
    struct MHD_Response *resp = s_build_response(req, content_type, body, len);
    if (req->in_handler) {
        if (resp) {
            MHD_queue_response(req->conn, req->status, resp);
            MHD_destroy_response(resp); /* MHD keeps its own reference */
        }
        /* Without a response MHD closes the connection when the callback returns. */
        return;
    }
    /* Deferred: the response is queued when MHD calls the access callback again after the
     * resume, in the next em_http_run. */
    req->response = resp;
    if (req->suspended) {
        req->suspended = false;
        req->resume_pending = true;
        req->http->pending_resume++;
        MHD_resume_connection(req->conn);
    }
}

static ssize_t s_stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    s_stream_t *st = cls;
    (void)pos;
    if (st->ended || !st->req || !st->req->conn)
        return MHD_CONTENT_READER_END_OF_STREAM;
    long n = st->fill(st->arg, buf, max);
    if (n > 0)
        return (ssize_t)((size_t)n > max ? max : (size_t)n);
    if (n < 0) {
        st->ended = true;
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    /* Nothing to send: park the connection (allowed from a content reader callback). */
    st->parked = true;
    MHD_suspend_connection(st->req->conn);
    return 0;
}

static void s_stream_free(void *cls)
{
    s_stream_t *st = cls;
    if (st->req)
        st->req->stream = NULL;
    if (!st->done_called) {
        st->done_called = true;
        st->done(st->arg);
    }
    free(st);
}

int em_http_stream(em_http_req_t *req, int status, const char *content_type,
                   em_http_fill_fn *fill, em_http_done_fn *done, void *arg)
{
    if (!req || !req->conn || !req->in_handler || req->state != S_HELD || !fill || !done)
        return -1;
    s_stream_t *st = calloc(1, sizeof *st);
    struct MHD_Response *resp =
        st ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, s_stream_reader, st,
                                               s_stream_free)
           : NULL;
    if (!resp) {
        free(st);
        static const char oom[] = "{\"error\":\"out of memory\"}";
        em_http_respond(req, 500, "application/json", oom, sizeof oom - 1);
        return -1;
    }
    st->req = req;
    st->fill = fill;
    st->done = done;
    st->arg = arg;
    req->stream = st;
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (size_t i = 0; i < req->nheaders; i++)
        MHD_add_response_header(resp, req->headers[i].name, req->headers[i].value);
    req->state = S_ANSWERED;
    req->status = (unsigned int)status;
    MHD_queue_response(req->conn, req->status, resp);
    MHD_destroy_response(resp); /* the connection holds it; s_stream_free runs at its end */
    return 0;
}

void em_http_stream_wake(em_http_req_t *req)
{
    if (!req || !req->stream || !req->stream->parked || !req->conn)
        return;
    req->stream->parked = false;
    req->http->woken++;
    MHD_resume_connection(req->conn);
}

static enum MHD_Result s_queue_413(em_http_req_t *req)
{
    char body[96];
    int n = snprintf(body, sizeof body, "{\"error\":\"payload too large\",\"limit\":%zu}",
                     req->http->max_body);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(req->conn, MHD_HTTP_CONTENT_TOO_LARGE, resp);
    MHD_destroy_response(resp);
    req->state = S_ANSWERED;
    return rc;
}

static enum MHD_Result s_access(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version,
                                const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    em_http_t *self = cls;
    em_http_req_t *req = *con_cls;
    (void)version;

    if (!req) {
        /* First call: headers are in, the body (if any) has not been read. */
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        req->http = self;
        req->conn = conn;
        req->state = S_READING;
        req->method = strdup(method ? method : "");
        req->path = strdup(url ? url : "");
        if (!req->method || !req->path) {
            free(req->method);
            free(req->path);
            free(req);
            return MHD_NO;
        }
        req->next = self->reqs;
        if (self->reqs)
            self->reqs->prev = req;
        self->reqs = req;
        *con_cls = req;

        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno == 0 && end != cl && n > self->max_body)
                return s_queue_413(req); /* before reading (and before 100-continue) */
        }
        return MHD_YES;
    }

    if (req->state == S_READING && *upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->too_large || req->body_len + n > self->max_body) {
            req->too_large = true; /* keep reading, discarding, then answer 413 */
            return MHD_YES;
        }
        if (req->body_len + n + 1 > req->body_cap) {
            size_t cap = req->body_cap ? req->body_cap : 1024;
            while (cap < req->body_len + n + 1)
                cap *= 2;
            char *p = realloc(req->body, cap);
            if (!p)
                return MHD_NO;
            req->body = p;
            req->body_cap = cap;
        }
        memcpy(req->body + req->body_len, upload_data, n);
        req->body_len += n;
        req->body[req->body_len] = '\0';
        return MHD_YES;
    }

    if (req->state == S_READING) {
        /* The whole body is in. */
        if (req->too_large)
            return s_queue_413(req);
        req->state = S_HELD;
        req->in_handler = true;
        self->fn(self->arg, req);
        req->in_handler = false;
        if (req->state == S_HELD) {
            /* No answer yet: park the connection until em_http_respond. */
            req->suspended = true;
            MHD_suspend_connection(conn);
        }
        return MHD_YES;
    }

    if (req->resume_pending) {
        /* Called again after a resume: send the deferred answer (none if it could not be
         * built: then MHD closes the connection). */
        req->resume_pending = false;
        self->pending_resume--;
        if (!req->response)
            return MHD_NO;
        enum MHD_Result rc = MHD_queue_response(conn, req->status, req->response);
        MHD_destroy_response(req->response);
        req->response = NULL;
        return rc;
    }
    *upload_data_size = 0; /* answered early (413): discard whatever still arrives */
    return MHD_YES;
}

static void s_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode toe)
{
    em_http_req_t *req = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (!req)
        return;
    *con_cls = NULL;
    if (req->resume_pending) {
        req->resume_pending = false;
        req->http->pending_resume--; /* resumed but never called back */
    }
    if (req->stream) {
        s_stream_t *st = req->stream;
        st->ended = true;
        if (st->parked) {
            st->parked = false; /* MHD has dropped the connection */
        }
        if (!st->done_called) {
            st->done_called = true;
            st->done(st->arg);
        }
    }
    if (req->state == S_HELD) {
        /* The handler still holds req: keep it until em_http_respond releases it. */
        req->conn = NULL;
        return;
    }
    s_req_unlink_free(req);
}

/* Fills addr from "host:port", "[v6]:port", ":port" or "*:port".  Returns 0 or -1. */
static int s_parse_addr(const char *text, struct sockaddr_storage *addr, socklen_t *addrlen,
                        char *err, size_t errlen)
{
    char host[256];
    const char *colon, *port;
    struct addrinfo hints, *res = NULL;

    if (!text || !*text) {
        snprintf(err, errlen, "empty address");
        return -1;
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "bad address '%s' (want [v6]:port)", text);
            return -1;
        }
        snprintf(host, sizeof host, "%.*s", (int)(close - text - 1), text + 1);
        port = close + 2;
    } else {
        colon = strrchr(text, ':');
        if (!colon) {
            snprintf(err, errlen, "bad address '%s' (want host:port)", text);
            return -1;
        }
        snprintf(host, sizeof host, "%.*s", (int)(colon - text), text);
        port = colon + 1;
    }
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (errno || end == port || *end || p < 0 || p > 65535) {
        snprintf(err, errlen, "bad port in address '%s'", text);
        return -1;
    }
    memset(&hints, 0, sizeof hints);
    /* No host, or "*": every IPv4 interface (0.0.0.0), which works where IPv6 is off. */
    hints.ai_family = host[0] && strcmp(host, "*") != 0 ? AF_UNSPEC : AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host[0] && strcmp(host, "*") != 0 ? host : NULL, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(rc));
        if (res)
            freeaddrinfo(res);
        return -1;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void s_mhd_log(void *cls, const char *fmt, va_list ap)
{
    /* MHD's diagnostics are for the developer; the service logs its own decisions. */
    (void)cls;
    (void)fmt;
    (void)ap;
}

em_http_t *em_http_new(const char *addr, size_t max_body, em_http_handler_fn *fn, void *arg,
                       char *err, size_t errlen)
{
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    char dummy[256];
    em_http_t *self;

    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (!fn) {
        snprintf(err, errlen, "no handler");
        return NULL;
    }
    if (s_parse_addr(addr, &sa, &salen, err, errlen) != 0)
        return NULL;
    self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->max_body = max_body;
    self->fn = fn;
    self->arg = arg;

    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    uint16_t port;
    if (sa.ss_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
        port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    } else {
        port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
    }
    (void)salen;
    self->daemon = MHD_start_daemon(
        flags, port, NULL, NULL, s_access, self, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_CONNECTION_LIMIT, S_CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
        S_CONNECTION_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED, s_completed, self,
        MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, NULL,
        MHD_OPTION_END);
    if (!self->daemon) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr,
                 errno ? strerror(errno) : "libmicrohttpd refused");
        free(self);
        return NULL;
    }
    return self;
}

void em_http_destroy(em_http_t **self_p)
{
    if (self_p && *self_p) {
        em_http_t *self = *self_p;
        static const char busy[] = "{\"error\":\"shutting down\"}";
        if (self->daemon) {
            /* MHD must not be stopped with suspended connections: answer every request the
             * handlers still hold, and let MHD pick the resumed connections up. */
            em_http_req_t *req = self->reqs;
            while (req) {
                em_http_req_t *next = req->next;
                if (req->state == S_HELD)
                    em_http_respond(req, 503, "application/json", busy, sizeof busy - 1);
                else if (req->stream) {
                    /* End every stream; unpark the parked ones so that MHD finishes them. */
                    req->stream->ended = true;
                    em_http_stream_wake(req);
                }
                req = next;
            }
            for (int i = 0; i < 100 && self->pending_resume > 0; i++)
                MHD_run(self->daemon);
            for (int i = 0; i < 3; i++)
                MHD_run(self->daemon); /* give the answers a chance to go out */
            MHD_stop_daemon(self->daemon);
        }
        while (self->reqs)
            s_req_unlink_free(self->reqs);
        free(self);
        *self_p = NULL;
    }
}

int em_http_fd(em_http_t *self)
{
    const union MHD_DaemonInfo *info =
        self ? MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
    return info ? info->epoll_fd : -1;
}

int em_http_port(em_http_t *self)
{
    const union MHD_DaemonInfo *info =
        self ? MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    return info ? (int)info->port : -1;
}

long em_http_timeout_ms(em_http_t *self)
{
    MHD_UNSIGNED_LONG_LONG ms;
    if (!self)
        return -1;
    if (self->pending_resume > 0 || self->woken > 0)
        return 0; /* resumed connections are processed by the next em_http_run */
    if (MHD_get_timeout(self->daemon, &ms) != MHD_YES)
        return -1;
    return ms > (MHD_UNSIGNED_LONG_LONG)LONG_MAX ? LONG_MAX : (long)ms;
}

void em_http_run(em_http_t *self)
{
    if (self) {
        self->woken = 0;
        MHD_run(self->daemon);
    }
}

const char *em_http_req_method(const em_http_req_t *req)
{
    return req ? req->method : NULL;
}

const char *em_http_req_path(const em_http_req_t *req)
{
    return req ? req->path : NULL;
}

const char *em_http_req_header(const em_http_req_t *req, const char *name)
{
    if (!req || !req->conn || !name)
        return NULL;
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *em_http_req_query(const em_http_req_t *req, const char *key)
{
    if (!req || !req->conn || !key)
        return NULL;
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *em_http_req_body(const em_http_req_t *req, size_t *len)
{
    if (len)
        *len = req ? req->body_len : 0;
    if (!req)
        return NULL;
    return req->body ? req->body : "";
}

typedef struct {
    void (*fn)(void *arg, const char *name, const char *value);
    void *arg;
} s_visit_t;

static enum MHD_Result s_visit(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    s_visit_t *v = cls;
    (void)kind;
    v->fn(v->arg, key, value ? value : "");
    return MHD_YES;
}

void em_http_req_headers(const em_http_req_t *req,
                         void (*fn)(void *arg, const char *name, const char *value), void *arg)
{
    s_visit_t v = {fn, arg};
    if (!req || !req->conn || !fn)
        return;
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, s_visit, &v);
}

void em_http_add_header(em_http_req_t *req, const char *name, const char *value)
{
    if (!req || !name || !value || req->state == S_ANSWERED)
        return;
    s_header_t *h = realloc(req->headers, (req->nheaders + 1) * sizeof *h);
    if (!h)
        return;
    req->headers = h;
    h[req->nheaders].name = strdup(name);
    h[req->nheaders].value = strdup(value);
    if (!h[req->nheaders].name || !h[req->nheaders].value) {
        free(h[req->nheaders].name);
        free(h[req->nheaders].value);
        return;
    }
    req->nheaders++;
}
