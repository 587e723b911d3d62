//! `MemoryGovernor`: epoch GC schedule, emergency cleanup, pinned teacher and its budget.

use std::time::Duration;

use kasmina_memory::{BudgetStatus, GIB, MemoryConfig, MemoryGovernor, TeacherBudget, TtlCacheConfig};
use quanta::Clock;
use rstest::rstest;

type Gov = MemoryGovernor<Vec<u8>, String, Vec<u8>, &'static str>;

fn gov(gc_every: u64) -> (Gov, std::sync::Arc<quanta::Mock>) {
    let (clock, mock) = Clock::mock();
    let cfg = MemoryConfig { gc_every_epochs: gc_every, ..Default::default() };
    (MemoryGovernor::with_clock(cfg, clock).unwrap(), mock)
}

/// Which epochs of a sequence run a GC (the prototype's schedule).
#[rstest]
#[case::default_every_10(10, &[0, 5, 9, 10, 11, 19, 20, 35], &[10, 20, 35])]
#[case::every_epoch(1, &[0, 1, 2, 2, 3], &[1, 2, 3])]
#[case::disabled(0, &[0, 10, 100, 1000], &[])]
#[case::restart_resets_baseline(10, &[10, 20, 3, 12, 13], &[10, 20, 13])]
#[case::big_gap(10, &[100, 105, 110], &[100, 110])]
fn epoch_gc_schedule(#[case] every: u64, #[case] epochs: &[u64], #[case] expected: &[u64]) {
    let (g, _mock) = gov(every);
    let ran: Vec<u64> = epochs.iter().filter_map(|e| g.on_epoch(*e)).map(|r| r.epoch).collect();
    assert_eq!(ran, expected);
    assert_eq!(g.stats().gc_runs, expected.len() as u64);
}

#[test]
fn epoch_gc_reports_real_counts_per_cache() {
    let (g, mock) = gov(10);
    for i in 0..7 {
        g.kernels().insert(format!("bp{i}"), vec![0; 1000]).unwrap();
    }
    for i in 0..3 {
        g.blueprints().insert(format!("bp{i}"), "descriptor".into()).unwrap();
    }
    mock.increment(Duration::from_secs(1800));
    for i in 0..4 {
        g.telemetry().insert(format!("pkt{i}"), vec![0; 50]).unwrap();
    }
    mock.increment(Duration::from_secs(1800));
    let report = g.on_epoch(10).unwrap();
    assert_eq!(report.gc_runs, 1);
    assert_eq!((report.kernel.expired, report.kernel.bytes_freed), (7, 7000));
    assert_eq!(report.blueprint.expired, 3);
    assert_eq!(report.telemetry.expired, 0, "telemetry inserted later is still live");
    assert_eq!(report.total_evicted(), 10);
    assert_eq!(report.bytes_freed(), 7000 + 30);
    assert_eq!(g.telemetry().len(), 4);
    assert!(g.kernels().is_empty());
}

#[test]
fn emergency_cleanup_keeps_the_pinned_teacher_unless_asked() {
    let (g, mock) = gov(10);
    g.kernels().insert("a".into(), vec![0; 10]).unwrap();
    g.blueprints().insert("a".into(), "x".into()).unwrap();
    g.telemetry().insert("p".into(), vec![0; 5]).unwrap();
    g.register_teacher("teacher", 3 * GIB);

    let first = g.emergency_cleanup(false);
    assert_eq!(first.total_evicted(), 3);
    assert_eq!(first.bytes_freed(), 16);
    assert!(!first.teacher_released);
    assert_eq!(g.teacher(), Some("teacher"));

    // TTL never expires the teacher.
    mock.increment(Duration::from_secs(10 * 3600));
    assert!(g.run_gc(11).total_evicted() == 0);
    assert_eq!(g.teacher(), Some("teacher"));

    let second = g.emergency_cleanup(true);
    assert!(second.teacher_released);
    assert_eq!(second.teacher_bytes_released, 3 * GIB);
    assert_eq!(g.teacher(), None);
    assert_eq!(g.stats().teacher, None);
    assert!(!g.emergency_cleanup(true).teacher_released, "nothing left to release");
}

#[rstest]
#[case::small(GIB, BudgetStatus::WithinBudget)]
#[case::just_below_warning(6 * GIB, BudgetStatus::WithinBudget)]
#[case::warning(13 * GIB / 2, BudgetStatus::Warning)]
#[case::exactly_budget(7 * GIB, BudgetStatus::Warning)]
#[case::over(7 * GIB + 1, BudgetStatus::OverBudget)]
#[case::fp16_unchecked(14 * GIB, BudgetStatus::OverBudget)]
fn teacher_budget_reports_instead_of_failing(#[case] bytes: u64, #[case] status: BudgetStatus) {
    let (g, _mock) = gov(10);
    assert_eq!(g.check_teacher_budget(bytes).status, status);
    let report = g.register_teacher("t", bytes);
    assert_eq!(report.status, status);
    assert_eq!(report.is_over_budget(), status == BudgetStatus::OverBudget);
    assert_eq!(g.teacher(), Some("t"), "pinned even when over budget");
    assert_eq!(g.teacher_report(), Some(report));
}

#[test]
fn teacher_budget_is_configurable() {
    let (clock, _mock) = Clock::mock();
    let cfg = MemoryConfig { teacher_budget: TeacherBudget::for_checkpointing(false), ..Default::default() };
    let g: Gov = MemoryGovernor::with_clock(cfg, clock).unwrap();
    assert_eq!(g.register_teacher("t", 10 * GIB).status, BudgetStatus::WithinBudget);
    assert_eq!(g.release_teacher(), Some("t"));
    assert_eq!(g.teacher(), None);
}

#[test]
fn bad_configs_are_refused() {
    let bad_cache =
        MemoryConfig { kernel_cache: TtlCacheConfig { max_bytes: 0, ..Default::default() }, ..Default::default() };
    assert!(Gov::new(bad_cache).is_err());
    let bad_budget =
        MemoryConfig { teacher_budget: TeacherBudget { budget_bytes: 0, warn_fraction: 0.9 }, ..Default::default() };
    assert!(Gov::new(bad_budget).is_err());
}

#[test]
fn stats_expose_every_cache_for_telemetry() {
    let (g, _mock) = gov(10);
    g.kernels().insert("k".into(), vec![0; 64]).unwrap();
    let _ = g.kernels().get("k");
    let _ = g.kernels().get("missing");
    let s = g.stats();
    assert_eq!(s.kernel.size, 1);
    assert_eq!(s.kernel.weighted_size_bytes, 64);
    assert_eq!(s.kernel.hit_rate, 0.5);
    assert_eq!(s.kernel.ttl_seconds, 3600.0);
    assert_eq!(s.kernel.max_entries, Some(1000));
    assert_eq!(s.blueprint.max_entries, Some(500));
    assert_eq!(s.telemetry.max_entries, Some(10_000));
    assert_eq!((s.gc_runs, s.last_gc_epoch), (0, 0));
}
