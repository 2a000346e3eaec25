/* em_json.h - JSON helpers over Jansson: parsing with limits, raw batch splitting,
 * machine-readable error lists, RFC 8785 canonical form and SHA-256 digests. */
#ifndef EM_JSON_H
#define EM_JSON_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses buf (whole buffer, duplicate keys rejected, NUL in strings rejected) and checks that
 * nesting depth <= max_depth.  Returns a new reference, or NULL with *errors set to a new
 * error list (see em_errors_add) describing the line/column or depth problem.
 * Details: any JSON value is accepted at the top level (callers check for an object or an
 * array); a top-level container is depth 1 and max_depth < 0 disables the depth check; the
 * maxDepth error's pointer names the first container that is too deep; raw NUL bytes and
 * integers outside the int64 range (Jansson's json_int_t) are refused; errors may be NULL,
 * and *errors is set to NULL on success. */
json_t *em_json_parse(const char *buf, size_t len, int max_depth, json_t **errors);

/* For a buffer already parsed as a JSON array by em_json_parse: calls fn for each element
 * with the offset and length of its raw text (the producer's own bytes).  Returns the
 * element count, or -1 if buf is not an array. */
typedef void(em_json_slice_fn)(void *arg, size_t index, const char *start, size_t len);
long em_json_split_array(const char *buf, size_t len, em_json_slice_fn *fn, void *arg);

/* Error lists: a JSON array of {"pointer","keyword","message"}.  pointer is a JSON Pointer
 * (RFC 6901) into the event ("" for the whole event). */
json_t *em_errors_new(void);
void em_errors_add(json_t *errors, const char *pointer, const char *keyword, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* RFC 8785 JSON Canonicalization Scheme.  Caller owns return value (free); NULL on a value
 * JCS cannot represent (a non-finite number) or on allocation failure.  *len (may be NULL)
 * receives the length.  Numbers are formatted with the C library's %e and strtod, so the
 * LC_NUMERIC locale must be "C" (the default unless the program calls setlocale). */
char *em_jcs_encode(const json_t *value, size_t *len);
/* hex of SHA-256 over the JCS form: out must hold 65 bytes.  Returns 0 or -1. */
int em_jcs_digest_hex(const json_t *value, char out[65]);

/* True when s[0..len) is well-formed UTF-8 (no overlong forms, surrogates or code points
 * above U+10FFFF). */
bool em_utf8_valid(const char *s, size_t len);

/* SHA-256 helpers (OpenSSL). */
void em_sha256(const void *data, size_t len, uint8_t out[32]);
void em_hex_encode(const uint8_t *in, size_t len, char *out /* 2*len+1 */);
int em_hex_digit(int c); /* 0..15, or -1 for a character that is not a hex digit */
int em_hex_decode(const char *hex, uint8_t *out, size_t outlen); /* 0 or -1 */
/* chain = SHA-256(prev_chain(32 bytes) || digest(32 bytes)); hex in and out (65 bytes). */
int em_chain_next_hex(const char prev_hex[65], const char digest_hex[65], char out[65]);

#endif
