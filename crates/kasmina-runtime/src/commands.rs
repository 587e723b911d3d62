//! Command handling (facts §9, decisions D3): every `CommandType` and `SeedOperation`, applied
//! at a safe point, answered with a receipt. A refused command changes no seed's state.

use std::time::Duration;

use kasmina_lifecycle::gates::PauseResumeCheck;
use kasmina_safety::Deadline;
use kasmina_telemetry::names;
use leyline::adaptation_command::Payload;
use leyline::{
    AdaptationCommand, CircuitBreakerState, CommandReceipt, CommandType, SeedLifecycleStage as Stage, SeedOperation,
    TelemetryLevel,
};

use crate::driver::{CullCause, Germination};
use crate::manager::Kasmina;
use crate::seed::Pause;
use crate::slot::SlotCell;

/// Receipt reason of an accepted command.
pub const OK: &str = "ok";

fn receipt(
    cmd: &AdaptationCommand,
    accepted: bool,
    reason: impl Into<String>,
    seed_id: &str,
    stage: Stage,
) -> CommandReceipt {
    CommandReceipt {
        command_id: cmd.command_id.clone(),
        accepted,
        reason: reason.into(),
        seed_id: seed_id.to_owned(),
        stage: stage as i32,
    }
}

/// Applies one command now (the caller guarantees a safe point).
pub(crate) fn apply(k: &Kasmina, cmd: AdaptationCommand) -> CommandReceipt {
    let deadline = (cmd.execution_deadline_ms > 0).then(|| {
        Deadline::start(k.inner.clock.clone(), "command", Duration::from_millis(u64::from(cmd.execution_deadline_ms)))
    });
    let command_type = CommandType::try_from(cmd.command_type).unwrap_or(CommandType::CommandUnknown);
    let r = match command_type {
        CommandType::CommandSeed => seed_command(k, &cmd),
        CommandType::CommandPause => pause_command(k, &cmd),
        CommandType::CommandCircuitBreaker => breaker_command(k, &cmd),
        CommandType::CommandEmergency => emergency_command(k, &cmd),
        CommandType::CommandOptimizer => optimizer_command(k, &cmd),
        CommandType::CommandRollback => rollback_command(k, &cmd),
        CommandType::CommandStructuralPruning | CommandType::CommandUnknown => {
            k.event(names::UNSUPPORTED_COMMAND.event_with([
                ("command_type", command_type.as_str_name().to_owned()),
                ("command_id", cmd.command_id.clone()),
            ]));
            receipt(&cmd, false, "unsupported_command", &cmd.target_seed_id, seed_stage(k, &cmd.target_seed_id))
        }
    };
    if let Some(d) = deadline
        && let Err(v) = d.finish()
    {
        k.event(names::DEADLINE_VIOLATION.event_at(
            v.level(),
            [
                ("operation", "command".to_owned()),
                ("command_id", cmd.command_id.clone()),
                ("budget_ms", v.budget_ms.to_string()),
                ("elapsed_ms", format!("{:.3}", v.elapsed_ms)),
                ("overrun_ms", format!("{:.3}", v.overrun_ms)),
            ],
        ));
    }
    {
        let mut core = k.inner.core.lock();
        if r.accepted {
            core.stats.commands_accepted += 1;
        } else {
            core.stats.commands_rejected += 1;
        }
    }
    if !r.accepted {
        k.event(names::COMMAND_REJECTED.event_with([
            ("reason", r.reason.clone()),
            ("command_id", r.command_id.clone()),
            ("seed_id", r.seed_id.clone()),
        ]));
    } else {
        k.event(names::COMMAND_ACCEPTED.event_with([
            ("command_id", r.command_id.clone()),
            ("command_type", command_type.as_str_name().to_owned()),
            ("seed_id", r.seed_id.clone()),
        ]));
    }
    r
}

/// The stage of the seed with this id (the last one in a slot), UNKNOWN if none.
fn seed_stage(k: &Kasmina, seed_id: &str) -> Stage {
    find_slot(k, seed_id)
        .and_then(|cell| cell.state.lock().seed.as_ref().map(|s| s.stage()))
        .unwrap_or(Stage::SeedStageUnknown)
}

