//! One seed's lifecycle: the current stage, its bounded history, gated moves and the timed embargo.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kasmina_clock::WallClock;
use leyline::GateEvent;
use leyline::SeedLifecycleGate as Gate;
use leyline::SeedLifecycleStage as Stage;
use quanta::{Clock, Instant};

use crate::gates::{self, GateContext, GateEvidence};
use crate::table::{self, MoveKind};
use crate::{Error, Result};

/// Default embargo after a cull (decisions D5).
pub const DEFAULT_EMBARGO: Duration = Duration::from_secs(30);
/// Default number of transitions a lifecycle remembers.
pub const DEFAULT_HISTORY_CAPACITY: usize = 32;
/// History slots allocated up front (a happy path makes eight moves); it grows up to the capacity.
const INITIAL_HISTORY_ALLOCATION: usize = 8;

/// Settings of a [`SeedLifecycle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleConfig {
    /// How long a culled seed stays EMBARGOED before it may be reset ([`DEFAULT_EMBARGO`]).
    pub embargo: Duration,
    /// How many transitions the history keeps; 0 keeps none ([`DEFAULT_HISTORY_CAPACITY`]).
    pub history_capacity: usize,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self { embargo: DEFAULT_EMBARGO, history_capacity: DEFAULT_HISTORY_CAPACITY }
    }
}

/// One move a seed made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRecord {
    /// The stage left.
    pub from: Stage,
    /// The stage entered.
    pub to: Stage,
    /// When, on the lifecycle's monotonic clock.
    pub at: Instant,
    /// The gate that passed for it, `None` for an ungated move.
    pub gate: Option<Gate>,
}

/// One move of a [`SavedLifecycle`]: when is how long before the save it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedTransition {
    /// The stage left.
    pub from: Stage,
    /// The stage entered.
    pub to: Stage,
    /// How long before the save.
    pub ago: Duration,
    /// The gate that passed for it, `None` for an ungated move.
    pub gate: Option<Gate>,
}

/// A [`SeedLifecycle`] as a checkpoint keeps it (decisions D13): durations instead of instants,
/// so another process, on another clock, resumes it with the time that was left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedLifecycle {
    /// The seed.
    pub seed_id: String,
    /// Its stage.
    pub stage: Stage,
    /// The remembered moves, oldest first.
    pub history: Vec<SavedTransition>,
    /// Moves made in all.
    pub transitions: u64,
    /// Time spent in the current stage.
    pub in_stage: Duration,
    /// EMBARGOED: how long the embargo had lasted.
    pub embargo_elapsed: Option<Duration>,
    /// EMBARGOED: how long it had left.
    pub embargo_remaining: Option<Duration>,
    /// Why the seed was culled, from the cull until it is DORMANT again.
    pub cull_reason: Option<String>,
}

/// What a successful move did.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionOutcome {
    /// The move, as recorded in the history.
    pub record: TransitionRecord,
    /// The gate event to emit (`passed == true`), for a gated move.
    pub gate_event: Option<GateEvent>,
    /// The embargo event to emit, for a move into or out of EMBARGOED.
    pub embargo_event: Option<EmbargoEvent>,
}

/// Embargo boundaries, returned for the runtime to emit as `embargo_start` / `embargo_end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbargoEvent {
    /// The seed entered EMBARGOED.
    Start {
        /// The seed.
        seed_id: String,
        /// Why it was culled.
        reason: String,
        /// When, on the monotonic clock.
        at: Instant,
        /// When the embargo ends.
        until: Instant,
        /// The embargo's length.
        duration: Duration,
    },
    /// The embargo elapsed and the seed moved to RESETTING.
    End {
        /// The seed.
        seed_id: String,
        /// When the move happened.
        at: Instant,
        /// How long the seed was embargoed.
        embargoed_for: Duration,
    },
}

impl EmbargoEvent {
    /// The telemetry name: `embargo_start` or `embargo_end`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "embargo_start",
            Self::End { .. } => "embargo_end",
        }
    }
}

