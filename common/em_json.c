/* em_json.c - JSON helpers over Jansson: parsing with limits, raw batch splitting,
 * machine-readable error lists, RFC 8785 canonical form and SHA-256 digests. */
#include "em_json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* Longest JSON Pointer put in a maxDepth error before it is cut short with an ellipsis. */
#define S_POINTER_MAX 256

/* A growable byte buffer; on allocation failure `failed` is set and later appends do nothing. */
typedef struct {
    char *data;  /* NUL-terminated when not NULL */
    size_t len;  /* bytes used, without the NUL */
    size_t cap;  /* bytes allocated */
    bool failed; /* an allocation failed */
} s_buf_t;

static void s_buf_append(s_buf_t *b, const void *src, size_t n)
{
    if (b->failed) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *data = realloc(b->data, cap);
        if (!data) {
            b->failed = true;
            return;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void s_buf_putc(s_buf_t *b, char c)
{
    s_buf_append(b, &c, 1);
}

static void s_buf_puts(s_buf_t *b, const char *s)
{
    s_buf_append(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (at most n bytes available), or 0 if invalid.
 * Rejects overlong forms, surrogates and code points above U+10FFFF. */
static size_t s_utf8_seq(const unsigned char *s, size_t n, unsigned long *cp)
{
    unsigned long c;
    size_t len, i;

    if (n == 0) {
        return 0;
    }
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    } else if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
        c = s[0] & 0x1F;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        c = s[0] & 0x0F;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        c = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10FFFF)) ||
        (c >= 0xD800 && c <= 0xDFFF)) {
        return 0;
    }
    *cp = c;
    return len;
}

bool em_utf8_valid(const char *s, size_t len)
{
    size_t i = 0;
    unsigned long cp;

    while (i < len) {
        size_t k = s_utf8_seq((const unsigned char *) s + i, len - i, &cp);
        if (k == 0) {
            return false;
        }
        i += k;
    }
    return true;
}

/* Copies s into a new string, replacing each byte that is not part of valid UTF-8 with '?',
 * so that the result can always become a Jansson string.  Caller owns return value. */
static char *s_utf8_clean(const char *s)
{
    size_t n = strlen(s), i = 0;
    char *out = malloc(n + 1);
    unsigned long cp;

    if (!out) {
        return NULL;
    }
    while (i < n) {
        size_t k = s_utf8_seq((const unsigned char *) s + i, n - i, &cp);
        if (k == 0) {
            out[i] = '?';
            i++;
        } else {
            memcpy(out + i, s + i, k);
            i += k;
        }
    }
    out[n] = '\0';
    return out;
}

json_t *em_errors_new(void)
{
    return json_array();
}

void em_errors_add(json_t *errors, const char *pointer, const char *keyword, const char *fmt, ...)
{
    va_list ap;
    char *message = NULL;
    char *p, *k, *m;

    if (!errors || !json_is_array(errors)) {
        return;
    }
    va_start(ap, fmt);
    if (vasprintf(&message, fmt ? fmt : "", ap) < 0) {
        message = NULL;
    }
    va_end(ap);
    p = s_utf8_clean(pointer ? pointer : "");
    k = s_utf8_clean(keyword ? keyword : "");
    m = s_utf8_clean(message ? message : "");
    if (p && k && m) {
        json_array_append_new(errors,
                              json_pack("{s:s,s:s,s:s}", "pointer", p, "keyword", k, "message", m));
    }
    free(p);
    free(k);
    free(m);
    free(message);
}

/* Appends "/" and the RFC 6901 escaped form of a key (~ as ~0, / as ~1). */
static void s_pointer_push_key(s_buf_t *ptr, const char *key, size_t len)
{
    s_buf_putc(ptr, '/');
    for (size_t i = 0; i < len; i++) {
        if (key[i] == '~') {
            s_buf_puts(ptr, "~0");
        } else if (key[i] == '/') {
            s_buf_puts(ptr, "~1");
        } else {
            s_buf_putc(ptr, key[i]);
        }
    }
}

