"""plasticity_nb.losses against the authors' public code, and GRPO / DAPO through rl.DAPOTrainer's training step.

Each reference below is written from the official formula it cites (repository @ commit, file, function), token by
token on small hand-built tensors, with no project code: ElliottYan/LUFFY @ 01f4ae0, TsinghuaC3I/Unify-Post-Training
@ ae332f5 (UPT/HPT and SRFT), ZeroYuHuang/prefix_rft @ 5f5d2a1. The verl code sums a micro-batch's token losses over
`eos_mask.shape[-1]` (= max_response_length) and adds the micro-batches up; `losses` divides the same sums by
B * L_max, so every comparison is `B * ours == official`; UPT's and SRFT's SFT term (a token mean over a
micro-batch's expert rows) is compared micro-batch by micro-batch (`per_micro`, rows=1), with micro-batches that
hold several expert rows."""
import math
from collections import defaultdict
import pytest, torch
from datasets import Dataset
from plasticity_nb.losses import (token_sum, policy_term, group_advantages, luffy_loss, upt_loss, srft_weights, srft_loss,
                                  prefix_advantage_mask, prefix_rft_loss)
from plasticity_nb.models import build_tokenizer, build_model
from plasticity_nb.rewards import math_reward
from plasticity_nb.rl import DAPOTrainer, grpo_config, dapo_config
from test_syn import make_batch, ref_logps, grads_of, assert_same_grads, tokens, train_step

torch.set_num_threads(1)
D = torch.float64


def masked_mean(x, m):
    "verl.utils.torch_functional.masked_mean: (x * m).sum() / m.sum() (NaN on an empty mask)"
    return (x * m).sum() / m.sum()


def toy(B=6, T=8, seed=0):
    "Per-token log-probs (with gradient), old log-probs (ratios inside and outside [0.8, 1.2]), lengths 3..T"
    g = torch.Generator().manual_seed(seed)
    logp = (-2 * torch.rand(B, T, generator=g, dtype=D)).requires_grad_()
    old = logp.detach() + 0.5 * (torch.rand(B, T, generator=g, dtype=D) - 0.5)
    lens = torch.tensor([T, 3, 5, T - 1, 4, 6][:B])
    mask = torch.arange(T)[None, :] < lens[:, None]
    return logp, old, mask


def per_micro(loss_fn, micro_batches, *tensors, **kw):
    "The project's loss summed over the given micro-batches (rows=1, L_max = T: the scripts' per-micro-batch loss), as syn's trainers add them up"
    T = tensors[0].size(1)
    return sum(loss_fn(*(x[mb] for x in tensors), L_max=T, rows=1, **kw)[0] for mb in micro_batches)


def grad(f, x):
    x.grad = None
    f().backward()
    return x.grad.clone()


# ---------------------------------------------------------------- the normaliser

def test_token_sum_is_verls_loss_remove_token_mean():
    """hpt/verl/verl/trainer/ppo/core_algos.py compute_policy_loss with loss_remove_token_mean=True
    ((pg_losses * eos_mask).sum() / eos_mask.shape[-1]), summed over a GPU's micro-batches (mix_actor.py update_policy,
    gradient_accumulation 1 in exp_scripts/train.sh) and averaged over the GPUs: token_sum times the rows per GPU"""
    x, _, mask = toy(B=6)
    x = x.detach()
    gpus = [[[0, 1], [2]], [[3], [4, 5]]]  # 2 GPUs, uneven micro-batches
    official = sum(sum(float((x[mb] * mask[mb]).sum()) / 8 for mb in gpu) for gpu in gpus) / len(gpus)
    assert official == pytest.approx(float(token_sum(x, mask)) * 3)
    assert float(token_sum(x, mask, L_max=8192, rows=64)) == pytest.approx(float((x * mask).sum()) / (64 * 8192))


