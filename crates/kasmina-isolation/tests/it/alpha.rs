//! The alpha controller and its curves (device-independent).

use kasmina_isolation::{AlphaController, AlphaCurve, Error};
use proptest::prelude::*;

const CURVES: [AlphaCurve; 6] = [
    AlphaCurve::Linear,
    AlphaCurve::Cosine,
    AlphaCurve::Sigmoid { temperature: 0.01 },
    AlphaCurve::Sigmoid { temperature: 2.0 },
    AlphaCurve::Sigmoid { temperature: 12.0 },
    AlphaCurve::Sigmoid { temperature: 1e6 },
];

/// Advances `n` times and returns every alpha seen, the starting one first.
fn trajectory(c: &mut AlphaController, n: u64) -> Vec<f64> {
    let mut seen = vec![c.alpha()];
    for _ in 0..n {
        seen.push(c.advance());
    }
    seen
}

fn monotone_up(xs: &[f64]) -> bool {
    xs.windows(2).all(|w| w[1] >= w[0])
}

fn monotone_down(xs: &[f64]) -> bool {
    xs.windows(2).all(|w| w[1] <= w[0])
}

#[test]
fn every_curve_ramps_from_exactly_zero_to_exactly_one() {
    for curve in CURVES {
        for steps in [1, 2, 3, 7, 20, 1_000] {
            let mut c = AlphaController::new(curve, steps).unwrap();
            assert_eq!((c.alpha(), c.step(), c.target()), (0.0, 0, 1.0), "{curve:?}/{steps}");
            assert!(!c.reached_target() && !c.is_complete() && !c.is_held());
            let seen = trajectory(&mut c, steps);
            assert_eq!(seen[0], 0.0);
            assert_eq!(*seen.last().unwrap(), 1.0, "{curve:?}/{steps}: exactly 1.0 after `steps` advances");
            assert!(monotone_up(&seen), "{curve:?}/{steps}: {seen:?}");
            assert!(seen.iter().all(|a| (0.0..=1.0).contains(a)), "{curve:?}/{steps}");
            assert!(c.reached_target() && c.is_complete(), "{curve:?}/{steps}");
            assert_eq!(c.step(), steps);
            // The end holds.
            assert_eq!(trajectory(&mut c, 5), [1.0; 6]);
            assert_eq!(c.step(), steps);
        }
    }
}

#[test]
fn completion_comes_only_at_the_last_step() {
    for curve in CURVES {
        let mut c = AlphaController::new(curve, 10).unwrap();
        for _ in 0..9 {
            c.advance();
            assert!(!c.reached_target() && !c.is_complete(), "{curve:?} at step {}", c.step());
        }
        c.advance();
        assert!(c.is_complete());
    }
}

#[test]
fn curves_have_their_shapes() {
    let lin = AlphaCurve::Linear;
    let cos = AlphaCurve::Cosine;
    let sig = AlphaCurve::Sigmoid { temperature: 10.0 };
    for (curve, at_quarter) in [(lin, 0.25), (cos, (1.0 - std::f64::consts::FRAC_1_SQRT_2) / 2.0)] {
        assert!((curve.value(0.25) - at_quarter).abs() < 1e-12, "{curve:?}");
    }
    // Symmetric about the middle, with the middle at exactly one half.
    for curve in [lin, cos, sig] {
        assert!((curve.value(0.5) - 0.5).abs() < 1e-12, "{curve:?}");
        for t in [0.1, 0.2, 0.37, 0.49] {
            assert!((curve.value(t) + curve.value(1.0 - t) - 1.0).abs() < 1e-12, "{curve:?} at {t}");
        }
    }
    // Cosine and sigmoid start slower than linear; the steeper the sigmoid, the slower.
    assert!(cos.value(0.1) < lin.value(0.1));
    assert!(sig.value(0.1) < cos.value(0.1));
    assert!(AlphaCurve::Sigmoid { temperature: 20.0 }.value(0.1) < sig.value(0.1));
}

