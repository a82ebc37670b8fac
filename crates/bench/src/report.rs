//! Output (a readable table, plus one JSON line per measurement with `--json`) and process
//! resource readings from `/proc/self`.

use std::time::Duration;

use serde_json::Value;

/// Where results go. Without `--json` the table goes to stdout; with it, stdout carries only the
/// JSON lines (machine-readable) and the table moves to stderr.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Emit JSON lines.
    pub json: bool,
}

impl Output {
    /// Prints a line of the human-readable report.
    pub fn line(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    /// Emits one measurement as a JSON line (with `--json` only).
    pub fn record(&self, value: &Value) {
        if self.json {
            println!("{value}");
        }
    }
}

/// Milliseconds with two decimals, from microseconds.
pub fn ms(micros: u32) -> String {
    format!("{:.2}", f64::from(micros) / 1000.0)
}

/// Memory of this process (server and load generator together), in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Resident set size now (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size so far (`VmHWM`).
    pub peak_kib: u64,
}

impl Memory {
    /// Reads `/proc/self/status`; zeros where unavailable.
    pub fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        Self {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        }
    }
}

/// MiB with one decimal, from KiB.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// CPU time used by this process so far (user + system, all threads).
pub fn cpu_time() -> Duration {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// CPU time used so far by each of the processes `pids` that is still alive.
pub fn cpu_time_of(pids: &[u32]) -> Vec<(u32, Duration)> {
    pids.iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((*pid, stat_cpu(&stat)))
        })
        .collect()
}

/// User + system time from the text of a `/proc/<pid>/stat`.
fn stat_cpu(stat: &str) -> Duration {
    // Fields 14 and 15, counted after the parenthesised command name (which may contain
    // spaces). Clock ticks are 100 per second on every mainstream Linux build.
    const TICKS_PER_SECOND: u64 = 100;
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // `rest` starts at field 3 (state), so fields 14/15 are at indices 11/12.
    let total = ticks(11) + ticks(12);
    Duration::from_millis(total * 1000 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_readings_are_plausible() {
        let memory = Memory::read();
        assert!(memory.rss_kib > 0 && memory.peak_kib >= memory.rss_kib);
        let before = cpu_time();
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(100) {
            std::hint::black_box(spin.elapsed());
        }
        assert!(cpu_time() > before);
    }

    #[test]
    fn units() {
        assert_eq!(ms(1234), "1.23");
        assert_eq!(mib(2048), "2.0");
    }
}
