//! The parameter registry itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use candle_core::TensorId;
use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::types::{
    Deregistration, Owner, ParamRef, RegistrationEvent, RegistryConfig, RegistryCounters, Violation, ViolationReason,
};

/// Owner as stored per parameter (seed ids shared, not copied per parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Holder {
    Seed { seed: Arc<str>, lr_group: Arc<str> },
    Teacher,
    Host,
}

impl Holder {
    fn to_owner(&self) -> Owner {
        match self {
            Holder::Seed { seed, .. } => Owner::Seed(seed.to_string()),
            Holder::Teacher => Owner::Teacher,
            Holder::Host => Owner::Host,
        }
    }
}

#[derive(Debug, Default)]
struct SeedRecord {
    /// The seed's parameters in registration order.
    params: Vec<TensorId>,
}

#[derive(Debug, Default)]
struct Inner {
    owners: HashMap<TensorId, Holder>,
    seeds: HashMap<Arc<str>, SeedRecord>,
    violations: HashMap<String, u32>,
    counters: RegistryCounters,
}

/// Ownership of trainable parameters by seed, with a teacher fence and host parameters no seed may claim.
///
/// All methods take `&self`; state sits behind a [`parking_lot::RwLock`], so one registry can be shared across
/// threads (`Arc<ParameterRegistry>`). [`validate_update`](Self::validate_update) only takes the read lock unless it
/// has a violation to count.
#[derive(Debug)]
pub struct ParameterRegistry {
    config: RegistryConfig,
    inner: RwLock<Inner>,
}

impl Default for ParameterRegistry {
    fn default() -> Self {
        Self { config: RegistryConfig::default(), inner: RwLock::new(Inner::default()) }
    }
}

