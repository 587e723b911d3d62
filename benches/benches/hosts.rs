//! Kasmina's per-step overhead on the demo's convolutional and transformer hosts (issue 16),
//! beside the bare host.
//!
//! The rigs (bare, dormant, training, blending, static) are `kasmina_benches::host_rigs`.
//!
//! Criterion times each (`cpu/hosts/<host>/<rig>`); then, because this machine's vCPU switches
//! between a fast and a slow state, the four steps run interleaved (bare, dormant, training,
//! blending, repeated) and the bench prints each rig's overhead over `bare` as the difference of
//! medians and as the median of the paired per-round differences, and writes the samples for
//! `cargo xtask bench` (`cpu/hosts/<host>/interleaved/*`).
//!
//! One thread (the bench re-runs itself with `RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1`); pin
//! it too: `taskset -c 1 cargo xtask bench --filter cpu/hosts`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use candle_core::Device;
use criterion::{Criterion, SamplingMode};
use kasmina_benches::extras::{self, median, quick, wanted};
use kasmina_benches::host_rigs::{HOSTS, Host, KINDS, Kind, Rig};

fn host_steps(c: &mut Criterion, host: Host) {
    let ids: Vec<String> = KINDS.iter().map(|k| format!("{}/{}", host.name("cpu"), k.as_str())).collect();
    if !wanted(&ids) {
        return;
    }
    let mut rigs: Vec<Rig> = KINDS.iter().map(|&k| Rig::new(host, k, &Device::Cpu).expect("rig")).collect();
    let mut group = c.benchmark_group(host.name("cpu"));
    group.sampling_mode(SamplingMode::Flat).sample_size(30);
    group.warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(if quick() { 3 } else { 10 }));
    for rig in &mut rigs {
        group.bench_function(rig.kind.as_str(), |b| b.iter(|| black_box(rig.step().expect("step"))));
    }
    group.finish();
    for rig in &rigs {
        rig.check().expect("the seed stayed in its stage");
    }

    // Interleaved: bare, dormant, training, blending, static, repeated.
    let rounds = if quick() { 60 } else { 600 };
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); KINDS.len()];
    let mut dormant_safe_point = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        for (rig, out) in rigs.iter_mut().zip(samples.iter_mut()) {
            let t = Instant::now();
            black_box(rig.step().expect("step"));
            out.push(t.elapsed().as_secs_f64() * 1e9);
            if rig.kind == Kind::Dormant {
                dormant_safe_point.push(rig.kasmina_ns);
            }
        }
    }
    for rig in &rigs {
        rig.check().expect("the seed stayed in its stage");
    }
    let bare = median(&samples[0]);
    for (kind, s) in KINDS.iter().zip(&samples).skip(1) {
        let paired: Vec<f64> = s.iter().zip(&samples[0]).map(|(k, b)| k - b).collect();
        eprintln!(
            "{} interleaved: {:<8} step {:+.2} % over bare (difference of medians), {:+.2} % (median of paired \
             differences); bare median {:.3} ms",
            host.name("cpu"),
            kind.as_str(),
            (median(s) / bare - 1.0) * 100.0,
            median(&paired) / bare * 100.0,
            bare / 1e6,
        );
    }
    eprintln!(
        "{} dormant: on_step (no seed) median {:.2} µs = {:.2} % of the bare step",
        host.name("cpu"),
        median(&dormant_safe_point) / 1e3,
        median(&dormant_safe_point) / bare * 100.0
    );
    let mut stats: Vec<extras::Stats> = KINDS
        .iter()
        .zip(samples)
        .map(|(k, s)| extras::Stats { name: format!("{}/interleaved/{}", host.name("cpu"), k.as_str()), samples_ns: s })
        .collect();
    stats.push(extras::Stats {
        name: format!("{}/interleaved/dormant_on_step", host.name("cpu")),
        samples_ns: dormant_safe_point,
    });
    extras::report(&format!("hosts_step_{}", host.task), &stats);
}

fn main() {
    kasmina_benches::threads::pin_candle_to_one_thread();
    let mut c = Criterion::default().configure_from_args();
    for host in HOSTS {
        host_steps(&mut c, host);
    }
    c.final_summary();
}
