//! The store as a replica: the changeset since a watermark, applying a peer's changeset in
//! one transaction, and how far each peer acknowledged ours.

use super::merge::{CellChange, Changeset, Plan, RowChange, plan};
use super::schema::{TableInfo, cells_table, rows_table};
use crate::conn::{Conn, DEV_NAME, device_index};
use crate::error::{RdbError, Result};
use crate::ident::q;
use crate::value::Value;
use rusqlite::{OptionalExtension, params_from_iter};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;

/// What applying a changeset did to the rows (for dataChange, by primary key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// (table, key) of rows that came into being here.
    pub inserted: Vec<(String, Vec<Value>)>,
    /// ... whose cells changed.
    pub updated: Vec<(String, Vec<Value>)>,
    /// ... that were deleted.
    pub deleted: Vec<(String, Vec<Value>)>,
}

impl Applied {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.inserted.is_empty() && self.updated.is_empty() && self.deleted.is_empty()
    }
}

fn pk_key(ti: usize, pk: &[Value]) -> String {
    format!("{ti}:{pk:?}")
}

/// About how many bytes a row's values take on the wire (for the packet bound).
fn row_bytes(r: &RowChange) -> usize {
    let v = |x: &Value| match x {
        Value::Text(s) => s.len() + 2,
        Value::Blob(b) => b.len() + 2,
        _ => 9,
    };
    r.pk.iter().map(v).sum::<usize>() + r.cells.iter().map(|c| v(&c.value) + 3).sum::<usize>() + 4
}

/// The rows changed after `after`, at most `max_rows` of them and about `max_bytes` of
/// values (at least one row), as the changeset a peer at watermark `after` needs; its
/// `upto` is where that peer is once it applied it.
pub(crate) fn changes_since(
    conn: &Conn,
    after: u64,
    max_rows: usize,
    max_bytes: usize,
    only: Option<&str>,
) -> Result<Changeset> {
    let c = &conn.c;
    let mut tables = super::tables(c)?;
    if let Some(t) = only {
        tables.retain(|x| x.name == t);
    }
    let max_rows = max_rows.max(1);
    // Every log entry above the watermark, by change number; a table's list is cut at a
    // bound that still covers `max_rows` rows, and then nothing past the cut may be used.
    let mut events: Vec<(i64, usize, Vec<Value>)> = Vec::new();
    let mut cap = i64::MAX;
    for (ti, t) in tables.iter().enumerate() {
        let per = max_rows
            .saturating_mul(t.cols.len() + 1)
            .min(i64::MAX as usize) as i64;
        let pks = t.pk_list();
        let sql = format!(
            "SELECT oxh_rdb_seq, {pks} FROM {r} WHERE oxh_rdb_seq > ?1
             UNION ALL SELECT oxh_rdb_seq, {pks} FROM {cl} WHERE oxh_rdb_seq > ?1
             ORDER BY 1 LIMIT ?2",
            r = q(&rows_table(&t.name)),
            cl = q(&cells_table(&t.name)),
        );
        let mut st = c.prepare_cached(&sql)?;
        let mut rows = st.query(rusqlite::params![after as i64, per])?;
        let mut n = 0i64;
        let mut last = 0i64;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let pk = (1..=t.pk.len())
                .map(|i| r.get::<_, Value>(i))
                .collect::<Result<Vec<_>, _>>()?;
            events.push((seq, ti, pk));
            n += 1;
            last = seq;
        }
        if n == per {
            cap = cap.min(last);
        }
    }
    events.sort_by_key(|e| e.0);
    let mut seen = HashSet::new();
    // (table, key, the first change number of the row above the watermark)
    let mut picked: Vec<(usize, Vec<Value>, i64)> = Vec::new();
    let mut upto = None;
    let mut prev = after as i64;
    for (seq, ti, pk) in events {
        if seq > cap {
            upto = Some(prev);
            break;
        }
        let k = pk_key(ti, &pk);
        if !seen.contains(&k) {
            if picked.len() == max_rows {
                upto = Some(prev);
                break;
            }
            seen.insert(k);
            picked.push((ti, pk, seq));
        }
        prev = seq;
    }
    let mut upto = match upto {
        Some(u) => u,
        None if cap != i64::MAX => cap,
        None => conn.seq()?,
    };
    let mut out = Vec::with_capacity(picked.len());
    let mut bytes = 0usize;
    for (ti, pk, first) in picked {
        // Past the byte bound, the packet ends before this row's first change: every change
        // below that belongs to a row already in it.
        if bytes >= max_bytes && !out.is_empty() {
            upto = first - 1;
            break;
        }
        let row = row_state(c, &tables[ti], pk, after)?;
        bytes += row_bytes(&row);
        out.push(row);
    }
    Ok(Changeset {
        from: after,
        upto: upto.max(after as i64) as u64,
        rows: out,
    })
}

