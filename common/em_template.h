/* em_template.h - human summaries of events rendered from translator-edited templates
 * (config/templates/<language>.tmpl, see config/templates/README.md).
 *
 * A template is text with placeholders `{{path|filter:arg|filter}}`.  The path selects a
 * value of the event: an envelope attribute (`type`, `subject`, `time`, `province`,
 * `projectid`, ...) or a member of `data`, written with dots (`data.holders.0.party.name`) or
 * as a JSON Pointer (`/data/licenceId`).  Filters format the value for the language and the
 * subscriber's time zone (date, time, number, qty, money, text, glossary:TABLE, pick:PATH,
 * each:PART, join, count, else:PATH, default:TEXT).  Nothing in a template is executed.
 *
 * Templates are compiled when loaded: an unknown root of a path, an unknown filter, an unknown
 * glossary table or part, a data member the type's schema does not have, a bad date format or
 * malformed text is an error naming the file and the line.  Rendering never fails on the
 * event's content: a missing value becomes a visible marker `[?path]` (counted), the output
 * is valid UTF-8 without control or embedding/override characters from the event, bounded by
 * EM_TEMPLATE_MAX_OUT bytes, and in languages with `isolate = true` (Urdu) every substituted
 * token containing left-to-right characters is wrapped in U+2068 FIRST STRONG ISOLATE ...
 * U+2069 POP DIRECTIONAL ISOLATE (balanced, also when the output is truncated). */
#ifndef EM_TEMPLATE_H
#define EM_TEMPLATE_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define EM_TEMPLATE_MAX_OUT 2048 /* bytes of one rendered summary, without the NUL */

typedef struct em_template em_template_t;

/* Loads every `<language>.tmpl` in dir (en.tmpl is required: it is the fallback).  When
 * schemas_dir is not NULL, `data.X` in the template of type T must name a property X of
 * <schemas_dir>/T/<version>.json (any version), and a type key must have such a folder.
 * Returns NULL with err filled ("<file>:<line>: <reason>") on any error. */
em_template_t *em_template_load(const char *dir, const char *schemas_dir, char *err,
                                size_t errlen);
void em_template_destroy(em_template_t **self_p);

/* Renders the summary of event (a CloudEvent object) in language lang (a BCP 47 tag such as
 * "zh-Hans"; an unknown language or a type it has no template for falls back to en) with
 * times shown in zone (see em_template_zone_offset; NULL or unknown: UTC).  Writes at most
 * min(outlen, EM_TEMPLATE_MAX_OUT + 1) bytes including the NUL into out.  *used_lang
 * (may be NULL) is set to the language actually used (borrowed from self), *missing (may be
 * NULL) to the number of markers written for missing values.  The type's template is looked
 * up by the full type, then without the "pk.gov.emining." prefix, then `default`.  Returns 0,
 * or -1 when no template applies (out is then the empty string). */
int em_template_render(const em_template_t *self, const char *lang, const char *zone,
                       const json_t *event, char *out, size_t outlen, const char **used_lang,
                       int *missing);

/* true when language lang has its own template for type key (e.g. "licence.granted"). */
bool em_template_has(const em_template_t *self, const char *lang, const char *key);
/* The number of languages loaded, and the tag of the i-th (borrowed). */
int em_template_language_count(const em_template_t *self);
const char *em_template_language(const em_template_t *self, int i);

/* Minutes east of UTC of a supported zone ("Asia/Karachi" +300, "Asia/Shanghai" +480,
 * "UTC" 0; fixed offsets: neither country has daylight saving time), or -1 when the zone is
 * not supported. */
int em_template_zone_offset(const char *zone);
/* The default zone of a subscriber whose first language is lang: "Asia/Shanghai" for
 * zh-Hans (and other zh tags), else "Asia/Karachi".  Returns a static string. */
const char *em_template_default_zone(const char *lang);

#endif