#[test]
fn codes() {
    assert_eq!(AlphaCurve::from_code(0, 5.0), Some(AlphaCurve::Linear));
    assert_eq!(AlphaCurve::from_code(1, 5.0), Some(AlphaCurve::Cosine));
    assert_eq!(AlphaCurve::from_code(2, 5.0), Some(AlphaCurve::Sigmoid { temperature: 5.0 }));
    assert_eq!(AlphaCurve::from_code(3, 5.0), None);
    for curve in CURVES {
        assert_eq!(AlphaCurve::from_code(curve.code(), 2.0).map(AlphaCurve::code), Some(curve.code()));
    }
    assert_eq!(
        (AlphaCurve::Linear.code(), AlphaCurve::Cosine.code(), AlphaCurve::Sigmoid { temperature: 1.0 }.code()),
        (0, 1, 2)
    );
}

#[test]
fn a_partial_target_holds_at_the_target() {
    for curve in CURVES {
        let mut c = AlphaController::new(curve, 8).unwrap().with_target(0.6).unwrap();
        assert_eq!((c.alpha(), c.target()), (0.0, 0.6));
        for k in 1..=8u64 {
            let a = c.advance();
            let expected = if k == 8 { 0.6 } else { 0.6 * curve.value(k as f64 / 8.0) };
            assert_eq!(a, expected, "{curve:?} at step {k}");
        }
        assert!(c.reached_target() && !c.is_complete(), "{curve:?}: a partial blend is not complete");
        assert_eq!(trajectory(&mut c, 3), [0.6; 4]);
    }
}

#[test]
fn hold_freezes_alpha() {
    let mut c = AlphaController::new(AlphaCurve::Linear, 10).unwrap();
    c.advance();
    c.advance();
    let (alpha, step) = (c.alpha(), c.step());
    c.hold(true);
    assert!(c.is_held());
    assert_eq!(trajectory(&mut c, 4), [alpha; 5]);
    assert_eq!(c.step(), step);
    c.hold(false);
    assert!(!c.is_held());
    assert_eq!(c.advance(), 0.3);
    // Held at the start: alpha stays exactly 0.
    let mut c = AlphaController::new(AlphaCurve::Cosine, 3).unwrap();
    c.hold(true);
    assert_eq!(trajectory(&mut c, 3), [0.0; 4]);
}

#[test]
fn retargeting_is_continuous() {
    for curve in CURVES {
        let mut c = AlphaController::new(curve, 10).unwrap();
        for _ in 0..4 {
            c.advance();
        }
        let before = c.alpha();

        // Down to a lower target than the current alpha, mid-ramp: no jump, then down
        // monotonically, reaching the target exactly at the ramp's end.
        let lower = before / 2.0;
        if lower > 0.0 {
            let mut down = c.clone();
            down.set_target(lower).unwrap();
            assert_eq!(down.alpha(), before, "{curve:?}: no jump");
            let seen = trajectory(&mut down, 6);
            assert!(monotone_down(&seen), "{curve:?}: {seen:?}");
            assert_eq!(*seen.last().unwrap(), lower);
            assert!(down.reached_target());
        }

        // Up to a partial target: continuous, monotone, exactly the target after the remaining 6.
        c.set_target(0.8).unwrap();
        assert_eq!(c.alpha(), before, "{curve:?}: no jump");
        assert!(!c.reached_target());
        let seen = trajectory(&mut c, 6);
        assert!(monotone_up(&seen), "{curve:?}: {seen:?}");
        assert_eq!(*seen.last().unwrap(), 0.8, "{curve:?}");
        assert!(c.reached_target() && !c.is_complete());
        assert_eq!(c.step(), 10);

        // At the end: at least one step more.
        c.set_target(1.0).unwrap();
        assert_eq!(c.alpha(), 0.8);
        assert!(!c.reached_target());
        assert_eq!(c.advance(), 1.0);
        assert!(c.is_complete());
        assert_eq!(c.step(), 11);
    }
}

