"""The real route rehearsed on CPU (issue 13): a transformers model folder with a byte-level BPE tokenizer and a chat
template, LaTeX-answer data in the authors' layout, through `plasticity train sft`, `rl` (DAPO) from a checkpoint,
`syn` (LUFFY) and a figure notebook with the `rehearsal` profile; and (slow) the same under `accelerate launch` with
two processes, killed and relaunched."""
import configparser, json, os, subprocess, sys, time
from pathlib import Path
import pytest
from plasticity_nb import rehearsal as H, train, reproduce, runs as R
from plasticity_nb.config import load_profile
from plasticity_nb.rewards import math_reward

ROOT = Path(__file__).resolve().parents[1]


def rehearsal_settings(tmp_path, **extra)->Path:
    "The repository's [rehearsal] profile with its files, runs and outputs under tmp_path (the files are built here)"
    paths = H.prepare(tmp_path/'assets')
    cp = configparser.ConfigParser(interpolation=None); cp.read(ROOT/'settings.ini')
    own = {k: v for k, v in cp['rehearsal'].items() if k not in cp.defaults() or cp.defaults()[k] != v}
    own.update({k: str(v) for k, v in paths.items()}, **{k: str(v) for k, v in extra.items()})
    p = tmp_path/'settings.ini'
    p.write_text('\n'.join(['[DEFAULT]', f"outputs = {tmp_path/'outputs'}", f"runs = {tmp_path/'runs'}", '[rehearsal]']
                           + [f'{k} = {v}' for k, v in own.items()]) + '\n')
    return p


def test_rehearsal_world_is_the_real_format(tmp_path):
    from plasticity_nb import experiments as E
    prof = load_profile('rehearsal', path=rehearsal_settings(tmp_path))
    w = E.world(prof)  # also checks that the model's tokenizer represents the data
    assert (len(w['full']), len(w['val']), len(w['rl']), len(w['mix']), sorted(w['benchmarks'])) == (96, 12, 48, 24, ['aime', 'math'])
    for rows in (w['full'], w['rl'], *w['benchmarks'].values()):  # every prompt is a ChatML user turn with the assistant header
        assert all(r['prompt'].startswith('<|im_start|>system\n') and r['prompt'].endswith('<|im_end|>\n<|im_start|>assistant\n') for r in rows)
    # references as written: half of them in another form than the expert's boxed answer, and Math-Verify agrees
    assert any(not r['completion'].endswith(f"\\boxed{{{r['answer']}}}$.") for r in w['mix'])
    assert math_reward([r['completion'] for r in w['mix']], [r['answer'] for r in w['mix']]) == [1.0] * len(w['mix'])
    assert math_reward(['\\boxed{[1, 3]}', '\\boxed{0.6}'], ['[1, 3)', '\\frac{2}{3}']) == [0.0, 0.0]


def _summary(out:str)->dict:
    "The summary dict `train.main` prints (rank 0's, with a status; the other ranks print the run folder only)"
    line = [l for l in out.splitlines() if "{'run': " in l][-1]
    return eval(line[line.rindex("{'run': "):])


def test_rehearsal_route_sft_dapo_luffy_figure(tmp_path, capsys):
    t0 = time.time()
    # the profile with shorter generations and one SFT epoch, so that the default test stays small on 2 cores
    s = rehearsal_settings(tmp_path, sft_epochs=1, max_new_tokens=24, eval_samples_small=1, ds_rounds=1)
    sft_file = H.run_file(tmp_path/'sft.yaml', s, data='full')
    assert train.main(['sft', '--config', str(sft_file)]) == 0
    sft_run = R.Run(_summary(capsys.readouterr().out)['run'])
    recs = [r for r in sft_run.read_metrics()]
    assert sft_run.is_done() and [r['step'] for r in recs] == [0, 8, 12]
    assert recs[-1]['val_loss'] < recs[0]['val_loss'] - 0.3  # it learns the LaTeX text
    ck = sft_run.last_checkpoint()
    assert (ck/'chat_template.jinja').exists() and json.loads((ck/'tokenizer_config.json').read_text())['tokenizer_class'] == 'Qwen2Tokenizer'
    for kind, method in (('rl', 'dapo'), ('syn', 'luffy')):
        f = H.run_file(tmp_path/f'{kind}.yaml', s, method=method, init=str(ck))
        assert train.main([kind, '--config', str(f)]) == 0, kind
        out = _summary(capsys.readouterr().out)
        run = R.Run(out['run'])
        assert out['status'] == 'done' and out['steps'] == 2 and run.is_done(), (kind, out)
        evals = [r for r in run.read_metrics() if r.get('event') == 'eval']
        assert [e['step'] for e in evals] == [0, 1, 2] and set(evals[0]['scores']) >= {'math', 'aime', 'overall'}
        steps = [r for r in run.read_metrics() if r.get('event') == 'train']
        assert all(0 < r['completions/mean_length'] <= 24 for r in steps)  # max_new_tokens
    # the figure notebook through papermill with the same profile: it reuses the SFT run, trains one branch and Pure-RL
    outs = reproduce.run_batch('rehearsal', only='fig3', settings=str(s), params=dict(datasets='full', n_branches=1))
    assert [o.status for o in outs] == ['ran'], outs
    assert (tmp_path/'outputs'/'rehearsal'/'fig3.png').exists()
    assert len([r for r in R.find_runs(tmp_path/'runs', 'sft')]) == 1  # the notebook trained no second SFT
    print(f"rehearsal route: {time.time() - t0:.0f} s")


