//! Write-ahead log decoding: arbitrary bytes as a log file are replayed (frames checked, torn tail
//! cut) and every frame that passes its checksum is decoded as a record. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // the payload decoder on its own, without the checksum in front of it
    let _ = itinera_store::check_log_record(data);
    // the whole replay path on a file holding the bytes, framed and unframed
    let dir = tempfile::tempdir().unwrap();
    let mut framed = Vec::new();
    itinera_store::wal::frame(&mut framed, data);
    framed.extend_from_slice(data);
    std::fs::write(dir.path().join("00000000000000000001.log"), &framed).unwrap();
    let _ = itinera_store::wal::replay(dir.path(), 0, true, itinera_store::check_log_record);
});
