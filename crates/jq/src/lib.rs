//! jq filters and transforms for routes and outbound endpoints, built on [jaq].
//!
//! Filters are written by users, so they are untrusted: evaluation is bounded in time, stack,
//! number of outputs and output size, and filters cannot reach the process environment or the
//! filesystem.
//!
//! ```
//! use switchboard_jq::{Limits, Program};
//!
//! let program = Program::compile(r#"{text: "PR #\(.number) by \(.user // "nobody")"}"#)?;
//! let out = program.run_one(&serde_json::json!({"number": 7}), &Limits::default())?;
//! assert_eq!(out, serde_json::json!({"text": "PR #7 by nobody"}));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Usage
//!
//! Compile once with [`Program::compile`] and cache the [`Program`]: it is cheap to clone,
//! `Send + Sync`, and holds no per-run state. [`Program::run`] is synchronous and CPU-bound
//! (at most [`Limits::timeout`] plus a little, see below): call it outside `.await` points,
//! e.g. within `spawn_blocking` or in a short synchronous section of a handler. jaq's values
//! are not `Send`; they never leave `run`, which takes and returns `serde_json` values.
//!
//! The language is jaq's (close to jq 1.7): jaq's core and standard library, so `select`,
//! `map`, `test`, `ascii_downcase`, `tostring`, `tojson`, `fromjson`, `@base64`, `has`, `keys`,
//! `to_entries`, `length`, string interpolation, `//`, `if`, `reduce`, `ltrimstr`, `split`,
//! `join`, `now`, `todate`, … are all there. Differences from jq that matter here:
//!
//! - `$ENV` and `env` are `{}`: the process environment is not visible.
//! - No filesystem: `import`/`include` fail to compile, `input`/`inputs` do not exist,
//!   `localtime` and `strflocaltime` (which read `TZ` and `/etc/localtime`) fail at run time,
//!   `halt` fails, and `debug`/`stderr` pass their input through without logging anything.
//!
//! # How evaluation is bounded
//!
//! **Time: evaluation really stops.** jaq has no fuel or interrupt API, but it fetches the
//! program's look-up table through our global-data type every time it evaluates a term, and
//! that is a hook: every evaluation step calls an internal `tick`, which reads the clock every
//! 64 steps and, once the deadline has passed, unwinds the evaluation with
//! [`std::panic::resume_unwind`] (nothing is printed, and jq's `try`/`?`/`//` cannot catch
//! it); [`Program::run`] catches it and returns [`RunError::Timeout`]. Native filters that loop
//! without evaluating terms are replaced by copies that tick: `range` (so
//! `[range(1e12)] | length` and `last(range(infinite))` stop), `contains` and `indices`
//! (quadratic in their operands). `..` is quadratic in the depth of a value in jaq and does not
//! tick, so it is compiled as jq defines it, `def recurse: recurse(.[]?)`, and so are `paths`
//! and `paths(f)`. No thread is left running after a timeout: the run ends on the caller's
//! thread, usually within a few milliseconds of the deadline, up to a few tens of milliseconds
//! when it has to unwind deep recursion or free large values the filter built.
//!
//! Limits of the time bound: one native operation is not interruptible, so a step can overshoot
//! the deadline by its own duration. The remaining ones are linear or `n log n` in their
//! operands (sorting, `tojson`, string and regex functions, comparisons), and operands are only
//! as large as the input or what the filter could build before the deadline, with one
//! exception: repeating a string (`"x" * 100000000`) allocates and fills the result in one
//! step. Memory is not bounded other than by time either; a filter that asks for more memory
//! than the system will give (`"x" * 10000000000000`) aborts the process, like any allocation
//! failure in Rust. Code that must survive deliberately hostile filters needs process
//! isolation on top of this crate.
//!
//! **Stack: deep recursion is an error.** Every run executes on a fresh stack of
//! [`EVAL_STACK_SIZE`] (1 GiB of address space mapped by the `stacker` crate; only touched pages
//! use memory and all are released after the run, so the caller's stack size does not matter).
//! Each step also checks the stack used, and a run that uses more than [`RECURSION_STACK`]
//! (8 MiB: about 4 000 levels of non-tail recursion in a release build, 500 in a debug build)
//! fails with [`RunError::RecursionLimit`]. The rest of the stack is a reserve for the
//! recursion that happens outside evaluation steps: dropping, comparing or printing deeply
//! nested values a filter built, such as `reduce range(n) as $i (null; [.])`. Such a value
//! grows by at most a level or two per step, so its depth is bounded by the timeout: at the
//! default 100 ms about 2·10⁵ levels (release build), while `tojson` of a 10⁶-level value
//! still fits in the reserve. With timeouts of more than about half a second, a filter that
//! deliberately builds deeper values can exhaust the reserve and crash the process.
//! `fromjson` refuses text nested more than 1 000 levels deep, and outputs nested deeper than
//! [`MAX_OUTPUT_DEPTH`] are rejected.
//!
//! **Outputs.** Outputs are converted to `serde_json` one at a time as they are produced,
//! charging their compact JSON size to [`Limits::max_output_bytes`] during the conversion
//! (a huge output is rejected before it is copied); the run stops as soon as the total is
//! exceeded or there are more than [`Limits::max_outputs`] outputs.
//!
//! **Cost.** Mapping and releasing the run's stack costs about 15 µs per run, and converting
//! the input to jaq's values about 50 µs for a 5 KB GitHub event; see
//! `cargo bench -p switchboard-jq`.
//!
//! The crate relies on unwinding: it does not compile with `panic = "abort"`.
//!
//! [jaq]: https://github.com/01mf02/jaq

