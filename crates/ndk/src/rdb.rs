//! OpenHarmony's relational store NDK (`<database/rdb/relational_store.h>`): `OH_Rdb_*` and the
//! function-pointer structs `OH_VObject`, `OH_VBucket`, `OH_Predicates` and `OH_Cursor`, over
//! the relational store service's IPC contract ([`oxh_rdb::api`], SA 1301), as `oxh rdb` calls
//! it.
//!
//! Each C struct is the head of a Rust struct (`#[repr(C)]`, the C fields first, in the
//! header's order); the Rust state follows and C never sees it. The `id` field tells the kinds
//! apart, so a pointer of the wrong kind is refused (RDB_E_INVALID_ARGS) instead of read as
//! another. Nothing C passes is trusted: NULL, bad lengths, non-UTF-8 text give
//! RDB_E_INVALID_ARGS (or NULL where a pointer is returned).

#![allow(non_snake_case)] // OpenHarmony's C names.

use oxh_rdb::api::{self, PredicateOp, Rows, StoreHandle};
use oxh_rdb::{SecurityLevel, StoreConfig, Value};
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::ptr::null_mut;

/// `OH_Rdb_ErrCode` (relational_store_error_code.h): the codes this library returns.
pub mod err {
    use std::ffi::c_int;
    /// Success.
    pub const RDB_OK: c_int = 0;
    /// The capability is not supported (encryption).
    pub const RDB_E_NOT_SUPPORTED: c_int = 801;
    /// A failure with no more precise code.
    pub const RDB_E_ERROR: c_int = 14_800_000;
    /// NULL, a bad length, bad text or a bad value.
    pub const RDB_E_INVALID_ARGS: c_int = 14_800_001;
    /// A column index out of range.
    pub const RDB_E_INVALID_COLUMN_INDEX: c_int = 14_800_008;
    /// A value that cannot be read as the type asked for (a blob as a number).
    pub const RDB_E_INVALID_COLUMN_TYPE: c_int = 14_800_009;
    /// The store path (name) is not valid.
    pub const RDB_E_INVALID_FILE_PATH: c_int = 14_800_011;
    /// The cursor is not on a row.
    pub const RDB_E_STEP_RESULT_IS_AFTER_LAST: c_int = 14_800_026;
    /// The WAL file is over its limit.
    pub const RDB_E_WAL_SIZE_OVER_LIMIT: c_int = 14_800_047;
    /// The store is closed (or the handle unknown to the service).
    pub const RDB_E_ALREADY_CLOSED: c_int = 14_800_050;
    /// The store does not respond.
    pub const RDB_E_DATABASE_BUSY: c_int = 14_800_051;
    /// SQLite: corrupt.
    pub const RDB_E_SQLITE_CORRUPT: c_int = 14_800_052;
    /// SQLite: permission denied.
    pub const RDB_E_SQLITE_PERM: c_int = 14_800_053;
    /// SQLite: the file is locked (another write transaction is open).
    pub const RDB_E_SQLITE_BUSY: c_int = 14_800_054;
    /// SQLite: a table is locked.
    pub const RDB_E_SQLITE_LOCKED: c_int = 14_800_055;
    /// SQLite: out of memory.
    pub const RDB_E_SQLITE_NOMEM: c_int = 14_800_056;
    /// SQLite: read-only.
    pub const RDB_E_SQLITE_READONLY: c_int = 14_800_057;
    /// SQLite: I/O error.
    pub const RDB_E_SQLITE_IOERR: c_int = 14_800_058;
    /// SQLite: full.
    pub const RDB_E_SQLITE_FULL: c_int = 14_800_059;
    /// SQLite: cannot open.
    pub const RDB_E_SQLITE_CANT_OPEN: c_int = 14_800_060;
    /// SQLite: too big.
    pub const RDB_E_SQLITE_TOO_BIG: c_int = 14_800_061;
    /// SQLite: type mismatch.
    pub const RDB_E_SQLITE_MISMATCH: c_int = 14_800_062;
    /// SQLite: constraint violated.
    pub const RDB_E_SQLITE_CONSTRAINT: c_int = 14_800_065;
}

use err::*;

/// The NDK's code for a service error code: the ArkTS API's 14800xxx numbers (which the
/// service speaks) and the NDK's differ past 14800001, as in OpenHarmony.
pub fn ndk_code(service: i32) -> c_int {
    use api::code as c;
    match service {
        c::INVALID_ARGS | c::PARAMETER_ERROR => RDB_E_INVALID_ARGS,
        c::INVALID_PATH => RDB_E_INVALID_FILE_PATH,
        c::CORRUPTED => RDB_E_SQLITE_CORRUPT,
        c::ALREADY_CLOSED => RDB_E_ALREADY_CLOSED,
        c::NOT_RESPONDING => RDB_E_DATABASE_BUSY,
        c::SQLITE_PERM => RDB_E_SQLITE_PERM,
        c::SQLITE_BUSY => RDB_E_SQLITE_BUSY,
        c::SQLITE_LOCKED => RDB_E_SQLITE_LOCKED,
        c::SQLITE_NOMEM => RDB_E_SQLITE_NOMEM,
        c::SQLITE_READONLY => RDB_E_SQLITE_READONLY,
        c::SQLITE_IOERR => RDB_E_SQLITE_IOERR,
        c::SQLITE_FULL => RDB_E_SQLITE_FULL,
        c::SQLITE_CANTOPEN => RDB_E_SQLITE_CANT_OPEN,
        c::SQLITE_TOOBIG => RDB_E_SQLITE_TOO_BIG,
        c::SQLITE_MISMATCH => RDB_E_SQLITE_MISMATCH,
        c::SQLITE_CONSTRAINT => RDB_E_SQLITE_CONSTRAINT,
        c::WAL_TOO_LARGE => RDB_E_WAL_SIZE_OVER_LIMIT,
        _ => RDB_E_ERROR,
    }
}

/// `OH_Rdb_BeginTransaction` opens an EXCLUSIVE transaction, as its OpenHarmony doc says
/// (`TransactionType` 2).
const NDK_TRANSACTION_KIND: i32 = 2;

/// Calls the relational store service on this process's connection.
fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    code: u32,
    req: &Req,
) -> Result<Resp, c_int> {
    let l = crate::link().ok_or(RDB_E_ERROR)?;
    l.rt.block_on(l.dev.client().call(api::SA_ID, code, req))
        .map_err(|e| e.code().map_or(RDB_E_ERROR, ndk_code))
}

/// Text C passed: NULL or not UTF-8 is `None`.
///
/// # Safety
/// `p` is null or NUL-terminated.
unsafe fn text<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().ok()
}

/// A slice C passed as (pointer, count): `None` when the pointer is NULL with a count.
///
/// # Safety
/// `p` is null or points to `n` readable `T`s.
unsafe fn slice<'a, T>(p: *const T, n: usize) -> Option<&'a [T]> {
    if n == 0 {
        return Some(&[]);
    }
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    Some(unsafe { std::slice::from_raw_parts(p, n) })
}

/// A struct C holds a pointer to, told apart by its `id`.
trait Obj {
    /// The `id` every live object of this kind carries (cleared when it is destroyed).
    const ID: i64;
    fn id(&self) -> i64;
}

/// The object behind a pointer C passed, if it is one of ours of this kind.
///
/// # Safety
/// `p` is null or points to a `T` this library made (and not yet destroyed).
unsafe fn obj<'a, T: Obj>(p: *mut T) -> Option<&'a mut T> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    let o = unsafe { &mut *p };
    (o.id() == T::ID).then_some(o)
}

/// Frees an object made by `Box::into_raw`, after checking it is one.
///
/// # Safety
/// As `obj`; `p` is not used again.
unsafe fn destroy<T: Obj>(p: *mut T) -> c_int {
    // SAFETY: the caller's contract.
    if unsafe { obj(p) }.is_none() {
        return RDB_E_INVALID_ARGS;
    }
    // SAFETY: made by Box::into_raw (every constructor here does).
    drop(unsafe { Box::from_raw(p) });
    RDB_OK
}

