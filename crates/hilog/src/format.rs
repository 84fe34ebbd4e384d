//! OpenHarmony's privacy format strings: `%{public}s` prints, `%{private}d` and a plain `%d`
//! print `<private>` while privacy is on.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// What a masked argument prints.
pub const PRIVATE_MARK: &str = "<private>";
/// Widths and precisions are capped at the message limit, so `%999999999d` cannot make the
/// daemon allocate gigabytes.
const MAX_WIDTH: usize = crate::MAX_MSG_LEN;

/// One argument of a log call, as the SDK sends it (the C varargs of `OH_LOG_Print`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LogArg {
    /// A string (`%s`).
    Str(String),
    /// A signed integer (`%d`, `%i`).
    Int(i64),
    /// An unsigned integer (`%u`, `%x`).
    Uint(u64),
    /// A floating-point number (`%f`).
    Float(f64),
    /// A boolean, printed as `true`/`false` by `%s` and `1`/`0` by `%d`.
    Bool(bool),
    /// A character (`%c`).
    Char(char),
}

/// `From` each argument type, into the variant that carries it (widened where it is smaller).
macro_rules! log_arg_from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for LogArg {
            fn from(v: $t) -> Self {
                LogArg::$variant(v.into())
            }
        }
    )*};
}
log_arg_from! {
    &str => Str,
    String => Str,
    i64 => Int,
    i32 => Int,
    u64 => Uint,
    u32 => Uint,
    f64 => Float,
    bool => Bool,
    char => Char,
}

impl LogArg {
    fn as_i64(&self) -> Option<i64> {
        match self {
            LogArg::Int(v) => Some(*v),
            LogArg::Uint(v) => Some(*v as i64),
            LogArg::Float(v) => Some(*v as i64),
            LogArg::Bool(b) => Some(i64::from(*b)),
            LogArg::Char(c) => Some(i64::from(u32::from(*c))),
            LogArg::Str(_) => None,
        }
    }
    fn as_u64(&self) -> Option<u64> {
        match self {
            // C reinterprets a negative int under %u / %x; do the same.
            LogArg::Int(v) => Some(*v as u64),
            LogArg::Uint(v) => Some(*v),
            other => other.as_i64().map(|v| v as u64),
        }
    }
    fn as_f64(&self) -> Option<f64> {
        match self {
            LogArg::Float(v) => Some(*v),
            LogArg::Int(v) => Some(*v as f64),
            LogArg::Uint(v) => Some(*v as f64),
            LogArg::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }
    fn plain(&self) -> String {
        match self {
            LogArg::Str(s) => s.clone(),
            LogArg::Int(v) => v.to_string(),
            LogArg::Uint(v) => v.to_string(),
            LogArg::Float(v) => format!("{v:.6}"),
            LogArg::Bool(b) => b.to_string(),
            LogArg::Char(c) => c.to_string(),
        }
    }
}

#[derive(Default)]
struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    alt: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

/// Formats `fmt` with `args` the way OpenHarmony's hilog does, with its privacy rules:
/// an argument marked `%{public}` always prints; one marked `%{private}`, or with no mark at
/// all, prints `<private>` when `mask` is true. Supports `%s %d %i %u %x %X %o %c %f %e %g %p`
/// and `%%`, with flags (`-0+ #`), width and precision (`%5d`, `%-8s`, `%.2f`); C length
/// modifiers (`l`, `ll`, `h`, `z`, ...) are accepted and ignored. A specifier with no argument
/// left, or one it does not understand, is printed as written. Never panics.
pub fn format_log(fmt: &str, args: &[LogArg], mask: bool) -> String {
    let mut out = String::with_capacity(fmt.len() + 16 * args.len());
    let mut next_arg = args.iter();
    let bytes = fmt.as_bytes();
    let mut i = 0;
    let mut lit_start = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        // The message is cut to MAX_MSG_LEN anyway: stop once past it, so that a small request
        // full of wide specifiers cannot make the daemon build megabytes of text.
        if out.len() > crate::MAX_MSG_LEN {
            return out;
        }
        out.push_str(&fmt[lit_start..i]);
        let start = i;
        i += 1;
        if bytes.get(i) == Some(&b'%') {
            out.push('%');
            i += 1;
            lit_start = i;
            continue;
        }
        // Privacy mark: %{public}s, %{private}d.
        let mut public = false;
        if bytes.get(i) == Some(&b'{') {
            match fmt[i..].find('}') {
                Some(close) => {
                    let mark = &fmt[i + 1..i + close];
                    public = mark.split(',').any(|m| m.trim() == "public");
                    i += close + 1;
                }
                None => {
                    // Unclosed brace: not a specifier; print the rest literally.
                    i = bytes.len();
                    out.push_str(&fmt[start..]);
                    lit_start = i;
                    continue;
                }
            }
        }
        let mut spec = Spec::default();
        while let Some(&c) = bytes.get(i) {
            match c {
                b'-' => spec.left = true,
                b'0' => spec.zero = true,
                b'+' => spec.plus = true,
                b' ' => spec.space = true,
                b'#' => spec.alt = true,
                _ => break,
            }
            i += 1;
        }
        let (w, n) = read_num(&bytes[i..]);
        spec.width = w;
        i += n;
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            let (p, n) = read_num(&bytes[i..]);
            spec.precision = Some(p.unwrap_or(0));
            i += n;
        }
        while let Some(&c) = bytes.get(i) {
            if matches!(c, b'h' | b'l' | b'L' | b'q' | b'j' | b'z' | b't') {
                i += 1;
            } else {
                break;
            }
        }
        let Some(&conv) = bytes.get(i) else {
            out.push_str(&fmt[start..]);
            lit_start = bytes.len();
            break;
        };
        if !b"sdiuxXocfFeEgGp".contains(&conv) {
            // Unknown conversion: print what we consumed literally; the next char (which may
            // be multi-byte) is left for the literal scan.
            out.push_str(&fmt[start..i]);
            lit_start = i;
            continue;
        }
        i += 1;
        lit_start = i;
        let Some(arg) = next_arg.next() else {
            out.push_str(&fmt[start..i]);
            continue;
        };
        if mask && !public {
            out.push_str(PRIVATE_MARK);
            continue;
        }
        render(&mut out, conv, &spec, arg);
    }
    out.push_str(&fmt[lit_start.min(fmt.len())..]);
    out
}

