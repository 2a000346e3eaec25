/* em_testsrv.h - real PostgreSQL and Redis servers for C tests, started in a temporary folder
 * (header-only).  Tests never skip because a server is missing: a start failure aborts.
 *
 *   const char *dsn = em_testsrv_pg_start();     libpq DSN of a fresh cluster (trust auth)
 *   const char *url = em_testsrv_redis_start();  redis://:<password>@127.0.0.1:<port>/0
 *   em_testsrv_pg_stop(); em_testsrv_redis_stop();   stop a server, keeping its folder, port
 *                                                    and data, so that *_start() restarts it
 *   em_testsrv_stop_all();                       stop both and delete the folders
 *
 * PostgreSQL runs from /usr/lib/postgresql/15/bin (override: EMINE_PG_BIN) as the `postgres`
 * user when the test runs as root; it listens on 127.0.0.1:<free port> and on a unix socket
 * in its folder.  The DSN names the database `postgres` and the user `postgres`. */
#ifndef EM_TESTSRV_H
#define EM_TESTSRV_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char pg_dir[64];    /* temporary folder of the cluster ("" until started once) */
    int pg_port;         /* its port */
    int pg_running;      /* 1 while started */
    char pg_dsn[512];    /* DSN returned by em_testsrv_pg_start */
    char redis_dir[64]; /* temporary folder of redis */
    int redis_port;      /* its port */
    int redis_pid;       /* pid of redis-server while started, else 0 */
    char redis_url[256]; /* URL returned by em_testsrv_redis_start */
    int given[64];       /* ports em_testsrv_free_port handed out (never twice) */
    int ngiven;
} em_testsrv_state_t;

/* The one instance per test process (test helper state, not part of the library). */
static inline em_testsrv_state_t *em_testsrv__state(void)
{
    static em_testsrv_state_t s_state;
    return &s_state;
}

/* A TCP port that was free a moment ago: random in 20000..(start of the kernel's ephemeral
 * range - 1), so that no outgoing connection (a ZeroMQ reconnect, say) can take it before the
 * server binds it, and checked with bind(). */
static inline int em_testsrv_free_port(void)
{
    int lo = 20000, hi = 32767, elo = 0, ehi = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d %d", &elo, &ehi) == 2 && elo > lo + 1000)
            hi = elo - 1;
        fclose(f);
    }
    srand((unsigned)(getpid() ^ time(NULL) ^ rand()));
    for (int attempt = 0; attempt < 1000; attempt++) {
        int port = lo + rand() % (hi - lo + 1), seen = 0;
        em_testsrv_state_t *st = em_testsrv__state();
        for (int i = 0; i < st->ngiven; i++)
            seen |= st->given[i] == port;
        if (seen)
            continue;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)port);
        int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0)
            close(fd);
        if (ok) {
            if (st->ngiven < (int)(sizeof st->given / sizeof st->given[0]))
                st->given[st->ngiven++] = port;
            return port;
        }
    }
    fprintf(stderr, "em_testsrv_free_port: no free port\n");
    abort();
}

static inline void em_testsrv__sh(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "em_testsrv: command failed (%d): %s\n", rc, cmd);
        abort();
    }
}

static inline const char *em_testsrv__pgbin(void)
{
    const char *b = getenv("EMINE_PG_BIN");
    return b && *b ? b : "/usr/lib/postgresql/15/bin";
}

/* "runuser -u postgres -- " when root (PostgreSQL refuses to run as root), else "". */
static inline const char *em_testsrv__as_pg(void)
{
    return geteuid() == 0 ? "runuser -u postgres -- " : "";
}

static inline void em_testsrv_stop_all(void);

/* Registers em_testsrv_stop_all to run at exit (once), so that a test that returns early
 * leaves no server behind. */
static inline void em_testsrv__cleanup_at_exit(void)
{
    static int s_registered;
    if (!s_registered) {
        s_registered = 1;
        atexit(em_testsrv_stop_all);
    }
}

static inline const char *em_testsrv_pg_start(void)
{
    em_testsrv_state_t *s = em_testsrv__state();
    char cmd[4096];
    if (s->pg_running)
        return s->pg_dsn;
    em_testsrv__cleanup_at_exit();
    if (!s->pg_dir[0]) {
        snprintf(s->pg_dir, sizeof s->pg_dir, "/tmp/emine-pg-XXXXXX");
        if (!mkdtemp(s->pg_dir)) {
            perror("mkdtemp");
            abort();
        }
        if (geteuid() == 0) {
            struct passwd *pw = getpwnam("postgres");
            if (!pw || chown(s->pg_dir, pw->pw_uid, pw->pw_gid) != 0) {
                fprintf(stderr, "em_testsrv: cannot hand %s to the postgres user\n", s->pg_dir);
                abort();
            }
        }
        snprintf(cmd, sizeof cmd,
                 "%s%s/initdb -D %s/data -U postgres -A trust -E UTF8 --no-sync "
                 ">%s/initdb.log 2>&1",
                 em_testsrv__as_pg(), em_testsrv__pgbin(), s->pg_dir, s->pg_dir);
        em_testsrv__sh(cmd);
        s->pg_port = em_testsrv_free_port();
    }
    snprintf(cmd, sizeof cmd,
             "%s%s/pg_ctl -D %s/data -l %s/pg.log -w -t 60 "
             "-o \"-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off "
             "-c full_page_writes=off -c synchronous_commit=off\" start >/dev/null",
             em_testsrv__as_pg(), em_testsrv__pgbin(), s->pg_dir, s->pg_dir, s->pg_port,
             s->pg_dir);
    em_testsrv__sh(cmd);
    s->pg_running = 1;
    snprintf(s->pg_dsn, sizeof s->pg_dsn,
             "host=127.0.0.1 port=%d dbname=postgres user=postgres connect_timeout=5",
             s->pg_port);
    return s->pg_dsn;
}

