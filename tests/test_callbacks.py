"TRL callbacks (plasticity_nb.callbacks): the SFT regime in an SFTTrainer's logs, the ceiling forecast in a GRPOTrainer's logs"
import logging
import pytest, torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer, GRPOConfig, GRPOTrainer
from plasticity_nb.callbacks import RegimeCallback, CeilingCallback, online_regime, curves_from_log_history
from plasticity_nb.ceiling import REGIMES, regimes
from plasticity_nb.forecast import forecast_branch
from plasticity_nb.models import build_tokenizer, build_model
from plasticity_nb.tasks import build_world

torch.set_num_threads(1)
TINY = dict(n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64, max_len=128)


class Seen(TrainerCallback):
    "Stands in for a report_to integration: records the logs it is handed"
    def __init__(self): self.logs = []
    def on_log(self, args, state, control, logs=None, **kw): self.logs.append(dict(logs))


@pytest.fixture(scope='module')
def tok(): return build_tokenizer()


def test_sft_log_history_carries_the_regime(tok, tmp_path, caplog):
    w = build_world(dict(world_full=24, world_subset=5, world_s1k=5, world_val=6, world_rl=5, world_bench_scale=0.03), 0)
    to_ds = lambda rows: Dataset.from_list([dict(prompt=r['prompt'], completion=r['completion']) for r in rows])
    args = SFTConfig(output_dir=str(tmp_path), max_steps=40, per_device_train_batch_size=8, per_device_eval_batch_size=6,
                     learning_rate=1e-2, lr_scheduler_type='constant', eval_strategy='steps', eval_steps=2, logging_steps=2,
                     save_strategy='no', report_to='none', bf16=False, max_length=128, completion_only_loss=True, seed=0, disable_tqdm=True)
    tr = SFTTrainer(model=build_model('qwen2', tok, **TINY), args=args, train_dataset=to_ds(w['full']), eval_dataset=to_ds(w['val']),
                    processing_class=tok)
    seen = Seen(); tr.add_callback(seen)
    cb = RegimeCallback().add_to(tr)
    with caplog.at_level(logging.WARNING, logger='plasticity_nb.callbacks'): tr.train()
    evals = [e for e in tr.state.log_history if 'eval_loss' in e]
    assert len(evals) == 20 and all(e['regime'] in REGIMES and REGIMES[e['regime_code']] == e['regime'] for e in evals)
    L = [e['eval_loss'] for e in evals]
    assert [e['regime'] for e in evals] == [online_regime(L[:i + 1]) for i in range(len(L))]
    # from the run's minimum on, the online regime is the paper's rule applied to the whole run
    i_min = L.index(min(L))
    assert [e['regime'] for e in evals][i_min + 1:] == regimes(range(len(L)), L)[i_min + 1:]
    assert evals[0]['regime'] == 'adaptive' and 'stable' in [e['regime'] for e in evals]
    # the integrations registered after it got the keys too, and the switch point was announced once
    assert [l['regime'] for l in seen.logs if 'eval_loss' in l] == [e['regime'] for e in evals]
    msgs = [r.getMessage() for r in caplog.records if 'Stable regime begins' in r.getMessage()]
    assert len(msgs) == 1 and f'step {cb.stable_step}' in msgs[0]


def has_digit(completions, **kw):
    return [float(any(ch.isdigit() for ch in c)) for c in completions]


