//! Applying a parsed command at a safe point, and its final receipt.

use kasmina_lifecycle::is_legal;
use kasmina_safety::{PausePasses, QuotaGrant};
use kasmina_telemetry::names;
use leyline::{CommandReceipt, CommandType, SeedLifecycleStage as Stage, TelemetryLevel};

use super::parse::{Request, parse, seed_id_of};
use crate::attach::Germinate;
use crate::receipt::{Refusal, Verdict, receipt};
use crate::seed::evidence::Cx;
use crate::seed::{CullCause, Effects, Seed};
use crate::slot::SlotCell;
use crate::state::{Inner, Outbox, Pending};

impl Inner {
    /// Applies a verified command (the caller guarantees a safe point) and returns its final
    /// receipt, which is also kept by command id and emitted as a `command_receipt` event.
    pub(crate) fn apply_pending(&self, pending: Pending, out: &mut Outbox) -> CommandReceipt {
        let cmd = &pending.command;
        let late = pending.deadline.and_then(|d| d.finish().err());
        let (verdict, seed_id) = match (late, parse(cmd)) {
            (Some(v), _) => {
                out.events.push(names::DEADLINE_VIOLATION.event_at(
                    TelemetryLevel::Warning,
                    [
                        ("operation", "command".to_owned()),
                        ("command_id", cmd.command_id.clone()),
                        ("budget_ms", v.budget_ms.to_string()),
                        ("elapsed_ms", format!("{:.3}", v.elapsed_ms)),
                    ],
                ));
                (Verdict::Refused(Refusal::DeadlineViolation), seed_id_of(cmd))
            }
            (None, Err(refusal)) => {
                self.note_unsupported(cmd, refusal, out);
                (Verdict::Refused(refusal), seed_id_of(cmd))
            }
            (None, Ok(req)) => {
                let seed_id = req.seed_id().to_owned();
                (Verdict::of(self.apply_request(req, out)), seed_id)
            }
        };
        let stage = self.stage_of(&seed_id);
        let receipt = receipt(&cmd.command_id, verdict, &seed_id, stage, &pending.origin);
        self.finish_command(cmd.command_type, &receipt, out);
        if let Some(reply) = pending.reply {
            // The submitter may have stopped waiting; the receipt stays in the book.
            let _ = reply.try_send(receipt.clone());
        }
        receipt
    }

    /// Counts, publishes and keeps a final receipt.
    fn finish_command(&self, command_type: i32, r: &CommandReceipt, out: &mut Outbox) {
        {
            let mut core = self.core.lock();
            if r.accepted {
                core.stats.commands_accepted += 1;
            } else {
                core.stats.commands_rejected += 1;
            }
        }
        let command_type = CommandType::try_from(command_type).unwrap_or(CommandType::CommandUnknown);
        let event = if r.accepted { names::COMMAND_ACCEPTED } else { names::COMMAND_REJECTED };
        out.events.push(event.event_with([
            ("command_id", r.command_id.clone()),
            ("command_type", command_type.as_str_name().to_owned()),
            ("seed_id", r.seed_id.clone()),
            ("reason", r.reason.clone()),
        ]));
        out.events.push(crate::events::command_receipt(r));
        self.memory.record_receipt(r);
    }

    fn note_unsupported(&self, cmd: &leyline::AdaptationCommand, refusal: Refusal, out: &mut Outbox) {
        if matches!(
            refusal,
            Refusal::UnsupportedCommand | Refusal::UnsupportedOperation | Refusal::MissingSeedOperation
        ) {
            let command_type = CommandType::try_from(cmd.command_type).unwrap_or(CommandType::CommandUnknown);
            out.events.push(names::UNSUPPORTED_COMMAND.event_with([
                ("command_type", command_type.as_str_name().to_owned()),
                ("command_id", cmd.command_id.clone()),
                ("reason", refusal.reason().to_owned()),
            ]));
        }
    }

    /// The stage of the seed with this id (the last one in a slot), UNKNOWN if none.
    pub(crate) fn stage_of(&self, seed_id: &str) -> Stage {
        self.cell_of(seed_id)
            .and_then(|cell| cell.seed.lock().as_ref().map(Seed::stage))
            .unwrap_or(Stage::SeedStageUnknown)
    }

