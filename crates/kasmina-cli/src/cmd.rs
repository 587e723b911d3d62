//! `kasmina sign` / `kasmina send`: build an `AdaptationCommand` from flags (or protobuf JSON),
//! sign it (envelope form, or the legacy form with `--legacy`), then print it as a
//! `SignedCommand` or send it to a running `kasmina serve`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::ValueEnum;
use kasmina_runtime::reexports::security::{
    DEFAULT_KEY_ID, KeyRing, is_bidi_control, printable, sign_command, sign_legacy,
};
use leyline::adaptation_command::Payload;
use leyline::kasmina_control_client::KasminaControlClient;
use leyline::wkt::{Struct, Timestamp, Value, value::Kind};
use leyline::{
    AdaptationCommand, CircuitBreakerState, CommandCircuitBreaker, CommandOptimizerAdjustment, CommandReceipt,
    CommandSeedOperation, CommandType, Message, SeedLifecycleStage, SeedOperation, SignedCommand,
};
use rand::Rng as _;

/// The command's type (`--type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TypeArg {
    /// A seed operation (`--op`): COMMAND_SEED.
    Seed,
    /// Pause a seed (COMMAND_PAUSE).
    Pause,
    /// Resume a paused seed (COMMAND_PAUSE with `annotations["resume"] = "true"`).
    Resume,
    /// Force a circuit breaker (COMMAND_CIRCUIT_BREAKER, `--breaker-state`).
    Breaker,
    /// Emergency cleanup of caches (COMMAND_EMERGENCY).
    Emergency,
    /// Adjust a seed's optimiser (COMMAND_OPTIMIZER, `--param lr=...`).
    Optimizer,
    /// Roll a seed back (COMMAND_ROLLBACK).
    Rollback,
}

/// A seed operation (`--op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OpArg {
    /// SEED_OP_GERMINATE (needs `--blueprint`).
    Germinate,
    /// SEED_OP_START_TRAINING.
    StartTraining,
    /// SEED_OP_START_GRAFTING.
    StartGrafting,
    /// SEED_OP_STABILIZE.
    Stabilize,
    /// SEED_OP_EVALUATE.
    Evaluate,
    /// SEED_OP_FINE_TUNE.
    FineTune,
    /// SEED_OP_FOSSILIZE.
    Fossilize,
    /// SEED_OP_CULL.
    Cull,
    /// SEED_OP_CANCEL.
    Cancel,
}

impl OpArg {
    fn operation(self) -> SeedOperation {
        match self {
            Self::Germinate => SeedOperation::SeedOpGerminate,
            Self::StartTraining => SeedOperation::SeedOpStartTraining,
            Self::StartGrafting => SeedOperation::SeedOpStartGrafting,
            Self::Stabilize => SeedOperation::SeedOpStabilize,
            Self::Evaluate => SeedOperation::SeedOpEvaluate,
            Self::FineTune => SeedOperation::SeedOpFineTune,
            Self::Fossilize => SeedOperation::SeedOpFossilize,
            Self::Cull => SeedOperation::SeedOpCull,
            Self::Cancel => SeedOperation::SeedOpCancel,
        }
    }
}

/// A breaker state (`--breaker-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BreakerArg {
    /// CIRCUIT_STATE_OPEN.
    Open,
    /// CIRCUIT_STATE_CLOSED.
    Closed,
    /// CIRCUIT_STATE_HALF_OPEN.
    HalfOpen,
}

impl BreakerArg {
    fn state(self) -> CircuitBreakerState {
        match self {
            Self::Open => CircuitBreakerState::CircuitStateOpen,
            Self::Closed => CircuitBreakerState::CircuitStateClosed,
            Self::HalfOpen => CircuitBreakerState::CircuitStateHalfOpen,
        }
    }
}

/// How `sign` prints the signed command (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputArg {
    /// Standard base64 of the encoded `SignedCommand`.
    Base64,
    /// The `SignedCommand` in protobuf's canonical JSON mapping.
    Json,
}