macro_rules! obj_id {
    ($t:ty, $id:expr) => {
        impl Obj for $t {
            const ID: i64 = $id;
            fn id(&self) -> i64 {
                self.id
            }
        }
    };
}

// ---- OH_VObject ----

/// `OH_VObject` and the values it holds.
#[repr(C)]
pub struct VObject {
    id: i64,
    put_int64: unsafe extern "C" fn(*mut VObject, *mut i64, u32) -> c_int,
    put_double: unsafe extern "C" fn(*mut VObject, *mut f64, u32) -> c_int,
    put_text: unsafe extern "C" fn(*mut VObject, *const c_char) -> c_int,
    put_texts: unsafe extern "C" fn(*mut VObject, *const *const c_char, u32) -> c_int,
    destroy: unsafe extern "C" fn(*mut VObject) -> c_int,
    values: Vec<Value>,
}
obj_id!(VObject, 0x4f48_564f_424a_0001);

/// Replaces a value object's values with `count` items read by `f`.
///
/// # Safety
/// `o` as `obj`; `p` is null or points to `count` `T`s.
unsafe fn vput<T: Copy>(
    o: *mut VObject,
    p: *const T,
    count: u32,
    f: impl Fn(T) -> Option<Value>,
) -> c_int {
    // SAFETY: the caller's contract.
    let (Some(o), Some(items)) = (unsafe { obj(o) }, unsafe { slice(p, count as usize) }) else {
        return RDB_E_INVALID_ARGS;
    };
    if items.is_empty() {
        return RDB_E_INVALID_ARGS;
    }
    let Some(values) = items.iter().map(|v| f(*v)).collect::<Option<Vec<_>>>() else {
        return RDB_E_INVALID_ARGS;
    };
    o.values = values;
    RDB_OK
}

unsafe extern "C" fn vo_put_int64(o: *mut VObject, v: *mut i64, n: u32) -> c_int {
    // SAFETY: the C caller's contract (OH_VObject.putInt64).
    unsafe { vput(o, v, n, |x| Some(Value::Integer(x))) }
}

unsafe extern "C" fn vo_put_double(o: *mut VObject, v: *mut f64, n: u32) -> c_int {
    // SAFETY: the C caller's contract (OH_VObject.putDouble).
    unsafe { vput(o, v, n, |x| Some(Value::Real(x))) }
}

unsafe extern "C" fn vo_put_text(o: *mut VObject, v: *const c_char) -> c_int {
    // SAFETY: the C caller's contract (OH_VObject.putText).
    unsafe { vput(o, &v, 1, |p| text(p).map(|t| Value::Text(t.into()))) }
}

unsafe extern "C" fn vo_put_texts(o: *mut VObject, v: *const *const c_char, n: u32) -> c_int {
    // SAFETY: the C caller's contract (OH_VObject.putTexts).
    unsafe { vput(o, v, n, |p| text(p).map(|t| Value::Text(t.into()))) }
}

unsafe extern "C" fn vo_destroy(o: *mut VObject) -> c_int {
    // SAFETY: the C caller's contract (OH_VObject.destroy).
    unsafe { destroy(o) }
}

/// `OH_Rdb_CreateValueObject`.
#[unsafe(no_mangle)]
pub extern "C" fn OH_Rdb_CreateValueObject() -> *mut VObject {
    Box::into_raw(Box::new(VObject {
        id: VObject::ID,
        put_int64: vo_put_int64,
        put_double: vo_put_double,
        put_text: vo_put_text,
        put_texts: vo_put_texts,
        destroy: vo_destroy,
        values: Vec::new(),
    }))
}

// ---- OH_VBucket ----

/// `OH_VBucket` and its (column, value) pairs.
#[repr(C)]
pub struct VBucket {
    id: i64,
    capability: u16,
    put_text: unsafe extern "C" fn(*mut VBucket, *const c_char, *const c_char) -> c_int,
    put_int64: unsafe extern "C" fn(*mut VBucket, *const c_char, i64) -> c_int,
    put_real: unsafe extern "C" fn(*mut VBucket, *const c_char, f64) -> c_int,
    put_blob: unsafe extern "C" fn(*mut VBucket, *const c_char, *const u8, u32) -> c_int,
    put_null: unsafe extern "C" fn(*mut VBucket, *const c_char) -> c_int,
    clear: unsafe extern "C" fn(*mut VBucket) -> c_int,
    destroy: unsafe extern "C" fn(*mut VBucket) -> c_int,
    values: api::Bucket,
}
obj_id!(VBucket, 0x4f48_5642_4b54_0002);

/// Puts `field` = `v` (replacing an earlier value of the column).
///
/// # Safety
/// `b` as `obj`; `field` null or NUL-terminated.
unsafe fn bput(b: *mut VBucket, field: *const c_char, v: Option<Value>) -> c_int {
    // SAFETY: the caller's contract.
    let (Some(b), Some(field), Some(v)) = (unsafe { obj(b) }, unsafe { text(field) }, v) else {
        return RDB_E_INVALID_ARGS;
    };
    match b.values.iter_mut().find(|(c, _)| c == field) {
        Some(slot) => slot.1 = v,
        None => b.values.push((field.to_string(), v)),
    }
    b.capability = u16::try_from(b.values.len()).unwrap_or(u16::MAX);
    RDB_OK
}

unsafe extern "C" fn vb_put_text(b: *mut VBucket, f: *const c_char, v: *const c_char) -> c_int {
    // SAFETY: the C caller's contract (OH_VBucket.putText).
    unsafe { bput(b, f, text(v).map(|t| Value::Text(t.into()))) }
}

unsafe extern "C" fn vb_put_int64(b: *mut VBucket, f: *const c_char, v: i64) -> c_int {
    // SAFETY: the C caller's contract (OH_VBucket.putInt64).
    unsafe { bput(b, f, Some(Value::Integer(v))) }
}

unsafe extern "C" fn vb_put_real(b: *mut VBucket, f: *const c_char, v: f64) -> c_int {
    // SAFETY: the C caller's contract (OH_VBucket.putReal).
    unsafe { bput(b, f, Some(Value::Real(v))) }
}

unsafe extern "C" fn vb_put_blob(b: *mut VBucket, f: *const c_char, v: *const u8, n: u32) -> c_int {
    // SAFETY: the C caller's contract (OH_VBucket.putBlob).
    unsafe { bput(b, f, slice(v, n as usize).map(|s| Value::Blob(s.to_vec()))) }
}

unsafe extern "C" fn vb_put_null(b: *mut VBucket, f: *const c_char) -> c_int {
    // SAFETY: the C caller's contract (OH_VBucket.putNull).
    unsafe { bput(b, f, Some(Value::Null)) }
}

unsafe extern "C" fn vb_clear(b: *mut VBucket) -> c_int {
    // SAFETY: the C caller's contract (OH_VBucket.clear).
    let Some(b) = (unsafe { obj(b) }) else {
        return RDB_E_INVALID_ARGS;
    };
    b.values.clear();
    b.capability = 0;
    RDB_OK
}

unsafe extern "C" fn vb_destroy(b: *mut VBucket) -> c_int {
    // SAFETY: the C caller's contract (OH_VBucket.destroy).
    unsafe { destroy(b) }
}

/// `OH_Rdb_CreateValuesBucket`.
#[unsafe(no_mangle)]
pub extern "C" fn OH_Rdb_CreateValuesBucket() -> *mut VBucket {
    Box::into_raw(Box::new(VBucket {
        id: VBucket::ID,
        capability: 0,
        put_text: vb_put_text,
        put_int64: vb_put_int64,
        put_real: vb_put_real,
        put_blob: vb_put_blob,
        put_null: vb_put_null,
        clear: vb_clear,
        destroy: vb_destroy,
        values: Vec::new(),
    }))
}

// ---- OH_Predicates ----

type PFieldObj =
    unsafe extern "C" fn(*mut Predicates, *const c_char, *mut VObject) -> *mut Predicates;
type PNone = unsafe extern "C" fn(*mut Predicates) -> *mut Predicates;
type PField = unsafe extern "C" fn(*mut Predicates, *const c_char) -> *mut Predicates;

