//! Converting replies into Rust types: [`FromReply`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::Hash;

use bytes::Bytes;

use crate::core::error::{Error, ErrorKind, Result};
use crate::core::resp::Value;

/// A type a reply can be converted into.
///
/// Error replies become `Err` of kind [`ErrorKind::ServerError`] whatever the target type;
/// `Value` itself accepts everything else unchanged.
///
/// ```
/// use bytes::Bytes;
/// use redis_cluster_uring::{FromReply, Value};
/// assert_eq!(i64::from_reply(Value::Int(7)).unwrap(), 7);
/// assert_eq!(i64::from_reply(Value::Bulk(Bytes::from_static(b"42"))).unwrap(), 42);
/// assert_eq!(Option::<String>::from_reply(Value::Nil).unwrap(), None);
/// assert!(String::from_reply(Value::Error(Bytes::from_static(b"ERR no"))).is_err());
/// ```
pub trait FromReply: Sized {
    /// Converts one reply.
    fn from_reply(value: Value) -> Result<Self>;
}

/// The error of an error reply.
pub(crate) fn server_error(line: &[u8]) -> Error {
    // A redirect that reaches the caller (no redirect is followed on a named node) keeps
    // its slot and target, so the caller can act on it without parsing text.
    match crate::core::redirect::parse_redirect(line) {
        Some(crate::core::redirect::Redirect::Moved { slot, addr }) => {
            return Error::redirect(ErrorKind::Moved, slot, addr.to_string())
        }
        Some(crate::core::redirect::Redirect::Ask { slot, addr }) => {
            return Error::redirect(ErrorKind::Ask, slot, addr.to_string())
        }
        None => {}
    }
    let text = String::from_utf8_lossy(line);
    let kind = match text.split(' ').next() {
        Some("CLUSTERDOWN") => ErrorKind::ClusterDown,
        Some("CROSSSLOT") => ErrorKind::CrossSlot,
        _ => ErrorKind::ServerError,
    };
    Error::new(kind, text)
}

fn mismatch(want: &str, got: &Value) -> Error {
    Error::new(
        ErrorKind::TypeMismatch,
        format!("expected {want}, got {}", value_kind(got)),
    )
}

/// The RESP type of a value, for messages.
pub(crate) fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::SimpleString(_) => "simple string",
        Value::Error(_) => "error",
        Value::Int(_) => "integer",
        Value::Bulk(_) => "bulk string",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Set(_) => "set",
        Value::Double(_) => "double",
        Value::Boolean(_) => "boolean",
        Value::BigNumber(_) => "big number",
        Value::Verbatim { .. } => "verbatim string",
        Value::Push(_) => "push",
        Value::Attribute { .. } => "attribute",
    }
}

/// Strips attributes and turns error replies into `Err`.
fn plain(value: Value) -> Result<Value> {
    match value.into_unattributed() {
        Value::Error(line) => Err(server_error(&line)),
        v => Ok(v),
    }
}

impl FromReply for Value {
    fn from_reply(value: Value) -> Result<Self> {
        plain(value)
    }
}

impl FromReply for () {
    fn from_reply(value: Value) -> Result<Self> {
        plain(value).map(|_| ())
    }
}

impl FromReply for Bytes {
    fn from_reply(value: Value) -> Result<Self> {
        match plain(value)? {
            Value::Bulk(b) | Value::SimpleString(b) | Value::BigNumber(b) => Ok(b),
            Value::Verbatim { text, .. } => Ok(text),
            Value::Int(i) => Ok(Bytes::from(i.to_string())),
            Value::Double(d) => Ok(Bytes::from(d.to_string())),
            v => Err(mismatch("a string", &v)),
        }
    }
}

/// Bytes (not a list of integers: `u8` deliberately has no `FromReply`, so `Vec<u8>` can
/// mean the raw string).
impl FromReply for Vec<u8> {
    fn from_reply(value: Value) -> Result<Self> {
        Bytes::from_reply(value).map(Vec::from)
    }
}

impl FromReply for String {
    fn from_reply(value: Value) -> Result<Self> {
        let bytes = Bytes::from_reply(value)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::new(ErrorKind::TypeMismatch, "expected UTF-8 text"))
    }
}

macro_rules! int_reply {
    ($($t:ty),*) => {$(
        impl FromReply for $t {
            fn from_reply(value: Value) -> Result<Self> {
                let v = plain(value)?;
                let n: Option<$t> = match &v {
                    Value::Int(i) => <$t>::try_from(*i).ok(),
                    Value::Bulk(b) | Value::SimpleString(b) | Value::BigNumber(b) => {
                        std::str::from_utf8(b).ok().and_then(|s| s.parse().ok())
                    }
                    Value::Boolean(b) => Some(<$t>::from(*b)),
                    _ => None,
                };
                n.ok_or_else(|| mismatch(stringify!($t), &v))
            }
        }
    )*};
}
int_reply!(i8, i16, i32, i64, i128, isize, u16, u32, u64, u128, usize);

