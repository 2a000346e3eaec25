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

/* Applies defaults, then the file at path (may be NULL: no file), then environment overrides
 * EMINE_<SECTION>_<KEY> (upper-cased).  Sections of the file that the table does not name are
 * skipped only if they are in the list of known sections (ingest, validate, archive, notify,
 * pg, redis, log, eminectl); an unknown section, or an unknown key in a section the table
 * uses, is an error naming file:line.  Returns 0, or -1 with err filled. */
int em_config_load(const char *path, const em_config_entry_t *table, void *cfg, char *err,
                   size_t errlen);
/* Prints `[section] key = value  # help (default: …)` for every entry. */
void em_config_dump(const em_config_entry_t *table, const void *cfg, FILE *out);
/* Frees the strings the loader allocated; safe to call twice. */
void em_config_release(const em_config_entry_t *table, void *cfg);

#endif