/// `OH_Predicates`: the steps it was given, replayed by the service through its
/// `RdbPredicates` (which checks every field name and binds every value).
#[repr(C)]
pub struct Predicates {
    id: i64,
    equal_to: PFieldObj,
    not_equal_to: PFieldObj,
    begin_wrap: PNone,
    end_wrap: PNone,
    or_operate: PNone,
    and_operate: PNone,
    is_null: PField,
    is_not_null: PField,
    like: PFieldObj,
    between: PFieldObj,
    not_between: PFieldObj,
    greater_than: PFieldObj,
    less_than: PFieldObj,
    greater_than_or_equal_to: PFieldObj,
    less_than_or_equal_to: PFieldObj,
    order_by: unsafe extern "C" fn(*mut Predicates, *const c_char, c_int) -> *mut Predicates,
    distinct: PNone,
    limit: unsafe extern "C" fn(*mut Predicates, c_uint) -> *mut Predicates,
    offset: unsafe extern "C" fn(*mut Predicates, c_uint) -> *mut Predicates,
    group_by: unsafe extern "C" fn(*mut Predicates, *const *const c_char, c_int) -> *mut Predicates,
    in_: PFieldObj,
    not_in: PFieldObj,
    clear: PNone,
    destroy: unsafe extern "C" fn(*mut Predicates) -> c_int,
    wire: api::Predicates,
    /// A step had bad arguments: using these predicates fails (RDB_E_INVALID_ARGS) rather
    /// than running without that condition.
    invalid: bool,
}
obj_id!(Predicates, 0x4f48_5052_4544_0003);

/// Adds the step `f` makes, or marks the predicates invalid when it makes none.
///
/// # Safety
/// `p` as `obj`.
unsafe fn step(p: *mut Predicates, op: Option<PredicateOp>) -> *mut Predicates {
    // SAFETY: the caller's contract.
    let Some(pr) = (unsafe { obj(p) }) else {
        return null_mut();
    };
    match op {
        Some(op) => pr.wire.ops.push(op),
        None => pr.invalid = true,
    }
    p
}

/// The field and the values of a (field, value object) step.
///
/// # Safety
/// `f` null or NUL-terminated; `v` as `obj`.
unsafe fn field_values(f: *const c_char, v: *mut VObject) -> Option<(String, Vec<Value>)> {
    // SAFETY: the caller's contract.
    let f = unsafe { text(f) }?;
    // SAFETY: the caller's contract.
    let v = unsafe { obj(v) }?;
    (!v.values.is_empty()).then(|| (f.to_string(), v.values.clone()))
}

macro_rules! one_value_step {
    ($name:ident, $op:ident) => {
        unsafe extern "C" fn $name(
            p: *mut Predicates,
            f: *const c_char,
            v: *mut VObject,
        ) -> *mut Predicates {
            // SAFETY: the C caller's contract (OH_Predicates).
            let op = unsafe { field_values(f, v) }
                .and_then(|(f, vs)| vs.into_iter().next().map(|v| PredicateOp::$op(f, v)));
            // SAFETY: as above.
            unsafe { step(p, op) }
        }
    };
}

one_value_step!(pr_equal_to, EqualTo);
one_value_step!(pr_not_equal_to, NotEqualTo);
one_value_step!(pr_greater_than, GreaterThan);
one_value_step!(pr_less_than, LessThan);
one_value_step!(pr_greater_than_or_equal_to, GreaterThanOrEqualTo);
one_value_step!(pr_less_than_or_equal_to, LessThanOrEqualTo);

macro_rules! two_value_step {
    ($name:ident, $op:ident) => {
        unsafe extern "C" fn $name(
            p: *mut Predicates,
            f: *const c_char,
            v: *mut VObject,
        ) -> *mut Predicates {
            // SAFETY: the C caller's contract (OH_Predicates).
            let op =
                unsafe { field_values(f, v) }.and_then(|(f, vs)| {
                    match <[Value; 2]>::try_from(vs) {
                        Ok([lo, hi]) => Some(PredicateOp::$op(f, lo, hi)),
                        Err(_) => None,
                    }
                });
            // SAFETY: as above.
            unsafe { step(p, op) }
        }
    };
}

two_value_step!(pr_between, Between);
two_value_step!(pr_not_between, NotBetween);

macro_rules! list_step {
    ($name:ident, $op:ident) => {
        unsafe extern "C" fn $name(
            p: *mut Predicates,
            f: *const c_char,
            v: *mut VObject,
        ) -> *mut Predicates {
            // SAFETY: the C caller's contract (OH_Predicates).
            let op = unsafe { field_values(f, v) }.map(|(f, vs)| PredicateOp::$op(f, vs));
            // SAFETY: as above.
            unsafe { step(p, op) }
        }
    };
}

list_step!(pr_in, In);
list_step!(pr_not_in, NotIn);

unsafe extern "C" fn pr_like(
    p: *mut Predicates,
    f: *const c_char,
    v: *mut VObject,
) -> *mut Predicates {
    // SAFETY: the C caller's contract (OH_Predicates.like).
    let op = unsafe { field_values(f, v) }.and_then(|(f, vs)| match vs.into_iter().next() {
        Some(Value::Text(t)) => Some(PredicateOp::Like(f, t)),
        _ => None,
    });
    // SAFETY: as above.
    unsafe { step(p, op) }
}

macro_rules! bare_step {
    ($name:ident, $op:expr) => {
        unsafe extern "C" fn $name(p: *mut Predicates) -> *mut Predicates {
            // SAFETY: the C caller's contract (OH_Predicates).
            unsafe { step(p, $op) }
        }
    };
}

bare_step!(pr_begin_wrap, Some(PredicateOp::BeginWrap));
bare_step!(pr_end_wrap, Some(PredicateOp::EndWrap));
bare_step!(pr_or, Some(PredicateOp::Or));
bare_step!(pr_and, Some(PredicateOp::And));
bare_step!(pr_distinct, Some(PredicateOp::Distinct));

macro_rules! field_step {
    ($name:ident, $op:ident) => {
        unsafe extern "C" fn $name(p: *mut Predicates, f: *const c_char) -> *mut Predicates {
            // SAFETY: the C caller's contract (OH_Predicates).
            let op = unsafe { text(f) }.map(|f| PredicateOp::$op(f.to_string()));
            // SAFETY: as above.
            unsafe { step(p, op) }
        }
    };
}

field_step!(pr_is_null, IsNull);
field_step!(pr_is_not_null, IsNotNull);

unsafe extern "C" fn pr_order_by(
    p: *mut Predicates,
    f: *const c_char,
    ty: c_int,
) -> *mut Predicates {
    // SAFETY: the C caller's contract (OH_Predicates.orderBy).
    let op = unsafe { text(f) }.and_then(|f| match ty {
        0 => Some(PredicateOp::OrderByAsc(f.to_string())),
        1 => Some(PredicateOp::OrderByDesc(f.to_string())),
        _ => None,
    });
    // SAFETY: as above.
    unsafe { step(p, op) }
}

unsafe extern "C" fn pr_limit(p: *mut Predicates, n: c_uint) -> *mut Predicates {
    // SAFETY: the C caller's contract (OH_Predicates.limit).
    unsafe { step(p, Some(PredicateOp::LimitAs(i64::from(n)))) }
}

unsafe extern "C" fn pr_offset(p: *mut Predicates, n: c_uint) -> *mut Predicates {
    // SAFETY: the C caller's contract (OH_Predicates.offset).
    unsafe { step(p, Some(PredicateOp::OffsetAs(i64::from(n)))) }
}

unsafe extern "C" fn pr_group_by(
    p: *mut Predicates,
    fields: *const *const c_char,
    n: c_int,
) -> *mut Predicates {
    let op = (|| {
        let n = usize::try_from(n).ok().filter(|&n| n > 0)?;
        if fields.is_null() {
            return None;
        }
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: `fields` holds `n` pointers (the C caller's contract).
            let f = unsafe { *fields.add(i) };
            // SAFETY: each a NUL-terminated string (the same contract).
            v.push(unsafe { text(f) }?.to_string());
        }
        Some(PredicateOp::GroupBy(v))
    })();
    // SAFETY: the C caller's contract (OH_Predicates.groupBy).
    unsafe { step(p, op) }
}

