"Every shipped profile and launch config parses; a profile pointing at missing files fails before any work."
from pathlib import Path
import pytest, yaml
from plasticity_nb.config import load_profile, list_profiles
from plasticity_nb import experiments as E

ROOT = Path(__file__).resolve().parents[1]
INI = ROOT/'settings.ini'

@pytest.mark.parametrize('name', list_profiles(INI))
def test_shipped_profile_is_valid(name):
    p = load_profile(name, path=INI)
    assert p.name == name and p.description
    assert p.sft_batch > 0 and p.group_size > 1 and p.rl_batch > 0
    if p.model_path and name != 'rehearsal':  # GPU profiles follow the paper (the rehearsal is their CPU miniature)
        assert p.bf16 and p.max_new_tokens >= 1024

def test_missing_local_paths_fail_before_work(tmp_path):
    s = tmp_path/'settings.ini'
    s.write_text(f"[DEFAULT]\nruns = {tmp_path/'runs'}\n[real]\nmodel_path = {tmp_path/'no-model'}\ndata_train = {tmp_path/'no.jsonl'}\n")
    with pytest.raises(FileNotFoundError, match=r"model_path = .*no-model.*data_train = .*no.jsonl"):
        E.world(load_profile('real', path=s))
    assert not (tmp_path/'runs').exists()

@pytest.mark.parametrize('f', sorted((ROOT/'configs'/'accelerate').glob('*.yaml')))
def test_accelerate_configs_parse(f):
    c = yaml.safe_load(f.read_text())
    assert c['distributed_type'] in ('DEEPSPEED', 'FSDP') and c['num_processes'] >= 1
    if c['distributed_type'] == 'DEEPSPEED': assert (ROOT/c['deepspeed_config']['deepspeed_config_file']).exists()

def test_tokenizer_that_cannot_represent_the_data_fails_before_work(tmp_path):
    "A local model whose vocabulary lacks the data's characters: the error names the set, row and characters"
    from plasticity_nb.models import build_tokenizer
    from plasticity_nb.tasks import build_world, save_world
    small = dict(world_full=40, world_subset=10, world_s1k=5, world_val=10, world_rl=20, world_bench_scale=0.1)
    save_world(build_world(small, 0), tmp_path/'w')
    build_tokenizer('0123456789+-*=\\{}box\n').save_pretrained(tmp_path/'model')  # no letters of "Compute"
    s = tmp_path/'settings.ini'
    s.write_text(f"[DEFAULT]\nruns = {tmp_path/'runs'}\n[real]\nmodel_path = {tmp_path/'model'}\n"
                 f"data_train = {tmp_path/'w'/'full.jsonl'}\ndata_val = {tmp_path/'w'/'val.jsonl'}\n")
    with pytest.raises(ValueError, match=r"full row 0: .*model's tokenizer maps \['C', 'm'"):
        E.world(load_profile('real', path=s))
    assert not (tmp_path/'runs').exists()
    build_tokenizer().save_pretrained(tmp_path/'model')  # the full alphabet: accepted
    assert len(E.world(load_profile('real', path=s))['full']) == 40
