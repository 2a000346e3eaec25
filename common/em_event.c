/* em_event.c - the CloudEvents 1.0 envelope (JSON format): the format rules, RFC 3339 time,
 * and conversion of HTTP binary-mode requests into structured events. */
#include "em_event.h"
#include "em_json.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- RFC 3339 ---- */

static bool s_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static bool s_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int s_days_in_month(int y, int m)
{
    static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return m == 2 && s_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static long long s_days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* date-time = full-date "T" full-time (RFC 3339 section 5.6); "t" and "z" are accepted as
 * the RFC allows.  A leap second (:60) is accepted only where it falls at 23:59 UTC and is
 * counted as the last millisecond of that minute. */
bool em_rfc3339_parse(const char *s, long long *epoch_ms)
{
    int year, month, day, hour, minute, second, ms = 0, off = 0;
    size_t i;

    if (!s || strlen(s) < 20) {
        return false;
    }
    if (!s_digits(s, 4, &year) || s[4] != '-' || !s_digits(s + 5, 2, &month) || s[7] != '-' ||
        !s_digits(s + 8, 2, &day) || (s[10] != 'T' && s[10] != 't') ||
        !s_digits(s + 11, 2, &hour) || s[13] != ':' || !s_digits(s + 14, 2, &minute) ||
        s[16] != ':' || !s_digits(s + 17, 2, &second)) {
        return false;
    }
    if (month < 1 || month > 12 || day < 1 || day > s_days_in_month(year, month) || hour > 23 ||
        minute > 59 || second > 60) {
        return false;
    }
    i = 19;
    if (s[i] == '.') {
        int nd = 0;
        i++;
        while (s[i] >= '0' && s[i] <= '9') {
            if (nd < 3) {
                ms = ms * 10 + (s[i] - '0');
            }
            nd++;
            i++;
        }
        if (nd == 0) {
            return false;
        }
        for (; nd < 3; nd++) {
            ms *= 10;
        }
    }
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int oh, om;
        if (!s_digits(s + i + 1, 2, &oh) || s[i + 3] != ':' || !s_digits(s + i + 4, 2, &om) ||
            oh > 23 || om > 59) {
            return false;
        }
        off = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return false;
    }
    if (s[i] != '\0') {
        return false;
    }
    long long minutes = s_days_from_civil(year, month, day) * 1440 + hour * 60 + minute - off;
    if (second == 60) {
        /* Leap seconds only happen at the end of a UTC day. */
        long long utc_minute_of_day = ((minutes % 1440) + 1440) % 1440;
        if (utc_minute_of_day != 1439) {
            return false;
        }
        second = 59;
        ms = 999;
    }
    if (epoch_ms) {
        *epoch_ms = (minutes * 60 + second) * 1000 + ms;
    }
    return true;
}

/* ---- media types, URIs, base64 ---- */

/* RFC 2045 token character: any CHAR except SPACE, CTLs and tspecials. */
static bool s_tchar(unsigned char c)
{
    return c > 0x20 && c < 0x7F && !strchr("()<>@,;:\\\"/[]?=", c);
}

static size_t s_token(const char *s)
{
    size_t n = 0;
    while (s[n] && s_tchar((unsigned char) s[n])) {
        n++;
    }
    return n;
}

/* media-type = type "/" subtype *( OWS ";" OWS token "=" ( token / quoted-string ) ). */
static bool s_media_type_valid(const char *s)
{
    size_t n = s_token(s);
    if (n == 0 || s[n] != '/') {
        return false;
    }
    s += n + 1;
    n = s_token(s);
    if (n == 0) {
        return false;
    }
    s += n;
    for (;;) {
        while (*s == ' ' || *s == '\t') {
            s++;
        }
        if (*s == '\0') {
            return true;
        }
        if (*s != ';') {
            return false;
        }
        s++;
        while (*s == ' ' || *s == '\t') {
            s++;
        }
        n = s_token(s);
        if (n == 0 || s[n] != '=') {
            return false;
        }
        s += n + 1;
        if (*s == '"') {
            s++;
            while (*s && *s != '"') {
                if (*s == '\\' && s[1]) {
                    s++;
                } else if ((unsigned char) *s < 0x20 && *s != '\t') {
                    return false;
                }
                s++;
            }
            if (*s != '"') {
                return false;
            }
            s++;
        } else {
            n = s_token(s);
            if (n == 0) {
                return false;
            }
            s += n;
        }
    }
}

