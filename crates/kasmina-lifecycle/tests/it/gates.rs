//! Every gate's pass and each of its failure reasons.

use kasmina_lifecycle::gates::{reasons::*, *};
use leyline::{CircuitBreakerState, GateEvent, SeedLifecycleGate as Gate, SeedLifecycleStage as Stage};
use rstest::rstest;

use crate::fixtures::{self, G0, G1Training, G2, G3, SEED};

/// Checks the common fields and returns the event for further checks.
fn check(event: GateEvent, gate: Gate, from: Stage, to: Stage, reason: &str) -> GateEvent {
    assert_eq!(event.gate(), gate);
    assert_eq!(event.passed, reason.is_empty(), "{event:?}");
    assert_eq!(event.reason, reason, "{event:?}");
    assert_eq!(event.from_stage(), from);
    assert_eq!(event.to_stage(), to);
    assert_eq!(event.timestamp, Some(timestamp(fixtures::wall())));
    event
}

#[rstest]
#[case::pass(|_: &mut G0| {}, "")]
#[case::empty_seed_id(|e: &mut G0| e.seed_id = String::new(), INVALID_SEED_ID)]
#[case::seed_id_with_space(|e: &mut G0| e.seed_id = "seed 7".into(), INVALID_SEED_ID)]
#[case::live(|e: &mut G0| e.seed_already_live = true, SEED_ALREADY_LIVE)]
#[case::blank_blueprint(|e: &mut G0| e.blueprint_id = "  ".into(), MISSING_BLUEPRINT_ID)]
#[case::unknown_blueprint(|e: &mut G0| e.blueprint = None, BLUEPRINT_UNKNOWN)]
#[case::mismatch(|e: &mut G0| e.blueprint_id = "BP002".into(), BLUEPRINT_MISMATCH)]
#[case::nan(|e: &mut G0| { e.parameters.insert("rank".into(), f32::NAN); }, PARAMETER_NOT_FINITE)]
#[case::infinite(|e: &mut G0| { e.parameters.insert("dropout".into(), f32::INFINITY); }, PARAMETER_NOT_FINITE)]
#[case::not_allowed(|e: &mut G0| { e.parameters.insert("width".into(), 1.0); }, PARAMETER_NOT_ALLOWED)]
#[case::above(|e: &mut G0| { e.parameters.insert("rank".into(), 65.0); }, PARAMETER_OUT_OF_BOUNDS)]
#[case::below(|e: &mut G0| { e.parameters.insert("dropout".into(), -0.1); }, PARAMETER_OUT_OF_BOUNDS)]
#[case::nan_bounds(|e: &mut G0| {
    e.blueprint.as_mut().unwrap().allowed_parameters.get_mut("rank").unwrap().max_value = f64::NAN;
}, PARAMETER_OUT_OF_BOUNDS)]
#[case::no_parameters(|e: &mut G0| e.parameters.clear(), "")]
#[case::padded_id(|e: &mut G0| e.blueprint_id = " BP001 ".into(), "")]
fn g0_sanity(#[case] mutate: fn(&mut G0), #[case] reason: &str) {
    let mut g0 = G0::passing();
    mutate(&mut g0);
    let ctx = fixtures::ctx(&g0.seed_id, Stage::SeedStageDormant, Stage::SeedStageGerminated);
    let event = evaluate_g0_sanity(&ctx, &g0.evidence());
    let event = check(event, Gate::SeedGateG0Sanity, Stage::SeedStageDormant, Stage::SeedStageGerminated, reason);
    assert_eq!(event.seed_id, g0.seed_id);
    assert_eq!(event.attributes["blueprint_id"], g0.blueprint_id.trim());
}

#[test]
fn g0_names_the_offending_parameter() {
    let mut g0 = G0::passing();
    g0.parameters.insert("rank".into(), 100.0);
    let event =
        evaluate_g0_sanity(&fixtures::ctx(SEED, Stage::SeedStageDormant, Stage::SeedStageGerminated), &g0.evidence());
    assert_eq!(event.attributes["parameter"], "rank");
    assert_eq!(event.attributes["value"], "100");
    assert_eq!(event.attributes["max"], "64");
}

