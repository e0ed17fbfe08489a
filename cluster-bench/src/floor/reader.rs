//! One node's replies as they are read: the buffer its reads go into, the replies still
//! owed, and the incomplete reply kept at the front for the next read to finish.
//!
//! Pure: the ring hands it the bytes each read brought, and it answers whether the node
//! has answered everything.

use super::frames::{count_frames, FrameKind};

/// What one read brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Every reply owed is in.
    Done,
    /// More replies are owed: read again into [`ReplyReader::spare`].
    More,
}

/// A node's read buffer and what it still owes.
#[derive(Debug)]
pub struct ReplyReader {
    /// All of it initialised (`len` is its size): reads go into `buf[filled..]`.
    buf: Vec<u8>,
    /// Bytes at the front that start a reply not complete yet.
    filled: usize,
    /// Replies still owed in the pipeline under way.
    owed: usize,
    /// Error replies seen in the pipeline under way.
    errors: usize,
}

impl ReplyReader {
    /// A reader whose buffer starts at `size` bytes (it doubles when a reply needs more).
    pub fn new(size: usize) -> ReplyReader {
        ReplyReader {
            buf: vec![0; size.max(1)],
            filled: 0,
            owed: 0,
            errors: 0,
        }
    }

    /// Starts a pipeline that asks for `replies`.
    pub fn expect(&mut self, replies: usize) {
        debug_assert_eq!(self.filled, 0, "bytes left from the last pipeline");
        self.owed = replies;
        self.errors = 0;
    }

    /// Error replies seen in this pipeline.
    pub fn errors(&self) -> usize {
        self.errors
    }

    /// Where the next read goes: the buffer after the bytes it holds (never empty).
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    /// Takes the `n` bytes a read wrote at the start of [`ReplyReader::spare`], counts
    /// the replies they complete (telling `seen` each one's kind), and keeps the start
    /// of an incomplete one at the front. More replies than owed, or bytes after the
    /// last one owed, are errors.
    pub fn advance(&mut self, n: usize, seen: impl FnMut(FrameKind)) -> Result<Progress, String> {
        // A read never reports more than it was offered; refuse rather than trust.
        if n > self.buf.len() - self.filled {
            return Err(format!(
                "a read of {n} bytes into {} of room",
                self.buf.len() - self.filled
            ));
        }
        self.filled += n;
        let counted = count_frames(&self.buf[..self.filled], seen).map_err(|e| e.to_string())?;
        if counted.frames > self.owed {
            return Err(format!(
                "{} replies where {} were owed",
                counted.frames, self.owed
            ));
        }
        self.owed -= counted.frames;
        self.errors += counted.errors;
        let tail = self.filled - counted.consumed;
        if self.owed == 0 {
            if tail > 0 {
                return Err(format!("{tail} bytes after the last reply"));
            }
            self.filled = 0;
            return Ok(Progress::Done);
        }
        if counted.consumed > 0 {
            self.buf.copy_within(counted.consumed..self.filled, 0);
            self.filled = tail;
        }
        if self.filled == self.buf.len() {
            // One reply fills the buffer: make room for the rest of it.
            let size = self.buf.len() * 2;
            self.buf.resize(size, 0);
        }
        Ok(Progress::More)
    }

    /// Gives up the buffers without freeing them (the kernel may still write there).
    pub fn leak(&mut self) {
        std::mem::forget(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node's replies to `GET, SET, GET, SET`: two values, two `+OK`.
    const REPLIES: &[u8] = b"$16\r\n0123456789abcdef\r\n+OK\r\n$3\r\nabc\r\n+OK\r\n";

    /// Feeds `reads` (chunks of the stream) to a reader, as the ring does.
    fn feed(
        reader: &mut ReplyReader,
        reads: &[&[u8]],
    ) -> Result<(Vec<Progress>, Vec<FrameKind>), String> {
        let (mut progress, mut kinds) = (Vec::new(), Vec::new());
        for chunk in reads {
            let mut rest = *chunk;
            // A chunk larger than the room is read in several reads.
            while !rest.is_empty() {
                let spare = reader.spare();
                let n = spare.len().min(rest.len());
                spare[..n].copy_from_slice(&rest[..n]);
                rest = &rest[n..];
                progress.push(reader.advance(n, |k| kinds.push(k))?);
            }
        }
        Ok((progress, kinds))
    }

    #[test]
    fn replies_split_at_every_offset_are_all_counted_once() {
        use FrameKind::{Bulk, Simple};
        for size in [4, 64] {
            for cut in 1..REPLIES.len() {
                let mut reader = ReplyReader::new(size);
                reader.expect(4);
                let (progress, kinds) = feed(&mut reader, &[&REPLIES[..cut], &REPLIES[cut..]])
                    .unwrap_or_else(|e| panic!("size {size} cut {cut}: {e}"));
                assert_eq!(kinds, [Bulk, Simple, Bulk, Simple], "size {size} cut {cut}");
                assert_eq!(
                    progress.last(),
                    Some(&Progress::Done),
                    "size {size} cut {cut}"
                );
                assert_eq!(
                    progress.iter().filter(|p| **p == Progress::Done).count(),
                    1,
                    "size {size} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn one_byte_reads_and_the_next_pipeline_start_clean() {
        let mut reader = ReplyReader::new(2);
        for _ in 0..2 {
            reader.expect(4);
            let bytes: Vec<&[u8]> = REPLIES.chunks(1).collect();
            let (progress, kinds) = feed(&mut reader, &bytes).unwrap();
            assert_eq!(kinds.len(), 4);
            assert_eq!(progress.last(), Some(&Progress::Done));
            assert_eq!(reader.errors(), 0);
        }
    }

    #[test]
    fn error_replies_are_counted_and_extra_replies_or_bytes_refused() {
        let mut reader = ReplyReader::new(64);
        reader.expect(2);
        let (progress, _) = feed(&mut reader, &[b"-MOVED 1 127.0.0.1:1\r\n+OK\r\n"]).unwrap();
        assert_eq!((progress, reader.errors()), (vec![Progress::Done], 1));

        let mut reader = ReplyReader::new(64);
        reader.expect(1);
        assert!(feed(&mut reader, &[b"+OK\r\n+OK\r\n"]).is_err());

        let mut reader = ReplyReader::new(64);
        reader.expect(1);
        assert!(feed(&mut reader, &[b"+OK\r\n+O"]).is_err());
    }
}
