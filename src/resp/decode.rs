//! Incremental RESP2/RESP3 decoder. (STUB: being written.)

use bytes::BytesMut;

use crate::error::Result;
use crate::resp::Value;

/// Caps that keep a hostile or broken server from making the decoder allocate without
/// bound or recurse without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest bulk string / verbatim / blob error accepted, in bytes.
    pub max_bulk_len: usize,
    /// Largest element count of one aggregate (array, map pairs, set, push, attribute).
    pub max_elements: usize,
    /// Deepest nesting of aggregates.
    pub max_depth: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
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

/// Length of the first complete reply in `src`, `None` when more bytes are needed.
pub fn frame_len(src: &[u8], limits: &DecodeLimits) -> Result<Option<usize>> {
    let _ = (src, limits);
    todo!()
}

/// Decodes one reply from the front of `src`, copying strings out of it.
pub fn decode_slice(src: &[u8], limits: &DecodeLimits) -> Result<Decoded> {
    let _ = (src, limits);
    todo!()
}

/// Decodes one reply from the front of `src` and removes its bytes; strings in the reply
/// share `src`'s memory (zero-copy). `Ok(None)`: need more bytes, `src` untouched.
pub fn decode(src: &mut BytesMut, limits: &DecodeLimits) -> Result<Option<Value>> {
    let _ = (src, limits);
    todo!()
}
