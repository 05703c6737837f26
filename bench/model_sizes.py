"""What a smaller tiny model would save per RL step on this CPU: the update, log-prob and rollout workloads of
bench/cpu_levers.py on several model shapes and both world tokenizers, against the profile's own model, in one process.

usage: .venv/bin/python bench/model_sizes.py [--profile tiny] [--shapes 128x4x512,96x3x384,64x4x256,64x2x256]
                                          [--tokenizers chars,pieces] [--repeats 3] [--threads 1]
A shape is HIDDENxLAYERSxFFN (heads and KV heads stay the profile's). Every model has fresh weights: timing depends on
the shape only. The update and log-prob batches are 256 rows (32 prompts x 8) of the RL pool's mean row length in each
tokenizer (counted from the world: 63 `chars` tokens, 41 `pieces` in the `tiny` world); the rollout is one `compact`
generation round of 48 prompts x 8, decoding a fixed number of new tokens (the mean expert completion: 41 `chars`, 28 `pieces`) so that every shape decodes as
many steps. Prints the median of --repeats after a warm-up and each row's speed-up over the first shape with the first
tokenizer (> 1: cheaper). Whether a smaller model still learns is a separate question (bench/RESULTS.md, session 20).
Run it on an otherwise idle machine: it measures wall time.
"""
import argparse
import torch
from cpu_levers import pool_lengths, update, logprob, rollout, timed  # bench/ is on sys.path when this file runs as a script
from plasticity_nb.config import SCHEMA, load_profile
from plasticity_nb.experiments import world
from plasticity_nb.models import model_from_profile, world_tokenizer


def shapes(spec:str)->list[tuple[int, int, int]]:
    "'128x4x512,64x2x256' -> [(128, 4, 512), (64, 2, 256)]"
    out = []
    for s in spec.split(','):
        try: h, l, f = (int(x) for x in s.strip().split('x'))
        except ValueError: raise SystemExit(f"--shapes: {s!r} is not HIDDENxLAYERSxFFN (e.g. 96x3x384)") from None
        out.append((h, l, f))
    return out


def measure(prof, tokenizer, shape, repeats)->dict:
    "Seconds of the three workloads for one model shape and tokenizer"
    h, l, f = shape
    p = load_profile(prof['name'], prof['path'], hidden=h, n_layers=l, ffn=f, tokenizer=tokenizer)
    torch.manual_seed(0)
    tok = world_tokenizer(tokenizer); model = model_from_profile(p, tok)
    row_len, new_tokens = pool_lengths(p, tok)
    x = torch.randint(4, len(tok), (256, row_len))
    prompts = [r['prompt'] for r in world(p)['rl'][:48]]
    model.train(True); u = timed(update(model, x, False), repeats)
    model.train(False); lp = timed(logprob(model, x, False), repeats)
    ro = timed(rollout(model, tok, prompts, {**p, 'max_new_tokens': new_tokens}, False), repeats)
    return dict(params=sum(q.numel() for q in model.parameters()), update=u, logprob=lp, rollout=ro, total=u + lp + ro)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--profile', default='tiny'); ap.add_argument('--shapes', default='128x4x512,96x3x384,64x4x256,64x2x256')
    ap.add_argument('--tokenizers', default='chars,pieces'); ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args(argv)
    toks = [t.strip() for t in a.tokenizers.split(',')]
    accepted = SCHEMA['tokenizer'].choices
    for t in toks:
        if t not in accepted: raise SystemExit(f"--tokenizers: {t!r}; accepted: {', '.join(accepted)}")
    torch.set_num_threads(a.threads)
    prof = load_profile(a.profile)
    rows = [(t, s, measure(prof, t, s, a.repeats)) for t in toks for s in shapes(a.shapes)]
    ref = rows[0][2]['total']
    print(f"{a.profile}: {a.threads} thread(s), median of {a.repeats}; speed-up against {'x'.join(map(str, rows[0][1]))} {rows[0][0]}")
    print(f"{'tokenizer':9s} {'shape':11s} {'params':>9s} {'update':>7s} {'logprob':>7s} {'rollout':>7s} {'total':>7s}  speed-up")
    for t, s, m in rows:
        print(f"{t:9s} {'x'.join(map(str, s)):11s} {m['params']:>9,} {m['update']:7.3f} {m['logprob']:7.3f} {m['rollout']:7.3f} "
              f"{m['total']:7.3f}  x{ref / m['total']:.2f}")


if __name__ == '__main__':
    main()
