//! Feeds arbitrary bytes to the decoder's three entry points and checks that they agree
//! and never panic. Run: `cargo +nightly fuzz run decode` from the repository root.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use redis_cluster_uring::resp::decode::{decode, decode_slice, frame_len, Decoded, DecodeLimits};

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits {
        max_bulk_len: 1 << 16,
        max_elements: 1 << 10,
        max_depth: 16,
    };
    let len = frame_len(data, &limits);
    let slice = decode_slice(data, &limits);
    let mut buf = BytesMut::from(data);
    let zero_copy = decode(&mut buf, &limits);
    match (len, slice, zero_copy) {
        (Ok(Some(n)), Ok(Decoded::Complete(a, m)), Ok(Some(b))) => {
            assert_eq!(n, m);
            assert_eq!(buf.len(), data.len() - n);
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
        (Ok(None), Ok(Decoded::Incomplete), Ok(None)) => assert_eq!(buf.len(), data.len()),
        (Err(_), Err(_), Err(_)) => {}
        other => panic!("entry points disagree: {other:?}"),
    }
});
