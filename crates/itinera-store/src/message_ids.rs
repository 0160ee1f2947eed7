//! How a segment keeps the message ids of a block of messages.
//!
//! Why: SDKs make message ids random: analytics.js sends `ajs-next-` and 32 hex digits, the
//! mobile libraries a UUID (iOS in upper case). Sixteen random bytes cannot compress, but printed
//! as hex they take about 18.4 bytes after zstd. An id that ends in 32 hex digits (with or
//! without a UUID's dashes, all in one case) is kept as its prefix and the 16 bytes; any other id
//! as text. Every id reads back byte for byte.

use crate::codec::{self, Reader};
use crate::error::{Result, StoreError};

const NONE: u8 = 0;
const TEXT: u8 = 1;
/// Packed: `PACKED + bits`, bit 0 upper case, bit 1 with a UUID's dashes (tags 2..=5).
const PACKED: u8 = 2;
const UPPER: u8 = 1;
const DASHES: u8 = 2;
/// The highest tag.
const LAST_TAG: u8 = PACKED + UPPER + DASHES;
/// Where a UUID's dashes are, in its 36 characters.
const DASH_AT: [usize; 4] = [8, 13, 18, 23];

/// The ids of a block, encoded (compressed by the caller). Layout: the row count; a tag per
/// row; each text id, and each packed id's prefix, as strings in row order; then the 16 bytes
/// of each packed id.
pub fn encode(ids: &[Option<&str>]) -> Vec<u8> {
    let mut tags = Vec::with_capacity(ids.len());
    let mut texts = Vec::new();
    let mut packed = Vec::new();
    for id in ids {
        match id.map(|id| (id, pack(id))) {
            None => tags.push(NONE),
            Some((id, None)) => {
                tags.push(TEXT);
                codec::put_str(&mut texts, id);
            }
            Some((id, Some((bits, bytes)))) => {
                tags.push(PACKED + bits);
                let suffix = if bits & DASHES != 0 { 36 } else { 32 };
                codec::put_str(&mut texts, &id[..id.len() - suffix]);
                packed.extend_from_slice(&bytes);
            }
        }
    }
    let mut out = Vec::with_capacity(tags.len() + texts.len() + packed.len() + 4);
    codec::put_uvarint(&mut out, ids.len() as u64);
    out.extend_from_slice(&tags);
    out.extend_from_slice(&texts);
    out.extend_from_slice(&packed);
    out
}

/// The 16 bytes an id ends in, and how they are printed, when the id can be packed.
fn pack(id: &str) -> Option<(u8, [u8; 16])> {
    let b = id.as_bytes();
    let (bits, tail) = if b.len() >= 36 && is_uuid(&b[b.len() - 36..]) {
        (DASHES, &b[b.len() - 36..])
    } else if b.len() >= 32 && b[b.len() - 32..].iter().all(u8::is_ascii_hexdigit) {
        (0, &b[b.len() - 32..])
    } else {
        return None;
    };
    let digits = || tail.iter().copied().filter(|c| *c != b'-');
    let upper = digits().any(|c| c.is_ascii_uppercase());
    if upper && digits().any(|c| c.is_ascii_lowercase()) {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, c) in digits().enumerate() {
        bytes[i / 2] |= nibble(c) << if i % 2 == 0 { 4 } else { 0 };
    }
    Some((bits | if upper { UPPER } else { 0 }, bytes))
}

fn is_uuid(tail: &[u8]) -> bool {
    tail.iter()
        .enumerate()
        .all(|(i, c)| match DASH_AT.contains(&i) {
            true => *c == b'-',
            false => c.is_ascii_hexdigit(),
        })
}

fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// The ids of a decoded block.
#[derive(Debug, Default)]
pub struct Ids {
    text: String,
    spans: Vec<Option<(usize, usize)>>,
}

impl Ids {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Row `i`'s id, if the row has one.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.spans
            .get(i)
            .copied()
            .flatten()
            .map(|(lo, hi)| &self.text[lo..hi])
    }
}

