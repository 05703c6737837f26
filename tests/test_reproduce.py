import json, subprocess, sys, shutil
from pathlib import Path
import pytest
from plasticity_nb import reproduce as R
from plasticity_nb.config import load_profile

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent/'plasticity'

def _settings(tmp_path, retu_cache):
    p = tmp_path/'settings.ini'
    p.write_text(f"[DEFAULT]\noutputs = {tmp_path/'out'}\nretu_cache = {retu_cache}\n"
                 f"retu_fit_settings = {ROOT.parent/'shared'/'retu'/'fit_settings.json'}\n[tiny]\n")
    return p

@pytest.mark.parametrize('sub', ['reproduce', 'profiles', 'fit', 'train'])
def test_every_subcommand_has_help(sub):
    r = subprocess.run([str(EXE), sub, '--help'], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and 'usage' in r.stdout.lower(), r.stderr

def test_unknown_profile_is_one_line_error():
    r = subprocess.run([str(EXE), 'reproduce', '--profile', 'nope'], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert "unknown profile 'nope'" in r.stderr and len(r.stderr.strip().splitlines()) == 1

def test_missing_authors_data_is_skipped_with_how_to(tmp_path):
    s = _settings(tmp_path, tmp_path/'no-such-cache')
    r = subprocess.run([str(EXE), 'reproduce', '--settings', str(s), '--only', 'retu_table4'], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert 'skipped' in r.stderr and 'LINs-lab/RETU' in r.stderr
    rep = (tmp_path/'out'/'tiny'/'REPORT.md').read_text()
    assert '| retu_table4 | skipped |' in rep
    assert not list((tmp_path/'out'/'tiny').glob('*.png'))

def test_failing_notebook_fails_the_batch_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    s = _settings(tmp_path, tmp_path/'cache')
    prof = load_profile('tiny', path=s)
    # a figure notebook that raises halfway
    import nbformat
    nbdir = tmp_path/'nbs'/'figures'; nbdir.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile='tiny'\nout_dir=None\nsettings=None", metadata={'tags': ['parameters']}),
                nbformat.v4.new_code_cell("raise ValueError('bad parameter x: expected y')")]
    nb.metadata['kernelspec'] = dict(name='python3', display_name='python3', language='python')
    nbformat.write(nb, nbdir/'boom.ipynb')
    monkeypatch.setitem(R.FIGURES, 'boom', R.Figure('boom', 'a failing figure', needs='train'))
    o = R.run_figure(R.FIGURES['boom'], prof, tmp_path/'o')
    assert o.status == 'failed' and 'bad parameter x' in o.reason
    assert not (tmp_path/'o'/'boom.ipynb').exists() and (tmp_path/'o'/'boom.failed.ipynb').exists()
    assert not list((tmp_path/'o').glob('*.part*'))
