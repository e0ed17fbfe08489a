//! Pipeline planning: K commands judged once (class, slot, read-only), then into
//! per-node batches.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use redis_cluster_uring::core::judgement::Judgement;
use redis_cluster_uring::core::plan::{plan_judged, plan_pipeline};
use redis_cluster_uring::{cmd, NodeAddr, SlotMap};

fn three_nodes() -> SlotMap {
    let nodes: Vec<NodeAddr> = (7000..7003)
        .map(|p| NodeAddr::new("127.0.0.1", p))
        .collect();
    SlotMap::split_evenly(&nodes)
}

fn planning(c: &mut Criterion) {
    let map = three_nodes();
    let mut group = c.benchmark_group("plan");
    for k in [16usize, 128, 1024] {
        let cmds: Vec<_> = (0..k).map(|i| cmd("GET").arg(format!("key:{i}"))).collect();
        group.throughput(Throughput::Elements(k as u64));
        group.bench_function(format!("{k} GETs over 3 nodes"), |b| {
            b.iter(|| black_box(plan_pipeline(black_box(&cmds), &map)))
        });
    }
    group.finish();
    // What a request does with a pipeline as cluster-bench sends it (GET and SET of a
    // 16-byte value, alternating): each command judged once, then planned from its
    // judgement.
    let mut group = c.benchmark_group("judged");
    for k in [16usize, 128, 1024] {
        let cmds: Vec<_> = (0..k)
            .map(|i| {
                let key = format!("bench:{i}");
                if i % 2 == 0 {
                    cmd("GET").arg(key)
                } else {
                    cmd("SET").arg(key).arg("0123456789abcdef")
                }
            })
            .collect();
        let judged = Judgement::all(&cmds);
        group.throughput(Throughput::Elements(k as u64));
        group.bench_function(format!("judge {k} GET/SET"), |b| {
            b.iter(|| black_box(Judgement::all(black_box(&cmds))))
        });
        group.bench_function(format!("plan {k} judged GET/SET over 3 nodes"), |b| {
            b.iter(|| black_box(plan_judged(black_box(&cmds), &judged, &map, &[], &[])))
        });
    }
    group.finish();
}

criterion_group!(benches, planning);
criterion_main!(benches);