#[rstest]
#[case::pass(|_: &mut GerminatedEvidence| {}, "")]
#[case::no_kernel(|e: &mut GerminatedEvidence| e.kernel_attached = false, KERNEL_NOT_ATTACHED)]
#[case::not_registered(|e: &mut GerminatedEvidence| e.parameters_registered = false, PARAMETERS_NOT_REGISTERED)]
#[case::conflict(|e: &mut GerminatedEvidence| e.registration_conflict = true, REGISTRATION_CONFLICT)]
#[case::not_armed(|e: &mut GerminatedEvidence| e.isolation_armed = false, ISOLATION_NOT_ARMED)]
#[case::violations(|e: &mut GerminatedEvidence| e.isolation_violations = 1, ISOLATION_VIOLATIONS_PRESENT)]
fn g1_germinated(#[case] mutate: fn(&mut GerminatedEvidence), #[case] reason: &str) {
    let mut e = fixtures::g1_germinated();
    mutate(&mut e);
    let (from, to) = (Stage::SeedStageGerminated, Stage::SeedStageTraining);
    let event = evaluate_g1_germinated(&fixtures::ctx(SEED, from, to), &e);
    check(event, Gate::SeedGateG1GradientHealth, from, to, reason);
}

#[rstest]
#[case::pass(|_: &mut G1Training| {}, "")]
#[case::violations(|e: &mut G1Training| e.isolation_violations = 2, ISOLATION_VIOLATIONS_PRESENT)]
#[case::empty(|e: &mut G1Training| e.window.clear(), SEED_LOSS_WINDOW_TOO_SHORT)]
#[case::single(|e: &mut G1Training| e.window = vec![1.0], SEED_LOSS_WINDOW_TOO_SHORT)]
#[case::nan(|e: &mut G1Training| e.window[3] = f32::NAN, SEED_LOSS_NOT_FINITE)]
#[case::inf(|e: &mut G1Training| e.window[0] = f32::INFINITY, SEED_LOSS_NOT_FINITE)]
#[case::flat(|e: &mut G1Training| e.window = vec![1.0; 8], SEED_LOSS_NOT_IMPROVED)]
#[case::worse(|e: &mut G1Training| e.window.reverse(), SEED_LOSS_NOT_IMPROVED)]
#[case::two_improving(|e: &mut G1Training| e.window = vec![1.0, 0.9], "")]
#[case::nan_part(|e: &mut G1Training| e.window_part = f64::NAN, "")]
#[case::huge_part(|e: &mut G1Training| e.window_part = 10.0, "")]
#[case::slow_hook(|e: &mut G1Training| e.hook_latency_ms = 10.5, HOOK_LATENCY_EXCEEDED)]
#[case::hook_at_budget(|e: &mut G1Training| e.hook_latency_ms = 10.0, "")]
#[case::nan_hook(|e: &mut G1Training| e.hook_latency_ms = f64::NAN, HOOK_LATENCY_EXCEEDED)]
fn g1_training(#[case] mutate: fn(&mut G1Training), #[case] reason: &str) {
    let mut e = G1Training::passing();
    mutate(&mut e);
    let (from, to) = (Stage::SeedStageTraining, Stage::SeedStageBlending);
    let event = evaluate_g1_training(&fixtures::ctx(SEED, from, to), &e.evidence());
    check(event, Gate::SeedGateG1GradientHealth, from, to, reason);
}

#[test]
fn g1_training_compares_the_ends_of_the_window() {
    // Improves overall, but the last quarter is not below the first quarter.
    let mut e = G1Training::passing();
    e.window = vec![1.0, 1.0, 5.0, 5.0, 1.0, 1.0, 1.0, 1.0];
    let ctx = fixtures::ctx(SEED, Stage::SeedStageTraining, Stage::SeedStageBlending);
    let event = evaluate_g1_training(&ctx, &e.evidence());
    assert_eq!(event.reason, SEED_LOSS_NOT_IMPROVED);
    assert_eq!(event.attributes["seed_loss_first"], "1");
    assert_eq!(event.attributes["seed_loss_last"], "1");
    // Comparing halves instead, it improved.
    e.window_part = 0.5;
    assert!(evaluate_g1_training(&ctx, &e.evidence()).passed);
}

