"""The synchronized SFT-RL methods (plasticity_nb.syn): each trainer's loss and gradient on a hand-made batch against
an independent reference (plain autograd on the official formula of tests/test_losses.py, token by token, with
log-probs and entropies taken from the model's logits, not from TRL's fused head; one micro-batch's loss as the scripts
compute it: policy token sums over L_max = max_completion_length, the SFT term and the entropy bonus token means over
the micro-batch, the micro-batches added up), one optimizer step through TRL's training step, the
handling of expert tokens (ratios, old log-probs, vLLM correction), the UPT gate, Prefix-RFT's schedule, the expert
trajectory scored in its group, FLOPs, and a short run of every method through `run_syn`."""
import json, math, os, random
import pytest, torch
from datasets import Dataset
from trl import GRPOTrainer
from plasticity_nb.models import build_tokenizer, build_model
from plasticity_nb.rewards import math_reward
from plasticity_nb.flops import ModelDims, luffy_step_flops, upt_step_flops, grpo_step_flops, EXA
from plasticity_nb.tasks import make_problem
from plasticity_nb import syn
from plasticity_nb.losses import upt_gate, prefix_bounds, sample_prefix_len
from plasticity_nb.syn import METHODS, run_syn, syn_config, upt_gamma, check_mix_rows
from plasticity_nb.experiments import syn_settings

torch.set_num_threads(1)
ATOL = 1e-5
L_MAX, ROWS = 40, 8  # the trainers' max_completion_length and generation batch rows (2 prompts x the group of 4)
N = L_MAX  # the policy terms' normaliser: a micro-batch's token sum over L_max (verl's loss_remove_token_mean)

# ---------------------------------------------------------------- fixtures: a tiny model and one trainer per method

@pytest.fixture(scope='module')
def tok(): return build_tokenizer()

@pytest.fixture(scope='module')
def rows():
    return [make_problem(i, 2, 30) for i in range(8)]

def _trainer(method, tok, rows, tmp, G=4, micro=None, **kw):
    "A method's trainer on a micro model: 2 prompts per generation batch, in one micro-batch unless `micro` rows"
    m = METHODS[method]
    model = build_model('qwen2', tok, n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64, max_len=96, seed=1)
    ga = 2 * G // (micro or 2 * G)
    cfg = m.config(output_dir=str(tmp), per_device_train_batch_size=micro or 2 * G, gradient_accumulation_steps=ga,
                   steps_per_generation=ga, num_generations=G, max_completion_length=L_MAX, temperature=1.0, report_to='none',
                   save_strategy='no', use_cpu=True, bf16=False, disable_tqdm=True, remove_unused_columns=False, **kw)
    tr = m.trainer(model=model, reward_funcs=[math_reward], args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok)
    tr.model.train()
    tr.current_gradient_accumulation_steps = ga  # as Trainer's training loop sets it
    return tr

@pytest.fixture(scope='module')
def trainers(tok, rows, tmp_path_factory):
    d = tmp_path_factory.mktemp('trainers')
    return {m: _trainer(m, tok, rows, d/m, G=5 if m == 'upt' else 4, entropy_coef=0.01) for m in METHODS}

# ---------------------------------------------------------------- a hand-made batch and the independent reference

PROMPTS = ['Compute 12+34.', 'Compute 56-78.', 'Compute 9*3+1.', 'Compute 9-2*3.']  # equal lengths: no prompt padding
COMPS = ['12+34=46\n\\boxed{46}', '56-7', '9*3=27\n27+1=28\n\\boxed{28}', '40-6=34']

def make_batch(tok, comps=COMPS, prompts=PROMPTS):
    "prompt_ids / prompt_mask / completion_ids (EOS-terminated, right-padded) / completion_mask, as TRL passes them"
    P = [tok(text=p)['input_ids'] for p in prompts]
    assert len({len(p) for p in P}) == 1
    C = [tok(text=c, add_special_tokens=False)['input_ids'] + [tok.eos_token_id] for c in comps]
    T = max(len(c) for c in C)
    cid = torch.tensor([c + [tok.pad_token_id] * (T - len(c)) for c in C])
    cm = torch.tensor([[1] * len(c) + [0] * (T - len(c)) for c in C])
    return dict(prompt_ids=torch.tensor(P), prompt_mask=torch.ones(len(P), len(P[0]), dtype=torch.long),
                completion_ids=cid, completion_mask=cm)

def ref_logps(model, b, temperature=1.0):
    "log pi(y_t) and the entropy of pi at every completion position, from the plain logits (no TRL code)"
    ids = torch.cat([b['prompt_ids'], b['completion_ids']], 1)
    att = torch.cat([b['prompt_mask'], b['completion_mask']], 1)
    P = b['prompt_ids'].size(1)
    logits = model(input_ids=ids, attention_mask=att).logits[:, P - 1:-1].float() / temperature
    lsm = logits.log_softmax(-1)
    return lsm.gather(-1, b['completion_ids'][..., None]).squeeze(-1), -(lsm.exp() * lsm).sum(-1)

