//! `RdbPredicates`: conditions built into parameterised SQL. Field names are checked and
//! quoted ([`crate::ident`]); every value is a bound parameter, so a value can never become
//! SQL. A bad field is remembered and reported when the predicates are used (a builder chain
//! has no place for an error), as 14800001.

use crate::error::{RdbError, Result};
use crate::ident;
use crate::value::Value;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Cond(String),
    And,
    Or,
    Open,
    Close,
}

/// Conditions on one table, after OpenHarmony's `RdbPredicates`.
#[derive(Debug, Clone, PartialEq)]
pub struct RdbPredicates {
    table: String,
    toks: Vec<Tok>,
    args: Vec<Value>,
    order: Vec<String>,
    group: Vec<String>,
    distinct: bool,
    limit: Option<i64>,
    offset: Option<i64>,
    devices: Vec<String>,
    all_devices: bool,
    error: Option<RdbError>,
}

/// The SQL pieces predicates make: a WHERE clause (without the keyword, empty for all rows),
/// its parameters, and ORDER BY / LIMIT / OFFSET.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    /// The quoted table name.
    pub table: String,
    /// The condition, `?` for every value; empty when there is none.
    pub where_sql: String,
    /// The values, in order.
    pub args: Vec<Value>,
    /// ` GROUP BY ...`, ` ORDER BY ...` and ` LIMIT ? OFFSET ?`, or empty.
    pub tail: String,
    /// True when DISTINCT, GROUP BY, ORDER BY, LIMIT or OFFSET were asked for (queries
    /// only).
    pub has_tail: bool,
    /// `SELECT DISTINCT`.
    pub distinct: bool,
}

