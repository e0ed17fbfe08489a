#!/usr/bin/env bash
# Builds the library under every combination of its optional features (tls, tokio-uring,
# compio, metrics: 16), each checked by clippy with warnings as errors, so that no
# combination stops compiling or warns. Check mode only (no code generation), sharing
# one target directory: about 10 s a combination once the dependencies are checked.
set -euo pipefail
cd "$(dirname "$0")/.."

features=(tls tokio-uring compio metrics)
n=${#features[@]}
for ((mask = 0; mask < (1 << n); mask++)); do
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
