//! Registration: idempotency, atomic conflicts, the teacher fence, host overlap.

use candle_core::{DType, Device, Tensor, TensorId};
use kasmina_registry::{DEFAULT_LR_GROUP, Error, Owner, ParamRef, ParameterRegistry, RegistryConfig, RegistryEvent};
use rstest::rstest;

use crate::{var, vars};

#[test]
fn registration_is_idempotent_for_the_same_owner() {
    let reg = ParameterRegistry::default();
    let params = vars(3);
    let first = reg.register_seed("s1", &params, DEFAULT_LR_GROUP).unwrap();
    assert_eq!((first.newly_registered, first.already_registered, first.total_params), (3, 0, 3));
    let again = reg.register_seed("s1", &params, DEFAULT_LR_GROUP).unwrap();
    assert_eq!((again.newly_registered, again.already_registered, again.total_params), (0, 3, 3));
    assert_eq!(reg.params_of("s1").len(), 3);
    assert_eq!(reg.len(), 3);
    assert_eq!(reg.counters().double_registration_attempts, 3);
    assert_eq!(reg.counters().registrations, 2);
    // A superset adds only the new parameter.
    let mut more = params.clone();
    more.push(var());
    let grown = reg.register_seed("s1", &more, DEFAULT_LR_GROUP).unwrap();
    assert_eq!((grown.newly_registered, grown.already_registered, grown.total_params), (1, 3, 4));
}

#[test]
fn duplicates_within_one_call_count_once() {
    let reg = ParameterRegistry::default();
    let v = var();
    let ev = reg.register_seed("s1", &[v.clone(), v.clone(), v.clone()], DEFAULT_LR_GROUP).unwrap();
    assert_eq!((ev.newly_registered, ev.total_params), (1, 1));
    assert_eq!(reg.params_of("s1"), vec![v.param_id()]);
}

#[derive(Debug, Clone, Copy)]
enum Fence {
    OtherSeed,
    Teacher,
    Host,
}

