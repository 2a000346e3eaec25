/* em_bus.h - ZeroMQ sockets and multipart messages between the services. */
#ifndef EM_BUS_H
#define EM_BUS_H
#include <stddef.h>
#include <zmq.h>

#define EM_MSG_MAX_FRAMES 8

/* Creates a socket of `type` (ZMQ_PUSH, ...) and binds it when endpoint starts with '@',
 * connects it when it starts with '>' (default: bind for ROUTER/PUB/PULL-side servers is the
 * caller's choice, so always give the prefix).  endpoint may be a comma-separated list
 * ("@tcp://0.0.0.0:7001,@ipc:///tmp/x" or ">tcp://a:1,>tcp://b:1"); an entry without a prefix takes
 * the previous entry's.  Sets SNDHWM/RCVHWM to hwm (skipped when hwm < 0), LINGER to
 * linger_ms.  Returns NULL with err filled. */
void *em_bus_socket(void *ctx, int type, const char *endpoint, int hwm, int linger_ms, char *err,
                    size_t errlen);
/* Copies the socket's last bound or connected endpoint into buf (the real port after binding
 * "tcp://127.0.0.1:*").  Returns 0 or -1. */
int em_bus_endpoint(void *sock, char *buf, size_t len);
/* Closes the socket and sets *sock_p to NULL; accepts NULL. */
void em_bus_close(void **sock_p);

/* A received multipart message. */
typedef struct {
    int nframes;
    zmq_msg_t frames[EM_MSG_MAX_FRAMES];
} em_msg_t;

/* Receives one whole message (flags: 0 or ZMQ_DONTWAIT).  Frames beyond EM_MSG_MAX_FRAMES
 * are dropped and make the call fail.  Returns frame count, or -1 (errno set). On success
 * the caller must em_msg_close(). */
int em_msg_recv(void *sock, em_msg_t *msg, int flags);
void em_msg_close(em_msg_t *msg);
const void *em_msg_data(const em_msg_t *msg, int i, size_t *len);

/* Reads one event from a socket monitor (a PAIR connected to the zmq_socket_monitor endpoint)
 * without blocking: returns its ZMQ_EVENT_* number, or -1 when none is queued. */
int em_bus_monitor_read(void *mon);

/* CurveZMQ (libzmq's CURVE mechanism).  Keys are 40-character Z85 text (32 bytes);
 * buffers for them hold EM_CURVE_KEY_LEN + 1 bytes. */
#define EM_CURVE_KEY_LEN 40

/* 1 when text is exactly 40 characters of the Z85 alphabet (a CURVE public or secret key),
 * else 0. */
int em_curve_key_valid(const char *text);

/* The CURVE secret key of a server from its two config keys: the Z85 text itself when z85 is
 * non-empty, else the first line of the file at path when path is non-empty (white space
 * around it ignored).  name is the config key named in messages ("[ingest] curve_secret_key").
 * Returns 1 with out (41 bytes) filled, 0 when neither is set (CURVE off), -1 with err filled
 * when both are set, the file cannot be read or the text is not a Z85 key. */
int em_curve_secret_load(const char *z85, const char *path, const char *name, char *out,
                         char *err, size_t errlen);

/* Makes sock a CURVE server (call before bind) with the Z85 secret key; writes the derived
 * public key (41 bytes) to pub when pub is not NULL.  Returns 0 or -1 with err filled. */
int em_bus_curve_server(void *sock, const char *secret, char *pub, char *err, size_t errlen);

/* Makes sock a CURVE client (call before connect) of the server whose Z85 public key is
 * server_public, with the client's own Z85 secret key (its public key is derived), or a new
 * ephemeral keypair when secret is NULL or empty.  Writes the client's public key (41 bytes)
 * to pub when pub is not NULL.  Returns 0 or -1 with err filled. */
int em_bus_curve_client(void *sock, const char *server_public, const char *secret, char *pub,
                        char *err, size_t errlen);

/* Sends n frames as one message (flags: 0 or ZMQ_DONTWAIT).  Returns 0 or -1 (errno set). */
int em_bus_sendv(void *sock, const void *const *data, const size_t *lens, int n, int flags);

#endif
