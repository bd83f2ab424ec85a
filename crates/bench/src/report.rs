//! The result of one run: an ordered list of named values, printed either as a short human table
//! or as exactly one JSON object on one line (`--json`).
//!
//! Field names are the JSON keys, so the table and the JSON always agree.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::latency::Percentiles;

/// One value of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string (JSON-escaped on output).
    Str(String),
    /// A whole number.
    Int(u64),
    /// A whole number that may be negative.
    Signed(i64),
    /// A number printed with the given number of decimals (`null` in JSON when not finite).
    Float(f64, usize),
    /// A boolean.
    Bool(bool),
    /// No value (`null`; `-` in the table).
    Null,
}

/// The ordered fields of one run's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    fields: Vec<(&'static str, Value)>,
}

impl Report {
    /// A report for `workload`, starting with `"tool":"wsgate-bench"` and `"workload"`.
    pub fn new(workload: &'static str) -> Self {
        Self {
            fields: vec![("tool", Value::Str("wsgate-bench".into())), ("workload", Value::Str(workload.into()))],
        }
    }

    /// Appends a field.
    pub fn field(mut self, name: &'static str, value: Value) -> Self {
        self.fields.push((name, value));
        self
    }

    /// Appends a string field.
    pub fn str(self, name: &'static str, value: impl Into<String>) -> Self {
        self.field(name, Value::Str(value.into()))
    }

    /// Appends a whole-number field.
    pub fn int(self, name: &'static str, value: u64) -> Self {
        self.field(name, Value::Int(value))
    }

    /// Appends a whole-number field that may be absent.
    pub fn opt_int(self, name: &'static str, value: Option<u64>) -> Self {
        self.field(name, value.map_or(Value::Null, Value::Int))
    }

    /// Appends a number field printed with `decimals` decimals.
    pub fn float(self, name: &'static str, value: f64, decimals: usize) -> Self {
        self.field(name, Value::Float(value, decimals))
    }

    /// Appends `p50_us`, `p90_us`, `p99_us`, `p999_us` and `max_us`.
    pub fn percentiles(self, p: &Percentiles) -> Self {
        self.int("p50_us", p.p50)
            .int("p90_us", p.p90)
            .int("p99_us", p.p99)
            .int("p999_us", p.p999)
            .int("max_us", p.max)
    }

    /// The value of a field, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The report as one JSON object on one line (no trailing newline).
    pub fn json_line(&self) -> String {
        let mut out = String::from("{");
        for (i, (name, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_string(name));
            out.push(':');
            match value {
                Value::Str(s) => out.push_str(&json_string(s)),
                Value::Int(n) => {
                    let _ = write!(out, "{n}");
                }
                Value::Signed(n) => {
                    let _ = write!(out, "{n}");
                }
                Value::Float(x, decimals) if x.is_finite() => {
                    let _ = write!(out, "{x:.decimals$}");
                }
                Value::Float(..) | Value::Null => out.push_str("null"),
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            }
        }
        out.push('}');
        out
    }

    /// The report as a two-column table, one field per line (ends with a newline).
    pub fn table(&self) -> String {
        let width = self.fields.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (name, value) in &self.fields {
            let text = match value {
                Value::Str(s) => s.clone(),
                Value::Int(n) => n.to_string(),
                Value::Signed(n) => n.to_string(),
                Value::Float(x, decimals) => format!("{x:.decimals$}"),
                Value::Bool(b) => b.to_string(),
                Value::Null => "-".into(),
            };
            let _ = writeln!(out, "{name:<width$}  {text}");
        }
        out
    }

    /// Prints the report on stdout (JSON line or table) and flushes.
    ///
    /// # Errors
    ///
    /// The error writing to stdout.
    pub fn print(&self, json: bool) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        if json {
            writeln!(stdout, "{}", self.json_line())?;
        } else {
            stdout.write_all(self.table().as_bytes())?;
        }
        stdout.flush()
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report::new("echo")
            .str("url", "ws://127.0.0.1:1/a\"b")
            .int("sessions", 2)
            .float("msgs_per_s", 12345.678, 1)
            .field("binary", Value::Bool(false))
            .opt_int("rss_before_kib", None)
            .float("bad", f64::NAN, 2)
            .percentiles(&Percentiles { p50: 1, p90: 2, p99: 3, p999: 4, max: 5 })
    }

    #[test]
    fn json_is_one_ordered_line() {
        let line = sample().json_line();
        assert!(!line.contains('\n'));
        assert!(line.starts_with(r#"{"tool":"wsgate-bench","workload":"echo","url":"ws://127.0.0.1:1/a\"b","#));
        assert!(line.contains(r#""msgs_per_s":12345.7,"binary":false,"rss_before_kib":null,"bad":null"#));
        assert!(line.ends_with(r#""p50_us":1,"p90_us":2,"p99_us":3,"p999_us":4,"max_us":5}"#));
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["sessions"], 2);
    }

    #[test]
    fn table_aligns_values() {
        let table = sample().table();
        assert_eq!(table.lines().count(), 13);
        assert!(table.contains("\nsessions        2\n"), "{table}");
        assert!(table.contains("\nrss_before_kib  -\n"), "{table}");
        assert!(table.contains("\nmsgs_per_s      12345.7\n"), "{table}");
    }
}
