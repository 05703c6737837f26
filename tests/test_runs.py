"The run registry: id hashing, DONE semantics, torn-line tolerance, resume truncation, reuse"
import hashlib, json
import pytest
from plasticity_nb.runs import (canonical_json, run_id, open_run, ensure, find_runs, Run, parse_jsonl, checkpoint_step,
                                curve_rows, write_atomic)


def _ckpt(run, step, complete=True):
    d = run.ckpt_dir/f'checkpoint-{step}'
    d.mkdir(parents=True)
    (d/'model.safetensors').write_bytes(b'x')
    if complete: (d/'trainer_state.json').write_text(json.dumps(dict(global_step=step)))
    return d


# --- hashing -------------------------------------------------------------------------------------------------

def test_run_id_is_sha256_of_the_canonical_json():
    cfg = {'b': 1, 'a': [1, 2.5], 'c': 'x', 'd': {'z': None, 'y': True}}
    by_hand = '{"a":[1,2.5],"b":1,"c":"x","d":{"y":true,"z":null}}'
    assert canonical_json(cfg) == by_hand
    assert run_id(cfg) == hashlib.sha256(by_hand.encode()).hexdigest()[:12]


def test_run_id_stable_under_representation():
    cfg = dict(algo='dapo', lr=1e-6, batch=64, eps=(0.2, 0.28), nested=dict(a=1, b=[1, 2]))
    same = dict(nested=dict(b=(1, 2), a=1.0), eps=[0.2, 0.28], batch=64.0, lr=0.000001, algo='dapo')
    assert run_id(cfg) == run_id(same)
    np = pytest.importorskip('numpy')
    assert run_id(cfg) == run_id({**cfg, 'lr': np.float64(1e-6), 'batch': np.int64(64)})


@pytest.mark.parametrize('change', [dict(lr=2e-6), dict(batch=63), dict(algo='grpo'), dict(eps=(0.2, 0.2)),
                                    dict(nested=dict(a=1, b=[2, 1])), dict(extra=None), dict(flag=True)])
def test_run_id_sensitive_to_every_value(change):
    cfg = dict(algo='dapo', lr=1e-6, batch=64, eps=(0.2, 0.28), nested=dict(a=1, b=[1, 2]))
    assert run_id(cfg) != run_id({**cfg, **change})


def test_bool_is_not_int_and_nan_refused():
    assert run_id(dict(x=True)) != run_id(dict(x=1))
    with pytest.raises(ValueError, match='NaN'): run_id(dict(x=float('nan')))
    with pytest.raises(TypeError, match='not JSON'): run_id(dict(x=object()))


def test_open_run_folder_and_config(tmp_path):
    cfg = dict(kind_of='rl', lr=1e-6)
    run = open_run(tmp_path, 'rl', cfg)
    assert run.path == tmp_path/f'rl-{run_id(cfg)}'
    assert json.loads((run.path/'config.json').read_text()) == cfg
    assert open_run(tmp_path, 'rl', dict(lr=1e-6, kind_of='rl')).path == run.path
    (run.path/'config.json').write_text(json.dumps(dict(lr=5)))   # tampered
    with pytest.raises(ValueError, match='different config'): open_run(tmp_path, 'rl', cfg)
    with pytest.raises(ValueError, match='run kind'): open_run(tmp_path, 'rl/x', cfg)


# --- metrics -------------------------------------------------------------------------------------------------

def test_torn_last_line_is_skipped_and_repaired(tmp_path):
    run = Run(tmp_path/'r')
    run.append_metrics(dict(step=0, a=1.0), dict(step=1, a=2.0))
    with open(run.metrics_path, 'a') as f: f.write('{"step": 2, "a": 3.')   # kill -9 mid-write
    assert [r['step'] for r in run.read_metrics()] == [0, 1]
    run.append_metrics(dict(step=2, a=3.0))       # a new writer drops the torn fragment first
    assert run.read_metrics() == [dict(step=0, a=1.0), dict(step=1, a=2.0), dict(step=2, a=3.0)]
    assert run.metrics_path.read_text().count('\n') == 3


def test_corrupt_middle_line_is_an_error(tmp_path):
    run = Run(tmp_path/'r')
    run.metrics_path.write_text('{"step": 0}\n{"step": 1,\n{"step": 2}\n')
    with pytest.raises(ValueError, match='line 2'): run.read_metrics()


