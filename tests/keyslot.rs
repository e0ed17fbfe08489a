//! Our slot hashing against a real server's `CLUSTER KEYSLOT`, for 10,000 keys: random
//! binary keys, hash tags, empty tags, nested and unbalanced braces.

use rand::{Rng, SeedableRng};
use redis_cluster_uring::slot_for_key;
use test_cluster::{Cluster, ClusterSpec, Reply};

fn body(rng: &mut impl Rng, max: usize) -> Vec<u8> {
    let n = rng.gen_range(0..=max);
    (0..n).map(|_| rng.gen::<u8>()).collect()
}

fn random_key(rng: &mut impl Rng) -> Vec<u8> {
    let len = 40;
    match rng.gen_range(0..6) {
        0 => body(rng, len),
        1 => {
            // A tag somewhere inside.
            let mut k = body(rng, 8);
            k.push(b'{');
            k.extend(body(rng, 8));
            k.push(b'}');
            k.extend(body(rng, 8));
            k
        }
        2 => [&b"foo{}"[..], &body(rng, len)].concat(),
        3 => [&b"{{"[..], &body(rng, 4), b"}}", &body(rng, 4)].concat(),
        4 => [&b"{"[..], &body(rng, len)].concat(),
        _ => format!("user:{}", rng.gen::<u32>()).into_bytes(),
    }
}

#[test]
fn slots_match_cluster_keyslot_for_10000_keys() {
    let cluster = match Cluster::start(ClusterSpec {
        masters: 1,
        ..ClusterSpec::default()
    }) {
        Ok(c) => c,
        Err(e) => panic!("could not start a test cluster: {e}"),
    };
    let port = cluster.nodes()[0].port;
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut keys: Vec<Vec<u8>> = (0..10_000).map(|_| random_key(&mut rng)).collect();
    for spec in [
        "123456789",
        "{user1000}.following",
        "{user1000}.followers",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "foo{bar}{zap}",
        "",
    ] {
        keys.push(spec.as_bytes().to_vec());
    }
    let cmds: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .map(|k| vec![b"CLUSTER".to_vec(), b"KEYSLOT".to_vec(), k.clone()])
        .collect();
    let replies = cluster.pipeline(port, &cmds).unwrap();
    assert_eq!(replies.len(), keys.len());
    for (key, reply) in keys.iter().zip(replies) {
        assert_eq!(
            reply,
            Reply::Int(i64::from(slot_for_key(key).get())),
            "key {key:?} (seed {seed})"
        );
    }
}
