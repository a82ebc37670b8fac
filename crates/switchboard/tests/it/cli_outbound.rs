//! The outbound-webhooks CLI (`tenants`, `event-types`, `endpoints`, `publish`) as a user runs
//! it: the real binary against a real in-process server and a loopback receiver.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::Config;
use tokio::io::AsyncWriteExt as _;

use crate::support::process::ADMIN_TOKEN;
use crate::support::{Receiver, TestServer};

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("stdout is JSON ({e}):\n{}", self.stdout))
    }

    fn fails(&self, code: i32) -> &str {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        &self.stderr
    }
}

/// The CLI with the server's URL and the admin token in the environment.
struct Sb {
    base: String,
}

impl Sb {
    async fn run(&self, args: &[&str]) -> Run {
        self.run_with(&[("SWITCHBOARD_URL", &self.base)], args, None)
            .await
    }

    /// Runs with `env` (plus the token, minus the caller's settings) and `stdin`.
    async fn run_with(&self, env: &[(&str, &str)], args: &[&str], stdin: Option<&[u8]>) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        for name in [
            "SWITCHBOARD_URL",
            "SWITCHBOARD_DATA_DIR",
            "SWITCHBOARD_CONFIG",
        ] {
            command.env_remove(name);
        }
        let mut child = command
            .args(args)
            .env("SWITCHBOARD_TOKEN", ADMIN_TOKEN)
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run switchboard");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input).await.expect("write stdin");
        }
        let output = child.wait_with_output().await.expect("wait switchboard");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

fn outbound_config() -> Config {
    let mut config = Config::default();
    config.security.allow_private_networks = true;
    config.delivery.poll_interval = Duration::from_millis(100);
    config.server.admin_token = Some(ADMIN_TOKEN.into());
    config
}

