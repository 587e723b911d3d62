//! The step's one device read (issue 19): every figure a safe point needs from the device — the
//! non-finite checks of the slot forwards, the isolation probes, the gradient norms, the shadow
//! metrics, G5's probe of a reset slot — is first built as a tensor on the device and collected
//! here; [`Readout::read`] then moves all of them to the host in one transfer. Nothing else in the
//! runtime reads a tensor during a training step, and [`crate::RuntimeStats::device_reads`] counts
//! the transfers.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::Tensor;

use crate::error::Result;

/// Tensors to read at the next safe point, in order.
#[derive(Debug, Default)]
pub(crate) struct Readout {
    parts: Vec<Tensor>,
    len: usize,
}

impl Readout {
    /// Adds every element of `t` and returns where they will be in the values.
    pub(crate) fn push(&mut self, t: &Tensor) -> Range<usize> {
        let start = self.len;
        self.len += t.elem_count();
        self.parts.push(t.detach());
        start..self.len
    }

    /// Reads everything pushed, in one device-to-host transfer counted in `reads` (none when
    /// nothing was pushed).
    pub(crate) fn read(self, reads: &AtomicU64) -> Result<Values> {
        if self.parts.is_empty() {
            return Ok(Values(Vec::new()));
        }
        reads.fetch_add(1, Ordering::Relaxed);
        Ok(Values(kasmina_isolation::read_scalars(&self.parts)?))
    }
}

/// What a [`Readout`] read.
#[derive(Debug, Default)]
pub(crate) struct Values(Vec<f64>);

impl Values {
    /// The values of one push (empty if out of range, which a caller's bug would be).
    pub(crate) fn get(&self, range: &Range<usize>) -> &[f64] {
        self.0.get(range.clone()).unwrap_or(&[])
    }

    /// The first value of one push (NaN if missing).
    pub(crate) fn one(&self, range: &Range<usize>) -> f64 {
        self.get(range).first().copied().unwrap_or(f64::NAN)
    }
}
