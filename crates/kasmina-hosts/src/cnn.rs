//! The `cnn` host, on the 8×8 digits: conv 1→C 3×3 → ReLU → slot `conv1` → conv C→2C 3×3
//! stride 2 → ReLU → slot `conv2` → global average pool → linear → classes. Deliberately narrow
//! (C = 4 by default) and shallow: the second convolution sees 5×5 pixels of the 8×8 digit and
//! the pooled features are its 2C channels, so a seed that adds a convolution where a slot sits
//! adds both receptive field and non-linearity.

use crate::Result;
use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder, VarMap, conv2d, linear};
use kasmina_runtime::Layout;

use crate::{Init, SlotSpec, Taps};

/// Default channels of the first convolution (the second has twice as many).
pub const WIDTH: usize = 4;
/// The slot after the first convolution (width C, 8×8).
pub const SLOT_CONV1: &str = "conv1";
/// The slot after the second convolution (width 2C, 4×4).
pub const SLOT_CONV2: &str = "conv2";
/// Side of the input image.
const SIDE: usize = 8;
/// Features of an input row: the 8×8 image, row-major.
pub const PIXELS: usize = SIDE * SIDE;

/// The network (its slots are routed by the caller's [`Taps`]).
pub(crate) struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    head: Linear,
    width: usize,
}

impl Cnn {
    /// Creates the layers in `vb` (`width` channels, then twice as many) and initialises them
    /// from `seed` with PyTorch's default bound, uniform ±1/√fan_in.
    pub(crate) fn new(varmap: &VarMap, vb: VarBuilder<'_>, classes: usize, width: usize, seed: u64) -> Result<Self> {
        let (c1, c2) = (width, 2 * width);
        let same = Conv2dConfig { padding: 1, ..Default::default() };
        let down = Conv2dConfig { padding: 1, stride: 2, ..Default::default() };
        let conv1 = conv2d(1, c1, 3, same, vb.pp("conv1"))?;
        let conv2 = conv2d(c1, c2, 3, down, vb.pp("conv2"))?;
        let head = linear(c2, classes, vb.pp("head"))?;
        let mut init = Init::new(varmap, seed ^ 0xC0_4E, vb.device());
        for (name, inp, out) in [("conv1", 1, c1), ("conv2", c1, c2)] {
            let bound = 1.0 / ((inp * 9) as f32).sqrt();
            init.uniform(&format!("{name}.weight"), &[out, inp, 3, 3], bound)?;
            init.uniform(&format!("{name}.bias"), &[out], bound)?;
        }
        init.linear("head", c2, classes)?;
        Ok(Self { conv1, conv2, head, width })
    }

    /// `conv1` (C channels, 8×8) and `conv2` (2C channels, 4×4), both image slots.
    pub(crate) fn slots(&self) -> Vec<SlotSpec> {
        vec![
            SlotSpec { name: SLOT_CONV1, width: self.width, layout: Layout::Image },
            SlotSpec { name: SLOT_CONV2, width: 2 * self.width, layout: Layout::Image },
        ]
    }

    /// Logits `[batch, classes]` for `x: [batch, 64]` (row-major 8×8 pixels).
    pub(crate) fn forward(&self, x: &Tensor, taps: &Taps) -> Result<Tensor> {
        let x = x.reshape((x.dim(0)?, 1, SIDE, SIDE))?;
        let h = taps.through(SLOT_CONV1, &self.conv1.forward(&x)?.relu()?)?;
        let h = taps.through(SLOT_CONV2, &self.conv2.forward(&h)?.relu()?)?;
        let pooled = h.mean((2, 3))?;
        Ok(self.head.forward(&pooled)?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    #[test]
    fn the_forward_reads_flat_8x8_images_and_the_slots_are_image_slots() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let net = Cnn::new(&varmap, vb, 10, 3, 1).unwrap();
        let x = Tensor::ones((5, 64), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward(&x, &Taps::default()).unwrap().dims(), [5, 10]);
        let specs: Vec<_> = net.slots().iter().map(|s| (s.name, s.width, s.layout)).collect();
        assert_eq!(specs, [(SLOT_CONV1, 3, Layout::Image), (SLOT_CONV2, 6, Layout::Image)]);
        // 1→3 and 3→6 3×3 convolutions with biases, and a 6→10 head.
        let params: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(params, (9 * 3 + 3) + (27 * 6 + 6) + (6 * 10 + 10));
    }
}
