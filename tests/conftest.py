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


@pytest.fixture(scope='session')
def smoke_fig3(tmp_path_factory):
    """The smoke profile's fig3 batch, run cold once per test process in its own folder (its plan taken before anything
    trained): the tests that need a trained smoke registry share it instead of training the same runs again. Run ids
    hold the absolute path of the model they start from, so a registry cannot be copied elsewhere and reused."""
    from types import SimpleNamespace
    from plasticity_nb import reproduce as RP, plan
    from plasticity_nb.config import load_profile
    from test_smoke import smoke_settings, PARAMS
    root = tmp_path_factory.mktemp('smoke_fig3')
    s = smoke_settings(root)
    cold = plan.plan_batch(load_profile('smoke', path=s), 'fig3')
    outs = RP.run_batch('smoke', only='fig3', settings=str(s), params=PARAMS)
    return SimpleNamespace(root=root, settings=s, cold=cold, outs=outs)