/// A row's causal length and its cells changed after `after`, with their values. A cell
/// without an entry in the cell log has its row's version (the write that began the row's
/// life, in the rows log): it changed after `after` when that write did.
fn row_state(
    c: &rusqlite::Connection,
    t: &TableInfo,
    pk: Vec<Value>,
    after: u64,
) -> Result<RowChange> {
    let m = t.pk_match(1);
    let (cl, cl_ts, cl_dev, row_seq): (i64, i64, String, i64) = c
        .prepare_cached(&format!(
            "SELECT oxh_rdb_cl, oxh_rdb_ts, {DEV_NAME}, oxh_rdb_seq FROM {} WHERE {m}",
            q(&rows_table(&t.name))
        ))?
        .query_row(params_from_iter(pk.iter()), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?
        .unwrap_or((1, 0, String::new(), 0));
    let mut cells = Vec::new();
    if cl % 2 == 1 && !t.cols.is_empty() {
        let cols: Vec<String> = t.cols.iter().map(|(n, _)| q(n)).collect();
        let values: Option<Vec<Value>> = c
            .prepare_cached(&format!(
                "SELECT {} FROM {} WHERE {m}",
                cols.join(", "),
                q(&t.name)
            ))?
            .query_row(params_from_iter(pk.iter()), |r| {
                (0..t.cols.len()).map(|i| r.get::<_, Value>(i)).collect()
            })
            .optional()?;
        let values = values.unwrap_or_else(|| vec![Value::Null; t.cols.len()]);
        // (ts, dev, seq) per column that has its own entry.
        let mut own: Vec<Option<(u64, String, i64)>> = vec![None; t.cols.len()];
        let mut st = c.prepare_cached(&format!(
            "SELECT oxh_rdb_col, oxh_rdb_ts, {DEV_NAME}, oxh_rdb_seq FROM {} WHERE {m}",
            q(&cells_table(&t.name)),
        ))?;
        let mut rows = st.query(params_from_iter(pk.iter()))?;
        while let Some(r) = rows.next()? {
            let col: String = r.get(0)?;
            if let Some(i) = t.cols.iter().position(|(n, _)| *n == col) {
                own[i] = Some((r.get::<_, i64>(1)? as u64, r.get(2)?, r.get(3)?));
            }
        }
        for (i, (col, _)) in t.cols.iter().enumerate() {
            let (ts, dev) = match &own[i] {
                Some((ts, dev, seq)) if *seq > after as i64 => (*ts, dev.clone()),
                Some(_) => continue,
                None if row_seq > after as i64 => (cl_ts as u64, cl_dev.clone()),
                None => continue,
            };
            cells.push(CellChange {
                col: col.clone(),
                value: values[i].clone(),
                ts,
                dev,
            });
        }
        cells.sort_by(|x, y| x.col.cmp(&y.col));
    }
    Ok(RowChange {
        table: t.name.clone(),
        pk,
        cl: cl as u64,
        cl_ts: cl_ts as u64,
        cl_dev,
        cells,
    })
}

/// Checks a peer's row against the local table before anything is written: a distributed
/// table here, a whole key, known columns, a causal length.
fn check<'a>(tables: &'a BTreeMap<String, TableInfo>, r: &RowChange) -> Result<&'a TableInfo> {
    let t = tables.get(&r.table).ok_or_else(|| {
        RdbError::invalid(format!(
            "changeset: {:?} is not a distributed table here",
            r.table
        ))
    })?;
    let bad_key = |v: &Value| v.is_null() || matches!(v, Value::Real(f) if !f.is_finite());
    if r.pk.len() != t.pk.len() || r.pk.iter().any(bad_key) {
        return Err(RdbError::invalid(format!(
            "changeset: table {:?} needs a key of {} non-NULL, finite values",
            r.table,
            t.pk.len()
        )));
    }
    if r.cl == 0 || (r.cl.is_multiple_of(2) && !r.cells.is_empty()) {
        return Err(RdbError::invalid("changeset: bad causal length"));
    }
    let mut seen = HashSet::new();
    for cell in &r.cells {
        if !t.cols.iter().any(|(n, _)| *n == cell.col) || !seen.insert(cell.col.as_str()) {
            return Err(RdbError::invalid(format!(
                "changeset: table {:?} has no column {:?} here (add it before syncing) or it came twice",
                r.table, cell.col
            )));
        }
    }
    Ok(t)
}

