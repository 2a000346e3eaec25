/* em_signal.h - the only global mutable state: flags set by SIGINT/SIGTERM and SIGHUP. */
#ifndef EM_SIGNAL_H
#define EM_SIGNAL_H
#include <stdbool.h>

/* Installs handlers (SIGINT/SIGTERM -> interrupted, SIGHUP -> reload; SIGPIPE ignored). */
void em_signal_install(void);
bool em_signal_interrupted(void);
/* Returns true once per SIGHUP received (clears the flag). */
bool em_signal_reload_requested(void);
/* The number of SIGHUPs received so far (modulo 2^30).  Unlike em_signal_reload_requested it
 * clears nothing, so several modules of one process can each notice a reload by comparing it
 * with the count they saw last. */
int em_signal_reload_count(void);
/* For tests: set or clear the interrupted flag. */
void em_signal_set_interrupted(bool on);

#endif
