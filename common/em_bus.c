/* em_bus.c - ZeroMQ sockets ('@' bind, '>' connect) and multipart messages. */
#include "em_bus.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Binds or connects sock to each endpoint of a comma-separated list.  An endpoint without a
 * prefix takes the previous one's; the first must have one.  Returns 0 or -1 with err. */
static int s_attach(void *sock, const char *endpoints, char *err, size_t errlen)
{
    char *copy = strdup(endpoints);
    char *save = NULL, *tok;
    char mode = 0;
    int count = 0, rc = 0;

    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        while (*tok == ' ' || *tok == '\t' || *tok == '\n')
            tok++;
        end = tok + strlen(tok);
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n'))
            *--end = '\0';
        if (!*tok)
            continue;
        if (*tok == '@' || *tok == '>')
            mode = *tok++;
        if (!mode) {
            snprintf(err, errlen, "endpoint '%s' needs a prefix: '@' to bind or '>' to connect",
                     tok);
            rc = -1;
            break;
        }
        if ((mode == '@' ? zmq_bind(sock, tok) : zmq_connect(sock, tok)) != 0) {
            snprintf(err, errlen, "cannot %s %s: %s", mode == '@' ? "bind" : "connect", tok,
                     zmq_strerror(zmq_errno()));
            rc = -1;
            break;
        }
        count++;
    }
    if (rc == 0 && count == 0) {
        snprintf(err, errlen, "no endpoint in '%s'", endpoints);
        rc = -1;
    }
    free(copy);
    return rc;
}

void *em_bus_socket(void *ctx, int type, const char *endpoint, int hwm, int linger_ms, char *err,
                    size_t errlen)
{
    char dummy[256];
    void *sock;

    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (!ctx || !endpoint) {
        snprintf(err, errlen, "no context or endpoint");
        return NULL;
    }
    sock = zmq_socket(ctx, type);
    if (!sock) {
        snprintf(err, errlen, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    if (zmq_setsockopt(sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms) != 0 ||
        (hwm >= 0 && (zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
                      zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0))) {
        snprintf(err, errlen, "zmq_setsockopt: %s", zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return NULL;
    }
    if (s_attach(sock, endpoint, err, errlen) != 0) {
        int zero = 0;
        zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

void em_bus_close(void **sock_p)
{
    if (sock_p && *sock_p) {
        zmq_close(*sock_p);
        *sock_p = NULL;
    }
}

int em_bus_endpoint(void *sock, char *buf, size_t len)
{
    size_t n = len;
    if (!sock || !buf || len == 0)
        return -1;
    if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, buf, &n) != 0)
        return -1;
    buf[len - 1] = '\0';
    return 0;
}

int em_msg_recv(void *sock, em_msg_t *msg, int flags)
{
    int more = 0;
    size_t more_len = sizeof more;
    int overflow = 0;

    msg->nframes = 0;
    do {
        zmq_msg_t part, *dst = msg->nframes < EM_MSG_MAX_FRAMES ? &msg->frames[msg->nframes]
                                                                : &part;
        zmq_msg_init(dst);
        /* Only the first frame may block or not; the rest of a message arrives with it. */
        int rc;
        do {
            rc = zmq_msg_recv(dst, sock, msg->nframes == 0 && !overflow ? flags : 0);
        } while (rc == -1 && zmq_errno() == EINTR && (msg->nframes > 0 || overflow));
        if (rc == -1) {
            int saved = zmq_errno();
            zmq_msg_close(dst);
            em_msg_close(msg);
            errno = saved;
            return -1;
        }
        if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len) != 0)
            more = 0;
        if (dst == &part) {
            zmq_msg_close(&part);
            overflow = 1;
        } else {
            msg->nframes++;
        }
    } while (more);

    if (overflow) {
        em_msg_close(msg);
        errno = EMSGSIZE;
        return -1;
    }
    return msg->nframes;
}

void em_msg_close(em_msg_t *msg)
{
    if (!msg)
        return;
    for (int i = 0; i < msg->nframes && i < EM_MSG_MAX_FRAMES; i++)
        zmq_msg_close(&msg->frames[i]);
    msg->nframes = 0;
}

const void *em_msg_data(const em_msg_t *msg, int i, size_t *len)
{
    if (!msg || i < 0 || i >= msg->nframes) {
        if (len)
            *len = 0;
        return NULL;
    }
    /* zmq_msg_data/size take a non-const message but do not modify it. */
    zmq_msg_t *frame = (zmq_msg_t *)&msg->frames[i];
    if (len)
        *len = zmq_msg_size(frame);
    return zmq_msg_data(frame);
}

int em_bus_sendv(void *sock, const void *const *data, const size_t *lens, int n, int flags)
{
    if (!sock || n <= 0 || !data || !lens) {
        errno = EINVAL;
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int f = flags | (i < n - 1 ? ZMQ_SNDMORE : 0);
        int rc;
        /* Once the first frame is queued the rest follow at once (messages are atomic). */
        do {
            rc = zmq_send(sock, lens[i] ? data[i] : "", lens[i], i == 0 ? f : (f & ~ZMQ_DONTWAIT));
        } while (rc == -1 && zmq_errno() == EINTR && i > 0);
        if (rc == -1) {
            errno = zmq_errno();
            return -1;
        }
    }
    return 0;
}

int em_bus_monitor_read(void *mon)
{
    zmq_msg_t ev;
    uint16_t event = 0;

    zmq_msg_init(&ev);
    if (zmq_msg_recv(&ev, mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&ev);
        return -1;
    }
    if (zmq_msg_size(&ev) >= 2)
        memcpy(&event, zmq_msg_data(&ev), 2);
    if (zmq_msg_more(&ev)) { /* the second frame: the endpoint */
        zmq_msg_t addr;
        zmq_msg_init(&addr);
        zmq_msg_recv(&addr, mon, 0);
        zmq_msg_close(&addr);
    }
    zmq_msg_close(&ev);
    return event;
}

/* --- CURVE ---------------------------------------------------------------------------- */

static const char s_z85[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

int em_curve_key_valid(const char *text)
{
    uint8_t bin[32];

    if (!text || strlen(text) != EM_CURVE_KEY_LEN)
        return 0;
    for (const char *c = text; *c; c++)
        if (!strchr(s_z85, *c))
            return 0;
    return zmq_z85_decode(bin, text) != NULL;
}

int em_curve_secret_load(const char *z85, const char *path, const char *name, char *out,
                         char *err, size_t errlen)
{
    char buf[256];
    const char *text = z85;

    if (z85 && *z85 && path && *path) {
        snprintf(err, errlen, "%s and %s_file are both set; give one", name, name);
        return -1;
    }
    if (path && *path) {
        FILE *f = fopen(path, "r");
        if (!f) {
            snprintf(err, errlen, "%s_file: cannot read %s: %s", name, path, strerror(errno));
            return -1;
        }
        if (!fgets(buf, sizeof buf, f))
            buf[0] = '\0';
        fclose(f);
        text = buf;
    } else if (!z85 || !*z85) {
        return 0;
    }
    while (*text == ' ' || *text == '\t')
        text++;
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ' ||
                     text[n - 1] == '\t'))
        n--;
    if (n != EM_CURVE_KEY_LEN) {
        snprintf(err, errlen, "%s: a CURVE secret key is 40 Z85 characters, got %zu "
                              "(make a keypair with `eminectl keygen`)", name, n);
        return -1;
    }
    memcpy(out, text, EM_CURVE_KEY_LEN);
    out[EM_CURVE_KEY_LEN] = '\0';
    if (!em_curve_key_valid(out)) {
        snprintf(err, errlen, "%s: not a Z85 CURVE key (make a keypair with `eminectl keygen`)",
                 name);
        memset(out, 0, EM_CURVE_KEY_LEN + 1);
        return -1;
    }
    return 1;
}