unsafe extern "C" fn pr_clear(p: *mut Predicates) -> *mut Predicates {
    // SAFETY: the C caller's contract (OH_Predicates.clear).
    let Some(pr) = (unsafe { obj(p) }) else {
        return null_mut();
    };
    pr.wire.ops.clear();
    pr.invalid = false;
    p
}

unsafe extern "C" fn pr_destroy(p: *mut Predicates) -> c_int {
    // SAFETY: the C caller's contract (OH_Predicates.destroy).
    unsafe { destroy(p) }
}

/// `OH_Rdb_CreatePredicates`: NULL when `table` is NULL or not UTF-8.
///
/// # Safety
/// `table` is null or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_CreatePredicates(table: *const c_char) -> *mut Predicates {
    // SAFETY: the caller's contract.
    let Some(table) = (unsafe { text(table) }) else {
        return null_mut();
    };
    Box::into_raw(Box::new(Predicates {
        id: Predicates::ID,
        equal_to: pr_equal_to,
        not_equal_to: pr_not_equal_to,
        begin_wrap: pr_begin_wrap,
        end_wrap: pr_end_wrap,
        or_operate: pr_or,
        and_operate: pr_and,
        is_null: pr_is_null,
        is_not_null: pr_is_not_null,
        like: pr_like,
        between: pr_between,
        not_between: pr_not_between,
        greater_than: pr_greater_than,
        less_than: pr_less_than,
        greater_than_or_equal_to: pr_greater_than_or_equal_to,
        less_than_or_equal_to: pr_less_than_or_equal_to,
        order_by: pr_order_by,
        distinct: pr_distinct,
        limit: pr_limit,
        offset: pr_offset,
        group_by: pr_group_by,
        in_: pr_in,
        not_in: pr_not_in,
        clear: pr_clear,
        destroy: pr_destroy,
        wire: api::Predicates::new(table),
        invalid: false,
    }))
}

/// The wire form of predicates C passed, if they are valid.
///
/// # Safety
/// `p` as `obj`.
unsafe fn wire(p: *mut Predicates) -> Result<api::Predicates, c_int> {
    // SAFETY: the caller's contract.
    match unsafe { obj(p) } {
        Some(pr) if !pr.invalid => Ok(pr.wire.clone()),
        _ => Err(RDB_E_INVALID_ARGS),
    }
}

// ---- OH_Cursor ----

/// `OH_Cursor` over the rows of one reply.
#[repr(C)]
pub struct Cursor {
    id: i64,
    get_column_count: unsafe extern "C" fn(*mut Cursor, *mut c_int) -> c_int,
    get_column_type: unsafe extern "C" fn(*mut Cursor, i32, *mut c_int) -> c_int,
    get_column_index: unsafe extern "C" fn(*mut Cursor, *const c_char, *mut c_int) -> c_int,
    get_column_name: unsafe extern "C" fn(*mut Cursor, i32, *mut c_char, c_int) -> c_int,
    get_row_count: unsafe extern "C" fn(*mut Cursor, *mut c_int) -> c_int,
    go_to_next_row: unsafe extern "C" fn(*mut Cursor) -> c_int,
    get_size: unsafe extern "C" fn(*mut Cursor, i32, *mut usize) -> c_int,
    get_text: unsafe extern "C" fn(*mut Cursor, i32, *mut c_char, c_int) -> c_int,
    get_int64: unsafe extern "C" fn(*mut Cursor, i32, *mut i64) -> c_int,
    get_real: unsafe extern "C" fn(*mut Cursor, i32, *mut f64) -> c_int,
    get_blob: unsafe extern "C" fn(*mut Cursor, i32, *mut u8, c_int) -> c_int,
    is_null: unsafe extern "C" fn(*mut Cursor, i32, *mut bool) -> c_int,
    destroy: unsafe extern "C" fn(*mut Cursor) -> c_int,
    rows: Rows,
    /// The current row; `None` before the first.
    pos: Option<usize>,
}
obj_id!(Cursor, 0x4f48_4355_5253_0004);

impl Cursor {
    fn cell(&self, col: i32) -> Result<&Value, c_int> {
        let col = usize::try_from(col)
            .ok()
            .filter(|c| *c < self.rows.columns.len())
            .ok_or(RDB_E_INVALID_COLUMN_INDEX)?;
        let row = self
            .pos
            .and_then(|r| self.rows.rows.get(r))
            .ok_or(RDB_E_STEP_RESULT_IS_AFTER_LAST)?;
        row.get(col).ok_or(RDB_E_INVALID_COLUMN_INDEX)
    }
}

/// Writes `f(cursor)` to `out`.
///
/// # Safety
/// `c` as `obj`; `out` null or writable.
unsafe fn cursor_out<T>(
    c: *mut Cursor,
    out: *mut T,
    f: impl FnOnce(&Cursor) -> Result<T, c_int>,
) -> c_int {
    // SAFETY: the caller's contract.
    let Some(c) = (unsafe { obj(c) }) else {
        return RDB_E_INVALID_ARGS;
    };
    if out.is_null() {
        return RDB_E_INVALID_ARGS;
    }
    match f(c) {
        // SAFETY: checked non-null; writable by the caller's contract.
        Ok(v) => unsafe { out.write(v) },
        Err(e) => return e,
    }
    RDB_OK
}

/// Copies `bytes` to C's buffer of `len` bytes, NUL-terminated when `nul`.
///
/// # Safety
/// `buf` null or writable for `len` bytes.
unsafe fn copy_out(bytes: &[u8], buf: *mut u8, len: c_int, nul: bool) -> c_int {
    let need = bytes.len() + usize::from(nul);
    let Ok(len) = usize::try_from(len) else {
        return RDB_E_INVALID_ARGS;
    };
    if buf.is_null() || len < need || len == 0 {
        return RDB_E_INVALID_ARGS;
    }
    // SAFETY: `buf` holds at least `need` bytes (checked), by the caller's contract.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len());
        if nul {
            buf.add(bytes.len()).write(0);
        }
    }
    RDB_OK
}

/// A cell as text, much as SQLite's `sqlite3_column_text` reads it (a real keeps its point:
/// `300.0`); a blob is refused.
fn cell_text(v: &Value) -> Result<String, c_int> {
    Ok(match v {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => format!("{r:?}"),
        Value::Text(t) => t.clone(),
        Value::Blob(_) => return Err(RDB_E_INVALID_COLUMN_TYPE),
    })
}

unsafe extern "C" fn cu_column_count(c: *mut Cursor, out: *mut c_int) -> c_int {
    // SAFETY: the C caller's contract (OH_Cursor.getColumnCount).
    unsafe {
        cursor_out(c, out, |c| {
            c_int::try_from(c.rows.columns.len()).map_err(|_| RDB_E_ERROR)
        })
    }
}

unsafe extern "C" fn cu_column_type(c: *mut Cursor, col: i32, out: *mut c_int) -> c_int {
    // SAFETY: the C caller's contract (OH_Cursor.getColumnType; OH_ColumnType is an int).
    unsafe {
        cursor_out(c, out, |c| {
            Ok(match c.cell(col)? {
                Value::Null => 0,
                Value::Integer(_) => 1,
                Value::Real(_) => 2,
                Value::Text(_) => 3,
                Value::Blob(_) => 4,
            })
        })
    }
}

unsafe extern "C" fn cu_column_index(
    c: *mut Cursor,
    name: *const c_char,
    out: *mut c_int,
) -> c_int {
    // SAFETY: the C caller's contract (OH_Cursor.getColumnIndex).
    let Some(name) = (unsafe { text(name) }) else {
        return RDB_E_INVALID_ARGS;
    };
    // SAFETY: as above.
    unsafe {
        cursor_out(c, out, |c| {
            let i = c
                .rows
                .columns
                .iter()
                .position(|n| n == name)
                .ok_or(RDB_E_INVALID_ARGS)?;
            c_int::try_from(i).map_err(|_| RDB_E_ERROR)
        })
    }
}

