"Out-of-domain scores (Fig 4): the OOD families checked by an independent evaluator, scoring a real model, the registry cache, the claims, and fig4 through the command line."
import hashlib, json, shutil, subprocess, sys
from pathlib import Path
import nbformat, numpy as np, pandas as pd
import pytest
from plasticity_nb import experiments as E, ood as O, runs as R, tasks
from plasticity_nb.config import load_profile
from plasticity_nb.evaluate import evaluate
from test_tasks import check_chain  # the independent reference: Python's parser evaluates each prompt
from test_smoke import trained

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent/'plasticity'
SMOKE_WORLD = dict(world_full=300, world_subset=100, world_s1k=40, world_val=30, world_rl=60, world_mix=60, world_pretrain=300,
                   world_bench_scale=0.1, world_limit=50, world_max_operand=12)


def test_the_world_is_unchanged_and_the_ood_families_are_new_and_right():
    w = tasks.build_world(SMOKE_WORLD, seed=0)
    # the world of the committed generator before the OOD families (so no run id moved): same bytes, same key
    assert hashlib.sha256(json.dumps(w, sort_keys=True).encode()).hexdigest()[:16] == '794ec8793ecc1178'
    assert tasks.world_key(SMOKE_WORLD, 0) == '5a8d111c7289'
    ood = tasks.ood_sets(w, SMOKE_WORLD, seed=0)
    assert {f: len(v) for f, v in ood.items()} == dict(nested=16, spaced=16)
    for rows in ood.values():
        for r in rows: check_chain(r)  # every line right, the chain in evaluation order, the box holds the value
    world_prompts = {r['prompt'] for k, v in w.items() if k != 'benchmarks' for r in v if 'prompt' in r}
    world_prompts |= {r['prompt'] for v in w['benchmarks'].values() for r in v}
    squeeze = lambda p: 'Compute ' + p[len('Compute '):].replace(' ', '')
    assert not {squeeze(r['prompt']) for f in ood for r in ood[f]} & world_prompts  # neither a prompt nor a spaced twin is in the world
    nested = lambda p: any(a in '+-*' and b == '(' for a, b in zip(p, p[1:]))  # an operand, an operator, then a bracket
    assert all(map(nested, (r['prompt'] for r in ood['nested']))) and not any(map(nested, world_prompts))
    assert all(' ' in r['prompt'][len('Compute '):] for r in ood['spaced']) and not any(' ' in p[len('Compute '):] for p in world_prompts)
    assert ood == tasks.ood_sets(tasks.build_world(SMOKE_WORLD, seed=0), SMOKE_WORLD, seed=0)
    assert ood['nested'] != tasks.ood_sets(w, SMOKE_WORLD, seed=1)['nested']


def test_score_model_on_a_real_model_matches_evaluate(tmp_path):
    from plasticity_nb.models import build_tokenizer, build_model
    tok = build_tokenizer(); m = build_model('qwen2', tok, n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64, max_len=96, seed=0)
    m.save_pretrained(tmp_path/'m'); tok.save_pretrained(tmp_path/'m')
    bench = {f: rows[:6] for f, rows in tasks.ood_sets(tasks.build_world(SMOKE_WORLD, seed=0), SMOKE_WORLD).items()}
    kw = dict(samples=3, temperature=1.0, max_new_tokens=6, seed=0, engine='hf')
    rec = O.score_model(str(tmp_path/'m'), bench, greedy=True, **kw)
    ref = evaluate(str(tmp_path/'m'), None, bench, samples=3, temperature=1.0, max_new_tokens=6, seed=0, engine='hf')
    for b in bench: assert rec[b]['score'] == pytest.approx(ref[b], abs=1e-3)
    assert rec['overall']['score'] == pytest.approx(np.mean([rec[b]['score'] for b in bench]), abs=1e-3)  # equal sizes: the plain mean
    assert all(np.isfinite(rec[b]['se']) and rec[b]['se_problems'] >= 0 and 'greedy' in rec[b] for b in rec)
    assert O.score_model(str(tmp_path/'m'), bench, greedy=True, **kw) == rec  # paired: the same seeds, the same numbers


def _source(root, n_ckpt=3):
    run = R.open_run(root, 'sft', {'kind': 'sft', 'base': str(Path(root)/'base'), 'n': n_ckpt})
    (Path(root)/'base').mkdir(exist_ok=True)
    for s in range(10, 10*n_ckpt + 1, 10):
        R.write_atomic(run.ckpt_dir/f'checkpoint-{s}'/'trainer_state.json', json.dumps(dict(global_step=s)))
    run.mark_done()
    return run


