//! `cargo xtask bench`: run the criterion benches, summarise, compare with the baseline.
//!
//! Writes `target/bench-results/summary.json` (name, median, p95, unit, size where relevant,
//! machine, commit) and compares each median with `benches/baseline.json`. A median slower than
//! the baseline beyond the soft threshold (10 % for kernel load and isolation, 20 % otherwise,
//! the design's regression rule) prints a warning and is written as a WARNING Leyline telemetry
//! packet, in protobuf's canonical JSON mapping, to `target/bench-results/telemetry.jsonl`. It
//! fails the command only with `--strict`. `--save-baseline` replaces the baseline.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const USAGE: &str = "cargo xtask bench [--strict] [--save-baseline] [--filter REGEX] [--quick] [--baseline PATH]";

#[derive(Debug, Default)]
struct Options {
    strict: bool,
    save_baseline: bool,
    quick: bool,
    filter: Option<String>,
    /// Baseline file to compare with (default `benches/baseline.json`).
    baseline: Option<PathBuf>,
}

fn parse(rest: &[String]) -> Result<Options> {
    let mut o = Options::default();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--strict" => o.strict = true,
            "--save-baseline" => o.save_baseline = true,
            "--quick" => o.quick = true,
            "--filter" => o.filter = Some(it.next().context("--filter needs a value")?.clone()),
            "--baseline" => o.baseline = Some(it.next().context("--baseline needs a path")?.into()),
            other => bail!("unexpected argument `{other}`\nusage: {USAGE}"),
        }
    }
    Ok(o)
}

/// One benchmark's figures.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) median_ns: f64,
    pub(crate) p95_ns: f64,
    /// 5th percentile: a rough estimate of the uncontended speed on a noisy vCPU.
    pub(crate) p05_ns: f64,
    /// Mean (criterion's estimate, or of the single calls for the bench-written extras).
    pub(crate) mean_ns: f64,
    /// Largest sample (per iteration for criterion, per call for the extras).
    pub(crate) max_ns: f64,
    pub(crate) size_bytes: Option<u64>,
}

pub(crate) fn run(root: &Path, rest: &[String]) -> Result<()> {
    let opts = parse(rest)?;
    let criterion_dir = root.join("target/criterion");
    // Only results written by this run count (a filtered run leaves older ones on disk).
    let started = SystemTime::now() - std::time::Duration::from_secs(2);
    let mut cmd = crate::cargo();
    cmd.args(["bench", "--package", "kasmina-benches", "--"]).current_dir(root);
    if let Some(f) = &opts.filter {
        cmd.arg(f);
    }
    if opts.quick {
        // Criterion's flags shorten the default groups; the long-step groups read the variable.
        cmd.args(["--warm-up-time", "0.5", "--measurement-time", "1"]).env("KASMINA_BENCH_QUICK", "1");
    }
    let status = cmd.status().context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench failed");
    }

    let mut entries = collect(&criterion_dir, started)?;
    entries.extend(collect_extras(&root.join("target/bench-results/extra"), started)?);
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if entries.is_empty() {
        bail!("no criterion results under {}", criterion_dir.display());
    }
    let out_dir = root.join("target/bench-results");
    fs::create_dir_all(&out_dir)?;
    let summary = summary_json(&entries, root);
    let summary_path = out_dir.join("summary.json");
    fs::write(&summary_path, serde_json::to_string_pretty(&summary)?)?;
    eprintln!("bench: {} results -> {}", entries.len(), summary_path.display());
    for e in &entries {
        eprintln!(
            "  {:<60} median {:>12}  p05 {:>12}  p95 {:>12}{}",
            e.name,
            human(e.median_ns),
            human(e.p05_ns),
            human(e.p95_ns),
            e.size_bytes.map(|s| format!("  {s} B")).unwrap_or_default()
        );
    }

    let baseline_path = opts.baseline.clone().unwrap_or_else(|| root.join("benches/baseline.json"));
    if opts.save_baseline {
        // A filtered run replaces only the results it measured.
        let old = fs::read_to_string(&baseline_path).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok());
        let merged = merge_baseline(old.as_ref(), &summary);
        fs::write(&baseline_path, serde_json::to_string_pretty(&merged)? + "\n")?;
        eprintln!("bench: baseline saved to {}", baseline_path.display());
        return Ok(());
    }
    let regressions = match fs::read_to_string(&baseline_path) {
        Ok(text) => {
            let baseline: Value = serde_json::from_str(&text).context("parsing benches/baseline.json")?;
            if baseline["machine"]["cpu"] != summary["machine"]["cpu"] {
                eprintln!(
                    "bench: note: the baseline was measured on `{}`, this run on `{}`: regressions may be the machine",
                    baseline["machine"]["cpu"].as_str().unwrap_or("unknown"),
                    summary["machine"]["cpu"].as_str().unwrap_or("unknown")
                );
            }
            compare(&entries, &baseline)
        }
        Err(_) => {
            eprintln!("bench: no baseline at {} (save one with --save-baseline)", baseline_path.display());
            Vec::new()
        }
    };
    for r in &regressions {
        eprintln!("warning: bench regression: {r}");
    }
    let telemetry_path = write_telemetry(&out_dir, &regressions)?;
    if !regressions.is_empty() {
        eprintln!("bench: {} regression(s) -> WARNING telemetry in {}", regressions.len(), telemetry_path.display());
    }
    if opts.strict && !regressions.is_empty() {
        bail!("{} benchmark regression(s) beyond the soft thresholds", regressions.len());
    }
    Ok(())
}

