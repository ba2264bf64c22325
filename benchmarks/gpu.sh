#!/usr/bin/env bash
# One-command GPU benchmark: SDXL with random fp16 weights at 1024² through the headless runner (1, 2, 4, 8
# steps: s/image, s/model call), the TCD sampler against core euler on the same sigmas, the LoRA node call
# against LoraLoaderModelOnly, the one-step UNet against CheckpointLoaderSimple + euler. Writes one
# markdown table (benchmarks/gpu-results.md, or --out FILE). Details: benchmarks/gpu_bench.py.
#
#   bash benchmarks/gpu.sh            # on a machine with an NVIDIA GPU
#   bash benchmarks/gpu.sh --cpu      # SD1.5 at 256² on the CPU: proves the script runs (no one-step row)
#   bash benchmarks/gpu.sh --setup-only   # only the ComfyUI and Python set-up below
#
# It sets up everything from the project's own files, on a machine that has only this working tree:
# - ComfyUI: $COMFYUI_PATH, else ~/comfy/ComfyUI, else .bench/ComfyUI: 0.33.0 unpacked by ../shared/tools/unpack-comfyui,
#   or a tarball at $HYPERSD_COMFYUI_TARBALL or .bench/comfyui-0.33.0.tar.gz (no git clone: offline machines too).
# - Python: $HYPERSD_PYTHON if set; with --cpu the CI's .venv when it has torch; else the venv .venv-gpu,
#   created once. Where the machine's python3 already has a CUDA torch, .venv-gpu reuses it
#   (--system-site-packages), else it installs torch==2.13.0 (the project's pin; PyPI's Linux x86-64
#   wheel is the CUDA build). Then ComfyUI's requirements (without torch/torchvision/torchaudio), the
#   pack's requirements, pytest and requests. Offline: HYPERSD_WHEELS=DIR installs from wheels in DIR only
#   (a GPU image with torch lacks, e.g., ComfyUI's alembic, av, comfyui-frontend-package,
#   comfyui-workflow-templates, comfyui-embedded-docs, kornia, spandrel, sqlalchemy, torchsde, pydantic-settings).
# Models are random (tests/models.py), built once into ~/.cache/hypersd-pack-tests (SDXL: 6.9 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
CPU=0; SETUP_ONLY=0; ARGS=()
for a in "$@"; do
  case "$a" in --cpu) CPU=1; ARGS+=("$a") ;; --setup-only) SETUP_ONLY=1 ;; *) ARGS+=("$a") ;; esac
done

# --- ComfyUI --------------------------------------------------------------------------------------------
COMFY=${COMFYUI_PATH:-$HOME/comfy/ComfyUI}
if [ ! -f "$COMFY/main.py" ]; then
  COMFY=$PWD/.bench/ComfyUI
  if [ ! -f "$COMFY/main.py" ] && [ -x ../shared/tools/unpack-comfyui ] && [ -z "${HYPERSD_COMFYUI_TARBALL:-}" ]; then
    # the main host, 0.33.0, as .ci/run builds it (../shared/HOST.md)
    COMFY=$(../shared/tools/unpack-comfyui "$PWD/.bench/ComfyUI" 0.33.0 | tail -n 1)
  elif [ ! -f "$COMFY/main.py" ]; then
    tarball=""
    for t in "${HYPERSD_COMFYUI_TARBALL:-}" .bench/comfyui-0.33.0.tar.gz .bench/comfyui-0.3.64.tar.gz; do
      if [ -n "$t" ] && [ -f "$t" ]; then tarball=$t; break; fi
    done
    if [ -z "$tarball" ]; then
      echo "gpu.sh: no ComfyUI: set COMFYUI_PATH, or put comfyui-0.33.0.tar.gz (or 0.3.64) in .bench/" >&2
      exit 2
    fi
    mkdir -p .bench
    tar -xzf "$tarball" -C .bench   # the archive holds ComfyUI/
  fi
fi
export COMFYUI_PATH=$COMFY
echo "[gpu.sh] ComfyUI: $COMFY"

