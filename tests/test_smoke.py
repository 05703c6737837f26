"End to end on the `smoke` profile: SFT, a DAPO branch, Pure-RL, the ceiling analysis and a figure notebook through papermill."
import configparser
from pathlib import Path
import pandas as pd
import pytest
from plasticity_nb import reproduce as R
from plasticity_nb import runs

ROOT = Path(__file__).resolve().parents[1]

def smoke_settings(tmp_path)->Path:
    "The repository's [smoke] profile, writing its runs and outputs under tmp_path"
    cp = configparser.ConfigParser(interpolation=None); cp.read(ROOT/'settings.ini')
    own = {k: v for k, v in cp['smoke'].items() if k not in cp.defaults() or cp.defaults()[k] != v}
    p = tmp_path/'settings.ini'
    lines = ['[DEFAULT]', f"outputs = {tmp_path/'outputs'}", f"runs = {tmp_path/'runs'}", '[smoke]'] + [f'{k} = {v}' for k, v in own.items()]
    p.write_text('\n'.join(lines) + '\n')
    return p

def test_smoke_reproduction(tmp_path):
    s = smoke_settings(tmp_path)
    outs = R.run_batch('smoke', only='fig3', settings=str(s), params=dict(datasets='full', n_branches=1))
    assert [o.status for o in outs] == ['ran'], outs
    out = tmp_path/'outputs'/'smoke'
    for f in ('fig3.png', 'fig3.csv', 'fig3.ipynb', 'curves_sequential.csv', 'REPORT.md'): assert (out/f).exists(), f
    c = pd.read_csv(out/'curves_sequential.csv')
    assert set(c.stage) == {'sft', 'rl'} and {'sft', 'sft_then_rl', 'pure_rl'} <= set(c.paradigm)
    assert c[c.stage == 'rl'].groupby('run').step.nunique().min() >= 6  # the branch point + 5 evaluations to fit
    fig3 = pd.read_csv(out/'fig3.csv')
    assert (abs(fig3.a_post - fig3.p_sft - fig3.pl_rl) < 1e-6).all()
    assert '## fig3' in (out/'REPORT.md').read_text()
    done = {r.name for r in runs.find_runs(tmp_path/'runs') if r.is_done()}
    assert {n.split('-')[0] for n in done} >= {'sft', 'rl'}
    # a second batch reuses every finished run: no new run folders, and no run's metrics or checkpoints touched
    def state(): return {r.name: sorted((str(f.relative_to(r.path)), f.stat().st_mtime_ns) for f in r.path.rglob('*') if f.is_file() and f.name != '.lock')
                         for r in runs.find_runs(tmp_path/'runs')}
    before = state()
    outs = R.run_batch('smoke', only='fig3', settings=str(s), params=dict(datasets='full', n_branches=1))
    assert [o.status for o in outs] == ['ran']
    assert state() == before
    assert pd.read_csv(out/'fig3.csv').equals(fig3)  # and the same numbers from them
