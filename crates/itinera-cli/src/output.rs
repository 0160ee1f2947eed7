//! Printing results as a readable table, stable JSON, or CSV.

use crate::CliResult;
use clap::ValueEnum;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
    Csv,
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string(),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Prints a list of records. JSON prints the records as an array; table and CSV use `columns`.
pub fn print_records<T: Serialize>(format: Format, columns: &[&str], records: &[T]) -> CliResult {
    let values: Vec<Value> = records
        .iter()
        .map(|r| serde_json::to_value(r).expect("records serialize"))
        .collect();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&values)?),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record(columns)?;
            for v in &values {
                w.write_record(columns.iter().map(|c| cell(&v[*c])))?;
            }
            w.flush()?;
        }
        Format::Table => {
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
            // on a terminal, columns wrap to its width instead of running off its edge
            t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
            t.set_header(columns.to_vec());
            for v in &values {
                t.add_row(columns.iter().map(|c| cell(&v[*c])).collect::<Vec<_>>());
            }
            println!("{t}");
        }
    }
    Ok(())
}

/// Prints `v` as pretty JSON when `format` asks for JSON; true when it did (the caller's table
/// or CSV form is then not wanted).
pub fn printed_as_json<T: Serialize>(format: Format, v: &T) -> CliResult<bool> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(v)?);
    }
    Ok(format == Format::Json)
}

/// Prints one record: JSON as an object; table and CSV as `field, value` rows.
pub fn print_record<T: Serialize>(format: Format, record: &T) -> CliResult {
    let v = serde_json::to_value(record)?;
    if printed_as_json(format, &v)? {
        return Ok(());
    }
    let rows: Vec<Value> = v
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| serde_json::json!({"field": k, "value": cell(v)}))
                .collect()
        })
        .unwrap_or_default();
    print_records(format, &["field", "value"], &rows)
}
