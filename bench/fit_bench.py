"""Timing of the ceiling fits on the authors' 33 released branches (../shared/retu).

usage: .venv/bin/python bench/fit_bench.py [--cache DIR] [--settings FILE] [--repeat N] [--selection]
Prints wall and CPU seconds (best of N) to fit all branches with the released settings, without the bootstrap
(n_boot=0) and with it (n_boot=200); the bootstrap's batched refits against the same refits one by one with scipy's
curve_fit; and with --selection, automatic selection of the settings for every branch (minutes: each branch runs the
authors' procedure under 54 settings).
"""
import argparse, time, warnings
from pathlib import Path
import numpy as np
from scipy.optimize import curve_fit
from plasticity_nb import fit as F
from plasticity_nb.retu import load_branches, load_fit_settings
from plasticity_nb.ceiling import fit_branches, gain_curve

RETU = Path(__file__).resolve().parents[2]/'shared'/'retu'

def best_of(n, fn):
    "(best wall s, best CPU s, last result) over n runs"
    ws, cs = [], []
    for _ in range(n):
        w, c = time.perf_counter(), time.process_time(); out = fn()
        ws.append(time.perf_counter() - w); cs.append(time.process_time() - c)
    return min(ws), min(cs), out

def refit_problems(branches, settings, k=20):
    "k bootstrap-like resamples of every released fit: (x, Y, fit) per branch"
    rel = {(s['scene'], s['ckpt']): s for s in settings}
    out = []
    for b in branches:
        x, y = gain_curve(b)
        f = F.fit_curve(x, y, rel[b['scene'], b['ckpt']])
        Y = f.predict(x) + np.random.default_rng(0).normal(0, max(f.rmse_train, 0.05), (k, len(x))) * ((x > 0) | (f.eps != 0))
        out.append((x, Y, f))
    return out

def batched(problems):
    for x, Y, f in problems:
        K, free = len(Y), f.settings.free_c0
        lo, hi = np.full((K, 4), -np.inf), np.full((K, 4), np.inf)
        if f.method == 'trf':
            cols = [0, 1, 2, 3] if free else [0, 2, 3]
            for k in range(K): lo[k, cols], hi[k, cols] = F.fit_bounds(x[f.kept], Y[k, f.kept], free)
        F._lm(x, Y, np.broadcast_to(f.kept.astype(float), Y.shape), np.tile([f.b, f.eps, f.c_mid, f.pl], (K, 1)), lo, hi, np.full(K, free))

def one_by_one(problems):
    for x, Y, f in problems:
        free = f.settings.free_c0; cols = [0, 1, 2, 3] if free else [0, 2, 3]
        law, p0 = (F._law4 if free else F._law3), np.array([f.b, f.eps, f.c_mid, f.pl])[cols]
        for yk in Y:
            kw = dict(bounds=F.fit_bounds(x[f.kept], yk[f.kept], free)) if f.method == 'trf' else {}
            if kw: p0 = np.clip(p0, *kw['bounds'])
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                try: curve_fit(law, F._lx(x[f.kept]), yk[f.kept], p0=p0, maxfev=10000, **kw)
                except RuntimeError: pass

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--cache', default=str(RETU/'cache')); p.add_argument('--settings', default=str(RETU/'fit_settings.json'))
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--selection', action='store_true', help='also time the automatic selection for every branch (minutes)')
    a = p.parse_args()
    branches, released = load_branches(a.cache), load_fit_settings(a.settings)
    print(f"{len(branches)} branches, {len(released)} released settings")
    for n_boot in (0, 200):
        w, c, _ = best_of(a.repeat, lambda: fit_branches(branches, released, n_boot=n_boot))
        print(f"released settings, n_boot={n_boot:3d}: {w:6.2f} s wall, {c:6.2f} s CPU")
    probs = refit_problems(branches, released)
    n = sum(len(Y) for _, Y, _ in probs)
    wb, cb, _ = best_of(a.repeat, lambda: batched(probs))
    ws, cs, _ = best_of(1, lambda: one_by_one(probs))
    print(f"bootstrap refits ({n}): batched {cb:5.2f} s CPU, scipy curve_fit one by one {cs:5.2f} s CPU ({cs / cb:4.1f}x)")
    if a.selection:
        w, c, res = best_of(1, lambda: fit_branches(branches, None, n_boot=0))
        print(f"automatic selection, all {len(branches)} branches: {w:6.1f} s wall, {c:6.1f} s CPU")

if __name__ == '__main__': main()
