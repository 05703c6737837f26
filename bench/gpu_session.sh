#!/usr/bin/env bash
# One device call (issue 13): (a) bench/gpu.py within its budget, (b) the smoke profile on CUDA end to end,
# (c) the rehearsal profile on CUDA with the fast engine. Everything lands in $OUT (6 files):
# results.json and bench.log (gpu.py), smoke.json, rehearsal.json, rehearsal_train.log, session.log.
# Run from the repository root with the wheels of bench/RESULTS.md in .whl/ (carry: [".whl"]):
#   bash bench/gpu_session.sh            (BUDGET=240 ROUTES_S=150 by default)
set -u
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, transformers, trl, datasets, math_verify; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'datasets', datasets.__version__, 'cuda', torch.cuda.is_available())"
el "(a) bench/gpu.py --budget ${BUDGET:-240}"
timeout $(( ${BUDGET:-240} + 60 )) python3 bench/gpu.py --out "$OUT" --budget "${BUDGET:-240}" > "$OUT/gpu_stdout.tmp" 2>&1; echo "gpu.py rc=$?"
grep -v "examples/s\|warn\|it/s\]" "$OUT/gpu_stdout.tmp" | tail -40; rm -f "$OUT/gpu_stdout.tmp"
el "(b) smoke profile on CUDA and (c) rehearsal profile on CUDA with rollout_engine=fast, side by side (tiny models)"
timeout "${ROUTES_S:-150}" python3 bench/gpu_routes.py smoke --out "$OUT" > /tmp/smoke.log 2>&1 &
p1=$!
timeout "${ROUTES_S:-150}" python3 bench/gpu_routes.py rehearsal --engine fast --out "$OUT" > /tmp/reh.log 2>&1 &
p2=$!
wait $p1; echo "smoke rc=$?"; wait $p2; echo "rehearsal rc=$?"
grep -v "it/s\]\|Writing\|warn" /tmp/smoke.log | tail -8; grep -v "it/s\]\|Writing\|warn" /tmp/reh.log | tail -8
el done
python3 - "$OUT" <<'PY'
import json, sys, pathlib
o = pathlib.Path(sys.argv[1])
for f in ('results.json', 'smoke.json', 'rehearsal.json'):
    p = o/f
    if not p.exists(): print(f, 'missing'); continue
    d = json.loads(p.read_text())
    keys = ('device', 'sft_speedup_vs_trl', 'rollout_speedup_vs_hf_generate', 'sft_tokens_per_s', 'sft_baseline_tokens_per_s',
            'rollout_tokens_per_s', 'rollout_baseline_tokens_per_s', 'ok', 'seconds', 'error')
    print(f, {k: d[k] for k in keys if k in d})
    if 'stages' in d: print(json.dumps(d['stages'], default=str)[:1500])
PY