/// The lifecycle of one seed slot over Leyline stages, starting in DORMANT.
///
/// Every move is checked against the table of decisions D1; a gated move (D2) happens only
/// through [`guarded_transition`](Self::guarded_transition) with passing evidence; the failure
/// path is [`cull`](Self::cull) (or [`begin_cull`](Self::begin_cull), a blend-out, then `cull`) →
/// [`poll`](Self::poll) (after the embargo) → G5 → DORMANT. A
/// refused operation returns an [`Error`] and leaves the lifecycle unchanged.
#[derive(Debug)]
pub struct SeedLifecycle {
    seed_id: String,
    stage: Stage,
    clock: Clock,
    /// `None` reads the system clock (no allocation per lifecycle).
    wall: Option<Arc<dyn WallClock>>,
    config: LifecycleConfig,
    history: VecDeque<TransitionRecord>,
    transitions: u64,
    entered_at: Instant,
    embargo_started: Option<Instant>,
    embargo_until: Option<Instant>,
    cull_reason: Option<String>,
}

impl SeedLifecycle {
    /// A lifecycle in DORMANT. The bootstrap move UNKNOWN → DORMANT is the first history entry.
    /// Gate events are stamped from the system wall clock (see [`with_wall_clock`](Self::with_wall_clock)).
    pub fn new(seed_id: impl Into<String>, clock: Clock, config: LifecycleConfig) -> Self {
        let now = clock.now();
        let mut lifecycle = Self {
            seed_id: seed_id.into(),
            stage: Stage::SeedStageUnknown,
            clock,
            wall: None,
            history: VecDeque::with_capacity(config.history_capacity.min(INITIAL_HISTORY_ALLOCATION)),
            config,
            transitions: 0,
            entered_at: now,
            embargo_started: None,
            embargo_until: None,
            cull_reason: None,
        };
        lifecycle.apply(Stage::SeedStageDormant, now, None);
        lifecycle
    }

    /// Replaces the wall clock that stamps gate events.
    pub fn with_wall_clock(mut self, wall: Arc<dyn WallClock>) -> Self {
        self.wall = Some(wall);
        self
    }

    /// The seed's id.
    pub fn seed_id(&self) -> &str {
        &self.seed_id
    }

    /// The current stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The settings.
    pub fn config(&self) -> &LifecycleConfig {
        &self.config
    }

