//! Immutable columnar segment files, rows grouped by person and sorted by time.
//!
//! Layout: `ITSEG001`, then compressed blocks (one per column, and the full messages in blocks of
//! [`BODY_BLOCK_ROWS`] rows), then a JSON footer, its length and checksum, and `ITSEGEND`. Every
//! block carries a crc32 of its compressed bytes; a damaged block is reported, never decoded.
//! Column encodings: the person column as runs, time as deltas, codes as varints; all compressed
//! with zstd.
//!
//! A segment written by a flush or a full compaction holds its rows' messages. One written by a
//! background compaction holds none: its `body_loc` column says for each row which file (by
//! generation) and which row of that file holds the message, so merging segments rewrites only
//! the columns, and each message is compressed once (see `docs/storage.md`).

use crate::codec;
use crate::columns::Columns;
use crate::error::{Result, StoreError};
use crate::lazy::Col;
use crate::message_block;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"ITSEG001";
const END: &[u8; 8] = b"ITSEGEND";
pub const BODY_BLOCK_ROWS: usize = 8192;
const COLUMN_LEVEL: i32 = 3;
/// Level 6: zstd's lazy matching finds the long repeats between messages that levels 3 and 4
/// miss (a third fewer bytes for the cut texts, at about half the speed of level 3 on them).
const BODY_LEVEL: i32 = 6;
const BODY_FORMAT: u8 = 1;

/// Where one compressed block is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockRef {
    pub offset: u64,
    pub len: u64,
    pub raw_len: u64,
    pub crc: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Footer {
    pub rows: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    /// The latest receive time of the rows (absent in files written before it was kept): a
    /// writer skips the duplicate check's columns of files received before its window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_received_at: Option<i64>,
    pub columns: Vec<(String, BlockRef)>,
    pub bodies: Vec<BlockRef>,
    /// How the message blocks are encoded: 0 (files written before it was kept) the texts as
    /// they are, 1 as [`message_block`] writes them, with their ids in `ids`.
    #[serde(default)]
    pub body_format: u8,
    /// The message ids of each block of `bodies` (format 1). A file whose ids all hash to the
    /// rows' message hashes keeps no `msg_hash` column: the hashes are computed from the ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<BlockRef>,
}

impl Footer {
    pub fn column(&self, name: &str) -> Option<&BlockRef> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }

    /// Compressed bytes of the named columns.
    pub fn bytes_of(&self, names: &[&str]) -> u64 {
        names
            .iter()
            .filter_map(|n| self.column(n))
            .map(|b| b.len)
            .sum()
    }

    pub fn body_bytes(&self) -> u64 {
        self.bodies.iter().map(|b| b.len).sum()
    }

    /// True when the messages of the rows are in this file (not found through `body_loc`).
    pub fn holds_bodies(&self) -> bool {
        self.column(BODY_LOC).is_none()
    }
}

/// The column of segments whose messages are in other files: per row, `generation << 32 | row`.
const BODY_LOC: &str = "body_loc";

/// Where a row's message is: the generation of the file holding it and the row in that file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BodyLoc(pub u64);

impl BodyLoc {
    pub fn new(generation: u32, row: u32) -> BodyLoc {
        BodyLoc((generation as u64) << 32 | row as u64)
    }

    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub fn row(self) -> usize {
        (self.0 & u32::MAX as u64) as usize
    }
}

struct BlockWriter<W: Write> {
    out: W,
    pos: u64,
}

impl<W: Write> BlockWriter<W> {
    fn block(&mut self, raw: &[u8], level: i32) -> std::io::Result<BlockRef> {
        let comp = zstd::bulk::compress(raw, level)?;
        let r = BlockRef {
            offset: self.pos,
            len: comp.len() as u64,
            raw_len: raw.len() as u64,
            crc: crc32fast::hash(&comp),
        };
        self.out.write_all(&comp)?;
        self.pos += comp.len() as u64;
        Ok(r)
    }
}

/// Writes a segment file from sorted columns and the matching messages, then syncs it.
/// The messages come as results: a failure to read one (compaction streams them from other
/// segments) stops the write and is returned.
pub fn write(
    path: &Path,
    cols: &Columns,
    bodies: impl Iterator<Item = Result<String>>,
) -> Result<Footer> {
    let mut w = SegmentWriter::create(path, cols.len())?;
    w.typed_columns(cols)?;
    w.messages(bodies, &cols.msg_hash)?;
    w.finish(&cols.msg_hash)
}

/// Writes a segment file whose messages stay where `locs` (one per row) says, then syncs it.
pub fn write_located(path: &Path, cols: &Columns, locs: &[BodyLoc]) -> Result<Footer> {
    let mut w = SegmentWriter::create(path, cols.len())?;
    w.typed_columns(cols)?;
    w.located(locs)?;
    w.finish(&cols.msg_hash)
}

/// Writes a segment file a column at a time: a compaction builds one output column, hands it
/// over and drops it before building the next, so it never holds a whole output in memory.
/// Every column must be given once ([`SegmentWriter::finish`] checks), in any order; the file
/// is removed if the writer is dropped unfinished.
pub struct SegmentWriter {
    path: PathBuf,
    w: Option<BlockWriter<BufWriter<File>>>,
    rows: usize,
    columns: Vec<(String, BlockRef)>,
    bodies: Vec<BlockRef>,
    ids: Vec<BlockRef>,
    /// Whether the `msg_hash` column is needed: the messages are elsewhere, or an id does not
    /// give its row's hash.
    keep_hashes: bool,
    min_ts: i64,
    max_ts: i64,
    max_received_at: Option<i64>,
}

