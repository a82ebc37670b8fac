//! The data type jaq runs on and the set of native filters exposed to user programs.

use jaq_core::box_iter::BoxIter;
use jaq_core::data::HasLut;
use jaq_core::native::{Fun, bome, unary, v};
use jaq_core::{DataT, Error, Exn, Lut, RunPtr, ValR, ValX};
use jaq_json::Val;

use crate::guard;

/// Marker type telling jaq which values and global data our filters use.
pub(crate) struct Data;

impl DataT for Data {
    type V<'a> = Val;
    type Data<'a> = Guarded<'a>;
}

/// Global data of an evaluation: the look-up table of the compiled program.
///
/// jaq fetches the table through [`HasLut::lut`] each time it evaluates a term, which makes it
/// the hook where we check the deadline and the remaining stack ([`guard::tick`]).
#[derive(Clone)]
pub(crate) struct Guarded<'a>(pub(crate) &'a Lut<Data>);

impl<'a> HasLut<'a, Data> for Guarded<'a> {
    #[inline]
    fn lut(&self) -> &'a Lut<Data> {
        guard::tick();
        self.0
    }
}

/// Native filters (name, arity) from jaq that we replace with [`overrides`].
const REPLACED: &[(&str, usize)] = &[
    // A tight Rust loop (`[range(1e12)]`, `last(range(infinite))`): replaced by a ticking copy.
    ("range", 3),
    // The process environment.
    ("env", 0),
    // Would make jaq's `unwrap_valr` exit the process; we never call it, but be explicit.
    ("halt", 1),
    // Write user-controlled text to the process log / stderr.
    ("debug_empty", 0),
    ("stderr_empty", 0),
    // Read the `TZ` environment variable and `/etc/localtime`.
    ("localtime", 0),
    ("strflocaltime", 1),
    // Quadratic in the size of their operands without ticking: replaced by ticking copies.
    ("contains", 1),
    ("indices", 1),
    // Parses with unbounded recursion (`"[" * 1e7 | fromjson` would overflow the stack).
    ("fromjson", 0),
];

/// Maximum nesting depth of a string parsed by `fromjson`.
pub(crate) const MAX_FROMJSON_DEPTH: usize = 1000;

/// All native filters available to programs: jaq-core, jaq-std and jaq-json natives, minus
/// [`REPLACED`], plus [`overrides`].
pub(crate) fn funs() -> Vec<Fun<Data>> {
    jaq_core::funs::<Data>()
        .chain(jaq_std::funs::<Data>())
        .chain(jaq_json::funs::<Data>())
        .filter(|(name, args, _)| !REPLACED.contains(&(*name, args.len())))
        .chain(overrides())
        .collect()
}

fn unsupported<'a>(what: &str, hint: &str) -> jaq_core::ValXs<'a, Val> {
    bome(Err(Error::str(format_args!(
        "{what} is not supported here{hint}"
    ))))
}

fn overrides() -> impl Iterator<Item = Fun<Data>> {
    let list: [jaq_core::native::Filter<RunPtr<Data>>; 10] = [
        ("range", v(3), |mut cv| {
            let by = cv.0.pop_var();
            let to = cv.0.pop_var();
            let from = cv.0.pop_var();
            Box::new(range(from, to, by))
        }),
        ("env", v(0), |_| bome(Ok(Val::obj(Default::default())))),
        ("halt", v(1), |_| unsupported("halt", "")),
        ("debug_empty", v(0), |_| Box::new(core::iter::empty())),
        ("stderr_empty", v(0), |_| Box::new(core::iter::empty())),
        ("localtime", v(0), |_| {
            unsupported("localtime", " (only UTC is available: use gmtime)")
        }),
        ("strflocaltime", v(1), |_| {
            unsupported("strflocaltime", " (only UTC is available: use strftime)")
        }),
        ("contains", v(1), |cv| {
            unary(cv, |x, y| Ok(Val::Bool(contains(&x, &y))))
        }),
        ("indices", v(1), |cv| unary(cv, |x, y| indices(&x, &y))),
        ("fromjson", v(0), |cv| fromjson(cv.1)),
    ];
    list.into_iter().map(jaq_core::native::run::<Data>)
}