/// The device indexes one changeset's writes use, looked up (or made) once each.
#[derive(Default)]
struct Devices(std::collections::HashMap<String, i64>);

impl Devices {
    fn index(&mut self, c: &rusqlite::Connection, device: &str) -> Result<i64> {
        if let Some(&i) = self.0.get(device) {
            return Ok(i);
        }
        let i = device_index(c, device)?;
        self.0.insert(device.to_string(), i);
        Ok(i)
    }
}

/// The statements applying a changeset runs on a table, made once per changeset.
struct TableSql {
    sel_cl: String,
    sel_cells: String,
    set_cl: String,
    del_row: String,
    del_cells: String,
}

impl TableSql {
    fn new(t: &TableInfo) -> Self {
        let m = t.pk_match(1);
        let n = t.pk.len();
        let (rows, cells) = (q(&rows_table(&t.name)), q(&cells_table(&t.name)));
        let marks = (1..=n).map(|i| format!("?{i}")).collect::<Vec<_>>();
        Self {
            sel_cl: format!("SELECT oxh_rdb_cl, oxh_rdb_ts, {DEV_NAME} FROM {rows} WHERE {m}"),
            sel_cells: format!("SELECT oxh_rdb_col, oxh_rdb_ts, {DEV_NAME} FROM {cells} WHERE {m}"),
            set_cl: format!(
                "INSERT INTO {rows} ({}, oxh_rdb_cl, oxh_rdb_ts, oxh_rdb_dev, oxh_rdb_seq)
                 VALUES ({}, ?{}, ?{}, ?{}, ?{}) ON CONFLICT DO UPDATE SET
                 oxh_rdb_cl = excluded.oxh_rdb_cl, oxh_rdb_ts = excluded.oxh_rdb_ts,
                 oxh_rdb_dev = excluded.oxh_rdb_dev, oxh_rdb_seq = excluded.oxh_rdb_seq",
                t.pk_list(),
                marks.join(", "),
                n + 1,
                n + 2,
                n + 3,
                n + 4
            ),
            del_row: format!("DELETE FROM {} WHERE {m}", q(&t.name)),
            del_cells: format!("DELETE FROM {cells} WHERE {m}"),
        }
    }
}

