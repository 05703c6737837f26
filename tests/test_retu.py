"The authors' released curves (../shared/retu): safe loading, compute mapping, branches vs Table 4, the CLI"
import json, os, pickle, shutil, subprocess, sys, types
from pathlib import Path
import numpy as np, pandas as pd, pytest
from plasticity_nb.retu import (RetuError, safe_load, load_retu, load_branches, load_fit_settings, main,
                                SFT_CKPT_STEPS, sft_exaflops_at)
from plasticity_nb.curves import check_curves

RETU = Path(__file__).resolve().parents[2]/'shared'/'retu'
CACHE, SETTINGS = RETU/'cache', RETU/'fit_settings.json'
need_retu = pytest.mark.skipif(not CACHE.is_dir(), reason=f"the authors' released data is not at {RETU} (shared/retu beside the checkout)")
REPO = Path(__file__).resolve().parents[1]

# PAPER.md section 9, Table 4, SFT889K branches 360 ... 14080
TABLE4_STEPS = [360, 720, 1080, 1440, 1800, 3600, 5400, 7200, 9000, 10800, 12600, 14080]
TABLE4_PSFT = [69.2, 71.9, 73.0, 73.3, 74.1, 76.5, 77.5, 77.3, 76.7, 77.7, 77.1, 76.2]
TABLE4_A_POST = [82.5, 80.7, 80.1, 80.3, 81.0, 83.1, 82.8, 84.0, 83.4, 83.1, 83.0, 84.0]


@pytest.fixture(scope='module')
def branches(): return load_branches(CACHE)


@need_retu
def test_branch_set(branches):
    assert len(branches) == 33
    scenes = {b['scene'] for b in branches}
    assert scenes == {'general', 'easy102K', 'uniform102K', 'hard102K', 's1K'}
    counts = {s: sum(b['scene'] == s for b in branches) for s in scenes}
    assert counts == dict(general=12, easy102K=5, uniform102K=6, hard102K=5, s1K=5)
    # the released fits are exactly these branches
    assert {(b['scene'], b['ckpt']) for b in branches} == {(s['scene'], s['ckpt']) for s in load_fit_settings(SETTINGS)}
    assert len(load_branches(CACHE, extra=True)) == 34  # + easy102K step 6120
    for b in branches:
        assert b['x'].ndim == 1 and b['x'].shape == b['y'].shape and len(b['x']) >= 19
        assert b['x'][0] > 0 and np.all(np.diff(b['x']) > 0)
        assert np.all((b['y'] > 0) & (b['y'] < 100))


@need_retu
def test_pure_rl_and_p0(branches):
    pure = [b for b in branches if b['ckpt'] == 0]
    assert [(b['scene'], b['x_sft']) for b in pure] == [('uniform102K', 0)]
    # P0 = base model overall: (67.81*1317 + 12.71*291 + 23.21*237 + 8.02*262 + 4.5*25 + 1.75*25) / 2157
    assert pure[0]['p_sft'] == round(100762.64 / 2157, 2) == 46.71
    assert abs(pure[0]['p_sft'] - 46.7) < 0.05  # Table 4: P0 46.7


@need_retu
def test_table4_sft889k(branches):
    g = {b['ckpt']: b for b in branches if b['scene'] == 'general'}
    assert sorted(g) == TABLE4_STEPS
    for step, p in zip(TABLE4_STEPS, TABLE4_PSFT):
        assert abs(g[step]['p_sft'] - p) <= 0.051, (step, g[step]['p_sft'], p)
    assert abs(g[360]['x_sft'] - 34.9) < 0.1 and abs(g[14080]['x_sft'] - 1365.8) < 0.1
    # the x_sft are cache keys: multiples of the 360-step cost (34.92) and 1365.76 at the last step
    assert [g[s]['x_sft'] for s in TABLE4_STEPS[:-1]] == [round(34.92 * s / 360, 2) for s in TABLE4_STEPS[:-1]]
    assert g[14080]['x_sft'] == 1365.76


@need_retu
def test_x_sft_other_scenes(branches):
    by = {(b['scene'], b['ckpt']): b['x_sft'] for b in branches}
    # one 360-step interval, rounded to 0.01: 3 * 512 * S * F(S) * 360 / 1e18 at S = 2217, 3747, 8633; s1K 62 steps of 16
    assert (by['easy102K', 360], by['uniform102K', 360], by['hard102K', 360], by['s1K', 62]) == (19.76, 34.67, 89.25, 0.57)
    assert (by['hard102K', 1800], by['s1K', 310]) == (446.25, 2.85)
    assert sft_exaflops_at('general', 3600) == 349.18 and by['general', 3600] == 349.2  # matched within 0.2


