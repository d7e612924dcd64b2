//! The report of a run: a table on the terminal, JSON, and an SVG plot.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;

use crate::worker::Errors;

/// Latency percentiles, in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// (percentile, microseconds) from 0 to 100, for the plot.
    pub curve: Vec<(f64, f64)>,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        let curve = [
            0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
        ]
        .iter()
        .map(|&p| (p, us(h.value_at_percentile(p))))
        .collect();
        Latency {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_percentile(50.0)),
            p90_us: us(h.value_at_percentile(90.0)),
            p99_us: us(h.value_at_percentile(99.0)),
            p999_us: us(h.value_at_percentile(99.9)),
            max_us: us(h.max()),
            curve,
        }
    }
}

/// The server's side of the run, from /proc.
#[derive(Clone, Debug, Serialize)]
pub struct ServerUsage {
    pub pid: u32,
    /// CPU over the measured window, 100 = one core.
    pub cpu_percent: f64,
    pub cpu_us_per_message: f64,
    pub rss_before_bytes: u64,
    pub rss_loaded_bytes: u64,
    /// (RSS with the connections open − RSS before them) / connections.
    pub rss_per_connection_bytes: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub machine: String,
    pub threads: usize,
    pub connections: usize,
    pub connections_open: u64,
    pub ramp_seconds: f64,
    pub payload: usize,
    pub text: bool,
    pub raw: bool,
    pub pipeline: usize,
    pub rate_target: f64,
    pub duration_seconds: f64,
    /// Messages (connect: handshakes; broadcast, fanout: deliveries) in the measured
    /// window.
    pub messages: u64,
    pub messages_per_second: f64,
    pub sent: u64,
    pub received: u64,
    pub latency: Latency,
    pub errors: Errors,
    pub server: Option<ServerUsage>,
    /// wss://: TLS handshakes completed over the whole run, (full, resumed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshakes: Option<(u64, u64)>,
    /// Messages per second, second by second.
    pub timeline: Vec<f64>,
}

impl Report {
    /// The unit counted: messages, handshakes or deliveries.
    fn unit(&self) -> &'static str {
        match self.scenario.as_str() {
            "connect" => "handshakes",
            "broadcast" | "fanout" => "deliveries",
            _ => "messages",
        }
    }

    /// One of `unit`.
    fn unit_one(&self) -> &'static str {
        match self.unit() {
            "handshakes" => "handshake",
            "deliveries" => "delivery",
            _ => "message",
        }
    }

    pub fn print(&self) {
        let kind = if self.raw {
            "raw TCP"
        } else if self.text {
            "text"
        } else {
            "binary"
        };
        println!();
        println!("wsload {} → {}", self.scenario, self.target);
        println!("  machine       {}", self.machine);
        println!(
            "  connections   {} open of {} (ramp {:.1} s), {} wsload thread(s)",
            self.connections_open, self.connections, self.ramp_seconds, self.threads
        );
        if let Some((full, resumed)) = self.tls_handshakes {
            println!("  tls           {full} full handshakes, {resumed} resumed");
        }
        if self.scenario == "fanout" {
            println!(
                "  payload       {} B {kind}, a round is {} deliveries per client",
                self.payload, self.connections
            );
        } else if self.scenario != "idle" && self.scenario != "connect" {
            println!(
                "  payload       {} B {kind}, pipeline {}",
                self.payload, self.pipeline
            );
        }
        if self.scenario != "idle" {
            println!(
                "  {:<13} {:.0}/s ({} in {:.1} s)",
                self.unit(),
                self.messages_per_second,
                self.messages,
                self.duration_seconds
            );
            let l = &self.latency;
            // Fanout times rounds: a client's send to its N-th delivery.
            let what = if self.scenario == "fanout" {
                "round µs "
            } else {
                "latency µs"
            };
            println!(
                "  {what}    p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
                l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
            );
        }
        let e = &self.errors;
        println!(
            "  errors        {} (connect {}, handshake {}, reset {}, closed {}, protocol {}, mismatch {}, lost {})",
            e.total(),
            e.connect,
            e.handshake,
            e.reset,
            e.closed,
            e.protocol,
            e.mismatch,
            e.lost
        );
        match &self.server {
            Some(s) => {
                if self.scenario != "idle" {
                    println!(
                        "  server CPU    {:.2} µs per {} ({:.0}% of a core)",
                        s.cpu_us_per_message,
                        self.unit_one(),
                        s.cpu_percent
                    );
                }
                let (before, loaded) = (
                    s.rss_before_bytes as f64 / 1048576.0,
                    s.rss_loaded_bytes as f64 / 1048576.0,
                );
                if self.scenario == "idle" {
                    println!(
                        "  server RSS    {:.0} B per idle connection ({before:.1} MiB → {loaded:.1} MiB)",
                        s.rss_per_connection_bytes
                    );
                } else {
                    // Under load RSS also holds buffers in use: not a per-connection cost.
                    println!(
                        "  server RSS    {before:.1} MiB before the connections, {loaded:.1} MiB at the end"
                    );
                }
            }
            None => println!("  server        (give --server-pid for CPU per message and RSS)"),
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        write_json(self, path)
    }

    /// Throughput over time (top) and the latency percentile curve (bottom).
    pub fn write_plot(&self, path: &Path) -> Result<(), String> {
        let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(350);

        time_series(
            &top,
            &format!(
                "{} per second — {} {}",
                self.unit(),
                self.scenario,
                self.target
            ),
            self.timeline.len().max(1) as f64,
            self.timeline
                .iter()
                .enumerate()
                .map(|(i, &r)| (i as f64 + 1.0, r))
                .collect(),
            &BLUE,
        )?;

        let max_us = self.latency.max_us.max(1.0) * 1.1;
        let mut chart = ChartBuilder::on(&bottom)
            .caption("latency by percentile (µs)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..5.0, 0f64..max_us)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            // One label per nine: plotters puts them on 0, 1, ... 5.
            .x_labels(6)
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| human(*y))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                self.latency.curve.iter().map(|&(p, us)| (nines(p), us)),
                &RED,
            ))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())
    }
}

