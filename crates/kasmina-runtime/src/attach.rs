//! Germination (decisions D3, D10): G0 — whose last check fetches the kernel (through the cache
//! and the `kernel_fetch` breaker, timed against its budget, falling back when it must) and runs
//! it once on a probe input of the slot's layout — then the seed's own kernel with registered
//! parameters, an optimiser and an armed isolation monitor.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use candle_core::{Device, Tensor, Var};
use candle_nn::optim::{Optimizer, ParamsAdamW};
use kasmina_isolation::{AlphaController, IsolationMonitor, Layout, MonitorConfig, finite_check};
use kasmina_lifecycle::gates::{
    GateContext, GateReason, GerminatedEvidence, LazyProbe, SanityEvidence, ShapeProbe, evaluate_g1_germinated,
};
use kasmina_lifecycle::{GateEvidence, LifecycleConfig, SeedLifecycle};
use kasmina_telemetry::names;
use leyline::{SeedLifecycleStage as Stage, TelemetryLevel};

use crate::blueprint::{KernelArtifact, SeedKernel, builtin};
use crate::breakers::BreakerName;
use crate::memory::Memory;
use crate::optim::AdamW;
use crate::readout::Readout;
use crate::receipt::Refusal;
use crate::seed::{Attached, CullCause, Effects, Health, History, Live, Phase, Seed, StageState};
use crate::slot::SlotCell;
use crate::state::{Inner, Outbox};

/// A germination request, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Germinate {
    pub(crate) seed_id: String,
    pub(crate) blueprint_id: String,
    pub(crate) parameters: BTreeMap<String, f32>,
}

/// What an attach that failed observed (G1's evidence at germination).
#[derive(Debug, Clone)]
struct AttachFailure {
    evidence: GerminatedEvidence,
    /// The blueprint that served, when a kernel was fetched.
    blueprint_id: String,
}

/// The kernel G0's probe fetched and built: what the attach then uses.
struct Prepared {
    fetched: Fetched,
    /// The seed's own instance; `None` when the artefact could not be instantiated.
    kernel: Option<SeedKernel>,
    /// Events of the fetch (cache, breaker, fallback).
    events: Outbox,
}

/// A fetched artefact and how it came.
struct Fetched {
    artifact: Arc<KernelArtifact>,
    fallback_used: bool,
    latency_ms: f64,
}

impl Inner {
    /// DORMANT → GERMINATED through G0 in `cell` (free, not locked by the caller), then the
    /// kernel. G0 refusing changes nothing; an attach that fails culls the new seed.
    pub(crate) fn germinate(&self, cell: &SlotCell, req: &Germinate, out: &mut Outbox) -> Result<Stage, Refusal> {
        let descriptor = self.memory.descriptor(self.blueprints.as_ref(), &req.blueprint_id);
        let already_live = self.seed_is_live(&req.seed_id);
        let config = LifecycleConfig { embargo: self.config.embargo, ..LifecycleConfig::default() };
        let mut lifecycle =
            SeedLifecycle::new(&req.seed_id, self.clock.clone(), config).with_wall_clock(self.wall.clone());
        let prepared: RefCell<Option<Prepared>> = RefCell::new(None);
        let probe = || {
            let prep = self.prepare(&req.seed_id, &req.blueprint_id, cell);
            let verdict =
                prep.kernel.as_ref().map(|k| shape_probe(k, cell.layout, cell.width, &self.device, &self.device_reads));
            *prepared.borrow_mut() = Some(prep);
            verdict
        };
        let evidence = SanityEvidence {
            blueprint_id: &req.blueprint_id,
            blueprint: descriptor.as_ref(),
            parameters: &req.parameters,
            seed_already_live: already_live,
            shape_probe: Some(LazyProbe(&probe)),
        };
        let g0 = lifecycle.guarded_transition(Stage::SeedStageGerminated, &GateEvidence::Sanity(evidence));
        let prepared = prepared.into_inner();
        if let Some(p) = &prepared {
            out.events.extend(p.events.events.iter().cloned());
        }
        let g0 = match g0 {
            Ok(outcome) => outcome.gate_event,
            Err(kasmina_lifecycle::Error::GateFailed { reason, event, .. }) => {
                // G0 at DORMANT: the seed never existed; nothing to cull, nothing attached,
                // nothing changes.
                out.events.push(crate::events::gate_event(&event));
                return Err(Refusal::Gate(reason));
            }
            Err(_) => return Err(Refusal::IllegalTransition),
        };
        let mut seed = Seed {
            id: req.seed_id.clone(),
            blueprint_id: req.blueprint_id.clone(),
            lifecycle,
            state: StageState::Dormant,
            history: History {
                stages: vec![Stage::SeedStageDormant, Stage::SeedStageGerminated],
                ..History::default()
            },
            epochs: 0,
            risk: descriptor.as_ref().map(|d| d.risk).unwrap_or(0.0),
        };
        let mut fx = Effects::default();
        if let Some(e) = g0 {
            seed.record_gate(e, &mut fx);
        }
        let cx = self.cx(&cell.name, &req.seed_id);
        seed.emit_stage(&cell.name, &mut fx);
        let prepared = prepared.unwrap_or_else(|| self.prepare(&req.seed_id, &req.blueprint_id, cell));
        match self.attach(&seed.id, prepared, cell.width, &req.parameters, out) {
            Ok(live) => {
                seed.history.kernel_blueprint_id = live.attached.blueprint_id.clone();
                seed.history.fallback_used = live.attached.fallback_used;
                seed.state = StageState::Live(live);
            }
            Err(failure) => {
                seed.history.kernel_blueprint_id = failure.blueprint_id.clone();
                let ctx =
                    GateContext { seed_id: &seed.id, from: seed.stage(), to: Stage::SeedStageTraining, at: cx.wall };
                let g1 = evaluate_g1_germinated(&ctx, &failure.evidence);
                let cause = match GateReason::from_wire(&g1.reason) {
                    Some(reason) if !g1.passed => CullCause::Gate(reason),
                    _ => CullCause::AttachFailed,
                };
                seed.record_gate(g1, &mut fx);
                seed.cull(cause, &cx, &mut fx);
            }
        }
        let stage = seed.stage();
        let mut slot_seed = cell.seed.lock();
        let seed = slot_seed.insert(seed);
        self.perform(cell, seed, fx, None, &cx, out);
        Ok(stage)
    }

