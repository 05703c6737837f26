#!/usr/bin/env python
"""SFT and rollout throughput on one GPU, for a random-initialised model of Qwen2.5-0.5B's shape (issue 5).

    python bench/gpu.py [--out DIR] [--budget SECONDS]     # on a GPU machine (about 5 minutes on an H100)
    python bench/gpu.py --cpu-smoke                        # every code path on a tiny model, on the CPU, in seconds

Nothing is downloaded: the model is built from a Qwen2Config and the data are random token ids. Each measurement
runs warm-up steps first and then timed steps (CUDA synchronised around them). Writes DIR/results.json after every
section (so an interrupted run keeps what it measured) and DIR/bench.log, and prints a table last. DIR defaults to
$OUT, else bench/out.

Sections, cheapest and most important first:
  rollout  fast engine (static KV cache + CUDA graph) at 64 / 512 / 1024 rows, its eager ablation, and HF generate
           with TRL's GRPO settings (8 prompts x 8 rollouts, 256 new tokens: the baseline) and at 512 rows
  sft      TRL SFTTrainer defaults (the baseline), a plain torch loop, and optimised loops (Liger fused linear
           cross-entropy, fused AdamW, no activation checkpointing; + Liger layer kernels or torch.compile per
           layer), and TRL SFTTrainer with the tuned flags
  extras   (if the time budget allows) one GRPOTrainer step with HF generate vs the fast engine, and transformers'
           continuous batching
"""
from __future__ import annotations
import argparse, datetime, gc, json, math, os, signal, sys, tempfile, time, traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
os.environ.setdefault('WANDB_DISABLED', 'true')

import torch

PEAK_BF16 = 989e12  # H100 SXM dense bf16, datasheet (MFU denominator, as in the issue)
QWEN05 = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
              intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=32768,
              rope_theta=1000000.0, rms_norm_eps=1e-6)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
            vocab_size=1024, tie_word_embeddings=True, max_position_embeddings=1024)

T0 = time.perf_counter()
R: dict = {}
LOG = None

def log(*a):
    s = f"[{time.perf_counter()-T0:6.1f}s] " + ' '.join(str(x) for x in a)
    print(s, flush=True)
    if LOG: LOG.write(s + '\n'); LOG.flush()

def save(out: Path):
    tmp = out/'results.json.tmp'
    tmp.write_text(json.dumps(R, indent=1, default=str)); tmp.replace(out/'results.json')

def elapsed(): return time.perf_counter() - T0

def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)

# ---------------------------------------------------------------------------------------------------- model, data
def make_model(shape, dev, dtype):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    cfg = Qwen2Config(**shape, bos_token_id=None, eos_token_id=shape['vocab_size']-3, pad_token_id=shape['vocab_size']-4)
    with torch.device(dev): m = Qwen2ForCausalLM(cfg)
    return m.to(dtype)

def make_tokenizer(vocab):
    "A word-level tokenizer over tokens 't0'..'t{V-1}' (ids = positions), with Qwen-like special tokens at the top"
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    names = [f"t{i}" for i in range(vocab)]
    names[vocab-4], names[vocab-3], names[0] = '<|endoftext|>', '<|im_end|>', '<unk>'
    tk = Tokenizer(models.WordLevel({n: i for i, n in enumerate(names)}, unk_token='<unk>'))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token='<unk>', pad_token='<|endoftext|>', eos_token='<|im_end|>')

def n_matmul_params(shape):
    h, f, L, V = shape['hidden_size'], shape['intermediate_size'], shape['num_hidden_layers'], shape['vocab_size']
    hd = h // shape['num_attention_heads']; kv = shape['num_key_value_heads'] * hd
    return L * (h*h*2 + h*kv*2 + 3*h*f) + h*V

def train_flops_per_token(shape, seq):
    "6 N (matmul weights incl. the LM head) + 12 L s d (attention scores and values, no causal discount)"
    return 6*n_matmul_params(shape) + 12*shape['num_hidden_layers']*seq*shape['hidden_size']

