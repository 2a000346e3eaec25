/* subs.h - the subscriptions resource of notify's admin HTTP server:
 *
 *   POST   /v1/subscriptions        create (201 + Location + the resource)
 *   GET    /v1/subscriptions        the caller's subscriptions (a JSON array)
 *   GET    /v1/subscriptions/{id}   one (404 when absent or another organisation's)
 *   PUT    /v1/subscriptions/{id}   replace (200 + the resource)
 *   DELETE /v1/subscriptions/{id}   delete (204)
 *   POST   /v1/subscriptions/{id}/replay  queue events behind the cursor again (202)
 *
 * Every request carries `Authorization: Bearer <organisation API key>`; the key's SHA-256 is
 * looked up in api_keys (401 otherwise).  The resource is the CloudEvents Subscriptions API
 * shape plus emine's members:
 *
 *   {"id", "types": [string], "filters": [expr], "sink": "http(s)://…", "protocol": "HTTP",
 *    "protocolsettings": {"headers": {name: value}, "method": "POST"},
 *    "languages": ["en"|"zh-Hans"|"ur"], "secret": "whsec_…" (generated when absent),
 *    "provinces": ["PK-XX"], "minerals": [mineral], "projects": [id], "licences": [id],
 *    "timezone": "Asia/Karachi"|"Asia/Shanghai" (the zone of the times in summaries; default
 *    by the first language: zh-Hans -> Asia/Shanghai, else Asia/Karachi),
 *    "organisation", "status": "active"|"disabled", "statusreason", "created", "updated"}
 *
 * id, organisation, status, statusreason, created and updated are set by the server and
 * refused in a request body.  A bad body is answered 400 with
 * {"error": "<message>", "pointer": "<JSON Pointer of the offending value>"}.  PostgreSQL
 * being unreachable is answered 503 with Retry-After.  A new subscription's cursor starts at
 * the archive's current head: it receives events committed after its creation. */
#ifndef NOTIFY_SUBS_H
#define NOTIFY_SUBS_H
#include <stdbool.h>

#include "em_http.h"

typedef struct notify_subs notify_subs_t;

/* Connects lazily to PostgreSQL at dsn (borrowed for the call; copied).  Returns NULL only
 * when out of memory. */
notify_subs_t *notify_subs_new(const char *dsn);
void notify_subs_destroy(notify_subs_t **self_p);
/* With allow false (the default), a sink whose host is a literal loopback, private,
 * link-local or reserved address, or a name under "localhost", is refused with 400 at /sink
 * ([notify] webhook_allow_private; delivery checks every address it connects to anyway). */
void notify_subs_allow_private(notify_subs_t *self, bool allow);

/* Answers req when its path is /v1/subscriptions or below and returns 1; returns 0 without
 * touching req otherwise. */
int notify_subs_handle(notify_subs_t *self, em_http_req_t *req);

/* Hex SHA-256 of an API key into out[65].  Returns 0 or -1. */
int notify_subs_key_hash(const char *key, char out[65]);

#endif
