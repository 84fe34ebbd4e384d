//! Distributed tables: which tables are, their change log ([`schema`]), the merge rule
//! ([`merge`], pure) and the store as a replica: changesets out and in ([`replica`]).

pub mod merge;
pub mod replica;
pub mod schema;
mod wire;

use crate::config::MAX_DISTRIBUTED_TABLES;
use crate::conn::Conn;
use crate::error::{RdbError, Result};
use crate::ident;
use schema::TableInfo;
use sha2::{Digest, Sha256};

/// OpenHarmony's prefix of a device's distributed table name (DistributedDB's).
pub const DISTRIBUTED_TABLE_PREFIX: &str = "naturalbase_rdb_aux_";

/// OpenHarmony's name for `table`'s rows as synced from `device`:
/// `naturalbase_rdb_aux_<table>_<hex(sha256(device))>`.
pub fn distributed_table_name(device: &str, table: &str) -> Result<String> {
    ident::table(table)?;
    Ok(format!(
        "{DISTRIBUTED_TABLE_PREFIX}{table}_{}",
        hex::encode(Sha256::digest(device.as_bytes()))
    ))
}

/// The distributed tables and their recorded column lists.
pub(crate) fn recorded(c: &rusqlite::Connection) -> Result<Vec<(String, String)>> {
    let mut st = c.prepare_cached("SELECT name, cols FROM oxh_rdb_tables ORDER BY name")?;
    let v = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// The distributed tables as they are now.
pub(crate) fn tables(c: &rusqlite::Connection) -> Result<Vec<TableInfo>> {
    recorded(c)?
        .into_iter()
        .map(|(t, _)| schema::table_info(c, &t))
        .collect()
}

/// `setDistributedTables`: makes `names` distributed (with those already so, at most
/// [`MAX_DISTRIBUTED_TABLES`]); the rows they hold are logged as local writes now. Inside
/// a write transaction.
pub(crate) fn set_tables(conn: &Conn, names: &[&str]) -> Result<()> {
    let c = &conn.c;
    let have = recorded(c)?;
    let mut all: Vec<&str> = have.iter().map(|(t, _)| t.as_str()).collect();
    for n in names {
        if !all.iter().any(|t| t.eq_ignore_ascii_case(n)) {
            all.push(n);
        }
    }
    if all.len() > MAX_DISTRIBUTED_TABLES {
        return Err(RdbError::invalid(format!(
            "at most {MAX_DISTRIBUTED_TABLES} distributed tables per store ({} asked)",
            all.len()
        )));
    }
    for n in names {
        let t = schema::table_info(c, n)?;
        if have.iter().any(|(h, _)| h == &t.name) {
            continue;
        }
        schema::create_log_tables(c, &t)?;
        schema::create_triggers(c, &t)?;
        schema::backfill(c, &t)?;
        c.execute(
            "INSERT INTO oxh_rdb_tables(name, cols) VALUES (?1, ?2)",
            [&t.name, &t.signature()],
        )?;
    }
    Ok(())
}

/// After a schema change: a dropped distributed table loses its log; one that gained
/// nullable columns gets triggers for them; any other change to a distributed table
/// (a column dropped or renamed, the key changed, a NOT NULL column added) is refused,
/// which rolls the change back.
pub(crate) fn refresh(conn: &Conn) -> Result<()> {
    let c = &conn.c;
    for (name, cols) in recorded(c)? {
        let exists: bool = c.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [&name],
            |r| r.get(0),
        )?;
        if !exists {
            schema::drop_log(c, &name)?;
            c.execute("DELETE FROM oxh_rdb_tables WHERE name = ?1", [&name])?;
            continue;
        }
        let t = schema::table_info(c, &name)?;
        let now = t.signature();
        if now == cols {
            continue;
        }
        let (old_pk, old) = cols.split_once('|').unwrap_or(("", ""));
        let (new_pk, _) = now.split_once('|').unwrap_or(("", ""));
        let old: Vec<&str> = old.split(',').filter(|s| !s.is_empty()).collect();
        let kept = old_pk == new_pk
            && t.cols.len() >= old.len()
            && old.iter().zip(&t.cols).all(|(o, (n, _))| o == n)
            && t.cols[old.len()..].iter().all(|(_, notnull)| !notnull);
        if !kept {
            return Err(RdbError::invalid(format!(
                "distributed table {name:?}: only adding a nullable column is allowed (key|columns were {cols}, would be {now})"
            )));
        }
        schema::create_triggers(c, &t)?;
        c.execute(
            "UPDATE oxh_rdb_tables SET cols = ?2 WHERE name = ?1",
            [&name, &now],
        )?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod sim_tests;
#[cfg(test)]
mod tests;
