//! The write-ahead log: numbered files of checksummed frames.
//!
//! Frame: `[u32 LE payload length][u32 LE crc32 of payload][payload]`. A batch of frames is written
//! with one `write` and made durable with one `fdatasync` (group commit: the writer thread collects
//! every request waiting at that moment). On replay a frame that is short or fails its checksum at
//! the end of the newest file is a torn write from a crash: the file is cut there and the cut is
//! logged. The same in an older file, which was complete when the log moved on, is corruption and
//! is reported as an error.

use crate::error::{Result, StoreError};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub(crate) mod record;

/// Largest frame accepted on replay; anything larger is corruption.
pub const MAX_FRAME: u32 = 256 * 1024 * 1024;

pub fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    frame_with(out, |o| o.extend_from_slice(payload));
}

/// Appends one frame whose payload `write` appends straight to `out` (no copy of the payload).
pub fn frame_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    write(out);
    let payload = &out[start + 8..];
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32fast::hash(payload).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc);
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}.log")
}

/// The numbers of the log files present, ascending.
pub fn list(dir: &Path) -> Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for e in fs::read_dir(dir).map_err(StoreError::io(dir))? {
        let e = e.map_err(StoreError::io(dir))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_suffix(".log")
            .and_then(|s| s.parse::<u64>().ok())
        {
            seqs.push(n);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(dir))
}

/// The open end of the log.
pub struct WalWriter {
    dir: PathBuf,
    file: File,
    seq: u64,
    bytes: u64,
}

impl WalWriter {
    /// Opens (or creates) log file `seq` for appending.
    pub fn open(dir: &Path, seq: u64) -> Result<Self> {
        let path = dir.join(file_name(seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(StoreError::io(&path))?;
        let bytes = file.metadata().map_err(StoreError::io(&path))?.len();
        sync_dir(dir)?;
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            file,
            seq,
            bytes,
        })
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes already framed bytes and syncs them to stable storage.
    pub fn append_durable(&mut self, framed: &[u8]) -> Result<()> {
        let path = || self.dir.join(file_name(self.seq));
        self.file
            .write_all(framed)
            .map_err(StoreError::io(path()))?;
        self.file.sync_data().map_err(StoreError::io(path()))?;
        self.bytes += framed.len() as u64;
        Ok(())
    }

    /// Starts the next file; everything before it is complete and synced.
    pub fn rotate(&mut self) -> Result<u64> {
        let path = self.dir.join(file_name(self.seq));
        self.file.sync_all().map_err(StoreError::io(&path))?;
        *self = WalWriter::open(&self.dir, self.seq + 1)?;
        Ok(self.seq)
    }
}

/// Deletes the log files numbered below `seq` (their content is in segments now).
pub fn remove_before(dir: &Path, seq: u64) -> Result<()> {
    for s in list(dir)? {
        if s < seq {
            let p = dir.join(file_name(s));
            fs::remove_file(&p).map_err(StoreError::io(&p))?;
        }
    }
    sync_dir(dir)
}

/// What replay found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub frames: u64,
    pub files: usize,
    /// Bytes cut off a torn tail, if any.
    pub truncated_bytes: u64,
    /// The last file's number, where appending continues.
    pub last_seq: u64,
}

/// Reads every frame of files numbered `from` and later, in order, calling `apply` with each
/// payload. Cuts a torn tail of the last file; errors on damage anywhere else.
/// Replays the log files numbered `from` on. `cut_torn_tail`: a torn tail of the newest file is
/// cut off (the owner of the store); otherwise it is only skipped (a reader beside the owner,
/// who may be writing it right now).
pub fn replay(
    dir: &Path,
    from: u64,
    cut_torn_tail: bool,
    mut apply: impl FnMut(&[u8]) -> Result<()>,
) -> Result<ReplayReport> {
    let seqs: Vec<u64> = list(dir)?.into_iter().filter(|s| *s >= from).collect();
    let mut report = ReplayReport {
        last_seq: seqs.last().copied().unwrap_or(from),
        files: seqs.len(),
        ..Default::default()
    };
    for (i, seq) in seqs.iter().enumerate() {
        let last = i + 1 == seqs.len();
        let path = dir.join(file_name(*seq));
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(StoreError::io(&path))?;
        let mut pos = 0usize;
        let bad = loop {
            if pos == data.len() {
                break None;
            }
            if data.len() - pos < 8 {
                break Some("short frame header");
            }
            let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap());
            let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap());
            if len > MAX_FRAME {
                break Some("frame length out of range");
            }
            let end = pos + 8 + len as usize;
            if end > data.len() {
                break Some("short frame");
            }
            let payload = &data[pos + 8..end];
            if crc32fast::hash(payload) != crc {
                break Some("checksum mismatch");
            }
            apply(payload)?;
            report.frames += 1;
            pos = end;
        };
        if let Some(reason) = bad {
            if !last {
                return Err(StoreError::Corrupt(format!(
                    "write-ahead log {}: {reason} at byte {pos} in a file that was complete",
                    path.display()
                )));
            }
            let cut = data.len() - pos;
            if !cut_torn_tail {
                break;
            }
            tracing::warn!(file = %path.display(), offset = pos, bytes = cut, reason, "cutting torn tail of write-ahead log");
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(StoreError::io(&path))?;
            f.set_len(pos as u64).map_err(StoreError::io(&path))?;
            f.sync_all().map_err(StoreError::io(&path))?;
            report.truncated_bytes = cut as u64;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(dir: &Path) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        replay(dir, 0, true, |p| {
            out.push(p.to_vec());
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn torn_tail_is_cut_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::open(dir.path(), 1).unwrap();
        let mut b = Vec::new();
        frame(&mut b, b"one");
        frame(&mut b, b"two");
        w.append_durable(&b).unwrap();
        let good = w.bytes();
        let mut torn = Vec::new();
        frame(&mut torn, b"three-is-long");
        w.append_durable(&torn[..torn.len() - 3]).unwrap();
        drop(w);
        assert_eq!(frames(dir.path()), vec![b"one".to_vec(), b"two".to_vec()]);
        let len = fs::metadata(dir.path().join(file_name(1))).unwrap().len();
        assert_eq!(len, good, "the torn tail was cut");
        // and appending continues cleanly after the cut
        let mut w = WalWriter::open(dir.path(), 1).unwrap();
        let mut b = Vec::new();
        frame(&mut b, b"four");
        w.append_durable(&b).unwrap();
        assert_eq!(frames(dir.path()).len(), 3);
    }

    #[test]
    fn flipped_bit_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::open(dir.path(), 1).unwrap();
        let mut b = Vec::new();
        frame(&mut b, b"payload-a");
        frame(&mut b, b"payload-b");
        w.append_durable(&b).unwrap();
        w.rotate().unwrap();
        drop(w);
        let p = dir.path().join(file_name(1));
        let mut data = fs::read(&p).unwrap();
        data[10] ^= 0x40;
        fs::write(&p, &data).unwrap();
        let err = replay(dir.path(), 0, true, |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }
}
