//! Runtime settings: lifecycle windows, budgets, thresholds.

use std::time::Duration;

use kasmina_isolation::AlphaCurve;

use crate::error::{Error, Result};

/// Settings of a [`crate::Kasmina`]. Every window is counted in training steps (calls of
/// [`crate::Kasmina::on_step`]) unless its name says otherwise.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KasminaConfig {
    /// Steps a seed trains before G1 may move it to BLENDING (design `fixed_steps`: 30).
    pub training_steps: u64,
    /// How a seed learns in TRAINING (see [`TrainingMode`]).
    pub training_mode: TrainingMode,
    /// Length of the alpha ramp in BLENDING, in steps (prototype: 20); a START_GRAFTING
    /// parameter `alpha_steps` overrides it per seed.
    pub blending_steps: u64,
    /// Shape of the alpha ramp (default: the prototype's sigmoid, temperature 2, rescaled so that
    /// it starts at exactly 0 and ends at exactly 1); `alpha_curve` overrides it per seed.
    pub alpha_curve: AlphaCurve,
    /// Steps over which a seed culled while blended in (alpha > 0) is blended out before it
    /// leaves the forward (decisions D4); a non-finite output or an isolation violation removes
    /// it at once instead.
    pub blend_out_steps: u64,
    /// Steps over which the gradient path that fossilization opens into the host layers upstream
    /// of a slot ramps from 0 to its full scale (decisions D4: fossilization must not shake
    /// training).
    pub fossil_ramp_steps: u64,
    /// Steps in SHADOWING before G3 may move the seed to PROBATIONARY.
    pub shadowing_steps: u64,
    /// Steps in PROBATIONARY before G4 may fossilize the seed (evaluated at an epoch boundary,
    /// so at least one validation report follows the start of probation).
    pub probation_steps: u64,
    /// Advance stages automatically when a window completes. With `false`, a seed waits in its
    /// stage for Tamiyo's request (START_TRAINING, START_GRAFTING, STABILIZE, EVALUATE, FOSSILIZE).
    pub auto_advance: bool,
    /// Let G4 fossilize automatically at the end of probation (only with `auto_advance`). The
    /// demo's controller turns this off and sends FOSSILIZE itself.
    pub auto_fossilize: bool,
    /// How long a culled seed stays EMBARGOED (decisions D5: 30 s), on the monotonic clock.
    pub embargo: Duration,
    /// Training steps a culled seed also stays EMBARGOED (D5: "also in steps"); 0 = time only.
    /// With both set, both must elapse.
    pub embargo_steps: u64,
    /// Budget of one kernel fetch (prototype: 10 ms); a slower fetch falls back.
    pub fetch_latency_budget_ms: f64,
    /// Budget of one isolation check (design: 8 ms).
    pub hook_latency_budget_ms: f64,
    /// Run the isolation probe every N steps (decisions D6: every step).
    pub isolation_sample_every: u64,
    /// Violations (isolation or parameter updates) after which a seed is culled.
    pub violation_threshold: u32,
    /// Blueprint used when a fetch fails or is too slow (prototype: BP001); BP000 (identity) is the
    /// last resort.
    pub fallback_blueprint: String,
    /// G4: the counterfactual contribution must exceed this many standard errors (2).
    pub counterfactual_sigmas: f64,
    /// G4: and it must exceed this fraction of the validation loss (1 %): a significant but
    /// negligible contribution is a seed the host has merely adapted to, not one that helps.
    pub min_contribution: f64,
    /// G3: the counterfactual contribution may not fall below minus this many standard errors (2).
    pub harm_sigmas: f64,
    /// G1: the seed's mean gradient norm over the training window must be above this floor.
    pub min_seed_grad_norm: f64,
    /// G1: the seed/host gradient-norm ratio must stay at or below this bound at every step.
    pub max_grad_ratio: f64,
    /// G2's ceiling on the blending-window loss variance.
    pub max_loss_variance: f64,
    /// Default learning rate of a seed's optimiser (AdamW); a germination parameter `lr`
    /// overrides it.
    pub seed_learning_rate: f64,
    /// Default weight decay of a seed's optimiser.
    pub seed_weight_decay: f64,
    /// Steps over which an isolation cull keeps health CRITICAL (decisions D9's window).
    pub health_window_steps: u64,
    /// Largest accepted command, in bytes (decisions D11: 4 KiB).
    pub max_command_bytes: usize,
    /// Pause quota: identity passes a paused seed may take (design: 1000) before it must resume.
    pub pause_quota: u64,
    /// Run the memory GC every N epochs (prototype: 10).
    pub gc_every_epochs: u64,
    /// Kernel cache bound in bytes (design `cache_size_mb`: 512).
    pub kernel_cache_bytes: u64,
    /// Kernel cache TTL.
    pub kernel_cache_ttl: Duration,
    /// How long a command's latest receipt stays available to `GetReceipt` (default 300 s,
    /// the nonce TTL: as long as a replay of it is refused).
    pub receipt_ttl: Duration,
}

