//! A minimal Tamiyo: watches validation, germinates on a plateau, fossilizes at the end of
//! probation — always through the signed envelope, like a remote controller.

use std::time::{SystemTime, UNIX_EPOCH};

use kasmina_runtime::Kasmina;
use kasmina_runtime::reexports::security::{KeyRing, sign_command};
use leyline::adaptation_command::Payload;
use leyline::{
    AdaptationCommand, CommandReceipt, CommandSeedOperation, CommandType, SeedLifecycleStage as Stage, SeedOperation,
    wkt::Timestamp,
};

/// One command the controller sent and what came back.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) step: u64,
    pub(crate) epoch: u32,
    pub(crate) operation: SeedOperation,
    pub(crate) seed_id: String,
    pub(crate) receipt: Option<CommandReceipt>,
}

/// The plan: which seeds to grow where once the host plateaus.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub(crate) seed_id: String,
    pub(crate) slot: String,
    pub(crate) blueprint: String,
    /// How many times to germinate again after a cull.
    pub(crate) retries: u32,
}

#[derive(Debug)]
pub(crate) struct Controller {
    keys: KeyRing,
    next_id: u64,
    history: Vec<f32>,
    pub(crate) plan: Vec<Planned>,
    pub(crate) germinated_at: Option<(u32, f32)>,
    pub(crate) sent: Vec<Sent>,
    pending: Vec<(kasmina_runtime::Ticket, usize)>,
    probation_steps: u64,
    /// Germinate at the end of this epoch at the latest, plateau or not.
    germinate_by: Option<u32>,
}

impl Controller {
    /// What a checkpoint keeps of the controller (its pending tickets excepted: call
    /// [`collect`](Self::collect) first; a command still queued is in Kasmina's checkpoint and
    /// is applied after a restore, its receipt then unknown here).
    pub(crate) fn state_json(&self) -> serde_json::Value {
        serde_json::json!({
            "next_id": self.next_id,
            "history": self.history,
            "plan": self.plan.iter().map(|p| serde_json::json!({
                "seed_id": p.seed_id, "slot": p.slot, "blueprint": p.blueprint, "retries": p.retries,
            })).collect::<Vec<_>>(),
            "germinated_at": self.germinated_at,
            "sent": self.sent.iter().map(|c| serde_json::json!({
                "step": c.step,
                "epoch": c.epoch,
                "operation": c.operation as i32,
                "seed_id": c.seed_id,
                "receipt": c.receipt,
            })).collect::<Vec<_>>(),
        })
    }