/// A conflict on any one parameter (first, middle or last) registers nothing, whoever holds it.
#[rstest]
fn conflicting_registration_is_atomic(
    #[values(Fence::OtherSeed, Fence::Teacher, Fence::Host)] fence: Fence,
    #[values(0, 2, 4)] position: usize,
) {
    let reg = ParameterRegistry::default();
    let taken = var();
    let expected_owner = match fence {
        Fence::OtherSeed => {
            reg.register_seed("owner", &[&taken], DEFAULT_LR_GROUP).unwrap();
            Owner::Seed("owner".into())
        }
        Fence::Teacher => {
            reg.register_teacher(&[&taken]).unwrap();
            Owner::Teacher
        }
        Fence::Host => {
            reg.register_host(&[&taken]).unwrap();
            Owner::Host
        }
    };
    let mut params = vars(4);
    params.insert(position, taken.clone());
    let before = reg.len();

    let err = reg.register_seed("claimant", &params, DEFAULT_LR_GROUP).unwrap_err();
    match &err {
        Error::OwnershipConflict { claimant, param, owner, conflicts } => {
            assert_eq!(claimant, &Owner::Seed("claimant".into()));
            assert_eq!(*param, taken.param_id());
            assert_eq!(owner, &expected_owner);
            assert_eq!(*conflicts, 1);
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains("parameter"), "rollback reasons must name the parameter: {err}");
    assert_eq!(reg.len(), before, "nothing registered on conflict");
    assert!(!reg.is_registered("claimant"));
    for p in &params {
        assert_ne!(reg.owner_of(p), Some(Owner::Seed("claimant".into())));
    }
    assert_eq!(reg.owner_of(&taken), Some(expected_owner));

    let c = reg.counters();
    let claims = match fence {
        Fence::OtherSeed => c.foreign_claim_attempts,
        Fence::Teacher => c.teacher_claim_attempts,
        Fence::Host => c.host_claim_attempts,
    };
    assert_eq!(claims, 1);
    assert_eq!(c.registrations, u64::from(matches!(fence, Fence::OtherSeed)), "only the owner's registration counts");
}

#[test]
fn conflict_on_a_registered_seed_leaves_its_existing_parameters_alone() {
    let reg = ParameterRegistry::default();
    let own = vars(2);
    reg.register_seed("s1", &own, DEFAULT_LR_GROUP).unwrap();
    let host = var();
    reg.register_host(&[&host]).unwrap();
    let fresh = var();
    assert!(reg.register_seed("s1", &[fresh.clone(), host.clone()], DEFAULT_LR_GROUP).is_err());
    assert_eq!(reg.params_of("s1"), own.iter().map(|v| v.param_id()).collect::<Vec<_>>());
    assert_eq!(reg.owner_of(&fresh), None);
}

#[test]
fn teacher_parameters_can_be_neither_claimed_nor_released() {
    let reg = ParameterRegistry::default();
    let teacher = vars(3);
    assert_eq!(reg.register_teacher(&teacher).unwrap(), 3);
    assert_eq!(reg.register_teacher(&teacher).unwrap(), 0, "idempotent");
    assert_eq!(reg.teacher_param_count(), 3);

    // Claiming: refused for any seed.
    let err = reg.register_seed("s1", &teacher[1..2], DEFAULT_LR_GROUP).unwrap_err();
    assert!(matches!(err, Error::OwnershipConflict { owner: Owner::Teacher, .. }));
    // Releasing: deregistering a seed name, transferring to the host or re-fencing as host never frees them.
    assert!(reg.deregister_seed("teacher").is_none());
    assert!(matches!(reg.transfer_to_host("teacher"), Err(Error::UnknownSeed { .. })));
    assert!(matches!(reg.register_host(&teacher), Err(Error::OwnershipConflict { owner: Owner::Teacher, .. })));
    for t in &teacher {
        assert_eq!(reg.owner_of(t), Some(Owner::Teacher));
        assert_eq!(reg.lr_group_of(t), None);
    }
}

#[test]
fn teacher_cannot_take_a_seed_or_host_parameter() {
    let reg = ParameterRegistry::default();
    let s = var();
    let h = var();
    reg.register_seed("s1", &[&s], DEFAULT_LR_GROUP).unwrap();
    reg.register_host(&[&h]).unwrap();
    let fresh = var();
    let err = reg.register_teacher(&[fresh.clone(), s.clone(), h.clone()]).unwrap_err();
    assert!(matches!(err, Error::OwnershipConflict { claimant: Owner::Teacher, conflicts: 2, .. }));
    assert_eq!(reg.owner_of(&fresh), None, "atomic");
    assert_eq!(reg.register_teacher::<candle_core::Var>(&[]).unwrap(), 0, "a frozen teacher has nothing to fence");
}

#[test]
fn host_overlap_is_refused_at_registration() {
    let reg = ParameterRegistry::default();
    let host = vars(4);
    assert_eq!(reg.register_host(&host).unwrap(), 4);
    assert_eq!(reg.host_param_count(), 4);
    // A seed kernel built around a shared host weight (the prototype only noticed afterwards).
    let kernel = vec![var(), host[2].clone()];
    let err = reg.register_seed("s1", &kernel, DEFAULT_LR_GROUP).unwrap_err();
    assert_eq!(
        err,
        Error::OwnershipConflict {
            claimant: Owner::Seed("s1".into()),
            param: host[2].param_id(),
            owner: Owner::Host,
            conflicts: 1
        }
    );
    // And a host cannot take a seed's parameter afterwards either.
    let s = var();
    reg.register_seed("s1", &[&s], DEFAULT_LR_GROUP).unwrap();
    assert!(matches!(reg.register_host(&[s]), Err(Error::OwnershipConflict { claimant: Owner::Host, .. })));
}

#[rstest]
#[case::empty_seed("", 1, "g", |e: &Error| matches!(e, Error::EmptySeedId))]
#[case::empty_group("s", 1, "", |e: &Error| matches!(e, Error::EmptyLrGroup { .. }))]
#[case::empty_list("s", 0, "g", |e: &Error| matches!(e, Error::EmptyParameterList { .. }))]
fn bad_registration_input_is_a_typed_error(
    #[case] seed: &str,
    #[case] n: usize,
    #[case] group: &str,
    #[case] expected: fn(&Error) -> bool,
) {
    let reg = ParameterRegistry::default();
    let err = reg.register_seed(seed, &vars(n), group).unwrap_err();
    assert!(expected(&err), "{err:?}");
    assert!(reg.is_empty());
}

#[test]
fn non_variable_tensors_are_refused() {
    let reg = ParameterRegistry::default();
    let plain = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    let v = var();
    let err = reg.register_seed("s", &[v.as_tensor().clone(), plain.clone()], DEFAULT_LR_GROUP).unwrap_err();
    assert_eq!(err, Error::NotTrainable { param: plain.id() });
    assert!(reg.is_empty());
    // The variable's tensor view registers fine and shares the Var's identity.
    reg.register_seed("s", &[v.as_tensor().clone()], DEFAULT_LR_GROUP).unwrap();
    assert_eq!(reg.owner_of(&v), Some(Owner::Seed("s".into())));
}

#[test]
fn zero_threshold_is_refused() {
    let err = ParameterRegistry::new(RegistryConfig { violation_threshold: 0 }).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { field: "violation_threshold", .. }));
}

