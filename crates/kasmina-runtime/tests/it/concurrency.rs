//! Many threads against the runtime's locks while training runs (issue 15): submitters, readers
//! of states, health, receipts and summaries, and pause/resume — no deadlock, and the commands of
//! one client are applied in the order it submitted them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use leyline::{CommandType, SeedOperation};

use crate::harness::{Rig, config};

#[test]
fn many_threads_never_deadlock_while_training_runs() {
    let mut rig = Rig::new(config());
    rig.train(5);
    let kasmina = rig.kasmina.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..4 {
        let k = kasmina.clone();
        let stop = stop.clone();
        let signed: Vec<_> = (0..50)
            .map(|i| {
                let op = if i % 3 == 0 { SeedOperation::SeedOpGerminate } else { SeedOperation::SeedOpCull };
                let cmd = rig.seed_op(op, &format!("t{t}-s{}", i % 4), "BP001");
                rig.sign(&cmd)
            })
            .collect();
        handles.push(std::thread::spawn(move || {
            let mut tickets = Vec::new();
            for s in &signed {
                if let Ok(ticket) = k.submit(s) {
                    tickets.push(ticket);
                }
                let _ = k.export_seed_states();
                let _ = k.health();
                let _ = k.seed_summaries();
                let _ = k.system_state_packet();
            }
            while !stop.load(Ordering::SeqCst) {
                let _ = k.health();
                std::thread::yield_now();
            }
            tickets
        }));
    }
    let started = Instant::now();
    for _ in 0..60 {
        rig.step();
        if rig.step.is_multiple_of(10) {
            rig.epoch();
        }
    }
    stop.store(true, Ordering::SeqCst);
    let tickets: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    rig.step();
    assert!(started.elapsed() < Duration::from_secs(60), "no deadlock");
    assert_eq!(tickets.len(), 200);
    for ticket in &tickets {
        assert!(ticket.try_receipt().is_some(), "{} answered", ticket.command_id());
    }
}

#[test]
fn the_commands_of_one_client_are_applied_in_submission_order() {
    let mut rig = Rig::new(config());
    rig.train(3);
    // Germinate, pause, resume, cull: only valid in this order.
    let germinate = rig.seed_op(SeedOperation::SeedOpGerminate, "ordered", "BP001");
    let pause = rig.command(CommandType::CommandPause, "ordered", None);
    let mut resume = rig.command(CommandType::CommandPause, "ordered", None);
    resume.annotations.insert("resume".into(), "true".into());
    let cull = rig.seed_op(SeedOperation::SeedOpCull, "ordered", "");
    let tickets: Vec<_> =
        [germinate, pause, resume, cull].iter().map(|c| rig.kasmina.submit(&rig.sign(c)).unwrap()).collect();
    rig.step();
    let reasons: Vec<_> = tickets.iter().map(|t| t.try_receipt().unwrap().reason).collect();
    assert_eq!(reasons, ["ok", "ok", "ok", "ok"]);
    let stages = rig.kasmina.seed_summaries().remove(0).stages;
    assert!(stages.contains(&leyline::SeedLifecycleStage::SeedStageCulled), "{stages:?}");
}
