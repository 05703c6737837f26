"""Rollout generation on CPU: HF `generate` (TRL's path without vLLM) against the `compact` engine, whose finished rows
leave the batch, on the same model, prompts, temperature and length limit, measured in one process, alternating.

usage: .venv/bin/python bench/rollout_cpu.py MODEL_DIR [--profile tiny-full] [--set mix] [--prompts 32] [--n 7]
       [--repeats 3] [--threads 1]
MODEL_DIR: a saved model folder (the base, or an SFT / RL checkpoint). Prints seconds per batch (median of --repeats),
generated tokens, the decode steps HF computes for padded rows, and compact's speed-up over HF. Run it on an idle
machine: it measures wall time.
"""
import argparse, statistics, time
import torch
from plasticity_nb.config import load_profile
from plasticity_nb.engines import generate
from plasticity_nb.experiments import world
from plasticity_nb.models import load_local


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('model'); ap.add_argument('--profile', default='tiny-full'); ap.add_argument('--set', default='mix')
    ap.add_argument('--prompts', type=int, default=32); ap.add_argument('--n', type=int, default=7)
    ap.add_argument('--repeats', type=int, default=3); ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    prof = load_profile(a.profile)
    model, tok = load_local(a.model); model.eval()
    rows = [r['prompt'] for r in world(prof)[a.set][:a.prompts]]
    kw = dict(n=a.n, temperature=prof['temperature'], max_new_tokens=prof['max_new_tokens'], max_batch=a.prompts * a.n)
    times, toks = {'hf': [], 'compact': []}, {}
    for rep in range(a.repeats + 1):  # the first round warms up
        for eng in ('hf', 'compact'):
            r = generate(model, tok, rows, engine=eng, seed=rep, **kw)
            if rep: times[eng].append(r.seconds)
            toks[eng] = r.num_tokens
    for eng in ('hf', 'compact'):
        L = toks[eng]
        print(f"{eng:8s} {statistics.median(times[eng]):6.2f} s/batch  rows {len(L)}  tokens {sum(L)}  mean {sum(L)/len(L):.1f}  "
              f"longest {max(L)}  row-steps HF computes {len(L) * max(L)}")
    print(f"compact speed-up over HF generate: x{statistics.median(times['hf']) / statistics.median(times['compact']):.2f}")


if __name__ == '__main__':
    main()
