"Engine selection, the fast engine against HF generate (CPU), the launch configs and the benchmark's arithmetic (TRL wiring: test_trl_hooks.py)"
import dataclasses, importlib.util, json, subprocess, sys
from pathlib import Path

import pytest
import torch
import yaml

from plasticity_nb import engines as E, engine_choice
from plasticity_nb.engines import EngineUnavailable, generate, pick_engine

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------ selection
def test_auto_follows_device_and_vllm(monkeypatch):
    monkeypatch.setattr(engine_choice, '_has_module', lambda name: False)
    assert pick_engine('auto', 'cpu') == 'hf'
    assert pick_engine('auto', 'cuda') == 'hf'  # `fast` and `cb` only when asked for by name
    assert pick_engine(None, 'cuda:1') == 'hf'
    monkeypatch.setattr(engine_choice, '_has_module', lambda name: name == 'vllm')
    assert pick_engine('auto', 'cuda') == 'vllm'
    assert pick_engine('auto', torch.device('cpu')) == 'hf'  # vllm needs a GPU even when installed


def test_named_engines_and_errors(monkeypatch):
    monkeypatch.setattr(engine_choice, '_has_module', lambda name: False)
    assert pick_engine('FAST', 'cpu') == 'fast' and pick_engine('hf', 'cuda') == 'hf' and pick_engine('cb', 'cpu') == 'cb'
    with pytest.raises(EngineUnavailable, match=r"'vllm' cannot run on cuda: vllm is not installed.*available here: hf, compact, fast, cb"):
        pick_engine('vllm', 'cuda')
    monkeypatch.setattr(engine_choice, '_has_module', lambda name: True)
    with pytest.raises(EngineUnavailable, match='vllm needs a CUDA device'):
        pick_engine('vllm', 'cpu')
    assert pick_engine('vllm', 'cuda') == 'vllm'
    with pytest.raises(EngineUnavailable, match='accepted: auto, hf, compact, fast, cb, vllm'):
        pick_engine('tgi', 'cpu')


# ------------------------------------------------------------------------------------------------ tiny models
def _qwen(vocab=61, layers=2, seed=0):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                                        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256)).eval()


def _llama(vocab=61):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(1)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=1, intermediate_size=64, max_position_embeddings=256)).eval()


PROMPTS = [[3, 14, 15, 9, 2, 6, 5, 35], [5, 3], [5, 8, 9, 7], [40, 41, 42, 43, 44, 1]]


@pytest.mark.parametrize('engine', ['fast', 'compact'])
@pytest.mark.parametrize('make', [_qwen, _llama])
def test_fast_greedy_equals_hf_generate(make, engine):
    m = make()
    kw = dict(temperature=0, max_new_tokens=20, pad_token_id=60)
    ref = generate(m, None, PROMPTS, engine='hf', eos_token_id=[], **kw)
    assert all(len(c) == 20 for c in ref.completion_ids)
    # an EOS that the second prompt's greedy completion emits at step 6 (and maybe others earlier)
    eos = ref.completion_ids[1][5]
    ref = generate(m, None, PROMPTS, engine='hf', eos_token_id=eos, **kw)
    fast = generate(m, None, PROMPTS, engine=engine, eos_token_id=eos, **kw)
    assert fast.completion_ids == ref.completion_ids
    assert len(fast.completion_ids[1]) <= 6 and fast.completion_ids[1][-1] == eos
    assert fast.num_tokens == [len(c) for c in ref.completion_ids]
    assert fast.info.get('cuda_graph', False) is False and fast.engine == engine
    assert len(set(fast.num_tokens)) > 1  # rows ended at different steps (compact: they left the batch)


def test_fast_chunks_and_repeats_match_one_batch():
    m = _qwen()
    kw = dict(temperature=0, max_new_tokens=10, eos_token_id=[], pad_token_id=60, engine='fast')
    one = generate(m, None, PROMPTS, n=3, **kw)
    chunked = generate(m, None, PROMPTS, n=3, max_batch=5, **kw)  # 12 rows -> 3 chunks of 4 (padded batches)
    assert chunked.info['batch'] == 4
    assert chunked.completion_ids == one.completion_ids
    assert one.prompt_index == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    # greedy: the n copies of a prompt are identical
    assert one.completion_ids[0] == one.completion_ids[1] == one.completion_ids[2]


