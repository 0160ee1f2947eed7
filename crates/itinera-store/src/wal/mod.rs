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

    /// Cuts off whatever a failed write left after the last durable frame and syncs, so that
    /// appending can go on (after a full disk was freed).
    pub fn truncate_to_durable(&mut self) -> Result<()> {
        let path = self.dir.join(file_name(self.seq));
        self.file
            .set_len(self.bytes)
            .and_then(|_| self.file.sync_all())
            .map_err(StoreError::io(path))
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
    /// The files read were numbered `from`, `from + 1`, … without a gap (none missing at the
    /// start either): a reader beside the owner knows it saw the log its manifest names.
    pub complete: bool,
}

/// How a frame at some offset reads.
enum Frame {
    /// A whole frame whose checksum holds, ending at this offset.
    Good(usize),
    /// Damaged, with the reason; `fits`: its header names a length that lies inside the file.
    Bad(&'static str, bool),
    End,
}

fn read_frame(data: &[u8], pos: usize) -> Frame {
    if pos == data.len() {
        return Frame::End;
    }
    if data.len() - pos < 8 {
        return Frame::Bad("short frame header", false);
    }
    let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap());
    let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap());
    if len > MAX_FRAME {
        return Frame::Bad("frame length out of range", false);
    }
    let end = pos + 8 + len as usize;
    if end > data.len() {
        return Frame::Bad("short frame", false);
    }
    let payload = &data[pos + 8..end];
    if len == 0 || crc32fast::hash(payload) != crc {
        return Frame::Bad("checksum mismatch", true);
    }
    Frame::Good(end)
}

/// The offset of the first good frame after a damaged one at `pos`, if any: a frame header whose
/// length fits and whose checksum holds (a random match has odds of 2^-32 per candidate). Only
/// the next `SCAN_LIMIT` bytes are searched; a good frame further on is reported as well, since
/// a damaged region that long is no torn write.
fn next_good_frame(data: &[u8], pos: usize) -> Option<usize> {
    const SCAN_LIMIT: usize = 64 << 20;
    let stop = data.len().min(pos.saturating_add(SCAN_LIMIT));
    ((pos + 1)..stop)
        .find(|&p| matches!(read_frame(data, p), Frame::Good(..)))
        .or_else(|| (stop < data.len()).then_some(stop))
}

/// Damage found in a log file that is not a torn tail.
fn damaged(path: &Path, pos: usize, reason: &str, complete_file: bool) -> StoreError {
    StoreError::Corrupt(format!(
        "write-ahead log {}: {reason} at byte {pos}{}; acknowledged data may be in and after it, \
         so nothing is cut. `itinera recover` keeps the damaged bytes aside (FILE.damaged-OFFSET) \
         and the good frames around them (docs/storage.md)",
        path.display(),
        if complete_file {
            " in a file that was complete"
        } else {
            ", with good frames after it"
        }
    ))
}

/// Replays the log files numbered `from` on, calling `apply` with each payload in order.
///
/// Only a torn tail of the newest file is tolerated: the end of the last write, cut short by a
/// crash — a frame that runs past the end of the file, or a last frame whose checksum fails, or
/// zeros after the last good frame, with no good frame after it. It is cut off when
/// `cut_torn_tail` (the owner of the store) and otherwise only skipped (a reader beside the
/// owner, who may be writing it right now). Damage anywhere else is an error naming file and
/// offset: see [`recover`].
pub fn replay(
    dir: &Path,
    from: u64,
    cut_torn_tail: bool,
    mut apply: impl FnMut(&[u8]) -> Result<()>,
) -> Result<ReplayReport> {
    replay_pinned(pin(dir, from)?, cut_torn_tail, |frame| apply(&frame[8..]))
}

