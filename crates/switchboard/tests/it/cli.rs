//! The `switchboard` CLI as a user runs it: the real binary against a real in-process server
//! (resources, send, inspection, replay, tokens and auth errors, exit codes), offline mode on the
//! data directory, and the offline `sign`/`verify`/`completions` helpers.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::process::ADMIN_TOKEN;
use crate::support::*;

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts exit 0 and returns stdout.
    fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts exit 0 and parses stdout as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("stdout is JSON ({e}):\n{}", self.stdout))
    }

    /// Asserts exit `code` and returns stderr.
    fn fails(&self, code: i32) -> &str {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "no panic: {}",
            self.stderr
        );
        &self.stderr
    }
}

/// Runs the binary with `env` (and none of the caller's `SWITCHBOARD_*` settings).
async fn run(env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for name in [
        "SWITCHBOARD_URL",
        "SWITCHBOARD_TOKEN",
        "SWITCHBOARD_DATA_DIR",
        "SWITCHBOARD_CONFIG",
    ] {
        command.env_remove(name);
    }
    let output = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run switchboard");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The CLI pointed at `base` through the environment, with `token`.
struct Sb {
    base: String,
    token: Option<String>,
}

impl Sb {
    fn admin(server: &TestServer) -> Self {
        Self {
            base: server.base.clone(),
            token: Some(ADMIN_TOKEN.into()),
        }
    }

    fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            base: self.base.clone(),
            token: token.map(str::to_owned),
        }
    }

    async fn run(&self, args: &[&str]) -> Run {
        let mut env = vec![("SWITCHBOARD_URL", self.base.as_str())];
        if let Some(token) = &self.token {
            env.push(("SWITCHBOARD_TOKEN", token.as_str()));
        }
        run(&env, args).await
    }
}

