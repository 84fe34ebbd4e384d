//! The statements behind the API, on one connection: insert, batchInsert, update, delete,
//! query, querySql, execute. The caller (store or transaction) owns the transaction around
//! them; nothing here begins or commits one.

use crate::error::{RdbError, Result, code};
use crate::ident;
use crate::predicates::RdbPredicates;
use crate::result_set::ResultSet;
use crate::value::{Value, ValuesBucket};
use rusqlite::{Connection, params_from_iter};

/// `relationalStore.ConflictResolution`: what an insert or update does when it breaks a
/// constraint (SQLite's `OR ...` clauses; the numbers are OpenHarmony's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictResolution {
    /// 0: no clause (SQLite's default, ABORT).
    #[default]
    None = 0,
    /// 1: roll back the whole transaction.
    Rollback = 1,
    /// 2: undo this statement, keep the transaction.
    Abort = 2,
    /// 3: stop here, keep what the statement already changed.
    Fail = 3,
    /// 4: skip the row that conflicts.
    Ignore = 4,
    /// 5: delete the rows in the way, then write.
    Replace = 5,
}

impl ConflictResolution {
    /// From OpenHarmony's number.
    pub fn from_i32(v: i32) -> Result<Self> {
        Ok(match v {
            0 => Self::None,
            1 => Self::Rollback,
            2 => Self::Abort,
            3 => Self::Fail,
            4 => Self::Ignore,
            5 => Self::Replace,
            _ => return Err(RdbError::invalid(format!("conflict resolution {v}"))),
        })
    }

    fn clause(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Rollback => " OR ROLLBACK",
            Self::Abort => " OR ABORT",
            Self::Fail => " OR FAIL",
            Self::Ignore => " OR IGNORE",
            Self::Replace => " OR REPLACE",
        }
    }
}

fn columns_of(values: &ValuesBucket) -> Result<Vec<String>> {
    values.iter().map(|(c, _)| ident::quote(c)).collect()
}

/// Inserts one row; its rowid, or -1 when `ON_CONFLICT_IGNORE` skipped it (OpenHarmony's).
pub fn insert(
    c: &Connection,
    table: &str,
    values: &ValuesBucket,
    how: ConflictResolution,
) -> Result<i64> {
    if values.is_empty() {
        return Err(RdbError::invalid("insert: the ValuesBucket is empty"));
    }
    let t = ident::table(table)?;
    let cols = columns_of(values)?;
    let marks = vec!["?"; cols.len()].join(", ");
    let sql = format!(
        "INSERT{} INTO {t} ({}) VALUES ({marks})",
        how.clause(),
        cols.join(", ")
    );
    let n = c
        .prepare_cached(&sql)?
        .execute(params_from_iter(values.iter().map(|(_, v)| v)))?;
    Ok(if n == 0 { -1 } else { c.last_insert_rowid() })
}

/// Inserts rows; how many were inserted. Consecutive rows with the same columns go in one
/// multi-row statement, split so no statement binds more than SQLite's variable limit.
pub fn batch_insert(
    c: &Connection,
    table: &str,
    rows: &[ValuesBucket],
    how: ConflictResolution,
) -> Result<i64> {
    let t = ident::table(table)?;
    let max_vars = c
        .limit(rusqlite::limits::Limit::SQLITE_LIMIT_VARIABLE_NUMBER)
        .map_or(999, |v| v.max(1)) as usize;
    let mut total = 0i64;
    let mut i = 0;
    while i < rows.len() {
        let first = &rows[i];
        if first.is_empty() {
            return Err(RdbError::invalid(format!("batchInsert: row {i} is empty")));
        }
        let names: Vec<&str> = first.iter().map(|(c, _)| c).collect();
        let per_stmt = (max_vars / names.len()).max(1);
        let mut j = i + 1;
        while j < rows.len()
            && j - i < per_stmt
            && rows[j].len() == names.len()
            && rows[j].iter().zip(&names).all(|((a, _), b)| a == *b)
        {
            j += 1;
        }
        let cols = columns_of(first)?;
        let one = format!("({})", vec!["?"; cols.len()].join(", "));
        let sql = format!(
            "INSERT{} INTO {t} ({}) VALUES {}",
            how.clause(),
            cols.join(", "),
            vec![one.as_str(); j - i].join(", ")
        );
        let args = rows[i..j].iter().flat_map(|r| r.iter().map(|(_, v)| v));
        total += c.prepare_cached(&sql)?.execute(params_from_iter(args))? as i64;
        i = j;
    }
    Ok(total)
}

fn no_tail(p: &crate::predicates::Compiled, what: &str) -> Result<()> {
    if p.has_tail {
        return Err(RdbError::invalid(format!(
            "{what}: distinct/groupBy/orderBy/limitAs/offsetAs apply to queries only"
        )));
    }
    Ok(())
}

