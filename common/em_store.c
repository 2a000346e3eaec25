/* em_store.c - PostgreSQL (libpq): one connection, named prepared statements that are
 * re-prepared after every reconnect, parameters only (SQL is never built from values). */
#include "em_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_ERR_LEN 512

typedef struct {
    char *name;  /* statement name, unique per store */
    char *sql;   /* text with $1..$n */
    int nparams; /* number of parameters */
} s_stmt_t;

struct em_store {
    char *dsn;                  /* connection string given to em_store_new */
    PGconn *conn;               /* the connection (may be broken) */
    int prepared;               /* 1 when every registered statement is prepared on conn */
    s_stmt_t *stmts;            /* registered statements */
    size_t nstmts, capstmts;    /* count and capacity of stmts */
    char errstr[S_ERR_LEN];     /* last error */
    char sqlstate[6];           /* SQLSTATE of the last failed statement, "" if none */
};

/* Copies a libpq message without its trailing newline. */
static void s_set_err(em_store_t *self, const char *prefix, const char *msg)
{
    snprintf(self->errstr, sizeof self->errstr, "%s%s", prefix ? prefix : "",
             msg && *msg ? msg : "unknown error");
    size_t n = strlen(self->errstr);
    while (n > 0 && (self->errstr[n - 1] == '\n' || self->errstr[n - 1] == '\r'))
        self->errstr[--n] = '\0';
}

static void s_set_state(em_store_t *self, const PGresult *res)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(self->sqlstate, sizeof self->sqlstate, "%s", st ? st : "");
}

/* Prepares one statement on the current connection.  Returns 0 or -1 (errstr set). */
static int s_prepare_one(em_store_t *self, const s_stmt_t *st)
{
    PGresult *res = PQprepare(self->conn, st->name, st->sql, st->nparams, NULL);
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
        s_set_err(self, "prepare: ", res ? PQresultErrorMessage(res) : PQerrorMessage(self->conn));
        s_set_state(self, res);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    return 0;
}

/* Prepares every registered statement.  Returns 0 or -1. */
static int s_prepare_all(em_store_t *self)
{
    for (size_t i = 0; i < self->nstmts; i++)
        if (s_prepare_one(self, &self->stmts[i]) != 0)
            return -1;
    self->prepared = 1;
    return 0;
}

static void s_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

em_store_t *em_store_new(const char *dsn, char *err, size_t errlen)
{
    em_store_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->dsn = strdup(dsn ? dsn : "");
    if (!self->dsn) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    self->conn = PQconnectdb(self->dsn);
    if (!self->conn || PQstatus(self->conn) != CONNECTION_OK) {
        s_set_err(self, "connect: ", self->conn ? PQerrorMessage(self->conn) : "out of memory");
        snprintf(err, errlen, "%s", self->errstr);
        goto fail;
    }
    /* Server notices (e.g. "already exists, skipping") are not errors: keep stderr quiet. */
    PQsetNoticeProcessor(self->conn, s_quiet, NULL);
    self->prepared = 1; /* nothing registered yet */
    return self;
fail:
    em_store_destroy(&self);
    return NULL;
}

void em_store_destroy(em_store_t **self_p)
{
    if (self_p && *self_p) {
        em_store_t *self = *self_p;
        if (self->conn)
            PQfinish(self->conn);
        for (size_t i = 0; i < self->nstmts; i++) {
            free(self->stmts[i].name);
            free(self->stmts[i].sql);
        }
        free(self->stmts);
        free(self->dsn);
        free(self);
        *self_p = NULL;
    }
}

PGconn *em_store_conn(em_store_t *self)
{
    return self ? self->conn : NULL;
}

const char *em_store_errstr(const em_store_t *self)
{
    return self ? self->errstr : "no store";
}

const char *em_store_sqlstate(const em_store_t *self)
{
    return self ? self->sqlstate : "";
}

int em_store_connected(const em_store_t *self)
{
    return self && self->conn && PQstatus(self->conn) == CONNECTION_OK;
}

int em_store_ensure(em_store_t *self)
{
    if (!self)
        return 0;
    if (PQstatus(self->conn) == CONNECTION_OK) {
        if (!self->prepared && s_prepare_all(self) != 0)
            return 0;
        return 1;
    }
    self->prepared = 0;
    PQreset(self->conn);
    if (PQstatus(self->conn) != CONNECTION_OK) {
        s_set_err(self, "reconnect: ", PQerrorMessage(self->conn));
        return 0;
    }
    if (s_prepare_all(self) != 0)
        return 0;
    return 1;
}

