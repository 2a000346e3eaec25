/* main.c - emine-notify: the committed-event stream (see notify.h). */
#include <stdio.h>

#include "em_config.h"
#include "em_signal.h"
#include "notify.h"

int main(int argc, char **argv)
{
    const char *path = NULL;
    int dump = 0;

    em_signal_install(); /* SIGINT/SIGTERM -> flag only; the loop persists the cursor */
    if (em_config_args(argc, argv, &path, &dump) != 0)
        return 2;
    if (dump)
        return notify_dump_config(path, stdout) == 0 ? 0 : 1;
    notify_t *notify = notify_new(path); /* logs its own reason on failure */
    if (!notify)
        return 1;
    int rc = notify_run(notify);
    notify_destroy(&notify);
    return rc == 0 ? 0 : 1;
}
