#!/usr/bin/env bash
# Runs fksteer's GPU check: `fksteer doctor`, then `fksteer bench providers` (the denoiser per
# step on each execution provider, for glyphs, the MNIST DiT and the synthetic SD 1.5 export at
# 512x512 with guidance). The tables go to stdout and to $OUT (or out/gpu-check).
#
# On a machine with a GPU it first gives Vulkan what a bare machine lacks:
#   - the Vulkan loader: the system's libvulkan.so.1, else one carried in .gpu/lib (copy it there
#     from a machine that has it: the loader is one self-contained file), else apt-get;
#   - NVIDIA's Vulkan driver manifest: containers get the driver's libGLX_nvidia.so.0 but often
#     not nvidia_icd.json (the NVIDIA runtime adds it only with the graphics capability), so one
#     is written to a temporary folder and VK_DRIVER_FILES points at it;
#   - XDG_RUNTIME_DIR, which Dawn wants.
# With a CUDA build of ONNX Runtime in $FKSTEER_ORT_LIB the cuda provider is measured too.
#
# Usage: scripts/gpu-check.sh [--quick]
#   --quick: small sizes and few steps, for CI on a software adapter (lavapipe), where it shows
#            that the check runs, not how fast a GPU is.
#   FKSTEER=path/to/fksteer (default bin/fksteer, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = --quick ] && quick=1
out=${OUT:-out/gpu-check}
mkdir -p "$out"
fksteer=${FKSTEER:-bin/fksteer}
if [ ! -x "$fksteer" ]; then
  go build -o bin/fksteer ./cmd/fksteer
  fksteer=bin/fksteer
fi

export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The Vulkan loader.
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1 '; then
  if [ -f .gpu/lib/libvulkan.so.1 ]; then
    export LD_LIBRARY_PATH=$PWD/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get install -y -qq libvulkan1 >/dev/null 2>&1; then
    :
  else
    echo "gpu-check: no Vulkan loader (libvulkan.so.1): install libvulkan1 or copy it into .gpu/lib" >&2
  fi
fi

# NVIDIA's driver manifest, when the driver is there and its manifest is not.
manifests=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null || true)
if [ -z "${VK_DRIVER_FILES:-}" ] && ! grep -qs nvidia $manifests /dev/null; then
  glx=$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia.so.0 /{print $NF; exit}')
  if [ -n "$glx" ]; then
    cat >"$tmp/nvidia_icd.json" <<EOF
{"file_format_version": "1.0.1", "ICD": {"library_path": "$glx", "api_version": "1.3.0"}}
EOF
    export VK_DRIVER_FILES=$tmp/nvidia_icd.json${manifests:+:$(echo $manifests | tr ' ' ':')}
    echo "gpu-check: wrote an NVIDIA Vulkan driver manifest for $glx"
  fi
fi

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/GPU: /' | tee "$out/gpu.txt" || true

"$fksteer" doctor | tee "$out/doctor.txt"
"$fksteer" doctor --json >"$out/doctor.json"
if ! grep -A3 '"provider": "webgpu"' "$out/doctor.json" | grep -q '"runs": true'; then
  if [ "${CI:-}" = true ] || [ "$quick" = 0 ]; then
    echo "gpu-check: WebGPU does not run here (see the doctor report above)" >&2
    exit 1
  fi
  echo "gpu-check: skipped, WebGPU does not run here (scripts/install-vulkan.sh installs a software adapter)"
  exit 0
fi

providers=cpu,webgpu
if "$fksteer" doctor --json | grep -A3 '"provider": "cuda"' | grep -q '"runs": true'; then
  providers=$providers,cuda
fi
if [ "$quick" = 1 ]; then
  set -- --ks 1,2 --steps 2 --sd-size 128
else
  set -- --ks 1,4,16 --steps 10 --sd-size 512
fi
"$fksteer" bench providers --providers "$providers" "$@" --json-file "$out/providers.json" | tee "$out/providers.md"
echo "gpu-check: results in $out"
