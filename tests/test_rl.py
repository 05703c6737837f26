"GRPO / DAPO on TRL: dynamic sampling, FLOPs accounting, runs with evaluations, divergence handling, exact resume"
import json, os, random, signal, subprocess, sys, textwrap, time
from collections import defaultdict
from pathlib import Path
import pytest, torch
from datasets import Dataset
from transformers import TrainerCallback
from plasticity_nb.models import build_tokenizer, build_model, load_local
from plasticity_nb.rl import DAPOConfig, DAPOTrainer, dapo_config, grpo_config, run_rl
from plasticity_nb.batching import PromptStream
from plasticity_nb.runs import Run, TIMING_KEYS

torch.set_num_threads(1)
TINY = dict(n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64, max_len=64)


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    "A freshly initialised micro Qwen2 with the project's char tokenizer, saved like a branch point"
    d = tmp_path_factory.mktemp('base')
    tok = build_tokenizer()
    build_model('qwen2', tok, **TINY).save_pretrained(d); tok.save_pretrained(d)
    return d


def has_digit(completions, **kw):
    "A reward an untrained model already earns sometimes: any digit in the completion"
    return [float(any(ch.isdigit() for ch in c)) for c in completions]


def f_fwd_token(cfg, S):
    "PAPER.md section 5 by hand: F_dense + 4 S d n_h L"
    L, H, Hff, nh, nkv, V = (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads,
                             cfg.num_key_value_heads, cfg.vocab_size)
    d = H // nh
    dense = 2 * (L * (3*H*Hff + H*(nh*d + 2*nkv*d + nh*d)) + 2*V*H)
    return dense + 4 * S * d * nh * L


# --- dynamic sampling -----------------------------------------------------------------------------------------

class Spy(DAPOTrainer):
    "Records what reaches the loss: (step, prompt text, advantage) per trained row"
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        tok = self.processing_class
        for ids, mask, adv in zip(inputs['prompt_ids'], inputs['prompt_mask'], inputs['advantages']):
            self.trained.append((self.state.global_step + 1, tok.decode(ids[mask.bool()], skip_special_tokens=True), float(adv)))
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def tagged_reward(lengths, tok):
    "Prompts 'M..' get rewards 0,1,0,1 within their group (informative); 'C..' always 1 (all equal). Records lengths."
    def reward(prompts, completions, completion_ids, trainer_state, **kw):
        step = trainer_state.global_step + 1
        for p,c in zip(prompts, completion_ids): lengths[step].append(len(tok(p)['input_ids']) + len(c))
        return [float(i % 2) if p.startswith('M') else 1.0 for i,p in enumerate(prompts)]
    return reward


def expected_rounds(rows, seed, steps, b_train, b_gen, k_max):
    "Replay the prompt order: (rounds, kept, dropped) per step, as dynamic sampling must produce them"
    s, out = PromptStream(len(rows), seed), []
    for _ in range(steps):
        kept = dropped = k = 0
        while k < k_max:
            k += 1
            m = [rows[i]['prompt'].startswith('M') for i in s.take(b_gen)]
            kept += min(b_train - kept, sum(m)); dropped += m.count(False)
            if kept >= b_train: break
        out.append((k, kept, dropped))
    return out


def ds_trainer(base, tmp_path, rows, steps, k_max=3, b_train=2, b_gen=4, G=2):
    model, tok = load_local(base)
    lengths = defaultdict(list)
    args = dapo_config(tmp_path/'ck', lr=1e-2, batch=b_train, gen_batch=b_gen, group_size=G, steps=steps, max_new_tokens=4,
                       temperature=1.0, ds_rounds=k_max, micro_batch=G, seed=3, collapse_patience=0)
    tr = Spy(model=model, reward_funcs=[tagged_reward(lengths, tok)], args=args, train_dataset=Dataset.from_list(rows),
             processing_class=tok)
    tr.trained = []
    return tr, lengths