/// Updates the rows the predicates match; how many.
pub fn update(
    c: &Connection,
    values: &ValuesBucket,
    p: &RdbPredicates,
    how: ConflictResolution,
) -> Result<usize> {
    if values.is_empty() {
        return Err(RdbError::invalid("update: the ValuesBucket is empty"));
    }
    let pc = p.compile()?;
    no_tail(&pc, "update")?;
    let set: Vec<String> = columns_of(values)?
        .into_iter()
        .map(|c| format!("{c} = ?"))
        .collect();
    let sql = format!(
        "UPDATE{} {} SET {}{}",
        how.clause(),
        pc.table,
        set.join(", "),
        pc.where_clause()
    );
    let args = values.iter().map(|(_, v)| v).chain(pc.args.iter());
    Ok(c.prepare_cached(&sql)?.execute(params_from_iter(args))?)
}

/// Deletes the rows the predicates match; how many.
pub fn delete(c: &Connection, p: &RdbPredicates) -> Result<usize> {
    let pc = p.compile()?;
    no_tail(&pc, "delete")?;
    let sql = format!("DELETE FROM {}{}", pc.table, pc.where_clause());
    Ok(c.prepare_cached(&sql)?
        .execute(params_from_iter(pc.args.iter()))?)
}

/// The rows the predicates match, `columns` of them (all when empty).
pub fn query(c: &Connection, p: &RdbPredicates, columns: &[&str]) -> Result<ResultSet> {
    query_capped(c, p, columns, usize::MAX)
}

/// [`query`], refused (see [`crate::api::too_big`]) as soon as the rows read take more than
/// `cap` bytes encoded, so a server never holds more of a result than it may send.
pub fn query_capped(
    c: &Connection,
    p: &RdbPredicates,
    columns: &[&str],
    cap: usize,
) -> Result<ResultSet> {
    let pc = p.compile()?;
    let cols = if columns.is_empty() {
        "*".to_string()
    } else {
        columns
            .iter()
            .map(|c| ident::quote(c))
            .collect::<Result<Vec<_>>>()?
            .join(", ")
    };
    let sql = format!(
        "SELECT {}{cols} FROM {}{}{}",
        if pc.distinct { "DISTINCT " } else { "" },
        pc.table,
        pc.where_clause(),
        pc.tail
    );
    read(c, &sql, &pc.args, cap)
}

fn read(c: &Connection, sql: &str, args: &[Value], cap: usize) -> Result<ResultSet> {
    let mut st = c.prepare_cached(sql)?;
    let names: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
    let n = names.len();
    let mut rows = Vec::new();
    let mut q = st.query(params_from_iter(args.iter()))?;
    // The bytes the reply takes encoded, an upper bound: the column names, then each row
    // (a varint length and its values).
    let mut size = crate::api::encoded_size(&Value::Null)
        + names
            .iter()
            .map(|c| crate::api::encoded_size(&Value::Null) + c.len())
            .sum::<usize>();
    if size > cap {
        return Err(crate::api::too_big(size, cap));
    }
    while let Some(r) = q.next()? {
        let row: Vec<Value> = (0..n)
            .map(|i| r.get_ref(i).map(Value::from))
            .collect::<Result<_, _>>()?;
        size += 10 + row.iter().map(crate::api::encoded_size).sum::<usize>();
        if size > cap {
            return Err(crate::api::too_big(size, cap));
        }
        rows.push(row);
    }
    Ok(ResultSet::new(names, rows))
}

/// A query in SQL, `?` for each argument (14800019 when it is not a query).
pub fn query_sql(c: &Connection, sql: &str, args: &[Value]) -> Result<ResultSet> {
    query_sql_capped(c, sql, args, usize::MAX)
}

/// [`query_sql`] with a cap on the result's encoded bytes, as [`query_capped`].
pub fn query_sql_capped(
    c: &Connection,
    sql: &str,
    args: &[Value],
    cap: usize,
) -> Result<ResultSet> {
    {
        let st = c.prepare_cached(sql)?;
        if !st.readonly() || st.column_count() == 0 {
            return Err(RdbError::new(code::NOT_A_QUERY, sql.to_string()));
        }
    }
    read(c, sql, args, cap)
}

/// One SQL statement of any kind. Returns what OpenHarmony's `execute` does: the first
/// column of the first row for a statement with results (a PRAGMA), the rowid for an
/// INSERT, the changed row count for an UPDATE or DELETE, else NULL.
pub fn execute(c: &Connection, sql: &str, args: &[Value]) -> Result<Value> {
    let mut st = c.prepare(sql)?;
    if st.column_count() > 0 {
        let mut q = st.query(params_from_iter(args.iter()))?;
        let first = match q.next()? {
            Some(r) => r.get_ref(0)?.into(),
            None => Value::Null,
        };
        while q.next()?.is_some() {}
        return Ok(first);
    }
    let n = st.execute(params_from_iter(args.iter()))?;
    let head = sql.trim_start().get(..7).unwrap_or("").to_ascii_uppercase();
    Ok(
        if head.starts_with("INSERT") || head.starts_with("REPLACE") {
            Value::Integer(c.last_insert_rowid())
        } else if head.starts_with("UPDATE") || head.starts_with("DELETE") {
            Value::Integer(n as i64)
        } else {
            Value::Null
        },
    )
}