fn read_num(b: &[u8]) -> (Option<usize>, usize) {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return (None, 0);
    }
    let mut v: usize = 0;
    for &c in &b[..n] {
        v = v.saturating_mul(10).saturating_add(usize::from(c - b'0'));
    }
    (Some(v.min(MAX_WIDTH)), n)
}

fn render(out: &mut String, conv: u8, spec: &Spec, arg: &LogArg) {
    let body = match conv {
        b's' => {
            let mut s = arg.plain();
            if let Some((idx, _)) = spec.precision.and_then(|p| s.char_indices().nth(p)) {
                s.truncate(idx);
            }
            s
        }
        b'c' => match arg {
            LogArg::Char(c) => c.to_string(),
            LogArg::Str(s) => s.chars().next().map(String::from).unwrap_or_default(),
            other => other
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .and_then(char::from_u32)
                .map(String::from)
                .unwrap_or_default(),
        },
        b'd' | b'i' => match arg.as_i64() {
            Some(v) => {
                let digits = with_precision(v.unsigned_abs().to_string(), spec.precision);
                return pad_number(out, spec, sign(v < 0, spec), &digits);
            }
            None => arg.plain(),
        },
        b'u' | b'x' | b'X' | b'o' | b'p' => match arg.as_u64() {
            Some(v) => {
                let digits = match conv {
                    b'u' => v.to_string(),
                    b'x' | b'p' => format!("{v:x}"),
                    b'X' => format!("{v:X}"),
                    _ => format!("{v:o}"),
                };
                let digits = with_precision(digits, spec.precision);
                let prefix = match conv {
                    b'p' => "0x",
                    b'x' if spec.alt && v != 0 => "0x",
                    b'X' if spec.alt && v != 0 => "0X",
                    b'o' if spec.alt => "0",
                    _ => "",
                };
                return pad_number(out, spec, prefix, &digits);
            }
            None => arg.plain(),
        },
        _ => match arg.as_f64() {
            Some(v) => {
                let p = spec.precision.unwrap_or(6);
                let mut s = match conv {
                    b'e' => format!("{v:.p$e}"),
                    b'E' => format!("{v:.p$E}"),
                    b'g' | b'G' => format!("{v}"),
                    _ => format!("{v:.p$}"),
                };
                let negative = s.starts_with('-');
                if negative {
                    s.remove(0);
                }
                return pad_number(out, spec, sign(negative, spec), &s);
            }
            None => arg.plain(),
        },
    };
    pad(out, spec, &body);
}

fn with_precision(digits: String, precision: Option<usize>) -> String {
    match precision {
        Some(p) if digits.len() < p => format!("{}{digits}", "0".repeat(p - digits.len())),
        _ => digits,
    }
}

fn pad(out: &mut String, spec: &Spec, body: &str) {
    let len = body.chars().count();
    let width = spec.width.unwrap_or(0);
    if len >= width {
        out.push_str(body);
    } else if spec.left {
        out.push_str(body);
        out.extend(std::iter::repeat_n(' ', width - len));
    } else {
        out.extend(std::iter::repeat_n(' ', width - len));
        out.push_str(body);
    }
}

/// The sign a signed conversion prints: `-`, else `+` or a space as the flags ask.
fn sign(negative: bool, spec: &Spec) -> &'static str {
    if negative {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    }
}

