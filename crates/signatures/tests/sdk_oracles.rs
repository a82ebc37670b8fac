//! Cross-checks our schemes against the providers' **official Python SDKs**, in both directions.
//!
//! * The live tests (`*_matches_official_sdk`) generate randomized cases in Rust ([`CASES`] per
//!   scheme: realistic secrets, unicode and control-character bodies, timestamps around a frozen
//!   [`NOW`], several secrets for rotation, Twilio URLs with and without ports and query strings,
//!   repeated form keys) and send them, batched, to `tests/oracle/oracle.py`, which calls only the
//!   SDKs' own sign and verify functions with the SDK clock frozen at [`NOW`]. For every case:
//!   (a) what our sign helpers make, the SDK accepts; (b) what the SDK makes, our verifiers accept
//!   (and our deterministic signers reproduce it byte for byte); (c) a flipped body byte, a wrong
//!   secret or key and a stale timestamp are rejected by both sides.
//!   The SDKs come from `pip install -r .ci/requirements.txt`. Without `python3` or an SDK these
//!   tests print `SKIPPED <test>: …` to stderr and pass, unless `SWITCHBOARD_REQUIRE_PY_SDK` is set
//!   (as in CI), which makes them fail. The random seed changes on every run and is printed on
//!   failure; `SWITCHBOARD_ORACLE_SEED=<seed>` replays a run.
//! * [`committed_sdk_vectors_verify`] checks every SDK-made vector of
//!   `tests/data/sdk_generated.json` with our verifiers, without Python, so a plain `cargo test`
//!   still holds every scheme to SDK output. Regenerate that file with
//!   `python3 crates/signatures/tests/oracle/generate.py > crates/signatures/tests/data/sdk_generated.json`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use switchboard_signatures::standard_webhooks::{self as sw, SigningKey};
use switchboard_signatures::{SignatureError, header_list, sendgrid, slack, stripe, twilio};

/// The frozen clock of the live tests, in unix seconds.
const NOW: i64 = 1_750_000_000;
/// Randomized cases per scheme in the live tests.
const CASES: usize = 50;
/// The providers' window, in seconds.
const WINDOW: i64 = 300;
const ORACLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/oracle.py");
const SDK_GENERATED: &str = include_str!("data/sdk_generated.json");
const INSTALL: &str = "pip install -r .ci/requirements.txt";

// ---------------------------------------------------------------------------------------------
// Randomness (SplitMix64: no extra dev-dependency, reproducible from one seed).

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % u64::try_from(n).expect("usize fits u64"))
            .expect("below n")
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = u64::try_from(hi - lo + 1).expect("lo <= hi");
        lo + i64::try_from(self.next_u64() % span).expect("within span")
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64().to_le_bytes()[0]).collect()
    }

    fn from(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| char::from(*self.pick(alphabet))).collect()
    }

    fn alnum(&mut self, n: usize) -> String {
        self.from(
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
            n,
        )
    }

    fn hex(&mut self, n: usize) -> String {
        self.from(b"0123456789abcdef", n)
    }
}

/// The run's base seed (from `SWITCHBOARD_ORACLE_SEED`, else the clock) and a generator for
/// `test`, so that every test draws its own cases from the one printed seed.
fn seeded(test: &str) -> (u64, Rng) {
    let base = match std::env::var("SWITCHBOARD_ORACLE_SEED") {
        Ok(seed) => seed
            .parse()
            .expect("SWITCHBOARD_ORACLE_SEED is an unsigned integer"),
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970");
            now.as_secs() ^ u64::from(now.subsec_nanos()).rotate_left(32)
        }
    };
    let mixed = test.bytes().fold(base ^ 0xcbf2_9ce4_8422_2325, |acc, b| {
        (acc ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (base, Rng(mixed))
}

const UNICODE: &[&str] = &[
    "é",
    "ü",
    "ß",
    "ñ",
    "日本",
    "語",
    "✓",
    "€",
    "😀",
    "🦀",
    "👩\u{200d}💻",
    "e\u{301}",
    "العربية",
    "עברית",
    "\u{2028}",
    "\u{feff}",
    "\u{fffd}",
    "\u{10ffff}",
    "Ω",
    "ﬁ",
];
const CONTROL: &[&str] = &[
    "\t", "\n", "\r\n", "\r", "\u{0}", "\u{1b}", "\u{7f}", "\u{85}",
];
const PUNCT: &[&str] = &[
    "&", "=", "+", "%", "%20", "%zz", "#", "?", "/", "\\", "\"", "'", "<", ">", ";", ",", ".", ":",
    "{", "}", "[", "]", " ", "  ",
];

/// Up to `max_pieces` pieces of words, unicode, punctuation and (if `control`) control characters.
fn text(rng: &mut Rng, max_pieces: usize, control: bool) -> String {
    let pieces = rng.below(max_pieces + 1);
    let mut out = String::new();
    for _ in 0..pieces {
        match rng.below(10) {
            0..=4 => {
                let len = 1 + rng.below(8);
                out.push_str(&rng.alnum(len));
            }
            5 | 6 => out.push_str(rng.pick_str(UNICODE)),
            7 if control => out.push_str(rng.pick_str(CONTROL)),
            _ => out.push_str(rng.pick_str(PUNCT)),
        }
    }
    out
}

fn json_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::String(text(rng, 6, true)),
        1 => json!(rng.range(-(1 << 53), 1 << 53)),
        2 => {
            json!(f64::from(i32::try_from(rng.range(-1_000_000, 1_000_000)).expect("i32")) / 100.0)
        }
        3 => match rng.below(3) {
            0 => Value::Bool(true),
            1 => Value::Bool(false),
            _ => Value::Null,
        },
        4 => json!(format!("evt_{}", rng.alnum(24))),
        5 => json_object(rng, depth - 1),
        _ => {
            let len = rng.below(4);
            Value::Array((0..len).map(|_| json_value(rng, depth - 1)).collect())
        }
    }
}

fn json_object(rng: &mut Rng, depth: usize) -> Value {
    const KEYS: &[&str] = &[
        "id", "type", "data", "amount", "object", "created", "note", "email",
    ];
    let mut map = Map::new();
    for _ in 0..1 + rng.below(5) {
        let key = if rng.one_in(2) {
            (*rng.pick(KEYS)).to_owned()
        } else {
            text(rng, 3, true)
        };
        map.insert(key, json_value(rng, depth));
    }
    Value::Object(map)
}

