//! Byte-level encodings shared by the log and the segments: varints, zigzag, length-prefixed
//! strings, and checksummed frames. Every decoder returns an error on short or malformed input,
//! never panics: the fuzz target and property tests hold it to that.

use crate::error::{Result, StoreError};

pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub fn put_ivarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v))
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// A cursor over encoded bytes that reports corruption instead of panicking.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn corrupt(&self, reason: &str) -> StoreError {
        StoreError::Corrupt(format!("{}: {} at byte {}", self.what, reason, self.pos))
    }

    pub fn u8(&mut self) -> Result<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.corrupt("unexpected end"))?;
        self.pos += 1;
        Ok(b)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(self.corrupt("unexpected end"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u32_le(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().unwrap()))
    }

    pub fn u64_le(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().unwrap()))
    }

    pub fn f64_le(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.bytes(8)?.try_into().unwrap()))
    }

    #[inline]
    pub fn uvarint(&mut self) -> Result<u64> {
        // one byte is the common case (small codes, most time deltas of sorted rows)
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(b as u64);
            }
        }
        self.uvarint_long()
    }

    #[inline(never)]
    fn uvarint_long(&mut self) -> Result<u64> {
        // eight bytes left and a varint of at most eight: read at once, without a branch per
        // byte (times and their deltas are three to five bytes, and which is unpredictable)
        if let Some(chunk) = self.buf.get(self.pos..self.pos + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let ends = !word & 0x8080_8080_8080_8080;
            if ends != 0 {
                let bits = ends.trailing_zeros() + 1; // through the last byte's top bit
                self.pos += bits as usize / 8;
                return Ok(compact_7bit_groups(word & (u64::MAX >> (64 - bits))));
            }
        }
        // ten bytes left: no end check per byte, in a loop the compiler unrolls
        if let Some(chunk) = self.buf.get(self.pos..self.pos + 10) {
            let mut v: u64 = 0;
            for (k, &b) in chunk.iter().enumerate() {
                v |= ((b & 0x7f) as u64) << (7 * k);
                if b < 0x80 {
                    if k == 9 && b > 1 {
                        return Err(self.corrupt("varint overflows 64 bits"));
                    }
                    self.pos += k + 1;
                    return Ok(v);
                }
            }
            return Err(self.corrupt("varint too long"));
        }
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(self.corrupt("varint overflows 64 bits"));
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(self.corrupt("varint too long"));
            }
        }
    }

    pub fn ivarint(&mut self) -> Result<i64> {
        Ok(unzigzag(self.uvarint()?))
    }

    /// A length that must fit in what is left of the buffer (so corrupt lengths cannot allocate).
    pub fn len(&mut self) -> Result<usize> {
        let n = self.uvarint()?;
        if n > self.remaining() as u64 {
            return Err(self.corrupt("length beyond the end"));
        }
        Ok(n as usize)
    }

    pub fn str(&mut self) -> Result<&'a str> {
        let n = self.len()?;
        let b = self.bytes(n)?;
        std::str::from_utf8(b).map_err(|_| self.corrupt("invalid utf-8"))
    }

    pub fn opt_str(&mut self) -> Result<Option<&'a str>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.str()?)),
            _ => Err(self.corrupt("bad option tag")),
        }
    }
}

/// FNV-1a 64: a stable hash for message ids (dedup) that does not change between Rust releases.
pub fn hash64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // final avalanche so that similar ids spread over the hash table
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

// ---- column codecs -------------------------------------------------------------------------

pub fn encode_u32s(values: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() + 8);
    for v in values {
        put_uvarint(&mut out, *v as u64);
    }
    out
}

pub fn decode_u32s(buf: &[u8], n: usize, what: &'static str) -> Result<Vec<u32>> {
    let mut r = Reader::new(buf, what);
    let mut out = Vec::with_capacity(n.min(buf.len()));
    for _ in 0..n {
        let v = r.uvarint()?;
        out.push(
            u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what}: value over u32")))?,
        );
    }
    Ok(out)
}

/// Run-length encoding of values that repeat in runs (the person column of a sorted segment):
/// (delta of the value from the previous run, zigzag varint; run length, varint).
pub fn encode_runs(values: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = 0i64;
    let mut i = 0;
    while i < values.len() {
        let v = values[i];
        let mut j = i + 1;
        while j < values.len() && values[j] == v {
            j += 1;
        }
        put_ivarint(&mut out, v as i64 - prev);
        put_uvarint(&mut out, (j - i) as u64);
        prev = v as i64;
        i = j;
    }
    out
}