/// `Name: value` lines of `sign` output turned into `-H` arguments.
fn header_args(signed: &Value) -> Vec<String> {
    signed["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .flat_map(|(name, value)| {
            [
                "-H".to_owned(),
                format!("{name}: {}", value.as_str().expect("value")),
            ]
        })
        .collect()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn resources_are_managed_through_the_api_with_clear_errors() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[50]))).await;
    let sb = Sb::admin(&server);

    let out = sb
        .run(&[
            "sources",
            "create",
            "gh",
            "--verifier-kind",
            "github",
            "--secret",
            "s3cret",
        ])
        .await;
    assert!(out.ok().contains("created source gh"), "{}", out.stdout);
    let list = sb.run(&["sources", "list"]).await;
    let table = list.ok();
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("gh ") && l.contains("api") && l.contains("github")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("src ") && l.contains("config"))
    );
    let shown = sb.run(&["sources", "show", "gh", "--json"]).await.json();
    assert_eq!(shown["verifier"]["secrets"][0], "********");
    assert_eq!(shown["managed_by"], "api");

    // Destinations: `--url` is the destination's; the server comes from SWITCHBOARD_URL.
    let created = sb
        .run(&[
            "destinations",
            "create",
            "hook",
            "--url",
            &receiver.url,
            "--timeout",
            "5s",
            "--retry-schedule",
            "1s,5m",
            "--header",
            "X-Team: billing",
            "--json",
        ])
        .await
        .json();
    assert_eq!(created["url"], receiver.url.as_str());
    assert_eq!(created["retry"]["schedule"][1], "5m");
    assert_eq!(created["headers"]["X-Team"], "billing");
    let secret = sb.run(&["destinations", "secret", "hook"]).await;
    let secret = secret.ok().trim().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");

    // An update with flags only keeps the other fields and the secret.
    let updated = sb
        .run(&[
            "destinations",
            "update",
            "hook",
            "--timeout",
            "7s",
            "--json",
        ])
        .await
        .json();
    assert_eq!(updated["timeout"], "7s");
    assert_eq!(updated["url"], receiver.url.as_str());
    assert_eq!(updated["headers"]["X-Team"], "billing");
    let same = sb.run(&["destinations", "secret", "hook", "--json"]).await;
    assert_eq!(same.json()["secret"], secret.as_str());

    // Pausing and resuming; a source update with flags only keeps its (redacted) secrets.
    let paused = sb.run(&["destinations", "disable", "hook"]).await;
    assert!(
        paused.ok().contains("destination hook disabled"),
        "{}",
        paused.stdout
    );
    let list = sb.run(&["destinations", "list"]).await;
    assert!(
        list.ok()
            .lines()
            .any(|l| l.starts_with("hook ") && l.contains("disabled")),
        "{}",
        list.stdout
    );
    let resumed = sb.run(&["destinations", "enable", "hook", "--json"]).await;
    assert_eq!(resumed.json()["enabled"], true);
    let kept = sb
        .run(&[
            "sources",
            "update",
            "gh",
            "--max-body-bytes",
            "4096",
            "--json",
        ])
        .await
        .json();
    assert_eq!(kept["max_body_bytes"], 4096);
    assert_eq!(kept["verifier"]["secrets"][0], "********");
    let body = r#"{"ok":true}"#;
    let verified = reqwest::Client::new()
        .post(format!("{}/in/gh", server.base))
        .header("x-github-event", "push")
        .header("x-github-delivery", "cli-update-keeps-secret")
        .header(
            "x-hub-signature-256",
            switchboard_signatures::github::sign(b"s3cret", body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(verified.status(), 202, "the secret survived the update");

    // The server URL on the command line: `--url`, except where `--url` is the destination's.
    let token = [("SWITCHBOARD_TOKEN", ADMIN_TOKEN)];
    let list = run(&token, &["destinations", "list", "--url", &server.base]).await;
    assert!(list.ok().contains("hook"), "{}", list.stdout);
    let capped = run(
        &token,
        &[
            "destinations",
            "update",
            "hook",
            "--max-in-flight",
            "4",
            "--server",
            &server.base,
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(capped["max_in_flight"], 4);

    let route = sb
        .run(&[
            "routes",
            "create",
            "--source",
            "gh",
            "--destination",
            "hook",
            "--json",
        ])
        .await
        .json();
    assert_eq!(route["id"], "gh-hook");
    let routes = sb.run(&["routes", "list"]).await;
    assert!(
        routes
            .ok()
            .lines()
            .any(|l| l.starts_with("gh-hook") && l.contains("gh") && l.contains("hook"))
    );

    // A full JSON body works too.
    let from_data = sb
        .run(&[
            "sources",
            "create",
            "--data",
            r#"{"id": "plain", "verifier": {"kind": "none"}, "max_body_bytes": 2048}"#,
            "--json",
        ])
        .await
        .json();
    assert_eq!(from_data["max_body_bytes"], 2048);

    // Giving `--secret` replaces the secrets.
    let changed = sb
        .run(&[
            "sources",
            "update",
            "gh",
            "--secret",
            "n3w",
            "--max-body-bytes",
            "1000",
            "--json",
        ])
        .await
        .json();
    assert_eq!(changed["max_body_bytes"], 1000);
    assert_eq!(changed["verifier"]["kind"], "github");

    // Problems are printed as `error: <title>: <detail>` with field errors; exit 1.
    let invalid = sb
        .run(&[
            "destinations",
            "create",
            "bad",
            "--url",
            "ftp://example.com",
        ])
        .await;
    let stderr = invalid.fails(1);
    assert!(stderr.starts_with("error: Validation failed"), "{stderr}");
    let conflict = sb.run(&["sources", "delete", "src"]).await;
    assert!(
        conflict.fails(1).starts_with("error: Conflict: "),
        "{}",
        conflict.stderr
    );
    let in_use = sb.run(&["sources", "delete", "gh"]).await;
    assert!(in_use.fails(1).contains("Conflict"), "{}", in_use.stderr);

    assert!(
        sb.run(&["routes", "delete", "gh-hook"])
            .await
            .ok()
            .contains("deleted route gh-hook")
    );
    sb.run(&["destinations", "delete", "hook"]).await.ok();
    sb.run(&["sources", "delete", "gh"]).await.ok();
    let gone = sb.run(&["sources", "show", "gh"]).await;
    assert_eq!(gone.fails(1).trim(), "error: Not found: no source `gh`");

    // Usage errors are clap's: exit 2.
    sb.run(&["sources", "frobnicate"]).await.fails(2);
    sb.run(&["events", "list", "--status", "bogus"])
        .await
        .fails(2);
    server.stop().await;
}

#[tokio::test]
async fn send_inspect_and_replay_through_the_api() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[50]))).await;
    let sb = Sb::admin(&server);
    sb.run(&[
        "sources",
        "create",
        "gh",
        "--verifier-kind",
        "github",
        "--secret",
        "s3cret",
    ])
    .await
    .ok();
    sb.run(&["routes", "create", "--source", "gh", "--destination", "dst"])
        .await
        .ok();

    // Unsigned: the verifier's problem, exit 1.
    let body = r#"{"action":"opened","number":7}"#;
    let rejected = sb.run(&["send", "gh", "--data", body]).await;
    assert!(
        rejected
            .fails(1)
            .starts_with("error: Request not authenticated: "),
        "{}",
        rejected.stderr
    );

    // Signed with `sign`, sent with `send`: the event id, then `duplicate` for the same delivery.
    let signed = run(
        &[],
        &[
            "sign", "--scheme", "github", "--secret", "s3cret", "--data", body, "--json",
        ],
    )
    .await
    .json();
    let mut args = vec![
        "send".to_owned(),
        "gh".into(),
        "--data".into(),
        body.into(),
        "-H".into(),
        "X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
        "-H".into(),
        "X-GitHub-Event: pull_request".into(),
    ];
    args.extend(header_args(&signed));
    let sent = sb.run(&strs(&args)).await;
    let event = sent.ok().trim().to_owned();
    assert_eq!(event.len(), 36, "an event id: {event}");
    let again = sb.run(&strs(&args)).await;
    assert_eq!(again.ok().trim(), format!("{event} duplicate"));

    // Delivered, signed with the destination's Standard Webhooks secret: `verify` agrees.
    let requests = receiver.wait_for(1, Duration::from_secs(10)).await;
    let delivered = &requests[0];
    assert_eq!(delivered.body.as_ref(), body.as_bytes());
    let verified = run(
        &[],
        &[
            "verify",
            "--scheme",
            "standard-webhooks",
            "--secret",
            SECRET,
            "-H",
            &format!("webhook-id: {}", delivered.header("webhook-id")),
            "-H",
            &format!(
                "webhook-timestamp: {}",
                delivered.header("webhook-timestamp")
            ),
            "-H",
            &format!(
                "webhook-signature: {}",
                delivered.header("webhook-signature")
            ),
            "--data",
            body,
        ],
    )
    .await;
    assert_eq!(verified.ok().trim(), "valid");

    // Events: table and JSON.
    let events = sb.run(&["events", "list", "--source", "gh"]).await;
    let line = events
        .ok()
        .lines()
        .find(|l| l.starts_with(&event))
        .unwrap_or_else(|| panic!("event in {}", events.stdout))
        .to_owned();
    assert!(
        line.contains(" gh ") && line.contains("pull_request.opened"),
        "{line}"
    );
    let listed = sb.run(&["events", "list", "--json"]).await.json();
    assert_eq!(listed["items"][0]["id"], event.as_str());
    let shown = sb.run(&["events", "show", &event]).await;
    assert!(shown.ok().contains(body), "{}", shown.stdout);
    assert!(shown.stdout.contains("x-github-delivery: 72d3162e"));
    let detail = sb.run(&["events", "show", &event, "--json"]).await.json();
    assert_eq!(detail["body"], body);
    let delivery = detail["deliveries"][0]["id"]
        .as_str()
        .expect("delivery id")
        .to_owned();
    assert_eq!(delivery, delivered.header("webhook-id"));

    // Deliveries and attempts.
    let succeeded = eventually(Duration::from_secs(10), "delivery succeeded", || async {
        let page = sb
            .run(&["deliveries", "list", "--event", &event, "--json"])
            .await
            .json();
        (page["items"][0]["status"] == "succeeded").then_some(page)
    })
    .await;
    assert_eq!(succeeded["items"][0]["destination"], "dst");
    let table = sb
        .run(&["deliveries", "list", "--status", "succeeded"])
        .await;
    assert!(
        table
            .ok()
            .lines()
            .any(|l| l.starts_with(&delivery) && l.contains("succeeded")),
        "{}",
        table.stdout
    );
    let attempts = sb.run(&["attempts", &event]).await;
    assert!(
        attempts
            .ok()
            .lines()
            .any(|l| l.contains(&delivery) && l.contains("delivered") && l.contains("200")),
        "{}",
        attempts.stdout
    );
    let attempts = sb.run(&["attempts", &event, "--json"]).await.json();
    assert_eq!(attempts[0]["status_code"], 200);
    let one = sb
        .run(&["deliveries", "show", &delivery, "--json"])
        .await
        .json();
    assert_eq!(one["attempt_log"][0]["outcome"], "delivered");

    // Replay through the API: same webhook-id; an unknown delivery queues nothing (exit 3).
    let replayed = sb.run(&["replay", "--delivery", &delivery]).await;
    assert_eq!(replayed.ok().trim(), "queued 1 delivery");
    let requests = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(requests[1].header("webhook-id"), delivery);
    let nothing = sb.run(&["replay", "--delivery", "msg_unknown"]).await;
    nothing.fails(3);
    assert_eq!(nothing.stdout.trim(), "queued 0 deliveries");
    let by_event = sb
        .run(&["replay", "--event", &event, "--json"])
        .await
        .json();
    assert!(by_event["queued"].is_u64());
    server.stop().await;
}