/// Replaces every non-ASCII character with `\uXXXX` escapes (valid JSON: such characters only
/// occur inside strings), as `json.dumps` does by default.
fn ascii_escaped(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut units = [0u16; 2];
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// A random request body: JSON in several shapes, raw text with control characters and NUL,
/// form-encoded, a BOM, a large body, or (rarely) empty.
fn body(rng: &mut Rng) -> String {
    let compact =
        |rng: &mut Rng| serde_json::to_string(&json_object(rng, 3)).expect("JSON serializes");
    match rng.below(14) {
        0..=3 => compact(rng),
        4 => {
            let pretty =
                serde_json::to_string_pretty(&json_object(rng, 2)).expect("JSON serializes");
            format!("{pretty}{}", rng.pick(&["", "\n", "\r\n"]))
        }
        5 => ascii_escaped(&compact(rng)),
        6 => {
            let events: Vec<Value> = (0..1 + rng.below(3))
                .map(|_| {
                    json!({
                        "email": format!("{}@example.com", rng.alnum(6)),
                        "event": "processed",
                        "sg_event_id": rng.alnum(22),
                        "timestamp": NOW,
                        "note": text(rng, 4, true),
                    })
                })
                .collect();
            format!(
                "{}\r\n",
                serde_json::to_string(&events).expect("JSON serializes")
            )
        }
        7 | 8 => text(rng, 30, true),
        9 => format!("\u{feff}{}", compact(rng)),
        10 => {
            let params = form_params(rng);
            form_wire(rng, &params)
        }
        11 => {
            let long: String = (0..200 + rng.below(400))
                .map(|_| text(rng, 4, true))
                .collect();
            serde_json::to_string(&json!({"id": rng.alnum(10), "blob": long}))
                .expect("JSON serializes")
        }
        12 => compact(rng).replace(',', ", "),
        _ => (*rng.pick(&["", " ", "\n"])).to_owned(),
    }
}

/// Flips the low bit of one random ASCII byte (so the body stays UTF-8 for the SDKs), or
/// appends one byte to a body without ASCII.
fn flip_byte(rng: &mut Rng, body: &str) -> String {
    let ascii: Vec<usize> = body
        .bytes()
        .enumerate()
        .filter(|(_, b)| b.is_ascii())
        .map(|(i, _)| i)
        .collect();
    if ascii.is_empty() {
        return format!("{body}x");
    }
    let mut bytes = body.as_bytes().to_vec();
    bytes[*rng.pick(&ascii)] ^= 0x01;
    String::from_utf8(bytes).expect("ASCII stays ASCII")
}

// ---------------------------------------------------------------------------------------------
// Form encoding with the variety senders use (`+` or `%20`, either hex case, optional escapes).

const TWILIO_NAMES: &[&str] = &[
    "AccountSid",
    "ApiVersion",
    "Body",
    "CallSid",
    "Called",
    "Caller",
    "Digits",
    "From",
    "FromCity",
    "MediaUrl0",
    "MessageSid",
    "NumMedia",
    "SmsStatus",
    "To",
    "callsid",
    "_private",
    "a b",
    "Ünïcode",
    "名前",
    "x+y",
    "a=b",
    "a&b",
    "Z",
];

/// Escapes that are not UTF-8 (or not escapes at all) as sent, and as form parsers decode them
/// (Python's `parse_qsl` and `form_urlencoded` both turn invalid sequences into U+FFFD).
const JUNK_ESCAPES: &[(&str, &str)] = &[
    ("%FF%FE", "\u{fffd}\u{fffd}"),
    ("%C3", "\u{fffd}"),
    ("%E6%97x", "\u{fffd}x"),
    ("%2", "%2"),
    ("%zz", "%zz"),
    ("%ED%A0%80", "\u{fffd}\u{fffd}\u{fffd}"),
    ("%C0%80", "\u{fffd}\u{fffd}"),
    ("%F4%90%80%80", "\u{fffd}\u{fffd}\u{fffd}\u{fffd}"),
    ("%F0%9F%98", "\u{fffd}"),
];

fn form_value(rng: &mut Rng) -> String {
    match rng.below(7) {
        0 => format!("+1{}", rng.from(b"0123456789", 10)),
        1 => format!("CA{}", rng.hex(32)),
        2 => String::new(),
        3 | 4 => text(rng, 6, true),
        5 => (*rng.pick(&[
            "Hello world",
            "a+b",
            "100%",
            "x=y&z",
            "línea\nnueva",
            "😀",
            "  spaced  ",
        ]))
        .to_owned(),
        _ => {
            let len = 1 + rng.below(12);
            rng.alnum(len)
        }
    }
}

/// 0..=8 pairs, with repeated keys (same or different values).
fn form_params(rng: &mut Rng) -> Vec<(String, String)> {
    let mut params = Vec::new();
    for _ in 0..rng.below(9) {
        let name = (*rng.pick(TWILIO_NAMES)).to_owned();
        let value = form_value(rng);
        if rng.one_in(3) {
            let again = if rng.one_in(2) {
                value.clone()
            } else {
                form_value(rng)
            };
            params.push((name.clone(), again));
        }
        params.push((name, value));
    }
    params
}

fn form_encode(rng: &mut Rng, s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if !c.is_ascii() && rng.one_in(8) {
            out.push(c); // raw UTF-8, which parsers accept too
            continue;
        }
        let mut buf = [0u8; 4];
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            let literal = match b {
                b' ' => {
                    out.push_str(if rng.one_in(4) { "%20" } else { "+" });
                    continue;
                }
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    !rng.one_in(10)
                }
                b'~' | b'!' | b'(' | b')' | b'\'' | b':' | b'/' | b'@' | b',' | b';' | b'$' => {
                    rng.one_in(2)
                }
                _ => false,
            };
            if literal {
                out.push(char::from(b));
            } else if rng.one_in(3) {
                out.push_str(&format!("%{b:02x}"));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

fn form_wire(rng: &mut Rng, params: &[(String, String)]) -> String {
    let mut pairs: Vec<String> = Vec::new();
    for (name, value) in params {
        let name = form_encode(rng, name);
        if value.is_empty() && rng.one_in(3) {
            pairs.push(name); // `name` alone: a blank value
        } else {
            pairs.push(format!("{name}={}", form_encode(rng, value)));
        }
        if rng.one_in(12) {
            pairs.push(String::new()); // `&&`: skipped by parsers
        }
    }
    pairs.join("&")
}

// ---------------------------------------------------------------------------------------------
// Running the oracle.

#[derive(Default)]
struct Batch {
    requests: Vec<Value>,
}

impl Batch {
    fn push(&mut self, request: Value) -> usize {
        self.requests.push(request);
        self.requests.len() - 1
    }
}

/// Runs `oracle.py` once over all `requests`; `Err` names what is missing (python3 or an SDK).
fn run_oracle(requests: &[Value]) -> Result<Vec<Value>, String> {
    let input = serde_json::to_vec(requests).expect("requests serialize");
    let spawned = Command::new("python3")
        .arg(ORACLE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err("python3 is not on PATH".to_owned());
        }
        Err(err) => panic!("cannot start python3 {ORACLE}: {err}"),
    };
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("oracle.py runs");
    let written = writer.join().expect("stdin writer thread");
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.code() == Some(3) {
        let answer: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        return Err(format!(
            "Python module `{}` is not installed ({})",
            answer["missing_module"].as_str().unwrap_or("?"),
            answer["error"].as_str().unwrap_or("?"),
        ));
    }
    assert!(
        output.status.success(),
        "oracle.py failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    written.expect("requests written to oracle.py");
    let answers: Vec<Value> =
        serde_json::from_str(&stdout).expect("oracle.py answers with a JSON list");
    assert_eq!(answers.len(), requests.len(), "one answer per request");
    for (request, answer) in requests.iter().zip(&answers) {
        assert!(
            answer["ok"] == true,
            "oracle.py could not answer {request}: {answer}"
        );
    }
    Ok(answers)
}

/// The oracle's answers, or `None` after printing `SKIPPED <test>` when python3 or an SDK is
/// missing. With `SWITCHBOARD_REQUIRE_PY_SDK` set, a missing SDK fails the test instead.
fn oracle_or_skip(test: &str, requests: &[Value]) -> Option<Vec<Value>> {
    match run_oracle(requests) {
        Ok(answers) => Some(answers),
        Err(reason) => {
            assert!(
                std::env::var_os("SWITCHBOARD_REQUIRE_PY_SDK").is_none(),
                "{test}: {reason}. SWITCHBOARD_REQUIRE_PY_SDK is set, so this fails instead of \
                 skipping: {INSTALL}"
            );
            // Straight to the process's stderr (not the captured `eprintln!`), so that the line
            // shows in the `cargo test` log that CI greps.
            let mut stderr = std::io::stderr().lock();
            // Nothing useful can be done if stderr itself is gone.
            let _ = writeln!(stderr, "SKIPPED {test}: {INSTALL}");
            let _ = writeln!(stderr, "  ({reason})");
            None
        }
    }
}

/// Collects every mismatch of a run, then fails once with all of them and the seed.
struct Report {
    test: &'static str,
    seed: u64,
    checks: usize,
    failures: Vec<String>,
}

impl Report {
    fn new(test: &'static str, seed: u64) -> Self {
        Self {
            test,
            seed,
            checks: 0,
            failures: Vec::new(),
        }
    }

    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checks += 1;
        if !ok {
            self.failures.push(what());
        }
    }

    /// The SDK's verdict in `answer` must be `want`.
    fn sdk(&mut self, answer: &Value, want: bool, what: impl FnOnce() -> String) {
        let valid = answer["valid"]
            .as_bool()
            .expect("a verify answer has `valid`");
        self.check(valid == want, || {
            format!(
                "SDK said valid={valid} (raised {}), expected {want}: {}",
                answer["raised"],
                what()
            )
        });
    }

    fn accepts(&mut self, result: Result<(), SignatureError>, what: impl FnOnce() -> String) {
        self.check(result.is_ok(), || {
            format!("Rust rejected ({result:?}), SDK accepts: {}", what())
        });
    }

    fn rejects(
        &mut self,
        result: Result<(), SignatureError>,
        expected: impl Fn(&SignatureError) -> bool,
        what: impl FnOnce() -> String,
    ) {
        let ok = matches!(&result, Err(err) if expected(err));
        self.check(ok, || {
            format!(
                "Rust gave {result:?} instead of the expected rejection: {}",
                what()
            )
        });
    }

    fn finish(self) {
        let shown: Vec<&str> = self.failures.iter().take(25).map(String::as_str).collect();
        assert!(
            self.failures.is_empty(),
            "{}: {} of {} checks disagree with the official SDK \
             (seed {}; replay with SWITCHBOARD_ORACLE_SEED={}):\n- {}",
            self.test,
            self.failures.len(),
            self.checks,
            self.seed,
            self.seed,
            shown.join("\n- ")
        );
    }
}

fn str_of<'a>(answer: &'a Value, field: &str) -> &'a str {
    answer[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is not a string in {answer}"))
}

