/* eminectl.h - the subcommands of eminectl; each lives in its own file. */
#ifndef EMINECTL_H
#define EMINECTL_H

/* Each returns the process exit code (0 success, 1 failure, 2 usage). */
int cmd_publish(int argc, char **argv); /* publish.c */
int cmd_tail(int argc, char **argv);    /* tail.c */
int cmd_verify(int argc, char **argv);  /* verify.c */
int cmd_status(int argc, char **argv);  /* status.c */
int cmd_producers(int argc, char **argv); /* producers.c */
int cmd_subs(int argc, char **argv);    /* subs.c */
int cmd_dlq(int argc, char **argv);     /* dlq.c */
int cmd_keygen(int argc, char **argv);  /* keygen.c */

/* An environment variable, or dflt when unset or empty. */
const char *ctl_env(const char *name, const char *dflt);

#endif
