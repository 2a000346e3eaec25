/* producers.h - the producers ingest admits: names, key hashes and what each may publish,
 * read from PostgreSQL (table producers, see archive's migration 003). */
#ifndef INGEST_PRODUCERS_H
#define INGEST_PRODUCERS_H
#include <stdbool.h>

#include "em_store.h"

typedef struct ingest_producers ingest_producers_t;

typedef struct {
    char *name;
    char key_sha256[65];
    char curve_public[41]; /* Z85 CurveZMQ public key (migration 008); "" when none */
    char **sources; /* allowed source prefixes; "*" allows any */
    int nsources;
    char **types;   /* allowed types: exact, or a prefix ending in '*' */
    int ntypes;
} ingest_producer_t;

ingest_producers_t *ingest_producers_new(void);
void ingest_producers_destroy(ingest_producers_t **self_p);

/* Replaces the set with the enabled rows of the producers table.  On failure the previous
 * set stays in force.  Returns the number of producers, or -1 (see em_store_errstr). */
int ingest_producers_load(ingest_producers_t *self, em_store_t *store);
/* True once a load succeeded. */
bool ingest_producers_loaded(const ingest_producers_t *self);

/* The producer whose key this is (compared by SHA-256, in constant time), or NULL. */
const ingest_producer_t *ingest_producers_by_key(const ingest_producers_t *self, const char *key);
/* The producer with this name whose key this is, or NULL (for ZeroMQ PLAIN). */
const ingest_producer_t *ingest_producers_check(const ingest_producers_t *self, const char *name,
                                                const char *key);
/* The producer whose CurveZMQ public key (Z85, 40 characters) this is, or NULL. */
const ingest_producer_t *ingest_producers_by_curve(const ingest_producers_t *self,
                                                   const char *z85);
const ingest_producer_t *ingest_producers_by_name(const ingest_producers_t *self,
                                                  const char *name);

/* Whether p may publish an event with this source and type.  On false, *pointer and *why
 * say which attribute and why (static strings). */
bool ingest_producer_allows(const ingest_producer_t *p, const char *source, const char *type,
                            const char **pointer, const char **why);

#endif