/// The slot holding the seed `seed_id` (live first, then the last reset one).
fn find_slot(k: &Kasmina, seed_id: &str) -> Option<std::sync::Arc<SlotCell>> {
    if seed_id.is_empty() {
        return None;
    }
    let slots = k.inner.slots.read();
    let holds = |cell: &&std::sync::Arc<SlotCell>, live: bool| {
        cell.state.lock().seed.as_ref().is_some_and(|s| s.id == seed_id && (!live || s.is_live()))
    };
    slots.iter().find(|c| holds(c, true)).or_else(|| slots.iter().find(|c| holds(c, false))).cloned()
}

fn seed_id_of(cmd: &AdaptationCommand) -> String {
    if !cmd.target_seed_id.trim().is_empty() {
        return cmd.target_seed_id.trim().to_owned();
    }
    // The prototype's fallback: parameters["seed_id"], written without a float suffix.
    match &cmd.payload {
        Some(Payload::SeedOperation(op)) => op
            .parameters
            .get("seed_id")
            .filter(|v| v.is_finite() && v.fract() == 0.0)
            .map(|v| format!("{}", *v as i64))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn seed_command(k: &Kasmina, cmd: &AdaptationCommand) -> CommandReceipt {
    let Some(Payload::SeedOperation(op)) = &cmd.payload else {
        k.event(
            names::UNSUPPORTED_COMMAND.event_with([
                ("command_type", "COMMAND_SEED".to_owned()),
                ("error", "missing seed_operation".to_owned()),
            ]),
        );
        return receipt(cmd, false, "missing_seed_operation", &cmd.target_seed_id, Stage::SeedStageUnknown);
    };
    let seed_id = seed_id_of(cmd);
    let operation = SeedOperation::try_from(op.operation).unwrap_or(SeedOperation::SeedOpUnknown);
    k.event(names::SEED_OPERATION.event_with([
        ("command_type", "COMMAND_SEED".to_owned()),
        ("operation", operation.as_str_name().to_owned()),
        ("seed_id", seed_id.clone()),
        ("blueprint_id", op.blueprint_id.clone()),
    ]));
    if seed_id.is_empty() {
        return receipt(cmd, false, "missing_seed_id", "", Stage::SeedStageUnknown);
    }
    match operation {
        SeedOperation::SeedOpGerminate => {
            let cell = match cmd.annotations.get("slot") {
                Some(name) => match k.get_slot(name) {
                    Ok(s) => s.cell,
                    Err(_) => return receipt(cmd, false, "unknown_slot", &seed_id, Stage::SeedStageUnknown),
                },
                None => {
                    let free = k.inner.slots.read().iter().find(|c| SlotCell::is_free(&c.state.lock())).cloned();
                    match free {
                        Some(c) => c,
                        None => return receipt(cmd, false, "no_free_slot", &seed_id, Stage::SeedStageUnknown),
                    }
                }
            };
            if !SlotCell::is_free(&cell.state.lock()) {
                return receipt(cmd, false, "slot_occupied", &seed_id, seed_stage(k, &seed_id));
            }
            match k.germinate(&cell, &seed_id, op.blueprint_id.trim(), &op.parameters) {
                Ok(Germination::Done(stage)) => receipt(cmd, true, super::commands::OK, &seed_id, stage),
                Ok(Germination::Refused(reason)) => receipt(cmd, false, reason, &seed_id, Stage::SeedStageDormant),
                Err(e) => receipt(cmd, false, e.to_string(), &seed_id, Stage::SeedStageDormant),
            }
        }
        SeedOperation::SeedOpCull | SeedOperation::SeedOpCancel => with_seed(k, cmd, &seed_id, |k, seed, slot| {
            let stage = seed.stage();
            if matches!(stage, Stage::SeedStageEmbargoed | Stage::SeedStageResetting | Stage::SeedStageCulled) {
                // A cull never shortens a running embargo (D5).
                return (true, OK.to_owned());
            }
            if !kasmina_lifecycle::is_legal(stage, Stage::SeedStageCulled) {
                return (false, format!("illegal_transition: {} to CULLED", stage.short_name()));
            }
            let reason =
                if operation == SeedOperation::SeedOpCull { "culled_by_command" } else { "cancelled_by_command" };
            k.cull(seed, slot, reason, CullCause::Command);
            (true, OK.to_owned())
        }),
        SeedOperation::SeedOpFineTune => with_seed(k, cmd, &seed_id, |_, seed, _| {
            if !seed.stage().is_monitored() {
                return (false, format!("fine_tune_not_allowed_in_{}", seed.stage().short_name().to_lowercase()));
            }
            let stage = seed.stage();
            seed.entered(stage);
            (true, OK.to_owned())
        }),
        SeedOperation::SeedOpStartTraining
        | SeedOperation::SeedOpStartGrafting
        | SeedOperation::SeedOpStabilize
        | SeedOperation::SeedOpEvaluate
        | SeedOperation::SeedOpFossilize => {
            let (from, to) = match operation {
                SeedOperation::SeedOpStartTraining => (Stage::SeedStageGerminated, Stage::SeedStageTraining),
                SeedOperation::SeedOpStartGrafting => (Stage::SeedStageTraining, Stage::SeedStageBlending),
                SeedOperation::SeedOpStabilize => (Stage::SeedStageBlending, Stage::SeedStageShadowing),
                SeedOperation::SeedOpEvaluate => (Stage::SeedStageShadowing, Stage::SeedStageProbationary),
                _ => (Stage::SeedStageProbationary, Stage::SeedStageFossilized),
            };
            let cfg = k.inner.config.clone();
            with_seed(k, cmd, &seed_id, |k, seed, slot| {
                if seed.stage() != from {
                    return (
                        false,
                        format!("illegal_transition: {} to {}", seed.stage().short_name(), to.short_name()),
                    );
                }
                if seed.pause.is_some() {
                    return (false, "seed_paused".to_owned());
                }
                // The request still needs its window: refuse (without culling) until it completes.
                let window_ok = match to {
                    Stage::SeedStageBlending => seed.steps_in_stage >= cfg.training_steps,
                    Stage::SeedStageProbationary => seed.steps_in_stage >= cfg.shadowing_steps,
                    Stage::SeedStageFossilized => {
                        seed.steps_in_stage >= cfg.probation_steps && seed.epochs_in_stage >= 1
                    }
                    _ => true,
                };
                if !window_ok {
                    return (false, "window_incomplete".to_owned());
                }
                match k.advance_seed(seed, slot, to) {
                    None => (true, OK.to_owned()),
                    Some(reason) => (false, reason),
                }
            })
        }
        SeedOperation::SeedOpUnknown => {
            k.event(names::UNSUPPORTED_COMMAND.event_with([
                ("command_type", "COMMAND_SEED".to_owned()),
                ("operation", "SEED_OP_UNKNOWN".to_owned()),
            ]));
            receipt(cmd, false, "unsupported_operation", &seed_id, seed_stage(k, &seed_id))
        }
    }
}

/// Runs `f` on the seed `seed_id` (locked in its slot); the receipt carries the stage after.
fn with_seed(
    k: &Kasmina,
    cmd: &AdaptationCommand,
    seed_id: &str,
    f: impl FnOnce(&Kasmina, &mut crate::seed::SeedRecord, &str) -> (bool, String),
) -> CommandReceipt {
    let Some(cell) = find_slot(k, seed_id) else {
        return receipt(cmd, false, "unknown_seed", seed_id, Stage::SeedStageUnknown);
    };
    let mut st = cell.state.lock();
    let Some(seed) = st.seed.as_mut() else {
        return receipt(cmd, false, "unknown_seed", seed_id, Stage::SeedStageUnknown);
    };
    let (accepted, reason) = f(k, seed, &cell.name);
    receipt(cmd, accepted, reason, seed_id, seed.stage())
}

fn pause_command(k: &Kasmina, cmd: &AdaptationCommand) -> CommandReceipt {
    let seed_id = seed_id_of(cmd);
    let resume = cmd.annotations.get("resume").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let quota = k.inner.config.pause_quota;
    with_seed(k, cmd, &seed_id, |k, seed, slot| {
        if !seed.is_live() || seed.stage().is_failure_path() {
            return (false, format!("pause_not_allowed_in_{}", seed.stage().short_name().to_lowercase()));
        }
        if !resume {
            if seed.pause.is_some() {
                return (false, "already_paused".to_owned());
            }
            seed.pause = Some(Pause { since: k.inner.clock.now(), passes_left: quota });
            k.event(names::PAUSE.event_with([
                ("seed_id", seed.id.clone()),
                ("quota", quota.to_string()),
                ("identity_kernel_active", "true".to_owned()),
            ]));
            k.event(names::SEED_PAUSED.event_with([("seed_id", seed.id.clone())]));
            return (true, OK.to_owned());
        }
        let Some(pause) = seed.pause.take() else {
            return (false, "not_paused".to_owned());
        };
        let duration = k.inner.clock.now().duration_since(pause.since);
        let restored = seed.kernel.is_some();
        seed.pause_check =
            if restored { PauseResumeCheck::KernelRestored } else { PauseResumeCheck::KernelNotRestored };
        k.event(names::RESUME.event_with([
            ("seed_id", seed.id.clone()),
            ("blueprint_id", seed.kernel_blueprint_id.clone()),
            ("duration_ms", duration.as_millis().to_string()),
            ("kernel_restored", restored.to_string()),
        ]));
        k.event(
            names::SEED_RESUMED
                .event_with([("seed_id", seed.id.clone()), ("blueprint_id", seed.kernel_blueprint_id.clone())]),
        );
        // Resume re-validates G1 and G3 on the restored kernel (evaluated, not moved).
        let g1 = kasmina_lifecycle::gates::evaluate_g1_germinated(
            &gate_ctx(k, seed, Stage::SeedStageTraining),
            &kasmina_lifecycle::gates::GerminatedEvidence {
                kernel_attached: restored,
                parameters_registered: seed.registered || seed.vars().is_empty(),
                registration_conflict: seed.registration_conflict,
                isolation_armed: seed.monitor.is_some() || seed.stage() == Stage::SeedStageFossilized,
                isolation_violations: seed.isolation_violations,
            },
        );
        let shape = seed.seed_output_shape.clone();
        let host_shape = if seed.host_output_shape.is_empty() { shape.clone() } else { seed.host_output_shape.clone() };
        let (sd, hd) = (seed.seed_dtype.clone(), seed.host_dtype.clone());
        let g3 = kasmina_lifecycle::gates::evaluate_g3_interface(
            &gate_ctx(k, seed, Stage::SeedStageProbationary),
            &kasmina_lifecycle::gates::InterfaceEvidence {
                seed_output_shape: &shape,
                host_output_shape: &host_shape,
                seed_dtype: &sd,
                host_dtype: if hd.is_empty() { &sd } else { &hd },
                telemetry_complete: true,
                pause_resume: seed.pause_check,
            },
        );
        for g in [&g1, &g3] {
            k.record_gate(seed, g);
        }
        if let Some(failed) = [&g1, &g3].into_iter().find(|g| !g.passed) {
            let reason = failed.reason.clone();
            k.cull(seed, slot, &reason, CullCause::Gate);
            return (false, reason);
        }
        (true, OK.to_owned())
    })
}

fn gate_ctx<'a>(
    k: &Kasmina,
    seed: &'a crate::seed::SeedRecord,
    to: Stage,
) -> kasmina_lifecycle::gates::GateContext<'a> {
    kasmina_lifecycle::gates::GateContext { seed_id: &seed.id, from: seed.stage(), to, at: k.now_wall() }
}

