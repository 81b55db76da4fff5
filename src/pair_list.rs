//! [`PairList`]: byte-string pairs (a request's environ) held in one buffer.
//!
//! A request head carries about forty environ pairs; as a `Vec` of owned `(Vec<u8>, Vec<u8>)`
//! that is some eighty allocations and frees per request in the daemon. A `PairList` keeps
//! the pairs as the wire lays them out (`u32 len | bytes` for each key and value, big-endian
//! lengths), so the decoder copies the checked region once, and iterating reads the lengths
//! back.

use std::fmt;

/// Byte-string pairs, in order, duplicates kept, in one buffer.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PairList {
    /// `count` pairs, each `u32 key len | key | u32 value len | value`.
    encoded: Vec<u8>,
    count: usize,
}

impl PairList {
    pub const fn new() -> Self {
        PairList {
            encoded: Vec::new(),
            count: 0,
        }
    }

    /// The pairs of a region already checked to hold `count` whole pairs (the protocol
    /// decoder's).
    pub(crate) fn from_checked(encoded: &[u8], count: usize) -> Self {
        PairList {
            encoded: encoded.to_vec(),
            count,
        }
    }

    /// Appends a pair. A key or value of 4 GiB or more cannot be framed: it is cut there
    /// (no environ variable comes near it; the frame's own limits are far lower).
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        for bytes in [key, value] {
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            self.encoded.extend_from_slice(&len.to_be_bytes());
            self.encoded
                .extend_from_slice(&bytes[..usize::try_from(len).unwrap_or(usize::MAX)]);
        }
        self.count += 1;
    }

    /// Empties the list, keeping its buffer (a thread's list reused for each request).
    pub fn clear(&mut self) {
        self.encoded.clear();
        self.count = 0;
    }

    /// Room the buffer holds: a list reused by a thread drops a buffer one huge request grew.
    pub fn capacity(&self) -> usize {
        self.encoded.capacity()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> PairIter<'_> {
        PairIter {
            rest: &self.encoded,
            left: self.count,
        }
    }

    /// The value of the first pair whose key is `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// The pairs of a [`PairList`], as `(key, value)` slices.
#[derive(Clone)]
pub struct PairIter<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> PairIter<'a> {
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let (len, tail) = self.rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        let (bytes, tail) = tail.split_at_checked(len)?;
        self.rest = tail;
        Some(bytes)
    }
}

impl<'a> Iterator for PairIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The buffer holds `count` whole pairs (push and from_checked keep it so).
        Some((self.bytes()?, self.bytes()?))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

impl<'a> IntoIterator for &'a PairList {
    type Item = (&'a [u8], &'a [u8]);
    type IntoIter = PairIter<'a>;

    fn into_iter(self) -> PairIter<'a> {
        self.iter()
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> FromIterator<(K, V)> for PairList {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut list = PairList::new();
        for (k, v) in pairs {
            list.push(k.as_ref(), v.as_ref());
        }
        list
    }
}

impl fmt::Debug for PairList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(k, v)| (k.escape_ascii().to_string(), v.escape_ascii().to_string())),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_come_back_in_order_with_duplicates_and_any_bytes() {
        let list: PairList = [(&b"A"[..], &b"1"[..]), (b"", b""), (b"A", b"\x00\xff")]
            .into_iter()
            .collect();
        assert_eq!(list.len(), 3);
        let back: Vec<_> = list.iter().collect();
        assert_eq!(
            back,
            [(&b"A"[..], &b"1"[..]), (b"", b""), (b"A", b"\x00\xff")]
        );
        assert_eq!(list.get(b"A"), Some(&b"1"[..]));
        assert_eq!(list.get(b"B"), None);
    }

    #[test]
    fn a_cleared_list_is_empty_and_keeps_its_buffer() {
        let mut list = PairList::new();
        list.push(b"KEY", b"value");
        let room = list.capacity();
        list.clear();
        assert!(list.is_empty());
        assert_eq!(list.iter().count(), 0);
        assert_eq!(list.capacity(), room);
        list.push(b"K", b"V");
        assert_eq!(list.iter().collect::<Vec<_>>(), [(&b"K"[..], &b"V"[..])]);
    }

    #[test]
    fn equal_pairs_make_equal_lists() {
        let a: PairList = [("K", "V")].into_iter().collect();
        let mut b = PairList::new();
        b.push(b"K", b"V");
        assert_eq!(a, b);
        assert_ne!(a, PairList::new());
        assert_eq!(format!("{a:?}"), r#"[("K", "V")]"#);
    }
}
