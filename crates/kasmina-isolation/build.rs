//! With the `cuda` feature: compiles `src/fused.cu` to PTX (`$OUT_DIR/fused.ptx`) with `nvcc`
//! (`$NVCC`, else `$CUDA_HOME/bin/nvcc`, else `nvcc` on the `PATH`) for the virtual architecture
//! `compute_$CUDA_COMPUTE_CAP` (default 90: H100/H200). Without the feature it does nothing.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/fused.cu");
    for var in ["NVCC", "CUDA_HOME", "CUDA_COMPUTE_CAP", "CARGO_FEATURE_CUDA"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let nvcc = std::env::var_os("NVCC")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CUDA_HOME").map(|home| PathBuf::from(home).join("bin/nvcc")))
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("fused.ptx");
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", "--fmad=false", "-std=c++17"])
        .arg(format!("--gpu-architecture=compute_{cap}"))
        .arg("-o")
        .arg(&out)
        .arg("src/fused.cu")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{} failed ({s}) compiling src/fused.cu", nvcc.display()),
        Err(e) => panic!(
            "the `cuda` feature needs nvcc to compile src/fused.cu: running {} failed ({e}); \
             set NVCC or CUDA_HOME (`cargo xtask cuda-build` does)",
            nvcc.display()
        ),
    }
}