def random_prompts(n, lo, hi, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(10, vocab-10, (int(torch.randint(lo, hi+1, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]

# ---------------------------------------------------------------------------------------------------- rollouts
def bench_rollouts(a, model, tok, dev, shape):
    from plasticity_nb.engines import generate, clear_fast_cache
    T, G = a.new_tokens, a.group
    eos, pad = tok.eos_token_id, tok.pad_token_id
    res = {}
    def run(name, engine, n_prompts, **kw):
        P = random_prompts(n_prompts, a.prompt_lo, a.prompt_hi, shape['vocab_size'], seed=1)
        try:
            generate(model, None, P, n=G, temperature=1.0, max_new_tokens=a.warm_tokens if engine == 'hf' else T,
                     seed=0, engine=engine, eos_token_id=eos, pad_token_id=pad, **kw)  # warm-up (captures graphs)
            r = generate(model, None, P, n=G, temperature=1.0, max_new_tokens=T, seed=1, engine=engine,
                         eos_token_id=eos, pad_token_id=pad, **kw)
            d = dict(engine=engine, rows=n_prompts*G, new_tokens=T, seconds=round(r.seconds, 3), tokens=r.total_tokens,
                     tokens_per_s=round(r.tokens_per_s, 1), mean_len=round(r.total_tokens/len(r.completion_ids), 1),
                     **{k: v for k, v in r.info.items() if v is not None})
        except Exception as e:
            d = dict(engine=engine, rows=n_prompts*G, error=f"{type(e).__name__}: {e}"[:400]); traceback.print_exc()
        res[name] = d; log('rollout', name, d); R['rollout_runs'] = res; save(a.out)
        return d
    check_fast_equals_hf(a, dev)
    nb = a.baseline_prompts
    run('fast_8x8', 'fast', nb)
    for B in a.fast_rows:
        run(f'fast_{B}', 'fast', B // G)
    clear_fast_cache()
    run('hf_generate_8x8', 'hf', nb)  # the baseline: TRL's model.generate path and workload
    if elapsed() < a.budget * 0.35:
        run(f'fast_eager_{a.fast_rows[0]}', 'fast', a.fast_rows[0] // G, cuda_graphs=False)
    if elapsed() < a.budget * 0.4:
        run(f'hf_generate_{a.fast_rows[0]}', 'hf', a.fast_rows[0] // G, max_batch=a.fast_rows[0])
    clear_fast_cache()
    return res

def check_fast_equals_hf(a, dev):
    "Correctness of the fast path on this device: float32 4-layer model, greedy, fast (CUDA graph) vs HF generate"
    from plasticity_nb.engines import generate, clear_fast_cache
    try:
        big = dev.type == 'cuda'
        shape = dict(TINY, num_hidden_layers=4 if big else 2, hidden_size=256 if big else 64, intermediate_size=512,
                     vocab_size=4096 if big else 512)
        m = make_model(shape, dev, torch.float32)
        P = random_prompts(24 if big else 6, 5, 70 if big else 20, shape['vocab_size'], seed=5)
        T = 48 if big else 12
        kw = dict(temperature=0, max_new_tokens=T, eos_token_id=[], pad_token_id=0)
        ref = generate(m, None, P, engine='hf', **kw)
        fast = generate(m, None, P, engine='fast', **kw)
        same = sum(x == y for x, y in zip(ref.completion_ids, fast.completion_ids))
        s1 = generate(m, None, P, engine='fast', temperature=1.0, max_new_tokens=T, eos_token_id=[], pad_token_id=0, seed=7)
        s2 = generate(m, None, P, engine='fast', temperature=1.0, max_new_tokens=T, eos_token_id=[], pad_token_id=0, seed=7)
        d = dict(rows=len(P), greedy_rows_identical=same, cuda_graph=fast.info.get('cuda_graph'),
                 graph_error=fast.info.get('graph_error'), sampling_reproducible=s1.completion_ids == s2.completion_ids)
        clear_fast_cache(); del m
    except Exception as e:
        traceback.print_exc(); d = dict(error=f"{type(e).__name__}: {e}"[:400])
    R['check_fast_vs_hf_greedy_fp32'] = d; log('check', d); save(a.out)

# ---------------------------------------------------------------------------------------------------- SFT
def _data(a, shape, steps, dev):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, shape['vocab_size'], (steps, a.batch, a.seq), generator=g).to(dev)

def _loop(model, batches, loss_fn, opt, warm, dev):
    "Train over `batches`; seconds per step over the steps after `warm`"
    for i, x in enumerate(batches):
        if i == warm: sync(dev); t = time.perf_counter()
        loss = loss_fn(model, x)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    sync(dev)
    assert torch.isfinite(loss).item(), 'loss is not finite'
    return (time.perf_counter() - t) / (len(batches) - warm), float(loss)

def hf_loss(model, x): return model(input_ids=x, labels=x).loss

def make_flce(dev):
    "Liger's fused linear cross-entropy (no logits tensor); a plain torch stand-in off CUDA (smoke runs)"
    if dev.type == 'cuda':
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
        return LigerFusedLinearCrossEntropyLoss(), 'liger'
    return (lambda w, h, y: torch.nn.functional.cross_entropy((h @ w.T).float(), y)), 'torch-standin'

def fused_loss(flce):
    def f(model, x):
        h = model.model(input_ids=x).last_hidden_state
        return flce(model.lm_head.weight, h[:, :-1].reshape(-1, h.shape[-1]), x[:, 1:].reshape(-1))
    return f

def sft_record(a, name, shape, step_s, extra=None):
    tps = a.batch * a.seq / step_s
    d = dict(tokens_per_s=round(tps, 1), step_s=round(step_s, 4),
             mfu=round(tps * train_flops_per_token(shape, a.seq) / PEAK_BF16, 4), **(extra or {}))
    R.setdefault('sft_runs', {})[name] = d; save(a.out); log('sft', name, d)
    return d

def free(*objs):
    for o in objs: del o
    gc.collect()
    if torch.cuda.is_available(): torch.cuda.empty_cache()

def trl_sft(a, shape, dev, dtype, tok, tuned: bool):
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer
    steps = a.warm + a.steps
    ids = _data(a, shape, steps, torch.device('cpu')).reshape(-1, a.seq)
    ds = Dataset.from_dict({'input_ids': ids.tolist()})
    times = []
    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kw): sync(dev); times.append(time.perf_counter())
    kw = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=a.batch, max_length=a.seq, max_steps=steps,
              save_strategy='no', report_to='none', disable_tqdm=True, seed=0, dataloader_num_workers=0)
    if dev.type != 'cuda': kw.update(use_cpu=True, bf16=False)
    if tuned:
        kw.update(gradient_checkpointing=False, optim='adamw_torch_fused', logging_steps=1000)
        if dev.type == 'cuda': kw.update(use_liger_kernel=True)
    model = make_model(shape, dev, dtype)
    tr = SFTTrainer(model=model, args=SFTConfig(**kw), train_dataset=ds, processing_class=tok, callbacks=[Timer()])
    tr.train()
    step_s = (times[-1] - times[a.warm-1]) / a.steps
    cfg = tr.args
    extra = dict(gradient_checkpointing=cfg.gradient_checkpointing, optim=str(cfg.optim), bf16=cfg.bf16,
                 liger=bool(getattr(cfg, 'use_liger_kernel', False)), lr=cfg.learning_rate)
    free(tr, model)
    return step_s, extra

def bench_sft(a, shape, dev, dtype, tok):
    res = {}
    def guard(name, fn):
        try: return fn()
        except Exception as e:
            traceback.print_exc()
            R.setdefault('sft_runs', {})[name] = dict(error=f"{type(e).__name__}: {e}"[:400]); save(a.out)
            log('sft', name, 'FAILED', e)
    # 1. TRL SFTTrainer with its defaults (activation checkpointing on, fused LM head with entropy/accuracy metrics)
    def trl_default():
        s, extra = trl_sft(a, shape, dev, dtype, tok, tuned=False)
        return sft_record(a, 'trl_sfttrainer_defaults', shape, s, extra)
    guard('trl_sfttrainer_defaults', trl_default)
    batches = _data(a, shape, a.warm + a.steps, dev)
    # 2. plain torch loop: HF loss (full logits), torch AdamW defaults
    def plain():
        m = make_model(shape, dev, dtype); m.train()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-5)
        s, loss = _loop(m, batches, hf_loss, opt, a.warm, dev); free(opt, m)
        return sft_record(a, 'plain_torch_loop', shape, s, dict(loss=round(loss, 3)))
    guard('plain_torch_loop', plain)
    # 3. fused linear cross-entropy + fused AdamW, eager
    flce, flce_kind = make_flce(dev)
    fused = dict(fused=True) if dev.type == 'cuda' else {}
    def opt_eager():
        m = make_model(shape, dev, dtype); m.train()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-5, **fused)
        s, loss = _loop(m, batches, fused_loss(flce), opt, a.warm, dev); free(opt, m)
        return sft_record(a, 'flce_fusedadamw', shape, s, dict(loss=round(loss, 3), flce=flce_kind))
    guard('flce_fusedadamw', opt_eager)
    # 4. + torch.compile of each decoder layer (regional: one compiled graph reused by the 24 identical layers)
    def opt_compile():
        m = make_model(shape, dev, dtype); m.train()
        backend = 'inductor' if dev.type == 'cuda' else 'eager'
        torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
        for layer in m.model.layers: layer.compile(backend=backend)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-5, **fused)
        t = time.perf_counter()
        s, loss = _loop(m, batches, fused_loss(flce), opt, a.warm, dev); total = time.perf_counter() - t
        free(opt, m)
        from torch._dynamo.utils import counters
        return sft_record(a, 'flce_fusedadamw_compile', shape, s,
                          dict(loss=round(loss, 3), flce=flce_kind, compile_backend=backend,
                               dynamo_unique_graphs=counters['stats'].get('unique_graphs'),
                               warmup_incl_compile_s=round(total - s*a.steps, 1)))
    if elapsed() < a.budget * 0.6: guard('flce_fusedadamw_compile', opt_compile)
    free(batches)
    return res

def bench_sft_liger(a, shape, dev, dtype, tok):
    "The variants that patch transformers' Qwen2 module with Liger kernels (run after everything that must not see them)"
    batches = _data(a, shape, a.warm + a.steps, dev)
    flce, flce_kind = make_flce(dev)
    fused = dict(fused=True) if dev.type == 'cuda' else {}
    def guard(name, fn):
        try: return fn()
        except Exception as e:
            traceback.print_exc()
            R.setdefault('sft_runs', {})[name] = dict(error=f"{type(e).__name__}: {e}"[:400]); save(a.out)
            log('sft', name, 'FAILED', e)
    # 5. + Liger's RMSNorm / SwiGLU / RoPE kernels instead of compile (patches the Qwen2 module: run after the rest)
    if dev.type == 'cuda' and elapsed() < a.budget * 0.8:
        def opt_liger():
            from liger_kernel.transformers import apply_liger_kernel_to_qwen2
            m = make_model(shape, dev, dtype); m.train()
            apply_liger_kernel_to_qwen2(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                        fused_linear_cross_entropy=False, model=m)
            opt = torch.optim.AdamW(m.parameters(), lr=1e-5, **fused)
            s, loss = _loop(m, batches, fused_loss(flce), opt, a.warm, dev); free(opt, m)
            return sft_record(a, 'flce_fusedadamw_ligerkernels', shape, s, dict(loss=round(loss, 3), flce=flce_kind))
        guard('flce_fusedadamw_ligerkernels', opt_liger)
    # 6. TRL SFTTrainer with the tuned flags (what the project's SFT stage can set through its config)
    if elapsed() < a.budget * 0.8:
        def trl_tuned():
            s, extra = trl_sft(a, shape, dev, dtype, tok, tuned=True)
            return sft_record(a, 'trl_sfttrainer_tuned', shape, s, extra)
        guard('trl_sfttrainer_tuned', trl_tuned)
    free(batches)

# ---------------------------------------------------------------------------------------------------- extras
def bench_grpo(a, shape, dev, dtype, tok):
    "One GRPOTrainer step (8 prompts x 8 rollouts x 256 tokens) with HF generate and with the fast engine"
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from plasticity_nb.trl_hooks import FastRolloutMixin
    class FastGRPO(FastRolloutMixin, GRPOTrainer): pass
    P = random_prompts(a.baseline_prompts, a.prompt_lo, a.prompt_hi, shape['vocab_size'], seed=3)
    ds = Dataset.from_dict({'prompt': [' '.join(f"t{t}" for t in p) for p in P]})
    def reward(completions, **kw):
        g = torch.Generator().manual_seed(len(completions))
        return torch.rand(len(completions), generator=g).tolist()
    out = {}
    for name, cls in (('hf_generate', GRPOTrainer), ('fast', FastGRPO)):
        if elapsed() > a.budget * 0.8: break
        times = []
        class Timer(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw): sync(dev); times.append(time.perf_counter())
            def on_step_end(self, args, state, control, **kw): sync(dev); times.append(time.perf_counter())
        kw = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=a.baseline_prompts*a.group,
                  num_generations=a.group, max_completion_length=a.new_tokens, max_steps=a.grpo_steps, temperature=1.0,
                  learning_rate=1e-6, save_strategy='no', report_to='none', disable_tqdm=True, logging_steps=1, seed=0)
        if dev.type != 'cuda': kw.update(use_cpu=True, bf16=False)
        try:
            m = make_model(shape, dev, dtype)
            tr = cls(model=m, reward_funcs=reward, args=GRPOConfig(**kw), train_dataset=ds, processing_class=tok,
                     callbacks=[Timer()])
            tr.train()
            steps = [times[i+1]-times[i] for i in range(0, len(times)-1, 2)]
            out[name] = dict(step_s=[round(s, 2) for s in steps], completions_per_step=a.baseline_prompts*a.group,
                             timed_step_s=round(steps[-1], 2),
                             gen_tokens_per_s_over_step=round(a.baseline_prompts*a.group*a.new_tokens/steps[-1], 1))
            free(tr, m)
        except Exception as e:
            traceback.print_exc(); out[name] = dict(error=f"{type(e).__name__}: {e}"[:400])
        log('grpo', name, out[name]); R['grpo_step'] = out; save(a.out)
    from plasticity_nb.engines import clear_fast_cache; clear_fast_cache()
    return out