#[cfg(panic = "abort")]
compile_error!("switchboard-jq interrupts evaluations by unwinding and needs panic = \"unwind\"");

mod convert;
mod guard;
mod natives;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Ctx, Vars};
use jaq_json::Val;
use serde_json::Value;

use crate::convert::{Bounded, Budget, OutputError};
use crate::guard::Abort;
use crate::natives::{Data, Guarded};

/// Size of the stack each run executes on (reserved address space; only touched pages use
/// memory, and they are released after the run).
pub const EVAL_STACK_SIZE: usize = 1 << 30;

/// Stack that the evaluation of jq terms may use; using more fails the run with
/// [`RunError::RecursionLimit`]. The rest of [`EVAL_STACK_SIZE`] is kept for recursion outside
/// jq terms (see the module docs).
pub const RECURSION_STACK: usize = 8 << 20;

/// Maximum nesting depth of an output value (arrays and objects).
pub const MAX_OUTPUT_DEPTH: usize = 256;

/// Maximum length of a jq error message in [`RunError::Runtime`].
const MAX_MESSAGE: usize = 500;

type Filter = jaq_core::Filter<Data>;

/// A compiled jq program.
///
/// Compile once and reuse: cloning is cheap (reference counted) and the program can be shared
/// between threads.
#[derive(Clone)]
pub struct Program {
    inner: Arc<Inner>,
}

struct Inner {
    source: Box<str>,
    filter: Filter,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

/// A jq program failed to compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("jq error at line {line}, column {column}: {message}")]
pub struct CompileError {
    /// Line of the first error, 1-based.
    pub line: usize,
    /// Column of the first error, 1-based, in characters.
    pub column: usize,
    /// What is wrong, e.g. ``undefined filter `foo/0` ``.
    pub message: String,
}

/// Bounds on one run of a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time a run may take (see the module docs for how precise this is).
    pub timeout: Duration,
    /// Maximum total size of the outputs, serialized as compact JSON.
    pub max_output_bytes: usize,
    /// Maximum number of outputs.
    pub max_outputs: usize,
}

impl Default for Limits {
    /// 100 ms, 1 MiB, 100 outputs.
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(100),
            max_output_bytes: 1 << 20,
            max_outputs: 100,
        }
    }
}

/// A run of a jq program failed. The message is a sentence that can be shown to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The filter raised an error, e.g. `.a.b` on a string or `error("...")`.
    #[error("jq filter failed: {0}")]
    Runtime(String),
    /// The run did not finish within [`Limits::timeout`].
    #[error("jq filter did not finish within {0:?}")]
    Timeout(Duration),
    /// The outputs exceed [`Limits::max_output_bytes`].
    #[error("jq filter output exceeds the limit of {limit} bytes")]
    OutputTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The filter produced more than [`Limits::max_outputs`] outputs.
    #[error("jq filter produced more than {limit} outputs")]
    TooManyOutputs {
        /// The limit.
        limit: usize,
    },
    /// An output is nested deeper than [`MAX_OUTPUT_DEPTH`].
    #[error("jq filter output is nested more than {limit} levels deep")]
    OutputTooDeep {
        /// The limit.
        limit: usize,
    },
    /// The filter recursed too deeply (it used more than [`RECURSION_STACK`]).
    #[error("jq filter recursed too deeply")]
    RecursionLimit,
    /// [`Program::run_one`]: the filter did not produce exactly one output.
    #[error("jq filter must produce exactly one output, but produced {count}")]
    NotOneOutput {
        /// How many outputs it produced.
        count: usize,
    },
    /// [`Program::run_bool`]: the output was not a single boolean.
    #[error("filter must yield true or false, got {got}")]
    NotBoolean {
        /// Excerpt of the output, or how many outputs there were.
        got: String,
    },
    /// jaq itself panicked (a bug in jaq); the message is the panic's.
    #[error("jq filter evaluation failed unexpectedly: {0}")]
    Internal(String),
}

