//! The `transformer` host, on bytes of *Pride and Prejudice*: token and position embeddings →
//! slot `embed` → one pre-norm causal multi-head self-attention block (residual) → slot `block1`
//! → layer norm → linear → 256 byte logits per position. Small on purpose: 32 wide, one block,
//! and the block has **no MLP sublayer**, so all the host's non-linearity per position is the
//! final softmax. A seed in `block1` of the pre-norm MLP blueprint (`BP200`, hidden 4×) adds
//! exactly the sublayer a standard transformer block has; with it the host is a standard
//! one-block transformer. (A host with the MLP sublayer, where a seed could only add a second MLP
//! or attention layer, gained too little for gate G4 to keep it: docs/growth.md.)

use crate::Result;
use candle_core::{D, Module, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap, linear};
use kasmina_runtime::Layout;

use crate::{Init, SlotSpec, Taps};

/// Default model dimension.
pub const WIDTH: usize = 32;
/// Default context (bytes per window).
pub const CONTEXT: usize = 32;
/// Attention heads (the width must be a multiple).
const HEADS: usize = 4;
/// The slot on the residual stream entering the block.
pub const SLOT_EMBED: &str = "embed";
/// The slot on the residual stream after the block.
pub const SLOT_BLOCK: &str = "block1";
/// What masked attention scores are set to (large and finite: no `inf − inf` anywhere).
const MASKED: f32 = -1e9;

/// Layer normalisation over the last axis, from differentiable candle ops (candle-nn's fused
/// `layer_norm` has no backward pass).
struct Norm {
    weight: Tensor,
    bias: Tensor,
}