pub fn decode_runs(buf: &[u8], n: usize, what: &'static str) -> Result<Vec<u32>> {
    let mut r = Reader::new(buf, what);
    // runs expand, so `n` may exceed the input; a damaged count must not reserve the world, but
    // growing by doubling copied a 10M-row column four times (the pages reserved and never
    // written cost nothing)
    let mut out = Vec::with_capacity(n.min(1 << 28));
    let mut prev = 0i64;
    while out.len() < n {
        let v = prev.checked_add(r.ivarint()?);
        let len = usize::try_from(r.uvarint()?).unwrap_or(usize::MAX);
        // checked against what is left, not by adding: a huge run length must not wrap
        let Some(v) = v.filter(|v| (0..=u32::MAX as i64).contains(v)) else {
            return Err(StoreError::Corrupt(format!("{what}: bad run")));
        };
        if len == 0 || len > n - out.len() {
            return Err(StoreError::Corrupt(format!("{what}: bad run")));
        }
        out.extend(std::iter::repeat_n(v as u32, len));
        prev = v;
    }
    Ok(out)
}

/// Delta encoding of time stamps (zigzag varints of the difference to the previous row).
pub fn encode_deltas(values: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 2);
    let mut prev = 0i64;
    for v in values {
        put_ivarint(&mut out, v.wrapping_sub(prev));
        prev = *v;
    }
    out
}

/// The value of a varint of at most eight bytes, given as a little-endian word with the bytes
/// after it cleared: the seven low bits of each byte, packed (continuation bits dropped), in
/// three steps of pairs.
#[inline(always)]
fn compact_7bit_groups(x: u64) -> u64 {
    let x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
    let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4)
}

pub fn decode_deltas(buf: &[u8], n: usize, what: &'static str) -> Result<Vec<i64>> {
    if n >= PARALLEL_DELTAS {
        if let Some(out) = decode_deltas_in_halves(buf, n, what) {
            return Ok(out);
        }
    }
    let mut r = Reader::new(buf, what);
    let mut out = Vec::with_capacity(n.min(buf.len()));
    let mut prev = 0i64;
    for _ in 0..n {
        prev = prev.wrapping_add(r.ivarint()?);
        out.push(prev);
    }
    Ok(out)
}

/// Columns of at least this many times are decoded on two threads.
const PARALLEL_DELTAS: usize = 1 << 20;

/// [`decode_deltas`] on two threads: the times of a large segment are the longest part of
/// opening it, and a varint's first byte is found from anywhere (it follows a byte under
/// 0x80). The second half is decoded as if it started from zero, then shifted by the first
/// half's last time. None when the bytes do not hold exactly `n` varints (the one-thread
/// decoder then says what is wrong).
fn decode_deltas_in_halves(buf: &[u8], n: usize, what: &'static str) -> Option<Vec<i64>> {
    if buf.len() < n.max(2) {
        return None; // each varint takes a byte at least
    }
    let mut mid = buf.len() / 2;
    while mid < buf.len() && buf[mid - 1] >= 0x80 {
        mid += 1;
    }
    let (front, back) = buf.split_at(mid);
    // every varint ends in a byte under 0x80: the first half holds that many; the second half
    // must then hold exactly the rest, which its decoding checks (it must end at the end)
    let k = front.iter().filter(|&&b| b < 0x80).count();
    if k > n {
        return None;
    }
    let fill = |bytes: &[u8], out: &mut [i64]| -> Option<()> {
        let mut r = Reader::new(bytes, what);
        let mut prev = 0i64;
        for slot in out {
            prev = prev.wrapping_add(r.ivarint().ok()?);
            *slot = prev;
        }
        r.is_empty().then_some(())
    };
    let mut out = vec![0i64; n];
    let (first, second) = out.split_at_mut(k);
    let (a, b) = std::thread::scope(|s| {
        let b = s.spawn(|| fill(back, second));
        (fill(front, first), b.join().expect("decoding times"))
    });
    a.and(b)?;
    if let Some(&base) = out[..k].last() {
        for t in &mut out[k..] {
            *t = t.wrapping_add(base);
        }
    }
    Some(out)
}

pub fn encode_f64s(values: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 8);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

pub fn decode_f64s(buf: &[u8], n: usize, what: &'static str) -> Result<Vec<f64>> {
    if n.checked_mul(8) != Some(buf.len()) {
        return Err(StoreError::Corrupt(format!("{what}: wrong length")));
    }
    Ok(buf
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect())
}