/* Finds the first container nested deeper than max (value itself at `depth`).  On finding
 * one, ptr holds its JSON Pointer and true is returned.  Recursion stops at max + 1 levels. */
static bool s_too_deep(const json_t *value, int depth, int max, s_buf_t *ptr)
{
    if (!json_is_object(value) && !json_is_array(value)) {
        return false;
    }
    if (depth > max) {
        return true;
    }
    size_t mark = ptr->len;
    if (json_is_array(value)) {
        size_t i;
        json_t *item;
        json_array_foreach(value, i, item)
        {
            char idx[32];
            snprintf(idx, sizeof idx, "/%zu", i);
            s_buf_puts(ptr, idx);
            if (s_too_deep(item, depth + 1, max, ptr)) {
                return true;
            }
            ptr->len = mark;
        }
    } else {
        void *it;
        for (it = json_object_iter((json_t *) value); it;
             it = json_object_iter_next((json_t *) value, it)) {
            s_pointer_push_key(ptr, json_object_iter_key(it), json_object_iter_key_len(it));
            if (s_too_deep(json_object_iter_value(it), depth + 1, max, ptr)) {
                return true;
            }
            ptr->len = mark;
        }
    }
    if (ptr->data) {
        ptr->data[mark] = '\0';
    }
    return false;
}

/* ---- Single-pass parser ----
 *
 * em_json_parse first reads the text with this parser, which builds the Jansson values
 * directly (members set without re-checking UTF-8, strings taken without a copy through a
 * buffer when they have no escape).  It accepts only what json_loadb with
 * JSON_REJECT_DUPLICATES | JSON_DECODE_ANY accepts and yields the same values (the same
 * types, numbers, strings and member order); it gives up on anything it does not handle
 * itself (every error, a duplicate key, \u0000, lone surrogates, integers of more than 18
 * digits, out-of-range reals, nesting past the limit) and em_json_parse then reads the text
 * with json_loadb, which decides and words the error, as before. */

/* Nesting at which the single-pass parser gives up (Jansson refuses past 2048 levels). */
#define S_FAST_MAX_DEPTH 1024

typedef struct {
    const unsigned char *p;   /* next byte */
    const unsigned char *end; /* end of the text */
    int max_depth;            /* em_json_parse's limit, < 0 for none */
    char *scratch;            /* decoded text of strings with escapes */
    size_t scap;
} s_fast_t;

/* 1 for the bytes a string holds as they are: printable ASCII other than '"' and '\\'. */
static const unsigned char s_plain[256] = {
    ['\x20'] = 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20-0x2F, no '"' */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,             /* 0x30-0x3F */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,             /* 0x40-0x4F */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,             /* 0x50-0x5F, no '\\' */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,             /* 0x60-0x6F */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,             /* 0x70-0x7F */
};

static inline void s_fast_ws(s_fast_t *f)
{
    while (f->p < f->end && (*f->p == ' ' || *f->p == '\n' || *f->p == '\r' || *f->p == '\t')) {
        f->p++;
    }
}

static int s_fast_hex4(const unsigned char *p, unsigned long *out)
{
    unsigned long v = 0;
    for (int i = 0; i < 4; i++) {
        int d = em_hex_digit(p[i]);
        if (d < 0) {
            return -1;
        }
        v = v << 4 | (unsigned long) d;
    }
    *out = v;
    return 0;
}

static int s_fast_scratch_put(s_fast_t *f, size_t *n, const void *src, size_t k)
{
    if (k == 0) {
        return 0;
    }
    if (*n + k > f->scap) {
        size_t cap = f->scap ? f->scap : 256;
        while (cap < *n + k) {
            cap *= 2;
        }
        char *d = realloc(f->scratch, cap);
        if (!d) {
            return -1;
        }
        f->scratch = d;
        f->scap = cap;
    }
    memcpy(f->scratch + *n, src, k);
    *n += k;
    return 0;
}

/* Reads the string whose opening quote is at f->p.  On success *s and *len give its UTF-8
 * text (in the input, or in f->scratch when it had escapes, valid until the next string) and
 * f->p is past the closing quote.  Returns 0, or -1 to give up. */
