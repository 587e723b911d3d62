//! The alpha schedule and its hysteresis phases (device-independent).

use kasmina_isolation::{AlphaSchedule, BlendPhase, HYSTERESIS_BAND};
use proptest::prelude::*;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn default_schedule_matches_the_prototype() {
    let s = AlphaSchedule::default();
    assert_eq!((s.total_steps(), s.temperature()), (20, 2.0));
    assert!(close(s.alpha_at(1), 0.0110, 1e-4), "{}", s.alpha_at(1));
    assert_eq!(s.alpha_at(10), 0.5);
    assert!(close(s.alpha_at(20), 0.9933, 1e-4), "{}", s.alpha_at(20));
    assert!(s.alpha_at(1_000) <= 1.0);
}

#[test]
fn advance_reset_and_completion() {
    let mut s = AlphaSchedule::default();
    assert_eq!((s.step(), s.alpha(), s.phase()), (0, 0.0, BlendPhase::HostDominant));
    assert!(!s.is_complete());
    assert!(close(s.advance(), 0.0110, 1e-4));
    s.advance_by(18);
    assert_eq!(s.step(), 19);
    assert!(!s.is_complete());
    s.advance();
    assert!(s.is_complete(), "G2: the schedule completes at step == total");
    assert!(close(s.alpha(), 0.9933, 1e-4));
    s.reset();
    assert_eq!((s.step(), s.alpha(), s.phase()), (0, 0.0, BlendPhase::HostDominant));
    assert!(!s.is_complete());
}

#[test]
fn zero_total_steps_is_alpha_one_and_complete() {
    let mut s = AlphaSchedule::new(0, 2.0).unwrap();
    assert!(s.is_complete());
    assert_eq!(s.alpha_at(0), 1.0);
    assert_eq!(s.advance(), 1.0);
    assert_eq!(s.phase(), BlendPhase::SeedDominant);
}

/// (start phase, alpha, expected phase): the edges are 0.3 and 0.7, the band ±0.02.
#[test]
fn hysteresis_bands() {
    use BlendPhase::{HostDominant as H, Mixed as M, SeedDominant as S};
    let cases = [
        (H, 0.29, H),
        (H, 0.31, H), // above the edge but inside the band: no flip up
        (H, 0.32, M),
        (M, 0.31, M),
        (M, 0.29, M), // below the edge but inside the band: no flip down
        (M, 0.28, H),
        (M, 0.71, M),
        (M, 0.72, S),
        (S, 0.69, S),
        (S, 0.68, M),
        (H, 0.95, S), // a jump across both edges
        (S, 0.05, H),
        (M, f64::NAN, M),
    ];
    for (from, alpha, expected) in cases {
        assert_eq!(from.next(alpha), expected, "{from:?} at alpha {alpha}");
    }
}

#[test]
fn schedule_phase_does_not_chatter_around_an_edge() {
    // A slow ramp (alpha moves ~0.005 per step near the middle) rewound back and forth around 0.3.
    let mut s = AlphaSchedule::new(1_000, 50.0).unwrap();
    let step_at = |target: f64| (0..1_000u64).find(|&k| s.alpha_at(k) >= target).unwrap();
    let (just_below, just_above) = (step_at(0.295), step_at(0.305));
    let past_band = step_at(0.32);
    s.set_step(just_below);
    assert_eq!(s.phase(), BlendPhase::HostDominant);
    for _ in 0..5 {
        s.set_step(just_above);
        assert_eq!(s.phase(), BlendPhase::HostDominant, "alpha {} is inside the band", s.alpha());
        s.set_step(just_below);
        assert_eq!(s.phase(), BlendPhase::HostDominant);
    }
    s.set_step(past_band);
    assert_eq!(s.phase(), BlendPhase::Mixed);
    s.set_step(just_below);
    assert_eq!(s.phase(), BlendPhase::Mixed, "alpha {} is inside the band", s.alpha());
}

proptest! {
    /// Whatever the alpha sequence, the phase is the one alpha unambiguously names outside the
    /// bands, and a phase change always crosses an edge by at least the band.
    #[test]
    fn phase_respects_the_bands(alphas in proptest::collection::vec(0.0f64..=1.0, 1..60)) {
        let mut phase = BlendPhase::INITIAL;
        for a in alphas {
            let next = phase.next(a);
            // Tolerances absorb the binary rounding of 0.3 ± 0.02 and 0.7 ± 0.02.
            let (up_low, up_high) = (0.3 + HYSTERESIS_BAND + 1e-12, 0.7 + HYSTERESIS_BAND + 1e-12);
            let (down_low, down_high) = (0.3 - HYSTERESIS_BAND - 1e-12, 0.7 - HYSTERESIS_BAND - 1e-12);
            if a >= up_high { prop_assert_eq!(next, BlendPhase::SeedDominant); }
            if a <= down_low { prop_assert_eq!(next, BlendPhase::HostDominant); }
            if (up_low..=down_high).contains(&a) { prop_assert_eq!(next, BlendPhase::Mixed); }
            if next > phase { prop_assert!(a >= 0.3 + HYSTERESIS_BAND - 1e-12); }
            if next < phase { prop_assert!(a <= 0.7 - HYSTERESIS_BAND + 1e-12); }
            phase = next;
        }
    }

    #[test]
    fn alpha_is_monotone_and_bounded(total in 0u64..500, temperature in -5.0f64..100.0, step in 0u64..1_000) {
        let s = AlphaSchedule::new(total, temperature).unwrap();
        let (a, b) = (s.alpha_at(step), s.alpha_at(step + 1));
        prop_assert!((0.0..=1.0).contains(&a));
        prop_assert!(b >= a);
    }
}
