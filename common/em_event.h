/* em_event.h - the CloudEvents 1.0 envelope (JSON format): the format rules and accessors. */
#ifndef EM_EVENT_H
#define EM_EVENT_H
#include <jansson.h>
#include <stdbool.h>

/* Checks one parsed CloudEvent against the CloudEvents 1.0 JSON format rules: specversion
 * "1.0"; id, source, type non-empty strings; source a URI-reference; dataschema a URI; time
 * an RFC 3339 timestamp; datacontenttype an RFC 2046 media type; subject a string; data and
 * data_base64 not both, data_base64 valid base64; attribute names [a-z0-9]{1,20}; extension
 * values string, integer or boolean.  Appends one error per problem to errors (see
 * em_errors_add) and returns 0 when valid, -1 otherwise. */
int em_event_check(const json_t *event, json_t *errors);

/* Borrowed string attribute, or NULL when absent or not a string. */
const char *em_event_str(const json_t *event, const char *attr);

/* Converts an HTTP binary-mode request (ce-* headers, Content-Type, body) into a structured
 * event.  enumerate(src, fn, arg) calls fn(arg, name, value) for each header.  ce-<name>
 * becomes attribute <name> (lower-cased, value percent-decoded, always a string: binary mode
 * carries no types); Content-Type becomes datacontenttype.  A non-empty body becomes data:
 * parsed JSON for a JSON media type, a string for text types (text/..., XML, or a charset
 * parameter) when it is UTF-8 without NUL, else data_base64.  The event is not checked (use
 * em_event_check).  Returns a new reference, or NULL with errors appended (errors may be NULL). */
typedef void(em_header_visit_fn)(void *arg, const char *name, const char *value);
json_t *em_event_from_binary(void (*enumerate)(void *src, em_header_visit_fn *fn, void *arg),
                             void *src, const char *body, size_t len, json_t *errors);

/* True for JSON media types: application/json and any type/subtype ending in "+json"
 * (parameters ignored, case-insensitive).  NULL gives false. */
bool em_media_type_is_json(const char *content_type);

/* Checks an RFC 3339 date-time; fills *epoch_ms when not NULL. */
bool em_rfc3339_parse(const char *s, long long *epoch_ms);

#endif