static int s_fast_string(s_fast_t *f, const char **s, size_t *len)
{
    const unsigned char *p = f->p + 1, *end = f->end, *run = p;
    size_t n = 0;
    bool escaped = false;

    for (;;) {
        while (p < end && s_plain[*p]) {
            p++;
        }
        if (p >= end) {
            return -1;
        }
        unsigned char c = *p;
        if (c == '"') {
            break;
        }
        if (c >= 0x80) {
            unsigned long cp;
            size_t k = s_utf8_seq(p, (size_t) (end - p), &cp);
            if (k == 0) {
                return -1;
            }
            p += k;
            continue;
        }
        if (c != '\\') {
            return -1; /* a control character */
        }
        /* An escape: the text so far goes to the scratch buffer, then the decoded char. */
        if (s_fast_scratch_put(f, &n, run, (size_t) (p - run)) < 0 || end - p < 2) {
            return -1;
        }
        char out[4];
        size_t k = 1;
        switch (p[1]) {
        case '"': out[0] = '"'; break;
        case '\\': out[0] = '\\'; break;
        case '/': out[0] = '/'; break;
        case 'b': out[0] = '\b'; break;
        case 'f': out[0] = '\f'; break;
        case 'n': out[0] = '\n'; break;
        case 'r': out[0] = '\r'; break;
        case 't': out[0] = '\t'; break;
        case 'u': {
            unsigned long cp, lo;
            if (end - p < 6 || s_fast_hex4(p + 2, &cp) < 0 || cp == 0 ||
                (cp >= 0xDC00 && cp <= 0xDFFF)) {
                return -1;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || s_fast_hex4(p + 8, &lo) < 0 ||
                    lo < 0xDC00 || lo > 0xDFFF) {
                    return -1;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            if (cp < 0x80) {
                out[0] = (char) cp;
            } else if (cp < 0x800) {
                out[0] = (char) (0xC0 | cp >> 6);
                out[1] = (char) (0x80 | (cp & 0x3F));
                k = 2;
            } else if (cp < 0x10000) {
                out[0] = (char) (0xE0 | cp >> 12);
                out[1] = (char) (0x80 | (cp >> 6 & 0x3F));
                out[2] = (char) (0x80 | (cp & 0x3F));
                k = 3;
            } else {
                out[0] = (char) (0xF0 | cp >> 18);
                out[1] = (char) (0x80 | (cp >> 12 & 0x3F));
                out[2] = (char) (0x80 | (cp >> 6 & 0x3F));
                out[3] = (char) (0x80 | (cp & 0x3F));
                k = 4;
            }
            p += 4;
            break;
        }
        default:
            return -1;
        }
        if (s_fast_scratch_put(f, &n, out, k) < 0) {
            return -1;
        }
        p += 2;
        run = p;
        escaped = true;
    }
    if (escaped) {
        if (s_fast_scratch_put(f, &n, run, (size_t) (p - run)) < 0) {
            return -1;
        }
        *s = f->scratch;
        *len = n;
    } else {
        *s = (const char *) f->p + 1;
        *len = (size_t) (p - (f->p + 1));
    }
    f->p = p + 1;
    return 0;
}

static inline bool s_fast_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/* A number as Jansson reads it: an integer (json_int_t) without '.', 'e' or 'E', a real
 * (strtod) otherwise.  Gives up (NULL) on more than 18 integer digits and on a real that
 * strtod reports out of range, which json_loadb refuses or reads by its own rules. */
static json_t *s_fast_number(s_fast_t *f)
{
    const unsigned char *p = f->p, *end = f->end, *start = p;
    bool neg = false, real = false;

    if (*p == '-') {
        neg = true;
        p++;
    }
    if (!s_fast_digit(p, end)) {
        return NULL;
    }
    if (*p == '0') {
        p++;
    } else {
        while (s_fast_digit(p, end)) {
            p++;
        }
    }
    const unsigned char *int_end = p;
    if (p < end && *p == '.') {
        p++;
        if (!s_fast_digit(p, end)) {
            return NULL;
        }
        while (s_fast_digit(p, end)) {
            p++;
        }
        real = true;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }
        if (!s_fast_digit(p, end)) {
            return NULL;
        }
        while (s_fast_digit(p, end)) {
            p++;
        }
        real = true;
    }
    f->p = p;
    if (!real) {
        const unsigned char *d = start + (neg ? 1 : 0);
        if (int_end - d > 18) {
            return NULL;
        }
        json_int_t v = 0;
        for (; d < int_end; d++) {
            v = v * 10 + (*d - '0');
        }
        return json_integer(neg ? -v : v);
    }
    char text[64];
    size_t n = (size_t) (p - start);
    if (n >= sizeof text) {
        return NULL;
    }
    memcpy(text, start, n);
    text[n] = '\0';
    char *stop;
    errno = 0;
    double d = strtod(text, &stop);
    if (errno != 0 || stop != text + n || !isfinite(d)) {
        return NULL;
    }
    return json_real(d);
}

