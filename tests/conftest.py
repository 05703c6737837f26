import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_RETU = ROOT.parent/'shared'/'retu'
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')

@pytest.fixture
def retu_dir():
    "The authors' released measurements beside the checkout (skips when absent)"
    if not (SHARED_RETU/'cache').is_dir(): pytest.skip(f"authors' data not found at {SHARED_RETU}")
    return SHARED_RETU


# The long end-to-end tests first: pytest-xdist hands tests to its workers in collection order, so starting these early
# lets the two workers finish together instead of one of them ending on a six-minute test.
LONG_FIRST = ('test_smoke.py', 'test_launch.py', 'test_train.py', 'test_rehearsal.py', 'test_ood.py')

def pytest_collection_modifyitems(config, items):
    rank = lambda it: next((i for i, f in enumerate(LONG_FIRST) if Path(str(it.fspath)).name == f), len(LONG_FIRST))
    items.sort(key=rank)  # stable: the order within each file and among the rest is kept
