//! StatsD export (`[metrics] statsd = "host:port"`): a `metrics` recorder installed next to
//! the Prometheus one (through a fanout) that aggregates in memory and sends UDP datagrams
//! every `statsd_interval`, with labels as DogStatsD tags (`|#label:value`) for Datadog agents.
//!
//! Nothing is sent per event: counters add up between flushes (sent as one `|c` delta),
//! gauges send their last value (`|g`), histograms send up to [`MAX_SAMPLES`] samples per
//! flush (`|h`, with `|@rate` when more were recorded), so the cost stays one small burst of
//! datagrams per interval whatever the load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use tokio_util::sync::CancellationToken;

/// Histogram samples kept per metric between two flushes.
pub const MAX_SAMPLES: usize = 512;
/// Largest datagram sent (fits a 1500-byte MTU with IP and UDP headers).
const MAX_DATAGRAM: usize = 1400;

/// One metric's state between flushes.
enum Cell {
    Counter(AtomicU64),
    Gauge(AtomicU64),
    Histogram(Mutex<Samples>),
}

#[derive(Default)]
struct Samples {
    kept: Vec<f64>,
    seen: u64,
}

struct Entry {
    /// `prefix` + name, and the tag suffix (`|#k:v,…` or empty), rendered once.
    name: String,
    tags: String,
    cell: Cell,
}

impl CounterFn for Entry {
    fn increment(&self, value: u64) {
        if let Cell::Counter(n) = &self.cell {
            n.fetch_add(value, Ordering::Relaxed);
        }
    }

    fn absolute(&self, value: u64) {
        if let Cell::Counter(n) = &self.cell {
            n.store(value, Ordering::Relaxed);
        }
    }
}

impl GaugeFn for Entry {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        if let Cell::Gauge(bits) = &self.cell {
            bits.store(value.to_bits(), Ordering::Relaxed);
        }
    }
}

impl HistogramFn for Entry {
    fn record(&self, value: f64) {
        if let Cell::Histogram(samples) = &self.cell {
            let mut samples = samples.lock().unwrap_or_else(|p| p.into_inner());
            samples.seen += 1;
            if samples.kept.len() < MAX_SAMPLES {
                samples.kept.push(value);
            }
        }
    }
}

impl Entry {
    fn update(&self, f: impl Fn(f64) -> f64) {
        if let Cell::Gauge(bits) = &self.cell {
            let _ = bits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(f(f64::from_bits(old)).to_bits())
            });
        }
    }

    /// The lines this metric contributes to a flush (and resets what a flush consumes).
    fn drain(&self, out: &mut Vec<String>) {
        match &self.cell {
            Cell::Counter(n) => {
                let delta = n.swap(0, Ordering::Relaxed);
                if delta > 0 {
                    out.push(format!("{}:{delta}|c{}", self.name, self.tags));
                }
            }
            Cell::Gauge(bits) => {
                let value = f64::from_bits(bits.load(Ordering::Relaxed));
                out.push(format!("{}:{value}|g{}", self.name, self.tags));
            }
            Cell::Histogram(samples) => {
                let taken = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
                let rate = if taken.seen as usize > taken.kept.len() && taken.seen > 0 {
                    format!("|@{:.4}", taken.kept.len() as f64 / taken.seen as f64)
                } else {
                    String::new()
                };
                for value in taken.kept {
                    out.push(format!("{}:{value}|h{rate}{}", self.name, self.tags));
                }
            }
        }
    }
}

/// The recorder: a registry of metrics by key.
pub struct StatsdRecorder {
    prefix: String,
    entries: Mutex<HashMap<Key, Arc<Entry>>>,
}

