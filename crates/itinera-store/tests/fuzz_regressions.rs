//! Every fuzz seed and every input that once crashed a fuzz target (`fuzz/regressions/`) goes
//! through the same decoding functions as the targets, on every test run.

use std::path::Path;

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

fn as_log(data: &[u8]) {
    let _ = itinera_store::check_log_record(data);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000001.log"), data).unwrap();
    let _ = itinera_store::wal::replay(dir.path(), 0, true, itinera_store::check_log_record);
}

fn as_segment(data: &[u8]) {
    let _ = itinera_store::delta::Delta::decode(data);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.seg");
    std::fs::write(&p, data).unwrap();
    if let Ok(seg) = itinera_store::segment::SegmentFile::open(&p) {
        let _ = seg.load_columns();
        let _ = seg.load_body_locs(1);
        let _ = seg.for_each_body(|_, _| Ok(()));
    }
}

#[test]
fn seeds_and_regressions_decode_without_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let logs = files(&root.join("seeds/log"));
    let segs = files(&root.join("seeds/segment"));
    assert!(
        !logs.is_empty() && !segs.is_empty(),
        "the seeds are in the repository"
    );
    for d in logs.iter().chain(&files(&root.join("regressions"))) {
        as_log(d);
    }
    for d in segs.iter().chain(&files(&root.join("regressions"))) {
        as_segment(d);
    }
    // the seed log is a real one: its batch decodes
    let log = std::fs::read(root.join("seeds/log/seed.log")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000001.log"), &log).unwrap();
    let mut frames = 0;
    itinera_store::wal::replay(dir.path(), 0, true, |p| {
        frames += 1;
        itinera_store::check_log_record(p)
    })
    .unwrap();
    assert!(frames >= 1);
}