def bench_cb(a, model, tok, dev, shape):
    from plasticity_nb.engines import generate
    res = R.setdefault('rollout_runs', {})
    for rows in (a.baseline_prompts*a.group, a.fast_rows[0]):
        if elapsed() > a.budget * 0.95: break
        P = random_prompts(rows // a.group, a.prompt_lo, a.prompt_hi, shape['vocab_size'], seed=1)
        def boom(*_): raise TimeoutError('cb run exceeded its 60 s alarm')
        signal.signal(signal.SIGALRM, boom); signal.alarm(60)
        try:
            kw = dict(n=a.group, temperature=1.0, max_new_tokens=a.new_tokens, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, engine='cb')
            generate(model, None, P[:2], seed=0, **kw)
            r = generate(model, None, P, seed=1, **kw)
            signal.alarm(0)
            d = dict(engine='cb', rows=rows, seconds=round(r.seconds, 3), tokens=r.total_tokens,
                     tokens_per_s=round(r.tokens_per_s, 1))
        except Exception as e:
            signal.alarm(0); traceback.print_exc(); d = dict(engine='cb', rows=rows, error=f"{type(e).__name__}: {e}"[:400])
        res[f'cb_{rows}'] = d; log('rollout', f'cb_{rows}', d); save(a.out)

# ---------------------------------------------------------------------------------------------------- summary
def summarise(a):
    s, r = R.get('sft_runs', {}), R.get('rollout_runs', {})
    ok = lambda d: {k: v for k, v in d.items() if 'tokens_per_s' in v}
    s_ok, r_ok = ok(s), ok(r)
    base = s_ok.get('trl_sfttrainer_defaults', {}).get('tokens_per_s')
    best_sft = max(s_ok.items(), key=lambda kv: kv[1]['tokens_per_s'], default=(None, {}))
    fast = {k: v for k, v in r_ok.items() if v['engine'] == 'fast' and not k.startswith('fast_eager')}
    best_r = max(fast.items(), key=lambda kv: kv[1]['tokens_per_s'], default=(None, {}))
    rb = r_ok.get('hf_generate_8x8', {}).get('tokens_per_s')
    R.update(sft_baseline_tokens_per_s=base, sft_tokens_per_s=best_sft[1].get('tokens_per_s'), sft_best=best_sft[0],
             sft_plain_torch_tokens_per_s=s_ok.get('plain_torch_loop', {}).get('tokens_per_s'),
             rollout_baseline_tokens_per_s=rb, rollout_tokens_per_s=best_r[1].get('tokens_per_s'), rollout_best=best_r[0],
             rollout_same_workload_tokens_per_s=r_ok.get('fast_8x8', {}).get('tokens_per_s'))
    R['sft_speedup_vs_trl'] = round(R['sft_tokens_per_s']/base, 2) if base and R['sft_tokens_per_s'] else None
    R['rollout_speedup_vs_hf_generate'] = round(R['rollout_tokens_per_s']/rb, 2) if rb and R['rollout_tokens_per_s'] else None
    R['rollout_same_workload_speedup'] = (round(R['rollout_same_workload_tokens_per_s']/rb, 2)
                                          if rb and R['rollout_same_workload_tokens_per_s'] else None)
    R['wall_s'] = round(elapsed(), 1); save(a.out)
    lines = ['', f"{'run':36s} {'tokens/s':>12s} {'x base':>8s}  notes"]
    for k, v in s.items():
        t = v.get('tokens_per_s'); x = f"{t/base:.2f}" if t and base else ''
        lines.append(f"sft/{k:32s} {t or 0:12,.0f} {x:>8s}  " + (f"mfu {v['mfu']:.1%}" if t else v.get('error', '')[:60]))
    for k, v in r.items():
        t = v.get('tokens_per_s'); x = f"{t/rb:.1f}" if t and rb else ''
        note = f"rows {v.get('rows')} " + ('graph' if v.get('cuda_graph') else '') if t else v.get('error', '')[:60]
        lines.append(f"rollout/{k:28s} {t or 0:12,.0f} {x:>8s}  {note}")
    for k, v in R.get('grpo_step', {}).items():
        lines.append(f"grpo_step/{k:26s} {v.get('gen_tokens_per_s_over_step', 0):12,.0f} {'':>8s}  "
                     + (f"step {v['timed_step_s']} s" if 'timed_step_s' in v else v.get('error', '')[:60]))
    lines.append(f"SFT speedup vs TRL defaults: {R['sft_speedup_vs_trl']}  |  rollout speedup vs HF generate: "
                 f"{R['rollout_speedup_vs_hf_generate']} (same 64-row workload: {R['rollout_same_workload_speedup']})")
    log('\n'.join(lines))

# ---------------------------------------------------------------------------------------------------- main
def main(argv=None):
    global LOG
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cpu-smoke', action='store_true', help='tiny model on the CPU: exercises every code path')
    p.add_argument('--out', type=Path, default=None, help='folder for results.json and bench.log (default $OUT or bench/out)')
    p.add_argument('--budget', type=float, default=330, help='seconds; optional sections are skipped past fractions of it')
    p.add_argument('--sections', default='rollout,sft,grpo,cb', help='comma list of rollout,sft,grpo,cb')
    a = p.parse_args(argv)
    a.out = Path(a.out or os.environ.get('OUT') or ROOT/'bench'/'out'); a.out.mkdir(parents=True, exist_ok=True)
    LOG = open(a.out/'bench.log', 'a')
    smoke = a.cpu_smoke
    dev = torch.device('cpu' if smoke else 'cuda')
    dtype = torch.float32 if smoke else torch.bfloat16
    shape = TINY if smoke else QWEN05
    # workload: the baseline settings, shrunk for the smoke run
    a.seq, a.batch, a.warm, a.steps = (64, 2, 1, 2) if smoke else (1024, 16, 3, 8)
    a.new_tokens, a.warm_tokens, a.group, a.baseline_prompts = (8, 4, 2, 2) if smoke else (256, 16, 8, 8)
    a.prompt_lo, a.prompt_hi = (4, 12) if smoke else (96, 160)
    a.fast_rows = [8, 16] if smoke else [512, 1024]
    a.grpo_steps = 2
    import transformers
    R.update(device=torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'cpu (smoke)',
             date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
             torch=torch.__version__, transformers=transformers.__version__, smoke=smoke,
             model='random-init Qwen2ForCausalLM, Qwen2.5-0.5B shape' if not smoke else 'tiny Qwen2',
             model_shape=shape, dtype=str(dtype).replace('torch.', ''),
             sft_workload=dict(batch=a.batch, seq=a.seq, warmup_steps=a.warm, timed_steps=a.steps),
             rollout_workload=dict(group=a.group, baseline_prompts=a.baseline_prompts, new_tokens=a.new_tokens,
                                   prompt_len=[a.prompt_lo, a.prompt_hi], temperature=1.0),
             mfu_flops_per_token=train_flops_per_token(shape, a.seq), mfu_peak=PEAK_BF16)
    for mod in ('trl', 'datasets', 'liger_kernel', 'accelerate'):
        try: R[mod] = __import__(mod).__version__
        except Exception as e: R[mod] = f"unavailable: {type(e).__name__}"
    log('start', {k: R[k] for k in ('device', 'torch', 'transformers', 'trl', 'datasets', 'liger_kernel')})
    if dev.type == 'cuda':
        x = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16); x @ x; sync(dev)
        t = time.perf_counter()
        for _ in range(10): x @ x
        sync(dev); R['matmul_8192_bf16_tflops'] = round(10*2*8192**3/(time.perf_counter()-t)/1e12, 1); del x
    save(a.out)
    secs = a.sections.split(',')
    tok = make_tokenizer(shape['vocab_size'])
    model = make_model(shape, dev, dtype)
    if 'rollout' in secs: bench_rollouts(a, model, tok, dev, shape)
    del model; free()
    if 'sft' in secs: bench_sft(a, shape, dev, dtype, tok)
    if 'sft' in secs: bench_sft_liger(a, shape, dev, dtype, tok)
    if 'grpo' in secs and elapsed() < a.budget * 0.7: bench_grpo(a, shape, dev, dtype, tok)
    if 'cb' in secs and elapsed() < a.budget * 0.85:
        model = make_model(shape, dev, dtype)
        bench_cb(a, model, tok, dev, shape)
        del model; free()
    if dev.type == 'cuda': R['max_memory_allocated_gib'] = round(torch.cuda.max_memory_allocated()/2**30, 1)
    summarise(a)

if __name__ == '__main__':
    main()
