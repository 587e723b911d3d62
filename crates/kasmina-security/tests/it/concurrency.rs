//! Many threads, one verifier: replay protection holds across threads.

use std::sync::Barrier;

use kasmina_security::sign_command;

use crate::{Fixture, command};

const THREADS: usize = 8;

#[test]
fn the_same_command_from_many_threads_is_accepted_exactly_once() {
    let fixture = Fixture::default_key();
    for round in 0..50 {
        let signed = sign_command(&command(&format!("race-{round}")), "default", &fixture.keys).unwrap();
        let barrier = Barrier::new(THREADS);
        let outcomes: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        fixture.verifier.verify_signed(&signed)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(accepted, 1, "round {round}: {outcomes:?}");
        for rejection in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert_eq!(rejection.reason(), "nonce_replayed");
            assert_eq!(rejection.command_id(), Some(format!("race-{round}").as_str()));
        }
    }
    assert_eq!(fixture.verifier.ledger().len(), 50);
}

#[test]
fn distinct_commands_from_many_threads_are_all_accepted() {
    let fixture = Fixture::default_key();
    let per_thread = 200;
    let batches: Vec<Vec<_>> = (0..THREADS)
        .map(|t| {
            (0..per_thread)
                .map(|i| sign_command(&command(&format!("t{t}-{i}")), "default", &fixture.keys).unwrap())
                .collect()
        })
        .collect();
    let accepted: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = batches
            .iter()
            .map(|batch| scope.spawn(|| batch.iter().filter(|s| fixture.verifier.verify_signed(s).is_ok()).count()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(accepted, THREADS * per_thread);
    assert_eq!(fixture.verifier.ledger().len(), THREADS * per_thread);
}

#[test]
fn keys_rotate_while_other_threads_verify() {
    let fixture = Fixture::default_key();
    let signed: Vec<_> =
        (0..400).map(|i| sign_command(&command(&format!("rot-{i}")), "default", &fixture.keys).unwrap()).collect();
    std::thread::scope(|scope| {
        let verifying = scope.spawn(|| signed.iter().filter(|s| fixture.verifier.verify_signed(s).is_ok()).count());
        for i in 0..200 {
            fixture.keys.insert(format!("next-{i}"), format!("rotation-secret-{i:04}")).unwrap();
            assert!(fixture.keys.remove(&format!("next-{i}")));
        }
        // The default key is never removed, so every command is accepted.
        assert_eq!(verifying.join().unwrap(), 400);
    });
}