fn no_match(err: &SignatureError) -> bool {
    *err == SignatureError::NoMatch
}

fn stale(err: &SignatureError) -> bool {
    matches!(err, SignatureError::TimestampOutOfTolerance { .. })
}

fn any_error(_: &SignatureError) -> bool {
    true
}

/// A timestamp offset around [`NOW`] inside the window, hitting both edges now and then.
fn in_window(rng: &mut Rng, i: usize) -> i64 {
    match i {
        0 => -WINDOW,
        1 => WINDOW,
        2 => 0,
        _ => rng.range(-WINDOW, WINDOW),
    }
}

/// A timestamp offset just or far outside the window, in either direction.
fn out_of_window(rng: &mut Rng, i: usize, past_only: bool) -> i64 {
    let magnitude = if i < 4 {
        WINDOW + 1
    } else {
        rng.range(WINDOW + 1, 10_000_000)
    };
    if past_only || i.is_multiple_of(2) {
        -magnitude
    } else {
        magnitude
    }
}

// ---------------------------------------------------------------------------------------------
// Stripe

#[derive(Debug)]
struct StripeCase {
    secrets: Vec<String>,
    timestamp: i64,
    body: String,
    tampered: String,
    wrong: String,
    stale: i64,
}

fn stripe_secret(rng: &mut Rng) -> String {
    if rng.one_in(2) {
        format!("whsec_{}", rng.alnum(32))
    } else {
        format!("whsec_{}", rng.hex(64))
    }
}

