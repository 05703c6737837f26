"Every module notebook's examples run and their assertions hold (nbdev-test), one test per notebook."
import subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p.name for p in (ROOT/'nbs').glob('[0-9]*.ipynb')) + ['index.ipynb']

@pytest.mark.parametrize('nb', NBS)
def test_notebook(nb):
    exe = Path(sys.executable).parent/'nbdev-test'
    r = subprocess.run([str(exe), f'nbs/{nb}'], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