#[tokio::test]
async fn listings_page_with_limit_cursor_and_all() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[50]))).await;
    let sb = Sb::admin(&server);
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(server.ingest_ok("src", format!(r#"{{"n":{n}}}"#)).await);
    }
    ids.reverse();
    let first = sb
        .run(&["events", "list", "--limit", "5", "--json"])
        .await
        .json();
    let got: Vec<&str> = first["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(got, ids[..5]);
    let cursor = first["next_cursor"].as_str().expect("a next cursor");
    let rest = sb
        .run(&["events", "list", "--cursor", cursor, "--json"])
        .await
        .json();
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(2));
    assert!(
        rest["next_cursor"].is_null(),
        "last page: next_cursor is null"
    );
    let all = sb.run(&["events", "list", "--all", "--json"]).await.json();
    assert_eq!(all["items"].as_array().map(Vec::len), Some(7));

    // Tables say on stderr how to continue.
    let table = sb.run(&["events", "list", "--limit", "2"]).await;
    assert_eq!(table.ok().lines().count(), 3, "{}", table.stdout);
    assert!(table.stderr.contains("--cursor"), "{}", table.stderr);
    server.stop().await;
}

#[tokio::test]
async fn tokens_scopes_and_connection_errors() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[50]))).await;
    let sb = Sb::admin(&server);

    let created = sb
        .run(&[
            "tokens", "create", "--name", "ci", "--scope", "read", "--json",
        ])
        .await
        .json();
    let token = created["token"].as_str().expect("token value").to_owned();
    let id = created["id"].as_str().expect("token id").to_owned();
    assert!(token.starts_with("sb_"), "{token}");
    let human = sb
        .run(&["tokens", "create", "--name", "deploy", "--scope", "write"])
        .await;
    assert!(
        human.ok().contains("created token tok_"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.lines().any(|l| l.starts_with("sb_")));
    let list = sb.run(&["tokens", "list"]).await;
    assert!(
        list.ok()
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("ci") && l.contains("read")),
        "{}",
        list.stdout
    );

    // A read token reads, and gets a clear 403 (exit 1) when it writes.
    let reader = sb.with_token(Some(&token));
    reader.run(&["sources", "list"]).await.ok();
    reader.run(&["events", "list"]).await.ok();
    let forbidden = reader
        .run(&["sources", "create", "x", "--verifier-kind", "none"])
        .await;
    assert_eq!(
        forbidden.fails(1).trim(),
        "error: Forbidden: this token has scope `read`; this operation needs `write`"
    );
    let forbidden = reader.run(&["tokens", "list"]).await;
    assert!(forbidden.fails(1).starts_with("error: Forbidden"));

    // No token: 401 with a hint.
    let anonymous = sb.with_token(None).run(&["sources", "list"]).await;
    let stderr = anonymous.fails(1);
    assert!(stderr.starts_with("error: Unauthorized: "), "{stderr}");
    assert!(stderr.contains("SWITCHBOARD_TOKEN"), "{stderr}");

    // Revoked tokens stop working.
    assert_eq!(
        sb.run(&["tokens", "revoke", &id]).await.ok().trim(),
        format!("revoked token {id}")
    );
    let revoked = reader.run(&["sources", "list"]).await;
    assert!(
        revoked.fails(1).contains("this token was revoked"),
        "{}",
        revoked.stderr
    );
    let again = sb.run(&["tokens", "revoke", &id]).await;
    assert!(again.fails(1).starts_with("error: Not found"));

    // Nothing listening: exit 4 with a hint about --url.
    let unreachable = run(
        &[("SWITCHBOARD_TOKEN", ADMIN_TOKEN)],
        &["--url", "http://127.0.0.1:1", "sources", "list"],
    )
    .await;
    let stderr = unreachable.fails(4);
    assert!(
        stderr.starts_with("error: cannot reach Switchboard at http://127.0.0.1:1"),
        "{stderr}"
    );
    assert!(stderr.contains("--url"), "{stderr}");
    let malformed = run(&[], &["events", "list", "--url", "not a url"]).await;
    assert!(malformed.fails(1).contains("--url"), "{}", malformed.stderr);
    server.stop().await;
}