fn pad_number(out: &mut String, spec: &Spec, sign: &str, digits: &str) {
    let len = sign.len() + digits.len();
    let width = spec.width.unwrap_or(0);
    if len >= width {
        let _ = write!(out, "{sign}{digits}");
    } else if spec.left {
        let _ = write!(out, "{sign}{digits}");
        out.extend(std::iter::repeat_n(' ', width - len));
    } else if spec.zero && spec.precision.is_none() {
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', width - len));
        out.push_str(digits);
    } else {
        out.extend(std::iter::repeat_n(' ', width - len));
        let _ = write!(out, "{sign}{digits}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_wide_specifiers_stay_bounded() {
        let fmt = "%4095d".repeat(10_000);
        let args: Vec<LogArg> = (0..10_000).map(|i| LogArg::from(i as i64)).collect();
        let out = format_log(&fmt, &args, false);
        assert!(out.len() <= 2 * crate::MAX_MSG_LEN, "{} bytes", out.len());
    }

    fn f(fmt: &str, args: &[LogArg]) -> String {
        format_log(fmt, args, false)
    }

    #[test]
    fn privacy_marks_follow_openharmony() {
        let args = [LogArg::from("alice"), LogArg::from(42i64)];
        assert_eq!(
            format_log("user %{public}s id %{private}d", &args, true),
            "user alice id <private>"
        );
        assert_eq!(
            format_log("user %s id %d", &args, true),
            "user <private> id <private>",
            "plain specifiers are private by default"
        );
        assert_eq!(
            format_log("user %s id %d", &args, false),
            "user alice id 42"
        );
        assert_eq!(
            format_log("%{private}s", &args, false),
            "alice",
            "privacy off prints everything"
        );
    }

    #[test]
    fn conversions() {
        assert_eq!(
            f("%d %i %u", &[(-5).into(), 7.into(), 9u64.into()]),
            "-5 7 9"
        );
        assert_eq!(f("%x %X", &[255u64.into(), 255u64.into()]), "ff FF");
        assert_eq!(f("%x", &[LogArg::Int(-1)]), "ffffffffffffffff");
        assert_eq!(f("%f", &[1.5.into()]), "1.500000");
        assert_eq!(f("%.2f", &[1.23456.into()]), "1.23");
        assert_eq!(f("%c%c", &['o'.into(), 107u64.into()]), "ok");
        assert_eq!(f("%s", &[true.into()]), "true");
        assert_eq!(f("%d", &[true.into()]), "1");
        assert_eq!(f("%o", &[8u64.into()]), "10");
        assert_eq!(f("%p", &[255u64.into()]), "0xff");
        assert_eq!(f("%#x", &[255u64.into()]), "0xff");
        assert_eq!(
            f("%ld %lld %zu", &[1.into(), 2.into(), 3u64.into()]),
            "1 2 3"
        );
        assert_eq!(f("100%%", &[]), "100%");
    }

    #[test]
    fn width_flags_and_precision() {
        assert_eq!(f("[%5d]", &[42.into()]), "[   42]");
        assert_eq!(f("[%-5d]", &[42.into()]), "[42   ]");
        assert_eq!(f("[%05d]", &[(-42).into()]), "[-0042]");
        assert_eq!(f("[%+d]", &[42.into()]), "[+42]");
        assert_eq!(f("[%8.3f]", &[2.5.into()]), "[   2.500]");
        assert_eq!(f("[%-6s]", &["ab".into()]), "[ab    ]");
        assert_eq!(f("[%.2s]", &["abcdef".into()]), "[ab]");
        assert_eq!(f("[%.3d]", &[7.into()]), "[007]");
        assert_eq!(f("[%{public}4s]", &["x".into()]), "[   x]");
    }

    #[test]
    fn mismatched_types_still_print() {
        assert_eq!(f("%d", &["seven".into()]), "seven");
        assert_eq!(f("%s", &[7.into()]), "7");
        assert_eq!(f("%f", &[2.into()]), "2.000000");
    }

    #[test]
    fn missing_and_unknown_specifiers_print_literally() {
        assert_eq!(f("a %d b %{public}s", &[1.into()]), "a 1 b %{public}s");
        assert_eq!(f("%y %d", &[3.into()]), "%y 3");
        assert_eq!(f("tail %", &[]), "tail %");
        assert_eq!(f("tail %5", &[]), "tail %5");
        assert_eq!(f("brace %{public", &[1.into()]), "brace %{public");
        assert_eq!(f("%é", &[]), "%é");
        assert_eq!(f("héllo %s wörld", &["ü".into()]), "héllo ü wörld");
    }

    #[test]
    fn huge_widths_are_capped() {
        let s = f("%999999999999d", &[1.into()]);
        assert_eq!(s.len(), MAX_WIDTH);
    }

    #[test]
    fn extra_args_are_ignored() {
        assert_eq!(f("only %d", &[1.into(), 2.into()]), "only 1");
    }
}