    /// Takes back what [`state_json`](Self::state_json) wrote.
    pub(crate) fn restore_state(&mut self, v: &serde_json::Value) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let field = |k: &str| v.get(k).with_context(|| format!("controller state: no `{k}`"));
        self.next_id = field("next_id")?.as_u64().context("controller state: next_id")?;
        self.history = serde_json::from_value(field("history")?.clone())?;
        self.germinated_at = serde_json::from_value(field("germinated_at")?.clone())?;
        let text =
            |p: &serde_json::Value, k: &str| p.get(k).and_then(|x| x.as_str()).map(str::to_owned).unwrap_or_default();
        self.plan = field("plan")?
            .as_array()
            .context("controller state: plan")?
            .iter()
            .map(|p| Planned {
                seed_id: text(p, "seed_id"),
                slot: text(p, "slot"),
                blueprint: text(p, "blueprint"),
                retries: p.get("retries").and_then(serde_json::Value::as_u64).unwrap_or(0) as u32,
            })
            .collect();
        self.sent = field("sent")?
            .as_array()
            .context("controller state: sent")?
            .iter()
            .map(|c| -> anyhow::Result<Sent> {
                let op = c.get("operation").and_then(serde_json::Value::as_i64).unwrap_or(0) as i32;
                Ok(Sent {
                    step: c.get("step").and_then(serde_json::Value::as_u64).unwrap_or(0),
                    epoch: c.get("epoch").and_then(serde_json::Value::as_u64).unwrap_or(0) as u32,
                    operation: SeedOperation::try_from(op).unwrap_or(SeedOperation::SeedOpUnknown),
                    seed_id: text(c, "seed_id"),
                    receipt: serde_json::from_value(c.get("receipt").cloned().unwrap_or_default())?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        self.pending.clear();
        Ok(())
    }

    pub(crate) fn new(keys: KeyRing, plan: Vec<Planned>, probation_steps: u64) -> Self {
        Self {
            keys,
            next_id: 0,
            history: Vec::new(),
            plan,
            germinated_at: None,
            sent: Vec::new(),
            pending: Vec::new(),
            probation_steps,
            germinate_by: None,
        }
    }

    /// Germinates at the end of `epoch` at the latest, even without a plateau (`None`: only on
    /// a plateau).
    pub(crate) fn germinate_by(mut self, epoch: Option<u32>) -> Self {
        self.germinate_by = epoch;
        self
    }

    /// Plateau: at least 4 epochs seen and the best validation loss of the last 2 epochs is no
    /// more than 1 % better than the best before them.
    fn plateaued(&self) -> bool {
        let n = self.history.len();
        if n < 4 {
            return false;
        }
        let best_before = self.history[..n - 2].iter().copied().fold(f32::INFINITY, f32::min);
        let best_recent = self.history[n - 2..].iter().copied().fold(f32::INFINITY, f32::min);
        best_recent > best_before * 0.99
    }

    fn command(&mut self, op: SeedOperation, seed_id: &str, slot: &str, blueprint: &str) -> AdaptationCommand {
        self.next_id += 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut cmd = AdaptationCommand {
            version: 1,
            command_id: format!("tamiyo-{}-{}", now.as_nanos(), self.next_id),
            command_type: CommandType::CommandSeed as i32,
            target_seed_id: seed_id.to_owned(),
            issued_at: Some(Timestamp { seconds: now.as_secs() as i64, nanos: now.subsec_nanos() as i32 }),
            issued_by: "tamiyo-demo".into(),
            payload: Some(Payload::SeedOperation(CommandSeedOperation {
                operation: op as i32,
                blueprint_id: blueprint.to_owned(),
                parameters: Default::default(),
            })),
            ..Default::default()
        };
        if !slot.is_empty() {
            cmd.annotations.insert("slot".into(), slot.to_owned());
        }
        cmd
    }

    fn send(
        &mut self,
        kasmina: &Kasmina,
        cmd: AdaptationCommand,
        op: SeedOperation,
        step: u64,
        epoch: u32,
    ) -> anyhow::Result<()> {
        let signed = sign_command(&cmd, "default", &self.keys)?;
        let index = self.sent.len();
        self.sent.push(Sent { step, epoch, operation: op, seed_id: cmd.target_seed_id.clone(), receipt: None });
        match kasmina.submit(&signed) {
            Ok(ticket) => self.pending.push((ticket, index)),
            Err(receipt) => self.sent[index].receipt = Some(receipt),
        }
        Ok(())
    }

    /// Collects the receipts of commands applied at the last safe point.
    pub(crate) fn collect(&mut self) {
        let sent = &mut self.sent;
        self.pending.retain(|(ticket, i)| match ticket.try_receipt() {
            Some(r) => {
                sent[*i].receipt = Some(r);
                false
            }
            None => true,
        });
    }

    /// Called at every epoch end.
    pub(crate) fn on_epoch(
        &mut self,
        kasmina: &Kasmina,
        epoch: u32,
        step: u64,
        val_loss: f32,
        val_acc: f32,
    ) -> anyhow::Result<()> {
        self.collect();
        self.history.push(val_loss);
        let due = self.germinate_by.is_some_and(|by| epoch >= by);
        if self.germinated_at.is_none() && (self.plateaued() || due) {
            self.germinated_at = Some((epoch, val_acc));
            for p in self.plan.clone() {
                let cmd = self.command(SeedOperation::SeedOpGerminate, &p.seed_id, &p.slot, &p.blueprint);
                self.send(kasmina, cmd, SeedOperation::SeedOpGerminate, step, epoch)?;
            }
            return Ok(());
        }
        // Retry a planned seed that was culled and whose slot is free again (a real Tamiyo would
        // pick another blueprint or slot; the demo retries the plan once per seed, not the
        // deliberately broken one).
        let states = kasmina.export_seed_states();
        for i in 0..self.plan.len() {
            let p = &mut self.plan[i];
            let culled_and_reset =
                states.iter().any(|s| s.seed_id == p.seed_id && s.stage() == Stage::SeedStageDormant);
            if culled_and_reset && p.retries > 0 {
                p.retries -= 1;
                p.seed_id = format!("{}-retry", p.seed_id);
                let p = p.clone();
                let cmd = self.command(SeedOperation::SeedOpGerminate, &p.seed_id, &p.slot, &p.blueprint);
                self.send(kasmina, cmd, SeedOperation::SeedOpGerminate, step, epoch)?;
            }
        }
        // Fossilize a seed whose probation window is over.
        for state in kasmina.export_seed_states() {
            let in_probation = state.stage() == Stage::SeedStageProbationary;
            let done = state.metrics.get("steps_in_stage").copied().unwrap_or(0.0) as u64 >= self.probation_steps;
            let waiting = self.pending.iter().any(|(_, i)| self.sent[*i].seed_id == state.seed_id);
            if in_probation && done && !waiting {
                let cmd = self.command(SeedOperation::SeedOpFossilize, &state.seed_id, "", "");
                self.send(kasmina, cmd, SeedOperation::SeedOpFossilize, step, epoch)?;
            }
        }
        Ok(())
    }
}
