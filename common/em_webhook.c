/* em_webhook.c - Standard Webhooks signatures (HMAC-SHA256, OpenSSL) and RFC 4648 base64. */
#include "em_webhook.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_PREFIX "whsec_"
#define SECRET_MAX_BYTES 1024 /* longer keys are refused rather than hashed down */

struct em_webhook {
    unsigned char *key; /* decoded secret */
    size_t keylen;
};

static const char s_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The value of a base64 character, or -1. */
static int s_b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int em_base64_encode(const void *in, size_t len, char *out, size_t outlen)
{
    const unsigned char *p = in;
    size_t need = (len + 2) / 3 * 4 + 1;
    if (len > (size_t)INT_MAX / 2 || outlen < need)
        return -1;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        out[o++] = s_b64[v >> 18 & 63];
        out[o++] = s_b64[v >> 12 & 63];
        out[o++] = s_b64[v >> 6 & 63];
        out[o++] = s_b64[v & 63];
    }
    if (len - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        out[o++] = s_b64[v >> 18 & 63];
        out[o++] = s_b64[v >> 12 & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        out[o++] = s_b64[v >> 18 & 63];
        out[o++] = s_b64[v >> 12 & 63];
        out[o++] = s_b64[v >> 6 & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return (int)o;
}

int em_base64_decode(const char *in, size_t len, void *out, size_t outlen, int lenient)
{
    unsigned char *q = out;
    size_t pad = 0;
    if (len > (size_t)INT_MAX)
        return -1;
    while (pad < 2 && len > 0 && in[len - 1] == '=') {
        len--;
        pad++;
    }
    if (!lenient && (len + pad) % 4 != 0)
        return -1;
    if (len % 4 == 1)
        return -1; /* 6 bits cannot make a byte */
    if (pad > 0 && (len + pad) % 4 != 0)
        return -1; /* padding that does not complete a group */
    size_t nbytes = len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
    if (nbytes > outlen)
        return -1;
    unsigned acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = s_b64_val((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (unsigned)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            q[o++] = (unsigned char)(acc >> bits & 0xff);
        }
    }
    if (!lenient && bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -1; /* non-zero trailing bits */
    return (int)o;
}

int em_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                   unsigned char out[EM_HMAC_SHA256_LEN])
{
    unsigned int outlen = 0;
    static const unsigned char s_empty[1];
    if (keylen > INT_MAX)
        return -1;
    if (!HMAC(EVP_sha256(), keylen ? key : s_empty, (int)keylen, msglen ? msg : s_empty,
              msglen, out, &outlen) ||
        outlen != EM_HMAC_SHA256_LEN)
        return -1;
    return 0;
}

int em_hmac_sha256_check(const void *key, size_t keylen, const void *msg, size_t msglen,
                         const void *tag, size_t taglen, size_t tag_bytes)
{
    unsigned char mac[EM_HMAC_SHA256_LEN];
    if (tag_bytes < 1 || tag_bytes > EM_HMAC_SHA256_LEN || taglen != tag_bytes)
        return 0;
    if (em_hmac_sha256(key, keylen, msg, msglen, mac) != 0)
        return 0;
    return CRYPTO_memcmp(mac, tag, tag_bytes) == 0;
}

em_webhook_t *em_webhook_new(const char *secret, char *err, size_t errlen)
{
    if (!secret || !*secret) {
        snprintf(err, errlen, "empty webhook secret");
        return NULL;
    }
    if (strncmp(secret, SECRET_PREFIX, strlen(SECRET_PREFIX)) == 0)
        secret += strlen(SECRET_PREFIX);
    size_t len = strlen(secret);
    if (len == 0) {
        snprintf(err, errlen, "empty webhook secret after the whsec_ prefix");
        return NULL;
    }
    em_webhook_t *self = calloc(1, sizeof *self);
    size_t cap = len / 4 * 3 + 3;
    if (!self || cap > SECRET_MAX_BYTES + 3 || !(self->key = malloc(cap))) {
        snprintf(err, errlen, cap > SECRET_MAX_BYTES + 3 ? "webhook secret too long"
                                                         : "out of memory");
        em_webhook_destroy(&self);
        return NULL;
    }
    int n = em_base64_decode(secret, len, self->key, cap, 1);
    if (n <= 0) {
        snprintf(err, errlen, "webhook secret is not base64");
        em_webhook_destroy(&self);
        return NULL;
    }
    self->keylen = (size_t)n;
    return self;
}

void em_webhook_destroy(em_webhook_t **self_p)
{
    if (self_p && *self_p) {
        em_webhook_t *self = *self_p;
        if (self->key) {
            OPENSSL_cleanse(self->key, self->keylen);
            free(self->key);
        }
        free(self);
        *self_p = NULL;
    }
}

/* HMAC over msg_id "." ts "." payload (the signed content is assembled in one buffer). */
static int s_mac(const em_webhook_t *self, const char *msg_id, const char *ts,
                 const void *payload, size_t len, unsigned char mac[EM_HMAC_SHA256_LEN])
{
    size_t ilen = strlen(msg_id), tlen = strlen(ts);
    if (len > SIZE_MAX - ilen - tlen - 3)
        return -1;
    char *buf = malloc(ilen + tlen + len + 3);
    if (!buf)
        return -1;
    memcpy(buf, msg_id, ilen);
    buf[ilen] = '.';
    memcpy(buf + ilen + 1, ts, tlen);
    buf[ilen + 1 + tlen] = '.';
    if (len)
        memcpy(buf + ilen + tlen + 2, payload, len);
    int rc = em_hmac_sha256(self->key, self->keylen, buf, ilen + tlen + 2 + len, mac);
    free(buf);
    return rc;
}

int em_webhook_sign(const em_webhook_t *self, const char *msg_id, int64_t timestamp,
                    const void *payload, size_t len, char *out, size_t outlen)
{
    char ts[32];
    unsigned char mac[EM_HMAC_SHA256_LEN];
    if (!self || !msg_id || outlen < EM_WEBHOOK_SIG_LEN)
        return -1;
    snprintf(ts, sizeof ts, "%lld", (long long)timestamp);
    if (s_mac(self, msg_id, ts, payload, len, mac) != 0)
        return -1;
    memcpy(out, "v1,", 3);
    return em_base64_encode(mac, sizeof mac, out + 3, outlen - 3) < 0 ? -1 : 0;
}

int em_webhook_verify(const em_webhook_t *self, const char *msg_id, const char *timestamp,
                      const char *signature, const void *payload, size_t len, int64_t now_s,
                      const char **why)
{
    const char *dummy;
    unsigned char mac[EM_HMAC_SHA256_LEN];
    if (!why)
        why = &dummy;
    if (!self) {
        *why = "no secret";
        return 0;
    }
    if (!msg_id || !*msg_id || !timestamp || !signature) {
        *why = "missing required headers";
        return 0;
    }
    size_t tlen = strlen(timestamp);
    if (tlen == 0 || tlen > 15 || strspn(timestamp, "0123456789") != tlen) {
        *why = "invalid timestamp";
        return 0;
    }
    long long ts = strtoll(timestamp, NULL, 10);
    if (ts < now_s - EM_WEBHOOK_TOLERANCE_S) {
        *why = "message timestamp too old";
        return 0;
    }
    if (ts > now_s + EM_WEBHOOK_TOLERANCE_S) {
        *why = "message timestamp too new";
        return 0;
    }
    if (s_mac(self, msg_id, timestamp, payload, len, mac) != 0) {
        *why = "signing failed";
        return 0;
    }
    int valid = 0;
    const char *p = signature;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *end = p + strcspn(p, " ");
        if (end - p > 3 && memcmp(p, "v1,", 3) == 0) {
            unsigned char sig[EM_HMAC_SHA256_LEN + 3];
            int n = em_base64_decode(p + 3, (size_t)(end - p - 3), sig, sizeof sig, 0);
            if (n == EM_HMAC_SHA256_LEN && CRYPTO_memcmp(sig, mac, EM_HMAC_SHA256_LEN) == 0)
                valid = 1; /* keep scanning: time does not reveal which entry matched */
        }
        p = end;
    }
    if (!valid)
        *why = "no matching signature";
    return valid;
}

int em_webhook_secret_generate(char *out, size_t outlen)
{
    unsigned char key[24];
    size_t plen = strlen(SECRET_PREFIX);
    if (outlen < EM_WEBHOOK_SECRET_LEN || RAND_bytes(key, sizeof key) != 1)
        return -1;
    memcpy(out, SECRET_PREFIX, plen);
    int rc = em_base64_encode(key, sizeof key, out + plen, outlen - plen);
    OPENSSL_cleanse(key, sizeof key);
    return rc < 0 ? -1 : 0;
}
