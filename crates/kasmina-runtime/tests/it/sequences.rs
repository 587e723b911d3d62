//! A structured fuzzer of command sequences (issue 15): arbitrary valid and invalid signed
//! commands in arbitrary order, with training steps and clock jumps between them. Whatever the
//! order, no panic, every seed's history stays inside the transition table, and every verified
//! command gets exactly one final receipt.

use std::time::Duration;

use kasmina_runtime::blueprint::builtin;
use leyline::adaptation_command::Payload;
use leyline::{CommandCircuitBreaker, CommandType, ReceiptStatus, SeedLifecycleStage as Stage, SeedOperation};
use proptest::prelude::*;

use crate::harness::{Rig, config};

#[derive(Debug, Clone)]
enum Op {
    Seed(u8, SeedOperation, u8),
    Pause(u8, bool),
    Breaker(i32),
    Emergency,
    Rollback(u8),
    Forged(u8),
    Replay,
    Steps(u8),
    Epoch,
    Wait,
}

fn op() -> impl Strategy<Value = Op> {
    let seed_op = prop_oneof![
        Just(SeedOperation::SeedOpGerminate),
        Just(SeedOperation::SeedOpStartTraining),
        Just(SeedOperation::SeedOpStartGrafting),
        Just(SeedOperation::SeedOpStabilize),
        Just(SeedOperation::SeedOpEvaluate),
        Just(SeedOperation::SeedOpFossilize),
        Just(SeedOperation::SeedOpFineTune),
        Just(SeedOperation::SeedOpCull),
        Just(SeedOperation::SeedOpCancel),
        Just(SeedOperation::SeedOpUnknown),
    ];
    prop_oneof![
        4 => (0u8..3, seed_op, 0u8..5).prop_map(|(s, o, b)| Op::Seed(s, o, b)),
        1 => (0u8..3, any::<bool>()).prop_map(|(s, r)| Op::Pause(s, r)),
        1 => (0i32..5).prop_map(Op::Breaker),
        1 => Just(Op::Emergency),
        1 => (0u8..3).prop_map(Op::Rollback),
        1 => (0u8..3).prop_map(Op::Forged),
        1 => Just(Op::Replay),
        4 => (1u8..8).prop_map(Op::Steps),
        1 => Just(Op::Epoch),
        1 => Just(Op::Wait),
    ]
}

const BLUEPRINTS: [&str; 5] = [builtin::RESIDUAL_MLP, builtin::BROKEN, builtin::NOISY, "BP999", builtin::LOW_RANK];

fn run(ops: &[Op]) {
    let mut c = config();
    c.training_steps = 4;
    c.blending_steps = 4;
    c.shadowing_steps = 4;
    c.probation_steps = 4;
    c.blend_out_steps = 3;
    let mut rig = Rig::new(c);
    let mut tickets = Vec::new();
    let mut last_signed = None;
    // An emergency cleanup releases the receipt book too (its receipts were delivered already).
    let mut kept_from = 0;
    for op in ops {
        let cmd = match op {
            Op::Seed(s, o, b) => {
                let mut cmd = rig.seed_op(*o, &format!("seed-{s}"), BLUEPRINTS[*b as usize]);
                if *o == SeedOperation::SeedOpCancel && *b == 0 {
                    cmd.annotations.insert("terminate".into(), "true".into());
                }
                Some(cmd)
            }
            Op::Pause(s, resume) => {
                let mut cmd = rig.command(CommandType::CommandPause, &format!("seed-{s}"), None);
                if *resume {
                    cmd.annotations.insert("resume".into(), "true".into());
                }
                Some(cmd)
            }
            Op::Breaker(state) => Some(rig.command(
                CommandType::CommandCircuitBreaker,
                "",
                Some(Payload::CircuitBreaker(CommandCircuitBreaker {
                    desired_state: *state,
                    rationale: String::new(),
                })),
            )),
            Op::Emergency => {
                kept_from = tickets.len() + 1;
                Some(rig.command(CommandType::CommandEmergency, "", None))
            }
            Op::Rollback(s) => Some(rig.command(CommandType::CommandRollback, &format!("seed-{s}"), None)),
            Op::Forged(s) => {
                let cmd = rig.seed_op(SeedOperation::SeedOpCull, &format!("seed-{s}"), "");
                let mut signed = rig.sign(&cmd);
                signed.signature = "AAAA".into();
                assert!(rig.kasmina.submit(&signed).is_err(), "a forged command is refused at once");
                None
            }
            Op::Replay => {
                if let Some(signed) = &last_signed {
                    let r = rig.kasmina.submit(signed).unwrap_err();
                    assert_eq!(r.reason, "nonce_replayed");
                }
                None
            }
            Op::Steps(n) => {
                for _ in 0..*n {
                    rig.step();
                }
                None
            }
            Op::Epoch => {
                rig.epoch();
                None
            }
            Op::Wait => {
                rig.mock.increment(Duration::from_secs(31));
                None
            }
        };
        if let Some(cmd) = cmd {
            let signed = rig.sign(&cmd);
            let ticket = rig.kasmina.submit(&signed).unwrap_or_else(|r| panic!("verified commands queue: {r:?}"));
            assert_eq!(ticket.queued().status(), ReceiptStatus::Queued);
            tickets.push(ticket);
            last_signed = Some(signed);
        }
    }
    rig.step();
    for (i, ticket) in tickets.iter().enumerate() {
        let first = ticket.try_receipt().unwrap_or_else(|| panic!("{} has a final receipt", ticket.command_id()));
        assert_ne!(first.status(), ReceiptStatus::Queued);
        assert!(ticket.try_receipt().is_none(), "exactly one final receipt");
        if i >= kept_from {
            assert_eq!(rig.kasmina.receipt(ticket.command_id()).as_ref(), Some(&first), "the book keeps it");
        }
    }
    for summary in rig.kasmina.seed_summaries() {
        for pair in summary.stages.windows(2) {
            assert!(
                kasmina_lifecycle::is_legal(pair[0], pair[1]),
                "{}: {:?} -> {:?} in {:?}",
                summary.seed_id,
                pair[0],
                pair[1],
                summary.stages
            );
        }
        assert_eq!(summary.stages.first(), Some(&Stage::SeedStageDormant));
        assert_eq!(summary.stages.last(), Some(&summary.stage));
    }
    let (loss, _) = rig.validate();
    assert!(loss.is_finite(), "the host is never poisoned");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn any_command_sequence_keeps_the_invariants(ops in proptest::collection::vec(op(), 1..40)) {
        run(&ops);
    }
}
