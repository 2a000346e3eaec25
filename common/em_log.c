/* em_log.c - logfmt records on stderr, one write(2) per line so concurrent processes sharing
 * stderr never interleave within a line. */
#include "em_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Process-wide settings, written once by em_log_init in main before any other thread. */
static int s_level = EM_LOG_LVL_INFO;
static char s_svc[64] = "emine";

static const char *const s_names[] = {"error", "warn", "info", "debug"};

void em_log_init(const char *svc, int level)
{
    if (svc && *svc)
        snprintf(s_svc, sizeof s_svc, "%s", svc);
    if (level < EM_LOG_LVL_ERROR)
        level = EM_LOG_LVL_ERROR;
    if (level > EM_LOG_LVL_DEBUG)
        level = EM_LOG_LVL_DEBUG;
    s_level = level;
}

int em_log_level_parse(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, s_names[i]) == 0)
            return i;
    if (strcasecmp(name, "warning") == 0)
        return EM_LOG_LVL_WARN;
    return -1;
}

int em_log_level(void)
{
    return s_level;
}

/* A growable line buffer; on allocation failure it keeps what fits. */
typedef struct {
    char *p;
    size_t len, cap;
    char stack[1024];
} s_buf_t;

static void s_put(s_buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap * 2;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = b->p == b->stack ? malloc(cap) : realloc(b->p, cap);
        if (!np) {
            n = b->cap - b->len - 1;
        } else {
            if (b->p == b->stack)
                memcpy(np, b->stack, b->len);
            b->p = np;
            b->cap = cap;
        }
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void s_puts(s_buf_t *b, const char *s)
{
    s_put(b, s, strlen(s));
}

/* Appends s as a quoted logfmt value: `"`, `\` and control characters are escaped. */
static void s_put_quoted(s_buf_t *b, const char *s)
{
    s_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        switch (*c) {
        case '"': s_put(b, "\\\"", 2); break;
        case '\\': s_put(b, "\\\\", 2); break;
        case '\n': s_put(b, "\\n", 2); break;
        case '\r': s_put(b, "\\r", 2); break;
        case '\t': s_put(b, "\\t", 2); break;
        default:
            if (*c < 0x20 || *c == 0x7f) {
                snprintf(esc, sizeof esc, "\\u%04x", *c);
                s_put(b, esc, 6);
            } else {
                s_put(b, (const char *)c, 1);
            }
        }
    }
    s_put(b, "\"", 1);
}

/* Appends s bare when it is a plain token, quoted otherwise. */
static void s_put_value(s_buf_t *b, const char *s)
{
    int plain = *s != '\0';
    for (const unsigned char *c = (const unsigned char *)s; *c && plain; c++)
        if (*c <= ' ' || *c == '"' || *c == '=' || *c == '\\' || *c == 0x7f)
            plain = 0;
    if (plain)
        s_puts(b, s);
    else
        s_put_quoted(b, s);
}

void em_log_write(int level, const char *mod, const char *event_id, const char *fmt, ...)
{
    s_buf_t b = {.p = NULL, .len = 0, .cap = sizeof b.stack};
    char ts[96], msg_stack[512];
    char *msg = msg_stack;
    struct timespec now;
    struct tm tm;
    va_list ap;
    int n;

    b.p = b.stack;
    b.p[0] = '\0';
    if (level < EM_LOG_LVL_ERROR)
        level = EM_LOG_LVL_ERROR;
    if (level > EM_LOG_LVL_DEBUG)
        level = EM_LOG_LVL_DEBUG;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long)(now.tv_nsec / 1000000) % 1000);

    va_start(ap, fmt);
    n = vsnprintf(msg_stack, sizeof msg_stack, fmt ? fmt : "", ap);
    va_end(ap);
    if (n >= (int)sizeof msg_stack) {
        char *big = malloc((size_t)n + 1);
        if (big) {
            va_start(ap, fmt);
            vsnprintf(big, (size_t)n + 1, fmt, ap);
            va_end(ap);
            msg = big;
        }
    } else if (n < 0) {
        msg_stack[0] = '\0';
    }

    s_puts(&b, "ts=");
    s_puts(&b, ts);
    s_puts(&b, " level=");
    s_puts(&b, s_names[level]);
    s_puts(&b, " svc=");
    s_put_value(&b, s_svc);
    s_puts(&b, " mod=");
    s_put_value(&b, mod && *mod ? mod : "-");
    s_puts(&b, " msg=");
    s_put_quoted(&b, msg);
    if (event_id) {
        s_puts(&b, " event_id=");
        s_put_quoted(&b, event_id);
    }
    s_put(&b, "\n", 1);

    for (size_t off = 0; off < b.len;) {
        ssize_t w = write(STDERR_FILENO, b.p + off, b.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    if (msg != msg_stack)
        free(msg);
    if (b.p != b.stack)
        free(b.p);
}
