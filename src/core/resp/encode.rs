//! Encoding commands as RESP arrays of bulk strings.
//!
//! The length of the encoding is computed first and reserved once, so a command (or a
//! whole per-node batch) is written into one contiguous buffer without reallocating.

use bytes::{BufMut, BytesMut};

/// Number of decimal digits of `n` (1 for 0).
fn decimal_len(mut n: usize) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// Exact number of bytes [`encode_command`] writes for these arguments.
///
/// ```
/// use redis_cluster_uring::resp::encode::encoded_len;
/// assert_eq!(encoded_len([b"GET".as_slice(), b"k"]), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".len());
/// ```
pub fn encoded_len<'a, I>(args: I) -> usize
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut count = 0;
    let mut len = 0;
    for arg in args {
        count += 1;
        // `$<len>\r\n<bytes>\r\n`
        len += 1 + decimal_len(arg.len()) + 2 + arg.len() + 2;
    }
    // `*<count>\r\n`
    len + 1 + decimal_len(count) + 2
}

/// Appends one command (`*N` array of bulk strings) to `dst`.
///
/// The caller is expected to have reserved [`encoded_len`] bytes (a batch reserves the sum
/// of its commands once); this function reserves again only if it was not done.
///
/// ```
/// use bytes::BytesMut;
/// use redis_cluster_uring::resp::encode::encode_command;
/// let mut buf = BytesMut::new();
/// encode_command(&mut buf, [b"SET".as_slice(), b"k", b"v"]);
/// assert_eq!(&buf[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
/// ```
pub fn encode_command<'a, I>(dst: &mut BytesMut, args: I)
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: ExactSizeIterator + Clone,
{
    let args = args.into_iter();
    dst.reserve(encoded_len(args.clone()));
    let mut num = itoa::Buffer::new();
    dst.put_u8(b'*');
    dst.put_slice(num.format(args.len()).as_bytes());
    dst.put_slice(b"\r\n");
    for arg in args {
        dst.put_u8(b'$');
        dst.put_slice(num.format(arg.len()).as_bytes());
        dst.put_slice(b"\r\n");
        dst.put_slice(arg);
        dst.put_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_exact() {
        for args in [
            vec![b"PING".to_vec()],
            vec![b"SET".to_vec(), vec![b'x'; 9], vec![b'y'; 10]],
            vec![Vec::new(); 12],
            vec![vec![0u8; 1000], vec![1u8; 99_999]],
        ] {
            let mut buf = BytesMut::new();
            let slices: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            encode_command(&mut buf, slices.iter().copied());
            assert_eq!(buf.len(), encoded_len(slices.iter().copied()));
        }
    }

    #[test]
    fn reserves_once() {
        let mut buf = BytesMut::new();
        let args: [&[u8]; 3] = [b"SET", b"key", &[7u8; 4096]];
        encode_command(&mut buf, args);
        assert_eq!(buf.capacity(), buf.len());
    }

    #[test]
    fn binary_and_empty_arguments() {
        let mut buf = BytesMut::new();
        encode_command(&mut buf, [b"SET".as_slice(), b"\r\n\0", b""]);
        assert_eq!(&buf[..], b"*3\r\n$3\r\nSET\r\n$3\r\n\r\n\0\r\n$0\r\n\r\n");
    }
}
