#!/usr/bin/env bash
# The main job: the papermill reproduction of every figure and table (default profile: tiny, CPU, no downloads).
# Arguments go to `plasticity reproduce` (e.g. --profile tiny --only retu_table4,retu_fig8 --out DIR).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
exec plasticity reproduce "$@"