#[rstest]
#[case::pass(|_: &mut G2| {}, "")]
#[case::alpha(|e: &mut G2| e.alpha_schedule_complete = false, ALPHA_SCHEDULE_INCOMPLETE)]
#[case::blended_nan(|e: &mut G2| e.blended_output_finite = false, BLENDED_OUTPUT_NOT_FINITE)]
#[case::short(|e: &mut G2| e.window = vec![1.0], LOSS_WINDOW_TOO_SHORT)]
#[case::nan(|e: &mut G2| e.window[1] = f32::NAN, LOSS_NOT_FINITE)]
#[case::oscillating(|e: &mut G2| e.window = vec![0.5, 2.5, 0.5, 2.5], LOSS_VARIANCE_TOO_HIGH)]
#[case::tight_ceiling(|e: &mut G2| e.max_loss_variance = 0.0, LOSS_VARIANCE_TOO_HIGH)]
#[case::slow_hook(|e: &mut G2| e.hook_latency_ms = 5.5, LATENCY_BUDGET_EXCEEDED)]
#[case::hook_at_budget(|e: &mut G2| e.hook_latency_ms = 5.0, "")]
#[case::nan_hook(|e: &mut G2| e.hook_latency_ms = f64::NAN, LATENCY_BUDGET_EXCEEDED)]
#[case::slow_fetch(|e: &mut G2| e.fetch_latency_ms = 50.5, LATENCY_BUDGET_EXCEEDED)]
#[case::fetch_at_budget(|e: &mut G2| e.fetch_latency_ms = 50.0, "")]
#[case::nan_fetch_budget(|e: &mut G2| e.fetch_latency_budget_ms = f64::NAN, LATENCY_BUDGET_EXCEEDED)]
#[case::fallback_alone_passes(|e: &mut G2| e.fallback_used = true, "")]
fn g2_stability(#[case] mutate: fn(&mut G2), #[case] reason: &str) {
    let mut e = G2::passing();
    mutate(&mut e);
    let (from, to) = (Stage::SeedStageBlending, Stage::SeedStageShadowing);
    let event = evaluate_g2_stability(&fixtures::ctx(SEED, from, to), &e.evidence());
    let event = check(event, Gate::SeedGateG2Stability, from, to, reason);
    assert_eq!(event.attributes["fallback_used"], e.fallback_used.to_string());
}

/// Runs G2 on `e` and returns the `latency`, `latency_ms` and `budget_ms` attributes of a
/// latency failure (`None` when it passed).
fn g2_latency_failure(e: &G2) -> Option<(String, String, String)> {
    let ctx = fixtures::ctx(SEED, Stage::SeedStageBlending, Stage::SeedStageShadowing);
    let event = evaluate_g2_stability(&ctx, &e.evidence());
    if event.passed {
        return None;
    }
    assert_eq!(event.reason, LATENCY_BUDGET_EXCEEDED, "{event:?}");
    let a = &event.attributes;
    Some((a["latency"].clone(), a["latency_ms"].clone(), a["budget_ms"].clone()))
}

#[test]
fn g2_checks_each_latency_against_its_own_budget() {
    let owned =
        |latency: &str, value: &str, budget: &str| Some((latency.to_owned(), value.to_owned(), budget.to_owned()));
    // The hook is over its 5 ms budget though well under the fetch budget: a hook failure.
    let mut e = G2::passing();
    e.hook_latency_ms = 20.0;
    assert_eq!(g2_latency_failure(&e), owned("hook", "20", "5"));
    // The fetch is over its 50 ms budget while the hook is fine: a fetch failure.
    let mut e = G2::passing();
    e.fetch_latency_ms = 80.0;
    assert_eq!(g2_latency_failure(&e), owned("fetch", "80", "50"));
    // A fetch of 40 ms is far over the hook budget but within its own: it passes.
    let e = G2::passing();
    assert!(e.fetch_latency_ms > e.hook_latency_budget_ms);
    assert_eq!(g2_latency_failure(&e), None);
    // Both over: the hook is checked first.
    let mut e = G2::passing();
    e.hook_latency_ms = 6.0;
    e.fetch_latency_ms = 60.0;
    assert_eq!(g2_latency_failure(&e), owned("hook", "6", "5"));
}