/// What to build and how to sign it (shared by `sign` and `send`).
#[derive(Debug, clap::Args)]
pub(crate) struct CommandArgs {
    /// Command type.
    #[arg(long = "type", value_enum, required_unless_present = "json", conflicts_with = "json")]
    kind: Option<TypeArg>,
    /// Seed operation (with `--type seed`).
    #[arg(long, value_enum, required_if_eq("kind", "seed"))]
    op: Option<OpArg>,
    /// Target seed id.
    #[arg(long)]
    seed_id: Option<String>,
    /// Blueprint id (germinate).
    #[arg(long)]
    blueprint: Option<String>,
    /// Slot to germinate in (`annotations["slot"]`; default: the first free slot).
    #[arg(long)]
    slot: Option<String>,
    /// A numeric parameter `key=value`: germination parameters, or the optimiser's
    /// hyperparameters (`lr`, `weight_decay`) with `--type optimizer`. Repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// An annotation `key=value`. Repeatable.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    /// Desired breaker state (with `--type breaker`).
    #[arg(long, value_enum, required_if_eq("kind", "breaker"))]
    breaker_state: Option<BreakerArg>,
    /// Which breaker (`annotations["breaker"]`; default: the kernel-fetch breaker).
    #[arg(long)]
    breaker: Option<String>,
    /// Why (the breaker command's rationale, or the rollback's reason).
    #[arg(long)]
    rationale: Option<String>,
    /// Execution deadline in ms (0: none).
    #[arg(long, default_value_t = 0)]
    deadline_ms: u32,
    /// Command id, the replay nonce (default: a fresh random id).
    #[arg(long)]
    command_id: Option<String>,
    /// Who issued the command.
    #[arg(long, default_value = "kasmina-cli")]
    issued_by: String,
    /// Read the AdaptationCommand from this file (protobuf JSON) instead of the flags; an empty
    /// `commandId` or a missing `issuedAt` is filled in.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Key file (`id=secret` lines); default: ESPER_LEYLINE_SECRET as key id `default`, or the
    /// other key variables.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// Key id to sign with.
    #[arg(long, default_value = DEFAULT_KEY_ID)]
    key_id: String,
    /// Sign in the legacy form: the signature goes in `annotations["signature"]` and the
    /// `SignedCommand` carries the command with an empty `signature`.
    #[arg(long)]
    legacy: bool,
}

/// Arguments of `sign`.
#[derive(Debug, clap::Args)]
pub(crate) struct SignArgs {
    #[command(flatten)]
    command: CommandArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "base64")]
    output: OutputArg,
}

/// Arguments of `send`.
#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// The server's URL (`https://` for a server with TLS).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Trust this CA (PEM) for the server's certificate (default: the system's roots are not
    /// used; an `https://` server needs --ca).
    #[arg(long, value_name = "CA.pem")]
    ca: Option<PathBuf>,
    /// Present this client certificate (PEM) to a server that verifies clients; needs --client-key.
    #[arg(long, value_name = "CERT.pem", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The private key of --client-cert (PEM).
    #[arg(long, value_name = "KEY.pem", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the URL's host).
    #[arg(long)]
    tls_domain: Option<String>,
    /// Give up after this many seconds (connect and call).
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    #[command(flatten)]
    command: CommandArgs,
}

pub(crate) fn sign(args: SignArgs) -> Result<()> {
    let signed = build_signed(&args.command)?;
    match args.output {
        OutputArg::Base64 => println!("{}", STANDARD.encode(signed.encode_to_vec())),
        OutputArg::Json => println!("{}", serde_json::to_string(&signed).context("encoding the command as JSON")?),
    }
    Ok(())
}

pub(crate) fn send(args: SendArgs) -> Result<()> {
    let signed = build_signed(&args.command)?;
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let receipt = runtime.block_on(async {
        let mut endpoint = tonic::transport::Endpoint::from_shared(args.server.clone())
            .with_context(|| format!("invalid server URL `{}`", args.server))?
            .connect_timeout(timeout)
            .timeout(timeout);
        if let Some(tls) = client_tls(&args)? {
            endpoint = endpoint.tls_config(tls).context("TLS settings")?;
        }
        let channel = endpoint.connect().await.with_context(|| format!("connecting to {}", args.server))?;
        let mut client = KasminaControlClient::new(channel);
        let response = client.submit_command(signed).await.context("SubmitCommand failed")?;
        anyhow::Ok(response.into_inner())
    })?;
    println!("{}", receipt_text(&receipt)?);
    if !receipt.accepted {
        // The server's values: printed with control and bidi characters escaped.
        bail!("command {} was not accepted: {}", printable(&receipt.command_id), printable(&receipt.reason));
    }
    Ok(())
}

