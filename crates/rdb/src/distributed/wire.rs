//! A changeset's bytes on the wire (postcard, so integers are varints): each table's name
//! and column names once, each device id once, and per row and cell only indexes into
//! those lists. Timestamps go as differences: a row's `cl_ts` from the previous row's, a
//! cell's from the previous cell's that carried one; a cell written by the write that set
//! its row's causal length (every cell of an insert) carries no version at all.
//! What this replaces cost 2-5x the values' bytes (names and 64-digit device ids per cell).

use super::merge::{CellChange, Changeset, RowChange};
use crate::error::{RdbError, Result};
use crate::value::Value;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Serialize, Deserialize)]
struct Wire {
    from: u64,
    upto: u64,
    /// (name, columns the cells name).
    tables: Vec<(String, Vec<String>)>,
    devices: Vec<String>,
    rows: Vec<WireRow>,
}

#[derive(Serialize, Deserialize)]
struct WireRow {
    table: u32,
    pk: Vec<Value>,
    cl: u64,
    /// `cl_ts` minus the previous row's (wrapping).
    cl_ts: i64,
    cl_dev: u32,
    cells: Vec<WireCell>,
}

#[derive(Serialize, Deserialize)]
struct WireCell {
    col: u32,
    value: Value,
    /// None: the row's (`cl_ts`, `cl_dev`); else (ts minus the previous such cell's, device).
    ver: Option<(i64, u32)>,
}

/// Index of `s` in `list`, added if new.
fn intern(list: &mut Vec<String>, idx: &mut HashMap<String, u32>, s: &str) -> u32 {
    if let Some(&i) = idx.get(s) {
        return i;
    }
    let i = list.len() as u32;
    list.push(s.to_string());
    idx.insert(s.to_string(), i);
    i
}

fn delta(now: u64, prev: &mut u64) -> i64 {
    let d = now.wrapping_sub(*prev) as i64;
    *prev = now;
    d
}

fn undelta(d: i64, prev: &mut u64) -> u64 {
    *prev = prev.wrapping_add(d as u64);
    *prev
}

pub(super) fn encode(cs: &Changeset) -> Result<Vec<u8>> {
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    let mut table_idx: HashMap<String, u32> = HashMap::new();
    let mut col_idx: Vec<HashMap<String, u32>> = Vec::new();
    let mut devices = Vec::new();
    let mut dev_idx = HashMap::new();
    let (mut prev_row, mut prev_cell) = (0u64, 0u64);
    let mut rows = Vec::with_capacity(cs.rows.len());
    for r in &cs.rows {
        let t = match table_idx.get(&r.table) {
            Some(&t) => t,
            None => {
                let t = tables.len() as u32;
                tables.push((r.table.clone(), Vec::new()));
                col_idx.push(HashMap::new());
                table_idx.insert(r.table.clone(), t);
                t
            }
        };
        let cl_dev = intern(&mut devices, &mut dev_idx, &r.cl_dev);
        let cells = r
            .cells
            .iter()
            .map(|c| {
                let ti = t as usize;
                let col = intern(&mut tables[ti].1, &mut col_idx[ti], &c.col);
                let ver = if c.ts == r.cl_ts && c.dev == r.cl_dev {
                    None
                } else {
                    Some((
                        delta(c.ts, &mut prev_cell),
                        intern(&mut devices, &mut dev_idx, &c.dev),
                    ))
                };
                WireCell {
                    col,
                    value: c.value.clone(),
                    ver,
                }
            })
            .collect();
        rows.push(WireRow {
            table: t,
            pk: r.pk.clone(),
            cl: r.cl,
            cl_ts: delta(r.cl_ts, &mut prev_row),
            cl_dev,
            cells,
        });
    }
    let w = Wire {
        from: cs.from,
        upto: cs.upto,
        tables,
        devices,
        rows,
    };
    postcard::to_allocvec(&w).map_err(|e| RdbError::inner(format!("changeset: {e}")))
}