/// Applies a peer's changeset (inside the caller's write transaction): for each row the
/// merge [`plan`] decides, and only what wins is written, with new local change numbers so
/// it travels on to other peers. The local triggers stand aside, so none of it comes back as
/// a local change; applying the same changeset again finds nothing that wins.
pub(crate) fn apply(conn: &Conn, cs: &Changeset) -> Result<Applied> {
    let c = &conn.c;
    let tables: BTreeMap<String, TableInfo> = super::tables(c)?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    for r in &cs.rows {
        check(&tables, r)?;
    }
    // The triggers stand aside until this returns, on every path out.
    struct Applying<'a>(&'a crate::conn::Ctx);
    impl Drop for Applying<'_> {
        fn drop(&mut self) {
            self.0.applying.store(false, Ordering::Relaxed);
        }
    }
    conn.ctx.applying.store(true, Ordering::Relaxed);
    let _applying = Applying(&conn.ctx);
    let sqls: BTreeMap<&str, TableSql> = tables
        .iter()
        .map(|(n, t)| (n.as_str(), TableSql::new(t)))
        .collect();
    let mut out = Applied::default();
    let mut devs = Devices::default();
    let mut observed = 0u64;
    for r in &cs.rows {
        let t = &tables[&r.table];
        observed = observed.max(r.cl_ts);
        for cell in &r.cells {
            observed = observed.max(cell.ts);
        }
        let sql = &sqls[r.table.as_str()];
        let (local_cl, row_ts, row_dev): (u64, u64, String) = c
            .prepare_cached(&sql.sel_cl)?
            .query_row(params_from_iter(r.pk.iter()), |x| {
                Ok((
                    x.get::<_, i64>(0)? as u64,
                    x.get::<_, i64>(1)? as u64,
                    x.get(2)?,
                ))
            })
            .optional()?
            .unwrap_or((0, 0, String::new()));
        // A key never seen here has no cells and no row: nothing to read or clear.
        let local: Vec<(String, u64, String)> = if local_cl % 2 == 1 {
            c.prepare_cached(&sql.sel_cells)?
                .query_map(params_from_iter(r.pk.iter()), |x| {
                    Ok((x.get(0)?, x.get::<_, i64>(1)? as u64, x.get(2)?))
                })?
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let decided = plan(
            local_cl,
            // A cell without its own entry has the row's version.
            |col| {
                local
                    .iter()
                    .find(|(c, _, _)| c == col)
                    .map(|(_, ts, d)| (*ts, d.as_str()))
                    .or(Some((row_ts, row_dev.as_str())))
            },
            r,
        );
        let was_present = local_cl % 2 == 1;
        let key = || (r.table.clone(), r.pk.clone());
        let cl_dev = devs.index(c, &r.cl_dev)?;
        let set_cl = |cl: u64| -> Result<()> {
            c.prepare_cached(&sql.set_cl)?.execute(params_from_iter(
                r.pk.iter().cloned().chain([
                    Value::Integer(cl as i64),
                    Value::Integer(r.cl_ts as i64),
                    Value::Integer(cl_dev),
                    Value::Integer(conn.ctx.next_seq()),
                ]),
            ))?;
            Ok(())
        };
        let clear = || -> Result<()> {
            if !was_present {
                return Ok(());
            }
            c.prepare_cached(&sql.del_row)?
                .execute(params_from_iter(r.pk.iter()))?;
            c.prepare_cached(&sql.del_cells)?
                .execute(params_from_iter(r.pk.iter()))?;
            Ok(())
        };
        match decided {
            Plan::Keep => {}
            Plan::Tombstone { cl } => {
                clear()?;
                set_cl(cl)?;
                if was_present {
                    out.deleted.push(key());
                }
            }
            Plan::Replace { cl } => {
                clear()?;
                set_cl(cl)?;
                let idx: Vec<usize> = (0..r.cells.len()).collect();
                write_cells(conn, &mut devs, t, r, &idx, true)?;
                if was_present {
                    out.updated.push(key());
                } else {
                    out.inserted.push(key());
                }
            }
            Plan::Merge { cells: idx } => {
                write_cells(conn, &mut devs, t, r, &idx, false)?;
                out.updated.push(key());
            }
        }
    }
    conn.ctx.observed.fetch_max(observed, Ordering::Relaxed);
    Ok(out)
}

