//! Soak: a million cache operations with keys cycling through TTL expiry stay bounded (no memory creep).

use std::time::Duration;

use kasmina_memory::{MemoryConfig, MemoryGovernor, TtlCacheConfig};
use quanta::Clock;

const VALUE_BYTES: usize = 256;

/// 500 000 inserts and 500 000 gets at 100 inserts per (mocked) second, 30 s TTL, one epoch per second and the
/// default GC every 10 epochs. Live entries are at most what 40 s of inserts produce (TTL + GC period), so the
/// cache never needs its size bound; every key comes back long after it expired.
#[test]
fn million_ops_with_ttl_churn_stay_bounded() {
    const OPS: u64 = 1_000_000;
    const KEYS: u64 = 50_000;
    const INSERTS_PER_SEC: u64 = 100;
    const TTL_S: u64 = 30;
    const GC_EVERY: u64 = 10;
    let (clock, mock) = Clock::mock();
    let cache = TtlCacheConfig::new(Duration::from_secs(TTL_S), 64 << 20).with_max_entries(100_000);
    let cfg = MemoryConfig { kernel_cache: cache, gc_every_epochs: GC_EVERY, ..Default::default() };
    let g: MemoryGovernor<Vec<u8>, String, Vec<u8>> = MemoryGovernor::with_clock(cfg, clock).unwrap();

    let bound_entries = INSERTS_PER_SEC * (TTL_S + GC_EVERY);
    let bound_bytes = bound_entries * VALUE_BYTES as u64;
    let (mut max_entries, mut max_bytes, mut epoch, mut gc_expired) = (0, 0, 0, 0);
    let mut inserts = 0u64;
    for op in 0..OPS {
        if op % 2 == 0 {
            g.kernels().insert(format!("k{}", inserts % KEYS), vec![0; VALUE_BYTES]).unwrap();
            inserts += 1;
            if inserts.is_multiple_of(INSERTS_PER_SEC) {
                mock.increment(Duration::from_secs(1));
                epoch += 1;
                if let Some(r) = g.on_epoch(epoch) {
                    gc_expired += r.kernel.expired;
                }
            }
        } else {
            // Alternate a recent key (a hit) with one inserted 35 s ago: expired, and either already collected by the
            // GC or removed by this lookup (a miss and an expiry either way).
            let back = if op % 4 == 1 { 10 } else { 35 * INSERTS_PER_SEC };
            if let Some(k) = inserts.checked_sub(back) {
                let _ = g.kernels().get(&format!("k{}", k % KEYS));
            }
        }
        max_entries = max_entries.max(g.kernels().len());
        max_bytes = max_bytes.max(g.kernels().weighted_size_bytes());
    }
    let s = g.kernels().stats();
    println!(
        "soak: {OPS} ops, max {max_entries} entries / {max_bytes} bytes (bound {bound_entries} / {bound_bytes}), \
         final {} entries, hits {}, misses {}, expired {} (gc {gc_expired}), size evictions {}",
        s.size, s.hits, s.misses, s.evictions.expired, s.evictions.size
    );
    assert!(max_entries <= bound_entries, "{max_entries} entries > {bound_entries}");
    assert!(max_bytes <= bound_bytes, "{max_bytes} bytes > {bound_bytes}");
    assert!(max_entries >= INSERTS_PER_SEC * TTL_S, "the soak really filled a TTL window");
    assert_eq!(s.evictions.size, 0, "TTL, not the size bound, kept it bounded");
    assert!(s.hits > 200_000 && s.misses > 200_000);
    assert!(gc_expired > 0 && s.evictions.expired > gc_expired, "both lookups and the GC expire entries");
    // No creep: once the last TTL has run out, a GC leaves nothing behind.
    mock.increment(Duration::from_secs(TTL_S));
    g.run_gc(epoch + 1);
    assert_eq!((g.kernels().len(), g.kernels().weighted_size_bytes()), (0, 0));
}

/// With a long TTL the byte bound is what holds: after pending work is applied the weighted size never exceeds it.
#[test]
fn churn_under_the_byte_bound_stays_bounded() {
    const MAX_BYTES: u64 = 64 * 1024;
    let (clock, _mock) = Clock::mock();
    let cfg = TtlCacheConfig::new(Duration::from_secs(3600), MAX_BYTES);
    let c: kasmina_memory::TtlCache<u64, Vec<u8>> = kasmina_memory::TtlCache::new(cfg, clock).unwrap();
    let mut max_unsettled = 0;
    for i in 0..200_000u64 {
        c.insert(i % 10_000, vec![0; (i % 500) as usize + 1]).unwrap();
        let _ = c.get(&(i.wrapping_mul(7919) % 10_000));
        max_unsettled = max_unsettled.max(c.weighted_size_bytes());
        if i % 1000 == 999 {
            c.run_pending_tasks();
            assert!(c.weighted_size_bytes() <= MAX_BYTES, "{} > {MAX_BYTES}", c.weighted_size_bytes());
        }
    }
    println!("byte-bound soak: bound {MAX_BYTES} bytes, max before settling {max_unsettled}");
    assert!(c.stats().evictions.size > 0);
}
