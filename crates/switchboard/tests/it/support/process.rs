//! The real `switchboard` binary as a child process, for crash and signal tests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The admin token the spawned servers accept.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running `switchboard serve`.
pub struct Process {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Process {
    /// Writes `config_toml` into `dir/switchboard.toml` and starts `switchboard serve` on an
    /// ephemeral port with `dir` as the data directory.
    pub fn spawn(dir: &Path, config_toml: &str) -> Self {
        Self::spawn_with(dir, config_toml, "127.0.0.1:0", &[])
    }

    /// [`Process::spawn`] listening on `listen` (e.g. the address of a killed node, to restart
    /// it on the same port), with extra environment variables (e.g. `SWITCHBOARD_MASTER_KEY`).
    pub fn spawn_with(dir: &Path, config_toml: &str, listen: &str, env: &[(&str, &str)]) -> Self {
        Self::start(dir, config_toml, listen, env, None)
    }

    /// [`Process::spawn`] with extra environment variables, keeping every stderr line (the
    /// logs) in the returned buffer.
    pub fn spawn_logged(
        dir: &Path,
        config_toml: &str,
        env: &[(&str, &str)],
    ) -> (Self, Arc<Mutex<Vec<String>>>) {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let process = Self::start(dir, config_toml, "127.0.0.1:0", env, Some(logs.clone()));
        (process, logs)
    }

    fn start(
        dir: &Path,
        config_toml: &str,
        listen: &str,
        env: &[(&str, &str)],
        logs: Option<Arc<Mutex<Vec<String>>>>,
    ) -> Self {
        let config = dir.join("switchboard.toml");
        std::fs::write(&config, config_toml).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir)
            .arg("--listen")
            .arg(listen)
            .env("SWITCHBOARD_LOG", "warn")
            .env("SWITCHBOARD_ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(if logs.is_some() {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("spawn switchboard");
        let stdout = child.stdout.take().expect("stdout");
        if let (Some(logs), Some(stderr)) = (logs, child.stderr.take()) {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    logs.lock().expect("logs").push(line);
                }
            });
        }
        // Own the child before anything can panic, so that it is killed on every path.
        let mut process = Self {
            child,
            base: String::new(),
        };
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.expect("read stdout");
            if let Some(url) = line
                .split_whitespace()
                .find(|w| w.starts_with("http://"))
                .filter(|_| line.contains("listening on"))
            {
                process.base = url.to_owned();
                break;
            }
        }
        assert!(
            !process.base.is_empty(),
            "switchboard exited without printing its address"
        );
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        process
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`.
    pub fn kill_hard(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("switchboard did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A config file with source `src` routed to `url`.
pub fn config_toml(url: &str, extra: &str) -> String {
    format!(
        r#"
[security]
allow_private_networks = true

[delivery]
poll_interval = "100ms"

[[sources]]
id = "src"

[[destinations]]
id = "dst"
kind = "http"
url = "{url}"
secret = "{secret}"
timeout = "5s"
retry = {{ schedule = ["200ms", "500ms", "1s", "2s"] }}

[[routes]]
source = "src"
destination = "dst"
{extra}
"#,
        secret = super::SECRET
    )
}
