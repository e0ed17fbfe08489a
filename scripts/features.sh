#!/usr/bin/env bash
# Builds the library with its optional features (tls, tokio-uring, compio, metrics) none,
# each alone, all but each, and all, each checked by clippy with warnings as errors, so
# that no feature's presence or absence stops it compiling or warns. Each feature's
# stand-in file refuses it alone and none depends on another, so these 10 of the 16
# combinations cover every feature on and off beside every other state of the rest that
# matters (none, all). Check mode only (no code generation), sharing one target
# directory: about 6 s a combination once the dependencies are checked.
set -euo pipefail
cd "$(dirname "$0")/.."

features=(tls tokio-uring compio metrics)
n=${#features[@]}
all=$(((1 << n) - 1))
masks=(0 "$all")
for ((i = 0; i < n; i++)); do
    masks+=($((1 << i)) $((all & ~(1 << i))))
done
for mask in "${masks[@]}"; do
    chosen=()
    for ((i = 0; i < n; i++)); do
        if ((mask & (1 << i))); then
            chosen+=("${features[i]}")
        fi
    done
    list=$(IFS=,; echo "${chosen[*]:-}")
    echo "== features: ${list:-(none)}"
    cargo clippy -q -p redis-cluster-uring --lib --no-default-features ${list:+--features "$list"} -- -D warnings
done