static json_t *s_fast_value(s_fast_t *f, int depth);

static json_t *s_fast_object(s_fast_t *f, int depth)
{
    json_t *obj = json_object();
    size_t size = 0;

    if (!obj) {
        return NULL;
    }
    f->p++;
    s_fast_ws(f);
    if (f->p < f->end && *f->p == '}') {
        f->p++;
        return obj;
    }
    for (;;) {
        const char *key;
        size_t klen;
        if (f->p >= f->end || *f->p != '"' || s_fast_string(f, &key, &klen) < 0) {
            break;
        }
        /* The key may live in the scratch buffer, which the value's strings reuse. */
        char kbuf[128];
        char *kcopy = NULL;
        if (key == f->scratch) {
            if (klen < sizeof kbuf) {
                memcpy(kbuf, key, klen);
                key = kbuf;
            } else if ((kcopy = malloc(klen)) != NULL) {
                memcpy(kcopy, key, klen);
                key = kcopy;
            } else {
                break;
            }
        }
        s_fast_ws(f);
        json_t *v = NULL;
        if (f->p < f->end && *f->p == ':') {
            f->p++;
            s_fast_ws(f);
            v = s_fast_value(f, depth);
        }
        /* json_object_setn_new_nocheck replaces the value of a key already present: an
         * object that does not grow had a duplicate key. */
        if (!v || json_object_setn_new_nocheck(obj, key, klen, v) < 0 ||
            json_object_size(obj) != ++size) {
            free(kcopy);
            break;
        }
        free(kcopy);
        s_fast_ws(f);
        if (f->p >= f->end) {
            break;
        }
        if (*f->p == '}') {
            f->p++;
            return obj;
        }
        if (*f->p != ',') {
            break;
        }
        f->p++;
        s_fast_ws(f);
    }
    json_decref(obj);
    return NULL;
}

static json_t *s_fast_array(s_fast_t *f, int depth)
{
    json_t *arr = json_array();

    if (!arr) {
        return NULL;
    }
    f->p++;
    s_fast_ws(f);
    if (f->p < f->end && *f->p == ']') {
        f->p++;
        return arr;
    }
    for (;;) {
        json_t *v = s_fast_value(f, depth);
        if (!v || json_array_append_new(arr, v) < 0) {
            break;
        }
        s_fast_ws(f);
        if (f->p >= f->end) {
            break;
        }
        if (*f->p == ']') {
            f->p++;
            return arr;
        }
        if (*f->p != ',') {
            break;
        }
        f->p++;
        s_fast_ws(f);
    }
    json_decref(arr);
    return NULL;
}

