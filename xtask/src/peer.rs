//! `cargo xtask bench --peer`: our Leyline codec and the peer's (Python protobuf, upb) on the
//! very same fixture bytes, interleaved on one pinned core, N rounds; per-round ratios
//! (peer / ours) and their median.
//!
//! Creates `target/peer-venv` (protobuf and grpcio-tools from `benches/peer/requirements.txt`),
//! generates Python stubs from `proto/`, writes the fixtures' bytes with the
//! `write_fixtures` example, then per round measures every (fixture, operation) twice back to
//! back — `benches/peer/peer_codec.py --only` and the matching criterion benchmark of the
//! `leyline` bench — alternating which goes first. Writes the rounds to
//! `target/bench-results/peer.json`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const FIXTURES: &[&str] = &["adaptation_command", "system_state_8x4", "telemetry_10m_5e"];
/// (row, the peer's measure, ours).
const ROWS: &[(&str, &str, &str)] = &[
    ("encode", "encode", "encode"),
    ("decode (parse)", "parse", "decode"),
    ("decode (parse + read every field)", "parse_read", "decode_read"),
];
const USAGE: &str = "cargo xtask bench --peer [--rounds N] [--core C] [--quick] [--strict]";
/// The codec target of issue 20: ours at least this many times faster, at the median.
const TARGET: f64 = 2.0;

#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) rounds: usize,
    pub(crate) core: usize,
    pub(crate) strict: bool,
    pub(crate) quick: bool,
}

pub(crate) fn run(root: &Path, o: &Options) -> Result<()> {
    let python = venv(root)?;
    let stubs = root.join("target/peer-stubs");
    fs::create_dir_all(&stubs)?;
    let status = Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-Iproto", &format!("--python_out={}", stubs.display())])
        .arg("esper/leyline/v1/leyline.proto")
        .current_dir(root)
        .status()
        .context("running grpc_tools.protoc")?;
    if !status.success() {
        bail!("generating the Python stubs failed");
    }
    let fixtures = root.join("target/peer-fixtures");
    let status = crate::cargo()
        .args(["run", "--release", "--locked", "-q", "-p", "kasmina-benches", "--example", "write_fixtures", "--"])
        .arg(&fixtures)
        .current_dir(root)
        .status()
        .context("writing the fixtures")?;
    if !status.success() {
        bail!("writing the fixtures failed");
    }
    // Build the bench once, outside the timed rounds.
    let status = crate::cargo()
        .args(["bench", "--locked", "--no-run", "-p", "kasmina-benches", "--bench", "leyline"])
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("building the leyline bench failed");
    }
    // Finely interleaved: per round, each (fixture, operation) is measured by the peer and by
    // us back to back (alternating who goes first), so a speed switch of the vCPU or a burst of
    // load on the other core hits both sides of a pair rather than a whole pass of one side.
    let mut rounds = Vec::new();
    let mut flip = false;
    for round in 0..o.rounds {
        let (mut peer, mut ours) = (serde_json::Map::new(), serde_json::Map::new());
        for fixture in FIXTURES {
            for (_, theirs, mine) in ROWS {
                let (pk, ok) = (format!("{fixture}/{theirs}"), format!("{fixture}/{mine}"));
                flip = !flip;
                if flip {
                    peer.insert(pk.clone(), peer_figure(root, &python, &stubs, &fixtures, &pk, o)?);
                    ours.insert(ok.clone(), our_figure(root, &ok, o)?);
                } else {
                    ours.insert(ok.clone(), our_figure(root, &ok, o)?);
                    peer.insert(pk.clone(), peer_figure(root, &python, &stubs, &fixtures, &pk, o)?);
                }
            }
            // Ours only: the peer-exact form, for `encode_peer / encode`.
            let key = format!("{fixture}/encode_peer");
            ours.insert(key.clone(), our_figure(root, &key, o)?);
        }
        eprintln!("peer: round {} of {} done", round + 1, o.rounds);
        rounds.push((Value::Object(peer), Value::Object(ours)));
    }
    report(root, &rounds, o)
}

/// `target/peer-venv/bin/python`, created with the pinned requirements if missing.
fn venv(root: &Path) -> Result<std::path::PathBuf> {
    let dir = root.join("target/peer-venv");
    let python = dir.join("bin/python");
    if !python.exists() {
        let status = Command::new("python3").args(["-m", "venv"]).arg(&dir).status().context("python3 -m venv")?;
        if !status.success() {
            bail!("creating {} failed (python3 with venv is needed)", dir.display());
        }
    }
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(root.join("benches/peer/requirements.txt"))
        .status()
        .context("pip install")?;
    if !status.success() {
        bail!("installing the peer's protobuf failed");
    }
    Ok(python)
}

