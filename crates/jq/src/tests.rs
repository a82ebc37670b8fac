#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;

fn program(filter: &str) -> Program {
    Program::compile(filter).unwrap_or_else(|e| panic!("{filter}: {e}"))
}

fn run(filter: &str, input: Value) -> Result<Vec<Value>, RunError> {
    program(filter).run(&input, &Limits::default())
}

fn one(filter: &str, input: Value) -> Value {
    program(filter)
        .run_one(&input, &Limits::default())
        .unwrap_or_else(|e| panic!("{filter}: {e}"))
}

fn compile_err(filter: &str) -> CompileError {
    Program::compile(filter).unwrap_err()
}

fn limits(timeout_ms: u64) -> Limits {
    Limits {
        timeout: Duration::from_millis(timeout_ms),
        ..Limits::default()
    }
}

/// Runs `filter` and requires a timeout reported within `timeout` plus a generous slack.
fn assert_times_out(filter: &str, input: Value) {
    let limits = limits(100);
    let started = Instant::now();
    let result = program(filter).run(&input, &limits);
    let elapsed = started.elapsed();
    assert_eq!(result, Err(RunError::Timeout(limits.timeout)), "{filter}");
    assert!(
        elapsed < Duration::from_millis(1500),
        "{filter} took {elapsed:?}"
    );
}

#[test]
fn program_is_send_sync_clone_debug() {
    fn check<T: Send + Sync + Clone + fmt::Debug + 'static>() {}
    check::<Program>();
    let p = program(".a");
    assert_eq!(p.source(), ".a");
    assert!(format!("{p:?}").contains(".a"));
}

#[test]
fn compile_errors_have_positions() {
    let e = compile_err(". | foo");
    assert_eq!((e.line, e.column), (1, 5));
    assert_eq!(e.message, "undefined filter `foo`");
    assert_eq!(
        e.to_string(),
        "jq error at line 1, column 5: undefined filter `foo`"
    );

    let e = compile_err(".a |\n  .b | bar(1)");
    assert_eq!((e.line, e.column), (2, 8));
    assert_eq!(e.message, "undefined filter `bar/1`");

    let e = compile_err("1 +");
    assert_eq!((e.line, e.column), (1, 4));
    assert_eq!(e.message, "expected term, found end of input");

    let e = compile_err("if . then 1");
    assert!(e.message.contains("else or end"), "{e}");

    let e = compile_err("(1;2)");
    assert_eq!((e.line, e.column), (1, 3));
    assert!(e.message.contains("found `;`"), "{e}");

    let e = compile_err("\"abc");
    assert!(e.message.contains("closing quote"), "{e}");

    let e = compile_err(". as [$a] | $b");
    assert_eq!((e.line, e.column), (1, 13));
    assert_eq!(e.message, "undefined variable `$b`");

    // Positions after a `..` (which is rewritten internally) are still the user's.
    let e = compile_err("[..] | ..\n| nope");
    assert_eq!((e.line, e.column), (2, 3));

    // Non-ASCII text before the error counts in characters.
    let e = compile_err("\"é\" | nope");
    assert_eq!((e.line, e.column), (1, 7));
}

#[test]
fn no_modules() {
    let e = compile_err("import \"foo\" as f; .");
    assert!(e.message.contains("cannot load module"), "{e}");
    assert!(Program::compile("include \"foo\"; .").is_err());
    assert!(Program::compile("input").is_err());
    assert!(Program::compile("inputs").is_err());
}

