"""End to end on the `smoke` profile: SFT, a DAPO branch, Pure-RL, the ceiling analysis and a figure notebook through
papermill; `plasticity plan` names the runs it trains before it starts; and (issue 20) the same batch through a
one-node Slurm (tools/slurm_local.sh) writes the same bytes, every trained run holding its job record, also when a
training job is cancelled with `scancel` mid-run: the batch fails on one line naming the run, the job and its log, and
a rerun resumes the run from its last checkpoint (slow: `pytest -m slow -k slurm`; tests/test_launch.py has the small
default version)."""
import configparser, os, shutil, subprocess, threading, time
from pathlib import Path
import pandas as pd
import pytest
from plasticity_nb import reproduce as RP, runs, launch, plan
from plasticity_nb.config import load_profile

ROOT = Path(__file__).resolve().parents[1]
PARAMS = dict(datasets='full', n_branches=1)
CSVS = ('curves_sequential.csv', 'fig3.csv')

def smoke_settings(tmp_path, **extra)->Path:
    "The repository's [smoke] profile, writing its runs and outputs under tmp_path, with `extra` keys set"
    cp = configparser.ConfigParser(interpolation=None); cp.read(ROOT/'settings.ini')
    own = {k: v for k, v in cp['smoke'].items() if k not in cp.defaults() or cp.defaults()[k] != v}
    own.update({k: str(v) for k, v in extra.items()})
    p = tmp_path/'settings.ini'
    lines = ['[DEFAULT]', f"outputs = {tmp_path/'outputs'}", f"runs = {tmp_path/'runs'}", '[smoke]'] + [f'{k} = {v}' for k, v in own.items()]
    p.write_text('\n'.join(lines) + '\n')
    return p

def trained(tmp_path)->list:
    "The training runs of a registry (not its world, nor the OOD scores another test may have added)"
    return [r for r in runs.find_runs(tmp_path/'runs') if not r.name.startswith(('world-', 'ood-'))]

