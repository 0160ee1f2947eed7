//! Dictionary and identity deltas: at every flush, the strings added to each dictionary, the
//! identity links and the erasures since the previous flush are written to one checksummed file,
//! so that segments can hold integer codes and the log can be cut.

use crate::codec::{put_ivarint, put_str, put_uvarint, Reader};
use crate::error::{Result, StoreError};
use crate::wal::frame;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// The dictionaries. The first [`DICTS_V1`] come first in the file (format 1 had only those);
/// the property dictionaries follow the erasures, so a format-1 delta reads as having none.
pub const DICTS: usize = 7;
pub const DICTS_V1: usize = 5;
/// The first bytes of a compressed delta: then the payload's size (u64) and the framed
/// compressed payload. A delta without them is a framed payload as written before (its first
/// bytes are a length and a checksum, which cannot be these for any delta under 1 GiB).
const COMPRESSED: &[u8; 8] = b"ITDELTA2";
const LEVEL: i32 = 3;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Delta {
    /// Per dictionary: the code of the first string, and the strings.
    pub dicts: [(u64, Vec<String>); DICTS],
    pub links: Vec<(u32, u32)>,
    /// Erased distinct ids and when (rows received up to then are gone).
    pub erased: Vec<(u32, i64)>,
}

impl Delta {
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::new();
        let put_dict = |p: &mut Vec<u8>, (start, strings): &(u64, Vec<String>)| {
            put_uvarint(p, *start);
            put_uvarint(p, strings.len() as u64);
            for s in strings {
                put_str(p, s);
            }
        };
        for d in &self.dicts[..DICTS_V1] {
            put_dict(&mut p, d);
        }
        put_uvarint(&mut p, self.links.len() as u64);
        for (a, b) in &self.links {
            put_uvarint(&mut p, *a as u64);
            put_uvarint(&mut p, *b as u64);
        }
        put_uvarint(&mut p, self.erased.len() as u64);
        for (d, at) in &self.erased {
            put_uvarint(&mut p, *d as u64);
            put_ivarint(&mut p, *at);
        }
        for d in &self.dicts[DICTS_V1..] {
            put_dict(&mut p, d);
        }
        // compressed: the ids and names repeat their shapes (a full dictionary of 200k
        // anonymous ids was 3.7 bytes per stored event uncompressed)
        let comp = zstd::bulk::compress(&p, LEVEL).expect("compressing to memory");
        let mut out = Vec::with_capacity(comp.len() + 24);
        out.extend_from_slice(COMPRESSED);
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        frame(&mut out, &comp);
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Delta> {
        let corrupt = |why: &str| StoreError::Corrupt(format!("dictionary delta: {why}"));
        let framed = |buf: &[u8]| -> Result<Vec<u8>> {
            if buf.len() < 8 {
                return Err(corrupt("too short"));
            }
            let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
            let payload = buf.get(8..8 + len).ok_or_else(|| corrupt("truncated"))?;
            if crc32fast::hash(payload) != crc || buf.len() != 8 + len {
                return Err(corrupt("checksum mismatch"));
            }
            Ok(payload.to_vec())
        };
        let payload = match buf.strip_prefix(COMPRESSED) {
            Some(rest) if rest.len() >= 8 => {
                let raw_len = u64::from_le_bytes(rest[..8].try_into().unwrap());
                let comp = framed(&rest[8..])?;
                // a damaged length cannot ask for more than zstd's best ratio allows
                if raw_len > (comp.len() as u64 + 64) * 32_768 {
                    return Err(corrupt("size out of range"));
                }
                let raw = zstd::bulk::decompress(&comp, raw_len as usize)
                    .map_err(|e| corrupt(&e.to_string()))?;
                if raw.len() as u64 != raw_len {
                    return Err(corrupt("wrong decompressed size"));
                }
                raw
            }
            Some(_) => return Err(corrupt("too short")),
            // written before deltas were compressed
            None => framed(buf)?,
        };
        let mut r = Reader::new(&payload, "dictionary delta");
        let mut d = Delta::default();
        let read_dict = |r: &mut Reader<'_>, slot: &mut (u64, Vec<String>)| -> Result<()> {
            slot.0 = r.uvarint()?;
            let n = r.len()?;
            for _ in 0..n {
                slot.1.push(r.str()?.to_string());
            }
            Ok(())
        };
        for slot in d.dicts[..DICTS_V1].iter_mut() {
            read_dict(&mut r, slot)?;
        }
        let n = r.len()?;
        for _ in 0..n {
            d.links.push((r.uvarint()? as u32, r.uvarint()? as u32));
        }
        let n = r.len()?;
        for _ in 0..n {
            d.erased.push((r.uvarint()? as u32, r.ivarint()?));
        }
        if !r.is_empty() {
            for slot in d.dicts[DICTS_V1..].iter_mut() {
                read_dict(&mut r, slot)?;
            }
        }
        Ok(d)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut f = File::create(path).map_err(StoreError::io(path))?;
        f.write_all(&self.encode()).map_err(StoreError::io(path))?;
        f.sync_all().map_err(StoreError::io(path))
    }

    pub fn read(path: &Path) -> Result<Delta> {
        let buf = fs::read(path).map_err(StoreError::io(path))?;
        Delta::decode(&buf).map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(strings in proptest::collection::vec(".{0,12}", 0..20),
                      links in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..20),
                      erased in proptest::collection::vec((any::<u32>(), any::<i64>()), 0..5)) {
            let mut d = Delta { links, erased, ..Default::default() };
            d.dicts[2] = (7, strings.clone());
            d.dicts[6] = (3, strings);
            prop_assert_eq!(Delta::decode(&d.encode()).unwrap(), d);
        }

        #[test]
        fn deltas_written_before_compression_read(strings in proptest::collection::vec(".{0,12}", 0..20)) {
            let mut d = Delta::default();
            d.dicts[0] = (1, strings);
            let encoded = d.encode();
            let raw = zstd::bulk::decompress(&encoded[24..], 1 << 20).unwrap();
            let mut old = Vec::new();
            frame(&mut old, &raw);
            prop_assert_eq!(Delta::decode(&old).unwrap(), d);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Delta::decode(&b);
            let mut marked = COMPRESSED.to_vec();
            marked.extend_from_slice(&b);
            let _ = Delta::decode(&marked);
        }
    }
}
