#!/usr/bin/env bash
# Second device call of issue 13: the fixes on the machine's own transformers (5.17): seeded fast-engine sampling
# reproducible after a CUDA-graph capture, and the smoke and rehearsal routes (fast and hf engines) side by side.
set -u
OUT=${OUT:-bench/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
python3 - <<'PY' 2>&1 | tee "$OUT/rng.log"
import torch, transformers
from transformers import Qwen2Config, Qwen2ForCausalLM
from plasticity_nb.engines import generate, clear_fast_cache
print('transformers', transformers.__version__)
torch.manual_seed(0)
m = Qwen2ForCausalLM(Qwen2Config(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                 intermediate_size=128, max_position_embeddings=256)).cuda().eval()
P = [[int(x) for x in torch.randint(1, 500, (n,))] for n in (5, 9, 17, 3)]
kw = dict(temperature=1.0, max_new_tokens=24, eos_token_id=[], pad_token_id=0, engine='fast', n=4)
clear_fast_cache()
a = generate(m, None, P, seed=7, **kw); b = generate(m, None, P, seed=7, **kw); c = generate(m, None, P, seed=8, **kw)
print('cuda_graph', a.info.get('cuda_graph'), 'capture then replay identical:', a.completion_ids == b.completion_ids, '| other seed differs:', a.completion_ids != c.completion_ids)
PY
(timeout 150 python3 bench/gpu_routes.py smoke --out "$OUT" > "$OUT/smoke.log" 2>&1; echo "smoke rc=$?") &
(timeout 150 python3 bench/gpu_routes.py rehearsal --engine fast --out "$OUT" > /tmp/reh.log 2>&1; echo "rehearsal fast rc=$?") &
(mkdir -p /tmp/hf && timeout 150 python3 bench/gpu_routes.py rehearsal --engine hf --out /tmp/hf > /tmp/rehhf.log 2>&1; echo "rehearsal hf rc=$?"; cp /tmp/hf/rehearsal.json "$OUT/rehearsal_hf.json") &
wait
python3 - "$OUT" <<'PY'
import json, sys, pathlib
o = pathlib.Path(sys.argv[1])
for f in ('smoke.json', 'rehearsal.json', 'rehearsal_hf.json'):
    p = o/f
    if not p.exists(): print(f, 'missing'); continue
    d = json.loads(p.read_text())
    print(f, {k: d.get(k) for k in ('device', 'engine', 'ok', 'seconds', 'error')})
    print(json.dumps(d.get('stages'), default=str)[:1200])
PY