/// Writes the peer's cells `idx` of row `r` into the table (a new row when `insert`, else
/// an update that makes the row if it is missing) and their versions into the cell log.
fn write_cells(
    conn: &Conn,
    devs: &mut Devices,
    t: &TableInfo,
    r: &RowChange,
    idx: &[usize],
    insert: bool,
) -> Result<()> {
    let c = &conn.c;
    let n = t.pk.len();
    let tq = q(&t.name);
    let cols: Vec<String> = idx.iter().map(|&i| q(&r.cells[i].col)).collect();
    let vals = idx.iter().map(|&i| &r.cells[i].value);
    let all_cols: Vec<String> =
        t.pk.iter()
            .map(|(p, _)| q(p))
            .chain(cols.iter().cloned())
            .collect();
    let marks: Vec<String> = (1..=all_cols.len()).map(|i| format!("?{i}")).collect();
    let args: Vec<Value> = r.pk.iter().cloned().chain(vals.cloned()).collect();
    let sql = if insert || cols.is_empty() {
        format!(
            "INSERT INTO {tq} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
            all_cols.join(", "),
            marks.join(", ")
        )
    } else {
        let set: Vec<String> = cols.iter().map(|c| format!("{c} = excluded.{c}")).collect();
        format!(
            "INSERT INTO {tq} ({}) VALUES ({}) ON CONFLICT DO UPDATE SET {}",
            all_cols.join(", "),
            marks.join(", "),
            set.join(", ")
        )
    };
    c.prepare_cached(&sql)?
        .execute(params_from_iter(args.iter()))?;
    // A new life's cells written by the write that began it have the row's version (kept in
    // the rows log): they need no entry of their own.
    let idx: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| !(insert && r.cells[i].ts == r.cl_ts && r.cells[i].dev == r.cl_dev))
        .collect();
    if idx.is_empty() {
        return Ok(());
    }
    // One statement for the row's cells.
    let tuple = format!("({})", vec!["?"; n + 4].join(", "));
    let mut st = c.prepare_cached(&format!(
        "INSERT INTO {} ({}, oxh_rdb_col, oxh_rdb_ts, oxh_rdb_dev, oxh_rdb_seq)
         VALUES {} ON CONFLICT DO UPDATE SET
         oxh_rdb_ts = excluded.oxh_rdb_ts, oxh_rdb_dev = excluded.oxh_rdb_dev,
         oxh_rdb_seq = excluded.oxh_rdb_seq",
        q(&cells_table(&t.name)),
        t.pk_list(),
        vec![tuple; idx.len()].join(", "),
    ))?;
    let mut args: Vec<Value> = Vec::with_capacity(idx.len() * (n + 4));
    for &i in &idx {
        let cell = &r.cells[i];
        args.extend(r.pk.iter().cloned());
        args.extend([
            Value::Text(cell.col.clone()),
            Value::Integer(cell.ts as i64),
            Value::Integer(devs.index(c, &cell.dev)?),
            Value::Integer(conn.ctx.next_seq()),
        ]);
    }
    st.execute(params_from_iter(args.iter()))?;
    Ok(())
}

/// What we know of `peer`: how far it acknowledged our changes and its store's epoch.
pub(crate) fn peer_state(c: &rusqlite::Connection, peer: &str) -> Result<Option<(u64, Vec<u8>)>> {
    Ok(c.query_row(
        "SELECT acked, epoch FROM oxh_rdb_peers WHERE device = ?1",
        [peer],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?)),
    )
    .optional()?)
}

/// Records `peer`'s acknowledgement and epoch.
pub(crate) fn set_peer_state(
    c: &rusqlite::Connection,
    peer: &str,
    acked: u64,
    epoch: &[u8],
) -> Result<()> {
    c.execute(
        "INSERT INTO oxh_rdb_peers(device, acked, epoch) VALUES (?1, ?2, ?3)
         ON CONFLICT DO UPDATE SET acked = excluded.acked, epoch = excluded.epoch",
        rusqlite::params![peer, acked as i64, epoch],
    )?;
    Ok(())
}

/// How far `peer` acknowledged our changes (0: nothing yet).
pub(crate) fn watermark(c: &rusqlite::Connection, peer: &str) -> Result<u64> {
    Ok(c.query_row(
        "SELECT acked FROM oxh_rdb_peers WHERE device = ?1",
        [peer],
        |r| r.get::<_, i64>(0),
    )
    .optional()?
    .unwrap_or(0) as u64)
}

