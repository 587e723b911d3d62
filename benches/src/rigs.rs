//! What the training-step benches share: a configuration that holds a seed where it is timed,
//! and the trusted GERMINATE that puts it there.

use std::time::{SystemTime, UNIX_EPOCH};

use kasmina_runtime::KasminaConfig;
use leyline::adaptation_command::Payload;
use leyline::{AdaptationCommand, CommandSeedOperation, CommandType, SeedOperation};

/// Settings that move a seed to BLENDING after `training_steps` and hold it there (a near
/// constant alpha over a very long schedule), with latency budgets a noisy shared vCPU cannot
/// turn into a fallback or a cull mid-bench.
pub fn holding_config(training_steps: u64) -> KasminaConfig {
    let mut cfg = KasminaConfig::default();
    cfg.training_steps = training_steps;
    cfg.blending_steps = 1 << 40;
    cfg.alpha_curve = kasmina_isolation::AlphaCurve::Linear;
    cfg.fetch_latency_budget_ms = 60_000.0;
    cfg.hook_latency_budget_ms = 60_000.0;
    cfg
}

/// A trusted GERMINATE of `seed-1` with `blueprint` in `slot`, issued now.
pub fn germinate(blueprint: &str, slot: &str) -> AdaptationCommand {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    AdaptationCommand {
        version: 1,
        command_id: "bench-germinate-1".into(),
        command_type: CommandType::CommandSeed as i32,
        target_seed_id: "seed-1".into(),
        issued_at: Some(leyline::wkt::Timestamp { seconds: now.as_secs() as i64, nanos: 0 }),
        issued_by: "bench".into(),
        payload: Some(Payload::SeedOperation(CommandSeedOperation {
            operation: SeedOperation::SeedOpGerminate as i32,
            blueprint_id: blueprint.into(),
            parameters: Default::default(),
        })),
        annotations: [("slot".to_owned(), slot.to_owned())].into(),
        ..Default::default()
    }
}