def test_policy_term_clip_and_dual_clip():
    """recipe/prefix_rft/core_algos.py compute_policy_loss: max(-A r, -A clip(r, 1-0.2, 1+0.2)); where A < 0
    min(that, -A clip_ratio_c), clip_ratio_c = 3; hpt core_algos compute_policy_loss with loss_remove_clip: -A r"""
    r = torch.tensor([[0.5, 1.1, 1.5, 5.0, 0.5, 5.0]], dtype=D)
    A = torch.tensor([[1.0, 1.0, 1.0, -1.0, -1.0, 2.0]], dtype=D)
    expect_clip = [max(-a * x, -a * min(max(x, 0.8), 1.2)) for a, x in zip(A[0].tolist(), r[0].tolist())]
    expect_dual = [min(v, -a * 3.0) if a < 0 else v for v, a in zip(expect_clip, A[0].tolist())]
    out = lambda **k: policy_term(r.log(), torch.zeros_like(r), A, **k)[0].tolist()
    assert out(clip=False) == pytest.approx([-a * x for a, x in zip(A[0].tolist(), r[0].tolist())])
    assert out() == pytest.approx(expect_clip)
    assert out(clip_c=3.0) == pytest.approx(expect_dual)
    assert expect_dual[3] == 3.0 and expect_clip[3] == 5.0  # the dual clip matters for A < 0, r = 5


def test_group_advantages_are_dr_grpos():
    """recipe/prefix_rft/core_algos.py compute_dr_grpo_outcome_advantage: score - mean over the prompt's uid group
    (the hybrid rollout included), no std; luffy/verl/verl/trainer/ppo/core_algos.py compute_grpo_outcome_advantage
    with use_std=False (exp_scripts/train.sh: algorithm.grpo_use_std=False)"""
    scores = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    uid = ['a'] * 5 + ['b'] * 5
    by = defaultdict(list)
    for s, u in zip(scores, uid): by[u].append(s)
    ref = [s - sum(by[u]) / len(by[u]) for s, u in zip(scores, uid)]
    assert group_advantages(torch.tensor(scores, dtype=D).view(2, 5)).flatten().tolist() == pytest.approx(ref)


# ---------------------------------------------------------------- LUFFY

def luffy_official(logp, old, A, mask, prefix, T):
    """luffy/verl/verl/mix_src/mix_core_alg.py compute_token_on_off_policy_loss with exp_scripts/train.sh's flags:
    on_policy_reshape no_reshape (ratio exp(logp - old)), loss_remove_clip=True (-A ratio), off_policy_reshape
    'p_div_p_0.1' (-A p/(p+0.1)), pg_losses = off * prefix + on * (1 - prefix), loss_remove_token_mean=True"""
    total = 0
    for i in range(logp.size(0)):
        for t in range(logp.size(1)):
            if not mask[i, t]: continue
            if prefix[i, t]:
                p = logp[i, t].exp(); total = total - A[i] * p / (p + 0.1)
            else: total = total - A[i] * (logp[i, t] - old[i, t]).exp()
    return total / T


def test_luffy_matches_compute_token_on_off_policy_loss():
    "luffy_loss = LUFFY's loss over B (value and gradient), no clip on either kind of token; with clip=True PPO's clip"
    logp, old, mask = toy()
    old = old.clone(); old[4, 0] = logp.detach()[4, 0] - math.log(1.5)  # r = 1.5 with A > 0: PPO's clip would act
    prefix = torch.zeros_like(mask); prefix[2] = mask[2]; prefix[5] = mask[5]  # two expert rows
    A = torch.tensor([0.9, -0.4, 1.2, -0.3, 0.5, 1.1], dtype=D)
    ours = lambda **k: 6 * luffy_loss(logp, old, A, mask, prefix, **k)[0]
    ref = lambda: luffy_official(logp, old, A, mask, prefix, 8)
    assert ours().item() == pytest.approx(ref().item(), rel=1e-12)
    torch.testing.assert_close(grad(ours, logp), grad(ref, logp))
    assert ours(clip=True).item() == pytest.approx(ref().item() + 0.5 * (1.5 - 1.2) / 8)  # the one clipped token


# ---------------------------------------------------------------- UPT / HPT

