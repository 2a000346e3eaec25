/* state.h - the domain rules that need an earlier event (domain.md §2.2 and §5: a licence's
 * grant, revocation, surrender, renewals), read from the archive.
 *
 * validate is otherwise stateless; these rules read the `events` table (read-only,
 * parameterised, one query per event that needs it, bounded by a timeout) for the archived
 * events that name the same data.licenceId.  What they see is what archive has COMMITTED:
 *
 *   - The race.  Two events for the same licence validated at the same time (sent together, in
 *     one batch, or by two producers, on any of the N workers) do not see each other: a
 *     transfer sent in the same batch as its grant finds no grant (a licenceInForce note, and
 *     the KP two-year rule is not applied); a renewal in flight with a revocation may be
 *     accepted.  A producer that needs the check must send the later event after the ack of
 *     the earlier one (an ack means committed, so from then on validate sees it).
 *   - Unknown licences.  The platform may not hold a licence's whole history (titles granted
 *     before it existed): a renewal or transfer of a licence with no archived licence.granted
 *     is accepted with a note, never rejected.
 *   - PostgreSQL unreachable or slow.  The rules are then skipped with a note each ("not
 *     checked: ..."), the event is judged on everything else, and the pipeline waits at most
 *     the timeout per event; after a failure no connection is tried again for retry_ms, so the
 *     events in between are passed on at once.
 *
 * A reader (vhist_t) is one libpq connection: use one per thread.  The timeout bounds the TCP
 * connection, the startup and the query; a host *name* in the DSN is resolved by libpq
 * synchronously, outside it (give an address, or hostaddr, for a strict bound). */
#ifndef VALIDATE_STATE_H
#define VALIDATE_STATE_H
#include <jansson.h>
#include <stddef.h>

typedef struct vhist vhist_t;

/* A reader of the archive for dsn (libpq; the session is made read-only and given
 * statement_timeout = timeout_ms).  Connects lazily, at the first query.  timeout_ms bounds
 * the connection and each query; after a failure no new attempt is made for retry_ms.
 * Returns NULL only when out of memory. */
vhist_t *vhist_new(const char *dsn, int timeout_ms, int retry_ms);
/* Closes the connection; accepts NULL; sets *self_p to NULL. */
void vhist_destroy(vhist_t **self_p);

/* The archived events whose data.licenceId is licence_id and whose type is a licence
 * lifecycle type (granted, renewed, transferred, relinquished, revoked), in seq order (the
 * latest VHIST_MAX of them), as a new array of {"seq":N,"type":"<type without prefix>",
 * "data":{...}} in *out.  When the event (source, id) being checked is archived already (a
 * re-send), only the events before it count: a re-sent event gets the verdict it got then,
 * so that archive can answer it `duplicate` with the original seq whatever happened to the
 * licence since.  Returns 0, or -1 with the reason in err (PostgreSQL unreachable, timed out,
 * or waiting out retry_ms after a failure). */
#define VHIST_MAX 1000
int vhist_licence(vhist_t *self, const char *licence_id, const char *source, const char *id,
                  json_t **out, char *err, size_t errlen);

/* Reads of the history that succeeded, and that failed (PostgreSQL unreachable, timed out,
 * erring, or within retry_ms of a failure: the rules were then skipped with a note).  Safe to
 * call from another thread. */
unsigned long long vhist_reads_ok(const vhist_t *self);
unsigned long long vhist_reads_failed(const vhist_t *self);

/* One stateful rule.  type is the catalogue type without "pk.gov.emining.".  check gets the
 * licence's history (as vhist_licence returns it) and appends {"pointer","keyword","message"}
 * errors (the event is rejected) or notes; the keyword is the rule's name. */
typedef struct {
    const char *name;
    const char *type;
    const char *summary;
    void (*check)(const json_t *event, const json_t *data, const json_t *history,
                  json_t *errors, json_t *notes);
} vsrule_t;

/* The table, and its length. */
const vsrule_t *vstate_rules(size_t *count);
/* True when a stateful rule applies to type (without the prefix) and data names a licence. */
int vstate_needed(const char *type, const json_t *data);
/* Runs the stateful rules of type on history.  history NULL means the archive could not be
 * read: each rule that applies adds a note at /data/licenceId saying it was not checked and
 * why (unavailable).  Returns the number of errors appended. */
int vstate_apply(const char *type, const json_t *event, const json_t *data,
                 const json_t *history, const char *unavailable, json_t *errors,
                 json_t *notes);
/* The whole step for one event (the type with its prefix): reads the history through hist
 * when a rule applies, then vstate_apply.  Returns the number of errors appended. */
int vstate_check(vhist_t *hist, const json_t *event, json_t *errors, json_t *notes);

#endif
