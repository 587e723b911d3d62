//! Pause quotas: identity passes per pause and a server-wide pool reset on the injected clock.

use std::time::Duration;

use parking_lot::Mutex;
use quanta::{Clock, Instant};

use crate::{Error, Result};

/// Identity passes one pause gets by default.
pub const DEFAULT_PASSES_PER_PAUSE: u32 = 1000;
/// A [`PauseQuota`] as a checkpoint keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SavedQuota {
    /// Passes used in the current window.
    pub used: u32,
    /// How far into its reset interval the current window is.
    pub window_elapsed: Duration,
}

/// The server-wide pool of identity passes per window (`SYSTEM_LIMITS.max_pause_quota`).
pub const DEFAULT_SERVER_QUOTA: u32 = leyline::constants::SYSTEM_LIMITS.max_pause_quota;
/// How often the server-wide pool refills.
pub const DEFAULT_RESET_INTERVAL: Duration = Duration::from_secs(60);
/// The telemetry name of a [`QuotaReset`].
pub const PAUSE_QUOTA_RESET: &str = "pause_quota_reset";

/// Settings of a [`PauseQuota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PauseQuotaConfig {
    /// Passes a pause asks for by default ([`DEFAULT_PASSES_PER_PAUSE`]).
    pub passes_per_pause: u32,
    /// Passes the whole server may grant per window ([`DEFAULT_SERVER_QUOTA`]).
    pub server_quota: u32,
    /// Window length ([`DEFAULT_RESET_INTERVAL`], > 0).
    pub reset_interval: Duration,
}

impl Default for PauseQuotaConfig {
    fn default() -> Self {
        Self {
            passes_per_pause: DEFAULT_PASSES_PER_PAUSE,
            server_quota: DEFAULT_SERVER_QUOTA,
            reset_interval: DEFAULT_RESET_INTERVAL,
        }
    }
}

/// The server's answer to a request for identity passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaGrant {
    /// Everything requested.
    Full {
        /// Passes granted.
        passes: u32,
    },
    /// What was left in the window.
    Partial {
        /// Passes granted.
        passes: u32,
        /// Passes requested.
        requested: u32,
    },
    /// Nothing is left in the window.
    Denied {
        /// Passes requested.
        requested: u32,
        /// Time until the pool refills.
        retry_after: Duration,
    },
}

impl QuotaGrant {
    /// Passes granted (0 when denied).
    pub fn passes(&self) -> u32 {
        match *self {
            Self::Full { passes } | Self::Partial { passes, .. } => passes,
            Self::Denied { .. } => 0,
        }
    }

    /// `full`, `partial` or `denied`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Full { .. } => "full",
            Self::Partial { .. } => "partial",
            Self::Denied { .. } => "denied",
        }
    }
}

/// The pool refilled (`pause_quota_reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaReset {
    /// When the refill was noticed.
    pub at: Instant,
    /// Passes used in the window that ended.
    pub used_in_previous_window: u32,
}

/// A grant, with the reset event when this request refilled the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaDecision {
    /// The grant.
    pub grant: QuotaGrant,
    /// Set when the window rolled over before this request.
    pub reset: Option<QuotaReset>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    used: u32,
}

/// The server-wide pool of identity passes (`Send + Sync`; share it via `Arc`).
#[derive(Debug)]
pub struct PauseQuota {
    config: PauseQuotaConfig,
    clock: Clock,
    window: Mutex<Window>,
}

impl PauseQuota {
    /// A full pool whose first window starts now.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero reset interval.
    pub fn new(config: PauseQuotaConfig, clock: Clock) -> Result<Self> {
        if config.reset_interval.is_zero() {
            return Err(Error::InvalidConfig { field: "reset_interval", reason: "must be positive" });
        }
        let start = clock.now();
        Ok(Self { config, clock, window: Mutex::new(Window { start, used: 0 }) })
    }

    /// The settings.
    pub fn config(&self) -> &PauseQuotaConfig {
        &self.config
    }

    /// Asks for `passes_per_pause` passes.
    pub fn request_default(&self) -> QuotaDecision {
        self.request(self.config.passes_per_pause)
    }

