//! Incremental RESP2/RESP3 decoder.
//!
//! The decoder looks at a byte slice and answers "here is one reply and it used n bytes",
//! "need more", or a typed protocol error. It never blocks and never panics, and it checks
//! every length a server sends against [`DecodeLimits`] *before* allocating, so a broken or
//! hostile server cannot make the client allocate without bound or recurse without bound.
//!
//! Decoding works in two passes over a frame. [`frame_len`] walks the frame without
//! building anything (bulk bodies are skipped by their length, so a 1 MiB string costs the
//! same as a short one) and answers whether the whole reply is buffered. Only then does
//! [`decode`] split the frame off the read buffer and build the [`Value`], whose strings are
//! zero-copy slices of that frame. When a reply arrives in many reads, only the cheap walk
//! is repeated, never the allocation.
//!
//! The walk uses an explicit stack of "elements still to read" counters instead of
//! recursion, so nesting depth is limited by [`DecodeLimits::max_depth`], not by the
//! thread's stack.

use bytes::{Buf, Bytes, BytesMut};

use crate::core::error::{Error, Result};
use crate::core::value::Value;

/// Longest line (simple string, error, number, length header) accepted without its CRLF.
/// Real servers send short lines; without a cap, a peer streaming bytes with no CRLF would
/// make the read buffer grow forever while the decoder keeps answering "need more".
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// The deepest nesting accepted whatever [`DecodeLimits::max_depth`] says. Building a
/// [`Value`] (and dropping one) recurses once per level, so this bounds the stack a reply
/// can use even when a caller configures `usize::MAX`. Real replies nest a few levels.
pub const MAX_DEPTH_CEILING: usize = 128;

/// Caps that keep a hostile or broken server from making the decoder allocate without
/// bound or recurse without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest bulk string / verbatim / blob error accepted, in bytes.
    pub max_bulk_len: usize,
    /// Largest element count of one aggregate (array, map pairs, set, push, attribute).
    pub max_elements: usize,
    /// Deepest nesting of aggregates (at most [`MAX_DEPTH_CEILING`], whatever is set).
    pub max_depth: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            // Redis's own proto-max-bulk-len default.
            max_bulk_len: 512 * 1024 * 1024,
            max_elements: 16 * 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// Result of looking at a buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// One whole reply, which used this many bytes from the start of the buffer.
    Complete(Value, usize),
    /// The buffer holds only part of a reply: read more and try again.
    Incomplete,
}

/// Where a line ends: the index of its `\r`, or `None` when the CRLF is not buffered yet.
fn find_crlf(src: &[u8], start: usize) -> Result<Option<usize>> {
    let window = &src[start.min(src.len())..];
    let limit = window.len().min(MAX_LINE_LEN + 1);
    match window[..limit].iter().position(|&b| b == b'\r') {
        Some(i) => {
            let cr = start + i;
            match src.get(cr + 1) {
                None => Ok(None),
                Some(b'\n') => Ok(Some(cr)),
                Some(_) => Err(Error::protocol("CR not followed by LF")),
            }
        }
        None if window.len() > MAX_LINE_LEN => Err(Error::protocol(format!(
            "line longer than {MAX_LINE_LEN} bytes without CRLF"
        ))),
        None => Ok(None),
    }
}

/// Parses a strict decimal integer: optional `-`, then 1 to 19 digits, fitting `i64`.
fn parse_int(line: &[u8]) -> Result<i64> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Error::protocol(format!(
            "invalid integer {:?}",
            String::from_utf8_lossy(&line[..line.len().min(32)])
        )));
    }
    let mut n: i64 = 0;
    for &d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| {
                let d = i64::from(d - b'0');
                if negative {
                    n.checked_sub(d)
                } else {
                    n.checked_add(d)
                }
            })
            .ok_or_else(|| Error::protocol("integer out of range"))?;
    }
    Ok(n)
}

/// A line of 1 to 18 plain digits as a number (no sign, so no overflow either); `None`
/// for anything else, which [`parse_int`] then reads or refuses with its errors. The
/// usual length or integer line, read without a pass to check it first.
#[inline]
fn short_number(line: &[u8]) -> Option<u64> {
    if line.is_empty() || line.len() > 18 {
        return None;
    }
    let mut n = 0u64;
    for &b in line {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n = n * 10 + u64::from(digit);
    }
    Some(n)
}