def test_dynamic_sampling_keeps_only_informative_groups(base, tmp_path):
    rows = [dict(prompt=f'M{i}=', answer='0') for i in range(2)] + [dict(prompt=f'C{i}=', answer='0') for i in range(10)]
    steps, b_train, b_gen, G, K = 6, 2, 4, 2, 3
    tr, lengths = ds_trainer(base, tmp_path, rows, steps, K, b_train, b_gen, G)
    tr.train()
    logs = [l for l in tr.state.log_history if 'ds/rounds' in l]
    assert len(logs) == steps
    exp = expected_rounds(rows, 3, steps, b_train, b_gen, K)
    assert [(l['ds/rounds'], l['ds/groups_kept'], l['ds/groups_dropped']) for l in logs] == exp
    assert {k for k,_,_ in exp} == {1, 2, K} and any(kept < b_train for _,kept,_ in exp)  # filled steps and capped steps
    assert all(l['ds/rounds'] <= K for l in logs)
    # no all-equal group reaches the loss: every trained row is an 'M' prompt with a non-zero advantage
    assert tr.trained and all(p.startswith('M') and abs(a) > 0.5 for _,p,a in tr.trained)
    per_step = defaultdict(int)
    for s,_,_ in tr.trained: per_step[s] += 1
    assert [per_step[s] for s in range(1, steps+1)] == [kept * G for _,kept,_ in exp]
    # live FLOPs: (K B_gen + 3 B_train) G S F(S), S the mean prompt+response length of everything generated
    cfg, total = tr.model.config, 0.0
    for step, l in enumerate(logs, 1):
        S = sum(lengths[step]) / len(lengths[step])
        assert l['rl/seq_len'] == pytest.approx(S)
        flops = (l['ds/rounds'] * b_gen + 3 * l['ds/groups_kept']) * G * S * f_fwd_token(cfg, S)
        assert l['rl/flops'] == pytest.approx(flops, rel=1e-9)
        total += flops
        assert l['exaflops'] == pytest.approx(total / 1e18, rel=1e-9)


def test_nothing_informative_leaves_weights_unchanged(base, tmp_path):
    rows = [dict(prompt=f'C{i}=', answer='0') for i in range(8)]
    tr, _ = ds_trainer(base, tmp_path, rows, steps=2, k_max=2)
    before = {k: v.clone() for k,v in tr.model.state_dict().items()}
    tr.train()
    logs = [l for l in tr.state.log_history if 'ds/rounds' in l]
    assert [(l['ds/rounds'], l['ds/groups_kept'], l['ds/groups_dropped'], l['ds/filled']) for l in logs] == [(2, 0, 8, 0.0)] * 2
    assert tr.trained == []
    assert all(torch.equal(before[k], v) for k,v in tr.model.state_dict().items())


def test_grpo_flops_and_batch(base, tmp_path):
    model, tok = load_local(base)
    lengths = defaultdict(list)
    rows = [dict(prompt=f'M{i}=', answer='0') for i in range(3)] + [dict(prompt=f'C{i}=', answer='0') for i in range(3)]
    args = grpo_config(tmp_path/'ck', lr=1e-2, batch=2, group_size=4, steps=2, max_new_tokens=5, temperature=1.0,
                       micro_batch=4, collapse_patience=0)
    tr = Spy(model=model, reward_funcs=[tagged_reward(lengths, tok)], args=args, train_dataset=Dataset.from_list(rows),
             processing_class=tok)
    tr.trained = []
    tr.train()
    logs = [l for l in tr.state.log_history if 'rl/flops' in l]
    assert [l['ds/rounds'] for l in logs] == [1, 1]
    assert len(tr.trained) == 2 * 2 * 4            # GRPO trains every group, all-equal ones included
    for step, l in enumerate(logs, 1):
        S = sum(lengths[step]) / len(lengths[step])
        assert len(lengths[step]) == 2 * 4
        assert l['rl/flops'] == pytest.approx(4 * 2 * 4 * S * f_fwd_token(tr.model.config, S), rel=1e-9)


