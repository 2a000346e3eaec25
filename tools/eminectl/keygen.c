/* keygen.c - eminectl keygen: a new CurveZMQ keypair for [ingest]/[notify] curve_secret_key
 * (servers) or for a producer (its public key goes to `eminectl producers ... --curve-public`,
 * its secret to `eminectl publish --curve-secret`). */
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "em_bus.h"
#include "eminectl.h"

int cmd_keygen(int argc, char **argv)
{
    char pub[EM_CURVE_KEY_LEN + 1], sec[EM_CURVE_KEY_LEN + 1];

    if (argc > 1) {
        FILE *out = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ? stdout : stderr;
        fprintf(out, "usage: eminectl keygen\n"
                     "  prints a new CurveZMQ keypair (Z85, 40 characters each) on two lines:\n"
                     "    public PUBLIC_KEY\n"
                     "    secret SECRET_KEY\n"
                     "  servers: [ingest]/[notify] curve_secret_key = SECRET_KEY, clients\n"
                     "  --server-key PUBLIC_KEY; producers: eminectl producers set NAME\n"
                     "  --curve-public PUBLIC_KEY and eminectl publish --curve-secret SECRET_KEY\n");
        return out == stdout ? 0 : 2;
    }
    if (zmq_curve_keypair(pub, sec) != 0) {
        fprintf(stderr, "eminectl keygen: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    printf("public %s\nsecret %s\n", pub, sec);
    memset(sec, 0, sizeof sec);
    return 0;
}
