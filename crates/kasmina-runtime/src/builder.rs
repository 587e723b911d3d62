//! [`KasminaBuilder`]: assembles a runtime from its parts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use candle_core::{Device, Var};
use candle_nn::VarMap;
use kasmina_registry::ParameterRegistry;
use kasmina_safety::{MonotonicTimer, PauseQuota, PauseQuotaConfig};
use kasmina_security::{CommandVerifier, KeyRing, VerifierConfig};
use kasmina_telemetry::{NullSink, Telemetry, TelemetryAssembler, TelemetryConfig};
use parking_lot::{Mutex, RwLock};

use crate::blueprint::{BlueprintRuntime, builtin};
use crate::breakers::Breakers;
use crate::clock::{self, Wall};
use crate::config::KasminaConfig;
use crate::error::{Error, Result};
use crate::handle::Kasmina;
use crate::memory::Memory;
use crate::state::{Core, Inner};

/// Builds a [`Kasmina`].
#[derive(Debug)]
pub struct KasminaBuilder {
    config: KasminaConfig,
    device: Device,
    keys: Option<KeyRing>,
    verifier_config: Option<VerifierConfig>,
    blueprints: Option<Arc<dyn BlueprintRuntime>>,
    telemetry: Option<Telemetry>,
    host_vars: Vec<(String, Var)>,
    clock: Option<quanta::Clock>,
    wall: Option<Wall>,
}

impl Default for KasminaBuilder {
    fn default() -> Self {
        Self {
            config: KasminaConfig::default(),
            device: Device::Cpu,
            keys: None,
            verifier_config: None,
            blueprints: None,
            telemetry: None,
            host_vars: Vec::new(),
            clock: None,
            wall: None,
        }
    }
}

impl Kasmina {
    /// A builder with the defaults: CPU, [`KasminaConfig::default`], keys from
    /// `ESPER_LEYLINE_SECRET` (none: every signed command is refused), the built-in blueprints
    /// in a temporary directory owned by the runtime, telemetry dropped.
    pub fn builder() -> KasminaBuilder {
        KasminaBuilder::default()
    }
}

impl KasminaBuilder {
    /// The device seeds live on (CPU by default; CUDA with the `cuda` feature).
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Settings.
    pub fn config(mut self, config: KasminaConfig) -> Self {
        self.config = config;
        self
    }

    /// The key ring signed commands are verified with.
    pub fn signing_keys(mut self, keys: KeyRing) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Envelope settings (freshness window, nonce TTL, size limit).
    pub fn verifier_config(mut self, config: VerifierConfig) -> Self {
        self.verifier_config = Some(config);
        self
    }

    /// Where blueprints come from (default: the built-in library, written to a temporary
    /// directory the runtime owns and removes when it is dropped).
    pub fn blueprints(mut self, runtime: impl BlueprintRuntime + 'static) -> Self {
        self.blueprints = Some(Arc::new(runtime));
        self
    }

    /// Where telemetry goes.
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// The host model's parameters with their names: registered as the host's (a seed can never
    /// claim one) and watched by every seed's isolation monitor.
    pub fn host_vars(mut self, vars: impl IntoIterator<Item = (String, Var)>) -> Self {
        self.host_vars.extend(vars);
        self.host_vars.sort_by(|a, b| a.0.cmp(&b.0));
        self
    }

    /// The host model's parameters from a candle `VarMap`.
    pub fn host_varmap(self, varmap: &VarMap) -> Self {
        let vars: Vec<(String, Var)> =
            varmap.data().lock().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
        self.host_vars(vars)
    }

    /// The monotonic clock (embargo, breakers, nonce TTL, deadlines); inject
    /// `quanta::Clock::mock()` in tests.
    pub fn clock(mut self, clock: quanta::Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The wall clock (command freshness, timestamps).
    pub fn wall_clock(mut self, wall: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.wall = Some(clock::from_fn(wall));
        self
    }

    /// Builds the runtime.
    pub fn build(self) -> Result<Kasmina> {
        self.config.validate()?;
        let clock = self.clock.unwrap_or_default();
        let wall = self.wall.unwrap_or_else(clock::system);
        let keys = match self.keys {
            Some(k) => k,
            None => KeyRing::from_env()?,
        };
        let verifier_config = self.verifier_config.unwrap_or_else(|| {
            let mut c = VerifierConfig::default();
            c.max_command_bytes = self.config.max_command_bytes;
            c
        });
        let verifier = CommandVerifier::with_config(keys, verifier_config)?
            .with_wall_clock(wall.clone())
            .with_monotonic_clock(clock.clone());
        let (blueprints, blueprint_dir): (Arc<dyn BlueprintRuntime>, _) = match self.blueprints {
            Some(b) => (b, None),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("kasmina-blueprints-")
                    .tempdir()
                    .map_err(|source| Error::Io { path: std::env::temp_dir(), source })?;
                (Arc::new(builtin::write_library(dir.path(), &[], 0)?), Some(dir))
            }
        };
        let telemetry = match self.telemetry {
            Some(t) => t,
            None => Telemetry::new(NullSink, TelemetryConfig::default())?,
        };
        let registry = ParameterRegistry::new(kasmina_registry::RegistryConfig {
            violation_threshold: self.config.violation_threshold,
        })?;
        if !self.host_vars.is_empty() {
            let vars: Vec<Var> = self.host_vars.iter().map(|(_, v)| v.clone()).collect();
            registry.register_host(&vars)?;
        }
        let pause_quota = PauseQuota::new(
            PauseQuotaConfig {
                passes_per_pause: u32::try_from(self.config.pause_quota).unwrap_or(u32::MAX),
                ..PauseQuotaConfig::default()
            },
            clock.clone(),
        )?;
        let inner = Inner {
            memory: Memory::new(&self.config, clock.clone())?,
            breakers: Breakers::new(clock.clone())?,
            assembler: TelemetryAssembler::new(wall.clone()),
            timer: MonotonicTimer::new(clock.clone()),
            config: self.config,
            device: self.device,
            clock,
            wall,
            blueprints,
            _blueprint_dir: blueprint_dir,
            verifier,
            telemetry,
            registry,
            pause_quota,
            host_vars: self.host_vars,
            slots: RwLock::new(Vec::new()),
            evaluating: Arc::new(AtomicBool::new(false)),
            core: Mutex::new(Core::default()),
            device_reads: Default::default(),
            queue: Mutex::new(VecDeque::new()),
            teacher: Mutex::new(None),
            rejections: Mutex::new(Default::default()),
        };
        Ok(Kasmina { inner: Arc::new(inner) })
    }
}
