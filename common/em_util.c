/* em_util.c - clocks and random identifiers. */
#include "em_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static int64_t s_clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t em_now_ms(void)
{
    return s_clock_ms(CLOCK_REALTIME);
}

int64_t em_mono_ms(void)
{
    return s_clock_ms(CLOCK_MONOTONIC);
}

int64_t em_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Fills buf with len random bytes from the kernel (getrandom, else /dev/urandom). */
static void s_random_bytes(unsigned char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t rc = getrandom(buf + got, len - got, 0);
        if (rc > 0) {
            got += (size_t)rc;
            continue;
        }
        if (rc == -1 && errno == EINTR)
            continue;
        break;
    }
    if (got < len) {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        while (fd >= 0 && got < len) {
            ssize_t rc = read(fd, buf + got, len - got);
            if (rc > 0)
                got += (size_t)rc;
            else if (!(rc == -1 && errno == EINTR))
                break;
        }
        if (fd >= 0)
            close(fd);
    }
    /* Last resort, never expected on Linux: mix the clock so ids still differ. */
    for (; got < len; got++)
        buf[got] = (unsigned char)(em_mono_us() * 2654435761u >> (got % 24));
}

void em_random_hex(char *out, int n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char bytes[64];
    int i = 0;

    if (!out)
        return;
    while (i < n) {
        int chunk = (n - i + 1) / 2;
        if (chunk > (int)sizeof bytes)
            chunk = (int)sizeof bytes;
        s_random_bytes(bytes, (size_t)chunk);
        for (int b = 0; b < chunk && i < n; b++) {
            out[i++] = hex[bytes[b] >> 4];
            if (i < n)
                out[i++] = hex[bytes[b] & 0x0f];
        }
    }
    out[n > 0 ? n : 0] = '\0';
}