/// Writes `telemetry.jsonl` in `out_dir`: one WARNING packet naming every regression, or an empty
/// file when there is none.
pub(crate) fn write_telemetry(out_dir: &Path, regressions: &[String]) -> Result<PathBuf> {
    let path = out_dir.join("telemetry.jsonl");
    let mut lines = String::new();
    if !regressions.is_empty() {
        lines.push_str(&serde_json::to_string(&regression_packet(regressions))?);
        lines.push('\n');
    }
    fs::write(&path, lines)?;
    Ok(path)
}

/// The new baseline: `summary` (machine, commit, results) plus the old baseline's results that
/// this run did not measure.
pub(crate) fn merge_baseline(old: Option<&Value>, summary: &Value) -> Value {
    let mut merged = summary.clone();
    let fresh: Vec<Value> = summary["results"].as_array().cloned().unwrap_or_default();
    let mut results = fresh.clone();
    if let Some(old) = old.and_then(|o| o["results"].as_array()) {
        for r in old {
            if !fresh.iter().any(|f| f["name"] == r["name"]) {
                results.push(r.clone());
            }
        }
    }
    results.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    merged["results"] = Value::Array(results);
    merged
}

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.3} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// Whether `path` was written at or after `since`.
fn fresh(path: &Path, since: SystemTime) -> bool {
    fs::metadata(path).and_then(|m| m.modified()).is_ok_and(|t| t >= since)
}

/// Walks `target/criterion/**/new/` and reads the estimates and samples of every benchmark
/// written since `since`.
pub(crate) fn collect(dir: &Path, since: SystemTime) -> Result<Vec<Entry>> {
    let mut found = Vec::new();
    walk(dir, &mut found)?;
    let mut out = Vec::new();
    for new_dir in found {
        if !fresh(&new_dir.join("estimates.json"), since) {
            continue;
        }
        let bench: Value = read_json(&new_dir.join("benchmark.json"))?;
        let estimates: Value = read_json(&new_dir.join("estimates.json"))?;
        let sample: Value = read_json(&new_dir.join("sample.json"))?;
        let name = bench["full_id"].as_str().unwrap_or_default().to_owned();
        let median_ns = estimates["median"]["point_estimate"].as_f64().unwrap_or(f64::NAN);
        let per_iter = per_iteration(&sample);
        let size_bytes = bench["throughput"]["Bytes"].as_u64();
        out.push(Entry {
            name,
            median_ns,
            p95_ns: percentile(&per_iter, 0.95),
            p05_ns: percentile(&per_iter, 0.05),
            mean_ns: estimates["mean"]["point_estimate"].as_f64().unwrap_or(f64::NAN),
            max_ns: percentile(&per_iter, 1.0),
            size_bytes,
        });
    }
    Ok(out)
}

