//! Figures measured outside criterion (interleaved runs, single-call percentiles), and the
//! filter and `--quick` switches the benches share.
//!
//! Figures are written to `target/bench-results/extra/<file>.json`; `cargo xtask bench` merges
//! them into its summary and compares them with the baseline.

use std::path::PathBuf;

/// One figure: its name and its samples, in nanoseconds.
#[derive(Debug, Clone)]
pub struct Stats {
    /// The figure's id (`cpu/...`), as in the summary and the baseline.
    pub name: String,
    /// One sample per timed call.
    pub samples_ns: Vec<f64>,
}

/// The `q` quantile (nearest rank) of `sorted`; NaN when it is empty.
pub fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median of unsorted samples.
pub fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    pct(&v, 0.5)
}

impl Stats {
    /// The figure as one JSON object (median, p95, p05, mean, max, samples).
    pub fn json(&self) -> String {
        let mut v = self.samples_ns.clone();
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        format!(
            "{{\"name\":\"{}\",\"median_ns\":{:.1},\"p95_ns\":{:.1},\"p05_ns\":{:.1},\"mean_ns\":{:.1},\"max_ns\":{:.1},\"samples\":{}}}",
            self.name,
            pct(&v, 0.5),
            pct(&v, 0.95),
            pct(&v, 0.05),
            mean,
            v.last().copied().unwrap_or(f64::NAN),
            v.len()
        )
    }

    /// The figure as one human-readable line.
    pub fn line(&self) -> String {
        let mut v = self.samples_ns.clone();
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let f = |ns: f64| if ns >= 1e6 { format!("{:.3} ms", ns / 1e6) } else { format!("{:.3} µs", ns / 1e3) };
        format!(
            "{:<48} median {:>11}  p05 {:>11}  p95 {:>11}  avg {:>11}  max {:>11}  (n={})",
            self.name,
            f(pct(&v, 0.5)),
            f(pct(&v, 0.05)),
            f(pct(&v, 0.95)),
            f(mean),
            f(v[v.len() - 1]),
            v.len()
        )
    }
}

/// Prints every figure and writes them (best effort: a read-only target only loses the file).
pub fn report(file: &str, stats: &[Stats]) {
    for s in stats {
        eprintln!("{}", s.line());
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results/extra");
    let body = format!("[{}]\n", stats.iter().map(Stats::json).collect::<Vec<_>>().join(",\n"));
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{file}.json")), body);
    }
}

/// Criterion's filter (its first positional argument), if any.
pub fn filter() -> Option<String> {
    const VALUED: &[&str] = &[
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--output-format",
        "--plotting-backend",
        "--profile-time",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--nresamples",
        "--color",
        "--format",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if VALUED.contains(&a.as_str()) {
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            return Some(a.clone());
        }
        i += 1;
    }
    None
}

/// Whether the figures measured outside criterion under `ids` are wanted: no filter, a filter that
/// one of them contains (`cpu/runtime`, `cpu/runtime/step`, `w512`), or a regex we cannot judge.
pub fn wanted(ids: &[String]) -> bool {
    match filter() {
        None => true,
        Some(f) if f.chars().any(|c| "^$.*+?()[]{}|\\".contains(c)) => true,
        Some(f) => ids.iter().any(|id| id.contains(f.as_str())),
    }
}

/// Whether `KASMINA_BENCH_QUICK=1` (set by `cargo xtask bench --quick`) asks for short runs.
pub fn quick() -> bool {
    std::env::var("KASMINA_BENCH_QUICK").is_ok_and(|v| v == "1")
}
