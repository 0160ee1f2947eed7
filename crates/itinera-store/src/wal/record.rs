use crate::codec::Reader;
use crate::columns::{decode_touchpoint_parts, encode_touchpoint, message_hash, Texts};
use crate::error::{Result, StoreError};
use crate::wal::frame_with;
use itinera_core::Touchpoint;

pub(crate) const REC_TOUCHPOINTS: u8 = 1;
pub(crate) const REC_ERASE: u8 = 2;
/// A `REC_TOUCHPOINTS` record compressed with LZ4: `[3][uvarint raw length][LZ4 block]`. The
/// log is most of what ingestion writes (the messages and their typed fields, which repeat
/// names and ids), and compressing it in the appending thread took most of the writer
/// thread's system time (copying into the page cache and syncing) away.
pub(crate) const REC_LZ4: u8 = 3;
/// Records up to this size (before compression) are compressed.
pub(crate) const LZ4_MAX_RAW: usize = 1 << 30;

pub(crate) enum Record {
    Touchpoints(Rows),
    Erase { id: String, at_ms: i64 },
}

/// Touchpoints ready for the memory table, from a batch just written or a record read back
/// from the log: what applying them needs.
pub(crate) struct Rows {
    /// The touchpoints; their messages are in `framed`, not here.
    pub(crate) touchpoints: Vec<Touchpoint>,
    /// Their message ids' hashes.
    pub(crate) hashes: Vec<u64>,
    /// The framed log record holding them (the memory table reads their messages from it).
    pub(crate) framed: Vec<u8>,
}

/// A batch of touchpoints made ready for the writer by the thread that appends it: its log
/// record encoded, its message-id hashes and its bodies gathered. The writer thread is the one
/// serial step of ingestion, so it only checks duplicates, writes, syncs and interns.
pub(crate) struct Prepared {
    /// The touchpoints, their bodies moved to `bodies`.
    pub(crate) touchpoints: Vec<Touchpoint>,
    pub(crate) bodies: Texts,
    pub(crate) hashes: Vec<u64>,
    /// The whole batch as one framed log record.
    pub(crate) framed: Vec<u8>,
}

impl Prepared {
    pub(crate) fn new(mut touchpoints: Vec<Touchpoint>) -> Prepared {
        let mut bodies = Texts::with_capacity(
            touchpoints.len(),
            touchpoints.iter().map(|t| t.body.len()).sum(),
        );
        for t in &mut touchpoints {
            bodies.push(&std::mem::take(&mut t.body));
        }
        let hashes = touchpoints
            .iter()
            .map(|t| message_hash(&t.message_id))
            .collect();
        Prepared::encoded(touchpoints, bodies, hashes)
    }

    pub(crate) fn encoded(
        touchpoints: Vec<Touchpoint>,
        bodies: Texts,
        hashes: Vec<u64>,
    ) -> Prepared {
        let framed = encode_record(&touchpoints, &bodies);
        Prepared {
            touchpoints,
            bodies,
            hashes,
            framed,
        }
    }

    /// The batch as rows for the memory table.
    pub(crate) fn rows(self) -> Rows {
        Rows {
            touchpoints: self.touchpoints,
            hashes: self.hashes,
            framed: self.framed,
        }
    }

    /// The rows for which `keep` holds, as a batch of their own.
    pub(crate) fn retain(self, keep: &[bool]) -> Prepared {
        let mut bodies = Texts::default();
        let mut touchpoints = Vec::new();
        let mut hashes = Vec::new();
        for (i, t) in self.touchpoints.into_iter().enumerate() {
            if keep[i] {
                bodies.push(self.bodies.get(i));
                touchpoints.push(t);
                hashes.push(self.hashes[i]);
            }
        }
        Prepared::encoded(touchpoints, bodies, hashes)
    }
}

thread_local! {
    /// The raw record and its compressed frame, kept by each appending thread across batches.
    /// Fresh buffers of a batch's size at every append cost more than the encoding: their pages
    /// came back from the allocator zeroed by the kernel (about a fifth of the samples of an HTTP
    /// ingestion profile, 2026-12-02).
    static RECORD_SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = Default::default();
}

