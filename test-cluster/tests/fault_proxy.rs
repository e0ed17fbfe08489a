//! The fault proxy in front of a real 3-master cluster: relaying, cut, stall, delay, drop.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use test_cluster::fault_proxy::FaultProxies;
use test_cluster::{Cluster, ClusterSpec};

/// Proxies bound before the cluster (whose nodes announce them), started after it.
fn setup() -> (Cluster, FaultProxies) {
    let mut proxies = FaultProxies::bind(3).unwrap();
    let cluster = Cluster::start(ClusterSpec {
        announce_ports: Some(proxies.ports()),
        ..ClusterSpec::default()
    })
    .unwrap();
    let targets: Vec<u16> = cluster.nodes().iter().map(|n| n.port).collect();
    proxies.start(&targets);
    (cluster, proxies)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Reads exactly `n` bytes.
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// Reads until end-of-file.
fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

fn ping(port: u16) {
    let mut s = connect(port);
    s.write_all(&cmd(&["PING"])).unwrap();
    assert_eq!(read_n(&mut s, 7), b"+PONG\r\n");
}

#[test]
fn relays_and_cluster_announces_the_proxies() {
    let (cluster, proxies) = setup();
    for &port in &proxies.ports() {
        ping(port);
    }
    // The nodes send clients to the proxies.
    let slots = cluster
        .run(cluster.nodes()[0].port, &["CLUSTER", "SLOTS"])
        .unwrap();
    let mut announced: Vec<u16> = slots
        .items()
        .iter()
        .map(|r| r.items()[2].items()[1].int().unwrap() as u16)
        .collect();
    announced.sort_unstable();
    let mut ports = proxies.ports();
    ports.sort_unstable();
    assert_eq!(announced, ports);
    // Several round trips and a pipeline on one connection.
    let mut s = connect(proxies.ports()[1]);
    for _ in 0..3 {
        s.write_all(&cmd(&["ECHO", "hello"])).unwrap();
        assert_eq!(read_n(&mut s, 11), b"$5\r\nhello\r\n");
    }
    let mut pipeline = Vec::new();
    for _ in 0..100 {
        pipeline.extend(cmd(&["PING"]));
    }
    s.write_all(&pipeline).unwrap();
    assert_eq!(read_n(&mut s, 700), b"+PONG\r\n".repeat(100));
    assert_eq!(proxies.cuts(), 0);
}

#[test]
fn cut_after_tears_a_reply_at_the_byte_and_then_disarms() {
    let (_cluster, proxies) = setup();
    let port = proxies.ports()[0];
    let value = "v".repeat(100);

    // A connection the proxy may not have accepted yet: the pending budget takes it.
    let mut s = connect(port);
    proxies.cut_after(0, 5);
    s.write_all(&cmd(&["ECHO", &value])).unwrap();
    assert_eq!(read_to_eof(&mut s), b"$100\r");
    assert_eq!(proxies.cuts(), 1);
    ping(port);

    // A connection surely open at the call (it has had a reply) gets the budget, and its
    // cut drops the pending budget, so a reconnect is not cut. A budget that runs out at
    // the end of a chunk cuts right after it.
    let mut s = connect(port);
    s.write_all(&cmd(&["PING"])).unwrap();
    assert_eq!(read_n(&mut s, 7), b"+PONG\r\n");
    proxies.cut_after(0, 108); // "$100\r\n" + 100 bytes + "\r\n"
    s.write_all(&cmd(&["ECHO", &value])).unwrap();
    assert_eq!(
        read_to_eof(&mut s),
        format!("$100\r\n{value}\r\n").into_bytes()
    );
    assert_eq!(proxies.cuts(), 2);
    ping(port);

    // Zero: an open connection is cut at once, without a byte. Every open connection is,
    // so first wait for the earlier ones (closed by this test) to leave the proxy.
    let mut s = connect(port);
    s.write_all(&cmd(&["PING"])).unwrap();
    assert_eq!(read_n(&mut s, 7), b"+PONG\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxies.open_connections(0) > 1 {
        assert!(
            Instant::now() < deadline,
            "closed connections never left the proxy"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    proxies.cut_after(0, 0);
    assert_eq!(read_to_eof(&mut s), b"");
    assert_eq!(proxies.cuts(), 3);
    ping(port);

    // Other proxies are not affected; clear removes an unused budget.
    proxies.cut_after(1, 1);
    proxies.clear(1);
    ping(proxies.ports()[1]);
    ping(proxies.ports()[2]);
    assert_eq!(proxies.cuts(), 3);
}

#[test]
fn stall_holds_bytes_until_unstall() {
    let (_cluster, proxies) = setup();
    let port = proxies.ports()[2];
    let mut s = connect(port);
    s.write_all(&cmd(&["PING"])).unwrap();
    assert_eq!(read_n(&mut s, 7), b"+PONG\r\n");

    proxies.stall(2);
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s.write_all(&cmd(&["PING"])).unwrap();
    let mut buf = [0u8; 7];
    let err = s.read(&mut buf).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    // Other proxies still relay.
    ping(proxies.ports()[0]);

    proxies.unstall(2);
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert_eq!(read_n(&mut s, 7), b"+PONG\r\n");
    // A stall through clear, on a connection opened while stalled.
    proxies.stall(2);
    let mut t = connect(port);
    t.write_all(&cmd(&["PING"])).unwrap();
    t.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(t.read(&mut buf).is_err());
    proxies.clear(2);
    t.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert_eq!(read_n(&mut t, 7), b"+PONG\r\n");
}

#[test]
fn delay_holds_each_reply() {
    let (_cluster, proxies) = setup();
    let port = proxies.ports()[1];
    let mut s = connect(port);
    s.write_all(&cmd(&["PING"])).unwrap();
    assert_eq!(read_n(&mut s, 7), b"+PONG\r\n");

    proxies.delay(1, Duration::from_millis(200));
    for _ in 0..2 {
        let t = Instant::now();
        s.write_all(&cmd(&["PING"])).unwrap();
        assert_eq!(read_n(&mut s, 7), b"+PONG\r\n");
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
    }
    proxies.delay(1, Duration::ZERO);
    s.write_all(&cmd(&["PING"])).unwrap();
    assert_eq!(read_n(&mut s, 7), b"+PONG\r\n");
}

#[test]
fn drop_closes_connections_and_joins_promptly() {
    let (_cluster, proxies) = setup();
    let mut idle = connect(proxies.ports()[0]);
    idle.write_all(&cmd(&["PING"])).unwrap();
    assert_eq!(read_n(&mut idle, 7), b"+PONG\r\n");
    // One connection holding a reply in a stall, one in a long delay.
    proxies.stall(1);
    let mut stalled = connect(proxies.ports()[1]);
    stalled.write_all(&cmd(&["PING"])).unwrap();
    proxies.delay(2, Duration::from_secs(60));
    let mut delayed = connect(proxies.ports()[2]);
    delayed.write_all(&cmd(&["PING"])).unwrap();
    std::thread::sleep(Duration::from_millis(100));

    let t = Instant::now();
    drop(proxies);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    for s in [&mut idle, &mut stalled, &mut delayed] {
        let mut rest = Vec::new();
        // End-of-file (or a reset): nothing relayed after the drop.
        match s.read_to_end(&mut rest) {
            Ok(_) => assert_eq!(rest, b""),
            Err(e) => assert_ne!(e.kind(), ErrorKind::WouldBlock, "still open"),
        }
    }
}
