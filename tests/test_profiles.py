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
    if p.model_path: assert p.bf16 and p.max_new_tokens >= 1024  # GPU profiles follow the paper: bf16, long responses

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