/// The client's TLS settings: `--ca` (required for `https://`), `--client-cert`/`--client-key`.
fn client_tls(args: &SendArgs) -> Result<Option<tonic::transport::ClientTlsConfig>> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let https = args.server.starts_with("https://");
    let Some(ca) = &args.ca else {
        if https || args.client_cert.is_some() {
            bail!(
                "an https:// server or a client certificate needs --ca (the CA that signed the server's certificate)"
            );
        }
        return Ok(None);
    };
    if !https {
        bail!("--ca is given but the server URL `{}` is not https://", args.server);
    }
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
    if let Some(domain) = &args.tls_domain {
        tls = tls.domain_name(domain.clone());
    }
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(tls))
}

/// The receipt as pretty JSON, safe for a terminal: control, bidirectional formatting and line
/// separator characters in its strings (seed ids, reasons: values from the server) are written
/// as JSON `\uXXXX` escapes, so the text parses to the same values and cannot reorder or hide
/// what the terminal shows.
fn receipt_text(receipt: &CommandReceipt) -> Result<String> {
    let json = serde_json::to_string_pretty(&receipt_json(receipt)).context("encoding the receipt")?;
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        // serde_json escapes C0 controls itself: a raw '\n' is the pretty printer's line break.
        // The others can only be inside strings, and are all in the BMP.
        if c != '\n' && (c.is_control() || is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}')) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// A receipt as JSON with every field present (protobuf's canonical JSON omits `false` and
/// empty values, which scripts reading `accepted` would trip over).
fn receipt_json(receipt: &CommandReceipt) -> serde_json::Value {
    let stage = SeedLifecycleStage::try_from(receipt.stage)
        .map_or_else(|_| receipt.stage.to_string(), |s| s.as_str_name().to_owned());
    serde_json::json!({
        "commandId": receipt.command_id,
        "accepted": receipt.accepted,
        "reason": receipt.reason,
        "seedId": receipt.seed_id,
        "stage": stage,
        "status": receipt.status().as_str_name(),
        "keyId": receipt.provenance.as_ref().map(|p| p.key_id.clone()).unwrap_or_default(),
    })
}

/// Builds and signs the command the flags describe.
pub(crate) fn build_signed(args: &CommandArgs) -> Result<SignedCommand> {
    let keys = load_keys(args.key_file.as_deref())?;
    let mut command = match &args.json {
        Some(path) => read_json(path)?,
        None => build_command(args)?,
    };
    if command.command_id.is_empty() {
        command.command_id = fresh_command_id();
    }
    if command.issued_at.is_none() {
        command.issued_at = Some(now_timestamp());
    }
    if args.legacy {
        let key = keys.get(&args.key_id).with_context(|| format!("no key `{}` in the key ring", args.key_id))?;
        sign_legacy(&mut command, &key);
        Ok(SignedCommand { command: command.encode_to_vec(), signature: String::new(), key_id: String::new() })
    } else {
        sign_command(&command, &args.key_id, &keys).with_context(|| format!("signing with key `{}`", args.key_id))
    }
}

fn load_keys(key_file: Option<&Path>) -> Result<KeyRing> {
    let keys = match key_file {
        Some(path) => KeyRing::from_file(path).with_context(|| format!("loading keys from {}", path.display()))?,
        None => KeyRing::from_env().context("loading keys from the environment")?,
    };
    if keys.is_empty() {
        bail!("no signing key: set ESPER_LEYLINE_SECRET (key id `default`) or pass --key-file");
    }
    Ok(keys)
}

fn read_json(path: &Path) -> Result<AdaptationCommand> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not an AdaptationCommand in protobuf JSON", path.display()))
}

/// `key=value` → (key, value), both trimmed, the key non-empty.
fn split_pair<'a>(flag: &str, item: &'a str) -> Result<(&'a str, &'a str)> {
    let (k, v) = item.split_once('=').with_context(|| format!("--{flag} `{item}`: expected KEY=VALUE"))?;
    let k = k.trim();
    if k.is_empty() {
        bail!("--{flag} `{item}`: empty key");
    }
    Ok((k, v.trim()))
}

fn numeric_params(args: &CommandArgs) -> Result<BTreeMap<String, f32>> {
    args.params
        .iter()
        .map(|item| {
            let (k, v) = split_pair("param", item)?;
            let value: f32 = v.parse().with_context(|| format!("--param `{item}`: `{v}` is not a number"))?;
            if !value.is_finite() {
                bail!("--param `{item}`: the value must be finite");
            }
            Ok((k.to_owned(), value))
        })
        .collect()
}

