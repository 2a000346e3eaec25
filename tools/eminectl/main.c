/* main.c - eminectl: the operator's and producer's command-line tool. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eminectl.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} s_commands[] = {
    {"publish", cmd_publish, "publish CloudEvents from files or stdin (ZeroMQ or HTTP)"},
    {"tail", cmd_tail, "follow the committed-event stream from a seq"},
    {"verify", cmd_verify, "recompute the archive's hash chain; name the first altered row"},
    {"status", cmd_status, "health of the services and the archive's head"},
    {"producers", cmd_producers, "who may publish which sources and types; their keys"},
    {"subs", cmd_subs, "organisations, their API keys and subscriptions (operators)"},
    {"dlq", cmd_dlq, "dead letters: list, show, redrive (submit again after a schema fix)"},
    {"keygen", cmd_keygen, "a new CurveZMQ keypair (Z85) for curve_secret_key and clients"},
};

const char *ctl_env(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

static void s_usage(FILE *out)
{
    fprintf(out, "usage: eminectl <command> [options]   (eminectl <command> --help)\n\n");
    for (size_t i = 0; i < sizeof s_commands / sizeof *s_commands; i++)
        fprintf(out, "  %-8s %s\n", s_commands[i].name, s_commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        s_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof s_commands / sizeof *s_commands; i++)
        if (strcmp(argv[1], s_commands[i].name) == 0)
            return s_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "eminectl: unknown command '%s'\n", argv[1]);
    s_usage(stderr);
    return 2;
}