/* Length of the type/subtype part of a media type (before ';' or white space). */
static size_t s_essence_len(const char *ct)
{
    size_t n = 0;
    while (ct[n] && ct[n] != ';' && ct[n] != ' ' && ct[n] != '\t') {
        n++;
    }
    return n;
}

static bool s_essence_is(const char *ct, const char *want)
{
    size_t n = s_essence_len(ct);
    return n == strlen(want) && strncasecmp(ct, want, n) == 0;
}

static bool s_essence_has_suffix(const char *ct, const char *suffix)
{
    size_t n = s_essence_len(ct), k = strlen(suffix);
    return n > k && strncasecmp(ct + n - k, suffix, k) == 0 && memchr(ct, '/', n);
}

bool em_media_type_is_json(const char *ct)
{
    return ct && (s_essence_is(ct, "application/json") || s_essence_has_suffix(ct, "+json"));
}

/* Text-like media types, whose bodies become a string `data` in binary mode. */
static bool s_media_type_is_text(const char *ct)
{
    return ct && (strncasecmp(ct, "text/", 5) == 0 || s_essence_is(ct, "application/xml") ||
                  s_essence_has_suffix(ct, "+xml") || strcasestr(ct, "charset=") != NULL);
}

/* URI characters of RFC 3986: unreserved, reserved and '%' (checked as pct-encoded). */
static bool s_uri_chars_valid(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char) *s;
        if (c == '%') {
            if (!isxdigit((unsigned char) s[1]) || !isxdigit((unsigned char) s[2])) {
                return false;
            }
            s += 2;
        } else if (!(isalnum(c) || strchr("-._~:/?#[]@!$&'()*+,;=", c))) {
            return false;
        }
    }
    return true;
}

/* Length of a valid scheme followed by ':' at the start of s, or 0. */
static size_t s_scheme_len(const char *s)
{
    size_t n = 0;
    if (!isalpha((unsigned char) s[0])) {
        return 0;
    }
    while (isalnum((unsigned char) s[n]) || s[n] == '+' || s[n] == '-' || s[n] == '.') {
        n++;
    }
    return s[n] == ':' ? n : 0;
}

/* URI-reference (RFC 3986 section 4.1): a URI or a relative reference.  In a relative
 * reference the first path segment cannot contain ':'. */
static bool s_uri_reference_valid(const char *s)
{
    if (!*s || !s_uri_chars_valid(s)) {
        return false;
    }
    if (s_scheme_len(s) > 0) {
        return true;
    }
    size_t seg = strcspn(s, "/?#");
    return memchr(s, ':', seg) == NULL;
}

/* Absolute URI: scheme ":" hier-part [ "?" query ] [ "#" fragment ]. */
static bool s_uri_valid(const char *s)
{
    return s_uri_chars_valid(s) && s_scheme_len(s) > 0;
}

static int s_b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/* RFC 4648 section 4 Base64 with padding: length a multiple of 4, '=' only as the last one
 * or two characters. */
static bool s_base64_valid(const char *s, size_t len)
{
    if (len % 4 != 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '=') {
            /* Padding: only in the last group, at most two, nothing else after it. */
            if (i < len - 2 || (i == len - 2 && s[len - 1] != '=')) {
                return false;
            }
        } else if (s_b64val((unsigned char) s[i]) < 0) {
            return false;
        }
    }
    return true;
}