def upt_official(logp, old, A, mask, rl_row, sft_row, micro_batches, T, sft_coef=1.0):
    """hpt/verl/verl/mix_src/mix_actor.py update_policy, offline_loss_type='sft' (exp_scripts/train.sh: switch gate 0,
    SFT_LOSS_COEF 1, loss_remove_clip and loss_remove_token_mean True): per micro-batch sft_loss_coef *
    compute_sft_pure_loss (masked_mean of -log p over the micro-batch's expert rows; NaN when there are none, then
    skipped) + core_algos.compute_policy_loss on the on-policy rows (-A ratio summed / T); micro-batches added up"""
    total = 0
    for mb in micro_batches:
        sft = [i for i in mb if sft_row[i]]
        rl = [i for i in mb if rl_row[i]]
        pg = sum((-A[i] * (logp[i] - old[i]).exp() * mask[i]).sum() for i in rl) / T
        sft_loss = masked_mean(-logp[sft], mask[sft]) if sft else torch.tensor(float('nan'))
        total = total + (pg if torch.isnan(sft_loss) else sft_coef * sft_loss + pg)
    return total


def test_upt_matches_the_hpt_switch():
    "upt_loss per micro-batch = HPT's switch loss (value and gradient), micro-batches with 0, 1 and 2 SFT rows"
    logp, old, mask = toy()
    rl_row = torch.tensor([True, True, False, True, True, False])
    sft_row = ~rl_row
    A = torch.tensor([0.5, -0.5, 0.0, 0.25, -0.25, 0.0], dtype=D)
    for mbs in ([[0, 1, 2], [3, 4, 5]], [[0, 2, 5], [1, 3, 4]], [[0, 1, 2, 3, 4, 5]]):
        for coef in (1.0, 0.3):
            ours = lambda: per_micro(upt_loss, mbs, logp, old, A, mask, rl_row, sft_row, sft_coef=coef)
            ref = lambda: upt_official(logp, old, A, mask, rl_row, sft_row, mbs, 8, coef)
            assert ours().item() == pytest.approx(ref().item(), rel=1e-12)
            torch.testing.assert_close(grad(ours, logp), grad(ref, logp))
    # two SFT rows (5 and 6 tokens) in one micro-batch share one mean over their 11 tokens, not one mean per row
    both = float(per_micro(upt_loss, [[2, 5]], logp, old, A, mask, rl_row, sft_row))
    assert both == pytest.approx(-float(logp[2, :5].sum() + logp[5, :6].sum()) / 11, rel=1e-12)
    assert both != pytest.approx(-float(logp[2, :5].mean() + logp[5, :6].mean()), rel=1e-3)


def test_upt_sft_token_weight_falls_as_sft_rows_share_a_micro_batch():
    """The HPT per-token SFT:RL weight at the scripts' 8,192-token normaliser (core_algos.compute_policy_loss
    / eos_mask.shape[-1] against mix_core_alg.compute_sft_pure_loss's mean over the micro-batch's expert tokens):
    8192 / (k |y*|) with k SFT rows of |y*| = 3000 tokens in the micro-batch: 2.73 for one, 2.73 / 16 for 16"""
    T, n_sft = 8192, 3000
    for k in (1, 16):
        mask = torch.zeros(64, T, dtype=torch.bool); mask[:, :n_sft] = True
        sft_row = torch.arange(64) < k
        logp = torch.zeros(64, T, dtype=D, requires_grad=True)
        g = grad(lambda: upt_loss(logp, logp.detach(), torch.ones(64, dtype=D), mask, ~sft_row, sft_row, rows=1)[0], logp)
        assert float(g[0, 0] / g[-1, 0]) == pytest.approx(T / (k * n_sft))


# ---------------------------------------------------------------- SRFT

def srft_official(logp, A, ent, mask, prefix, correct, micro_batches, T):
    """hpt/verl/verl/mix_src/mix_actor.py update_policy, offline_loss_type='srft' (exp_scripts/train_srft.sh):
    H = masked_mean(entropy, response_mask, axis=-1) detached, sft_coef = 0.5 exp(-H), on_coef = 0.1 exp(H);
    sft_loss = compute_sft_pure_loss(log_prob * sft_coef) over the micro-batch's expert rows; the rest
    mix_core_alg.py compute_token_on_off_policy_srft_loss (srft_type 'paper': on tokens -on_adv log p with on_adv =
    on_coef where the row's score is 1, else -1; expert tokens -A p/(p+0.1); loss_remove_token_mean: sum / T)"""
    total = 0
    for mb in micro_batches:
        H = torch.stack([masked_mean(ent[i], mask[i]) for i in mb]).detach()
        sft_coef, on_coef = 0.5 * torch.exp(-H), 0.1 * torch.exp(H)
        exp_rows = [j for j, i in enumerate(mb) if prefix[i].any()]
        sft = (sum(-(logp[mb[j]] * sft_coef[j] * mask[mb[j]]).sum() for j in exp_rows) / sum(mask[mb[j]].sum() for j in exp_rows)
               if exp_rows else 0)  # no expert row: NaN in the official, then skipped
        pg = 0
        for j, i in enumerate(mb):
            for t in range(logp.size(1)):
                if not mask[i, t]: continue
                if prefix[i, t]: p = logp[i, t].exp(); pg = pg - A[i] * p / (p + 0.1)
                else: pg = pg - (on_coef[j] if correct[i] else -1.0) * logp[i, t]
        total = total + sft + pg / T
    return total