/// The typed columns every segment has (besides `msg_hash` and `body_loc`, which depend on
/// where the messages are).
const TYPED_COLUMNS: [&str; 12] = [
    "did",
    "ts",
    "event",
    "channel",
    "touchpoint",
    "kind",
    "group",
    "revenue",
    "received_at",
    "prop_count",
    "prop_key",
    "prop_val",
];

impl SegmentWriter {
    /// Every typed column of `cols`.
    fn typed_columns(&mut self, cols: &Columns) -> Result<()> {
        self.persons(&cols.did)?;
        self.times(&cols.ts)?;
        self.codes("event", &cols.event)?;
        self.codes("channel", &cols.channel)?;
        self.codes("touchpoint", &cols.touchpoint)?;
        self.kinds(&cols.kind)?;
        self.groups(&cols.group)?;
        self.revenues(&cols.revenue)?;
        self.received_times(&cols.received_at)?;
        self.properties(&cols.prop_end, &cols.prop_key, &cols.prop_val)
    }

    /// Starts the file at `path` for `rows` rows.
    pub fn create(path: &Path, rows: usize) -> Result<SegmentWriter> {
        let file = File::create(path).map_err(StoreError::io(path))?;
        let mut w = BlockWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
        };
        w.out.write_all(MAGIC).map_err(StoreError::io(path))?;
        w.pos = MAGIC.len() as u64;
        Ok(SegmentWriter {
            path: path.to_path_buf(),
            w: Some(w),
            rows,
            columns: Vec::new(),
            bodies: Vec::new(),
            ids: Vec::new(),
            keep_hashes: true,
            min_ts: 0,
            max_ts: 0,
            max_received_at: None,
        })
    }

    fn block(&mut self, raw: &[u8], level: i32) -> Result<BlockRef> {
        let w = self.w.as_mut().expect("not finished");
        w.block(raw, level).map_err(StoreError::io(&self.path))
    }

    fn column(&mut self, name: &str, len: usize, raw: &[u8]) -> Result<()> {
        if len != self.rows {
            return Err(self.invalid(format!("{name} has {len} values")));
        }
        let b = self.block(raw, COLUMN_LEVEL)?;
        self.columns.push((name.to_string(), b));
        Ok(())
    }

    fn invalid(&self, what: String) -> StoreError {
        StoreError::Corrupt(format!(
            "segment {} of {} rows: {what}",
            self.path.display(),
            self.rows
        ))
    }

    pub fn persons(&mut self, did: &[u32]) -> Result<()> {
        self.column("did", did.len(), &codec::encode_runs(did))
    }

    pub fn times(&mut self, ts: &[i64]) -> Result<()> {
        self.min_ts = ts.iter().copied().min().unwrap_or(0);
        self.max_ts = ts.iter().copied().max().unwrap_or(0);
        self.column("ts", ts.len(), &codec::encode_deltas(ts))
    }

    pub fn received_times(&mut self, received_at: &[i64]) -> Result<()> {
        self.max_received_at = received_at.iter().copied().max();
        let raw = codec::encode_deltas(received_at);
        self.column("received_at", received_at.len(), &raw)
    }

    /// A column of dictionary codes: `event`, `channel` or `touchpoint`.
    pub fn codes(&mut self, name: &'static str, codes: &[u32]) -> Result<()> {
        self.column(name, codes.len(), &codec::encode_u32s(codes))
    }

    pub fn kinds(&mut self, kind: &[u8]) -> Result<()> {
        self.column("kind", kind.len(), kind)
    }

    /// Account codes, [`crate::columns::NO_GROUP`] for none.
    pub fn groups(&mut self, group: &[u32]) -> Result<()> {
        let plus1: Vec<u32> = group.iter().map(|g| g.wrapping_add(1)).collect();
        self.column("group", group.len(), &codec::encode_u32s(&plus1))
    }

    pub fn revenues(&mut self, revenue: &[f64]) -> Result<()> {
        self.column("revenue", revenue.len(), &codec::encode_f64s(revenue))
    }

    /// Typed properties: each row's pairs end at `ends` in `keys` and `values`.
    pub fn properties(&mut self, ends: &[u32], keys: &[u32], values: &[u32]) -> Result<()> {
        let mut start = 0u32;
        let counts: Vec<u32> = ends
            .iter()
            .map(|e| {
                let c = e.wrapping_sub(start);
                start = *e;
                c
            })
            .collect();
        self.column("prop_count", ends.len(), &codec::encode_u32s(&counts))?;
        let pairs = start as usize;
        if keys.len() != pairs || values.len() != pairs {
            return Err(self.invalid(format!(
                "{pairs} property pairs but {} keys and {} values",
                keys.len(),
                values.len()
            )));
        }
        let b = self.block(&codec::encode_u32s(keys), COLUMN_LEVEL)?;
        self.columns.push(("prop_key".to_string(), b));
        let b = self.block(&codec::encode_u32s(values), COLUMN_LEVEL)?;
        self.columns.push(("prop_val".to_string(), b));
        Ok(())
    }

    /// The rows' messages, in row order, with their message hashes. A failure to read one
    /// (a compaction streams them from other files) stops the write and is returned.
    pub fn messages<S: AsRef<str>>(
        &mut self,
        bodies: impl Iterator<Item = Result<S>>,
        hashes: &[u64],
    ) -> Result<()> {
        if hashes.len() != self.rows {
            return Err(self.invalid(format!("{} message hashes", hashes.len())));
        }
        self.keep_hashes = false;
        let mut block: Vec<S> = Vec::with_capacity(BODY_BLOCK_ROWS);
        let mut total = 0usize;
        for b in bodies {
            if total >= self.rows {
                return Err(self.invalid("more messages".into()));
            }
            block.push(b?);
            total += 1;
            if block.len() == BODY_BLOCK_ROWS || total == self.rows {
                self.message_block(&block, &hashes[total - block.len()..total])?;
                block.clear();
            }
        }
        if total != self.rows {
            return Err(self.invalid(format!("{total} messages")));
        }
        Ok(())
    }

    fn message_block<S: AsRef<str>>(&mut self, block: &[S], hashes: &[u64]) -> Result<()> {
        let ids: Vec<_> = block
            .iter()
            .zip(hashes)
            .map(|(b, h)| message_block::message_id(b.as_ref(), *h))
            .collect();
        self.keep_hashes |= ids.iter().any(Option::is_none);
        let encoded = message_block::encode(
            ids.iter()
                .map(Option::as_deref)
                .zip(block.iter().map(AsRef::as_ref)),
        );
        let b = self.block(&encoded.messages, BODY_LEVEL)?;
        self.bodies.push(b);
        let b = self.block(&encoded.ids, COLUMN_LEVEL)?;
        self.ids.push(b);
        Ok(())
    }

    /// Where each row's message is, for a file that holds none (a background compaction's).
    pub fn located(&mut self, locs: &[BodyLoc]) -> Result<()> {
        let raw: Vec<i64> = locs.iter().map(|l| l.0 as i64).collect();
        self.column(BODY_LOC, locs.len(), &codec::encode_deltas(&raw))
    }

    /// Writes the footer and syncs the file. `hashes` (the rows' message hashes) are kept as a
    /// column only when the messages do not give them.
    pub fn finish(mut self, hashes: &[u64]) -> Result<Footer> {
        if self.keep_hashes {
            if hashes.len() != self.rows {
                return Err(self.invalid(format!("{} message hashes", hashes.len())));
            }
            let b = self.block(&codec::encode_u64s(hashes), COLUMN_LEVEL)?;
            self.columns.push(("msg_hash".to_string(), b));
        }
        let given = |name: &str| self.columns.iter().any(|(n, _)| n == name);
        if let Some(missing) = TYPED_COLUMNS.iter().find(|n| !given(n)) {
            return Err(self.invalid(format!("no {missing} column")));
        }
        if self.bodies.is_empty() && self.rows > 0 && !given(BODY_LOC) {
            return Err(self.invalid("no messages".into()));
        }
        let footer = Footer {
            rows: self.rows as u64,
            min_ts: self.min_ts,
            max_ts: self.max_ts,
            max_received_at: self.max_received_at,
            columns: std::mem::take(&mut self.columns),
            bodies: std::mem::take(&mut self.bodies),
            body_format: BODY_FORMAT,
            ids: std::mem::take(&mut self.ids),
        };
        let mut w = self.w.take().expect("not finished");
        let write = |w: &mut BlockWriter<BufWriter<File>>| -> std::io::Result<()> {
            let fj = serde_json::to_vec(&footer).map_err(std::io::Error::other)?;
            w.out.write_all(&fj)?;
            w.out.write_all(&(fj.len() as u32).to_le_bytes())?;
            w.out.write_all(&crc32fast::hash(&fj).to_le_bytes())?;
            w.out.write_all(END)?;
            w.out.flush()?;
            w.out.get_ref().sync_all()
        };
        if let Err(e) = write(&mut w) {
            let _ = std::fs::remove_file(&self.path);
            return Err(StoreError::io(&self.path)(e));
        }
        Ok(footer)
    }
}