#[test]
fn stripe_matches_official_sdk() {
    const TEST: &str = "stripe_matches_official_sdk";
    let (seed, mut rng) = seeded(TEST);
    let rng = &mut rng;
    let cases: Vec<StripeCase> = (0..CASES)
        .map(|i| {
            // Stripe rejects only old timestamps: future ones are accepted by both sides.
            let offset = if i == 3 || rng.one_in(6) {
                rng.range(WINDOW + 1, 1_000_000)
            } else {
                in_window(rng, i)
            };
            let body = body(rng);
            StripeCase {
                secrets: (0..1 + rng.below(3)).map(|_| stripe_secret(rng)).collect(),
                timestamp: NOW + offset,
                tampered: flip_byte(rng, &body),
                body,
                wrong: stripe_secret(rng),
                stale: NOW + out_of_window(rng, i, true),
            }
        })
        .collect();

    let verify = |secret: &str, header: &str, body: &str| {
        json!({"scheme": "stripe", "op": "verify", "secret": secret, "header": header,
               "body": body, "now": NOW})
    };
    let mut batch = Batch::default();
    let mut plan = Vec::new();
    for case in &cases {
        let ours = stripe::sign(&case.secrets, case.timestamp, case.body.as_bytes());
        let stale = stripe::sign(&case.secrets, case.stale, case.body.as_bytes());
        let accepted: Vec<usize> = case
            .secrets
            .iter()
            .map(|secret| batch.push(verify(secret, &ours, &case.body)))
            .collect();
        let sign = batch.push(
            json!({"scheme": "stripe", "op": "sign", "secrets": case.secrets,
                                     "timestamp": case.timestamp, "body": case.body}),
        );
        let tampered = batch.push(verify(&case.secrets[0], &ours, &case.tampered));
        let wrong = batch.push(verify(&case.wrong, &ours, &case.body));
        let stale_at = batch.push(verify(&case.secrets[0], &stale, &case.body));
        plan.push((ours, stale, accepted, sign, tampered, wrong, stale_at));
    }
    let Some(answers) = oracle_or_skip(TEST, &batch.requests) else {
        return;
    };

    let mut report = Report::new(TEST, seed);
    for (case, (ours, stale_header, accepted, sign, tampered, wrong, stale_at)) in
        cases.iter().zip(&plan)
    {
        let body = case.body.as_bytes();
        for &i in accepted {
            report.sdk(&answers[i], true, || {
                format!("(a) our `{ours}` for {case:?}")
            });
        }
        let sdk_header = str_of(&answers[*sign], "header");
        report.check(sdk_header == ours, || {
            format!("(b) SDK signed `{sdk_header}`, we sign `{ours}` for {case:?}")
        });
        let at_now = |secrets: &[String], header: &str, body: &[u8]| {
            stripe::verify(secrets, Some(header), body, NOW, Some(WINDOW))
        };
        report.accepts(at_now(&case.secrets, sdk_header, body), || {
            format!("(b) SDK `{sdk_header}` for {case:?}")
        });
        for secret in &case.secrets {
            report.accepts(
                at_now(std::slice::from_ref(secret), sdk_header, body),
                || format!("(b) SDK `{sdk_header}` with only {secret} for {case:?}"),
            );
        }
        report.sdk(&answers[*tampered], false, || {
            format!("(c) tampered body for {case:?}")
        });
        report.rejects(
            at_now(&case.secrets, sdk_header, case.tampered.as_bytes()),
            no_match,
            || format!("(c) tampered body for {case:?}"),
        );
        report.sdk(&answers[*wrong], false, || {
            format!("(c) wrong secret for {case:?}")
        });
        report.rejects(
            at_now(std::slice::from_ref(&case.wrong), sdk_header, body),
            no_match,
            || format!("(c) wrong secret for {case:?}"),
        );
        report.sdk(&answers[*stale_at], false, || {
            format!("(c) stale `{stale_header}` for {case:?}")
        });
        report.rejects(at_now(&case.secrets, stale_header, body), stale, || {
            format!("(c) stale `{stale_header}` for {case:?}")
        });
    }
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// Slack

#[derive(Debug)]
struct SlackCase {
    secret: String,
    /// What the gateway has configured: the secret plus, sometimes, others (rotation).
    configured: Vec<String>,
    timestamp: String,
    body: String,
    tampered: String,
    wrong: String,
    stale: String,
}

#[test]
fn slack_matches_official_sdk() {
    const TEST: &str = "slack_matches_official_sdk";
    let (seed, mut rng) = seeded(TEST);
    let rng = &mut rng;
    let cases: Vec<SlackCase> = (0..CASES)
        .map(|i| {
            let secret = rng.hex(32);
            let mut configured: Vec<String> = (0..rng.below(3)).map(|_| rng.hex(32)).collect();
            let at = rng.below(configured.len() + 1);
            configured.insert(at, secret.clone());
            // The raw header string is signed, leading zeros included.
            let zero = if i == 4 || rng.one_in(10) { "0" } else { "" };
            let body = body(rng);
            SlackCase {
                timestamp: format!("{zero}{}", NOW + in_window(rng, i)),
                tampered: flip_byte(rng, &body),
                body,
                wrong: rng.hex(32),
                stale: (NOW + out_of_window(rng, i, false)).to_string(),
                secret,
                configured,
            }
        })
        .collect();

    let verify = |secret: &str, timestamp: &str, signature: &str, body: &str| {
        json!({"scheme": "slack", "op": "verify", "secret": secret, "timestamp": timestamp,
               "signature": signature, "body": body, "now": NOW})
    };
    let mut batch = Batch::default();
    let mut plan = Vec::new();
    for case in &cases {
        let ours = slack::sign(
            case.secret.as_bytes(),
            &case.timestamp,
            case.body.as_bytes(),
        );
        let stale = slack::sign(case.secret.as_bytes(), &case.stale, case.body.as_bytes());
        let accepted = batch.push(verify(&case.secret, &case.timestamp, &ours, &case.body));
        let sign = batch.push(
            json!({"scheme": "slack", "op": "sign", "secret": case.secret,
                                     "timestamp": case.timestamp, "body": case.body}),
        );
        let tampered = batch.push(verify(&case.secret, &case.timestamp, &ours, &case.tampered));
        let wrong = batch.push(verify(&case.wrong, &case.timestamp, &ours, &case.body));
        let stale_at = batch.push(verify(&case.secret, &case.stale, &stale, &case.body));
        plan.push((ours, stale, accepted, sign, tampered, wrong, stale_at));
    }
    let Some(answers) = oracle_or_skip(TEST, &batch.requests) else {
        return;
    };

    let mut report = Report::new(TEST, seed);
    for (case, (ours, stale_sig, accepted, sign, tampered, wrong, stale_at)) in
        cases.iter().zip(&plan)
    {
        let at_now = |secrets: &[String], timestamp: &str, signature: &str, body: &str| {
            let headers = slack::Headers {
                timestamp: Some(timestamp),
                signature: Some(signature),
            };
            slack::verify(secrets, headers, body.as_bytes(), NOW, WINDOW)
        };
        report.sdk(&answers[*accepted], true, || {
            format!("(a) our `{ours}` for {case:?}")
        });
        let sdk_sig = str_of(&answers[*sign], "signature");
        report.check(sdk_sig == ours, || {
            format!("(b) SDK signed `{sdk_sig}`, we sign `{ours}` for {case:?}")
        });
        report.accepts(
            at_now(&case.configured, &case.timestamp, sdk_sig, &case.body),
            || format!("(b) SDK `{sdk_sig}` for {case:?}"),
        );
        report.sdk(&answers[*tampered], false, || {
            format!("(c) tampered body for {case:?}")
        });
        report.rejects(
            at_now(&case.configured, &case.timestamp, sdk_sig, &case.tampered),
            no_match,
            || format!("(c) tampered body for {case:?}"),
        );
        report.sdk(&answers[*wrong], false, || {
            format!("(c) wrong secret for {case:?}")
        });
        report.rejects(
            at_now(
                std::slice::from_ref(&case.wrong),
                &case.timestamp,
                sdk_sig,
                &case.body,
            ),
            no_match,
            || format!("(c) wrong secret for {case:?}"),
        );
        report.sdk(&answers[*stale_at], false, || {
            format!("(c) stale timestamp for {case:?}")
        });
        report.rejects(
            at_now(&case.configured, &case.stale, stale_sig, &case.body),
            stale,
            || format!("(c) stale timestamp for {case:?}"),
        );
    }
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// Twilio

#[derive(Debug)]
struct TwilioUrls {
    /// The URL the signature was computed over (as Twilio did).
    signed: String,
    /// The URL the gateway saw the request on (same URL, maybe another port form).
    request: String,
    /// The request URL signed over a different non-default port: must be rejected.
    other_port: Option<String>,
}

fn twilio_urls(rng: &mut Rng) -> TwilioUrls {
    const HOSTS: &[&str] = &[
        "example.com",
        "api.example.org",
        "hooks.my-app.io",
        "Mixed.Case.Example.com",
        "127.0.0.1",
        "localhost",
        "xn--caf-dma.example",
    ];
    const SEGMENTS: &[&str] = &[
        "twilio",
        "sms",
        "voice",
        "status",
        "v1",
        "caf%C3%A9",
        "a%20b",
        "~me",
        "x;y=1",
        "with.dots",
        "UPPER",
    ];
    const QUERY_VALUES: &[&str] = &["1", "2", "a+b", "a%20b", "%E2%9C%93", "", "x%3Dy", "%2B1"];
    let scheme = if rng.one_in(5) { "http" } else { "https" };
    let host = if rng.one_in(4) {
        format!("{}.tunnel.example", rng.alnum(8).to_lowercase())
    } else {
        (*rng.pick(HOSTS)).to_owned()
    };
    let path = match rng.below(8) {
        0 => String::new(),
        1 => "/".to_owned(),
        _ => {
            let mut path = String::new();
            for _ in 0..1 + rng.below(4) {
                path.push('/');
                if rng.one_in(3) {
                    let len = 1 + rng.below(10);
                    path.push_str(&rng.alnum(len));
                } else {
                    path.push_str(rng.pick_str(SEGMENTS));
                }
            }
            if rng.one_in(4) {
                path.push('/');
            }
            path
        }
    };
    let query = if rng.one_in(3) {
        String::new()
    } else {
        let pairs: Vec<String> = (0..1 + rng.below(4))
            .map(|_| {
                let name = *rng.pick(&["foo", "bar", "foo", "q", "sig", "empty", "flag", "%C3%BC"]);
                if name == "flag" {
                    name.to_owned()
                } else {
                    format!("{name}={}", rng.pick(QUERY_VALUES))
                }
            })
            .collect();
        format!("?{}", pairs.join("&"))
    };
    let default = if scheme == "https" { "443" } else { "80" };
    let custom = *rng.pick(&["8443", "3000", "8080", "1234", "65535"]);
    let (signed_port, request_port) = match rng.below(6) {
        0 | 1 => (None, None),
        2 => (Some(default), None), // Twilio signed with the default port; the URL has none
        3 => (None, Some(default)), // the request shows the default port
        4 => (Some(custom), Some(custom)),
        _ => (None, Some(custom)), // signed without the port; `validate` strips any port
    };
    let url = |port: Option<&str>| {
        format!(
            "{scheme}://{host}{}{path}{query}",
            port.map_or(String::new(), |p| format!(":{p}"))
        )
    };
    let other_port = request_port
        .filter(|port| *port != default)
        .map(|port| url(Some(if port == "9999" { "9998" } else { "9999" })));
    TwilioUrls {
        signed: url(signed_port),
        request: url(request_port),
        other_port,
    }
}

/// Inserts `/tampered` right after the authority.
fn tamper_path(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    format!("{}/tampered{}", &url[..end], &url[end..])
}

#[derive(Debug)]
enum TwilioBody {
    Form {
        params: Vec<(String, String)>,
        wire: String,
    },
    Json {
        body: String,
        tampered: String,
    },
}

#[derive(Debug)]
struct TwilioCase {
    secret: String,
    configured: Vec<String>,
    wrong: String,
    algorithm: twilio::Algorithm,
    settings: Option<String>,
    content_type: &'static str,
    urls: TwilioUrls,
    body: TwilioBody,
}

fn twilio_case(rng: &mut Rng, json: bool) -> TwilioCase {
    let shared_key = rng.one_in(4);
    let secret_of = |rng: &mut Rng| {
        if shared_key {
            rng.alnum(32)
        } else {
            rng.hex(32)
        }
    };
    let secret = secret_of(rng);
    let mut configured: Vec<String> = (0..rng.below(2)).map(|_| secret_of(rng)).collect();
    let at = rng.below(configured.len() + 1);
    configured.insert(at, secret.clone());
    let key_id = format!("webhooks_sharedkey_{}", rng.alnum(8));
    let (algorithm, settings) = if shared_key {
        let settings = if rng.one_in(3) {
            format!("key={key_id}, algorithm = hmac_sha256")
        } else {
            format!("key={key_id},algorithm=HMAC_SHA256")
        };
        (twilio::Algorithm::HmacSha256, Some(settings))
    } else if rng.one_in(4) {
        (
            twilio::Algorithm::HmacSha1,
            Some(format!("key={key_id},algorithm=HMAC_SHA1")),
        )
    } else {
        (twilio::Algorithm::HmacSha1, None)
    };
    let body = if json {
        let body = body(rng);
        TwilioBody::Json {
            tampered: flip_byte(rng, &body),
            body,
        }
    } else {
        let mut params = form_params(rng);
        let mut wire = form_wire(rng, &params);
        if rng.one_in(4) {
            let (raw, decoded) = *rng.pick(JUNK_ESCAPES);
            params.push(("Junk".to_owned(), decoded.to_owned()));
            if !wire.is_empty() {
                wire.push('&');
            }
            wire.push_str("Junk=");
            wire.push_str(raw);
        }
        TwilioBody::Form { params, wire }
    };
    let content_type = if json {
        *rng.pick(&["application/json", "application/json; charset=utf-8"])
    } else {
        *rng.pick(&[
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "Application/X-WWW-Form-URLEncoded",
        ])
    };
    TwilioCase {
        wrong: secret_of(rng),
        secret,
        configured,
        algorithm,
        settings,
        content_type,
        urls: twilio_urls(rng),
        body,
    }
}

/// What one Twilio case asks the oracle, by request index.
struct TwilioPlan {
    /// Our signature over the signed URL.
    ours: String,
    /// The URL the request arrived on (with `bodySHA256` for JSON).
    request_url: String,
    /// The body as sent: the form wire string or the JSON text.
    body: String,
    sign: usize,
    accepted: usize,
    wrong: usize,
    path: usize,
    tampered: usize,
    /// `(request, our signature over another non-default port)`.
    other_port: Option<(usize, String)>,
    no_settings: Option<usize>,
}

fn twilio_headers<'a>(
    signature: &'a str,
    settings: Option<&'a str>,
    content_type: &'a str,
) -> twilio::Headers<'a> {
    twilio::Headers {
        signature: Some(signature),
        signature_settings: settings,
        content_type: Some(content_type),
    }
}