/// A length header: `-1` (null, only where `allow_null`) or `0..=max`.
fn parse_len(line: &[u8], max: usize, what: &str, allow_null: bool) -> Result<Option<usize>> {
    let n = parse_int(line)?;
    if n == -1 && allow_null {
        return Ok(None);
    }
    if n < 0 {
        return Err(Error::protocol(format!("negative {what} length {n}")));
    }
    let n = n as u64;
    if n > max as u64 {
        return Err(Error::protocol(format!(
            "{what} length {n} exceeds the limit of {max}"
        )));
    }
    Ok(Some(n as usize))
}

fn parse_double(line: &[u8]) -> Result<f64> {
    let text = std::str::from_utf8(line).map_err(|_| Error::protocol("double is not ASCII"))?;
    match text {
        "inf" | "+inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" | "-nan" => Ok(f64::NAN),
        _ => {
            // Rust's parser also accepts "infinity" and "NaN" spellings; RESP3 names only
            // the ones above, so anything non-numeric beyond them is refused.
            let numeric = text
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
            if !numeric || text.is_empty() {
                return Err(Error::protocol(format!("invalid double {text:?}")));
            }
            text.parse()
                .map_err(|_| Error::protocol(format!("invalid double {text:?}")))
        }
    }
}

fn check_big_number(line: &[u8]) -> Result<()> {
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Error::protocol("invalid big number"));
    }
    Ok(())
}

/// The shape of one element, as read from its header line.
enum Header {
    /// A complete scalar ending at `end` (exclusive).
    Scalar { end: usize },
    /// An aggregate with this many child values, whose children start at `body`.
    Aggregate { children: usize, body: usize },
}

/// Reads the header of the element at `pos`. `Ok(None)`: not enough bytes yet.
fn header(src: &[u8], pos: usize, limits: &DecodeLimits) -> Result<Option<Header>> {
    let Some(&kind) = src.get(pos) else {
        return Ok(None);
    };
    let Some(cr) = find_crlf(src, pos + 1)? else {
        return Ok(None);
    };
    let line = &src[pos + 1..cr];
    let after = cr + 2;
    let scalar = |end| Ok(Some(Header::Scalar { end }));
    match kind {
        b'+' | b'-' => scalar(after),
        b':' => parse_int(line).and_then(|_| scalar(after)),
        b'_' => {
            if !line.is_empty() {
                return Err(Error::protocol("null with a payload"));
            }
            scalar(after)
        }
        b'#' => match line {
            b"t" | b"f" => scalar(after),
            _ => Err(Error::protocol("boolean is not t or f")),
        },
        b',' => parse_double(line).and_then(|_| scalar(after)),
        b'(' => check_big_number(line).and_then(|_| scalar(after)),
        b'$' | b'!' | b'=' => {
            let allow_null = kind == b'$';
            let Some(len) = parse_len(line, limits.max_bulk_len, "bulk", allow_null)? else {
                return scalar(after);
            };
            if kind == b'=' && len < 4 {
                return Err(Error::protocol("verbatim string shorter than its format"));
            }
            let end = after + len;
            if src.len() < end + 2 {
                return Ok(None);
            }
            if &src[end..end + 2] != b"\r\n" {
                return Err(Error::protocol("bulk string not followed by CRLF"));
            }
            if kind == b'=' && src[after + 3] != b':' {
                return Err(Error::protocol("verbatim string without a format prefix"));
            }
            scalar(end + 2)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let allow_null = kind == b'*';
            let Some(count) = parse_len(line, limits.max_elements, "aggregate", allow_null)? else {
                return scalar(after);
            };
            // Maps and attributes hold pairs; their element cap applies to pairs.
            let children = if matches!(kind, b'%' | b'|') {
                count * 2
            } else {
                count
            };
            // An attribute annotates the value after it: one more child.
            let children = if kind == b'|' { children + 1 } else { children };
            Ok(Some(Header::Aggregate {
                children,
                body: after,
            }))
        }
        other => Err(Error::protocol(format!(
            "unknown reply type byte 0x{other:02x}"
        ))),
    }
}

