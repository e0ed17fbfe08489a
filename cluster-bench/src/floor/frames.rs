//! Counting complete RESP replies in a buffer, without decoding them.
//!
//! The floor must know when a node has answered every command of its batch, and nothing
//! more: so this looks at each top-level frame only long enough to find where it ends
//! (a type byte, a line, and for a bulk string its length and payload), allocates
//! nothing, and leaves an incomplete frame at the end of the buffer for the next read
//! to finish. The types are those GET and SET are answered with: simple strings
//! (`+OK`), errors (`-MOVED ...`), integers, bulk strings, and nil (`$-1` in RESP2,
//! `_` in RESP3). Anything else is a [`FrameError`], never a guess.

use std::fmt;

/// What a complete top-level frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// `+...`: a simple string, as SET's `+OK`.
    Simple,
    /// `-...`: an error reply (a redirect, a wrong type, an OOM refusal...).
    Error,
    /// `:...`: an integer.
    Integer,
    /// `$n` and n bytes: a bulk string, as GET's value.
    Bulk,
    /// `$-1` or `_`: no value (GET of a missing key).
    Nil,
}

/// Bytes that are not a frame this counter knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A type byte other than `+ - : $ _`.
    UnexpectedType(u8),
    /// A line ended in `\r` not followed by `\n`, or a bulk payload not followed by
    /// `\r\n`.
    BadTerminator,
    /// A bulk length that is not a decimal number, or is absurd.
    BadLength,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::UnexpectedType(b) => write!(f, "unexpected RESP type byte {b:#04x}"),
            FrameError::BadTerminator => f.write_str("a RESP line or payload lacks its CRLF"),
            FrameError::BadLength => f.write_str("a RESP bulk length is not a sane number"),
        }
    }
}

/// The complete frames at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counted {
    /// Complete top-level frames.
    pub frames: usize,
    /// How many of them are error replies.
    pub errors: usize,
    /// Bytes they take; what follows is the start of an incomplete frame (or nothing).
    pub consumed: usize,
}

/// Longest length line accepted: `$` and a 64-bit number with a sign fit easily.
const MAX_LENGTH_DIGITS: usize = 20;

/// The position of the `\r\n` ending the line that starts at `from`: `Ok(None)` if the
/// line is not all buffered yet.
fn line_end(buf: &[u8], from: usize) -> Result<Option<usize>, FrameError> {
    let Some(cr) = buf[from..].iter().position(|&b| b == b'\r') else {
        return Ok(None);
    };
    let cr = from + cr;
    match buf.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(cr)),
        Some(_) => Err(FrameError::BadTerminator),
    }
}

/// The one complete frame at the front of `buf`, its kind and length; `Ok(None)` when
/// `buf` holds only part of one (or nothing).
pub fn next_frame(buf: &[u8]) -> Result<Option<(FrameKind, usize)>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let kind = match first {
        b'+' => FrameKind::Simple,
        b'-' => FrameKind::Error,
        b':' => FrameKind::Integer,
        b'_' => FrameKind::Nil,
        b'$' => FrameKind::Bulk,
        other => return Err(FrameError::UnexpectedType(other)),
    };
    let Some(cr) = line_end(buf, 1)? else {
        // A bulk's length line that runs on without its CRLF is garbage, not a wait.
        if kind == FrameKind::Bulk && buf.len() > 1 + MAX_LENGTH_DIGITS + 1 {
            return Err(FrameError::BadLength);
        }
        return Ok(None);
    };
    let line = cr + 2;
    match kind {
        FrameKind::Nil if cr != 1 => Err(FrameError::BadTerminator),
        FrameKind::Bulk => {
            let digits = &buf[1..cr];
            if digits == b"-1" {
                return Ok(Some((FrameKind::Nil, line)));
            }
            let len = parse_length(digits)?;
            // The payload and its CRLF.
            let end = line
                .checked_add(len)
                .and_then(|n| n.checked_add(2))
                .ok_or(FrameError::BadLength)?;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(FrameError::BadTerminator);
            }
            Ok(Some((FrameKind::Bulk, end)))
        }
        _ => Ok(Some((kind, line))),
    }
}

/// A bulk string's length: decimal digits only, at most [`MAX_LENGTH_DIGITS`].
fn parse_length(digits: &[u8]) -> Result<usize, FrameError> {
    if digits.is_empty() || digits.len() > MAX_LENGTH_DIGITS {
        return Err(FrameError::BadLength);
    }
    digits.iter().try_fold(0usize, |n, &d| {
        if !d.is_ascii_digit() {
            return Err(FrameError::BadLength);
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(d - b'0')))
            .ok_or(FrameError::BadLength)
    })
}

