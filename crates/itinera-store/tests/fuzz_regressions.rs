//! The fuzz targets' decoding paths, checked on every test run:
//!
//! - every seed (`fuzz/seeds/`: a real log, log record, segment and dictionary delta) decodes
//!   completely and to what it holds;
//! - every damaged copy of a seed (each truncation and a flipped byte at many places) is reported
//!   as damage — an error, or a torn tail cut and counted — never accepted silently nor a panic;
//! - every input that once crashed a fuzz target (`fuzz/regressions/log/`, `…/segment/`) goes
//!   through its target's decoders again, and must be refused as damage.
//!
//! `scripts/test.sh` also runs the targets themselves for a bounded time (see `fuzz/README.md`).

use itinera_store::delta::Delta;
use itinera_store::segment::SegmentFile;
use itinera_store::wal::{self, ReplayReport};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(root().join(rel)).unwrap_or_else(|e| panic!("fuzz/{rel}: {e}"))
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| {
            let d = std::fs::read(&p).unwrap();
            (p, d)
        })
        .collect()
}

/// Replays `data` as the only (newest) log file; every surviving frame must decode.
fn replay(data: &[u8]) -> itinera_store::Result<ReplayReport> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000001.log"), data).unwrap();
    wal::replay(dir.path(), 0, true, itinera_store::check_log_record)
}

/// Opens `data` as a segment and decodes everything in it; the rows it holds.
fn decode_segment(data: &[u8]) -> itinera_store::Result<usize> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.seg");
    std::fs::write(&p, data).unwrap();
    let seg = SegmentFile::open(&p)?;
    let cols = seg.load_columns()?;
    seg.load_body_locs(1)?;
    let mut bodies = 0;
    seg.for_each_body(|_, _| {
        bodies += 1;
        Ok(())
    })?;
    assert_eq!(bodies, cols.len(), "every row has its message");
    Ok(cols.len())
}

/// Byte positions to damage: every one in small inputs, 257 spread over larger ones.
fn positions(len: usize) -> Vec<usize> {
    if len <= 512 {
        (0..len).collect()
    } else {
        (0..257).map(|i| i * (len - 1) / 256).collect()
    }
}

#[test]
fn seeds_decode_completely() {
    let payload = read("seeds/log/seed-payload");
    itinera_store::check_log_record(&payload).expect("the seed record decodes");
    let report = replay(&read("seeds/log/seed.log")).expect("the seed log replays");
    assert!(
        report.frames >= 1 && report.truncated_bytes == 0,
        "{report:?}"
    );
    // a segment and delta as written before format 4, and as written now (messages with the
    // server's fields cut out and their ids apart, no hash column; a compressed delta)
    for seg in ["small.seg", "ids.seg"] {
        let rows = decode_segment(&read(&format!("seeds/segment/{seg}")))
            .unwrap_or_else(|e| panic!("the seed segment {seg} decodes: {e}"));
        assert!(rows > 0);
    }
    for delta in ["0000000001.delta", "0000000002.delta"] {
        let delta = Delta::decode(&read(&format!("seeds/segment/{delta}")))
            .unwrap_or_else(|e| panic!("the seed delta {delta} decodes: {e}"));
        assert!(
            delta.dicts.iter().any(|(_, names)| !names.is_empty()),
            "the delta holds names"
        );
    }
}

#[test]
fn damaged_segments_and_deltas_are_refused() {
    for (name, decode) in [
        (
            "seeds/segment/small.seg",
            (|d: &[u8]| decode_segment(d).map(|_| ())) as fn(&[u8]) -> itinera_store::Result<()>,
        ),
        ("seeds/segment/ids.seg", |d: &[u8]| {
            decode_segment(d).map(|_| ())
        }),
        ("seeds/segment/0000000001.delta", |d: &[u8]| {
            Delta::decode(d).map(|_| ())
        }),
        ("seeds/segment/0000000002.delta", |d: &[u8]| {
            Delta::decode(d).map(|_| ())
        }),
    ] {
        let seed = read(name);
        for at in positions(seed.len()) {
            assert!(
                decode(&seed[..at]).is_err(),
                "{name} cut at {at} was accepted"
            );
            for flip in [0x01u8, 0x80] {
                let mut bad = seed.clone();
                bad[at] ^= flip;
                assert!(
                    decode(&bad).is_err(),
                    "{name} with byte {at} ^ {flip:#x} was accepted"
                );
            }
        }
    }
}

#[test]
fn damaged_logs_are_cut_and_counted_or_refused() {
    let seed = read("seeds/log/seed.log");
    let whole = replay(&seed).unwrap();
    for at in positions(seed.len()) {
        // a cut or a flipped byte in the newest file is a torn tail: cut off, counted, reported
        let cut = replay(&seed[..at]).expect("a torn tail is cut, not an error");
        assert!(
            cut.frames < whole.frames || at == seed.len(),
            "cut at {at}: {cut:?}"
        );
        assert_eq!(
            cut.truncated_bytes,
            at as u64 - cut_frames_len(&seed, cut.frames),
            "cut at {at}"
        );
        let mut bad = seed.clone();
        bad[at] ^= 0x10;
        let r = replay(&bad).expect("a damaged tail is cut, not an error");
        assert!(
            r.frames < whole.frames && r.truncated_bytes > 0,
            "byte {at} flipped: {r:?}"
        );
    }
    let payload = read("seeds/log/seed-payload");
    for at in positions(payload.len()) {
        // a record whose frame checksum held but whose bytes are short is an error
        assert!(
            itinera_store::check_log_record(&payload[..at]).is_err(),
            "record cut at {at}"
        );
    }
}

/// Length of the first `frames` frames of a log (8-byte header plus payload each).
fn cut_frames_len(log: &[u8], frames: u64) -> u64 {
    let mut pos = 0usize;
    for _ in 0..frames {
        let len = u32::from_le_bytes(log[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 8 + len;
    }
    pos as u64
}

#[test]
fn inputs_that_once_crashed_a_target_are_refused() {
    for (path, data) in files(&root().join("regressions/log")) {
        let record = itinera_store::check_log_record(&data);
        let mut framed = Vec::new();
        wal::frame(&mut framed, &data);
        let replayed = replay(&framed);
        assert!(
            record.is_err() || replayed.is_err(),
            "{} decodes as a valid record",
            path.display()
        );
    }
    for (path, data) in files(&root().join("regressions/segment")) {
        assert!(
            decode_segment(&data).is_err() && Delta::decode(&data).is_err(),
            "{} decodes as a valid segment or delta",
            path.display()
        );
        // the column decoders behind the block checksums, as the target reaches them: a
        // damaged count is an error, never a panic or a runaway allocation
        if let Some((n, rest)) = data.split_first() {
            let n = *n as usize * 4;
            use itinera_store::codec::*;
            let results = [
                decode_runs(rest, n, "fuzz").is_ok(),
                decode_deltas(rest, n, "fuzz").is_ok(),
                decode_u32s(rest, n, "fuzz").is_ok(),
                decode_f64s(rest, n, "fuzz").is_ok(),
                decode_u64s(rest, n, "fuzz").is_ok(),
            ];
            assert!(
                results.iter().all(|ok| !ok),
                "{}: {results:?}",
                path.display()
            );
        }
    }
}
