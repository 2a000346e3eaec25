#!/bin/sh
# deps.sh - installs, with apt-get, the Debian 12 packages emine needs that are missing.
# Run by `make deps`.  EMINE_DEPS_DRY_RUN=1 only names what it would install.  A no-op (no network, no root needed) when everything is installed.
# PostgreSQL and Redis are only needed as programs: the project runs its own servers under
# ./var (make run) or in a temporary folder (tests), never the system services, so when this
# script installs them it keeps their system services stopped and disabled.
set -eu

# package        why emine needs it
PKGS="
build-essential      compiler, make, libc headers
pkg-config           the Makefile finds every library's flags with it
libzmq3-dev          ZeroMQ: the producer protocol, the internal bus, the live stream
libjansson-dev       JSON parsing and printing (events, protocol frames, config of schemas)
libhiredis-dev       Redis client: the duplicate cache and other caches
libpq-dev            PostgreSQL client: the archive, projections, cursors
libmicrohttpd-dev    embedded HTTP server: POST /v1/events, admin /healthz /readyz /metrics
libinih-dev          INI parser for config/emine.conf
libcmocka-dev        unit test framework
libssl-dev           SHA-256 digests and the hash chain, HMAC webhook signatures
libcurl4-openssl-dev HTTP client for webhook delivery
libsodium-dev        CURVE keys and encryption for ZeroMQ endpoints
libpcre2-dev         regular expressions for JSON Schema pattern keywords
postgresql           PostgreSQL server binaries (initdb, pg_ctl, psql) for ./var and the tests
redis-server         redis-server and redis-cli for ./var and the tests
valgrind             make memcheck
prometheus           promtool: the tests check every service's /metrics with it (the server is never started)
curl                 readiness polling and HTTP calls in scripts and tests
ca-certificates      TLS trust roots for HTTPS webhook endpoints
procps               ps, pgrep, kill in scripts
iproute2             ss: the test harness finds free ports with it
psmisc               fuser, killall: who holds a port, when debugging the stack
"

# Programs that may come from elsewhere (e.g. a NodeSource nodejs that bundles npm): a
# package is installed only when its command is missing.
# command  package  why
CMDS="
node       nodejs   tests/interop: independent third-party clients (npm zeromq) as test peers
npm        npm      installs those clients' packages (tests/interop/package.json)
"

names=$(printf '%s\n' "$PKGS" | awk 'NF { print $1 }')

missing=""
for p in $names; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *" installed") ;;
        *) missing="$missing $p" ;;
    esac
done

for c in $(printf '%s\n' "$CMDS" | awk 'NF { print $1 ":" $2 }'); do
    if ! command -v "${c%%:*}" >/dev/null 2>&1; then missing="$missing ${c#*:}"; fi
done

if [ -z "$missing" ]; then
    echo "deps: all $(printf '%s\n' $names | wc -l) packages and $(printf '%s\n' "$CMDS" | awk 'NF' | wc -l) commands are installed"
    exit 0
fi

echo "deps: installing:$missing"
if [ "${EMINE_DEPS_DRY_RUN:-0}" = 1 ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "deps: not root and sudo is missing; install as root:$missing" >&2
        exit 1
    fi
fi

# Keep package scripts from starting system services (PostgreSQL on 5432, Redis on 6379)
# while installing: invoke-rc.d and deb-systemd-invoke honour policy-rc.d exit code 101.
POLICY=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$POLICY" ]; then
    $SUDO sh -c "printf '#!/bin/sh\nexit 101\n' > $POLICY && chmod 755 $POLICY"
    own_policy=1
fi
cleanup() {
    if [ "$own_policy" -eq 1 ]; then $SUDO rm -f "$POLICY"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export DEBIAN_FRONTEND=noninteractive
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing

# If a package started its system service anyway (a pre-existing policy allowing it), stop
# and disable the services of the packages installed now.
for svc in postgresql redis-server prometheus; do
    case " $missing " in *" $svc "*) ;; *) continue ;; esac
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    else
        $SUDO service "$svc" stop >/dev/null 2>&1 || true
        $SUDO update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
done
case " $missing " in *" postgresql "*) pg_new=1 ;; *) pg_new=0 ;; esac
if [ "$pg_new" -eq 1 ] && command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters -h 2>/dev/null | while read -r ver name _port status _rest; do
        if [ "$status" = "online" ]; then
            $SUDO pg_ctlcluster "$ver" "$name" stop || true
        fi
    done
fi
echo "deps: done"