unsafe extern "C" fn cu_column_name(
    c: *mut Cursor,
    col: i32,
    buf: *mut c_char,
    len: c_int,
) -> c_int {
    // SAFETY: the C caller's contract (OH_Cursor.getColumnName).
    let Some(cu) = (unsafe { obj(c) }) else {
        return RDB_E_INVALID_ARGS;
    };
    let Some(name) = usize::try_from(col)
        .ok()
        .and_then(|i| cu.rows.columns.get(i))
    else {
        return RDB_E_INVALID_COLUMN_INDEX;
    };
    // SAFETY: as above.
    unsafe { copy_out(name.as_bytes(), buf.cast(), len, true) }
}

unsafe extern "C" fn cu_row_count(c: *mut Cursor, out: *mut c_int) -> c_int {
    // SAFETY: the C caller's contract (OH_Cursor.getRowCount).
    unsafe {
        cursor_out(c, out, |c| {
            c_int::try_from(c.rows.rows.len()).map_err(|_| RDB_E_ERROR)
        })
    }
}

unsafe extern "C" fn cu_next(c: *mut Cursor) -> c_int {
    // SAFETY: the C caller's contract (OH_Cursor.goToNextRow).
    let Some(c) = (unsafe { obj(c) }) else {
        return RDB_E_INVALID_ARGS;
    };
    let next = c.pos.map_or(0, |p| p + 1).min(c.rows.rows.len());
    c.pos = Some(next);
    if next < c.rows.rows.len() {
        RDB_OK
    } else {
        RDB_E_STEP_RESULT_IS_AFTER_LAST
    }
}

unsafe extern "C" fn cu_size(c: *mut Cursor, col: i32, out: *mut usize) -> c_int {
    // SAFETY: the C caller's contract (OH_Cursor.getSize).
    unsafe {
        cursor_out(c, out, |c| {
            Ok(match c.cell(col)? {
                Value::Blob(b) => b.len(),
                v => cell_text(v)?.len() + 1,
            })
        })
    }
}

unsafe extern "C" fn cu_text(c: *mut Cursor, col: i32, buf: *mut c_char, len: c_int) -> c_int {
    // SAFETY: the C caller's contract (OH_Cursor.getText).
    let Some(cu) = (unsafe { obj(c) }) else {
        return RDB_E_INVALID_ARGS;
    };
    match cu.cell(col).and_then(cell_text) {
        // SAFETY: as above.
        Ok(t) => unsafe { copy_out(t.as_bytes(), buf.cast(), len, true) },
        Err(e) => e,
    }
}

unsafe extern "C" fn cu_int64(c: *mut Cursor, col: i32, out: *mut i64) -> c_int {
    // SAFETY: the C caller's contract (OH_Cursor.getInt64).
    unsafe {
        cursor_out(c, out, |c| {
            Ok(match c.cell(col)? {
                Value::Null => 0,
                Value::Integer(i) => *i,
                // As SQLite converts: truncated toward zero, saturating.
                Value::Real(r) => *r as i64,
                Value::Text(t) => t.trim().parse().unwrap_or(0),
                Value::Blob(_) => return Err(RDB_E_INVALID_COLUMN_TYPE),
            })
        })
    }
}

unsafe extern "C" fn cu_real(c: *mut Cursor, col: i32, out: *mut f64) -> c_int {
    // SAFETY: the C caller's contract (OH_Cursor.getReal).
    unsafe {
        cursor_out(c, out, |c| {
            Ok(match c.cell(col)? {
                Value::Null => 0.0,
                Value::Integer(i) => *i as f64,
                Value::Real(r) => *r,
                Value::Text(t) => t.trim().parse().unwrap_or(0.0),
                Value::Blob(_) => return Err(RDB_E_INVALID_COLUMN_TYPE),
            })
        })
    }
}

unsafe extern "C" fn cu_blob(c: *mut Cursor, col: i32, buf: *mut u8, len: c_int) -> c_int {
    // SAFETY: the C caller's contract (OH_Cursor.getBlob).
    let Some(cu) = (unsafe { obj(c) }) else {
        return RDB_E_INVALID_ARGS;
    };
    let bytes = match cu.cell(col) {
        Ok(Value::Blob(b)) => b.clone(),
        Ok(Value::Text(t)) => t.clone().into_bytes(),
        Ok(Value::Null) => Vec::new(),
        Ok(_) => return RDB_E_INVALID_COLUMN_TYPE,
        Err(e) => return e,
    };
    // SAFETY: as above.
    unsafe { copy_out(&bytes, buf, len, false) }
}

unsafe extern "C" fn cu_is_null(c: *mut Cursor, col: i32, out: *mut bool) -> c_int {
    // SAFETY: the C caller's contract (OH_Cursor.isNull).
    unsafe { cursor_out(c, out, |c| Ok(c.cell(col)?.is_null())) }
}

unsafe extern "C" fn cu_destroy(c: *mut Cursor) -> c_int {
    // SAFETY: the C caller's contract (OH_Cursor.destroy).
    unsafe { destroy(c) }
}

fn cursor(rows: Rows) -> *mut Cursor {
    Box::into_raw(Box::new(Cursor {
        id: Cursor::ID,
        get_column_count: cu_column_count,
        get_column_type: cu_column_type,
        get_column_index: cu_column_index,
        get_column_name: cu_column_name,
        get_row_count: cu_row_count,
        go_to_next_row: cu_next,
        get_size: cu_size,
        get_text: cu_text,
        get_int64: cu_int64,
        get_real: cu_real,
        get_blob: cu_blob,
        is_null: cu_is_null,
        destroy: cu_destroy,
        rows,
        pos: None,
    }))
}

// ---- OH_Rdb_Store ----

/// `OH_Rdb_Config` (`#pragma pack(1)`, as OpenHarmony declares it).
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct RdbConfig {
    self_size: c_int,
    data_base_dir: *const c_char,
    store_name: *const c_char,
    bundle_name: *const c_char,
    module_name: *const c_char,
    is_encrypt: bool,
    security_level: c_int,
    area: c_int,
}

/// `OH_Rdb_Store` and the service's handle of it.
#[repr(C)]
pub struct Store {
    id: i64,
    handle: StoreHandle,
}
obj_id!(Store, 0x4f48_5244_4253_0005);

/// The service's arguments for a config C passed.
///
/// # Safety
/// `config` null or pointing to at least `selfSize` readable bytes; its strings null or
/// NUL-terminated.
unsafe fn store_args(config: *const RdbConfig) -> Result<api::GetStoreArgs, c_int> {
    if config.is_null() {
        return Err(RDB_E_INVALID_ARGS);
    }
    // SAFETY: at least its first field is readable (the caller's contract); it may be unaligned.
    let size = unsafe { config.cast::<c_int>().read_unaligned() };
    if usize::try_from(size) != Ok(std::mem::size_of::<RdbConfig>()) {
        return Err(RDB_E_INVALID_ARGS);
    }
    // SAFETY: selfSize says the whole struct is there; packed, so read it unaligned.
    let cfg = unsafe { config.read_unaligned() };
    if cfg.is_encrypt {
        return Err(RDB_E_NOT_SUPPORTED);
    }
    // SAFETY: the caller's contract.
    let name = unsafe { text(cfg.store_name) }.ok_or(RDB_E_INVALID_ARGS)?;
    let app = if cfg.bundle_name.is_null() {
        None
    } else {
        // SAFETY: the caller's contract.
        let b = unsafe { text(cfg.bundle_name) }.ok_or(RDB_E_INVALID_ARGS)?;
        (!b.is_empty()).then(|| b.to_string())
    };
    let level = SecurityLevel::from_i32(cfg.security_level).map_err(|_| RDB_E_INVALID_ARGS)?;
    Ok(api::GetStoreArgs {
        app,
        config: StoreConfig::new(name, level),
    })
}