fn breaker_command(k: &Kasmina, cmd: &AdaptationCommand) -> CommandReceipt {
    let Some(Payload::CircuitBreaker(cb)) = &cmd.payload else {
        k.event(names::UNSUPPORTED_COMMAND.event_with([("command_type", "COMMAND_CIRCUIT_BREAKER".to_owned())]));
        return receipt(cmd, false, "missing_circuit_breaker", &cmd.target_seed_id, Stage::SeedStageUnknown);
    };
    let name = cmd.annotations.get("breaker").map(String::as_str).unwrap_or(crate::guard::KERNEL_FETCH);
    let state = CircuitBreakerState::try_from(cb.desired_state).unwrap_or(CircuitBreakerState::CircuitStateUnknown);
    let rationale = if cb.rationale.is_empty() { "manual".to_owned() } else { cb.rationale.clone() };
    let result = if state == CircuitBreakerState::CircuitStateUnknown {
        Err(format!("invalid desired state {}", cb.desired_state))
    } else {
        k.inner.breakers.force(name, state, rationale)
    };
    match result {
        Ok(event) => {
            k.event(event);
            receipt(cmd, true, OK, &cmd.target_seed_id, Stage::SeedStageUnknown)
        }
        Err(error) => {
            k.event(names::BREAKER_COMMAND_INVALID.event_with([
                ("desired_state", cb.desired_state.to_string()),
                ("breaker", name.to_owned()),
                ("error", error),
            ]));
            receipt(cmd, false, "breaker_command_invalid", &cmd.target_seed_id, Stage::SeedStageUnknown)
        }
    }
}