#[test]
fn lr_groups_are_tracked_per_parameter() {
    let reg = ParameterRegistry::default();
    let a = vars(2);
    let b = vars(3);
    reg.register_seed("s1", &a, "fast").unwrap();
    reg.register_seed("s1", &b, "slow").unwrap();
    reg.register_seed("s2", &vars(1), DEFAULT_LR_GROUP).unwrap();
    let groups = reg.lr_groups("s1");
    assert_eq!(groups["fast"], a.iter().map(|v| v.param_id()).collect::<Vec<TensorId>>());
    assert_eq!(groups["slow"].len(), 3);
    assert_eq!(reg.lr_group_of(&b[0]).as_deref(), Some("slow"));
    let all = reg.parameter_groups();
    assert_eq!(all.get("fast"), Some(&2));
    assert_eq!(all.get("slow"), Some(&3));
    assert_eq!(all.get(DEFAULT_LR_GROUP), Some(&1));
    // Moving a held parameter to another group is refused, atomically.
    let fresh = var();
    let err = reg.register_seed("s1", &[fresh.clone(), a[0].clone()], "slow").unwrap_err();
    assert!(
        matches!(err, Error::LrGroupConflict { ref existing, ref requested, .. } if existing == "fast" && requested == "slow")
    );
    assert_eq!(reg.owner_of(&fresh), None);
    assert_eq!(reg.seeds(), vec!["s1".to_string(), "s2".to_string()]);
}

#[test]
fn deregistration_releases_parameters_for_reuse() {
    let reg = ParameterRegistry::default();
    let params = vars(3);
    reg.register_seed("s1", &params, DEFAULT_LR_GROUP).unwrap();
    let _ = reg.validate_update("s1", &[var()]);
    let out = reg.deregister_seed("s1").unwrap();
    assert_eq!((out.released, out.violations_cleared), (3, 1));
    assert!(reg.is_empty());
    assert_eq!(reg.violations("s1"), 0);
    assert!(reg.deregister_seed("s1").is_none());
    // Released parameters can be claimed by another seed.
    let ev = reg.register_seed("s2", &params, DEFAULT_LR_GROUP).unwrap();
    assert_eq!(ev.newly_registered, 3);
}

#[test]
fn fossilized_seed_parameters_move_to_the_host() {
    let reg = ParameterRegistry::default();
    let params = vars(2);
    reg.register_seed("s1", &params, DEFAULT_LR_GROUP).unwrap();
    assert_eq!(reg.transfer_to_host("s1").unwrap(), 2);
    assert!(!reg.is_registered("s1"));
    assert_eq!(reg.owner_of(&params[0]), Some(Owner::Host));
    assert!(reg.register_seed("s2", &params, DEFAULT_LR_GROUP).is_err());
}

#[test]
fn events_carry_the_telemetry_names() {
    let reg = ParameterRegistry::default();
    let ev: RegistryEvent = reg.register_seed("s1", &vars(1), DEFAULT_LR_GROUP).unwrap().into();
    assert_eq!(ev.name(), "parameter.registration");
    assert_eq!(ev.seed_id(), "s1");
    let v: RegistryEvent = reg.validate_update("s1", &[var()]).unwrap_err().into();
    assert_eq!(v.name(), "parameter.violation");
}
