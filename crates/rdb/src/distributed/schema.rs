//! The change log of a distributed table: two log tables and the triggers that fill them.
//!
//! For table `T` with primary key columns `P…` and other columns `C…`:
//! - `oxh_rdb_T_rows(P…, oxh_rdb_cl, oxh_rdb_ts, oxh_rdb_dev, oxh_rdb_seq)`: one row per key
//!   ever seen, with its causal length (odd: the row is present, even: deleted) and when and
//!   where the length last changed.
//! - `oxh_rdb_T_cells(P…, oxh_rdb_col, oxh_rdb_ts, oxh_rdb_dev, oxh_rdb_seq)`: the HLC
//!   timestamp and origin device of a present row's cell written after the row began (by
//!   an update or a merge); a cell without an entry has its row's version, the write that
//!   began the row's life (so an insert writes no cell entries).
//!
//! `oxh_rdb_dev` is an index into the store's `oxh_rdb_devices(idx, device)` (a udid is 64
//! characters; each log entry carrying one cost about 5% of an insert).
//! `oxh_rdb_seq` is the store's local change number (every local write and every applied
//! remote write takes the next): what a changeset since a watermark selects on. The triggers
//! call the store's functions `oxh_rdb_ts()`, `oxh_rdb_dev()`, `oxh_rdb_seq()` and stand
//! aside while `oxh_rdb_applying()` (a peer's changes are written by the merge itself, so
//! they never come back as local changes). A connection without those functions (`sqlite3`
//! by hand) can read every table but not write a distributed one.

use crate::error::{RdbError, Result};
use crate::ident::{self, RESERVED_PREFIX, q};
use rusqlite::{Connection, OptionalExtension};

/// A table's columns as the log needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// The table.
    pub name: String,
    /// Primary key columns in key order, with their affinity.
    pub pk: Vec<(String, &'static str)>,
    /// The other columns, in table order, and whether each is NOT NULL.
    pub cols: Vec<(String, bool)>,
}

/// SQLite's affinity of a declared type (its rules, section 3.1 of "Datatypes").
fn affinity(decl: &str) -> &'static str {
    let d = decl.to_ascii_uppercase();
    if d.contains("INT") {
        "INTEGER"
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        "TEXT"
    } else if d.contains("BLOB") || d.is_empty() {
        "BLOB"
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        "REAL"
    } else {
        "NUMERIC"
    }
}

/// Reads `table`'s columns; refuses what cannot be distributed: no such table, no primary
/// key, names we cannot log, UNIQUE constraints besides the key (a merge could not keep
/// them on every replica).
pub fn table_info(c: &Connection, table: &str) -> Result<TableInfo> {
    let qt = ident::table(table)?;
    let mut st = c.prepare(&format!("PRAGMA table_info({qt})"))?;
    let mut pk = Vec::new();
    let mut cols = Vec::new();
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let name: String = r.get(1)?;
        let decl: String = r.get::<_, Option<String>>(2)?.unwrap_or_default();
        let notnull: bool = r.get(3)?;
        let pk_pos: i64 = r.get(5)?;
        if !ident::is_plain(&name) || name.to_ascii_lowercase().starts_with(RESERVED_PREFIX) {
            return Err(RdbError::invalid(format!(
                "table {table:?}: column {name:?} cannot be distributed (plain names only, not {RESERVED_PREFIX}*)"
            )));
        }
        if pk_pos > 0 {
            pk.push((pk_pos, name, affinity(&decl)));
        } else {
            cols.push((name, notnull));
        }
    }
    if pk.is_empty() && cols.is_empty() {
        return Err(RdbError::new(
            crate::error::code::SQLITE_ERROR,
            format!("no such table: {table}"),
        ));
    }
    if pk.is_empty() {
        return Err(RdbError::invalid(format!(
            "table {table:?} has no primary key; a distributed table needs one to match rows across devices"
        )));
    }
    pk.sort_by_key(|p| p.0);
    let unique: Option<String> = c
        .query_row(
            "SELECT name FROM pragma_index_list(?1) WHERE \"unique\" AND origin <> 'pk' LIMIT 1",
            [table],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(name) = unique {
        return Err(RdbError::invalid(format!(
            "table {table:?} has the UNIQUE index {name:?}; a distributed table may be unique on its primary key only"
        )));
    }
    Ok(TableInfo {
        name: table.to_string(),
        pk: pk.into_iter().map(|(_, n, a)| (n, a)).collect(),
        cols,
    })
}

/// The log table of present and deleted rows.
pub fn rows_table(t: &str) -> String {
    format!("{RESERVED_PREFIX}{t}_rows")
}
/// The log table of cell versions.
pub fn cells_table(t: &str) -> String {
    format!("{RESERVED_PREFIX}{t}_cells")
}