#[test]
fn retargeting_to_the_same_target_or_the_current_alpha() {
    let mut c = AlphaController::new(AlphaCurve::Cosine, 10).unwrap();
    c.advance();
    let reference = c.clone();
    c.set_target(1.0).unwrap();
    assert_eq!(c, reference, "the same target changes nothing");
    let alpha = c.alpha();
    c.set_target(alpha).unwrap();
    assert!(c.reached_target(), "a target equal to alpha is reached at once");
    assert_eq!(c.advance(), alpha);
}

#[test]
fn blend_out_reaches_exactly_zero() {
    for curve in CURVES {
        let mut c = AlphaController::new(curve, 10).unwrap();
        for _ in 0..6 {
            c.advance();
        }
        let from = c.alpha();
        c.hold(true);
        c.blend_out(4).unwrap();
        assert!(!c.is_held(), "blend-out releases the hold");
        assert!(c.is_blending_out() && !c.is_out() && !c.reached_target() && !c.is_complete());
        assert_eq!(c.alpha(), from, "no jump");
        let seen = trajectory(&mut c, 4);
        assert!(monotone_down(&seen), "{curve:?}: {seen:?}");
        assert!((seen[2] - from / 2.0).abs() < 1e-15, "linear: {seen:?}");
        assert_eq!(*seen.last().unwrap(), 0.0, "{curve:?}: exactly 0 after the blend-out's steps");
        assert!(c.is_out() && !c.is_blending_out());
        assert_eq!(trajectory(&mut c, 3), [0.0; 4], "out stays out");
        assert_eq!(c.step(), 6, "the ramp-in's step does not move during blend-out");

        c.reset();
        assert_eq!((c.alpha(), c.step(), c.is_out(), c.is_blending_out()), (0.0, 0, false, false));
        assert_eq!((c.curve(), c.steps(), c.target()), (curve, 10, 1.0));
    }
}

#[test]
fn blend_out_from_the_top_and_in_one_step() {
    let mut c = AlphaController::new(AlphaCurve::Linear, 1).unwrap();
    assert_eq!(c.advance(), 1.0);
    c.blend_out(1).unwrap();
    assert_eq!(c.alpha(), 1.0);
    assert_eq!(c.advance(), 0.0);
    assert!(c.is_out());

    // Hold still freezes a blend-out started earlier.
    let mut c = AlphaController::new(AlphaCurve::Linear, 2).unwrap();
    c.advance();
    c.blend_out(2).unwrap();
    c.hold(true);
    assert_eq!(c.advance(), 0.5);
    c.hold(false);
    assert_eq!(c.advance(), 0.25);
    // Retargeting during a blend-out only records the target.
    c.set_target(0.4).unwrap();
    assert!(c.is_blending_out());
    assert_eq!(c.advance(), 0.0);
    c.reset();
    assert_eq!(c.target(), 0.4);
    assert_eq!(trajectory(&mut c, 2).last(), Some(&0.4));
}

#[test]
fn reset_keeps_the_configuration() {
    let mut c = AlphaController::new(AlphaCurve::Sigmoid { temperature: 6.0 }, 5).unwrap().with_target(0.5).unwrap();
    let fresh = c.clone();
    c.advance();
    c.hold(true);
    c.reset();
    assert_eq!(c, fresh);
}