#[test]
fn common_filters() {
    let input = json!({
        "event": "pull_request",
        "body": {
            "number": 42,
            "title": "Fix Bug",
            "labels": [{"name": "bug"}, {"name": "urgent"}, {"name": "docs"}],
            "draft": false,
            "tags": "a,b,c",
            "ref": "refs/heads/main"
        }
    });
    let cases: &[(&str, Value)] = &[
        (".event", json!("pull_request")),
        (
            "[.body.labels[] | select(.name != \"docs\") | .name]",
            json!(["bug", "urgent"]),
        ),
        (
            ".body.labels | map(.name | ascii_upcase)",
            json!(["BUG", "URGENT", "DOCS"]),
        ),
        (
            "\"#\\(.body.number): \\(.body.title | ascii_downcase)\"",
            json!("#42: fix bug"),
        ),
        (".missing // \"default\"", json!("default")),
        (".body.draft // \"default\"", json!("default")),
        (".body.title | test(\"^fix\"; \"i\")", json!(true)),
        (".body.title | test(\"^fix\")", json!(false)),
        (".body.number | tostring", json!("42")),
        (".body.labels[0] | tojson", json!("{\"name\":\"bug\"}")),
        ("\"[1,2]\" | fromjson", json!([1, 2])),
        (".event | @base64", json!("cHVsbF9yZXF1ZXN0")),
        (".event | @base64 | @base64d", json!("pull_request")),
        (".body | has(\"title\")", json!(true)),
        (".body.labels[0] | keys", json!(["name"])),
        (
            ".body.labels[0] | to_entries",
            json!([{"key": "name", "value": "bug"}]),
        ),
        (".body.labels | length", json!(3)),
        (
            "if .body.draft then \"draft\" else \"ready\" end",
            json!("ready"),
        ),
        ("reduce .body.labels[] as $l (0; . + 1)", json!(3)),
        (".body.ref | ltrimstr(\"refs/heads/\")", json!("main")),
        (".body.tags | split(\",\")", json!(["a", "b", "c"])),
        (".body.tags | split(\",\") | join(\"-\")", json!("a-b-c")),
        ("0 | todate", json!("1970-01-01T00:00:00Z")),
        ("now | type", json!("number")),
        ("[.. | numbers]", json!([42])),
        ("[paths(type == \"number\")]", json!([["body", "number"]])),
        (".body.labels | any(.name == \"bug\")", json!(true)),
        ("[.body.labels[].name] | contains([\"bug\"])", json!(true)),
        (".body.tags | indices(\",\")", json!([1, 3])),
        (
            "{a: 1} | walk(if type == \"number\" then . + 1 else . end)",
            json!({"a": 2}),
        ),
        ("[limit(3; repeat(1))]", json!([1, 1, 1])),
        ("[range(3)]", json!([0, 1, 2])),
        ("[range(0; 10; 3)]", json!([0, 3, 6, 9])),
        ("{n: .body.number} | .n += 1", json!({"n": 43})),
        ("[infinite, nan, -infinite]", json!([null, null, null])),
        ("1.5", json!(1.5)),
        ("18446744073709551615", json!(18446744073709551615_u64)),
        ("$ENV | length", json!(0)),
    ];
    for (filter, want) in cases {
        assert_eq!(&one(filter, input.clone()), want, "{filter}");
    }
}

#[test]
fn multiple_outputs_and_empty() {
    assert_eq!(
        run(".[]", json!([1, 2, 3])).unwrap(),
        vec![json!(1), json!(2), json!(3)]
    );
    assert_eq!(run("empty", json!(null)).unwrap(), Vec::<Value>::new());
}

#[test]
fn run_one_requires_exactly_one_output() {
    let limits = Limits::default();
    let e = program(".[]").run_one(&json!([1, 2]), &limits).unwrap_err();
    assert_eq!(e, RunError::NotOneOutput { count: 2 });
    assert_eq!(
        e.to_string(),
        "jq filter must produce exactly one output, but produced 2"
    );
    let e = program("empty").run_one(&json!(1), &limits).unwrap_err();
    assert_eq!(e, RunError::NotOneOutput { count: 0 });
}

#[test]
fn run_bool_requires_one_boolean() {
    let limits = Limits::default();
    let p = program(".a == 1");
    assert!(p.run_bool(&json!({"a": 1}), &limits).unwrap());
    assert!(!p.run_bool(&json!({"a": 2}), &limits).unwrap());

    let e = program(".a")
        .run_bool(&json!({"a": {"b": "c"}}), &limits)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "filter must yield true or false, got {\"b\":\"c\"}"
    );
    let e = program("empty").run_bool(&json!(1), &limits).unwrap_err();
    assert_eq!(
        e.to_string(),
        "filter must yield true or false, got no output"
    );
    let e = program("true, false")
        .run_bool(&json!(1), &limits)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "filter must yield true or false, got 2 outputs"
    );

    // Long values are cut.
    let e = program("\"x\" * 1000")
        .run_bool(&json!(1), &limits)
        .unwrap_err();
    let RunError::NotBoolean { got } = e else {
        panic!("{e:?}")
    };
    assert!(got.len() < 120 && got.ends_with('…'), "{got}");
}

