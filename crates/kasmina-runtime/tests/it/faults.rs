//! Fault injection (issue 15) through the blueprint runtime, the telemetry sink, the trainer's
//! evaluation and the test clock: each fault is contained, counted and visible, and where
//! isolation says the host must be untouched, its weights are bit-identical to a run without the
//! faulty seed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use candle_core::Device;
use kasmina_runtime::reexports::telemetry::{Telemetry, TelemetryConfig, TelemetrySink};
use kasmina_runtime::{BlueprintLibrary, BlueprintRuntime, FetchError, KernelArtifact, blueprint::builtin};
use leyline::{BlueprintDescriptor, HealthStatus, SeedLifecycleStage as Stage, SeedOperation, TelemetryPacket};

use crate::harness::{Rig, config};

/// A blueprint source whose fetches take `delay` on the test clock.
#[derive(Debug)]
struct SlowRuntime {
    library: BlueprintLibrary,
    mock: Arc<quanta::Mock>,
    delay: Duration,
}

impl BlueprintRuntime for SlowRuntime {
    fn descriptor(&self, id: &str) -> Option<BlueprintDescriptor> {
        self.library.descriptor(id)
    }
    fn descriptors(&self) -> Vec<BlueprintDescriptor> {
        self.library.descriptors()
    }
    fn fetch(&self, id: &str, width: usize, device: &Device) -> Result<KernelArtifact, FetchError> {
        if id == builtin::LOW_RANK {
            self.mock.increment(self.delay);
        }
        self.library.fetch(id, width, device)
    }
}

#[test]
fn a_fetch_latency_spike_falls_back_counts_a_breaker_failure_and_degrades_health() {
    let mut rig = Rig::with_blueprints(
        config(),
        Some(Box::new(move |dir, mock| {
            let mock = mock.clone();
            Arc::new(SlowRuntime {
                library: BlueprintLibrary::open(dir).unwrap(),
                mock,
                delay: Duration::from_millis(50),
            }) as Arc<dyn BlueprintRuntime>
        })),
    );
    rig.train(3);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "slow-1", builtin::LOW_RANK);
    let r = rig.submit_and_step(&cmd);
    assert!(r.accepted, "{r:?}");
    let summary = rig.kasmina.seed_summaries().remove(0);
    assert_eq!(summary.kernel_blueprint_id, builtin::RESIDUAL_MLP, "fell back to the configured fallback");
    let fallback = rig.events("fallback_applied");
    assert_eq!(fallback[0].attributes["reason"], "latency_budget_exceeded");
    assert_eq!(rig.kasmina.health().summary, "fallback");
    assert_eq!(rig.kasmina.health().status(), HealthStatus::Degraded);
}

/// A sink that fails every packet.
#[derive(Debug, Default)]
struct FailingSink;

impl TelemetrySink for FailingSink {
    fn send(&self, _packet: &TelemetryPacket) -> kasmina_runtime::reexports::telemetry::Result<()> {
        Err(kasmina_runtime::reexports::telemetry::Error::Sink { sink: "test", reason: "the collector is down".into() })
    }
}

/// A sink that blocks until released (a collector that hangs).
#[derive(Debug)]
struct BlockingSink(Arc<AtomicBool>);

impl TelemetrySink for BlockingSink {
    fn send(&self, _packet: &TelemetryPacket) -> kasmina_runtime::reexports::telemetry::Result<()> {
        while !self.0.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

#[test]
fn a_failing_telemetry_sink_never_stops_training() {
    // Failing: every packet is refused; training and the lifecycle go on, failures are counted.
    let telemetry = Telemetry::new(FailingSink, TelemetryConfig::default()).unwrap();
    let mut rig = Rig::with_telemetry(config(), telemetry);
    rig.train(20);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "s1", builtin::RESIDUAL_MLP);
    assert!(rig.submit_and_step(&cmd).accepted);
    rig.train(30);
    assert_ne!(rig.stage(), Stage::SeedStageGerminated, "the seed moved on");
    let _ = rig.kasmina.flush_telemetry();
    assert!(rig.kasmina.telemetry().stats().sink_failures > 0);
}

#[test]
fn a_blocking_telemetry_sink_never_stops_training() {
    // Blocking: the worker hangs in the sink; emitting never blocks, drops are counted.
    struct Release(Arc<AtomicBool>);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst); // even when an assertion fails
        }
    }
    let released = Arc::new(AtomicBool::new(false));
    let telemetry =
        Telemetry::spawn(BlockingSink(released.clone()), TelemetryConfig { queue_capacity: 2, ..Default::default() })
            .unwrap();
    let mut rig = Rig::with_telemetry(config(), telemetry);
    // Declared after the rig, so dropped before it: the worker is released before the runtime
    // joins it, also when an assertion fails.
    let release = Release(released);
    let started = std::time::Instant::now();
    for _ in 0..20 {
        rig.train(5);
        rig.epoch(); // a packet with the metrics each time
    }
    assert!(started.elapsed() < Duration::from_secs(30), "training did not wait for the sink");
    assert!(rig.kasmina.telemetry().stats().dropped > 0, "normal packets dropped and counted");
    drop(release);
}