def _first_two_token_law(m, prompt, T):
    "Exact P(first token) and P(second token) of temperature-T sampling, by enumerating the first token"
    with torch.no_grad():
        p1 = torch.softmax(m(torch.tensor([prompt])).logits[0, -1].double() / T, -1)
        V = p1.numel()
        x = torch.tensor([prompt + [t] for t in range(V)])
        p2_given = torch.softmax(m(x).logits[:, -1].double() / T, -1)
    return p1, p1 @ p2_given


@pytest.mark.parametrize('engine', ['fast', 'compact'])
def test_fast_sampling_follows_softmax_at_prefill_and_decode(engine):
    m, T, N = _qwen(vocab=23), 0.8, 6000
    prompt = [3, 14, 15]
    r = generate(m, None, [prompt], n=N, temperature=T, max_new_tokens=2, eos_token_id=[], pad_token_id=22,
                 engine=engine, max_batch=N, seed=3)
    p1, p2 = _first_two_token_law(m, prompt, T)
    got = torch.tensor(r.completion_ids)
    f1 = torch.bincount(got[:, 0], minlength=23).double() / N
    f2 = torch.bincount(got[:, 1], minlength=23).double() / N
    # 6000 draws: binomial sd <= 0.0065, so 0.03 is more than 4.5 sd; a wrong temperature or a stale cache moves more
    assert (f1 - p1).abs().max() < 0.03 and (f2 - p2).abs().max() < 0.03
    p1_wrong, _ = _first_two_token_law(m, prompt, 2.0)
    assert (f1 - p1_wrong).abs().max() > (f1 - p1).abs().max()


@pytest.mark.parametrize('engine', ['fast', 'compact'])
def test_seeds(engine):
    m = _qwen()
    kw = dict(n=4, temperature=1.0, max_new_tokens=12, eos_token_id=[], pad_token_id=60, engine=engine)
    a, b, c = (generate(m, None, PROMPTS, seed=s, **kw).completion_ids for s in (5, 5, 6))
    assert a == b and a != c
    state = torch.get_rng_state()
    generate(m, None, PROMPTS, seed=5, **kw)
    assert torch.equal(state, torch.get_rng_state())  # a seeded call leaves the global RNG alone


def test_text_prompts_decode_and_counts():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    words = ['<unk>', '<pad>', '<eos>'] + [f"w{i}" for i in range(58)]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token='<unk>'))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token='<unk>', pad_token='<pad>', eos_token='<eos>')
    m = _qwen()
    m.generation_config.eos_token_id = None
    r = generate(m, tok, ['w1 w2 w3', 'w9'], n=2, temperature=0, max_new_tokens=6, engine='fast')
    h = generate(m, tok, ['w1 w2 w3', 'w9'], n=2, temperature=0, max_new_tokens=6, engine='hf')
    assert r.completion_ids == h.completion_ids and r.completions == h.completions
    assert r.completions[0] == tok.decode(r.completion_ids[0], skip_special_tokens=True)
    assert r.total_tokens == sum(len(c) for c in r.completion_ids) and r.prompt_index == [0, 0, 1, 1]
    with pytest.raises(ValueError, match='no tokenizer'):
        generate(m, None, ['w1'], engine='fast')


def test_eos_and_padding_helpers():
    assert E.cut_at_eos([4, 2, 2, 9], [2, 7]) == [4, 2] and E.cut_at_eos([4, 9], [2]) == [4, 9]
    class Tok: eos_token_id, pad_token_id = 5, None
    class GC: eos_token_id = [7, 5]
    class M: generation_config = GC()
    assert E._eos_ids(M(), Tok(), None) == [7, 5]
    assert E._eos_ids(None, Tok(), None) == [5] and E._eos_ids(M(), Tok(), 9) == [9]
    assert E._pad_id(Tok(), [5]) == 5


def test_fast_batch_size_chunks_evenly():
    m = _qwen()
    assert E.fast_batch_size(m, 100, 130, max_batch=64) == 44  # 3 chunks of 44, 44, 42 rather than 64, 64, 2
    assert E.fast_batch_size(m, 100, 10, max_batch=64) == 10


def test_fast_refuses_short_sliding_window():
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, use_sliding_window=True, sliding_window=16, max_window_layers=0)
    m = Qwen2ForCausalLM(cfg).eval()
    if set(cfg.layer_types) == {'full_attention'}: pytest.skip('this transformers builds no sliding layers')
    with pytest.raises(EngineUnavailable, match="use engine 'hf' or 'cb'"):
        generate(m, None, PROMPTS, temperature=0, max_new_tokens=20, eos_token_id=[], pad_token_id=60, engine='fast')