impl FromReply for f64 {
    fn from_reply(value: Value) -> Result<Self> {
        let v = plain(value)?;
        let n = match &v {
            Value::Double(d) => Some(*d),
            Value::Int(i) => Some(*i as f64),
            Value::Bulk(b) | Value::SimpleString(b) => {
                std::str::from_utf8(b).ok().and_then(|s| s.parse().ok())
            }
            _ => None,
        };
        n.ok_or_else(|| mismatch("a number", &v))
    }
}

impl FromReply for bool {
    fn from_reply(value: Value) -> Result<Self> {
        let v = plain(value)?;
        match &v {
            Value::Boolean(b) => Ok(*b),
            Value::Int(i) => Ok(*i != 0),
            Value::SimpleString(s) if &s[..] == b"OK" => Ok(true),
            Value::Nil => Ok(false),
            _ => Err(mismatch("a boolean", &v)),
        }
    }
}

impl<T: FromReply> FromReply for Option<T> {
    fn from_reply(value: Value) -> Result<Self> {
        match plain(value)? {
            Value::Nil => Ok(None),
            v => T::from_reply(v).map(Some),
        }
    }
}

impl<T: FromReply> FromReply for Vec<T> {
    fn from_reply(value: Value) -> Result<Self> {
        match plain(value)? {
            Value::Array(items) | Value::Set(items) | Value::Push(items) => {
                items.into_iter().map(T::from_reply).collect()
            }
            Value::Nil => Ok(Vec::new()),
            v => Err(mismatch("an array", &v)),
        }
    }
}

/// The key/value pairs of a RESP3 map, or of the flat `[k, v, k, v]` array RESP2 sends
/// for the same replies (`HGETALL`, `CONFIG GET`, `XINFO`), so one type works on both.
fn pairs<K: FromReply, V: FromReply>(value: Value) -> Result<Vec<(K, V)>> {
    match plain(value)? {
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Ok((K::from_reply(k)?, V::from_reply(v)?)))
            .collect(),
        Value::Array(items) if items.len() % 2 == 0 => {
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((K::from_reply(k)?, V::from_reply(v)?));
            }
            Ok(out)
        }
        Value::Nil => Ok(Vec::new()),
        v => Err(mismatch("a map", &v)),
    }
}

/// The members of an array or a RESP3 set.
fn members<T: FromReply>(value: Value) -> Result<Vec<T>> {
    match plain(value)? {
        Value::Array(items) | Value::Set(items) => items.into_iter().map(T::from_reply).collect(),
        Value::Nil => Ok(Vec::new()),
        v => Err(mismatch("a set or an array", &v)),
    }
}

impl<K: FromReply + Eq + Hash, V: FromReply> FromReply for HashMap<K, V> {
    fn from_reply(value: Value) -> Result<Self> {
        pairs(value).map(|p| p.into_iter().collect())
    }
}

impl<K: FromReply + Ord, V: FromReply> FromReply for BTreeMap<K, V> {
    fn from_reply(value: Value) -> Result<Self> {
        pairs(value).map(|p| p.into_iter().collect())
    }
}

impl<T: FromReply + Eq + Hash> FromReply for HashSet<T> {
    fn from_reply(value: Value) -> Result<Self> {
        members(value).map(|m| m.into_iter().collect())
    }
}

impl<T: FromReply + Ord> FromReply for BTreeSet<T> {
    fn from_reply(value: Value) -> Result<Self> {
        members(value).map(|m| m.into_iter().collect())
    }
}