impl Program {
    /// Parses and compiles `source`, with jaq's standard library.
    pub fn compile(source: &str) -> Result<Self, CompileError> {
        let rewrite = Rewrite::new(source);
        let code = rewrite.code.as_deref().unwrap_or(source);
        let loader = Loader::new(prelude());
        let arena = Arena::default();
        let file = File { code, path: () };
        let modules = loader
            .load(&arena, file)
            .map_err(|errs| load_error(&rewrite, code, errs))?;
        let filter = jaq_core::Compiler::<_, Data>::default()
            .with_funs(natives::funs())
            .with_global_vars(["$ENV"])
            .compile(modules)
            .map_err(|errs| undefined_error(&rewrite, code, errs))?;
        Ok(Self {
            inner: Arc::new(Inner {
                source: source.into(),
                filter,
            }),
        })
    }

    /// The source the program was compiled from.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Runs the program on `input` and returns all its outputs, in order.
    ///
    /// Blocks the calling thread for at most about `limits.timeout` (see the module docs).
    pub fn run(&self, input: &Value, limits: &Limits) -> Result<Vec<Value>, RunError> {
        with_eval_stack(|| self.run_on(&Input::new(input), limits))
    }

    /// Runs the program on an input converted once ([`Input`]) and returns all its outputs.
    /// Several programs over the same input (a filter, then a transform) share the conversion.
    pub fn run_on(&self, input: &Input, limits: &Limits) -> Result<Vec<Value>, RunError> {
        let deadline = Instant::now()
            .checked_add(limits.timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        let on_stack = || {
            // jq terms may use RECURSION_STACK from here; the rest stays for recursion outside
            // terms (conversions, dropping deep values).
            let remaining = stacker::remaining_stack().unwrap_or(EVAL_STACK_SIZE);
            let _scope = guard::Scope::enter(deadline, remaining.saturating_sub(RECURSION_STACK));
            match catch_unwind(AssertUnwindSafe(|| eval(&self.inner.filter, input, limits))) {
                Ok(result) => result,
                Err(payload) => Err(match payload.downcast_ref::<Abort>() {
                    Some(Abort::Timeout) => RunError::Timeout(limits.timeout),
                    Some(Abort::Stack) => RunError::RecursionLimit,
                    None => RunError::Internal(panic_message(payload.as_ref())),
                }),
            }
        };
        // `grow` panics if the stack cannot be mapped.
        catch_unwind(AssertUnwindSafe(|| with_eval_stack(on_stack)))
            .unwrap_or_else(|payload| Err(RunError::Internal(panic_message(payload.as_ref()))))
    }

    /// Runs the program and requires exactly one output.
    pub fn run_one(&self, input: &Value, limits: &Limits) -> Result<Value, RunError> {
        with_eval_stack(|| self.run_one_on(&Input::new(input), limits))
    }

    /// [`Program::run_one`] on a converted input.
    pub fn run_one_on(&self, input: &Input, limits: &Limits) -> Result<Value, RunError> {
        let outputs = self.run_on(input, limits)?;
        let count = outputs.len();
        match <[Value; 1]>::try_from(outputs) {
            Ok([v]) => Ok(v),
            Err(_) => Err(RunError::NotOneOutput { count }),
        }
    }

    /// Runs the program and requires exactly one output, `true` or `false`.
    pub fn run_bool(&self, input: &Value, limits: &Limits) -> Result<bool, RunError> {
        with_eval_stack(|| self.run_bool_on(&Input::new(input), limits))
    }

    /// [`Program::run_bool`] on a converted input.
    pub fn run_bool_on(&self, input: &Input, limits: &Limits) -> Result<bool, RunError> {
        let outputs = self.run_on(input, limits)?;
        match outputs.as_slice() {
            [Value::Bool(b)] => Ok(*b),
            [other] => Err(RunError::NotBoolean {
                got: convert::excerpt_json(other),
            }),
            [] => Err(RunError::NotBoolean {
                got: "no output".into(),
            }),
            many => Err(RunError::NotBoolean {
                got: format!("{} outputs", many.len()),
            }),
        }
    }
}

/// A JSON value converted for evaluation once, to run several programs on.
///
/// Not `Send`: build it on the thread (and ideally inside the [`with_eval_stack`] call) where the
/// programs run.
pub struct Input {
    val: Val,
}

impl Input {
    /// Converts `value` (recursive: runs on an evaluation stack).
    pub fn new(value: &Value) -> Self {
        with_eval_stack(|| Self {
            val: convert::to_val(value),
        })
    }
}

/// Runs `f` on an evaluation stack: a fresh [`EVAL_STACK_SIZE`] stack, unless the caller already
/// is on one with nearly all of it left. Wrap a batch of runs (filter, transform, templates of
/// one delivery) in one call so they share a single stack instead of mapping one each.
pub fn with_eval_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(EVAL_STACK_SIZE - (64 << 20), EVAL_STACK_SIZE, f)
}

