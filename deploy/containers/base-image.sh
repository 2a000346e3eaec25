#!/usr/bin/env bash
# base-image.sh - makes sure the local engine has debian:bookworm and debian:bookworm-slim.
#
# Nothing is pulled from a registry: when an image is missing, a Debian 12 minbase root file
# system is built with debootstrap from the Debian mirror apt is configured with (the first
# URIs of /etc/apt/sources.list.d/*.sources, else the first `deb` line of sources.list) and
# imported with `docker import`.  The slim tag is the same root file system without
# documentation, manual pages and locales.  A tag that exists is left alone (the cache).
#
# Environment: EMINE_DEBIAN_MIRROR overrides the mirror; EMINE_BASE_WORK the work folder
# (default /var/tmp/emine-base).  Needs root (debootstrap).
set -euo pipefail

say() { printf 'base-image: %s\n' "$*"; }
die() { printf 'base-image: %s\n' "$*" >&2; exit 1; }

have() { docker image inspect "$1" >/dev/null 2>&1; }

if have debian:bookworm && have debian:bookworm-slim; then
    say "debian:bookworm and debian:bookworm-slim exist"
    exit 0
fi

mirror() {
    local m=""
    if [ -n "${EMINE_DEBIAN_MIRROR:-}" ]; then
        printf '%s\n' "$EMINE_DEBIAN_MIRROR"
        return
    fi
    # deb822 sources: the URIs of the stanza that carries the suite bookworm (not -security).
    m=$(awk '/^URIs:/ { u = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") { print u; exit } }' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
        m=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|ftp):/) { print $i; exit } }' \
            /etc/apt/sources.list)
    fi
    printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing (apt-get install debootstrap)"
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"

WORK=${EMINE_BASE_WORK:-/var/tmp/emine-base}
ROOTFS="$WORK/rootfs"
MIRROR=$(mirror)

if ! have debian:bookworm; then
    if [ ! -f "$ROOTFS/.emine-complete" ]; then
        rm -rf "$ROOTFS"
        mkdir -p "$ROOTFS"
        say "debootstrap bookworm (minbase) from $MIRROR into $ROOTFS"
        debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
            { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap failed: see $WORK/debootstrap.log"; }
        # The same mirror inside the image, and no recommends: images stay small.
        printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$MIRROR" "$MIRROR" \
            >"$ROOTFS/etc/apt/sources.list"
        printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
            >"$ROOTFS/etc/apt/apt.conf.d/90emine-norecommends"
        rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
        touch "$ROOTFS/.emine-complete"
    fi
    say "importing debian:bookworm"
    tar --exclude=./.emine-complete -C "$ROOTFS" -c . |
        docker import -c 'CMD ["bash"]' -c 'ENV LANG=C.UTF-8' - debian:bookworm >/dev/null
fi

if ! have debian:bookworm-slim; then
    [ -f "$ROOTFS/.emine-complete" ] || {
        # debian:bookworm came from elsewhere: the slim tag is made from it.
        say "tagging debian:bookworm as debian:bookworm-slim"
        docker tag debian:bookworm debian:bookworm-slim
        exit 0
    }
    say "importing debian:bookworm-slim (without docs, manual pages and locales)"
    tar --exclude=./.emine-complete --exclude=./usr/share/doc/* --exclude=./usr/share/man/* \
        --exclude=./usr/share/locale/* --exclude=./usr/share/info/* -C "$ROOTFS" -c . |
        docker import -c 'CMD ["bash"]' -c 'ENV LANG=C.UTF-8' - debian:bookworm-slim >/dev/null
fi
say "done: $(docker image inspect -f '{{.Size}}' debian:bookworm | awk '{ printf "%d MB", $1 / 1e6 }') / $(docker image inspect -f '{{.Size}}' debian:bookworm-slim | awk '{ printf "%d MB", $1 / 1e6 }')"