/// The peer's median ns for `key` (`fixture/op`).
fn peer_figure(root: &Path, python: &Path, stubs: &Path, fixtures: &Path, key: &str, o: &Options) -> Result<Value> {
    let seconds = if o.quick { "0.3" } else { "1" };
    let out = Command::new("taskset")
        .arg("-c")
        .arg(o.core.to_string())
        .arg(python)
        .arg(root.join("benches/peer/peer_codec.py"))
        .args([stubs, fixtures])
        .args(["--seconds", seconds, "--only", key])
        .output()
        .context("running the peer (taskset and python3 are needed)")?;
    if !out.status.success() {
        bail!("the peer failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("reading the peer's JSON")?;
    if v["implementation"] != "upb" {
        bail!("the peer's protobuf runs `{}`, not upb", v["implementation"]);
    }
    v.get(key).cloned().with_context(|| format!("the peer reported no {key}"))
}

/// Our median ns for `key` (`fixture/op`): one criterion benchmark of the `leyline` bench.
fn our_figure(root: &Path, key: &str, o: &Options) -> Result<Value> {
    let started = SystemTime::now() - std::time::Duration::from_secs(2);
    let (warm, measure) = if o.quick { ("0.2", "0.5") } else { ("0.3", "1") };
    let status = Command::new("taskset")
        .arg("-c")
        .arg(o.core.to_string())
        .arg(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(["bench", "--locked", "-q", "-p", "kasmina-benches", "--bench", "leyline", "--"])
        .arg(format!("^cpu/leyline/{key}$"))
        .args(["--warm-up-time", warm, "--measurement-time", measure, "--noplot"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .current_dir(root)
        .status()
        .context("running the leyline bench")?;
    if !status.success() {
        bail!("the leyline bench failed on {key}");
    }
    let name = format!("cpu/leyline/{key}");
    crate::bench::collect(&root.join("target/criterion"), started)?
        .into_iter()
        .find(|e| e.name == name)
        .map(|e| json!(e.median_ns))
        .with_context(|| format!("criterion wrote no figure for {name}"))
}

pub(crate) fn parse(rest: &[String]) -> Result<Options> {
    let mut o = Options { rounds: 3, core: 1, strict: false, quick: false };
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--peer" => {}
            "--strict" => o.strict = true,
            "--quick" => o.quick = true,
            "--rounds" => o.rounds = it.next().context("--rounds needs a value")?.parse().context("--rounds")?,
            "--core" => o.core = it.next().context("--core needs a value")?.parse().context("--core")?,
            other => bail!("unexpected argument `{other}`\nusage: {USAGE}"),
        }
    }
    if o.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    Ok(o)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn report(root: &Path, rounds: &[(Value, Value)], o: &Options) -> Result<()> {
    let num = |v: &Value, k: &str| v[k].as_f64().with_context(|| format!("no figure for {k}"));
    let mut rows = Vec::new();
    let mut short = Vec::new();
    println!("\n| fixture | operation | peer ns (median) | ours ns (median) | peer / ours per round | median ratio |");
    println!("|---|---|---:|---:|---|---:|");
    for fixture in FIXTURES {
        for (row, theirs, ours) in ROWS {
            let (mut p, mut u, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for (peer, our) in rounds {
                let (a, b) = (num(peer, &format!("{fixture}/{theirs}"))?, num(our, &format!("{fixture}/{ours}"))?);
                p.push(a);
                u.push(b);
                ratios.push(a / b);
            }
            let per_round: Vec<String> = ratios.iter().map(|r| format!("{r:.2}×")).collect();
            let m = median(ratios.clone());
            println!(
                "| {fixture} | {row} | {:.0} | {:.0} | {} | **{m:.2}×** |",
                median(p.clone()),
                median(u.clone()),
                per_round.join(", ")
            );
            if m < TARGET {
                short.push(format!("{fixture} {row}: {m:.2}×"));
            }
            rows.push(json!({"fixture": fixture, "row": row, "peer_ns": p, "ours_ns": u, "ratios": ratios, "median_ratio": m}));
        }
        let peer_form: Vec<f64> = rounds
            .iter()
            .map(|(_, our)| Ok(num(our, &format!("{fixture}/encode_peer"))? / num(our, &format!("{fixture}/encode"))?))
            .collect::<Result<_>>()?;
        let m = median(peer_form.clone());
        println!("| {fixture} | encode_peer / encode (ours, target ≤ 1.5) | | | {peer_form:.2?} | {m:.2} |");
        if m > 1.5 {
            short.push(format!("{fixture} encode_peer is {m:.2}× encode"));
        }
    }
    let out_dir = root.join("target/bench-results");
    fs::create_dir_all(&out_dir)?;
    let record = json!({"rounds": rounds.iter().map(|(p, u)| json!({"peer": p, "ours": u})).collect::<Vec<_>>(), "rows": rows, "core": o.core});
    fs::write(out_dir.join("peer.json"), serde_json::to_string_pretty(&record)?)?;
    println!("\n{} rounds on core {}; rounds in target/bench-results/peer.json", rounds.len(), o.core);
    if short.is_empty() {
        println!("every codec row is at least {TARGET}× the peer at the median");
    } else {
        println!("short of the target: {}", short.join("; "));
        if o.strict {
            bail!("{} row(s) short of the target", short.len());
        }
    }
    Ok(())
}
