//! The decoded form of one RESP2/RESP3 reply.

use bytes::Bytes;

/// One reply from a server, RESP2 or RESP3.
///
/// Strings are [`Bytes`] slices of the connection's read buffer: decoding a 1 MiB bulk
/// string does not copy it. Error replies are values, not `Err`: inside a pipeline a
/// server error belongs to that one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// RESP2 null bulk (`$-1`), null array (`*-1`), or RESP3 null (`_`).
    Nil,
    /// Simple string (`+OK`).
    SimpleString(Bytes),
    /// Simple error (`-ERR ...`) or RESP3 blob error (`!`): the whole error line.
    Error(Bytes),
    /// Integer (`:`).
    Int(i64),
    /// Bulk string (`$`).
    Bulk(Bytes),
    /// Array (`*`).
    Array(Vec<Value>),
    /// RESP3 map (`%`), in the order the server sent the pairs.
    Map(Vec<(Value, Value)>),
    /// RESP3 set (`~`).
    Set(Vec<Value>),
    /// RESP3 double (`,`), including `inf`, `-inf` and `nan`.
    Double(f64),
    /// RESP3 boolean (`#t` / `#f`).
    Boolean(bool),
    /// RESP3 big number (`(`), as its decimal digits (with an optional leading `-`).
    BigNumber(Bytes),
    /// RESP3 verbatim string (`=`): a three-byte format (`txt`, `mkd`) and the text.
    Verbatim {
        /// The format, such as `txt`.
        format: [u8; 3],
        /// The text after the `xxx:` prefix.
        text: Bytes,
    },
    /// RESP3 push (`>`): out-of-band data such as pub/sub messages or invalidations.
    Push(Vec<Value>),
    /// RESP3 attribute (`|`) followed by the value it annotates.
    Attribute {
        /// The attribute map.
        attrs: Vec<(Value, Value)>,
        /// The reply the attributes belong to.
        value: Box<Value>,
    },
}

impl Value {
    /// True for error replies.
    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    /// The error line of an error reply (`ERR unknown command ...`), if this is one.
    pub fn as_error(&self) -> Option<&[u8]> {
        match self {
            Value::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The string bytes of a bulk, simple or verbatim string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) | Value::SimpleString(b) => Some(b),
            Value::Verbatim { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Strips a RESP3 attribute wrapper, if any, returning the annotated value.
    pub fn into_unattributed(self) -> Value {
        match self {
            Value::Attribute { value, .. } => value.into_unattributed(),
            v => v,
        }
    }
}