#[test]
fn runtime_errors() {
    let e = run(".a.b", json!("str")).unwrap_err();
    assert_eq!(
        e,
        RunError::Runtime("cannot index \"str\" with \"a\"".into())
    );
    assert_eq!(
        e.to_string(),
        "jq filter failed: cannot index \"str\" with \"a\""
    );
    assert_eq!(
        run("error(\"boom\")", json!(null)).unwrap_err(),
        RunError::Runtime("boom".into())
    );
    assert_eq!(
        run("error({a: 1})", json!(null)).unwrap_err(),
        RunError::Runtime("{\"a\":1}".into())
    );
    // Errors can be caught by the filter.
    assert_eq!(one("try error(\"x\") catch .", json!(null)), json!("x"));
    assert_eq!(one("[.[] | .a?]", json!([1, {"a": 2}])), json!([2]));
    // Messages quoting huge values are cut.
    let RunError::Runtime(msg) = run("[range(100000)] | .a", json!(null)).unwrap_err() else {
        panic!()
    };
    assert!(msg.len() < 600, "{}", msg.len());
    // Output keys must be strings.
    assert!(matches!(
        run("{(1): 2}", json!(null)),
        Err(RunError::Runtime(_))
    ));
}

#[test]
fn unsupported_builtins_fail_cleanly() {
    for f in ["halt", "halt_error", "localtime", "strflocaltime(\"%H\")"] {
        assert!(
            matches!(run(f, json!(0)), Err(RunError::Runtime(m)) if m.contains("not supported")),
            "{f}"
        );
    }
    // debug and stderr pass values through without printing
    assert_eq!(one("debug", json!(1)), json!(1));
    assert_eq!(one("1 | stderr", json!(1)), json!(1));
}

