//! The `mlp` host: slot A on its input → linear → ReLU → linear → ReLU → slot B → linear,
//! `width` units wide. With the default width it is simply too small for the built-in task; a
//! seed can add the capacity it lacks.

use crate::Result;
use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap, linear};
use kasmina_runtime::Layout;

use crate::{Init, SlotSpec, Taps};

/// Default width of the host's hidden layers (and of its second slot): small on purpose, so
/// that the host is too small for the built-in task and a seed has capacity to add.
pub const HIDDEN: u16 = 4;
/// The slot on the host's input (width = the number of features).
pub const SLOT_A: &str = "input";
/// The slot after the second hidden layer (width = the host's width).
pub const SLOT_B: &str = "hidden2";

/// The network (its slots are routed by the caller's [`Taps`]).
pub(crate) struct Mlp {
    l1: Linear,
    l2: Linear,
    l3: Linear,
    features: usize,
    width: usize,
}

impl Mlp {
    /// Creates the layers in `vb` and initialises them from `seed`: uniform ±1/√fan_in, where a
    /// bias counts its own length as fan-in (as the demo always has, so its figures repeat).
    pub(crate) fn new(
        varmap: &VarMap,
        vb: VarBuilder<'_>,
        features: usize,
        classes: usize,
        width: usize,
        seed: u64,
    ) -> Result<Self> {
        let l1 = linear(features, width, vb.pp("l1"))?;
        let l2 = linear(width, width, vb.pp("l2"))?;
        let l3 = linear(width, classes, vb.pp("l3"))?;
        let mut init = Init::new(varmap, seed ^ 0x1417, vb.device());
        for (name, rows, cols) in [
            ("l1.weight", width, features),
            ("l1.bias", width, 0),
            ("l2.weight", width, width),
            ("l2.bias", width, 0),
            ("l3.weight", classes, width),
            ("l3.bias", classes, 0),
        ] {
            let fan_in = if cols == 0 { rows } else { cols };
            let dims: &[usize] = if cols == 0 { &[rows] } else { &[rows, cols] };
            init.uniform(name, dims, 1.0 / (fan_in as f32).sqrt())?;
        }
        Ok(Self { l1, l2, l3, features, width })
    }

    /// Slot A on the input, slot B after the second hidden layer.
    pub(crate) fn slots(&self) -> Vec<SlotSpec> {
        vec![
            SlotSpec { name: SLOT_A, width: self.features, layout: Layout::Dense },
            SlotSpec { name: SLOT_B, width: self.width, layout: Layout::Dense },
        ]
    }

    /// Logits `[batch, classes]` for `x: [batch, features]`.
    pub(crate) fn forward(&self, x: &Tensor, taps: &Taps) -> Result<Tensor> {
        let h = taps.through(SLOT_A, x)?;
        let h = self.l1.forward(&h)?.relu()?;
        let h = taps.through(SLOT_B, &self.l2.forward(&h)?.relu()?)?;
        Ok(self.l3.forward(&h)?)
    }
}
