//! Restart policy for daemon processes, as a pure state machine: a daemon that dies is
//! restarted at once; one that keeps dying before it is ready or soon after, backs off 1 s,
//! 2 s, 4 s ... up to 30 s, so a broken script cannot fork-bomb the machine. A process that
//! served for a while and was then killed (kill -9, the OOM killer, a crash under load) is
//! not a crash loop: it is replaced at once.

use std::time::{Duration, Instant};

/// A daemon that lived at least this long is considered healthy: its next death restarts
/// it immediately and resets the backoff.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// So is one that was ready (serving) at least this long.
pub const HEALTHY_AFTER_READY: Duration = Duration::from_secs(2);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct SlotHistory {
    pub started_at: Instant,
    /// When the current process reported ready, if it did.
    pub ready_at: Option<Instant>,
    pub quick_deaths: u32,
}

impl SlotHistory {
    pub fn new(now: Instant) -> SlotHistory {
        SlotHistory {
            started_at: now,
            ready_at: None,
            quick_deaths: 0,
        }
    }

    /// A new process starts in this slot.
    pub fn on_start(&mut self, now: Instant) {
        self.started_at = now;
        self.ready_at = None;
    }

    pub fn on_ready(&mut self, now: Instant) {
        self.ready_at = Some(now);
    }

    /// Records a death at `now` and returns how long the replacement must wait before it
    /// starts its work. A planned restart (touch-to-reload, maximum-requests, SIGINT) is
    /// never a crash.
    pub fn on_death(&mut self, now: Instant, planned: bool) -> Duration {
        let lived = now.saturating_duration_since(self.started_at);
        let served = self
            .ready_at
            .map(|r| now.saturating_duration_since(r))
            .unwrap_or(Duration::ZERO);
        if planned || lived >= HEALTHY_AFTER || served >= HEALTHY_AFTER_READY {
            self.quick_deaths = 0;
        } else {
            self.quick_deaths = self.quick_deaths.saturating_add(1);
        }
        self.on_start(now);
        backoff(self.quick_deaths)
    }
}

/// 0 quick deaths: no wait; then 1 s, 2 s, 4 s ... capped at 30 s.
pub fn backoff(quick_deaths: u32) -> Duration {
    if quick_deaths == 0 {
        return Duration::ZERO;
    }
    let secs = 1u64.checked_shl(quick_deaths - 1).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// A human description of how a daemon ended, for the error log. APR's other-child
/// registry hands over one number that is the exit status for a normal exit and the signal
/// number for a killed process, without saying which, so both readings are named.
pub fn describe_death(code: i32) -> String {
    match nix::sys::signal::Signal::try_from(code) {
        Ok(sig) if code > 0 => format!(
            "exited with status {code} (or was killed by {})",
            sig.as_str()
        ),
        _ => format!("exited with status {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let expected = [0, 1, 2, 4, 8, 16, 30, 30, 30];
        for (deaths, secs) in expected.iter().enumerate() {
            assert_eq!(
                backoff(deaths as u32),
                Duration::from_secs(*secs),
                "deaths={deaths}"
            );
        }
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn quick_deaths_back_off_and_a_healthy_run_resets() {
        let t0 = Instant::now();
        let mut h = SlotHistory::new(t0);
        assert_eq!(
            h.on_death(t0 + Duration::from_millis(100), false),
            Duration::from_secs(1)
        );
        assert_eq!(
            h.on_death(t0 + Duration::from_millis(200), false),
            Duration::from_secs(2)
        );
        assert_eq!(
            h.on_death(t0 + Duration::from_millis(300), false),
            Duration::from_secs(4)
        );
        // Lived 20 s: healthy, restart at once.
        assert_eq!(
            h.on_death(t0 + Duration::from_secs(20), false),
            Duration::ZERO
        );
        assert_eq!(h.quick_deaths, 0);
    }

    #[test]
    fn a_process_killed_after_serving_a_while_is_not_a_crash_loop() {
        let t0 = Instant::now();
        let mut h = SlotHistory::new(t0);
        for round in 0..4u64 {
            let start = t0 + Duration::from_secs(3 * round);
            h.on_start(start);
            h.on_ready(start + Duration::from_millis(50));
            assert_eq!(
                h.on_death(start + Duration::from_secs(3), false),
                Duration::ZERO,
                "round {round}"
            );
        }
        // Dying within HEALTHY_AFTER_READY of being ready still counts as quick.
        h.on_start(t0);
        h.on_ready(t0);
        assert_eq!(
            h.on_death(t0 + Duration::from_millis(500), false),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn planned_restarts_never_back_off() {
        let t0 = Instant::now();
        let mut h = SlotHistory::new(t0);
        for i in 1..5 {
            assert_eq!(
                h.on_death(t0 + Duration::from_millis(10 * i), true),
                Duration::ZERO
            );
        }
        assert_eq!(h.quick_deaths, 0);
    }

    #[test]
    fn death_is_described_with_both_readings() {
        assert_eq!(
            describe_death(9),
            "exited with status 9 (or was killed by SIGKILL)"
        );
        assert_eq!(describe_death(0), "exited with status 0");
        assert_eq!(describe_death(100), "exited with status 100");
    }
}