    /// The injected monotonic clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The most recent moves, oldest first (at most `history_capacity`).
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &TransitionRecord> + ExactSizeIterator + '_ {
        self.history.iter()
    }

    /// The most recent move.
    pub fn last_transition(&self) -> Option<&TransitionRecord> {
        self.history.back()
    }

    /// How many moves the seed made in all, the bootstrap included (the history may hold fewer).
    pub fn transition_count(&self) -> u64 {
        self.transitions
    }

    /// When the seed entered its current stage.
    pub fn entered_at(&self) -> Instant {
        self.entered_at
    }

    /// When the embargo ends, while the seed is EMBARGOED.
    pub fn embargo_until(&self) -> Option<Instant> {
        self.embargo_until
    }

    /// Time left in the embargo at `now` (zero once elapsed), while the seed is EMBARGOED.
    pub fn embargo_remaining(&self, now: Instant) -> Option<Duration> {
        self.embargo_until.map(|until| until.saturating_duration_since(now))
    }

    /// Why the seed was culled, from the cull until it is DORMANT again.
    pub fn cull_reason(&self) -> Option<&str> {
        self.cull_reason.as_deref()
    }

    /// The lifecycle as a checkpoint keeps it, at the lifecycle clock's now.
    pub fn saved(&self) -> SavedLifecycle {
        let now = self.clock.now();
        SavedLifecycle {
            seed_id: self.seed_id.clone(),
            stage: self.stage,
            history: self
                .history
                .iter()
                .map(|r| SavedTransition {
                    from: r.from,
                    to: r.to,
                    ago: now.saturating_duration_since(r.at),
                    gate: r.gate,
                })
                .collect(),
            transitions: self.transitions,
            in_stage: now.saturating_duration_since(self.entered_at),
            embargo_elapsed: self.embargo_started.map(|t| now.saturating_duration_since(t)),
            embargo_remaining: self.embargo_remaining(now),
            cull_reason: self.cull_reason.clone(),
        }
    }

    /// A lifecycle taken back from [`saved`](Self::saved), on `clock` (its instants are the
    /// saved durations before or after `clock`'s now).
    ///
    /// # Errors
    /// [`Error::InvalidSaved`] for a state no lifecycle could reach: UNKNOWN, a move not in the
    /// table, a history that does not end in the stage, more history than the capacity, embargo
    /// times outside EMBARGOED or missing in it.
    pub fn restored(saved: SavedLifecycle, clock: Clock, config: LifecycleConfig) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidSaved { seed_id: saved.seed_id.clone(), reason };
        if saved.stage == Stage::SeedStageUnknown {
            return Err(invalid("stage UNKNOWN".into()));
        }
        if let Some(t) =
            saved.history.iter().find(|t| !table::is_legal(t.from, t.to) && t.from != Stage::SeedStageUnknown)
        {
            return Err(invalid(format!("move {} -> {} is not in the table", t.from.short_name(), t.to.short_name())));
        }
        if saved.history.last().is_some_and(|t| t.to != saved.stage) {
            return Err(invalid("the history does not end in the stage".into()));
        }
        if saved.history.len() > config.history_capacity {
            return Err(invalid(format!("{} moves in a history of {}", saved.history.len(), config.history_capacity)));
        }
        let embargoed = saved.stage == Stage::SeedStageEmbargoed;
        if embargoed != saved.embargo_remaining.is_some() || embargoed != saved.embargo_elapsed.is_some() {
            return Err(invalid("embargo times must be present exactly while EMBARGOED".into()));
        }
        let now = clock.now();
        let before = |d: Duration| now.checked_sub(d).unwrap_or(now);
        let history = saved
            .history
            .iter()
            .map(|t| TransitionRecord { from: t.from, to: t.to, at: before(t.ago), gate: t.gate })
            .collect();
        Ok(Self {
            seed_id: saved.seed_id,
            stage: saved.stage,
            entered_at: before(saved.in_stage),
            embargo_started: saved.embargo_elapsed.map(before),
            embargo_until: saved.embargo_remaining.map(|d| now.checked_add(d).unwrap_or(now)),
            cull_reason: saved.cull_reason,
            transitions: saved.transitions,
            history,
            clock,
            wall: None,
            config,
        })
    }

    /// Whether `to` is a legal next stage from the current one.
    pub fn can_transition(&self, to: Stage) -> bool {
        table::is_legal(self.stage, to)
    }

    /// The gate that guards the move to `to`, if the move is gated.
    pub fn gate_for(&self, to: Stage) -> Option<Gate> {
        table::gate_for(self.stage, to)
    }

    /// Runs the gate decisions D2 assigns to the move to `to` on `evidence` and makes the move if
    /// it passes, returning the passed [`GateEvent`] in the outcome.
    ///
    /// # Errors
    /// [`Error::IllegalTransition`] when the move is not in the table, [`Error::NotGated`] when no
    /// gate guards it, [`Error::EvidenceMismatch`] when the evidence is for another move, and
    /// [`Error::GateFailed`] (carrying the failed event) when the gate refuses. In every case the
    /// seed stays where it was; after a `GateFailed` in an active stage, the caller emits the event
    /// and, unless the reason [is retryable](crate::GateReason::is_retryable) (the gate lacked its
    /// evidence: ask again later), calls [`cull`](Self::cull) (or [`begin_cull`](Self::begin_cull)
    /// for a blend-out) with its reason (`reason.as_str()`).
    pub fn guarded_transition(&mut self, to: Stage, evidence: &GateEvidence<'_>) -> Result<TransitionOutcome> {
        let from = self.stage;
        let gate = match table::classify(from, to) {
            None => return Err(Error::IllegalTransition { from, to }),
            Some(MoveKind::Gated(gate)) => gate,
            Some(_) => return Err(Error::NotGated { from, to }),
        };
        if evidence.transition() != (from, to) {
            return Err(Error::EvidenceMismatch { from, to, expected: gate, evidence: evidence.gate() });
        }
        let at = self.wall.as_ref().map_or_else(SystemTime::now, |wall| wall.now());
        let ctx = GateContext { seed_id: &self.seed_id, from, to, at };
        let (event, outcome) = gates::verdict(&ctx, evidence);
        if let Err(reason) = outcome {
            return Err(Error::GateFailed { gate, from, to, reason, event: Box::new(event) });
        }
        let record = self.apply(to, self.clock.now(), Some(gate));
        Ok(TransitionOutcome { record, gate_event: Some(event), embargo_event: None })
    }

    /// Makes an ungated move: active → CULLED (cull reason `cull`; prefer [`cull`](Self::cull)),
    /// CULLED → EMBARGOED (starting the embargo), EMBARGOED → RESETTING (only once the embargo elapsed; prefer
    /// [`poll`](Self::poll)), or teardown to TERMINATED.
    ///
    /// # Errors
    /// [`Error::IllegalTransition`] when the move is not in the table, [`Error::GateRequired`]
    /// when a gate guards it, [`Error::EmbargoActive`] when the embargo has not elapsed.
    pub fn transition(&mut self, to: Stage) -> Result<TransitionOutcome> {
        let from = self.stage;
        match table::classify(from, to) {
            None => Err(Error::IllegalTransition { from, to }),
            Some(MoveKind::Gated(gate)) => Err(Error::GateRequired { from, to, gate }),
            Some(MoveKind::Bootstrap | MoveKind::Teardown) => {
                let record = self.apply(to, self.clock.now(), None);
                Ok(TransitionOutcome { record, gate_event: None, embargo_event: None })
            }
            Some(MoveKind::FailurePath) => {
                let now = self.clock.now();
                match to {
                    Stage::SeedStageCulled => {
                        self.cull_reason.get_or_insert_with(|| "cull".to_owned());
                        let record = self.apply(to, now, None);
                        Ok(TransitionOutcome { record, gate_event: None, embargo_event: None })
                    }
                    Stage::SeedStageEmbargoed => Ok(self.start_embargo(now)),
                    _ => self.end_embargo(now).ok_or_else(|| Error::EmbargoActive {
                        seed_id: self.seed_id.clone(),
                        remaining: self.embargo_remaining(now).unwrap_or_default(),
                    }),
                }
            }
        }
    }

    /// Starts the failure path: an active seed moves to CULLED and then EMBARGOED, with
    /// `embargo_until = now + embargo`; returns the [`EmbargoEvent::Start`]. A CULLED seed (after
    /// [`begin_cull`](Self::begin_cull) or `transition`) moves to EMBARGOED from this `now`,
    /// keeping the cull reason it already has. A seed EMBARGOED or RESETTING is left as it is and
    /// `Ok(None)` is returned: a cull never shortens (or lengthens) a running embargo.
    ///
    /// # Errors
    /// [`Error::IllegalTransition`] (to CULLED) from DORMANT, FOSSILIZED, TERMINATED or UNKNOWN.
    pub fn cull(&mut self, reason: impl Into<String>, now: Instant) -> Result<Option<EmbargoEvent>> {
        let from = self.stage;
        match from {
            Stage::SeedStageEmbargoed | Stage::SeedStageResetting => Ok(None),
            Stage::SeedStageCulled => Ok(self.start_embargo(now).embargo_event),
            _ if table::is_active(from) => {
                self.cull_reason = Some(reason.into());
                self.apply(Stage::SeedStageCulled, now, None);
                Ok(self.start_embargo(now).embargo_event)
            }
            _ => Err(Error::IllegalTransition { from, to: Stage::SeedStageCulled }),
        }
    }

    /// Starts a cull without the embargo (a blend-out, decisions D4): an active seed moves to
    /// CULLED only, recording `reason` as the cull reason. The embargo starts later, when
    /// [`cull`](Self::cull) is called from CULLED: from that call's `now`, with the reason recorded
    /// here (the later call's reason is ignored). A seed already on the failure path (CULLED,
    /// EMBARGOED, RESETTING) is left as it is, reason included, and `Ok(())` is returned.
    ///
    /// # Errors
    /// [`Error::IllegalTransition`] (to CULLED) from DORMANT, FOSSILIZED, TERMINATED or UNKNOWN,
    /// as for [`cull`](Self::cull).
    pub fn begin_cull(&mut self, reason: impl Into<String>, now: Instant) -> Result<()> {
        let from = self.stage;
        match from {
            Stage::SeedStageCulled | Stage::SeedStageEmbargoed | Stage::SeedStageResetting => Ok(()),
            _ if table::is_active(from) => {
                self.cull_reason = Some(reason.into());
                self.apply(Stage::SeedStageCulled, now, None);
                Ok(())
            }
            _ => Err(Error::IllegalTransition { from, to: Stage::SeedStageCulled }),
        }
    }

    /// Checks the embargo at `now`: once it has elapsed, moves EMBARGOED → RESETTING and returns
    /// the [`EmbargoEvent::End`]. `None` in any other stage or while the embargo runs.
    pub fn poll(&mut self, now: Instant) -> Option<EmbargoEvent> {
        self.end_embargo(now).and_then(|outcome| outcome.embargo_event)
    }

    /// Administrative teardown: any non-terminal stage → TERMINATED (D1).
    ///
    /// # Errors
    /// [`Error::IllegalTransition`] when the seed is already TERMINATED.
    pub fn terminate(&mut self) -> Result<TransitionOutcome> {
        self.transition(Stage::SeedStageTerminated)
    }

    fn start_embargo(&mut self, now: Instant) -> TransitionOutcome {
        let until = now + self.config.embargo;
        let record = self.apply(Stage::SeedStageEmbargoed, now, None);
        self.embargo_started = Some(now);
        self.embargo_until = Some(until);
        let event = EmbargoEvent::Start {
            seed_id: self.seed_id.clone(),
            reason: self.cull_reason.clone().unwrap_or_default(),
            at: now,
            until,
            duration: self.config.embargo,
        };
        TransitionOutcome { record, gate_event: None, embargo_event: Some(event) }
    }

    fn end_embargo(&mut self, now: Instant) -> Option<TransitionOutcome> {
        if self.stage != Stage::SeedStageEmbargoed || self.embargo_until.is_some_and(|until| now < until) {
            return None;
        }
        let started = self.embargo_started.unwrap_or(now);
        let record = self.apply(Stage::SeedStageResetting, now, None);
        let event = EmbargoEvent::End {
            seed_id: self.seed_id.clone(),
            at: now,
            embargoed_for: now.saturating_duration_since(started),
        };
        Some(TransitionOutcome { record, gate_event: None, embargo_event: Some(event) })
    }

    /// Enters `to` (already checked against the table) and records the move.
    fn apply(&mut self, to: Stage, at: Instant, gate: Option<Gate>) -> TransitionRecord {
        debug_assert!(table::is_legal(self.stage, to), "{} -> {}", self.stage, to);
        let record = TransitionRecord { from: self.stage, to, at, gate };
        if self.stage == Stage::SeedStageEmbargoed {
            self.embargo_started = None;
            self.embargo_until = None;
        }
        if to == Stage::SeedStageDormant {
            self.cull_reason = None;
        }
        self.stage = to;
        self.entered_at = at;
        self.transitions += 1;
        if self.config.history_capacity > 0 {
            if self.history.len() == self.config.history_capacity {
                self.history.pop_front();
            }
            self.history.push_back(record.clone());
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycles_can_move_between_threads() {
        fn check<T: Send + Sync>() {}
        check::<SeedLifecycle>();
        check::<EmbargoEvent>();
    }
}
