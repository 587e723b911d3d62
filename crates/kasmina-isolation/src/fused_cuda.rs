//! The CUDA side of the fused slot kernels (`cuda` feature): launches the kernels of `fused.cu`,
//! compiled to PTX by the build script and loaded once per device by candle.
//!
//! This is the workspace's one module with `unsafe` code (decisions D27): allocating the output
//! without zeroing it and launching a kernel are `unsafe` in cudarc. Each block states why it
//! holds: the kernel writes every element of the output before anything reads it, and the
//! arguments match the kernel's parameter list in type and order.
#![allow(unsafe_code)]

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Shape, WithDType};
use half::{bf16, f16};

/// The kernels, as PTX for the compute capability the build targeted (`CUDA_COMPUTE_CAP`).
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused.ptx"));
/// The name candle caches the loaded module under.
const MODULE: &str = "kasmina_isolation_fused";

/// Runs the kernel `kasmina_<stem>_<dtype>[_gated]` on contiguous `h` and `d` (and the one-`u8`
/// gate, if any) on their device; `alpha` is the blend factor (ignored by the other forms).
pub(crate) fn launch(
    stem: &str,
    alpha: f64,
    h: (&CudaStorage, &Layout),
    d: (&CudaStorage, &Layout),
    gate: Option<(&CudaStorage, &Layout)>,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let out = match (h.0.dtype(), d.0.dtype()) {
        (DType::F32, DType::F32) => launch_typed::<f32>(stem, alpha, "f32", h, d, gate)?,
        (DType::BF16, DType::BF16) => launch_typed::<bf16>(stem, alpha, "bf16", h, d, gate)?,
        (DType::F16, DType::F16) => launch_typed::<f16>(stem, alpha, "f16", h, d, gate)?,
        (a, b) => {
            return Err(candle_core::Error::Msg(format!(
                "fused slot kernels take f32, bf16 or f16 of one dtype, got {a:?} and {b:?}"
            )));
        }
    };
    Ok((out, h.1.shape().clone()))
}

fn range(l: &Layout) -> candle_core::Result<std::ops::Range<usize>> {
    let (start, end) = l.contiguous_offsets().ok_or(candle_core::Error::RequiresContiguous { op: "fused" })?;
    Ok(start..end)
}

fn launch_typed<T: CudaDType + DeviceRepr + WithDType>(
    stem: &str,
    alpha: f64,
    suffix: &str,
    (h, lh): (&CudaStorage, &Layout),
    (d, ld): (&CudaStorage, &Layout),
    gate: Option<(&CudaStorage, &Layout)>,
) -> candle_core::Result<CudaStorage> {
    let (rh, rd) = (range(lh)?, range(ld)?);
    if rh.len() != rd.len() {
        return Err(candle_core::Error::Msg(format!("fused: {} host and {} delta elements", rh.len(), rd.len())));
    }
    let n = rh.len();
    let elems = u32::try_from(n).map_err(|_| candle_core::Error::Msg(format!("fused: {n} elements exceed u32")))?;
    let dev = &h.device;
    let name = format!("kasmina_{stem}_{suffix}{}", if gate.is_some() { "_gated" } else { "" });
    let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let hv = h.as_cuda_slice::<T>()?.slice(rh);
    let dv = d.as_cuda_slice::<T>()?.slice(rd);
    // SAFETY: the kernel writes all `n` elements of `out` (a grid-stride loop over `0..n`)
    // before the storage is handed to candle; nothing reads it earlier.
    let out = unsafe { dev.alloc::<T>(n)? };
    // alpha rounded to the storage type, as candle's affine rounds its constants.
    let (n64, alpha) = (n as u64, T::from_f64(alpha).to_f64() as f32);
    let mut builder = func.builder();
    builder.arg(&n64);
    builder.arg(&alpha);
    builder.arg(&hv);
    builder.arg(&dv);
    let gate_view = match gate {
        Some((g, lg)) if lg.shape().elem_count() == 1 => {
            let at = lg.start_offset();
            Some(g.as_cuda_slice::<u8>()?.slice(at..at + 1))
        }
        Some((_, lg)) => {
            return Err(candle_core::Error::Msg(format!("fused: the gate is one u8, got shape {:?}", lg.shape())));
        }
        None => None,
    };
    if let Some(g) = gate_view.as_ref() {
        builder.arg(g);
    }
    builder.arg(&out);
    // SAFETY: the argument list matches the kernel's (`size_t n, float alpha, const T* h,
    // const T* d, [const uint8_t* gate,] T* out`), every pointer is a live device allocation of
    // at least `n` elements (the gate: one) on this stream, and `out` aliases no input.
    unsafe { builder.launch(LaunchConfig::for_num_elems(elems)) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}
