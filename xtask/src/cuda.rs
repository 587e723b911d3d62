//! `cargo xtask cuda-build`: the CUDA build of Kasmina on a machine with no GPU and no CUDA
//! install (issue 19), and the `dist/` folder that carries it to a GPU machine.
//!
//! 1. **Toolkit.** The CUDA 13.0 compiler, headers and link-time libraries come from NVIDIA's
//!    PyPI wheels, pinned below (the `cuda-toolkit==13.0.2` set), downloaded with pip into
//!    `target/cuda-toolkit/wheels13` and unpacked into `target/cuda-toolkit/cuda-13.0` (both
//!    git-ignored; done once). 13.0 and not newer: the GPU machines' R580 driver rejects PTX of a
//!    newer nvcc. The driver library `libcuda.so` is in no wheel, so a link-time stub with its
//!    soname is compiled from the names in `cuda.h` (every function returns
//!    `CUDA_ERROR_NO_DEVICE`); at run time the driver's own library is loaded.
//! 2. **Build.** With the toolkit's environment set on the child process only (`CUDA_HOME`,
//!    `NVCC`, `CUDA_COMPUTE_CAP`, `CUDARC_CUDA_VERSION`, `PATH`), into `target/cuda`, in one
//!    release cargo invocation: the `kasmina` binary, the `gpu_check` benchmark and the
//!    integration-test binaries of `kasmina-isolation` and `kasmina-runtime`. A cold build
//!    took about 8 minutes on two cores (most of it candle's kernels); later ones, about one.
//! 3. **dist/.** The binaries, without their line tables and xz-compressed (candle's embedded
//!    PTX is text: about 7×), the non-system libraries `kasmina` links (the plot's fontconfig and
//!    freetype, for a GPU machine without them), with
//!    `gpu-check.sh`, the runner for the GPU machine, and `manifest.json`; under 64 MiB in all,
//!    checked.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

use crate::cargo;

/// The CUDA 13.0 Update 2 component set (as `cuda-toolkit==13.0.2` pins it).
const WHEELS: &[&str] = &[
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-nvvm==13.0.88",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-cccl==13.0.85",
    "nvidia-cublas==13.1.0.3",
    "nvidia-curand==10.4.0.35",
    "nvidia-cuda-nvrtc==13.0.88",
];

/// The versioned libraries of the wheels that the linker wants under their plain names.
const UNVERSIONED: &[&str] =
    &["libcublas.so.13", "libcublasLt.so.13", "libcudart.so.13", "libcurand.so.10", "libnvrtc.so.13"];

/// What `dist/` may weigh (what the GPU machine's runner carries).
const DIST_LIMIT: u64 = 64 * 1024 * 1024;

/// The packages whose test binaries are built for the GPU machine.
const TEST_PACKAGES: &[&str] = &["kasmina-isolation", "kasmina-runtime"];

struct Options {
    cap: String,
    toolkit: Option<PathBuf>,
    skip_tests: bool,
}

fn parse(rest: &[String]) -> Result<Options> {
    let mut opts = Options { cap: "90".into(), toolkit: None, skip_tests: false };
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--cap" => opts.cap = it.next().context("--cap needs a compute capability (90 = H100/H200)")?.clone(),
            "--toolkit" => opts.toolkit = Some(PathBuf::from(it.next().context("--toolkit needs a folder")?)),
            "--skip-tests" => opts.skip_tests = true,
            other => bail!("unexpected argument `{other}` (cuda-build [--cap 90] [--toolkit DIR] [--skip-tests])"),
        }
    }
    ensure!(opts.cap.chars().all(|c| c.is_ascii_digit()) && !opts.cap.is_empty(), "--cap takes digits, like 90");
    Ok(opts)
}

/// `cargo xtask cuda-build [--cap 90] [--toolkit DIR] [--skip-tests]`.
pub(crate) fn run(root: &Path, rest: &[String]) -> Result<()> {
    let opts = parse(rest)?;
    let toolkit = match &opts.toolkit {
        Some(dir) => dir.clone(),
        None => ensure_toolkit(root)?,
    };
    let nvcc = toolkit.join("bin/nvcc");
    ensure!(nvcc.is_file(), "no nvcc at {}", nvcc.display());
    let target = root.join("target/cuda");
    let env = |cmd: &mut Command| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![toolkit.join("bin")];
        paths.extend(std::env::split_paths(&path));
        cmd.env("CUDA_HOME", &toolkit)
            .env("CUDA_PATH", &toolkit)
            .env("NVCC", &nvcc)
            .env("CUDA_COMPUTE_CAP", &opts.cap)
            .env("CUDARC_CUDA_VERSION", "13000")
            .env("PATH", std::env::join_paths(paths).unwrap_or(path))
            .arg("--target-dir")
            .arg(&target)
            .current_dir(root);
    };
    // One cargo invocation, so that one feature resolution serves every target: candle's
    // kernels (most of a cold build) are compiled once.
    let mut args = vec![
        "build",
        "--release",
        "--locked",
        "--message-format=json-render-diagnostics",
        "-p",
        "kasmina-cli",
        "-p",
        "kasmina-benches",
        "--features",
        "kasmina-cli/cuda,kasmina-benches/cuda",
        "--bin",
        "kasmina",
        "--example",
        "gpu_check",
    ];
    if !opts.skip_tests {
        for package in TEST_PACKAGES {
            args.extend(["-p", package]);
        }
        args.extend(["--test", "it"]);
    }
    let mut cmd = cargo();
    cmd.args(&args);
    env(&mut cmd);
    let built = executables(cmd)?;
    write_dist(root, &built, &opts.cap)
}