/// The `AdaptationCommand` described by the flags (without id or timestamp when not given).
fn build_command(args: &CommandArgs) -> Result<AdaptationCommand> {
    let kind = args.kind.context("--type is required (or --json)")?;
    let mut annotations = BTreeMap::new();
    for item in &args.annotations {
        let (k, v) = split_pair("annotation", item)?;
        annotations.insert(k.to_owned(), v.to_owned());
    }
    if let Some(slot) = &args.slot {
        annotations.insert("slot".to_owned(), slot.clone());
    }
    let params = numeric_params(args)?;
    let seed_id = args.seed_id.clone().unwrap_or_default();
    let needs_seed = !matches!(kind, TypeArg::Emergency | TypeArg::Breaker);
    if needs_seed && seed_id.trim().is_empty() {
        let name = kind.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default();
        bail!("--seed-id is required with --type {name}");
    }
    let (command_type, payload) = match kind {
        TypeArg::Seed => {
            let op = args.op.context("--op is required with --type seed")?;
            let blueprint_id = args.blueprint.clone().unwrap_or_default();
            if op == OpArg::Germinate && blueprint_id.trim().is_empty() {
                bail!("--blueprint is required to germinate");
            }
            let mut seed_op = CommandSeedOperation { blueprint_id, parameters: params, ..Default::default() };
            seed_op.set_operation(op.operation());
            (CommandType::CommandSeed, Some(Payload::SeedOperation(seed_op)))
        }
        TypeArg::Pause => (CommandType::CommandPause, None),
        TypeArg::Resume => {
            annotations.insert("resume".to_owned(), "true".to_owned());
            (CommandType::CommandPause, None)
        }
        TypeArg::Breaker => {
            let state = args.breaker_state.context("--breaker-state is required with --type breaker")?;
            if let Some(name) = &args.breaker {
                annotations.insert("breaker".to_owned(), name.clone());
            }
            let mut cb =
                CommandCircuitBreaker { rationale: args.rationale.clone().unwrap_or_default(), ..Default::default() };
            cb.set_desired_state(state.state());
            (CommandType::CommandCircuitBreaker, Some(Payload::CircuitBreaker(cb)))
        }
        TypeArg::Emergency => (CommandType::CommandEmergency, None),
        TypeArg::Optimizer => {
            if params.is_empty() {
                bail!("--type optimizer needs at least one --param (lr=..., weight_decay=...)");
            }
            let adj = CommandOptimizerAdjustment { optimizer_id: seed_id.clone(), hyperparameters: params };
            (CommandType::CommandOptimizer, Some(Payload::OptimizerAdjustment(adj)))
        }
        TypeArg::Rollback => {
            let s = |v: &str| Value { kind: Some(Kind::StringValue(v.to_owned())) };
            let mut fields = std::collections::HashMap::from([("seed_id".to_owned(), s(&seed_id))]);
            if let Some(reason) = &args.rationale {
                fields.insert("reason".to_owned(), s(reason));
            }
            (
                CommandType::CommandRollback,
                Some(Payload::RollbackPayload(Struct { fields: fields.into_iter().collect() })),
            )
        }
    };
    let mut command = AdaptationCommand {
        version: leyline::constants::LEYLINE_VERSION,
        command_id: args.command_id.clone().unwrap_or_default(),
        target_seed_id: seed_id,
        execution_deadline_ms: args.deadline_ms,
        issued_by: args.issued_by.clone(),
        payload,
        annotations,
        ..Default::default()
    };
    command.set_command_type(command_type);
    Ok(command)
}