impl RdbPredicates {
    /// Predicates on `table` (checked when used).
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            toks: Vec::new(),
            args: Vec::new(),
            order: Vec::new(),
            group: Vec::new(),
            distinct: false,
            limit: None,
            offset: None,
            devices: Vec::new(),
            all_devices: false,
            error: None,
        }
    }

    /// The table these predicates are on.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn field(&mut self, f: &str) -> Option<String> {
        match ident::quote(f) {
            Ok(q) => Some(q),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    fn cond(&mut self, f: &str, op: &str, vals: Vec<Value>) -> &mut Self {
        if let Some(q) = self.field(f) {
            self.toks.push(Tok::Cond(format!("{q} {op}")));
            self.args.extend(vals);
        }
        self
    }

    /// `field = value`.
    pub fn equal_to(&mut self, f: &str, v: impl Into<Value>) -> &mut Self {
        self.cond(f, "= ?", vec![v.into()])
    }
    /// `field <> value`.
    pub fn not_equal_to(&mut self, f: &str, v: impl Into<Value>) -> &mut Self {
        self.cond(f, "<> ?", vec![v.into()])
    }
    /// `field > value`.
    pub fn greater_than(&mut self, f: &str, v: impl Into<Value>) -> &mut Self {
        self.cond(f, "> ?", vec![v.into()])
    }
    /// `field >= value`.
    pub fn greater_than_or_equal_to(&mut self, f: &str, v: impl Into<Value>) -> &mut Self {
        self.cond(f, ">= ?", vec![v.into()])
    }
    /// `field < value`.
    pub fn less_than(&mut self, f: &str, v: impl Into<Value>) -> &mut Self {
        self.cond(f, "< ?", vec![v.into()])
    }
    /// `field <= value`.
    pub fn less_than_or_equal_to(&mut self, f: &str, v: impl Into<Value>) -> &mut Self {
        self.cond(f, "<= ?", vec![v.into()])
    }
    /// `field BETWEEN low AND high`.
    pub fn between(&mut self, f: &str, lo: impl Into<Value>, hi: impl Into<Value>) -> &mut Self {
        self.cond(f, "BETWEEN ? AND ?", vec![lo.into(), hi.into()])
    }
    /// `field NOT BETWEEN low AND high`.
    pub fn not_between(
        &mut self,
        f: &str,
        lo: impl Into<Value>,
        hi: impl Into<Value>,
    ) -> &mut Self {
        self.cond(f, "NOT BETWEEN ? AND ?", vec![lo.into(), hi.into()])
    }
    /// `field LIKE pattern` (SQL's `%` and `_`).
    pub fn like(&mut self, f: &str, pattern: &str) -> &mut Self {
        self.cond(f, "LIKE ?", vec![pattern.into()])
    }
    /// `field GLOB pattern` (`*`, `?`, case-sensitive).
    pub fn glob(&mut self, f: &str, pattern: &str) -> &mut Self {
        self.cond(f, "GLOB ?", vec![pattern.into()])
    }
    /// `field LIKE '%value%'`.
    pub fn contains(&mut self, f: &str, v: &str) -> &mut Self {
        self.cond(f, "LIKE ?", vec![format!("%{v}%").into()])
    }
    /// `field IN (values)`; an empty list matches no row.
    pub fn in_(&mut self, f: &str, vals: impl IntoIterator<Item = Value>) -> &mut Self {
        let vals: Vec<Value> = vals.into_iter().collect();
        let marks = vec!["?"; vals.len()].join(", ");
        self.cond(f, &format!("IN ({marks})"), vals)
    }
    /// `field NOT IN (values)`; an empty list matches every row.
    pub fn not_in(&mut self, f: &str, vals: impl IntoIterator<Item = Value>) -> &mut Self {
        let vals: Vec<Value> = vals.into_iter().collect();
        let marks = vec!["?"; vals.len()].join(", ");
        self.cond(f, &format!("NOT IN ({marks})"), vals)
    }
    /// `field IS NULL`.
    pub fn is_null(&mut self, f: &str) -> &mut Self {
        self.cond(f, "IS NULL", Vec::new())
    }
    /// `field IS NOT NULL`.
    pub fn is_not_null(&mut self, f: &str) -> &mut Self {
        self.cond(f, "IS NOT NULL", Vec::new())
    }
    /// Joins the next condition with AND (the default between conditions).
    pub fn and(&mut self) -> &mut Self {
        self.toks.push(Tok::And);
        self
    }
    /// Joins the next condition with OR.
    pub fn or(&mut self) -> &mut Self {
        self.toks.push(Tok::Or);
        self
    }
    /// Opens a parenthesis.
    pub fn begin_wrap(&mut self) -> &mut Self {
        self.toks.push(Tok::Open);
        self
    }
    /// Closes a parenthesis.
    pub fn end_wrap(&mut self) -> &mut Self {
        self.toks.push(Tok::Close);
        self
    }
    /// `distinct`: equal rows once (queries only).
    pub fn distinct(&mut self) -> &mut Self {
        self.distinct = true;
        self
    }
    /// `groupBy(fields)`: one row per group of these fields (queries only).
    pub fn group_by<S: AsRef<str>>(&mut self, fields: &[S]) -> &mut Self {
        if fields.is_empty() {
            self.error
                .get_or_insert_with(|| RdbError::invalid("predicates: groupBy of no field"));
        }
        for f in fields {
            if let Some(q) = self.field(f.as_ref()) {
                self.group.push(q);
            }
        }
        self
    }
    /// Sorts by `field` ascending.
    pub fn order_by_asc(&mut self, f: &str) -> &mut Self {
        if let Some(q) = self.field(f) {
            self.order.push(format!("{q} ASC"));
        }
        self
    }
    /// Sorts by `field` descending.
    pub fn order_by_desc(&mut self, f: &str) -> &mut Self {
        if let Some(q) = self.field(f) {
            self.order.push(format!("{q} DESC"));
        }
        self
    }
    /// At most `n` rows (a negative `n`: no limit, as SQLite's).
    pub fn limit_as(&mut self, n: i64) -> &mut Self {
        self.limit = Some(n);
        self
    }
    /// Skips the first `n` rows.
    pub fn offset_as(&mut self, n: i64) -> &mut Self {
        self.offset = Some(n);
        self
    }
    /// The devices a sync with these predicates goes to (kept for sync).
    pub fn in_devices(&mut self, devices: impl IntoIterator<Item = String>) -> &mut Self {
        self.devices = devices.into_iter().collect();
        self.all_devices = false;
        self
    }
    /// A sync with these predicates goes to every online trusted device.
    pub fn in_all_devices(&mut self) -> &mut Self {
        self.devices.clear();
        self.all_devices = true;
        self
    }
    /// The devices named by [`RdbPredicates::in_devices`].
    pub fn devices(&self) -> &[String] {
        &self.devices
    }
    /// True after [`RdbPredicates::in_all_devices`].
    pub fn all_devices(&self) -> bool {
        self.all_devices
    }

    /// The SQL pieces, or the first error met while building (a bad field, a dangling
    /// AND/OR, unbalanced wraps: 14800001).
    pub fn compile(&self) -> Result<Compiled> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let table = ident::table(&self.table)?;
        let bad = |m: &str| Err(RdbError::invalid(format!("predicates: {m}")));
        let mut sql = String::new();
        let mut depth = 0usize;
        // After a condition or a closing parenthesis a term has ended; then a joiner may
        // follow (AND is implied when a term follows directly).
        let mut ended = false;
        let mut pending: Option<&str> = None;
        for t in &self.toks {
            match t {
                Tok::Cond(_) | Tok::Open => {
                    if ended {
                        sql.push_str(pending.take().unwrap_or(" AND "));
                    } else if pending.is_some() {
                        return bad("AND/OR with nothing before it");
                    }
                    match t {
                        Tok::Cond(c) => {
                            sql.push_str(c);
                            ended = true;
                        }
                        _ => {
                            sql.push('(');
                            depth += 1;
                            ended = false;
                        }
                    }
                }
                Tok::Close => {
                    if depth == 0 || !ended || pending.is_some() {
                        return bad("endWrap without a matching beginWrap and condition");
                    }
                    sql.push(')');
                    depth -= 1;
                }
                Tok::And | Tok::Or => {
                    if !ended || pending.is_some() {
                        return bad("AND/OR with nothing before it");
                    }
                    pending = Some(if *t == Tok::And { " AND " } else { " OR " });
                }
            }
        }
        if pending.is_some() {
            return bad("AND/OR with nothing after it");
        }
        if depth != 0 {
            return bad("beginWrap without endWrap");
        }
        let mut tail = String::new();
        if !self.group.is_empty() {
            tail.push_str(" GROUP BY ");
            tail.push_str(&self.group.join(", "));
        }
        if !self.order.is_empty() {
            tail.push_str(" ORDER BY ");
            tail.push_str(&self.order.join(", "));
        }
        if self.limit.is_some() || self.offset.is_some() {
            // Integers, so they are safe as text; SQLite needs a LIMIT before an OFFSET.
            tail.push_str(&format!(" LIMIT {}", self.limit.unwrap_or(-1)));
            if let Some(o) = self.offset {
                tail.push_str(&format!(" OFFSET {o}"));
            }
        }
        Ok(Compiled {
            table,
            where_sql: sql,
            args: self.args.clone(),
            has_tail: !tail.is_empty() || self.distinct,
            tail,
            distinct: self.distinct,
        })
    }
}