@need_retu
def test_load_retu_table(branches):
    df = load_retu(CACHE)
    check_curves(df)
    assert set(df.paradigm) == {'sft', 'sft_then_rl', 'pure_rl'}
    assert df.val_loss.isna().all()
    ov = df[df.benchmark == 'overall']
    sft = ov[ov.run == 'retu/general/sft'].set_index('step')
    assert (sft.score[0], sft.exaflops[14080]) == (46.71, 1365.76)
    assert list(sft.index[:3]) == [0, 20, 40] and 14040 in sft.index
    # every branch of load_branches is the same curve in the table
    for b in branches:
        r = ov[ov.run == f"retu/{b['scene']}/dapo_ckpt{b['ckpt']}"].sort_values('exaflops')
        assert r.paradigm.iloc[0] == ('pure_rl' if b['ckpt'] == 0 else 'sft_then_rl')
        assert np.array_equal(r.exaflops.to_numpy(), b['x']) and np.array_equal(r.score.to_numpy(), b['y'])
        assert (r.sft_exaflops == b['x_sft']).all() and (r.branch_step == b['ckpt']).all()
        assert list(r.step) == list(range(1, len(r) + 1))
    # six benchmarks + overall per evaluation
    assert (df.groupby(['run', 'stage', 'step']).size() == 7).all()


class Evil:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


class EvilExec:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_unpickler_refuses_code(tmp_path):
    for cls, glob_name in ((Evil, 'posix.system'), (EvilExec, 'builtins.exec')):
        marker, f = tmp_path/f'pwned_{cls.__name__}', tmp_path/f'{cls.__name__}.pkl'
        f.write_bytes(pickle.dumps({0: {'gsm8k': cls(marker)}}))
        with pytest.raises(RetuError, match=rf"refusing to load {glob_name} from {f}: only dicts of numbers/strings and numpy scalars"):
            safe_load(f)
        assert not marker.exists()
    # a structured numpy dtype is not a plain number either
    f = tmp_path/'rec.pkl'
    f.write_bytes(pickle.dumps({0: {'gsm8k': np.zeros(1, dtype=[('a', 'f8')])[0]}}))
    with pytest.raises(RetuError, match="refusing to load numpy dtype 'V8'"):
        safe_load(f)


def test_safe_load_shapes(tmp_path):
    f = tmp_path/'c.pkl'
    good = pickle.dumps({0: {'gsm8k': np.float64(67.81)}, 1.94: {'gsm8k': 69.32}})
    f.write_bytes(good)
    assert safe_load(f) == {0: {'gsm8k': 67.81}, 1.94: {'gsm8k': 69.32}}
    f.write_bytes(good[:-7])
    with pytest.raises(RetuError, match=rf"^{f}: corrupt or truncated pickle") as e:
        safe_load(f)
    assert '\n' not in str(e.value)
    f.write_bytes(pickle.dumps({'a': {'gsm8k': 1.0}}))
    with pytest.raises(RetuError, match="key 'a'"):
        safe_load(f)
    f.write_bytes(pickle.dumps({0: {'gsm8k': float('nan')}}))
    with pytest.raises(RetuError, match='finite number'):
        safe_load(f)
    with pytest.raises(RetuError, match='no such file'):
        safe_load(tmp_path/'missing.pkl')


@pytest.fixture
def cache_copy(tmp_path):
    d = tmp_path/'cache'
    shutil.copytree(CACHE, d)
    for p in d.rglob('*'): p.chmod(0o755 if p.is_dir() else 0o644)
    return d


@need_retu
def test_missing_and_corrupt(cache_copy, tmp_path):
    with pytest.raises(RetuError, match='no such folder'):
        load_branches(tmp_path/'nothing')
    rl = cache_copy/'sft_then_rl/s1K/s1K_step2flops2valPerform_dapo_ckpt124.pkl'
    rl.write_bytes(rl.read_bytes()[:100])
    with pytest.raises(RetuError, match=rf"{rl}: corrupt or truncated"):
        load_branches(cache_copy)
    rl.unlink()
    assert len(load_branches(cache_copy)) == 32
    (cache_copy/'sft/hard102K_flops2valPerform_sft_dict_0422.pkl').unlink()
    with pytest.raises(RetuError, match=r"no SFT curve files for scene 'hard102K'.*expected exactly one"):
        load_retu(cache_copy)


