//! Self-test of the push-injecting proxy (`support::push_proxy`) in front of a real
//! 3-master cluster: the nodes announce the proxy ports, and a raw connection through a
//! proxy sees one push before every third reply, at frame boundaries only, also when a
//! reply spans many reads.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use redis_cluster_uring::resp::decode::decode_slice;
use redis_cluster_uring::resp::{DecodeLimits, Decoded};
use redis_cluster_uring::Value;
use support::push_proxy::PushProxies;
use support::{Cluster, ClusterSpec};

#[test]
fn pushes_are_injected_between_whole_replies() {
    let masters = 3;
    let mut proxies = PushProxies::bind(masters).expect("bind proxy listeners");
    let ports = proxies.ports();
    let cluster = Cluster::start(ClusterSpec {
        masters,
        announce_ports: Some(ports.clone()),
        ..ClusterSpec::default()
    })
    .unwrap_or_else(|e| panic!("could not start a test cluster: {e}"));
    let real: Vec<u16> = cluster.nodes().iter().map(|n| n.port).collect();
    proxies.start(&real, 3);

    // The nodes send clients to the proxies.
    let slots = cluster
        .run(real[0], &["CLUSTER", "SLOTS"])
        .expect("CLUSTER SLOTS");
    let mut announced: Vec<u16> = slots
        .items()
        .iter()
        .filter_map(|range| range.items().get(2)?.items().get(1)?.int())
        .map(|p| p as u16)
        .collect();
    announced.sort_unstable();
    let mut want = ports.clone();
    want.sort_unstable();
    assert_eq!(announced, want, "masters announce the proxy ports");

    let before = proxies.injected();
    let mut conn = TcpStream::connect(("127.0.0.1", ports[0])).expect("connect to a proxy");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    conn.write_all(&b"*1\r\n$4\r\nPING\r\n".repeat(30))
        .expect("send 30 PINGs");

    // Frame 3, 6, ..., 30 of the connection come after a push.
    let frames = read_replies(&mut conn, 30);
    let mut pongs = 0;
    let mut pushes = 0;
    for value in &frames {
        match value {
            Value::Push(items) => {
                assert_eq!(items.len(), 2, "push shape: {items:?}");
                assert_eq!(items[0], Value::Bulk("invalidate".into()));
                // One push before every third reply, never two in a row.
                assert_eq!(pongs % 3, 2, "push after {pongs} PONGs");
                assert_eq!(pushes, pongs / 3, "pushes so far");
                pushes += 1;
            }
            Value::SimpleString(s) if &s[..] == b"PONG" => pongs += 1,
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(pongs, 30);
    assert_eq!(pushes, 10, "one push per three replies");

    // Replies larger than one read: the push still goes between whole frames (31..36:
    // before 33 and 36).
    let big: Vec<Vec<u8>> = (0..6u8).map(|i| vec![b'a' + i; 300_000]).collect();
    let mut request = Vec::new();
    for v in &big {
        request.extend_from_slice(format!("*2\r\n$4\r\nECHO\r\n${}\r\n", v.len()).as_bytes());
        request.extend_from_slice(v);
        request.extend_from_slice(b"\r\n");
    }
    conn.write_all(&request).expect("send 6 large ECHOs");
    let frames = read_replies(&mut conn, 6);
    let kinds: Vec<&str> = frames
        .iter()
        .map(|f| match f {
            Value::Push(_) => "push",
            Value::Bulk(_) => "bulk",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["bulk", "bulk", "push", "bulk", "bulk", "bulk", "push", "bulk"],
        "pushes before frames 33 and 36"
    );
    let echoed: Vec<&[u8]> = frames
        .iter()
        .filter_map(|f| match f {
            Value::Bulk(b) => Some(&b[..]),
            _ => None,
        })
        .collect();
    assert_eq!(echoed, big.iter().map(Vec::as_slice).collect::<Vec<_>>());

    assert!(
        proxies.injected() >= before + 12,
        "injected() grew: {} -> {}",
        before,
        proxies.injected()
    );

    // The server closing the connection closes the client's side too.
    conn.write_all(b"*1\r\n$4\r\nQUIT\r\n").expect("send QUIT");
    assert_eq!(
        read_replies(&mut conn, 1),
        [Value::SimpleString("OK".into())]
    );
    let mut rest = [0u8; 16];
    assert_eq!(
        conn.read(&mut rest).expect("EOF, not a timeout"),
        0,
        "proxy closes the client side when the server closes"
    );
    drop(conn);
    // Proxies go first: their drop must close relays and join every thread.
    drop(proxies);
    drop(cluster);
}

/// Reads frames until `replies` non-push frames have arrived; returns all of them in
/// order, pushes included. Fails on trailing bytes (the proxy never splits a frame).
fn read_replies(conn: &mut TcpStream, replies: usize) -> Vec<Value> {
    let limits = DecodeLimits::default();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut frames = Vec::new();
    let mut seen = 0;
    while seen < replies {
        let n = conn
            .read(&mut chunk)
            .expect("read replies through the proxy");
        assert!(n > 0, "proxy closed after {seen} replies");
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        while let Decoded::Complete(value, len) =
            decode_slice(&buf[used..], &limits).expect("well-formed RESP from the proxy")
        {
            used += len;
            if !matches!(value, Value::Push(_)) {
                seen += 1;
            }
            frames.push(value);
        }
        buf.drain(..used);
    }
    assert!(buf.is_empty(), "{} bytes after the last reply", buf.len());
    frames
}
