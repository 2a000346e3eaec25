/* main.c - emine-validate: checks CloudEvents between ingest and archive. */
#include "em.h"
#include "validate.h"

int main(int argc, char **argv)
{
    const char *path;
    int dump, rc;
    validate_t *validate;

    if (em_config_args(argc, argv, &path, &dump) != 0)
        return 2;
    if (dump)
        return validate_dump_config(path, stdout) == 0 ? 0 : 1;
    em_signal_install();
    validate = validate_new(path);
    if (!validate)
        return 1;
    rc = validate_run(validate);
    validate_destroy(&validate);
    return rc == 0 ? 0 : 1;
}