#[rstest]
#[case::pass(|_: &mut G3| {}, "")]
#[case::shape(|e: &mut G3| e.seed_shape = vec![32, 64], OUTPUT_SHAPE_MISMATCH)]
#[case::rank(|e: &mut G3| e.seed_shape = vec![32, 128, 1], OUTPUT_SHAPE_MISMATCH)]
#[case::dtype(|e: &mut G3| e.seed_dtype = "bf16".into(), OUTPUT_DTYPE_MISMATCH)]
#[case::telemetry(|e: &mut G3| e.telemetry_complete = false, TELEMETRY_INCOMPLETE)]
#[case::not_restored(|e: &mut G3| e.pause_resume = PauseResumeCheck::KernelNotRestored, KERNEL_NOT_RESTORED)]
#[case::restored(|e: &mut G3| e.pause_resume = PauseResumeCheck::KernelRestored, "")]
fn g3_interface(#[case] mutate: fn(&mut G3), #[case] reason: &str) {
    let mut e = G3::passing();
    mutate(&mut e);
    let (from, to) = (Stage::SeedStageShadowing, Stage::SeedStageProbationary);
    let event = evaluate_g3_interface(&fixtures::ctx(SEED, from, to), &e.evidence());
    check(event, Gate::SeedGateG3Interface, from, to, reason);
}

#[test]
fn g3_reports_both_shapes() {
    let mut e = G3::passing();
    e.seed_shape = vec![4, 2];
    let event = evaluate_g3_interface(
        &fixtures::ctx(SEED, Stage::SeedStageShadowing, Stage::SeedStageProbationary),
        &e.evidence(),
    );
    assert_eq!(event.attributes["seed_shape"], "[4,2]");
    assert_eq!(event.attributes["host_shape"], "[32,128]");
}

#[rstest]
#[case::improved(|_: &mut SystemImpactEvidence| {}, "")]
#[case::within_tolerance(|e: &mut SystemImpactEvidence| e.validation_metric = 1.0099, "")]
#[case::regressed(|e: &mut SystemImpactEvidence| e.validation_metric = 1.0101, VALIDATION_REGRESSED)]
#[case::zero_tolerance(|e: &mut SystemImpactEvidence| { e.tolerance = 0.0; e.validation_metric = 1.0001; }, VALIDATION_REGRESSED)]
#[case::higher_better_ok(|e: &mut SystemImpactEvidence| { e.direction = MetricDirection::HigherIsBetter; e.validation_metric = 0.995; }, "")]
#[case::higher_better_regressed(|e: &mut SystemImpactEvidence| { e.direction = MetricDirection::HigherIsBetter; e.validation_metric = 0.98; }, VALIDATION_REGRESSED)]
#[case::negative_baseline(|e: &mut SystemImpactEvidence| { e.baseline_metric = -2.0; e.validation_metric = -1.99; }, "")]
#[case::negative_baseline_regressed(|e: &mut SystemImpactEvidence| { e.baseline_metric = -2.0; e.validation_metric = -1.97; }, VALIDATION_REGRESSED)]
#[case::nan_metric(|e: &mut SystemImpactEvidence| e.validation_metric = f64::NAN, VALIDATION_METRIC_NOT_FINITE)]
#[case::inf_baseline(|e: &mut SystemImpactEvidence| e.baseline_metric = f64::INFINITY, VALIDATION_METRIC_NOT_FINITE)]
#[case::negative_tolerance(|e: &mut SystemImpactEvidence| e.tolerance = -0.01, INVALID_TOLERANCE)]
#[case::nan_tolerance(|e: &mut SystemImpactEvidence| e.tolerance = f64::NAN, INVALID_TOLERANCE)]
#[case::violations(|e: &mut SystemImpactEvidence| e.isolation_violations = 1, ISOLATION_VIOLATIONS_PRESENT)]
#[case::breaker_open(|e: &mut SystemImpactEvidence| e.breakers = &[("kernel_fetch", CircuitBreakerState::CircuitStateOpen)], BREAKER_NOT_CLOSED)]
#[case::breaker_half_open(|e: &mut SystemImpactEvidence| e.breakers = &[("blending", CircuitBreakerState::CircuitStateHalfOpen)], BREAKER_NOT_CLOSED)]
#[case::breaker_unknown(|e: &mut SystemImpactEvidence| e.breakers = &[("isolation", CircuitBreakerState::CircuitStateUnknown)], BREAKER_NOT_CLOSED)]
#[case::no_breakers(|e: &mut SystemImpactEvidence| e.breakers = &[], "")]
fn g4_system_impact(#[case] mutate: fn(&mut SystemImpactEvidence), #[case] reason: &str) {
    let mut e = fixtures::g4();
    mutate(&mut e);
    let (from, to) = (Stage::SeedStageProbationary, Stage::SeedStageFossilized);
    let event = evaluate_g4_system_impact(&fixtures::ctx(SEED, from, to), &e);
    let event = check(event, Gate::SeedGateG4SystemImpact, from, to, reason);
    assert_eq!(event.attributes["metric"], e.validation_metric.to_string());
    assert_eq!(event.attributes["baseline"], e.baseline_metric.to_string());
    if reason == VALIDATION_REGRESSED {
        assert_eq!(event.attributes["direction"], e.direction.as_str());
    }
}