impl Drop for SegmentWriter {
    /// An unfinished file is removed: nothing names it yet.
    fn drop(&mut self) {
        if self.w.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The compressed bytes of block `b` of the segment at `path`, checked against their checksum.
fn read_checked(path: &Path, f: &File, b: &BlockRef, what: &str) -> Result<Vec<u8>> {
    let corrupt =
        |why: &str| StoreError::Corrupt(format!("segment {} block {what}: {why}", path.display()));
    if b.raw_len > 1 << 34 {
        return Err(corrupt("size out of range"));
    }
    let mut comp = vec![0u8; b.len as usize];
    f.read_exact_at(&mut comp, b.offset)
        .map_err(StoreError::io(path))?;
    if crc32fast::hash(&comp) != b.crc {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(comp)
}

/// Decompresses a block read by [`read_checked`].
fn decompress(path: &Path, comp: &[u8], b: &BlockRef, what: &str) -> Result<Vec<u8>> {
    let corrupt = |why: String| {
        StoreError::Corrupt(format!("segment {} block {what}: {why}", path.display()))
    };
    let raw =
        zstd::bulk::decompress(comp, b.raw_len as usize).map_err(|e| corrupt(e.to_string()))?;
    if raw.len() as u64 != b.raw_len {
        return Err(corrupt("wrong decompressed size".into()));
    }
    Ok(raw)
}

/// A column block not yet decoded: still in the file (kept open, so it stays readable after a
/// compaction removes the file's name; shared by the file's blocks), or read and checked and
/// held until decoded.
struct Block {
    path: Arc<PathBuf>,
    name: &'static str,
    block: BlockRef,
    bytes: Bytes,
}

enum Bytes {
    Checked(Vec<u8>),
    InFile(Arc<File>),
}

impl Block {
    /// Bytes held until decoded.
    fn held(&self) -> usize {
        match &self.bytes {
            Bytes::Checked(comp) => comp.len(),
            Bytes::InFile(_) => 0,
        }
    }

    fn raw(&self) -> Result<Vec<u8>> {
        let read;
        let comp = match &self.bytes {
            Bytes::Checked(comp) => comp,
            Bytes::InFile(f) => {
                read = read_checked(&self.path, f, &self.block, self.name)?;
                &read
            }
        };
        decompress(&self.path, comp, &self.block, self.name)
    }

    /// The column, decoded by `decode(raw bytes, rows)` when first read.
    fn lazy<T: Send + 'static>(
        self,
        rows: usize,
        decode: impl Fn(&[u8], usize) -> Result<Vec<T>> + Send + 'static,
    ) -> Col<T> {
        Col::lazy_holding(self.held(), move || {
            let (path, name) = (self.path.clone(), self.name);
            expect_rows(
                &path,
                name,
                rows,
                self.raw().and_then(|raw| decode(&raw, rows)),
            )
        })
    }

    /// Property keys or values: as many as `ends` (the rows' property ends) say.
    fn lazy_props(self, ends: Col<u32>) -> Col<u32> {
        Col::lazy_holding(self.held(), move || {
            let (path, name) = (self.path.clone(), self.name);
            // the ends are not kept by a peek at the values
            let total = ends.peek().last().copied().unwrap_or(0) as usize;
            let values = self
                .raw()
                .and_then(|raw| codec::decode_u32s(&raw, total, name));
            expect_rows(&path, name, total, values)
        })
    }
}

/// A lazily decoded column's values. Blocks read at open passed their checksum there, so a
/// failure here is a defect of the writer (or damage in a block a reader never read at open):
/// it stops the reading thread naming the file and column.
fn expect_rows<T>(path: &Path, name: &str, rows: usize, values: Result<Vec<T>>) -> Vec<T> {
    match values {
        Ok(v) if v.len() == rows => v,
        Ok(v) => panic!(
            "segment {} column {name}: {} values for {rows} rows",
            path.display(),
            v.len()
        ),
        Err(e) => panic!("segment {} column {name}: {e}", path.display()),
    }
}

/// The message hashes of a file that keeps them as ids (see [`Footer::ids`]).
fn hashes_of_ids(path: &Path, footer: &Footer, f: &File) -> Result<Vec<u64>> {
    let mut hashes = Vec::with_capacity(footer.rows as usize);
    for b in &footer.ids {
        let raw = decompress(path, &read_checked(path, f, b, "ids")?, b, "ids")?;
        let ids = crate::message_ids::decode(&raw)?;
        for i in 0..ids.len() {
            let id = ids.get(i).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "segment {}: a row without message id or hash",
                    path.display()
                ))
            })?;
            hashes.push(codec::hash64(id));
        }
    }
    if hashes.len() as u64 != footer.rows {
        return Err(StoreError::Corrupt(format!(
            "segment {}: {} message ids for {} rows",
            path.display(),
            hashes.len(),
            footer.rows
        )));
    }
    Ok(hashes)
}