/* The value at f->p (no whitespace before it), whose containers sit at depth + 1. */
static json_t *s_fast_value(s_fast_t *f, int depth)
{
    const unsigned char *p = f->p;
    size_t left = (size_t) (f->end - p);

    if (left == 0) {
        return NULL;
    }
    switch (*p) {
    case '{':
    case '[':
        if (depth + 1 > S_FAST_MAX_DEPTH || (f->max_depth >= 0 && depth + 1 > f->max_depth)) {
            return NULL;
        }
        return *p == '{' ? s_fast_object(f, depth + 1) : s_fast_array(f, depth + 1);
    case '"': {
        const char *s;
        size_t len;
        if (s_fast_string(f, &s, &len) < 0) {
            return NULL;
        }
        return json_stringn_nocheck(s, len);
    }
    case 't':
        if (left >= 4 && memcmp(p, "true", 4) == 0) {
            f->p += 4;
            return json_true();
        }
        return NULL;
    case 'f':
        if (left >= 5 && memcmp(p, "false", 5) == 0) {
            f->p += 5;
            return json_false();
        }
        return NULL;
    case 'n':
        if (left >= 4 && memcmp(p, "null", 4) == 0) {
            f->p += 4;
            return json_null();
        }
        return NULL;
    default:
        return s_fast_number(f);
    }
}

/* The whole text as one value, or NULL when the single-pass parser gives up. */
static json_t *s_fast_parse(const char *buf, size_t len, int max_depth)
{
    s_fast_t f = { (const unsigned char *) buf, (const unsigned char *) buf + len, max_depth,
                   NULL, 0 };
    s_fast_ws(&f);
    json_t *v = s_fast_value(&f, 0);
    if (v) {
        s_fast_ws(&f);
        if (f.p != f.end) {
            json_decref(v);
            v = NULL;
        }
    }
    free(f.scratch);
    return v;
}

json_t *em_json_parse(const char *buf, size_t len, int max_depth, json_t **errors)
{
    json_error_t jerr;
    json_t *root;

    if (errors) {
        *errors = NULL;
    }
    /* Jansson stops at a NUL byte in a buffer as if the text ended there ("123\0" parses as
     * 123), so raw NUL bytes, which valid JSON never contains, are refused first. */
    if (!buf) {
        buf = "";
        len = 0;
    }
    root = s_fast_parse(buf, len, max_depth);
    if (root) {
        return root;
    }
    const char *nul = memchr(buf, '\0', len);
    if (nul) {
        if (errors) {
            int line = 1, column = 1;
            for (const char *p = buf; p < nul; p++) {
                if (*p == '\n') {
                    line++;
                    column = 1;
                } else {
                    column++;
                }
            }
            *errors = em_errors_new();
            em_errors_add(*errors, "", "json", "invalid JSON at line %d, column %d: NUL byte",
                          line, column);
        }
        return NULL;
    }
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        if (errors) {
            *errors = em_errors_new();
            em_errors_add(*errors, "", "json", "invalid JSON at line %d, column %d: %s",
                          jerr.line, jerr.column, jerr.text);
        }
        return NULL;
    }
    s_buf_t ptr = { 0 };
    if (max_depth >= 0 && s_too_deep(root, 1, max_depth, &ptr)) {
        if (errors) {
            *errors = em_errors_new();
            const char *p = ptr.data ? ptr.data : "";
            size_t plen = ptr.failed ? 0 : ptr.len;
            if (plen > S_POINTER_MAX) {
                /* Cut at a '/' so that the pointer still names an ancestor. */
                plen = S_POINTER_MAX;
                while (plen > 0 && p[plen] != '/') {
                    plen--;
                }
            }
            char *shortp = strndup(p, plen);
            em_errors_add(*errors, shortp ? shortp : "", "maxDepth", "nesting deeper than %d",
                          max_depth);
            free(shortp);
        }
        free(ptr.data);
        json_decref(root);
        return NULL;
    }
    free(ptr.data);
    return root;
}