# ------------------------------------------------------------------------------------------------ launch configs
DS_FILE_FORBIDDEN = {'gradient_accumulation_steps', 'gradient_clipping', 'zero_stage', 'offload_optimizer_device',
                     'offload_param_device', 'zero3_save_16bit_model', 'mixed_precision'}


@pytest.mark.parametrize('name,stage', [('zero2', 2), ('zero3', 3)])
def test_deepspeed_configs(name, stage):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DeepSpeedPlugin
    raw = yaml.safe_load((ROOT/f'configs/accelerate/{name}.yaml').read_text())
    cfg = ClusterConfig.from_yaml_file(str(ROOT/f'configs/accelerate/{name}.yaml'))
    assert str(cfg.distributed_type) == 'DistributedType.DEEPSPEED' and cfg.num_processes >= 1
    ds = raw['deepspeed_config']
    # accelerate refuses these beside a DeepSpeed config file (accelerate.utils.DeepSpeedPlugin._deepspeed_config_checks)
    assert not (set(ds) | ({'mixed_precision'} & set(raw))) & DS_FILE_FORBIDDEN
    path = ROOT/ds['deepspeed_config_file']
    js = json.loads(path.read_text())
    assert js['zero_optimization']['stage'] == stage and js['bf16']['enabled'] == 'auto'
    for k in ('train_micro_batch_size_per_gpu', 'gradient_accumulation_steps', 'gradient_clipping'): assert js[k] == 'auto'
    assert ds['zero3_init_flag'] is (stage == 3)
    plugin = DeepSpeedPlugin(hf_ds_config=str(path))
    assert plugin.zero_stage == stage
    if stage == 3: assert js['zero_optimization']['stage3_gather_16bit_weights_on_model_save'] is True


def test_fsdp2_config():
    from accelerate.commands.config.config_args import ClusterConfig
    cfg = ClusterConfig.from_yaml_file(str(ROOT/'configs/accelerate/fsdp2.yaml'))
    assert str(cfg.distributed_type) == 'DistributedType.FSDP' and cfg.mixed_precision == 'bf16'
    f = cfg.fsdp_config
    assert f['fsdp_version'] == 2 and f['fsdp_auto_wrap_policy'] == 'TRANSFORMER_BASED_WRAP'
    assert f['fsdp_state_dict_type'] in ('FULL_STATE_DICT', 'SHARDED_STATE_DICT') and f['fsdp_reshard_after_forward'] is True


# ------------------------------------------------------------------------------------------------ benchmark
def _bench():
    spec = importlib.util.spec_from_file_location('bench_gpu', ROOT/'bench'/'gpu.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_bench_flops_reproduce_issue_mfu():
    b = _bench()
    # Qwen2.5-0.5B: 494M weights in matmuls (incl. the tied LM head), the published parameter count
    assert abs(b.n_matmul_params(b.QWEN05) - 494.0e6) < 0.5e6
    # the issue: TRL SFTTrainer 66.4K tokens/s at sequence 1024 is "about 21% MFU" of 989 TFLOP/s
    mfu = 66.4e3 * b.train_flops_per_token(b.QWEN05, 1024) / b.PEAK_BF16
    assert 0.20 < mfu < 0.225, mfu


def test_bench_results_file_has_required_keys():
    r = json.loads((ROOT/'bench'/'results.json').read_text())
    for k in ('device', 'date', 'sft_tokens_per_s', 'sft_baseline_tokens_per_s', 'sft_speedup_vs_trl',
              'rollout_tokens_per_s', 'rollout_baseline_tokens_per_s', 'rollout_speedup_vs_hf_generate'):
        assert k in r, k
    if r['sft_tokens_per_s']:
        assert abs(r['sft_speedup_vs_trl'] - r['sft_tokens_per_s']/r['sft_baseline_tokens_per_s']) < 0.01
    if r['rollout_tokens_per_s']:
        assert abs(r['rollout_speedup_vs_hf_generate'] - r['rollout_tokens_per_s']/r['rollout_baseline_tokens_per_s']) < 0.01


@pytest.mark.slow
def test_bench_cpu_smoke(tmp_path):
    subprocess.run([sys.executable, str(ROOT/'bench'/'gpu.py'), '--cpu-smoke', '--out', str(tmp_path),
                    '--sections', 'rollout,sft'], check=True, timeout=600)
    r = json.loads((tmp_path/'results.json').read_text())
    assert r['check_fast_vs_hf_greedy_fp32']['greedy_rows_identical'] == r['check_fast_vs_hf_greedy_fp32']['rows']
    assert r['sft_tokens_per_s'] and r['rollout_tokens_per_s']
