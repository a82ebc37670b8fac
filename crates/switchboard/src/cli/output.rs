//! Output helpers shared by the commands: aligned tables, pretty JSON, `key  value` listings of
//! one object, and the text of a JSON value in a table cell.

use std::io::Write as _;

use serde_json::Value;

/// `println!` that ends the process quietly when stdout is gone (e.g. piped into `head`)
/// instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::output::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// Writes to stdout; exits (status 0) when the reader has gone away.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Prints an aligned table; the last column is not padded. Prints `(none)` under the headers
/// when there are no rows.
pub fn print_table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    write_out(format_args!("{}", table(headers, rows)));
}

/// The text of [`print_table`].
pub fn table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let text: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0))
                }
            })
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    if rows.is_empty() {
        line(vec!["(none)".into()]);
    }
    for row in rows {
        line(row);
    }
    out
}

/// Prints the fields of a JSON object as aligned `key  value` lines (nested values as compact
/// JSON), `id` first, skipping `skip`.
pub fn print_fields(value: &Value, skip: &[&str]) {
    let Some(map) = value.as_object() else {
        print_json(value);
        return;
    };
    // `id` first and the timestamps last; the rest in the JSON's (alphabetical) order.
    let rank = |key: &str| match key {
        "id" => 0,
        "created_at" | "updated_at" => 2,
        _ => 1,
    };
    let mut fields: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .collect();
    fields.sort_by_key(|(k, _)| rank(k));
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in fields {
        outln!("{key:<width$}  {}", cell(value));
    }
}

/// A JSON value as table text: strings bare, `null` as `-`, objects and arrays compact.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        Value::Array(_) | Value::Object(_) => value.to_string(),
    }
}

/// `cell(&value[key])`.
pub fn field(value: &Value, key: &str) -> String {
    cell(&value[key])
}

/// The `items` of a page (or the value itself when it is an array).
pub fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        _ => value["items"].as_array().map(Vec::as_slice).unwrap_or(&[]),
    }
}

/// Says on stderr how to get the rest of a listing, when there is more.
pub fn more_hint(page: &Value) {
    if let Some(cursor) = page["next_cursor"].as_str() {
        eprintln!("more results: add --cursor {cursor} (or use --all / a larger --limit)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_all_but_the_last_column() {
        let text = table(
            &["ID", "NAME"],
            vec![
                vec!["a".into(), "x y".into()],
                vec!["long-id".into(), "z".into()],
            ]
            .into_iter(),
        );
        assert_eq!(text, "ID       NAME\na        x y\nlong-id  z\n");
        assert_eq!(table(&["ID"], std::iter::empty()), "ID\n(none)\n");
        assert_eq!(cell(&serde_json::json!(null)), "-");
        assert_eq!(cell(&serde_json::json!(["a"])), "[\"a\"]");
    }
}