/// Where each row's properties end, from the per-row counts.
fn prop_ends(raw: &[u8], rows: usize) -> Result<Vec<u32>> {
    let mut end = 0u64;
    codec::decode_u32s(raw, rows, "prop_count")?
        .into_iter()
        .map(|c| {
            end += c as u64;
            u32::try_from(end).map_err(|_| StoreError::Corrupt("too many properties".into()))
        })
        .collect()
}

/// An open segment file.
#[derive(Debug, Clone)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub footer: Footer,
    /// Held open from [`SegmentFile::open`] on and read at offsets: the file stays readable
    /// by everyone holding it after a compaction removes its name (an export reading while a
    /// background merge commits), and readers on several threads share it.
    file: Arc<File>,
}

impl SegmentFile {
    pub fn open(path: &Path) -> Result<Self> {
        let corrupt = |why: &str| StoreError::Corrupt(format!("segment {}: {why}", path.display()));
        let mut f = File::open(path).map_err(StoreError::io(path))?;
        let size = f.metadata().map_err(StoreError::io(path))?.len();
        if size < 24 {
            return Err(corrupt("too short"));
        }
        let mut head = [0u8; 8];
        f.read_exact(&mut head).map_err(StoreError::io(path))?;
        if &head != MAGIC {
            return Err(corrupt(
                "not a segment of this format (its first 8 bytes are not ITSEG001)",
            ));
        }
        let mut tail = [0u8; 16];
        f.seek(SeekFrom::End(-16)).map_err(StoreError::io(path))?;
        f.read_exact(&mut tail).map_err(StoreError::io(path))?;
        if &tail[8..] != END {
            return Err(corrupt("missing end marker"));
        }
        let flen = u32::from_le_bytes(tail[0..4].try_into().unwrap()) as u64;
        let fcrc = u32::from_le_bytes(tail[4..8].try_into().unwrap());
        if flen + 24 > size {
            return Err(corrupt("footer length out of range"));
        }
        let mut fj = vec![0u8; flen as usize];
        f.seek(SeekFrom::End(-16 - flen as i64))
            .map_err(StoreError::io(path))?;
        f.read_exact(&mut fj).map_err(StoreError::io(path))?;
        if crc32fast::hash(&fj) != fcrc {
            return Err(corrupt("footer checksum mismatch"));
        }
        let footer: Footer =
            serde_json::from_slice(&fj).map_err(|e| corrupt(&format!("footer: {e}")))?;
        let data_end = size - 16 - flen;
        for (_, b) in &footer.columns {
            if b.offset + b.len > data_end {
                return Err(corrupt("block out of range"));
            }
        }
        Ok(SegmentFile {
            path: path.to_path_buf(),
            footer,
            file: Arc::new(f),
        })
    }

