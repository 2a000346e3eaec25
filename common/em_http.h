/* em_http.h - an HTTP server (libmicrohttpd, external epoll mode) that joins the service's
 * zmq_poll loop: poll em_http_fd() for POLLIN, call em_http_run() when ready or when
 * em_http_timeout_ms() expires.  Handlers run on the loop's thread. */
#ifndef EM_HTTP_H
#define EM_HTTP_H
#include <stddef.h>

typedef struct em_http em_http_t;
typedef struct em_http_req em_http_req_t;

/* Called once per request with the whole body read.  The handler answers with
 * em_http_respond() now, or keeps req and answers later (the connection is suspended
 * meanwhile).  req stays valid until em_http_respond() is called on it. */
typedef void(em_http_handler_fn)(void *arg, em_http_req_t *req);

/* addr "127.0.0.1:8001" (host:port; port 0 picks one, see em_http_port).  A body larger
 * than max_body is answered 413 without calling the handler.  Returns NULL with err filled. */
em_http_t *em_http_new(const char *addr, size_t max_body, em_http_handler_fn *fn, void *arg,
                       char *err, size_t errlen);
/* Answers 503 to every request a handler still holds, then stops the server and releases
 * every request: handlers must not use a held req after this. */
void em_http_destroy(em_http_t **self_p);
int em_http_fd(em_http_t *self);
int em_http_port(em_http_t *self);
/* Milliseconds until em_http_run() must be called even without I/O, or -1.  It is 0 after a
 * deferred em_http_respond(): the answer goes out on the next em_http_run(). */
long em_http_timeout_ms(em_http_t *self);
void em_http_run(em_http_t *self);

/* Request accessors: borrowed strings valid until the response is sent. */
const char *em_http_req_method(const em_http_req_t *req);
const char *em_http_req_path(const em_http_req_t *req);
const char *em_http_req_header(const em_http_req_t *req, const char *name); /* case-insensitive */
const char *em_http_req_query(const em_http_req_t *req, const char *key);
/* The whole body, NUL-terminated (never NULL; "" when empty); *len excludes the NUL. */
const char *em_http_req_body(const em_http_req_t *req, size_t *len);
/* Visits every request header (for CloudEvents binary mode `ce-*`). */
void em_http_req_headers(const em_http_req_t *req,
                         void (*fn)(void *arg, const char *name, const char *value), void *arg);

/* Adds a response header before em_http_respond (e.g. Retry-After). */
void em_http_add_header(em_http_req_t *req, const char *name, const char *value);
/* Sends the response (body copied) and releases req.  Called from the handler it is queued at
 * once; called later, the suspended connection is resumed and the response is sent by the
 * next em_http_run().  If the client has gone meanwhile, the answer is dropped and req is
 * still released. */
void em_http_respond(em_http_req_t *req, int status, const char *content_type, const char *body,
                     size_t len);

/* Streaming responses (e.g. Server-Sent Events): the body is produced as the socket drains.
 * fill writes at most max bytes into buf and returns how many (> 0), 0 when nothing is ready
 * (the connection is parked, costing no CPU, until em_http_stream_wake), or -1 to end the
 * body.  done is called exactly once when the stream is over (the body ended, the client went
 * away, or the server is destroyed); req must not be used after it.  A parked connection does
 * not notice that its client left: wake it now and then (a keepalive) to find out. */
typedef long(em_http_fill_fn)(void *arg, char *buf, size_t max);
typedef void(em_http_done_fn)(void *arg);
/* Answers req (from the handler only) with status and a chunked body from fill; headers added
 * with em_http_add_header are sent too.  Returns 0; -1 when the response cannot be built (req
 * is then answered 500 and released; done is not called). */
int em_http_stream(em_http_req_t *req, int status, const char *content_type,
                   em_http_fill_fn *fill, em_http_done_fn *done, void *arg);
/* Unparks a stream: fill is called again by the next em_http_run (em_http_timeout_ms is 0
 * meanwhile).  No effect on a stream that is not parked. */
void em_http_stream_wake(em_http_req_t *req);

#endif
