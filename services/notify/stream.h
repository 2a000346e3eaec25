/* stream.h - what one live-stream client (ZeroMQ stream or SSE) may and wants to receive: the
 * organisation of its API key, looked up in PostgreSQL (organisations, api_keys), and the
 * types, filters and domain filters it asked for.  An event is sent when
 *     em_subscription_matches(org, types, filters, domain, event)
 * holds: visibility first (decided by the organisation alone), then the narrowing filters. */
#ifndef NOTIFY_STREAM_H
#define NOTIFY_STREAM_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "em_filter.h"
#include "em_store.h"

typedef struct notify_view notify_view_t;

/* Compiles the narrowing options of a subscription: every member of opts other than those in
 * skip (a NULL-terminated list of names the caller reads itself, e.g. "after", "key") must be
 * one of types, filters, provinces, minerals, projects, licences.  opts may be NULL (no
 * narrowing).  Returns NULL with err naming the offending member as a path under prefix, e.g.
 * "subscribe.filters/1/any/0: unknown dialect 'sql' (...)" or "subscribe.types/0: expected a
 * non-empty string". */
notify_view_t *notify_view_new(json_t *opts, const char *const *skip, const char *prefix,
                               char *err, size_t errlen);
void notify_view_destroy(notify_view_t **self_p);

/* Looks up the organisation whose unrevoked key has the hash key_hash (notify_subs_key_hash) and makes it the view's
 * organisation.  Returns 1 (found), 0 (unknown or revoked key: the view is unchanged) or -1
 * (the statement failed: see em_store_errstr). */
int notify_view_auth(notify_view_t *self, em_store_t *store, const char *key_hash);

/* Copies the organisation (and its key hash) of from into self. Returns 0 or -1 (memory). */
int notify_view_copy_org(notify_view_t *self, const notify_view_t *from);

/* The key hash and organisation id the view was authenticated with ("" before); borrowed. */
const char *notify_view_key(const notify_view_t *self);
const char *notify_view_org_id(const notify_view_t *self);
/* Monotonic ms of the last successful notify_view_auth (0 before). */
int64_t notify_view_auth_ms(const notify_view_t *self);

/* 1 when every event passes without looking at it (an operator without narrowing options). */
int notify_view_all(const notify_view_t *self);

/* 1 when the event (a CloudEvent JSON object) is for this view, 0 otherwise (also before
 * notify_view_auth succeeded: no organisation sees nothing). */
int notify_view_matches(const notify_view_t *self, json_t *event);

/* The same for a stream frame `{"seq":N,"event":{...}}` of len bytes (an operator without
 * options does not parse it).  A frame that is not JSON matches nothing. */
int notify_view_matches_frame(const notify_view_t *self, const char *text, size_t len);

#endif