# --- Python ---------------------------------------------------------------------------------------------
has_torch() { "$1" -c "import torch, sys; sys.exit(0 if ${2:-True} else 1)" >/dev/null 2>&1; }
if [ -n "${HYPERSD_PYTHON:-}" ]; then
  PY=$HYPERSD_PYTHON
elif [ "$CPU" = 1 ] && [ -x .venv/bin/python ] && has_torch .venv/bin/python; then
  PY=.venv/bin/python
else
  VENV=.venv-gpu
  PIP_SRC=()
  [ -n "${HYPERSD_WHEELS:-}" ] && PIP_SRC=(--no-index --find-links "$HYPERSD_WHEELS")
  if [ ! -x "$VENV/bin/python" ]; then
    if has_torch python3 "torch.cuda.is_available()"; then
      echo "[gpu.sh] python3 has a CUDA torch: $VENV reuses it"
      python3 -m venv --system-site-packages "$VENV"
    else
      python3 -m venv "$VENV"
    fi
  fi
  PY=$VENV/bin/python
  PIP=("$PY" -m pip install -q --disable-pip-version-check "${PIP_SRC[@]}")
  stamp="$VENV/.hypersd-stamp"
  want=$(cat "$COMFY/requirements.txt" requirements.txt requirements-test.txt | sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    has_torch "$PY" || "${PIP[@]}" torch==2.13.0
    tv=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
    printf 'torch==%s\n' "$tv" > "$VENV/constraints.txt"
    grep -v -E '^[[:space:]]*(torch|torchvision|torchaudio)[[:space:]]*$' "$COMFY/requirements.txt" > "$VENV/comfy-req.txt"
    "$PY" -c "import torchvision" >/dev/null 2>&1 || [ "$tv" != "2.13.0" ] || "${PIP[@]}" --no-deps torchvision==0.28.0
    # ComfyUI 0.20+ imports torchaudio in nodes.py (its requirements list it): as .ci/host_venv.sh installs it
    if grep -q -E '^[[:space:]]*torchaudio[[:space:]]*$' "$COMFY/requirements.txt"; then
      "$PY" -c "import torchaudio" >/dev/null 2>&1 || [ "$tv" != "2.13.0" ] || "${PIP[@]}" --no-deps torchaudio==2.11.0
    fi
    # Of the tests' requirements the benchmark needs pytest alone (tests/host.py imports it): fewer wheels
    # to bring to a machine without network.
    grep -i -E '^pytest([<>=!~ ]|$)' requirements-test.txt > "$VENV/test-req.txt"
    "${PIP[@]}" -c "$VENV/constraints.txt" -r "$VENV/comfy-req.txt" -r requirements.txt -r "$VENV/test-req.txt" requests
    # A CPU-only torch 2.13.0 next to torchvision 0.28.0 (a CUDA build) needs ../shared's patch (HOST.md).
    if ! "$PY" -c "import torchvision" >/dev/null 2>&1; then
      for patch in ../shared/tools/patch_torchvision_cpu.py "$COMFY/../../shared/tools/patch_torchvision_cpu.py" \
          "${HYPERSD_TORCHVISION_PATCH:-}"; do
        if [ -n "$patch" ] && [ -f "$patch" ]; then "$PY" "$patch"; break; fi
      done
    fi
    if grep -q -E '^[[:space:]]*torchaudio[[:space:]]*$' "$COMFY/requirements.txt" && \
        ! "$PY" -c "import torchaudio" >/dev/null 2>&1 && [ -f ../shared/tools/patch_torchaudio_cpu.py ]; then
      "$PY" ../shared/tools/patch_torchaudio_cpu.py
    fi
    echo "$want" > "$stamp"
  fi
fi
echo "[gpu.sh] python: $PY ($("$PY" -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")'))"

[ "$SETUP_ONLY" = 1 ] && exit 0

# --- the benchmark --------------------------------------------------------------------------------------
PYTHONUNBUFFERED=1 "$PY" benchmarks/gpu_bench.py "${ARGS[@]}"
echo "[gpu.sh] total $(( $(date +%s) - start )) s"
