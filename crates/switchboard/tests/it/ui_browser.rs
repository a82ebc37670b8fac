//! The dashboard in a real browser: headless Chromium driven by `playwright-core`
//! (`tests/ui/dashboard.test.mjs`) against a real server and receiver.
//!
//! Runs when `SWITCHBOARD_TEST_BROWSER=1` (then a missing Chromium or `node_modules` fails the
//! test), or when both are simply present; otherwise prints SKIPPED. Screenshots of every page
//! go to `$CARGO_TARGET_DIR/ui-screenshots` (or `target/ui-screenshots`).

use std::path::PathBuf;
use std::process::Command;

use crate::support::{Receiver, Reply, TestServer, config_to, process, schedule_ms};

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ui")
}

fn screenshots() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("ui-screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_browser_end_to_end_in_headless_chromium() {
    let required = std::env::var("SWITCHBOARD_TEST_BROWSER").is_ok_and(|v| v == "1");
    let ready = chromium().exists() && project().join("node_modules/playwright-core").exists();
    if !ready {
        assert!(
            !required,
            "SWITCHBOARD_TEST_BROWSER=1 but {} or {}/node_modules is missing (apt-get install chromium; npm ci)",
            chromium().display(),
            project().display()
        );
        println!(
            "SKIPPED ui_browser_end_to_end_in_headless_chromium: set SWITCHBOARD_TEST_BROWSER=1 with chromium and `npm ci` in tests/ui"
        );
        return;
    }
    // The first delivery fails (and is dead-lettered: no retries); replays succeed.
    let receiver = Receiver::scripted(|n| Reply::Status(if n == 0 { 500 } else { 200 })).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let base = server.base.clone();
    let shots = screenshots();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("dashboard.test.mjs")
            .current_dir(project())
            .env("SWITCHBOARD_URL", base)
            .env("SWITCHBOARD_TOKEN", process::ADMIN_TOKEN)
            .env("SCREENSHOTS", &shots)
            .env("CHROMIUM", chromium())
            .output()
    })
    .await
    .expect("join")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("dashboard browser test passed"));
    assert!(screenshots().join("overview.png").exists());
    assert_eq!(receiver.requests().len(), 2, "one failure, one replay");
    server.stop().await;
}