fn twilio_extra_param(wire: &str) -> String {
    if wire.is_empty() {
        "TamperedParam=1".to_owned()
    } else {
        format!("{wire}&TamperedParam=1")
    }
}

fn twilio_matches_official_sdk(test: &'static str, json: bool) {
    let (seed, mut rng) = seeded(test);
    let rng = &mut rng;
    let cases: Vec<TwilioCase> = (0..CASES).map(|_| twilio_case(rng, json)).collect();

    let verify = |secret: &str, url: &str, signature: &str, settings: Option<&str>, body: &str| {
        let field = if json { "json_body" } else { "form_body" };
        json!({"scheme": "twilio", "op": "verify", "secret": secret, "url": url,
               "signature": signature, "settings_header": settings, field: body})
    };
    let mut batch = Batch::default();
    let mut plan = Vec::new();
    for case in &cases {
        let secret = case.secret.as_bytes();
        let settings = case.settings.as_deref();
        let (ours, request_url, body, sign, tampered) = match &case.body {
            TwilioBody::Form { params, wire } => {
                let ours =
                    twilio::sign_form(secret, &case.urls.signed, wire.as_bytes(), case.algorithm);
                let by_params =
                    twilio::compute_signature(secret, &case.urls.signed, params, case.algorithm);
                assert_eq!(
                    ours, by_params,
                    "sign_form and compute_signature differ: {case:?}"
                );
                let sign = batch.push(json!({"scheme": "twilio", "op": "sign",
                    "secret": case.secret, "url": case.urls.signed, "params": params,
                    "algorithm": case.algorithm.name()}));
                let extra = twilio_extra_param(wire);
                let tampered = batch.push(verify(
                    &case.secret,
                    &case.urls.request,
                    &ours,
                    settings,
                    &extra,
                ));
                (
                    ours,
                    case.urls.request.clone(),
                    wire.clone(),
                    sign,
                    tampered,
                )
            }
            TwilioBody::Json { body, tampered } => {
                let signed = twilio::sign_with_body_hash(
                    secret,
                    &case.urls.signed,
                    body.as_bytes(),
                    case.algorithm,
                );
                let request_url = twilio::url_with_body_hash(&case.urls.request, body.as_bytes());
                let sign = batch.push(json!({"scheme": "twilio", "op": "sign",
                    "secret": case.secret, "url": case.urls.signed, "json_body": body,
                    "algorithm": case.algorithm.name()}));
                let tampered = batch.push(verify(
                    &case.secret,
                    &request_url,
                    &signed.signature,
                    settings,
                    tampered,
                ));
                (signed.signature, request_url, body.clone(), sign, tampered)
            }
        };
        let other_port = case.urls.other_port.as_ref().map(|other| {
            let signature = match &case.body {
                TwilioBody::Form { wire, .. } => {
                    twilio::sign_form(secret, other, wire.as_bytes(), case.algorithm)
                }
                TwilioBody::Json { body, .. } => {
                    twilio::sign_with_body_hash(secret, other, body.as_bytes(), case.algorithm)
                        .signature
                }
            };
            let id = batch.push(verify(
                &case.secret,
                &request_url,
                &signature,
                settings,
                &body,
            ));
            (id, signature)
        });
        // A SharedKey HMAC-SHA256 signature without its settings header is checked as SHA1.
        let no_settings = (case.algorithm == twilio::Algorithm::HmacSha256)
            .then(|| batch.push(verify(&case.secret, &request_url, &ours, None, &body)));
        plan.push(TwilioPlan {
            accepted: batch.push(verify(&case.secret, &request_url, &ours, settings, &body)),
            wrong: batch.push(verify(&case.wrong, &request_url, &ours, settings, &body)),
            path: batch.push(verify(
                &case.secret,
                &tamper_path(&request_url),
                &ours,
                settings,
                &body,
            )),
            ours,
            request_url,
            body,
            sign,
            tampered,
            other_port,
            no_settings,
        });
    }
    let Some(answers) = oracle_or_skip(test, &batch.requests) else {
        return;
    };

    let mut report = Report::new(test, seed);
    for (case, plan) in cases.iter().zip(&plan) {
        let TwilioPlan {
            ours, request_url, ..
        } = plan;
        let settings = case.settings.as_deref();
        let verify_with = |secrets: &[String], url: &str, signature: &str, body: &str| {
            twilio::verify(
                secrets,
                url,
                twilio_headers(signature, settings, case.content_type),
                body.as_bytes(),
            )
        };
        let body = plan.body.as_str();
        report.sdk(&answers[plan.accepted], true, || {
            format!("(a) our `{ours}` on {request_url} for {case:?}")
        });
        let answer = &answers[plan.sign];
        let sdk_sig = str_of(answer, "signature");
        report.check(sdk_sig == ours, || {
            format!("(b) SDK signed `{sdk_sig}`, we sign `{ours}` for {case:?}")
        });
        if json {
            let sdk_url = str_of(answer, "url");
            let our_url = twilio::url_with_body_hash(&case.urls.signed, body.as_bytes());
            report.check(sdk_url == our_url, || {
                format!("(b) SDK signed URL `{sdk_url}`, ours is `{our_url}` for {case:?}")
            });
        }
        report.accepts(
            verify_with(&case.configured, request_url, sdk_sig, body),
            || format!("(b) SDK `{sdk_sig}` on {request_url} for {case:?}"),
        );
        report.sdk(&answers[plan.wrong], false, || {
            format!("(c) wrong secret for {case:?}")
        });
        report.rejects(
            verify_with(
                std::slice::from_ref(&case.wrong),
                request_url,
                sdk_sig,
                body,
            ),
            no_match,
            || format!("(c) wrong secret for {case:?}"),
        );
        report.sdk(&answers[plan.path], false, || {
            format!("(c) tampered path for {case:?}")
        });
        report.rejects(
            verify_with(&case.configured, &tamper_path(request_url), sdk_sig, body),
            no_match,
            || format!("(c) tampered path for {case:?}"),
        );
        report.sdk(&answers[plan.tampered], false, || {
            format!("(c) tampered body for {case:?}")
        });
        match &case.body {
            TwilioBody::Form { .. } => report.rejects(
                verify_with(
                    &case.configured,
                    request_url,
                    sdk_sig,
                    &twilio_extra_param(body),
                ),
                no_match,
                || format!("(c) added parameter for {case:?}"),
            ),
            TwilioBody::Json { tampered, .. } => report.rejects(
                verify_with(&case.configured, request_url, sdk_sig, tampered),
                |err| *err == SignatureError::BodyHashMismatch,
                || format!("(c) tampered body for {case:?}"),
            ),
        }
        if let Some((id, other_sig)) = &plan.other_port {
            report.sdk(&answers[*id], false, || {
                format!("(c) signed for another port for {case:?}")
            });
            report.rejects(
                verify_with(&case.configured, request_url, other_sig, body),
                no_match,
                || format!("(c) signed for another port for {case:?}"),
            );
        }
        if let Some(id) = plan.no_settings {
            report.sdk(&answers[id], false, || {
                format!("(c) SHA256 signature without its settings header for {case:?}")
            });
            report.rejects(
                twilio::verify(
                    &case.configured,
                    request_url,
                    twilio_headers(sdk_sig, None, case.content_type),
                    body.as_bytes(),
                ),
                any_error,
                || format!("(c) SHA256 signature without its settings header for {case:?}"),
            );
        }
    }
    report.finish();
}

