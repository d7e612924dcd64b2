//! Observability: `tracing` events (feature `tracing`) and counters and gauges on
//! the `metrics` facade (feature `metrics`). Neither costs anything when its
//! feature is off: the macro below expands to nothing, and no exporter exists.
//!
//! Metrics are pushed once per event-loop turn, as deltas of the counters the
//! reactor keeps anyway ([`Stats`](crate::Stats)), never per message: a busy
//! reactor makes one turn per batch of events. The handles are taken from the
//! recorder installed when the server spawns its reactors: install yours first.
//! The names and labels are listed in docs/CONFIG.md ("Metrics and tracing").

/// A `tracing` event with target `wsreactor`, or nothing without the feature. Its
/// arguments are not evaluated then: pass only what the code uses anyway.
macro_rules! event {
    ($level:ident, $($rest:tt)*) => {
        #[cfg(feature = "tracing")]
        {
            tracing::$level!(target: "wsreactor", $($rest)*);
        }
    };
}
pub(crate) use event;

#[cfg(feature = "metrics")]
pub(crate) use exporter::Exporter;

#[cfg(feature = "metrics")]
mod exporter {
    use metrics::{Counter, Gauge, counter, gauge};

    use crate::stats::LocalStats;

    /// A counter and the field of [`LocalStats`] it follows.
    type Follows = (Counter, fn(&LocalStats) -> u64);

    /// One reactor's metrics: registered once, pushed as deltas each turn.
    pub(crate) struct Exporter {
        last: LocalStats,
        counters: Vec<Follows>,
        closes: Vec<Counter>,
        open: Gauge,
        compressors: Gauge,
        topics: Gauge,
        subscriptions: Gauge,
        /// Reactor 0 also follows the bridge's counters.
        #[cfg(feature = "redis")]
        bridge: Option<Bridge>,
    }

    /// The bridge's counters, as last pushed.
    #[cfg(feature = "redis")]
    struct Bridge {
        last: crate::bridge::BridgeStats,
        sent: Counter,
        dropped: Counter,
        received: Counter,
        refused: Counter,
        malformed: Counter,
        reconnects: Counter,
        channels: Gauge,
        connected: Gauge,
    }

    /// The close codes labelled one by one; others are `other`.
    const CODES: [u16; 16] = [
        1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
        1015,
    ];

    impl Exporter {
        pub(crate) fn new(reactor: u16) -> Exporter {
            let r = reactor.to_string();
            let c = |name: &'static str, f: fn(&LocalStats) -> u64| -> Follows {
                (counter!(name, "reactor" => r.clone()), f)
            };
            let counters = vec![
                c("wsreactor_connections_accepted_total", |s| s.accepted),
                c("wsreactor_upgrades_rejected_total", |s| s.rejected),
                c("wsreactor_upgrades_deferred_total", |s| s.deferred_upgrades),
                c("wsreactor_handoffs_total", |s| s.handoffs),
                c("wsreactor_messages_received_total", |s| s.messages_in),
                c("wsreactor_received_bytes_total", |s| s.bytes_in),
                c("wsreactor_messages_sent_total", |s| s.messages_out),
                c("wsreactor_sent_bytes_total", |s| s.bytes_out),
                c("wsreactor_messages_dropped_total", |s| s.dropped),
                c("wsreactor_messages_compressed_total", |s| s.compressed_out),
                c("wsreactor_write_timeouts_total", |s| s.write_timeouts),
                c("wsreactor_read_pauses_total", |s| s.read_pauses),
                c("wsreactor_tls_idle_records_total", |s| s.tls_idle_records),
                c("wsreactor_panics_total", |s| s.panics),
                c("wsreactor_failed_reactors_total", |s| s.failed_reactors),
                c("wsreactor_loop_turns_total", |s| s.turns),
                (
                    counter!("wsreactor_handshakes_total", "reactor" => r.clone(), "transport" => "ws"),
                    |s| s.upgrades - s.upgrades_tls,
                ),
                (
                    counter!("wsreactor_handshakes_total", "reactor" => r.clone(), "transport" => "wss"),
                    |s| s.upgrades_tls,
                ),
                (
                    counter!("wsreactor_tls_handshakes_total", "reactor" => r.clone(), "kind" => "full"),
                    |s| s.tls_handshakes - s.tls_resumed,
                ),
                (
                    counter!("wsreactor_tls_handshakes_total", "reactor" => r.clone(), "kind" => "resumed"),
                    |s| s.tls_resumed,
                ),
            ];
            let mut closes: Vec<Counter> = CODES
                .iter()
                .map(|code| {
                    counter!("wsreactor_connections_closed_total", "reactor" => r.clone(), "code" => code.to_string())
                })
                .collect();
            closes.push(counter!(
                "wsreactor_connections_closed_total", "reactor" => r.clone(), "code" => "other"
            ));
            Exporter {
                last: LocalStats::default(),
                counters,
                closes,
                open: gauge!("wsreactor_connections_open", "reactor" => r.clone()),
                compressors: gauge!("wsreactor_compressors", "reactor" => r.clone()),
                topics: gauge!("wsreactor_topics", "reactor" => r.clone()),
                subscriptions: gauge!("wsreactor_subscriptions", "reactor" => r),
                #[cfg(feature = "redis")]
                bridge: (reactor == 0).then(Bridge::new),
            }
        }

