//! Conversion between `serde_json::Value` and jaq's `Val`, with the output bounds.

use std::fmt::{self, Write as _};

use jaq_json::{Map, Num, Val};
use serde_json::{Number, Value};

/// Converts an input value. Recursive: run it on the evaluation stack.
pub(crate) fn to_val(v: &Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => Val::Num(if let Some(i) = n.as_i64() {
            Num::from_integral(i)
        } else if let Some(u) = n.as_u64() {
            Num::from_integral(u)
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }),
        Value::String(s) => Val::utf8_str(s.clone().into_bytes()),
        Value::Array(a) => a.iter().map(to_val).collect(),
        Value::Object(o) => Val::obj(
            o.iter()
                .map(|(k, v)| (Val::utf8_str(k.clone().into_bytes()), to_val(v)))
                .collect::<Map>(),
        ),
    }
}

/// Why an output could not be converted.
#[derive(Debug)]
pub(crate) enum OutputError {
    /// The byte budget is exhausted.
    TooLarge,
    /// Nested deeper than the depth limit.
    TooDeep,
    /// An object key that is not a string (excerpt of the key).
    NonStringKey(String),
}

/// What is left of the serialized-size allowance for the outputs of one run.
pub(crate) struct Budget(usize);

impl Budget {
    pub(crate) fn new(bytes: usize) -> Self {
        Self(bytes)
    }

    fn spend(&mut self, bytes: usize) -> Result<(), OutputError> {
        self.0 = self.0.checked_sub(bytes).ok_or(OutputError::TooLarge)?;
        Ok(())
    }
}

/// Converts an output value, charging its compact JSON size to `budget` as it goes (so a huge
/// output is rejected before it is copied) and refusing nesting deeper than `max_depth`.
/// Non-finite numbers become `null`, like jq.
pub(crate) fn to_json(
    v: &Val,
    budget: &mut Budget,
    max_depth: usize,
) -> Result<Value, OutputError> {
    match v {
        Val::Null => budget.spend(4).map(|()| Value::Null),
        Val::Bool(b) => budget
            .spend(if *b { 4 } else { 5 })
            .map(|()| Value::Bool(*b)),
        Val::Num(n) => {
            let v = num_to_json(n);
            budget.spend(display_len(&v))?;
            Ok(v)
        }
        Val::TStr(b) | Val::BStr(b) => string(b, budget).map(Value::String),
        Val::Arr(a) => {
            let depth = max_depth.checked_sub(1).ok_or(OutputError::TooDeep)?;
            budget.spend(2 + a.len().saturating_sub(1))?;
            a.iter()
                .map(|x| to_json(x, budget, depth))
                .collect::<Result<_, _>>()
                .map(Value::Array)
        }
        Val::Obj(o) => {
            let depth = max_depth.checked_sub(1).ok_or(OutputError::TooDeep)?;
            // braces, commas and colons
            budget.spend(2 + o.len().saturating_sub(1) + o.len())?;
            let mut map = serde_json::Map::with_capacity(o.len());
            for (k, x) in o.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => string(b, budget)?,
                    other => return Err(OutputError::NonStringKey(excerpt_val(other))),
                };
                map.insert(key, to_json(x, budget, depth)?);
            }
            Ok(Value::Object(map))
        }
    }
}

fn string(bytes: &[u8], budget: &mut Budget) -> Result<String, OutputError> {
    // Cheap pre-check before decoding a huge string.
    if bytes.len().saturating_add(2) > budget.0 {
        return Err(OutputError::TooLarge);
    }
    let s = String::from_utf8_lossy(bytes);
    budget.spend(json_str_len(&s))?;
    Ok(s.into_owned())
}

/// Length of `s` as a JSON string literal, escaped the way `serde_json` does.
fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum::<usize>()
}

fn num_to_json(n: &Num) -> Value {
    let number = match n {
        Num::Int(i) => Some(Number::from(*i as i64)),
        Num::Float(f) => Number::from_f64(*f),
        Num::Dec(s) => s.parse::<f64>().ok().and_then(Number::from_f64),
        Num::BigInt(i) => {
            let s = i.to_string();
            s.parse::<u64>()
                .map(Number::from)
                .or_else(|_| s.parse::<i64>().map(Number::from))
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(Number::from_f64))
        }
    };
    number.map_or(Value::Null, Value::Number)
}

/// Number of bytes `Display` writes for a scalar, without allocating.
fn display_len(v: &Value) -> usize {
    struct Count(usize);
    impl fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = write!(count, "{v}");
    count.0
}

/// A `fmt::Write` that keeps at most `limit` bytes and then fails, so that formatting a huge
/// (or deeply nested) value stops early.
pub(crate) struct Bounded {
    pub(crate) text: String,
    limit: usize,
    pub(crate) truncated: bool,
}

impl Bounded {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            text: String::new(),
            limit,
            truncated: false,
        }
    }

    /// Formats `value` into at most `limit` bytes, ending in `…` if it was cut.
    pub(crate) fn format(limit: usize, value: impl fmt::Display) -> Self {
        let mut b = Self::new(limit);
        let _ = write!(b, "{value}");
        if b.truncated {
            b.text.push('…');
        }
        b
    }
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.limit - self.text.len();
        if s.len() <= room {
            self.text.push_str(s);
            Ok(())
        } else {
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.text.push_str(&s[..cut]);
            self.truncated = true;
            Err(fmt::Error)
        }
    }
}

/// Length of the excerpts of values quoted in error messages.
pub(crate) const EXCERPT: usize = 100;

/// A short JSON-ish excerpt of a jaq value for error messages.
pub(crate) fn excerpt_val(v: &Val) -> String {
    Bounded::format(EXCERPT, v).text
}

/// A short JSON excerpt of an output value for error messages.
pub(crate) fn excerpt_json(v: &Value) -> String {
    Bounded::format(EXCERPT, v).text
}
