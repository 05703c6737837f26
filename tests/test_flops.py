"Compute accounting (PAPER.md section 5) against hand-computed values and the paper's published numbers"
import pytest
from plasticity_nb.flops import (EXA, QWEN25_7B, SFT_SCENES, ModelDims, dense_flops_per_token, flops_per_token,
    sft_step_flops, grpo_step_flops, dapo_step_flops, luffy_step_flops, upt_step_flops, sft_compute_curve)

# a made-up model: L=2, H=64, n_h=4 (d=16), n_kv=2, H_ff=128, V=100
SMALL = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=100)
P_MLP = 3 * 64 * 128                         # 24576
P_ATTN = 64 * (4*16 + 2*2*16 + 4*16)         # q + k + v + o = 64 * 192 = 12288
P_VOCAB = 2 * 100 * 64                       # 12800
F_DENSE = 2 * (2 * (P_MLP + P_ATTN) + P_VOCAB)


def test_small_config_by_hand():
    dims = ModelDims.from_config(SMALL)
    assert (P_MLP, P_ATTN, P_VOCAB, F_DENSE) == (24576, 12288, 12800, 173056)
    assert dense_flops_per_token(dims) == 173056
    # attention core at S=10: 4 * S * d * n_h * L = 4*10*16*4*2
    assert flops_per_token(dims, 10) == 173056 + 5120
    f10 = 178176
    assert sft_step_flops(dims, 3, 10) == 3 * 3 * 10 * f10
    assert grpo_step_flops(dims, 2, 8, 10) == 4 * 2 * 8 * 10 * f10
    assert dapo_step_flops(dims, 4, 2, 8, 10, k_rounds=3) == (3*4 + 3*2) * 8 * 10 * f10
    f20 = 173056 + 4*20*16*4*2
    assert luffy_step_flops(dims, 2, 10, 20) == 4 * (2*7*10*f10 + 2*1*20*f20)
    assert upt_step_flops(dims, 8, 10, n_on=4, n_off=1, seq_off=20) == 8*10*f10 + 3*(4*10*f10 + 1*20*f20)


def test_head_dim_and_kv_defaults():
    d = ModelDims.from_config({**SMALL, 'num_key_value_heads': None, 'head_dim': 8})
    assert (d.n_kv_heads, d.d) == (4, 8)
    # q,k,v,o with d=8 and 4 kv heads: 64*(32+64+32) = 8192
    assert dense_flops_per_token(d) == 2 * (2 * (P_MLP + 64*(32 + 2*32 + 32)) + P_VOCAB)
    with pytest.raises(ValueError, match='lacks vocab_size'):
        ModelDims.from_config({k: v for k, v in SMALL.items() if k != 'vocab_size'})


def test_transformers_config():
    from transformers import Qwen2Config
    cfg = Qwen2Config(num_hidden_layers=28, hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
                      num_key_value_heads=4, vocab_size=152064)
    assert ModelDims.from_config(cfg) == QWEN25_7B


def test_qwen25_7b_published():
    # PAPER.md: about 16.7 GFLOPs forward per token; 15.2 G of it dense
    assert abs(dense_flops_per_token(QWEN25_7B) / 1e9 - 15.2) < 0.05
    assert abs(flops_per_token(QWEN25_7B, 3771) / 1e9 - 16.7) < 0.05


def test_table4_sft889k_compute():
    S, B = SFT_SCENES['general']
    assert (S, B) == (3771, 512)
    # the SFT run checkpointed every 360 steps and at its last step (the SFT cache keys show it)
    curve = sft_compute_curve(QWEN25_7B, [*range(0, 14041, 360), 14080], B, S)
    assert abs(curve[360] - 34.9) < 0.1
    assert abs(curve[14080] - 1365.8) < 0.1
    # the branch list the authors' fit scripts use rounds differently (349.18 vs the cache's 349.2)
    coarse = sft_compute_curve(QWEN25_7B, [0, 360, 720, 1080, 1440, 1800, 3600, 5400, 7200, 9000, 10800, 12600, 14080], B, S)
    assert coarse[3600] == 349.18 and abs(coarse[14080] - 1365.76) < 0.2


def test_interval_rounding():
    dims = ModelDims.from_config(SMALL)
    per = sft_step_flops(dims, 1e12, 10) / EXA  # 5.345 exaFLOPs per step: rounding visible
    assert abs(per - 5.34528) < 1e-9
    c = sft_compute_curve(dims, [0, 1, 2], 1e12, 10)
    assert c == {0: 0.0, 1: 5.35, 2: 10.7}  # 5.35 + 5.35, not round(2 * 5.34528) = 10.69
    assert sft_compute_curve(dims, [2], 1e12, 10) == {2: 10.69}
    with pytest.raises(ValueError, match='strictly increasing'):
        sft_compute_curve(dims, [0, 5, 5], 1, 10)
