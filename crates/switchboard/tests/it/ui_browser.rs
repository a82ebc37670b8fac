//! The dashboard in real browsers against a real server and receiver: headless Chromium driven
//! by `playwright-core` (`tests/ui/dashboard.test.mjs`) and headless Firefox ESR driven over
//! WebDriver BiDi by `puppeteer-core` (`tests/ui/firefox.test.mjs`).
//!
//! Each runs when `SWITCHBOARD_TEST_BROWSER=1` (then a missing browser or `node_modules` fails
//! the test), or when its parts are simply present; otherwise it prints SKIPPED. Screenshots go
//! to `$CARGO_TARGET_DIR/ui-screenshots` (or `target/ui-screenshots`).

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

/// Serializes the browser tests.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether to run: the parts are present, or `SWITCHBOARD_TEST_BROWSER=1` demands them.
fn should_run(test: &str, browser: &std::path::Path, module: &str) -> bool {
    let required = std::env::var("SWITCHBOARD_TEST_BROWSER").is_ok_and(|v| v == "1");
    let ready = browser.exists() && project().join("node_modules").join(module).exists();
    if !ready {
        assert!(
            !required,
            "SWITCHBOARD_TEST_BROWSER=1 but {} or {}/node_modules/{module} is missing (apt-get install chromium firefox-esr; npm ci)",
            browser.display(),
            project().display()
        );
        println!(
            "SKIPPED {test}: set SWITCHBOARD_TEST_BROWSER=1 with {} installed and `npm ci` in tests/ui",
            browser.display()
        );
    }
    ready
}

/// Starts a server whose receiver refuses its first delivery (dead-lettered: no retries) and
/// accepts the rest, runs `script` against it, and checks that it passed.
async fn run_script(
    script: &'static str,
    passed: &'static str,
    browser_env: (&'static str, PathBuf),
) {
    // One browser at a time: two at once on a small machine only make both slow.
    let _one_at_a_time = BROWSER.lock().await;
    let receiver = Receiver::scripted(|n| Reply::Status(if n == 0 { 500 } else { 200 })).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let base = server.base.clone();
    let shots = screenshots();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .current_dir(project())
            .env("SWITCHBOARD_URL", base)
            .env("SWITCHBOARD_TOKEN", process::ADMIN_TOKEN)
            .env("SCREENSHOTS", &shots)
            .env(browser_env.0, browser_env.1)
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
        "{script} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(passed), "{stdout}");
    assert_eq!(receiver.requests().len(), 2, "one failure, one replay");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_browser_end_to_end_in_headless_chromium() {
    if !should_run(
        "ui_browser_end_to_end_in_headless_chromium",
        &chromium(),
        "playwright-core",
    ) {
        return;
    }
    run_script(
        "dashboard.test.mjs",
        "dashboard browser test passed",
        ("CHROMIUM", chromium()),
    )
    .await;
    assert!(screenshots().join("overview.png").exists());
}

fn firefox() -> PathBuf {
    std::env::var_os("FIREFOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/firefox-esr"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_browser_end_to_end_in_headless_firefox() {
    if !should_run(
        "ui_browser_end_to_end_in_headless_firefox",
        &firefox(),
        "puppeteer-core",
    ) {
        return;
    }
    run_script(
        "firefox.test.mjs",
        "dashboard firefox test passed",
        ("FIREFOX", firefox()),
    )
    .await;
    assert!(screenshots().join("firefox-delivery-replayed.png").exists());
}