/// Reads the figures benches measured themselves (single-call latencies, interleaved steps):
/// `target/bench-results/extra/*.json`, each an array of `{name, median_ns, p95_ns, p05_ns,
/// mean_ns, max_ns}`, written since `since`.
fn collect_extras(dir: &Path, since: SystemTime) -> Result<Vec<Entry>> {
    let Ok(rd) = fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for entry in rd {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") || !fresh(&path, since) {
            continue;
        }
        out.extend(parse_extras(&read_json(&path)?));
    }
    Ok(out)
}

pub(crate) fn parse_extras(v: &Value) -> Vec<Entry> {
    let num = |e: &Value, k: &str| e[k].as_f64().unwrap_or(f64::NAN);
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    Some(Entry {
                        name: e["name"].as_str()?.to_owned(),
                        median_ns: num(e, "median_ns"),
                        p95_ns: num(e, "p95_ns"),
                        p05_ns: num(e, "p05_ns"),
                        mean_ns: num(e, "mean_ns"),
                        max_ns: num(e, "max_ns"),
                        size_bytes: None,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    let Ok(rd) = fs::read_dir(dir) else { return Ok(()) };
    for entry in rd {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "new") && path.join("estimates.json").exists() {
                found.push(path);
            } else if path.file_name().is_some_and(|n| n != "report") {
                walk(&path, found)?;
            }
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Per-iteration times (ns) of a criterion `sample.json`.
fn per_iteration(sample: &Value) -> Vec<f64> {
    let iters = sample["iters"].as_array().cloned().unwrap_or_default();
    let times = sample["times"].as_array().cloned().unwrap_or_default();
    iters.iter().zip(times.iter()).filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64()?.max(1.0))).collect()
}

/// Nearest-rank percentile; NaN on an empty slice.
pub(crate) fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// The soft regression threshold of a benchmark (design: 10 % for load and isolation).
pub(crate) fn threshold(name: &str) -> f64 {
    if name.contains("load") || name.contains("isolation") || name.contains("kernel_cache") { 0.10 } else { 0.20 }
}

/// Regressions of `entries` against a baseline summary, as human-readable lines.
pub(crate) fn compare(entries: &[Entry], baseline: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(base) = baseline["results"].as_array() else { return out };
    for e in entries {
        let Some(b) = base.iter().find(|b| b["name"].as_str() == Some(e.name.as_str())) else { continue };
        let Some(bm) = b["median_ns"].as_f64() else { continue };
        if bm <= 0.0 || !e.median_ns.is_finite() {
            continue;
        }
        let change = e.median_ns / bm - 1.0;
        let limit = threshold(&e.name);
        if change > limit {
            out.push(format!(
                "{}: median {} vs baseline {} (+{:.1} %, threshold {:.0} %)",
                e.name,
                human(e.median_ns),
                human(bm),
                change * 100.0,
                limit * 100.0
            ));
        }
    }
    out
}

fn summary_json(entries: &[Entry], root: &Path) -> Value {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    json!({
        "machine": machine(),
        "commit": commit,
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "results": entries.iter().map(|e| json!({
            "name": e.name,
            "median_ns": e.median_ns,
            "p95_ns": e.p95_ns,
            "p05_ns": e.p05_ns,
            "mean_ns": e.mean_ns,
            "max_ns": e.max_ns,
            "unit": "ns",
            "size_bytes": e.size_bytes,
        })).collect::<Vec<_>>(),
    })
}

fn machine() -> Value {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

/// A WARNING `TelemetryPacket` in protobuf's canonical JSON mapping, one event per regression.
fn regression_packet(regressions: &[String]) -> Value {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    json!({
        "packetId": format!("kasmina-bench-{secs}"),
        "timestamp": rfc3339(secs),
        "sourceSubsystem": "kasmina",
        "level": "TELEMETRY_LEVEL_WARNING",
        "events": regressions.iter().enumerate().map(|(i, r)| json!({
            "eventId": format!("evt-{}", i + 1),
            "description": "bench_regression",
            "level": "TELEMETRY_LEVEL_WARNING",
            "attributes": { "detail": r, "benchmark": r.split(':').next().unwrap_or_default() },
        })).collect::<Vec<_>>(),
        "systemHealth": { "status": "HEALTH_STATUS_DEGRADED", "summary": "bench_regression" },
    })
}

/// RFC 3339 UTC for a unix time in seconds (civil-from-days, no date crate needed).
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_790_000_000), "2026-09-21T14:13:20Z");
    }

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn a_regression_writes_one_warning_packet() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let base = json!({"results": [{"name": "cpu/runtime/kernel_load/hit", "median_ns": 100.0}]});
        let e = Entry {
            name: "cpu/runtime/kernel_load/hit".into(),
            median_ns: 200.0,
            p95_ns: 250.0,
            p05_ns: 150.0,
            mean_ns: 200.0,
            max_ns: 300.0,
            size_bytes: None,
        };
        let regressions = compare(&[e], &base);
        let path = write_telemetry(&dir, &regressions).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let packet: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(packet["level"], "TELEMETRY_LEVEL_WARNING");
        assert_eq!(packet["events"][0]["description"], "bench_regression");
        assert_eq!(packet["events"][0]["attributes"]["benchmark"], "cpu/runtime/kernel_load/hit");
        // No regression: an empty file, no packet.
        write_telemetry(&dir, &[]).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn saving_a_filtered_run_keeps_the_other_baseline_results() {
        let old = json!({"results": [{"name": "a", "median_ns": 1.0}, {"name": "b", "median_ns": 2.0}]});
        let new = json!({"commit": "c", "results": [{"name": "b", "median_ns": 3.0}]});
        let merged = merge_baseline(Some(&old), &new);
        assert_eq!(merged["commit"], "c");
        assert_eq!(merged["results"], json!([{"name": "a", "median_ns": 1.0}, {"name": "b", "median_ns": 3.0}]));
    }

    #[test]
    fn extras_parse_into_entries() {
        let v = json!([{"name": "x", "median_ns": 1.0, "p95_ns": 2.0, "p05_ns": 0.5, "mean_ns": 1.2, "max_ns": 9.0}, {"no": 1}]);
        let e = parse_extras(&v);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].median_ns, e[0].p95_ns, e[0].p05_ns, e[0].max_ns), (1.0, 2.0, 0.5, 9.0));
    }

    #[test]
    fn regression_thresholds() {
        let base = json!({"results": [
            {"name": "cpu/kernel_load/hit", "median_ns": 100.0},
            {"name": "cpu/leyline/encode", "median_ns": 100.0},
        ]});
        let e = |n: &str, m: f64| Entry {
            name: n.into(),
            median_ns: m,
            p95_ns: m,
            p05_ns: m,
            mean_ns: m,
            max_ns: m,
            size_bytes: None,
        };
        // 15 % slower: a regression for load (10 %), not for the others (20 %).
        let r = compare(&[e("cpu/kernel_load/hit", 115.0), e("cpu/leyline/encode", 115.0)], &base);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].starts_with("cpu/kernel_load/hit"));
        let r = compare(&[e("cpu/leyline/encode", 125.0), e("cpu/unknown", 1e9)], &base);
        assert_eq!(r.len(), 1, "{r:?}");
    }
}