impl Compiled {
    /// ` WHERE <condition>` or empty.
    pub fn where_clause(&self) -> String {
        if self.where_sql.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.where_sql)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(p: &RdbPredicates) -> (String, Vec<Value>) {
        let c = p.compile().unwrap();
        (format!("{}{}", c.where_clause(), c.tail), c.args)
    }

    #[test]
    fn conditions_join_with_and_unless_told_or() {
        let mut p = RdbPredicates::new("note");
        p.equal_to("id", 1)
            .greater_than("n", 2.5)
            .or()
            .is_null("body");
        assert_eq!(
            sql(&p),
            (
                " WHERE \"id\" = ? AND \"n\" > ? OR \"body\" IS NULL".into(),
                vec![Value::Integer(1), Value::Real(2.5)]
            )
        );
    }

    #[test]
    fn every_operator_builds_its_parameterised_sql() {
        let mut p = RdbPredicates::new("t");
        p.not_equal_to("a", 1)
            .greater_than_or_equal_to("a", 2)
            .less_than("a", 3)
            .less_than_or_equal_to("a", 4)
            .between("b", 5, 6)
            .not_between("b", 7, 8)
            .like("c", "x%")
            .glob("c", "y*")
            .in_("d", [Value::from(1), Value::from(2)])
            .not_in("d", [])
            .is_not_null("e")
            .order_by_asc("a")
            .order_by_desc("t.b")
            .limit_as(10)
            .offset_as(20);
        let (s, args) = sql(&p);
        assert_eq!(
            s,
            " WHERE \"a\" <> ? AND \"a\" >= ? AND \"a\" < ? AND \"a\" <= ? AND \"b\" BETWEEN ? AND ? \
             AND \"b\" NOT BETWEEN ? AND ? AND \"c\" LIKE ? AND \"c\" GLOB ? AND \"d\" IN (?, ?) \
             AND \"d\" NOT IN () AND \"e\" IS NOT NULL ORDER BY \"a\" ASC, \"t\".\"b\" DESC LIMIT 10 OFFSET 20"
        );
        assert_eq!(args.len(), 12);
        assert_eq!(args[8], Value::from("x%"));
    }