/* Caller owns return value; NULL on allocation failure. */
static char *s_base64_encode(const unsigned char *in, size_t len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((len + 2) / 3 * 4 + 1);
    size_t o = 0, i = 0;
    if (!out) {
        return NULL;
    }
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = tbl[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t) in[i] << 16 | (i + 1 < len ? (uint32_t) in[i + 1] << 8 : 0);
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

/* ---- the format rules ---- */

static bool s_attr_name_valid(const char *name)
{
    if (!*name) {
        return false;
    }
    for (; *name; name++) {
        if (!((*name >= 'a' && *name <= 'z') || (*name >= '0' && *name <= '9'))) {
            return false;
        }
    }
    return true;
}

/* The JSON Pointer (RFC 6901) of a top-level member.  Caller owns return value; NULL on
 * allocation failure (em_errors_add then reports the whole event). */
static char *s_pointer(const char *name)
{
    char *out = malloc(2 * strlen(name) + 2), *o = out;
    if (!out) {
        return NULL;
    }
    *o++ = '/';
    for (; *name; name++) {
        if (*name == '~' || *name == '/') {
            *o++ = '~';
            *o++ = *name == '~' ? '0' : '1';
        } else {
            *o++ = *name;
        }
    }
    *o = '\0';
    return out;
}

typedef enum { S_ANY, S_URI_REF, S_URI, S_TIME, S_MEDIA } s_format_t;

/* Checks a string attribute; null counts as absent.  Returns 0 or -1. */
static int s_check_string(const json_t *event, const char *name, bool required, s_format_t fmt,
                          json_t *errors)
{
    const json_t *v = json_object_get(event, name);
    char ptr[32]; /* core attribute names are short and need no escaping */

    snprintf(ptr, sizeof ptr, "/%s", name);
    if (!v || json_is_null(v)) {
        if (required) {
            em_errors_add(errors, ptr, "required", "the attribute %s is required", name);
            return -1;
        }
        return 0;
    }
    if (!json_is_string(v)) {
        em_errors_add(errors, ptr, "type", "%s must be a string", name);
        return -1;
    }
    const char *s = json_string_value(v);
    if (json_string_length(v) == 0) {
        em_errors_add(errors, ptr, "minLength", "%s must not be empty", name);
        return -1;
    }
    if (strlen(s) != json_string_length(v)) {
        em_errors_add(errors, ptr, "format", "%s contains a NUL character", name);
        return -1;
    }
    switch (fmt) {
    case S_ANY:
        break;
    case S_URI_REF:
        if (!s_uri_reference_valid(s)) {
            em_errors_add(errors, ptr, "format", "%s must be a URI-reference (RFC 3986)", name);
            return -1;
        }
        break;
    case S_URI:
        if (!s_uri_valid(s)) {
            em_errors_add(errors, ptr, "format", "%s must be an absolute URI (RFC 3986)", name);
            return -1;
        }
        break;
    case S_TIME:
        if (!em_rfc3339_parse(s, NULL)) {
            em_errors_add(errors, ptr, "format", "%s must be an RFC 3339 date-time", name);
            return -1;
        }
        break;
    case S_MEDIA:
        if (!s_media_type_valid(s)) {
            em_errors_add(errors, ptr, "format", "%s must be an RFC 2046 media type", name);
            return -1;
        }
        break;
    }
    return 0;
}

static bool s_is_core(const char *name)
{
    static const char *const core[] = { "specversion", "id",      "source",     "type",
                                        "subject",     "time",    "dataschema", "datacontenttype",
                                        "data",        "data_base64" };
    for (size_t i = 0; i < sizeof core / sizeof core[0]; i++) {
        if (strcmp(core[i], name) == 0) {
            return true;
        }
    }
    return false;
}

int em_event_check(const json_t *event, json_t *errors)
{
    int rc = 0;

    if (!json_is_object(event)) {
        em_errors_add(errors, "", "type", "a CloudEvent must be a JSON object");
        return -1;
    }

    const json_t *sv = json_object_get(event, "specversion");
    if (!sv || json_is_null(sv)) {
        em_errors_add(errors, "/specversion", "required", "the attribute specversion is required");
        rc = -1;
    } else if (!json_is_string(sv)) {
        em_errors_add(errors, "/specversion", "type", "specversion must be a string");
        rc = -1;
    } else if (strcmp(json_string_value(sv), "1.0") != 0 || json_string_length(sv) != 3) {
        em_errors_add(errors, "/specversion", "enum", "specversion must be \"1.0\"");
        rc = -1;
    }
    rc |= s_check_string(event, "id", true, S_ANY, errors);
    rc |= s_check_string(event, "source", true, S_URI_REF, errors);
    rc |= s_check_string(event, "type", true, S_ANY, errors);
    rc |= s_check_string(event, "subject", false, S_ANY, errors);
    rc |= s_check_string(event, "time", false, S_TIME, errors);
    rc |= s_check_string(event, "dataschema", false, S_URI, errors);
    rc |= s_check_string(event, "datacontenttype", false, S_MEDIA, errors);

    const json_t *data = json_object_get(event, "data");
    const json_t *b64 = json_object_get(event, "data_base64");
    if (b64 && !json_is_null(b64)) {
        if (!json_is_string(b64)) {
            em_errors_add(errors, "/data_base64", "type", "data_base64 must be a string");
            rc = -1;
        } else if (!s_base64_valid(json_string_value(b64), json_string_length(b64))) {
            em_errors_add(errors, "/data_base64", "contentEncoding",
                          "data_base64 must be Base64 (RFC 4648 section 4, padded)");
            rc = -1;
        }
        if (data && !json_is_null(data)) {
            em_errors_add(errors, "/data_base64", "exclusive",
                          "data and data_base64 must not both be present");
            rc = -1;
        }
    }

    /* Attribute names, and the types of extension attributes. */
    void *it;
    for (it = json_object_iter((json_t *) event); it;
         it = json_object_iter_next((json_t *) event, it)) {
        const char *name = json_object_iter_key(it);
        const json_t *v = json_object_iter_value(it);
        if (s_is_core(name)) {
            continue;
        }
        char *ptr = s_pointer(name);
        /* Names longer than 20 characters are only discouraged (SHOULD NOT) by the spec. */
        if (!s_attr_name_valid(name) || strlen(name) != json_object_iter_key_len(it)) {
            em_errors_add(errors, ptr, "pattern",
                          "attribute names must consist of lower-case letters and digits");
            rc = -1;
        }
        if (json_is_null(v) || json_is_string(v) || json_is_boolean(v)) {
            /* null means the attribute is absent. */
        } else if (json_is_integer(v)) {
            json_int_t n = json_integer_value(v);
            if (n < INT32_MIN || n > INT32_MAX) {
                em_errors_add(errors, ptr, "type",
                              "an Integer attribute must be within the 32-bit signed range");
                rc = -1;
            }
        } else {
            em_errors_add(errors, ptr, "type",
                          "extension attribute values must be a string, an integer or a boolean");
            rc = -1;
        }
        free(ptr);
    }
    return rc;
}

const char *em_event_str(const json_t *event, const char *attr)
{
    return json_string_value(json_object_get(event, attr));
}

/* ---- HTTP binary content mode ---- */

typedef struct {
    json_t *event;  /* the structured event being built */
    json_t *errors; /* may be NULL */
    bool failed;    /* some header could not be converted */
} s_binary_t;

static int s_hexv(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char) tolower((unsigned char) c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes s (HTTP binding section 3.1.3.2).  Caller owns return value; NULL when a
 * '%' is not followed by two hex digits.  *len receives the decoded length. */
static char *s_percent_decode(const char *s, size_t *len)
{
    size_t n = strlen(s), o = 0;
    char *out = malloc(n + 1);
    if (!out) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            /* s is NUL-terminated, so s[i + 2] is only read when s[i + 1] is a digit. */
            int hi = s_hexv(s[i + 1]);
            int lo = hi >= 0 ? s_hexv(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(out);
                return NULL;
            }
            out[o++] = (char) (hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    *len = o;
    return out;
}

static void s_binary_header(void *arg, const char *name, const char *value)
{
    s_binary_t *b = arg;
    size_t vlen;

    if (!name || !value) {
        return;
    }
    /* Optional white space around the value is not part of it. */
    while (*value == ' ' || *value == '\t') {
        value++;
    }
    vlen = strlen(value);
    while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t')) {
        vlen--;
    }
    char *trimmed = strndup(value, vlen);
    if (!trimmed) {
        b->failed = true;
        return;
    }
    if (strcasecmp(name, "content-type") == 0) {
        if (vlen > 0) {
            json_object_set_new(b->event, "datacontenttype", json_string(trimmed));
            if (!json_object_get(b->event, "datacontenttype")) {
                em_errors_add(b->errors, "/datacontenttype", "format",
                              "Content-Type is not valid UTF-8");
                b->failed = true;
            }
        }
        free(trimmed);
        return;
    }
    if (strncasecmp(name, "ce-", 3) != 0) {
        free(trimmed);
        return;
    }
    char attr[256];
    size_t k = 0;
    for (const char *p = name + 3; *p && k + 1 < sizeof attr; p++) {
        attr[k++] = (char) tolower((unsigned char) *p);
    }
    attr[k] = '\0';
    char *ptr = s_pointer(attr);
    char *decoded = NULL;
    size_t dlen = 0;
    if (!s_attr_name_valid(attr) || strlen(name + 3) != k || strcmp(attr, "data") == 0) {
        em_errors_add(b->errors, ptr, "pattern", "header %s does not name a CloudEvents attribute",
                      name);
        b->failed = true;
    } else if (json_object_get(b->event, attr)) {
        em_errors_add(b->errors, ptr, "duplicate", "header %s is repeated", name);
        b->failed = true;
    } else if (!(decoded = s_percent_decode(trimmed, &dlen))) {
        em_errors_add(b->errors, ptr, "format", "header %s has invalid percent-encoding", name);
        b->failed = true;
    } else if (!em_utf8_valid(decoded, dlen) || strlen(decoded) != dlen) {
        em_errors_add(b->errors, ptr, "format",
                      "header %s does not decode to UTF-8 text without NUL", name);
        b->failed = true;
    } else {
        json_object_set_new(b->event, attr, json_stringn(decoded, dlen));
    }
    free(decoded);
    free(ptr);
    free(trimmed);
}

json_t *em_event_from_binary(void (*enumerate)(void *src, em_header_visit_fn *fn, void *arg),
                             void *src, const char *body, size_t len, json_t *errors)
{
    s_binary_t b = { .event = json_object(), .errors = errors };

    if (!b.event) {
        return NULL;
    }
    if (enumerate) {
        enumerate(src, s_binary_header, &b);
    }
    if (b.failed) {
        json_decref(b.event);
        return NULL;
    }
    if (len > 0 && body) {
        const char *ct = em_event_str(b.event, "datacontenttype");
        if (em_media_type_is_json(ct)) {
            json_t *perr = NULL;
            json_t *data = em_json_parse(body, len, 64, &perr);
            if (!data) {
                const json_t *first = json_array_get(perr, 0);
                em_errors_add(errors, "/data", "json", "the body is not the JSON its type says: %s",
                              json_string_value(json_object_get(first, "message")));
                json_decref(perr);
                json_decref(b.event);
                return NULL;
            }
            json_object_set_new(b.event, "data", data);
        } else if (s_media_type_is_text(ct) && em_utf8_valid(body, len) &&
                   !memchr(body, '\0', len)) {
            json_object_set_new(b.event, "data", json_stringn(body, len));
        } else {
            char *enc = s_base64_encode((const unsigned char *) body, len);
            if (!enc) {
                json_decref(b.event);
                return NULL;
            }
            json_object_set_new(b.event, "data_base64", json_string(enc));
            free(enc);
        }
    }
    return b.event;
}