#[test]
fn twilio_form_matches_official_sdk() {
    twilio_matches_official_sdk("twilio_form_matches_official_sdk", false);
}

#[test]
fn twilio_json_matches_official_sdk() {
    twilio_matches_official_sdk("twilio_json_matches_official_sdk", true);
}

// ---------------------------------------------------------------------------------------------
// SendGrid

/// A random P-256 private key as base64 of PKCS#8 DER (an `ECPrivateKey` without the optional
/// public key), the form [`sendgrid::sign`] takes.
fn sendgrid_private_key(rng: &mut Rng) -> String {
    const PKCS8_PREFIX: [u8; 35] = [
        0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
        0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25,
        0x02, 0x01, 0x01, 0x04, 0x20,
    ];
    loop {
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend(rng.bytes(32));
        let encoded = BASE64.encode(der);
        // A scalar of zero or at least the group order is refused; draw again.
        if sendgrid::sign(&encoded, "0", b"").is_ok() {
            return encoded;
        }
    }
}

#[derive(Debug)]
struct SendgridCase {
    private_key: String,
    public_key: String,
    other_public_key: String,
    timestamp: String,
    offset: i64,
    body: String,
    tampered: String,
}

#[test]
fn sendgrid_matches_official_sdk() {
    const TEST: &str = "sendgrid_matches_official_sdk";
    let (seed, mut rng) = seeded(TEST);
    let rng = &mut rng;
    let keys: Vec<(String, String)> = (0..8)
        .map(|_| {
            let private = sendgrid_private_key(rng);
            let (public, _) = sendgrid::sign(&private, "0", b"").expect("valid key");
            (private, public)
        })
        .collect();
    let cases: Vec<SendgridCase> = (0..CASES)
        .map(|i| {
            let key = rng.below(keys.len());
            let other = (key + 1 + rng.below(keys.len() - 1)) % keys.len();
            // The SDK checks no window; ours is optional policy, so try both sides of it.
            let offset = if rng.one_in(4) {
                out_of_window(rng, i, false)
            } else {
                in_window(rng, i)
            };
            let body = body(rng);
            SendgridCase {
                private_key: keys[key].0.clone(),
                public_key: keys[key].1.clone(),
                other_public_key: keys[other].1.clone(),
                timestamp: (NOW + offset).to_string(),
                offset,
                tampered: flip_byte(rng, &body),
                body,
            }
        })
        .collect();

    let verify = |public_key: &str, signature: &str, timestamp: &str, body: &str| {
        json!({"scheme": "sendgrid", "op": "verify", "public_key": public_key,
               "signature": signature, "timestamp": timestamp, "body": body})
    };
    let mut batch = Batch::default();
    let mut plan = Vec::new();
    for case in &cases {
        let (public, ours) =
            sendgrid::sign(&case.private_key, &case.timestamp, case.body.as_bytes())
                .expect("sendgrid::sign");
        assert_eq!(public, case.public_key);
        let next_second = (NOW + case.offset + 1).to_string();
        plan.push((
            ours.clone(),
            batch.push(verify(&public, &ours, &case.timestamp, &case.body)),
            batch.push(json!({"scheme": "sendgrid", "op": "sign",
                              "private_key": case.private_key, "timestamp": case.timestamp,
                              "body": case.body})),
            batch.push(verify(&public, &ours, &case.timestamp, &case.tampered)),
            batch.push(verify(
                &case.other_public_key,
                &ours,
                &case.timestamp,
                &case.body,
            )),
            batch.push(verify(&public, &ours, &next_second, &case.body)),
        ));
    }
    let Some(answers) = oracle_or_skip(TEST, &batch.requests) else {
        return;
    };

    let mut report = Report::new(TEST, seed);
    let mut high_s = [0usize; 2];
    let parse = |key: &str| sendgrid::PublicKey::from_base64_der(key).expect("public key parses");
    for (case, (ours, accepted, sign, tampered, wrong, moved)) in cases.iter().zip(&plan) {
        let key = parse(&case.public_key);
        let other = parse(&case.other_public_key);
        let at_now = |keys: &[sendgrid::PublicKey],
                      signature: &str,
                      timestamp: &str,
                      body: &str,
                      tolerance: Option<i64>| {
            let headers = sendgrid::Headers {
                signature: Some(signature),
                timestamp: Some(timestamp),
            };
            sendgrid::verify(keys, headers, body.as_bytes(), NOW, tolerance)
        };
        report.sdk(&answers[*accepted], true, || {
            format!("(a) our `{ours}` for {case:?}")
        });
        let answer = &answers[*sign];
        let theirs = str_of(answer, "signature");
        high_s[usize::from(answer["high_s"] == true)] += 1;
        report.check(str_of(answer, "public_key") == case.public_key, || {
            format!("(b) cryptography derives another public key for {case:?}")
        });
        for keys in [vec![key.clone()], vec![other.clone(), key.clone()]] {
            report.accepts(
                at_now(&keys, theirs, &case.timestamp, &case.body, None),
                || format!("(b) spec-signed `{theirs}` for {case:?}"),
            );
        }
        let windowed = at_now(
            std::slice::from_ref(&key),
            theirs,
            &case.timestamp,
            &case.body,
            Some(WINDOW),
        );
        if case.offset.abs() <= WINDOW {
            report.accepts(windowed, || {
                format!("(b) spec-signed `{theirs}` within the window for {case:?}")
            });
        } else {
            // Gateway policy only: the SDK has no window.
            report.rejects(windowed, stale, || {
                format!("(b) spec-signed `{theirs}` outside the window for {case:?}")
            });
        }
        report.sdk(&answers[*tampered], false, || {
            format!("(c) tampered body for {case:?}")
        });
        for signature in [ours.as_str(), theirs] {
            report.rejects(
                at_now(
                    std::slice::from_ref(&key),
                    signature,
                    &case.timestamp,
                    &case.tampered,
                    None,
                ),
                no_match,
                || format!("(c) tampered body, `{signature}` for {case:?}"),
            );
            report.rejects(
                at_now(
                    std::slice::from_ref(&other),
                    signature,
                    &case.timestamp,
                    &case.body,
                    None,
                ),
                no_match,
                || format!("(c) wrong key, `{signature}` for {case:?}"),
            );
            report.rejects(
                at_now(
                    std::slice::from_ref(&key),
                    signature,
                    &(NOW + case.offset + 1).to_string(),
                    &case.body,
                    None,
                ),
                no_match,
                || format!("(c) changed timestamp header, `{signature}` for {case:?}"),
            );
        }
        report.sdk(&answers[*wrong], false, || {
            format!("(c) wrong key for {case:?}")
        });
        report.sdk(&answers[*moved], false, || {
            format!("(c) changed timestamp header for {case:?}")
        });
    }
    // `cryptography` draws k at random, so about half of its signatures have a high S; our
    // verifier must accept both (SendGrid does not normalize S).
    report.check(high_s[0] > 0 && high_s[1] > 0, || {
        format!("expected both low-S and high-S signatures, got {high_s:?} (low, high)")
    });
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// Standard Webhooks and Svix

#[derive(Debug)]
struct SwCase {
    secrets: Vec<String>,
    msg_id: String,
    timestamp: i64,
    body: String,
    tampered: String,
    wrong: String,
    stale: i64,
    /// Entries a verifier must skip (other versions, a retired key's `v1`).
    extra_entries: Vec<String>,
    /// `id`, `timestamp`, `signature` header names as sent.
    names: [&'static str; 3],
}

fn sw_secret(rng: &mut Rng, svix: bool) -> String {
    let len = if svix {
        *rng.pick(&[24, 32])
    } else {
        24 + rng.below(41)
    };
    format!("whsec_{}", BASE64.encode(rng.bytes(len)))
}

fn sw_headers(case: &SwCase, id: &str, timestamp: i64, signature: &str) -> Value {
    let mut headers = Map::new();
    headers.insert(case.names[0].to_owned(), json!(id));
    headers.insert(case.names[1].to_owned(), json!(timestamp.to_string()));
    headers.insert(case.names[2].to_owned(), json!(signature));
    Value::Object(headers)
}

fn sw_verify(
    keys: &[SigningKey],
    case: &SwCase,
    id: &str,
    timestamp: i64,
    signature: &str,
    body: &str,
) -> Result<(), SignatureError> {
    let timestamp = timestamp.to_string();
    let pairs = [
        (case.names[0], id),
        (case.names[1], timestamp.as_str()),
        (case.names[2], signature),
    ];
    let lookup = header_list(&pairs);
    sw::verify(
        keys,
        sw::Headers::from_lookup(&lookup),
        body.as_bytes(),
        NOW,
        WINDOW,
    )
}

fn sw_matches_official_sdk(test: &'static str, scheme: &'static str) {
    let svix = scheme == "svix";
    let (seed, mut rng) = seeded(test);
    let rng = &mut rng;
    let cases: Vec<SwCase> = (0..CASES)
        .map(|i| {
            let body = body(rng);
            let extra_entries = (0..rng.below(3))
                .map(|_| match rng.below(3) {
                    0 => format!("v2,{}", BASE64.encode(rng.bytes(32))),
                    1 => format!("v1a,{}", BASE64.encode(rng.bytes(64))),
                    _ => format!("v1,{}", BASE64.encode(rng.bytes(32))),
                })
                .collect();
            let names = match (svix, rng.one_in(3)) {
                (true, false) => ["svix-id", "svix-timestamp", "svix-signature"],
                (true, true) => ["Svix-Id", "Svix-Timestamp", "Svix-Signature"],
                (false, false) => ["webhook-id", "webhook-timestamp", "webhook-signature"],
                (false, true) => ["Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"],
            };
            SwCase {
                secrets: (0..1 + rng.below(3))
                    .map(|_| sw_secret(rng, svix))
                    .collect(),
                msg_id: if rng.one_in(4) {
                    format!("evt_{}", rng.alnum(20))
                } else {
                    format!("msg_{}", rng.alnum(27))
                },
                timestamp: NOW + in_window(rng, i),
                tampered: flip_byte(rng, &body),
                body,
                wrong: sw_secret(rng, svix),
                stale: NOW + out_of_window(rng, i, false),
                extra_entries,
                names,
            }
        })
        .collect();
    let keys_of = |secrets: &[String]| -> Vec<SigningKey> {
        secrets
            .iter()
            .map(|secret| SigningKey::from_secret(secret).expect("whsec_ secret parses"))
            .collect()
    };

    let verify = |secret: &str, headers: Value, body: &str| {
        json!({"scheme": scheme, "op": "verify", "secret": secret, "headers": headers,
               "body": body, "now": NOW})
    };
    let mut batch = Batch::default();
    let mut plan = Vec::new();
    for case in &cases {
        let keys = keys_of(&case.secrets);
        let signed = sw::sign_header(&keys, &case.msg_id, case.timestamp, case.body.as_bytes());
        // Mix the entries a verifier must skip in among ours.
        let mut entries: Vec<String> = signed.split(' ').map(str::to_owned).collect();
        for extra in &case.extra_entries {
            let at = rng.below(entries.len() + 1);
            entries.insert(at, extra.clone());
        }
        let ours = entries.join(" ");
        let stale = sw::sign_header(&keys, &case.msg_id, case.stale, case.body.as_bytes());
        let headers = sw_headers(case, &case.msg_id, case.timestamp, &ours);
        let accepted: Vec<usize> = case
            .secrets
            .iter()
            .map(|secret| batch.push(verify(secret, headers.clone(), &case.body)))
            .collect();
        let sign = batch.push(
            json!({"scheme": scheme, "op": "sign", "secrets": case.secrets,
                                     "msg_id": case.msg_id, "timestamp": case.timestamp,
                                     "body": case.body}),
        );
        let first = &case.secrets[0];
        let tampered = batch.push(verify(first, headers.clone(), &case.tampered));
        let wrong = batch.push(verify(&case.wrong, headers, &case.body));
        let stale_at = batch.push(verify(
            first,
            sw_headers(case, &case.msg_id, case.stale, &stale),
            &case.body,
        ));
        let other_id = format!("{}x", case.msg_id);
        let moved = batch.push(verify(
            first,
            sw_headers(case, &other_id, case.timestamp, &ours),
            &case.body,
        ));
        plan.push((
            keys, signed, ours, stale, accepted, sign, tampered, wrong, stale_at, moved,
        ));
    }
    let Some(answers) = oracle_or_skip(test, &batch.requests) else {
        return;
    };

    let mut report = Report::new(test, seed);
    for (case, (keys, signed, ours, stale_sig, accepted, sign, tampered, wrong, stale_at, moved)) in
        cases.iter().zip(&plan)
    {
        let (id, ts) = (case.msg_id.as_str(), case.timestamp);
        for &i in accepted {
            report.sdk(&answers[i], true, || {
                format!("(a) our `{ours}` for {case:?}")
            });
        }
        let sdk_sig = str_of(&answers[*sign], "signature");
        report.check(sdk_sig == signed, || {
            format!("(b) SDK signed `{sdk_sig}`, we sign `{signed}` for {case:?}")
        });
        report.accepts(sw_verify(keys, case, id, ts, sdk_sig, &case.body), || {
            format!("(b) SDK `{sdk_sig}` for {case:?}")
        });
        for key in keys {
            report.accepts(
                sw_verify(std::slice::from_ref(key), case, id, ts, sdk_sig, &case.body),
                || format!("(b) SDK `{sdk_sig}` with one of the keys for {case:?}"),
            );
        }
        report.accepts(sw_verify(keys, case, id, ts, ours, &case.body), || {
            format!("(a) our `{ours}` (Rust) for {case:?}")
        });
        report.sdk(&answers[*tampered], false, || {
            format!("(c) tampered body for {case:?}")
        });
        report.rejects(
            sw_verify(keys, case, id, ts, sdk_sig, &case.tampered),
            no_match,
            || format!("(c) tampered body for {case:?}"),
        );
        report.sdk(&answers[*wrong], false, || {
            format!("(c) wrong secret for {case:?}")
        });
        report.rejects(
            sw_verify(
                &keys_of(std::slice::from_ref(&case.wrong)),
                case,
                id,
                ts,
                sdk_sig,
                &case.body,
            ),
            no_match,
            || format!("(c) wrong secret for {case:?}"),
        );
        report.sdk(&answers[*stale_at], false, || {
            format!("(c) stale timestamp for {case:?}")
        });
        report.rejects(
            sw_verify(keys, case, id, case.stale, stale_sig, &case.body),
            stale,
            || format!("(c) stale timestamp for {case:?}"),
        );
        report.sdk(&answers[*moved], false, || {
            format!("(c) changed webhook-id for {case:?}")
        });
        report.rejects(
            sw_verify(keys, case, &format!("{id}x"), ts, sdk_sig, &case.body),
            no_match,
            || format!("(c) changed webhook-id for {case:?}"),
        );
    }
    report.finish();
}

#[test]
fn standard_webhooks_matches_official_sdk() {
    sw_matches_official_sdk("standard_webhooks_matches_official_sdk", "standardwebhooks");
}

#[test]
fn svix_matches_official_sdk() {
    sw_matches_official_sdk("svix_matches_official_sdk", "svix");
}

// ---------------------------------------------------------------------------------------------
// Committed SDK-made vectors (no Python needed)

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|item| item.as_str().expect("a string").to_owned())
        .collect()
}