/// `OH_Rdb_GetOrOpen`: the store, or NULL with `*errCode` set.
///
/// # Safety
/// `config` as `store_args`; `err_code` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_GetOrOpen(
    config: *const RdbConfig,
    err_code: *mut c_int,
) -> *mut Store {
    if err_code.is_null() {
        return null_mut();
    }
    // SAFETY: the caller's contract.
    let r = unsafe { store_args(config) }
        .and_then(|a| call::<_, api::StoreInfo>(api::GET_RDB_STORE, &a));
    let (p, code) = match r {
        Ok(info) => (
            Box::into_raw(Box::new(Store {
                id: Store::ID,
                handle: info.handle,
            })),
            RDB_OK,
        ),
        Err(e) => (null_mut(), e),
    };
    // SAFETY: checked non-null; writable by the caller's contract.
    unsafe { err_code.write(code) };
    p
}

/// The service handle of a store C passed.
///
/// # Safety
/// `s` as `obj`.
unsafe fn handle(s: *mut Store) -> Result<StoreHandle, c_int> {
    // SAFETY: the caller's contract.
    unsafe { obj(s) }
        .map(|s| s.handle)
        .ok_or(RDB_E_INVALID_ARGS)
}

fn status(r: Result<(), c_int>) -> c_int {
    r.err().unwrap_or(RDB_OK)
}

/// A count or rowid as the `int` OpenHarmony returns (RDB_E_ERROR if it does not fit).
fn count(r: Result<i64, c_int>) -> c_int {
    match r {
        Ok(n) => c_int::try_from(n).unwrap_or(RDB_E_ERROR),
        Err(e) => e,
    }
}

/// `OH_Rdb_CloseStore`: closes the store on the service (rolling back its open transaction)
/// and frees it.
///
/// # Safety
/// `store` as `obj`, not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_CloseStore(store: *mut Store) -> c_int {
    // SAFETY: the caller's contract.
    let h = match unsafe { handle(store) } {
        Ok(h) => h,
        Err(e) => return e,
    };
    let r = call::<_, ()>(api::CLOSE_RDB_STORE, &api::HandleArgs { handle: h });
    // SAFETY: checked to be ours above.
    unsafe { destroy(store) };
    status(r)
}

/// `OH_Rdb_DeleteStore`.
///
/// # Safety
/// As `store_args`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_DeleteStore(config: *const RdbConfig) -> c_int {
    // SAFETY: the caller's contract.
    status(unsafe { store_args(config) }.and_then(|a| call(api::DELETE_RDB_STORE, &a)))
}

/// `OH_Rdb_Execute`.
///
/// # Safety
/// `store` as `obj`; `sql` null or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_Execute(store: *mut Store, sql: *const c_char) -> c_int {
    // SAFETY: the caller's contract.
    let r = unsafe { handle(store) }.and_then(|handle| {
        // SAFETY: the caller's contract.
        let sql = unsafe { text(sql) }.ok_or(RDB_E_INVALID_ARGS)?;
        let a = api::ExecuteArgs {
            handle,
            sql: sql.to_string(),
            args: Vec::new(),
        };
        call::<_, Value>(api::EXECUTE, &a).map(drop)
    });
    status(r)
}

/// `OH_Rdb_ExecuteQuery`: NULL on failure.
///
/// # Safety
/// `store` as `obj`; `sql` null or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_ExecuteQuery(store: *mut Store, sql: *const c_char) -> *mut Cursor {
    // SAFETY: the caller's contract.
    let r = unsafe { handle(store) }.and_then(|handle| {
        // SAFETY: the caller's contract.
        let sql = unsafe { text(sql) }.ok_or(RDB_E_INVALID_ARGS)?;
        let a = api::QuerySqlArgs {
            handle,
            sql: sql.to_string(),
            args: Vec::new(),
        };
        call::<_, Rows>(api::QUERY_SQL, &a)
    });
    r.map_or(null_mut(), cursor)
}

/// `OH_Rdb_Insert`: the new row's rowid, or an error code.
///
/// # Safety
/// `store`, `bucket` as `obj`; `table` null or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_Insert(
    store: *mut Store,
    table: *const c_char,
    bucket: *mut VBucket,
) -> c_int {
    // SAFETY: the caller's contract.
    let r = unsafe { handle(store) }.and_then(|handle| {
        // SAFETY: the caller's contract.
        let (Some(table), Some(b)) = (unsafe { text(table) }, unsafe { obj(bucket) }) else {
            return Err(RDB_E_INVALID_ARGS);
        };
        let a = api::InsertArgs {
            handle,
            table: table.to_string(),
            values: b.values.clone(),
            conflict: 0,
        };
        call::<_, i64>(api::INSERT, &a)
    });
    count(r)
}

/// `OH_Rdb_Update`: the rows changed, or an error code.
///
/// # Safety
/// `store`, `bucket`, `predicates` as `obj`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_Update(
    store: *mut Store,
    bucket: *mut VBucket,
    predicates: *mut Predicates,
) -> c_int {
    // SAFETY: the caller's contract.
    let r = unsafe { handle(store) }.and_then(|handle| {
        // SAFETY: the caller's contract.
        let b = unsafe { obj(bucket) }.ok_or(RDB_E_INVALID_ARGS)?;
        let a = api::UpdateArgs {
            handle,
            values: b.values.clone(),
            // SAFETY: the caller's contract.
            predicates: unsafe { wire(predicates) }?,
            conflict: 0,
        };
        call::<_, u64>(api::UPDATE, &a).map(|n| i64::try_from(n).unwrap_or(i64::MAX))
    });
    count(r)
}

/// `OH_Rdb_Delete`: the rows deleted, or an error code.
///
/// # Safety
/// `store`, `predicates` as `obj`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_Delete(store: *mut Store, predicates: *mut Predicates) -> c_int {
    // SAFETY: the caller's contract.
    let r = unsafe { handle(store) }.and_then(|handle| {
        let a = api::DeleteArgs {
            handle,
            // SAFETY: the caller's contract.
            predicates: unsafe { wire(predicates) }?,
        };
        call::<_, u64>(api::DELETE, &a).map(|n| i64::try_from(n).unwrap_or(i64::MAX))
    });
    count(r)
}

/// `OH_Rdb_Query`: NULL on failure.
///
/// # Safety
/// `store`, `predicates` as `obj`; `columns` null or `length` NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_Query(
    store: *mut Store,
    predicates: *mut Predicates,
    columns: *const *const c_char,
    length: c_int,
) -> *mut Cursor {
    // SAFETY: the caller's contract.
    let r = unsafe { handle(store) }.and_then(|handle| {
        let n = usize::try_from(length).map_err(|_| RDB_E_INVALID_ARGS)?;
        // SAFETY: the caller's contract.
        let cols = unsafe { slice(columns, n) }.ok_or(RDB_E_INVALID_ARGS)?;
        let columns = cols
            .iter()
            // SAFETY: the caller's contract.
            .map(|c| unsafe { text(*c) }.map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or(RDB_E_INVALID_ARGS)?;
        let a = api::QueryArgs {
            handle,
            // SAFETY: the caller's contract.
            predicates: unsafe { wire(predicates) }?,
            columns,
        };
        call::<_, Rows>(api::QUERY, &a)
    });
    r.map_or(null_mut(), cursor)
}

/// Calls a method that names only the store.
///
/// # Safety
/// `store` as `obj`.
unsafe fn on_store(store: *mut Store, code: u32) -> c_int {
    // SAFETY: the caller's contract.
    status(unsafe { handle(store) }.and_then(|handle| call(code, &api::HandleArgs { handle })))
}

/// `OH_Rdb_BeginTransaction` (EXCLUSIVE).
///
/// # Safety
/// `store` as `obj`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_BeginTransaction(store: *mut Store) -> c_int {
    // SAFETY: the caller's contract.
    let r = unsafe { handle(store) }.and_then(|handle| {
        call(
            api::BEGIN_TRANSACTION,
            &api::BeginArgs {
                handle,
                kind: NDK_TRANSACTION_KIND,
            },
        )
    });
    status(r)
}

/// `OH_Rdb_Commit`.
///
/// # Safety
/// `store` as `obj`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_Commit(store: *mut Store) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { on_store(store, api::COMMIT) }
}

/// `OH_Rdb_RollBack`.
///
/// # Safety
/// `store` as `obj`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_RollBack(store: *mut Store) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { on_store(store, api::ROLL_BACK) }
}