/// The percentiles labelled on the latency plot's axis (one per nine), and their
/// labels.
const PERCENTILE_TICKS: [(f64, &str); 6] = [
    (0.0, "0 %"),
    (90.0, "90 %"),
    (99.0, "99 %"),
    (99.9, "99.9 %"),
    (99.99, "99.99 %"),
    (100.0, "max"),
];

/// A percentile's place on the "nines" axis: 90 → 1, 99 → 2, 99.9 → 3 ... and the
/// maximum at 5.
fn nines(p: f64) -> f64 {
    if p >= 100.0 {
        5.0
    } else {
        -(1.0 - p / 100.0).log10()
    }
}

/// The label of a place on the nines axis: one of [`PERCENTILE_TICKS`], or nothing
/// between them.
fn percentile_label(x: f64) -> String {
    PERCENTILE_TICKS
        .iter()
        .find(|&&(p, _)| (nines(p) - x).abs() < 1e-6)
        .map_or_else(String::new, |&(_, label)| label.to_owned())
}

/// A count as people read it: 950, 1.5k, 180k, 2.4M.
pub fn human(value: f64) -> String {
    let a = value.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (value / 1e9, "G")
    } else if a >= 1e6 {
        (value / 1e6, "M")
    } else if a >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let text = if scaled.abs() >= 100.0 || scaled.fract().abs() < 1e-9 {
        format!("{scaled:.0}")
    } else if scaled.abs() >= 10.0 {
        format!("{scaled:.1}")
    } else {
        format!("{scaled:.2}")
    };
    // 1.50k reads as 1.5k.
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    format!("{text}{suffix}")
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json<T: Serialize>(value: &T, path: &Path) -> Result<(), String> {
    let json = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// Draws one line over time in `area`: x in seconds up to `seconds`, y from 0 to a
/// tenth above the highest point.
pub fn time_series<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    seconds: f64,
    points: Vec<(f64, f64)>,
    colour: &RGBColor,
) -> Result<(), String> {
    let max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..seconds, 0f64..max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_label_formatter(&|y| human(*y))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(points, colour))
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_people_write_them() {
        let cases = [
            (0.0, "0"),
            (950.0, "950"),
            (1500.0, "1.5k"),
            (12_500.0, "12.5k"),
            (180_000.0, "180k"),
            (2_400_000.0, "2.4M"),
            (0.25, "0.25"),
        ];
        for (value, text) in cases {
            assert_eq!(human(value), text, "{value}");
        }
    }

    #[test]
    fn the_percentile_axis_labels_each_tick_once() {
        let labels: Vec<String> = PERCENTILE_TICKS
            .iter()
            .map(|&(p, _)| percentile_label(nines(p)))
            .collect();
        assert_eq!(labels, ["0 %", "90 %", "99 %", "99.9 %", "99.99 %", "max"]);
        assert_eq!(percentile_label(0.5), "");
    }
}
