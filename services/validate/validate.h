/* validate.h - the validate service: N worker threads on one PULL, each checking events
 * against the CloudEvents 1.0 envelope rules and passing a verdict on to archive. */
#ifndef VALIDATE_H
#define VALIDATE_H
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

typedef struct validate validate_t;

/* Returns NULL (reason logged) when the config is invalid or a socket cannot be set up. */
validate_t *validate_new(const char *config_path);
/* Runs until interrupted (SIGTERM/SIGINT); returns 0 on a clean stop, -1 on a fatal error. */
int validate_run(validate_t *self);
void validate_destroy(validate_t **self_p);
int validate_dump_config(const char *config_path, FILE *out);

/* The pure part: checks one raw event and returns a new header with the verdict
 * ("verdict":"ok" or "rejected" plus "errors") and the attributes archive indexes
 * (type, subject, time, visibility, projectid, province).  hdr is the incoming header
 * (borrowed).  Caller owns return value. */
json_t *validate_event(const json_t *hdr, const char *raw, size_t len, int max_depth);

/* The same, followed by the catalogue check of catalogue.h when cat != NULL (the schema of the
 * event's type and dataschema, then the domain rules): its errors join "errors"; its notes
 * (e.g. a discovery notified late) go to "notes" ({"pointer","keyword","message"} each) and do
 * not reject.  An unknown type is rejected at /type unless accept_unknown. */
struct vcat;
json_t *validate_event_cat(const struct vcat *cat, bool accept_unknown, const json_t *hdr,
                           const char *raw, size_t len, int max_depth);

/* The same, followed by the stateful rules of state.h when hist != NULL and the event has no
 * error so far: they read the licence's archived history through hist (a reader owned by the
 * calling thread); when the archive cannot be read they are skipped with a note each. */
struct vhist;
json_t *validate_event_state(const struct vcat *cat, bool accept_unknown, struct vhist *hist,
                             const json_t *hdr, const char *raw, size_t len, int max_depth);

#endif
