/* em_util.h - small shared helpers: clocks and identifiers. */
#ifndef EM_UTIL_H
#define EM_UTIL_H
#include <stdint.h>

int64_t em_now_ms(void);   /* wall clock, ms since the epoch */
int64_t em_mono_ms(void);  /* monotonic clock, ms */
int64_t em_mono_us(void);  /* monotonic clock, µs */
/* Fills out with `n` random hex characters and a NUL. */
void em_random_hex(char *out, int n);

#endif
