//! `validate_update`: every reason code, counting and the repeat threshold.

use std::collections::HashSet;

use candle_core::{TensorId, Var};
use kasmina_registry::{DEFAULT_LR_GROUP, ParamRef, ParameterRegistry, RegistryConfig, ViolationReason};
use proptest::prelude::*;
use rstest::rstest;

use crate::{var, vars};

struct World {
    reg: ParameterRegistry,
    own: Vec<Var>,
    other: Var,
    teacher: Var,
    host: Var,
    stray: Var,
}

fn world(threshold: u32) -> World {
    let reg = ParameterRegistry::new(RegistryConfig { violation_threshold: threshold }).unwrap();
    let own = vars(2);
    let other = var();
    let teacher = var();
    let host = var();
    reg.register_seed("s1", &own, DEFAULT_LR_GROUP).unwrap();
    reg.register_seed("s2", &[&other], DEFAULT_LR_GROUP).unwrap();
    reg.register_teacher(&[&teacher]).unwrap();
    reg.register_host(&[&host]).unwrap();
    World { reg, own, other, teacher, host, stray: var() }
}

#[derive(Debug, Clone, Copy)]
enum P {
    Own,
    Other,
    Teacher,
    Host,
    Stray,
}

fn pick(w: &World, p: P) -> Var {
    match p {
        P::Own => w.own[0].clone(),
        P::Other => w.other.clone(),
        P::Teacher => w.teacher.clone(),
        P::Host => w.host.clone(),
        P::Stray => w.stray.clone(),
    }
}

#[rstest]
#[case::own_only("s1", &[P::Own], None)]
#[case::empty_list("s1", &[], None)]
#[case::empty_list_unregistered("ghost", &[], None)]
#[case::teacher("s1", &[P::Own, P::Teacher], Some(("teacher_param", Some(P::Teacher))))]
#[case::teacher_wins_over_unregistered_seed("ghost", &[P::Teacher], Some(("teacher_param", Some(P::Teacher))))]
#[case::unregistered_seed("ghost", &[P::Own], Some(("seed_unregistered", None)))]
#[case::unregistered_param("s1", &[P::Own, P::Stray], Some(("unregistered_param", Some(P::Stray))))]
#[case::unregistered_before_foreign("s1", &[P::Other, P::Stray], Some(("unregistered_param", Some(P::Stray))))]
#[case::other_seed("s1", &[P::Other, P::Own], Some(("foreign_owner", Some(P::Other))))]
#[case::host_param("s1", &[P::Host], Some(("foreign_owner", Some(P::Host))))]
fn validate_update_reason_codes(#[case] seed: &str, #[case] params: &[P], #[case] expected: Option<(&str, Option<P>)>) {
    let w = world(3);
    let update: Vec<Var> = params.iter().map(|p| pick(&w, *p)).collect();
    let owners_before: Vec<_> = update.iter().map(|v| w.reg.owner_of(v)).collect();
    let result = w.reg.validate_update(seed, &update);
    match expected {
        None => {
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(w.reg.violations(seed), 0);
        }
        Some((code, param)) => {
            let v = result.unwrap_err();
            assert_eq!(v.reason.code(), code);
            assert_eq!(v.seed_id, seed);
            assert_eq!(v.param, param.map(|p| pick(&w, p).param_id()));
            assert_eq!(v.count, 1);
            assert!(!v.threshold_reached);
            assert!(v.to_string().contains(code));
            assert_eq!(w.reg.violations(seed), 1);
        }
    }
    // Validation never changes ownership.
    let owners_after: Vec<_> = update.iter().map(|v| w.reg.owner_of(v)).collect();
    assert_eq!(owners_before, owners_after);
}

#[test]
fn reason_codes_are_the_documented_strings() {
    let codes: Vec<&str> = ViolationReason::ALL.iter().map(|r| r.code()).collect();
    assert_eq!(codes, ["teacher_param", "seed_unregistered", "unregistered_param", "foreign_owner"]);
}

#[test]
fn offending_counts_every_parameter_of_the_reason() {
    let w = world(3);
    let strays = vars(3);
    let mut update = strays.clone();
    update.push(w.own[1].clone());
    let v = w.reg.validate_update("s1", &update).unwrap_err();
    assert_eq!(v.reason, ViolationReason::UnregisteredParam);
    assert_eq!(v.offending, 3);
    assert_eq!(v.param, Some(strays[0].param_id()));
}

#[rstest]
fn repeat_threshold_is_reported(#[values(1, 2, 3, 5)] threshold: u32) {
    let w = world(threshold);
    for i in 1..=threshold + 1 {
        let v = w.reg.validate_update("s1", &[&w.teacher]).unwrap_err();
        assert_eq!(v.count, i);
        assert_eq!(v.threshold, threshold);
        assert_eq!(v.threshold_reached, i >= threshold, "violation {i} of threshold {threshold}");
    }
    // Successful updates do not reset the count; another seed's count is separate.
    w.reg.validate_update("s1", &w.own).unwrap();
    assert_eq!(w.reg.violations("s1"), threshold + 1);
    assert_eq!(w.reg.violations("s2"), 0);
    assert_eq!(w.reg.counters().ownership_violations, u64::from(threshold + 1));
    assert_eq!(w.reg.reset_violations("s1"), threshold + 1);
    assert_eq!(w.reg.violations("s1"), 0);
}

#[test]
fn tensor_ids_and_tensors_are_accepted_as_handles() {
    let w = world(3);
    let ids: Vec<TensorId> = w.own.iter().map(|v| v.param_id()).collect();
    w.reg.validate_update("s1", &ids).unwrap();
    let tensors: Vec<_> = w.own.iter().map(|v| v.as_tensor().clone()).collect();
    w.reg.validate_update("s1", &tensors).unwrap();
    assert_eq!(w.reg.owner_of(&ids[0]), w.reg.owner_of(&tensors[0]));
}

proptest! {
    /// Any sequence of registrations and deregistrations keeps each parameter with at most one owner, keeps
    /// the per-seed lists consistent with `owner_of`, and never lets a seed hold a teacher or host parameter.
    #[test]
    fn ownership_stays_exclusive(ops in proptest::collection::vec((0usize..4, proptest::collection::vec(0usize..12, 0..5), any::<bool>()), 1..40)) {
        let reg = ParameterRegistry::default();
        let pool = vars(12);
        reg.register_teacher(&pool[0..2]).unwrap();
        reg.register_host(&pool[2..4]).unwrap();
        let seeds = ["a", "b", "c", "d"];
        for (seed, idx, deregister) in ops {
            let seed = seeds[seed];
            if deregister {
                reg.deregister_seed(seed);
            } else {
                let params: Vec<Var> = idx.iter().map(|i| pool[*i].clone()).collect();
                let before: Vec<_> = pool.iter().map(|p| reg.owner_of(p)).collect();
                if reg.register_seed(seed, &params, DEFAULT_LR_GROUP).is_err() {
                    let after: Vec<_> = pool.iter().map(|p| reg.owner_of(p)).collect();
                    prop_assert_eq!(before, after);
                }
            }
            let mut seen = HashSet::new();
            for s in seeds {
                for id in reg.params_of(s) {
                    prop_assert!(seen.insert(id), "parameter held twice");
                    prop_assert_eq!(reg.owner_of(&id), Some(kasmina_registry::Owner::Seed(s.to_string())));
                }
                prop_assert!(reg.validate_update(s, &reg.params_of(s)).is_ok());
            }
            prop_assert_eq!(reg.teacher_param_count(), 2);
            prop_assert_eq!(reg.host_param_count(), 2);
        }
    }
}
