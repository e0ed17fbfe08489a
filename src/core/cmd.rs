//! Building commands: `cmd("SET").arg("key").arg(42)`.
//!
//! A [`Cmd`] keeps its arguments already framed as RESP bulk strings (`$<len>\r\n<bytes>\r\n`
//! each) in one buffer, plus the end offset of each: building one costs one allocation
//! for its bytes whatever its arity, encoding it is the array header and one copy of
//! that buffer (however many nodes, redirects or retries send it), and routing can look
//! at any argument without re-parsing.
//!
//! [`ToArg`] is one argument; [`ToArgs`] is one or several, so a helper that takes keys or
//! members accepts a single value, a slice, an array or a `Vec` alike.

use bytes::{BufMut, Bytes, BytesMut};

/// One command with its arguments, ready to be routed and encoded.
///
/// ```
/// use redis_cluster_uring::cmd;
/// let c = cmd("SET").arg("user:1").arg(42).arg(b"\x00binary".as_slice());
/// assert_eq!(c.name(), b"SET");
/// assert_eq!(c.arg_at(2), Some(b"42".as_slice()));
/// assert_eq!(c.len(), 4);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Cmd {
    /// Every argument as a RESP bulk string, back to back: the command's encoding but
    /// for its array header (`*<count>\r\n`), which [`Cmd::write_to`] puts first.
    data: Vec<u8>,
    ends: Ends,
}

/// Arguments kept inline in [`Ends`]: most commands have this many or fewer, so building
/// or cloning one allocates only its bytes.
const INLINE_ARGS: usize = 7;

/// Where each argument's bulk string ends in `Cmd::data` (after its CRLF): inline for
/// short commands, on the heap past [`INLINE_ARGS`].
#[derive(Clone)]
enum Ends {
    Inline { len: u8, at: [u32; INLINE_ARGS] },
    Heap(Vec<u32>),
}

impl Default for Ends {
    fn default() -> Ends {
        Ends::Inline {
            len: 0,
            at: [0; INLINE_ARGS],
        }
    }
}

impl Ends {
    fn as_slice(&self) -> &[u32] {
        match self {
            Ends::Inline { len, at } => &at[..usize::from(*len)],
            Ends::Heap(v) => v,
        }
    }

    fn push(&mut self, end: u32) {
        match self {
            Ends::Inline { len, at } if usize::from(*len) < INLINE_ARGS => {
                at[usize::from(*len)] = end;
                *len += 1;
            }
            Ends::Inline { at, .. } => {
                let mut v = Vec::with_capacity(INLINE_ARGS * 2);
                v.extend_from_slice(at);
                v.push(end);
                *self = Ends::Heap(v);
            }
            Ends::Heap(v) => v.push(end),
        }
    }
}

impl PartialEq for Ends {
    fn eq(&self, other: &Ends) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Ends {}

/// Room reserved for a command's arguments after its name, so that a typical short
/// command (`GET key`, `SET key value`) is built in one allocation.
const TYPICAL_ARGS_BYTES: usize = 56;

/// Bytes of a bulk string's framing around its payload: `$`, CRLF after the length, CRLF
/// after the payload (the length's digits come on top).
const BULK_FRAMING: usize = 5;

/// Number of decimal digits of `n` (1 for 0).
fn decimal_len(n: usize) -> usize {
    let mut digits = 1;
    let mut bound = 10usize;
    while n >= bound {
        digits += 1;
        match bound.checked_mul(10) {
            Some(b) => bound = b,
            None => break,
        }
    }
    digits
}

/// The payload length of a bulk string `element` bytes long (framing included): the `p`
/// with `p + digits(p) + 5 == element`. A payload of `d` digits' length has
/// `p + d <= 10^d - 1 + d`, so the first `d` whose bound holds is its digit count (one
/// comparison for the usual short argument).
/// `None` only for a size no bulk string has (offsets past 4 GiB, which the ends
/// cannot hold, are saturated, never trusted).
fn payload_len(element: usize) -> Option<usize> {
    let m = element.checked_sub(BULK_FRAMING)?;
    let mut digits = 1;
    let mut largest = 9usize; // the largest payload length of `digits` digits
    while m > largest.saturating_add(digits) {
        digits += 1;
        largest = largest.saturating_mul(10).saturating_add(9);
    }
    m.checked_sub(digits)
}

/// Starts a command with its name: `cmd("GET").arg("k")`.
pub fn cmd(name: &str) -> Cmd {
    let mut c = Cmd {
        data: Vec::with_capacity(name.len() + TYPICAL_ARGS_BYTES),
        ends: Ends::default(),
    };
    c.push_arg(name);
    c
}

impl Cmd {
    /// An empty command; add the name with [`Cmd::arg`].
    pub fn new() -> Cmd {
        Cmd {
            data: Vec::new(),
            ends: Ends::default(),
        }
    }

