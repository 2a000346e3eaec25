/* em_store.h - PostgreSQL (libpq): one connection, prepared statements, transactions,
 * reconnect.  SQL is never built from values: parameters only. */
#ifndef EM_STORE_H
#define EM_STORE_H
#include <libpq-fe.h>

typedef struct em_store em_store_t;

/* Connects (connect_timeout from the DSN, default 5 s).  Returns NULL with err filled. */
em_store_t *em_store_new(const char *dsn, char *err, size_t errlen);
void em_store_destroy(em_store_t **self_p);
PGconn *em_store_conn(em_store_t *self);
const char *em_store_errstr(const em_store_t *self);
/* SQLSTATE of the last failed call ("" after a success); "08003"/"08006" when the connection
 * was not usable or broke. */
const char *em_store_sqlstate(const em_store_t *self);
/* 1 when the connection is up right now (as far as libpq knows), else 0. */
int em_store_connected(const em_store_t *self);
/* 1 when the last failure is worth retrying later (connection lost, server shutting down,
 * out of resources, serialization failure), 0 when it was caused by the statement's data. */
int em_store_retryable(const em_store_t *self);
/* Returns 1 when the connection is usable; otherwise tries PQreset once and re-prepares the
 * registered statements, returning 1 on success, 0 if still down. */
int em_store_ensure(em_store_t *self);

/* Registers a statement that is (re)prepared on every (re)connect.  Returns 0 or -1. */
int em_store_prepare(em_store_t *self, const char *name, const char *sql, int nparams);
/* Executes a prepared statement with text params (NULL = SQL NULL).  Returns a PGresult the
 * caller PQclear()s, or NULL on failure (errstr set; the result was cleared). */
PGresult *em_store_exec(em_store_t *self, const char *name, int nparams,
                        const char *const *values);
/* Executes SQL with parameters (no preparation).  Same contract as em_store_exec. */
PGresult *em_store_query(em_store_t *self, const char *sql, int nparams,
                         const char *const *values);
/* Runs a parameterless command (BEGIN, COMMIT, ROLLBACK, a migration).  Returns 0 or -1. */
int em_store_command(em_store_t *self, const char *sql);

#endif
