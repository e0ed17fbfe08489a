#!/usr/bin/env bash
# The crate as it would be published: `cargo publish --dry-run` packs the files the
# manifest's `include` names and builds them on their own. A warning (missing metadata,
# a file the build would miss) fails the check, as does a package that carries more than
# the library and its documents. The one warning let through is the dry run's own
# ("aborting upload"): the integration tests and benchmarks are a package of their own
# (`tests/`), so cargo has no target to leave out.
set -euo pipefail
cd "$(dirname "$0")/.."

out=$(cargo publish --dry-run --allow-dirty -p redis-cluster-uring 2>&1) || {
    echo "$out"
    exit 1
}
echo "$out" | grep -E "^ *(Packag|Verif|Upload|Packaged)" || true
expected='^warning: aborting upload due to dry run$'
if echo "$out" | grep "^warning" | grep -qvE "$expected"; then
    echo "$out" | grep "^warning" | grep -vE "$expected"
    echo "publish-check: cargo publish --dry-run warned" >&2
    exit 1
fi
unexpected=$(cargo package --list --allow-dirty -p redis-cluster-uring 2>/dev/null |
    grep -vE '^(src/.*\.rs|examples/[^/]*\.rs|README\.md|DESIGN\.md|CHANGELOG\.md|LICENSE-MIT|LICENSE-APACHE|Cargo\.toml|Cargo\.toml\.orig|Cargo\.lock|\.cargo_vcs_info\.json)$' || true)
if [ -n "$unexpected" ]; then
    echo "publish-check: the package would carry more than the library and its documents:" >&2
    echo "$unexpected" >&2
    exit 1
fi
echo "publish-check: ok"
