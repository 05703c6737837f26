"""Timing of the ceiling fits on the authors' 33 released branches (../shared/retu).

usage: .venv/bin/python bench/fit_bench.py [--cache DIR] [--settings FILE] [--repeat N]
Prints the wall seconds (best of N) to fit all branches with the released settings, with automatic selection of the
settings per branch, and their ratio; each without the bootstrap (n_boot=0) and with it (n_boot=200).
"""
import argparse, time
from pathlib import Path
from plasticity_nb.retu import load_branches, load_fit_settings
from plasticity_nb.ceiling import fit_branches

RETU = Path(__file__).resolve().parents[2]/'shared'/'retu'

def best_of(n, fn):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); out = fn(); ts.append(time.perf_counter() - t)
    return min(ts), out

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--cache', default=str(RETU/'cache')); p.add_argument('--settings', default=str(RETU/'fit_settings.json'))
    p.add_argument('--repeat', type=int, default=3)
    a = p.parse_args()
    branches, released = load_branches(a.cache), load_fit_settings(a.settings)
    print(f"{len(branches)} branches, {len(released)} released settings")
    for n_boot in (0, 200):
        t_rel, r = best_of(a.repeat, lambda: fit_branches(branches, released, n_boot=n_boot, fallback=None))
        t_fb, _ = best_of(a.repeat, lambda: fit_branches(branches, released, n_boot=n_boot))
        t_sel, s = best_of(a.repeat, lambda: fit_branches(branches, None, n_boot=n_boot))
        print(f"n_boot={n_boot:3d}: released {t_rel:6.2f} s | released + fallback {t_fb:6.2f} s | "
              f"selection {t_sel:6.2f} s | selection / released {t_sel / t_rel:5.1f}x")

if __name__ == '__main__': main()
