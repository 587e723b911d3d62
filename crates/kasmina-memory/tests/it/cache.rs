//! `TtlCache`: TTL on the injected clock, byte and entry bounds, eviction counting, stats.

use std::sync::Arc;
use std::time::Duration;

use kasmina_memory::{CleanupCounts, Error, EvictionCounts, TtlCache, TtlCacheConfig};
use proptest::prelude::*;
use quanta::Clock;
use rstest::rstest;

fn cache(ttl_s: u64, max_bytes: u64, max_entries: Option<u64>) -> (TtlCache<String, Vec<u8>>, Arc<quanta::Mock>) {
    let (clock, mock) = Clock::mock();
    let cfg = TtlCacheConfig { ttl: Duration::from_secs(ttl_s), max_bytes, max_entries };
    (TtlCache::new(cfg, clock).unwrap(), mock)
}

#[test]
fn entries_live_exactly_their_ttl() {
    let (c, mock) = cache(300, 1 << 20, None);
    c.insert("k".into(), vec![0; 10]).unwrap();
    mock.increment(Duration::from_secs(299));
    assert_eq!(c.get("k").map(|v| v.len()), Some(10));
    mock.increment(Duration::from_secs(1));
    assert_eq!(c.get("k"), None, "expired at insert + ttl");
    let s = c.stats();
    assert_eq!((s.hits, s.misses), (1, 1));
    assert_eq!(s.evictions, EvictionCounts { expired: 1, size: 0, explicit: 0 });
    assert_eq!((s.size, s.weighted_size_bytes), (0, 0));
    assert_eq!(s.hit_rate, 0.5);
    assert_eq!(s.ttl_seconds, 300.0);
}

#[test]
fn reads_do_not_extend_the_ttl_but_reinsertion_does() {
    let (c, mock) = cache(10, 1 << 20, None);
    c.insert("k".into(), vec![1]).unwrap();
    mock.increment(Duration::from_secs(6));
    assert!(c.get("k").is_some());
    c.insert("j".into(), vec![1]).unwrap();
    mock.increment(Duration::from_secs(6));
    assert!(c.get("k").is_none());
    assert!(c.contains_key("j"));
    c.insert("j".into(), vec![2, 2]).unwrap();
    mock.increment(Duration::from_secs(9));
    assert_eq!(c.get("j"), Some(vec![2, 2]));
    assert_eq!((c.len(), c.weighted_size_bytes()), (1, 2), "replacement accounted once");
}

#[test]
fn cleanup_returns_real_counts() {
    let (c, mock) = cache(60, 1 << 20, None);
    for i in 0..10 {
        c.insert(format!("old{i}"), vec![0; 100]).unwrap();
    }
    mock.increment(Duration::from_secs(30));
    for i in 0..5 {
        c.insert(format!("new{i}"), vec![0; 10]).unwrap();
    }
    mock.increment(Duration::from_secs(30));
    let out = c.cleanup();
    assert_eq!(out, CleanupCounts { expired: 10, size_evicted: 0, explicit: 0, bytes_freed: 1000 });
    assert_eq!((c.len(), c.weighted_size_bytes()), (5, 50));
    assert_eq!(c.cleanup(), CleanupCounts::default(), "nothing left to expire");
    assert_eq!(c.stats().evictions.expired, 10);
}

#[test]
fn byte_bound_evicts_least_recently_used() {
    let (c, _mock) = cache(3600, 1000, None);
    for i in 0..10 {
        c.insert(format!("k{i}"), vec![0; 100]).unwrap();
    }
    c.run_pending_tasks();
    // Touch k0 so that it is the most recently used, then overflow.
    assert!(c.get("k0").is_some());
    c.insert("big".into(), vec![0; 300]).unwrap();
    let out = c.run_pending_tasks();
    assert_eq!(out.size_evicted, 3);
    assert_eq!(out.bytes_freed, 300);
    assert!(c.weighted_size_bytes() <= 1000);
    assert!(c.contains_key("k0"), "recently used entry kept");
    assert!(c.contains_key("big"));
    assert!(!c.contains_key("k1"));
    assert_eq!(c.stats().evictions.size, 3);
}

#[rstest]
#[case::entries_bind(10, 10_000, 100, 10)]
#[case::bytes_bind(1000, 10_000, 500, 20)]
#[case::both_equal(50, 5000, 100, 50)]
fn both_bounds_hold(#[case] max_entries: u64, #[case] max_bytes: u64, #[case] value_bytes: usize, #[case] keep: u64) {
    let (c, _mock) = cache(3600, max_bytes, Some(max_entries));
    for i in 0..500 {
        c.insert(format!("k{i}"), vec![0; value_bytes]).unwrap();
    }
    c.run_pending_tasks();
    let s = c.stats();
    assert!(s.size <= max_entries, "{} entries > {max_entries}", s.size);
    assert!(s.weighted_size_bytes <= max_bytes);
    assert_eq!(s.size, keep);
    assert_eq!(s.evictions.size, 500 - keep);
}