impl TableInfo {
    /// `"p1", "p2"`.
    pub fn pk_list(&self) -> String {
        self.pk
            .iter()
            .map(|(n, _)| q(n))
            .collect::<Vec<_>>()
            .join(", ")
    }
    /// `prefix."p1", prefix."p2"` (NEW / OLD in a trigger).
    fn pk_of(&self, prefix: &str) -> String {
        self.pk
            .iter()
            .map(|(n, _)| format!("{prefix}.{}", q(n)))
            .collect::<Vec<_>>()
            .join(", ")
    }
    /// `"p1" IS ?1 AND "p2" IS ?2`, numbered from `from`.
    pub fn pk_match(&self, from: usize) -> String {
        self.pk
            .iter()
            .enumerate()
            .map(|(i, (n, _))| format!("{} IS ?{}", q(n), i + from))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
    fn pk_match_row(&self, prefix: &str) -> String {
        self.pk
            .iter()
            .map(|(n, _)| format!("{0} IS {prefix}.{0}", q(n)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
    /// What the store records of the table: `key1,key2|col1,col2`.
    pub fn signature(&self) -> String {
        let names = |v: Vec<&str>| v.join(",");
        format!(
            "{}|{}",
            names(self.pk.iter().map(|(n, _)| n.as_str()).collect()),
            names(self.cols.iter().map(|(n, _)| n.as_str()).collect())
        )
    }
}

/// The log tables (made if missing).
pub fn create_log_tables(c: &Connection, t: &TableInfo) -> Result<()> {
    let keys: Vec<String> = t.pk.iter().map(|(n, a)| format!("{} {a}", q(n))).collect();
    let keys = keys.join(", ");
    let pks = t.pk_list();
    let (rows, cells) = (rows_table(&t.name), cells_table(&t.name));
    c.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {rq} ({keys}, oxh_rdb_cl INTEGER NOT NULL, oxh_rdb_ts INTEGER NOT NULL,
           oxh_rdb_dev INTEGER NOT NULL, oxh_rdb_seq INTEGER NOT NULL, PRIMARY KEY ({pks})) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS {rs} ON {rq}(oxh_rdb_seq);
         CREATE TABLE IF NOT EXISTS {cq} ({keys}, oxh_rdb_col TEXT NOT NULL, oxh_rdb_ts INTEGER NOT NULL,
           oxh_rdb_dev INTEGER NOT NULL, oxh_rdb_seq INTEGER NOT NULL, PRIMARY KEY ({pks}, oxh_rdb_col)) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS {cs} ON {cq}(oxh_rdb_seq);",
        rq = q(&rows),
        cq = q(&cells),
        rs = q(&format!("{rows}_seq")),
        cs = q(&format!("{cells}_seq")),
    ))?;
    Ok(())
}

/// The log statements for a row that came into being (`r` is NEW): a new causal length if it
/// was deleted or unknown, and every cell stamped.
fn row_born(t: &TableInfo, r: &str) -> String {
    // Its cells get no entries: a cell without one has the version of the write that began
    // its row's life, kept here (a row that comes into being has no cell entries: a delete
    // removes them).
    let rows = q(&rows_table(&t.name));
    let pks = t.pk_list();
    let vals = t.pk_of(r);
    format!(
        "INSERT INTO {rows} ({pks}, oxh_rdb_cl, oxh_rdb_ts, oxh_rdb_dev, oxh_rdb_seq)
           VALUES ({vals}, 1, oxh_rdb_ts(), oxh_rdb_dev(), oxh_rdb_seq())
           ON CONFLICT DO UPDATE SET oxh_rdb_cl = oxh_rdb_cl + 1 - (oxh_rdb_cl % 2),
             oxh_rdb_ts = excluded.oxh_rdb_ts, oxh_rdb_dev = excluded.oxh_rdb_dev,
             oxh_rdb_seq = excluded.oxh_rdb_seq;\n"
    )
}

/// The log statements for a row that went (`r` is OLD): an even causal length, no cells.
fn row_gone(t: &TableInfo, r: &str) -> String {
    let (rows, cells) = (q(&rows_table(&t.name)), q(&cells_table(&t.name)));
    let pks = t.pk_list();
    format!(
        "INSERT INTO {rows} ({pks}, oxh_rdb_cl, oxh_rdb_ts, oxh_rdb_dev, oxh_rdb_seq)
           VALUES ({vals}, 2, oxh_rdb_ts(), oxh_rdb_dev(), oxh_rdb_seq())
           ON CONFLICT DO UPDATE SET oxh_rdb_cl = oxh_rdb_cl + (oxh_rdb_cl % 2),
             oxh_rdb_ts = excluded.oxh_rdb_ts, oxh_rdb_dev = excluded.oxh_rdb_dev,
             oxh_rdb_seq = excluded.oxh_rdb_seq;
         DELETE FROM {cells} WHERE {m};\n",
        vals = t.pk_of(r),
        m = t.pk_match_row(r),
    )
}

fn trigger(t: &TableInfo, kind: &str) -> String {
    q(&format!("{RESERVED_PREFIX}{}_{kind}", t.name))
}

/// Drops the triggers (before they are made again for a changed column list).
pub fn drop_triggers(c: &Connection, table: &str) -> Result<()> {
    for kind in ["ins", "upd", "updpk", "del"] {
        c.execute_batch(&format!(
            "DROP TRIGGER IF EXISTS {};",
            q(&format!("{RESERVED_PREFIX}{table}_{kind}"))
        ))?;
    }
    Ok(())
}

/// (Re)makes the four triggers of `t`.
pub fn create_triggers(c: &Connection, t: &TableInfo) -> Result<()> {
    drop_triggers(c, &t.name)?;
    let tq = q(&t.name);
    let same_key =
        t.pk.iter()
            .map(|(n, _)| format!("NEW.{0} IS OLD.{0}", q(n)))
            .collect::<Vec<_>>()
            .join(" AND ");
    let mut sql = format!(
        "CREATE TRIGGER {ins} AFTER INSERT ON {tq} WHEN oxh_rdb_applying() = 0 BEGIN\n{born}END;\n
         CREATE TRIGGER {del} AFTER DELETE ON {tq} WHEN oxh_rdb_applying() = 0 BEGIN\n{gone}END;\n
         CREATE TRIGGER {updpk} AFTER UPDATE ON {tq} WHEN oxh_rdb_applying() = 0 AND NOT ({same_key}) BEGIN\n{gone_old}{born}END;\n",
        ins = trigger(t, "ins"),
        del = trigger(t, "del"),
        updpk = trigger(t, "updpk"),
        born = row_born(t, "NEW"),
        gone = row_gone(t, "OLD"),
        gone_old = row_gone(t, "OLD"),
    );
    if !t.cols.is_empty() {
        let (rows, cells) = (q(&rows_table(&t.name)), q(&cells_table(&t.name)));
        let pks = t.pk_list();
        let vals = t.pk_of("NEW");
        let changed: Vec<String> = t
            .cols
            .iter()
            .map(|(c, _)| format!("SELECT '{c}' AS c WHERE NEW.{0} IS NOT OLD.{0}", q(c)))
            .collect();
        sql.push_str(&format!(
            "CREATE TRIGGER {upd} AFTER UPDATE ON {tq} WHEN oxh_rdb_applying() = 0 AND ({same_key}) BEGIN
               INSERT INTO {rows} ({pks}, oxh_rdb_cl, oxh_rdb_ts, oxh_rdb_dev, oxh_rdb_seq)
                 VALUES ({vals}, 1, oxh_rdb_ts(), oxh_rdb_dev(), oxh_rdb_seq()) ON CONFLICT DO NOTHING;
               INSERT INTO {cells} ({pks}, oxh_rdb_col, oxh_rdb_ts, oxh_rdb_dev, oxh_rdb_seq)
                 SELECT {vals}, c, (SELECT oxh_rdb_ts()), (SELECT oxh_rdb_dev()), (SELECT oxh_rdb_seq()) FROM ({}) WHERE true
                 ON CONFLICT DO UPDATE SET oxh_rdb_ts = excluded.oxh_rdb_ts,
                   oxh_rdb_dev = excluded.oxh_rdb_dev, oxh_rdb_seq = excluded.oxh_rdb_seq;
             END;",
            changed.join(" UNION ALL "),
            upd = trigger(t, "upd"),
        ));
    }
    c.execute_batch(&sql)?;
    Ok(())
}

/// Logs the rows a table held before it was distributed, as local writes now.
pub fn backfill(c: &Connection, t: &TableInfo) -> Result<()> {
    // Rows only: their cells have the rows' version.
    let rows = q(&rows_table(&t.name));
    let pks = t.pk_list();
    let tq = q(&t.name);
    c.execute_batch(&format!(
        "INSERT INTO {rows} ({pks}, oxh_rdb_cl, oxh_rdb_ts, oxh_rdb_dev, oxh_rdb_seq)
           SELECT {pks}, 1, oxh_rdb_ts(), oxh_rdb_dev(), oxh_rdb_seq() FROM {tq} WHERE true
           ON CONFLICT DO NOTHING;"
    ))?;
    Ok(())
}

/// Removes a table's log (the table itself was dropped).
pub fn drop_log(c: &Connection, table: &str) -> Result<()> {
    drop_triggers(c, table)?;
    c.execute_batch(&format!(
        "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};",
        q(&rows_table(table)),
        q(&cells_table(table))
    ))?;
    Ok(())
}