fn emergency_command(k: &Kasmina, cmd: &AdaptationCommand) -> CommandReceipt {
    let include_teacher = cmd.annotations.get("include_teacher").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let report = k.inner.kernels.emergency_cleanup(include_teacher);
    if include_teacher {
        *k.inner.teacher.lock() = None;
    }
    k.event(names::EMERGENCY_CLEANUP.event_with([
        ("include_teacher", include_teacher.to_string()),
        ("evicted", report.total_evicted().to_string()),
        ("bytes_freed", report.bytes_freed().to_string()),
    ]));
    receipt(cmd, true, OK, &cmd.target_seed_id, seed_stage(k, &cmd.target_seed_id))
}

fn optimizer_command(k: &Kasmina, cmd: &AdaptationCommand) -> CommandReceipt {
    let Some(Payload::OptimizerAdjustment(adj)) = &cmd.payload else {
        return receipt(cmd, false, "missing_optimizer_adjustment", &cmd.target_seed_id, Stage::SeedStageUnknown);
    };
    let seed_id = if cmd.target_seed_id.is_empty() { adj.optimizer_id.clone() } else { cmd.target_seed_id.clone() };
    // Validate everything before changing anything.
    for (name, value) in &adj.hyperparameters {
        let ok = match name.as_str() {
            "lr" | "learning_rate" => value.is_finite() && *value > 0.0 && *value <= 1.0,
            "weight_decay" => value.is_finite() && *value >= 0.0 && *value <= 1.0,
            _ => {
                return receipt(
                    cmd,
                    false,
                    format!("unknown_hyperparameter: {name}"),
                    &seed_id,
                    seed_stage(k, &seed_id),
                );
            }
        };
        if !ok {
            return receipt(
                cmd,
                false,
                format!("invalid_hyperparameter: {name}={value}"),
                &seed_id,
                seed_stage(k, &seed_id),
            );
        }
    }
    let hyper = adj.hyperparameters.clone();
    let optimizer_id = adj.optimizer_id.clone();
    with_seed(k, cmd, &seed_id, |k, seed, _| {
        let Some(opt) = seed.optimizer.as_mut() else {
            return (false, "seed_has_no_optimizer".to_owned());
        };
        use candle_nn::optim::Optimizer;
        let mut params = opt.params().clone();
        for (name, value) in &hyper {
            match name.as_str() {
                "weight_decay" => params.weight_decay = f64::from(*value),
                _ => params.lr = f64::from(*value),
            }
        }
        opt.set_params(params);
        let lr = opt.learning_rate();
        k.event(names::OPTIMIZER_ADJUST.event_with([
            ("command_type", "COMMAND_OPTIMIZER".to_owned()),
            ("optimizer_id", optimizer_id.clone()),
            ("seed_id", seed.id.clone()),
            ("lr", format!("{lr}")),
            ("weight_decay", format!("{}", seed.weight_decay())),
        ]));
        (true, OK.to_owned())
    })
}