int em_bus_curve_server(void *sock, const char *secret, char *pub, char *err, size_t errlen)
{
    char mine[EM_CURVE_KEY_LEN + 1];
    int one = 1;

    if (!em_curve_key_valid(secret) || zmq_curve_public(mine, secret) != 0) {
        snprintf(err, errlen, "not a Z85 CURVE secret key");
        return -1;
    }
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, EM_CURVE_KEY_LEN) != 0) {
        snprintf(err, errlen, "CURVE server: %s", zmq_strerror(errno));
        return -1;
    }
    if (pub)
        memcpy(pub, mine, EM_CURVE_KEY_LEN + 1);
    return 0;
}

int em_bus_curve_client(void *sock, const char *server_public, const char *secret, char *pub,
                        char *err, size_t errlen)
{
    char cpub[EM_CURVE_KEY_LEN + 1], csec[EM_CURVE_KEY_LEN + 1];
    int rc = -1;

    if (!em_curve_key_valid(server_public)) {
        snprintf(err, errlen, "the server key is not a 40-character Z85 CURVE public key");
        return -1;
    }
    if (secret && *secret) {
        if (!em_curve_key_valid(secret) || zmq_curve_public(cpub, secret) != 0) {
            snprintf(err, errlen, "the client secret is not a 40-character Z85 CURVE key");
            return -1;
        }
        memcpy(csec, secret, EM_CURVE_KEY_LEN + 1);
    } else if (zmq_curve_keypair(cpub, csec) != 0) {
        snprintf(err, errlen, "cannot make a CURVE keypair: %s", zmq_strerror(errno));
        return -1;
    }
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_public, EM_CURVE_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, cpub, EM_CURVE_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, csec, EM_CURVE_KEY_LEN) != 0) {
        snprintf(err, errlen, "CURVE client: %s", zmq_strerror(errno));
        goto done;
    }
    if (pub)
        memcpy(pub, cpub, EM_CURVE_KEY_LEN + 1);
    rc = 0;
done:
    memset(csec, 0, sizeof csec);
    return rc;
}
