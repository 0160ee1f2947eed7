//! Parquet export and import with the `parquet` crate's low-level API (no Arrow, which would add
//! minutes to a clean build). The export is standard Parquet (zstd) that DuckDB, pandas and Spark
//! read; its `message` column holds the full Segment message, so importing an export is lossless.

use crate::import::{set_path, Importer};
use crate::CliResult;
use itinera_core::message::parse_ts;
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::parser::parse_message_type;
use serde_json::{Map, Value};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

const SCHEMA: &str = "message itinera_event {
    REQUIRED BYTE_ARRAY message_id (UTF8);
    REQUIRED BYTE_ARRAY type (UTF8);
    REQUIRED INT64 timestamp (TIMESTAMP(MILLIS,true));
    OPTIONAL INT64 received_at (TIMESTAMP(MILLIS,true));
    OPTIONAL BYTE_ARRAY user_id (UTF8);
    OPTIONAL BYTE_ARRAY anonymous_id (UTF8);
    OPTIONAL BYTE_ARRAY group_id (UTF8);
    OPTIONAL BYTE_ARRAY event (UTF8);
    OPTIONAL BYTE_ARRAY name (UTF8);
    OPTIONAL DOUBLE revenue;
    OPTIONAL BYTE_ARRAY properties (JSON);
    OPTIONAL BYTE_ARRAY traits (JSON);
    OPTIONAL BYTE_ARRAY context (JSON);
    REQUIRED BYTE_ARRAY message (JSON);
}";

const ROW_GROUP: usize = 100_000;

/// One row's values, column by column.
#[derive(Default)]
struct Rows {
    message_id: Vec<ByteArray>,
    kind: Vec<ByteArray>,
    timestamp: Vec<i64>,
    received_at: Vec<Option<i64>>,
    strings: [Vec<Option<ByteArray>>; 5], // user_id, anonymous_id, group_id, event, name
    revenue: Vec<Option<f64>>,
    json: [Vec<Option<ByteArray>>; 3], // properties, traits, context
    message: Vec<ByteArray>,
}

fn opt_str(v: &Value, k: &str) -> Option<ByteArray> {
    v.get(k)
        .and_then(Value::as_str)
        .map(|s| ByteArray::from(s.as_bytes().to_vec()))
}

impl Rows {
    fn push(&mut self, body: &str) -> CliResult {
        let v: Value = serde_json::from_str(body)?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
        self.message_id
            .push(ByteArray::from(s("messageId").as_bytes().to_vec()));
        self.kind
            .push(ByteArray::from(s("type").as_bytes().to_vec()));
        self.timestamp.push(parse_ts(s("timestamp")).unwrap_or(0));
        self.received_at.push(parse_ts(s("receivedAt")));
        for (slot, k) in
            self.strings
                .iter_mut()
                .zip(["userId", "anonymousId", "groupId", "event", "name"])
        {
            slot.push(opt_str(&v, k));
        }
        let props = v.get("properties");
        self.revenue.push(
            props
                .and_then(|p| p.get("revenue").or_else(|| p.get("total")))
                .and_then(Value::as_f64),
        );
        for (slot, k) in self
            .json
            .iter_mut()
            .zip(["properties", "traits", "context"])
        {
            slot.push(
                v.get(k)
                    .map(|x| ByteArray::from(x.to_string().into_bytes())),
            );
        }
        self.message.push(ByteArray::from(body.as_bytes().to_vec()));
        Ok(())
    }

    fn len(&self) -> usize {
        self.message.len()
    }
}

fn split<T: Clone>(values: &[Option<T>]) -> (Vec<T>, Vec<i16>) {
    let defs = values.iter().map(|v| v.is_some() as i16).collect();
    (values.iter().flatten().cloned().collect(), defs)
}

pub struct ParquetExport {
    writer: SerializedFileWriter<File>,
    rows: Rows,
    pub written: u64,
}

