"""The launchers (issue 20). By default, small: one RL run through the local Slurm of tools/slurm_local.sh, its job
cancelled with `scancel` once it has a checkpoint (a one-line error naming run, job and log), then resubmitted: it
resumes, and its curve equals the same run trained in process; a detached batch reports its figure pending. Slow
(`pytest -m slow -k "slurm or accelerate"`): the smoke batch through Slurm byte for byte (tests/test_smoke.py) and
through `--launcher accelerate` with two CPU processes."""
import os, subprocess, time
import pandas as pd
import pytest
from plasticity_nb import reproduce as RP, experiments as E, launch, runs as R
from plasticity_nb.config import load_profile
from test_smoke import smoke_settings, trained, slurm_up, PARAMS

SMALL = dict(pretrain_steps=10, rl_steps=4, rl_eval_every=1, world_bench_scale=0.05)  # one short run, checkpoints every step


def _curve(run): return [(r['step'], r['scores']) for r in R.eval_rows(run)]


def test_one_run_through_slurm_cancelled_and_resumed(tmp_path, monkeypatch):
    if not slurm_up(): pytest.skip('needs root to start a local Slurm (tools/slurm_local.sh)')
    monkeypatch.setenv('OMP_NUM_THREADS', '1')  # the same threads in process and in the jobs (one CPU each)
    prof = load_profile('smoke', path=smoke_settings(tmp_path, slurm_cpus=1, **SMALL))
    ref = _curve(E.pure_rl_run(prof))  # in process first
    for r in trained(tmp_path): r.reset(); (r.path/'DONE').unlink(missing_ok=True)
    monkeypatch.setenv(launch.LAUNCH_ENV, 'slurm')
    run = E.pure_rl_run(prof, wait=False)  # the base is pre-trained by a job first, then this run is submitted
    rec, t0 = launch.read_record(run), time.time()
    while not (run.checkpoints() and launch.slurm_state(rec['job_id'])[0] == 'running') and time.time() - t0 < 300: time.sleep(0.2)
    assert not run.is_done(), 'the job finished before it could be cancelled'
    subprocess.run(['scancel', rec['job_id']], check=True)
    kept = {c.name: (c/'trainer_state.json').stat().st_mtime_ns for c in run.checkpoints()}
    with pytest.raises(RuntimeError) as e: E.wait_for(prof, [run])
    assert f"run {run.name}: slurm job {rec['job_id']} ended" in str(e.value) and 'log: ' in str(e.value)
    again = E.pure_rl_run(prof)  # resubmitted; it resumes
    assert again.path == run.path and again.is_done() and launch.read_record(run)['job_id'] != rec['job_id']
    first = min(kept, key=lambda n: int(n.split('-')[1]))  # resumed, not redone: the checkpoint made before the cancel is untouched
    assert (run.ckpt_dir/first/'trainer_state.json').stat().st_mtime_ns == kept[first]
    assert _curve(run) == ref  # the same curve as in process
    assert all(launch.read_record(r)['launcher'] == 'slurm' for r in trained(tmp_path))


def test_detached_batch_submits_and_reports_pending(tmp_path):
    if not slurm_up(): pytest.skip('needs root to start a local Slurm (tools/slurm_local.sh)')
    s = smoke_settings(tmp_path)
    outs = RP.run_batch('smoke', only='fig3', settings=str(s), params=PARAMS, launcher='slurm', detach=True)
    assert [o.status for o in outs] == ['pending'] and 'run the same command again' in outs[0].reason, outs
    recs = [launch.read_record(r) for r in trained(tmp_path)]
    assert [r['launcher'] for r in recs] == ['slurm']  # the base first: nothing else can be submitted before it exists
    for r in recs: subprocess.run(['scancel', r['job_id']])


@pytest.mark.slow
def test_accelerate_two_cpu_processes(tmp_path):
    "The smoke fig3 runs under `--launcher accelerate` with two processes (gloo), small settings (about 3 min on 2 cores)"
    s = smoke_settings(tmp_path, launch_gpus=2, rl_steps=3, pretrain_steps=10, sft_epochs=0.5, sft_ckpt_every=3)
    outs = RP.run_batch('smoke', only='fig3', settings=str(s), params=PARAMS, launcher='accelerate')
    assert [o.status for o in outs] == ['ran'], outs
    runs = trained(tmp_path)
    assert sorted(r.name.split('-')[0] for r in runs) == ['base', 'rl', 'rl', 'sft']
    for r in runs:
        rec = launch.read_record(r)
        assert r.is_done() and rec['launcher'] == 'accelerate', r
        # two processes, the run's id says so; the tiny base pre-trains in one
        assert r.config.get('processes') == (None if r.name.startswith('base-') else 2) and ('--multi_gpu' in rec['command']) == (r.config.get('processes') == 2)
    c = pd.read_csv(tmp_path/'outputs'/'smoke'/'curves_sequential.csv')
    assert {'sft', 'sft_then_rl', 'pure_rl'} <= set(c.paradigm)
