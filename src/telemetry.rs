//! Internal events: one call logs and counts, so the log and the metrics can
//! never disagree. Also the Prometheus registry (served by `http`) and the
//! rate limiter that keeps warnings to a trickle under attack.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Every metric banstream exports. Names are a contract (DESIGN.md).
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// `banstream_messages_total{transport}`.
    pub messages: IntCounterVec,
    /// `banstream_messages_dropped_total{reason}`.
    pub dropped: IntCounterVec,
    /// `banstream_failures_total{jail}`.
    pub failures: IntCounterVec,
    /// `banstream_bans_total{jail}`.
    pub bans: IntCounterVec,
    /// `banstream_unbans_total{jail}`.
    pub unbans: IntCounterVec,
    /// `banstream_bans_active{jail}`.
    pub bans_active: IntGaugeVec,
    /// `banstream_action_errors_total{jail,action}`.
    pub action_errors: IntCounterVec,
    /// `banstream_ban_latency_seconds`.
    pub ban_latency: Histogram,
    /// `banstream_unattributed_total{jail}`: failures with no usable address.
    pub unattributed: IntCounterVec,
    /// `banstream_ignored_total{jail}`: failures from ignored addresses.
    pub ignored: IntCounterVec,
    /// `banstream_window_evictions_total{jail}`: addresses evicted at the tracking cap.
    pub evictions: IntCounterVec,
    /// `banstream_connections_rejected_total{listener}`: stream connections refused (cap reached).
    pub connections_rejected: IntCounterVec,
    /// `banstream_store_errors_total`: failed database writes (retried).
    pub store_errors: IntCounter,
    /// `banstream_notifications_total{kind,result}`: mail/webhook messages
    /// `sent` or `failed` (after retries), and bans `suppressed` (folded
    /// into a digest instead of a message of their own).
    pub notifications: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        fn cv(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"));
            r.register(Box::new(c.clone()))
                .unwrap_or_else(|e| unreachable!("register {name}: {e}"));
            c
        }
        let messages = cv(
            &registry,
            "banstream_messages_total",
            "Syslog messages received",
            &["transport"],
        );
        let dropped = cv(
            &registry,
            "banstream_messages_dropped_total",
            "Messages rejected or lost",
            &["reason"],
        );
        let failures = cv(
            &registry,
            "banstream_failures_total",
            "Failures matched and counted",
            &["jail"],
        );
        let bans = cv(&registry, "banstream_bans_total", "Bans issued", &["jail"]);
        let unbans = cv(
            &registry,
            "banstream_unbans_total",
            "Bans lifted",
            &["jail"],
        );
        let action_errors = cv(
            &registry,
            "banstream_action_errors_total",
            "Failed action runs",
            &["jail", "action"],
        );
        let unattributed = cv(
            &registry,
            "banstream_unattributed_total",
            "Failures without a usable address (never banned)",
            &["jail"],
        );
        let ignored = cv(
            &registry,
            "banstream_ignored_total",
            "Failures from ignored addresses",
            &["jail"],
        );
        let evictions = cv(
            &registry,
            "banstream_window_evictions_total",
            "Tracked addresses evicted at the cap",
            &["jail"],
        );
        let connections_rejected = cv(
            &registry,
            "banstream_connections_rejected_total",
            "Stream connections refused at the cap",
            &["listener"],
        );
        let notifications = cv(
            &registry,
            "banstream_notifications_total",
            "Notifications sent or failed, and bans folded into a digest (suppressed)",
            &["kind", "result"],
        );
        let bans_active = IntGaugeVec::new(
            Opts::new("banstream_bans_active", "Bans in force"),
            &["jail"],
        )
        .unwrap_or_else(|e| unreachable!("static metric: {e}"));
        registry
            .register(Box::new(bans_active.clone()))
            .unwrap_or_else(|e| unreachable!("register: {e}"));
        let ban_latency = Histogram::with_opts(
            HistogramOpts::new(
                "banstream_ban_latency_seconds",
                "Triggering message received -> ban applied",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0,
            ]),
        )
        .unwrap_or_else(|e| unreachable!("static metric: {e}"));
        registry
            .register(Box::new(ban_latency.clone()))
            .unwrap_or_else(|e| unreachable!("register: {e}"));
        let store_errors = IntCounter::new(
            "banstream_store_errors_total",
            "Failed database writes (retried)",
        )
        .unwrap_or_else(|e| unreachable!("static metric: {e}"));
        registry
            .register(Box::new(store_errors.clone()))
            .unwrap_or_else(|e| unreachable!("register: {e}"));
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = registry.register(Box::new(pc));
        }
        Metrics {
            registry,
            messages,
            dropped,
            failures,
            bans,
            unbans,
            bans_active,
            action_errors,
            ban_latency,
            unattributed,
            ignored,
            evictions,
            connections_rejected,
            store_errors,
            notifications,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        let enc = prometheus::TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a message was dropped (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Longer than `max_frame`.
    Oversize,
    /// From a peer outside the listener's allowlist.
    NotAllowed,
    /// The frame queue was full.
    QueueFull,
    /// A stream sent an impossible octet count; the connection was closed.
    BadFraming,
    /// An empty datagram or frame.
    Empty,
    /// The kernel dropped datagrams before we read them (SO_RXQ_OVFL).
    KernelOverflow,
}

impl DropReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Oversize => "oversize",
            DropReason::NotAllowed => "not_allowed",
            DropReason::QueueFull => "queue_full",
            DropReason::BadFraming => "bad_framing",
            DropReason::Empty => "empty",
            DropReason::KernelOverflow => "kernel_overflow",
        }
    }
}