impl ParquetExport {
    pub fn create(path: &Path) -> CliResult<Self> {
        let schema = Arc::new(parse_message_type(SCHEMA)?);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_created_by(format!("itinera {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = SerializedFileWriter::new(File::create(path)?, schema, Arc::new(props))?;
        Ok(ParquetExport {
            writer,
            rows: Rows::default(),
            written: 0,
        })
    }

    pub fn add(&mut self, body: &str) -> CliResult {
        self.rows.push(body)?;
        if self.rows.len() >= ROW_GROUP {
            self.write_group()?;
        }
        Ok(())
    }

    fn write_group(&mut self) -> CliResult {
        let rows = std::mem::take(&mut self.rows);
        if rows.len() == 0 {
            return Ok(());
        }
        let mut rg = self.writer.next_row_group()?;
        let mut col_index = 0usize;
        while let Some(mut col) = rg.next_column()? {
            match col_index {
                0 => drop(col.typed::<ByteArrayType>().write_batch(
                    &rows.message_id,
                    None,
                    None,
                )?),
                1 => drop(
                    col.typed::<ByteArrayType>()
                        .write_batch(&rows.kind, None, None)?,
                ),
                2 => drop(
                    col.typed::<Int64Type>()
                        .write_batch(&rows.timestamp, None, None)?,
                ),
                3 => {
                    let (v, d) = split(&rows.received_at);
                    col.typed::<Int64Type>().write_batch(&v, Some(&d), None)?;
                }
                4..=8 => {
                    let (v, d) = split(&rows.strings[col_index - 4]);
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, Some(&d), None)?;
                }
                9 => {
                    let (v, d) = split(&rows.revenue);
                    col.typed::<DoubleType>().write_batch(&v, Some(&d), None)?;
                }
                10..=12 => {
                    let (v, d) = split(&rows.json[col_index - 10]);
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, Some(&d), None)?;
                }
                13 => drop(
                    col.typed::<ByteArrayType>()
                        .write_batch(&rows.message, None, None)?,
                ),
                _ => unreachable!("the schema has 14 columns"),
            }
            col.close()?;
            col_index += 1;
        }
        rg.close()?;
        self.written += rows.len() as u64;
        Ok(())
    }

    pub fn finish(mut self) -> CliResult<u64> {
        self.write_group()?;
        self.writer.close()?;
        Ok(self.written)
    }
}

fn field_to_json(name: &str, f: &Field) -> Value {
    match f {
        Field::TimestampMillis(ms) => Value::String(itinera_core::message::format_ts(*ms)),
        Field::TimestampMicros(us) => Value::String(itinera_core::message::format_ts(us / 1000)),
        Field::Str(s) if matches!(name, "properties" | "traits" | "context" | "integrations") => {
            serde_json::from_str::<Value>(s)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| Value::String(s.clone()))
        }
        other => other.to_json_value(),
    }
}

/// Column names of Parquet files written by others, mapped to message fields.
fn default_path(column: &str) -> &str {
    match column {
        "message_id" => "messageId",
        "user_id" => "userId",
        "anonymous_id" => "anonymousId",
        "group_id" => "groupId",
        "received_at" => "receivedAt",
        "previous_id" => "previousId",
        other => other,
    }
}

impl Importer<'_> {
    /// Parquet: a `message` column (as written by `itinera export --format parquet`) is imported
    /// as is; otherwise each column maps to a field path like a CSV column (`--map` renames).
    pub fn import_parquet(
        &mut self,
        path: &Path,
        mapping: &[(String, String)],
        default_type: &str,
    ) -> CliResult {
        let name = path.display().to_string();
        let reader =
            SerializedFileReader::new(File::open(path).map_err(|e| format!("{name}: {e}"))?)?;
        let total = reader.metadata().file_metadata().num_rows().max(0) as u64;
        self.progress.set_length(total);
        self.progress.set_message(name.clone());
        for (i, row) in reader.get_row_iter(None)?.enumerate() {
            let line = i as u64 + 1;
            self.progress.inc(1);
            let row = match row {
                Ok(r) => r,
                // a read error does not advance the reader: the rest of the file is unreadable
                Err(e) => return Err(format!("{name}: row {line}: {e}").into()),
            };
            let mut msg = Map::new();
            let mut whole = None;
            for (col, field) in row.get_column_iter() {
                if matches!(field, Field::Null) {
                    continue;
                }
                if col == "message" {
                    if let Field::Str(s) = field {
                        whole = Some(s.clone());
                    }
                    continue;
                }
                let path = mapping
                    .iter()
                    .find(|(c, _)| c == col)
                    .map(|(_, p)| p.as_str())
                    .unwrap_or_else(|| default_path(col));
                set_path(&mut msg, path, field_to_json(path, field));
            }
            let raw = match whole {
                Some(s) => s,
                None => {
                    msg.entry("type")
                        .or_insert_with(|| Value::String(default_type.into()));
                    Value::Object(msg).to_string()
                }
            };
            self.add(&name, line, &raw, &raw)?;
        }
        self.report.files += 1;
        Ok(())
    }
}