/// The test process has an environment (`PATH` at least); filters must see none of it.
#[test]
fn environment_is_not_visible() {
    let (name, value) = std::env::vars()
        .find(|(name, value)| {
            value.len() >= 4 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .expect("the test process has an environment variable");
    assert_eq!(one("$ENV", json!(null)), json!({}));
    assert_eq!(one("env", json!(null)), json!({}));
    assert_eq!(one(&format!("$ENV.{name}"), json!(null)), Value::Null);
    assert_eq!(one(&format!("env.{name}"), json!(null)), Value::Null);
    assert_eq!(
        one(&format!("$ENV | has(\"{name}\")"), json!(null)),
        json!(false)
    );
    let all = one("[$ENV, env] | tojson", json!(null));
    assert!(!all.as_str().unwrap().contains(&value));
}

#[test]
fn timeouts_stop_runaway_filters() {
    for filter in [
        "def f: f; f",
        "[range(1e12)] | length",
        "last(range(infinite))",
        "[repeat(1)]",
        "repeat(1) | select(false)",
        "until(false; .)",
        "[range(0; 1; 0)] | length",
        "def f: def g: g; g; f",
        "[limit(1e9; repeat(\"x\"))] | add | length",
        "reduce range(1e9) as $i (\"\"; . + \"x\") | length",
        "[range(1e9)] | sort | length",
        "try (def f: f; f) catch 1",
        "def f: (try error(\"x\") catch .) | f; f",
        "[.[]?] | until(false; .)",
        "0 | [recurse(. + 1)] | length",
        "\"x\" * 1000000 | indices(\"x\" * 500000) | length",
    ] {
        assert_times_out(filter, json!(null));
    }
}

#[test]
fn timeouts_on_deep_values() {
    // Deep values built within the time limit, then dropped while unwinding.
    assert_times_out("reduce range(1e9) as $i (null; [.])", json!(null));
    assert_times_out("reduce range(1e9) as $i (null; {a: .})", json!(null));
    // `..` (and `paths`) on a deep value is quadratic in jaq; ours ticks at every level, so
    // even `..` from every level (quadratic in any implementation) stops at the deadline.
    // (A single `[..]` on this value is linear and may well finish in time.)
    assert_times_out(
        "reduce range(20000) as $i (null; [.]) | [.. | [..] | length] | add",
        json!(null),
    );
    assert_times_out(
        "reduce range(20000) as $i (null; [.]) | [paths] | length",
        json!(null),
    );
}

#[test]
fn deep_values_within_the_time_limit_are_handled() {
    let limits = limits(4000);
    let p =
        program("reduce range(30000) as $i (null; [.]) | [tojson | length, . == ., contains(.)]");
    let out = p.run_one(&json!(null), &limits).unwrap();
    assert_eq!(out, json!([60004, true, true]));
    let e = program("reduce range(1000) as $i (null; [.])")
        .run(&json!(null), &limits)
        .unwrap_err();
    assert_eq!(
        e,
        RunError::OutputTooDeep {
            limit: MAX_OUTPUT_DEPTH
        }
    );
    // fromjson refuses deep input instead of recursing without bound
    let e = run("\"[\" * 1000000 | fromjson", json!(null)).unwrap_err();
    assert!(
        matches!(&e, RunError::Runtime(m) if m.contains("nested")),
        "{e}"
    );
    assert_eq!(one("\"[[1]]\" | fromjson", json!(null)), json!([[1]]));
}

#[test]
fn deep_recursion_is_an_error() {
    for filter in [
        "def f: 1 + f; f",
        "def f: [f]; f",
        "def f: {a: f}; f",
        "def f(x): x + f(x); f(1)",
        "def f($n): if $n == 0 then 0 else 1 + f($n - 1) end; f(1000000)",
    ] {
        let started = Instant::now();
        let result = program(filter).run(&json!(null), &limits(10_000));
        assert_eq!(result, Err(RunError::RecursionLimit), "{filter}");
        assert!(started.elapsed() < Duration::from_secs(2), "{filter}");
    }
    // Moderate recursion works.
    assert_eq!(
        one(
            "def f($n): if $n == 0 then 0 else 1 + f($n - 1) end; f(200)",
            json!(null)
        ),
        json!(200)
    );
    // Deep recursion on a small caller stack is fine too: runs use their own stack.
    let p = program("def f: 1 + f; f");
    let handle = std::thread::Builder::new()
        .stack_size(128 << 10)
        .spawn(move || p.run(&json!(null), &limits(10_000)))
        .unwrap();
    assert_eq!(handle.join().unwrap(), Err(RunError::RecursionLimit));
}

#[test]
fn output_bounds() {
    let small = Limits {
        max_output_bytes: 100,
        max_outputs: 3,
        ..Limits::default()
    };
    let p = program(".[]");
    assert_eq!(p.run(&json!([1, 2, 3]), &small).unwrap().len(), 3);
    let e = p.run(&json!([1, 2, 3, 4]), &small).unwrap_err();
    assert_eq!(e, RunError::TooManyOutputs { limit: 3 });
    assert_eq!(e.to_string(), "jq filter produced more than 3 outputs");

    // Exactly at the limit: "x" * 98 serializes to 100 bytes.
    assert!(program("\"x\" * 98").run(&json!(null), &small).is_ok());
    let e = program("\"x\" * 99").run(&json!(null), &small).unwrap_err();
    assert_eq!(e, RunError::OutputTooLarge { limit: 100 });
    assert_eq!(
        e.to_string(),
        "jq filter output exceeds the limit of 100 bytes"
    );
    // Escapes count as serialized.
    let e = program("\"\\n\" * 50")
        .run(&json!(null), &small)
        .unwrap_err();
    assert_eq!(e, RunError::OutputTooLarge { limit: 100 });
    // The limit is for all outputs together.
    let e = program("\"x\" * 40, \"y\" * 40, \"z\" * 40")
        .run(&json!(null), &small)
        .unwrap_err();
    assert_eq!(e, RunError::OutputTooLarge { limit: 100 });
    // Huge outputs are rejected quickly, infinite streams too.
    let e = run("[range(1e7)]", json!(null)).unwrap_err();
    assert!(
        matches!(e, RunError::OutputTooLarge { .. } | RunError::Timeout(_)),
        "{e:?}"
    );
    assert_eq!(
        run("repeat(1)", json!(null)).unwrap_err(),
        RunError::TooManyOutputs { limit: 100 }
    );
    assert_eq!(
        program("repeat(\"x\" * 1000)")
            .run(
                &json!(null),
                &Limits {
                    max_outputs: usize::MAX,
                    ..small
                }
            )
            .unwrap_err(),
        RunError::OutputTooLarge { limit: 100 }
    );
}

#[test]
fn error_messages_are_sentences() {
    assert_eq!(
        RunError::Timeout(Duration::from_millis(100)).to_string(),
        "jq filter did not finish within 100ms"
    );
    assert_eq!(
        RunError::RecursionLimit.to_string(),
        "jq filter recursed too deeply"
    );
}

#[test]
fn program_is_reusable_across_threads() {
    let p = program("{n: (.n + 1)}");
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let p = p.clone();
            std::thread::spawn(move || p.run_one(&json!({"n": i}), &Limits::default()))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap().unwrap(), json!({"n": i + 1}));
    }
}