#[test]
fn oversized_values_are_refused_without_state_change() {
    let (c, _mock) = cache(60, 100, None);
    c.insert("ok".into(), vec![0; 100]).unwrap();
    assert_eq!(c.insert("big".into(), vec![0; 101]), Err(Error::EntryTooLarge { bytes: 101, max_bytes: 100 }));
    c.run_pending_tasks();
    assert!(c.contains_key("ok"));
    assert_eq!((c.len(), c.weighted_size_bytes()), (1, 100));
}

#[test]
fn invalidate_and_clear_are_explicit_evictions() {
    let (c, _mock) = cache(60, 1 << 20, None);
    for i in 0..4 {
        c.insert(format!("k{i}"), vec![0; 8]).unwrap();
    }
    assert_eq!(c.invalidate("k0"), Some(vec![0; 8]));
    assert_eq!(c.invalidate("k0"), None);
    let out = c.clear();
    assert_eq!((out.explicit, out.bytes_freed), (3, 24));
    assert!(c.is_empty());
    assert_eq!(c.weighted_size_bytes(), 0);
    assert_eq!(c.stats().evictions.explicit, 4);
}

#[test]
fn a_custom_weigher_is_used() {
    let (clock, _mock) = Clock::mock();
    let cfg = TtlCacheConfig::new(Duration::from_secs(60), 100);
    // A value type without a Weigh impl: weigh it as 4 bytes per element.
    let c: TtlCache<u32, Arc<[f32]>> =
        TtlCache::with_weigher(cfg, clock, Arc::new(|v: &Arc<[f32]>| 4 * v.len() as u64)).unwrap();
    c.insert(1, Arc::from(vec![0.0f32; 20])).unwrap();
    assert_eq!(c.weighted_size_bytes(), 80);
    assert!(matches!(c.insert(2, Arc::from(vec![0.0f32; 30])), Err(Error::EntryTooLarge { bytes: 120, .. })));
}

#[rstest]
#[case::zero_ttl(TtlCacheConfig { ttl: Duration::ZERO, ..Default::default() }, "ttl")]
#[case::huge_ttl(TtlCacheConfig { ttl: Duration::from_secs(u64::MAX), ..Default::default() }, "ttl")]
#[case::zero_bytes(TtlCacheConfig { max_bytes: 0, ..Default::default() }, "max_bytes")]
#[case::zero_entries(TtlCacheConfig { max_entries: Some(0), ..Default::default() }, "max_entries")]
fn bad_configs_are_typed_errors(#[case] cfg: TtlCacheConfig, #[case] field: &str) {
    let err = TtlCache::<String, Vec<u8>>::new(cfg, Clock::mock().0).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { field: f, .. } if f == field), "{err:?}");
}

#[test]
fn concurrent_use_keeps_the_accounting_exact() {
    let (c, mock) = cache(60, 1 << 16, Some(256));
    let c = Arc::new(c);
    std::thread::scope(|s| {
        for t in 0..4 {
            let c = Arc::clone(&c);
            s.spawn(move || {
                for i in 0..5_000u32 {
                    let key = format!("k{}", (i * 7 + t) % 1000);
                    c.insert(key.clone(), vec![0; (i % 64) as usize + 1]).unwrap();
                    let _ = c.get(&key);
                    if i % 97 == 0 {
                        c.invalidate(&key);
                    }
                }
            });
        }
    });
    c.run_pending_tasks();
    let held: u64 = (0..1000).filter_map(|i| c.get(&format!("k{i}"))).map(|v| v.len() as u64).sum();
    assert_eq!(c.weighted_size_bytes(), held, "byte counter equals the bytes actually held");
    assert!(c.len() <= 256);
    mock.increment(Duration::from_secs(60));
    c.cleanup();
    assert_eq!((c.len(), c.weighted_size_bytes()), (0, 0));
}

proptest! {
    /// Any mix of inserts, reads, invalidations and time steps keeps the counters equal to what is held and
    /// the bounds respected once pending work is applied.
    #[test]
    fn accounting_matches_contents(ops in proptest::collection::vec((0u8..4, 0u8..16, 1usize..200), 1..200)) {
        let (c, mock) = cache(10, 1000, Some(8));
        for (op, key, n) in ops {
            let key = format!("k{key}");
            match op {
                0 => { c.insert(key, vec![0; n]).unwrap(); }
                1 => { let _ = c.get(&key); }
                2 => { let _ = c.invalidate(&key); }
                _ => mock.increment(Duration::from_secs(n as u64 / 20)),
            }
        }
        c.run_pending_tasks();
        let s = c.stats();
        prop_assert!(s.size <= 8);
        prop_assert!(s.weighted_size_bytes <= 1000);
        mock.increment(Duration::from_secs(10));
        let out = c.cleanup();
        prop_assert_eq!(out.expired, s.size);
        prop_assert_eq!(out.bytes_freed, s.weighted_size_bytes);
        prop_assert_eq!((c.len(), c.weighted_size_bytes()), (0, 0));
    }
}
