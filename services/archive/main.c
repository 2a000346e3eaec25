/* main.c - emine-archive: the single writer of the event archive. */
#include "archive.h"
#include "em_config.h"
#include "em_signal.h"

int main(int argc, char **argv)
{
    const char *path = NULL;
    int dump = 0;
    archive_t *archive;
    int rc;

    em_signal_install(); /* SIGINT/SIGTERM -> flag only */
    if (em_config_args(argc, argv, &path, &dump) != 0)
        return 2;
    if (dump)
        return archive_dump_config(path, stdout) == 0 ? 0 : 1;
    archive = archive_new(path); /* logs its own reason on failure */
    if (!archive)
        return 1;
    rc = archive_run(archive); /* returns when interrupted (after the last flush) */
    archive_destroy(&archive);
    return rc == 0 ? 0 : 1;
}