def test_fit_settings_errors(tmp_path):
    ok = dict(scene='s1K', ckpt=62, train_range=[0, 10], val_range=[10, 100], outlier_threshold=3,
              use_robust_reg=False, lts_alpha=0.75, free_c0=True)
    f = tmp_path/'fs.json'
    for bad, msg in [(dict(ckpt='62'), "entry 1 key 'ckpt'"), (dict(train_range=[5, 5]), "entry 1 key 'train_range'"),
                     (dict(use_robust_reg=1), "entry 1 key 'use_robust_reg'"), (dict(extra=1), "entry 1: unknown key 'extra'"),
                     (dict(ckpt=62), 'entry 1: a second entry for s1K ckpt 62')]:
        f.write_text(json.dumps([ok, {**ok, 'ckpt': 124, **bad}]))
        with pytest.raises(RetuError, match=msg):
            load_fit_settings(f)
    with pytest.raises(RetuError, match='no such file'):
        load_fit_settings(tmp_path/'nope.json')


@need_retu
def test_released_settings():
    fs = load_fit_settings(SETTINGS)
    assert len(fs) == 33 and all(s['train_range'][1] == s['val_range'][0] for s in fs)


def run_cli(*args):
    return subprocess.run([sys.executable, '-m', 'plasticity_nb.retu', *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_cli_help():
    r = run_cli('--help')
    assert r.returncode == 0 and '--cache' in r.stdout and '--settings' in r.stdout and '--json' in r.stdout


@need_retu
def test_cli_corrupt_file(cache_copy):
    f = cache_copy/'sft/general_flops2valPerform_sft_dict.pkl'
    f.write_bytes(f.read_bytes()[:-50])
    r = run_cli('--cache', cache_copy, '--json')
    assert r.returncode == 2 and r.stdout == ''
    assert r.stderr.count('\n') == 1 and r.stderr.startswith(f'error: {f}: corrupt or truncated pickle')
    r = run_cli('--cache', cache_copy/'nope')
    assert r.returncode == 2 and 'no such folder' in r.stderr


def fake_fit(branches, settings=None):
    "Stand-in for ceiling.fit_branches: A_post = max observed score"
    return pd.DataFrame([dict(scene=b['scene'], ckpt=b['ckpt'], x_sft=b['x_sft'], p_sft=b['p_sft'], pl_rl=b['y'].max() - b['p_sft'],
                              a_post=b['y'].max(), a_post_se=np.nan, eps=0.0, c_mid=1.23456, b=1.0, rmse_val=0.5,
                              r2_train=0.9, r2_val=0.8, n_settings=len(settings or [])) for b in branches])


@need_retu
def test_cli_output_format(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'plasticity_nb.ceiling', types.SimpleNamespace(fit_branches=fake_fit))
    assert main(['--cache', str(CACHE), '--settings', str(SETTINGS), '--json']) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 33
    assert list(out[0]) == ['scene', 'ckpt', 'x_sft', 'p_sft', 'pl_rl', 'a_post', 'a_post_se', 'eps', 'c_mid', 'b',
                            'rmse_val', 'r2_train', 'r2_val']
    g = {r['ckpt']: r for r in out if r['scene'] == 'general'}
    assert (g[360]['x_sft'], g[360]['p_sft'], g[360]['c_mid'], g[360]['a_post_se']) == (34.92, 69.15, 1.235, None)
    assert main(['--cache', str(CACHE)]) == 0
    table = capsys.readouterr().out
    assert 'uniform102K' in table and len(table.splitlines()) == 34


@need_retu
def test_cli_real_fit(tmp_path):
    r = run_cli('--cache', CACHE, '--settings', SETTINGS, '--json')
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out) == 33
    g = {x['ckpt']: x for x in out if x['scene'] == 'general'}
    for step, p, a in zip(TABLE4_STEPS, TABLE4_PSFT, TABLE4_A_POST):
        assert abs(g[step]['p_sft'] - p) <= 0.051
        assert abs(g[step]['a_post'] - (g[step]['p_sft'] + g[step]['pl_rl'])) < 0.02
        assert abs(g[step]['a_post'] - a) <= 0.051, (step, g[step]['a_post'], a)  # Table 4 at its printed precision
    pure = next(x for x in out if x['ckpt'] == 0)
    assert abs(pure['a_post'] - 72.0) <= 0.05 and abs(pure['p_sft'] - 46.7) <= 0.05
    assert {(x['scene'], x['ckpt']) for x in out if x['bound']} == {
        ('easy102K', 720), ('easy102K', 1080), ('easy102K', 1800), ('general', 360), ('hard102K', 1800), ('uniform102K', 1800)}


@need_retu
def test_scene_subset():
    df = load_retu(CACHE, scenes=['s1K'])
    assert set(df.dataset) == {'s1K'} and df.run.nunique() == 7  # sft + pure RL + 5 branches
    assert len(load_branches(CACHE, scenes=['s1K'])) == 6  # the pure-RL copy stays under s1K when alone
    with pytest.raises(RetuError, match=r"unknown scene\(s\) \['s2K'\]"):
        load_branches(CACHE, scenes=['s2K'])
