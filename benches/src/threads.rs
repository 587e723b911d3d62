//! Pinning candle to one thread for the training-step benches.
//!
//! In candle 0.11 gemm reads `RAYON_NUM_THREADS` on every call and candle's pools read
//! `CANDLE_NUM_THREADS` (else `RAYON_NUM_THREADS`) once. Setting them in-process needs `unsafe`
//! (denied in this workspace), so a bench re-runs its own executable with both set to 1.

/// The variables that fix candle's CPU thread count.
pub const THREAD_VARS: [&str; 2] = ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"];

/// Re-runs this executable with candle pinned to one thread unless it already is, then checks
/// candle's view. Call it first in a bench's `main`.
#[allow(clippy::expect_used)] // a bench that cannot pin its threads must not report figures
pub fn pin_candle_to_one_thread() {
    let pinned = THREAD_VARS.iter().all(|v| std::env::var(v).as_deref() == Ok("1"));
    if !pinned {
        let exe = std::env::current_exe().expect("path of the bench executable");
        let status = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .envs(THREAD_VARS.map(|v| (v, "1")))
            .status()
            .expect("re-run the bench with candle pinned to one thread");
        std::process::exit(status.code().unwrap_or(1));
    }
    assert_eq!(candle_core::utils::get_num_threads(), 1, "candle must run on one thread");
}
