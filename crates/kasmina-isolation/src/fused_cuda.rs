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

/// Runs the kernel `kasmina_<stem>_<dtype>[_gated]` on the contiguous inputs `data` (`h` and
/// `d` for the forward forms, the upstream gradient for the gated gradients) and the one-`u8`
/// gate, if any, on their device; `alpha` is the blend factor (ignored by the other forms). The
/// output has the first input's shape.
pub(crate) fn launch(
    stem: &str,
    alpha: f64,
    data: &[(&CudaStorage, &Layout)],
    gate: Option<(&CudaStorage, &Layout)>,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let &[(first, layout), ..] = data else {
        return Err(candle_core::Error::Msg("fused: a kernel needs an input".into()));
    };
    let dtype = first.dtype();
    if let Some((other, _)) = data.iter().find(|(s, _)| s.dtype() != dtype) {
        return Err(mismatch(dtype, other.dtype()));
    }
    let out = match dtype {
        DType::F32 => launch_typed::<f32>(stem, alpha, "f32", data, gate)?,
        DType::BF16 => launch_typed::<bf16>(stem, alpha, "bf16", data, gate)?,
        DType::F16 => launch_typed::<f16>(stem, alpha, "f16", data, gate)?,
        other => return Err(mismatch(other, other)),
    };
    Ok((out, layout.shape().clone()))
}

fn mismatch(a: DType, b: DType) -> candle_core::Error {
    candle_core::Error::Msg(format!("fused slot kernels take f32, bf16 or f16 of one dtype, got {a:?} and {b:?}"))
}

fn range(l: &Layout) -> candle_core::Result<std::ops::Range<usize>> {
    let (start, end) = l.contiguous_offsets().ok_or(candle_core::Error::RequiresContiguous { op: "fused" })?;
    Ok(start..end)
}

fn launch_typed<T: CudaDType + DeviceRepr + WithDType>(
    stem: &str,
    alpha: f64,
    suffix: &str,
    data: &[(&CudaStorage, &Layout)],
    gate: Option<(&CudaStorage, &Layout)>,
) -> candle_core::Result<CudaStorage> {
    let ranges = data.iter().map(|(_, l)| range(l)).collect::<candle_core::Result<Vec<_>>>()?;
    let n = ranges.first().map_or(0, |r| r.len());
    if ranges.iter().any(|r| r.len() != n) {
        return Err(candle_core::Error::Msg(format!("fused: inputs of different lengths {ranges:?}")));
    }
    let elems = u32::try_from(n).map_err(|_| candle_core::Error::Msg(format!("fused: {n} elements exceed u32")))?;
    let Some((first, _)) = data.first() else {
        return Err(candle_core::Error::Msg("fused: a kernel needs an input".into()));
    };
    let dev = &first.device;
    let name = format!("kasmina_{stem}_{suffix}{}", if gate.is_some() { "_gated" } else { "" });
    let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let mut views = Vec::with_capacity(data.len());
    for ((storage, _), r) in data.iter().zip(ranges) {
        views.push(storage.as_cuda_slice::<T>()?.slice(r));
    }
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
    // SAFETY: the kernel writes all `n` elements of `out` (a grid-stride loop over `0..n`)
    // before the storage is handed to candle; nothing reads it earlier.
    let out = unsafe { dev.alloc::<T>(n)? };
    // alpha rounded to the storage type, as candle's affine rounds its constants.
    let (n64, alpha) = (n as u64, T::from_f64(alpha).to_f64() as f32);
    let mut builder = func.builder();
    builder.arg(&n64);
    builder.arg(&alpha);
    for view in &views {
        builder.arg(view);
    }
    if let Some(g) = gate_view.as_ref() {
        builder.arg(g);
    }
    builder.arg(&out);
    // SAFETY: the argument list matches the kernel's (`size_t n, float alpha`, one `const T*` per
    // input, `[const uint8_t* gate,] T* out`, see fused.cu), every pointer is a live device
    // allocation of at least `n` elements (the gate: one) on this stream, and `out` aliases no
    // input.
    unsafe { builder.launch(LaunchConfig::for_num_elems(elems)) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}