/// Counts the complete frames at the front of `buf`, telling `seen` the kind of each in
/// order (the measured loop passes a closure that does nothing; setup records them).
pub fn count_frames(buf: &[u8], mut seen: impl FnMut(FrameKind)) -> Result<Counted, FrameError> {
    let mut counted = Counted::default();
    while let Some((kind, len)) = next_frame(&buf[counted.consumed..])? {
        counted.frames += 1;
        counted.errors += usize::from(kind == FrameKind::Error);
        counted.consumed += len;
        seen(kind);
    }
    Ok(counted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reply the counter knows, with its kind.
    const REPLIES: [(&[u8], FrameKind); 9] = [
        (b"+OK\r\n", FrameKind::Simple),
        (b"-MOVED 3999 127.0.0.1:6381\r\n", FrameKind::Error),
        (b":1000\r\n", FrameKind::Integer),
        (b":-3\r\n", FrameKind::Integer),
        (b"$16\r\n0123456789abcdef\r\n", FrameKind::Bulk),
        (b"$0\r\n\r\n", FrameKind::Bulk),
        // A payload holding CR and LF: the length, not a line scan, ends it.
        (b"$4\r\n\r\n\r\n\r\n", FrameKind::Bulk),
        (b"$-1\r\n", FrameKind::Nil),
        (b"_\r\n", FrameKind::Nil),
    ];

    #[test]
    fn each_reply_alone_is_one_frame_of_its_kind() {
        for (reply, kind) in REPLIES {
            assert_eq!(
                next_frame(reply),
                Ok(Some((kind, reply.len()))),
                "{reply:?}"
            );
        }
    }

    #[test]
    fn every_proper_prefix_of_a_reply_is_incomplete() {
        for (reply, _) in REPLIES {
            for cut in 0..reply.len() {
                assert_eq!(
                    next_frame(&reply[..cut]),
                    Ok(None),
                    "{reply:?} cut at {cut}"
                );
            }
        }
    }

    /// All the replies back to back, split into two reads at every byte offset: the
    /// first read counts what it completes and keeps the rest, as the floor's loop does,
    /// and the two counts always add up to every reply, with kinds in order.
    #[test]
    fn a_stream_split_at_every_offset_counts_every_reply_once() {
        let stream: Vec<u8> = REPLIES
            .iter()
            .flat_map(|(r, _)| r.iter().copied())
            .collect();
        let kinds: Vec<FrameKind> = REPLIES.iter().map(|(_, k)| *k).collect();
        for cut in 0..=stream.len() {
            let mut seen = Vec::new();
            let first = count_frames(&stream[..cut], |k| seen.push(k)).unwrap();
            // The kept tail is the start of the next read's buffer.
            let mut rest = stream[first.consumed..cut].to_vec();
            rest.extend_from_slice(&stream[cut..]);
            let second = count_frames(&rest, |k| seen.push(k)).unwrap();
            assert_eq!(first.frames + second.frames, REPLIES.len(), "cut at {cut}");
            assert_eq!(first.errors + second.errors, 1, "cut at {cut}");
            assert_eq!(second.consumed, rest.len(), "cut at {cut}");
            assert_eq!(seen, kinds, "cut at {cut}");
        }
    }

    /// One byte per read, the worst a socket can do.
    #[test]
    fn a_stream_read_one_byte_at_a_time_counts_every_reply() {
        let stream: Vec<u8> = REPLIES
            .iter()
            .flat_map(|(r, _)| r.iter().copied())
            .collect();
        let (mut buf, mut frames) = (Vec::new(), 0);
        for &b in &stream {
            buf.push(b);
            let counted = count_frames(&buf, |_| {}).unwrap();
            frames += counted.frames;
            buf.drain(..counted.consumed);
        }
        assert_eq!(frames, REPLIES.len());
        assert!(buf.is_empty());
    }

    #[test]
    fn unknown_or_malformed_frames_are_errors_not_waits() {
        for (bad, want) in [
            (&b"*1\r\n$1\r\na\r\n"[..], FrameError::UnexpectedType(b'*')),
            (b"OK\r\n", FrameError::UnexpectedType(b'O')),
            (b"+OK\rX", FrameError::BadTerminator),
            (b"$3\r\nabcXY", FrameError::BadTerminator),
            (b"$x\r\n", FrameError::BadLength),
            (b"$\r\n", FrameError::BadLength),
            (b"$-2\r\n", FrameError::BadLength),
            (b"$99999999999999999999999\r\n", FrameError::BadLength),
            (b"$1234567890123456789012345", FrameError::BadLength),
            (b"_x\r\n", FrameError::BadTerminator),
        ] {
            assert_eq!(next_frame(bad), Err(want), "{bad:?}");
        }
    }

    #[test]
    fn a_large_bulk_waits_and_an_overflowing_one_is_refused() {
        assert_eq!(next_frame(b"$1099511627776\r\nabc"), Ok(None));
        let line = format!("${}\r\n", usize::MAX - 3);
        assert_eq!(next_frame(line.as_bytes()), Err(FrameError::BadLength));
    }
}
