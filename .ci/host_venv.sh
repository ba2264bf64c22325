#!/usr/bin/env bash
# Build (or update) the Python environment of one ComfyUI host for the tests, from ComfyUI's own files and the
# project's: ../shared/HOST.md's recipe.
#
#   bash .ci/host_venv.sh VENV VERSION [EXTRA_CONSTRAINT ...]
#
# - ComfyUI VERSION (0.33.0 or 0.3.64) is unpacked from ../shared/upstream into VENV/ComfyUI
#   (../shared/tools/unpack-comfyui; nothing happens when it is there already).
# - torch==2.13.0 exactly (the CPU wheel; a bare 'torch' pulls GBs of CUDA packages), held by constraints for
#   every later install, with EXTRA_CONSTRAINTs (e.g. 'transformers<5').
# - torchvision 0.28.0 (and, when ComfyUI lists it, torchaudio 2.11.0) without dependencies, then the CPU patches
#   of ../shared/tools (a CUDA build of either imports next to CPU torch once patched).
# - ComfyUI's requirements.txt less its torch/torchvision/torchaudio lines; its workflow templates without the
#   large media bundles (the templates package with --no-deps, plus the template index and JSON packages it
#   pins); the requirements of the ComfyUI-Manager its users have (0.33: manager_requirements.txt, the pip
#   comfyui_manager 4.x; 0.3.64: the git-cloned ComfyUI-Manager 3.31.9 of ../shared/upstream); then the pack's
#   requirements.txt and requirements-test.txt. The Manager tests install into this venv as a user's Manager
#   would (tests/manager_env.py, $HYPERSD_HOST_PYTHONS).
# Prints the ComfyUI folder on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$1 VERSION=$2
shift 2
SHARED=${HYPERSD_SHARED:-$(cd .. && pwd)/shared}
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
COMFY=$("$SHARED/tools/unpack-comfyui" "$(cd "$VENV" && pwd)/ComfyUI" "$VERSION" | tail -n 1)

CONSTRAINTS="$VENV/constraints.txt"
{ printf 'torch==2.13.0\ntorchvision==0.28.0\n'; for c in "$@"; do echo "$c"; done; } > "$CONSTRAINTS"
"${PIP[@]}" torch==2.13.0
if grep -q -E '^[[:space:]]*torchaudio[[:space:]]*$' "$COMFY/requirements.txt"; then
  echo 'torchaudio==2.11.0' >> "$CONSTRAINTS"
  "${PIP[@]}" --no-deps torchvision==0.28.0 torchaudio==2.11.0
else
  "${PIP[@]}" --no-deps torchvision==0.28.0
fi

REQS="$VENV/comfy-requirements.txt"
grep -v -E '^[[:space:]]*(torch|torchvision|torchaudio)[[:space:]]*$' "$COMFY/requirements.txt" \
  | grep -v -E '^[[:space:]]*comfyui-workflow-templates' > "$REQS"
TEMPLATES=$(grep -E '^[[:space:]]*comfyui-workflow-templates' "$COMFY/requirements.txt" | tr -d '[:space:]' || true)
MANAGER_REQS=()
if [ -f "$COMFY/manager_requirements.txt" ]; then
  MANAGER_REQS=(-r "$COMFY/manager_requirements.txt")
elif ls "$SHARED"/upstream/ComfyUI-Manager-*.tar.gz > /dev/null 2>&1; then
  MANAGER_DIR=$("$SHARED/tools/unpack-upstream" ComfyUI-Manager "$(mktemp -d)" | tail -n 1)
  MANAGER_REQS=(-r "$MANAGER_DIR/requirements.txt")
fi
"${PIP[@]}" -c "$CONSTRAINTS" -r "$REQS" requests "${MANAGER_REQS[@]}" -r requirements.txt -r requirements-test.txt
if [ -n "$TEMPLATES" ]; then
  "${PIP[@]}" --no-deps "$TEMPLATES"
  # The template packages it pins, less the media bundles (images and videos, GBs): what lists the templates.
  mapfile -t PINNED < <("$VENV/bin/python" - <<'EOF'
from importlib.metadata import requires
for req in requires("comfyui-workflow-templates") or []:
    name = req.split(";")[0].strip()
    if "extra ==" not in req and "-media-" not in name:
        print(name)
EOF
)
  [ ${#PINNED[@]} -eq 0 ] || "${PIP[@]}" --no-deps "${PINNED[@]}"
fi

for lib in torchvision torchaudio; do
  if "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$lib') is None)"; then
    "$VENV/bin/python" "$SHARED/tools/patch_${lib}_cpu.py" > /dev/null
  fi
done
"$VENV/bin/python" -c "import torch, torchvision, transformers, huggingface_hub as h; print('[ci] host venv $VENV:', \
'torch', torch.__version__, '| transformers', transformers.__version__, '| huggingface_hub', h.__version__)"
echo "$COMFY"