    fn apply_request(&self, req: Request, out: &mut Outbox) -> Result<(), Refusal> {
        match req {
            Request::Germinate { req, slot } => self.germinate_request(&req, slot.as_deref(), out),
            Request::Advance { seed_id, from, to, alpha } => {
                self.seed_operation(&seed_id, "advance", out);
                self.with_seed(&seed_id, out, |s, cx, fx| s.request_advance(from, to, alpha, cx, fx))
            }
            Request::Cull { seed_id, cancel } => {
                self.seed_operation(&seed_id, if cancel { "cancel" } else { "cull" }, out);
                let cause = if cancel { CullCause::CancelCommand } else { CullCause::CullCommand };
                self.with_seed(&seed_id, out, |s, cx, fx| cull_request(s, cause, cx, fx))
            }
            Request::Terminate { seed_id } => {
                self.seed_operation(&seed_id, "terminate", out);
                self.with_seed(&seed_id, out, |s, cx, fx| s.terminate(cx, fx))
            }
            Request::FineTune { seed_id, alpha } => {
                self.with_seed(&seed_id, out, |s, cx, fx| s.fine_tune(alpha, cx, fx))
            }
            Request::Pause { seed_id } => self.pause_request(&seed_id, out),
            Request::Resume { seed_id } => self.with_seed(&seed_id, out, |s, cx, fx| s.resume(cx, fx)),
            Request::Breaker { name, state, rationale } => match self.breakers.force(name, state, rationale) {
                Ok(event) => {
                    out.events.push(event);
                    Ok(())
                }
                Err(e) => {
                    out.events.push(
                        names::BREAKER_COMMAND_INVALID
                            .event_with([("breaker", name.as_str().to_owned()), ("error", e.to_string())]),
                    );
                    Err(Refusal::BreakerCommandInvalid)
                }
            },
            Request::Emergency { include_teacher, .. } => {
                self.emergency(include_teacher, out);
                Ok(())
            }
            Request::Optimizer { seed_id, optimizer_id, lr, weight_decay } => {
                self.with_seed(&seed_id, out, |s, _, fx| adjust_optimizer(s, &optimizer_id, lr, weight_decay, fx))
            }
            Request::Rollback { seed_id } => self.rollback_request(&seed_id, out),
        }
    }

    fn seed_operation(&self, seed_id: &str, operation: &str, out: &mut Outbox) {
        out.events.push(names::SEED_OPERATION.event_with([
            ("command_type", "COMMAND_SEED".to_owned()),
            ("operation", operation.to_owned()),
            ("seed_id", seed_id.to_owned()),
        ]));
    }

    fn germinate_request(&self, req: &Germinate, slot: Option<&str>, out: &mut Outbox) -> Result<(), Refusal> {
        out.events.push(names::SEED_OPERATION.event_with([
            ("command_type", "COMMAND_SEED".to_owned()),
            ("operation", "germinate".to_owned()),
            ("seed_id", req.seed_id.clone()),
            ("blueprint_id", req.blueprint_id.clone()),
        ]));
        let cells = self.cells();
        let cell = match slot {
            Some(name) => cells.iter().find(|c| c.name == name).ok_or(Refusal::UnknownSlot)?,
            None => cells.iter().find(|c| SlotCell::is_free(&c.seed.lock())).ok_or(Refusal::NoFreeSlot)?,
        };
        if !SlotCell::is_free(&cell.seed.lock()) {
            return Err(Refusal::SlotOccupied);
        }
        self.germinate(cell, req, out).map(|_| ())
    }

