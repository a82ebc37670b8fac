//! `switchboard doctor`: checks a running instance and prints a checklist — reachable, store,
//! API token, schema migrations, nodes heartbeating, clock skew against the server's `Date`
//! header, free space of the SQLite data directory, and the delivery backlog. Exit 0 when
//! nothing failed (warnings allowed), 1 when a check failed, 4 when the server is unreachable.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;

use super::output::{outln, print_json};
use super::{Ctx, EXIT_ERROR, EXIT_UNREACHABLE};

/// Clock skew up to this is fine.
const SKEW_OK: Duration = Duration::from_secs(5);
/// Clock skew beyond this fails (signature tolerances are ±300 s; leases and heartbeats assume
/// clocks within seconds).
const SKEW_FAIL: Duration = Duration::from_secs(60);
/// Free space below this share of the file system is a warning…
const DISK_WARN_SHARE: f64 = 0.10;
/// …and below this share a failure.
const DISK_FAIL_SHARE: f64 = 0.02;

/// `switchboard doctor`
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Worth a look; not a failure.
    Warn,
    /// Broken.
    Fail,
    /// Not checked (an earlier check failed, or it does not apply).
    Skip,
}

/// One line of the checklist.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
}

#[derive(Default)]
struct Checklist(Vec<Check>);

impl Checklist {
    fn add(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.0.push(Check {
            name,
            status,
            detail: detail.into(),
        });
    }