def test_srft_matches_the_hpt_srft_branch():
    "srft_loss per micro-batch = the SRFT reimplementation's loss (value and gradient), with 1 and 2 expert rows per micro-batch"
    logp, _, mask = toy()
    ent = torch.rand(6, 8, dtype=D, generator=torch.Generator().manual_seed(1)) * 2
    prefix = torch.zeros_like(mask); prefix[2] = mask[2]; prefix[5] = mask[5]
    correct = torch.tensor([True, False, True, False, True, True])
    A = torch.tensor([0.5, -0.5, 0.5, -0.25, 0.75, 0.75], dtype=D)
    for mbs in ([[0, 1, 2], [3, 4, 5]], [[0, 2, 5], [1, 3, 4]]):
        ours = lambda: per_micro(srft_loss, mbs, logp, A, ent, mask, prefix, correct)
        ref = lambda: srft_official(logp, A, ent, mask, prefix, correct, mbs, 8)
        assert ours().item() == pytest.approx(ref().item(), rel=1e-12)
        torch.testing.assert_close(grad(ours, logp), grad(ref, logp))
    H = [float(masked_mean(ent[i], mask[i])) for i in range(6)]
    w_sft, w_rl = srft_weights(ent, mask)
    assert w_sft.tolist() == pytest.approx([0.5 * math.exp(-h) for h in H])
    assert w_rl.tolist() == pytest.approx([0.1 * math.exp(h) for h in H])


# ---------------------------------------------------------------- Prefix-RFT

def prefix_official(logp, old, A, ent, mask, prefix, T, ratio=0.8):
    """recipe/prefix_rft/dp_actor.py reshape_func, 'entropy' reshaper: entropy[prefix_mask] (every prefix token of
    the micro-batch, row-major) sorted ascending, the first int(n * ratio) get advantage 0; then core_algos.py
    compute_policy_loss (clip 0.2 / 0.2, dual clip clip_ratio_c = 3, enable_clip) and agg_loss 'dr_grpo'
    (sum over response tokens / max_tokens)"""
    pos = [(i, t) for i in range(mask.size(0)) for t in range(mask.size(1)) if prefix[i, t]]
    order = sorted(range(len(pos)), key=lambda k: float(ent[pos[k]]))
    zeroed = {pos[k] for k in order[:int(len(pos) * ratio)]}
    total = 0
    for i in range(mask.size(0)):
        for t in range(mask.size(1)):
            if not mask[i, t]: continue
            a = 0.0 if (i, t) in zeroed else A[i]
            r = (logp[i, t] - old[i, t]).exp()
            loss = torch.maximum(-a * r, -a * r.clamp(0.8, 1.2))
            if a < 0: loss = torch.minimum(loss, -a * torch.tensor(3.0, dtype=D))
            total = total + loss
    return total / T, zeroed


