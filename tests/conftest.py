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