    /// Runs `f` on the seed `seed_id` (locked in its slot) and performs its effects.
    fn with_seed(
        &self,
        seed_id: &str,
        out: &mut Outbox,
        f: impl FnOnce(&mut Seed, &Cx<'_>, &mut Effects) -> Result<(), Refusal>,
    ) -> Result<(), Refusal> {
        let cell = self.cell_of(seed_id).ok_or(Refusal::UnknownSeed)?;
        let mut guard = cell.seed.lock();
        let seed = guard.as_mut().ok_or(Refusal::UnknownSeed)?;
        let cx = self.cx(&cell.name, seed_id);
        let mut fx = Effects::default();
        let result = f(seed, &cx, &mut fx);
        self.perform(&cell, seed, fx, None, &cx, out);
        result
    }

    fn pause_request(&self, seed_id: &str, out: &mut Outbox) -> Result<(), Refusal> {
        self.with_seed(seed_id, out, |seed, cx, fx| {
            seed.can_pause()?;
            let decision = self.pause_quota.request_default();
            if let Some(reset) = decision.reset {
                fx.emit(names::PAUSE.event_with([
                    ("quota", kasmina_safety::pause::PAUSE_QUOTA_RESET.to_owned()),
                    ("used_in_previous_window", reset.used_in_previous_window.to_string()),
                ]));
            }
            if let QuotaGrant::Denied { .. } = decision.grant {
                return Err(Refusal::PauseQuotaExhausted);
            }
            seed.pause(PausePasses::new(decision.grant.passes(), cx.now), fx)
        })
    }

    fn emergency(&self, include_teacher: bool, out: &mut Outbox) {
        let report = self.memory.emergency_cleanup(include_teacher);
        if include_teacher {
            *self.teacher.lock() = None;
        }
        out.events.push(names::EMERGENCY_CLEANUP.event_with([
            ("include_teacher", include_teacher.to_string()),
            ("evicted", report.total_evicted().to_string()),
            ("bytes_freed", report.bytes_freed().to_string()),
        ]));
    }

    fn rollback_request(&self, seed_id: &str, out: &mut Outbox) -> Result<(), Refusal> {
        let has_payload = self.core.lock().rollbacks.contains_key(seed_id);
        self.with_seed(seed_id, out, |seed, cx, fx| {
            let stage = seed.stage();
            if stage.is_failure_path() || stage == Stage::SeedStageDormant {
                // Already rolled back: its payload stands.
                return if has_payload { Ok(()) } else { Err(Refusal::NoRollbackPayload) };
            }
            if !is_legal(stage, Stage::SeedStageCulled) {
                return Err(Refusal::IllegalTransition);
            }
            seed.cull(CullCause::Rollback, cx, fx);
            Ok(())
        })?;
        let elapsed = self.core.lock().rollbacks.get(seed_id).map(|r| r.elapsed_ms).unwrap_or(0.0);
        let budget = f64::from(leyline::constants::PERFORMANCE_BUDGETS.fast_rollback_ms);
        if elapsed > budget {
            out.events.push(names::DEADLINE_VIOLATION.event_at(
                TelemetryLevel::Warning,
                [
                    ("operation", "fast_rollback".to_owned()),
                    ("elapsed_ms", format!("{elapsed:.3}")),
                    ("budget_ms", budget.to_string()),
                ],
            ));
        }
        Ok(())
    }
}

/// CULL / CANCEL: starts the failure path; an embargo already running is never shortened.
fn cull_request(seed: &mut Seed, cause: CullCause, cx: &Cx<'_>, fx: &mut Effects) -> Result<(), Refusal> {
    let stage = seed.stage();
    if matches!(stage, Stage::SeedStageEmbargoed | Stage::SeedStageResetting | Stage::SeedStageCulled) {
        return Ok(());
    }
    if !is_legal(stage, Stage::SeedStageCulled) {
        return Err(Refusal::IllegalTransition);
    }
    seed.cull(cause, cx, fx);
    Ok(())
}

fn adjust_optimizer(
    seed: &mut Seed,
    optimizer_id: &str,
    lr: Option<f64>,
    weight_decay: Option<f64>,
    fx: &mut Effects,
) -> Result<(), Refusal> {
    use candle_nn::optim::Optimizer;
    let id = seed.id.clone();
    let Some(live) = seed.live_mut() else { return Err(Refusal::SeedHasNoOptimizer) };
    let opt = &mut live.attached.optimizer;
    let mut params = opt.params().clone();
    params.lr = lr.unwrap_or(params.lr);
    params.weight_decay = weight_decay.unwrap_or(params.weight_decay);
    opt.set_params(params.clone());
    fx.emit(names::OPTIMIZER_ADJUST.event_with([
        ("command_type", "COMMAND_OPTIMIZER".to_owned()),
        ("optimizer_id", optimizer_id.to_owned()),
        ("seed_id", id),
        ("lr", format!("{}", opt.learning_rate())),
        ("weight_decay", format!("{}", params.weight_decay)),
    ]));
    Ok(())
}