/// Length of the first complete reply in `src`, `None` when more bytes are needed.
///
/// ```
/// use redis_cluster_uring::resp::decode::frame_len;
/// let limits = Default::default();
/// assert_eq!(frame_len(b"*2\r\n:1\r\n$1\r\na\r\n+next", &limits).unwrap(), Some(15));
/// assert_eq!(frame_len(b"*2\r\n:1\r\n$1\r\n", &limits).unwrap(), None);
/// assert!(frame_len(b"?what\r\n", &limits).is_err());
/// ```
pub fn frame_len(src: &[u8], limits: &DecodeLimits) -> Result<Option<usize>> {
    // Remaining children of each open aggregate, innermost last.
    let mut open: Vec<usize> = Vec::new();
    let mut pos = 0;
    loop {
        match header(src, pos, limits)? {
            None => return Ok(None),
            Some(Header::Scalar { end }) => pos = end,
            Some(Header::Aggregate { children, body }) => {
                pos = body;
                if children > 0 {
                    let max_depth = limits.max_depth.min(MAX_DEPTH_CEILING);
                    if open.len() >= max_depth {
                        return Err(Error::protocol(format!(
                            "replies nested deeper than {max_depth}"
                        )));
                    }
                    open.push(children);
                    continue;
                }
            }
        }
        // One element finished: close every aggregate it completes.
        loop {
            match open.last_mut() {
                None => return Ok(Some(pos)),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    open.pop();
                }
            }
        }
    }
}

/// Builds the value of a frame that [`frame_len`] has validated. Recursion depth is
/// bounded by the validated nesting depth.
fn build(frame: &Bytes, pos: &mut usize, limits: &DecodeLimits) -> Result<Value> {
    let src: &[u8] = frame;
    let start = *pos;
    let Some(kind) = src.get(start).copied() else {
        return Err(Error::protocol("frame ended early"));
    };
    let cr = find_crlf(src, start + 1)?.ok_or_else(|| Error::protocol("frame ended early"))?;
    let line = &src[start + 1..cr];
    *pos = cr + 2;
    let value = match kind {
        b'+' => Value::SimpleString(frame.slice(start + 1..cr)),
        b'-' => Value::Error(frame.slice(start + 1..cr)),
        b':' => Value::Int(parse_int(line)?),
        b'_' => Value::Nil,
        b'#' => Value::Boolean(line == b"t"),
        b',' => Value::Double(parse_double(line)?),
        b'(' => Value::BigNumber(frame.slice(start + 1..cr)),
        b'$' | b'!' | b'=' => {
            let Some(len) = parse_len(line, limits.max_bulk_len, "bulk", kind == b'$')? else {
                return Ok(Value::Nil);
            };
            let body = *pos;
            *pos = body + len + 2;
            if *pos > src.len() {
                return Err(Error::protocol("frame ended early"));
            }
            match kind {
                b'$' => Value::Bulk(frame.slice(body..body + len)),
                b'!' => Value::Error(frame.slice(body..body + len)),
                _ => {
                    let mut format = [0u8; 3];
                    format.copy_from_slice(&src[body..body + 3]);
                    Value::Verbatim {
                        format,
                        text: frame.slice(body + 4..body + len),
                    }
                }
            }
        }
        b'*' | b'~' | b'>' => {
            let Some(count) = parse_len(line, limits.max_elements, "aggregate", kind == b'*')?
            else {
                return Ok(Value::Nil);
            };
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(build(frame, pos, limits)?);
            }
            match kind {
                b'*' => Value::Array(items),
                b'~' => Value::Set(items),
                _ => Value::Push(items),
            }
        }
        b'%' | b'|' => {
            let count = parse_len(line, limits.max_elements, "map", false)?.unwrap_or(0);
            let mut pairs = Vec::with_capacity(count);
            for _ in 0..count {
                let k = build(frame, pos, limits)?;
                let v = build(frame, pos, limits)?;
                pairs.push((k, v));
            }
            if kind == b'%' {
                Value::Map(pairs)
            } else {
                Value::Attribute {
                    attrs: pairs,
                    value: Box::new(build(frame, pos, limits)?),
                }
            }
        }
        other => {
            return Err(Error::protocol(format!(
                "unknown reply type byte 0x{other:02x}"
            )))
        }
    };
    Ok(value)
}