    fn read_block(&self, f: &File, b: &BlockRef, what: &str) -> Result<Vec<u8>> {
        let comp = read_checked(&self.path, f, b, what)?;
        decompress(&self.path, &comp, b, what)
    }

    /// The messages of body block `i`, in the file's message format.
    fn message_block(&self, f: &File, i: usize) -> Result<message_block::Decoded> {
        let missing = || {
            StoreError::Corrupt(format!(
                "segment {}: no message block {i}",
                self.path.display()
            ))
        };
        let raw = self.read_block(f, self.footer.bodies.get(i).ok_or_else(missing)?, "bodies")?;
        let decoded = match self.footer.body_format {
            0 => message_block::decode_plain(raw),
            BODY_FORMAT => {
                let ids = self.footer.ids.get(i).ok_or_else(missing)?;
                message_block::decode(&raw, &self.read_block(f, ids, "ids")?)
            }
            other => Err(StoreError::Corrupt(format!(
                "message format {other} is newer than this build"
            ))),
        };
        decoded.map_err(|e| StoreError::Corrupt(format!("segment {}: {e}", self.path.display())))
    }

    fn column_block(&self, name: &str) -> Result<&BlockRef> {
        self.footer.column(name).ok_or_else(|| {
            StoreError::Corrupt(format!("segment {}: no column {name}", self.path.display()))
        })
    }

    /// The typed columns (not the messages). Persons and times are decoded now; every other
    /// column is read and checked against its checksum now, and decoded when first read.
    pub fn load_columns(&self) -> Result<Columns> {
        self.load_columns_for(true)
    }

    /// [`SegmentFile::load_columns`] for a store that writes (`writes`) or only reads.
    ///
    /// Message hashes serve the duplicate check of writes and the merging of compactions, and
    /// do not compress (8 bytes a row): they are never held. A writer checks them at open,
    /// so that damage is found then; a reader does not even read them. Either reads them from
    /// the file when a compaction asks.
    pub fn load_columns_for(&self, writes: bool) -> Result<Columns> {
        let n = self.footer.rows as usize;
        let mut later = vec!["event"];
        later.extend(self.cold_columns());
        // times are decoded while another thread decodes the persons and reads and checks the
        // rest (times take the longest)
        let one = |name: &'static str| self.read_blocks(&[name]).map(|mut b| b.remove(0));
        let (ts, did_and_later) = std::thread::scope(|s| {
            let did_and_later = s.spawn(|| {
                let did = codec::decode_runs(&one("did")?.raw()?, n, "did")?;
                if writes {
                    self.check_hashes()?;
                }
                Ok::<_, StoreError>((did, self.read_blocks(&later)?))
            });
            let ts = one("ts").and_then(|ts| codec::decode_deltas(&ts.raw()?, n, "ts"));
            (
                ts,
                did_and_later.join().expect("reading a segment's columns"),
            )
        });
        let (ts, (did, later)) = (ts?, did_and_later?);
        for len in [did.len(), ts.len()] {
            if len != n {
                return Err(StoreError::Corrupt(format!(
                    "segment {}: column length",
                    self.path.display()
                )));
            }
        }
        let mut later: HashMap<&str, Block> = later.into_iter().map(|b| (b.name, b)).collect();
        let event = later
            .remove("event")
            .expect("read above")
            .lazy(n, |raw, n| codec::decode_u32s(raw, n, "event"));
        self.assemble(did, ts, event, later)
    }

    /// The columns with persons and times left out (empty) and every other column decoded
    /// when first read: for a store opened to compact, which reads persons and times from the
    /// files ([`SegmentFile::persons`]) a merge at a time instead of holding them all.
    pub fn load_columns_lean(&self) -> Result<Columns> {
        let mut later = vec!["event"];
        later.extend(self.cold_columns());
        let mut later: HashMap<&str, Block> = self
            .read_blocks(&later)?
            .into_iter()
            .map(|b| (b.name, b))
            .collect();
        let n = self.footer.rows as usize;
        let event = later
            .remove("event")
            .expect("read above")
            .lazy(n, |raw, n| codec::decode_u32s(raw, n, "event"));
        self.assemble(Vec::new(), Vec::new(), event, later)
    }

    /// The persons column, read from the file and decoded (not kept).
    pub fn persons(&self) -> Result<Vec<u32>> {
        self.decoded("did", codec::decode_runs)
    }

    /// The times column, read from the file and decoded (not kept).
    pub fn times(&self) -> Result<Vec<i64>> {
        self.decoded("ts", codec::decode_deltas)
    }