        /// Pushes what changed since the last call.
        pub(crate) fn record(&mut self, now: &LocalStats, open: usize) {
            for (counter, field) in &self.counters {
                let delta = field(now).saturating_sub(field(&self.last));
                if delta > 0 {
                    counter.increment(delta);
                }
            }
            for ((counter, now), last) in self.closes.iter().zip(now.closes).zip(self.last.closes) {
                if now > last {
                    counter.increment(now - last);
                }
            }
            self.open.set(open as f64);
            self.compressors.set(now.compressors as f64);
            self.topics.set(now.topics as f64);
            self.subscriptions.set(now.subscriptions as f64);
            self.last.clone_from(now);
        }

        /// Pushes the bridge's counters (reactor 0 only).
        #[cfg(feature = "redis")]
        pub(crate) fn record_bridge(&mut self, now: Option<crate::bridge::BridgeStats>) {
            if let (Some(bridge), Some(now)) = (&mut self.bridge, now) {
                bridge.record(now);
            }
        }
    }

    #[cfg(feature = "redis")]
    impl Bridge {
        fn new() -> Bridge {
            Bridge {
                last: Default::default(),
                sent: counter!("wsreactor_bridge_sent_total"),
                dropped: counter!("wsreactor_bridge_dropped_total"),
                received: counter!("wsreactor_bridge_received_total"),
                refused: counter!("wsreactor_bridge_refused_total"),
                malformed: counter!("wsreactor_bridge_malformed_total"),
                reconnects: counter!("wsreactor_bridge_reconnects_total"),
                channels: gauge!("wsreactor_bridge_channels"),
                connected: gauge!("wsreactor_bridge_connected"),
            }
        }

        fn record(&mut self, now: crate::bridge::BridgeStats) {
            let pairs = [
                (&self.sent, now.sent, self.last.sent),
                (&self.dropped, now.dropped, self.last.dropped),
                (&self.received, now.received, self.last.received),
                (&self.refused, now.refused, self.last.refused),
                (&self.malformed, now.malformed, self.last.malformed),
                (&self.reconnects, now.reconnects, self.last.reconnects),
            ];
            for (counter, now, last) in pairs {
                if now > last {
                    counter.increment(now - last);
                }
            }
            self.channels.set(now.channels as f64);
            let connected = now.state == crate::bridge::BridgeState::Connected;
            self.connected.set(if connected { 1.0 } else { 0.0 });
            self.last = now;
        }
    }
}
