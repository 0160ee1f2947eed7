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
            let rows: Vec<Vec<String>> = values
                .iter()
                .map(|v| columns.iter().map(|c| cell(&v[*c])).collect())
                .collect();
            let width = comfy_table::Table::new().width().map(usize::from);
            let widths: Vec<usize> = (0..columns.len())
                .map(|c| {
                    rows.iter()
                        .map(|r| r[c].chars().count())
                        .chain([columns[c].chars().count()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let groups = match width {
                Some(w) => column_groups(&widths, w),
                None => vec![(0..columns.len()).collect()],
            };
            for (k, group) in groups.iter().enumerate() {
                if k > 0 {
                    println!();
                }
                let mut t = comfy_table::Table::new();
                t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
                // what still does not fit wraps to the terminal instead of running off its edge
                t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
                t.set_header(group.iter().map(|&c| columns[c]).collect::<Vec<_>>());
                for r in &rows {
                    t.add_row(group.iter().map(|&c| r[c].as_str()).collect::<Vec<_>>());
                }
                println!("{t}");
            }
        }
    }
    Ok(())
}

/// The columns of each table a too-wide table is split into on a terminal `total` characters
/// wide: the first (key) column in every one, then as many of the others as fit, so numbers are
/// never broken over lines. One table when everything fits or when splitting cannot help.
fn column_groups(widths: &[usize], total: usize) -> Vec<Vec<usize>> {
    // a column takes its width and a space either side; the table two borders
    let cost = |c: usize| widths[c] + 2;
    let all: Vec<usize> = (0..widths.len()).collect();
    if widths.len() <= 2 || 2 + all.iter().map(|&c| cost(c)).sum::<usize>() <= total {
        return vec![all];
    }
    let room = total.saturating_sub(2 + cost(0));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut used = usize::MAX;
    for c in 1..widths.len() {
        if used.saturating_add(cost(c)) > room {
            groups.push(vec![0]);
            used = 0;
        }
        groups.last_mut().expect("a group").push(c);
        used += cost(c);
    }
    groups
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

#[cfg(test)]
mod tests {
    use super::column_groups;

    #[test]
    fn a_wide_table_is_split_into_tables_that_fit_each_with_the_key_column() {
        // key 14 wide, then ten value columns of 8: 2 + 16 + 10 × 10 = 118 characters
        let widths = [14, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8];
        assert_eq!(
            column_groups(&widths, 120),
            vec![(0..11).collect::<Vec<_>>()]
        );
        let groups = column_groups(&widths, 80);
        // 80 − 2 − 16 = 62 leaves room for six value columns of 10
        assert_eq!(
            groups,
            vec![vec![0, 1, 2, 3, 4, 5, 6], vec![0, 7, 8, 9, 10]]
        );
        for g in &groups {
            assert!(2 + g.iter().map(|&c| widths[c] + 2).sum::<usize>() <= 80);
        }
        // a column wider than the room gets a table of its own, where it wraps
        assert_eq!(
            column_groups(&[10, 100, 5, 5], 60),
            vec![vec![0, 1], vec![0, 2, 3]]
        );
        // two columns: splitting cannot help
        assert_eq!(column_groups(&[50, 100], 60), vec![vec![0, 1]]);
    }
}
