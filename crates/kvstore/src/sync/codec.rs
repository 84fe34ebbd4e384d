//! Records to and from the wire's [`Batch`] (device table, delta-coded timestamps).

use super::Record;
use crate::wire::{Batch, WireEntry};
use std::collections::HashMap;

pub(super) fn batch_of(recs: Vec<Record>) -> Batch {
    let mut devices: Vec<String> = Vec::new();
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut idx = |d: &str, devices: &mut Vec<String>| -> u32 {
        if let Some(&i) = index.get(d) {
            return i;
        }
        let i = devices.len() as u32;
        devices.push(d.to_string());
        index.insert(d.to_string(), i);
        i
    };
    let base_ts = recs.first().map_or(0, |r| r.ts);
    let mut prev = base_ts;
    let mut entries = Vec::with_capacity(recs.len());
    for r in recs {
        let part = if r.part.is_empty() {
            0
        } else {
            idx(&r.part, &mut devices) + 1
        };
        let origin = idx(&r.origin, &mut devices);
        entries.push(WireEntry {
            part,
            origin,
            ts_delta: r.ts.wrapping_sub(prev) as i64,
            key: r.key,
            value: r.value,
        });
        prev = r.ts;
    }
    Batch {
        devices,
        base_ts,
        entries,
    }
}

/// Turns a received batch back into records; `None` if it references devices it lacks.
pub fn records_of(b: Batch) -> Option<Vec<Record>> {
    let mut ts = b.base_ts;
    let mut out = Vec::with_capacity(b.entries.len());
    for e in b.entries {
        ts = ts.wrapping_add_signed(e.ts_delta);
        let part = if e.part == 0 {
            String::new()
        } else {
            b.devices.get(e.part as usize - 1)?.clone()
        };
        let origin = b.devices.get(e.origin as usize)?.clone();
        out.push(Record {
            part,
            key: e.key,
            value: e.value,
            ts,
            origin,
        });
    }
    Some(out)
}