    /// Appends arguments (builder style): one for a single value, one per element of a
    /// slice, array or `Vec`, a tuple's fields in order, none for `None` (see [`ToArgs`]).
    /// Bytes (`&[u8]`, `Vec<u8>`) stay one argument.
    ///
    /// ```
    /// use redis_cluster_uring::cmd;
    /// let c = cmd("DEL").arg(&["a", "b"]).arg(vec![1, 2]).arg(b"raw");
    /// assert_eq!(c.len(), 6);
    /// assert_eq!(c.arg_at(5), Some(b"raw".as_slice()));
    /// let c = cmd("SET").arg("k").arg(1).arg(Some(("EX", 10)));
    /// assert_eq!(c.len(), 5);
    /// ```
    pub fn arg<A: ToArgs>(mut self, args: A) -> Cmd {
        args.write_args(&mut self);
        self
    }

    /// The same as [`Cmd::arg`], which takes several arguments too (kept for code written
    /// before it did).
    pub fn arg_multi<A: ToArgs>(self, args: A) -> Cmd {
        self.arg(args)
    }

    /// Appends one or several arguments in place, as [`Cmd::arg`].
    pub fn push_arg_multi<A: ToArgs>(&mut self, args: A) -> &mut Cmd {
        args.write_args(self);
        self
    }

    /// Appends an argument in place, framed as a bulk string: its length header first
    /// (exact when the argument knows its length, as bytes and strings do; otherwise the
    /// payload, a formatted number, is moved over when its length needs more digits).
    pub fn push_arg<A: ToArg>(&mut self, arg: A) -> &mut Cmd {
        let start = self.data.len();
        let guess = arg.byte_len().unwrap_or(0);
        self.data.reserve(guess + BULK_FRAMING + 2);
        self.data.push(b'$');
        self.data
            .extend_from_slice(itoa::Buffer::new().format(guess).as_bytes());
        self.data.extend_from_slice(b"\r\n");
        let payload = self.data.len();
        arg.write_arg(&mut self.data);
        let len = self.data.len() - payload;
        if len != guess {
            // Rewrite the header for the real length, moving the payload if its digits
            // take more (or less) room than the guess's.
            let mut digits = itoa::Buffer::new();
            let digits = digits.format(len).as_bytes();
            let header = 1 + digits.len() + 2;
            let new_payload = start + header;
            if new_payload > payload {
                self.data
                    .resize(self.data.len() + (new_payload - payload), 0);
                self.data.copy_within(payload..payload + len, new_payload);
            } else if new_payload < payload {
                self.data.copy_within(payload..payload + len, new_payload);
                self.data.truncate(new_payload + len);
            }
            self.data[start + 1..start + 1 + digits.len()].copy_from_slice(digits);
            self.data[new_payload - 2..new_payload].copy_from_slice(b"\r\n");
        }
        self.data.extend_from_slice(b"\r\n");
        // A single argument larger than 4 GiB is beyond what Redis accepts (512 MiB).
        self.ends
            .push(u32::try_from(self.data.len()).unwrap_or(u32::MAX));
        self
    }

