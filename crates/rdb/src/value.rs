//! `ValueType` and `ValuesBucket`: what a cell holds and what a row to write is.

use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use serde::{Deserialize, Serialize};

/// A cell's value, SQLite's five storage classes (OpenHarmony's `ValueType`; a boolean is
/// stored as an integer, as SQLite does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A double.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl Value {
    /// True for NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Integer(v.into())
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Integer(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

impl From<ValueRef<'_>> for Value {
    fn from(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(r) => Value::Real(r),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

impl From<SqlValue> for Value {
    fn from(v: SqlValue) -> Self {
        match v {
            SqlValue::Null => Value::Null,
            SqlValue::Integer(i) => Value::Integer(i),
            SqlValue::Real(r) => Value::Real(r),
            SqlValue::Text(t) => Value::Text(t),
            SqlValue::Blob(b) => Value::Blob(b),
        }
    }
}

impl rusqlite::types::FromSql for Value {
    fn column_result(v: ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        Ok(v.into())
    }
}

/// `ValuesBucket`: column names and values of one row to insert or update, in the order
/// they were put (a second put of a column replaces its value).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValuesBucket {
    cols: Vec<(String, Value)>,
}

impl ValuesBucket {
    /// An empty bucket.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `col` to `v`.
    pub fn put(&mut self, col: impl Into<String>, v: impl Into<Value>) -> &mut Self {
        let col = col.into();
        let v = v.into();
        match self.cols.iter_mut().find(|(c, _)| *c == col) {
            Some(slot) => slot.1 = v,
            None => self.cols.push((col, v)),
        }
        self
    }

    /// Builder form of [`ValuesBucket::put`].
    pub fn with(mut self, col: impl Into<String>, v: impl Into<Value>) -> Self {
        self.put(col, v);
        self
    }

    /// The columns and values, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.cols.iter().map(|(c, v)| (c.as_str(), v))
    }

    /// How many columns are set.
    pub fn len(&self) -> usize {
        self.cols.len()
    }

    /// True when no column is set.
    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }
}