    #[test]
    fn wraps_nest_and_offset_alone_gets_a_limit() {
        let mut p = RdbPredicates::new("t");
        p.equal_to("a", 1)
            .and()
            .begin_wrap()
            .equal_to("b", 2)
            .or()
            .begin_wrap()
            .equal_to("c", 3)
            .equal_to("d", 4)
            .end_wrap()
            .end_wrap()
            .offset_as(5);
        assert_eq!(
            sql(&p).0,
            " WHERE \"a\" = ? AND (\"b\" = ? OR (\"c\" = ? AND \"d\" = ?)) LIMIT -1 OFFSET 5"
        );
    }

    #[test]
    fn injection_attempts_stay_values_or_are_refused() {
        let evil = "x'; DROP TABLE note; --";
        let mut p = RdbPredicates::new("note");
        p.equal_to("title", evil).like("body", evil);
        let (s, args) = sql(&p);
        assert!(!s.contains("DROP"), "{s}");
        assert_eq!(args, vec![Value::from(evil), Value::from(evil)]);
        // As a field or a table it is refused.
        let mut p = RdbPredicates::new("note");
        p.equal_to(evil, 1);
        assert_eq!(p.compile().unwrap_err().code(), 14_800_001);
        let mut p = RdbPredicates::new("note");
        p.order_by_asc("id; DELETE FROM note");
        assert!(p.compile().is_err());
        assert!(RdbPredicates::new(evil).compile().is_err());
    }

    #[test]
    fn malformed_chains_are_refused() {
        type Case = Box<dyn Fn(&mut RdbPredicates)>;
        let cases: Vec<Case> = vec![
            Box::new(|p| {
                p.or().equal_to("a", 1);
            }),
            Box::new(|p| {
                p.equal_to("a", 1).and();
            }),
            Box::new(|p| {
                p.begin_wrap().equal_to("a", 1);
            }),
            Box::new(|p| {
                p.equal_to("a", 1).end_wrap();
            }),
            Box::new(|p| {
                p.begin_wrap().end_wrap();
            }),
            Box::new(|p| {
                p.equal_to("a", 1).or().and().equal_to("b", 1);
            }),
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut p = RdbPredicates::new("t");
            f(&mut p);
            assert_eq!(p.compile().unwrap_err().code(), 14_800_001, "case {i}");
        }
    }

    #[test]
    fn devices_are_kept_for_sync() {
        let mut p = RdbPredicates::new("t");
        p.in_devices(["d1".to_string(), "d2".to_string()]);
        assert_eq!(p.devices(), ["d1", "d2"]);
        p.in_all_devices();
        assert!(p.all_devices() && p.devices().is_empty());
    }
}