    /// Number of arguments, the name included.
    pub fn len(&self) -> usize {
        self.ends.as_slice().len()
    }

    /// True when not even a name was given.
    pub fn is_empty(&self) -> bool {
        self.ends.as_slice().is_empty()
    }

    /// The command name as given (case preserved).
    pub fn name(&self) -> &[u8] {
        self.arg_at(0).unwrap_or(b"")
    }

    /// Argument `i` (0 is the name).
    pub fn arg_at(&self, i: usize) -> Option<&[u8]> {
        let ends = self.ends.as_slice();
        let end = *ends.get(i)? as usize;
        let start = match i.checked_sub(1) {
            Some(prev) => ends[prev] as usize,
            None => 0,
        };
        let len = payload_len(end.checked_sub(start)?)?;
        let payload_end = end.checked_sub(2)?;
        self.data.get(payload_end.checked_sub(len)?..payload_end)
    }

    /// All arguments, name first.
    pub fn args(&self) -> Args<'_> {
        Args { cmd: self, next: 0 }
    }

    /// Exact number of bytes of the RESP encoding (no pass over the arguments: they are
    /// framed already).
    pub fn encoded_len(&self) -> usize {
        1 + decimal_len(self.len()) + 2 + self.data.len()
    }

    /// Appends the RESP encoding to `dst`: the array header, then one copy of the framed
    /// arguments.
    pub fn write_to(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        let count = self.len();
        if count < 10 {
            dst.put_slice(&[b'*', b'0' + count as u8, b'\r', b'\n']);
        } else {
            dst.put_u8(b'*');
            dst.put_slice(itoa::Buffer::new().format(count).as_bytes());
            dst.put_slice(b"\r\n");
        }
        dst.put_slice(&self.data);
    }

    /// The RESP encoding as a standalone buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.write_to(&mut buf);
        buf.freeze()
    }
}

/// A borrowed command, copied: for calls that take the command to another thread
/// ([`SharedClient::query`](crate::SharedClient::query)).
impl From<&Cmd> for Cmd {
    fn from(c: &Cmd) -> Cmd {
        c.clone()
    }
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for a in self.args() {
            list.entry(&String::from_utf8_lossy(a));
        }
        list.finish()
    }
}

/// Iterator over a command's arguments.
#[derive(Debug, Clone)]
pub struct Args<'a> {
    cmd: &'a Cmd,
    next: usize,
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let a = self.cmd.arg_at(self.next)?;
        self.next += 1;
        Some(a)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.cmd.len().saturating_sub(self.next);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Args<'_> {}

/// A value that is one command argument: strings, bytes, integers, floats.
///
/// Every `ToArg` type is also [`ToArgs`] (one argument), so it goes straight into
/// [`Cmd::arg`]. A type of your own implements both, the second in one line:
///
/// ```
/// use redis_cluster_uring::{cmd, Cmd, ToArg, ToArgs};
/// struct UserId(u64);
/// impl ToArg for UserId {
///     fn write_arg(&self, out: &mut Vec<u8>) {
///         out.extend_from_slice(format!("user:{}", self.0).as_bytes())
///     }
/// }
/// impl ToArgs for UserId {
///     fn write_args(&self, cmd: &mut Cmd) {
///         cmd.push_arg(self);
///     }
/// }
/// assert_eq!(cmd("GET").arg(UserId(7)).arg_at(1), Some(b"user:7".as_slice()));
/// ```
pub trait ToArg: ToArgs {
    /// Appends the argument's bytes to `out`.
    fn write_arg(&self, out: &mut Vec<u8>);

    /// How many bytes [`ToArg::write_arg`] will append, when that is known without
    /// formatting (bytes and strings): the argument's length header is then written
    /// first, exactly. A hint only: the bytes written are what counts. Implementors
    /// keep the default.
    #[doc(hidden)]
    fn byte_len(&self) -> Option<usize> {
        None
    }
}