    fn decoded<T>(
        &self,
        name: &'static str,
        decode: fn(&[u8], usize, &'static str) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let raw = self.read_block(&self.file, self.column_block(name)?, name)?;
        let values = decode(&raw, self.footer.rows as usize, name)?;
        self.expect_len(name, values)
    }

    fn expect_len<T>(&self, name: &str, values: Vec<T>) -> Result<Vec<T>> {
        match values.len() == self.footer.rows as usize {
            true => Ok(values),
            false => Err(StoreError::Corrupt(format!(
                "segment {}: {name} has {} rows of {}",
                self.path.display(),
                values.len(),
                self.footer.rows
            ))),
        }
    }

    /// The columns of a segment this store has just written from `written`: persons, times
    /// and events (what every journey query reads) are kept as they are; every other column
    /// is read back compressed and decoded when first read, as after an open. A server that
    /// kept what it flushed decoded held every column of every row it had taken in.
    pub fn columns_after_write(&self, written: Columns) -> Result<Columns> {
        let n = self.footer.rows as usize;
        if written.len() != n {
            return Err(StoreError::Corrupt(format!(
                "segment {}: {n} rows written, {} given",
                self.path.display(),
                written.len()
            )));
        }
        let later = self.read_blocks(&self.cold_columns())?;
        let later = later.into_iter().map(|b| (b.name, b)).collect();
        self.assemble(written.did, written.ts, written.event, later)
    }

    /// The columns decoded only when first read (besides the events and the message hashes).
    fn cold_columns(&self) -> Vec<&'static str> {
        // typed properties are absent in format-1 segments (no properties)
        let with_props = self.footer.column("prop_count").is_some();
        let cold = |c: &&str| !["did", "ts", "event"].contains(c);
        (TYPED_COLUMNS.iter().copied())
            .filter(|c| cold(c) && (with_props || !c.starts_with("prop_")))
            .collect()
    }

    fn block(&self, name: &'static str, bytes: Bytes) -> Result<Block> {
        Ok(Block {
            path: Arc::new(self.path.clone()),
            name,
            block: self.column_block(name)?.clone(),
            bytes,
        })
    }

    /// The named column blocks, read and checked against their checksums.
    fn read_blocks(&self, names: &[&'static str]) -> Result<Vec<Block>> {
        let f = &*self.file;
        names
            .iter()
            .map(|&name| {
                let comp = read_checked(&self.path, f, self.column_block(name)?, name)?;
                self.block(name, Bytes::Checked(comp))
            })
            .collect()
    }

    /// Columns from decoded persons and times, the events, and the cold columns' blocks
    /// (checked). The cold blocks are not held: they are read from the file again when first
    /// decoded, so that a column no query reads costs no memory.
    fn assemble(
        &self,
        did: Vec<u32>,
        ts: Vec<i64>,
        event: Col<u32>,
        mut later: HashMap<&'static str, Block>,
    ) -> Result<Columns> {
        let n = self.footer.rows as usize;
        let file = self.file.clone();
        let mut take = |name: &str| Block {
            bytes: Bytes::InFile(file.clone()),
            ..later.remove(name).expect("read above")
        };
        let with_props = self.footer.column("prop_count").is_some();
        let prop_end = match with_props {
            true => take("prop_count").lazy(n, prop_ends),
            false => vec![0; n].into(),
        };
        let msg_hash = match self.footer.column("msg_hash") {
            Some(_) => self
                .block("msg_hash", Bytes::InFile(file.clone()))?
                .lazy(n, |raw, n| codec::decode_u64s(raw, n, "msg_hash")),
            None => {
                let (path, footer, file) = (self.path.clone(), self.footer.clone(), file.clone());
                Col::lazy_holding(0, move || {
                    let hashes = hashes_of_ids(&path, &footer, &file);
                    expect_rows(&path, "ids", n, hashes)
                })
            }
        };
        Ok(Columns {
            did,
            ts,
            event,
            channel: take("channel").lazy(n, |raw, n| codec::decode_u32s(raw, n, "channel")),
            touchpoint: take("touchpoint")
                .lazy(n, |raw, n| codec::decode_u32s(raw, n, "touchpoint")),
            kind: take("kind").lazy(n, |raw, _| Ok(raw.to_vec())),
            group: take("group").lazy(n, |raw, n| {
                Ok(codec::decode_u32s(raw, n, "group")?
                    .into_iter()
                    .map(|g| g.wrapping_sub(1))
                    .collect())
            }),
            revenue: take("revenue").lazy(n, |raw, n| codec::decode_f64s(raw, n, "revenue")),
            received_at: take("received_at")
                .lazy(n, |raw, n| codec::decode_deltas(raw, n, "received_at")),
            msg_hash,
            // the keys' and values' decoders share the ends (a clone of an undecoded column
            // decodes once for both)
            prop_key: match with_props {
                true => take("prop_key").lazy_props(prop_end.clone()),
                false => Vec::new().into(),
            },
            prop_val: match with_props {
                true => take("prop_val").lazy_props(prop_end.clone()),
                false => Vec::new().into(),
            },
            prop_end,
            distinct_times: Default::default(),
            received_range: Default::default(),
            receive_lags: Default::default(),
        })
    }

    /// The message hashes and receive times of every row, read from the file and not kept
    /// (they rebuild the duplicate check of a store opened for writing).
    pub fn hashes_and_receive_times(&self) -> Result<(Vec<u64>, Vec<i64>)> {
        let n = self.footer.rows as usize;
        let f = &*self.file;
        let hashes = self.hashes(f)?;
        let received = codec::decode_deltas(
            &self.read_block(f, self.column_block("received_at")?, "received_at")?,
            n,
            "received_at",
        )?;
        if hashes.len() != n || received.len() != n {
            return Err(StoreError::Corrupt(format!(
                "segment {}: column length",
                self.path.display()
            )));
        }
        Ok((hashes, received))
    }

    /// The rows' message hashes: the `msg_hash` column, or computed from the message ids.
    fn hashes(&self, f: &File) -> Result<Vec<u64>> {
        match self.footer.column("msg_hash") {
            Some(b) => codec::decode_u64s(
                &self.read_block(f, b, "msg_hash")?,
                self.footer.rows as usize,
                "msg_hash",
            ),
            None => hashes_of_ids(&self.path, &self.footer, f),
        }
    }

    /// Reads the message hashes' blocks (the column, or the ids) and checks their checksums, so
    /// that a writer finds damage to its duplicate check's source at open.
    fn check_hashes(&self) -> Result<()> {
        let f = &*self.file;
        let blocks: Vec<&BlockRef> = match self.footer.column("msg_hash") {
            Some(b) => vec![b],
            None => self.footer.ids.iter().collect(),
        };
        for b in blocks {
            read_checked(&self.path, f, b, "msg_hash")?;
        }
        Ok(())
    }

    /// Where each row's message is. `generation` is this file's own (rows of a file that holds
    /// its messages are found in it, row for row).
    pub fn load_body_locs(&self, generation: u32) -> Result<Vec<BodyLoc>> {
        let n = self.footer.rows as usize;
        let Some(b) = self.footer.column(BODY_LOC) else {
            return Ok((0..n as u32).map(|r| BodyLoc::new(generation, r)).collect());
        };
        let f = &*self.file;
        let raw = self.read_block(f, b, BODY_LOC)?;
        let locs = codec::decode_deltas(&raw, n, BODY_LOC)?;
        if locs.len() != n {
            return Err(StoreError::Corrupt(format!(
                "segment {}: {BODY_LOC} length",
                self.path.display()
            )));
        }
        Ok(locs.into_iter().map(|l| BodyLoc(l as u64)).collect())
    }

    /// A reader of single messages by row that keeps the last decoded block: reading rows in
    /// (mostly) ascending order decodes each block about once, with one block in memory.
    pub fn body_reader(&self) -> Result<BodyReader<'_>> {
        Ok(BodyReader {
            segment: self,
            block: usize::MAX,
            messages: Default::default(),
        })
    }

