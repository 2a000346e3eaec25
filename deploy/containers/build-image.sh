#!/usr/bin/env bash
# build-image.sh [TAG] - builds deploy/Dockerfile into TAG (default emine:local) on the local
# engine with host networking (apt inside the build reaches the Debian mirror directly).
# The context is a tar of only the paths the Dockerfile reads, so build folders, var/ and
# node_modules are never sent.  Also builds the PostgreSQL and Redis server images
# (emine-postgres:local, emine-redis:local).  The base images must exist (base-image.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG=${1:-emine:local}
export DOCKER_BUILDKIT=0

say() { printf 'build-image: %s\n' "$*"; }

say "building $TAG"
tar -c Makefile common services tools config deploy/Dockerfile deploy/containers |
    docker build -q --force-rm --network host -f deploy/Dockerfile -t "$TAG" - >/dev/null
for s in postgres redis; do
    say "building emine-$s:local"
    docker build -q --force-rm --network host -t "emine-$s:local" "deploy/containers/$s" >/dev/null
done
say "done"