#[tokio::test]
async fn data_dir_without_url_reads_the_store_even_when_the_server_is_down() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[50]))).await;
    let event = server.ingest_ok("src", r#"{"offline":true}"#).await;
    server
        .wait_delivery(&event, "delivered", |d| {
            d.status == switchboard_core::DeliveryStatus::Succeeded
        })
        .await;
    let online = Sb::admin(&server)
        .run(&["events", "show", &event, "--json"])
        .await
        .json();
    let dir = server.stop().await;
    let data_dir = dir.path().to_str().expect("utf-8 path");

    let offline = run(
        &[],
        &["events", "show", &event, "--json", "--data-dir", data_dir],
    )
    .await
    .json();
    assert_eq!(offline, online, "both modes print the API's JSON");
    let listed = run(&[], &["events", "list", "--data-dir", data_dir]).await;
    assert!(listed.ok().lines().any(|l| l.starts_with(&event)));
    let env = run(
        &[("SWITCHBOARD_DATA_DIR", data_dir)],
        &["deliveries", "list", "--json"],
    )
    .await
    .json();
    assert_eq!(env["items"][0]["status"], "succeeded");
    let attempts = run(&[], &["attempts", &event, "--data-dir", data_dir]).await;
    assert!(attempts.ok().contains("delivered"), "{}", attempts.stdout);
    let replay = run(&[], &["replay", "--event", &event, "--data-dir", data_dir]).await;
    assert_eq!(replay.ok().trim(), "queued 1 delivery");

    // With --url as well, the API is used: the server is down, so exit 4.
    let api = run(
        &[],
        &[
            "events",
            "list",
            "--data-dir",
            data_dir,
            "--url",
            "http://127.0.0.1:1",
        ],
    )
    .await;
    api.fails(4);
}