def grads_of(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    g = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return g

def assert_same_grads(g1, g2, atol=ATOL):
    assert g1.keys() == g2.keys()
    for n in g1: torch.testing.assert_close(g1[n], g2[n], atol=atol, rtol=1e-4, msg=lambda m: f"{n}: {m}")

def tokens(b):
    B, T = b['completion_ids'].shape
    return [(i, t) for i in range(B) for t in range(T) if b['completion_mask'][i, t]]

def entropy_bonus(ent, mask, coef): return coef * (ent * mask).sum() / mask.sum()

def train_step(tr, batch):
    "The trainer's own path for one optimizer step: _prepare_inputs splits `batch` (as if generated), training_step per micro-batch"
    tr._generate_and_score_completions = lambda inputs: dict(batch)
    tr._step, tr._buffered_inputs = 0, None
    tr.model.zero_grad(set_to_none=True)
    loss = sum(float(tr.training_step(tr.model, None)) for _ in range(tr.args.gradient_accumulation_steps))
    g = {n: p.grad.detach().clone() for n, p in tr.model.named_parameters() if p.grad is not None}
    tr.model.zero_grad(set_to_none=True)
    return loss, g

# ---------------------------------------------------------------- LUFFY

def luffy_reference(m, b, off, old, A, isr, clip, eps=(0.2, 0.2), coef=0.0):
    "LUFFY (luffy/verl/verl/mix_src/mix_core_alg.py compute_token_on_off_policy_loss, exp_scripts/train.sh): sum / (B L_max)"
    lp, ent = ref_logps(m, b)
    total = 0
    for i, t in tokens(b):
        if off[i, t]:
            p = lp[i, t].exp(); total = total - A[i] * p / (p + 0.1)
        else:
            r = (lp[i, t] - old[i, t]).exp()
            on = torch.minimum(r * A[i], r.clamp(1 - eps[0], 1 + eps[1]) * A[i]) if clip else r * A[i]
            total = total - isr[i, t] * on
    return total / N - entropy_bonus(ent, b['completion_mask'], coef)

def test_luffy_trainer_matches_reference(trainers, tok):
    "LUFFYTrainer._compute_loss: loss and every parameter gradient equal the official formula (no clip; with on_policy_clip PPO's)"
    tr = trainers['luffy']; m = tr.model
    b = make_batch(tok)
    B, T = b['completion_ids'].shape
    off = torch.zeros(B, T, dtype=torch.bool); off[1] = b['completion_mask'][1].bool(); off[3] = b['completion_mask'][3].bool()
    with torch.no_grad(): lp0, _ = ref_logps(m, b)
    old = lp0 + torch.linspace(-0.4, 0.4, B * T).view(B, T)  # ratios inside and outside the clip range
    A = torch.tensor([0.9, 1.2, -0.6, -0.3])
    isr = 1 + 0.2 * torch.sin(torch.arange(B * T).float()).view(B, T)  # a vLLM correction on the sampled tokens
    inputs = dict(b, advantages=A, off_mask=off, expert_row=off.any(1), old_per_token_logps=old.clone(),
                  importance_sampling_ratio=torch.where(off, 1.0, isr), num_items_in_batch=b['completion_mask'].sum())
    for clip in (True, False):  # the clip last: the default stays
        tr.args.on_policy_clip = clip
        loss = tr._compute_loss(m, inputs)
        g = grads_of(m, loss)
        ref = luffy_reference(m, b, off, old, A, isr, clip, (tr.epsilon_low, tr.epsilon_high), tr.args.entropy_coef)
        torch.testing.assert_close(loss, ref, atol=ATOL, rtol=1e-4)
        assert_same_grads(g, grads_of(m, ref))
    tr.args.on_policy_clip = False
    # TRL's old log-probs and vLLM ratios never touch expert tokens: garbage there (even NaN) changes nothing
    for bad_isr in (torch.where(off, float('inf'), isr), torch.where(off.any(1, keepdim=True), float('nan'), isr)):
        bad = dict(inputs, old_per_token_logps=torch.where(off, float('nan'), old), importance_sampling_ratio=bad_isr)
        loss_bad = tr._compute_loss(m, bad)
        torch.testing.assert_close(loss_bad, loss, atol=ATOL, rtol=1e-5)
        assert_same_grads(grads_of(m, loss_bad), g)

def test_luffy_step_accumulates_to_the_batch_loss(tok, rows, tmp_path):
    "One optimizer step of 2 micro-batches through _prepare_inputs and training_step: the whole batch's loss and gradient"
    tr = _trainer('luffy', tok, rows, tmp_path, micro=4, entropy_coef=0.0)  # the bonus is a per-micro-batch mean: off here
    assert tr.args.gradient_accumulation_steps == 2 and tr.args.train_prompts * tr.num_generations == ROWS
    b = make_batch(tok, COMPS * 2, PROMPTS * 2)
    B, T = b['completion_ids'].shape
    off = torch.zeros(B, T, dtype=torch.bool); off[3] = off[7] = True; off &= b['completion_mask'].bool()
    with torch.no_grad(): lp0, _ = ref_logps(tr.model, b)
    old = lp0 + torch.linspace(-0.4, 0.4, B * T).view(B, T)
    A = torch.tensor([0.9, 1.2, -0.6, -0.3, 0.5, -0.5, 0.2, 0.8])
    batch = dict(b, advantages=A, off_mask=off, expert_row=off.any(1), old_per_token_logps=old, num_items_in_batch=off.sum())
    loss, g = train_step(tr, batch)
    ref = luffy_reference(tr.model, b, off, old, A, torch.ones(B, T), clip=False)
    assert loss == pytest.approx(ref.item(), rel=1e-4)
    assert_same_grads(g, grads_of(tr.model, ref))

# ---------------------------------------------------------------- SRFT
def srft_official_micro(m, b, off, correct, A, micro_batches, coef):
    """hpt mix_actor.py update_policy, offline_loss_type 'srft', per micro-batch: H_i = the row's mean token entropy
    (detached), sft_loss = compute_sft_pure_loss(log_prob * 0.5 e^-H) over the micro-batch's expert tokens, on tokens
    -on_adv log p (0.1 e^H where correct, else -1), expert tokens -A p/(p+0.1), token sum / L_max; minus entropy_coeff x
    the micro-batch's mean token entropy; the micro-batch losses added up (gradient accumulation 1)"""
    lp, ent = ref_logps(m, b)
    mask = b['completion_mask'].bool()
    total = 0
    for mb in micro_batches:
        H = {i: ent[i][mask[i]].mean().detach() for i in mb}
        demo = [(i, t) for i in mb for t in range(mask.size(1)) if off[i, t]]
        sft = sum(-0.5 * torch.exp(-H[i]) * lp[i, t] for i, t in demo) / len(demo) if demo else 0
        pg = 0
        for i in mb:
            for t in range(mask.size(1)):
                if not mask[i, t]: continue
                if off[i, t]: p = lp[i, t].exp(); pg = pg - A[i] * p / (p + 0.1)
                else: pg = pg - (0.1 * torch.exp(H[i]) if correct[i] else -1.0) * lp[i, t]
        Hmb = sum(ent[i][mask[i]].sum() for i in mb) / sum(mask[i].sum() for i in mb)
        total = total + sft + pg / L_MAX - coef * Hmb
    return total

def test_srft_step_over_the_scripts_micro_batches(tok, rows, tmp_path):
    """One optimizer step with verl's dynamic micro-batches (a token budget, rows balanced by Karmarkar-Karp) and two
    expert rows per micro-batch: the accumulated loss and every gradient equal the official per-micro-batch formula"""
    from plasticity_nb.batching import balanced_micro_batches
    tr = _trainer('srft', tok, rows, tmp_path, entropy_coef=0.01, micro_batch_tokens=80)
    comps = ['12+34=46\n\\boxed{46}', '56-7', '9*3=27\n27+1=28\n\\boxed{28}', '40-6=34', '1+1=2', '7', '3*3=9\n\\boxed{9}', '12']
    b = make_batch(tok, comps, PROMPTS * 2)
    mask = b['completion_mask'].bool()
    off = torch.zeros_like(mask); off[[0, 2, 3, 6]] = mask[[0, 2, 3, 6]]  # four expert rows
    correct = torch.tensor([True, True, False, True, False, True, True, False])
    A = torch.tensor([0.75, 0.5, -0.25, 0.25, -0.5, 0.25, 0.5, -0.75])
    lens = (b['prompt_mask'].sum(1) + b['completion_mask'].sum(1)).tolist()
    mbs = balanced_micro_batches(lens, 80)  # 206 tokens: 3 parts, [[0, 1, 5], [4, 6, 7], [2, 3]]
    assert len(mbs) == 3 and any(sum(bool(off[i].any()) for i in mb) >= 2 for mb in mbs)  # expert rows share micro-batches
    batch = dict(b, advantages=A, off_mask=off, expert_row=off.any(1), correct=correct, num_items_in_batch=mask.sum())
    loss, g = train_step(tr, batch)
    ref = srft_official_micro(tr.model, b, off, correct, A, mbs, 0.01)
    assert loss == pytest.approx(ref.item(), rel=1e-4)
    assert_same_grads(g, grads_of(tr.model, ref))
    # one micro-batch (the old reading) is a different loss: the partition is part of the method
    one = srft_official_micro(tr.model, b, off, correct, A, [list(range(8))], 0.01)
    assert abs(one.item() - ref.item()) > 1e-3


def test_srft_trainer_matches_reference_and_stops_weight_gradients(trainers, tok):
    "SRFTTrainer._compute_loss: the three terms of the official formula (test_losses) with w_sft = 0.5 sg(e^-H), w_rl = 0.1 sg(e^H)"
    tr = trainers['srft']; m = tr.model
    b = make_batch(tok)
    B, T = b['completion_ids'].shape
    off = torch.zeros(B, T, dtype=torch.bool); off[0] = b['completion_mask'][0].bool()  # row 0: the expert trajectory
    correct = torch.tensor([True, True, False, False])  # row 1 a positive rollout, rows 2-3 negatives
    A = torch.tensor([0.75, 0.75, -0.25, -0.25])
    mask = b['completion_mask'].bool()
    inputs = dict(b, advantages=A, off_mask=off, expert_row=off.any(1), correct=correct, num_items_in_batch=mask.sum())
    loss = tr._compute_loss(m, inputs)
    g = grads_of(m, loss)
    a = tr.args

    def reference(stopgrad):
        lp, ent = ref_logps(m, b)
        Hseq = [ent[i][mask[i]].mean() for i in range(B)]
        Hseq = [h.detach() if stopgrad else h for h in Hseq]
        sft = rl_demo = rl_self = 0
        for i, t in tokens(b):
            if off[i, t]:
                sft = sft - 0.5 * torch.exp(-Hseq[i]) * lp[i, t] / off.sum()  # the mean over the micro-batch's expert tokens
                p = lp[i, t].exp(); rl_demo = rl_demo - A[i] * p / (p + 0.1) / N
            elif correct[i]: rl_self = rl_self - 0.1 * torch.exp(Hseq[i]) * lp[i, t] / N
            else: rl_self = rl_self + lp[i, t] / N
        return sft + rl_demo + rl_self - entropy_bonus(ent, mask, a.entropy_coef), (sft, rl_demo, rl_self)

    ref, parts = reference(stopgrad=True)
    torch.testing.assert_close(loss, ref, atol=ATOL, rtol=1e-4)
    assert_same_grads(g, grads_of(m, ref))
    no_sg, _ = reference(stopgrad=False)
    g_no_sg = grads_of(m, no_sg)
    assert max((g[n] - g_no_sg[n]).abs().max() for n in g) > 1e-4  # the stop-gradient matters, and is applied
    # the logged terms are the three terms of the reference
    logged = {k: tr._metrics['train'][f'syn/{k}'][-1] for k in ('sft_demo', 'rl_demo', 'rl_self')}
    for k, v in zip(('sft_demo', 'rl_demo', 'rl_self'), parts): assert abs(logged[k] - float(v)) < 1e-4

# ---------------------------------------------------------------- UPT

def _upt_out(tr, n_correct, B_prompts=3):
    "TRL-like output of one round and the round's rewards: prompt j has n_correct[j] correct rollouts of g_on"
    G, g_on = tr.num_generations, tr.g_on
    r = torch.zeros(B_prompts * G)
    for j, k in enumerate(n_correct):
        r[j * G:j * G + k] = 1.0; r[j * G + g_on:(j + 1) * G] = 1.0  # the expert slot is correct
    tr._round_rewards = r[:, None]
    return dict(completion_ids=torch.zeros(B_prompts * G, 3, dtype=torch.long), advantages=torch.full((B_prompts * G,), 9.0)), r

def test_upt_gate_switches_per_prompt(trainers):
    "pass rate <= gamma: the prompt's expert trajectory gets SFT, its rollouts nothing; > gamma: RL on the rollouts"
    tr = trainers['upt']; G = tr.num_generations  # 4 rollouts + 1 expert slot
    test_cases = {0.0: [False, True, True], 0.25: [False, False, True]}  # Qwen and Llama gates, pass rates 0, 1/4, 2/4
    for gamma, is_rl in test_cases.items():
        tr.args.gamma = gamma
        out, r = _upt_out(tr, [0, 1, 2])
        out = tr._after_scoring(out, None)
        for j, rl in enumerate(is_rl):
            rows = slice(j * G, (j + 1) * G)
            assert out['rl_row'][rows].tolist() == [rl] * 4 + [False]
            assert out['sft_row'][rows].tolist() == [False] * 4 + [not rl]
            r_on = r[rows][:4]
            torch.testing.assert_close(out['advantages'][rows], torch.cat([r_on - r_on.mean(), torch.zeros(1)]))
    tr.args.gamma = 0.0
    test_eq_gate = upt_gate(torch.tensor([0.0, 0.25, 0.26]), 0.25).tolist()
    assert test_eq_gate == [False, False, True]
    assert upt_gamma('qwen2') == 0.0 and upt_gamma('llama') == 0.25
    with pytest.raises(ValueError, match='gamma'): upt_gamma('gpt2')

def test_upt_trainer_matches_reference(trainers, tok):
    "UPTTrainer._compute_loss = sum_RL -r A / L_max + the mean NLL over the SFT tokens (hpt mix_actor.py update_policy, 'sft')"
    tr = trainers['upt']; m = tr.model
    b = make_batch(tok)
    mask = b['completion_mask'].bool()
    rl_row, sft_row = torch.tensor([True, True, False, False]), torch.tensor([False, False, True, False])  # row 3: neither
    with torch.no_grad(): lp0, _ = ref_logps(m, b)
    old = lp0 + 0.3 * torch.sin(torch.arange(lp0.numel()).float()).view_as(lp0)
    A = torch.tensor([0.5, -0.5, 0.0, 3.0])
    n = mask.sum(1)
    inputs = dict(b, advantages=A, off_mask=torch.zeros_like(mask), expert_row=sft_row, rl_row=rl_row, sft_row=sft_row,
                  old_per_token_logps=old)
    loss = tr._compute_loss(m, inputs)
    g = grads_of(m, loss)
    a = tr.args
    lp, ent = ref_logps(m, b)
    rl, sft = 0, 0
    for i, t in tokens(b):
        if rl_row[i]: rl = rl - (lp[i, t] - old[i, t]).exp() * A[i]  # no clip (exp_scripts/train.sh: loss_remove_clip)
        elif sft_row[i]: sft = sft - lp[i, t] / n[sft_row].sum()
    trained = mask & (rl_row | sft_row)[:, None]
    ref = rl / N + sft - entropy_bonus(ent, trained, a.entropy_coef)
    torch.testing.assert_close(loss, ref, atol=ATOL, rtol=1e-4)
    assert_same_grads(g, grads_of(m, ref))

# ---------------------------------------------------------------- Prefix-RFT

def test_prefix_schedule_and_lengths():
    "lower bound lo_end + (lo_start - lo_end)(1 + cos(pi t))/2 from 95% to 5%, upper 95%; lengths inside the bounds"
    for t in (0, 0.1, 0.25, 0.5, 0.75, 1.0):
        lo, hi = prefix_bounds(t)
        assert abs(lo - (0.05 + 0.45 * (1 + math.cos(math.pi * t)))) < 1e-12 and hi == 0.95
    assert prefix_bounds(0.0) == pytest.approx((0.95, 0.95)) and prefix_bounds(1.0) == pytest.approx((0.05, 0.95))
    assert prefix_bounds(2.0) == prefix_bounds(1.0)
    rng = random.Random(0)
    for t in (0.0, 0.3, 1.0):
        lo, hi = prefix_bounds(t)
        L = [sample_prefix_len(200, lo, hi, rng, 2.0, 2.0) for _ in range(300)]
        assert int(200 * lo) <= min(L) and max(L) <= int(200 * hi)
        if t == 1.0: assert max(L) - min(L) > 100  # the Beta draw spreads over [5%, 95%]
    assert sample_prefix_len(3, 0.95, 0.95, rng) == 2  # at most n - 1 tokens of prefix

def test_prefix_trainer_plan_follows_schedule(trainers, rows):
    tr = trainers['prefix_rft']
    n = len(tr._expert_ids(rows[0]['completion'])) - 1
    tr.state.max_steps = 100
    for step in (0, 50, 100):
        tr.state.global_step = step
        lo, hi = prefix_bounds(step / 100)
        for _ in range(20):
            kind, pre = tr._off_slot(rows[0])
            assert kind == 'prefix' and int(n * lo) <= len(pre) <= int(n * hi)
            assert pre == tr._expert_ids(rows[0]['completion'])[:len(pre)]
    tr.state.global_step = 0

def test_prefix_trainer_matches_reference(trainers, tok):
    "PrefixRFTTrainer._compute_loss: clipped objective (dual clip 3) with A_t = 0 on the micro-batch's floor(80%) lowest-entropy prefix tokens, over B L_max"
    tr = trainers['prefix_rft']; m = tr.model
    b = make_batch(tok)
    mask = b['completion_mask'].bool()
    B, T = mask.shape
    off = torch.zeros(B, T, dtype=torch.bool); off[2, :11] = True; off[0, :4] = True  # two hybrid rollouts
    with torch.no_grad(): lp0, ent0 = ref_logps(m, b)
    old = lp0 + 0.3 * torch.cos(torch.arange(lp0.numel()).float()).view_as(lp0)
    A = torch.tensor([1.0, -0.5, 0.8, -0.2])
    inputs = dict(b, advantages=A, off_mask=off, expert_row=torch.zeros(B, dtype=torch.bool), old_per_token_logps=old,
                  num_items_in_batch=mask.sum())
    loss = tr._compute_loss(m, inputs)
    g = grads_of(m, loss)
    a = tr.args
    lp, ent = ref_logps(m, b)
    pre = [(i, t) for i in range(B) for t in range(T) if off[i, t]]  # the micro-batch's prefix tokens, ranked together
    low = set(sorted(pre, key=lambda it: float(ent0[it]))[:int(0.8 * len(pre))])
    total = 0
    for i, t in tokens(b):
        At = 0.0 if (i, t) in low else A[i]
        r = (lp[i, t] - old[i, t]).exp()
        tok_loss = -torch.minimum(r * At, r.clamp(1 - tr.epsilon_low, 1 + tr.epsilon_high) * At)
        total = total + (torch.minimum(tok_loss, -3.0 * At) if At < 0 else tok_loss)
    ref = total / N - entropy_bonus(ent, mask, a.entropy_coef)
    torch.testing.assert_close(loss, ref, atol=ATOL, rtol=1e-4)
    assert_same_grads(g, grads_of(m, ref))
    assert len(pre) - len(low) == 3  # of the 11 + 4 prefix tokens, int(0.8 * 15) = 12 lose their advantage
    # the vLLM correction has no sampler log-prob for prefix tokens: whatever is passed there is ignored
    with_isr = tr._compute_loss(m, dict(inputs, importance_sampling_ratio=torch.where(off, 5.0, 1.0)))
    torch.testing.assert_close(with_isr, loss, atol=ATOL, rtol=1e-5)
    m.zero_grad(set_to_none=True)

# ---------------------------------------------------------------- the group: generation, scoring, bookkeeping

def test_expert_in_group_is_scored_by_the_reward(trainers, rows, tok):
    "The expert trajectory sits in the last slot, is scored by math_reward (1.0) and enters the group's advantages"
    tr = trainers['luffy']; G = tr.num_generations
    assert math_reward([rows[0]['completion']], [rows[0]['answer']]) == [1.0]
    inputs = [r for r in rows[:2] for _ in range(G)]
    out, grp = tr._generate_round(inputs)
    texts = tok.batch_decode(out['completion_ids'], skip_special_tokens=True)
    R = tr._round_rewards[:, 0]
    for j in range(2):
        e = j * G + G - 1
        assert out['expert_row'][e] and texts[e] == rows[j]['completion'] and R[e] == 1.0
        assert out['off_mask'][e].sum() == out['completion_mask'][e].sum()  # every expert token, EOS included
        assert not out['off_mask'][j * G:e].any()
        torch.testing.assert_close(out['advantages'][j * G:(j + 1) * G], R[j * G:(j + 1) * G] - R[j * G:(j + 1) * G].mean())
    assert out['advantages'][G - 1] > 0 and grp.shape == (2, G - 1)  # the collapse guard sees the rollouts only
    torch.testing.assert_close(out['correct'].float(), (R > 0).float())

def _fake_out(B, T, with_seq_isr=False):
    g = torch.Generator().manual_seed(0)
    return dict(completion_ids=torch.ones(B, T, dtype=torch.long), completion_mask=torch.ones(B, T, dtype=torch.long),
                old_per_token_logps=-torch.rand(B, T, generator=g),
                importance_sampling_ratio=(0.5 + torch.rand(B, 1 if with_seq_isr else T, generator=g)))

def test_expert_tokens_get_pi_phi_one_and_no_vllm_correction(trainers):
    "After scoring: log pi_old = log pi_phi = 0 on expert rows; vLLM ratio 1 on expert and prefix tokens; rollouts untouched"
    tr = trainers['luffy']; G, T = tr.num_generations, 6
    tr._round_rewards = torch.zeros(G, 1)
    for seq in (False, True):
        out = _fake_out(G, T, seq); ref = {k: v.clone() for k, v in out.items()}
        plan = [('on', None)] * (G - 1) + [('expert', [5, 6, 7])]
        out = tr._mark_off_policy(out, plan)
        assert out['off_mask'][-1].tolist() == [True] * 3 + [False] * 3 and not out['off_mask'][:-1].any()
        assert (out['old_per_token_logps'][-1] == 0).all()
        torch.testing.assert_close(out['old_per_token_logps'][:-1], ref['old_per_token_logps'][:-1])
        isr = out['importance_sampling_ratio']
        assert (isr[-1, :3] == 1).all() if not seq else isr[-1, 0] == 1
        torch.testing.assert_close(isr[:-1], ref['importance_sampling_ratio'][:-1])
    tp = trainers['prefix_rft']
    tp._round_rewards = torch.zeros(G, 1)
    out = _fake_out(G, T); ref = {k: v.clone() for k, v in out.items()}
    out = tp._mark_off_policy(out, [('on', None)] * (G - 1) + [('prefix', [5, 6])])
    assert (out['importance_sampling_ratio'][-1, :2] == 1).all()
    torch.testing.assert_close(out['importance_sampling_ratio'][-1, 2:], ref['importance_sampling_ratio'][-1, 2:])
    torch.testing.assert_close(out['old_per_token_logps'], ref['old_per_token_logps'])  # pi_old of the prefix: the policy's own

def test_generation_splices_experts_and_prefixes(trainers, monkeypatch):
    "On-policy rows are generated g_on per prompt; prefix rows continue prompt + prefix; unsampled tokens get NaN log-probs"
    calls = []
    def fake(self, prompt_ids, images, mm, num_generations, has_tool_images=False):
        calls.append(([list(p) for p in prompt_ids], num_generations))
        return [[100 + i, 200 + i] for i in range(len(prompt_ids))], [[-0.5, -0.25] for _ in prompt_ids]
    monkeypatch.setattr(GRPOTrainer, '_generate_single_turn', fake)
    tr = trainers['prefix_rft']; G = tr.num_generations
    tr._plan = [('on', None)] * (G - 1) + [('prefix', [7, 8, 9])] + [('on', None)] * (G - 1) + [('prefix', [])]
    prompts = [[1, 2]] * G + [[3, 4]] * G
    try: ids, lps = tr._generate_single_turn(prompts, None, {}, G)
    finally: tr._plan = None
    assert calls[0] == ([[1, 2]] * (G - 1) + [[3, 4]] * (G - 1), G - 1)
    assert calls[1] == ([[1, 2, 7, 8, 9], [3, 4]], 1)
    assert ids[G - 1] == [7, 8, 9, 100, 200] and ids[2 * G - 1] == [101, 201]
    assert all(math.isnan(x) for x in lps[G - 1][:3]) and lps[G - 1][3:] == [-0.5, -0.25]
    tl = trainers['luffy']
    tl._plan = [('on', None)] * (G - 1) + [('expert', [7, 8, 9, 2])]
    try: ids, lps = tl._generate_single_turn([[1, 2]] * G, None, {}, G)
    finally: tl._plan = None
    assert ids[-1] == [7, 8, 9, 2] and all(math.isnan(x) for x in lps[-1]) and len(calls) == 3 and calls[2][1] == G - 1

def test_rows_need_the_expert_trajectory(trainers, rows):
    with pytest.raises(KeyError, match="'completion'"): trainers['luffy']._off_slot({'prompt': 'x', 'answer': '1'})
    with pytest.raises(ValueError, match='row 1'): check_mix_rows([rows[0], {'prompt': 'a', 'answer': '1'}])

def test_step_flops_follow_the_paper(trainers):
    "LUFFY/SRFT 4(B G S_on + B N S_off)F; UPT (G S_on + 3(N_on S_on + N_off S_off))F; Prefix-RFT as GRPO"
    tl, tu, tp = trainers['luffy'], trainers['upt'], trainers['prefix_rft']
    dims = ModelDims.from_config(tl.model.config)
    S = torch.tensor([30., 40, 50, 20] * 2); kind = torch.tensor([0, 0, 0, 1] * 2)
    assert tl.round_flops(S, kind, {}) == pytest.approx(luffy_step_flops(dims, 2, 40.0, 20.0, 3, 1))
    assert tp.round_flops(S, torch.tensor([0, 0, 0, 2] * 2), {}) == pytest.approx(grpo_step_flops(dims, 2, 4, 35.0))
    Su = torch.tensor([30., 40, 50, 60, 25] * 2); ku = torch.tensor([0, 0, 0, 0, 1] * 2)
    out = dict(rl_row=torch.tensor([1, 1, 1, 1, 0] + [0] * 5).bool(), sft_row=torch.tensor([0] * 9 + [1]).bool())
    assert tu.round_flops(Su, ku, out) == pytest.approx(upt_step_flops(dims, 8, 45.0, 4, 1, 25.0))

def test_syn_config_shares_the_rl_settings(tmp_path):
    from plasticity_nb.rl import grpo_config
    g = grpo_config(tmp_path, lr=1e-4, batch=4, group_size=8, steps=5, max_new_tokens=64)
    for method in METHODS:
        c = syn_config(method, tmp_path, lr=1e-4, batch=4, group_size=8, steps=5, max_new_tokens=64)
        for k in ('learning_rate', 'lr_scheduler_type', 'weight_decay', 'max_grad_norm', 'temperature', 'top_p',
                  'max_completion_length', 'max_steps', 'beta', 'epsilon', 'epsilon_high', 'gradient_accumulation_steps'):
            assert getattr(c, k) == getattr(g, k), (method, k)
        assert c.scale_rewards == 'none' and c.entropy_coef == 0.001 and c.loss_type == 'dr_grpo'
        assert getattr(c, 'on_policy_clip', False) is False  # LUFFY's and UPT's scripts: loss_remove_clip=True
        assert c.num_generations == (9 if method == 'upt' else 8)
    assert syn_config('upt', tmp_path).learning_rate == 5e-6 and syn_config('luffy', tmp_path).learning_rate == 1e-6

# ---------------------------------------------------------------- smoke: every method through run_syn

@pytest.fixture(scope='module')
def base_dir(tok, tmp_path_factory):
    d = tmp_path_factory.mktemp('base')/'base'
    model = build_model('qwen2', tok, n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64, max_len=96, seed=0)
    model.save_pretrained(d); tok.save_pretrained(d)
    return d

@pytest.mark.parametrize('method', list(METHODS))
def test_run_syn_smoke(method, base_dir, tmp_path):
    "Two steps of each method into a run folder: DONE, train rows with the method's FLOPs, eval rows, reuse when done"
    rows = [make_problem(i, 2, 30) for i in range(16)]
    calls = []
    def evaluate_fn(model, tokenizer): calls.append(1); return {'overall': 0.0}
    s = run_syn(method, base_dir, rows, tmp_path/'run', lr=1e-3, batch=2, group_size=4, steps=2, eval_every=1,
                max_new_tokens=32, rollout_engine='hf', evaluate_fn=evaluate_fn)
    assert s['status'] == 'done' and s['steps'] == 2 and s['exaflops'] > 0
    assert (tmp_path/'run'/'DONE').exists() and len(calls) == 3  # before training and after each step
    lines = [json.loads(l) for l in (tmp_path/'run'/'metrics.jsonl').read_text().splitlines()]
    train = [r for r in lines if r.get('event') == 'train' and 'loss' in r]
    assert len(train) == 2 and all(math.isfinite(r['loss']) for r in train)
    assert sum(r['rl/flops'] for r in train) / EXA == pytest.approx(train[-1]['exaflops'])
    assert [r['step'] for r in lines if r.get('event') == 'eval'] == [0, 1, 2]
    assert all('ceiling' in r for r in lines if r.get('event') == 'eval')  # the live A_post forecast, as in run_rl (build_rl_trainer)
    if method in ('luffy', 'srft'):
        dims = ModelDims.from_config(json.loads((base_dir/'config.json').read_text()))
        r = train[0]
        assert r['rl/flops'] == pytest.approx(luffy_step_flops(dims, 2, r['syn/S_on'], r['syn/S_off'], 3, 1), rel=1e-6)
        assert r['syn/reward_off'] == 1.0  # the expert trajectories are correct
    assert run_syn(method, base_dir, rows, tmp_path/'run', steps=2) == json.loads((tmp_path/'run'/'DONE').read_text())

def test_collapse_guard_follows_its_patience(base_dir, tmp_path):
    "A synchronized run whose reward collapses stops as unstable after `collapse_patience` steps, and trains all its steps at 0 (`syn_collapse_patience`)"
    rows = [make_problem(i, 2, 30) for i in range(16)]
    def collapsing(completions, trainer_state, **kw): return [1.0 if trainer_state.global_step < 2 else 0.0] * len(completions)
    kw = dict(lr=1e-3, batch=2, group_size=4, steps=6, eval_every=10, max_new_tokens=4, rollout_engine='hf', reward_funcs=[collapsing])
    s = run_syn('luffy', base_dir, rows, tmp_path/'guarded', collapse_patience=2, **kw)
    assert s['status'] == 'unstable' and 'reward collapse' in s['reason'] and s['steps'] < 6
    s = run_syn('luffy', base_dir, rows, tmp_path/'unguarded', collapse_patience=0, **kw)
    assert s['status'] == 'done' and s['steps'] == 6

def test_overlong_shaping_reaches_the_method_trainer(base_dir, tmp_path):
    "run_syn with overlong_cache > 0 scores every group with DAPO's soft overlong penalty besides the math reward"
    rows = [make_problem(i, 2, 30) for i in range(16)]
    run_syn('luffy', base_dir, rows, tmp_path/'run', lr=1e-3, batch=2, group_size=4, steps=1, max_new_tokens=5,
            overlong_cache=3, rollout_engine='hf')
    (row,) = [r for r in map(json.loads, (tmp_path/'run'/'metrics.jsonl').read_text().splitlines()) if 'loss' in r]
    # an untrained model rarely stops within 5 tokens; the expert rows are longer than 5 too: penalties < 0
    assert 'rewards/overlong/mean' in row and -1.0 <= row['rewards/overlong/mean'] < 0
    assert 'rewards/math_reward/mean' in row

def test_methods_sample_with_the_compact_engine(base_dir, tmp_path, monkeypatch):
    "rollout_engine='compact': the method's trainer samples its on-policy and prefix rows through engines.generate"
    from plasticity_nb import engines
    seen, real = [], engines._IMPL['compact']
    monkeypatch.setitem(engines._IMPL, 'compact', lambda *a, **k: (seen.append(len(a[1])), real(*a, **k))[1])
    rows = [make_problem(i, 2, 30) for i in range(16)]
    s = run_syn('prefix_rft', base_dir, rows, tmp_path/'run', lr=1e-3, batch=2, group_size=4, steps=1, max_new_tokens=8,
                rollout_engine='compact')
    assert s['status'] == 'done' and sorted(seen) == [2, 6]  # 2 prompts x 3 rollouts, then the 2 hybrid rows

def test_resume_is_exact(base_dir, tmp_path):
    "A Prefix-RFT run killed after step 1 and resumed logs the same losses, prefix lengths and FLOPs as one run through"
    import shutil
    rows = [make_problem(i, 2, 30) for i in range(16)]
    kw = dict(lr=1e-3, batch=2, group_size=4, steps=3, max_new_tokens=32, rollout_engine='hf', save_every=1)
    run_syn('prefix_rft', base_dir, rows, tmp_path/'a', **kw)
    run_syn('prefix_rft', base_dir, rows, tmp_path/'b', **kw)
    (tmp_path/'b'/'DONE').unlink()
    for d in (tmp_path/'b'/'checkpoints').glob('checkpoint-*'):
        if d.name != 'checkpoint-1': shutil.rmtree(d)
    s = run_syn('prefix_rft', base_dir, rows, tmp_path/'b', **kw)
    rd = lambda p: [r for r in map(json.loads, (p/'metrics.jsonl').read_text().splitlines()) if 'loss' in r]
    a, b = rd(tmp_path/'a'), rd(tmp_path/'b')
    assert [r['step'] for r in b] == [1, 2, 3]
    for x, y in zip(a, b):
        for k in ('loss', 'syn/S_off', 'syn/S_on', 'exaflops'): assert x[k] == y[k], (x['step'], k)
    assert s['exaflops'] == json.loads((tmp_path/'a'/'DONE').read_text())['exaflops']

class _RatioSpy(syn.LUFFYTrainer):
    "LUFFY recording, per optimizer update, the largest |ratio - 1| over its on-policy tokens"
    def _loss(self, logp, ent, mask, off, old, inputs):
        on = mask & ~off
        self.seen.append(float(((logp.detach() - old).exp() - 1).abs()[on].max()))
        return super()._loss(logp, ent, mask, off, old, inputs)

def test_two_updates_per_generation_for_the_methods(base_dir, tmp_path):
    "updates=2 (the scripts' two mini-batches of one generation): TRL keeps the old log-probs, the second update is off-policy"
    from datasets import Dataset
    from plasticity_nb.models import load_local
    args = syn_config('luffy', tmp_path/'ck', lr=0.05, batch=2, group_size=4, steps=4, max_new_tokens=8, temperature=1.0,
                      seed=1, updates=2, use_cpu=True, collapse_patience=0)
    assert (args.steps_per_generation, args.gradient_accumulation_steps, args.train_prompts) == (2, 1, 4)
    model, tk = load_local(base_dir)
    tr = _RatioSpy(model=model, reward_funcs=[math_reward], args=args, processing_class=tk,
                   train_dataset=Dataset.from_list([make_problem(i, 2, 30) for i in range(16)]))
    tr.seen = []
    tr.train()
    assert len(tr.seen) == 4 and tr.seen[0] < 1e-6 and tr.seen[2] < 1e-6  # the first update of each generation: ratio 1
    assert tr.seen[1] > 1e-3 and tr.seen[3] > 1e-3  # the second: the policy has moved

def test_syn_settings_follow_the_profile():
    from plasticity_nb.config import load_profile
    from plasticity_nb.config import spec
    p = load_profile('tiny')
    r = vars(spec(p, 'rl'))
    for m in METHODS:
        s = syn_settings(p, m, steps=7)
        assert s['steps'] == 7 and s['batch'] == r['batch'] and s['group_size'] == r['group_size']
        assert s['lr'] == pytest.approx(p['syn_lr'] * (5 if m == 'upt' else 1)) and METHODS[m].lr_scale == (5 if m == 'upt' else 1)
        assert p['syn_lr'] == 2e-5 != r['lr']  # tiny: the methods' own rate, below DAPO's (the run guard stopped UPT and SRFT at DAPO's)
        assert 'gen_batch' not in s and 'eps_high' not in s
        assert s['micro_tokens'] == p['syn_micro_tokens'] == 512 and s['updates'] == r['updates']
        import inspect
        fields = set(METHODS[m].config.__dataclass_fields__)
        assert set(s) <= set(inspect.signature(run_syn).parameters) | fields  # a run_syn argument, or its config's (through **config_kw)
        assert s['collapse_patience'] == p['syn_collapse_patience'] == 0  # tiny: every synchronized run trains all its steps
    with pytest.raises(ValueError, match='method'): syn_settings(p, 'dapo')
    for real in ('qwen2.5-7b', 'llama3.2-3b', 'qwen2.5-0.5b'):  # the authors' batching: verl's 32,768 tokens per GPU, 2 mini-batches
        s = syn_settings(load_profile(real), 'luffy')
        assert (s['micro_tokens'], s['updates']) == (32768, 2), real