    /// Fetches the kernel for `cell` and builds the seed's own instance of it.
    fn prepare(&self, seed_id: &str, blueprint_id: &str, cell: &SlotCell) -> Prepared {
        let mut events = Outbox::default();
        let fetched = self.fetch(seed_id, blueprint_id, cell.width, cell.layout, &mut events);
        let kernel = SeedKernel::instantiate(&fetched.artifact, &self.device).ok();
        Prepared { fetched, kernel, events }
    }

    /// Attaches a prepared kernel: registered parameters, its own optimiser, an armed isolation
    /// monitor.
    fn attach(
        &self,
        seed_id: &str,
        prepared: Prepared,
        width: usize,
        params: &BTreeMap<String, f32>,
        out: &mut Outbox,
    ) -> Result<Box<Live>, AttachFailure> {
        let Prepared { fetched, kernel, .. } = prepared;
        let fail = |attached: bool, registered: bool, conflict: bool| AttachFailure {
            evidence: GerminatedEvidence {
                kernel_attached: attached,
                parameters_registered: registered,
                registration_conflict: conflict,
                isolation_armed: false,
                isolation_violations: 0,
            },
            blueprint_id: fetched.artifact.blueprint_id.clone(),
        };
        let kernel = Arc::new(kernel.ok_or_else(|| fail(false, false, false))?);
        let vars = kernel.vars();
        let registered = self.register(seed_id, &vars, out).map_err(|()| fail(true, false, true))?;
        self.memory.lease(seed_id, Memory::key(&fetched.artifact.blueprint_id, width));
        let monitor_config = MonitorConfig {
            sample_every: self.config.isolation_sample_every,
            grad_norms: false,
            ..MonitorConfig::default()
        };
        let monitor = IsolationMonitor::new(self.host_vars.clone(), kernel.named_vars().to_vec(), monitor_config)
            .map(|m| m.with_clock(self.clock.clone()))
            .map_err(|_| fail(true, registered, false))?;
        let lr = params.get("lr").map(|v| f64::from(*v)).unwrap_or(self.config.seed_learning_rate);
        let wd = params.get("weight_decay").map(|v| f64::from(*v)).unwrap_or(self.config.seed_weight_decay);
        let optimizer = AdamW::new(vars, ParamsAdamW { lr, weight_decay: wd, ..ParamsAdamW::default() })
            .map_err(|_| fail(true, registered, false))?;
        let alpha_template = AlphaController::new(self.config.alpha_curve, self.config.blending_steps)
            .map_err(|_| fail(true, registered, false))?;
        Ok(Box::new(Live {
            attached: Attached {
                kernel,
                blueprint_id: fetched.artifact.blueprint_id.clone(),
                optimizer,
                monitor,
                fallback_used: fetched.fallback_used,
                fetch_latency_ms: fetched.latency_ms,
                registered,
            },
            alpha_template,
            phase: Phase::Germinated,
            pause: None,
            health: Health::default(),
        }))
    }

    /// Registers the seed's parameters; `Err` on a conflict (a host or another seed's).
    fn register(&self, seed_id: &str, vars: &[Var], out: &mut Outbox) -> Result<bool, ()> {
        if vars.is_empty() {
            return Ok(true);
        }
        match self.registry.register_seed(seed_id, vars, kasmina_registry::DEFAULT_LR_GROUP) {
            Ok(reg) => {
                out.events.push(names::PARAMETER_REGISTRATION.event_with([
                    ("seed_id", reg.seed_id.clone()),
                    ("lr_group", reg.lr_group.clone()),
                    ("params", reg.total_params.to_string()),
                ]));
                Ok(true)
            }
            Err(e) => {
                out.events.push(names::PARAMETER_REGISTRATION.event_at(
                    TelemetryLevel::Warning,
                    [
                        ("seed_id", seed_id.to_owned()),
                        ("error", "registry_conflict".to_owned()),
                        ("reason", e.to_string()),
                    ],
                ));
                Err(())
            }
        }
    }

