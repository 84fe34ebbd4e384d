//! `ResultSet`: the rows of a query, read with a cursor as OpenHarmony's is. The rows are
//! read in full when the query runs, so the set holds no lock on the store.

use crate::error::{RdbError, Result, code};
use crate::value::Value;

/// The rows of a query and a cursor over them (before the first row at the start).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultSet {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    /// -1 before the first row; `rows.len()` after the last.
    pos: i64,
    closed: bool,
}

impl ResultSet {
    pub(crate) fn new(columns: Vec<String>, rows: Vec<Vec<Value>>) -> Self {
        Self {
            columns,
            rows,
            pos: -1,
            closed: false,
        }
    }

    fn open(&self) -> Result<()> {
        if self.closed {
            Err(RdbError::new(
                code::ALREADY_CLOSED,
                "the result set is closed",
            ))
        } else {
            Ok(())
        }
    }

    /// The column names and the rows, for sending them on.
    pub fn into_parts(self) -> (Vec<String>, Vec<Vec<Value>>) {
        (self.columns, self.rows)
    }

    /// The column names.
    pub fn column_names(&self) -> &[String] {
        &self.columns
    }
    /// How many columns.
    pub fn column_count(&self) -> usize {
        self.columns.len()
    }
    /// How many rows.
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }
    /// The cursor's row, -1 before the first.
    pub fn row_index(&self) -> i64 {
        self.pos
    }
    /// The index of column `name` (14800013 if there is none).
    pub fn get_column_index(&self, name: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| RdbError::new(code::COLUMN_OUT_OF_BOUNDS, format!("no column {name:?}")))
    }
    /// The name of column `i`.
    pub fn get_column_name(&self, i: usize) -> Result<&str> {
        self.columns
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| RdbError::new(code::COLUMN_OUT_OF_BOUNDS, format!("no column {i}")))
    }

    /// Moves to row `i`; false (and the cursor past the end) when there is no such row.
    pub fn go_to_row(&mut self, i: i64) -> Result<bool> {
        self.open()?;
        let n = self.rows.len() as i64;
        if (0..n).contains(&i) {
            self.pos = i;
            Ok(true)
        } else {
            self.pos = if i < 0 { -1 } else { n };
            Ok(false)
        }
    }
    /// Moves `by` rows from here.
    pub fn go_to(&mut self, by: i64) -> Result<bool> {
        self.go_to_row(self.pos.saturating_add(by))
    }
    /// Moves to the next row; false past the last.
    pub fn go_to_next_row(&mut self) -> Result<bool> {
        self.go_to(1)
    }
    /// Moves to the previous row; false before the first.
    pub fn go_to_previous_row(&mut self) -> Result<bool> {
        self.go_to(-1)
    }
    /// Moves to the first row; false when there are none.
    pub fn go_to_first_row(&mut self) -> Result<bool> {
        self.go_to_row(0)
    }
    /// Moves to the last row; false when there are none.
    pub fn go_to_last_row(&mut self) -> Result<bool> {
        self.go_to_row(self.rows.len() as i64 - 1)
    }
    /// True on the first row.
    pub fn is_at_first_row(&self) -> bool {
        self.pos == 0 && !self.rows.is_empty()
    }
    /// True on the last row.
    pub fn is_at_last_row(&self) -> bool {
        !self.rows.is_empty() && self.pos == self.rows.len() as i64 - 1
    }
    /// True past the last row.
    pub fn is_ended(&self) -> bool {
        self.pos >= self.rows.len() as i64
    }

    /// The value in column `i` of the cursor's row (14800012 off a row, 14800013 off a column).
    pub fn get_value(&self, i: usize) -> Result<&Value> {
        self.open()?;
        let row = usize::try_from(self.pos)
            .ok()
            .and_then(|p| self.rows.get(p))
            .ok_or_else(|| {
                RdbError::new(code::ROW_OUT_OF_BOUNDS, format!("no row at {}", self.pos))
            })?;
        row.get(i)
            .ok_or_else(|| RdbError::new(code::COLUMN_OUT_OF_BOUNDS, format!("no column {i}")))
    }

    fn mismatch(i: usize, want: &str, v: &Value) -> RdbError {
        RdbError::new(
            code::COLUMN_OUT_OF_BOUNDS,
            format!("column {i} holds {v:?}, not {want}"),
        )
    }

    /// Column `i` as text (numbers are formatted; NULL and blobs are 14800013).
    pub fn get_string(&self, i: usize) -> Result<String> {
        match self.get_value(i)? {
            Value::Text(s) => Ok(s.clone()),
            Value::Integer(n) => Ok(n.to_string()),
            Value::Real(r) => Ok(r.to_string()),
            v => Err(Self::mismatch(i, "text", v)),
        }
    }
    /// Column `i` as an integer (a real is truncated, text parsed).
    pub fn get_long(&self, i: usize) -> Result<i64> {
        match self.get_value(i)? {
            Value::Integer(n) => Ok(*n),
            Value::Real(r) => Ok(*r as i64),
            v @ Value::Text(s) => s
                .trim()
                .parse()
                .map_err(|_| Self::mismatch(i, "an integer", v)),
            v => Err(Self::mismatch(i, "an integer", v)),
        }
    }
    /// Column `i` as a double.
    pub fn get_double(&self, i: usize) -> Result<f64> {
        match self.get_value(i)? {
            Value::Real(r) => Ok(*r),
            Value::Integer(n) => Ok(*n as f64),
            v @ Value::Text(s) => s
                .trim()
                .parse()
                .map_err(|_| Self::mismatch(i, "a double", v)),
            v => Err(Self::mismatch(i, "a double", v)),
        }
    }
    /// Column `i` as bytes (text gives its UTF-8).
    pub fn get_blob(&self, i: usize) -> Result<Vec<u8>> {
        match self.get_value(i)? {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            v => Err(Self::mismatch(i, "a blob", v)),
        }
    }
    /// True when column `i` of this row is NULL.
    pub fn is_column_null(&self, i: usize) -> Result<bool> {
        Ok(self.get_value(i)?.is_null())
    }
    /// The cursor's whole row.
    pub fn get_row(&self) -> Result<Vec<Value>> {
        (0..self.columns.len())
            .map(|i| self.get_value(i).cloned())
            .collect()
    }
    /// All rows (whatever the cursor).
    pub fn rows(&self) -> &[Vec<Value>] {
        &self.rows
    }
    /// Closes the set; later reads are 14800014.
    pub fn close(&mut self) {
        self.closed = true;
        self.rows = Vec::new();
    }
    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_walks_rows_and_getters_convert_or_refuse() {
        let mut rs = ResultSet::new(
            vec!["id".into(), "t".into(), "b".into()],
            vec![
                vec![Value::from(1), Value::from("x"), Value::Null],
                vec![Value::from(2), Value::from("3.5"), Value::from(vec![1u8])],
            ],
        );
        assert_eq!(rs.get_value(0).unwrap_err().code(), 14_800_012);
        assert!(rs.go_to_next_row().unwrap());
        assert!(rs.is_at_first_row());
        assert_eq!(rs.get_long(0).unwrap(), 1);
        assert_eq!(rs.get_string(0).unwrap(), "1");
        assert_eq!(rs.get_string(1).unwrap(), "x");
        assert!(rs.is_column_null(2).unwrap());
        assert_eq!(rs.get_string(2).unwrap_err().code(), 14_800_013);
        assert_eq!(rs.get_long(1).unwrap_err().code(), 14_800_013);
        assert_eq!(rs.get_value(3).unwrap_err().code(), 14_800_013);
        assert!(rs.go_to_next_row().unwrap());
        assert_eq!(rs.get_double(1).unwrap(), 3.5);
        assert_eq!(rs.get_blob(2).unwrap(), vec![1]);
        assert!(rs.is_at_last_row());
        assert!(!rs.go_to_next_row().unwrap());
        assert!(rs.is_ended());
        assert_eq!(rs.get_column_index("t").unwrap(), 1);
        rs.close();
        assert_eq!(rs.go_to_first_row().unwrap_err().code(), 14_800_014);
    }
}
