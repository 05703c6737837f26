"TRL's private hooks: the pinned range agrees with pyproject and the installed TRL, untested versions fail loudly, and the fast engine behind a trainer's own hook."
import dataclasses, inspect, subprocess, sys, tomllib
from pathlib import Path
import pytest, torch
from packaging.requirements import Requirement
from plasticity_nb import trl_hooks as H

ROOT = Path(__file__).resolve().parents[1]


def _pin():
    deps = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['dependencies']
    (req,) = [Requirement(d) for d in deps if Requirement(d).name == 'trl']
    return req


def test_pyproject_pins_the_tested_range():
    lo, hi = H.TRL_TESTED
    assert str(_pin().specifier) in (f'<{hi},>={lo}', f'>={lo},<{hi}'), (
        f"pyproject.toml pins {_pin()}; trl_hooks.TRL_TESTED says trl>={lo},<{hi}: change both together, after testing")


def test_installed_trl_is_the_tested_one():
    v = H.trl_version()
    if v not in _pin().specifier:
        pytest.fail(f"installed trl {v} is outside the tested range {_pin().specifier} (pyproject.toml): rl, syn and trl_hooks override "
                    f"TRL's private hooks {', '.join(H.HOOKS)}; install the tested range or test and re-pin", pytrace=False)
    assert H.check_trl('tests', v) == v


@pytest.mark.parametrize('v', ['1.15.2', '1.17.0', '1.16.0rc1', '2.0.0'])
def test_untested_versions_are_errors_naming_both(v, monkeypatch):
    monkeypatch.delenv(H.ALLOW_UNTESTED, raising=False)
    with pytest.raises(H.UntestedTRL, match=rf"plasticity_nb.syn overrides .*tested with trl>=1.16,<1.17 only; trl {v} is installed"):
        H.check_trl('plasticity_nb.syn', v)
    monkeypatch.setenv(H.ALLOW_UNTESTED, '1')
    with pytest.warns(UserWarning, match=f'trl {v} is installed'): assert H.check_trl('plasticity_nb.syn', v) == v


def test_import_on_an_untested_trl_is_one_line():
    "The check runs when the module is imported: a TRL that reports 1.17.0 stops the import with the fix"
    code = ("import importlib.metadata as m; real = m.version\n"
            "m.version = lambda name: '1.17.0' if name == 'trl' else real(name)\n"
            "try: import plasticity_nb.trl_hooks\n"
            "except ImportError as e: print(type(e).__name__, e, flush=True); import os; os._exit(3)")  # no teardown of torch's threads
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 3, r.stdout + r.stderr[-2000:]
    assert r.stdout.startswith("UntestedTRL plasticity_nb.trl_hooks overrides TRL's private GRPOTrainer hooks") and len(r.stdout.splitlines()) == 1
    assert "pip install 'trl>=1.16,<1.17'" in r.stdout


def test_the_hooks_have_the_signatures_we_override():
    "What rl, syn and FastRolloutMixin assume of TRL's GRPOTrainer (trl 1.16)"
    from trl import GRPOTrainer
    names = lambda f: list(inspect.signature(f).parameters)
    assert names(GRPOTrainer._generate_single_turn)[:5] == ['self', 'prompt_ids', 'images', 'multimodal_fields', 'num_generations']
    assert names(GRPOTrainer._generate_and_score_completions)[:2] == ['self', 'inputs']
    for h in H.HOOKS: assert callable(getattr(GRPOTrainer, h)), h


def test_trl_kwargs_are_grpo_config_fields():
    from trl import GRPOConfig
    names = {f.name for f in dataclasses.fields(GRPOConfig)}
    for eng, kw in [('cb', {}), ('vllm', {}), ('vllm', dict(vllm_mode='server', vllm_server_base_url='http://n0:8000'))]:
        got = H.trl_engine_kwargs(eng, **kw)
        assert got and set(got) <= names, set(got) - names
    assert H.trl_engine_kwargs('hf') == {} and H.trl_engine_kwargs('fast') == {}
    with pytest.raises(ValueError, match="accepted 'colocate' or 'server'"):
        H.trl_engine_kwargs('vllm', vllm_mode='ray')


def _tiny():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    words = ['<unk>', '<pad>', '<eos>'] + [f"w{i}" for i in range(58)]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token='<unk>'))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token='<unk>', pad_token='<pad>', eos_token='<eos>')
    torch.manual_seed(0)
    m = Qwen2ForCausalLM(Qwen2Config(vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256))
    return m, tok


def test_fast_engine_behind_a_trainers_own_hook(tmp_path, monkeypatch):
    "One GRPO step on CPU: the trainer's `_generate_single_turn` runs first, its super() call samples with the fast engine"
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    engines_used, hook_calls = [], []
    real = H.generate
    def spy(*a, **k):
        r = real(*a, **k); engines_used.append(r.engine); return r
    monkeypatch.setattr(H, 'generate', spy)
    class Planner(GRPOTrainer):  # like syn.MixedGroupTrainer: its own hook, then TRL's generation through super()
        def _generate_single_turn(self, prompt_ids, *a, **k):
            out = super()._generate_single_turn(prompt_ids, *a, **k)
            hook_calls.append((len(prompt_ids), out[0]))
            return out
    seen = []
    def reward(completions, **kw):
        seen.extend(completions); return [float(len(c) % 3) for c in completions]
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_completion_length=6,
                      max_steps=1, use_cpu=True, bf16=False, report_to='none', save_strategy='no', disable_tqdm=True)
    m, tok = _tiny()
    H.with_rollout_engine(Planner, 'fast')(model=m, reward_funcs=reward, args=args,
                                           train_dataset=Dataset.from_dict({'prompt': ['w1 w2 w3', 'w7 w8']}), processing_class=tok).train()
    assert engines_used == ['fast'] and hook_calls and hook_calls[0][0] == 4
    assert all(1 <= len(c) <= 6 for c in hook_calls[0][1])
    assert len(seen) == 4 and all(isinstance(s, str) for s in seen)
