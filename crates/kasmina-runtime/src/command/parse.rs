//! Parsing an `AdaptationCommand` into a [`Request`]: every field and annotation is read and
//! checked here, once; a bad value is a typed [`Refusal`].

use std::collections::BTreeMap;

use leyline::adaptation_command::Payload;
use leyline::{AdaptationCommand, CircuitBreakerState, CommandType, SeedLifecycleStage as Stage, SeedOperation};

use kasmina_isolation::AlphaCurve;

use crate::attach::Germinate;
use crate::breakers::BreakerName;
use crate::receipt::Refusal;
use crate::seed::AlphaRequest;

/// What a command asks for.
#[derive(Debug, Clone)]
pub(crate) enum Request {
    Germinate {
        req: Germinate,
        slot: Option<String>,
    },
    /// A stage request (START_TRAINING … FOSSILIZE): `from` → `to`, still gated; START_GRAFTING
    /// may shape the alpha ramp.
    Advance {
        seed_id: String,
        from: Stage,
        to: Stage,
        alpha: Option<AlphaRequest>,
    },
    Cull {
        seed_id: String,
        cancel: bool,
    },
    /// CANCEL with `annotations["terminate"] = "true"`: administrative teardown.
    Terminate {
        seed_id: String,
    },
    /// FINE_TUNE: restarts the window; in BLENDING with alpha parameters, retargets or holds
    /// the alpha ramp instead.
    FineTune {
        seed_id: String,
        alpha: Option<AlphaRequest>,
    },
    Pause {
        seed_id: String,
    },
    Resume {
        seed_id: String,
    },
    Breaker {
        name: BreakerName,
        state: CircuitBreakerState,
        rationale: String,
    },
    Emergency {
        include_teacher: bool,
        seed_id: String,
    },
    Optimizer {
        seed_id: String,
        optimizer_id: String,
        lr: Option<f64>,
        weight_decay: Option<f64>,
    },
    Rollback {
        seed_id: String,
    },
}

impl Request {
    /// The seed the request is about (empty when none).
    pub(crate) fn seed_id(&self) -> &str {
        match self {
            Self::Germinate { req, .. } => &req.seed_id,
            Self::Advance { seed_id, .. }
            | Self::Cull { seed_id, .. }
            | Self::Terminate { seed_id }
            | Self::FineTune { seed_id, .. }
            | Self::Pause { seed_id }
            | Self::Resume { seed_id }
            | Self::Emergency { seed_id, .. }
            | Self::Optimizer { seed_id, .. }
            | Self::Rollback { seed_id } => seed_id,
            Self::Breaker { .. } => "",
        }
    }
}

/// Parses `cmd`. `Err` carries the refusal, the seed id found (for the receipt) and a detail
/// for the `command_rejected` event.
pub(crate) fn parse(cmd: &AdaptationCommand) -> Result<Request, Refusal> {
    match CommandType::try_from(cmd.command_type).unwrap_or(CommandType::CommandUnknown) {
        CommandType::CommandSeed => seed(cmd),
        CommandType::CommandPause => {
            let seed_id = require_seed(seed_id_of(cmd))?;
            if flag(cmd, "resume")? { Ok(Request::Resume { seed_id }) } else { Ok(Request::Pause { seed_id }) }
        }
        CommandType::CommandCircuitBreaker => breaker(cmd),
        CommandType::CommandEmergency => Ok(Request::Emergency {
            include_teacher: flag(cmd, "include_teacher")?,
            seed_id: cmd.target_seed_id.trim().to_owned(),
        }),
        CommandType::CommandOptimizer => optimizer(cmd),
        CommandType::CommandRollback => Ok(Request::Rollback { seed_id: require_seed(rollback_seed(cmd))? }),
        CommandType::CommandStructuralPruning | CommandType::CommandUnknown => Err(Refusal::UnsupportedCommand),
    }
}

/// The seed id: `target_seed_id`, else the prototype's `parameters["seed_id"]` (an integer
/// written without a float suffix).
pub(crate) fn seed_id_of(cmd: &AdaptationCommand) -> String {
    if !cmd.target_seed_id.trim().is_empty() {
        return cmd.target_seed_id.trim().to_owned();
    }
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

fn require_seed(seed_id: String) -> Result<String, Refusal> {
    if seed_id.is_empty() { Err(Refusal::MissingSeedId) } else { Ok(seed_id) }
}

/// A boolean annotation: absent is `false`; `true`/`false` (any case, trimmed) parse; anything
/// else is [`Refusal::InvalidAnnotation`].
pub(crate) fn flag(cmd: &AdaptationCommand, key: &str) -> Result<bool, Refusal> {
    match cmd.annotations.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(_) => Err(Refusal::InvalidAnnotation),
    }
}

