"SFT with TRL: checkpoints, validation loss, records, completion-only loss, resume (plasticity_nb.sft)"
import json, math
from pathlib import Path
import pytest, torch
from plasticity_nb.sft import run_sft, sft_trainer, mean_seq_len, loss_curve
from plasticity_nb.runs import Run, eval_rows, curve_rows, checkpoint_step

def read_metrics(path): return eval_rows(Run(path))  # an SFT run's evaluations, by step
def checkpoints(path): return {checkpoint_step(p): p for p in Run(path).checkpoints()}  # its complete checkpoints by step
from plasticity_nb.config import SFTSpec
from plasticity_nb.models import build_tokenizer, build_model, load_local
from plasticity_nb.flops import ModelDims, sft_step_flops, EXA
from plasticity_nb.curves import check_curves, CURVE_COLUMNS
import pandas as pd
from plasticity_nb.tasks import build_world
from plasticity_nb.callbacks import online_regime

@pytest.fixture(scope='module')
def world(): return build_world(dict(world_full=24, world_subset=5, world_s1k=5, world_val=6, world_rl=5, world_bench_scale=0.03), 0)

@pytest.fixture(scope='module')
def tok(): return build_tokenizer()

@pytest.fixture(scope='module')
def base(tok, tmp_path_factory):
    "a tiny saved 'base model' folder"
    p = tmp_path_factory.mktemp('base')
    build_model('qwen2', tok, n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64, max_len=128).save_pretrained(p)
    tok.save_pretrained(p)
    return p

HP = dict(lr=3e-3, batch=8, epochs=3, ckpt_every=3, max_len=128, warmup=0.1, seed=0)  # 24 rows / 8 = 3 steps per epoch, 9 steps

def test_completion_only_labels(world, tok, tmp_path):
    rows = world['full'][:4]
    tr = sft_trainer(build_model('llama', tok, n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64), tok, rows, rows, tmp_path, batch=2)
    i = next(j for j in range(len(tr.train_dataset)) if tr.train_dataset[j]['input_ids'][1:6] == tok(rows[0]['prompt'])['input_ids'][1:6])
    out = tr.data_collator([tr.train_dataset[i], tr.train_dataset[(i + 1) % 4]])
    n_prompt = 1 + len(rows[0]['prompt'])                     # <bos> + one token per character
    full = [tok.bos_token_id] + tok.convert_tokens_to_ids(list(rows[0]['prompt'] + rows[0]['completion'])) + [tok.eos_token_id]
    lab, ids = out['labels'][0], out['input_ids'][0]
    assert ids[:len(full)].tolist() == full
    assert (lab[:n_prompt] == -100).all()                       # prompt (and <bos>) masked
    assert lab[n_prompt:len(full)].tolist() == full[n_prompt:]  # completion and <eos> learned
    assert (lab[len(full):] == -100).all()                      # right padding masked
    assert mean_seq_len(tr) == pytest.approx(sum(len(r['prompt'] + r['completion']) + 2 for r in rows) / 4)

def test_small_run(world, tok, base, tmp_path):
    bench = {'gsm8k': world['benchmarks']['gsm8k'][:3], 'aime': world['benchmarks']['aime'][:1]}
    s = run_sft(base, None, world['full'], world['val'], tmp_path/'run', benchmarks=bench,
                eval_kw=dict(samples={'gsm8k': 1, 'aime': 2}, max_new_tokens=16), **HP)
    recs = read_metrics(tmp_path/'run')
    assert [r['step'] for r in recs] == [0, 3, 6, 9] and all(r['event'] == 'eval' and r['stage'] == 'sft' for r in recs)
    # the run loop's summary, also in DONE
    assert s == Run(tmp_path/'run').summary() and (s['status'], s['steps'], s['exaflops']) == ('done', 9, recs[-1]['exaflops'])
    assert s['final_scores'] == recs[-1]['scores'] and s['best_overall'] == max(r['scores']['overall'] for r in recs)
    # val loss at every checkpoint, decreasing from the untrained start
    assert all(isinstance(r['val_loss'], float) and r['val_loss'] > 0 for r in recs)
    assert recs[-1]['val_loss'] < recs[0]['val_loss'] - 0.5
    # the live regime (callbacks.RegimeCallback on the trainer): the paper's rule with the minimum loss so far
    L = [r['val_loss'] for r in recs]
    assert [r['regime'] for r in recs] == [online_regime(L[:i + 1]) for i in range(len(L))]
    # compute: 3 B S F(S) per step with S measured by hand
    S = sum(len(r['prompt'] + r['completion']) + 2 for r in world['full']) / len(world['full'])
    m, _ = load_local(base)
    for r in recs: assert r['exaflops'] == pytest.approx(r['step'] * sft_step_flops(ModelDims.from_config(m.config), 8, S) / EXA)
    for r in recs: assert set(r['scores']) == {'gsm8k', 'aime', 'overall', 'overall_se', 'overall_se_problems'} and all(0 <= v <= 100 for v in r['scores'].values())
    # checkpoints in transformers format, optimizer state only in the newest
    ck = checkpoints(tmp_path/'run')
    assert sorted(ck) == [3, 6, 9]
    assert [(p/'optimizer.pt').exists() for _,p in sorted(ck.items())] == [False, False, True]
    m9, t9 = load_local(tmp_path/'run'/recs[-1]['checkpoint'])
    assert type(m9).__name__ == 'Qwen2ForCausalLM' and t9('ab')['input_ids'] == tok('ab')['input_ids']
    assert recs[0]['checkpoint'] == str(base)
    # tidy-ready outputs
    assert loss_curve(recs) == [(r['step'], r['exaflops'], r['val_loss']) for r in recs]
    df = check_curves(pd.DataFrame(curve_rows(Run(tmp_path/'run'), dataset='full', paradigm='sft', seed=0), columns=CURVE_COLUMNS))
    assert len(df) == 4 * 5 and df['branch_step'].isna().all() and (df['sft_exaflops'] == df['exaflops']).all()  # gsm8k, aime, overall, 2 SEs
    # a finished run is reused as it is
    mtime = (tmp_path/'run'/'metrics.jsonl').stat().st_mtime_ns
    assert run_sft(base, None, world['full'], world['val'], tmp_path/'run', **HP) == s
    assert (tmp_path/'run'/'metrics.jsonl').stat().st_mtime_ns == mtime

