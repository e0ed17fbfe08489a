//! Decoder and encoder throughput on realistic replies and batches.

use bytes::{BufMut, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use redis_cluster_uring::cmd;
use redis_cluster_uring::resp::decode::{decode, DecodeLimits};

fn replies(n: usize, one: &[u8]) -> Vec<u8> {
    one.repeat(n)
}

fn bulk_array(n: usize, len: usize) -> Vec<u8> {
    let mut out = format!("*{n}\r\n").into_bytes();
    for i in 0..n {
        let v = format!("{i:0len$}");
        out.extend_from_slice(format!("${}\r\n{v}\r\n", v.len()).as_bytes());
    }
    out
}

fn decode_all(wire: &[u8], limits: &DecodeLimits) -> usize {
    let mut buf = BytesMut::from(wire);
    let mut n = 0;
    while let Ok(Some(v)) = decode(&mut buf, limits) {
        black_box(v);
        n += 1;
    }
    n
}

fn decoder(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let small_bulks: Vec<u8> = (0..1024)
        .flat_map(|i| format!("$32\r\n{i:032}\r\n").into_bytes())
        .collect();
    let mut big = b"$1048576\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 1 << 20));
    big.extend_from_slice(b"\r\n");
    let mut map = b"%512\r\n".to_vec();
    for i in 0..512 {
        map.extend_from_slice(format!("+field{i}\r\n:{i}\r\n").as_bytes());
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("1024 +OK", replies(1024, b"+OK\r\n")),
        ("1024 bulk 32B", small_bulks),
        ("array of 10000 bulks", bulk_array(10_000, 16)),
        ("bulk 1MiB", big),
        ("resp3 map 512", map),
    ];
    let mut group = c.benchmark_group("decode");
    for (name, wire) in &cases {
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(*name, |b| b.iter(|| decode_all(wire, &limits)));
    }
    group.finish();
}

fn encoder(c: &mut Criterion) {
    let cmds: Vec<_> = (0..1024)
        .map(|i| {
            cmd("SET")
                .arg(format!("key:{i}"))
                .arg(format!("value-{i:016}"))
        })
        .collect();
    let bytes: usize = cmds.iter().map(|c| c.encoded_len()).sum();
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("1024 SET into one batch", |b| {
        b.iter(|| {
            let total: usize = cmds.iter().map(|c| c.encoded_len()).sum();
            let mut buf = BytesMut::with_capacity(total);
            for c in &cmds {
                c.write_to(&mut buf);
            }
            buf.put_u8(0);
            black_box(buf)
        })
    });
    // The same, with each command built in the loop, as a caller building its pipeline
    // per request pays: a command's arguments are framed when they are added.
    group.bench_function("1024 SET built and encoded into one batch", |b| {
        b.iter(|| {
            let built: Vec<_> = (0..1024)
                .map(|i| {
                    cmd("SET")
                        .arg(black_box(format!("key:{i}")).as_str())
                        .arg(black_box(format!("value-{i:016}")).as_str())
                })
                .collect();
            let total: usize = built.iter().map(|c| c.encoded_len()).sum();
            let mut buf = BytesMut::with_capacity(total);
            for c in &built {
                c.write_to(&mut buf);
            }
            black_box(buf)
        })
    });
    group.finish();
}

criterion_group!(benches, decoder, encoder);
criterion_main!(benches);
