/* em_webhook.h - Standard Webhooks signing and verification (symmetric `v1`, HMAC-SHA256 via
 * OpenSSL), plus the base64 (RFC 4648) and HMAC helpers it is built on.
 *
 * Scheme (standard-webhooks spec): key = base64-decode(secret without its optional `whsec_`
 * prefix); signed content = msg_id "." timestamp "." payload (raw body bytes); the header
 * `webhook-signature` is a space-separated list of `<version>,<base64 signature>` entries and
 * verification passes when any `v1` entry matches (constant-time compare); entries of other
 * versions are ignored.  The timestamp must lie within EM_WEBHOOK_TOLERANCE_S of `now`. */
#ifndef EM_WEBHOOK_H
#define EM_WEBHOOK_H
#include <stddef.h>
#include <stdint.h>

#define EM_WEBHOOK_TOLERANCE_S 300
#define EM_WEBHOOK_SIG_LEN 48     /* "v1," + 44 base64 characters + NUL */
#define EM_WEBHOOK_SECRET_LEN 40  /* "whsec_" + 32 base64 characters (24 bytes) + NUL */
#define EM_HMAC_SHA256_LEN 32

typedef struct em_webhook em_webhook_t;

/* Decodes the secret ("whsec_<base64>" or bare base64; padding is optional and non-zero
 * trailing bits are ignored, as lenient decoders do).  An empty secret, "whsec_" alone, a key
 * that decodes to zero bytes or text that is not base64 is refused: returns NULL with err
 * filled. */
em_webhook_t *em_webhook_new(const char *secret, char *err, size_t errlen);
void em_webhook_destroy(em_webhook_t **self_p);

/* Writes "v1,<base64(HMAC-SHA256(key, msg_id.timestamp.payload))>" to out (at least
 * EM_WEBHOOK_SIG_LEN bytes).  Returns 0, or -1 (out too small, OpenSSL failure). */
int em_webhook_sign(const em_webhook_t *self, const char *msg_id, int64_t timestamp,
                    const void *payload, size_t len, char *out, size_t outlen);

/* Verifies the three header values (any may be NULL: invalid) against the payload with the
 * clock value now_s (unix seconds; inject it in tests).  Returns 1 when valid, 0 when not;
 * why is set to a static reason string when invalid (why may be NULL). */
int em_webhook_verify(const em_webhook_t *self, const char *msg_id, const char *timestamp,
                      const char *signature, const void *payload, size_t len, int64_t now_s,
                      const char **why);

/* Writes a new random secret "whsec_<base64 of 24 random bytes>" to out (at least
 * EM_WEBHOOK_SECRET_LEN bytes).  Returns 0 or -1. */
int em_webhook_secret_generate(char *out, size_t outlen);

/* Standard base64 (RFC 4648 §4, '+/' alphabet, '=' padding).  Writes the NUL-terminated
 * encoding to out.  Returns its length, or -1 when out is too small (needs
 * 4*ceil(len/3)+1 bytes). */
int em_base64_encode(const void *in, size_t len, char *out, size_t outlen);

/* Decodes len characters of standard base64 into out.  Strict mode (lenient = 0) requires
 * the padded form with zero trailing bits; lenient mode also accepts missing padding and
 * ignores non-zero trailing bits.  White space and other characters are always refused.
 * Returns the number of bytes written, or -1 (bad input, out too small). */
int em_base64_decode(const char *in, size_t len, void *out, size_t outlen, int lenient);

/* HMAC-SHA256 of msg under key into out[EM_HMAC_SHA256_LEN].  Returns 0 or -1. */
int em_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                   unsigned char out[EM_HMAC_SHA256_LEN]);

/* 1 when tag (taglen bytes) equals the first tag_bytes bytes of HMAC-SHA256(key, msg) and
 * taglen == tag_bytes (1 <= tag_bytes <= 32), compared in constant time; else 0. */
int em_hmac_sha256_check(const void *key, size_t keylen, const void *msg, size_t msglen,
                         const void *tag, size_t taglen, size_t tag_bytes);

#endif
