//! The manifest: the one file that says which segments, dictionary deltas and log files make up the
//! store. It is replaced atomically (write a temporary file, sync, rename, sync the directory), so a
//! crash at any moment leaves either the old or the new state, never a mix.

use crate::error::{Result, StoreError};
use crate::wal::sync_dir;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// The on-disk format this binary writes and understands. Format 2 added typed properties (three
/// segment columns and two dictionaries at the end of deltas); format 1 reads as having none.
/// Format 3 added segments whose messages are in other files (the `body_loc` column) and the
/// manifest's `holders`; a format-2 directory reads as having none.
/// Format 4 added message blocks with the server's fields cut out and the message ids in blocks
/// of their own, and files without a `msg_hash` column (`message_block`); the footer says which
/// form a file's messages have, so older files read as they are.
pub const FORMAT_VERSION: u32 = 4;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Manifest {
    pub format: u32,
    /// Increases with every commit; names new files.
    pub generation: u64,
    /// Log files numbered below this are in segments; replay starts here.
    pub wal_from: u64,
    /// Segment file names, oldest first.
    pub segments: Vec<String>,
    /// Dictionary/identity delta file names, in the order they apply.
    pub deltas: Vec<String>,
    /// Segment files whose columns were merged into newer segments but whose messages those
    /// segments still point to: kept for the messages only, until a full compaction.
    #[serde(default)]
    pub holders: Vec<String>,
}

impl Manifest {
    pub fn new() -> Self {
        Manifest {
            format: FORMAT_VERSION,
            generation: 0,
            wal_from: 1,
            segments: Vec::new(),
            deltas: Vec::new(),
            holders: Vec::new(),
        }
    }

    pub fn load(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join("MANIFEST");
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path)(e)),
        };
        // the format is checked before the rest, so a newer layout is refused with a clear message
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        let v: Version = serde_json::from_slice(&data)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
        if v.format > FORMAT_VERSION {
            return Err(StoreError::TooNew {
                found: v.format,
                supported: FORMAT_VERSION,
            });
        }
        let m: Manifest = serde_json::from_slice(&data)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
        Ok(Some(m))
    }

    pub fn commit(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join("MANIFEST.tmp");
        let data = serde_json::to_vec_pretty(self).expect("manifest serializes");
        let mut f = File::create(&tmp).map_err(StoreError::io(&tmp))?;
        f.write_all(&data).map_err(StoreError::io(&tmp))?;
        f.sync_all().map_err(StoreError::io(&tmp))?;
        fs::rename(&tmp, dir.join("MANIFEST")).map_err(StoreError::io(dir))?;
        sync_dir(dir)
    }
}
