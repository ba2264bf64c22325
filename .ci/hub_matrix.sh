#!/usr/bin/env bash
# The download tests (tests/test_download.py) once per huggingface_hub generation, each in its own small venv
# (python + huggingface_hub + pytest only: the download code imports without ComfyUI or torch).
#
#   bash .ci/hub_matrix.sh                       # 0.23.5 0.36.2 1.0.1 latest-1 latest-2
#   HUB_MATRIX="0.36.2 latest-2" bash .ci/hub_matrix.sh
#   bash .ci/hub_matrix.sh --setup-only          # only create/update the venvs (bench_download.py --matrix)
#
# A spec is an exact version, or latest-N (the newest N.x on PyPI, re-checked on every run). The venvs are
# cached under $HUB_MATRIX_CACHE (default .venv/hub-matrix); the first run takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${HUB_MATRIX_CACHE:-.venv/hub-matrix}
PYTHON=${HUB_MATRIX_PYTHON:-python3}
read -r -a SPECS <<< "${HUB_MATRIX:-0.23.5 0.36.2 1.0.1 latest-1 latest-2}"
SETUP_ONLY=0
[ "${1:-}" = "--setup-only" ] && SETUP_ONLY=1
mkdir -p "$CACHE"

requirement() {  # spec -> pip requirement
  case "$1" in
    latest-*) local major=${1#latest-}; echo "huggingface_hub>=${major},<$((major + 1))" ;;
    *) echo "huggingface_hub==$1" ;;
  esac
}

setup() {  # spec: create or update $CACHE/<spec>, then check the installed version matches the spec
  local spec=$1 venv="$CACHE/$1"
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -U "$(requirement "$spec")" "pytest>=8.0"
  local version
  version=$("$venv/bin/python" -c "import huggingface_hub; print(huggingface_hub.__version__)")
  case "$spec" in
    latest-*) [ "${version%%.*}" = "${spec#latest-}" ] ;;
    *) [ "$version" = "$spec" ] ;;
  esac || { echo "[hub-matrix] $venv has huggingface_hub $version, not $spec"; return 1; }
  echo "$version" > "$venv/hub-version"
}

pids=()
for spec in "${SPECS[@]}"; do
  setup "$spec" > "$CACHE/$spec.setup.log" 2>&1 &
  pids+=($!)
done
for i in "${!SPECS[@]}"; do
  if ! wait "${pids[$i]}"; then
    cat "$CACHE/${SPECS[$i]}.setup.log"
    echo "[hub-matrix] could not set up huggingface_hub ${SPECS[$i]} (log above)"
    exit 1
  fi
done
[ "$SETUP_ONLY" = 1 ] && { echo "[hub-matrix] venvs ready in $CACHE: ${SPECS[*]}"; exit 0; }

failed=()
summary=()
for spec in "${SPECS[@]}"; do
  version=$(cat "$CACHE/$spec/hub-version")
  echo "[hub-matrix] tests/test_download.py with huggingface_hub $version ($spec)"
  if "$CACHE/$spec/bin/python" -m pytest -c tests/pytest.ini tests/test_download.py -q -rs \
       > "$CACHE/$spec.test.log" 2>&1; then
    summary+=("  huggingface_hub $version: $(tail -n 1 "$CACHE/$spec.test.log")")
  else
    cat "$CACHE/$spec.test.log"
    summary+=("  huggingface_hub $version: FAILED: $(tail -n 1 "$CACHE/$spec.test.log")")
    failed+=("$spec")
  fi
done
echo "[hub-matrix] download tests per huggingface_hub generation:"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "[hub-matrix] failed with: ${failed[*]}"
  exit 1
fi
