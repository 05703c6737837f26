#!/usr/bin/env bash
# Create the project's virtual environment (.venv) and install everything it needs; idempotent.
# Sourced by tools/reproduce.sh and tools/test.sh. Needs only Python >= 3.11 and access to PyPI.
#   PYTHON=python3.12             the interpreter to build the venv from (default python3)
#   PLASTICITY_VENV=/path/venv    where the venv lives (default <repo>/.venv)
#   PLASTICITY_TORCH_SPEC=...     the torch to install when the venv has none (default torch==2.13.0;
#                                 add PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu for the CPU build
#                                 where PyPI would otherwise give you the CUDA one)
# Sourcing it from an interactive shell (`source tools/env.sh`, then `jupyter lab` or `plasticity docs`) leaves
# that shell's options as they were: the strict mode below is for this file only.
_plasticity_opts=$(set +o); case $- in *e*) _plasticity_opts+=$'\nset -e';; esac  # $(...) does not see -e
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${PLASTICITY_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "plasticity_nb needs Python >= 3.11, found " + sys.version' || { eval "$_plasticity_opts"; return 2 2>/dev/null || exit 2; }
[ -x "$VENV/bin/python" ] || { echo "[env] creating $VENV"; "$PY" -m venv "$VENV"; }
stamp="$VENV/.plasticity-installed"
want=$(cat "$ROOT/pyproject.toml" "$ROOT/tools/env.sh" | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    echo "[env] installing ${PLASTICITY_TORCH_SPEC:-torch==2.13.0}"
    "$VENV/bin/python" -m pip install -q "${PLASTICITY_TORCH_SPEC:-torch==2.13.0}"
  fi
  echo "[env] installing plasticity_nb and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# No MPLBACKEND here: matplotlib picks Agg by itself on a headless machine, and kernels (papermill, JupyterLab)
# keep their inline backend, so executed notebooks keep their figures.
export PYDEVD_DISABLE_FILE_VALIDATION=1
eval "$_plasticity_opts"; unset _plasticity_opts