/// One framed `REC_TOUCHPOINTS` log record, compressed (`REC_LZ4`), in a buffer of its size.
pub(crate) fn encode_record(touchpoints: &[Touchpoint], bodies: &Texts) -> Vec<u8> {
    RECORD_SCRATCH.with(|scratch| {
        let (raw, out) = &mut *scratch.borrow_mut();
        raw.clear();
        out.clear();
        raw.push(REC_TOUCHPOINTS);
        crate::codec::put_uvarint(raw, touchpoints.len() as u64);
        for (i, t) in touchpoints.iter().enumerate() {
            encode_touchpoint(raw, t, bodies.get(i));
        }
        frame_with(out, |p| {
            if raw.len() > LZ4_MAX_RAW {
                p.extend_from_slice(raw);
                return;
            }
            p.push(REC_LZ4);
            crate::codec::put_uvarint(p, raw.len() as u64);
            let start = p.len();
            p.resize(
                start + lz4_flex::block::get_maximum_output_size(raw.len()),
                0,
            );
            let n = lz4_flex::block::compress_into(raw, &mut p[start..])
                .expect("the output has the maximum compressed size");
            p.truncate(start + n);
        });
        // a batch far larger than usual does not keep its buffers for good
        if raw.capacity() > SCRATCH_KEPT_BYTES {
            *raw = Vec::new();
        }
        let framed = out.to_vec();
        if out.capacity() > SCRATCH_KEPT_BYTES {
            *out = Vec::new();
        }
        framed
    })
}

/// Largest scratch buffer an appending thread keeps between batches.
pub(crate) const SCRATCH_KEPT_BYTES: usize = 4 << 20;

/// Decodes one log record payload and drops it: the entry point of the log fuzz target.
pub fn check_log_record(payload: &[u8]) -> Result<()> {
    decode_record(payload).map(|_| ())
}

/// The messages of a framed touchpoints record made by [`encode_record`] (kept in memory by
/// the chunk it was applied to), in row order, without decoding the touchpoints around them.
pub(crate) fn bodies_of(framed: &[u8]) -> Result<Texts> {
    let payload = framed
        .get(8..)
        .ok_or_else(|| StoreError::Corrupt("memory chunk record: too short".into()))?;
    let raw;
    let record = match payload.first() {
        Some(&REC_LZ4) => {
            raw = lz4_touchpoints(payload)?;
            &raw[..]
        }
        _ => payload,
    };
    let mut r = Reader::new(record, "memory chunk record");
    if r.u8()? != REC_TOUCHPOINTS {
        return Err(StoreError::Corrupt(
            "memory chunk record: not touchpoints".into(),
        ));
    }
    let n = r.len()?;
    let mut bodies = Texts::with_capacity(n, r.remaining());
    for _ in 0..n {
        crate::columns::skip_to_body(&mut r)?;
        bodies.push(r.str()?);
    }
    Ok(bodies)
}

/// The touchpoints record a `REC_LZ4` payload holds, decompressed.
fn lz4_touchpoints(payload: &[u8]) -> Result<Vec<u8>> {
    let mut r = Reader::new(payload, "log record");
    r.u8()?;
    let raw_len = usize::try_from(r.uvarint()?).unwrap_or(usize::MAX);
    let comp = &payload[payload.len() - r.remaining()..];
    // LZ4 expands at most 255-fold: a larger length is damage, not a record
    if raw_len > LZ4_MAX_RAW || raw_len > comp.len().saturating_mul(255) {
        return Err(StoreError::Corrupt(format!(
            "log record: compressed length {raw_len} out of range"
        )));
    }
    let raw = lz4_flex::block::decompress(comp, raw_len)
        .map_err(|e| StoreError::Corrupt(format!("log record: {e}")))?;
    if raw.first() != Some(&REC_TOUCHPOINTS) {
        return Err(StoreError::Corrupt(
            "log record: compressed record is not touchpoints".into(),
        ));
    }
    Ok(raw)
}

/// Decodes one log record payload (its touchpoints without their frame).
pub(crate) fn decode_record(payload: &[u8]) -> Result<Record> {
    let mut r = Reader::new(payload, "log record");
    match r.u8()? {
        REC_LZ4 => decode_record(&lz4_touchpoints(payload)?),
        REC_TOUCHPOINTS => {
            let n = r.len()?;
            let mut touchpoints = Vec::with_capacity(n);
            let mut hashes = Vec::with_capacity(n);
            for _ in 0..n {
                let (t, message_id, _) = decode_touchpoint_parts(&mut r)?;
                touchpoints.push(t);
                hashes.push(message_hash(message_id));
            }
            Ok(Record::Touchpoints(Rows {
                touchpoints,
                hashes,
                framed: Vec::new(),
            }))
        }
        REC_ERASE => {
            let id = r.str()?.to_string();
            let at_ms = r.ivarint()?;
            Ok(Record::Erase { id, at_ms })
        }
        t => Err(StoreError::Corrupt(format!("log record: unknown type {t}"))),
    }
}