/// Runs a cargo build with JSON messages; the executables it produced, each with its name in
/// `dist/bin`: `kasmina`, `gpu_check`, or `test-<package>-<target>` for a test binary.
fn executables(mut cmd: Command) -> Result<Vec<(PathBuf, String)>> {
    eprintln!("$ {cmd:?}");
    let out = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).output().context("running cargo")?;
    ensure!(out.status.success(), "the CUDA build failed");
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        // Integration tests, binaries and examples: a library's unit tests (built as a
        // dependency's test harness) are CPU tests and not carried.
        let unit_tests = msg["profile"]["test"] == true && msg["target"]["kind"][0] != "test";
        if msg["reason"] == "compiler-artifact"
            && !unit_tests
            && let Some(exe) = msg["executable"].as_str()
        {
            let target = msg["target"]["name"].as_str().unwrap_or("bin").to_owned();
            let name = if msg["profile"]["test"] == true {
                let package = msg["manifest_path"]
                    .as_str()
                    .and_then(|p| Path::new(p).parent()?.file_name()?.to_str())
                    .unwrap_or("package");
                if !TEST_PACKAGES.contains(&package) {
                    continue; // built because its package shares the target name (`it`)
                }
                format!("test-{package}-{target}")
            } else {
                target
            };
            found.push((PathBuf::from(exe), name));
        }
    }
    ensure!(!found.is_empty(), "the CUDA build produced no executable");
    Ok(found)
}

/// The toolkit folder, assembled from the pinned wheels unless it already is.
fn ensure_toolkit(root: &Path) -> Result<PathBuf> {
    let base = root.join("target/cuda-toolkit");
    let home = base.join("cuda-13.0");
    if home.join("bin/nvcc").is_file() && home.join("lib/stubs/libcuda.so").is_file() {
        return Ok(home);
    }
    let wheels = base.join("wheels13");
    fs::create_dir_all(&wheels)?;
    eprintln!("cuda-build: downloading the CUDA 13.0 wheels into {}", wheels.display());
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(&wheels)
        .args(WHEELS)
        .status()
        .context("running pip (python3 -m pip)")?;
    ensure!(status.success(), "pip download of the CUDA wheels failed");
    let staging = base.join("staging");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    for wheel in fs::read_dir(&wheels)? {
        let wheel = wheel?.path();
        if wheel.extension().is_some_and(|e| e == "whl") {
            unzip(&wheel, &staging)?;
        }
    }
    let _ = fs::remove_dir_all(&home);
    // The 13.x wheels all install into nvidia/cu13/{bin,include,lib,nvvm}: a CUDA_HOME as is.
    fs::rename(staging.join("nvidia/cu13"), &home).context("the wheels hold no nvidia/cu13")?;
    let _ = fs::remove_dir_all(&staging);
    link(Path::new("lib"), &home.join("lib64"))?;
    for lib in UNVERSIONED {
        let plain = lib.split(".so").next().unwrap_or(lib);
        link(Path::new(lib), &home.join("lib").join(format!("{plain}.so")))?;
    }
    make_stub(&home)?;
    eprintln!("cuda-build: CUDA_HOME ready at {}", home.display());
    Ok(home)
}

/// Unpacks a wheel (a zip) with Python's zipfile, keeping the executable bits.
fn unzip(wheel: &Path, into: &Path) -> Result<()> {
    const SCRIPT: &str = "import sys, zipfile, os\n\
        z = zipfile.ZipFile(sys.argv[1])\n\
        for i in z.infolist():\n\
        \x20   if '.dist-info/' in i.filename: continue\n\
        \x20   p = z.extract(i, sys.argv[2])\n\
        \x20   mode = (i.external_attr >> 16) & 0o777\n\
        \x20   if mode: os.chmod(p, mode)\n";
    let status = Command::new("python3").args(["-c", SCRIPT]).arg(wheel).arg(into).status()?;
    ensure!(status.success(), "unpacking {} failed", wheel.display());
    Ok(())
}

fn link(target: &Path, at: &Path) -> Result<()> {
    let _ = fs::remove_file(at);
    std::os::unix::fs::symlink(target, at).with_context(|| format!("linking {}", at.display()))
}

