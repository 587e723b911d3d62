// The fused slot kernels of kasmina-isolation (src/fused.rs), compiled to PTX by build.rs when
// the `cuda` feature is on. Each element is computed in float with a rounding to the storage type
// after every operation, as candle's CPU ops on bf16/f16 (the `half` crate) and as the plain
// candle expressions: `h + (d*alpha + 0)`, `h + (d - d)`, `h + d`, and for the gated forms'
// backward into d, `g*alpha + 0` or `g` where the gate is open, 0 where it is closed. Built with
// --fmad=false. Signatures: (size_t n, float alpha, const T* inputs..., [const uint8_t* gate,]
// T* out); names kasmina_<stem>_<dtype>[_gated].
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

__device__ __forceinline__ float up(float x) { return x; }
__device__ __forceinline__ float up(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float up(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T down(float x);
template <> __device__ __forceinline__ float down<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 down<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half down<__half>(float x) { return __float2half_rn(x); }

enum Kind { BLEND = 0, STRAIGHT_THROUGH = 1, ADD = 2 };

template <typename T, int K>
__device__ __forceinline__ T one(T h, T d, float alpha) {
    if (K == BLEND) {
        // alpha is already rounded to T by the host, as candle's affine rounds its constants.
        const T scaled = down<T>(up(d) * alpha);
        const T shifted = down<T>(up(scaled) + 0.0f);
        return down<T>(up(h) + up(shifted));
    } else if (K == STRAIGHT_THROUGH) {
        const T zero = down<T>(up(d) - up(d));  // 0, or NaN for a non-finite d
        return down<T>(up(h) + up(zero));
    } else {
        return down<T>(up(h) + up(d));
    }
}

template <typename T, int K, bool GATED>
__device__ __forceinline__ void fused(const size_t n, const float alpha, const T *h, const T *d,
                                      const uint8_t *gate, T *out) {
    const bool open = !GATED || gate[0] != 0;
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        out[i] = open ? one<T, K>(h[i], d[i], alpha) : h[i];
    }
}

#define KASMINA_FUSED(STEM, SUFFIX, T, K)                                                           \
    extern "C" __global__ void kasmina_##STEM##_##SUFFIX(const size_t n, const float alpha,         \
                                                         const T *h, const T *d, T *out) {          \
        fused<T, K, false>(n, alpha, h, d, nullptr, out);                                           \
    }                                                                                               \
    extern "C" __global__ void kasmina_##STEM##_##SUFFIX##_gated(                                  \
        const size_t n, const float alpha, const T *h, const T *d, const uint8_t *gate, T *out) {   \
        fused<T, K, true>(n, alpha, h, d, gate, out);                                               \
    }

KASMINA_FUSED(blend, f32, float, BLEND)
KASMINA_FUSED(blend, bf16, __nv_bfloat16, BLEND)
KASMINA_FUSED(blend, f16, __half, BLEND)
KASMINA_FUSED(straight_through, f32, float, STRAIGHT_THROUGH)
KASMINA_FUSED(straight_through, bf16, __nv_bfloat16, STRAIGHT_THROUGH)
KASMINA_FUSED(straight_through, f16, __half, STRAIGHT_THROUGH)
KASMINA_FUSED(add, f32, float, ADD)
KASMINA_FUSED(add, bf16, __nv_bfloat16, ADD)
KASMINA_FUSED(add, f16, __half, ADD)

// The gated forms' backward into d: one pass over the upstream gradient g.
template <typename T, bool SCALE>
__device__ __forceinline__ void gated_grad(const size_t n, const float alpha, const T *g, const uint8_t *gate,
                                           T *out) {
    const bool open = gate[0] != 0;
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        if (!open) {
            out[i] = down<T>(0.0f);
        } else if (SCALE) {
            const T scaled = down<T>(up(g[i]) * alpha);
            out[i] = down<T>(up(scaled) + 0.0f);
        } else {
            out[i] = g[i];
        }
    }
}

#define KASMINA_GRAD(SUFFIX, T)                                                                      \
    extern "C" __global__ void kasmina_grad_blend_##SUFFIX##_gated(const size_t n, const float alpha, \
                                                                   const T *g, const uint8_t *gate,  \
                                                                   T *out) {                         \
        gated_grad<T, true>(n, alpha, g, gate, out);                                                 \
    }                                                                                                \
    extern "C" __global__ void kasmina_grad_copy_##SUFFIX##_gated(const size_t n, const float alpha,  \
                                                                  const T *g, const uint8_t *gate,   \
                                                                  T *out) {                          \
        gated_grad<T, false>(n, alpha, g, gate, out);                                                \
    }

KASMINA_GRAD(f32, float)
KASMINA_GRAD(bf16, __nv_bfloat16)
KASMINA_GRAD(f16, __half)