#[test]
fn an_evaluation_that_errors_is_a_typed_error_and_changes_nothing() {
    let mut rig = Rig::new(config());
    rig.train(60);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "s1", builtin::RESIDUAL_MLP);
    assert!(rig.submit_and_step(&cmd).accepted);
    assert!(rig.step_until(Stage::SeedStageShadowing, 200));
    let before = rig.kasmina.export_seed_states();
    let err = rig.kasmina.evaluate_counterfactual(|| Err(candle_core::Error::Msg("validation data gone".into())));
    assert!(matches!(err, Err(kasmina_runtime::Error::Evaluation(_))), "{err:?}");
    assert_eq!(rig.kasmina.export_seed_states(), before);
    let failed = rig.events("counterfactual_contribution");
    assert!(failed.iter().any(|e| e.attributes.get("error").is_some_and(|m| m.contains("validation data gone"))));
    // Mismatched batch counts are refused the same way, without a measurement.
    let mut calls = 0;
    let r = rig.kasmina.evaluate_counterfactual(|| {
        calls += 1;
        Ok(vec![1.0; calls])
    });
    assert!(r.unwrap().is_empty());
}

#[test]
fn a_seed_that_turns_non_finite_leaves_the_host_bit_identical() {
    let host = |germinate: bool| {
        let mut rig = Rig::new(config());
        rig.train(30);
        if germinate {
            let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "broken", builtin::BROKEN);
            assert!(rig.submit_and_step(&cmd).accepted);
        } else {
            rig.step();
        }
        rig.train(40);
        (rig.host_weights(), rig.kasmina.seed_summaries())
    };
    let (alone, _) = host(false);
    let (with_broken, summary) = host(true);
    assert!(summary[0].stages.contains(&Stage::SeedStageCulled), "{:?}", summary[0].gates);
    assert_eq!(alone, with_broken, "the host never saw the broken seed");
}

/// The validation metric regresses in probation: the trainer's counterfactual evaluation now
/// says the seed makes validation worse (its batches are better with the slot bypassed). G4
/// refuses the seed, it is culled with a rollback payload and blended out, never fossilized, and
/// the slot ends forwarding the host activation unchanged.
#[test]
fn a_validation_metric_that_regresses_in_probation_culls_the_seed_with_a_rollback_payload() {
    let mut rig = Rig::new(config());
    rig.train(60);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "s1", builtin::RESIDUAL_MLP);
    assert!(rig.submit_and_step(&cmd).accepted);
    assert!(rig.step_until(Stage::SeedStageProbationary, 400), "{:?}", rig.kasmina.seed_summaries()[0].gates);

    let mut stages = Vec::new();
    for _ in 0..60 {
        rig.step();
        stages.push(rig.stage());
        if rig.step.is_multiple_of(10) {
            // First call: the model as is; second: the slot bypassed (decisions D16). As is is
            // worse on every batch, by a margin with some spread.
            let calls = std::cell::Cell::new(0_u32);
            rig.kasmina
                .evaluate_counterfactual(|| {
                    let call = calls.get();
                    calls.set(call + 1);
                    let worse = if call == 0 { 0.2 } else { 0.0 };
                    Ok((0..8).map(|i| 0.5 + 0.01 * i as f32 + worse).collect())
                })
                .unwrap();
            let (val_loss, val_acc) = rig.validate();
            rig.kasmina.on_epoch(kasmina_runtime::EpochReport { epoch: rig.epoch, val_loss, val_acc }).unwrap();
            rig.epoch += 1;
        }
        if rig.stage() != Stage::SeedStageProbationary {
            break;
        }
    }
    assert!(
        matches!(rig.stage(), Stage::SeedStageCulled | Stage::SeedStageEmbargoed),
        "a regressing seed is culled: {:?} {:?}",
        rig.stage(),
        rig.kasmina.seed_summaries()[0].gates
    );
    assert!(!stages.contains(&Stage::SeedStageFossilized), "never fossilized");
    let refusal = rig.kasmina.seed_summaries()[0].gates.iter().rev().find(|g| !g.passed).cloned();
    assert!(
        refusal.as_ref().is_some_and(|g| g.gate() == leyline::SeedLifecycleGate::SeedGateG4SystemImpact),
        "G4 refused it: {refusal:?}"
    );
    assert!(rig.kasmina.rollback_payload("s1").is_some(), "rollback payload recorded");
    assert!(!rig.events("gate_failure").is_empty());
    // Blended out, then the slot forwards the host activation unchanged.
    assert!(rig.step_until(Stage::SeedStageEmbargoed, 200));
    let h = candle_core::Tensor::ones((2, crate::harness::WIDTH), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(rig.slot.forward(&h).unwrap().to_vec2::<f32>().unwrap(), h.to_vec2::<f32>().unwrap());
}