/// Flips the low bit of the last ASCII byte (or appends one), keeping the body UTF-8.
fn flip_last_ascii(body: &str) -> String {
    let mut bytes = body.as_bytes().to_vec();
    match bytes.iter().rposition(u8::is_ascii) {
        Some(i) => bytes[i] ^= 0x01,
        None => bytes.push(b'x'),
    }
    String::from_utf8(bytes).expect("ASCII stays ASCII")
}

/// Checks one committed vector: our verifier accepts it at its own timestamp, our signer
/// reproduces it where the scheme is deterministic, and a flipped body byte is rejected.
fn check_generated(v: &Value) {
    let inputs = &v["inputs"];
    let body = inputs["body"].as_str().expect("inputs.body");
    let tampered = flip_last_ascii(body);
    let pairs: Vec<(&str, &str)> = v["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str().expect("header value")))
        .collect();
    let lookup = header_list(&pairs);
    let now = inputs["timestamp"].as_i64();
    let (body, tampered) = (body.as_bytes(), tampered.as_bytes());
    match v["scheme"].as_str().expect("scheme") {
        "stripe" => {
            let secrets = strings(&inputs["secrets"]);
            let now = now.expect("timestamp");
            let header = lookup(stripe::SIGNATURE_HEADER);
            assert_eq!(
                header,
                Some(stripe::sign(&secrets, now, body).as_str()),
                "{v}"
            );
            let at = |secrets: &[String], body, now| {
                stripe::verify(secrets, header, body, now, Some(WINDOW))
            };
            assert_eq!(at(&secrets, body, now), Ok(()), "{v}");
            for secret in &secrets {
                assert_eq!(at(std::slice::from_ref(secret), body, now), Ok(()), "{v}");
            }
            assert_eq!(
                at(&secrets, tampered, now),
                Err(SignatureError::NoMatch),
                "{v}"
            );
            assert!(
                matches!(at(&secrets, body, now + WINDOW + 1), Err(ref e) if stale(e)),
                "{v}"
            );
        }
        "slack" => {
            let secret = inputs["secret"].as_str().expect("secret");
            let now = now.expect("timestamp");
            let headers = slack::Headers::from_lookup(&lookup);
            let timestamp = headers.timestamp.expect("timestamp header");
            assert_eq!(
                headers.signature,
                Some(slack::sign(secret.as_bytes(), timestamp, body).as_str()),
                "{v}"
            );
            let at = |body, now| slack::verify(&[secret], headers, body, now, WINDOW);
            assert_eq!(at(body, now), Ok(()), "{v}");
            assert_eq!(at(tampered, now), Err(SignatureError::NoMatch), "{v}");
            assert!(
                matches!(at(body, now + WINDOW + 1), Err(ref e) if stale(e)),
                "{v}"
            );
        }
        scheme @ ("twilio" | "twilio-json") => {
            let secret = inputs["secret"].as_str().expect("secret");
            let url = inputs["url"].as_str().expect("url");
            let signed_url = inputs["signed_url"].as_str().expect("signed_url");
            let algorithm =
                twilio::Algorithm::from_name(inputs["algorithm"].as_str().expect("algorithm"))
                    .expect("known algorithm");
            let headers = twilio::Headers::from_lookup(&lookup);
            let ours = if scheme == "twilio" {
                let params: Vec<(String, String)> = inputs["params"]
                    .as_array()
                    .expect("params")
                    .iter()
                    .map(|pair| {
                        let pair = strings(pair);
                        (pair[0].clone(), pair[1].clone())
                    })
                    .collect();
                let ours =
                    twilio::compute_signature(secret.as_bytes(), signed_url, &params, algorithm);
                assert_eq!(
                    ours,
                    twilio::sign_form(secret.as_bytes(), signed_url, body, algorithm),
                    "{v}"
                );
                ours
            } else {
                let none: [(&str, &str); 0] = [];
                twilio::compute_signature(secret.as_bytes(), signed_url, &none, algorithm)
            };
            assert_eq!(headers.signature, Some(ours.as_str()), "{v}");
            let at = |body| twilio::verify(&[secret], url, headers, body);
            assert_eq!(at(body), Ok(()), "{v}");
            if scheme == "twilio" {
                let extra = twilio_extra_param(std::str::from_utf8(body).expect("form body"));
                assert_eq!(at(extra.as_bytes()), Err(SignatureError::NoMatch), "{v}");
            } else {
                assert_eq!(at(tampered), Err(SignatureError::BodyHashMismatch), "{v}");
            }
            assert_eq!(
                twilio::verify(&[secret], &tamper_path(url), headers, body),
                Err(SignatureError::NoMatch),
                "{v}"
            );
        }
        "standardwebhooks" | "svix" => {
            let keys: Vec<SigningKey> = strings(&inputs["secrets"])
                .iter()
                .map(|secret| SigningKey::from_secret(secret).expect("whsec_ secret"))
                .collect();
            let now = now.expect("timestamp");
            let headers = sw::Headers::from_lookup(&lookup);
            let msg_id = inputs["msg_id"].as_str().expect("msg_id");
            assert_eq!(
                headers.signature,
                Some(sw::sign_header(&keys, msg_id, now, body).as_str()),
                "{v}"
            );
            let at = |keys: &[SigningKey], body, now| sw::verify(keys, headers, body, now, WINDOW);
            assert_eq!(at(&keys, body, now), Ok(()), "{v}");
            for key in &keys {
                assert_eq!(at(std::slice::from_ref(key), body, now), Ok(()), "{v}");
            }
            assert_eq!(
                at(&keys, tampered, now),
                Err(SignatureError::NoMatch),
                "{v}"
            );
            assert!(
                matches!(at(&keys, body, now - WINDOW - 1), Err(ref e) if stale(e)),
                "{v}"
            );
        }
        "sendgrid" => {
            let key = sendgrid::PublicKey::from_base64_der(
                inputs["public_key"].as_str().expect("public_key"),
            )
            .expect("public key parses");
            let now = now.expect("timestamp");
            let headers = sendgrid::Headers::from_lookup(&lookup);
            let at = |body| {
                sendgrid::verify(std::slice::from_ref(&key), headers, body, now, Some(WINDOW))
            };
            assert_eq!(at(body), Ok(()), "{v}");
            assert_eq!(at(tampered), Err(SignatureError::NoMatch), "{v}");
        }
        other => panic!("unknown scheme `{other}` in sdk_generated.json: {v}"),
    }
}

#[test]
fn committed_sdk_vectors_verify() {
    let doc: Value = serde_json::from_str(SDK_GENERATED).expect("sdk_generated.json is JSON");
    let vectors = doc["vectors"].as_array().expect("`vectors` array");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut high_s = [0usize; 2];
    for v in vectors {
        check_generated(v);
        let scheme = v["scheme"].as_str().expect("scheme");
        *counts.entry(scheme).or_default() += 1;
        if scheme == "sendgrid" {
            high_s[usize::from(v["high_s"] == true)] += 1;
        }
    }
    for scheme in [
        "stripe",
        "slack",
        "twilio",
        "twilio-json",
        "standardwebhooks",
        "svix",
        "sendgrid",
    ] {
        let count = counts.get(scheme).copied().unwrap_or(0);
        assert!(count >= 8, "only {count} committed `{scheme}` vectors");
    }
    assert!(
        high_s[0] > 0 && high_s[1] > 0,
        "the committed SendGrid vectors cover low-S and high-S signatures: {high_s:?}"
    );
}
