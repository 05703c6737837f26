"`plasticity train sft|rl|syn --config RUN.yaml`: the entry point `accelerate launch` runs, on CPU with the smoke profile"
import json, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


def train(kind, cfg:Path, *extra):
    r = subprocess.run([sys.executable, '-m', 'plasticity_nb.train', kind, '--config', str(cfg), *extra], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    return r


def test_train_sft_then_rl_from_run_files(tmp_path):
    runs = tmp_path/'runs'
    common = f"profile: smoke\nsettings: {ROOT/'settings.ini'}\n"
    (tmp_path/'sft.yaml').write_text(common + f"data: easy\noverrides: {{runs: {runs}, sft_epochs: 0.5, pretrain_steps: 5}}\n")
    r = train('sft', tmp_path/'sft.yaml')
    assert r.returncode == 0, r.stderr[-3000:]
    sft_dir = Path(r.stdout.strip().splitlines()[-1].split("'run': '")[1].split("'")[0])
    assert sft_dir.parent == runs and (sft_dir/'DONE').exists()
    ckpts = sorted((sft_dir/'checkpoints').glob('checkpoint-*'), key=lambda p: int(p.name.split('-')[1]))
    assert ckpts and (ckpts[-1]/'config.json').exists() and (ckpts[-1]/'tokenizer.json').exists()  # transformers format
    (tmp_path/'rl.yaml').write_text(common + f"method: grpo\ninit: {ckpts[-1]}\nout: {tmp_path/'rl'}\n"
                                    f"overrides: {{runs: {runs}, rl_steps: 2, rl_eval_every: 1}}\n")
    r = train('rl', tmp_path/'rl.yaml')
    assert r.returncode == 0, r.stderr[-3000:]
    evals = [json.loads(l) for l in (tmp_path/'rl'/'metrics.jsonl').read_text().splitlines() if '"eval"' in l]
    assert [e['step'] for e in evals] == [0, 1, 2] and all(0 <= e['scores']['overall'] <= 100 for e in evals)
    assert json.loads((tmp_path/'rl'/'DONE').read_text())['steps'] == 2


def test_train_errors_name_the_file_and_key(tmp_path):
    (tmp_path/'bad.yaml').write_text(f"profile: smoke\nsettings: {ROOT/'settings.ini'}\nlr: 3\n")
    r = train('rl', tmp_path/'bad.yaml')
    assert r.returncode == 2 and 'bad.yaml: unknown key(s) lr' in r.stderr
    (tmp_path/'run.yaml').write_text(f"profile: smoke\nsettings: {ROOT/'settings.ini'}\n")
    r = train('sft', tmp_path/'run.yaml', '--print-launch', 'configs/accelerate/zero2.yaml', '--num-processes', '8')
    assert r.returncode == 0
    assert r.stdout.split() == ['accelerate', 'launch', '--config_file', 'configs/accelerate/zero2.yaml', '--num_processes', '8',
                                '-m', 'plasticity_nb.train', 'sft', '--config', str(tmp_path/'run.yaml')]