/// A random, practically unique command id (the nonce): `cli-` and 128 random bits in hex.
fn fresh_command_id() -> String {
    let mut rng = rand::rng();
    format!("cli-{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

fn now_timestamp() -> Timestamp {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp { seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX), nanos: now.subsec_nanos() as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        command: CommandArgs,
    }

    fn args(argv: &[&str]) -> CommandArgs {
        Cli::try_parse_from(std::iter::once("sign").chain(argv.iter().copied())).unwrap().command
    }

    #[test]
    fn printed_receipts_escape_bidi_and_control_characters_and_still_parse() {
        let receipt = CommandReceipt {
            command_id: "c-\u{202E}1".into(),
            seed_id: "seed-\u{2066}1\u{7f}".into(),
            reason: "r\u{9b}\u{2028}".into(),
            ..Default::default()
        };
        let text = receipt_text(&receipt).unwrap();
        assert!(
            !text.chars().any(|c| c != '\n' && (c.is_control() || is_bidi_control(c) || c == '\u{2028}')),
            "{text:?}"
        );
        assert!(text.contains("\\u202e") && text.contains("\\u2066") && text.contains("\\u007f"), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["commandId"], receipt.command_id);
        assert_eq!(back["seedId"], receipt.seed_id);
        assert_eq!(back["reason"], receipt.reason);
        let plain = CommandReceipt { command_id: "c-1".into(), seed_id: "seed-1".into(), ..Default::default() };
        assert_eq!(receipt_text(&plain).unwrap(), serde_json::to_string_pretty(&receipt_json(&plain)).unwrap());
    }

    #[test]
    fn germinate_flags_build_a_seed_operation() {
        let a = args(&[
            "--type",
            "seed",
            "--op",
            "germinate",
            "--seed-id",
            "s1",
            "--blueprint",
            "BP001",
            "--slot",
            "hidden2",
            "--param",
            "lr=0.01",
            "--annotation",
            "note=x",
            "--command-id",
            "c-1",
            "--deadline-ms",
            "50",
        ]);
        let c = build_command(&a).unwrap();
        assert_eq!(c.command_type(), CommandType::CommandSeed);
        assert_eq!(c.command_id, "c-1");
        assert_eq!(c.target_seed_id, "s1");
        assert_eq!(c.execution_deadline_ms, 50);
        assert_eq!(c.annotations.get("slot").map(String::as_str), Some("hidden2"));
        assert_eq!(c.annotations.get("note").map(String::as_str), Some("x"));
        let Some(Payload::SeedOperation(op)) = c.payload else { panic!("no seed operation") };
        assert_eq!(op.operation(), SeedOperation::SeedOpGerminate);
        assert_eq!(op.blueprint_id, "BP001");
        assert_eq!(op.parameters.get("lr"), Some(&0.01));
    }

    #[test]
    fn other_types_build_their_payloads() {
        let c = build_command(&args(&["--type", "resume", "--seed-id", "s"])).unwrap();
        assert_eq!(c.command_type(), CommandType::CommandPause);
        assert_eq!(c.annotations.get("resume").map(String::as_str), Some("true"));
        let c = build_command(&args(&["--type", "breaker", "--breaker-state", "half-open"])).unwrap();
        let Some(Payload::CircuitBreaker(cb)) = c.payload else { panic!("no breaker payload") };
        assert_eq!(cb.desired_state(), CircuitBreakerState::CircuitStateHalfOpen);
        let c = build_command(&args(&["--type", "optimizer", "--seed-id", "s", "--param", "lr=0.5"])).unwrap();
        assert!(matches!(c.payload, Some(Payload::OptimizerAdjustment(ref a)) if a.hyperparameters["lr"] == 0.5));
        let c = build_command(&args(&["--type", "rollback", "--seed-id", "s"])).unwrap();
        assert_eq!(c.command_type(), CommandType::CommandRollback);
        let c = build_command(&args(&["--type", "emergency"])).unwrap();
        assert_eq!(c.command_type(), CommandType::CommandEmergency);
        assert!(c.payload.is_none());
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(build_command(&args(&["--type", "pause"])).is_err(), "pause needs a seed id");
        assert!(build_command(&args(&["--type", "seed", "--op", "germinate", "--seed-id", "s"])).is_err());
        assert!(build_command(&args(&["--type", "optimizer", "--seed-id", "s"])).is_err());
        for bad in ["lr", "=1", "lr=x", "lr=inf"] {
            assert!(build_command(&args(&["--type", "optimizer", "--seed-id", "s", "--param", bad])).is_err(), "{bad}");
        }
        assert!(Cli::try_parse_from(["sign", "--type", "seed", "--seed-id", "s"]).is_err(), "--op is required");
        assert!(Cli::try_parse_from(["sign"]).is_err(), "--type or --json is required");
    }

    #[test]
    fn fresh_ids_differ() {
        assert_ne!(fresh_command_id(), fresh_command_id());
    }

    #[test]
    fn receipt_json_keeps_false_and_names_the_stage() {
        let r = CommandReceipt {
            command_id: "c".into(),
            accepted: false,
            reason: "nonce_replayed".into(),
            seed_id: String::new(),
            stage: SeedLifecycleStage::SeedStageTraining as i32,
            ..CommandReceipt::default()
        };
        let j = receipt_json(&r);
        assert_eq!(j["accepted"], false);
        assert_eq!(j["stage"], "SEED_STAGE_TRAINING");
        assert_eq!(j["reason"], "nonce_replayed");
    }
}
