//! The live progress line: once a second it empties every worker's [`Window`] and prints, on
//! stderr, the last second's throughput, errors, reconnects and latency percentiles, and the
//! time elapsed. It owns nothing but its own tick.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::stats::Window;

/// How often the line is printed.
const EVERY: Duration = Duration::from_secs(1);

/// Prints the progress line every second until `stop`.
pub(crate) async fn run(windows: Vec<Arc<Mutex<Window>>>, start: Instant, stop: CancellationToken) {
    let mut tick = interval_at(start + EVERY, EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = start;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = Instant::now();
        let second = collect(&windows);
        eprintln!("{}", line(&second, now - last, now - start));
        last = now;
    }
}

/// Empties every window into one.
fn collect(windows: &[Arc<Mutex<Window>>]) -> Window {
    let mut all = Window::default();
    for w in windows {
        w.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain_into(&mut all);
    }
    all
}

/// The text of one progress line.
fn line(w: &Window, span: Duration, elapsed: Duration) -> String {
    let rate = w.ok as f64 / span.as_secs_f64().max(1e-3);
    let pct = |q: f64| w.latency.value_at_quantile(q) as f64 / 1000.0;
    let (p50, p99) = if w.latency.is_empty() {
        ("-".to_string(), "-".to_string())
    } else {
        (format!("{:.2}", pct(0.5)), format!("{:.2}", pct(0.99)))
    };
    format!(
        "[{:>5.0}s] {:>9.0} ops/s  errors {:>6}  reconnects {:>3}  p50 {:>7} ms  p99 {:>7} ms",
        elapsed.as_secs_f64(),
        rate,
        w.errors,
        w.reconnects,
        p50,
        p99
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_the_last_second() {
        let mut w = Window::default();
        for us in [100, 200, 300, 400, 5000] {
            w.latency.saturating_record(us);
        }
        w.ok = 5;
        w.errors = 2;
        let l = line(&w, Duration::from_millis(500), Duration::from_secs(3));
        assert!(l.starts_with("[    3s]"), "{l}");
        assert!(l.contains("10 ops/s"), "{l}");
        assert!(l.contains("errors      2"), "{l}");
        assert!(l.contains("p50    0.30 ms"), "{l}");
        assert!(l.contains("p99    5.00 ms"), "{l}");
        let empty = line(&Window::default(), EVERY, EVERY);
        assert!(empty.contains("p50       - ms"), "{empty}");
    }
}