    /// Calls `f(row, message)` for every row, in row order.
    pub fn for_each_body(&self, mut f: impl FnMut(usize, &str) -> Result<()>) -> Result<()> {
        let file = &*self.file;
        let mut row = 0usize;
        for i in 0..self.footer.bodies.len() {
            let messages = self.message_block(file, i)?;
            for m in 0..messages.len() {
                f(row, messages.get(m).expect("checked when decoded"))?;
                row += 1;
            }
            if row != ((i + 1) * BODY_BLOCK_ROWS).min(self.footer.rows as usize) {
                return Err(StoreError::Corrupt(format!(
                    "segment {}: body block {i} row count",
                    self.path.display()
                )));
            }
        }
        Ok(())
    }
}

/// See [`SegmentFile::body_reader`].
pub struct BodyReader<'a> {
    segment: &'a SegmentFile,
    block: usize,
    messages: message_block::Decoded,
}

impl BodyReader<'_> {
    /// The message of `row`.
    pub fn get(&mut self, row: usize) -> Result<&str> {
        let block = row / BODY_BLOCK_ROWS;
        if block != self.block {
            self.messages = self.segment.message_block(&self.segment.file, block)?;
            self.block = block;
        }
        self.messages.get(row % BODY_BLOCK_ROWS).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "segment {}: message block {block} is short",
                self.segment.path.display()
            ))
        })
    }
}

/// The generation in a segment file's name (`0000000042.seg` → 42).
pub fn generation_of(name: &str) -> Option<u32> {
    name.strip_suffix(".seg")?.parse().ok()
}

/// Reads messages by [`BodyLoc`] from the files that hold them, keeping one decoded block per
/// file: reading in (mostly) ascending rows of each file decodes each block about once.
pub struct BodyFiles<'a> {
    readers: rustc_hash::FxHashMap<u32, BodyReader<'a>>,
}