static bool s_is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Returns the offset just after the JSON value starting at i, or 0 on malformed input. */
static size_t s_skip_value(const char *buf, size_t len, size_t i)
{
    long depth = 0;
    bool in_string = false;

    if (i >= len) {
        return 0;
    }
    if (buf[i] != '"' && buf[i] != '[' && buf[i] != '{') {
        /* A scalar: number, true, false or null. */
        while (i < len && !s_is_ws(buf[i]) && buf[i] != ',' && buf[i] != ']' && buf[i] != '}') {
            i++;
        }
        return i;
    }
    for (; i < len; i++) {
        char c = buf[i];
        if (in_string) {
            if (c == '\\') {
                i++; /* The escaped character cannot end the string. */
            } else if (c == '"') {
                in_string = false;
                if (depth == 0) {
                    return i + 1;
                }
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            depth++;
        } else if (c == ']' || c == '}') {
            depth--;
            if (depth == 0) {
                return i + 1;
            }
            if (depth < 0) {
                return 0;
            }
        }
    }
    return 0;
}

long em_json_split_array(const char *buf, size_t len, em_json_slice_fn *fn, void *arg)
{
    size_t i = 0;
    long count = 0;

    while (i < len && s_is_ws(buf[i])) {
        i++;
    }
    if (i >= len || buf[i] != '[') {
        return -1;
    }
    i++;
    for (;;) {
        while (i < len && s_is_ws(buf[i])) {
            i++;
        }
        if (i >= len) {
            return -1;
        }
        if (buf[i] == ']') {
            return count;
        }
        if (count > 0) {
            if (buf[i] != ',') {
                return -1;
            }
            i++;
            while (i < len && s_is_ws(buf[i])) {
                i++;
            }
        }
        size_t end = s_skip_value(buf, len, i);
        if (end == 0 || end <= i) {
            return -1;
        }
        if (fn) {
            fn(arg, (size_t) count, buf + i, end - i);
        }
        count++;
        i = end;
    }
}

/* ---- RFC 8785 ---- */

/* Compares two UTF-8 keys by their UTF-16 code units, as RFC 8785 section 3.2.3 orders
 * object members.  Invalid UTF-8 (which Jansson never produces) compares by byte. */
static int s_utf16_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i = 0, j = 0;

    while (i < alen && j < blen) {
        unsigned long ca, cb;
        size_t ka = s_utf8_seq((const unsigned char *) a + i, alen - i, &ca);
        size_t kb = s_utf8_seq((const unsigned char *) b + j, blen - j, &cb);
        if (ka == 0) {
            ca = (unsigned char) a[i];
            ka = 1;
        }
        if (kb == 0) {
            cb = (unsigned char) b[j];
            kb = 1;
        }
        if (ca != cb) {
            /* First UTF-16 unit: the code point itself or its high surrogate. */
            unsigned long ua = ca < 0x10000 ? ca : 0xD800 + ((ca - 0x10000) >> 10);
            unsigned long ub = cb < 0x10000 ? cb : 0xD800 + ((cb - 0x10000) >> 10);
            if (ua != ub) {
                return ua < ub ? -1 : 1;
            }
            /* Same high surrogate: the low surrogates decide. */
            unsigned long la = 0xDC00 + ((ca - 0x10000) & 0x3FF);
            unsigned long lb = 0xDC00 + ((cb - 0x10000) & 0x3FF);
            return la < lb ? -1 : 1;
        }
        i += ka;
        j += kb;
    }
    if (i < alen) {
        return 1;
    }
    if (j < blen) {
        return -1;
    }
    return 0;
}

typedef struct {
    const char *key;
    size_t len;
    json_t *value;
} s_member_t;

static int s_member_cmp(const void *pa, const void *pb)
{
    const s_member_t *a = pa, *b = pb;
    return s_utf16_cmp(a->key, a->len, b->key, b->len);
}

static void s_jcs_string(s_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    s_buf_putc(b, '"');
    size_t run = 0; /* start of the pending run of literal bytes */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        const char *esc = NULL;
        char u[7];
        if (c == '"') {
            esc = "\\\"";
        } else if (c == '\\') {
            esc = "\\\\";
        } else if (c == '\b') {
            esc = "\\b";
        } else if (c == '\f') {
            esc = "\\f";
        } else if (c == '\n') {
            esc = "\\n";
        } else if (c == '\r') {
            esc = "\\r";
        } else if (c == '\t') {
            esc = "\\t";
        } else if (c < 0x20) {
            u[0] = '\\';
            u[1] = 'u';
            u[2] = '0';
            u[3] = '0';
            u[4] = hex[c >> 4];
            u[5] = hex[c & 0xF];
            u[6] = '\0';
            esc = u;
        }
        if (esc) {
            s_buf_append(b, s + run, i - run);
            s_buf_puts(b, esc);
            run = i + 1;
        }
    }
    s_buf_append(b, s + run, len - run);
    s_buf_putc(b, '"');
}

