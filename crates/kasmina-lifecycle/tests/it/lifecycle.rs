//! `SeedLifecycle`: gated walk, refusals, history, cull → embargo → reset on a fake clock.

use std::sync::Arc;
use std::time::Duration;

use kasmina_lifecycle::gates::{GateEvidence, GateReason, reasons};
use kasmina_lifecycle::{EmbargoEvent, Error, FixedWallClock, LifecycleConfig, SeedLifecycle};
use leyline::{SeedLifecycleGate as Gate, SeedLifecycleStage as Stage};
use quanta::{Clock, Mock};

use crate::fixtures::{self, G0, G1Training, G2, G3, SEED};

fn seed(config: LifecycleConfig) -> (SeedLifecycle, Arc<Mock>) {
    let (clock, mock) = Clock::mock();
    let lifecycle =
        SeedLifecycle::new(SEED, clock, config).with_wall_clock(Arc::new(FixedWallClock::at(fixtures::wall())));
    (lifecycle, mock)
}

/// Walks DORMANT → ... → target with passing evidence.
fn walk_to(s: &mut SeedLifecycle, target: Stage) {
    let g0 = G0::passing();
    let g1 = G1Training::passing();
    let g2 = G2::passing();
    let g3 = G3::passing();
    let ladder: [(Stage, GateEvidence<'_>); 6] = [
        (Stage::SeedStageGerminated, g0.evidence().into()),
        (Stage::SeedStageTraining, fixtures::g1_germinated().into()),
        (Stage::SeedStageBlending, g1.evidence().into()),
        (Stage::SeedStageShadowing, g2.evidence().into()),
        (Stage::SeedStageProbationary, g3.evidence().into()),
        (Stage::SeedStageFossilized, fixtures::g4().into()),
    ];
    for (to, evidence) in ladder {
        if s.stage() == target {
            return;
        }
        let outcome = s.guarded_transition(to, &evidence).unwrap();
        assert_eq!(outcome.record.to, to);
    }
    assert_eq!(s.stage(), target);
}

#[test]
fn happy_path_reaches_fossilized_through_every_gate() {
    let (mut s, mock) = seed(LifecycleConfig::default());
    mock.increment(Duration::from_millis(5));
    walk_to(&mut s, Stage::SeedStageFossilized);
    let gates: Vec<_> = s.history().map(|r| r.gate).collect();
    assert_eq!(
        gates,
        [
            None,
            Some(Gate::SeedGateG0Sanity),
            Some(Gate::SeedGateG1GradientHealth),
            Some(Gate::SeedGateG1GradientHealth),
            Some(Gate::SeedGateG2Stability),
            Some(Gate::SeedGateG3Interface),
            Some(Gate::SeedGateG4SystemImpact),
        ]
    );
    let first = s.history().next().unwrap();
    assert_eq!((first.from, first.to), (Stage::SeedStageUnknown, Stage::SeedStageDormant));
    assert_eq!(s.last_transition().unwrap().at.duration_since(first.at), Duration::from_millis(5));
    let outcome = s.terminate().unwrap();
    assert_eq!(outcome.record.from, Stage::SeedStageFossilized);
    assert_eq!(s.stage(), Stage::SeedStageTerminated);
    assert_eq!(s.transition_count(), 8);
}

#[test]
fn gate_events_carry_the_seed_move_and_wall_time() {
    let (mut s, _) = seed(LifecycleConfig::default());
    let g0 = G0::passing();
    let event = s.guarded_transition(Stage::SeedStageGerminated, &g0.evidence().into()).unwrap().gate_event.unwrap();
    assert!(event.passed);
    assert_eq!(event.seed_id, SEED);
    assert_eq!(event.from_stage(), Stage::SeedStageDormant);
    assert_eq!(event.to_stage(), Stage::SeedStageGerminated);
    assert_eq!(event.timestamp, Some(kasmina_lifecycle::gates::timestamp(fixtures::wall())));
}

#[test]
fn a_failed_gate_refuses_the_move_and_returns_its_event() {
    let (mut s, _) = seed(LifecycleConfig::default());
    walk_to(&mut s, Stage::SeedStageGerminated);
    let mut g1 = fixtures::g1_germinated();
    g1.isolation_violations = 3;
    let err = s.guarded_transition(Stage::SeedStageTraining, &g1.into()).unwrap_err();
    let Error::GateFailed { gate, from, to, reason, event } = &err else { panic!("{err:?}") };
    assert_eq!(*gate, Gate::SeedGateG1GradientHealth);
    assert_eq!((*from, *to), (Stage::SeedStageGerminated, Stage::SeedStageTraining));
    assert_eq!(*reason, GateReason::IsolationViolationsPresent);
    assert!(!event.passed);
    assert_eq!(event.reason, reason.as_str());
    assert_eq!(event.reason, reasons::ISOLATION_VIOLATIONS_PRESENT);
    assert_eq!(s.stage(), Stage::SeedStageGerminated);
    assert_eq!(
        err.to_string(),
        "gate G1_GRADIENT_HEALTH refused transition from GERMINATED to TRAINING: isolation_violations_present"
    );
}

#[test]
fn a_failed_g0_leaves_the_seed_dormant_and_unpoisoned() {
    let (mut s, _) = seed(LifecycleConfig::default());
    let mut g0 = G0::passing();
    g0.blueprint = None;
    assert!(matches!(
        s.guarded_transition(Stage::SeedStageGerminated, &g0.evidence().into()),
        Err(Error::GateFailed { .. })
    ));
    assert_eq!(s.stage(), Stage::SeedStageDormant);
    // DORMANT cannot be culled, and a later good germination passes.
    assert_eq!(
        s.cull("x", s.clock().now()),
        Err(Error::IllegalTransition { from: Stage::SeedStageDormant, to: Stage::SeedStageCulled })
    );
    walk_to(&mut s, Stage::SeedStageTraining);
}

#[test]
fn refusals_are_typed_and_change_nothing() {
    let (mut s, _) = seed(LifecycleConfig::default());
    let before = s.transition_count();
    let err = s.transition(Stage::SeedStageBlending).unwrap_err();
    assert_eq!(err, Error::IllegalTransition { from: Stage::SeedStageDormant, to: Stage::SeedStageBlending });
    assert_eq!(err.to_string(), "illegal transition from DORMANT to BLENDING");
    assert_eq!(
        s.transition(Stage::SeedStageGerminated).unwrap_err(),
        Error::GateRequired {
            from: Stage::SeedStageDormant,
            to: Stage::SeedStageGerminated,
            gate: Gate::SeedGateG0Sanity
        }
    );
    let g5: GateEvidence<'_> = fixtures::g5().into();
    assert!(matches!(
        s.guarded_transition(Stage::SeedStageGerminated, &g5),
        Err(Error::EvidenceMismatch { expected: Gate::SeedGateG0Sanity, evidence: Gate::SeedGateG5Reset, .. })
    ));
    assert!(matches!(s.guarded_transition(Stage::SeedStageTerminated, &g5), Err(Error::NotGated { .. })));
    assert!(matches!(s.guarded_transition(Stage::SeedStageFossilized, &g5), Err(Error::IllegalTransition { .. })));
    // G1 evidence for GERMINATED -> TRAINING does not fit TRAINING -> BLENDING.
    walk_to(&mut s, Stage::SeedStageTraining);
    let before_mismatch = s.transition_count();
    assert!(matches!(
        s.guarded_transition(Stage::SeedStageBlending, &fixtures::g1_germinated().into()),
        Err(Error::EvidenceMismatch { .. })
    ));
    assert_eq!(s.transition_count(), before_mismatch);
    assert!(before < before_mismatch);
}

#[test]
fn cull_embargo_reset_follows_the_injected_clock() {
    let config = LifecycleConfig { embargo: Duration::from_secs(30), ..Default::default() };
    let (mut s, mock) = seed(config);
    walk_to(&mut s, Stage::SeedStageBlending);
    let t0 = s.clock().now();
    let start = s.cull(reasons::LOSS_VARIANCE_TOO_HIGH, t0).unwrap().unwrap();
    let EmbargoEvent::Start { ref seed_id, ref reason, at, until, duration } = start else { panic!("{start:?}") };
    assert_eq!((seed_id.as_str(), reason.as_str()), (SEED, reasons::LOSS_VARIANCE_TOO_HIGH));
    assert_eq!((at, until, duration), (t0, t0 + Duration::from_secs(30), Duration::from_secs(30)));
    assert_eq!(s.stage(), Stage::SeedStageEmbargoed);
    assert_eq!(s.embargo_until(), Some(until));
    assert_eq!(s.cull_reason(), Some(reasons::LOSS_VARIANCE_TOO_HIGH));
    let tail: Vec<_> = s.history().rev().take(2).map(|r| (r.from, r.to)).collect();
    assert_eq!(
        tail,
        [(Stage::SeedStageCulled, Stage::SeedStageEmbargoed), (Stage::SeedStageBlending, Stage::SeedStageCulled)]
    );

    mock.increment(Duration::from_secs(29));
    assert_eq!(s.poll(s.clock().now()), None);
    assert_eq!(s.embargo_remaining(s.clock().now()), Some(Duration::from_secs(1)));
    assert!(matches!(
        s.transition(Stage::SeedStageResetting),
        Err(Error::EmbargoActive { remaining, .. }) if remaining == Duration::from_secs(1)
    ));
    // A second cull neither shortens nor restarts the embargo.
    assert_eq!(s.cull("again", s.clock().now()), Ok(None));
    assert_eq!(s.embargo_until(), Some(until));

    mock.increment(Duration::from_secs(1));
    let end = s.poll(s.clock().now()).unwrap();
    assert_eq!(end, EmbargoEvent::End { seed_id: SEED.into(), at: until, embargoed_for: Duration::from_secs(30) });
    assert_eq!(end.name(), "embargo_end");
    assert_eq!(s.stage(), Stage::SeedStageResetting);
    assert_eq!(s.embargo_until(), None);
    assert_eq!(s.poll(s.clock().now()), None);

    // RESETTING -> DORMANT only through G5.
    assert!(matches!(
        s.transition(Stage::SeedStageDormant),
        Err(Error::GateRequired { gate: Gate::SeedGateG5Reset, .. })
    ));
    let mut dirty = fixtures::g5();
    dirty.cache_entries_removed = false;
    assert!(matches!(
        s.guarded_transition(Stage::SeedStageDormant, &dirty.into()),
        Err(Error::GateFailed { reason: GateReason::CacheEntriesRemaining, .. })
    ));
    assert_eq!(s.stage(), Stage::SeedStageResetting);
    s.guarded_transition(Stage::SeedStageDormant, &fixtures::g5().into()).unwrap();
    assert_eq!(s.stage(), Stage::SeedStageDormant);
    assert_eq!(s.cull_reason(), None);
    // The slot can germinate again.
    walk_to(&mut s, Stage::SeedStageGerminated);
}

#[test]
fn zero_embargo_still_passes_through_embargoed() {
    let (mut s, _) = seed(LifecycleConfig { embargo: Duration::ZERO, ..Default::default() });
    walk_to(&mut s, Stage::SeedStageGerminated);
    let now = s.clock().now();
    assert!(s.cull("x", now).unwrap().is_some());
    assert_eq!(s.stage(), Stage::SeedStageEmbargoed);
    assert!(s.poll(now).is_some());
    assert_eq!(s.stage(), Stage::SeedStageResetting);
}

#[test]
fn manual_failure_path_moves_emit_the_embargo_events() {
    let (mut s, mock) = seed(LifecycleConfig { embargo: Duration::from_secs(5), ..Default::default() });
    walk_to(&mut s, Stage::SeedStageTraining);
    assert!(s.transition(Stage::SeedStageCulled).unwrap().embargo_event.is_none());
    let started = s.transition(Stage::SeedStageEmbargoed).unwrap();
    assert_eq!(started.embargo_event.unwrap().name(), "embargo_start");
    mock.increment(Duration::from_secs(5));
    let ended = s.transition(Stage::SeedStageResetting).unwrap();
    assert_eq!(ended.embargo_event.unwrap().name(), "embargo_end");
}

#[test]
fn cull_from_culled_starts_the_embargo_and_cull_while_resetting_is_a_no_op() {
    let (mut s, mock) = seed(LifecycleConfig::default());
    walk_to(&mut s, Stage::SeedStageShadowing);
    s.transition(Stage::SeedStageCulled).unwrap();
    assert!(s.cull("late", s.clock().now()).unwrap().is_some());
    assert_eq!(s.stage(), Stage::SeedStageEmbargoed);
    mock.increment(Duration::from_secs(31));
    s.poll(s.clock().now()).unwrap();
    assert_eq!(s.cull("again", s.clock().now()), Ok(None));
    assert_eq!(s.stage(), Stage::SeedStageResetting);
}

#[test]
fn begin_cull_enters_culled_and_a_later_cull_starts_the_embargo_then() {
    let (mut s, mock) = seed(LifecycleConfig { embargo: Duration::from_secs(30), ..Default::default() });
    walk_to(&mut s, Stage::SeedStageBlending);
    let t0 = s.clock().now();
    s.begin_cull(reasons::SEED_GRADIENT_EXPLODING, t0).unwrap();
    assert_eq!(s.stage(), Stage::SeedStageCulled);
    assert_eq!(s.cull_reason(), Some(reasons::SEED_GRADIENT_EXPLODING));
    assert_eq!(s.embargo_until(), None);
    assert_eq!(s.entered_at(), t0);
    let last = s.last_transition().unwrap();
    assert_eq!((last.from, last.to, last.at, last.gate), (Stage::SeedStageBlending, Stage::SeedStageCulled, t0, None));
    // Blending out: time passes, the seed stays CULLED; polling and a second begin_cull change nothing.
    mock.increment(Duration::from_secs(7));
    assert_eq!(s.poll(s.clock().now()), None);
    let count = s.transition_count();
    assert_eq!(s.begin_cull("other", s.clock().now()), Ok(()));
    assert_eq!((s.stage(), s.transition_count()), (Stage::SeedStageCulled, count));
    assert_eq!(s.cull_reason(), Some(reasons::SEED_GRADIENT_EXPLODING));

    // The blend-out is over: the embargo starts now, from this `now`, with the reason of the cull.
    let t1 = s.clock().now();
    let start = s.cull("ignored", t1).unwrap().unwrap();
    assert_eq!(
        start,
        EmbargoEvent::Start {
            seed_id: SEED.into(),
            reason: reasons::SEED_GRADIENT_EXPLODING.into(),
            at: t1,
            until: t1 + Duration::from_secs(30),
            duration: Duration::from_secs(30),
        }
    );
    assert_eq!(s.stage(), Stage::SeedStageEmbargoed);
    assert_eq!(s.embargo_until(), Some(t1 + Duration::from_secs(30)));
    // begin_cull while EMBARGOED leaves the embargo alone.
    assert_eq!(s.begin_cull("late", s.clock().now()), Ok(()));
    assert_eq!(s.embargo_until(), Some(t1 + Duration::from_secs(30)));
    // Served in full from t1, not from t0.
    mock.increment(Duration::from_secs(29));
    assert_eq!(s.poll(s.clock().now()), None);
    mock.increment(Duration::from_secs(1));
    let end = s.poll(s.clock().now()).unwrap();
    assert_eq!(
        end,
        EmbargoEvent::End {
            seed_id: SEED.into(),
            at: t1 + Duration::from_secs(30),
            embargoed_for: Duration::from_secs(30)
        }
    );
    assert_eq!(s.begin_cull("again", s.clock().now()), Ok(()));
    assert_eq!(s.stage(), Stage::SeedStageResetting);
    let tail: Vec<_> = s.history().rev().take(3).map(|r| (r.from, r.to)).collect();
    assert_eq!(
        tail,
        [
            (Stage::SeedStageEmbargoed, Stage::SeedStageResetting),
            (Stage::SeedStageCulled, Stage::SeedStageEmbargoed),
            (Stage::SeedStageBlending, Stage::SeedStageCulled),
        ]
    );
}

#[test]
fn begin_cull_works_from_every_active_stage_and_only_there() {
    for target in [
        Stage::SeedStageGerminated,
        Stage::SeedStageTraining,
        Stage::SeedStageBlending,
        Stage::SeedStageShadowing,
        Stage::SeedStageProbationary,
    ] {
        let (mut s, _) = seed(LifecycleConfig::default());
        walk_to(&mut s, target);
        s.begin_cull("x", s.clock().now()).unwrap();
        assert_eq!(s.stage(), Stage::SeedStageCulled, "from {target}");
        assert_eq!(s.embargo_until(), None);
    }
    for target in [Stage::SeedStageDormant, Stage::SeedStageFossilized] {
        let (mut s, _) = seed(LifecycleConfig::default());
        walk_to(&mut s, target);
        let count = s.transition_count();
        assert_eq!(
            s.begin_cull("x", s.clock().now()),
            Err(Error::IllegalTransition { from: target, to: Stage::SeedStageCulled })
        );
        assert_eq!((s.stage(), s.transition_count(), s.cull_reason()), (target, count, None));
    }
    let (mut s, _) = seed(LifecycleConfig::default());
    s.terminate().unwrap();
    assert_eq!(
        s.begin_cull("x", s.clock().now()),
        Err(Error::IllegalTransition { from: Stage::SeedStageTerminated, to: Stage::SeedStageCulled })
    );
}

#[test]
fn a_missing_counterfactual_refuses_without_culling() {
    let (mut s, _) = seed(LifecycleConfig::default());
    walk_to(&mut s, Stage::SeedStageProbationary);
    let mut g4 = fixtures::g4();
    g4.counterfactual = None;
    let err = s.guarded_transition(Stage::SeedStageFossilized, &g4.into()).unwrap_err();
    let Error::GateFailed { reason, event, .. } = &err else { panic!("{err:?}") };
    assert_eq!(*reason, GateReason::CounterfactualMissing);
    assert!(reason.is_retryable());
    assert_eq!(event.reason, reasons::COUNTERFACTUAL_MISSING);
    assert_eq!(s.stage(), Stage::SeedStageProbationary);
    // Asked again once measured, it passes.
    s.guarded_transition(Stage::SeedStageFossilized, &fixtures::g4().into()).unwrap();
    assert_eq!(s.stage(), Stage::SeedStageFossilized);
}

#[test]
fn every_stage_can_be_torn_down_once() {
    for target in [
        Stage::SeedStageDormant,
        Stage::SeedStageGerminated,
        Stage::SeedStageTraining,
        Stage::SeedStageBlending,
        Stage::SeedStageShadowing,
        Stage::SeedStageProbationary,
        Stage::SeedStageFossilized,
    ] {
        let (mut s, _) = seed(LifecycleConfig::default());
        walk_to(&mut s, target);
        s.terminate().unwrap();
        assert_eq!(
            s.terminate().unwrap_err(),
            Error::IllegalTransition { from: Stage::SeedStageTerminated, to: Stage::SeedStageTerminated }
        );
        assert!(matches!(s.cull("x", s.clock().now()), Err(Error::IllegalTransition { .. })));
    }
    let (mut s, _) = seed(LifecycleConfig::default());
    walk_to(&mut s, Stage::SeedStageTraining);
    s.cull("x", s.clock().now()).unwrap();
    s.terminate().unwrap();
    assert_eq!(s.embargo_until(), None);
    assert_eq!(s.poll(s.clock().now()), None);
}

#[test]
fn history_is_bounded() {
    let (mut s, _) = seed(LifecycleConfig { history_capacity: 3, ..Default::default() });
    walk_to(&mut s, Stage::SeedStageFossilized);
    let kept: Vec<_> = s.history().map(|r| r.to).collect();
    assert_eq!(kept, [Stage::SeedStageShadowing, Stage::SeedStageProbationary, Stage::SeedStageFossilized]);
    assert_eq!(s.transition_count(), 7);

    let (mut none, _) = seed(LifecycleConfig { history_capacity: 0, ..Default::default() });
    walk_to(&mut none, Stage::SeedStageTraining);
    assert_eq!(none.history().len(), 0);
    assert_eq!(none.last_transition(), None);
    assert_eq!(none.stage(), Stage::SeedStageTraining);
}

#[test]
fn a_saved_embargo_resumes_on_another_clock_with_the_time_it_had_left() {
    let config = LifecycleConfig { embargo: Duration::from_secs(30), ..Default::default() };
    let (mut s, mock) = seed(config.clone());
    walk_to(&mut s, Stage::SeedStageBlending);
    s.cull(reasons::LOSS_VARIANCE_TOO_HIGH, s.clock().now()).unwrap();
    mock.increment(Duration::from_secs(12));
    let saved = s.saved();
    assert_eq!(saved.stage, Stage::SeedStageEmbargoed);
    assert_eq!(
        (saved.embargo_elapsed, saved.embargo_remaining),
        (Some(Duration::from_secs(12)), Some(Duration::from_secs(18)))
    );
    assert_eq!(saved.history.last().map(|t| (t.to, t.ago)), Some((Stage::SeedStageEmbargoed, Duration::from_secs(12))));

    // Another process: a clock far ahead of the first.
    let (clock, mock2) = Clock::mock();
    mock2.increment(Duration::from_secs(3_600));
    let mut r = SeedLifecycle::restored(saved.clone(), clock, config).unwrap();
    assert_eq!(r.saved(), saved, "what was restored saves the same");
    assert_eq!((r.stage(), r.cull_reason(), r.transition_count()), (s.stage(), s.cull_reason(), s.transition_count()));
    mock2.increment(Duration::from_secs(17));
    assert_eq!(r.poll(r.clock().now()), None, "one second of the embargo is left");
    mock2.increment(Duration::from_secs(1));
    let Some(EmbargoEvent::End { embargoed_for, .. }) = r.poll(r.clock().now()) else { panic!("embargo did not end") };
    assert_eq!(embargoed_for, Duration::from_secs(30));
    assert_eq!(r.stage(), Stage::SeedStageResetting);
}

#[test]
fn a_saved_lifecycle_no_lifecycle_could_reach_is_refused() {
    let (mut s, _) = seed(LifecycleConfig::default());
    walk_to(&mut s, Stage::SeedStageTraining);
    let good = s.saved();
    let restore = |saved| SeedLifecycle::restored(saved, Clock::mock().0, LifecycleConfig::default());
    assert!(restore(good.clone()).is_ok());
    let mut unknown = good.clone();
    unknown.stage = Stage::SeedStageUnknown;
    let mut skipped = good.clone();
    skipped.history[2].to = Stage::SeedStageFossilized;
    let mut elsewhere = good.clone();
    elsewhere.stage = Stage::SeedStageBlending;
    let mut embargo = good.clone();
    embargo.embargo_remaining = Some(Duration::from_secs(1));
    for (bad, what) in
        [(unknown, "UNKNOWN"), (skipped, "not in the table"), (elsewhere, "does not end"), (embargo, "embargo")]
    {
        let err = restore(bad).unwrap_err();
        assert!(matches!(&err, Error::InvalidSaved { seed_id, .. } if seed_id == SEED), "{err:?}");
        assert!(err.to_string().contains(what), "{err}");
    }
}
