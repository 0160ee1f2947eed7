//! Segment and dictionary-delta decoding: arbitrary bytes as a segment file are opened, their
//! columns and messages decoded; as a delta file, decoded; as a message block, decoded. Errors are fine; panics are bugs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = itinera_store::delta::Delta::decode(data);
    // the column decoders behind the block checksums, reached directly
    if let Some((first, rest)) = data.split_first() {
        let n = *first as usize * 4;
        let _ = itinera_store::codec::decode_runs(rest, n, "fuzz");
        let _ = itinera_store::codec::decode_deltas(rest, n, "fuzz");
        let _ = itinera_store::codec::decode_u32s(rest, n, "fuzz");
        let _ = itinera_store::codec::decode_f64s(rest, n, "fuzz");
        let _ = itinera_store::codec::decode_u64s(rest, n, "fuzz");
        // a message block and its ids, split where the first byte says
        let (messages, ids) = rest.split_at(*first as usize * rest.len() / 256);
        let _ = itinera_store::message_block::decode(messages, ids);
        let _ = itinera_store::message_ids::decode(rest);
        let _ = itinera_store::message_block::decode_plain(rest.to_vec());
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.seg");
    std::fs::write(&p, data).unwrap();
    if let Ok(seg) = itinera_store::segment::SegmentFile::open(&p) {
        let _ = seg.load_columns();
        let _ = seg.load_body_locs(1);
        let _ = seg.for_each_body(|_, _| Ok(()));
    }
});
