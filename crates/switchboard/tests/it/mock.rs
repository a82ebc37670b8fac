//! `switchboard mock` as a real process: queued responses per method and path (status,
//! headers, body, delay, repeats), the request log and its JSON Lines export, and the built-in
//! scenarios `rate-limited`, `flaky` (reproducible by seed) and `down`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// A running `switchboard mock`, killed on drop.
struct MockProcess {
    child: Child,
    base: String,
}

impl MockProcess {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("mock")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchboard mock");
        let stdout = child.stdout.take().expect("stdout");
        let mut process = Self {
            child,
            base: String::new(),
        };
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            process.base = line
                .split_whitespace()
                .find(|w| w.starts_with("http://"))
                .unwrap_or_default()
                .to_owned();
        }
        assert!(!process.base.is_empty(), "the mock printed its address");
        std::thread::spawn(move || for _ in lines.by_ref() {});
        process
    }

    /// SIGTERM, then wait for the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        self.child.wait().expect("wait")
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn statuses(client: &reqwest::Client, base: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for i in 0..n {
        let response = client
            .get(format!("{base}/api/{i}"))
            .send()
            .await
            .expect("request");
        out.push(response.status().as_u16());
    }
    out
}

#[tokio::test]
async fn queued_responses_are_served_recorded_and_exported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("responses.json");
    std::fs::write(
        &file,
        json!([{"method": "GET", "path": "/boot", "status": 202, "body": "from the file"}])
            .to_string(),
    )
    .expect("write responses");
    let log = dir.path().join("requests.jsonl");
    let mock = MockProcess::spawn(&[
        "--responses",
        file.to_str().expect("path"),
        "--log",
        log.to_str().expect("path"),
    ]);
    let client = reqwest::Client::new();
    let base = mock.base.clone();

    let queued = client
        .post(format!("{base}/__mock/responses"))
        .json(&json!([
            {"method": "GET", "path": "/items", "status": 201, "headers": {"x-page": "1"},
             "body": {"items": [1, 2]}, "times": 2},
            {"path": "/slow", "body": "done", "delay": "200ms"},
        ]))
        .send()
        .await
        .expect("queue");
    assert_eq!(queued.status(), 201);
    let refused = client
        .post(format!("{base}/__mock/responses"))
        .json(&json!({"path": "/x", "status": 99}))
        .send()
        .await
        .expect("queue");
    assert_eq!(refused.status(), 422);

    let boot = client
        .get(format!("{base}/boot"))
        .send()
        .await
        .expect("get");
    assert_eq!(boot.status(), 202);
    assert_eq!(boot.text().await.expect("body"), "from the file");
    for _ in 0..2 {
        let items = client
            .get(format!("{base}/items"))
            .send()
            .await
            .expect("get");
        assert_eq!(items.status(), 201);
        assert_eq!(items.headers()["x-page"], "1");
        let body: Value = items.json().await.expect("json");
        assert_eq!(body, json!({"items": [1, 2]}));
    }
    let used_up = client
        .get(format!("{base}/items"))
        .send()
        .await
        .expect("get");
    assert_eq!(used_up.status(), 404, "queued twice, answered twice");
    // A response queued without a method answers any method.
    let slow = client
        .post(format!("{base}/slow?x=1"))
        .body("hello")
        .send()
        .await
        .expect("post");
    assert_eq!(slow.text().await.expect("body"), "done");

    let exported = client
        .get(format!("{base}/__mock/requests.jsonl"))
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("text");
    let records: Vec<Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let seen: Vec<(String, String, u64)> = records
        .iter()
        .map(|r| {
            (
                r["method"].as_str().expect("method").to_owned(),
                r["path"].as_str().expect("path").to_owned(),
                r["status"].as_u64().expect("status"),
            )
        })
        .collect();
    let expected: Vec<(String, String, u64)> = [
        ("GET", "/boot", 202),
        ("GET", "/items", 201),
        ("GET", "/items", 201),
        ("GET", "/items", 404),
        ("POST", "/slow", 200),
    ]
    .iter()
    .map(|(m, p, s)| (m.to_string(), p.to_string(), *s))
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(records[4]["body"], "hello");
    assert_eq!(records[4]["query"], "x=1");

    let status = mock.terminate();
    assert!(status.success(), "{status:?}");
    let written = std::fs::read_to_string(&log).expect("log written at exit");
    assert_eq!(written, exported);
}

#[tokio::test]
async fn rate_limited_scenario_answers_429_past_the_limit() {
    let mock = MockProcess::spawn(&[
        "--scenario",
        "rate-limited",
        "--limit",
        "3",
        "--window",
        "1h",
    ]);
    let client = reqwest::Client::new();
    for remaining in ["2", "1", "0"] {
        let ok = client
            .get(format!("{}/v1/things", mock.base))
            .send()
            .await
            .expect("get");
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()["x-ratelimit-limit"], "3");
        assert_eq!(ok.headers()["x-ratelimit-remaining"], remaining);
    }
    let limited = client
        .get(format!("{}/v1/things", mock.base))
        .send()
        .await
        .expect("get");
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let reset: u64 = limited.headers()["x-ratelimit-reset"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("unix seconds");
    assert!(reset > 1_700_000_000);
}

#[tokio::test]
async fn flaky_scenario_fails_a_seeded_fraction() {
    let client = reqwest::Client::new();
    let run = |seed: &'static str| {
        let client = client.clone();
        async move {
            let mock =
                MockProcess::spawn(&["--scenario", "flaky", "--fail-rate", "0.5", "--seed", seed]);
            statuses(&client, &mock.base, 40).await
        }
    };
    let first = run("42").await;
    let again = run("42").await;
    let other = run("7").await;
    assert_eq!(first, again, "the same seed fails the same requests");
    assert_ne!(first, other, "another seed, another sequence");
    assert!(
        first.iter().all(|s| [200, 500, 503].contains(s)),
        "{first:?}"
    );
    let failed = first.iter().filter(|s| **s != 200).count();
    assert!((8..=32).contains(&failed), "about half fail: {first:?}");
    assert!(first.contains(&500) && first.contains(&503), "{first:?}");
}

#[tokio::test]
async fn down_scenario_fails_everything_but_records_it() {
    let mock = MockProcess::spawn(&["--scenario", "down"]);
    let client = reqwest::Client::new();
    assert_eq!(statuses(&client, &mock.base, 3).await, [500, 500, 500]);
    let log: Value = client
        .get(format!("{}/__mock/requests", mock.base))
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("json");
    assert_eq!(log.as_array().expect("array").len(), 3);
    let unavailable = MockProcess::spawn(&["--scenario", "down", "--down-status", "503"]);
    assert_eq!(statuses(&client, &unavailable.base, 2).await, [503, 503]);
}