/* Applies every services/archive/migrations/NNN_*.sql to the database at dsn, in order, as
 * archive does at start: for tests that need the archive's schema without running archive.
 * Aborts when one fails. */
static inline void em_testsrv_pg_migrate(const char *dsn)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "for f in services/archive/migrations/[0-9][0-9][0-9]_*.sql; do"
             " %s/psql -X -q -v ON_ERROR_STOP=1 -d '%s' -f \"$f\" >/dev/null || exit 1; done",
             em_testsrv__pgbin(), dsn);
    em_testsrv__sh(cmd);
}

static inline void em_testsrv_pg_stop(void)
{
    em_testsrv_state_t *s = em_testsrv__state();
    char cmd[4096];
    if (!s->pg_running)
        return;
    snprintf(cmd, sizeof cmd, "%s%s/pg_ctl -D %s/data -m fast -w -t 60 stop >/dev/null",
             em_testsrv__as_pg(), em_testsrv__pgbin(), s->pg_dir);
    em_testsrv__sh(cmd);
    s->pg_running = 0;
}

/* Sends a redis command with redis-cli; returns system()'s status. */
static inline int em_testsrv__redis_cli(const char *what)
{
    em_testsrv_state_t *s = em_testsrv__state();
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "redis-cli -h 127.0.0.1 -p %d -a emine-test --no-auth-warning %s >/dev/null 2>&1",
             s->redis_port, what);
    return system(cmd);
}

static inline const char *em_testsrv_redis_start(void)
{
    em_testsrv_state_t *s = em_testsrv__state();
    char cmd[4096];
    if (s->redis_pid)
        return s->redis_url;
    em_testsrv__cleanup_at_exit();
    if (!s->redis_dir[0]) {
        snprintf(s->redis_dir, sizeof s->redis_dir, "/tmp/emine-redis-XXXXXX");
        if (!mkdtemp(s->redis_dir)) {
            perror("mkdtemp");
            abort();
        }
        s->redis_port = em_testsrv_free_port();
    }
    snprintf(cmd, sizeof cmd,
             "redis-server --port %d --bind 127.0.0.1 --requirepass emine-test --save '' "
             "--appendonly no --dir %s --daemonize yes --pidfile %s/redis.pid "
             "--logfile %s/redis.log",
             s->redis_port, s->redis_dir, s->redis_dir, s->redis_dir);
    em_testsrv__sh(cmd);
    for (int i = 0; i < 200; i++) { /* up to 10 s */
        char path[1024];
        FILE *f;
        snprintf(path, sizeof path, "%s/redis.pid", s->redis_dir);
        f = fopen(path, "r");
        if (f) {
            int pid = 0;
            if (fscanf(f, "%d", &pid) == 1 && pid > 0)
                s->redis_pid = pid;
            fclose(f);
        }
        if (s->redis_pid && em_testsrv__redis_cli("PING") == 0)
            break;
        usleep(50000);
    }
    if (!s->redis_pid || em_testsrv__redis_cli("PING") != 0) {
        fprintf(stderr, "em_testsrv: redis-server did not start (see %s/redis.log)\n",
                s->redis_dir);
        abort();
    }
    snprintf(s->redis_url, sizeof s->redis_url, "redis://:emine-test@127.0.0.1:%d/0",
             s->redis_port);
    return s->redis_url;
}

static inline void em_testsrv_redis_stop(void)
{
    em_testsrv_state_t *s = em_testsrv__state();
    char path[1024];
    if (!s->redis_pid)
        return;
    kill(s->redis_pid, SIGTERM);
    for (int i = 0; i < 200 && kill(s->redis_pid, 0) == 0; i++)
        usleep(50000);
    snprintf(path, sizeof path, "%s/redis.pid", s->redis_dir);
    unlink(path);
    s->redis_pid = 0;
}

static inline void em_testsrv_stop_all(void)
{
    em_testsrv_state_t *s = em_testsrv__state();
    char cmd[4096];
    em_testsrv_pg_stop();
    em_testsrv_redis_stop();
    if (s->pg_dir[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->pg_dir);
        em_testsrv__sh(cmd);
        s->pg_dir[0] = '\0';
    }
    if (s->redis_dir[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->redis_dir);
        em_testsrv__sh(cmd);
        s->redis_dir[0] = '\0';
    }
}

#endif