def slurm_up()->bool:
    "Start the one-node Slurm of tools/slurm_local.sh (root only); whether it is up"
    if os.geteuid() != 0 and shutil.which('sbatch') is None: return False
    r = subprocess.run(['bash', str(ROOT/'tools/slurm_local.sh'), 'start'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr  # root, and it could not start: a real failure
    return True

@pytest.mark.xdist_group('smoke_fig3')  # one process trains the shared registry (tools/test.sh: --dist loadgroup)
def test_smoke_reproduction(smoke_fig3):
    "The cold batch (conftest's `smoke_fig3`: its plan, what it wrote), then a rerun that trains nothing and gives the same numbers"
    s, tmp_path, cold = smoke_fig3.settings, smoke_fig3.root, smoke_fig3.cold
    prof = load_profile('smoke', path=s)
    # the plan before anything trained: base, SFT and Pure-RL by folder, the branch after SFT
    assert [(r.stage, r.status) for r in cold] == [('base', 'new'), ('sft', 'new'), ('rl', 'new'), ('rl', f'after {cold[1].run}')]
    assert [o.status for o in smoke_fig3.outs] == ['ran'], smoke_fig3.outs
    out = tmp_path/'outputs'/'smoke'
    for f in ('fig3.png', 'fig3.csv', 'fig3.ipynb', 'curves_sequential.csv', 'REPORT.md'): assert (out/f).exists(), f
    c = pd.read_csv(out/'curves_sequential.csv')
    assert set(c.stage) == {'sft', 'rl'} and {'sft', 'sft_then_rl', 'pure_rl'} <= set(c.paradigm)
    assert c[c.stage == 'rl'].groupby('run').step.nunique().min() >= 6  # the branch point + 5 evaluations to fit
    fig3 = pd.read_csv(out/'fig3.csv')
    assert (abs(fig3.a_post - fig3.p_sft - fig3.pl_rl) < 1e-6).all()
    assert '## fig3' in (out/'REPORT.md').read_text()
    warm = plan.plan_batch(prof, 'fig3')  # `plasticity plan` agrees with what the cold batch trained
    assert all(plan._seconds(r) for r in trained(tmp_path)), [r.name for r in trained(tmp_path) if not plan._seconds(r)]  # base too
    assert all(r.measured for r in warm) and abs(sum(r.hours for r in warm) - sum(plan._seconds(r) for r in trained(tmp_path)) / 3600) < 1e-9
    assert {r.run for r in warm} == {r.name for r in trained(tmp_path)} and {r.status for r in warm} == {'done'}
    assert {r.run for r in cold if r.run} < {r.run for r in warm}
    # a second batch reuses every finished run: no new run folders, and no run's metrics or checkpoints touched
    def state(): return {r.name: sorted((str(f.relative_to(r.path)), f.stat().st_mtime_ns) for f in r.path.rglob('*') if f.is_file() and f.name != '.lock')
                         for r in runs.find_runs(tmp_path/'runs')}
    before = state()
    outs = RP.run_batch('smoke', only='fig3', settings=str(s), params=PARAMS)
    assert [o.status for o in outs] == ['ran']
    assert state() == before
    assert pd.read_csv(out/'fig3.csv').equals(fig3)  # and the same numbers from them

@pytest.mark.slow
def test_smoke_batch_through_slurm_same_bytes_after_scancel(tmp_path):
    "The smoke batch in process, then through Slurm in the same registry folder (so the same run ids), one RL job cancelled mid-run (about 4 min on 2 cores)"
    if not slurm_up(): pytest.skip('needs root to start a local Slurm (tools/slurm_local.sh)')
    s, out = smoke_settings(tmp_path), tmp_path/'outputs'/'smoke'
    assert [o.status for o in RP.run_batch('smoke', only='fig3', settings=str(s), params=PARAMS)] == ['ran']
    ref = {f: (out/f).read_bytes() for f in CSVS}
    for r in trained(tmp_path): shutil.rmtree(r.path)
    for f in CSVS: (out/f).unlink()
    got = {}
    t = threading.Thread(target=lambda: got.update(outs=RP.run_batch('smoke', only='fig3', settings=str(s), params=PARAMS, launcher='slurm')))
    t.start()
    victim, t0 = None, time.time()
    while victim is None and t.is_alive() and time.time() - t0 < 600:  # an RL job that has written a checkpoint: cancel it
        for r in trained(tmp_path):
            rec = launch.read_record(r)
            if r.name.startswith('rl-') and rec and not r.is_done() and r.checkpoints() and launch.slurm_state(rec['job_id'])[0] == 'running':
                subprocess.run(['scancel', rec['job_id']], check=True)
                victim = (r, rec['job_id'], {c.name: (c/'trainer_state.json').stat().st_mtime_ns for c in r.checkpoints()}); break
        time.sleep(0.3)
    t.join(900)
    assert victim is not None, 'no RL job was seen running with a checkpoint'
    run, job, kept = victim
    (o,) = got['outs']
    assert o.status == 'failed' and run.name in o.reason and f'job {job}' in o.reason and 'log:' in o.reason, o
    assert not run.is_done() and run.checkpoints()
    outs = RP.run_batch('smoke', only='fig3', settings=str(s), params=PARAMS, launcher='slurm')  # a rerun resubmits it, and it resumes
    assert [o.status for o in outs] == ['ran'], outs
    assert launch.read_record(run)['job_id'] != job
    first = min(kept, key=lambda n: int(n.split('-')[1]))  # resumed, not redone: the checkpoint written before the cancel is untouched
    assert (run.ckpt_dir/first/'trainer_state.json').stat().st_mtime_ns == kept[first]
    for r in trained(tmp_path):
        rec = launch.read_record(r)
        assert r.is_done() and rec['launcher'] == 'slurm' and Path(rec['log']).exists() and (r.path/'job.yaml').exists(), r
    assert {f: (out/f).read_bytes() for f in CSVS} == ref  # byte for byte the in-process batch's CSVs
