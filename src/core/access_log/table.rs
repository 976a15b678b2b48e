//! Rows read for the usage API, shown as JSON objects or as CSV. CSV cells that a
//! spreadsheet would run as a formula (a model name the client chose, starting with `=`,
//! `+`, `-` or `@`) are prefixed with `'`.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
}

impl Cell {
    fn json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(n) => Value::from(*n),
            Cell::Text(s) => Value::from(s.as_str()),
            Cell::Bool(b) => Value::from(*b),
        }
    }

    fn csv(&self, out: &mut String) {
        match self {
            Cell::Null => {}
            Cell::Int(n) => out.push_str(&n.to_string()),
            Cell::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Cell::Text(s) => csv_text(s, out),
        }
    }
}

fn csv_text(s: &str, out: &mut String) {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || s.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// Each row as an object of its columns.
    pub fn items(&self) -> Vec<Value> {
        self.rows
            .iter()
            .map(|row| {
                let mut m = Map::new();
                for (name, cell) in self.columns.iter().zip(row) {
                    m.insert(name.clone(), cell.json());
                }
                Value::Object(m)
            })
            .collect()
    }

    /// A header line and a line per row (CRLF, as RFC 4180 has it).
    pub fn csv(&self) -> String {
        let mut out = String::new();
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_text(c, &mut out);
        }
        out.push_str("\r\n");
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                cell.csv(&mut out);
            }
            out.push_str("\r\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_csv_of_the_same_rows() {
        let t = Table {
            columns: vec!["model".into(), "n".into(), "ttfb".into(), "stream".into()],
            rows: vec![
                vec![
                    Cell::Text("gpt, \"4\"".into()),
                    Cell::Int(3),
                    Cell::Null,
                    Cell::Bool(true),
                ],
                vec![
                    Cell::Text("=HYPERLINK(1)".into()),
                    Cell::Int(-1),
                    Cell::Int(5),
                    Cell::Bool(false),
                ],
            ],
        };
        assert_eq!(
            t.items()[0],
            serde_json::json!({"model": "gpt, \"4\"", "n": 3, "ttfb": null, "stream": true})
        );
        assert_eq!(
            t.csv(),
            "model,n,ttfb,stream\r\n\"gpt, \"\"4\"\"\",3,,true\r\n\"'=HYPERLINK(1)\",-1,5,false\r\n"
        );
    }
}