/// A log frame (header, then payload) read back for the memory table. Its touchpoints keep the
/// frame as the log holds it, so that a replay neither encodes nor compresses them again.
pub(crate) fn read_record(frame: Vec<u8>) -> Result<Record> {
    let payload = frame
        .get(8..)
        .ok_or_else(|| StoreError::Corrupt("log record: shorter than its header".into()))?;
    Ok(match decode_record(payload)? {
        Record::Touchpoints(rows) => Record::Touchpoints(Rows {
            framed: frame,
            ..rows
        }),
        erase => erase,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use itinera_core::MessageType;

    fn touchpoints(n: usize) -> Vec<Touchpoint> {
        (0..n)
            .map(|i| Touchpoint {
                kind: MessageType::Track,
                message_id: format!("m{i}"),
                timestamp_ms: 1_700_000_000_000 + i as i64,
                received_at_ms: 1_700_000_000_000,
                user_id: Some(format!("u{}", i % 7)),
                anonymous_id: None,
                previous_id: None,
                group_id: None,
                event: "Product Viewed".into(),
                channel: "search".into(),
                touchpoint: "Product Viewed".into(),
                revenue: (i % 3 == 0).then_some(9.5),
                props: Vec::new(),
                body: format!(r#"{{"type":"track","event":"Product Viewed","messageId":"m{i}"}}"#),
            })
            .collect()
    }

    /// The payload of the one frame `encode_record` writes.
    fn payload(framed: &[u8]) -> &[u8] {
        let len = u32::from_le_bytes(framed[..4].try_into().unwrap()) as usize;
        assert_eq!(framed.len(), 8 + len);
        &framed[8..]
    }

    #[test]
    fn log_records_are_compressed_and_read_back() {
        let p = Prepared::new(touchpoints(500));
        let rec = payload(&p.framed);
        assert_eq!(rec[0], REC_LZ4);
        let raw_size: usize = p.bodies.byte_len() + 500 * 40;
        assert!(rec.len() * 3 < raw_size, "{} of {raw_size}", rec.len());
        let Record::Touchpoints(back) = read_record(p.framed.clone()).unwrap() else {
            panic!("not touchpoints")
        };
        assert_eq!(back.hashes, p.hashes);
        assert_eq!(back.touchpoints.len(), 500);
        assert_eq!(back.hashes[42], message_hash("m42"));
        assert_eq!(back.touchpoints[42].revenue, Some(9.5));
        // the frame is kept as written, and holds the messages
        assert_eq!(back.framed, p.framed);
        assert_eq!(bodies_of(&back.framed).unwrap().get(42), p.bodies.get(42));
    }

    #[test]
    fn a_memory_chunk_reads_its_messages_back_from_its_record() {
        let p = Prepared::new(touchpoints(300));
        let all: Vec<String> = p.bodies.iter().map(str::to_string).collect();
        assert_eq!(
            bodies_of(&p.framed).unwrap().iter().collect::<Vec<_>>(),
            all
        );
        // the record of a batch that had duplicates holds the rows kept, in order
        let keep: Vec<bool> = (0..300).map(|i| i % 3 != 1).collect();
        let kept = p.retain(&keep);
        let want: Vec<&String> = all
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(b, _)| b)
            .collect();
        let got = bodies_of(&kept.framed).unwrap();
        assert_eq!(got.iter().collect::<Vec<_>>(), want);
        assert!(
            bodies_of(&kept.framed[..20]).is_err(),
            "a cut record is an error"
        );
    }

    #[test]
    fn damaged_compressed_records_are_errors() {
        let p = Prepared::new(touchpoints(200));
        let rec = payload(&p.framed).to_vec();
        // every truncation and a flipped byte anywhere: an error or a record, never a panic
        for cut in 0..rec.len() {
            let _ = decode_record(&rec[..cut]);
        }
        for at in 0..rec.len() {
            let mut bad = rec.clone();
            bad[at] ^= 0x5a;
            let _ = decode_record(&bad);
        }
        // a claimed length beyond what LZ4 can expand to is refused before any allocation
        let mut huge = vec![REC_LZ4];
        crate::codec::put_uvarint(&mut huge, 1 << 29);
        huge.extend_from_slice(&[0x10, 0x41]);
        let err = decode_record(&huge).err().expect("refused").to_string();
        assert!(err.contains("out of range"), "{err}");
        // a compressed record must hold touchpoints, not another compressed record
        let mut nested = vec![REC_LZ4];
        crate::codec::put_uvarint(&mut nested, rec.len() as u64);
        nested.extend_from_slice(&lz4_flex::block::compress(&rec));
        assert!(decode_record(&nested).is_err());
    }
}