pub fn encode_u64s(values: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 8);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

pub fn decode_u64s(buf: &[u8], n: usize, what: &'static str) -> Result<Vec<u64>> {
    if n.checked_mul(8) != Some(buf.len()) {
        return Err(StoreError::Corrupt(format!("{what}: wrong length")));
    }
    Ok(buf
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(v in any::<u64>(), i in any::<i64>()) {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            put_ivarint(&mut b, i);
            let mut r = Reader::new(&b, "t");
            prop_assert_eq!(r.uvarint().unwrap(), v);
            prop_assert_eq!(r.ivarint().unwrap(), i);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn varint_sequences_round_trip_far_from_and_near_the_end(vs in proptest::collection::vec(any::<u64>(), 0..40), shift in 0u32..64) {
            // values of every length, read where ten bytes are left and where fewer are
            let vs: Vec<u64> = vs.iter().map(|v| v >> shift).collect();
            let mut b = Vec::new();
            for v in &vs { put_uvarint(&mut b, *v); }
            let mut r = Reader::new(&b, "t");
            for v in &vs { prop_assert_eq!(r.uvarint().unwrap(), *v); }
            prop_assert!(r.is_empty());
            // an eleven-byte varint and a tenth byte over 1 are refused wherever they are
            let mut long = vec![0x80u8; 10];
            long.push(0);
            long.extend([0u8; 12]);
            prop_assert!(Reader::new(&long, "t").uvarint().is_err());
            let mut over = vec![0xffu8; 9];
            over.push(2);
            over.extend([0u8; 12]);
            prop_assert!(Reader::new(&over, "t").uvarint().is_err());
        }

        #[test]
        fn columns_round_trip(u in proptest::collection::vec(any::<u32>(), 0..200),
                              runs in proptest::collection::vec((0u32..5, 1usize..5), 0..50),
                              t in proptest::collection::vec(any::<i64>(), 0..200),
                              f in proptest::collection::vec(any::<f64>(), 0..50)) {
            prop_assert_eq!(decode_u32s(&encode_u32s(&u), u.len(), "t").unwrap(), u.clone());
            let r: Vec<u32> = runs.iter().flat_map(|(v, n)| std::iter::repeat_n(*v, *n)).collect();
            prop_assert_eq!(decode_runs(&encode_runs(&r), r.len(), "t").unwrap(), r);
            prop_assert_eq!(decode_deltas(&encode_deltas(&t), t.len(), "t").unwrap(), t);
            let back = decode_f64s(&encode_f64s(&f), f.len(), "t").unwrap();
            prop_assert_eq!(back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), f.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        }

        #[test]
        fn decoders_never_panic_on_garbage(b in proptest::collection::vec(any::<u8>(), 0..100), n in 0usize..50) {
            let _ = decode_u32s(&b, n, "t");
            let _ = decode_runs(&b, n, "t");
            let _ = decode_deltas(&b, n, "t");
            let _ = decode_deltas(&b, PARALLEL_DELTAS + n, "t");
            let _ = decode_f64s(&b, n, "t");
            let mut r = Reader::new(&b, "t");
            let _ = r.str();
            let _ = r.opt_str();
        }
    }

    proptest! {
        // each case decodes over a million times: a few cases, with garbage counts too
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn long_time_columns_decode_in_halves_as_in_one(t in proptest::collection::vec(any::<i64>(), 1..2000), step in 1i64..1_000_000_000) {
            // above the two-thread threshold: a ramp of times with the sampled ones spread in
            let n = PARALLEL_DELTAS + t.len();
            let times: Vec<i64> = (0..n)
                .map(|i| match i % (PARALLEL_DELTAS / t.len() + 1) {
                    0 => t[(i / (PARALLEL_DELTAS / t.len() + 1)) % t.len()],
                    _ => 1_700_000_000_000 + i as i64 * step,
                })
                .collect();
            let buf = encode_deltas(&times);
            prop_assert_eq!(decode_deltas_in_halves(&buf, n, "t"), Some(times.clone()));
            prop_assert_eq!(decode_deltas(&buf, n, "t").unwrap(), times);
            // a count that does not match the bytes is left to the one-thread decoder
            prop_assert_eq!(decode_deltas_in_halves(&buf, n + 1, "t"), None);
            prop_assert!(decode_deltas(&buf, n + 1, "t").is_err());
        }

    }
}