    /// The kernel fetch of D10: cache by (blueprint, width), breaker-protected, timed against
    /// the budget; falls back to the configured blueprint, then to identity. A fallback is never
    /// cached under the requested key.
    fn fetch(&self, seed_id: &str, requested: &str, width: usize, layout: Layout, out: &mut Outbox) -> Fetched {
        if let Some(hit) = self.memory.kernel(requested, width) {
            return Fetched { artifact: hit, fallback_used: false, latency_ms: 0.0 };
        }
        let mut latency_ms = 0.0;
        let reason = if self.breakers.admit(BreakerName::KernelFetch, &mut out.events) {
            let watch = self.timer.start();
            let result = self.blueprints.fetch(requested, width, &self.device);
            latency_ms = watch.elapsed_ms();
            self.core.lock().last_fetch_ms = latency_ms;
            out.events.push(names::KERNEL_FETCH.event_with([
                ("seed_id", seed_id.to_owned()),
                ("blueprint_id", requested.to_owned()),
                ("latency_ms", format!("{latency_ms:.3}")),
                ("cache", "miss".to_owned()),
            ]));
            match result {
                Ok(artifact) if latency_ms <= self.config.fetch_latency_budget_ms => {
                    self.breakers.success(BreakerName::KernelFetch, &mut out.events);
                    let artifact = Arc::new(artifact);
                    self.memory.insert_kernel(width, artifact.clone());
                    return Fetched { artifact, fallback_used: false, latency_ms };
                }
                Ok(_) => {
                    let step = self.core.lock().step;
                    self.core.lock().latency_breach_step = Some(step);
                    self.breakers.failure(BreakerName::KernelFetch, "latency_budget_exceeded", &mut out.events);
                    "latency_budget_exceeded"
                }
                Err(_) => {
                    self.breakers.failure(BreakerName::KernelFetch, "fetch_error", &mut out.events);
                    "fetch_error"
                }
            }
        } else {
            "breaker_denied"
        };
        let artifact = self.fallback(seed_id, requested, (width, layout), reason, out);
        Fetched { artifact, fallback_used: true, latency_ms }
    }

    /// The configured fallback blueprint, else the identity, skipping one whose kernel does not
    /// serve the slot's layout (a dense fallback for an image slot would only fail G0's probe).
    fn fallback(
        &self,
        seed_id: &str,
        requested: &str,
        (width, layout): (usize, Layout),
        reason: &str,
        out: &mut Outbox,
    ) -> Arc<KernelArtifact> {
        let candidates = [self.config.fallback_blueprint.as_str(), builtin::IDENTITY];
        let found = candidates.into_iter().filter(|f| *f != requested).find_map(|fallback| {
            let artifact = self
                .memory
                .kernel(fallback, width)
                .or_else(|| self.blueprints.fetch(fallback, width, &self.device).ok().map(Arc::new))?;
            artifact.kind.family().serves(layout).then_some((fallback, artifact))
        });
        let (fallback, artifact) =
            found.unwrap_or_else(|| (builtin::IDENTITY, Arc::new(KernelArtifact::identity(builtin::IDENTITY, width))));
        out.events.push(names::FALLBACK_APPLIED.event_with([
            ("seed_id", seed_id.to_owned()),
            ("requested", requested.to_owned()),
            ("fallback", fallback.to_owned()),
            ("reason", reason.to_owned()),
        ]));
        self.memory.insert_kernel(width, artifact.clone());
        artifact
    }
}

/// G0's shape probe: the kernel's delta on a fixed input of the slot's layout (deterministic
/// values, so probing consumes no random numbers) must have the input's shape, dtype and device,
/// and be finite.
fn shape_probe(kernel: &SeedKernel, layout: Layout, width: usize, device: &Device, reads: &AtomicU64) -> ShapeProbe {
    let shape = layout.probe_shape(width);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.618_034).sin()).collect();
    let Ok(input) = Tensor::from_vec(values, shape.as_slice(), device) else {
        return ShapeProbe::Mismatch { expected: shape, actual: None };
    };
    match kernel.delta(&input) {
        Err(_) => ShapeProbe::Mismatch { expected: shape, actual: None },
        Ok(delta) if delta.dims() != shape.as_slice() || delta.dtype() != input.dtype() => {
            ShapeProbe::Mismatch { expected: shape, actual: Some(delta.dims().to_vec()) }
        }
        Ok(delta) if !delta.device().same_device(device) => {
            ShapeProbe::Mismatch { expected: shape, actual: Some(delta.dims().to_vec()) }
        }
        Ok(delta) => {
            let mut readout = Readout::default();
            let finite = finite_check(&delta).map_err(crate::Error::from).and_then(|c| {
                let at = readout.push(&c);
                Ok(readout.read(reads)?.one(&at) == 0.0)
            });
            if matches!(finite, Ok(true)) { ShapeProbe::Matched } else { ShapeProbe::NotFinite }
        }
    }
}