def test_metrics_need_step_and_nan_becomes_null(tmp_path):
    run = Run(tmp_path/'r')
    with pytest.raises(ValueError, match="'step'"): run.append_metrics(dict(loss=1.0))
    run.append_metrics(dict(step=3, loss=float('nan'), scores=dict(a=float('inf'), b=1.5)))
    assert run.read_metrics() == [dict(step=3, loss=None, scores=dict(a=None, b=1.5))]
    assert 'NaN' not in run.metrics_path.read_text()


# --- checkpoints, resume, DONE -------------------------------------------------------------------------------

def test_prepare_resume_truncates_after_last_complete_checkpoint(tmp_path):
    run = Run(tmp_path/'r')
    run.append_metrics(*[dict(step=s, event='train') for s in range(0, 6)])
    _ckpt(run, 2); _ckpt(run, 4); _ckpt(run, 6, complete=False)
    (run.ckpt_dir/'checkpoint-4'/'trainer_state.json').write_text('{"global_st')   # torn too
    assert checkpoint_step(run.last_checkpoint()) == 2
    ck = run.prepare_resume()
    assert ck == run.ckpt_dir/'checkpoint-2'
    assert sorted(p.name for p in run.ckpt_dir.iterdir()) == ['checkpoint-2']
    assert [r['step'] for r in run.read_metrics()] == [0, 1, 2]


def test_prepare_resume_without_checkpoint_starts_over(tmp_path):
    run = Run(tmp_path/'r')
    run.append_metrics(dict(step=0, event='eval'), dict(step=1, event='train'))
    assert run.prepare_resume() is None
    assert run.read_metrics() == []


def test_done_semantics_and_reuse(tmp_path):
    calls = []
    def train(run):
        calls.append(run.resume_from)
        assert not run.is_done()
        run.append_metrics(dict(step=1, loss=0.5))
        return dict(final=0.5)
    cfg = dict(lr=0.1)
    run = open_run(tmp_path, 'sft', cfg)
    assert run.status() == 'new' and run.summary() is None
    run = ensure(tmp_path, 'sft', cfg, train)
    assert run.is_done() and run.status() == 'done' and run.summary() == dict(status='done', final=0.5)
    again = ensure(tmp_path, 'sft', cfg, train)           # finished: fn not called again
    assert again.path == run.path and calls == [None]
    ensure(tmp_path, 'sft', dict(lr=0.2), train)          # another config: another run
    assert len(calls) == 2 and len(find_runs(tmp_path, 'sft')) == 2


def test_failed_fn_leaves_run_partial_then_resumes(tmp_path):
    cfg = dict(lr=0.1)
    def crash(run):
        run.append_metrics(dict(step=1)); run.append_metrics(dict(step=2)); _ckpt(run, 2); run.append_metrics(dict(step=3))
        raise RuntimeError('killed')
    with pytest.raises(RuntimeError): ensure(tmp_path, 'sft', cfg, crash)
    run = open_run(tmp_path, 'sft', cfg)
    assert not run.is_done() and run.status() == 'partial'
    seen = []
    def resume(run):
        seen.append((checkpoint_step(run.resume_from), [r['step'] for r in run.read_metrics()]))
        return {}
    ensure(tmp_path, 'sft', cfg, resume)
    assert seen == [(2, [1, 2])]
    assert run.is_done()


def test_mark_unstable(tmp_path):
    run = Run(tmp_path/'r')
    run.mark_unstable('NaN loss at step 7', step=7, summary=dict(steps=6))
    assert run.is_done() and run.status() == 'unstable'
    assert run.summary() == dict(steps=6, status='unstable', reason='NaN loss at step 7')
    assert run.read_metrics() == [dict(step=7, event='unstable', reason='NaN loss at step 7')]


def test_done_is_written_atomically(tmp_path):
    write_atomic(tmp_path/'f', 'abc')
    assert (tmp_path/'f').read_text() == 'abc' and [p.name for p in tmp_path.iterdir()] == ['f']


def test_lock_refuses_a_second_holder(tmp_path):
    run = Run(tmp_path/'r')
    with run.lock():
        with pytest.raises(RuntimeError, match='another process'):
            with Run(tmp_path/'r').lock(): pass
    with run.lock(): pass   # released