#[test]
fn g4_names_the_first_breaker_that_is_not_closed() {
    use CircuitBreakerState::{
        CircuitStateClosed as Closed, CircuitStateHalfOpen as HalfOpen, CircuitStateOpen as Open,
    };
    let (from, to) = (Stage::SeedStageProbationary, Stage::SeedStageFossilized);
    let ctx = fixtures::ctx(SEED, from, to);
    let breakers = [("kernel_fetch", Closed), ("blending", HalfOpen), ("isolation", Closed), ("telemetry", Open)];
    let e = SystemImpactEvidence { breakers: &breakers, ..fixtures::g4() };
    let event = check(evaluate_g4_system_impact(&ctx, &e), Gate::SeedGateG4SystemImpact, from, to, BREAKER_NOT_CLOSED);
    assert_eq!(event.attributes["breaker"], "blending");
    assert_eq!(event.attributes["breaker_state"], "HALF_OPEN");
    // Only the breakers decide: the same evidence with all of them closed passes.
    let closed = breakers.map(|(name, _)| (name, Closed));
    let event = evaluate_g4_system_impact(&ctx, &SystemImpactEvidence { breakers: &closed, ..e });
    assert!(event.passed, "{event:?}");
    assert!(!event.attributes.contains_key("breaker"));
    // The last breaker of several is checked too.
    let last_open = [("kernel_fetch", Closed), ("isolation", Open)];
    let event = evaluate_g4_system_impact(&ctx, &SystemImpactEvidence { breakers: &last_open, ..e });
    assert_eq!((event.reason.as_str(), event.attributes["breaker"].as_str()), (BREAKER_NOT_CLOSED, "isolation"));
    assert_eq!(event.attributes["breaker_state"], "OPEN");
}

#[rstest]
#[case::clean(|_: &mut ResetEvidence| {}, "", None)]
#[case::kernel(|e: &mut ResetEvidence| e.kernel_dropped = false, KERNEL_NOT_DROPPED, Some("kernel_not_dropped"))]
#[case::params(|e: &mut ResetEvidence| e.parameters_deregistered = false, PARAMETERS_NOT_DEREGISTERED, Some("parameters_not_deregistered"))]
#[case::session(|e: &mut ResetEvidence| e.isolation_session_closed = false, ISOLATION_SESSION_OPEN, Some("isolation_session_open"))]
#[case::counters(|e: &mut ResetEvidence| e.counters_zeroed = false, COUNTERS_NOT_ZEROED, Some("counters_not_zeroed"))]
#[case::cache(|e: &mut ResetEvidence| e.cache_entries_removed = false, CACHE_ENTRIES_REMAINING, Some("cache_entries_remaining"))]
#[case::two(|e: &mut ResetEvidence| { e.counters_zeroed = false; e.kernel_dropped = false; }, KERNEL_NOT_DROPPED, Some("kernel_not_dropped,counters_not_zeroed"))]
#[case::slot_output(|e: &mut ResetEvidence| e.slot_forwards_host_unchanged = false, SLOT_OUTPUT_CHANGED, Some("slot_output_changed"))]
#[case::slot_output_last(|e: &mut ResetEvidence| { e.slot_forwards_host_unchanged = false; e.cache_entries_removed = false; }, CACHE_ENTRIES_REMAINING, Some("cache_entries_remaining,slot_output_changed"))]
#[case::all(|e: &mut ResetEvidence| *e = ResetEvidence::default(), KERNEL_NOT_DROPPED, Some("kernel_not_dropped,parameters_not_deregistered,isolation_session_open,counters_not_zeroed,cache_entries_remaining,slot_output_changed"))]
fn g5_reset(#[case] mutate: fn(&mut ResetEvidence), #[case] reason: &str, #[case] unclean: Option<&str>) {
    let mut e = fixtures::g5();
    mutate(&mut e);
    let (from, to) = (Stage::SeedStageResetting, Stage::SeedStageDormant);
    let event = evaluate_g5_reset(&fixtures::ctx(SEED, from, to), &e);
    let event = check(event, Gate::SeedGateG5Reset, from, to, reason);
    assert_eq!(event.attributes.get("unclean").map(String::as_str), unclean);
}