def test_resume_matches_uninterrupted(world, base, tmp_path):
    run_sft(base, None, world['full'], world['val'], tmp_path/'a', SFTSpec(**HP))   # the settings as one spec, or as fields
    part = run_sft(base, None, world['full'], world['val'], tmp_path/'b', stop_after=3, **HP)
    assert part['status'] == 'stopped' and not Run(tmp_path/'b').is_done()
    assert [r['step'] for r in read_metrics(tmp_path/'b')] == [0, 3] and sorted(checkpoints(tmp_path/'b')) == [3]
    # a record written past the last checkpoint (a crash before the save finished), then a line torn by the kill
    with open(tmp_path/'b'/'metrics.jsonl', 'a') as f:
        f.write(json.dumps(dict(event='eval', step=6, exaflops=0, val_loss=9.9, scores={})) + '\n' + '{"event": "eval", "st')
    assert [r['step'] for r in read_metrics(tmp_path/'b')] == [0, 3, 6]
    s = run_sft(base, None, world['full'], world['val'], tmp_path/'b', **HP)
    full, res = read_metrics(tmp_path/'a'), read_metrics(tmp_path/'b')
    assert s['status'] == 'done' and [r['step'] for r in res] == [0, 3, 6, 9]
    for x, y in zip(full, res): assert abs(x['val_loss'] - y['val_loss']) < 1e-5 and x['exaflops'] == pytest.approx(y['exaflops'])
    assert [r['regime'] for r in res] == [r['regime'] for r in full]  # the resumed run replayed the losses before its checkpoint
    ma, _ = load_local(tmp_path/'a'/'checkpoints'/'checkpoint-9'); mb, _ = load_local(tmp_path/'b'/'checkpoints'/'checkpoint-9')
    for (n, pa), pb in zip(ma.named_parameters(), mb.parameters()): assert torch.allclose(pa, pb, atol=1e-6), n

def test_non_finite_validation_loss_marks_the_run_unstable(world, base, tmp_path):
    "Weights turned NaN after step 1: the evaluation at the step-3 checkpoint flags the run, the checkpoint is not saved"
    from transformers import TrainerCallback
    class Poison(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kw):
            if state.global_step == 1:
                with torch.no_grad():
                    for p in model.parameters(): p.fill_(float('nan'))
    s = run_sft(base, None, world['full'], world['val'], tmp_path/'run', callbacks=[Poison()], **HP)
    run = Run(tmp_path/'run')
    assert s['status'] == 'unstable' and run.status() == 'unstable' and 'non-finite validation loss nan (step 3)' in s['reason']
    assert checkpoints(tmp_path/'run') == {} and [r['step'] for r in read_metrics(tmp_path/'run')] == [0]
    assert run.read_metrics()[-1]['event'] == 'unstable'

def test_bad_rows(tok, base, tmp_path):
    with pytest.raises(ValueError, match="train row 1: needs string 'prompt' and 'completion'"):
        run_sft(base, None, [{'prompt': 'a', 'completion': 'b'}, {'prompt': 'a'}], [{'prompt': 'a', 'completion': 'b'}], tmp_path, **HP)
    with pytest.raises(ValueError, match='validation set is empty'):
        run_sft(base, None, [{'prompt': 'a', 'completion': 'b'}], [], tmp_path/'x', **HP)
    with pytest.raises(ValueError, match='not a multiple of micro_batch=3'):
        run_sft(base, None, [{'prompt': 'a', 'completion': 'b'}], [{'prompt': 'a', 'completion': 'b'}], tmp_path/'y', micro_batch=3, **HP)
