"One declaration per setting: every profile validated on load (ranges, choices, unknown keys), one-line errors, exit 2; typed specs"
import dataclasses, inspect, subprocess, sys
from pathlib import Path
import pytest
from plasticity_nb.config import (SCHEMA, SettingsError, load_profile, list_profiles, check_value, spec, spec_fields, sft_spec,
                                  identity, RLSpec, SFTSpec, EvalSpec, ModelSpec, WorldSpec)
from plasticity_nb.runs import run_id

ROOT = Path(__file__).resolve().parents[1]
INI = ROOT/'settings.ini'
EXE = Path(sys.executable).parent/'plasticity'


def _ini(tmp_path, bad:str)->Path:
    "The shipped settings.ini and one more profile, [other], that no one selects, holding `bad` (a key = value line)"
    text = INI.read_text() + f'\n[other]\nextends = smoke\n{bad}\n'
    p = tmp_path/'settings.ini'; p.write_text(text)
    return p


def test_every_key_is_declared_once_with_what_it_accepts():
    for k, s in SCHEMA.items():
        assert s.type in ('int', 'float', 'str', 'path', 'bool', 'counts') and s.help and s.group, k
        assert check_value(k, s.default) == s.default, k                 # the default is an accepted value
        if s.type in ('int', 'float'): assert s.range, f'{k} declares no range'
        for t in s.into.split(): assert t.split('.')[0] in ('model', 'world', 'data', 'sft', 'rl', 'eval'), (k, t)


@pytest.mark.parametrize('bad,says', [('n_layers = -2', "[other] n_layers = '-2': expected a whole number in [1, inf)"),
                                      ('sft_lr = nan', "[other] sft_lr = 'nan': expected a number in (0, inf)"),
                                      ('device = tpu9', "[other] device = 'tpu9': expected one of auto, cpu, cuda"),
                                      ('rl_lr = inf', "[other] rl_lr = 'inf'"), ('eps_low = 1.5', "[other] eps_low = '1.5'"),
                                      ('rollout_engine = vlm', "[other] rollout_engine = 'vlm': expected one of auto"),
                                      ('sft_bach = 8', "[other] unknown key 'sft_bach'"), ('seed = 0.5', "[other] seed = '0.5'"),
                                      ('group_size = 1', "[other] group_size = '1': expected a whole number in [2, inf)"),
                                      ('rl_branches = full:3', "[other] rl_branches = 'full:3': expected a count >= 1, then optional name:count overrides"),
                                      ('syn_micro_tokens = -1', "[other] syn_micro_tokens = '-1'")])
def test_a_bad_value_in_any_profile_is_a_one_line_error(tmp_path, bad, says):
    p = _ini(tmp_path, bad)
    with pytest.raises(SettingsError) as e: load_profile('tiny', path=p)   # [tiny] is fine, [other] is not: still refused
    assert str(e.value).startswith(f'{p} {says}') and '\n' not in str(e.value)
    assert list_profiles(p) == list_profiles(INI) + ['other']           # listing names reads no values


@pytest.mark.parametrize('bad', ['n_layers = -2', 'sft_lr = nan', 'device = tpu9'])
def test_plasticity_exits_2_for_a_bad_settings_file(tmp_path, bad):
    p = _ini(tmp_path, bad)
    runs = [['profiles', '--settings', p]] + ([['reproduce', '--profile', 'tiny', '--settings', p, '--only', 'fig3', '--out', tmp_path/'o']]
                                              if bad.startswith('n_layers') else [])
    for args in runs:
        r = subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and bad.split(' = ')[0] in r.stderr and '[other]' in r.stderr, r.stderr
    assert not (tmp_path/'o').exists() or not any((tmp_path/'o').iterdir())


def test_overrides_are_checked_like_the_file():
    assert load_profile('tiny', path=INI, n_layers='2').n_layers == 2
    with pytest.raises(SettingsError, match=r"\[tiny, override\] n_layers = '-2'"): load_profile('tiny', path=INI, n_layers='-2')