/// `lib/stubs/libcuda.so` (soname `libcuda.so.1`): every `cu*` function of `cuda.h` returning
/// `CUDA_ERROR_NO_DEVICE` (100). Only for the linker: never put it on a GPU machine's library
/// path.
fn make_stub(home: &Path) -> Result<()> {
    let header = fs::read_to_string(home.join("include/cuda.h")).context("reading cuda.h")?;
    let mut names: Vec<&str> = header
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.len() > 2 && w.starts_with("cu") && w.as_bytes()[2].is_ascii_uppercase())
        .collect();
    names.sort_unstable();
    names.dedup();
    let stubs = home.join("lib/stubs");
    fs::create_dir_all(&stubs)?;
    let source: String = names.iter().map(|n| format!("int {n}(void) {{ return 100; }}\n")).collect();
    let c_file = stubs.join("cuda_stub.c");
    fs::write(&c_file, source)?;
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-O0", "-Wl,-soname,libcuda.so.1", "-o"])
        .arg(stubs.join("libcuda.so"))
        .arg(&c_file)
        .status()
        .context("running the C compiler for the libcuda stub")?;
    ensure!(status.success(), "compiling the libcuda stub failed");
    Ok(())
}

/// `dist/`: the executables xz-compressed under `dist/bin`, the runner and a manifest.
fn write_dist(root: &Path, built: &[(PathBuf, String)], cap: &str) -> Result<()> {
    let dist = root.join("dist");
    let _ = fs::remove_dir_all(&dist);
    fs::create_dir_all(dist.join("bin"))?;
    let mut entries = Vec::new();
    let staging = root.join("target/cuda/dist-staging");
    fs::create_dir_all(&staging)?;
    for (exe, name) in built {
        // Without the release profile's line tables (a third of the size), then xz.
        let stripped = staging.join(name);
        fs::copy(exe, &stripped).with_context(|| format!("copying {}", exe.display()))?;
        let status = Command::new("strip").arg("--strip-debug").arg(&stripped).status().context("running strip")?;
        ensure!(status.success(), "strip failed on {}", stripped.display());
        let packed = dist.join("bin").join(format!("{name}.xz"));
        let file = fs::File::create(&packed)?;
        let status =
            Command::new("xz").args(["-c", "-6", "-T2"]).arg(&stripped).stdout(file).status().context("running xz")?;
        ensure!(status.success(), "xz failed on {}", stripped.display());
        let (raw, size) = (fs::metadata(&stripped)?.len(), fs::metadata(&packed)?.len());
        eprintln!("dist/bin/{name}.xz: {:.1} MiB ({:.1} MiB unpacked)", mib(size), mib(raw));
        entries.push(serde_json::json!({ "name": name, "bytes": raw, "xz_bytes": size }));
    }
    let _ = fs::remove_dir_all(&staging);
    if let Some((kasmina, _)) = built.iter().find(|(_, name)| name == "kasmina") {
        bundle_libraries(kasmina, &dist.join("lib"))?;
    }
    let runner = dist.join("gpu-check.sh");
    fs::write(&runner, RUNNER)?;
    set_executable(&runner)?;
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let manifest = serde_json::json!({
        "commit": commit,
        "cuda": "13.0",
        "compute_cap": cap,
        "binaries": entries,
    });
    fs::write(dist.join("manifest.json"), serde_json::to_string_pretty(&manifest)?)?;
    let total = folder_size(&dist)?;
    eprintln!("dist/: {:.1} MiB in all (limit {:.0} MiB)", mib(total), mib(DIST_LIMIT));
    ensure!(total < DIST_LIMIT, "dist/ weighs {:.1} MiB, over the {:.0} MiB limit", mib(total), mib(DIST_LIMIT));
    Ok(())
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = fs::metadata(path)?.permissions();
    perms.set_mode(0o755);
    fs::set_permissions(path, perms)?;
    Ok(())
}

fn folder_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { folder_size(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Libraries a GPU machine is expected to have: glibc, the compiler's runtime, the driver and
/// the CUDA 13 user-space libraries (found by the runner).
const SYSTEM_LIBRARIES: &[&str] = &[
    "linux-vdso",
    "ld-linux",
    "libc.so",
    "libm.so",
    "libdl.so",
    "libpthread.so",
    "librt.so",
    "libgcc_s.so",
    "libstdc++.so",
    "libcuda.so",
    "libcudart.so",
    "libcublas.so",
    "libcublasLt.so",
    "libcurand.so",
    "libnvrtc.so",
];

/// Copies into `into` the other shared libraries `exe` needs (the plot's fontconfig and freetype
/// and theirs): the runner puts them on the library path only when the GPU machine lacks one.
fn bundle_libraries(exe: &Path, into: &Path) -> Result<()> {
    let out = Command::new("ldd").arg(exe).output().context("running ldd")?;
    fs::create_dir_all(into)?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((name, rest)) = line.trim().split_once(" => ") else { continue };
        let Some(path) = rest.split_whitespace().next().filter(|p| p.starts_with('/')) else { continue };
        if SYSTEM_LIBRARIES.iter().any(|lib| name.starts_with(lib)) {
            continue;
        }
        fs::copy(path, into.join(name)).with_context(|| format!("copying {path}"))?;
        eprintln!("dist/lib/{name} (from {path})");
    }
    Ok(())
}

/// `dist/gpu-check.sh`, the runner on the GPU machine.
const RUNNER: &str = include_str!("gpu-check.sh");