/// The log files numbered `from` on, opened: a reader beside a live writer pins them as soon
/// as it has read the manifest, so that a flush that deletes them meanwhile (they are then
/// in a segment the reader's manifest does not name) cannot take them away from under it.
pub struct PinnedLog {
    files: Vec<(u64, PathBuf, File)>,
    from: u64,
    /// The files run from `from` without a gap: nothing was deleted between the manifest's
    /// reading and the pinning.
    pub complete: bool,
}

/// Opens the log files of `dir` numbered `from` on (see [`PinnedLog`]).
pub fn pin(dir: &Path, from: u64) -> Result<PinnedLog> {
    let seqs: Vec<u64> = list(dir)?.into_iter().filter(|s| *s >= from).collect();
    let mut files = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let path = dir.join(file_name(seq));
        match File::open(&path) {
            Ok(f) => files.push((seq, path, f)),
            // deleted between the listing and the opening: the run has a gap now
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&path)(e)),
        }
    }
    let complete = files.first().is_none_or(|f| f.0 == from.max(1))
        && files.windows(2).all(|w| w[1].0 == w[0].0 + 1);
    Ok(PinnedLog {
        files,
        from,
        complete,
    })
}

/// [`replay`] of pinned log files, calling `apply` with each whole frame (header and payload).
pub fn replay_pinned(
    pinned: PinnedLog,
    cut_torn_tail: bool,
    mut apply: impl FnMut(&[u8]) -> Result<()>,
) -> Result<ReplayReport> {
    let mut report = ReplayReport {
        last_seq: pinned.files.last().map_or(pinned.from, |f| f.0),
        files: pinned.files.len(),
        complete: pinned.complete,
        ..Default::default()
    };
    let n = pinned.files.len();
    for (i, (_, path, mut file)) in pinned.files.into_iter().enumerate() {
        let last = i + 1 == n;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(StoreError::io(&path))?;
        let mut pos = 0usize;
        let bad = loop {
            match read_frame(&data, pos) {
                Frame::End => break None,
                Frame::Good(end) => {
                    apply(&data[pos..end])?;
                    report.frames += 1;
                    pos = end;
                }
                Frame::Bad(reason, fits) => break Some((reason, fits)),
            }
        };
        let Some((reason, fits)) = bad else { continue };
        if !last {
            return Err(damaged(&path, pos, reason, true));
        }
        let zeros = data[pos..].iter().all(|b| *b == 0);
        let frame_end = fits.then(|| {
            let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            pos + 8 + len
        });
        let torn = zeros
            || (frame_end.is_none_or(|e| e == data.len()) && next_good_frame(&data, pos).is_none());
        if !torn {
            return Err(damaged(&path, pos, reason, false));
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
    Ok(report)
}

/// What [`recover`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoverReport {
    /// Files a damaged region was taken out of, with the file it was kept in.
    pub set_aside: Vec<(PathBuf, PathBuf, u64)>,
    /// Good frames left in the log.
    pub frames: u64,
}

/// Takes every damaged region out of the log files of `dir` and keeps it beside them in
/// `FILE.damaged-OFFSET` (nothing is deleted), leaving the good frames before and after it, so
/// that the store opens again. Only for a store that no process has open. The frames that were
/// in a damaged region are lost to the store: their messages can be read from the kept file by
/// hand, or sent again (duplicates are recognised by message id).
pub fn recover(dir: &Path) -> Result<RecoverReport> {
    let mut report = RecoverReport::default();
    for seq in list(dir)? {
        let path = dir.join(file_name(seq));
        let mut data = fs::read(&path).map_err(StoreError::io(&path))?;
        let mut pos = 0usize;
        let mut changed = false;
        loop {
            match read_frame(&data, pos) {
                Frame::End => break,
                Frame::Good(end) => {
                    report.frames += 1;
                    pos = end;
                }
                Frame::Bad(..) => {
                    let to = next_good_frame(&data, pos).unwrap_or(data.len());
                    let kept = path.with_file_name(format!("{}.damaged-{pos}", file_name(seq)));
                    fs::write(&kept, &data[pos..to]).map_err(StoreError::io(&kept))?;
                    File::open(&kept)
                        .and_then(|f| f.sync_all())
                        .map_err(StoreError::io(&kept))?;
                    report
                        .set_aside
                        .push((path.clone(), kept, (to - pos) as u64));
                    data.drain(pos..to);
                    changed = true;
                }
            }
        }
        if changed {
            let tmp = path.with_extension("log.recovering");
            fs::write(&tmp, &data).map_err(StoreError::io(&tmp))?;
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(StoreError::io(&tmp))?;
            fs::rename(&tmp, &path).map_err(StoreError::io(&path))?;
            sync_dir(dir)?;
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

    /// Three frames in the newest file, durable.
    fn three(dir: &Path) -> (PathBuf, Vec<u8>) {
        let mut w = WalWriter::open(dir, 1).unwrap();
        let mut b = Vec::new();
        for p in [
            &b"\x01first-batch"[..],
            b"\x01second-batch",
            b"\x01third-batch",
        ] {
            frame(&mut b, p);
        }
        w.append_durable(&b).unwrap();
        drop(w);
        (dir.join(file_name(1)), b)
    }

    /// A flipped byte in a frame with good frames after it is damage, not a torn write: an
    /// error naming the file and offset, and nothing is cut.
    #[test]
    fn damage_before_good_frames_is_an_error_and_cuts_nothing() {
        // frames of 20, 21 and 20 bytes: the second starts at byte 20
        for at in [20 + 8 + 3, 20 + 1] {
            // in the second frame's payload, then in its length field
            let dir = tempfile::tempdir().unwrap();
            let (path, mut data) = three(dir.path());
            data[at] ^= 0x04;
            fs::write(&path, &data).unwrap();
            let err = replay(dir.path(), 0, true, |_| Ok(()))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("at byte 20") && err.contains("good frames after it"),
                "{at}: {err}"
            );
            assert!(err.contains("itinera recover"), "{err}");
            assert_eq!(fs::read(&path).unwrap(), data, "nothing was cut");
        }
    }

    /// The end of the last write cut short, or zeros after the last good frame (space the file
    /// system allocated but the crash never filled): a torn tail, cut.
    #[test]
    fn torn_and_zero_filled_tails_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = three(dir.path());
        let mut zeros = data.clone();
        zeros.extend_from_slice(&[0; 4096]);
        fs::write(&path, &zeros).unwrap();
        let r = replay(dir.path(), 0, true, |_| Ok(())).unwrap();
        assert_eq!((r.frames, r.truncated_bytes), (3, 4096));
        // a flipped byte in the last frame: it may be the torn write itself
        let mut last = data.clone();
        let n = last.len();
        last[n - 2] ^= 0x01;
        fs::write(&path, &last).unwrap();
        let r = replay(dir.path(), 0, true, |_| Ok(())).unwrap();
        assert_eq!((r.frames, r.truncated_bytes), (2, 8 + 12));
    }

    /// `recover` keeps the damaged frame aside, byte for byte, and every good frame around it.
    #[test]
    fn recover_sets_damage_aside_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut data) = three(dir.path());
        data[20 + 8 + 3] ^= 0x04;
        fs::write(&path, &data).unwrap();
        let r = recover(dir.path()).unwrap();
        assert_eq!(r.frames, 2);
        assert_eq!(r.set_aside.len(), 1);
        let (from, kept, bytes) = &r.set_aside[0];
        assert_eq!(from, &path);
        assert_eq!(*bytes, 8 + 13);
        assert_eq!(fs::read(kept).unwrap(), &data[20..41]);
        assert_eq!(
            frames(dir.path()),
            vec![b"\x01first-batch".to_vec(), b"\x01third-batch".to_vec()]
        );
        assert_eq!(
            recover(dir.path()).unwrap().set_aside,
            vec![],
            "nothing left to set aside"
        );
    }
}