def test_ood_run_resumes_after_a_torn_write_and_skips_deleted_models(tmp_path):
    src, seen = _source(tmp_path), []
    def score(m):
        seen.append(Path(m).name)
        return {'overall': dict(score=float(R.checkpoint_step(m) or 0), se=1.0, se_problems=2.0)}
    kw = dict(samples=1, temperature=0.7, max_new_tokens=8, seed=0, greedy=False, engine='hf')
    o = O.ood_run(tmp_path, src, {'x': [dict(prompt='p', answer='1')]}, kw, score)
    assert seen == ['base', 'checkpoint-10', 'checkpoint-20', 'checkpoint-30'] and o.is_done()
    # killed while appending the last row, before DONE: a torn line; the rerun keeps the whole rows and scores only step 30 again
    (o.path/'DONE').unlink()
    text = o.metrics_path.read_text().splitlines(keepends=True)
    o.metrics_path.write_text(''.join(text[:-1]) + text[-1][:15])
    shutil.rmtree(src.ckpt_dir/'checkpoint-20')  # a checkpoint deleted after it was scored
    seen.clear()
    o = O.ood_run(tmp_path, src, {'x': [dict(prompt='p', answer='1')]}, kw, score)
    assert seen == ['checkpoint-30'] and o.is_done()
    assert [(r['step'], r['scores']['overall']['score']) for r in R.eval_rows(o)] == [(0, 0.0), (10, 10.0), (20, 20.0), (30, 30.0)]
    assert o.summary()['missing_models'] == []
    gone = R.open_run(tmp_path/'other', 'rl', {'kind': 'rl', 'init': str(tmp_path/'deleted'), 'origin': {}}); gone.mark_done()
    assert O.ood_run(tmp_path/'other', gone, {'x': [dict(prompt='p', answer='1')]}, kw, score).summary()['missing_models'] == [0]


def test_claims_effects_and_errors_by_hand():
    rows = []
    def add(run, stage, paradigm, branch, step, score, se):
        rows.append(dict(run=run, dataset='full', paradigm=paradigm, branch_step=branch, stage=stage, step=step, exaflops=0.0,
                         sft_exaflops=0.0, benchmark='overall', score=score, val_loss=np.nan, seed=0, se=se, se_problems=2*se, greedy=np.nan))
    for step, sc in [(0, 5.0), (10, 9.0), (20, 12.0)]: add('sft-a', 'sft', 'sft', np.nan, step, sc, 1.0)
    for b, end, se in [(10, 12.0, 1.5), (20, 11.0, 0.5)]:
        add(f'rl-{b}', 'rl', 'sft_then_rl', b, 0, 9.0 if b == 10 else 12.0, se); add(f'rl-{b}', 'rl', 'sft_then_rl', b, 5, end, se)
    add('rl-p', 'rl', 'pure_rl', 0, 0, 5.0, 1.0); add('rl-p', 'rl', 'pure_rl', 0, 5, 4.0, 1.0)
    sft, rl, pure = O.ood_claims(pd.DataFrame(rows))
    assert sft['effect'] == f"+7.0 +/- {np.sqrt(2):.1f}" and sft['verdict'] == 'reproduced'
    # branches +3.0 (SE sqrt(2 * 1.5^2)) and -1.0 (SE sqrt(2 * 0.5^2)): mean +1.0, SE sqrt(4.5 + 0.5) / 2 = 1.12
    assert rl['effect'] == '+1.0 +/- 1.1' and rl['verdict'] == 'partly'
    assert '9.0 -> 12.0' in rl['ours'] and '12.0 -> 11.0' in rl['ours']
    assert pure['effect'] == '-1.0 +/- 1.4' and 'verdict' not in pure
    # a second SFT set from the same base (step 0 is the base, scored once): 5 -> 20 with se 0.5 at its end.
    # mean +11.0; SE sqrt((1.0/2)^2 + (0.5/2)^2 + 1.0^2) = 1.146 (the base's error whole, not halved; independent would give 0.79)
    for step, sc, se in [(0, 5.0, 1.0), (10, 20.0, 0.5)]: add('sft-b', 'sft', 'sft', np.nan, step, sc, se)
    rows[-1]['dataset'] = rows[-2]['dataset'] = 'hard'
    # and a second seed of the branch at step 10 (same checkpoint, 9.0 at its start): +5.0 with se 1.5 at its end
    add('rl-10b', 'rl', 'sft_then_rl', 10, 0, 9.0, 1.5); add('rl-10b', 'rl', 'sft_then_rl', 10, 5, 14.0, 1.5); rows[-1]['seed'] = rows[-2]['seed'] = 1
    sft, rl, _ = O.ood_claims(pd.DataFrame(rows))
    assert sft['effect'] == '+11.0 +/- 1.1' and sft['verdict'] == 'reproduced'
    # branches +3, +5 (from one checkpoint), -1: mean 7/3; SE sqrt((1.5^2 + 1.5^2 + 0.5^2)/9 + (2/3 * 1.5)^2 + (1/3 * 0.5)^2) = 1.24
    assert rl['effect'] == f"+2.3 +/- {np.sqrt((1.5**2 + 1.5**2 + 0.5**2) / 9 + (2/3 * 1.5)**2 + (0.5/3)**2):.1f}" == '+2.3 +/- 1.2'


