//! Cooperative interruption of a running jaq evaluation.
//!
//! jaq calls [`jaq_core::data::HasLut::lut`] every time it starts evaluating a term (see
//! [`crate::natives::Guarded`]), and our replacement of the native `range` calls [`tick`] for
//! every number it yields. [`tick`] checks the deadline (every [`CLOCK_EVERY`] ticks) and the
//! remaining stack (every tick) of the evaluation running on this thread, and if either is
//! exhausted it unwinds the evaluation with [`std::panic::resume_unwind`] carrying an [`Abort`].
//! jq code cannot catch that (`try`, `?` and `//` only see jaq errors), the panic hook is not
//! invoked (nothing is printed), and [`crate::Program::run`] turns it into a
//! [`crate::RunError`] with `catch_unwind`.

use std::cell::Cell;
use std::time::Instant;

/// Read the clock once every this many ticks (a power of two).
const CLOCK_EVERY: u32 = 64;

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static MIN_STACK: Cell<usize> = const { Cell::new(0) };
    static TICKS: Cell<u32> = const { Cell::new(0) };
}

/// Why an evaluation was unwound. Carried as the panic payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Abort {
    /// The deadline passed.
    Timeout,
    /// Less than the configured minimum of stack was left (runaway recursion).
    Stack,
}

/// Bounds of the evaluation running on this thread; restores the previous ones when dropped.
pub(crate) struct Scope {
    deadline: Option<Instant>,
    min_stack: usize,
}

impl Scope {
    /// Install `deadline` and `min_stack` (bytes of stack that must remain) for this thread.
    pub(crate) fn enter(deadline: Instant, min_stack: usize) -> Self {
        let scope = Self {
            deadline: DEADLINE.replace(Some(deadline)),
            min_stack: MIN_STACK.replace(min_stack),
        };
        TICKS.set(0);
        scope
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        DEADLINE.set(self.deadline);
        MIN_STACK.set(self.min_stack);
    }
}

/// One unit of evaluation work: unwind with an [`Abort`] if the deadline passed or the stack
/// is nearly exhausted.
#[inline]
pub(crate) fn tick() {
    let min_stack = MIN_STACK.get();
    if min_stack > 0
        && let Some(remaining) = stacker::remaining_stack()
        && remaining < min_stack
    {
        abort(Abort::Stack);
    }
    let n = TICKS.get().wrapping_add(1);
    TICKS.set(n);
    if n.is_multiple_of(CLOCK_EVERY) {
        check_clock();
    }
}

/// Unwind with [`Abort::Timeout`] if the deadline of this thread's evaluation has passed.
pub(crate) fn check_clock() {
    if let Some(deadline) = DEADLINE.get()
        && Instant::now() >= deadline
    {
        abort(Abort::Timeout);
    }
}

fn abort(why: Abort) {
    // Never start a second unwind while one is in progress (that would abort the process);
    // jaq does not evaluate terms in destructors, so this is only belt and braces.
    if !std::thread::panicking() {
        std::panic::resume_unwind(Box::new(why));
    }
}