/// Decodes one reply from the front of `src`, copying strings out of it.
///
/// ```
/// use redis_cluster_uring::resp::{decode::decode_slice, Decoded, Value};
/// let limits = Default::default();
/// assert_eq!(decode_slice(b":42\r\n", &limits).unwrap(), Decoded::Complete(Value::Int(42), 5));
/// assert_eq!(decode_slice(b":4", &limits).unwrap(), Decoded::Incomplete);
/// ```
pub fn decode_slice(src: &[u8], limits: &DecodeLimits) -> Result<Decoded> {
    match frame_len(src, limits)? {
        None => Ok(Decoded::Incomplete),
        Some(n) => {
            let frame = Bytes::copy_from_slice(&src[..n]);
            let value = build(&frame, &mut 0, limits)?;
            Ok(Decoded::Complete(value, n))
        }
    }
}

/// Decodes one reply from the front of `src` and removes its bytes; strings in the reply
/// share `src`'s memory (zero-copy). `Ok(None)`: need more bytes, `src` untouched.
///
/// ```
/// use bytes::BytesMut;
/// use redis_cluster_uring::resp::{decode::decode, Value};
/// let mut buf = BytesMut::from(&b"$5\r\nhello\r\n+OK"[..]);
/// let v = decode(&mut buf, &Default::default()).unwrap();
/// assert_eq!(v, Some(Value::Bulk("hello".into())));
/// assert_eq!(&buf[..], b"+OK"); // the next reply is not complete yet
/// assert_eq!(decode(&mut buf, &Default::default()).unwrap(), None);
/// ```
pub fn decode(src: &mut BytesMut, limits: &DecodeLimits) -> Result<Option<Value>> {
    if let Some(scalar) = decode_scalar(src, limits) {
        return scalar;
    }
    let Some(n) = frame_len(src, limits)? else {
        return Ok(None);
    };
    let frame = src.split_to(n).freeze();
    build(&frame, &mut 0, limits).map(Some)
}

