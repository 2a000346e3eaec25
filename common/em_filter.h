/* em_filter.h - which events a subscription receives: the CloudEvents Subscriptions API filter
 * dialects, emine's domain filters, and the visibility tiers of domain.md §6.
 *
 * A subscription receives an event when
 *     em_visibility_allows(org, ev) && types match && em_filter_matches(f, ev)
 *                                   && em_domain_matches(d, ev)
 * (em_subscription_matches does exactly that).  Visibility comes first and is decided by the
 * organisation alone: no filter can widen it. */
#ifndef EM_FILTER_H
#define EM_FILTER_H
#include <jansson.h>
#include <stddef.h>

/* ---------------------------------------------------------------------------------------- */
/* Filter dialects (CloudEvents Subscriptions API §3.2.4): a subscription's `filters` is an
 * array of expressions, all of which must hold (an empty array matches everything):
 *   {"exact":  {"<attribute>": "<value>"}}   the attribute equals the value (case-sensitive)
 *   {"prefix": {"<attribute>": "<value>"}}   the attribute starts with the value
 *   {"suffix": {"<attribute>": "<value>"}}   the attribute ends with the value
 *   {"all": [<expr>, ...]}                   every nested expression holds (non-empty array)
 *   {"any": [<expr>, ...]}                   at least one holds (non-empty array)
 *   {"not": <expr>}                          the nested expression does not hold
 * exact/prefix/suffix name exactly one attribute: a CloudEvents context attribute or extension
 * (a top-level member of the event other than data/data_base64; name [a-z0-9]{1,20}) with a
 * string value.  An attribute the event lacks makes exact/prefix/suffix false (so `not` of it
 * is true).  String, integer and boolean attribute values compare as their text. */

typedef struct em_filter em_filter_t;

/* Compiles filters (a JSON array of expressions; NULL counts as []).  Returns NULL with err
 * naming the offending expression as a path and the rule, e.g.
 * "filters/1/any/0: unknown dialect 'sql' (expected exact, prefix, suffix, all, any or not)". */
em_filter_t *em_filter_new(json_t *filters, char *err, size_t errlen);
void em_filter_destroy(em_filter_t **self_p);
/* 1 when the event (a CloudEvent JSON object) satisfies every expression, else 0. */
int em_filter_matches(const em_filter_t *self, json_t *event);

/* ---------------------------------------------------------------------------------------- */
/* Domain filters: each list is "any of" and an empty list means no constraint.
 *   provinces : the `province` extension attribute;
 *   minerals  : data.minerals[], data.mineral, data.items[].mineral;
 *   projects  : the `projectid` attribute, data.projectId, data.projectIds[];
 *   licences  : data.licenceId, data.licenceIds[]. */
typedef struct {
    const char *const *provinces;
    size_t nprovinces;
    const char *const *minerals;
    size_t nminerals;
    const char *const *projects;
    size_t nprojects;
    const char *const *licences;
    size_t nlicences;
} em_domain_filter_t;

/* 1 when the event satisfies every non-empty list of d (d may be NULL), else 0. */
int em_domain_matches(const em_domain_filter_t *d, json_t *event);

/* 1 when types is empty or holds the event's `type` exactly, else 0. */
int em_types_match(const char *const *types, size_t ntypes, json_t *event);

/* ---------------------------------------------------------------------------------------- */
/* Visibility (domain.md §6).  Tiers are read from the event's `visibility` attribute; a
 * missing or unknown value is treated as `internal` (fail closed).
 *   public     : every organisation.
 *   partner    : an enterprise one of whose party_ids equals a regNo of the event's parties:
 *                data.holders[].party.regNo, data.applicant[].regNo, data.parties[].regNo,
 *                data.exporter.regNo, data.consignee.regNo, data.from[].regNo,
 *                data.to[].regNo, data.suppliers[].regNo (no other field makes a party);
 *                also authorities in scope (see restricted) and the issuer.
 *   restricted : an authority whose province equals the event's `province` attribute, or a
 *                federal authority (province "federal"); also the issuer.
 *   internal   : the issuer only.
 * The issuer is the organisation with a source prefix of the event's `source`, matched on a
 * path boundary: "/pk/ba/mmdd" owns "/pk/ba/mmdd" and "/pk/ba/mmdd/royalty", never
 * "/pk/ba/mmdd-x".  An organisation of kind public never sees anything beyond public.  An
 * organisation of kind operator (the platform's own operators: `eminectl tail`, audits) sees
 * every tier. */
typedef enum {
    EM_ORG_PUBLIC = 0,
    EM_ORG_ENTERPRISE,
    EM_ORG_AUTHORITY,
    EM_ORG_OPERATOR
} em_org_kind_t;

typedef struct {
    em_org_kind_t kind;
    const char *province;              /* authority: "PK-XX" or "federal"; else NULL */
    const char *const *party_ids;      /* enterprise: SECP numbers / USCC codes */
    size_t nparty_ids;
    const char *const *source_prefixes; /* sources the organisation issues events under */
    size_t nsource_prefixes;
} em_org_t;

typedef enum {
    EM_VIS_PUBLIC = 0,
    EM_VIS_PARTNER,
    EM_VIS_RESTRICTED,
    EM_VIS_INTERNAL
} em_visibility_t;

/* The tier of the event (EM_VIS_INTERNAL when missing or unknown). */
em_visibility_t em_visibility_of(json_t *event);
/* 1 when org may see the event, else 0 (also 0 for NULL arguments).  Pure: depends only on
 * its arguments. */
int em_visibility_allows(const em_org_t *org, json_t *event);
/* Calls fn for each party regNo named in the event (the fields listed above). */
void em_event_party_ids(json_t *event, void (*fn)(void *arg, const char *regno), void *arg);

/* visible && types && filters && domain.  Any of types/filter/domain may be NULL/empty. */
int em_subscription_matches(const em_org_t *org, const char *const *types, size_t ntypes,
                            const em_filter_t *filter, const em_domain_filter_t *domain,
                            json_t *event);

#endif
