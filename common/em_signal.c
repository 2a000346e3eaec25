/* em_signal.c - the process's only global mutable state: flags set by signal handlers. */
#include "em_signal.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t s_interrupted;
static volatile sig_atomic_t s_reload;
static volatile sig_atomic_t s_reload_count; /* SIGHUPs received (wraps; compared for change) */

/* Handlers only set a flag; the poll loop sees it after zmq_poll returns EINTR. */
static void s_on_term(int signo)
{
    (void)signo;
    s_interrupted = 1;
}

static void s_on_hup(int signo)
{
    (void)signo;
    s_reload = 1;
    s_reload_count = (sig_atomic_t)((s_reload_count + 1) & 0x3fffffff);
}

void em_signal_install(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: blocking calls return EINTR so loops notice the flag */
    sa.sa_handler = s_on_term;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = s_on_hup;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

bool em_signal_interrupted(void)
{
    return s_interrupted != 0;
}

bool em_signal_reload_requested(void)
{
    if (!s_reload)
        return false;
    s_reload = 0;
    return true;
}

int em_signal_reload_count(void)
{
    return (int)s_reload_count;
}

void em_signal_set_interrupted(bool on)
{
    s_interrupted = on ? 1 : 0;
}