def test_config_presets_match_the_paper(tmp_path):
    g = grpo_config(tmp_path, batch=64, group_size=8, micro_batch=64)
    assert (g.loss_type, g.epsilon, g.epsilon_high, g.beta, g.dynamic_sampling, g.scale_rewards) == ('grpo', 0.2, 0.2, 0.0, False, 'group')
    assert (g.train_prompts, g.gradient_accumulation_steps, g.generation_batch_size) == (64, 8, 512)
    d = dapo_config(tmp_path, 'd', batch=64, gen_batch=128)
    assert (d.loss_type, d.epsilon, d.epsilon_high, d.dynamic_sampling, d.round_prompts, d.max_gen_rounds) == ('dapo', 0.2, 0.2, True, 128, 10)
    dc = dapo_config(tmp_path, 'dc', mask_truncated=True)
    assert (dc.epsilon, dc.epsilon_high, dc.mask_truncated_completions, dc.beta) == (0.2, 0.28, True, 0.0)
    with pytest.raises(ValueError, match='variant'): dapo_config(tmp_path, 'x')



def starts_with_seven(completions, **kw):
    "A reward a random policy earns about once in a hundred samples: the completion starts with '7'"
    return [float(c[:1] == '7') for c in completions]


@pytest.mark.parametrize('algo', ['grpo', 'dapo'])
def test_policy_gradient_raises_a_learnable_reward(tmp_path, algo):
    "The direction of the update: 30 steps on a reward the policy can reach make it several times more frequent"
    tok = build_tokenizer()
    model = build_model('qwen2', tok, **TINY)
    p0 = _first_char_prob(model, tok, '7')
    make = (lambda **k: dapo_config(tmp_path, 'dc', gen_batch=8, **k)) if algo == 'dapo' else (lambda **k: grpo_config(tmp_path, **k))
    args = make(lr=3e-3, batch=8, group_size=8, steps=30, max_new_tokens=4, temperature=1.0, collapse_patience=0)
    rows = [dict(prompt=f'Q{i}:', answer='7') for i in range(32)]
    tr = DAPOTrainer(model=model, reward_funcs=[starts_with_seven], args=args, train_dataset=Dataset.from_list(rows),
                     processing_class=tok)
    tr.train()
    rewards = [l['reward'] for l in tr.state.log_history if 'reward' in l]
    assert len(rewards) == 30
    p1 = _first_char_prob(tr.model, tok, '7')
    # an exact measure of the policy, not the sampled rewards: P('7' first) over the training prompts
    assert p0 < 0.03 and p1 > 4 * p0 and p1 > 0.08, (p0, p1)
    assert sum(rewards[-5:]) / 5 > 2 * sum(rewards[:5]) / 5


def _first_char_prob(model, tok, ch, n=32):
    "Mean probability (temperature 1) that the completion of the prompts 'Q{i}:' starts with `ch`"
    enc = tok([f'Q{i}:' for i in range(n)], return_tensors='pt', padding=True)
    with torch.no_grad(): logits = model(**enc).logits[:, -1]
    return float(logits.softmax(-1)[:, tok.convert_tokens_to_ids(ch)].mean())

# --- whole runs -----------------------------------------------------------------------------------------------

BENCH = dict(small=[dict(prompt='1+1=', answer='2'), dict(prompt='2+3=', answer='5')],
             large=[dict(prompt=f'{a}+1=', answer=str(a+1)) for a in range(4)])

def prompts(n=10, seed=0):
    rng = random.Random(seed)
    return [dict(prompt=f'{a}+{b}=', answer=a+b) for a,b in ((rng.randint(0, 9), rng.randint(0, 9)) for _ in range(n))]


