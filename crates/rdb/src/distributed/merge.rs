//! The merge rule, pure: what a peer's row does to ours. No I/O; the store applies the plan.
//!
//! A row's state is its causal length `cl` (odd: present, even: deleted; every delete and
//! every re-insert adds one, as in cr-sqlite's causal-length sets) and, while present, one
//! version per cell: the (HLC timestamp, origin device) of its value. Two states merge as:
//! the greater `cl` wins outright (a delete beats the updates it did not see, a re-insert
//! beats the delete it saw); on equal odd `cl` each cell keeps the greater (ts, device).
//! That is a join (commutative, associative, idempotent), so every replica that has seen
//! the same writes holds the same rows, whatever the order they came in.

use oxh_kvstore::hlc::{Version, wins};
use serde::{Deserialize, Serialize};

use crate::error::{RdbError, Result};
use crate::value::Value;

/// One cell of a peer's row: its value and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellChange {
    /// The column.
    pub col: String,
    /// The value.
    pub value: Value,
    /// HLC timestamp of the write.
    pub ts: u64,
    /// The device that wrote it.
    pub dev: String,
}

/// A row's state on the sending replica, with the cells that changed since the watermark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    /// The table.
    pub table: String,
    /// Its primary key values, in key order.
    pub pk: Vec<Value>,
    /// Causal length: odd present, even deleted; never 0.
    pub cl: u64,
    /// HLC timestamp of the write that set `cl` (kept for tombstone collection).
    pub cl_ts: u64,
    /// The device that set `cl`.
    pub cl_dev: String,
    /// Cells (none when deleted).
    pub cells: Vec<CellChange>,
}

/// Changes from one replica: its rows changed after `from` up to and including `upto` (its
/// local change numbers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Changeset {
    /// The watermark it was made after.
    pub from: u64,
    /// The change number it reaches: a receiver that applied it is at `upto`.
    pub upto: u64,
    /// The rows.
    pub rows: Vec<RowChange>,
}

/// The largest encoded changeset [`Changeset::decode`] takes (the soft bus's Bytes frame).
pub const MAX_CHANGESET_BYTES: usize = 4 << 20;

impl Changeset {
    /// The changeset as bytes (postcard, names and devices once: `wire`), for the sync
    /// session to carry.
    pub fn encode(&self) -> Result<Vec<u8>> {
        super::wire::encode(self)
    }

    /// A changeset from a peer's bytes: over [`MAX_CHANGESET_BYTES`] or malformed is
    /// 14800001. Its tables, keys and columns are checked against the schema when applied.
    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() > MAX_CHANGESET_BYTES {
            return Err(RdbError::invalid(format!(
                "changeset of {} bytes, at most {MAX_CHANGESET_BYTES}",
                b.len()
            )));
        }
        super::wire::decode(b)
    }
}

/// What merging a peer's row into ours does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing: ours is as new or newer.
    Keep,
    /// The row is deleted in a later life: delete ours, keep the tombstone at `cl`.
    Tombstone {
        /// The new causal length (even).
        cl: u64,
    },
    /// The row is present in a later life: ours (if any) is replaced by the peer's cells.
    Replace {
        /// The new causal length (odd).
        cl: u64,
    },
    /// Same life: the peer's cells at these indexes win over ours.
    Merge {
        /// Indexes into the peer's `cells`.
        cells: Vec<usize>,
    },
}

/// Decides the merge of `remote` into a local row of causal length `local_cl` (0: never
/// seen) whose cell versions `local_cell` gives.
pub fn plan<'a>(
    local_cl: u64,
    local_cell: impl Fn(&str) -> Option<(u64, &'a str)>,
    remote: &RowChange,
) -> Plan {
    use std::cmp::Ordering::*;
    match remote.cl.cmp(&local_cl) {
        Less => Plan::Keep,
        Greater if remote.cl.is_multiple_of(2) => Plan::Tombstone { cl: remote.cl },
        Greater => Plan::Replace { cl: remote.cl },
        Equal if remote.cl.is_multiple_of(2) => Plan::Keep,
        Equal => {
            let cells: Vec<usize> = remote
                .cells
                .iter()
                .enumerate()
                .filter(|(_, c)| match local_cell(&c.col) {
                    None => true,
                    Some((ts, dev)) => wins(
                        Version {
                            ts: c.ts,
                            device: &c.dev,
                        },
                        Version { ts, device: dev },
                    ),
                })
                .map(|(i, _)| i)
                .collect();
            if cells.is_empty() {
                Plan::Keep
            } else {
                Plan::Merge { cells }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cl: u64, cells: &[(&str, u64, &str)]) -> RowChange {
        RowChange {
            table: "t".into(),
            pk: vec![Value::from(1)],
            cl,
            cl_ts: 0,
            cl_dev: "x".into(),
            cells: cells
                .iter()
                .map(|(c, ts, d)| CellChange {
                    col: c.to_string(),
                    value: Value::from(*ts as i64),
                    ts: *ts,
                    dev: d.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn changesets_round_trip_and_bad_bytes_are_refused() {
        let cs = Changeset {
            from: 3,
            upto: 9,
            rows: vec![row(1, &[("a", 5, "x")]), row(2, &[])],
        };
        assert_eq!(Changeset::decode(&cs.encode().unwrap()).unwrap(), cs);
        assert_eq!(
            Changeset::decode(&[0xff; 7]).unwrap_err().code(),
            14_800_001
        );
        let big = vec![0u8; MAX_CHANGESET_BYTES + 1];
        assert!(Changeset::decode(&big).is_err());
    }

    #[test]
    fn lives_decide_before_cells() {
        let none = |_: &str| None;
        assert_eq!(
            plan(0, none, &row(1, &[("a", 1, "x")])),
            Plan::Replace { cl: 1 }
        );
        assert_eq!(plan(1, none, &row(2, &[])), Plan::Tombstone { cl: 2 });
        assert_eq!(plan(2, none, &row(3, &[])), Plan::Replace { cl: 3 });
        // An update of an older life loses to our delete, whatever its timestamp.
        assert_eq!(plan(2, none, &row(1, &[("a", u64::MAX, "z")])), Plan::Keep);
        assert_eq!(plan(2, none, &row(2, &[])), Plan::Keep);
    }

    #[test]
    fn same_life_keeps_the_greater_version_per_cell_with_the_device_breaking_ties() {
        let local = |c: &str| match c {
            "a" => Some((10, "m")),
            "b" => Some((10, "m")),
            _ => None,
        };
        let r = row(1, &[("a", 9, "z"), ("b", 10, "n"), ("c", 1, "a")]);
        assert_eq!(plan(1, local, &r), Plan::Merge { cells: vec![1, 2] });
        let r = row(1, &[("a", 10, "m")]);
        assert_eq!(
            plan(1, local, &r),
            Plan::Keep,
            "the same write again is a no-op"
        );
    }
}