/// One or several command arguments, for [`Cmd::arg`]: a single [`ToArg`] value is one;
/// a slice, array or `Vec` is one per element (bytes excepted: `&[u8]`, `[u8; N]` and
/// `Vec<u8>` are one binary argument); a tuple is its fields' arguments in order (so a
/// slice of `(field, value)` pairs is field, value, field, value...); `None` and `()` are
/// none.
///
/// ```
/// use redis_cluster_uring::{cmd, Cmd, ToArgs};
/// let c = cmd("HSET")
///     .arg("user:1")
///     .arg(&[("name", "Ada"), ("lang", "en")])
///     .arg(("visits", 3));
/// assert_eq!(c.len(), 8);
/// let mut c = Cmd::new();
/// ["a", "b"].write_args(&mut c);
/// vec![String::from("c")].write_args(&mut c);
/// 7.write_args(&mut c);
/// b"bytes".write_args(&mut c);
/// ().write_args(&mut c);
/// None::<&str>.write_args(&mut c);
/// assert_eq!(c.len(), 5);
/// ```
pub trait ToArgs {
    /// Appends the arguments to `cmd`.
    fn write_args(&self, cmd: &mut Cmd);

    /// Appends a slice of such values to `cmd`: each one's arguments, except for `u8`,
    /// whose slice is one binary argument. A hook for the slice impls, which cannot tell
    /// `[u8]` from `[T]` otherwise (Rust has no specialization); implementors keep the
    /// default.
    #[doc(hidden)]
    fn write_slice(items: &[Self], cmd: &mut Cmd)
    where
        Self: Sized,
    {
        for item in items {
            item.write_args(cmd);
        }
    }
}

impl<T: ToArgs + ?Sized> ToArgs for &T {
    fn write_args(&self, cmd: &mut Cmd) {
        (**self).write_args(cmd)
    }
}

impl<T: ToArgs> ToArgs for [T] {
    fn write_args(&self, cmd: &mut Cmd) {
        T::write_slice(self, cmd)
    }
}

impl<T: ToArgs, const N: usize> ToArgs for [T; N] {
    fn write_args(&self, cmd: &mut Cmd) {
        T::write_slice(self, cmd)
    }
}

impl<T: ToArgs> ToArgs for Vec<T> {
    fn write_args(&self, cmd: &mut Cmd) {
        T::write_slice(self, cmd)
    }
}

impl<T: ToArgs> ToArgs for Option<T> {
    fn write_args(&self, cmd: &mut Cmd) {
        if let Some(v) = self {
            v.write_args(cmd)
        }
    }
}

impl ToArgs for () {
    fn write_args(&self, _cmd: &mut Cmd) {}
}

/// Tuples: each field's arguments, in order.
macro_rules! tuple_args {
    ($($t:ident),+) => {
        impl<$($t: ToArgs),+> ToArgs for ($($t,)+) {
            #[allow(non_snake_case)]
            fn write_args(&self, cmd: &mut Cmd) {
                let ($($t,)+) = self;
                $($t.write_args(cmd);)+
            }
        }
    };
}
tuple_args!(A);
tuple_args!(A, B);
tuple_args!(A, B, C);
tuple_args!(A, B, C, D);
tuple_args!(A, B, C, D, E);
tuple_args!(A, B, C, D, E, F);

/// The single-argument types (everything [`ToArg`] but `u8` and the byte containers,
/// which the slice impls above cover).
macro_rules! one_arg {
    ($($t:ty),*) => {$(
        impl ToArgs for $t {
            fn write_args(&self, cmd: &mut Cmd) {
                cmd.push_arg(self);
            }
        }
    )*};
}
one_arg!(str, String, Bytes, i8, i16, i32, i64, i128, isize, u16, u32, u64, u128, usize, f32, f64);

impl ToArgs for u8 {
    fn write_args(&self, cmd: &mut Cmd) {
        cmd.push_arg(self);
    }

    /// Bytes are one binary argument, not one number per byte.
    fn write_slice(items: &[u8], cmd: &mut Cmd) {
        cmd.push_arg(items);
    }
}

