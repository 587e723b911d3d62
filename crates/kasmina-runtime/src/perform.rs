//! Performs what seed machines asked for: the one place where effects touch the registry, the
//! breakers, the memory, the trainer's hand-over and the slot's route.

use candle_core::backprop::GradStore;
use kasmina_telemetry::names;
use leyline::{SeedLifecycleStage as Stage, TelemetryLevel, wkt};

use crate::report::FossilizedSeed;
use crate::seed::evidence::Cx;
use crate::seed::{CullCause, Effect, Effects, Seed};
use crate::slot::SlotCell;
use crate::state::{Inner, Outbox, RollbackRecord};

impl Inner {
    /// Performs `fx` for `seed` (locked by the caller in `cell`), then routes the slot from the
    /// seed's stage. `grads` are this step's gradients, for [`Effect::Train`].
    pub(crate) fn perform(
        &self,
        cell: &SlotCell,
        seed: &mut Seed,
        fx: Effects,
        grads: Option<&GradStore>,
        cx: &Cx<'_>,
        out: &mut Outbox,
    ) {
        for effect in fx.0 {
            match effect {
                Effect::Emit(e) => out.events.push(e),
                Effect::Train => {
                    if let Some(grads) = grads
                        && let Err(e) = seed.train(grads)
                    {
                        out.events.push(
                            names::SEED_OPERATION.event_at(
                                TelemetryLevel::Error,
                                [("seed_id", seed.id.clone()), ("error", e.to_string())],
                            ),
                        );
                        let mut more = Effects::default();
                        seed.cull(CullCause::OptimizerFailed, cx, &mut more);
                        self.perform(cell, seed, more, None, cx, out);
                    }
                }
                Effect::BreakerSuccess(b) => self.breakers.success(b, &mut out.events),
                Effect::BreakerFailure(b, reason) => self.breakers.failure(b, reason, &mut out.events),
                Effect::Deregister => {
                    self.registry.deregister_seed(&seed.id);
                }
                Effect::ReleaseLease => self.memory.release(&seed.id),
                Effect::ForgetTelemetry => {
                    self.core.lock().emitted.remove(&seed.id);
                }
                Effect::HandOver(vars) => {
                    // The registry refuses only an unknown seed; a seed without parameters has none to move.
                    let _ = self.registry.transfer_to_host(&seed.id);
                    out.fossilized.push(FossilizedSeed { seed_id: seed.id.clone(), slot: cell.name.clone(), vars });
                }
                Effect::Rollback { stage, cause } => self.record_rollback(seed, stage, cause, cx, out),
            }
        }
        cell.set_route(seed.route(self.config.fossil_ramp_steps, self.config.training_mode));
    }

    /// The rollback payload of a cull, timed against the fast-rollback budget (500 ms).
    fn record_rollback(&self, seed: &Seed, stage: Stage, cause: CullCause, cx: &Cx<'_>, out: &mut Outbox) {
        let payload = rollback_payload(&seed.id, stage, cause.reason(), cx.step, cx.epoch);
        let elapsed_ms = self.clock.now().duration_since(cx.now).as_secs_f64() * 1e3;
        {
            let mut core = self.core.lock();
            core.rollbacks.insert(seed.id.clone(), RollbackRecord { payload, elapsed_ms });
            if cause == CullCause::Isolation {
                core.isolation_cull_step = Some(cx.step);
            }
        }
        let level = if cause == CullCause::Isolation { TelemetryLevel::Critical } else { TelemetryLevel::Warning };
        out.events.push(names::ROLLBACK_READY.event_at(
            level,
            [
                ("seed_id", seed.id.clone()),
                ("stage", stage.as_str_name().to_owned()),
                ("reason", cause.reason().to_owned()),
                ("rollback_ms", format!("{elapsed_ms:.3}")),
                ("budget_ms", leyline::constants::PERFORMANCE_BUDGETS.fast_rollback_ms.to_string()),
            ],
        ));
    }
}

/// The rollback payload of a cull (`google.protobuf.Struct`: seed_id, stage, reason, step, epoch).
pub(crate) fn rollback_payload(seed_id: &str, stage: Stage, reason: &str, step: u64, epoch: u32) -> wkt::Struct {
    use wkt::value::Kind;
    let s = |v: &str| wkt::Value { kind: Some(Kind::StringValue(v.to_owned())) };
    let n = |v: f64| wkt::Value { kind: Some(Kind::NumberValue(v)) };
    wkt::Struct {
        fields: [
            ("seed_id".to_owned(), s(seed_id)),
            ("stage".to_owned(), s(stage.as_str_name())),
            ("reason".to_owned(), s(reason)),
            ("step".to_owned(), n(step as f64)),
            ("epoch".to_owned(), n(f64::from(epoch))),
        ]
        .into(),
    }
}