/// Reads ids written by [`encode`]. Damage is reported, never patched over.
pub fn decode(raw: &[u8]) -> Result<Ids> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("segment message ids: {why}"));
    let mut r = Reader::new(raw, "segment message ids");
    let rows = r.uvarint()?;
    if rows > raw.len() as u64 {
        return Err(corrupt("row count beyond the block"));
    }
    let tags = r.bytes(rows as usize)?;
    let mut texts = Vec::with_capacity(tags.len());
    for tag in tags {
        texts.push(match *tag {
            NONE => None,
            TEXT..=LAST_TAG => Some(r.str()?),
            _ => return Err(corrupt("unknown tag")),
        });
    }
    let mut ids = Ids {
        text: String::with_capacity(texts.iter().flatten().map(|t| t.len() + 36).sum()),
        spans: Vec::with_capacity(tags.len()),
    };
    const HEX: [&[u8; 16]; 2] = [b"0123456789abcdef", b"0123456789ABCDEF"];
    for (tag, text) in tags.iter().zip(texts) {
        let Some(text) = text else {
            ids.spans.push(None);
            continue;
        };
        let lo = ids.text.len();
        ids.text.push_str(text);
        if *tag >= PACKED {
            let bits = tag - PACKED;
            let digits = HEX[(bits & UPPER) as usize];
            let bytes = r.bytes(16)?;
            for d in 0..32 {
                // a UUID's dashes come before its digits 8, 12, 16 and 20
                if bits & DASHES != 0 && matches!(d, 8 | 12 | 16 | 20) {
                    ids.text.push('-');
                }
                let byte = bytes[d / 2];
                let nibble = if d % 2 == 0 { byte >> 4 } else { byte & 15 };
                ids.text.push(digits[nibble as usize] as char);
            }
        }
        ids.spans.push(Some((lo, ids.text.len())));
    }
    if !r.is_empty() {
        return Err(corrupt("bytes after the last id"));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(ids: &[Option<&str>]) -> Vec<u8> {
        let raw = encode(ids);
        let back = decode(&raw).unwrap();
        assert_eq!(back.len(), ids.len());
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(back.get(i), *id);
        }
        raw
    }

    #[test]
    fn sdk_ids_are_packed_and_read_back() {
        let ids = [
            Some("ajs-next-69e5a3b4c1d2e3f40a1b2c3d4e5f6071"),
            Some("3F2504E0-4F89-41D3-9A0C-0305E82C3301"),
            Some("3f2504e0-4f89-41d3-9a0c-0305e82c3301"),
            Some("0123456789abcdef0123456789abcdef"),
            None,
            Some("m1"),
            Some("mixed-3F2504e0-4f89-41d3-9a0c-0305e82c3301"),
            Some("3f2504e0-4f89-41d3-9a0c-0305e82c330"),
            Some(""),
            Some("größe-0123456789abcdef0123456789abcdef"),
        ];
        round_trip(&ids);
        // the four SDK shapes are 16 bytes each, not their hex
        let raw = encode(&ids[..4]);
        assert!(raw.len() < 4 * 16 + 40, "{}", raw.len());
    }

    #[test]
    fn damage_is_reported() {
        let raw = encode(&[Some("ajs-next-69e5a3b4c1d2e3f40a1b2c3d4e5f6071"), Some("x")]);
        for cut in 0..raw.len() {
            assert!(decode(&raw[..cut]).is_err(), "cut at {cut}");
        }
        let mut more = raw.clone();
        more.push(0);
        assert!(decode(&more).is_err());
    }

    proptest! {
        #[test]
        fn any_id_reads_back(
            ids in proptest::collection::vec(
                proptest::option::of(prop_oneof![
                    "[a-zé-]{0,6}[0-9a-fA-F]{28,34}",
                    "[a-z]{0,4}[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-fA-F]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                    ".{0,40}",
                ]),
                0..30,
            )
        ) {
            let ids: Vec<Option<&str>> = ids.iter().map(Option::as_deref).collect();
            round_trip(&ids);
        }

        #[test]
        fn damaged_ids_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&raw);
        }
    }
}
