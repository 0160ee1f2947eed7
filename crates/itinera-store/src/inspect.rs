//! What a store's file holds, readable: for checking that a text (an erased person's id) is in
//! no file, where segments and dictionary deltas keep their strings compressed.

use crate::delta::Delta;
use crate::error::Result;
use crate::segment::SegmentFile;
use std::path::Path;

/// The file's bytes, followed by a segment's messages or a delta's dictionary names decoded.
pub fn readable_bytes(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = std::fs::read(path).map_err(crate::StoreError::io(path))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("seg") => SegmentFile::open(path)?.for_each_body(|_, message| {
            bytes.extend_from_slice(message.as_bytes());
            Ok(())
        })?,
        Some("delta") => {
            for (_, names) in &Delta::read(path)?.dicts {
                names
                    .iter()
                    .for_each(|n| bytes.extend_from_slice(n.as_bytes()));
            }
        }
        _ => {}
    }
    Ok(bytes)
}