#[tokio::test]
async fn outbound_webhooks_are_managed_and_published_from_the_cli() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(outbound_config()).await;
    let sb = Sb {
        base: server.base.clone(),
    };
    let dir = tempfile::tempdir().expect("temp dir");

    // Tenants.
    let created = sb
        .run(&[
            "tenants",
            "create",
            "acme",
            "--name",
            "Acme Corp",
            "--metadata",
            "plan=pro",
        ])
        .await;
    assert!(
        created.ok().starts_with("created tenant acme"),
        "{}",
        created.stdout
    );
    let tenants = sb.run(&["tenants", "list"]).await;
    assert!(
        tenants
            .ok()
            .lines()
            .any(|l| l.starts_with("acme ") && l.contains("Acme Corp") && l.ends_with("plan=pro")),
        "{}",
        tenants.stdout
    );
    let shown = sb.run(&["tenants", "show", "acme", "--json"]).await.json();
    assert_eq!(shown["metadata"], json!({"plan": "pro"}));

    // An event type with a schema from a file.
    let schema = dir.path().join("invoice.schema.json");
    std::fs::write(
        &schema,
        json!({"type": "object", "required": ["invoice", "amount"], "properties": {
            "invoice": {"type": "string"}, "amount": {"type": "integer", "minimum": 0}}})
        .to_string(),
    )
    .expect("write schema");
    let schema_arg = schema.to_str().expect("utf8 path");
    sb.run(&[
        "event-types",
        "create",
        "invoice.paid",
        "--description",
        "An invoice was paid",
        "--schema",
        schema_arg,
    ])
    .await
    .ok();
    let types = sb.run(&["event-types", "list"]).await;
    assert!(
        types
            .ok()
            .lines()
            .any(|l| l.starts_with("invoice.paid ") && l.contains(" yes ")),
        "{}",
        types.stdout
    );
    let shown = sb
        .run(&["event-types", "show", "invoice.paid", "--json"])
        .await
        .json();
    assert_eq!(shown["schema"]["required"], json!(["invoice", "amount"]));

    // An endpoint: `--endpoint-url` is the endpoint's, `--url` the server's.
    let endpoint = sb
        .run_with(
            &[],
            &[
                "endpoints",
                "create",
                "--tenant",
                "acme",
                "--endpoint-url",
                &receiver.url,
                "--type",
                "invoice.paid",
                "--header",
                "X-Team: billing",
                "--url",
                &server.base,
                "--json",
            ],
            None,
        )
        .await
        .json();
    let id = endpoint["id"].as_str().expect("id").to_owned();
    let secret = endpoint["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(endpoint["headers"], json!({"X-Team": "billing"}));
    // In text mode the secret is printed, with a note that it is shown only there.
    let text = sb
        .run(&[
            "endpoints",
            "create",
            "--tenant",
            "acme",
            "--endpoint-url",
            "http://127.0.0.1:9/eu",
            "--channel",
            "eu",
            "--disabled",
        ])
        .await;
    assert!(
        text.ok()
            .lines()
            .any(|l| l.starts_with("secret ") && l.contains("whsec_")),
        "{}",
        text.stdout
    );
    assert!(text.stderr.contains("endpoints secret"), "{}", text.stderr);

    let listed = sb.run(&["endpoints", "list", "--tenant", "acme"]).await;
    let table = listed.ok();
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with(&format!("{id} "))
            && l.contains(&receiver.url)
            && l.contains(" true ")
            && l.contains("invoice.paid")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains(" false ") && l.contains(" eu ")),
        "{table}"
    );
    let listed = sb
        .run(&["endpoints", "list", "--tenant", "acme", "--json"])
        .await
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert!(listed[0].get("secret").is_none(), "listings hide secrets");

    // Publish: a valid payload reaches the receiver; a repeat is a duplicate.
    let publish = [
        "publish",
        "--tenant",
        "acme",
        "--type",
        "invoice.paid",
        "--payload",
        r#"{"invoice": "in_1", "amount": 5}"#,
        "--idempotency-key",
        "inv-1",
        "--header",
        "X-Request-Tag=t1",
    ];
    let event_id = sb.run(&publish).await.ok().trim().to_owned();
    assert!(
        !event_id.is_empty() && !event_id.contains(' '),
        "{event_id}"
    );
    let requests = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&requests[0].body).expect("json"),
        json!({"invoice": "in_1", "amount": 5})
    );
    assert_eq!(requests[0].header("x-team"), "billing");
    assert_eq!(requests[0].header("x-request-tag"), "t1");
    let repeat = sb.run(&publish).await;
    assert_eq!(repeat.ok().trim(), format!("{event_id} duplicate"));
    // From stdin, with `--json`.
    let published = sb
        .run_with(
            &[("SWITCHBOARD_URL", &server.base)],
            &[
                "publish",
                "--tenant",
                "acme",
                "--type",
                "invoice.paid",
                "--payload-file",
                "-",
                "--json",
            ],
            Some(br#"{"invoice": "in_2", "amount": 7}"#),
        )
        .await
        .json();
    assert_eq!(published["endpoints"], 1);
    assert_eq!(published["duplicate"], false);

    // A schema violation: exit 1 with the validation errors on stderr.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"invoice": 7, "amount": -1}"#).expect("write payload");
    let refused = sb
        .run(&[
            "publish",
            "--tenant",
            "acme",
            "--type",
            "invoice.paid",
            "--payload-file",
            bad.to_str().expect("utf8 path"),
        ])
        .await;
    let stderr = refused.fails(1);
    assert!(stderr.starts_with("error: Validation failed"), "{stderr}");
    assert!(
        stderr.contains("does not match the schema of `invoice.paid`"),
        "{stderr}"
    );
    assert!(stderr.contains("  - payload.amount: "), "{stderr}");
    assert!(refused.stdout.is_empty(), "{}", refused.stdout);

    // Health, as a table and as the API's JSON.
    let health = sb
        .run(&["endpoints", "health", "--tenant", "acme", &id])
        .await;
    let mut lines = health.ok().lines();
    assert!(
        lines.next().is_some_and(|l| l.starts_with("CIRCUIT")),
        "{}",
        health.stdout
    );
    assert!(
        lines.next().is_some_and(|l| l.starts_with("closed ")),
        "{}",
        health.stdout
    );
    let health = sb
        .run(&["endpoints", "health", "--tenant", "acme", &id, "--json"])
        .await
        .json();
    assert_eq!(health["circuit_state"], "closed");
    assert_eq!(health["disabled"], false);

    // Secrets: read, rotate with a grace period, read again.
    let current = sb
        .run(&["endpoints", "secret", "--tenant", "acme", &id])
        .await;
    assert_eq!(current.ok().trim(), secret);
    let rotated = sb
        .run(&[
            "endpoints",
            "rotate-secret",
            "--tenant",
            "acme",
            &id,
            "--grace",
            "1h",
        ])
        .await;
    let new_secret = rotated.ok().trim().to_owned();
    assert!(
        new_secret.starts_with("whsec_") && new_secret != secret,
        "{new_secret}"
    );
    assert!(
        rotated.stderr.contains("also signs until"),
        "{}",
        rotated.stderr
    );
    let secrets = sb
        .run(&["endpoints", "secret", "--tenant", "acme", &id, "--json"])
        .await
        .json();
    assert_eq!(secrets["secret"], new_secret.as_str());
    assert_eq!(secrets["previous"].as_array().map(Vec::len), Some(1));

    // Update changes only what is given.
    let updated = sb
        .run(&[
            "endpoints",
            "update",
            "--tenant",
            "acme",
            &id,
            "--rate-limit",
            "5",
            "--disable",
            "--json",
        ])
        .await
        .json();
    assert_eq!(updated["rate_limit"], 5.0);
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["event_types"], json!(["invoice.paid"]));
    let holds = sb
        .run(&["endpoints", "holds", "--tenant", "acme", &id])
        .await;
    assert!(holds.ok().contains("(none)"), "{}", holds.stdout);

    // Unknown tenants: the API's 404, exit 1.
    let unknown = sb.run(&["endpoints", "list", "--tenant", "nobody"]).await;
    assert_eq!(
        unknown.fails(1).trim(),
        "error: Not found: no tenant `nobody`"
    );
    let unknown = sb
        .run(&[
            "publish",
            "--tenant",
            "nobody",
            "--type",
            "x",
            "--payload",
            "{}",
        ])
        .await;
    assert!(
        unknown.fails(1).contains("no tenant `nobody`"),
        "{}",
        unknown.stderr
    );
    // A payload is required: a usage error.
    sb.run(&["publish", "--tenant", "acme", "--type", "x"])
        .await
        .fails(2);

    // Deleting.
    let gone = sb
        .run(&["endpoints", "delete", "--tenant", "acme", &id, "--json"])
        .await
        .json();
    assert_eq!(gone, json!({"id": id, "deleted": true}));
    assert!(
        sb.run(&["event-types", "delete", "invoice.paid"])
            .await
            .ok()
            .contains("deleted event type invoice.paid")
    );
    assert!(
        sb.run(&["tenants", "delete", "acme"])
            .await
            .ok()
            .contains("deleted tenant acme")
    );
    server.stop().await;
}