/// How a seed learns in TRAINING, before it touches the forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TrainingMode {
    /// On its shadow loss: the trainer evaluates the batch with the slot's output taken from the
    /// seed (`h + delta(sg(h))`, see [`crate::Kasmina::with_shadow`]) and reports that loss as
    /// a tensor ([`crate::StepReport::with_shadow_loss_tensor`]); the runtime backpropagates it
    /// and steps only the seed (the host's gradients of that pass are discarded). The slot
    /// forwards the host activation unchanged. The seed learns its own stand-alone effect, so
    /// G1 can refuse a seed that would harm before it ever touches the forward.
    #[default]
    Shadow,
    /// Straight-through: the slot forwards `h + (d - sg(d))` (equal to `h`) and the seed
    /// receives the gradient `h` receives. Cheaper (no second backward), but the seed never sees
    /// its own effect, so its stand-alone loss says little and G1 does not read it.
    StraightThrough,
}

impl Default for KasminaConfig {
    fn default() -> Self {
        Self {
            training_steps: 30,
            training_mode: TrainingMode::Shadow,
            blending_steps: 20,
            alpha_curve: AlphaCurve::Sigmoid { temperature: 2.0 },
            blend_out_steps: 20,
            fossil_ramp_steps: 50,
            shadowing_steps: 20,
            probation_steps: 30,
            auto_advance: true,
            auto_fossilize: true,
            embargo: Duration::from_secs(30),
            embargo_steps: 0,
            fetch_latency_budget_ms: 10.0,
            hook_latency_budget_ms: 8.0,
            isolation_sample_every: 1,
            violation_threshold: 3,
            fallback_blueprint: "BP001".to_owned(),
            counterfactual_sigmas: kasmina_lifecycle::gates::DEFAULT_MIN_SIGMAS,
            min_contribution: 0.01,
            harm_sigmas: kasmina_lifecycle::gates::DEFAULT_HARM_SIGMAS,
            min_seed_grad_norm: kasmina_lifecycle::gates::DEFAULT_MIN_SEED_GRAD_NORM,
            max_grad_ratio: kasmina_lifecycle::gates::DEFAULT_MAX_GRAD_RATIO,
            max_loss_variance: 0.25,
            seed_learning_rate: 1e-3,
            seed_weight_decay: 0.0,
            health_window_steps: 100,
            max_command_bytes: 4096,
            pause_quota: 1000,
            gc_every_epochs: 10,
            kernel_cache_bytes: 512 * 1024 * 1024,
            kernel_cache_ttl: Duration::from_secs(300),
            receipt_ttl: Duration::from_secs(300),
        }
    }
}

impl KasminaConfig {
    /// Checks every value; the builder calls it.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| Err(Error::InvalidConfig { field, reason: reason.to_owned() });
        if self.training_steps == 0 {
            return bad("training_steps", "must be at least 1");
        }
        if self.blending_steps == 0 {
            return bad("blending_steps", "must be at least 1");
        }
        if kasmina_isolation::AlphaController::new(self.alpha_curve, self.blending_steps).is_err() {
            return bad("alpha_curve", "a sigmoid needs a finite, positive temperature");
        }
        if self.blend_out_steps == 0 {
            return bad("blend_out_steps", "must be at least 1");
        }
        if self.isolation_sample_every == 0 {
            return bad("isolation_sample_every", "must be at least 1");
        }
        if self.violation_threshold == 0 {
            return bad("violation_threshold", "must be at least 1");
        }
        for (field, v) in [
            ("fetch_latency_budget_ms", self.fetch_latency_budget_ms),
            ("hook_latency_budget_ms", self.hook_latency_budget_ms),
            ("counterfactual_sigmas", self.counterfactual_sigmas),
            ("min_contribution", self.min_contribution),
            ("harm_sigmas", self.harm_sigmas),
            ("min_seed_grad_norm", self.min_seed_grad_norm),
            ("max_loss_variance", self.max_loss_variance),
            ("seed_weight_decay", self.seed_weight_decay),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, "must be finite and non-negative");
            }
        }
        if !(self.max_grad_ratio.is_finite() && self.max_grad_ratio > 0.0) {
            return bad("max_grad_ratio", "must be finite and positive");
        }
        if !(self.seed_learning_rate.is_finite() && self.seed_learning_rate > 0.0) {
            return bad("seed_learning_rate", "must be finite and positive");
        }
        if self.max_command_bytes == 0 {
            return bad("max_command_bytes", "must be at least 1");
        }
        if self.pause_quota == 0 || self.pause_quota > u64::from(u32::MAX) {
            return bad("pause_quota", "must be between 1 and 2^32 - 1");
        }
        if self.receipt_ttl.is_zero() {
            return bad("receipt_ttl", "must be positive");
        }
        if self.fallback_blueprint.trim().is_empty() {
            return bad("fallback_blueprint", "must name a blueprint");
        }
        Ok(())
    }
}