#[test]
fn invalid_inputs_are_typed_errors() {
    assert!(matches!(AlphaController::new(AlphaCurve::Linear, 0), Err(Error::ZeroSteps { what: "alpha ramp" })));
    for temperature in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = AlphaController::new(AlphaCurve::Sigmoid { temperature }, 10).unwrap_err();
        assert!(matches!(err, Error::InvalidTemperature { .. }), "{temperature}: {err}");
    }
    let c = AlphaController::new(AlphaCurve::Cosine, 10).unwrap();
    for target in [0.0, -0.1, 1.0 + 1e-12, 2.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(c.clone().with_target(target), Err(Error::InvalidTarget { .. })), "{target}");
        let mut d = c.clone();
        d.advance();
        let before = d.clone();
        assert!(matches!(d.set_target(target), Err(Error::InvalidTarget { .. })), "{target}");
        assert_eq!(d, before, "a failed set_target changes nothing");
    }
    let mut d = c.clone();
    d.advance();
    let before = d.clone();
    assert!(matches!(d.blend_out(0), Err(Error::ZeroSteps { what: "blend-out" })));
    assert_eq!(d, before, "a failed blend_out changes nothing");
    assert_eq!(Error::InvalidTarget { target: 1.5 }.to_string(), "alpha target must be in (0, 1], got 1.5");
}

fn curve_strategy() -> impl Strategy<Value = AlphaCurve> {
    prop_oneof![
        Just(AlphaCurve::Linear),
        Just(AlphaCurve::Cosine),
        (1e-3f64..200.0).prop_map(|temperature| AlphaCurve::Sigmoid { temperature }),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Advance,
    Hold(bool),
    Retarget(f64),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Advance),
        1 => any::<bool>().prop_map(Op::Hold),
        1 => (0.01f64..=1.0).prop_map(Op::Retarget),
    ]
}

proptest! {
    #[test]
    fn curves_are_monotone_and_bounded(curve in curve_strategy(), n in 1u32..2_000, k in 0u32..2_000) {
        let k = k.min(n - 1);
        let (a, b) = (curve.value(f64::from(k) / f64::from(n)), curve.value(f64::from(k + 1) / f64::from(n)));
        prop_assert!((0.0..=1.0).contains(&a) && (0.0..=1.0).contains(&b));
        prop_assert!(b >= a, "{:?}: {} then {}", curve, a, b);
        prop_assert_eq!(curve.value(0.0), 0.0);
        prop_assert_eq!(curve.value(1.0), 1.0);
    }

    /// Whatever the holds and retargets: alpha stays in [0, 1], never jumps on a retarget, moves
    /// monotonically towards the current target, and lands on it exactly once released long
    /// enough.
    #[test]
    fn the_controller_is_continuous_and_lands_on_its_target(
        curve in curve_strategy(),
        steps in 1u64..50,
        target in 0.01f64..=1.0,
        ops in proptest::collection::vec(op_strategy(), 0..80),
    ) {
        let mut c = AlphaController::new(curve, steps).unwrap().with_target(target).unwrap();
        for op in ops {
            let before = c.alpha();
            match op {
                Op::Advance => {
                    let after = c.advance();
                    let t = c.target();
                    if before <= t { prop_assert!(after >= before && after <= t); }
                    if before >= t { prop_assert!(after <= before && after >= t); }
                }
                Op::Hold(on) => c.hold(on),
                Op::Retarget(t) => {
                    c.set_target(t).unwrap();
                    prop_assert_eq!(c.alpha(), before, "retarget must not jump");
                }
            }
            prop_assert!((0.0..=1.0).contains(&c.alpha()));
        }
        c.hold(false);
        for _ in 0..=steps {
            c.advance();
        }
        prop_assert!(c.reached_target());
        prop_assert_eq!(c.alpha(), c.target());
        prop_assert_eq!(c.is_complete(), c.target() == 1.0);

        let from = c.alpha();
        let out_steps = 1 + steps % 7;
        c.blend_out(out_steps).unwrap();
        let mut last = from;
        for _ in 0..out_steps {
            let a = c.advance();
            prop_assert!(a <= last && a >= 0.0);
            last = a;
        }
        prop_assert_eq!(c.alpha(), 0.0);
        prop_assert!(c.is_out());
    }
}