    fn failed(&self) -> bool {
        self.0.iter().any(|c| c.status == Status::Fail)
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}

/// Judges the skew between the server's `Date` and our clock at the response.
pub fn judge_skew(server: SystemTime, local: SystemTime) -> (Status, String) {
    let (skew, ahead) = match server.duration_since(local) {
        Ok(d) => (d, "ahead of"),
        Err(e) => (e.duration(), "behind"),
    };
    // `Date` has one-second resolution: a second of difference is rounding.
    let secs = skew.as_secs();
    let detail = format!("the server's clock is {secs} s {ahead} this machine's (Date header)");
    let status = if skew <= SKEW_OK {
        Status::Ok
    } else if skew <= SKEW_FAIL {
        Status::Warn
    } else {
        Status::Fail
    };
    (status, detail)
}

/// Judges free space.
pub fn judge_disk(available: u64, total: u64) -> Status {
    if total == 0 {
        return Status::Warn;
    }
    let share = available as f64 / total as f64;
    if share < DISK_FAIL_SHARE {
        Status::Fail
    } else if share < DISK_WARN_SHARE {
        Status::Warn
    } else {
        Status::Ok
    }
}

/// Runs the checks.
pub async fn run(ctx: &Ctx, _args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let base = ctx.remote.url.trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("switchboard-cli/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let mut list = Checklist::default();
    let unreachable = check(&http, &base, ctx.remote.token.as_deref(), &mut list).await;
    if ctx.json {
        print_json(&serde_json::json!({
            "url": base,
            "ok": !list.failed(),
            "checks": list.0,
        }));
    } else {
        outln!("Switchboard at {base}");
        for c in &list.0 {
            let mark = match c.status {
                Status::Ok => " ok ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            outln!("[{mark}] {:<11} {}", c.name, c.detail);
        }
    }
    Ok(if unreachable {
        ExitCode::from(EXIT_UNREACHABLE)
    } else if list.failed() {
        ExitCode::from(EXIT_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

/// Fills `list`; returns whether the server was unreachable.
async fn check(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    list: &mut Checklist,
) -> bool {
    const LATER: [&str; 5] = ["migrations", "nodes", "clock", "disk", "backlog"];
    let skip_rest = |list: &mut Checklist, why: &str| {
        for name in LATER {
            list.add(name, Status::Skip, why);
        }
    };
    let started = Instant::now();
    match http.get(format!("{base}/healthz")).send().await {
        Ok(r) if r.status().is_success() => list.add(
            "reachable",
            Status::Ok,
            format!("answered in {} ms", started.elapsed().as_millis()),
        ),
        Ok(r) => {
            list.add(
                "reachable",
                Status::Fail,
                format!("/healthz answered {}", r.status()),
            );
            list.add("store", Status::Skip, "not checked");
            skip_rest(list, "not checked");
            list.add("api", Status::Skip, "not checked");
            return false;
        }
        Err(error) => {
            let why = if error.is_connect() {
                "cannot connect (is `switchboard serve` running there? --url / SWITCHBOARD_URL)"
                    .to_owned()
            } else {
                format!("request failed: {error}")
            };
            list.add("reachable", Status::Fail, why);
            list.add("store", Status::Skip, "not checked");
            skip_rest(list, "not checked");
            list.add("api", Status::Skip, "not checked");
            return true;
        }
    }
    match http.get(format!("{base}/readyz")).send().await {
        Ok(r) if r.status().is_success() => list.add("store", Status::Ok, "ready"),
        Ok(r) => list.add(
            "store",
            Status::Fail,
            format!(
                "/readyz answered {}: the database is not reachable",
                r.status()
            ),
        ),
        Err(error) => list.add("store", Status::Fail, format!("/readyz failed: {error}")),
    }

    let mut request = http.get(format!("{base}/v1/system"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(error) => {
            skip_rest(list, "needs the API");
            list.add("api", Status::Fail, format!("/v1/system failed: {error}"));
            return false;
        }
    };
    let status = response.status();
    let date = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let received = SystemTime::now();
    if !status.is_success() {
        skip_rest(list, "needs the API");
        let why = match status.as_u16() {
            401 => "401: pass a valid token (--token / SWITCHBOARD_TOKEN) to check the rest".into(),
            403 => "403: the token needs the read scope".into(),
            _ => format!("/v1/system answered {status}"),
        };
        list.add("api", Status::Fail, why);
        return false;
    }
    let parsed = match response.bytes().await {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    let report: Value = match parsed {
        Ok(v) => v,
        Err(error) => {
            skip_rest(list, "needs the API");
            list.add(
                "api",
                Status::Fail,
                format!("/v1/system is not JSON: {error}"),
            );
            return false;
        }
    };

    // Migrations.
    let version = report["schema_version"].as_i64().unwrap_or(0);
    let latest = report["schema_latest"].as_i64().unwrap_or(0);
    let backend = report["backend"].as_str().unwrap_or("?");
    if version == latest {
        let mut detail = format!("{backend} schema at version {version}, the server's newest");
        let status = if latest != switchboard_store::SCHEMA_LATEST {
            detail.push_str(&format!(
                "; this CLI knows version {} (a different build)",
                switchboard_store::SCHEMA_LATEST
            ));
            Status::Warn
        } else {
            Status::Ok
        };
        list.add("migrations", status, detail);
    } else {
        list.add(
            "migrations",
            Status::Fail,
            format!("{backend} schema at version {version}, the server expects {latest}"),
        );
    }

    // Nodes.
    let nodes = report["nodes"].as_array().cloned().unwrap_or_default();
    let alive: Vec<&Value> = nodes.iter().filter(|n| n["alive"] == true).collect();
    let silent = nodes.len() - alive.len();
    let names: Vec<String> = alive
        .iter()
        .map(|n| {
            format!(
                "{} (seen {} ms ago)",
                n["id"].as_str().unwrap_or("?"),
                n["last_seen_ms_ago"].as_i64().unwrap_or(0)
            )
        })
        .collect();
    if alive.is_empty() {
        list.add(
            "nodes",
            Status::Fail,
            "no node's delivery worker has heartbeat in the last 10 s",
        );
    } else {
        let mut detail = format!("{} alive: {}", alive.len(), names.join(", "));
        let status = if silent > 0 {
            detail.push_str(&format!("; {silent} silent (stopped or crashed)"));
            Status::Warn
        } else {
            Status::Ok
        };
        list.add("nodes", status, detail);
    }

    // Clock.
    match date {
        Some(server) => {
            let (status, detail) = judge_skew(server, received);
            list.add("clock", status, detail);
        }
        None => list.add("clock", Status::Warn, "the response had no Date header"),
    }

    // Disk.
    match report["disk"].as_object() {
        Some(disk) => {
            let available = disk["available_bytes"].as_u64().unwrap_or(0);
            let total = disk["total_bytes"].as_u64().unwrap_or(0);
            let share = if total > 0 {
                100.0 * available as f64 / total as f64
            } else {
                0.0
            };
            list.add(
                "disk",
                judge_disk(available, total),
                format!(
                    "{}: {} free of {} ({share:.0}%)",
                    disk["path"].as_str().unwrap_or("?"),
                    gib(available),
                    gib(total)
                ),
            );
        }
        None => list.add(
            "disk",
            Status::Skip,
            "PostgreSQL: watch the database server's disk",
        ),
    }

    // Backlog.
    let backlog = &report["backlog"];
    let count = |key: &str| backlog[key].as_u64().unwrap_or(0);
    let detail = format!(
        "{} pending, {} in flight, {} failed (dead letters)",
        count("pending"),
        count("in_flight"),
        count("failed")
    );
    list.add(
        "backlog",
        if count("failed") > 0 {
            Status::Warn
        } else {
            Status::Ok
        },
        detail,
    );
    list.add(
        "api",
        Status::Ok,
        format!(
            "Switchboard {} on node {}",
            report["version"].as_str().unwrap_or("?"),
            report["node"].as_str().unwrap_or("?")
        ),
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_and_disk_thresholds() {
        let now = SystemTime::now();
        assert_eq!(judge_skew(now, now).0, Status::Ok);
        assert_eq!(
            judge_skew(now + Duration::from_secs(20), now).0,
            Status::Warn
        );
        let (status, detail) = judge_skew(now, now + Duration::from_secs(120));
        assert_eq!(status, Status::Fail);
        assert!(detail.contains("120 s behind"), "{detail}");
        assert_eq!(judge_disk(50, 100), Status::Ok);
        assert_eq!(judge_disk(5, 100), Status::Warn);
        assert_eq!(judge_disk(1, 100), Status::Fail);
        assert_eq!(judge_disk(0, 0), Status::Warn);
    }
}