/// `..` as a jq-level definition: jaq evaluates the `..` term in a native loop that is
/// quadratic in the depth of the value and never ticks; this one ticks at every level (and is
/// what `..` means in jq).
const RECURSE: &str = "(def rec: ., (.[]? | rec); rec)";

/// Definitions replacing jaq's `paths/0` and `paths/1`, which use `..`.
const PATHS_DEFS: &str = "
def paths: skip(1; path(def rec: ., (.[]? | rec); rec));
def paths(p): skip(1; path_value(def rec: ., (.[]? | rec); rec)) | if .[1] | p then .[0] else empty end;
";

/// jaq's standard definitions, with `paths` replaced by [`PATHS_DEFS`].
fn prelude() -> impl Iterator<Item = jaq_core::load::parse::Def<&'static str>> {
    let paths = jaq_core::load::parse(PATHS_DEFS, |p| p.defs()).unwrap_or_default();
    jaq_core::defs()
        .filter(|def| def.name != "paths")
        .chain(paths)
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
}

/// The user's source with every `..` token replaced by [`RECURSE`], and how to map positions
/// in the rewritten source back.
struct Rewrite<'s> {
    source: &'s str,
    /// `None` if there was nothing to replace (or the source does not lex).
    code: Option<String>,
    /// Start of each replacement in `code`, in order.
    starts: Vec<usize>,
}