/// Collect unique ids in the given order, refusing non-trainable tensors.
fn unique_ids<P: ParamRef>(params: &[P]) -> Result<Vec<TensorId>> {
    let mut seen = HashSet::with_capacity(params.len());
    let mut ids = Vec::with_capacity(params.len());
    for p in params {
        let id = p.param_id();
        if !p.is_trainable() {
            return Err(Error::NotTrainable { param: id });
        }
        if seen.insert(id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

impl ParameterRegistry {
    /// A registry with the given settings; a zero violation threshold is refused.
    pub fn new(config: RegistryConfig) -> Result<Self> {
        if config.violation_threshold == 0 {
            return Err(Error::InvalidConfig { field: "violation_threshold", reason: "must be at least 1" });
        }
        Ok(Self { config, inner: RwLock::new(Inner::default()) })
    }

    /// The settings in use.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Register host parameters, which no seed may claim afterwards. Idempotent; returns how many were new.
    ///
    /// Refused (atomically) if a parameter belongs to a seed or to the teacher.
    pub fn register_host<P: ParamRef>(&self, params: &[P]) -> Result<usize> {
        self.register_fenced(params, Holder::Host)
    }

    /// Fence the teacher's trainable parameters: afterwards no seed can claim them, no update may touch them, and
    /// they can never be released. Idempotent; returns how many were new. An empty list is accepted (a frozen
    /// teacher has no trainable parameters).
    ///
    /// Refused (atomically) if a parameter belongs to a seed or to the host.
    pub fn register_teacher<P: ParamRef>(&self, params: &[P]) -> Result<usize> {
        self.register_fenced(params, Holder::Teacher)
    }

    fn register_fenced<P: ParamRef>(&self, params: &[P], holder: Holder) -> Result<usize> {
        let ids = unique_ids(params)?;
        let mut inner = self.inner.write();
        let claimant = holder.to_owner();
        let mut conflict: Option<(TensorId, Owner)> = None;
        let mut conflicts = 0;
        for id in &ids {
            if let Some(existing) = inner.owners.get(id).filter(|h| **h != holder) {
                conflicts += 1;
                conflict.get_or_insert_with(|| (*id, existing.to_owner()));
            }
        }
        if let Some((param, owner)) = conflict {
            return Err(Error::OwnershipConflict { claimant, param, owner, conflicts });
        }
        let mut added = 0;
        for id in ids {
            if inner.owners.insert(id, holder.clone()).is_none() {
                added += 1;
            }
        }
        Ok(added)
    }

    /// Register `params` as owned by `seed_id` in learning-rate group `lr_group` (use [`DEFAULT_LR_GROUP`] when there
    /// is no better name).
    ///
    /// Atomic: on any conflict nothing is registered. Idempotent for the same owner (parameters the seed already
    /// holds count as `already_registered`). Refused when the list is empty, a tensor is not a trainable variable,
    /// a parameter belongs to another seed, the teacher or the host, or a held parameter would change group.
    ///
    /// [`DEFAULT_LR_GROUP`]: crate::DEFAULT_LR_GROUP
    pub fn register_seed<P: ParamRef>(&self, seed_id: &str, params: &[P], lr_group: &str) -> Result<RegistrationEvent> {
        if seed_id.is_empty() {
            return Err(Error::EmptySeedId);
        }
        if lr_group.is_empty() {
            return Err(Error::EmptyLrGroup { seed_id: seed_id.to_owned() });
        }
        if params.is_empty() {
            return Err(Error::EmptyParameterList { seed_id: seed_id.to_owned() });
        }
        let ids = unique_ids(params)?;
        let mut inner = self.inner.write();

        // Check everything first: nothing is written unless every parameter is free or already ours.
        let mut fresh = Vec::with_capacity(ids.len());
        let mut already = 0;
        let mut conflict: Option<(TensorId, Owner)> = None;
        let mut conflicts = 0;
        let (mut teacher, mut host, mut foreign) = (0u64, 0u64, 0u64);
        for id in &ids {
            match inner.owners.get(id) {
                None => fresh.push(*id),
                Some(Holder::Seed { seed, lr_group: group }) if &**seed == seed_id => {
                    if &**group != lr_group {
                        return Err(Error::LrGroupConflict {
                            seed_id: seed_id.to_owned(),
                            param: *id,
                            existing: group.to_string(),
                            requested: lr_group.to_owned(),
                        });
                    }
                    already += 1;
                }
                Some(other) => {
                    match other {
                        Holder::Teacher => teacher += 1,
                        Holder::Host => host += 1,
                        Holder::Seed { .. } => foreign += 1,
                    }
                    conflicts += 1;
                    conflict.get_or_insert_with(|| (*id, other.to_owner()));
                }
            }
        }
        if let Some((param, owner)) = conflict {
            let c = &mut inner.counters;
            c.teacher_claim_attempts += u64::from(teacher > 0);
            c.host_claim_attempts += u64::from(host > 0);
            c.foreign_claim_attempts += u64::from(foreign > 0);
            return Err(Error::OwnershipConflict {
                claimant: Owner::Seed(seed_id.to_owned()),
                param,
                owner,
                conflicts,
            });
        }

        let seed_key: Arc<str> = match inner.seeds.get_key_value(seed_id) {
            Some((k, _)) => Arc::clone(k),
            None => Arc::from(seed_id),
        };
        let group: Arc<str> = Arc::from(lr_group);
        for id in &fresh {
            inner.owners.insert(*id, Holder::Seed { seed: Arc::clone(&seed_key), lr_group: Arc::clone(&group) });
        }
        let record = inner.seeds.entry(seed_key).or_default();
        record.params.extend_from_slice(&fresh);
        let total_params = record.params.len();
        inner.counters.registrations += 1;
        inner.counters.double_registration_attempts += already as u64;
        Ok(RegistrationEvent {
            seed_id: seed_id.to_owned(),
            lr_group: lr_group.to_owned(),
            newly_registered: fresh.len(),
            already_registered: already,
            total_params,
        })
    }

    /// Release every parameter of `seed_id` and clear its violation count. `None` if the seed held nothing (its
    /// violation count, if any, is still cleared).
    pub fn deregister_seed(&self, seed_id: &str) -> Option<Deregistration> {
        let mut inner = self.inner.write();
        let violations_cleared = inner.violations.remove(seed_id).unwrap_or(0);
        let record = inner.seeds.remove(seed_id)?;
        for id in &record.params {
            inner.owners.remove(id);
        }
        Some(Deregistration { seed_id: seed_id.to_owned(), released: record.params.len(), violations_cleared })
    }

    /// Hand every parameter of `seed_id` to the host (fossilization: the seed becomes part of the model and its
    /// parameters train with the host's). Returns how many moved; the seed record and violation count are removed.
    pub fn transfer_to_host(&self, seed_id: &str) -> Result<usize> {
        let mut inner = self.inner.write();
        let Some(record) = inner.seeds.remove(seed_id) else {
            return Err(Error::UnknownSeed { seed_id: seed_id.to_owned() });
        };
        inner.violations.remove(seed_id);
        for id in &record.params {
            inner.owners.insert(*id, Holder::Host);
        }
        Ok(record.params.len())
    }

    /// The owner of a parameter, if anyone registered it.
    pub fn owner_of<P: ParamRef + ?Sized>(&self, param: &P) -> Option<Owner> {
        self.inner.read().owners.get(&param.param_id()).map(Holder::to_owner)
    }

    /// The learning-rate group of a seed parameter (`None` for unowned, host and teacher parameters).
    pub fn lr_group_of<P: ParamRef + ?Sized>(&self, param: &P) -> Option<String> {
        match self.inner.read().owners.get(&param.param_id()) {
            Some(Holder::Seed { lr_group, .. }) => Some(lr_group.to_string()),
            _ => None,
        }
    }

    /// Whether `seed_id` holds at least one parameter.
    pub fn is_registered(&self, seed_id: &str) -> bool {
        self.inner.read().seeds.contains_key(seed_id)
    }

    /// The parameters of `seed_id` in registration order (empty for an unknown seed).
    pub fn params_of(&self, seed_id: &str) -> Vec<TensorId> {
        self.inner.read().seeds.get(seed_id).map(|r| r.params.clone()).unwrap_or_default()
    }

    /// The parameters of `seed_id` by learning-rate group (empty for an unknown seed).
    pub fn lr_groups(&self, seed_id: &str) -> BTreeMap<String, Vec<TensorId>> {
        let inner = self.inner.read();
        let mut groups: BTreeMap<String, Vec<TensorId>> = BTreeMap::new();
        if let Some(record) = inner.seeds.get(seed_id) {
            for id in &record.params {
                if let Some(Holder::Seed { lr_group, .. }) = inner.owners.get(id) {
                    groups.entry(lr_group.to_string()).or_default().push(*id);
                }
            }
        }
        groups
    }

    /// Every learning-rate group in use across seeds, with its parameter count (`registered_parameter_groups`).
    pub fn parameter_groups(&self) -> BTreeMap<String, usize> {
        let inner = self.inner.read();
        let mut groups = BTreeMap::new();
        for holder in inner.owners.values() {
            if let Holder::Seed { lr_group, .. } = holder {
                *groups.entry(lr_group.to_string()).or_insert(0) += 1;
            }
        }
        groups
    }

    /// The registered seeds, sorted.
    pub fn seeds(&self) -> Vec<String> {
        let mut seeds: Vec<String> = self.inner.read().seeds.keys().map(|s| s.to_string()).collect();
        seeds.sort_unstable();
        seeds
    }

    /// Number of fenced teacher parameters.
    pub fn teacher_param_count(&self) -> usize {
        self.inner.read().owners.values().filter(|h| matches!(h, Holder::Teacher)).count()
    }

    /// Number of host parameters.
    pub fn host_param_count(&self) -> usize {
        self.inner.read().owners.values().filter(|h| matches!(h, Holder::Host)).count()
    }

    /// Total number of parameters tracked (seeds, teacher and host).
    pub fn len(&self) -> usize {
        self.inner.read().owners.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.inner.read().owners.is_empty()
    }

    /// Check that `seed_id` may update `params` (call before every optimizer step).
    ///
    /// Checks, in order: no teacher parameter (`teacher_param`), the seed is registered (`seed_unregistered`), every
    /// parameter is registered (`unregistered_param`), every parameter belongs to this seed (`foreign_owner`, which
    /// includes host parameters). An empty list is accepted. Each refusal increments the seed's violation count; the
    /// returned [`Violation`] says whether the count reached the configured threshold. Registry state other than the
    /// counters is never changed.
    pub fn validate_update<P: ParamRef>(&self, seed_id: &str, params: &[P]) -> Result<(), Violation> {
        let found = {
            let inner = self.inner.read();
            Self::find_violation(&inner, seed_id, params)
        };
        let Some((reason, param, offending)) = found else {
            return Ok(());
        };
        let mut inner = self.inner.write();
        inner.counters.ownership_violations += 1;
        let count = {
            let slot = inner.violations.entry(seed_id.to_owned()).or_insert(0);
            *slot = slot.saturating_add(1);
            *slot
        };
        let threshold = self.config.violation_threshold;
        Err(Violation {
            seed_id: seed_id.to_owned(),
            reason,
            param,
            offending,
            count,
            threshold,
            threshold_reached: count >= threshold,
        })
    }

    fn find_violation<P: ParamRef>(
        inner: &Inner,
        seed_id: &str,
        params: &[P],
    ) -> Option<(ViolationReason, Option<TensorId>, usize)> {
        let mut first = [None::<TensorId>; 3];
        let mut counts = [0usize; 3];
        const TEACHER: usize = 0;
        const UNOWNED: usize = 1;
        const FOREIGN: usize = 2;
        for p in params {
            let id = p.param_id();
            let kind = match inner.owners.get(&id) {
                Some(Holder::Seed { seed, .. }) if &**seed == seed_id => continue,
                Some(Holder::Teacher) => TEACHER,
                None => UNOWNED,
                Some(Holder::Seed { .. } | Holder::Host) => FOREIGN,
            };
            counts[kind] += 1;
            first[kind].get_or_insert(id);
        }
        if counts[TEACHER] > 0 {
            return Some((ViolationReason::TeacherParam, first[TEACHER], counts[TEACHER]));
        }
        if !params.is_empty() && !inner.seeds.contains_key(seed_id) {
            return Some((ViolationReason::SeedUnregistered, None, 0));
        }
        if counts[UNOWNED] > 0 {
            return Some((ViolationReason::UnregisteredParam, first[UNOWNED], counts[UNOWNED]));
        }
        if counts[FOREIGN] > 0 {
            return Some((ViolationReason::ForeignOwner, first[FOREIGN], counts[FOREIGN]));
        }
        None
    }

    /// The violation count of `seed_id` (0 if none).
    pub fn violations(&self, seed_id: &str) -> u32 {
        self.inner.read().violations.get(seed_id).copied().unwrap_or(0)
    }

    /// Reset the violation count of `seed_id`, returning the old count.
    pub fn reset_violations(&self, seed_id: &str) -> u32 {
        self.inner.write().violations.remove(seed_id).unwrap_or(0)
    }

    /// The registry's running counters.
    pub fn counters(&self) -> RegistryCounters {
        self.inner.read().counters
    }
}