pub(super) fn decode(b: &[u8]) -> Result<Changeset> {
    let w: Wire =
        postcard::from_bytes(b).map_err(|e| RdbError::invalid(format!("changeset: {e}")))?;
    let bad = |what: &str| RdbError::invalid(format!("changeset: no such {what} index"));
    let dev = |i: u32| w.devices.get(i as usize).ok_or_else(|| bad("device"));
    let (mut prev_row, mut prev_cell) = (0u64, 0u64);
    let mut rows = Vec::with_capacity(w.rows.len());
    for r in w.rows {
        let (table, cols) = w.tables.get(r.table as usize).ok_or_else(|| bad("table"))?;
        let cl_ts = undelta(r.cl_ts, &mut prev_row);
        let cl_dev = dev(r.cl_dev)?;
        let cells = r
            .cells
            .into_iter()
            .map(|c| {
                let (ts, d) = match c.ver {
                    None => (cl_ts, cl_dev),
                    Some((d, i)) => (undelta(d, &mut prev_cell), dev(i)?),
                };
                Ok(CellChange {
                    col: cols
                        .get(c.col as usize)
                        .ok_or_else(|| bad("column"))?
                        .clone(),
                    value: c.value,
                    ts,
                    dev: d.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        rows.push(RowChange {
            table: table.clone(),
            pk: r.pk,
            cl: r.cl,
            cl_ts,
            cl_dev: cl_dev.clone(),
            cells,
        });
    }
    Ok(Changeset {
        from: w.from,
        upto: w.upto,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(col: &str, ts: u64, dev: &str) -> CellChange {
        CellChange {
            col: col.into(),
            value: Value::from(format!("{col}{ts}")),
            ts,
            dev: dev.into(),
        }
    }

    #[test]
    fn names_and_devices_go_once_and_everything_comes_back() {
        let dev = "d".repeat(64);
        let row = |table: &str, id: i64, cells: Vec<CellChange>| RowChange {
            table: table.into(),
            pk: vec![Value::from(id)],
            cl: 1,
            cl_ts: 1_000 << 16,
            cl_dev: dev.clone(),
            cells,
        };
        let mut rows: Vec<RowChange> = (0..50)
            .map(|i| {
                row(
                    "note",
                    i,
                    vec![
                        cell("title", 1_000 << 16, &dev),
                        cell("body", 1_000 << 16, &dev),
                    ],
                )
            })
            .collect();
        // An edit by another device, a later and an earlier timestamp, another table, a
        // tombstone.
        rows.push(row("note", 60, vec![cell("title", 2_000 << 16, "other")]));
        rows.push(row("tag", 1, vec![cell("name", 5, &dev)]));
        rows.push(RowChange {
            cl: 2,
            cells: vec![],
            cl_ts: u64::MAX,
            ..row("tag", 2, vec![])
        });
        let cs = Changeset {
            from: 7,
            upto: 99,
            rows,
        };
        let b = encode(&cs).unwrap();
        assert_eq!(decode(&b).unwrap(), cs);
        assert_eq!(
            b.windows(64).filter(|w| *w == dev.as_bytes()).count(),
            1,
            "the device id goes once"
        );
        // Past the values themselves, a few bytes a row (8) and a cell (4).
        let values: usize = cs
            .rows
            .iter()
            .flat_map(|r| &r.cells)
            .map(|c| match &c.value {
                Value::Text(s) => s.len(),
                _ => 0,
            })
            .sum();
        assert!(
            b.len() < values + cs.rows.len() * 18 + 100,
            "{} bytes for {values}",
            b.len()
        );
    }

    #[test]
    fn an_index_past_its_list_is_refused() {
        let w = Wire {
            from: 0,
            upto: 1,
            tables: vec![("t".into(), vec!["a".into()])],
            devices: vec!["d".into()],
            rows: vec![WireRow {
                table: 0,
                pk: vec![Value::from(1)],
                cl: 1,
                cl_ts: 0,
                cl_dev: 0,
                cells: vec![WireCell {
                    col: 1,
                    value: Value::Null,
                    ver: None,
                }],
            }],
        };
        let b = postcard::to_allocvec(&w).unwrap();
        assert_eq!(decode(&b).unwrap_err().code(), 14_800_001);
    }
}