@pytest.mark.parametrize('algo', ['grpo', 'dapo'])
def test_short_run_writes_metrics_with_evaluations(base, tmp_path, algo):
    out = tmp_path/'run'
    kw = dict(algo=algo, lr=1e-3, batch=2, gen_batch=4, group_size=4, steps=3, eval_every=2, benchmarks=BENCH,
              max_new_tokens=5, ds_rounds=2, eval_batch_size=8)   # reward: rewards.math_reward
    s = run_rl(base, prompts(), out, **kw)
    run = Run(out)
    assert run.status() == 'done' and run.summary() == s and s['steps'] == 3
    rows = run.read_metrics()
    evals = [r for r in rows if r['event'] == 'eval']
    train = [r for r in rows if r['event'] == 'train']
    assert [r['step'] for r in evals] == [0, 2, 3] and [r['step'] for r in train] == [1, 2, 3]
    assert all(set(r['scores']) == {'small', 'large', 'overall', 'overall_se', 'overall_se_problems'} for r in evals)
    assert all(0 <= v <= 100 for r in evals for v in r['scores'].values())
    cum = {0: 0.0}
    for r in train: cum[r['step']] = cum[r['step'] - 1] + r['rl/flops'] / 1e18
    assert [r['exaflops'] for r in evals] == pytest.approx([cum[r['step']] for r in evals], rel=1e-9)
    assert s['exaflops'] == pytest.approx(cum[3], rel=1e-9)
    assert [p.name for p in run.checkpoints()] == ['checkpoint-2', 'checkpoint-3']
    mtime = run.metrics_path.stat().st_mtime_ns
    assert run_rl(base, prompts(), out, algo=algo, steps=3) == s   # finished: reused, nothing rerun
    assert run.metrics_path.stat().st_mtime_ns == mtime
    (out/'DONE').unlink()                                           # killed after the last checkpoint, before DONE
    s2 = run_rl(base, prompts(), out, **kw)
    assert {**s2, **dict.fromkeys(TIMING_KEYS)} == {**s, **dict.fromkeys(TIMING_KEYS)} and run.read_metrics() == rows


def test_evaluations_do_not_shift_the_training_randomness(base, tmp_path):
    "An evaluation that draws from every global RNG: the training curve is the same however often it runs"
    import numpy as np
    def greedy_eval(model, tok):
        return dict(x=float(torch.rand(1)) + random.random() + float(np.random.rand()))
    curves = []
    for every in (1, 3):
        run_rl(base, prompts(), tmp_path/f'e{every}', algo='dapo', lr=1e-3, batch=2, gen_batch=4, group_size=4, steps=3,
               eval_every=every, max_new_tokens=5, reward_funcs=[has_digit], evaluate_fn=greedy_eval)
        curves.append([{k:v for k,v in r.items() if 'time' not in k} for r in Run(tmp_path/f'e{every}').read_metrics()
                       if r['event'] == 'train'])
    assert curves[0] == curves[1] and len(curves[0]) == 3


class Grab(TrainerCallback):
    "Hands the model to a test; optionally poisons its weights before a given step"
    def __init__(self, holder, poison_before=None): self.holder, self.poison_before = holder, poison_before
    def on_train_begin(self, args, state, control, model=None, **kw): self.holder['model'] = model
    def on_step_begin(self, args, state, control, model=None, **kw):
        if state.global_step + 1 == self.poison_before: _poison(model)

def _poison(model):
    with torch.no_grad():
        for p in model.parameters(): p.fill_(float('nan'))


def test_nan_loss_marks_the_run_unstable(base, tmp_path):
    holder = {}
    def bomb(completions, trainer_state, **kw):   # runs after generation, before the loss of step 2
        if trainer_state.global_step == 1: _poison(holder['model'])
        return has_digit(completions)
    s = run_rl(base, prompts(), tmp_path/'run', algo='grpo', lr=1e-3, batch=2, group_size=2, steps=4, eval_every=1,
               max_new_tokens=4, reward_funcs=[bomb], evaluate_fn=lambda m, t: dict(x=1.0), callbacks=[Grab(holder)])
    run = Run(tmp_path/'run')
    assert run.status() == 'unstable' and s['status'] == 'unstable' and 'non-finite loss' in s['reason']
    rows = run.read_metrics()
    assert [r['step'] for r in rows if r['event'] == 'eval'] == [0, 1]        # nothing evaluated after the NaN
    assert rows[-1] == dict(step=2, event='unstable', reason=s['reason'])
    assert [p.name for p in run.checkpoints()] == ['checkpoint-1']          # the NaN step is not saved