fn seed(cmd: &AdaptationCommand) -> Result<Request, Refusal> {
    let Some(Payload::SeedOperation(op)) = &cmd.payload else { return Err(Refusal::MissingSeedOperation) };
    let operation = SeedOperation::try_from(op.operation).unwrap_or(SeedOperation::SeedOpUnknown);
    if operation == SeedOperation::SeedOpUnknown {
        return Err(Refusal::UnsupportedOperation);
    }
    let seed_id = require_seed(seed_id_of(cmd))?;
    let alpha = alpha_request(&op.parameters)?;
    let advance = |from, to| Ok(Request::Advance { seed_id: seed_id.clone(), from, to, alpha });
    use Stage::*;
    match operation {
        SeedOperation::SeedOpGerminate => Ok(Request::Germinate {
            req: Germinate {
                seed_id: seed_id.clone(),
                // Exactly as signed: a padded id names no blueprint, and G0 refuses it.
                blueprint_id: op.blueprint_id.clone(),
                parameters: op
                    .parameters
                    .iter()
                    .filter(|(k, _)| k.as_str() != "seed_id")
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<BTreeMap<_, _>>(),
            },
            slot: cmd.annotations.get("slot").map(|s| s.trim().to_owned()),
        }),
        SeedOperation::SeedOpStartTraining => advance(SeedStageGerminated, SeedStageTraining),
        SeedOperation::SeedOpStartGrafting => advance(SeedStageTraining, SeedStageBlending),
        SeedOperation::SeedOpStabilize => advance(SeedStageBlending, SeedStageShadowing),
        SeedOperation::SeedOpEvaluate => advance(SeedStageShadowing, SeedStageProbationary),
        SeedOperation::SeedOpFossilize => advance(SeedStageProbationary, SeedStageFossilized),
        SeedOperation::SeedOpFineTune => Ok(Request::FineTune { seed_id, alpha }),
        SeedOperation::SeedOpCull => Ok(Request::Cull { seed_id, cancel: false }),
        SeedOperation::SeedOpCancel if flag(cmd, "terminate")? => Ok(Request::Terminate { seed_id }),
        SeedOperation::SeedOpCancel => Ok(Request::Cull { seed_id, cancel: true }),
        SeedOperation::SeedOpUnknown => Err(Refusal::UnsupportedOperation),
    }
}

/// The alpha parameters of a START_GRAFTING or FINE_TUNE (Leyline's
/// `CommandSeedOperation.parameters`, all optional): `alpha_steps` (ramp length, ≥ 1),
/// `alpha_curve` (0 linear, 1 cosine, 2 sigmoid), `alpha_temperature` (sigmoid, > 0),
/// `alpha_target` (in (0, 1]: blend to it and hold), `alpha_hold` (1 holds, 0 releases).
fn alpha_request(params: &BTreeMap<String, f32>) -> Result<Option<AlphaRequest>, Refusal> {
    let get = |k: &str| params.get(k).map(|v| f64::from(*v));
    let mut req = AlphaRequest::default();
    if let Some(steps) = get("alpha_steps") {
        if !((1.0..=1e7).contains(&steps) && steps.fract() == 0.0) {
            return Err(Refusal::InvalidParameter);
        }
        req.steps = Some(steps as u64);
    }
    let temperature = get("alpha_temperature").unwrap_or(2.0);
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(Refusal::InvalidParameter);
    }
    if let Some(code) = get("alpha_curve") {
        let curve = (code.fract() == 0.0 && (0.0..=2.0).contains(&code))
            .then(|| AlphaCurve::from_code(code as u32, temperature))
            .flatten();
        req.curve = Some(curve.ok_or(Refusal::InvalidParameter)?);
    }
    if let Some(target) = get("alpha_target") {
        if !(target > 0.0 && target <= 1.0) {
            return Err(Refusal::InvalidParameter);
        }
        req.target = Some(target);
    }
    if let Some(hold) = get("alpha_hold") {
        req.hold = Some(if hold == 1.0 {
            true
        } else if hold == 0.0 {
            false
        } else {
            return Err(Refusal::InvalidParameter);
        });
    }
    Ok((req != AlphaRequest::default()).then_some(req))
}

fn breaker(cmd: &AdaptationCommand) -> Result<Request, Refusal> {
    let Some(Payload::CircuitBreaker(cb)) = &cmd.payload else { return Err(Refusal::MissingCircuitBreaker) };
    let name = match cmd.annotations.get("breaker") {
        Some(n) => BreakerName::parse(n).ok_or(Refusal::BreakerCommandInvalid)?,
        None => BreakerName::KernelFetch,
    };
    let state = CircuitBreakerState::try_from(cb.desired_state).unwrap_or(CircuitBreakerState::CircuitStateUnknown);
    if state == CircuitBreakerState::CircuitStateUnknown {
        return Err(Refusal::BreakerCommandInvalid);
    }
    let rationale = if cb.rationale.is_empty() { "manual".to_owned() } else { cb.rationale.clone() };
    Ok(Request::Breaker { name, state, rationale })
}