/// `peer` applied our changeset `(from, upto]`: the watermark moves to `upto` if the
/// changeset started at or below it (an acknowledgement of a later one, before an earlier
/// one arrived, cannot skip what is between). Returns the watermark now.
pub(crate) fn ack(c: &rusqlite::Connection, peer: &str, from: u64, upto: u64) -> Result<u64> {
    let w = watermark(c, peer)?;
    if from <= w && upto > w {
        c.execute(
            "INSERT INTO oxh_rdb_peers(device, acked) VALUES (?1, ?2)
             ON CONFLICT DO UPDATE SET acked = excluded.acked",
            rusqlite::params![peer, upto as i64],
        )?;
        return Ok(upto);
    }
    Ok(w)
}

/// Between a peer's id and a table's name in the key of a watermark of one table's sync (a
/// character neither a udid nor a table name has).
pub(crate) const TABLE_SEP: char = '\u{1f}';

/// Collects the row tombstones every peer in `peers` (every device this one is bound to)
/// has acknowledged, by a sync of every table or of the tombstone's own: none of them can
/// send an older life of the row any more. A device never synced holds everything back.
/// Returns how many went.
pub(crate) fn gc_tombstones(c: &rusqlite::Connection, peers: &[String]) -> Result<usize> {
    if peers.is_empty() {
        return Ok(0);
    }
    let mut n = 0;
    for (t, _) in super::recorded(c)? {
        let mut min = u64::MAX;
        for p in peers {
            let all = watermark(c, p)?;
            let one = watermark(c, &format!("{p}{TABLE_SEP}{t}"))?;
            min = min.min(all.max(one));
        }
        if min == 0 {
            continue;
        }
        n += c.execute(
            &format!(
                "DELETE FROM {} WHERE oxh_rdb_cl % 2 = 0 AND oxh_rdb_seq <= ?1",
                q(&rows_table(&t))
            ),
            [min as i64],
        )?;
    }
    Ok(n)
}

/// Rows of every distributed table this device changed itself after change number `after`
/// (a peer's applied writes carry the peer's device and are left out), by primary key, and
/// the change number they reach: what local observers are told after a commit.
pub(crate) fn local_changes(conn: &Conn, after: u64) -> Result<(Vec<crate::api::ChangeInfo>, u64)> {
    let c = &conn.c;
    let upto = conn.seq()?.max(0) as u64;
    let mut out = Vec::new();
    if upto <= after {
        return Ok((out, after));
    }
    for t in super::tables(c)? {
        let pks = t.pk_list();
        let n = t.pk.len();
        let key = |r: &rusqlite::Row| -> rusqlite::Result<Vec<Value>> {
            (0..n).map(|i| r.get::<_, Value>(i)).collect()
        };
        let mut info = crate::api::ChangeInfo {
            table: t.name.clone(),
            ..Default::default()
        };
        let mut seen = HashSet::new();
        let mut st = c.prepare_cached(&format!(
            "SELECT {pks}, oxh_rdb_cl FROM {} WHERE oxh_rdb_seq > ?1 AND oxh_rdb_dev = oxh_rdb_dev()",
            q(&rows_table(&t.name))
        ))?;
        let mut rows = st.query([after as i64])?;
        while let Some(r) = rows.next()? {
            let k = key(r)?;
            seen.insert(format!("{k:?}"));
            if r.get::<_, i64>(n)? % 2 == 1 {
                info.inserted.push(k);
            } else {
                info.deleted.push(k);
            }
        }
        let mut st = c.prepare_cached(&format!(
            "SELECT DISTINCT {pks} FROM {} WHERE oxh_rdb_seq > ?1 AND oxh_rdb_dev = oxh_rdb_dev()",
            q(&cells_table(&t.name))
        ))?;
        let mut rows = st.query([after as i64])?;
        while let Some(r) = rows.next()? {
            let k = key(r)?;
            if seen.insert(format!("{k:?}")) {
                info.updated.push(k);
            }
        }
        if !(info.inserted.is_empty() && info.updated.is_empty() && info.deleted.is_empty()) {
            out.push(info);
        }
    }
    Ok((out, upto))
}
