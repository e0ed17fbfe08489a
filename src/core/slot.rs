//! Hash slots: which of the 16384 slots a key belongs to.
//!
//! The cluster spec hashes a key with CRC16 (XMODEM variant) modulo 16384. When a key
//! contains a hash tag, only the tag is hashed, so related keys can be kept together:
//! the tag is the bytes between the first `{` and the first `}` after it, and only when
//! that span is non-empty. `foo{}{bar}` therefore hashes the whole key.

use std::fmt;

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// A hash slot, always `< 16384`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(u16);

impl Slot {
    /// The slot with this number, or `None` when it is out of range.
    pub const fn new(n: u16) -> Option<Slot> {
        if n < SLOT_COUNT {
            Some(Slot(n))
        } else {
            None
        }
    }

    /// The slot number, `0..16384`.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The slot number as an index into a 16384-entry table.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The part of `key` that decides its slot: the hash tag when there is a non-empty one,
/// otherwise the whole key.
///
/// ```
/// use redis_cluster_uring::slot::hash_tag;
/// assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
/// assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
/// assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
/// ```
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = first_open_brace(key) {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|&b| b == b'}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

/// Where the first `{` of `key` is, eight bytes at a time (most keys have none, and a
/// byte-by-byte search was the larger part of hashing a short key).
fn first_open_brace(key: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const BRACES: u64 = u64::from_ne_bytes([b'{'; 8]);
    let mut words = key.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        // A byte of `x` is zero where the key has a brace; the lowest byte flagged
        // here is the first zero byte (a flag above it may be a borrow's, never below).
        let x = u64::from_le_bytes(bytes) ^ BRACES;
        let zeros = x.wrapping_sub(ONES) & !x & HIGHS;
        if zeros != 0 {
            return Some(at + zeros.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'{')
        .map(|i| at + i)
}

/// The slot of `key`, as a Redis Cluster node computes it (`CLUSTER KEYSLOT`).
///
/// ```
/// use redis_cluster_uring::slot::slot_for_key;
/// assert_eq!(slot_for_key(b"foo").get(), 12182);
/// assert_eq!(slot_for_key(b"{user1000}.following"), slot_for_key(b"{user1000}.followers"));
/// ```
pub fn slot_for_key(key: &[u8]) -> Slot {
    Slot(crc16(hash_tag(key)) % SLOT_COUNT)
}

/// CRC16 as the cluster spec defines it (XMODEM: polynomial 0x1021, initial value 0,
/// no reflection), two bytes per step: the CRC so far xored with the next two bytes
/// is the register the polynomial shifts through, and `CRC16_PAIRS` holds what its high
/// byte contributes after two byte steps (the spec's reference code does one byte per
/// table lookup, as the last odd byte here does).
fn crc16(bytes: &[u8]) -> u16 {
    let mut pairs = bytes.chunks_exact(2);
    let mut crc = 0u16;
    for pair in &mut pairs {
        let register = crc ^ u16::from_be_bytes([pair[0], pair[1]]);
        crc = CRC16_PAIRS[usize::from(register >> 8)] ^ CRC16_TABLE[usize::from(register & 0xFF)];
    }
    match pairs.remainder() {
        [last] => (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ last)],
        _ => crc,
    }
}

/// The CRC of each byte value shifted through the polynomial, built at compile time.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// [`CRC16_TABLE`] one byte step further: what a high byte `i` of the register becomes
/// after two byte steps (`(T[i] << 8) ^ T[T[i] >> 8]`).
const CRC16_PAIRS: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let once = CRC16_TABLE[i];
        table[i] = (once << 8) ^ CRC16_TABLE[(once >> 8) as usize];
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc16_spec_vector() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(
            crc16::State::<crc16::XMODEM>::calculate(b"123456789"),
            0x31C3
        );
    }

    #[test]
    fn known_slots() {
        // Values from a real server's CLUSTER KEYSLOT.
        assert_eq!(slot_for_key(b"foo").get(), 12182);
        assert_eq!(slot_for_key(b"bar").get(), 5061);
        assert_eq!(slot_for_key(b"").get(), 0);
        assert_eq!(slot_for_key(b"123456789").get(), 0x31C3);
    }

    #[test]
    fn hash_tag_rules_from_the_spec() {
        assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
        assert_eq!(hash_tag(b"{user1000}.followers"), b"user1000");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"foo{bar"), b"foo{bar");
        assert_eq!(hash_tag(b"foo}bar{"), b"foo}bar{");
        assert_eq!(hash_tag(b"{}"), b"{}");
        assert_eq!(hash_tag(b"}{a}"), b"a");
    }

    #[test]
    fn tagged_keys_share_a_slot() {
        assert_eq!(
            slot_for_key(b"{user1000}.following"),
            slot_for_key(b"{user1000}.followers")
        );
        assert_eq!(slot_for_key(b"foo{bar}{zap}"), slot_for_key(b"bar"));
        assert_eq!(slot_for_key(b"foo{{bar}}zap"), slot_for_key(b"{bar"));
    }

    #[test]
    fn slot_bounds() {
        assert!(Slot::new(16383).is_some());
        assert!(Slot::new(16384).is_none());
    }

    proptest! {
        #[test]
        fn slot_is_in_range_and_tag_decides(prefix in proptest::collection::vec(any::<u8>(), 0..16),
                                            tag in "[a-z0-9]{1,12}",
                                            suffix in proptest::collection::vec(any::<u8>(), 0..16)) {
            // A key whose first `{` opens our tag: the slot is the tag's slot whatever follows.
            let prefix: Vec<u8> = prefix.into_iter().filter(|&b| b != b'{').collect();
            let mut key = prefix.clone();
            key.push(b'{');
            key.extend_from_slice(tag.as_bytes());
            key.push(b'}');
            key.extend_from_slice(&suffix);
            prop_assert_eq!(slot_for_key(&key), slot_for_key(tag.as_bytes()));
        }

        #[test]
        fn any_key_maps_in_range(key in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert!(slot_for_key(&key).get() < SLOT_COUNT);
        }

        #[test]
        fn the_first_brace_is_found_wherever_it_is(
            key in proptest::collection::vec(prop_oneof![Just(b'{'), Just(b'}'), Just(b'z'), Just(b'|'), Just(0xFB), any::<u8>()], 0..40)
        ) {
            prop_assert_eq!(first_open_brace(&key), key.iter().position(|&b| b == b'{'));
        }

        #[test]
        fn the_table_crc_is_the_crc16_crates(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(crc16(&bytes), crc16::State::<crc16::XMODEM>::calculate(&bytes));
        }
    }
}