/// `Rdb_DistributedConfig`.
#[repr(C)]
pub struct DistributedConfig {
    version: c_int,
    is_auto_sync: bool,
}

/// `OH_Rdb_SetDistributedTables`: `type` must be `RDB_DISTRIBUTED_CLOUD` (OpenHarmony's only
/// value; here the tables sync between the super device's devices); `config` may be NULL.
///
/// # Safety
/// `store` as `obj`; `tables` null or `count` NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_SetDistributedTables(
    store: *mut Store,
    tables: *const *const c_char,
    count: u32,
    kind: c_int,
    _config: *const DistributedConfig,
) -> c_int {
    // SAFETY: the caller's contract.
    let r = unsafe { handle(store) }.and_then(|handle| {
        if kind != 0 || count == 0 {
            return Err(RDB_E_INVALID_ARGS);
        }
        // SAFETY: the caller's contract.
        let ts = unsafe { slice(tables, count as usize) }.ok_or(RDB_E_INVALID_ARGS)?;
        let tables = ts
            .iter()
            // SAFETY: the caller's contract.
            .map(|t| unsafe { text(*t) }.map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or(RDB_E_INVALID_ARGS)?;
        call(
            api::SET_DISTRIBUTED_TABLES,
            &api::SetDistributedArgs { handle, tables },
        )
    });
    status(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layouts_are_openharmonys() {
        // #pragma pack(1): 4 + 4 pointers + bool + 2 ints.
        assert_eq!(size_of::<RdbConfig>(), 4 + 4 * size_of::<usize>() + 1 + 8);
        assert_eq!(offset_of!(VBucket, put_text), 16);
        assert_eq!(offset_of!(VObject, put_int64), 8);
        assert_eq!(offset_of!(Cursor, destroy), 8 * 13);
        assert_eq!(offset_of!(Predicates, destroy), 8 * 24);
        assert_eq!(size_of::<DistributedConfig>(), 8);
    }

    #[test]
    fn c_arguments_are_checked_not_trusted() {
        unsafe {
            let o = OH_Rdb_CreateValueObject();
            assert_eq!(((*o).put_int64)(o, null_mut(), 1), RDB_E_INVALID_ARGS);
            let mut v = [1i64, 5];
            assert_eq!(((*o).put_int64)(o, v.as_mut_ptr(), 0), RDB_E_INVALID_ARGS);
            assert_eq!(((*o).put_int64)(o, v.as_mut_ptr(), 2), RDB_OK);
            assert_eq!(((*o).put_text)(o, null_mut()), RDB_E_INVALID_ARGS);

            let b = OH_Rdb_CreateValuesBucket();
            let f = CString::new("name").unwrap();
            assert_eq!(
                ((*b).put_text)(b, f.as_ptr(), null_mut()),
                RDB_E_INVALID_ARGS
            );
            assert_eq!(
                ((*b).put_blob)(b, f.as_ptr(), null_mut(), 3),
                RDB_E_INVALID_ARGS
            );
            assert_eq!(((*b).put_blob)(b, f.as_ptr(), null_mut(), 0), RDB_OK);
            assert_eq!(((*b).put_int64)(b, f.as_ptr(), 7), RDB_OK);
            assert_eq!((*b).capability, 1, "a column put again is replaced");
            // A bucket is not a value object: refused by its id.
            assert_eq!(vo_destroy(b.cast()), RDB_E_INVALID_ARGS);

            assert!(OH_Rdb_CreatePredicates(null_mut()).is_null());
            let t = CString::new("t").unwrap();
            let p = OH_Rdb_CreatePredicates(t.as_ptr());
            assert_eq!(((*p).between)(p, f.as_ptr(), o), p);
            assert!(!(*p).invalid);
            // between with one value, like with a number: the predicates are refused later.
            assert_eq!(((*o).put_int64)(o, v.as_mut_ptr(), 1), RDB_OK);
            ((*p).like)(p, f.as_ptr(), o);
            assert!((*p).invalid);
            assert_eq!(wire(p).unwrap_err(), RDB_E_INVALID_ARGS);
            ((*p).clear)(p);
            assert!(wire(p).is_ok());
            assert!(((*p).equal_to)(null_mut(), f.as_ptr(), o).is_null());

            // NULL store, NULL config, a wrong selfSize.
            assert_eq!(OH_Rdb_Execute(null_mut(), t.as_ptr()), RDB_E_INVALID_ARGS);
            assert_eq!(OH_Rdb_CloseStore(null_mut()), RDB_E_INVALID_ARGS);
            let mut code = 0;
            assert!(OH_Rdb_GetOrOpen(std::ptr::null(), &mut code).is_null());
            assert_eq!(code, RDB_E_INVALID_ARGS);
            let cfg = RdbConfig {
                self_size: 41,
                data_base_dir: null_mut(),
                store_name: t.as_ptr(),
                bundle_name: null_mut(),
                module_name: null_mut(),
                is_encrypt: false,
                security_level: 1,
                area: 1,
            };
            assert!(OH_Rdb_GetOrOpen(&cfg, &mut code).is_null());
            assert_eq!(code, RDB_E_INVALID_ARGS);
            assert!(OH_Rdb_GetOrOpen(&cfg, null_mut()).is_null());
            let cfg = RdbConfig {
                self_size: size_of::<RdbConfig>() as c_int,
                security_level: 9,
                ..cfg
            };
            assert_eq!(store_args(&cfg).unwrap_err(), RDB_E_INVALID_ARGS);

            // The cursor: before the first row, past the last, columns out of range, short
            // buffers.
            let c = cursor(Rows {
                columns: vec!["id".into(), "name".into()],
                rows: vec![vec![Value::Integer(3), Value::Text("Lisa".into())]],
            });
            let mut n = 0i64;
            assert_eq!(
                ((*c).get_int64)(c, 0, &mut n),
                RDB_E_STEP_RESULT_IS_AFTER_LAST
            );
            assert_eq!(((*c).go_to_next_row)(c), RDB_OK);
            assert_eq!(((*c).get_int64)(c, 2, &mut n), RDB_E_INVALID_COLUMN_INDEX);
            assert_eq!(((*c).get_int64)(c, -1, &mut n), RDB_E_INVALID_COLUMN_INDEX);
            assert_eq!(((*c).get_int64)(c, 0, null_mut()), RDB_E_INVALID_ARGS);
            let mut size = 0usize;
            assert_eq!(((*c).get_size)(c, 1, &mut size), RDB_OK);
            assert_eq!(size, 5);
            let mut buf = [0 as c_char; 5];
            assert_eq!(
                ((*c).get_text)(c, 1, buf.as_mut_ptr(), 4),
                RDB_E_INVALID_ARGS
            );
            assert_eq!(
                ((*c).get_text)(c, 1, buf.as_mut_ptr(), -1),
                RDB_E_INVALID_ARGS
            );
            assert_eq!(((*c).get_text)(c, 1, buf.as_mut_ptr(), 5), RDB_OK);
            assert_eq!(CStr::from_ptr(buf.as_ptr()).to_str().unwrap(), "Lisa");
            assert_eq!(((*c).go_to_next_row)(c), RDB_E_STEP_RESULT_IS_AFTER_LAST);
            assert_eq!(((*c).go_to_next_row)(c), RDB_E_STEP_RESULT_IS_AFTER_LAST);
            assert_eq!(((*c).destroy)(c), RDB_OK);

            assert_eq!(((*p).destroy)(p), RDB_OK);
            assert_eq!(((*b).destroy)(b), RDB_OK);
            assert_eq!(((*o).destroy)(o), RDB_OK);
        }
    }

    #[test]
    fn service_codes_map_to_the_ndks() {
        assert_eq!(ndk_code(api::code::INVALID_ARGS), RDB_E_INVALID_ARGS);
        assert_eq!(ndk_code(api::code::SQLITE_BUSY), RDB_E_SQLITE_BUSY);
        assert_eq!(ndk_code(api::code::ALREADY_CLOSED), RDB_E_ALREADY_CLOSED);
        assert_eq!(
            ndk_code(api::code::SQLITE_CONSTRAINT),
            RDB_E_SQLITE_CONSTRAINT
        );
        assert_eq!(ndk_code(api::code::INNER_ERROR), RDB_E_ERROR);
    }
}

// ---- OH_Rdb_Subscribe ----

/// `Rdb_KeyInfo::Rdb_KeyData`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union KeyData {
    integer: u64,
    real: f64,
    text: *const c_char,
}

/// `Rdb_KeyInfo`.
#[repr(C)]
pub struct KeyInfo {
    count: c_int,
    key_type: c_int,
    data: *mut KeyData,
}

/// `Rdb_ChangeInfo`.
#[repr(C)]
pub struct ChangeInfoC {
    version: c_int,
    table_name: *const c_char,
    change_type: c_int,
    inserted: KeyInfo,
    updated: KeyInfo,
    deleted: KeyInfo,
}

/// `Rdb_DetailsObserver`.
pub type DetailsObserver = Option<
    unsafe extern "C" fn(context: *mut c_void, infos: *const *const ChangeInfoC, count: u32),
>;

/// `Rdb_DataObserver` (its callback union read as the details observer, the one
/// LOCAL_DETAILS uses).
#[repr(C)]
pub struct DataObserver {
    context: *mut c_void,
    callback: DetailsObserver,
}

/// `RDB_SUBSCRIBE_TYPE_LOCAL_DETAILS` in the NDK's numbering (the service's is 3).
const NDK_LOCAL_DETAILS: c_int = 2;
/// `DISTRIBUTED_CHANGE_INFO_VERSION`.
const CHANGE_INFO_VERSION: c_int = 1;

/// A C observer and what stops its thread.
struct CObserver {
    handle: StoreHandle,
    context: usize,
    callback: usize,
    sub: u64,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

static OBSERVERS: std::sync::Mutex<Vec<CObserver>> = std::sync::Mutex::new(Vec::new());

/// One table's keys as C holds them; `texts` keeps the strings alive.
struct Keys {
    data: Vec<KeyData>,
    texts: Vec<std::ffi::CString>,
    kind: c_int,
}

fn keys(ks: &[Vec<Value>]) -> Keys {
    let mut k = Keys {
        data: Vec::with_capacity(ks.len()),
        texts: Vec::new(),
        kind: 0,
    };
    // OpenHarmony gives one value per row (the primary key or the rowid): a key's first.
    for key in ks {
        match key.first() {
            Some(Value::Integer(i)) => {
                k.kind = 1;
                k.data.push(KeyData { integer: *i as u64 });
            }
            Some(Value::Real(r)) => {
                k.kind = 2;
                k.data.push(KeyData { real: *r });
            }
            Some(Value::Text(t)) => {
                k.kind = 3;
                let c = std::ffi::CString::new(t.replace('\0', "")).unwrap_or_default();
                k.data.push(KeyData { text: c.as_ptr() });
                k.texts.push(c);
            }
            _ => {}
        }
    }
    k
}

impl Keys {
    fn info(&mut self) -> KeyInfo {
        KeyInfo {
            count: c_int::try_from(self.data.len()).unwrap_or(c_int::MAX),
            key_type: self.kind,
            data: self.data.as_mut_ptr(),
        }
    }
}

/// Hands one event to the C callback; everything it points to lives until it returns.
fn deliver(
    cb: unsafe extern "C" fn(*mut c_void, *const *const ChangeInfoC, u32),
    ctx: usize,
    ev: api::RdbEvent,
) {
    let api::RdbEvent::DataChange { changes, .. } = ev;
    let mut names = Vec::new();
    let mut all_keys = Vec::new();
    for c in &changes {
        names.push(std::ffi::CString::new(c.table.clone()).unwrap_or_default());
        all_keys.push([keys(&c.inserted), keys(&c.updated), keys(&c.deleted)]);
    }
    let infos: Vec<ChangeInfoC> = changes
        .iter()
        .zip(names.iter())
        .zip(all_keys.iter_mut())
        .map(|((c, n), [i, u, d])| ChangeInfoC {
            version: CHANGE_INFO_VERSION,
            table_name: n.as_ptr(),
            change_type: c.change_type,
            inserted: i.info(),
            updated: u.info(),
            deleted: d.info(),
        })
        .collect();
    let ptrs: Vec<*const ChangeInfoC> = infos.iter().map(|i| i as *const ChangeInfoC).collect();
    // SAFETY: the C caller gave this callback and context for exactly this use.
    unsafe { cb(ctx as *mut c_void, ptrs.as_ptr(), ptrs.len() as u32) };
}

/// `OH_Rdb_Subscribe`: LOCAL_DETAILS only (there is no cloud: 801).
///
/// # Safety
/// `store` as `obj`; `observer` null or readable, its callback callable from any thread
/// with its context until unsubscribed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_Subscribe(
    store: *mut Store,
    kind: c_int,
    observer: *const DataObserver,
) -> c_int {
    // SAFETY: the caller's contract.
    let h = match unsafe { handle(store) } {
        Ok(h) => h,
        Err(e) => return e,
    };
    if kind != NDK_LOCAL_DETAILS {
        return if (0..NDK_LOCAL_DETAILS).contains(&kind) {
            RDB_E_NOT_SUPPORTED
        } else {
            RDB_E_INVALID_ARGS
        };
    }
    // SAFETY: null or readable (the caller's contract).
    let Some(o) = (unsafe { observer.as_ref() }) else {
        return RDB_E_INVALID_ARGS;
    };
    let Some(cb) = o.callback else {
        return RDB_E_INVALID_ARGS;
    };
    let Some(l) = crate::link() else {
        return RDB_E_ERROR;
    };
    let mut sub = l.dev.client().subscribe();
    let r = call::<_, ()>(
        api::SUBSCRIBE,
        &api::SubscribeArgs {
            handle: h,
            sub: sub.id(),
            kind: api::SUBSCRIBE_TYPE_LOCAL_DETAILS,
        },
    );
    if let Err(e) = r {
        return e;
    }
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let ctx = o.context as usize;
    OBSERVERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(CObserver {
            handle: h,
            context: ctx,
            callback: cb as usize,
            sub: sub.id(),
            stop: Some(stop),
        });
    std::thread::spawn(move || {
        loop {
            let next = l.rt.block_on(async {
                tokio::select! {
                    b = sub.recv() => b,
                    _ = &mut stopped => None,
                }
            });
            let Some(b) = next else { return };
            if let Ok(ev) = oxh_ipc::decode::<api::RdbEvent>(&b) {
                deliver(cb, ctx, ev);
            }
        }
    });
    RDB_OK
}

/// `OH_Rdb_Unsubscribe`: the observer with this context and callback, or (NULL) every
/// observer of the store.
///
/// # Safety
/// As [`OH_Rdb_Subscribe`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OH_Rdb_Unsubscribe(
    store: *mut Store,
    kind: c_int,
    observer: *const DataObserver,
) -> c_int {
    // SAFETY: the caller's contract.
    let h = match unsafe { handle(store) } {
        Ok(h) => h,
        Err(e) => return e,
    };
    if kind != NDK_LOCAL_DETAILS {
        return RDB_E_INVALID_ARGS;
    }
    // SAFETY: null or readable (the caller's contract).
    let o = unsafe { observer.as_ref() };
    let which = o.map(|o| (o.context as usize, o.callback.map_or(0, |c| c as usize)));
    let gone: Vec<CObserver> = {
        let mut all = OBSERVERS.lock().unwrap_or_else(|p| p.into_inner());
        let (gone, keep) = std::mem::take(&mut *all).into_iter().partition(|c| {
            c.handle == h && which.is_none_or(|(x, cb)| c.context == x && c.callback == cb)
        });
        *all = keep;
        gone
    };
    let mut r = RDB_OK;
    for mut g in gone {
        let a = api::SubscribeArgs {
            handle: h,
            sub: g.sub,
            kind: api::SUBSCRIBE_TYPE_LOCAL_DETAILS,
        };
        if let Err(e) = call::<_, ()>(api::UNSUBSCRIBE, &a) {
            r = e;
        }
        if let Some(s) = g.stop.take() {
            let _ = s.send(());
        }
    }
    r
}
