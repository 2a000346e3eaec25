/* main.c - emine-ingest: the producers' front door. */
#include "em.h"
#include "ingest.h"

int main(int argc, char **argv)
{
    const char *path;
    int dump, rc;
    ingest_t *ingest;

    if (em_config_args(argc, argv, &path, &dump) != 0)
        return 2;
    if (dump)
        return ingest_dump_config(path, stdout) == 0 ? 0 : 1;
    em_signal_install();
    ingest = ingest_new(path);
    if (!ingest)
        return 1;
    rc = ingest_run(ingest);
    ingest_destroy(&ingest);
    return rc == 0 ? 0 : 1;
}