/// Tuples from arrays of exactly that length (`BLPOP` gives `(key, value)`, `ZPOPMIN`
/// gives `(member, score)`), and from a one-pair map.
macro_rules! tuple_reply {
    ($n:expr; $($t:ident),+) => {
        impl<$($t: FromReply),+> FromReply for ($($t,)+) {
            fn from_reply(value: Value) -> Result<Self> {
                let items = match plain(value)? {
                    Value::Array(items) | Value::Set(items) if items.len() == $n => items,
                    Value::Map(mut pairs) if $n == 2 && pairs.len() == 1 => {
                        let (k, v) = pairs.remove(0);
                        vec![k, v]
                    }
                    v => return Err(mismatch(concat!("an array of ", stringify!($n)), &v)),
                };
                let mut it = items.into_iter();
                Ok(($(
                    $t::from_reply(it.next().ok_or_else(|| Error::protocol("short tuple"))?)?,
                )+))
            }
        }
    };
}
tuple_reply!(1; A);
tuple_reply!(2; A, B);
tuple_reply!(3; A, B, C);
tuple_reply!(4; A, B, C, D);
tuple_reply!(5; A, B, C, D, E);
tuple_reply!(6; A, B, C, D, E, F);
tuple_reply!(7; A, B, C, D, E, F, G);
tuple_reply!(8; A, B, C, D, E, F, G, H);

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &'static str) -> Value {
        Value::Bulk(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn scalars() {
        assert_eq!(String::from_reply(bulk("hi")).unwrap(), "hi");
        assert_eq!(u16::from_reply(Value::Int(65535)).unwrap(), 65535);
        assert_eq!(
            u16::from_reply(Value::Int(65536)).unwrap_err().kind(),
            ErrorKind::TypeMismatch
        );
        assert_eq!(Vec::<u8>::from_reply(bulk("raw")).unwrap(), b"raw");
        assert_eq!(f64::from_reply(bulk("1.5")).unwrap(), 1.5);
        assert!(bool::from_reply(Value::Int(1)).unwrap());
        assert_eq!(Option::<i64>::from_reply(Value::Nil).unwrap(), None);
    }

    #[test]
    fn errors_become_err_of_the_right_kind() {
        let e =
            i64::from_reply(Value::Error(Bytes::from_static(b"WRONGTYPE Operation"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ServerError);
        assert_eq!(e.code(), Some("WRONGTYPE"));
        let e = Value::from_reply(Value::Error(Bytes::from_static(
            b"CLUSTERDOWN Hash slot not served",
        )))
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ClusterDown);
    }

    #[test]
    fn collections() {
        let v = Value::Array(vec![bulk("a"), bulk("1"), bulk("b"), bulk("2")]);
        let m: HashMap<String, i64> = HashMap::from_reply(v.clone()).unwrap();
        assert_eq!(m["b"], 2);
        let l: Vec<String> = Vec::from_reply(v).unwrap();
        assert_eq!(l.len(), 4);
        let m: HashMap<String, i64> =
            HashMap::from_reply(Value::Map(vec![(bulk("x"), Value::Int(3))])).unwrap();
        assert_eq!(m["x"], 3);
    }

    #[test]
    fn resp3_types_convert_like_their_resp2_forms() {
        let map = Value::Map(vec![(bulk("a"), Value::Int(1)), (bulk("b"), Value::Int(2))]);
        let flat = Value::Array(vec![bulk("a"), Value::Int(1), bulk("b"), Value::Int(2)]);
        for v in [map.clone(), flat] {
            let h: HashMap<String, i64> = FromReply::from_reply(v.clone()).unwrap();
            let b: BTreeMap<String, i64> = FromReply::from_reply(v).unwrap();
            assert_eq!(h.len(), 2);
            assert_eq!(
                b.into_iter().collect::<Vec<_>>(),
                vec![("a".into(), 1), ("b".into(), 2)]
            );
        }
        let set = Value::Set(vec![bulk("x"), bulk("y"), bulk("x")]);
        let hs: HashSet<String> = FromReply::from_reply(set.clone()).unwrap();
        let bs: BTreeSet<String> = FromReply::from_reply(set).unwrap();
        assert_eq!(hs.len(), 2);
        assert_eq!(bs.into_iter().next().as_deref(), Some("x"));
        assert_eq!(f64::from_reply(Value::Double(2.5)).unwrap(), 2.5);
        assert!(f64::from_reply(Value::Double(f64::INFINITY))
            .unwrap()
            .is_infinite());
        assert!(bool::from_reply(Value::Boolean(true)).unwrap());
        assert_eq!(
            String::from_reply(Value::Verbatim {
                format: *b"txt",
                text: Bytes::from_static(b"hi")
            })
            .unwrap(),
            "hi"
        );
        assert_eq!(
            i128::from_reply(Value::BigNumber(Bytes::from_static(
                b"-170141183460469231731687303715884105728"
            )))
            .unwrap(),
            i128::MIN
        );
        let pair: (String, f64) =
            FromReply::from_reply(Value::Array(vec![bulk("m"), Value::Double(1.5)])).unwrap();
        assert_eq!(pair, ("m".to_string(), 1.5));
        let from_map: (String, i64) =
            FromReply::from_reply(Value::Map(vec![(bulk("k"), Value::Int(3))])).unwrap();
        assert_eq!(from_map, ("k".to_string(), 3));
        let triple: (i64, i64, String) =
            FromReply::from_reply(Value::Array(vec![Value::Int(1), Value::Int(2), bulk("z")]))
                .unwrap();
        assert_eq!(triple.2, "z");
        // Wrong shapes are typed errors, not panics.
        for bad in [Value::Array(vec![bulk("only")]), Value::Int(3), map] {
            let e = <(String, String)>::from_reply(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TypeMismatch);
        }
        let e = <HashMap<String, String>>::from_reply(Value::Array(vec![bulk("odd")])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TypeMismatch);
        // A nil reply is an empty collection.
        assert!(<HashSet<String>>::from_reply(Value::Nil)
            .unwrap()
            .is_empty());
    }
}
