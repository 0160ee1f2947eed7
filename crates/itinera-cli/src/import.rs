//! Bulk import: Segment-shaped JSON lines and CSV with a column mapping. Good rows are stored in
//! batches through the store's durable path; bad rows go to a reject file with their line number
//! and the reason.

use crate::CliResult;
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use itinera_app::new_message_id;
use itinera_core::clock::now_ms;
use itinera_core::ingest::parse_one;
use itinera_core::{ChannelRules, NormalizeOptions, Touchpoint};
use itinera_store::{AppendPipeline, Store};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    Jsonl,
    Csv,
    Parquet,
}

impl ImportFormat {
    pub fn guess(path: &Path) -> ImportFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => ImportFormat::Csv,
            Some("parquet") => ImportFormat::Parquet,
            _ => ImportFormat::Jsonl,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub files: usize,
    pub rows: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
}

pub struct Importer<'a> {
    /// Batches go to the store with a few in flight: the next one is parsed while the writer
    /// syncs the last.
    pipeline: AppendPipeline<'a>,
    pub rules: &'a ChannelRules,
    pub reject: Option<Box<dyn Write>>,
    pub batch: Vec<Touchpoint>,
    pub report: ImportReport,
    pub progress: ProgressBar,
    max_future_ms: i64,
}

const BATCH: usize = 20_000;
/// Batches in flight during an import.
const IN_FLIGHT: usize = 3;

impl<'a> Importer<'a> {
    /// `max_future_ms`: messages timestamped further ahead of now are refused (the
    /// configuration's `max_future_hours`, as for the tracking API).
    pub fn new(
        store: &'a Store,
        rules: &'a ChannelRules,
        max_future_ms: i64,
        reject: Option<&Path>,
        quiet: bool,
    ) -> CliResult<Self> {
        let reject: Option<Box<dyn Write>> = match reject {
            Some(p) => Some(Box::new(std::io::BufWriter::new(File::create(p)?))),
            None => None,
        };
        let progress = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        progress.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("template is valid")
            .progress_chars("=> "),
        );
        Ok(Importer {
            pipeline: store.pipeline(IN_FLIGHT),
            rules,
            reject,
            batch: Vec::with_capacity(BATCH),
            report: ImportReport::default(),
            progress,
            max_future_ms,
        })
    }

    /// Adds one message (JSON text) found at `line` of `file`; `raw` is what the reject file
    /// shows for it.
    pub fn add(&mut self, file: &str, line: u64, text: &str, raw: &str) -> CliResult {
        self.report.rows += 1;
        let opts = NormalizeOptions {
            max_future_ms: self.max_future_ms,
            ..NormalizeOptions::at(now_ms())
        };
        match parse_one(text, None, &opts, self.rules, &mut new_message_id) {
            Ok(t) => {
                self.batch.push(t);
                if self.batch.len() >= BATCH {
                    self.flush_batch()?;
                }
            }
            Err(e) => self.reject(file, line, &e.field, &e.reason, raw)?,
        }
        Ok(())
    }

    pub fn reject(
        &mut self,
        file: &str,
        line: u64,
        field: &str,
        reason: &str,
        raw: &str,
    ) -> CliResult {
        self.report.rejected += 1;
        if let Some(w) = &mut self.reject {
            let rec = serde_json::json!({"file": file, "line": line, "field": field, "reason": reason, "row": raw});
            writeln!(w, "{rec}")?;
        } else if self.report.rejected <= 20 {
            self.progress
                .suspend(|| eprintln!("{file}:{line}: {field}: {reason}"));
        }
        Ok(())
    }

    pub fn flush_batch(&mut self) -> CliResult {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.pipeline.append(std::mem::take(&mut self.batch))?;
        self.batch.reserve(BATCH);
        Ok(())
    }

    pub fn finish(mut self, started: std::time::Instant) -> CliResult<ImportReport> {
        self.flush_batch()?;
        let out = self.pipeline.finish()?;
        self.report.stored = out.stored as u64;
        self.report.duplicates = out.duplicates as u64;
        if let Some(w) = &mut self.reject {
            w.flush()?;
        }
        self.progress.finish_and_clear();
        self.report.seconds = started.elapsed().as_secs_f64();
        self.report.rows_per_second = self.report.rows as f64 / self.report.seconds.max(1e-9);
        Ok(self.report)
    }

    pub fn import_jsonl(&mut self, path: &Path) -> CliResult {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| format!("{name}: {e}"))?;
        self.progress.set_length(file.metadata()?.len());
        self.progress.set_position(0);
        self.progress.set_message(name.clone());
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line = String::new();
        let mut n = 0u64;
        loop {
            line.clear();
            let read = reader.read_line(&mut line)?;
            if read == 0 {
                break;
            }
            n += 1;
            self.progress.inc(read as u64);
            let text = line.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            self.add(&name, n, text, text)?;
        }
        self.report.files += 1;
        Ok(())
    }

    /// CSV: each column maps to a message field path (`userId`, `event`, `timestamp`,
    /// `properties.revenue`, `context.campaign.source`, ...). Headers that are field paths map to
    /// themselves; `mapping` renames (`column=path`). Numbers in `properties.*` and `traits.*` stay
    /// numbers. Rows without a `type` column are `default_type`.
    pub fn import_csv(
        &mut self,
        path: &Path,
        mapping: &[(String, String)],
        default_type: &str,
    ) -> CliResult {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| format!("{name}: {e}"))?;
        self.progress.set_length(file.metadata()?.len());
        self.progress.set_message(name.clone());
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(BufReader::new(file));
        let headers: Vec<String> = rdr
            .headers()?
            .iter()
            .map(|h| {
                mapping
                    .iter()
                    .find(|(c, _)| c == h)
                    .map(|(_, p)| p.clone())
                    .unwrap_or_else(|| h.to_string())
            })
            .collect();
        for (i, rec) in rdr.records().enumerate() {
            let line = i as u64 + 2;
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    self.report.rows += 1;
                    self.reject(&name, line, "", &format!("invalid CSV: {e}"), "")?;
                    continue;
                }
            };
            if let Some(p) = rec.position() {
                self.progress.set_position(p.byte());
            }
            let mut msg = Map::new();
            msg.insert("type".into(), Value::String(default_type.into()));
            for (h, v) in headers.iter().zip(rec.iter()) {
                if v.is_empty() {
                    continue;
                }
                let typed = if h.starts_with("properties.") || h.starts_with("traits.") {
                    v.parse::<i64>()
                        .map(Value::from)
                        .or_else(|_| v.parse::<f64>().map(Value::from))
                        .unwrap_or_else(|_| Value::String(v.into()))
                } else {
                    Value::String(v.into())
                };
                set_path(&mut msg, h, typed);
            }
            let raw = rec.iter().collect::<Vec<_>>().join(",");
            self.add(&name, line, &Value::Object(msg).to_string(), &raw)?;
        }
        self.report.files += 1;
        Ok(())
    }
}

pub(crate) fn set_path(obj: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts = path.split('.').peekable();
    let mut cur = obj;
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(p.to_string(), value);
            return;
        }
        let next = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        cur = next.as_object_mut().expect("just made an object");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_nest() {
        let mut m = Map::new();
        set_path(&mut m, "context.campaign.source", Value::from("x"));
        set_path(&mut m, "context.campaign.medium", Value::from("y"));
        set_path(&mut m, "userId", Value::from("u"));
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"context":{"campaign":{"source":"x","medium":"y"}},"userId":"u"})
        );
    }
}
