"""What shorter RL runs would have concluded, read from a finished registry without training anything.

Every RL-like run of the tiny world keeps a constant rate after its warm-up, so its first N steps are exactly what an
N-step run would have trained. This script runs the figure notebooks that read RL curves (through the batch, cached)
on a view of the registry in which every RL-like run (kind other than `base` and `sft`) stops at step N, and prints,
claim by claim, the effect and verdict of the full runs beside those of the N-step view, then the share of the RL-like
runs' measured training and evaluation seconds that the first N steps took (their own `step_time` and `eval_seconds`).

The view is an IPython startup file in a temporary IPYTHONDIR: each notebook kernel of the batch patches
`Run.read_metrics` to drop the rows past step N; the registry is only read. Not covered: fig4 and rl_headroom (they
score checkpoints, and the last one is the full run's) and forecast_backtest.

usage: python bench/rl_steps_whatif.py --profile tiny-full --settings S --steps 150,200 --out DIR [--only fig2,fig6]
S names the finished registry (`runs`); DIR/full and DIR/steps-N receive each batch's outputs (an existing DIR/full is
reused). Run it on an otherwise idle machine only if its time matters: it measures verdicts, not speed.
"""
import argparse, json, os, re, subprocess, sys, tempfile
from pathlib import Path
from plasticity_nb.config import load_profile
from plasticity_nb import runs as R

FIGS = 'fig2,fig6,fig3,table4,fig8,fig7_table5,fig5_table1,table6'
STARTUP = '''
import os
from plasticity_nb import runs as _R
_N, _read = int(os.environ['PLASTICITY_WHATIF_STEPS']), _R.Run.read_metrics
def _first_steps(self):
    rows = _read(self)
    if (self.config or {}).get('kind') in ('base', 'sft'): return rows
    return [r for r in rows if r.get('step', 0) <= _N]
_R.Run.read_metrics = _first_steps
'''

def batch(profile, settings, only, out:Path, steps:int|None):
    "Run the batch (cached) into `out`, with RL-like runs cut at `steps` (None: whole); the claim rows of its reports"
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as ipy:
        if steps:
            d = Path(ipy)/'profile_default'/'startup'; d.mkdir(parents=True)
            (d/'00-whatif.py').write_text(STARTUP)
            env.update(IPYTHONDIR=ipy, PLASTICITY_WHATIF_STEPS=str(steps))
        if not (out/'REPORT.md').exists() or steps:
            subprocess.run([str(Path(sys.executable).parent/'plasticity'), 'reproduce', '--profile', profile, '--settings', settings,
                            '--only', only, '--out', str(out), '--jobs', '1'], env=env, check=True)
    rows = {}
    for f in sorted(out.glob('*.report.json')):
        for r in json.loads(f.read_text())['rows']:
            if r.get('verdict'): rows[(f.name.split('.')[0], re.sub(r'\d+', 'N', r['quantity']))] = r  # the best branch's step may change
    return rows

def step_share(root, steps:int)->float:
    "Share of the RL-like runs' recorded seconds (train steps and evaluations) spent up to step `steps`"
    part = whole = 0.0
    for run in R.find_runs(root):
        if run.config.get('kind') in ('base', 'sft') or run.status() not in ('done', 'unstable'): continue
        for r in run.read_metrics():
            s = r.get('step_time', 0.0) + r.get('eval_seconds', 0.0)
            whole += s; part += s if r.get('step', 0) <= steps else 0.0
    return part / whole if whole else float('nan')

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--profile', default='tiny-full'); ap.add_argument('--settings', required=True)
    ap.add_argument('--steps', default='200'); ap.add_argument('--only', default=FIGS); ap.add_argument('--out', required=True)
    a = ap.parse_args()
    out, ns = Path(a.out), [int(s) for s in a.steps.split(',')]
    full = batch(a.profile, a.settings, a.only, out/'full', None)
    cut = {n: batch(a.profile, a.settings, a.only, out/f'steps-{n}', n) for n in ns}
    root = load_profile(a.profile, path=a.settings)['runs']
    print(f"\n{'claim':92s} | {'whole runs':28s} | " + ' | '.join(f'first {n} steps' for n in ns))
    changed = {n: 0 for n in ns}
    for k, r in full.items():
        cells = []
        for n in ns:
            c = cut[n].get(k, {})
            changed[n] += c.get('verdict') != r['verdict']
            cells.append(f"{c.get('effect', '-')} {c.get('verdict', 'missing')}")
        print(f"{(k[0] + ': ' + k[1])[:92]:92s} | {r.get('effect', '-')} {r['verdict']:14s} | " + ' | '.join(cells))
    for n in ns:
        print(f'first {n} steps: {changed[n]} of {len(full)} verdicts change; they took {step_share(root, n):.1%} of the '
              'RL-like runs\' recorded training and evaluation seconds')

if __name__ == '__main__': main()