#[test]
fn evaluate_dispatches_on_the_evidence() {
    let g0 = G0::passing();
    let g1 = G1Training::passing();
    let g2 = G2::passing();
    let g3 = G3::passing();
    let all: [GateEvidence<'_>; 7] = [
        g0.evidence().into(),
        fixtures::g1_germinated().into(),
        g1.evidence().into(),
        g2.evidence().into(),
        g3.evidence().into(),
        fixtures::g4().into(),
        fixtures::g5().into(),
    ];
    for evidence in &all {
        let (from, to) = evidence.transition();
        assert_eq!(kasmina_lifecycle::gate_for(from, to), Some(evidence.gate()));
        let event = evaluate(&fixtures::ctx(SEED, from, to), evidence);
        assert_eq!(event.gate(), evidence.gate());
        assert!(event.passed, "{event:?}");
    }
}

#[test]
fn reasons_are_distinct_snake_case() {
    let all = [
        INVALID_SEED_ID,
        SEED_ALREADY_LIVE,
        MISSING_BLUEPRINT_ID,
        BLUEPRINT_UNKNOWN,
        BLUEPRINT_MISMATCH,
        PARAMETER_NOT_FINITE,
        PARAMETER_NOT_ALLOWED,
        PARAMETER_OUT_OF_BOUNDS,
        KERNEL_NOT_ATTACHED,
        PARAMETERS_NOT_REGISTERED,
        REGISTRATION_CONFLICT,
        ISOLATION_NOT_ARMED,
        ISOLATION_VIOLATIONS_PRESENT,
        SEED_LOSS_WINDOW_TOO_SHORT,
        SEED_LOSS_NOT_FINITE,
        SEED_LOSS_NOT_IMPROVED,
        HOOK_LATENCY_EXCEEDED,
        ALPHA_SCHEDULE_INCOMPLETE,
        BLENDED_OUTPUT_NOT_FINITE,
        LOSS_WINDOW_TOO_SHORT,
        LOSS_NOT_FINITE,
        LOSS_VARIANCE_TOO_HIGH,
        LATENCY_BUDGET_EXCEEDED,
        OUTPUT_SHAPE_MISMATCH,
        OUTPUT_DTYPE_MISMATCH,
        TELEMETRY_INCOMPLETE,
        KERNEL_NOT_RESTORED,
        VALIDATION_METRIC_NOT_FINITE,
        INVALID_TOLERANCE,
        VALIDATION_REGRESSED,
        BREAKER_NOT_CLOSED,
        KERNEL_NOT_DROPPED,
        PARAMETERS_NOT_DEREGISTERED,
        ISOLATION_SESSION_OPEN,
        COUNTERS_NOT_ZEROED,
        CACHE_ENTRIES_REMAINING,
        SLOT_OUTPUT_CHANGED,
    ];
    let unique: std::collections::BTreeSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len());
    for r in all {
        assert!(r.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{r}");
    }
    // The constants are the enum's wire strings, one per variant, in the same order.
    let wire: Vec<&str> = GateReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(wire, all);
}

#[test]
fn gate_reasons_round_trip_through_their_wire_strings() {
    for &reason in GateReason::ALL {
        assert_eq!(GateReason::from_wire(reason.as_str()), Some(reason), "{reason:?}");
        assert_eq!(reason.to_string(), reason.as_str());
    }
    assert_eq!(GateReason::from_wire(SLOT_OUTPUT_CHANGED), Some(GateReason::SlotOutputChanged));
    assert_eq!(GateReason::SlotOutputChanged.as_str(), "slot_output_changed");
    for unknown in ["", "ok", "SLOT_OUTPUT_CHANGED", " slot_output_changed", "slot_output_changed\n"] {
        assert_eq!(GateReason::from_wire(unknown), None, "{unknown:?}");
    }
}

/// A failing gate's event carries exactly the wire string of the typed reason.
#[test]
fn failed_events_carry_the_typed_reason() {
    let mut e = fixtures::g5();
    e.slot_forwards_host_unchanged = false;
    let (from, to) = (Stage::SeedStageResetting, Stage::SeedStageDormant);
    let event = evaluate(&fixtures::ctx(SEED, from, to), &e.into());
    assert_eq!(GateReason::from_wire(&event.reason), Some(GateReason::SlotOutputChanged));
}