    /// Asks for `passes` identity passes: all of them, what is left, or none.
    pub fn request(&self, passes: u32) -> QuotaDecision {
        let now = self.clock.now();
        let mut w = self.window.lock();
        let reset = self.roll(&mut w, now);
        let left = self.config.server_quota.saturating_sub(w.used);
        let grant = if passes <= left {
            QuotaGrant::Full { passes }
        } else if left > 0 {
            QuotaGrant::Partial { passes: left, requested: passes }
        } else {
            let retry_after = (w.start + self.config.reset_interval).saturating_duration_since(now);
            QuotaGrant::Denied { requested: passes, retry_after }
        };
        w.used += grant.passes();
        QuotaDecision { grant, reset }
    }

    /// Passes left in the current window (refilling first if the window has ended).
    pub fn remaining(&self) -> (u32, Option<QuotaReset>) {
        let now = self.clock.now();
        let mut w = self.window.lock();
        let reset = self.roll(&mut w, now);
        (self.config.server_quota.saturating_sub(w.used), reset)
    }

    /// The pool as a checkpoint keeps it: passes used in the current window and how far into
    /// its reset interval the window is (a duration, not an instant).
    pub fn saved(&self) -> SavedQuota {
        let now = self.clock.now();
        let mut w = self.window.lock();
        self.roll(&mut w, now);
        SavedQuota { used: w.used, window_elapsed: now.saturating_duration_since(w.start) }
    }

    /// Takes a [`saved`](Self::saved) pool back: the window resumes where it was (an elapsed
    /// time past the interval starts a fresh window at the next use).
    pub fn restore(&self, saved: &SavedQuota) {
        let now = self.clock.now();
        let mut w = self.window.lock();
        w.start = now.checked_sub(saved.window_elapsed).unwrap_or(now);
        w.used = saved.used;
    }

    fn roll(&self, w: &mut Window, now: Instant) -> Option<QuotaReset> {
        let elapsed = now.saturating_duration_since(w.start);
        if elapsed < self.config.reset_interval {
            return None;
        }
        // Windows are aligned to the first one: skip every whole interval that has passed.
        let interval = self.config.reset_interval.as_nanos();
        let skipped = elapsed.as_nanos() / interval;
        let advance = u64::try_from(skipped * interval).map(Duration::from_nanos).unwrap_or(elapsed);
        let reset = QuotaReset { at: now, used_in_previous_window: w.used };
        w.start += advance;
        w.used = 0;
        Some(reset)
    }
}

/// The identity passes of one pause, counted down by the seed's forward passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausePasses {
    granted: u32,
    used: u32,
    started: Instant,
}

impl PausePasses {
    /// A pause that started at `started` with `granted` passes.
    pub fn new(granted: u32, started: Instant) -> Self {
        Self { granted, used: 0, started }
    }

    /// A pause resumed from a checkpoint: `granted` passes of which `used` are spent (at most
    /// `granted`), that had lasted `elapsed` when it was saved; `now` is the resuming clock's.
    pub fn resumed(granted: u32, used: u32, elapsed: Duration, now: Instant) -> Self {
        let started = now.checked_sub(elapsed).unwrap_or(now);
        Self { granted, used: used.min(granted), started }
    }

    /// Takes one identity pass and returns how many are left.
    ///
    /// # Errors
    /// [`Error::PauseQuotaExhausted`] when every granted pass has been used.
    pub fn try_pass(&mut self) -> Result<u32> {
        if self.used >= self.granted {
            return Err(Error::PauseQuotaExhausted { granted: self.granted });
        }
        self.used += 1;
        Ok(self.granted - self.used)
    }

    /// Passes granted.
    pub fn granted(&self) -> u32 {
        self.granted
    }

    /// Passes used.
    pub fn used(&self) -> u32 {
        self.used
    }

    /// Passes left.
    pub fn remaining(&self) -> u32 {
        self.granted - self.used
    }

    /// When the pause started.
    pub fn started_at(&self) -> Instant {
        self.started
    }

    /// How long the pause has lasted at `now` (the `duration_ms` of `pause_state_exited`).
    pub fn duration(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}