impl<T: ToArg + ?Sized> ToArg for &T {
    fn write_arg(&self, out: &mut Vec<u8>) {
        (**self).write_arg(out)
    }

    fn byte_len(&self) -> Option<usize> {
        (**self).byte_len()
    }
}

impl ToArg for [u8] {
    fn write_arg(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }

    fn byte_len(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl<const N: usize> ToArg for [u8; N] {
    fn write_arg(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }

    fn byte_len(&self) -> Option<usize> {
        Some(N)
    }
}

impl ToArg for Vec<u8> {
    fn write_arg(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }

    fn byte_len(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl ToArg for Bytes {
    fn write_arg(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }

    fn byte_len(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl ToArg for str {
    fn write_arg(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes())
    }

    fn byte_len(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl ToArg for String {
    fn write_arg(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes())
    }

    fn byte_len(&self) -> Option<usize> {
        Some(self.len())
    }
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn write_arg(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes())
            }
        }
    )*};
}
int_arg!(i8, i16, i32, i64, i128, isize, u16, u32, u64, u128, usize);

impl ToArg for u8 {
    fn write_arg(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes())
    }
}

impl ToArg for f64 {
    fn write_arg(&self, out: &mut Vec<u8>) {
        // Redis parses `inf`/`-inf`; Rust prints `inf` too, and shortest round-trip digits.
        out.extend_from_slice(self.to_string().as_bytes())
    }
}

impl ToArg for f32 {
    fn write_arg(&self, out: &mut Vec<u8>) {
        (*self as f64).write_arg(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_past_the_inline_ones_spill_to_the_heap_unchanged() {
        for n in [0usize, 1, INLINE_ARGS - 1, INLINE_ARGS, INLINE_ARGS + 1, 40] {
            let mut c = cmd("DEL");
            for i in 0..n {
                c.push_arg(format!("key:{i}"));
            }
            assert_eq!(c.len(), n + 1);
            assert_eq!(c.name(), b"DEL");
            for i in 0..n {
                assert_eq!(c.arg_at(i + 1), Some(format!("key:{i}").as_bytes()));
            }
            assert_eq!(c.arg_at(n + 1), None);
            // Equal however it was stored.
            let mut other = Cmd::new();
            for a in c.args() {
                other.push_arg(a);
            }
            assert_eq!(c, other.clone());
            assert_eq!(c.to_bytes(), other.to_bytes());
        }
    }

    #[test]
    fn arguments_round_trip() {
        let c = cmd("MSET")
            .arg("a")
            .arg(1u8)
            .arg(b"")
            .arg(-7i64)
            .arg(1.5f64);
        let args: Vec<&[u8]> = c.args().collect();
        assert_eq!(args, vec![&b"MSET"[..], b"a", b"1", b"", b"-7", b"1.5"]);
        assert_eq!(c.args().len(), 6);
        assert_eq!(c.arg_at(6), None);
    }

    #[test]
    fn encodes_exactly() {
        let c = cmd("GET").arg("k");
        assert_eq!(&c.to_bytes()[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert_eq!(c.encoded_len(), c.to_bytes().len());
    }

    #[test]
    #[allow(clippy::needless_borrows_for_generic_args)] // borrowed forms are the point
    fn several_arguments_expand_but_bytes_stay_one() {
        let strs: Vec<String> = vec!["x".into(), "y".into()];
        let c = cmd("DEL")
            .arg_multi(&["a", "b"])
            .arg_multi(&strs)
            .arg_multi(vec![1u32, 2])
            .arg_multi([3i64].as_slice())
            .arg_multi("one")
            .arg_multi(4.5)
            .arg_multi(b"raw")
            .arg_multi(vec![0u8, 1])
            .arg_multi(b"bin".as_slice())
            .arg_multi(vec![b"p".as_slice(), b"q"])
            .arg_multi(());
        let args: Vec<&[u8]> = c.args().collect();
        assert_eq!(
            args,
            vec![
                &b"DEL"[..],
                b"a",
                b"b",
                b"x",
                b"y",
                b"1",
                b"2",
                b"3",
                b"one",
                b"4.5",
                b"raw",
                b"\x00\x01",
                b"bin",
                b"p",
                b"q"
            ]
        );
        // A single `u8` is still a number.
        assert_eq!(cmd("X").arg(7u8).arg_at(1), Some(b"7".as_slice()));
        let empty: &[&str] = &[];
        assert_eq!(cmd("DEL").arg_multi(empty).len(), 1);
    }

    #[test]
    fn a_bulk_strings_payload_length_follows_from_its_size() {
        let mut lengths: Vec<usize> = (0..100_000).collect();
        for digits in 5..=12u32 {
            let p = 10usize.pow(digits);
            lengths.extend([p - 2, p - 1, p, p + 1]);
        }
        for p in lengths {
            assert_eq!(
                payload_len(p + decimal_len(p) + BULK_FRAMING),
                Some(p),
                "{p}"
            );
        }
        assert_eq!(decimal_len(usize::MAX), 20);
        // Sizes no bulk string has (saturated offsets) are refused, not a panic.
        for size in [0, 1, BULK_FRAMING, usize::MAX] {
            let _ = payload_len(size);
        }
        assert_eq!(payload_len(BULK_FRAMING), None);
    }

    /// An argument that does not say its length, longer than nine bytes: its header is
    /// rewritten and its payload moved.
    struct Unsized(&'static str);

    impl ToArgs for Unsized {
        fn write_args(&self, cmd: &mut Cmd) {
            cmd.push_arg(self);
        }
    }

    impl ToArg for Unsized {
        fn write_arg(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(self.0.as_bytes())
        }
    }

    /// An argument whose hint is wrong both ways: the bytes written count.
    struct Lying(&'static str, usize);

    impl ToArgs for Lying {
        fn write_args(&self, cmd: &mut Cmd) {
            cmd.push_arg(self);
        }
    }

    impl ToArg for Lying {
        fn write_arg(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(self.0.as_bytes())
        }

        fn byte_len(&self) -> Option<usize> {
            Some(self.1)
        }
    }

    #[test]
    fn arguments_of_any_length_are_framed_exactly() {
        let long = "x".repeat(1234);
        let c = cmd("SET")
            .arg(Unsized("a twelve byte"))
            .arg(Unsized(""))
            .arg(Lying("short", 123_456))
            .arg(Lying("a longer one", 0))
            .arg(long.as_str())
            .arg(u64::MAX)
            .arg(-1.5f64);
        let want: Vec<&[u8]> = vec![
            b"SET",
            b"a twelve byte",
            b"",
            b"short",
            b"a longer one",
            long.as_bytes(),
            b"18446744073709551615",
            b"-1.5",
        ];
        assert_eq!(c.args().collect::<Vec<_>>(), want);
        let mut reference = BytesMut::new();
        crate::core::resp::encode::encode_command(&mut reference, want.iter().copied());
        assert_eq!(c.to_bytes(), reference.freeze());
        assert_eq!(c.encoded_len(), c.to_bytes().len());
    }

    proptest::proptest! {
        #[test]
        fn framing_matches_the_encoder(
            args in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 0..14)
        ) {
            let mut c = Cmd::new();
            for a in &args {
                c.push_arg(a.as_slice());
            }
            let slices: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            proptest::prop_assert_eq!(c.args().collect::<Vec<_>>(), slices.clone());
            let mut reference = BytesMut::new();
            crate::core::resp::encode::encode_command(&mut reference, slices.iter().copied());
            proptest::prop_assert_eq!(c.encoded_len(), reference.len());
            proptest::prop_assert_eq!(c.to_bytes(), reference.freeze());
        }
    }

    #[test]
    fn empty_command() {
        let c = Cmd::new();
        assert!(c.is_empty());
        assert_eq!(c.name(), b"");
        assert_eq!(&c.to_bytes()[..], b"*0\r\n");
    }
}
