#!/usr/bin/env bash
# gpu-check.sh: Kasmina's checks on a GPU machine (issue 19). Written into dist/ by
# `cargo xtask cuda-build`; needs no Rust and no network on the GPU machine, only its NVIDIA
# driver (R580 or newer: CUDA 13.0) and the CUDA 13 user-space libraries (a CUDA 13 toolkit, or
# PyTorch's cu130 wheels).
#
#   dist/gpu-check.sh            run from the repository root (the demo reads datasets/)
#
# Runs, in order: the CUDA test binaries (kasmina-isolation's in full, kasmina-runtime's CUDA
# tests), the demo on --device cuda for every task, and the GPU benchmarks (gpu_check: fused vs
# plain slot forward beside the device's copy bandwidth; Kasmina's per-step overhead on the cnn
# and transformer hosts). Progress goes to stderr; the last line of stdout is one JSON summary,
# also written to $OUT/gpu-check.json when OUT is set. Exit status 0 only when every step passed.
#
# Knobs: GPU_CHECK_DEMO_EPOCHS (default: each task's own), GPU_CHECK_SKIP="tests demo bench"
# (any of them), GPU_CHECK_ALL_RUNTIME_TESTS=1 (every kasmina-runtime test, not only the CUDA ones),
# and the gpu_check knobs (GPU_BENCH_ELEMS, GPU_BENCH_ITERS, GPU_BENCH_STEPS).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
skip=" ${GPU_CHECK_SKIP:-} "

# --- the binaries -----------------------------------------------------------------------------
for packed in "$here"/bin/*.xz; do
  name=$(basename "$packed" .xz)
  xz -dc "$packed" > "$work/$name" && chmod +x "$work/$name"
done

# --- the CUDA 13 libraries (toolkit first, then PyTorch's wheels) -----------------------------
need=(libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13)
cands=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib)
for d in /usr/local/cuda-13*/lib64 /usr/local/cuda-13*/targets/x86_64-linux/lib; do cands+=("$d"); done
if command -v python3 >/dev/null 2>&1; then
  while IFS= read -r sp; do
    [ -d "$sp/nvidia" ] || continue
    cands+=("$sp/nvidia/cu13/lib")
    for d in "$sp"/nvidia/*/lib; do cands+=("$d"); done
  done < <(python3 -c 'import site, sysconfig
p = set(site.getsitepackages() + [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
print("\n".join(sorted(p)))' 2>/dev/null)
fi
lp=""
for lib in "${need[@]}"; do
  for d in "${cands[@]}"; do
    if [ -e "$d/$lib" ]; then
      case ":$lp:" in *":$d:"*) ;; *) lp="$lp${lp:+:}$d" ;; esac
      echo "[gpu-check] $lib -> $d" >&2
      break
    fi
  done
done
export LD_LIBRARY_PATH="$lp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The other libraries kasmina links (fontconfig, freetype and theirs), from dist/lib, only when
# this machine lacks one of them.
if ldd "$work/kasmina" 2>/dev/null | grep -v -E 'libcuda|libcudart|libcublas|libcurand' | grep -q 'not found'; then
  echo "[gpu-check] using the bundled libraries of dist/lib" >&2
  export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$here/lib"
fi

# --- the steps --------------------------------------------------------------------------------
steps=()   # JSON objects
failed=0
json_escape() { python3 -c 'import json, sys; print(json.dumps(sys.stdin.read()))' 2>/dev/null || echo '""'; }

# step KIND NAME COMMAND...: runs it, records pass/fail, seconds and the log's tail.
step() {
  local kind=$1 name=$2; shift 2
  local log="$work/$kind-$name.log" start end rc
  echo "[gpu-check] $kind $name: $*" >&2
  start=$(date +%s.%N)
  "$@" >"$log" 2>&1; rc=$?
  end=$(date +%s.%N)
  [ $rc -eq 0 ] || failed=1
  tail -n 5 "$log" | sed 's/^/    /' >&2
  local tail_json; tail_json=$(tail -n 15 "$log" | json_escape)
  steps+=("{\"kind\":\"$kind\",\"name\":\"$name\",\"ok\":$([ $rc -eq 0 ] && echo true || echo false),\"seconds\":$(python3 -c "print(round($end-$start,2))" 2>/dev/null || echo 0),\"tail\":$tail_json}")
}

if [[ "$skip" != *" tests "* ]]; then
  for t in "$work"/test-kasmina-isolation-*; do
    step test "$(basename "$t")" "$t"
  done
  for t in "$work"/test-kasmina-runtime-*; do
    if [ "${GPU_CHECK_ALL_RUNTIME_TESTS:-0}" = 1 ]; then step test "$(basename "$t")" "$t"
    else step test "$(basename "$t")" "$t" cuda; fi
  done
fi
if [[ "$skip" != *" demo "* ]]; then
  for task in mlp cnn transformer; do
    epochs=()
    [ -n "${GPU_CHECK_DEMO_EPOCHS:-}" ] && epochs=(--epochs "$GPU_CHECK_DEMO_EPOCHS")
    step demo "$task" "$work/kasmina" demo --task "$task" --device cuda "${epochs[@]}" --out "$work/demo-$task"
  done
fi
bench="null"
if [[ "$skip" != *" bench "* ]]; then
  step bench gpu_check "$work/gpu_check"
  bench=$(grep '^{' "$work/bench-gpu_check.log" | tail -n 1)
  [ -n "$bench" ] || bench="null"
fi

joined=$(IFS=,; echo "${steps[*]:-}")
summary="{\"passed\":$([ $failed -eq 0 ] && echo true || echo false),\"manifest\":$(cat "$here/manifest.json" 2>/dev/null || echo null),\"steps\":[$joined],\"bench\":$bench}"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" && echo "$summary" > "$OUT/gpu-check.json"
  for task in mlp cnn transformer; do [ -d "$work/demo-$task" ] && cp -r "$work/demo-$task" "$OUT/" 2>/dev/null; done
fi
echo "$summary"
exit $failed
