#!/usr/bin/env bash
# check_systemd.sh [--keys-only] - checks the units of deploy/systemd: each service unit has
# ExecStart, Restart=always, EnvironmentFile and the hardening options; then (unless
# --keys-only) `systemd-analyze verify` on a copy whose ExecStart programs exist (links to
# /bin/true in a temporary folder: the units are checked, not the binaries), with the templates
# instantiated as @1.
set -euo pipefail
cd "$(dirname "$0")/../.."
rc=0
for u in deploy/systemd/*.service; do
    for k in '^ExecStart=/usr/local/bin/emine-' '^Restart=always$' '^EnvironmentFile=/etc/emine/emine.env$' \
        '^User=emine$' '^NoNewPrivileges=yes$' '^ProtectSystem=strict$' '^KillSignal=SIGTERM$' \
        '^CapabilityBoundingSet=$'; do
        grep -q -- "$k" "$u" || { echo "check_systemd: $u: no line matching $k" >&2; rc=1; }
    done
done
[ "${1:-}" = --keys-only ] && exit $rc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/units" "$tmp/bin"
for s in ingest validate archive notify; do ln -s /bin/true "$tmp/bin/emine-$s"; done
for u in deploy/systemd/*; do
    b=$(basename "$u")
    sed "s|/usr/local/bin/|$tmp/bin/|" "$u" >"$tmp/units/$b"
    case "$b" in *@.service) sed "s|/usr/local/bin/|$tmp/bin/|" "$u" >"$tmp/units/${b%@.service}@1.service"; cp "$tmp/units/${b%@.service}@1.service" "$tmp/units/${b%@.service}@2.service" ;; esac
done
out=$(cd "$tmp/units" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no \
    emine.target emine-ingest.service emine-validate@1.service emine-archive@1.service \
    emine-archive@2.service emine-notify@1.service 2>&1) || rc=1
# Warnings about the host (no running systemd, missing users) are not the units' problems.
out=$(printf '%s\n' "$out" | grep -v -e 'Failed to connect to bus' -e '^$' || true)
if [ -n "$out" ]; then printf '%s\n' "$out" >&2; rc=1; fi
[ $rc -eq 0 ] && echo "check_systemd: $(ls deploy/systemd | wc -l) units verified"
exit $rc