# --- curves out ----------------------------------------------------------------------------------------------

def test_curve_rows_have_the_tidy_columns(tmp_path):
    from plasticity_nb.curves import CURVE_COLUMNS
    run = open_run(tmp_path, 'rl', dict(dataset='easy', paradigm='sft_then_rl', branch_step=50, sft_exaflops=2.0, seed=1))
    run.append_metrics(dict(step=0, event='eval', stage='rl', exaflops=0.0, scores=dict(gsm8k=10.0, overall=9.0)),
                       dict(step=5, event='train', loss=0.1),
                       dict(step=10, event='eval', stage='rl', exaflops=0.5, scores=dict(gsm8k=20.0, overall=18.0)))
    rows = curve_rows(run)
    assert all(list(r) == CURVE_COLUMNS for r in rows)
    assert [(r['step'], r['benchmark'], r['score'], r['exaflops']) for r in rows] == [
        (0, 'gsm8k', 10.0, 0.0), (0, 'overall', 9.0, 0.0), (10, 'gsm8k', 20.0, 0.5), (10, 'overall', 18.0, 0.5)]
    assert {(r['dataset'], r['paradigm'], r['branch_step'], r['sft_exaflops'], r['seed'], r['stage']) for r in rows} == {
        ('easy', 'sft_then_rl', 50, 2.0, 1, 'rl')}
    sft = Run(tmp_path/'sft-x'); sft.append_metrics(dict(step=3, event='eval', stage='sft', exaflops=0.7, scores=dict(a=1.0)))
    r, = curve_rows(sft, dataset='easy', paradigm='sft')
    assert r['sft_exaflops'] == 0.7 and r['branch_step'] != r['branch_step']   # NaN for sft rows


def test_ensure_waits_for_a_concurrent_holder_then_reuses(tmp_path):
    import threading, time
    from plasticity_nb.runs import ensure
    calls = []
    def fn(run):
        calls.append(1); time.sleep(0.5); return dict(status='done')
    ts = [threading.Thread(target=ensure, args=(tmp_path, 'sft', dict(a=1), fn)) for _ in range(2)]
    for t in ts: t.start()
    for t in ts: t.join()
    assert len(calls) == 1  # the second caller waited for the first and found the run DONE


# --- the run loop --------------------------------------------------------------------------------------------

from types import SimpleNamespace
from plasticity_nb.runs import train_run, diverged, flag_unstable, TIMING_KEYS


class Killed(Exception): "stands in for kill -9"


class FakeTrainer:
    "What train_run needs of a Trainer: logs {step, exaflops, scores} per step, checkpoints every 2 steps"
    def __init__(self, run, steps=4, fail_at=None, error=Killed, stop_at=None, flag_at=None):
        self.run, self.fail_at, self.error, self.stop_at, self.flag_at = run, fail_at, error, stop_at, flag_at
        self.state = SimpleNamespace(global_step=0, max_steps=steps)

    def train(self, resume_from_checkpoint=None):
        self.resumed_from = resume_from_checkpoint
        if resume_from_checkpoint: self.state.global_step = checkpoint_step(resume_from_checkpoint)
        while self.state.global_step < self.state.max_steps:
            s = self.state.global_step + 1
            if s == self.fail_at: raise self.error(f'step {s} failed')
            if s == self.flag_at: flag_unstable(self, 'NaN loss'); return
            self.run.append_metrics(dict(step=s, event='eval', exaflops=0.5 * s, scores=dict(overall=10.0 * s)))
            self.state.global_step = s
            if s % 2 == 0:
                d = self.run.ckpt_dir/f'checkpoint-{s}'; d.mkdir(parents=True)
                (d/'trainer_state.json').write_text(json.dumps(dict(global_step=s, max_steps=self.state.max_steps)))
            if s == self.stop_at: return


def _builder(run, built, **kw):
    def build(ckpt):
        built.append(checkpoint_step(ckpt) if ckpt else None)
        return FakeTrainer(run, **kw)
    return build