def test_grpo_log_history_carries_the_forecast(tok, tmp_path):
    model = build_model('qwen2', tok, **{**TINY, 'max_len': 64})
    rows = [dict(prompt=f'{a}+{b}=') for a in range(4) for b in range(4)]
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=4, per_device_eval_batch_size=4,
                      num_generations=2, max_completion_length=4, learning_rate=1e-2, eval_strategy='steps', eval_steps=1,
                      logging_steps=1, save_strategy='no', report_to='none', bf16=False, seed=0, disable_tqdm=True, temperature=1.0)
    tr = GRPOTrainer(model=model, reward_funcs=[has_digit], args=args, train_dataset=Dataset.from_list(rows),
                     eval_dataset=Dataset.from_list(rows[:4]), processing_class=tok)
    seen = Seen(); tr.add_callback(seen)
    cb = CeilingCallback(score_key='eval_reward', scale=100).add_to(tr)
    tr_p0 = tr.evaluate()['eval_reward']  # the branch point: P_sft at step 0
    tr.train()
    evals = [e for e in tr.state.log_history if 'eval_reward' in e]
    assert [e['step'] for e in evals] == list(range(1, 7))  # train() starts a fresh log history: the step-0 evaluation is in cb only
    assert cb.xs[0] == 0 and cb.p_sft == pytest.approx(100 * tr_p0)
    fc = [e for e in evals if 'ceiling/a_post' in e]
    assert [e['step'] for e in fc] == [3, 4, 5, 6]  # from the third point after the branch point on
    for e in fc: assert e['ceiling/a_post_lo95'] <= e['ceiling/a_post_lo68'] <= e['ceiling/a_post'] <= e['ceiling/a_post_hi68'] <= e['ceiling/a_post_hi95']
    # the same numbers as forecasting the logged curve directly (an independent path through the curve file)
    df = curves_from_log_history(tr.state.log_history, 'b', score_key='eval_reward', scale=100, p_sft=cb.p_sft)
    ref = forecast_branch(df['x'].values, df['score'].values - df['score'].iloc[0], df['score'].iloc[0])
    assert fc[-1]['ceiling/a_post'] == pytest.approx(ref.a_post) and fc[-1]['ceiling/x95'] == pytest.approx(ref.x95)
    reported = [l.get('ceiling/a_post') for l in seen.logs if 'eval_reward' in l]  # the integrations saw step 0 too
    assert reported == [None] + [e.get('ceiling/a_post') for e in evals]


def test_own_rl_run_logs_the_forecast(tmp_path):
    "run_rl registers a CeilingCallback: each evaluation row of metrics.jsonl and the trainer's log history carry the forecast"
    import json
    from plasticity_nb.rl import run_rl
    from plasticity_nb.runs import Run, eval_rows
    tok = build_tokenizer(); base = tmp_path/'base'
    build_model('qwen2', tok, **{**TINY, 'max_len': 64}).save_pretrained(base); tok.save_pretrained(base)
    bench = dict(small=[dict(prompt=f'{a}+1=', answer=str(a + 1)) for a in range(4)])
    rows = [dict(prompt=f'{a}+{b}=', answer=str(a + b)) for a in range(4) for b in range(3)]
    run_rl(base, rows, tmp_path/'run', algo='grpo', lr=1e-2, batch=2, group_size=2, steps=4, eval_every=1, benchmarks=bench,
           max_new_tokens=4, temperature=1.0, reward_funcs=[has_digit], eval_batch_size=8)
    ev = eval_rows(Run(tmp_path/'run'))
    assert [r['step'] for r in ev] == [0, 1, 2, 3, 4] and [bool(r.get('ceiling')) for r in ev] == [False] * 3 + [True] * 2
    x, y = [r['exaflops'] for r in ev], [r['scores']['overall'] for r in ev]
    ref = forecast_branch(x, [v - y[0] for v in y], y[0])  # the whole logged curve, forecast directly
    last = ev[-1]['ceiling']
    assert last['a_post'] == pytest.approx(ref.a_post) and last['x95'] == pytest.approx(ref.x95)
    assert last['a_post_lo95'] <= last['a_post_lo68'] <= last['a_post'] <= last['a_post_hi68'] <= last['a_post_hi95']
    hist = json.loads((tmp_path/'run'/'checkpoints'/'checkpoint-4'/'trainer_state.json').read_text())['log_history']
    logged = [e for e in hist if 'eval_overall' in e]  # the evaluations went through the trainer's log (report_to sees them)
    assert [e['step'] for e in logged] == [0, 1, 2, 3, 4] and logged[-1]['ceiling/a_post'] == pytest.approx(last['a_post'])
    train = [r for r in Run(tmp_path/'run').read_metrics() if r['event'] == 'train']
    assert [r['step'] for r in train] == [1, 2, 3, 4] and all('reward' in r and 'eval_overall' not in r for r in train)
