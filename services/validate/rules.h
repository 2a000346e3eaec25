/* rules.h - the domain rules of the e-mining catalogue that a JSON Schema cannot say
 * (domain.md §5.3): sums, date orders, unit-dependent limits, conditional requirements.
 *
 * Every rule is a named row of a table; its name is the "keyword" of the errors it reports.
 * Rules read the event defensively (a field of the wrong type is skipped: the schema reports
 * it), so they may run whether or not the schema passed. */
#ifndef VALIDATE_RULES_H
#define VALIDATE_RULES_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* One rule.  type is the catalogue type without "pk.gov.emining." (NULL: every type).
 * check appends {"pointer","keyword","message"} errors (the event is rejected) or notes (the
 * event passes, annotated).  event is the whole event, data its "data" member. */
typedef struct {
    const char *name;
    const char *type;
    const char *summary;
    void (*check)(const json_t *event, const json_t *data, json_t *errors, json_t *notes);
} vrule_t;

/* The table, and its length. */
const vrule_t *vrules_table(size_t *count);
/* The rule called name, or NULL. */
const vrule_t *vrules_find(const char *name);
/* Runs every rule that applies to type (without the prefix).  notes may be NULL (notes are
 * then dropped).  Returns the number of errors appended. */
int vrules_apply(const char *type, const json_t *event, const json_t *data, json_t *errors,
                 json_t *notes);

/* "YYYY-MM-DD" (midnight UTC) or an RFC 3339 date-time, as ms since the epoch.  Returns true
 * when s is one of them. */
bool vrules_time(const char *s, long long *ms);

#endif