/* Parses "d.ddde[+-]x" as printed by %e into digits (no dot) and the decimal exponent. */
static void s_split_e(const char *e, char *digits, int *exp10)
{
    size_t k = 0;
    const char *p = e;
    for (; *p && *p != 'e'; p++) {
        if (*p >= '0' && *p <= '9') {
            digits[k++] = *p;
        }
    }
    digits[k] = '\0';
    *exp10 = *p == 'e' ? atoi(p + 1) : 0;
}

static bool s_roundtrips(const char *digits, int exp10, double d)
{
    char text[64];
    snprintf(text, sizeof text, "%c.%se%d", digits[0], digits + 1, exp10);
    return strtod(text, NULL) == d;
}

/* Adds delta (+1 or -1) to the last digit of a digit string with carry/borrow.  Returns
 * false when the result would need another digit or lose its leading digit. */
static bool s_digits_step(char *digits, int delta)
{
    size_t n = strlen(digits);
    long i = (long) n - 1;
    while (i >= 0) {
        int v = digits[i] - '0' + delta;
        if (v >= 0 && v <= 9) {
            digits[i] = (char) ('0' + v);
            break;
        }
        digits[i] = delta > 0 ? '0' : '9';
        i--;
    }
    if (i < 0 || digits[0] == '0') {
        return false;
    }
    return true;
}

/* Shortest digit string s and exponent n (value = 0.s * 10^n) that round-trips to d > 0,
 * the closest such among equally short ones (ECMAScript Number::toString, step 5). */
static void s_shortest(double d, char *digits, int *n)
{
    char text[64];
    int exp10 = 0;

    for (int p = 1; p <= 17; p++) {
        snprintf(text, sizeof text, "%.*e", p - 1, d);
        s_split_e(text, digits, &exp10);
        if (s_roundtrips(digits, exp10, d)) {
            break;
        }
        if (p < 17) {
            /* The nearest p-digit value failed; a neighbour may still lie in the rounding
             * interval when it is asymmetric (at a power of two). */
            char alt[32];
            memcpy(alt, digits, strlen(digits) + 1);
            if (s_digits_step(alt, 1) && s_roundtrips(alt, exp10, d)) {
                memcpy(digits, alt, strlen(alt) + 1);
                break;
            }
            memcpy(alt, digits, strlen(digits) + 1);
            if (s_digits_step(alt, -1) && s_roundtrips(alt, exp10, d)) {
                memcpy(digits, alt, strlen(alt) + 1);
                break;
            }
        }
    }
    /* Strip trailing zeros (keep at least one digit). */
    size_t k = strlen(digits);
    while (k > 1 && digits[k - 1] == '0') {
        digits[--k] = '\0';
    }
    *n = exp10 + 1;
}

