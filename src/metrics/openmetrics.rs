//! The `rwsgi-metrics` endpoint's answer: the metrics table of every daemon group in the
//! Prometheus text exposition format (version 0.0.4), which Prometheus, the OpenMetrics
//! tooling and `prometheus_client`'s parser read. Pure formatting, no I/O.

use std::fmt::Write;

use super::table::{BUCKET_BOUNDS, GroupSnapshot, Histogram, RESTART_REASONS};

/// The Content-Type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One group to show: its name, its table snapshot, and the resident set size of each of
/// its live processes (by pid) where it could be read.
pub struct GroupView<'a> {
    pub name: &'a str,
    pub snapshot: &'a GroupSnapshot,
    pub resident_bytes: &'a dyn Fn(u32) -> Option<u64>,
}

/// A label value escaped as the format wants (backslash, double quote, newline).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, group: &str, h: &Histogram) {
    let mut cumulative = 0;
    for (i, count) in h.buckets.iter().enumerate() {
        cumulative += count;
        let le = BUCKET_BOUNDS
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(
            out,
            "{name}_bucket{{process_group=\"{group}\",le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "{name}_sum{{process_group=\"{group}\"}} {}",
        h.sum_seconds
    );
    let _ = writeln!(out, "{name}_count{{process_group=\"{group}\"}} {}", h.count);
}

/// The whole answer for these groups.
pub fn render(groups: &[GroupView<'_>]) -> String {
    let mut out = String::new();
    let names: Vec<String> = groups.iter().map(|g| escape(g.name)).collect();
    let families: [Family; 10] = [
        requests_total,
        request_duration,
        queue_wait,
        threads,
        capacity_utilization,
        processes,
        process_resident_memory,
        process_start_time,
        process_restarts_total,
        websockets_open,
    ];
    for family in families {
        family(&mut out, groups, &names);
    }
    out
}

/// `names` are the groups' names, escaped, in the order of `groups`.
type Family = fn(&mut String, &[GroupView<'_>], &[String]);

fn requests_total(out: &mut String, groups: &[GroupView<'_>], names: &[String]) {
    header(
        out,
        "rwsgi_requests_total",
        "counter",
        "Requests the daemon processes of a group handled, by response status class.",
    );
    for (g, name) in groups.iter().zip(names) {
        for (i, count) in g.snapshot.counts.status.iter().enumerate() {
            let _ = writeln!(
                out,
                "rwsgi_requests_total{{process_group=\"{name}\",status_class=\"{}xx\"}} {count}",
                i + 1
            );
        }
    }
}

fn request_duration(out: &mut String, groups: &[GroupView<'_>], names: &[String]) {
    header(
        out,
        "rwsgi_request_duration_seconds",
        "histogram",
        "Time from Apache receiving a request to its daemon thread handing the response back.",
    );
    for (g, name) in groups.iter().zip(names) {
        histogram(
            out,
            "rwsgi_request_duration_seconds",
            name,
            &g.snapshot.counts.duration,
        );
    }
}

fn queue_wait(out: &mut String, groups: &[GroupView<'_>], names: &[String]) {
    header(
        out,
        "rwsgi_queue_wait_seconds",
        "histogram",
        "Time a request waited between the Apache child sending it and a daemon thread taking it.",
    );
    for (g, name) in groups.iter().zip(names) {
        histogram(
            out,
            "rwsgi_queue_wait_seconds",
            name,
            &g.snapshot.counts.queue_wait,
        );
    }
}

/// A group's request threads over its live processes: (all, busy).
fn thread_counts(g: &GroupView<'_>) -> (u64, u64) {
    let threads: u64 = g.snapshot.processes.iter().map(|p| p.threads).sum();
    let busy: u64 = g.snapshot.processes.iter().map(|p| p.busy).sum();
    (threads, busy)
}

fn threads(out: &mut String, groups: &[GroupView<'_>], names: &[String]) {
    header(
        out,
        "rwsgi_threads",
        "gauge",
        "Request threads of a group's live daemon processes, busy with a request or idle.",
    );
    for (g, name) in groups.iter().zip(names) {
        let (threads, busy) = thread_counts(g);
        let _ = writeln!(
            out,
            "rwsgi_threads{{process_group=\"{name}\",state=\"busy\"}} {busy}"
        );
        let _ = writeln!(
            out,
            "rwsgi_threads{{process_group=\"{name}\",state=\"idle\"}} {}",
            threads.saturating_sub(busy)
        );
    }
}

fn capacity_utilization(out: &mut String, groups: &[GroupView<'_>], names: &[String]) {
    header(
        out,
        "rwsgi_capacity_utilization",
        "gauge",
        "Busy request threads over all request threads of a group, now (0 to 1).",
    );
    for (g, name) in groups.iter().zip(names) {
        let (threads, busy) = thread_counts(g);
        let value = if threads == 0 {
            0.0
        } else {
            busy as f64 / threads as f64
        };
        let _ = writeln!(
            out,
            "rwsgi_capacity_utilization{{process_group=\"{name}\"}} {value}"
        );
    }
}

fn processes(out: &mut String, groups: &[GroupView<'_>], names: &[String]) {
    header(
        out,
        "rwsgi_processes",
        "gauge",
        "Live daemon processes of a group (including ones draining after being replaced).",
    );
    for (g, name) in groups.iter().zip(names) {
        let _ = writeln!(
            out,
            "rwsgi_processes{{process_group=\"{name}\"}} {}",
            g.snapshot.processes.len()
        );
    }
}

fn process_resident_memory(out: &mut String, groups: &[GroupView<'_>], names: &[String]) {
    header(
        out,
        "rwsgi_process_resident_memory_bytes",
        "gauge",
        "Resident set size of a daemon process.",
    );
    for (g, name) in groups.iter().zip(names) {
        for p in &g.snapshot.processes {
            if let Some(bytes) = (g.resident_bytes)(p.pid) {
                let _ = writeln!(
                    out,
                    "rwsgi_process_resident_memory_bytes{{process_group=\"{name}\",pid=\"{}\"}} \
                     {bytes}",
                    p.pid
                );
            }
        }
    }
}

fn process_start_time(out: &mut String, groups: &[GroupView<'_>], names: &[String]) {
    header(
        out,
        "rwsgi_process_start_time_seconds",
        "gauge",
        "When a daemon process was started, seconds since the Unix epoch.",
    );
    for (g, name) in groups.iter().zip(names) {
        for p in &g.snapshot.processes {
            let _ = writeln!(
                out,
                "rwsgi_process_start_time_seconds{{process_group=\"{name}\",pid=\"{}\"}} {}",
                p.pid, p.start_time
            );
        }
    }
}

fn process_restarts_total(out: &mut String, groups: &[GroupView<'_>], names: &[String]) {
    header(
        out,
        "rwsgi_process_restarts_total",
        "counter",
        "Daemon processes the manager replaced or restarted, by reason.",
    );
    for (g, name) in groups.iter().zip(names) {
        for (reason, count) in RESTART_REASONS.iter().zip(g.snapshot.restarts) {
            let _ = writeln!(
                out,
                "rwsgi_process_restarts_total{{process_group=\"{name}\",reason=\"{reason}\"}} \
                 {count}"
            );
        }
    }
}

fn websockets_open(out: &mut String, groups: &[GroupView<'_>], names: &[String]) {
    header(
        out,
        "rwsgi_websockets_open",
        "gauge",
        "WebSockets an ASGI application of a group has accepted and not yet closed.",
    );
    for (g, name) in groups.iter().zip(names) {
        let open: u64 = g.snapshot.processes.iter().map(|p| p.websockets).sum();
        let _ = writeln!(
            out,
            "rwsgi_websockets_open{{process_group=\"{name}\"}} {open}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::table::{Counts, ProcessSnapshot};

    #[test]
    fn renders_every_family_with_cumulative_buckets() {
        let mut snapshot = GroupSnapshot {
            counts: Counts::default(),
            processes: vec![
                ProcessSnapshot {
                    pid: 10,
                    start_time: 1.5,
                    threads: 5,
                    busy: 5,
                    websockets: 2,
                },
                ProcessSnapshot {
                    pid: 11,
                    start_time: 2.0,
                    threads: 5,
                    busy: 0,
                    websockets: 1,
                },
            ],
            restarts: [0; RESTART_REASONS.len()],
        };
        snapshot.counts.status = [0, 7, 0, 2, 1];
        snapshot.counts.duration.buckets[0] = 3;
        snapshot.counts.duration.buckets[2] = 4;
        snapshot.counts.duration.buckets[15] = 3;
        snapshot.counts.duration.count = 10;
        snapshot.counts.duration.sum_seconds = 200.5;
        snapshot.restarts[6] = 2;
        let rss = |pid: u32| (pid == 10).then_some(4096u64);
        let text = render(&[GroupView {
            name: "a\"b",
            snapshot: &snapshot,
            resident_bytes: &rss,
        }]);
        for line in [
            "rwsgi_requests_total{process_group=\"a\\\"b\",status_class=\"2xx\"} 7",
            "rwsgi_requests_total{process_group=\"a\\\"b\",status_class=\"5xx\"} 1",
            "rwsgi_request_duration_seconds_bucket{process_group=\"a\\\"b\",le=\"0.001\"} 3",
            "rwsgi_request_duration_seconds_bucket{process_group=\"a\\\"b\",le=\"0.005\"} 7",
            "rwsgi_request_duration_seconds_bucket{process_group=\"a\\\"b\",le=\"60\"} 7",
            "rwsgi_request_duration_seconds_bucket{process_group=\"a\\\"b\",le=\"+Inf\"} 10",
            "rwsgi_request_duration_seconds_count{process_group=\"a\\\"b\"} 10",
            "rwsgi_request_duration_seconds_sum{process_group=\"a\\\"b\"} 200.5",
            "rwsgi_threads{process_group=\"a\\\"b\",state=\"busy\"} 5",
            "rwsgi_threads{process_group=\"a\\\"b\",state=\"idle\"} 5",
            "rwsgi_capacity_utilization{process_group=\"a\\\"b\"} 0.5",
            "rwsgi_processes{process_group=\"a\\\"b\"} 2",
            "rwsgi_process_resident_memory_bytes{process_group=\"a\\\"b\",pid=\"10\"} 4096",
            "rwsgi_process_start_time_seconds{process_group=\"a\\\"b\",pid=\"11\"} 2",
            "rwsgi_process_restarts_total{process_group=\"a\\\"b\",reason=\"killed\"} 2",
            "rwsgi_process_restarts_total{process_group=\"a\\\"b\",reason=\"reload\"} 0",
            "# TYPE rwsgi_queue_wait_seconds histogram",
            "# TYPE rwsgi_websockets_open gauge",
            "rwsgi_websockets_open{process_group=\"a\\\"b\"} 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("pid=\"11\"} 4096"));
    }
}
