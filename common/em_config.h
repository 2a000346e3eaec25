/* em_config.h - a config table per section: defaults < file (libinih) < EMINE_<SECTION>_<KEY>. */
#ifndef EM_CONFIG_H
#define EM_CONFIG_H
#include <stddef.h>
#include <stdio.h>

#define EM_ERR_LEN 512

typedef enum { EM_CFG_END = 0, EM_CFG_STR, EM_CFG_INT, EM_CFG_BOOL } em_config_type_t;

/* One key of one section.  offset is into the caller's struct: a `char *` (STR, malloc'd by
 * the loader, released by em_config_release), an `int` (INT) or a `bool` (BOOL). */
typedef struct {
    em_config_type_t type;
    const char *section; /* "ingest", "pg", "redis", ... */
    const char *key;
    const char *dflt;
    size_t offset;
    const char *help;
} em_config_entry_t;

/* The sections every service shares.  A service's cfg struct embeds one of these and its
 * table starts with EM_CONFIG_SHARED(its_struct, member), so that the shared sections are
 * checked whole by every service. */
typedef struct {
    char *log_level;     /* [log] level */
    char *pg_dsn;        /* [pg] dsn */
    char *redis_url;     /* [redis] url */
    char *bus_pipeline;  /* [bus] pipeline: ingest PUSH -> validate PULL */
    char *bus_validated; /* [bus] validated: validate PUSH -> archive PULL */
    char *bus_acks;      /* [bus] acks: archive PUB -> ingest SUB */
    char *bus_events;    /* [bus] events: archive PUB -> notify SUB */
} em_shared_cfg_t;

#define EM_CONFIG_SHARED(T, m)                                                                 \
    {EM_CFG_STR, "log", "level", "info", offsetof(T, m.log_level),                              \
     "error, warn, info or debug"},                                                            \
    {EM_CFG_STR, "pg", "dsn", "host=127.0.0.1 port=55432 dbname=emine user=emine connect_timeout=5", \
     offsetof(T, m.pg_dsn), "PostgreSQL connection string (libpq)"},                           \
    {EM_CFG_STR, "redis", "url", "redis://:emine@127.0.0.1:56379/0", offsetof(T, m.redis_url),   \
     "Redis URL (cache only)"},                                                                \
    {EM_CFG_STR, "bus", "pipeline", "tcp://127.0.0.1:7101", offsetof(T, m.bus_pipeline),          \
     "ingest PUSH (bind) -> validate PULL"},                                                   \
    {EM_CFG_STR, "bus", "validated", "tcp://127.0.0.1:7102", offsetof(T, m.bus_validated),        \
     "validate PUSH -> archive PULL (bind)"},                                                  \
    {EM_CFG_STR, "bus", "acks", "tcp://127.0.0.1:7103", offsetof(T, m.bus_acks),                  \
     "archive PUB (bind) of acks -> ingest SUB"},                                              \
    {EM_CFG_STR, "bus", "events", "tcp://127.0.0.1:7104", offsetof(T, m.bus_events),              \
     "archive PUB (bind) of committed events -> notify SUB"}

/* Parses `[-c|--config PATH] [--dump-config]` for a service main.  Default path: $EMINE_CONFIG,
 * else "config/emine.conf" when that file exists, else NULL (defaults and environment only).
 * Sets *dump when --dump-config is given.  Returns 0, or -1 on a usage error (printed). */
int em_config_args(int argc, char **argv, const char **path, int *dump);

/* Applies defaults, then the file at path (may be NULL: no file), then environment overrides
 * EMINE_<SECTION>_<KEY> (upper-cased, '-' -> '_').  Sections of the file that the table does
 * not name are skipped only if they are in the list of known sections (log, pg, redis, bus,
 * ingest, validate, archive, notify, eminectl); an unknown section, or an unknown key in a
 * section the table uses, is an error naming file:line, e.g.
 * "config/emine.conf:12: unknown key 'foo' in [ingest]".  A bad INT or BOOL value is an error
 * naming the key and where the value came from.  In the file, '-' and '_' in keys are
 * equivalent, and an indented line continues the previous key's value (joined with a space).
 * cfg must be zero-filled (or released) before the call.  Returns 0, or -1 with err filled
 * and every string of cfg released. */
int em_config_load(const char *path, const em_config_entry_t *table, void *cfg, char *err,
                   size_t errlen);
/* Prints `[section] key = value  # help (default: …)` for every entry. */
void em_config_dump(const em_config_entry_t *table, const void *cfg, FILE *out);
/* Frees the strings the loader allocated; safe to call twice. */
void em_config_release(const em_config_entry_t *table, void *cfg);

#endif