fn rollback_command(k: &Kasmina, cmd: &AdaptationCommand) -> CommandReceipt {
    // The seed: target_seed_id, else the payload's seed_id.
    let mut seed_id = cmd.target_seed_id.clone();
    if seed_id.is_empty()
        && let Some(Payload::RollbackPayload(s)) = &cmd.payload
        && let Some(leyline::wkt::Value { kind: Some(leyline::wkt::value::Kind::StringValue(v)) }) =
            s.fields.get("seed_id")
    {
        seed_id = v.clone();
    }
    with_seed(k, cmd, &seed_id, |k, seed, slot| {
        let stage = seed.stage();
        if stage.is_failure_path() || stage == Stage::SeedStageDormant {
            // Already rolled back: its payload stands.
            return if k.inner.core.lock().rollbacks.contains_key(&seed.id) {
                (true, OK.to_owned())
            } else {
                (false, "no_rollback_payload".to_owned())
            };
        }
        if !kasmina_lifecycle::is_legal(stage, Stage::SeedStageCulled) {
            return (false, format!("illegal_transition: {} to CULLED", stage.short_name()));
        }
        // Restore the slot to the host's own output: the seed leaves through the failure path.
        k.cull(seed, slot, "rollback", CullCause::Command);
        let elapsed = k.inner.core.lock().rollbacks.get(&seed.id).map(|r| r.elapsed_ms).unwrap_or(0.0);
        let budget = f64::from(leyline::constants::PERFORMANCE_BUDGETS.fast_rollback_ms);
        if elapsed > budget {
            k.event(names::DEADLINE_VIOLATION.event_at(
                TelemetryLevel::Warning,
                [
                    ("operation", "fast_rollback".to_owned()),
                    ("elapsed_ms", format!("{elapsed:.3}")),
                    ("budget_ms", budget.to_string()),
                ],
            ));
        }
        (true, OK.to_owned())
    })
}