impl<'a> BodyFiles<'a> {
    /// `files`: the files that hold messages, with their generations.
    pub fn new(files: impl IntoIterator<Item = (u32, &'a SegmentFile)>) -> Result<Self> {
        let mut readers = rustc_hash::FxHashMap::default();
        for (generation, file) in files {
            readers.insert(generation, file.body_reader()?);
        }
        Ok(BodyFiles { readers })
    }

    /// The message at `loc`.
    pub fn get(&mut self, loc: BodyLoc) -> Result<&str> {
        let generation = loc.generation();
        self.readers
            .get_mut(&generation)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "no segment of generation {generation} holds messages (row {})",
                    loc.row()
                ))
            })?
            .get(loc.row())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::NO_GROUP;

    fn sample(n: usize) -> Columns {
        let mut c = Columns::with_capacity(n);
        for i in 0..n {
            c.did.push((i / 7) as u32);
            c.ts.push(1_700_000_000_000 + (i as i64) * 1000);
            c.event.push((i % 5) as u32);
            c.channel.push((i % 3) as u32);
            c.touchpoint.push((i % 11) as u32);
            c.kind.push((i % 6) as u8);
            c.group.push(if i % 2 == 0 { NO_GROUP } else { 3 });
            c.revenue.push(if i % 4 == 0 { 9.5 } else { f64::NAN });
            c.msg_hash.push(i as u64 * 31);
            c.received_at.push(1_700_000_000_000);
            if i % 3 == 0 {
                c.prop_key.push((i % 4) as u32);
                c.prop_val.push(i as u32);
            }
            c.end_props();
        }
        c
    }

    /// A file stays readable, columns and messages, by whoever opened it after a compaction
    /// removes its name (an export reading while a background merge commits).
    #[test]
    fn an_open_file_reads_after_its_name_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (p, cols, bodies) = written(dir.path(), 9_000);
        let s = SegmentFile::open(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(s.persons().unwrap(), cols.did);
        assert_eq!(s.times().unwrap(), cols.ts);
        assert_eq!(s.load_columns().unwrap().group.peek(), cols.group.peek());
        assert_eq!(every_body(&s), bodies);
        assert_eq!(s.body_reader().unwrap().get(8_500).unwrap(), bodies[8_500]);
        assert_eq!(s.load_body_locs(7).unwrap()[5], BodyLoc::new(7, 5));
    }

    fn every_body(s: &SegmentFile) -> Vec<String> {
        let mut got = Vec::new();
        s.for_each_body(|_, b| {
            got.push(b.to_string());
            Ok(())
        })
        .unwrap();
        got
    }

    /// A segment of `n` sample rows written in `dir`, with its columns and messages.
    fn written(dir: &Path, n: usize) -> (PathBuf, Columns, Vec<String>) {
        let p = dir.join("a.seg");
        let cols = sample(n);
        let bodies: Vec<String> = (0..cols.len()).map(|i| format!("{{\"i\":{i}}}")).collect();
        write(&p, &cols, bodies.clone().into_iter().map(Ok)).unwrap();
        (p, cols, bodies)
    }

    #[test]
    fn round_trip_and_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let (p, cols, bodies) = written(dir.path(), 20_000);
        let s = SegmentFile::open(&p).unwrap();
        let back = s.load_columns().unwrap();
        assert_eq!(back.did, cols.did);
        assert_eq!(back.ts, cols.ts);
        assert_eq!(back.group, cols.group);
        assert_eq!(back.msg_hash, cols.msg_hash);
        assert_eq!(every_body(&s), bodies);
        // single messages by row, in and out of order
        let mut reader = s.body_reader().unwrap();
        for row in [0, 1, 8191, 8192, 19_999, 3, 12_345] {
            assert_eq!(reader.get(row).unwrap(), bodies[row]);
        }
        assert!(reader.get(20_000).is_err());

        // damage one byte inside the ts column: detected, not decoded
        let mut data = std::fs::read(&p).unwrap();
        let off = s.footer.column("ts").unwrap().offset as usize + 2;
        data[off] ^= 0xff;
        std::fs::write(&p, &data).unwrap();
        let err = SegmentFile::open(&p).unwrap().load_columns().unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");

        // a truncated file is refused at open
        std::fs::write(&p, &data[..data.len() - 5]).unwrap();
        assert!(SegmentFile::open(&p).is_err());
    }

    /// Stored messages as the server writes them: their ids give the hashes, so the file keeps
    /// ids and no hash column; one message whose id does not give its hash makes it keep both.
    #[test]
    fn hashes_come_from_the_ids() {
        let dir = tempfile::tempdir().unwrap();
        let mut cols = sample(9_000);
        let bodies: Vec<String> = (0..cols.len())
            .map(|i| {
                format!(
                    r#"{{"properties":{{"messageId":"p{i}"}},"messageId":"m-{i}","timestamp":"2026-12-06T20:37:{:02}.214Z","receivedAt":"2026-12-06T20:37:23.300Z"}}"#,
                    i % 60
                )
            })
            .collect();
        let ids = |cols: &mut Columns, from: usize| {
            let hashes: Vec<u64> = (0..cols.len())
                .map(|i| codec::hash64(&format!("{}{i}", if i < from { "m-" } else { "x" })))
                .collect();
            cols.msg_hash = hashes.into();
        };
        ids(&mut cols, usize::MAX);
        let p = dir.path().join("a.seg");
        write(&p, &cols, bodies.clone().into_iter().map(Ok)).unwrap();
        let s = SegmentFile::open(&p).unwrap();
        assert!(s.footer.column("msg_hash").is_none());
        assert_eq!(s.footer.ids.len(), 2);
        let back = s.load_columns().unwrap();
        assert!(!back.msg_hash.is_decoded());
        assert_eq!(back.msg_hash, cols.msg_hash);
        assert_eq!(
            s.hashes_and_receive_times().unwrap().0,
            cols.msg_hash.to_vec()
        );
        let mut reader = s.body_reader().unwrap();
        for row in [0, 8191, 8192, 8999, 17] {
            assert_eq!(reader.get(row).unwrap(), bodies[row]);
        }
        // a damaged id block is found by a writer's open
        let mut data = std::fs::read(&p).unwrap();
        data[s.footer.ids[1].offset as usize + 1] ^= 0xff;
        std::fs::write(&p, &data).unwrap();
        let err = SegmentFile::open(&p).unwrap().load_columns().unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");

        ids(&mut cols, 8_500);
        let p = dir.path().join("b.seg");
        write(&p, &cols, bodies.clone().into_iter().map(Ok)).unwrap();
        let s = SegmentFile::open(&p).unwrap();
        assert!(s.footer.column("msg_hash").is_some());
        assert_eq!(s.load_columns().unwrap().msg_hash, cols.msg_hash);
        let mut reader = s.body_reader().unwrap();
        assert_eq!(reader.get(8_600).unwrap(), bodies[8_600]);
    }
}