@pytest.mark.xdist_group('smoke_fig3')  # one process trains the shared registry (tools/test.sh: --dist loadgroup)
def test_fig4_on_smoke_through_the_command_line(smoke_fig3, tmp_path):
    "fig4 on the runs of the smoke fig3 batch (conftest's `smoke_fig3`, shared: the runs are the same, so only the OOD scoring is new)"
    s, out = smoke_fig3.settings, tmp_path/'fig'
    before = {r.name for r in trained(smoke_fig3.root)}
    # first with the profile's ood_every = 3: every third kept model of each run is scored, and its last
    s3 = tmp_path/'every3.ini'; s3.write_text(s.read_text().replace('[smoke]\n', '[smoke]\nood_every = 3\n'))
    r = subprocess.run([str(EXE), 'reproduce', '--profile', 'smoke', '--settings', str(s3), '--only', 'fig4', '--out', str(tmp_path/'fig3rd')],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    t3 = pd.read_csv(tmp_path/'fig3rd'/'fig4.csv'); t3 = t3[t3.benchmark == 'overall']
    assert not any(r.is_done() for r in R.find_runs(smoke_fig3.root/'runs', 'ood'))  # thinned: not every model scored yet
    # then at the default (1): the rest is filled in, the thinned ones come from the cache
    r = subprocess.run([str(EXE), 'reproduce', '--profile', 'smoke', '--settings', str(s), '--only', 'fig4', '--out', str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert {r.name for r in trained(smoke_fig3.root)} == before  # fig4 reuses fig3's runs: it trains nothing
    for f in ('fig4.png', 'fig4.csv', 'fig4.ipynb', 'fig4.report.json', 'REPORT.md'): assert (out/f).exists(), f
    nb = nbformat.read(out/'fig4.ipynb', as_version=4)
    assert any('image/png' in o.get('data', {}) for c in nb.cells if c.cell_type == 'code' for o in c.outputs)
    t = pd.read_csv(out/'fig4.csv')
    assert list(t.columns) == O.OOD_COLUMNS
    assert set(t.benchmark) == {'nested', 'spaced', 'overall', 'in_domain'} and set(t.paradigm) == {'sft', 'sft_then_rl', 'pure_rl'}
    o = t[t.benchmark != 'in_domain']
    assert o.score.between(0, 100).all() and o.se.notna().all()
    # every model on the in-domain curves has its OOD score, at the same steps
    ind = t[t.benchmark == 'in_domain']
    assert sorted(map(tuple, ind[['run', 'step']].values.tolist())) == sorted(map(tuple, t[t.benchmark == 'overall'][['run', 'step']].values.tolist()))
    assert t[(t.stage == 'rl') & (t.benchmark == 'overall')].groupby('run').step.nunique().min() >= 6
    # an RL branch starts from the SFT checkpoint it branches from: scored apart, the same numbers
    for b in ('nested', 'spaced', 'overall'):
        d = t[t.benchmark == b]
        for bs in d[d.paradigm == 'sft_then_rl'].branch_step.unique():
            at0 = d[(d.paradigm == 'sft_then_rl') & (d.branch_step == bs) & (d.step == 0)].iloc[0]
            sft = d[(d.stage == 'sft') & (d.step == bs)].iloc[0]
            assert (at0.score, at0.se) == (sft.score, sft.se), (b, bs)
    rep = (out/'REPORT.md').read_text()
    assert '## fig4' in rep and rep.count('claim: ') >= 2
    assert all(r['verdict'] in ('reproduced', 'partly', 'not reproduced') for r in json.loads((out/'fig4.report.json').read_text())['rows'][:2])
    done = R.find_runs(smoke_fig3.root/'runs', 'ood')
    assert len(done) == t.run.nunique() and all(r.is_done() for r in done)
    for run, g in t[t.benchmark == 'overall'].groupby('run'):
        steps = sorted(g.step)
        assert sorted(t3[t3.run == run].step) == sorted(set(steps[::3]) | {steps[-1]}), run
    both = t3.merge(t[t.benchmark == 'overall'], on=['run', 'step'], suffixes=('', '_1'))
    assert len(both) == len(t3) and (both.score == both.score_1).all()  # the same cached scores
    # the notebook's OOD scores are cached under the identities `ood_run` computes: asking again scores nothing
    prof = load_profile('smoke', path=s)
    bench, kw = O.ood_benchmarks(prof, E.world(prof)), O.ood_eval_kw(prof)
    def boom(m): raise AssertionError(f'scored again: {m}')
    assert {O.ood_run(prof['runs'], R.Run(Path(prof['runs'])/n), bench, kw, boom).name for n in t.run.unique()} == {r.name for r in done}
