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
// Blueprint ids are compared exactly: a padded id names no blueprint.
#[case::padded_id(|e: &mut G0| e.blueprint_id = " BP001 ".into(), BLUEPRINT_MISMATCH)]
#[case::trailing_space_id(|e: &mut G0| e.blueprint_id = "BP001 ".into(), BLUEPRINT_MISMATCH)]
#[case::trailing_newline_id(|e: &mut G0| e.blueprint_id = "BP001\n".into(), BLUEPRINT_MISMATCH)]
#[case::padded_descriptor_id(|e: &mut G0| e.blueprint.as_mut().unwrap().blueprint_id = "BP001 ".into(), BLUEPRINT_MISMATCH)]
#[case::padded_id_unknown(|e: &mut G0| { e.blueprint_id = "BP001 ".into(); e.blueprint = None; }, BLUEPRINT_UNKNOWN)]
// Bidirectional formatting characters are refused in seed ids like control characters.
#[case::seed_id_with_rlo(|e: &mut G0| e.seed_id = "seed-\u{202E}7".into(), INVALID_SEED_ID)]
#[case::seed_id_with_lro(|e: &mut G0| e.seed_id = "\u{202D}seed-7".into(), INVALID_SEED_ID)]
#[case::seed_id_with_rle_pdf(|e: &mut G0| e.seed_id = "\u{202B}seed\u{202C}".into(), INVALID_SEED_ID)]
#[case::seed_id_with_lre(|e: &mut G0| e.seed_id = "seed\u{202A}".into(), INVALID_SEED_ID)]
#[case::seed_id_with_lrm(|e: &mut G0| e.seed_id = "seed\u{200E}7".into(), INVALID_SEED_ID)]
#[case::seed_id_with_rlm(|e: &mut G0| e.seed_id = "seed\u{200F}7".into(), INVALID_SEED_ID)]
#[case::seed_id_with_alm(|e: &mut G0| e.seed_id = "seed\u{061C}7".into(), INVALID_SEED_ID)]
#[case::seed_id_with_lri(|e: &mut G0| e.seed_id = "seed\u{2066}7".into(), INVALID_SEED_ID)]
#[case::seed_id_with_rli_fsi(|e: &mut G0| e.seed_id = "\u{2067}seed\u{2068}".into(), INVALID_SEED_ID)]
#[case::seed_id_with_pdi(|e: &mut G0| e.seed_id = "seed\u{2069}".into(), INVALID_SEED_ID)]
#[case::seed_id_with_c1_control(|e: &mut G0| e.seed_id = "seed\u{9B}7".into(), INVALID_SEED_ID)]
#[case::seed_id_non_ascii_letters(|e: &mut G0| e.seed_id = "sämling-7".into(), "")]
fn g0_sanity(#[case] mutate: fn(&mut G0), #[case] reason: &str) {
    let mut g0 = G0::passing();
    mutate(&mut g0);
    let ctx = fixtures::ctx(&g0.seed_id, Stage::SeedStageDormant, Stage::SeedStageGerminated);
    let event = evaluate_g0_sanity(&ctx, &g0.evidence());
    let event = check(event, Gate::SeedGateG0Sanity, Stage::SeedStageDormant, Stage::SeedStageGerminated, reason);
    assert_eq!(event.seed_id, g0.seed_id);
    assert_eq!(event.attributes["blueprint_id"], g0.blueprint_id);
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
#[case::empty(|e: &mut G1Training| e.seed_grad_norms.clear(), SEED_GRADIENT_WINDOW_TOO_SHORT)]
#[case::single(|e: &mut G1Training| e.seed_grad_norms = vec![0.3], SEED_GRADIENT_WINDOW_TOO_SHORT)]
#[case::nan_norm(|e: &mut G1Training| e.seed_grad_norms[2] = f32::NAN, SEED_GRADIENT_NOT_FINITE)]
#[case::inf_norm(|e: &mut G1Training| e.seed_grad_norms[0] = f32::INFINITY, SEED_GRADIENT_NOT_FINITE)]
#[case::nan_loss(|e: &mut G1Training| e.seed_losses[1] = f32::NAN, SEED_LOSS_NOT_FINITE)]
#[case::inf_loss(|e: &mut G1Training| e.seed_losses[3] = f32::NEG_INFINITY, SEED_LOSS_NOT_FINITE)]
#[case::no_losses(|e: &mut G1Training| e.seed_losses.clear(), "")]
#[case::loss_rising(|e: &mut G1Training| e.seed_losses = vec![1.0, 1.2, 1.4, 1.6], "")]
#[case::zero_norms(|e: &mut G1Training| e.seed_grad_norms = vec![0.0; 4], SEED_GRADIENT_VANISHING)]
#[case::tiny_norms(|e: &mut G1Training| e.seed_grad_norms = vec![1e-9; 4], SEED_GRADIENT_VANISHING)]
#[case::norm_at_floor(|e: &mut G1Training| { e.seed_grad_norms = vec![0.5; 4]; e.min_seed_grad_norm = 0.5; }, SEED_GRADIENT_VANISHING)]
#[case::norm_above_floor(|e: &mut G1Training| { e.seed_grad_norms = vec![0.5; 4]; e.min_seed_grad_norm = 0.499; }, "")]
#[case::nan_floor(|e: &mut G1Training| e.min_seed_grad_norm = f64::NAN, SEED_GRADIENT_VANISHING)]
#[case::ratio_above_bound(|e: &mut G1Training| e.max_grad_ratio = 0.4, SEED_GRADIENT_EXPLODING)]
#[case::ratio_at_bound(|e: &mut G1Training| e.max_grad_ratio = 0.5, "")]
#[case::one_step_explodes(|e: &mut G1Training| e.seed_grad_norms[1] = 150.0, SEED_GRADIENT_EXPLODING)]
#[case::host_zero(|e: &mut G1Training| e.host_grad_norms[0] = 0.0, SEED_GRADIENT_EXPLODING)]
#[case::host_nan(|e: &mut G1Training| e.host_grad_norms[2] = f32::NAN, SEED_GRADIENT_EXPLODING)]
#[case::both_zero(|e: &mut G1Training| { e.seed_grad_norms[0] = 0.0; e.host_grad_norms[0] = 0.0; }, "")]
#[case::ratio_not_measured(|e: &mut G1Training| { e.host_grad_norms.clear(); e.max_grad_ratio = 0.0; }, "")]
#[case::nan_bound(|e: &mut G1Training| e.max_grad_ratio = f64::NAN, SEED_GRADIENT_EXPLODING)]
#[case::slow_hook(|e: &mut G1Training| e.hook_latency_ms = 10.5, HOOK_LATENCY_EXCEEDED)]
#[case::hook_at_budget(|e: &mut G1Training| e.hook_latency_ms = 10.0, "")]
#[case::nan_hook(|e: &mut G1Training| e.hook_latency_ms = f64::NAN, HOOK_LATENCY_EXCEEDED)]
// The order of the checks: the first that fails is reported.
#[case::violations_first(|e: &mut G1Training| { e.isolation_violations = 1; e.seed_grad_norms.clear(); }, ISOLATION_VIOLATIONS_PRESENT)]
#[case::short_before_not_finite(|e: &mut G1Training| e.seed_grad_norms = vec![f32::NAN], SEED_GRADIENT_WINDOW_TOO_SHORT)]
#[case::norm_before_loss(|e: &mut G1Training| { e.seed_grad_norms[0] = f32::NAN; e.seed_losses[0] = f32::NAN; }, SEED_GRADIENT_NOT_FINITE)]
#[case::loss_before_vanishing(|e: &mut G1Training| { e.seed_losses[0] = f32::NAN; e.seed_grad_norms = vec![0.0; 4]; }, SEED_LOSS_NOT_FINITE)]
#[case::vanishing_before_exploding(|e: &mut G1Training| { e.seed_grad_norms = vec![0.0; 4]; e.host_grad_norms[0] = f32::NAN; e.max_grad_ratio = -1.0; }, SEED_GRADIENT_VANISHING)]
#[case::exploding_before_hook(|e: &mut G1Training| { e.max_grad_ratio = 0.1; e.hook_latency_ms = 11.0; }, SEED_GRADIENT_EXPLODING)]
// The seed's stand-alone (shadow) contribution: harmful beyond 2 standard errors fails.
#[case::shadow_harmful(|e: &mut G1Training| e.shadow_contribution = Some(Counterfactual { mean: -0.3, std_error: 0.05, batches: 40 }), COUNTERFACTUAL_HARMFUL)]
#[case::shadow_within_noise(|e: &mut G1Training| e.shadow_contribution = Some(Counterfactual { mean: -0.05, std_error: 0.05, batches: 40 }), "")]
#[case::shadow_helpful(|e: &mut G1Training| e.shadow_contribution = Some(Counterfactual { mean: 0.2, std_error: 0.05, batches: 40 }), "")]
#[case::shadow_nan(|e: &mut G1Training| e.shadow_contribution = Some(Counterfactual { mean: f64::NAN, std_error: 0.05, batches: 40 }), COUNTERFACTUAL_HARMFUL)]
fn g1_training(#[case] mutate: fn(&mut G1Training), #[case] reason: &str) {
    let mut e = G1Training::passing();
    mutate(&mut e);
    let (from, to) = (Stage::SeedStageTraining, Stage::SeedStageBlending);
    let event = evaluate_g1_training(&fixtures::ctx(SEED, from, to), &e.evidence());
    let event = check(event, Gate::SeedGateG1GradientHealth, from, to, reason);
    // No evaluator reports the legacy loss reasons any more.
    assert_ne!(event.reason, SEED_LOSS_NOT_IMPROVED);
    assert_ne!(event.reason, SEED_LOSS_WINDOW_TOO_SHORT);
}

fn attr_f64(event: &GateEvent, key: &str) -> f64 {
    event.attributes.get(key).unwrap_or_else(|| panic!("no {key} in {event:?}")).parse().unwrap()
}

#[test]
fn g1_training_reports_the_measured_gradients() {
    let ctx = fixtures::ctx(SEED, Stage::SeedStageTraining, Stage::SeedStageBlending);
    // Pass: the mean norm and the worst measured ratio, not the configured floor and bound.
    let e = G1Training::passing();
    let event = evaluate_g1_training(&ctx, &e.evidence());
    assert!(event.passed, "{event:?}");
    assert!((attr_f64(&event, "mean_seed_grad_norm") - 0.25).abs() < 1e-6);
    assert_eq!(attr_f64(&event, "max_grad_ratio"), 0.5);
    assert!(!event.attributes.contains_key("seed_grad_norm_floor"));
    assert!(!event.attributes.contains_key("grad_ratio_bound"));

    // Vanishing: the measured mean and the floor.
    let mut e = G1Training::passing();
    e.seed_grad_norms = vec![1e-9, 3e-9];
    e.host_grad_norms = vec![1.0, 1.0];
    let event = evaluate_g1_training(&ctx, &e.evidence());
    assert_eq!(event.reason, SEED_GRADIENT_VANISHING);
    assert!((attr_f64(&event, "mean_seed_grad_norm") - 2e-9).abs() < 1e-15);
    assert_eq!(attr_f64(&event, "seed_grad_norm_floor"), DEFAULT_MIN_SEED_GRAD_NORM);

    // Exploding: the worst ratio (step 1: 300 / 2) and the bound.
    let mut e = G1Training::passing();
    e.seed_grad_norms = vec![1.0, 300.0, 1.0];
    e.host_grad_norms = vec![1.0, 2.0, 1.0];
    let event = evaluate_g1_training(&ctx, &e.evidence());
    assert_eq!(event.reason, SEED_GRADIENT_EXPLODING);
    assert_eq!(attr_f64(&event, "max_grad_ratio"), 150.0);
    assert_eq!(attr_f64(&event, "grad_ratio_bound"), DEFAULT_MAX_GRAD_RATIO);
    assert!((attr_f64(&event, "mean_seed_grad_norm") - 302.0 / 3.0).abs() < 1e-9);

    // A host norm of 0 under a live seed gradient is an unbounded ratio.
    let mut e = G1Training::passing();
    e.host_grad_norms[3] = 0.0;
    let event = evaluate_g1_training(&ctx, &e.evidence());
    assert_eq!(event.reason, SEED_GRADIENT_EXPLODING);
    assert_eq!(event.attributes["max_grad_ratio"], "inf");

    // Not measured: no ratio attribute, and no ratio check.
    let mut e = G1Training::passing();
    e.host_grad_norms.clear();
    let event = evaluate_g1_training(&ctx, &e.evidence());
    assert!(event.passed, "{event:?}");
    assert!(!event.attributes.contains_key("max_grad_ratio"));

    // Not finite: the first offending step.
    let mut e = G1Training::passing();
    e.seed_grad_norms[1] = f32::NAN;
    e.seed_grad_norms[3] = f32::INFINITY;
    let event = evaluate_g1_training(&ctx, &e.evidence());
    assert_eq!((event.reason.as_str(), event.attributes["step"].as_str()), (SEED_GRADIENT_NOT_FINITE, "1"));

    // Too short: the window length.
    let mut e = G1Training::passing();
    e.seed_grad_norms = vec![0.2];
    let event = evaluate_g1_training(&ctx, &e.evidence());
    assert_eq!((event.reason.as_str(), event.attributes["window"].as_str()), (SEED_GRADIENT_WINDOW_TOO_SHORT, "1"));
}

#[test]
fn g1_training_pairs_the_most_recent_steps_when_the_windows_differ() {
    let ctx = fixtures::ctx(SEED, Stage::SeedStageTraining, Stage::SeedStageBlending);
    let mut e = G1Training::passing();
    // Seed steps 0..4; the host was measured for the last two only: 0.3/0.6 and 0.4/0.8.
    e.host_grad_norms = vec![0.6, 0.8];
    e.max_grad_ratio = 0.5;
    let event = evaluate_g1_training(&ctx, &e.evidence());
    assert!(event.passed, "{event:?}");
    assert_eq!(attr_f64(&event, "max_grad_ratio"), 0.5);
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
#[case::missing(|e: &mut G3| e.counterfactual = None, COUNTERFACTUAL_MISSING)]
#[case::harmful(|e: &mut G3| e.counterfactual = Some(cf(-0.1, 0.01)), COUNTERFACTUAL_HARMFUL)]
#[case::neutral(|e: &mut G3| e.counterfactual = Some(cf(0.0, 0.01)), "")]
#[case::slightly_negative(|e: &mut G3| e.counterfactual = Some(cf(-0.01, 0.01)), "")]
#[case::at_the_bound(|e: &mut G3| e.counterfactual = Some(cf(-0.02, 0.01)), "")]
#[case::negative_noisy(|e: &mut G3| e.counterfactual = Some(cf(-0.1, 0.08)), "")]
#[case::negative_exact(|e: &mut G3| e.counterfactual = Some(cf(-1e-9, 0.0)), COUNTERFACTUAL_HARMFUL)]
#[case::looser(|e: &mut G3| { e.counterfactual = Some(cf(-0.1, 0.01)); e.harm_sigmas = 11.0; }, "")]
#[case::nan_mean(|e: &mut G3| e.counterfactual = Some(cf(f64::NAN, 0.01)), COUNTERFACTUAL_HARMFUL)]
#[case::nan_sigmas(|e: &mut G3| e.harm_sigmas = f64::NAN, COUNTERFACTUAL_HARMFUL)]
// The interface checks come first.
#[case::shape_before_missing(|e: &mut G3| { e.seed_shape = vec![1]; e.counterfactual = None; }, OUTPUT_SHAPE_MISMATCH)]
#[case::restore_before_harm(|e: &mut G3| { e.pause_resume = PauseResumeCheck::KernelNotRestored; e.counterfactual = Some(cf(-1.0, 0.01)); }, KERNEL_NOT_RESTORED)]
fn g3_interface(#[case] mutate: fn(&mut G3), #[case] reason: &str) {
    let mut e = G3::passing();
    mutate(&mut e);
    let (from, to) = (Stage::SeedStageShadowing, Stage::SeedStageProbationary);
    let event = evaluate_g3_interface(&fixtures::ctx(SEED, from, to), &e.evidence());
    let event = check(event, Gate::SeedGateG3Interface, from, to, reason);
    check_counterfactual_attributes(&event, e.counterfactual);
}

fn cf(mean: f64, std_error: f64) -> Counterfactual {
    Counterfactual { mean, std_error, batches: 8 }
}

/// A measured contribution is attached, pass or fail; none when it was not measured.
fn check_counterfactual_attributes(event: &GateEvent, counterfactual: Option<Counterfactual>) {
    let a = &event.attributes;
    match counterfactual {
        Some(c) => {
            assert_eq!(a["counterfactual_mean"], c.mean.to_string(), "{event:?}");
            assert_eq!(a["counterfactual_std_error"], c.std_error.to_string(), "{event:?}");
            assert_eq!(a["counterfactual_batches"], c.batches.to_string(), "{event:?}");
        }
        None => {
            for key in ["counterfactual_mean", "counterfactual_std_error", "counterfactual_batches"] {
                assert!(!a.contains_key(key), "{event:?}");
            }
        }
    }
}

#[test]
fn g3_tells_harmful_from_neutral() {
    let ctx = fixtures::ctx(SEED, Stage::SeedStageShadowing, Stage::SeedStageProbationary);
    let mut e = G3::passing();
    // Neutral: differences around zero, a noisy mean slightly below it.
    e.counterfactual = Counterfactual::from_differences(&[0.02, -0.03, 0.01, -0.02, -0.01]);
    assert!(evaluate_g3_interface(&ctx, &e.evidence()).passed);
    // Harmful: consistently worse with the seed in.
    e.counterfactual = Counterfactual::from_differences(&[-0.05, -0.06, -0.04, -0.05, -0.05]);
    let event = evaluate_g3_interface(&ctx, &e.evidence());
    assert_eq!(event.reason, COUNTERFACTUAL_HARMFUL);
    assert_eq!(event.attributes["harm_sigmas"], "2");
    assert_eq!(event.attributes["counterfactual_batches"], "5");
    assert!(!event.attributes.contains_key("dtype"));
    // Missing: refused, retryably.
    e.counterfactual = None;
    let event = evaluate_g3_interface(&ctx, &e.evidence());
    let reason = GateReason::from_wire(&event.reason).unwrap();
    assert_eq!(reason, GateReason::CounterfactualMissing);
    assert!(reason.is_retryable());
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
#[case::positive(|_: &mut SystemImpactEvidence| {}, "")]
#[case::missing(|e: &mut SystemImpactEvidence| e.counterfactual = None, COUNTERFACTUAL_MISSING)]
#[case::noisy(|e: &mut SystemImpactEvidence| e.counterfactual = Some(cf(0.1, 0.08)), COUNTERFACTUAL_NOT_POSITIVE)]
#[case::at_the_bound(|e: &mut SystemImpactEvidence| e.counterfactual = Some(cf(0.02, 0.01)), COUNTERFACTUAL_NOT_POSITIVE)]
#[case::just_above(|e: &mut SystemImpactEvidence| e.counterfactual = Some(cf(0.0201, 0.01)), "")]
#[case::zero(|e: &mut SystemImpactEvidence| e.counterfactual = Some(cf(0.0, 0.0)), COUNTERFACTUAL_NOT_POSITIVE)]
#[case::negative(|e: &mut SystemImpactEvidence| e.counterfactual = Some(cf(-0.1, 0.01)), COUNTERFACTUAL_NOT_POSITIVE)]
#[case::exact_positive(|e: &mut SystemImpactEvidence| e.counterfactual = Some(cf(1e-9, 0.0)), "")]
#[case::no_sigmas(|e: &mut SystemImpactEvidence| { e.counterfactual = Some(cf(0.001, 1.0)); e.min_sigmas = 0.0; }, "")]
#[case::negative_sigmas_still_need_positive(|e: &mut SystemImpactEvidence| { e.counterfactual = Some(cf(-0.001, 1.0)); e.min_sigmas = -5.0; }, COUNTERFACTUAL_NOT_POSITIVE)]
#[case::stricter(|e: &mut SystemImpactEvidence| e.min_sigmas = 20.0, COUNTERFACTUAL_NOT_POSITIVE)]
#[case::nan_mean(|e: &mut SystemImpactEvidence| e.counterfactual = Some(cf(f64::NAN, 0.01)), COUNTERFACTUAL_NOT_POSITIVE)]
#[case::nan_std_error(|e: &mut SystemImpactEvidence| e.counterfactual = Some(cf(0.1, f64::NAN)), COUNTERFACTUAL_NOT_POSITIVE)]
#[case::nan_sigmas(|e: &mut SystemImpactEvidence| e.min_sigmas = f64::NAN, COUNTERFACTUAL_NOT_POSITIVE)]
#[case::violations(|e: &mut SystemImpactEvidence| e.isolation_violations = 1, ISOLATION_VIOLATIONS_PRESENT)]
#[case::breaker_open(|e: &mut SystemImpactEvidence| e.breakers = &[("kernel_fetch", CircuitBreakerState::CircuitStateOpen)], BREAKER_NOT_CLOSED)]
#[case::breaker_half_open(|e: &mut SystemImpactEvidence| e.breakers = &[("blending", CircuitBreakerState::CircuitStateHalfOpen)], BREAKER_NOT_CLOSED)]
#[case::breaker_unknown(|e: &mut SystemImpactEvidence| e.breakers = &[("isolation", CircuitBreakerState::CircuitStateUnknown)], BREAKER_NOT_CLOSED)]
#[case::no_breakers(|e: &mut SystemImpactEvidence| e.breakers = &[], "")]
// The order of the checks.
#[case::missing_before_violations(|e: &mut SystemImpactEvidence| { e.counterfactual = None; e.isolation_violations = 1; }, COUNTERFACTUAL_MISSING)]
#[case::not_positive_before_violations(|e: &mut SystemImpactEvidence| { e.counterfactual = Some(cf(0.0, 0.1)); e.isolation_violations = 1; }, COUNTERFACTUAL_NOT_POSITIVE)]
#[case::violations_before_breakers(|e: &mut SystemImpactEvidence| { e.isolation_violations = 1; e.breakers = &[("isolation", CircuitBreakerState::CircuitStateOpen)]; }, ISOLATION_VIOLATIONS_PRESENT)]
fn g4_system_impact(#[case] mutate: fn(&mut SystemImpactEvidence), #[case] reason: &str) {
    let mut e = fixtures::g4();
    mutate(&mut e);
    let (from, to) = (Stage::SeedStageProbationary, Stage::SeedStageFossilized);
    let event = evaluate_g4_system_impact(&fixtures::ctx(SEED, from, to), &e);
    let event = check(event, Gate::SeedGateG4SystemImpact, from, to, reason);
    check_counterfactual_attributes(&event, e.counterfactual);
    if reason == COUNTERFACTUAL_NOT_POSITIVE {
        assert_eq!(event.attributes["min_sigmas"], e.min_sigmas.to_string());
    }
}

#[test]
fn g4_fossilizes_a_clearly_positive_seed_only() {
    let ctx = fixtures::ctx(SEED, Stage::SeedStageProbationary, Stage::SeedStageFossilized);
    let with = |counterfactual| SystemImpactEvidence { counterfactual, ..fixtures::g4() };
    // Mean 0.1, standard error 0.01: ten standard errors above zero.
    let event = evaluate_g4_system_impact(&ctx, &with(Some(cf(0.1, 0.01))));
    assert!(event.passed, "{event:?}");
    assert_eq!(event.attributes["counterfactual_mean"], "0.1");
    assert_eq!(event.attributes["counterfactual_std_error"], "0.01");
    // Mean 0.1, standard error 0.08: positive, but only 1.25 standard errors.
    let event = evaluate_g4_system_impact(&ctx, &with(Some(cf(0.1, 0.08))));
    assert_eq!(event.reason, COUNTERFACTUAL_NOT_POSITIVE);
    assert!(!GateReason::CounterfactualNotPositive.is_retryable());
    // From measured differences.
    let helps = Counterfactual::from_differences(&[0.12, 0.09, 0.11, 0.10, 0.08]);
    assert!(evaluate_g4_system_impact(&ctx, &with(helps)).passed);
    let noise = Counterfactual::from_differences(&[0.3, -0.2, 0.25, -0.15, 0.1]);
    assert_eq!(evaluate_g4_system_impact(&ctx, &with(noise)).reason, COUNTERFACTUAL_NOT_POSITIVE);
}

#[test]
fn counterfactual_from_differences() {
    // Mean 3, sample variance 10 / 4 = 2.5, standard error sqrt(2.5 / 5).
    let c = Counterfactual::from_differences(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    assert_eq!(c.mean, 3.0);
    assert!((c.std_error - 0.5f64.sqrt()).abs() < 1e-12, "{c:?}");
    assert_eq!(c.batches, 5);
    // Two batches: mean 0, sample variance 2, standard error 1.
    assert_eq!(
        Counterfactual::from_differences(&[1.0, -1.0]),
        Some(Counterfactual { mean: 0.0, std_error: 1.0, batches: 2 })
    );
    // Identical differences: no spread.
    assert_eq!(
        Counterfactual::from_differences(&[0.25; 4]),
        Some(Counterfactual { mean: 0.25, std_error: 0.0, batches: 4 })
    );
    // Too few batches, or any non-finite value.
    assert_eq!(Counterfactual::from_differences(&[]), None);
    assert_eq!(Counterfactual::from_differences(&[0.1]), None);
    assert_eq!(Counterfactual::from_differences(&[0.1, f64::NAN, 0.2]), None);
    assert_eq!(Counterfactual::from_differences(&[0.1, f64::INFINITY]), None);
    assert_eq!(Counterfactual::from_differences(&[f64::NEG_INFINITY, 0.1]), None);
    // Finite differences whose sum overflows.
    assert_eq!(Counterfactual::from_differences(&[f64::MAX, f64::MAX]), None);
}

#[test]
fn only_a_missing_counterfactual_is_retryable() {
    let retryable: Vec<GateReason> = GateReason::ALL.iter().copied().filter(|r| r.is_retryable()).collect();
    assert_eq!(retryable, [GateReason::CounterfactualMissing]);
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
        SHAPE_MISMATCH,
        PROBE_NOT_FINITE,
        KERNEL_NOT_ATTACHED,
        PARAMETERS_NOT_REGISTERED,
        REGISTRATION_CONFLICT,
        ISOLATION_NOT_ARMED,
        ISOLATION_VIOLATIONS_PRESENT,
        SEED_LOSS_WINDOW_TOO_SHORT,
        SEED_LOSS_NOT_FINITE,
        SEED_LOSS_NOT_IMPROVED,
        HOOK_LATENCY_EXCEEDED,
        SEED_GRADIENT_WINDOW_TOO_SHORT,
        SEED_GRADIENT_NOT_FINITE,
        SEED_GRADIENT_VANISHING,
        SEED_GRADIENT_EXPLODING,
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
        COUNTERFACTUAL_MISSING,
        COUNTERFACTUAL_HARMFUL,
        VALIDATION_METRIC_NOT_FINITE,
        INVALID_TOLERANCE,
        VALIDATION_REGRESSED,
        COUNTERFACTUAL_NOT_POSITIVE,
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

#[test]
fn the_revised_reasons_have_their_wire_strings() {
    let wire = [
        (GateReason::SeedGradientWindowTooShort, "seed_gradient_window_too_short"),
        (GateReason::SeedGradientNotFinite, "seed_gradient_not_finite"),
        (GateReason::SeedGradientVanishing, "seed_gradient_vanishing"),
        (GateReason::SeedGradientExploding, "seed_gradient_exploding"),
        (GateReason::CounterfactualMissing, "counterfactual_missing"),
        (GateReason::CounterfactualHarmful, "counterfactual_harmful"),
        (GateReason::CounterfactualNotPositive, "counterfactual_not_positive"),
        // Kept for wire compatibility, though no evaluator returns them any more.
        (GateReason::SeedLossNotImproved, "seed_loss_not_improved"),
        (GateReason::SeedLossWindowTooShort, "seed_loss_window_too_short"),
        (GateReason::ValidationRegressed, "validation_regressed"),
        (GateReason::ValidationMetricNotFinite, "validation_metric_not_finite"),
        (GateReason::InvalidTolerance, "invalid_tolerance"),
    ];
    for (reason, s) in wire {
        assert_eq!(reason.as_str(), s);
        assert_eq!(GateReason::from_wire(s), Some(reason));
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

#[test]
fn g4_refuses_a_significant_but_negligible_contribution() {
    let ctx = fixtures::ctx(SEED, Stage::SeedStageProbationary, Stage::SeedStageFossilized);
    let cf = Counterfactual { mean: 0.00025, std_error: 0.00006, batches: 8 };
    let mut e = SystemImpactEvidence {
        counterfactual: Some(cf),
        min_sigmas: DEFAULT_MIN_SIGMAS,
        min_mean: 0.0,
        isolation_violations: 0,
        breakers: &[],
    };
    assert!(evaluate_g4_system_impact(&ctx, &e).passed, "significant at 2 SE");
    e.min_mean = 0.01;
    let event = evaluate_g4_system_impact(&ctx, &e);
    assert_eq!(event.reason, COUNTERFACTUAL_NOT_POSITIVE);
    assert_eq!(event.attributes["min_mean"], "0.01");
}

/// G0's shape probe runs last, only when everything else passed, and its verdict decides.
#[test]
fn g0_runs_the_shape_probe_last_and_refuses_a_mismatch_or_a_non_finite_delta() {
    let ctx = fixtures::ctx(SEED, Stage::SeedStageDormant, Stage::SeedStageGerminated);
    let g0 = G0::passing();
    let calls = std::cell::Cell::new(0);
    let verdicts = [
        (ShapeProbe::Matched, ""),
        (ShapeProbe::NotFinite, PROBE_NOT_FINITE),
        (ShapeProbe::Mismatch { expected: vec![2, 16], actual: Some(vec![2, 8]) }, SHAPE_MISMATCH),
        (ShapeProbe::Mismatch { expected: vec![2, 16, 3, 5], actual: None }, SHAPE_MISMATCH),
    ];
    for (verdict, reason) in verdicts {
        let probe = || {
            calls.set(calls.get() + 1);
            Some(verdict.clone())
        };
        let evidence = SanityEvidence { shape_probe: Some(LazyProbe(&probe)), ..g0.evidence() };
        let event = evaluate_g0_sanity(&ctx, &evidence);
        let event = check(event, Gate::SeedGateG0Sanity, Stage::SeedStageDormant, Stage::SeedStageGerminated, reason);
        if let ShapeProbe::Mismatch { expected, actual } = verdict {
            assert_eq!(event.attributes["expected"], format!("{expected:?}"));
            let actual = actual.map_or_else(|| "kernel failed".to_owned(), |a| format!("{a:?}"));
            assert_eq!(event.attributes["actual"], actual);
        }
    }
    assert_eq!(calls.get(), 4);
    // A request G0 refuses anyway never runs the probe (nothing is fetched for it).
    let mut unknown = G0::passing();
    unknown.blueprint = None;
    let probe = || {
        calls.set(calls.get() + 1);
        Some(ShapeProbe::Matched)
    };
    let evidence = SanityEvidence { shape_probe: Some(LazyProbe(&probe)), ..unknown.evidence() };
    assert_eq!(evaluate_g0_sanity(&ctx, &evidence).reason, BLUEPRINT_UNKNOWN);
    assert_eq!(calls.get(), 4, "the probe did not run");
}
