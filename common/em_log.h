/* em_log.h - logfmt logging to stderr, one line per record. */
#ifndef EM_LOG_H
#define EM_LOG_H

enum { EM_LOG_LVL_ERROR = 0, EM_LOG_LVL_WARN, EM_LOG_LVL_INFO, EM_LOG_LVL_DEBUG };

/* Sets the service name written as svc=… and the threshold; process-wide, set once in main. */
void em_log_init(const char *svc, int level);
/* Parses "error|warn|info|debug"; returns the level or -1. */
int em_log_level_parse(const char *name);
int em_log_level(void);

/* Writes `ts=<RFC3339 ms> level=<l> svc=<svc> mod=<mod> msg="<formatted>"` plus
 * ` event_id="<id>"` when event_id is not NULL; quotes and control characters are escaped. */
void em_log_write(int level, const char *mod, const char *event_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define EM_LOG_AT(lvl, mod, evid, ...)                                                         \
    do {                                                                                       \
        if ((lvl) <= em_log_level())                                                           \
            em_log_write((lvl), (mod), (evid), __VA_ARGS__);                                   \
    } while (0)
#define EM_LOG_ERROR(mod, ...) EM_LOG_AT(EM_LOG_LVL_ERROR, mod, NULL, __VA_ARGS__)
#define EM_LOG_WARN(mod, ...)  EM_LOG_AT(EM_LOG_LVL_WARN, mod, NULL, __VA_ARGS__)
#define EM_LOG_INFO(mod, ...)  EM_LOG_AT(EM_LOG_LVL_INFO, mod, NULL, __VA_ARGS__)
#define EM_LOG_DEBUG(mod, ...) EM_LOG_AT(EM_LOG_LVL_DEBUG, mod, NULL, __VA_ARGS__)
/* Same, with the event id of the record. */
#define EM_LOG_EV(lvl, mod, evid, ...) EM_LOG_AT(lvl, mod, evid, __VA_ARGS__)

#endif