/// Lets one warning per key through per interval and counts the rest, so a
/// flood of hostile frames yields a line every few seconds, not millions.
#[derive(Clone, Default)]
pub struct RateLimiter {
    inner: Arc<Mutex<HashMap<&'static str, (Instant, u64)>>>,
}

/// Interval between two warnings of the same kind.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

impl RateLimiter {
    /// `Some(suppressed)` when a warning of `key` may be logged now (with the
    /// number suppressed since the last one), `None` when it must be skipped.
    pub fn check(&self, key: &'static str) -> Option<u64> {
        // A std Mutex: held for a map lookup, never across an await.
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match m.get_mut(key) {
            Some((last, n)) if now.duration_since(*last) < WARN_INTERVAL => {
                *n += 1;
                None
            }
            Some((last, n)) => {
                let s = *n;
                *last = now;
                *n = 0;
                Some(s)
            }
            None => {
                m.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

/// Counts a dropped message and warns (rate-limited).
pub fn emit_drop(
    metrics: &Metrics,
    limiter: &RateLimiter,
    reason: DropReason,
    detail: &dyn std::fmt::Display,
) {
    emit_drops(metrics, limiter, reason, 1, detail);
}

/// Counts `n` messages dropped for one reason and warns once (rate-limited).
pub fn emit_drops(
    metrics: &Metrics,
    limiter: &RateLimiter,
    reason: DropReason,
    n: u64,
    detail: &dyn std::fmt::Display,
) {
    metrics
        .dropped
        .with_label_values(&[reason.as_str()])
        .inc_by(n);
    if let Some(suppressed) = limiter.check(reason.as_str()) {
        tracing::warn!(
            reason = reason.as_str(),
            suppressed,
            "dropped message: {detail}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_lets_one_through() {
        let r = RateLimiter::default();
        assert_eq!(r.check("x"), Some(0));
        assert_eq!(r.check("x"), None);
        assert_eq!(r.check("x"), None);
        assert_eq!(r.check("y"), Some(0));
    }

    #[test]
    fn contract_metric_names_render() {
        let m = Metrics::new();
        m.messages.with_label_values(&["udp"]).inc();
        m.dropped.with_label_values(&["oversize"]).inc();
        m.failures.with_label_values(&["sshd"]).inc();
        m.bans.with_label_values(&["sshd"]).inc();
        m.unbans.with_label_values(&["sshd"]).inc();
        m.bans_active.with_label_values(&["sshd"]).set(1);
        m.action_errors
            .with_label_values(&["sshd", "nftables"])
            .inc();
        m.ban_latency.observe(0.001);
        m.notifications.with_label_values(&["mail", "sent"]).inc();
        let text = m.render();
        for name in [
            "banstream_messages_total{transport=\"udp\"} 1",
            "banstream_messages_dropped_total{reason=\"oversize\"} 1",
            "banstream_failures_total{jail=\"sshd\"} 1",
            "banstream_bans_total{jail=\"sshd\"} 1",
            "banstream_unbans_total{jail=\"sshd\"} 1",
            "banstream_bans_active{jail=\"sshd\"} 1",
            "banstream_action_errors_total{action=\"nftables\",jail=\"sshd\"} 1",
            "banstream_ban_latency_seconds_bucket",
            "banstream_notifications_total{kind=\"mail\",result=\"sent\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