/// [`decode`] of the replies nearly every command gets: a bulk string, a simple string,
/// an error or an integer, read in one pass straight off `src` (the general path walks
/// a frame, splits it off, then builds from it: two passes and two reference counts
/// more per reply). A bulk string is one split of `src` (zero-copy, one reference
/// count); `+OK`, the answer of every write, is a static string and shares nothing.
/// `None` for every other kind of reply, left to the general path; the checks and their
/// errors are the general path's, in the same order, and `src` is untouched unless a
/// whole reply is taken.
fn decode_scalar(src: &mut BytesMut, limits: &DecodeLimits) -> Option<Result<Option<Value>>> {
    let kind = *src.first()?;
    if !matches!(kind, b'$' | b'+' | b'-' | b':') {
        return None;
    }
    let cr = match find_crlf(src, 1) {
        Ok(Some(cr)) => cr,
        Ok(None) => return Some(Ok(None)),
        Err(e) => return Some(Err(e)),
    };
    let after = cr + 2;
    let value = match kind {
        b'+' if &src[1..cr] == b"OK" => {
            src.advance(after);
            Value::SimpleString(Bytes::from_static(b"OK"))
        }
        b'+' | b'-' => {
            let mut line = src.split_to(after);
            line.advance(1);
            line.truncate(cr - 1);
            let line = line.freeze();
            if kind == b'+' {
                Value::SimpleString(line)
            } else {
                Value::Error(line)
            }
        }
        b':' => {
            let n = match short_number(&src[1..cr]) {
                Some(n) => n as i64,
                None => match parse_int(&src[1..cr]) {
                    Ok(n) => n,
                    Err(e) => return Some(Err(e)),
                },
            };
            src.advance(after);
            Value::Int(n)
        }
        _ => {
            let len = match short_number(&src[1..cr]) {
                Some(n) if n <= limits.max_bulk_len as u64 => n as usize,
                // A sign, nil, too many digits, over the limit, not a number.
                _ => match parse_len(&src[1..cr], limits.max_bulk_len, "bulk", true) {
                    Ok(Some(len)) => len,
                    Ok(None) => {
                        src.advance(after);
                        return Some(Ok(Some(Value::Nil)));
                    }
                    Err(e) => return Some(Err(e)),
                },
            };
            let end = after + len;
            if src.len() < end + 2 {
                return Some(Ok(None));
            }
            if &src[end..end + 2] != b"\r\n" {
                return Some(Err(Error::protocol("bulk string not followed by CRLF")));
            }
            // The whole reply off the buffer in one split, then its framing off the
            // piece: one reference count, and the buffer's own start moved once.
            let mut body = src.split_to(end + 2);
            body.advance(after);
            body.truncate(len);
            Value::Bulk(body.freeze())
        }
    };
    Some(Ok(Some(value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorKind;
    use proptest::prelude::*;

    fn limits() -> DecodeLimits {
        DecodeLimits::default()
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Every reply type, with its encoding.
    fn samples() -> Vec<(&'static [u8], Value)> {
        vec![
            (b"+OK\r\n", Value::SimpleString(b("OK"))),
            (b"+\r\n", Value::SimpleString(b(""))),
            (b"-ERR bad thing\r\n", Value::Error(b("ERR bad thing"))),
            (b":0\r\n", Value::Int(0)),
            (b":-9223372036854775808\r\n", Value::Int(i64::MIN)),
            (b":9223372036854775807\r\n", Value::Int(i64::MAX)),
            (b"$5\r\nhe\r\no\r\n", Value::Bulk(b("he\r\no"))),
            (b"$0\r\n\r\n", Value::Bulk(b(""))),
            (b"$-1\r\n", Value::Nil),
            (b"*-1\r\n", Value::Nil),
            (b"*0\r\n", Value::Array(vec![])),
            (
                b"*3\r\n:1\r\n*2\r\n+a\r\n$-1\r\n$1\r\nx\r\n",
                Value::Array(vec![
                    Value::Int(1),
                    Value::Array(vec![Value::SimpleString(b("a")), Value::Nil]),
                    Value::Bulk(b("x")),
                ]),
            ),
            (b"_\r\n", Value::Nil),
            (b",3.25\r\n", Value::Double(3.25)),
            (b",-1e10\r\n", Value::Double(-1e10)),
            (b",inf\r\n", Value::Double(f64::INFINITY)),
            (b",-inf\r\n", Value::Double(f64::NEG_INFINITY)),
            (b"#t\r\n", Value::Boolean(true)),
            (b"#f\r\n", Value::Boolean(false)),
            (
                b"(3492890328409238509324850943850943825024385\r\n",
                Value::BigNumber(b("3492890328409238509324850943850943825024385")),
            ),
            (b"(-12\r\n", Value::BigNumber(b("-12"))),
            (
                b"=15\r\ntxt:Some string\r\n",
                Value::Verbatim {
                    format: *b"txt",
                    text: b("Some string"),
                },
            ),
            (
                b"!21\r\nSYNTAX invalid syntax\r\n",
                Value::Error(b("SYNTAX invalid syntax")),
            ),
            (
                b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
                Value::Map(vec![
                    (Value::SimpleString(b("first")), Value::Int(1)),
                    (Value::SimpleString(b("second")), Value::Int(2)),
                ]),
            ),
            (
                b"~2\r\n+a\r\n#t\r\n",
                Value::Set(vec![Value::SimpleString(b("a")), Value::Boolean(true)]),
            ),
            (
                b">2\r\n+message\r\n$2\r\nhi\r\n",
                Value::Push(vec![
                    Value::SimpleString(b("message")),
                    Value::Bulk(b("hi")),
                ]),
            ),
            (
                b"|1\r\n+ttl\r\n:3600\r\n*1\r\n:7\r\n",
                Value::Attribute {
                    attrs: vec![(Value::SimpleString(b("ttl")), Value::Int(3600))],
                    value: Box::new(Value::Array(vec![Value::Int(7)])),
                },
            ),
            (b"%0\r\n", Value::Map(vec![])),
        ]
    }

    #[test]
    fn every_type_decodes() {
        for (wire, want) in samples() {
            let got = decode_slice(wire, &limits()).unwrap();
            assert_eq!(
                got,
                Decoded::Complete(want, wire.len()),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn nan_decodes_as_nan() {
        match decode_slice(b",nan\r\n", &limits()).unwrap() {
            Decoded::Complete(Value::Double(d), 6) => assert!(d.is_nan()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_split_point_is_incomplete_then_exact() {
        for (wire, want) in samples() {
            for cut in 0..wire.len() {
                assert_eq!(
                    decode_slice(&wire[..cut], &limits()).unwrap(),
                    Decoded::Incomplete,
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(wire)
                );
                // Fed in two reads through the zero-copy path.
                let mut buf = BytesMut::from(&wire[..cut]);
                assert_eq!(decode(&mut buf, &limits()).unwrap(), None);
                assert_eq!(buf.len(), cut, "incomplete input must stay untouched");
                buf.extend_from_slice(&wire[cut..]);
                assert_eq!(decode(&mut buf, &limits()).unwrap(), Some(want.clone()));
                assert!(buf.is_empty());
            }
            // With the next reply's bytes behind it, the length is still exact.
            let mut joined = wire.to_vec();
            joined.extend_from_slice(b"+next\r\n");
            assert_eq!(
                decode_slice(&joined, &limits()).unwrap(),
                Decoded::Complete(want, wire.len())
            );
        }
    }

    #[test]
    fn concatenated_replies_come_out_in_order() {
        let mut buf = BytesMut::new();
        let all = samples();
        for (wire, _) in &all {
            buf.extend_from_slice(wire);
        }
        for (_, want) in all {
            assert_eq!(decode(&mut buf, &limits()).unwrap(), Some(want));
        }
        assert_eq!(decode(&mut buf, &limits()).unwrap(), None);
    }

    #[test]
    fn a_lone_bulk_string_is_zero_copy_and_ok_shares_nothing() {
        let mut buf = BytesMut::from(&b"$5\r\nhello\r\n+OK\r\n+QUEUED\r\n"[..]);
        let base = buf.as_ptr() as usize;
        let Some(Value::Bulk(hello)) = decode(&mut buf, &limits()).unwrap() else {
            panic!("not a bulk string")
        };
        assert_eq!(hello.as_ptr() as usize, base + 4, "the bulk was copied");
        let ok = decode(&mut buf, &limits()).unwrap();
        assert_eq!(ok, Some(Value::SimpleString(Bytes::from_static(b"OK"))));
        let queued = decode(&mut buf, &limits()).unwrap();
        assert_eq!(queued, Some(Value::SimpleString("QUEUED".into())));
        assert!(buf.is_empty());
    }

    #[test]
    fn bulk_strings_are_zero_copy() {
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nabc\r\n$3\r\ndef\r\n"[..]);
        let base = buf.as_ptr() as usize;
        let end = base + buf.len();
        let Some(Value::Array(items)) = decode(&mut buf, &limits()).unwrap() else {
            panic!("not an array")
        };
        for item in items {
            let Value::Bulk(bytes) = item else { panic!() };
            let p = bytes.as_ptr() as usize;
            assert!(p >= base && p < end, "bulk was copied");
        }
    }

    fn protocol_error(wire: &[u8], lim: &DecodeLimits) {
        let e = decode_slice(wire, lim)
            .expect_err(&format!("{:?} decoded", String::from_utf8_lossy(wire)));
        assert_eq!(e.kind(), ErrorKind::Protocol);
        let mut buf = BytesMut::from(wire);
        assert!(decode(&mut buf, lim).is_err());
    }

    #[test]
    fn hostile_input_is_a_typed_error() {
        let lim = limits();
        for wire in [
            &b"$-2\r\n"[..],
            b"*-2\r\n",
            b"%-1\r\n",
            b"~-1\r\n",
            b"!-1\r\n",
            b"$99999999999999999999\r\n",
            b"$1x\r\n",
            b"$\r\n",
            b":\r\n",
            b":+1\r\n",
            b":12a\r\n",
            b":99999999999999999999\r\n",
            b"$3\r\nabcXY",
            b"+OK\rX",
            b"?\r\n",
            b"\x00\r\n",
            b"#x\r\n",
            b"_x\r\n",
            b",abc\r\n",
            b",infinity\r\n",
            b"(12a\r\n",
            b"(\r\n",
            b"=3\r\ntxt\r\n",
            b"=5\r\ntxtab\r\n",
            b"*1\r\n?\r\n",
        ] {
            protocol_error(wire, &lim);
        }
    }

    #[test]
    fn limits_are_enforced_before_allocating() {
        let lim = DecodeLimits {
            max_bulk_len: 10,
            max_elements: 4,
            max_depth: 3,
        };
        protocol_error(b"$11\r\n", &lim);
        protocol_error(b"*5\r\n", &lim);
        protocol_error(b"%5\r\n", &lim);
        // A huge count with almost no bytes behind it: refused at once, no allocation.
        protocol_error(b"*9223372036854775807\r\n", &limits());
        protocol_error(b"*4\r\n*4\r\n*4\r\n*4\r\n", &lim);
        assert_eq!(
            decode_slice(b"*1\r\n*1\r\n*1\r\n:1\r\n", &lim).unwrap(),
            Decoded::Complete(
                Value::Array(vec![Value::Array(vec![Value::Array(vec![Value::Int(1)])])]),
                16
            )
        );
        // Deep nesting far beyond the default cap never touches the thread's stack.
        let deep = "*1\r\n".repeat(100_000);
        protocol_error(deep.as_bytes(), &limits());
        // Even when the caller lifts the cap: the ceiling still holds, and a reply at the
        // ceiling builds (and drops) without exhausting the stack.
        let unbounded = DecodeLimits {
            max_depth: usize::MAX,
            ..limits()
        };
        protocol_error(deep.as_bytes(), &unbounded);
        let mut at_ceiling = "*1\r\n".repeat(MAX_DEPTH_CEILING - 1);
        at_ceiling.push_str(":1\r\n");
        assert!(matches!(
            decode_slice(at_ceiling.as_bytes(), &unbounded).unwrap(),
            Decoded::Complete(_, n) if n == at_ceiling.len()
        ));
    }

    #[test]
    fn endless_line_is_refused() {
        let mut wire = b"+".to_vec();
        wire.extend(std::iter::repeat_n(b'a', MAX_LINE_LEN + 1));
        protocol_error(&wire, &limits());
        // Just under the cap, it is merely incomplete.
        assert_eq!(
            decode_slice(&wire[..MAX_LINE_LEN], &limits()).unwrap(),
            Decoded::Incomplete
        );
    }

    /// A test-only serializer, to round-trip generated values.
    fn encode(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Nil => out.extend_from_slice(b"_\r\n"),
            Value::SimpleString(s) => {
                out.push(b'+');
                out.extend_from_slice(s);
                out.extend_from_slice(b"\r\n");
            }
            Value::Error(s) => {
                out.extend_from_slice(format!("!{}\r\n", s.len()).as_bytes());
                out.extend_from_slice(s);
                out.extend_from_slice(b"\r\n");
            }
            Value::Int(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
            Value::Bulk(s) => {
                out.extend_from_slice(format!("${}\r\n", s.len()).as_bytes());
                out.extend_from_slice(s);
                out.extend_from_slice(b"\r\n");
            }
            Value::Array(items) | Value::Set(items) | Value::Push(items) => {
                let t = match v {
                    Value::Array(_) => '*',
                    Value::Set(_) => '~',
                    _ => '>',
                };
                out.extend_from_slice(format!("{t}{}\r\n", items.len()).as_bytes());
                items.iter().for_each(|i| encode(i, out));
            }
            Value::Map(pairs) => {
                out.extend_from_slice(format!("%{}\r\n", pairs.len()).as_bytes());
                for (k, v) in pairs {
                    encode(k, out);
                    encode(v, out);
                }
            }
            Value::Double(d) => out.extend_from_slice(format!(",{d:e}\r\n").as_bytes()),
            Value::Boolean(t) => out.extend_from_slice(if *t { b"#t\r\n" } else { b"#f\r\n" }),
            Value::BigNumber(s) => {
                out.push(b'(');
                out.extend_from_slice(s);
                out.extend_from_slice(b"\r\n");
            }
            Value::Verbatim { format, text } => {
                out.extend_from_slice(format!("={}\r\n", text.len() + 4).as_bytes());
                out.extend_from_slice(format);
                out.push(b':');
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Value::Attribute { attrs, value } => {
                out.extend_from_slice(format!("|{}\r\n", attrs.len()).as_bytes());
                for (k, v) in attrs {
                    encode(k, out);
                    encode(v, out);
                }
                encode(value, out);
            }
        }
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from);
        let line = "[a-zA-Z0-9 ]{0,20}".prop_map(|s| Bytes::from(s.into_bytes()));
        let leaf = prop_oneof![
            Just(Value::Nil),
            line.clone().prop_map(Value::SimpleString),
            bytes.clone().prop_map(Value::Error),
            any::<i64>().prop_map(Value::Int),
            bytes.clone().prop_map(Value::Bulk),
            (-1e300f64..1e300).prop_map(Value::Double),
            any::<bool>().prop_map(Value::Boolean),
            "-?[0-9]{1,60}".prop_map(|s| Value::BigNumber(Bytes::from(s.into_bytes()))),
            bytes.prop_map(|text| Value::Verbatim {
                format: *b"txt",
                text
            }),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Set),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Push),
                proptest::collection::vec((inner.clone(), inner.clone()), 0..4)
                    .prop_map(Value::Map),
                (
                    proptest::collection::vec((inner.clone(), inner.clone()), 1..3),
                    inner
                )
                    .prop_map(|(attrs, v)| Value::Attribute {
                        attrs,
                        value: Box::new(v)
                    }),
            ]
        })
    }

    /// Replies that start like the ones `decode` reads in one pass, with whatever
    /// follows: bodies of any length, bad lengths, missing or broken CRLFs, huge numbers.
    fn scalar_like() -> impl Strategy<Value = Vec<u8>> {
        let head = prop_oneof![
            Just(b"$".to_vec()),
            Just(b"+".to_vec()),
            Just(b"-".to_vec()),
            Just(b":".to_vec()),
            Just(b"+OK".to_vec()),
            Just(b"$-1".to_vec()),
            Just(b"$-2".to_vec()),
            Just(b":-".to_vec()),
        ];
        let number = prop_oneof![
            "[0-9]{0,3}",
            "[0-9]{18,21}",
            Just(String::new()),
            Just("-1".to_string())
        ];
        let tail = proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'x'), any::<u8>()],
            0..24,
        );
        (head, number, any::<bool>(), tail).prop_map(|(mut wire, n, crlf, tail)| {
            wire.extend_from_slice(n.as_bytes());
            if crlf {
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend(tail);
            wire
        })
    }

    proptest! {
        #[test]
        fn one_pass_scalars_decode_as_the_general_path_does(wire in scalar_like()) {
            let small = DecodeLimits { max_bulk_len: 8, ..limits() };
            for lim in [limits(), small] {
                let mut buf = BytesMut::from(&wire[..]);
                let fast = decode(&mut buf, &lim);
                match (decode_slice(&wire, &lim), fast) {
                    (Ok(Decoded::Complete(want, n)), Ok(Some(got))) => {
                        prop_assert_eq!(got, want);
                        prop_assert_eq!(buf.len(), wire.len() - n, "bytes taken");
                    }
                    (Ok(Decoded::Incomplete), Ok(None)) => {
                        prop_assert_eq!(buf.len(), wire.len(), "untouched")
                    }
                    (Err(want), Err(got)) => {
                        prop_assert_eq!(got.detail(), want.detail());
                        prop_assert_eq!(buf.len(), wire.len(), "untouched");
                    }
                    other => prop_assert!(false, "disagreement: {:?}", other),
                }
            }
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let small = DecodeLimits { max_bulk_len: 64, max_elements: 8, max_depth: 4 };
            for lim in [limits(), small] {
                let slice = decode_slice(&data, &lim);
                let len = frame_len(&data, &lim);
                let mut buf = BytesMut::from(&data[..]);
                let zero_copy = decode(&mut buf, &lim);
                // The three entry points agree.
                match (&slice, &len, &zero_copy) {
                    (Ok(Decoded::Complete(v, n)), Ok(Some(m)), Ok(Some(w))) => {
                        prop_assert_eq!(n, m);
                        prop_assert_eq!(format!("{v:?}"), format!("{w:?}"));
                    }
                    (Ok(Decoded::Incomplete), Ok(None), Ok(None)) => {}
                    (Err(_), Err(_), Err(_)) => {}
                    other => prop_assert!(false, "disagreement: {:?}", other),
                }
            }
        }

        #[test]
        fn generated_values_round_trip_at_every_split(v in arb_value()) {
            let mut wire = Vec::new();
            encode(&v, &mut wire);
            let want = format!("{v:?}");
            match decode_slice(&wire, &limits()).unwrap() {
                Decoded::Complete(got, n) => {
                    prop_assert_eq!(n, wire.len());
                    prop_assert_eq!(format!("{got:?}"), want.clone());
                }
                Decoded::Incomplete => prop_assert!(false, "incomplete"),
            }
            for cut in 0..wire.len() {
                let mut buf = BytesMut::from(&wire[..cut]);
                prop_assert!(decode(&mut buf, &limits()).unwrap().is_none());
                buf.extend_from_slice(&wire[cut..]);
                let got = decode(&mut buf, &limits()).unwrap().unwrap();
                prop_assert_eq!(format!("{got:?}"), want.clone());
            }
        }
    }
}