impl Norm {
    fn new(vb: VarBuilder<'_>, width: usize) -> Result<Self> {
        let weight = vb.get_with_hints(width, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(width, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self { weight, bias })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        Ok(normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?)
    }
}

/// One pre-norm attention block, `x + attn(ln(x))`: no MLP sublayer (that is what a seed can
/// add).
struct Block {
    ln: Norm,
    qkv: Linear,
    proj: Linear,
}

impl Block {
    fn new(vb: VarBuilder<'_>, width: usize) -> Result<Self> {
        Ok(Self {
            ln: Norm::new(vb.pp("ln"), width)?,
            qkv: linear(width, 3 * width, vb.pp("qkv"))?,
            proj: linear(width, width, vb.pp("proj"))?,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        Ok((x + self.attention(&self.ln.forward(x)?, mask)?)?)
    }

    /// Causal multi-head self-attention; `mask` is `[T, T]`, 0 on and below the diagonal.
    fn attention(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let dh = d / HEADS;
        let qkv = self.qkv.forward(x)?;
        let head = |i: usize| -> Result<Tensor> {
            Ok(qkv.narrow(2, i * d, d)?.reshape((b, t, HEADS, dh))?.transpose(1, 2)?.contiguous()?)
        };
        let (q, k, v) = (head(0)?, head(1)?, head(2)?);
        let scores = (q.matmul(&k.t()?.contiguous()?)? * (1.0 / (dh as f64).sqrt()))?;
        let scores = scores.broadcast_add(&mask.narrow(0, 0, t)?.narrow(1, 0, t)?)?;
        let attended = candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(&v)?;
        Ok(self.proj.forward(&attended.transpose(1, 2)?.reshape((b, t, d))?)?)
    }
}

/// The network (its slots are routed by the caller's [`Taps`]).
pub(crate) struct Transformer {
    embed: Tensor,
    pos: Tensor,
    block: Block,
    ln_f: Norm,
    head: Linear,
    mask: Tensor,
    width: usize,
    vocab: usize,
}

impl Transformer {
    /// Creates the layers in `vb` for windows of `context` tokens of a `vocab`-sized vocabulary
    /// and initialises them from `seed`: embeddings uniform ±0.1, linear layers ±1/√fan_in,
    /// norms at identity.
    pub(crate) fn new(
        varmap: &VarMap,
        vb: VarBuilder<'_>,
        context: usize,
        vocab: usize,
        width: usize,
        seed: u64,
    ) -> Result<Self> {
        if width == 0 || !width.is_multiple_of(HEADS) {
            let reason = format!("the width must be a positive multiple of {HEADS} (the heads)");
            return Err(crate::HostError::Width { task: crate::Task::Transformer, width, reason });
        }
        let embed = vb.get((vocab, width), "embed")?;
        let pos = vb.get((context, width), "pos")?;
        let block = Block::new(vb.pp("block1"), width)?;
        let ln_f = Norm::new(vb.pp("ln_f"), width)?;
        let head = linear(width, vocab, vb.pp("head"))?;
        let mut init = Init::new(varmap, seed ^ 0x7E47, vb.device());
        init.uniform("embed", &[vocab, width], 0.1)?;
        init.uniform("pos", &[context, width], 0.1)?;
        init.linear("block1.qkv", width, 3 * width)?;
        init.linear("block1.proj", width, width)?;
        for norm in ["block1.ln", "ln_f"] {
            init.constant(&format!("{norm}.weight"), &[width], 1.0)?;
            init.constant(&format!("{norm}.bias"), &[width], 0.0)?;
        }
        init.linear("head", width, vocab)?;
        let mask: Vec<f32> =
            (0..context * context).map(|i| if i % context > i / context { MASKED } else { 0.0 }).collect();
        let mask = Tensor::from_vec(mask, (context, context), vb.device())?;
        Ok(Self { embed, pos, block, ln_f, head, mask, width, vocab })
    }

    /// `embed` (before the block) and `block1` (after it), both sequence slots.
    pub(crate) fn slots(&self) -> Vec<SlotSpec> {
        vec![
            SlotSpec { name: SLOT_EMBED, width: self.width, layout: Layout::Sequence },
            SlotSpec { name: SLOT_BLOCK, width: self.width, layout: Layout::Sequence },
        ]
    }

    /// Logits `[batch · T, vocab]` (the next byte at every position) for `x: [batch, T]` byte
    /// values.
    pub(crate) fn forward(&self, x: &Tensor, taps: &Taps) -> Result<Tensor> {
        let (b, t) = x.dims2()?;
        let tokens = self.embed.index_select(&x.flatten_all()?, 0)?.reshape((b, t, self.width))?;
        let h = taps.through(SLOT_EMBED, &tokens.broadcast_add(&self.pos.narrow(0, 0, t)?)?)?;
        let h = taps.through(SLOT_BLOCK, &self.block.forward(&h, &self.mask)?)?;
        let logits = self.head.forward(&self.ln_f.forward(&h)?)?;
        Ok(logits.reshape((b * t, self.vocab))?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, IndexOp};

    use super::*;

    fn model(context: usize) -> (VarMap, Transformer) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let net = Transformer::new(&varmap, vb, context, 256, 16, 7).unwrap();
        (varmap, net)
    }

    #[test]
    fn attention_is_causal() {
        let (_vars, net) = model(8);
        let a: Vec<u32> = b"Mr. Darc".iter().map(|&b| u32::from(b)).collect();
        let mut b = a.clone();
        b[5] = u32::from(b'X');
        let x = Tensor::from_vec([a, b].concat(), (2, 8), &Device::Cpu).unwrap();
        let logits = net.forward(&x, &Taps::default()).unwrap().reshape((2, 8, 256)).unwrap();
        let diff = (logits.i(0).unwrap() - logits.i(1).unwrap()).unwrap().abs().unwrap().max(1).unwrap();
        let diff = diff.to_vec1::<f32>().unwrap();
        assert!(diff[..5].iter().all(|d| *d == 0.0), "positions before the change moved: {diff:?}");
        assert!(diff[5..].iter().all(|d| *d > 0.0), "positions from the change on did not: {diff:?}");
    }

    #[test]
    fn the_forward_gives_one_row_of_byte_logits_per_position_and_trains() {
        let (varmap, net) = model(4);
        let x = Tensor::new(&[[72u32, 101, 108, 108], [111, 32, 121, 111]], &Device::Cpu).unwrap();
        let logits = net.forward(&x, &Taps::default()).unwrap();
        assert_eq!(logits.dims(), [8, 256]);
        let y = Tensor::new(&[101u32, 108, 108, 111, 32, 121, 111, 117], &Device::Cpu).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        let grads = loss.backward().unwrap();
        for var in varmap.all_vars() {
            let g = grads.get(var.as_tensor()).expect("every host parameter gets a gradient");
            assert!(g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().is_finite());
        }
        let specs = net.slots();
        assert_eq!(
            specs.iter().map(|s| (s.name, s.layout)).collect::<Vec<_>>(),
            [(SLOT_EMBED, Layout::Sequence), (SLOT_BLOCK, Layout::Sequence)]
        );
    }
}