/* Writes d in the ECMAScript Number.prototype.toString form.  Returns -1 for NaN/Infinity. */
static int s_jcs_number(s_buf_t *b, double d)
{
    char digits[32];
    int n, k;

    if (!isfinite(d)) {
        return -1;
    }
    if (d == 0) {
        s_buf_putc(b, '0'); /* Also for -0. */
        return 0;
    }
    if (d < 0) {
        s_buf_putc(b, '-');
        d = -d;
    }
    s_shortest(d, digits, &n);
    k = (int) strlen(digits);
    if (k <= n && n <= 21) {
        s_buf_puts(b, digits);
        for (int i = 0; i < n - k; i++) {
            s_buf_putc(b, '0');
        }
    } else if (0 < n && n <= 21) {
        s_buf_append(b, digits, (size_t) n);
        s_buf_putc(b, '.');
        s_buf_puts(b, digits + n);
    } else if (-6 < n && n <= 0) {
        s_buf_puts(b, "0.");
        for (int i = 0; i < -n; i++) {
            s_buf_putc(b, '0');
        }
        s_buf_puts(b, digits);
    } else {
        char exp[16];
        s_buf_putc(b, digits[0]);
        if (k > 1) {
            s_buf_putc(b, '.');
            s_buf_puts(b, digits + 1);
        }
        snprintf(exp, sizeof exp, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
        s_buf_puts(b, exp);
    }
    return 0;
}

static int s_jcs_value(s_buf_t *b, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        s_buf_puts(b, "null");
        return 0;
    case JSON_TRUE:
        s_buf_puts(b, "true");
        return 0;
    case JSON_FALSE:
        s_buf_puts(b, "false");
        return 0;
    case JSON_INTEGER:
        return s_jcs_number(b, (double) json_integer_value(v));
    case JSON_REAL:
        return s_jcs_number(b, json_real_value(v));
    case JSON_STRING:
        s_jcs_string(b, json_string_value(v), json_string_length(v));
        return 0;
    case JSON_ARRAY: {
        size_t i;
        json_t *item;
        s_buf_putc(b, '[');
        json_array_foreach(v, i, item)
        {
            if (i > 0) {
                s_buf_putc(b, ',');
            }
            if (s_jcs_value(b, item) != 0) {
                return -1;
            }
        }
        s_buf_putc(b, ']');
        return 0;
    }
    case JSON_OBJECT: {
        size_t n = json_object_size(v), i = 0;
        s_member_t *m = n ? calloc(n, sizeof *m) : NULL;
        void *it;
        int rc = 0;
        if (n && !m) {
            b->failed = true;
            return -1;
        }
        for (it = json_object_iter((json_t *) v); it && i < n;
             it = json_object_iter_next((json_t *) v, it), i++) {
            m[i].key = json_object_iter_key(it);
            m[i].len = json_object_iter_key_len(it);
            m[i].value = json_object_iter_value(it);
        }
        if (n) {
            qsort(m, n, sizeof *m, s_member_cmp);
        }
        s_buf_putc(b, '{');
        for (i = 0; i < n && rc == 0; i++) {
            if (i > 0) {
                s_buf_putc(b, ',');
            }
            s_jcs_string(b, m[i].key, m[i].len);
            s_buf_putc(b, ':');
            rc = s_jcs_value(b, m[i].value);
        }
        s_buf_putc(b, '}');
        free(m);
        return rc;
    }
    }
    return -1;
}

char *em_jcs_encode(const json_t *value, size_t *len)
{
    s_buf_t b = { 0 };

    if (!value || s_jcs_value(&b, value) != 0 || b.failed) {
        free(b.data);
        return NULL;
    }
    if (!b.data) {
        s_buf_append(&b, "", 0);
        if (b.failed) {
            return NULL;
        }
    }
    if (len) {
        *len = b.len;
    }
    return b.data;
}

int em_jcs_digest_hex(const json_t *value, char out[65])
{
    size_t len;
    uint8_t md[32];
    char *text = em_jcs_encode(value, &len);

    if (!text) {
        return -1;
    }
    em_sha256(text, len, md);
    em_hex_encode(md, sizeof md, out);
    free(text);
    return 0;
}

void em_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int mdlen = 32;
    /* EVP_Digest with SHA-256 fails only on allocation failure inside OpenSSL. */
    if (EVP_Digest(data, len, out, &mdlen, EVP_sha256(), NULL) != 1) {
        memset(out, 0, 32);
    }
}

void em_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 0xF];
    }
    out[2 * len] = '\0';
}

int em_hex_digit(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int em_hex_decode(const char *hex, uint8_t *out, size_t outlen)
{
    if (!hex || strlen(hex) != 2 * outlen) {
        return -1;
    }
    for (size_t i = 0; i < outlen; i++) {
        int hi = em_hex_digit(hex[2 * i]), lo = em_hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        out[i] = (uint8_t) (hi << 4 | lo);
    }
    return 0;
}

int em_chain_next_hex(const char prev_hex[65], const char digest_hex[65], char out[65])
{
    uint8_t in[64], md[32];

    if (em_hex_decode(prev_hex, in, 32) != 0 || em_hex_decode(digest_hex, in + 32, 32) != 0) {
        return -1;
    }
    em_sha256(in, sizeof in, md);
    em_hex_encode(md, sizeof md, out);
    return 0;
}