int em_store_prepare(em_store_t *self, const char *name, const char *sql, int nparams)
{
    if (!self || !name || !sql)
        return -1;
    for (size_t i = 0; i < self->nstmts; i++)
        if (strcmp(self->stmts[i].name, name) == 0) {
            s_set_err(self, "prepare: duplicate statement name ", name);
            return -1;
        }
    if (self->nstmts == self->capstmts) {
        size_t cap = self->capstmts ? self->capstmts * 2 : 8;
        s_stmt_t *n = realloc(self->stmts, cap * sizeof *n);
        if (!n) {
            s_set_err(self, NULL, "out of memory");
            return -1;
        }
        self->stmts = n;
        self->capstmts = cap;
    }
    s_stmt_t st = {strdup(name), strdup(sql), nparams};
    if (!st.name || !st.sql) {
        free(st.name);
        free(st.sql);
        s_set_err(self, NULL, "out of memory");
        return -1;
    }
    /* Prepare now when connected; a statement that does not prepare is not registered. */
    if (PQstatus(self->conn) == CONNECTION_OK && self->prepared && s_prepare_one(self, &st) != 0) {
        free(st.name);
        free(st.sql);
        return -1;
    }
    self->stmts[self->nstmts++] = st;
    return 0;
}

/* Checks a result: returns it when the command succeeded, else clears it and returns NULL. */
static PGresult *s_check(em_store_t *self, PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        self->sqlstate[0] = '\0';
        return res;
    }
    s_set_err(self, NULL, res ? PQresultErrorMessage(res) : PQerrorMessage(self->conn));
    s_set_state(self, res);
    if (!self->sqlstate[0] && PQstatus(self->conn) != CONNECTION_OK)
        snprintf(self->sqlstate, sizeof self->sqlstate, "08006");
    PQclear(res);
    if (PQstatus(self->conn) != CONNECTION_OK)
        self->prepared = 0;
    return NULL;
}

PGresult *em_store_exec(em_store_t *self, const char *name, int nparams,
                        const char *const *values)
{
    if (!self)
        return NULL;
    if (PQstatus(self->conn) != CONNECTION_OK || !self->prepared) {
        s_set_err(self, NULL, "not connected");
        snprintf(self->sqlstate, sizeof self->sqlstate, "08003");
        return NULL;
    }
    return s_check(self, PQexecPrepared(self->conn, name, nparams, values, NULL, NULL, 0));
}

PGresult *em_store_query(em_store_t *self, const char *sql, int nparams,
                         const char *const *values)
{
    if (!self)
        return NULL;
    if (PQstatus(self->conn) != CONNECTION_OK) {
        s_set_err(self, NULL, "not connected");
        snprintf(self->sqlstate, sizeof self->sqlstate, "08003");
        return NULL;
    }
    return s_check(self, PQexecParams(self->conn, sql, nparams, NULL, values, NULL, NULL, 0));
}

int em_store_command(em_store_t *self, const char *sql)
{
    if (!self)
        return -1;
    if (PQstatus(self->conn) != CONNECTION_OK) {
        s_set_err(self, NULL, "not connected");
        snprintf(self->sqlstate, sizeof self->sqlstate, "08003");
        return -1;
    }
    /* PQexec (not PQexecParams) so that a migration file may hold several statements. */
    PGresult *res = s_check(self, PQexec(self->conn, sql));
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

int em_store_retryable(const em_store_t *self)
{
    if (!self)
        return 1;
    if (PQstatus(self->conn) != CONNECTION_OK)
        return 1;
    const char *c = self->sqlstate;
    /* 08 connection, 40 rollback (serialization/deadlock), 53 resources, 57 operator
     * intervention (shutdown), 58 system error, XX internal error. */
    return strncmp(c, "08", 2) == 0 || strncmp(c, "40", 2) == 0 || strncmp(c, "53", 2) == 0 ||
           strncmp(c, "57", 2) == 0 || strncmp(c, "58", 2) == 0 || strncmp(c, "XX", 2) == 0 ||
           c[0] == '\0';
}