def test_specs_take_the_profile_keys_and_the_declared_defaults():
    p = load_profile('tiny', path=INI)
    r = spec(p, 'rl')
    assert isinstance(r, RLSpec) and (r.lr, r.batch, r.gen_batch, r.steps, r.warmup_steps) == (p.rl_lr, p.rl_batch, p.rl_gen_batch, p.rl_steps, p.rl_warmup)
    assert RLSpec() == spec({}, 'rl') and RLSpec().lr == SCHEMA['rl_lr'].default == 1e-4 and RLSpec().batch == SCHEMA['rl_batch'].default
    assert SFTSpec().lr == SCHEMA['sft_lr'].default and EvalSpec().samples == SCHEMA['eval_samples'].default
    with pytest.raises(ValueError, match=r'RLSpec.batch \(rl_batch = 0'): dataclasses.replace(r, batch=0)
    with pytest.raises(TypeError, match='RLSpec has no field lrr'): spec(p, 'rl', lrr=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError): r.lr = 1.0


def test_training_functions_default_to_the_declarations():
    "One source of defaults: run_rl / run_sft take a spec whose defaults are SCHEMA's; the TRL config builders read them too"
    from plasticity_nb import rl, sft
    for f in (rl.run_rl, sft.run_sft, sft.sft_trainer): assert inspect.signature(f).parameters['spec'].default is None
    for f in (rl.grpo_config, rl.dapo_config):
        ps = inspect.signature(f).parameters
        assert (ps['lr'].default, ps['batch'].default, ps['max_new_tokens'].default) == (1e-4, 16, 128)
    assert inspect.signature(rl.dapo_config).parameters['gen_batch'].default == SCHEMA['rl_gen_batch'].default


def test_sft_spec_follows_the_data_set():
    p = load_profile('tiny', path=INI, sft_batch='32', sft_s1k_batch='4', sft_s1k_epochs='12')
    assert (sft_spec(p, 's1k').batch, sft_spec(p, 's1k').epochs, sft_spec(p, 's1k').ckpt_every) == (4, 12.0, p.sft_s1k_ckpt_every)
    assert (sft_spec(p, 'uniform').batch, sft_spec(p, 'uniform').epochs, sft_spec(p, 'full').epochs) == (32, p.sft_subset_epochs, p.sft_epochs)
    assert sft_spec(load_profile('tiny', path=INI, sft_subset_epochs='0'), 'easy').epochs == p.sft_epochs


def test_identities_keep_the_cached_run_ids():
    "The run configs built from specs hold the keys (and so the ids) they held before the specs"
    p = load_profile('tiny', path=INI)
    assert list(spec_fields('model')) == ['model_family', 'model_path', 'n_layers', 'hidden', 'n_heads', 'n_kv_heads', 'ffn', 'max_len', 'bf16', 'tokenizer']
    assert 'tokenizer' not in identity(spec(p, 'model', tokenizer='chars'))  # a late key at its default ('chars')
    assert identity(spec(p, 'model'))['tokenizer'] == 'pieces'  # tiny's tokenizer: another base, another id
    assert set(identity(spec(p, 'world'))) == {'world_full', 'world_subset', 'world_s1k', 'world_val', 'world_rl', 'world_pretrain',
                                               'world_bench_scale', 'world_limit', 'world_max_operand', 'data_train', 'data_val', 'data_rl', 'data_bench'}
    assert set(identity(spec(p, 'rl'))) == {'lr', 'batch', 'gen_batch', 'group_size', 'steps', 'eval_every', 'max_new_tokens', 'temperature',
                                            'eps_low', 'eps_high', 'ds_rounds', 'overlong_cache', 'rollout_engine', 'seed', 'bf16',
                                            'warmup_steps', 'eval_greedy', 'micro_tokens'}  # a late key: tiny sets rl_micro_tokens
    assert set(identity(sft_spec(p, 'full'))) == {'lr', 'batch', 'epochs', 'ckpt_every', 'warmup', 'max_len', 'seed', 'bf16'}
    base = lambda p: {'kind': 'base', **identity(spec(p, 'model')), **identity(spec(p, 'world')), 'pretrain_steps': p.pretrain_steps, 'seed': p.seed}
    assert run_id(base(p)) == '8e153f355d5a'   # the tiny base model (96x3, `pieces`) trained by sessions 20-23 (runs/base-8e153f355d5a)
    old = load_profile('tiny', path=INI, n_layers='4', hidden='128', ffn='512', tokenizer='chars', pretrain_steps='300')
    assert run_id(base(old)) == 'cf5c052b5388'  # the 128x4 `chars` base the README's earlier runs were made with
    w = spec(p, 'world')
    for late in ('world_mix', 'world_rl_levels', 'chat_template'):      # declared later: in the identity only when changed
        assert late not in identity(w)
    assert identity(dataclasses.replace(w, world_rl_levels='3,5'))['world_rl_levels'] == '3,5'