def test_nan_gradient_is_not_applied(base, tmp_path):
    "A finite loss with a NaN gradient: the step is dropped before the optimizer, the weights stay finite"
    holder = {}
    class NanGrad(Grab):
        def on_step_begin(self, args, state, control, model=None, **kw):
            if state.global_step + 1 == 2: model.model.embed_tokens.weight.register_hook(lambda g: g * float('nan'))
    s = run_rl(base, prompts(), tmp_path/'run', algo='dapo', lr=1e-3, batch=2, gen_batch=4, group_size=4, steps=4,
               eval_every=10, save_every=1, max_new_tokens=4, reward_funcs=[has_digit], callbacks=[NanGrad(holder)])
    assert s['status'] == 'unstable' and 'non-finite gradient (step 2)' in s['reason']
    assert all(torch.isfinite(p).all() for p in holder['model'].parameters())
    assert [p.name for p in Run(tmp_path/'run').checkpoints()] == ['checkpoint-1']


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU, sampling from NaN weights is a device-side assert that "
                    "poisons the CUDA context of the whole test process (run_rl marks the run and re-raises)")
def test_failed_generation_marks_the_run_unstable(base, tmp_path):
    s = run_rl(base, prompts(), tmp_path/'run', algo='dapo', lr=1e-3, batch=2, gen_batch=2, group_size=2, steps=4,
               eval_every=1, max_new_tokens=4, reward_funcs=[has_digit], callbacks=[Grab({}, poison_before=2)])
    assert s['status'] == 'unstable' and 'generation failed' in s['reason'] and '(step 2)' in s['reason']
    assert Run(tmp_path/'run').read_metrics()[-1]['event'] == 'unstable'


def test_reward_collapse_marks_the_run_unstable(base, tmp_path):
    def collapsing(completions, trainer_state, **kw):
        return [1.0 if trainer_state.global_step < 2 else 0.0] * len(completions)
    s = run_rl(base, prompts(), tmp_path/'run', algo='grpo', lr=1e-3, batch=2, group_size=2, steps=8, eval_every=10,
               max_new_tokens=4, reward_funcs=[collapsing], collapse_patience=2)
    assert s['status'] == 'unstable' and 'reward collapse' in s['reason'] and '(step 4)' in s['reason']
    assert Run(tmp_path/'run').read_metrics()[-1]['step'] == 4


# --- kill -9 and resume -----------------------------------------------------------------------------------------

JOB = '''
import json, sys, time, random
import numpy as np, torch
torch.set_num_threads(1)
from transformers import TrainerCallback
from plasticity_nb.rl import run_rl

def has_digit(completions, **kw): return [float(any(ch.isdigit() for ch in c)) for c in completions]
def toy_eval(model, tok):
    enc = tok(['1+1='] * 8, return_tensors='pt').to(model.device)
    with torch.random.fork_rng(devices=[model.device] if model.device.type == 'cuda' else []):
        torch.manual_seed(0)
        out = model.generate(**enc, max_new_tokens=6, do_sample=True, pad_token_id=tok.pad_token_id)
    v = 100 * float(np.mean(has_digit(tok.batch_decode(out[:, enc["input_ids"].shape[1]:]))))
    return dict(toy=v, overall=v)  # an overall score: the resumed run replays the live A_post forecast (its last row carries one)
class Slow(TrainerCallback):
    def __init__(self, s): self.s = s
    def on_step_end(self, *a, **k): time.sleep(self.s)

base, out, algo, steps, sleep = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
rng = random.Random(0)
prompts = [dict(prompt=f'{a}+{b}=', answer=str(a+b)) for a,b in ((rng.randint(0,9), rng.randint(0,9)) for _ in range(9))]
s = run_rl(base, prompts, out, algo=algo, lr=3e-3, batch=2, gen_batch=4, group_size=4, steps=steps, eval_every=2,
           save_every=2, max_new_tokens=6, temperature=1.0, reward_funcs=[has_digit], evaluate_fn=toy_eval, micro_batch=4,
           callbacks=[Slow(sleep)] if sleep else None)
print(json.dumps(s))
'''

