//! Fuzzes the limits' accounting (`oxh_ipc::budget`): arbitrary acquire/release/grow/split/
//! shrink sequences under arbitrary limits, checked against a model: counts never drift from
//! the live grants, never pass a limit, never refuse what fitted, and nothing is left held.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_ipc::budget::{Limits, Op, check_ops};

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let limits = Limits {
        per_key: u64::from(head[0]),
        total: u64::from(head[1]),
        reserved: u64::from(head[2] % 32),
    };
    let ops: Vec<Op> = rest
        .chunks_exact(4)
        .map(|c| {
            let a = u16::from(c[2]) | (u16::from(c[3]) << 8);
            let n = u16::from(c[1] % 64);
            match c[0] % 5 {
                0 => Op::Acquire {
                    key: c[1] % 4,
                    privileged: c[2] & 1 == 1,
                    n: u16::from(c[3] % 64),
                },
                1 => Op::Release(a),
                2 => Op::Grow(a, n),
                3 => Op::Split(a, n),
                _ => Op::Shrink(a, n),
            }
        })
        .collect();
    check_ops(limits, &ops);
});