# ---------------------------------------------------------------------------------------------------- two processes
def _launch(run_file, kind, port, **kw):
    cmd = [sys.executable, '-m', 'accelerate.commands.launch', '--config_file', str(ROOT/'configs'/'rehearsal'/'accelerate_cpu2.yaml'),
           '--main_process_port', str(port), '-m', 'plasticity_nb.train', kind, '--config', str(run_file)]
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True, **kw)


def _finish(p, timeout=600):
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, out[-4000:]
    return _summary(out)


_TIMING = ('seconds', 'sec_per_step', 'step_time', 'eval_seconds', 'checkpoint')

def _comparable(run):
    "The metric rows without wall-clock fields (and the run folder's name in checkpoint paths)"
    return [{k: v for k, v in r.items() if k not in _TIMING} for r in run.read_metrics()]


def _kill_all(p):
    """SIGKILL the launcher and every process under it, as a crash would: torchrun starts each worker in a session of
    its own, so killing the launcher's process group alone leaves the workers training and writing the run folder"""
    import psutil
    procs = [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
    for q in procs:
        try: q.kill()
        except psutil.NoSuchProcess: pass
    psutil.wait_procs(procs, timeout=30); p.wait()


def _kill_after(p, run_dir_glob, root, step):
    "Kill the launch (`_kill_all`) once the checkpoint at `step` is complete and its metrics row is written"
    t0 = time.time()
    while time.time() - t0 < 600:
        for d in Path(root).glob(run_dir_glob):
            if R.checkpoint_step(d/'checkpoints'/f'checkpoint-{step}') == step and any(r.get('step') == step for r in R.Run(d).read_metrics()):
                _kill_all(p)
                return R.Run(d)
        if p.poll() is not None: raise AssertionError(f"finished before the kill:\n{p.stdout.read()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError('no checkpoint to kill after')


@pytest.mark.slow
def test_two_processes_rank0_writes_and_kill_resume(tmp_path, capsys):
    """SFT then DAPO under accelerate launch (2 CPU processes, gloo): one writer; killed (launcher and workers) after a
    checkpoint and relaunched, each run finishes from that checkpoint with the uninterrupted run's metrics exactly. The
    two processes average their gradients: SFT's training loss is that of one process with twice the batch."""
    res = {}
    for name in ('straight', 'killed'):
        s = rehearsal_settings(tmp_path/name, sft_epochs=4, sft_ckpt_every=4, rl_steps=6)
        root = tmp_path/name/'runs'
        f = H.run_file(tmp_path/name/'sft.yaml', s, data='full')
        p = _launch(f, 'sft', 29500 + (name == 'killed'))
        if name == 'killed':
            run = _kill_after(p, 'sft-*', root, 8)  # mid-epoch (6 steps per epoch on 2 processes): each rank skips 2 batches
            assert not run.is_done()
            p = _launch(f, 'sft', 29502)
        sft = R.Run(_finish(p)['run'])
        ck = sft.last_checkpoint()
        assert {x.name for x in ck.glob('rng_state_*.pth')} == {'rng_state_0.pth', 'rng_state_1.pth'}  # two ranks, one folder
        g = H.run_file(tmp_path/name/'rl.yaml', s, method='dapo', init=str(ck))
        p = _launch(g, 'rl', 29510 + (name == 'killed'))
        if name == 'killed':
            run = _kill_after(p, 'rl-*', root, 2)
            assert not run.is_done()
            p = _launch(g, 'rl', 29512)
        res[name] = (sft, R.Run(_finish(p)['run']))
    for run in (*res['straight'], *res['killed']):  # one writer: one row per (step, kind), one DONE
        rows = run.read_metrics()
        assert len(rows) == len({(r['step'], r.get('event')) for r in rows}) and run.summary()['status'] == 'done', run.path
    (sa, ra), (sb, rb) = res['straight'], res['killed']
    assert [r['step'] for r in _comparable(sa)] == [0, 4, 8, 12, 16, 20, 24]
    assert _comparable(sa) == _comparable(sb) and _comparable(ra) == _comparable(rb)  # identical, every field
    # the reference: one process with twice the batch sees the same 16 rows per step; the training losses agree to
    # float rounding when the two processes average their gradients (replicas that did not would differ by ~1e-4 at
    # step 4 and ~0.6% at step 24)
    s1 = rehearsal_settings(tmp_path/'one', sft_epochs=4, sft_ckpt_every=4, sft_batch=16)
    assert train.main(['sft', '--config', str(H.run_file(tmp_path/'one'/'sft.yaml', s1, data='full'))]) == 0
    one = R.Run(_summary(capsys.readouterr().out)['run']).read_metrics()
    for x, y in zip(_comparable(sa)[1:], one[1:], strict=True): assert y['train_loss'] == pytest.approx(x['train_loss'], rel=1e-5), (x, y)