def test_train_run_resumes_after_a_kill_and_reuses_a_finished_run(tmp_path):
    ref, run, built = Run(tmp_path/'ref'), Run(tmp_path/'run'), []
    s_ref = train_run(ref, _builder(ref, []))
    with pytest.raises(Killed): train_run(run, _builder(run, built, fail_at=3))
    with open(run.metrics_path, 'a') as f: f.write('{"step": 3, "ev')      # the kill tore the last line
    assert run.status() == 'partial'
    s = train_run(run, _builder(run, built))
    assert built == [None, 2] and run.read_metrics() == ref.read_metrics()
    assert {**s, **dict.fromkeys(TIMING_KEYS)} == {**s_ref, **dict.fromkeys(TIMING_KEYS)}
    assert s == run.summary() and (s['status'], s['steps'], s['exaflops'], s['best_overall']) == ('done', 4, 2.0, 40.0)
    assert s['final_scores'] == dict(overall=40.0)
    assert train_run(run, _builder(run, built)) == s and built == [None, 2]  # DONE: nothing built


def test_train_run_after_the_last_checkpoint_only_writes_done(tmp_path):
    run, built = Run(tmp_path/'run'), []
    s = train_run(run, _builder(run, built))
    (run.path/'DONE').unlink()                                 # killed between the last checkpoint and DONE
    assert train_run(run, _builder(run, built)) == {**s, **dict.fromkeys(TIMING_KEYS)} and built == [None]


def test_train_run_resume_false_starts_over(tmp_path):
    run, built = Run(tmp_path/'run'), []
    train_run(run, _builder(run, built))
    s = train_run(run, _builder(run, built), resume=False)
    assert built == [None, None] and s['steps'] == 4 and [r['step'] for r in run.read_metrics()] == [1, 2, 3, 4]


def test_train_run_resumes_from_the_newest_resumable_checkpoint(tmp_path):
    "A predicate (e.g. SFT: optimizer state and record present) picks the checkpoint; newer ones and their rows go"
    run, built = Run(tmp_path/'run'), []
    with pytest.raises(Killed): train_run(run, _builder(run, built, steps=6, fail_at=5))
    s = train_run(run, _builder(run, built, steps=6), resumable=lambda ck: checkpoint_step(ck) < 4)
    assert built == [None, 2] and s['steps'] == 6 and [r['step'] for r in run.read_metrics()] == [1, 2, 3, 4, 5, 6]


def test_train_run_stopped_short_is_resumable_not_done(tmp_path):
    run, built = Run(tmp_path/'run'), []
    s = train_run(run, _builder(run, built, stop_at=2))
    assert s['status'] == 'stopped' and s['steps'] == 2 and not run.is_done()
    assert train_run(run, _builder(run, built))['status'] == 'done' and built == [None, 2]


def test_train_run_marks_divergence_unstable(tmp_path):
    run = Run(tmp_path/'flag')
    s = train_run(run, _builder(run, [], flag_at=3))           # the trainer flagged a NaN loss
    assert run.status() == 'unstable' and s == run.summary() and s['reason'] == 'NaN loss (step 3)' and s['steps'] == 2
    assert run.read_metrics()[-1] == dict(step=3, event='unstable', reason='NaN loss (step 3)')
    run = Run(tmp_path/'gen')
    s = train_run(run, _builder(run, [], fail_at=3, error=lambda m: RuntimeError(f'{m}: probability tensor contains either `inf`, `nan`')))
    assert s['status'] == 'unstable' and s['reason'].startswith('generation failed: step 3 failed') and s['reason'].endswith('(step 3)')
    run = Run(tmp_path/'cuda')                                  # the process cannot go on: marked, then raised
    with pytest.raises(RuntimeError, match='device-side assert'):
        train_run(run, _builder(run, [], fail_at=2, error=lambda m: RuntimeError('CUDA error: device-side assert triggered')))
    assert run.status() == 'unstable'
    run = Run(tmp_path/'other')                                 # any other error is not the model's: raised, run left partial
    with pytest.raises(RuntimeError, match='inference'):
        train_run(run, _builder(run, [], fail_at=3, error=lambda m: RuntimeError('inference server unreachable')))
    assert run.status() == 'partial'


@pytest.mark.parametrize('msg,expected', [('probability tensor contains either `inf`, `nan` or element < 0', True),
                                          ('loss is NaN', True), ('got -inf', True), ('CUDA error: device-side assert triggered', True),
                                          ('inference failed', False), ('see the info log', False), ('infinite', False), ('nano', False)])
def test_diverged_reads_whole_words(msg, expected):
    assert diverged(RuntimeError(msg)) is expected