#[tokio::test]
async fn sign_output_verifies_for_every_scheme() {
    let body = r#"{"id":"evt_1","type":"test"}"#;
    let hmac_secret = SECRET;
    let cases: [(&str, Vec<&str>); 7] = [
        ("standard-webhooks", vec!["--secret", hmac_secret]),
        ("github", vec!["--secret", hmac_secret]),
        ("stripe", vec!["--secret", hmac_secret]),
        ("slack", vec!["--secret", hmac_secret]),
        ("shopify", vec!["--secret", hmac_secret]),
        (
            "twilio",
            vec![
                "--secret",
                "auth-token",
                "--url",
                "https://hooks.example/in/tw",
            ],
        ),
        ("sendgrid", vec![]),
    ];
    for (scheme, extra) in cases {
        let mut args = vec!["sign", "--scheme", scheme, "--data", body, "--json"];
        args.extend(extra.iter().copied());
        let signed = run(&[], &args).await.json();
        let headers = header_args(&signed);
        let mut verify = vec!["verify".to_owned(), "--scheme".into(), scheme.into()];
        verify.extend(headers);
        match scheme {
            "twilio" => verify.extend([
                "--secret".into(),
                "auth-token".into(),
                "--url".into(),
                signed["url"].as_str().expect("url with bodySHA256").into(),
            ]),
            "sendgrid" => verify.extend([
                "--public-key".into(),
                signed["public_key"].as_str().expect("public key").into(),
            ]),
            _ => verify.extend(["--secret".into(), hmac_secret.into()]),
        }
        let mut good = verify.clone();
        good.extend(["--data".into(), body.into()]);
        let valid = run(&[], &strs(&good)).await;
        assert_eq!(valid.ok().trim(), "valid", "{scheme}");
        let mut bad = verify;
        bad.extend(["--data".into(), r#"{"id":"evt_2"}"#.into(), "--json".into()]);
        let invalid = run(&[], &strs(&bad)).await;
        assert_eq!(invalid.code, 1, "{scheme}: {}", invalid.stdout);
        let verdict: Value = serde_json::from_str(&invalid.stdout).expect("JSON verdict");
        assert_eq!(verdict["valid"], false, "{scheme}");
        assert!(verdict["error"].is_string(), "{scheme}: {verdict}");
    }

    // Human output: `Name: value` lines, and the reason when it does not verify.
    let signed = run(
        &[],
        &[
            "sign",
            "--scheme",
            "slack",
            "--secret",
            "s",
            "--data",
            body,
            "--timestamp",
            "1700000000",
        ],
    )
    .await;
    let lines: Vec<&str> = signed.ok().lines().collect();
    assert_eq!(lines[0], "X-Slack-Request-Timestamp: 1700000000");
    assert!(lines[1].starts_with("X-Slack-Signature: v0="), "{lines:?}");
    let stale = run(
        &[],
        &[
            "verify", "--scheme", "slack", "--secret", "s", "-H", lines[0], "-H", lines[1],
            "--data", body,
        ],
    )
    .await;
    assert_eq!(stale.code, 1);
    assert!(
        stale
            .stdout
            .starts_with("invalid: timestamp outside the tolerance window"),
        "{}",
        stale.stdout
    );
    let then = run(
        &[],
        &[
            "verify",
            "--scheme",
            "slack",
            "--secret",
            "s",
            "-H",
            lines[0],
            "-H",
            lines[1],
            "--data",
            body,
            "--now",
            "2023-11-14T22:14:00Z",
        ],
    )
    .await;
    assert_eq!(then.ok().trim(), "valid");

    // Discord (Ed25519) verifies against the public key printed by `sign`.
    let discord = run(
        &[],
        &["sign", "--scheme", "discord", "--data", body, "--json"],
    )
    .await
    .json();
    let mut verify = vec![
        "verify".to_owned(),
        "--scheme".into(),
        "discord".into(),
        "--public-key".into(),
        discord["public_key"].as_str().expect("key").into(),
        "--data".into(),
        body.into(),
    ];
    verify.extend(header_args(&discord));
    assert_eq!(run(&[], &strs(&verify)).await.ok().trim(), "valid");

    // A missing input is an error, not a verdict.
    let missing = run(
        &[],
        &["verify", "--scheme", "github", "-H", "a: b", "--data", "x"],
    )
    .await;
    assert!(missing.fails(1).contains("--secret"), "{}", missing.stderr);
}

#[tokio::test]
async fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = run(&[], &["completions", shell]).await;
        let text = script.ok();
        assert!(text.contains("switchboard"), "{shell}");
        assert!(text.contains("destinations"), "{shell}");
    }
    run(&[], &["completions", "tcsh"]).await.fails(2);
}

