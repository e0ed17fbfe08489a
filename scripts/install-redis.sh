#!/usr/bin/env bash
# Makes sure redis-server and redis-cli (Debian's redis 7.x) are on PATH.
# Installs them with apt-get when missing (needs root). The package starts a server on
# port 6379 as a service; the tests start their own servers, so that one is stopped.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    echo "redis: $(redis-server --version)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "redis-server/redis-cli are missing and installing them needs root:" >&2
    echo "  sudo $0    (or: sudo apt-get install -y redis-server redis-tools)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Keep the package from starting its service (no init system in containers anyway).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
fi
apt-get update -qq
apt-get install -y -qq redis-server redis-tools >/dev/null
if [ "$created_policy" = 1 ]; then
    rm -f "$policy"
fi
# If a server was started anyway, stop only that one (the package's, on 6379).
if command -v service >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 || true
fi
echo "redis: $(redis-server --version)"
