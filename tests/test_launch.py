"""The launchers beyond the Slurm route of tests/test_smoke.py (issue 20): `--launcher accelerate` trains the smoke
batch's runs with two CPU processes (gloo), and a detached Slurm batch submits what can start and reports the figure
pending."""
import subprocess
import pandas as pd
from plasticity_nb import reproduce as RP, launch
from test_smoke import smoke_settings, trained, slurm_up, PARAMS
import pytest


def test_accelerate_two_cpu_processes(tmp_path):
    s = smoke_settings(tmp_path, launch_gpus=2, rl_steps=3, pretrain_steps=10, sft_epochs=0.5, sft_ckpt_every=3)  # small: two processes of everything
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


def test_detached_batch_submits_and_reports_pending(tmp_path):
    if not slurm_up(): pytest.skip('needs root to start a local Slurm (tools/slurm_local.sh)')
    s = smoke_settings(tmp_path)
    outs = RP.run_batch('smoke', only='fig3', settings=str(s), params=PARAMS, launcher='slurm', detach=True)
    assert [o.status for o in outs] == ['pending'] and 'run the same command again' in outs[0].reason, outs
    recs = [launch.read_record(r) for r in trained(tmp_path)]
    assert [r['launcher'] for r in recs] == ['slurm']  # the base first: nothing else can be submitted before it exists
    for r in recs: subprocess.run(['scancel', r['job_id']])
