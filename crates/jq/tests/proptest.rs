//! Property tests: arbitrary inputs through fixed filters, and arbitrary filters from a small
//! grammar, never panic and always return within the time bound.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{Map, Value};
use switchboard_jq::{Limits, Program};

const FIXED: &[&str] = &[
    ".",
    ".a",
    ".a.b.c",
    ".[0]",
    ".[]?",
    "..",
    "[paths]",
    "tojson | fromjson",
    "tostring",
    "keys?",
    "to_entries?",
    "length",
    "map(.)?",
    "[.[]? | select(type == \"string\")]",
    "\"v=\\(.)\"",
    ".a // .b // \"none\"",
    "if type == \"object\" then has(\"a\") else false end",
    "walk(if type == \"string\" then ascii_downcase else . end)",
    "[.. | numbers] | add",
    "try (.[] | test(\"a+\")) catch false",
    "tojson | test(\"[0-9]\")",
    "[.. | strings] | join(\",\")",
    "contains(.)",
    ". == .",
    "[.[]?] | sort",
    "group_by(type)?",
    "@base64",
    "to_entries? | from_entries",
    "[splits(\",\")?]",
    "reduce .[]? as $x (0; . + 1)",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z,\"\\\\\u{e9}\u{1F600}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-c]{1,2}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Filters from a small grammar, including recursion and generators.
fn filter() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(".".to_string()),
        Just(".a".to_string()),
        Just(".[]?".to_string()),
        Just("..".to_string()),
        Just("1".to_string()),
        Just("\"s\"".to_string()),
        Just("null".to_string()),
        Just("empty".to_string()),
        Just("range(5)".to_string()),
        Just("range(1e9)".to_string()),
        Just("repeat(1)".to_string()),
        Just("$ENV".to_string()),
        Just("now".to_string()),
        Just("input".to_string()),
        Just("error(\"e\")".to_string()),
    ];
    leaf.prop_recursive(5, 40, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} | {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}, {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} + {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} // {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} * {b}")),
            inner.clone().prop_map(|a| format!("[{a}]")),
            inner.clone().prop_map(|a| format!("{{k: {a}}}")),
            inner.clone().prop_map(|a| format!("try {a}")),
            inner.clone().prop_map(|a| format!("select({a})")),
            inner.clone().prop_map(|a| format!("map({a})")),
            inner.clone().prop_map(|a| format!("\"x\\({a})\"")),
            inner.clone().prop_map(|a| format!("first({a})")),
            inner.clone().prop_map(|a| format!("[limit(3; {a})]")),
            inner.clone().prop_map(|a| format!("def f: {a} | f; f")),
            inner.clone().prop_map(|a| format!("def f: [{a}, f]; f")),
            inner
                .clone()
                .prop_map(|a| format!("reduce {a} as $x (0; . + 1)")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("if {a} then {b} else {c} end")),
            inner
                .clone()
                .prop_map(|a| format!("{a} | tojson | fromjson")),
            // sometimes syntactically broken
            inner.prop_map(|a| format!("{a} |")),
        ]
    })
}

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_millis(50),
        ..Limits::default()
    }
}

/// Generous: the bound is the timeout plus the time to unwind and drop what was built, on a
/// machine that may be running other builds (CI once measured 1.1 s for a 50 ms timeout at a
/// load of 11 on 2 cores). What this catches is an evaluation that does not stop.
const SLACK: Duration = Duration::from_millis(4000);

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn fixed_filters_on_arbitrary_input(input in json_value()) {
        let limits = limits();
        for source in FIXED {
            let program = Program::compile(source).unwrap();
            let started = Instant::now();
            let _ = program.run(&input, &limits);
            let _ = program.run_one(&input, &limits);
            let _ = program.run_bool(&input, &limits);
            prop_assert!(started.elapsed() < 3 * limits.timeout + SLACK, "{source}");
        }
    }

    #[test]
    fn arbitrary_filters(source in filter(), input in json_value()) {
        let limits = limits();
        if let Ok(program) = Program::compile(&source) {
            let started = Instant::now();
            let result = program.run(&input, &limits);
            let elapsed = started.elapsed();
            prop_assert!(elapsed < limits.timeout + SLACK, "{source}: {elapsed:?} {result:?}");
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_compiler(source in "[.\\[\\]{}()|,:;$a-z0-9\" ?/+*-]{0,30}") {
        if let Err(e) = Program::compile(&source) {
            prop_assert!(e.line >= 1 && e.column >= 1);
            prop_assert!(e.column <= source.chars().count() + 1);
        }
    }
}