/// Copy of jaq-core's native `range/3` that calls [`guard::tick`] for every output.
fn range<'a>(from: Val, to: Val, by: Val) -> impl Iterator<Item = ValX<'a, Val>> {
    use core::cmp::Ordering::{Equal, Greater, Less};
    let cmp = by.partial_cmp(&Val::from(0_isize)).unwrap_or(Equal);
    let mut from: ValX<'a, Val> = Ok(from);
    core::iter::from_fn(move || {
        guard::tick();
        match from.clone() {
            Ok(x) => match cmp {
                Greater => x < to,
                Less => x > to,
                Equal => x != to,
            }
            .then(|| core::mem::replace(&mut from, (x + by.clone()).map_err(Exn::from))),
            e @ Err(_) => {
                from = Ok(to.clone());
                Some(e)
            }
        }
    })
}

/// jaq-json's `contains`, ticking at every comparison and with a linear substring search.
fn contains(l: &Val, r: &Val) -> bool {
    guard::tick();
    match (l, r) {
        (Val::BStr(l), Val::BStr(r)) | (Val::TStr(l), Val::TStr(r)) => {
            memchr::memmem::find(l, r).is_some()
        }
        (Val::Arr(l), Val::Arr(r)) => r.iter().all(|r| l.iter().any(|l| contains(l, r))),
        (Val::Obj(l), Val::Obj(r)) => r
            .iter()
            .all(|(k, r)| l.get(k).is_some_and(|l| contains(l, r))),
        _ => l == r,
    }
}

/// jaq-json's `indices` (positions of `y` in `x`, overlapping), ticking at every candidate.
fn indices(x: &Val, y: &Val) -> ValR<Val> {
    // Comparing long needles is expensive: then read the clock at every candidate.
    let step = |len: usize| {
        if len >= 1024 {
            guard::check_clock()
        } else {
            guard::tick()
        }
    };
    let found = |i: usize| Val::from(i as isize);
    Ok(match (x, y) {
        (Val::BStr(_) | Val::TStr(_), Val::BStr(y) | Val::TStr(y)) if y.is_empty() => {
            Val::from_iter(core::iter::empty())
        }
        (Val::TStr(x), Val::TStr(y)) => {
            // character positions, like jaq
            let starts = x
                .iter()
                .enumerate()
                .filter(|(_, b)| (**b & 0xC0) != 0x80)
                .map(|(i, _)| i);
            starts
                .enumerate()
                .filter(|(_, i)| {
                    step(y.len());
                    x.get(*i..*i + y.len()) == Some(&y[..])
                })
                .map(|(c, _)| found(c))
                .collect()
        }
        (Val::BStr(x), Val::BStr(y)) => x
            .windows(y.len())
            .enumerate()
            .filter(|(_, w)| {
                step(y.len());
                *w == &y[..]
            })
            .map(|(i, _)| found(i))
            .collect(),
        (Val::Arr(_), Val::Arr(y)) if y.is_empty() => Val::from_iter(core::iter::empty()),
        (Val::Arr(x), Val::Arr(y)) => x
            .windows(y.len())
            .enumerate()
            .filter(|(_, w)| {
                step(y.len());
                *w == &y[..]
            })
            .map(|(i, _)| found(i))
            .collect(),
        (Val::Arr(x), y) => x
            .iter()
            .enumerate()
            .filter(|(_, x)| {
                guard::tick();
                *x == y
            })
            .map(|(i, _)| found(i))
            .collect(),
        (x, y) => return Err(Error::index(x.clone(), y.clone())),
    })
}

/// jaq-json's `fromjson`, refusing input nested deeper than [`MAX_FROMJSON_DEPTH`].
fn fromjson<'a>(v: Val) -> BoxIter<'a, ValX<'a, Val>> {
    let Val::TStr(s) = &v else {
        return bome(Err(Error::typ(v, "string")));
    };
    if json_depth(s) > MAX_FROMJSON_DEPTH {
        let message =
            format!("cannot parse JSON nested more than {MAX_FROMJSON_DEPTH} levels deep");
        return bome(Err(Error::str(message)));
    }
    let parsed: Vec<_> = jaq_json::read::parse_many(s)
        .map(|r| {
            r.map_err(|e| {
                let excerpt = crate::convert::excerpt_val(&v);
                Exn::from(Error::str(format_args!(
                    "cannot parse {excerpt} as JSON: {e}"
                )))
            })
        })
        .collect();
    Box::new(parsed.into_iter())
}

/// Maximum nesting of brackets and braces in JSON text, ignoring those in strings.
fn json_depth(s: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0_usize, 0, false, false);
    for &b in s {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_str = true,
                b'[' | b'{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    max
}