/// `check-config` accepts a good file and, for each broken one, exits 1 naming the file, the
/// line and the problem, without starting anything.
#[tokio::test]
async fn check_config_points_at_each_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[sources]]\nid = \"gh\"\nverifier = { kind = \"github\", secrets = [\"s\"] }\n\n\
         [[destinations]]\nid = \"out\"\nkind = \"http\"\nurl = \"https://example.com/{{ .body.repo }}\"\n\n\
         [[routes]]\nsource = \"gh\"\ndestination = \"out\"\nfilter = '.body.action == \"opened\"'\n",
    )
    .expect("write");
    let path = good.to_string_lossy().into_owned();
    let out = run(&[], &["check-config", &path]).await;
    assert!(
        out.ok()
            .contains("ok (1 sources, 1 destinations, 1 routes)"),
        "{}",
        out.stdout
    );
    let out = run(
        &[("SWITCHBOARD_DATA_DIR", &dir.path().to_string_lossy())],
        &["check-config", &path, "--connect"],
    )
    .await;
    assert!(out.ok().contains("database answers"), "{}", out.stdout);

    // (file contents, expected `file:line` suffix, expected words in the message)
    let broken: &[(&str, &str, &str)] = &[
        ("[server]\nlisten = 5\n", ":2:10:", "invalid type"),
        (
            "[server]\nlisten_adress = \"x\"\n",
            ":2:1:",
            "unknown field",
        ),
        (
            "[[sources]]\nid = \"gh\"\nverifier = { kind = \"github\", secrets = [] }\n",
            ":2:",
            "needs at least one secret",
        ),
        (
            "[[sources]]\nid = \"gh\"\n\n[[destinations]]\nid = \"out\"\nkind = \"http\"\nurl = \"ftp://x\"\n",
            ":5:",
            "must start with http",
        ),
        (
            "[[sources]]\nid = \"gh\"\n\n[[destinations]]\nid = \"out\"\nkind = \"http\"\nurl = \"https://x/{{ .body | }}\"\n",
            ":5:",
            "placeholder",
        ),
        (
            "[[sources]]\nid = \"gh\"\n\n[[destinations]]\nid = \"out\"\nkind = \"http\"\nurl = \"https://x\"\n\n\
             [[routes]]\nsource = \"gh\"\ndestination = \"out\"\nfilter = '.body.action =='\n",
            ":11:",
            "filter",
        ),
        (
            "[[routes]]\nsource = \"nowhere\"\ndestination = \"out\"\n",
            ":3:",
            "unknown source `nowhere`",
        ),
        (
            "[[sources]]\nid = \"q\"\nkind = \"carrier-pigeon\"\n",
            ":1:",
            "unknown source kind",
        ),
    ];
    for (n, (text, position, words)) in broken.iter().enumerate() {
        let file = dir.path().join(format!("broken-{n}.toml"));
        std::fs::write(&file, text).expect("write");
        let path = file.to_string_lossy().into_owned();
        let out = run(&[], &["check-config", &path]).await;
        let stderr = out.fails(1);
        assert!(
            stderr.contains(&format!("{path}{position}")),
            "case {n}: expected `{path}{position}` in:\n{stderr}"
        );
        assert!(
            stderr.contains(words),
            "case {n}: expected `{words}` in:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn audit_list_shows_management_actions() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(
        &receiver.url,
        switchboard_core::RetryPolicy::default(),
    ))
    .await;
    let sb = Sb::admin(&server);
    let api = server.api();
    api.post(
        "/v1/destinations",
        &serde_json::json!({"id": "audited", "url": "https://audited.example/hook"}),
    )
    .await
    .ok(201);
    api.delete("/v1/destinations/audited").await;

    let listed = sb
        .run(&[
            "audit",
            "list",
            "--resource",
            "destination:audited",
            "--json",
        ])
        .await
        .json();
    let actions: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["delete", "create"]);
    let table = sb
        .run(&["audit", "list", "--since", "1h", "--action", "create"])
        .await;
    let text = table.ok();
    assert!(
        text.contains("ACTOR") && text.contains("destination:audited"),
        "{text}"
    );
    assert!(text.contains("bootstrap"), "{text}");
    // Reading the trail needs an admin token.
    let stderr = sb
        .with_token(Some("sb_not_a_token"))
        .run(&["audit", "list"])
        .await
        .fails(1)
        .to_owned();
    assert!(stderr.contains("unknown token"), "{stderr}");
}