def _job(tmp_path, base, out, algo, steps, sleep=0.0):
    script = tmp_path/'job.py'
    script.write_text(JOB)
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false'}
    return subprocess.Popen([sys.executable, str(script), str(base), str(out), algo, str(steps), str(sleep)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

def _curve(out):
    "The metrics without wall-clock fields"
    timing = ('time', 'seconds', 'runtime', 'per_second')
    return [{k:v for k,v in r.items() if not any(t in k for t in timing)} for r in Run(out).read_metrics()]

def _kill_when(p, cond, jitter=0.0, timeout=120):
    "SIGKILL the process `jitter` seconds after `cond()` first holds"
    t0 = time.time()
    while not cond():
        assert p.poll() is None, f"the run ended before it could be killed: {p.stderr.read().decode()[-2000:]}"
        assert time.time() - t0 < timeout, "timed out waiting for the kill point"
        time.sleep(0.02)
    time.sleep(jitter)
    assert p.poll() is None, "the run ended before it could be killed"
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL

def _finish(p):
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-3000:]
    return json.loads(out.decode().strip().splitlines()[-1])


def test_resume_after_kill_gives_the_same_curve(base, tmp_path):
    steps = 5
    ref = _job(tmp_path, base, tmp_path/'A', 'dapo', steps)
    killed = _job(tmp_path, base, tmp_path/'B', 'dapo', steps, sleep=0.3)
    run = Run(tmp_path/'B')
    # kill -9 once the first checkpoint is complete and something was logged after it
    _kill_when(killed, lambda: run.last_checkpoint() is not None and any(r['step'] > 2 for r in run.read_metrics()))
    assert not run.is_done()
    s = _finish(_job(tmp_path, base, tmp_path/'B', 'dapo', steps))
    s_ref = _finish(ref)
    assert _curve(tmp_path/'B') == _curve(tmp_path/'A')
    assert [r['step'] for r in _curve(tmp_path/'B') if r['event'] == 'eval'] == [0, 2, 4, 5]
    assert [bool(r.get('ceiling')) for r in _curve(tmp_path/'B') if r['event'] == 'eval'] == [False, False, False, True]
    assert {**s, **dict.fromkeys(TIMING_KEYS)} == {**s_ref, **dict.fromkeys(TIMING_KEYS)}


@pytest.mark.slow
@pytest.mark.parametrize('algo', ['grpo', 'dapo'])
def test_resume_after_repeated_random_kills(base, tmp_path, algo):
    "Kill -9 three times at random moments (mid-step, mid-evaluation, mid-checkpoint), then finish: same curve"
    steps, rng = 12, random.Random(algo)
    ref = _job(tmp_path, base, tmp_path/'A', algo, steps)
    run = Run(tmp_path/'B')
    for at in (3, 6, 9):
        p = _job(tmp_path, base, tmp_path/'B', algo, steps, sleep=0.15)
        _kill_when(p, lambda: any(r['step'] >= at for r in run.read_metrics()), jitter=rng.uniform(0, 0.3))
        assert not run.is_done()
    _finish(_job(tmp_path, base, tmp_path/'B', algo, steps))
    _finish(ref)
    assert _curve(tmp_path/'B') == _curve(tmp_path/'A')


# --- micro-batches by length -----------------------------------------------------------------------------------

class GradSpy(TrainerCallback):
    "The summed gradient of the first update, as the optimizer receives it"
    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        if not hasattr(self, 'grad'): self.grad = torch.cat([p.grad.flatten().clone() for p in model.parameters() if p.grad is not None])


class CallCounter(DAPOTrainer):
    "Records the completion width of every micro-batch that reaches TRL's loss"
    def _compute_loss(self, model, inputs):
        self.widths.append(inputs['completion_ids'].size(1))
        return super()._compute_loss(model, inputs)


def ragged_reward(completions, **kw):
    "Rewards that differ within each group, so every group is informative"
    return [float(len(c) % 3) for c in completions]


@pytest.mark.parametrize('algo', ['grpo', 'dapo'])
def test_length_bucketed_micro_batches_give_the_same_gradient(base, tmp_path, algo):
    rows = [dict(prompt=f'{"x" * (i % 5)}{i}=', answer='0') for i in range(8)]
    grads, widths = {}, {}
    for budget in (0, 40):
        model, tok = load_local(base)
        mk = dapo_config if algo == 'dapo' else grpo_config
        args = mk(tmp_path/f'ck{budget}', lr=1e-3, batch=4, group_size=4, steps=1, max_new_tokens=12, temperature=1.0, seed=5,
                  collapse_patience=0, micro_batch_tokens=budget, **({'gen_batch': 4} if algo == 'dapo' else {}))
        spy = GradSpy()
        tr = CallCounter(model=model, reward_funcs=[ragged_reward], args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tok, callbacks=[spy])
        tr.widths = []
        tr.train()
        grads[budget], widths[budget] = spy.grad, tr.widths
    assert len(widths[0]) == 1 and len(widths[40]) > 2  # one micro-batch, then several
    assert max(widths[40]) <= widths[0][0] and min(widths[40]) < widths[0][0]  # each part trimmed to its own longest completion
    g0, g1 = grads[0], grads[40]
    assert torch.nn.functional.cosine_similarity(g0, g1, dim=0) > 0.99999
    assert (g1 - g0).norm() / g0.norm() < 1e-4  # the same size too: a missing per-part weight (GRPO) would change it


def test_micro_batch_tokens_needs_a_separable_loss(tmp_path):
    with pytest.raises(ValueError, match="micro_batch_tokens=64 needs loss_type"):
        DAPOConfig(output_dir=str(tmp_path), micro_batch_tokens=64, loss_type='bnpo', per_device_train_batch_size=8, num_generations=8, bf16=False)


# --- several updates per generation -----------------------------------------------------------------------------

class RatioSpy(DAPOTrainer):
    "Per optimizer update: (generation rounds so far, largest |ratio - 1| of the update's tokens)"
    def _generate_round(self, inputs):
        self.rounds += 1
        return super()._generate_round(inputs)
    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        m = self._metrics['train']
        self.seen.append((self.rounds, m['clip_ratio/region_mean'][-1]))
        return loss


@pytest.mark.parametrize('algo', ['grpo', 'dapo'])
def test_two_updates_per_generation_make_the_clip_act(base, tmp_path, algo):
    rows = [dict(prompt=f'{i}=', answer='0') for i in range(16)]
    mk = dapo_config if algo == 'dapo' else grpo_config
    args = mk(tmp_path/'ck', lr=0.05, batch=2, group_size=4, steps=4, max_new_tokens=6, temperature=1.0, seed=1, updates=2,
              collapse_patience=0, **({'gen_batch': 4, 'ds_rounds': 1} if algo == 'dapo' else {}))
    assert (args.steps_per_generation, args.gradient_accumulation_steps, args.train_prompts) == (2, 1, 4)
    model, tok = load_local(base)
    tr = RatioSpy(model=model, reward_funcs=[ragged_reward], args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    tr.rounds, tr.seen = 0, []
    tr.train()
    assert [r for r, _ in tr.seen] == [1, 1, 2, 2]  # four updates from two generations
    first, second = [c for _, c in tr.seen[0::2]], [c for _, c in tr.seen[1::2]]
    assert first == [0.0, 0.0]  # the first update of a generation is on-policy: every ratio is 1
    assert all(c > 0 for c in second)  # after one update at a large lr the ratios leave the clip range for some tokens


def test_checkpoints_between_two_updates_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r'checkpoint interval 3 \(rl_eval_every\) must be a multiple of updates=2'):
        grpo_config(tmp_path, updates=2, save_every=3, use_cpu=True)


def test_overlong_shaping_reaches_the_trainer(base, tmp_path):
    "overlong_cache > 0 adds DAPO's soft overlong penalty to the rewards TRL scores (and logs per function)"
    s = run_rl(base, prompts(), tmp_path/'run', algo='grpo', lr=1e-3, batch=2, group_size=4, steps=1, max_new_tokens=5,
               overlong_cache=3, eval_every=1)
    (row,) = [r for r in Run(tmp_path/'run').read_metrics() if r['event'] == 'train']
    # an untrained model rarely stops early: most completions reach the 5-token limit, inside the 3-token window (penalty < 0)
    assert 'rewards/overlong/mean' in row and -1.0 <= row['rewards/overlong/mean'] < 0
    assert 'rewards/math_reward/mean' in row and s['steps'] == 1