impl StatsdRecorder {
    /// A recorder naming metrics `{prefix}{name}`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entry(&self, key: &Key, make: fn() -> Cell) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.get(key) {
            return entry.clone();
        }
        let tags: Vec<String> = key
            .labels()
            .map(|l| format!("{}:{}", clean(l.key()), clean(l.value())))
            .collect();
        let entry = Arc::new(Entry {
            name: format!("{}{}", self.prefix, clean(key.name())),
            tags: if tags.is_empty() {
                String::new()
            } else {
                format!("|#{}", tags.join(","))
            },
            cell: make(),
        });
        entries.insert(key.clone(), entry.clone());
        entry
    }

    /// Every line due now, counters and histograms reset.
    pub fn drain(&self) -> Vec<String> {
        let entries: Vec<Arc<Entry>> = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut lines = Vec::new();
        for entry in entries {
            entry.drain(&mut lines);
        }
        lines
    }
}

/// StatsD's separators cannot appear in names and tags.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ':' | '|' | '#' | ',' | '@' | '\n' | '\r' | ' ' => '_',
            c => c,
        })
        .collect()
}

impl Recorder for StatsdRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.entry(key, || Cell::Counter(AtomicU64::new(0))))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.entry(key, || Cell::Gauge(AtomicU64::new(0f64.to_bits()))))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.entry(key, || Cell::Histogram(Mutex::default())))
    }
}

/// Lines packed into datagrams of at most [`MAX_DATAGRAM`] bytes (newline-separated).
pub fn pack(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in lines {
        if !current.is_empty() && current.len() + 1 + line.len() > MAX_DATAGRAM {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Sends `recorder`'s metrics to `target` every `interval` until `shutdown`, then once more.
/// Send errors are logged once per run of failures: the agent may be restarting.
pub async fn flush_loop(
    recorder: Arc<StatsdRecorder>,
    target: String,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let socket = match bind_for(&target).await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::error!(%error, target = %target, "StatsD export disabled: cannot reach the agent");
            return;
        }
    };
    let mut failing = false;
    loop {
        let stop = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(interval) => false,
        };
        for datagram in pack(&recorder.drain()) {
            match socket.send(datagram.as_bytes()).await {
                Ok(_) => failing = false,
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, target = %target, "could not send metrics to StatsD");
                }
                Err(_) => {}
            }
        }
        if stop {
            return;
        }
    }
}

async fn bind_for(target: &str) -> std::io::Result<tokio::net::UdpSocket> {
    let addr = tokio::net::lookup_host(target)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))?;
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = tokio::net::UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_between_flushes() {
        let recorder = StatsdRecorder::new("sb.");
        let meta = Metadata::new("t", metrics::Level::INFO, None);
        let key = Key::from_parts("requests_total", vec![metrics::Label::new("source", "a|b")]);
        let counter = recorder.register_counter(&key, &meta);
        counter.increment(2);
        recorder.register_counter(&key, &meta).increment(3);
        let gauge = recorder.register_gauge(&Key::from_name("nodes"), &meta);
        gauge.set(2.0);
        gauge.increment(1.0);
        let histogram = recorder.register_histogram(&Key::from_name("latency"), &meta);
        for _ in 0..(MAX_SAMPLES * 2) {
            histogram.record(0.5);
        }
        let mut lines = recorder.drain();
        lines.sort();
        assert!(lines.contains(&"sb.requests_total:5|c|#source:a_b".to_owned()));
        assert!(lines.contains(&"sb.nodes:3|g".to_owned()));
        let samples: Vec<_> = lines
            .iter()
            .filter(|l| l.starts_with("sb.latency:"))
            .collect();
        assert_eq!(samples.len(), MAX_SAMPLES);
        assert_eq!(samples[0], "sb.latency:0.5|h|@0.5000");
        // Counters and histograms restart; gauges repeat.
        let again = recorder.drain();
        assert_eq!(again, vec!["sb.nodes:3|g".to_owned()]);
    }

    #[test]
    fn packs_lines_into_bounded_datagrams() {
        let lines: Vec<String> = (0..100)
            .map(|i| format!("m{i}:{}|c", "9".repeat(40)))
            .collect();
        let datagrams = pack(&lines);
        assert!(datagrams.len() > 1);
        assert!(datagrams.iter().all(|d| d.len() <= MAX_DATAGRAM));
        let rejoined: Vec<&str> = datagrams.iter().flat_map(|d| d.split('\n')).collect();
        assert_eq!(rejoined.len(), 100);
    }
}