fn optimizer(cmd: &AdaptationCommand) -> Result<Request, Refusal> {
    let Some(Payload::OptimizerAdjustment(adj)) = &cmd.payload else { return Err(Refusal::MissingOptimizerAdjustment) };
    let seed_id = if cmd.target_seed_id.trim().is_empty() {
        adj.optimizer_id.clone()
    } else {
        cmd.target_seed_id.trim().to_owned()
    };
    let (mut lr, mut weight_decay) = (None, None);
    for (name, &value) in &adj.hyperparameters {
        let v = f64::from(value);
        match name.as_str() {
            "lr" | "learning_rate" if v.is_finite() && v > 0.0 && v <= 1.0 => lr = Some(v),
            "weight_decay" if v.is_finite() && (0.0..=1.0).contains(&v) => weight_decay = Some(v),
            "lr" | "learning_rate" | "weight_decay" => return Err(Refusal::InvalidHyperparameter),
            _ => return Err(Refusal::UnknownHyperparameter),
        }
    }
    Ok(Request::Optimizer { seed_id, optimizer_id: adj.optimizer_id.clone(), lr, weight_decay })
}

fn rollback_seed(cmd: &AdaptationCommand) -> String {
    if !cmd.target_seed_id.trim().is_empty() {
        return cmd.target_seed_id.trim().to_owned();
    }
    match &cmd.payload {
        Some(Payload::RollbackPayload(s)) => match s.fields.get("seed_id") {
            Some(leyline::wkt::Value { kind: Some(leyline::wkt::value::Kind::StringValue(v)) }) => v.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use leyline::CommandSeedOperation;

    use super::*;

    fn seed_cmd(op: SeedOperation, annotations: &[(&str, &str)]) -> AdaptationCommand {
        AdaptationCommand {
            command_id: "c".into(),
            command_type: CommandType::CommandSeed as i32,
            target_seed_id: "s1".into(),
            payload: Some(Payload::SeedOperation(CommandSeedOperation {
                operation: op as i32,
                blueprint_id: " BP001 ".into(),
                parameters: Default::default(),
            })),
            annotations: annotations.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn flags_parse_once_with_a_clear_refusal() {
        assert!(matches!(
            parse(&seed_cmd(SeedOperation::SeedOpCancel, &[("terminate", " TRUE ")])),
            Ok(Request::Terminate { .. })
        ));
        assert!(matches!(
            parse(&seed_cmd(SeedOperation::SeedOpCancel, &[("terminate", "false")])),
            Ok(Request::Cull { cancel: true, .. })
        ));
        assert_eq!(
            parse(&seed_cmd(SeedOperation::SeedOpCancel, &[("terminate", "yes")])).unwrap_err(),
            Refusal::InvalidAnnotation
        );
    }

    #[test]
    fn stage_requests_name_their_move() {
        let Ok(Request::Advance { from, to, .. }) = parse(&seed_cmd(SeedOperation::SeedOpEvaluate, &[])) else {
            panic!()
        };
        assert_eq!((from, to), (Stage::SeedStageShadowing, Stage::SeedStageProbationary));
        let Ok(Request::Germinate { req, slot }) = parse(&seed_cmd(SeedOperation::SeedOpGerminate, &[("slot", "a")]))
        else {
            panic!()
        };
        // The blueprint id is kept exactly as sent (padding included): G0 judges it.
        assert_eq!((req.blueprint_id.as_str(), slot.as_deref()), (" BP001 ", Some("a")));
        assert_eq!(parse(&seed_cmd(SeedOperation::SeedOpUnknown, &[])).unwrap_err(), Refusal::UnsupportedOperation);
    }

    #[test]
    fn unknown_breakers_and_hyperparameters_are_refused() {
        let mut cmd = seed_cmd(SeedOperation::SeedOpCull, &[]);
        cmd.command_type = CommandType::CommandCircuitBreaker as i32;
        assert_eq!(parse(&cmd).unwrap_err(), Refusal::MissingCircuitBreaker);
        cmd.payload = Some(Payload::CircuitBreaker(leyline::CommandCircuitBreaker {
            desired_state: 1,
            rationale: String::new(),
        }));
        cmd.annotations.insert("breaker".into(), "nope".into());
        assert_eq!(parse(&cmd).unwrap_err(), Refusal::BreakerCommandInvalid);
        let mut cmd = seed_cmd(SeedOperation::SeedOpCull, &[]);
        cmd.command_type = CommandType::CommandOptimizer as i32;
        cmd.payload = Some(Payload::OptimizerAdjustment(leyline::CommandOptimizerAdjustment {
            optimizer_id: "o".into(),
            hyperparameters: [("momentum".to_owned(), 0.5)].into(),
        }));
        assert_eq!(parse(&cmd).unwrap_err(), Refusal::UnknownHyperparameter);
    }
}