def test_prefix_rft_matches_the_entropy_reshaper_and_dr_grpo():
    """prefix_rft_loss = Prefix-RFT's loss over B; the ranking spans the micro-batch, not each row"""
    logp, old, mask = toy()
    old = old.clone(); old[1, :2] = logp.detach()[1, :2] - math.log(5.0)  # r = 5 with A < 0: the dual clip acts
    ent = torch.rand(6, 8, dtype=D, generator=torch.Generator().manual_seed(2)) * 3
    ent[0, :4] = torch.tensor([5.0, 4.5, 4.0, 3.5], dtype=D)  # row 0 holds the micro-batch's highest prefix entropies
    prefix = torch.zeros_like(mask); prefix[0, :6] = True; prefix[3, :5] = True  # two hybrid rows, 11 prefix tokens
    A = torch.tensor([1.0, -0.5, 0.8, -0.2, 0.3, -0.4], dtype=D)
    ours = lambda: 6 * prefix_rft_loss(logp, old, A, ent, mask, prefix)[0]
    ref = lambda: prefix_official(logp, old, A, ent, mask, prefix, 8)[0]
    assert ours().item() == pytest.approx(ref().item(), rel=1e-12)
    torch.testing.assert_close(grad(ours, logp), grad(ref, logp))
    _, zeroed = prefix_official(logp, old, A, ent, mask, prefix, 8)
    kept = prefix_advantage_mask(ent, prefix)
    assert {(int(i), int(t)) for i, t in zip(*(~kept).nonzero(as_tuple=True))} == {(int(i), int(t)) for i, t in zeroed}
    assert len(zeroed) == int(11 * 0.8) and kept[0, :3].all() and not kept[3, :5].any()  # top 3 all in row 0


# ---------------------------------------------------------------- GRPO and DAPO through rl.DAPOTrainer

@pytest.fixture(scope='module')
def tok(): return build_tokenizer()


def rl_trainer(tok, tmp, make):
    "A DAPOTrainer on a micro model whose generation returns a fixed batch (4 rows, 2 micro-batches of 2)"
    model = build_model('qwen2', tok, n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64, max_len=96, seed=3)
    args = make(tmp, lr=1e-3, batch=1, group_size=4, steps=1, max_new_tokens=40, micro_batch=2, temperature=1.0, use_cpu=True)
    rows = [{'prompt': 'Compute 1+1.', 'answer': '2'}] * 4
    tr = DAPOTrainer(model=model, reward_funcs=[math_reward], args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    tr.model.train()
    tr.current_gradient_accumulation_steps = args.gradient_accumulation_steps  # as Trainer's training loop sets it
    return tr


@pytest.mark.parametrize('algo', ['grpo', 'dapo'])
def test_grpo_and_dapo_average_as_the_paper_says(algo, tok, tmp_path):
    """PAPER.md section 6: GRPO is the per-sequence token mean, then the batch mean; DAPO the token sum over all
    tokens / the batch's token count (TRL's loss_type 'grpo' / 'dapo' in rl.grpo_config / rl.dapo_config). One
    optimizer step of 2 micro-batches through DAPOTrainer's _prepare_inputs and training_step: the accumulated loss
    and every parameter gradient equal the formula's, which a normaliser off by any factor fails"""
    make = grpo_config if algo == 'grpo' else (lambda *a, **k: dapo_config(a[0], 'dc', gen_batch=1, **k))
    tr = rl_trainer(tok, tmp_path, make)
    assert tr.args.gradient_accumulation_steps == 2 and tr.args.loss_type == algo
    b = make_batch(tok)
    m = tr.model
    with torch.no_grad(): lp0, _ = ref_logps(m, b)
    old = lp0 + torch.linspace(-0.4, 0.4, lp0.numel()).view_as(lp0)  # ratios inside and outside [0.8, 1.28]
    A = torch.tensor([1.0, -0.5, 0.7, -1.2])
    mask = b['completion_mask'].bool()
    batch = dict(b, advantages=A, old_per_token_logps=old, num_items_in_batch=mask.sum())
    loss, g = train_step(tr, batch)
    lp, _ = ref_logps(m, b)
    per_tok = {}
    for i, t in tokens(b):
        r = (lp[i, t] - old[i, t]).exp()
        per_tok[i, t] = -torch.minimum(r * A[i], r.clamp(1 - tr.epsilon_low, 1 + tr.epsilon_high) * A[i])
    if algo == 'grpo':
        ref = sum(sum(v for (i, _), v in per_tok.items() if i == row) / mask[row].sum() for row in range(4)) / 4
    else: ref = sum(per_tok.values()) / mask.sum()
    assert loss == pytest.approx(ref.item(), rel=1e-4)
    assert_same_grads(g, grads_of(m, ref))
    lens = mask.sum(1).float()
    assert lens.max() > 2 * lens.min()  # lengths differ enough for the two averages to disagree