impl<'s> Rewrite<'s> {
    fn new(source: &'s str) -> Self {
        use jaq_core::load::lex::{Lexer, StrPart, Tok, Token};
        fn walk<'a>(tokens: &[Token<&'a str>], found: &mut Vec<&'a str>) {
            for Token(text, tok) in tokens {
                match tok {
                    Tok::Sym if *text == ".." => found.push(text),
                    Tok::Block(inner) => walk(inner, found),
                    Tok::Str(parts) => {
                        for part in parts {
                            if let StrPart::Term(t) = part {
                                walk(std::slice::from_ref(t), found);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut found = Vec::new();
        if let Ok(tokens) = Lexer::new(source).lex() {
            walk(&tokens, &mut found);
        }
        let mut offsets: Vec<usize> = found
            .iter()
            .filter_map(|part| span_start(source, part))
            .collect();
        offsets.sort_unstable();
        if offsets.is_empty() {
            return Self {
                source,
                code: None,
                starts: Vec::new(),
            };
        }
        let mut code = String::with_capacity(source.len() + offsets.len() * RECURSE.len());
        let mut starts = Vec::with_capacity(offsets.len());
        let mut last = 0;
        for offset in offsets {
            code.push_str(&source[last..offset]);
            starts.push(code.len());
            code.push_str(RECURSE);
            last = offset + 2;
        }
        code.push_str(&source[last..]);
        Self {
            source,
            code: Some(code),
            starts,
        }
    }

    /// Maps a slice of the compiled code to its 1-based line and column in the user's source.
    fn position(&self, code: &str, part: &str) -> Option<(usize, usize)> {
        let mut offset = span_start(code, part)?;
        if self.code.is_some() {
            let mut shift = 0;
            for &start in &self.starts {
                if offset >= start + RECURSE.len() {
                    shift += RECURSE.len() - 2;
                } else if offset >= start {
                    offset = start;
                }
            }
            offset -= shift;
        }
        let before = self.source.get(..offset)?;
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        Some((line, column))
    }
}

/// Byte offset of `part` in `whole`, if `part` is a slice of it.
fn span_start(whole: &str, part: &str) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start + part.len() <= whole.len()).then_some(start)
}

/// Evaluates on the current (large) stack; may unwind with an [`Abort`].
fn eval(filter: &Filter, input: &Input, limits: &Limits) -> Result<Vec<Value>, RunError> {
    let input = input.val.clone();
    let env = Val::obj(Default::default());
    let ctx = Ctx::<Data>::new(Guarded(&filter.lut), Vars::new([env]));
    let mut budget = Budget::new(limits.max_output_bytes);
    let mut outputs = Vec::new();
    for y in filter.id.run((ctx, input)) {
        let y = y.map_err(|exn| match exn.get_err() {
            Ok(e) => RunError::Runtime(error_message(&e)),
            Err(_) => RunError::Runtime("unexpected control flow (halt or break)".into()),
        })?;
        if outputs.len() >= limits.max_outputs {
            return Err(RunError::TooManyOutputs {
                limit: limits.max_outputs,
            });
        }
        let out = convert::to_json(&y, &mut budget, MAX_OUTPUT_DEPTH).map_err(|e| match e {
            OutputError::TooLarge => RunError::OutputTooLarge {
                limit: limits.max_output_bytes,
            },
            OutputError::TooDeep => RunError::OutputTooDeep {
                limit: MAX_OUTPUT_DEPTH,
            },
            OutputError::NonStringKey(key) => {
                RunError::Runtime(format!("object keys must be strings, got {key}"))
            }
        })?;
        outputs.push(out);
        guard::check_clock();
    }
    Ok(outputs)
}

/// The message of a jq error, bounded; string error values (`error("msg")`) without quotes.
fn error_message(e: &jaq_core::Error<Val>) -> String {
    let b = Bounded::format(MAX_MESSAGE, e);
    if !b.truncated
        && b.text.starts_with('"')
        && let Ok(s) = serde_json::from_str::<String>(&b.text)
    {
        return s;
    }
    b.text
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Builds the error for the earliest of `errors` (slice into `source`, message).
fn first_error<'s>(
    rewrite: &Rewrite<'_>,
    code: &'s str,
    errors: impl IntoIterator<Item = (&'s str, String)>,
) -> CompileError {
    errors
        .into_iter()
        .filter_map(|(part, message)| {
            let (line, column) = rewrite.position(code, part)?;
            Some(CompileError {
                line,
                column,
                message,
            })
        })
        .min_by_key(|e| (e.line, e.column))
        .unwrap_or_else(|| CompileError {
            line: 1,
            column: 1,
            message: "invalid jq program".into(),
        })
}

/// Describes the token found at a parse error.
fn found(part: &str) -> String {
    let token: String = part
        .split_whitespace()
        .next()
        .unwrap_or("")
        .chars()
        .take(20)
        .collect();
    if token.is_empty() {
        "end of input".into()
    } else {
        format!("`{token}`")
    }
}

fn load_error<'s>(
    rewrite: &Rewrite<'_>,
    code: &'s str,
    errs: jaq_core::load::Errors<&'s str, ()>,
) -> CompileError {
    use jaq_core::load::Error;
    let errors = errs
        .into_iter()
        .flat_map(|(_file, e)| -> Vec<(&str, String)> {
            match e {
                Error::Io(errs) => errs
                    .into_iter()
                    .map(|(path, e)| (path, format!("cannot load module: {e}")))
                    .collect(),
                Error::Lex(errs) => errs
                    .into_iter()
                    .map(|(expect, part)| (part, format!("expected {}", expect.as_str())))
                    .collect(),
                Error::Parse(errs) => errs
                    .into_iter()
                    .map(|(expect, part)| {
                        let message =
                            format!("expected {}, found {}", expect.as_str(), found(part));
                        (part, message)
                    })
                    .collect(),
            }
        });
    first_error(rewrite, code, errors)
}

fn undefined_error<'s>(
    rewrite: &Rewrite<'_>,
    code: &'s str,
    errs: jaq_core::compile::Errors<&'s str, ()>,
) -> CompileError {
    use jaq_core::compile::Undefined;
    let errors = errs
        .into_iter()
        .flat_map(|(_file, errs)| errs)
        .map(|(name, undefined)| {
            let message = match undefined {
                Undefined::Filter(0) => format!("undefined filter `{name}`"),
                Undefined::Filter(arity) => format!("undefined filter `{name}/{arity}`"),
                other => format!("undefined {} `{name}`", other.as_str()),
            };
            (name, message)
        });
    first_error(rewrite, code, errors)
}

#[cfg(test)]
mod tests;
