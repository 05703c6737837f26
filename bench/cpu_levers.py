"""Kernel-level levers for a tiny-world RL step on this CPU: bfloat16 autocast (AMX where the CPU has it) and
`torch.compile`, against eager float32, on the profile's model and an RL step's shapes, measured in one process.

usage: .venv/bin/python bench/cpu_levers.py [MODEL_DIR] [--profile tiny-full] [--rows 256] [--len N] [--prompts 48]
                                         [--repeats 3] [--threads 1] [--no-compile] [--ops]
MODEL_DIR: a saved model folder (e.g. an SFT checkpoint); default a fresh model of the profile's shape (timing only
depends on the shape). Workloads: `update` = forward + backward of --rows x --len tokens (one RL update batch: 32
prompts x 8 rollouts, rows of the RL pool's mean length unless --len says otherwise), `logprob` = the forward alone (the old-policy pass), `rollout`
= the `compact` engine sampling 8 completions for --prompts prompts of the RL pool (one generation round). Prints the
median seconds of --repeats after a warm-up, and each variant's ratio against eager float32 (> 1: faster); --ops also
prints where an eager float32 update spends its time (`torch.profiler`, the top operators). Run it on an otherwise
idle machine: it measures wall time.
"""
import argparse, statistics, time
from contextlib import nullcontext
import torch
from plasticity_nb.config import load_profile
from plasticity_nb.engines import generate
from plasticity_nb.experiments import world
from plasticity_nb.models import load_local, model_from_profile, world_tokenizer


def pool_lengths(prof, tok)->tuple[int, int]:
    "Mean RL-pool row (prompt + expert completion) and mean completion, in `tok`'s tokens: an update row and a rollout's length"
    rl = world(prof)['rl']
    n = lambda s: len(tok(s)['input_ids'])
    prompts, completions = sum(n(r['prompt']) for r in rl), sum(n(r['completion']) for r in rl)
    return round((prompts + completions) / len(rl)), round(completions / len(rl))


def bf16(on): return torch.autocast('cpu', dtype=torch.bfloat16) if on else nullcontext()


def timed(f, repeats):
    f()  # warm-up (and compilation)
    out = []
    for _ in range(repeats):
        t = time.perf_counter(); f(); out.append(time.perf_counter() - t)
    return statistics.median(out)


def update(model, x, half):
    def f():
        model.zero_grad(set_to_none=True)
        with bf16(half): loss = model(input_ids=x, labels=x).loss
        loss.backward()
    return f


def logprob(model, x, half):
    def f():
        with torch.no_grad(), bf16(half): model(input_ids=x)
    return f


def rollout(model, tok, prompts, prof, half):
    def f():
        with torch.no_grad(), bf16(half):
            generate(model, tok, prompts, n=prof['group_size'], temperature=prof['temperature'],
                     max_new_tokens=prof['max_new_tokens'], engine='compact', seed=0)
    return f


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('model', nargs='?'); ap.add_argument('--profile', default='tiny-full')
    ap.add_argument('--rows', type=int, default=256); ap.add_argument('--len', type=int)
    ap.add_argument('--prompts', type=int, default=48); ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--threads', type=int, default=1); ap.add_argument('--no-compile', action='store_true')
    ap.add_argument('--ops', action='store_true')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads); torch.manual_seed(0)
    prof = load_profile(a.profile)
    if a.model: model, tok = load_local(a.model)
    else: tok = world_tokenizer(prof['tokenizer']); model = model_from_profile(prof, tok)
    if a.len is None: a.len = pool_lengths(prof, tok)[0]
    x = torch.randint(4, len(tok), (a.rows, a.len))
    prompts = [r['prompt'] for r in world(prof)['rl'][:a.prompts]]
    rows = []
    for name, make in (('update', lambda m, h: update(m, x, h)), ('logprob', lambda m, h: logprob(m, x, h)),
                       ('rollout', lambda m, h: rollout(m, tok, prompts, prof, h))):
        model.train(name == 'update')
        base = timed(make(model, False), a.repeats)
        rows.append((name, 'eager float32', base, 1.0))
        s = timed(make(model, True), a.repeats); rows.append((name, 'eager bf16 autocast', s, base / s))
        if name != 'rollout' and not a.no_compile:  # the engine's decode loop changes shape every step: not compiled here
            cm = torch.compile(model)
            t = time.perf_counter(); make(cm, False)(); warm = time.perf_counter() - t
            s = timed(make(cm, False), a.repeats); rows.append((name, f'compiled float32 (first call {warm:.0f} s)', s, base / s))
            s = timed(make(cm, True), a.repeats); rows.append((name, 'compiled bf16 autocast', s, base / s))
    print(f"{a.profile}: {sum(p.numel() for p in model.parameters()):,} parameters, {a.threads} thread(s); "
          f"update/logprob {a.rows} x {a.len} tokens, rollout {a.prompts} prompts x {prof['group_size']}")
    for name, var, s, r in rows: print(f"{name:8s} {var:36s} {s:7.3f} s   x{r:.2f}")
    if a.ops: print(operators(model, x))


def operators(model, x, top=8)->str:
    "Share of one eager float32 update's operator time, top operators first (torch.profiler, self CPU time)"
    from torch.profiler import profile, ProfilerActivity
    model.train(); f = update(model, x, False); f()
    with profile(activities=[ProfilerActivity.CPU]) as p: f()
    ev = sorted(p.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ev)
    return 'update, eager float32, self CPU time: ' + ', '.join(f'{e.key} {e.self_cpu_time_total / total:.0%}' for e in ev[:top])


if __name__ == '__main__':
    main()