#[tokio::test]
async fn doctor_checks_a_running_instance() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(
        &receiver.url,
        switchboard_core::RetryPolicy::default(),
    ))
    .await;
    let sb = Sb::admin(&server);
    // The delivery worker heartbeats every 2 s; wait for the first one.
    eventually(Duration::from_secs(10), "a heartbeat", || async {
        (!server.store().list_nodes().await.expect("nodes").is_empty()).then_some(())
    })
    .await;

    let checked = sb.run(&["doctor"]).await;
    let text = checked.ok();
    for line in [
        "[ ok ] reachable",
        "[ ok ] store",
        "[ ok ] migrations",
        "[ ok ] nodes       1 alive",
        "[ ok ] clock",
        "[ ok ] backlog",
        "[ ok ] api",
    ] {
        assert!(text.contains(line), "`{line}` in:\n{text}");
    }
    assert!(text.contains("] disk"), "{text}");
    let report = sb.run(&["doctor", "--json"]).await.json();
    assert_eq!(report["ok"], true);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "reachable",
            "store",
            "migrations",
            "nodes",
            "clock",
            "disk",
            "backlog",
            "api"
        ]
    );

    // A bad token fails the API checks (exit 1) but still reports what it could see.
    let refused = sb.with_token(Some("sb_wrong")).run(&["doctor"]).await;
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(
        refused.stdout.contains("[ ok ] reachable"),
        "{}",
        refused.stdout
    );
    assert!(
        refused.stdout.contains("[FAIL] api         401"),
        "{}",
        refused.stdout
    );

    // Nothing listening: exit 4.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let gone = run(
        &[("SWITCHBOARD_URL", &format!("http://127.0.0.1:{port}"))],
        &["doctor"],
    )
    .await;
    assert_eq!(gone.code, 4, "{}", gone.stdout);
    assert!(gone.stdout.contains("[FAIL] reachable"), "{}", gone.stdout);
}

#[tokio::test]
async fn example_configurations_pass_check_config() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let result = run(&[], &["check-config", path.to_str().expect("utf-8 path")]).await;
            assert!(result.ok().contains(": ok"), "{}", result.stdout);
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "switchboard.toml and production.toml at least"
    );
}

#[test]
fn the_packaged_systemd_unit_is_the_documented_one() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let unit = std::fs::read_to_string(root.join("packaging/switchboard.service")).expect("unit");
    let docs = std::fs::read_to_string(root.join("docs/deployment.md")).expect("docs");
    let body: String = unit
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let documented = docs
        .split("# /etc/systemd/system/switchboard.service\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the unit in docs/deployment.md");
    assert_eq!(
        body, documented,
        "packaging/switchboard.service and docs/deployment.md agree"
    );
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
}
