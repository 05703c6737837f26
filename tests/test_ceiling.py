"A_post = P_sft + PL_rl per branch, the SFT regimes, the ceiling-loss correlation; the released branches vs the paper"
from pathlib import Path
import numpy as np, pandas as pd, pytest
from plasticity_nb.fit import sigmoid_gain
from plasticity_nb.paper import TABLE4_GENERAL, PURE_RL, FIG3_MEAN_A_POST
from plasticity_nb.ceiling import (fit_branches, gain_curve, regimes, ceiling_correlation, peak_ceiling, FIT_COLUMNS)

RETU = Path(__file__).resolve().parents[2]/'shared'/'retu'
need_retu = pytest.mark.skipif(not (RETU/'cache').is_dir(), reason=f"the authors' released data is not at {RETU}")
# PAPER.md section 9
TABLE4 = dict(zip(TABLE4_GENERAL.ckpt, TABLE4_GENERAL.a_post))
FIG3_MEAN = FIG3_MEAN_A_POST


def _toy(ckpt, p_sft, pl, sd=0.15, seed=0, n=24):
    x = np.linspace(3, 60, n)
    y = p_sft + sigmoid_gain(x, pl, 12, 1.8) + np.random.default_rng(seed).normal(0, sd, n)
    return dict(scene='toy', ckpt=ckpt, x_sft=5.0 * ckpt, p_sft=p_sft, x=x, y=y)


def test_gain_curve_adds_the_branch_point():
    b = dict(scene='s', ckpt=1, x_sft=1.0, p_sft=70.0, x=np.array([1., 2, 3, 4, 5, 6]), y=np.array([71., 72, 72, 73, 73, 74]))
    x, y = gain_curve(b)
    np.testing.assert_array_equal(x, [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(y, [0, 1, 2, 2, 3, 3, 4])
    with pytest.raises(ValueError, match="branch 's' ckpt 1: missing keys"): gain_curve({k: v for k, v in b.items() if k != 'p_sft'})
    with pytest.raises(ValueError, match='strictly increasing'): gain_curve({**b, 'x': b['x'][::-1]})


def test_fit_branches_decomposition_and_settings_matching():
    brs = [_toy(1, 60.0, 9.0, seed=1), _toy(2, 66.0, 6.0, seed=2)]
    res = fit_branches(brs, n_boot=50)
    assert list(res.columns) == FIT_COLUMNS and len(res) == 2
    np.testing.assert_allclose(res.a_post, res.p_sft + res.pl_rl)
    np.testing.assert_allclose(res.a_post, [69.0, 72.0], atol=0.5)
    assert (res.a_post_se > 0).all() and (res.a_post_se < 1).all() and (res.source == 'selected').all()
    rel = [dict(scene='toy', ckpt=1, train_range=[0, 17], val_range=[17, 100], outlier_threshold=3.0,
                use_robust_reg=True, lts_alpha=0.85, free_c0=False)]
    with pytest.raises(ValueError, match="no released settings for scene 'toy' ckpt 2"): fit_branches(brs, rel)
    one = fit_branches(brs, rel, n_boot=0, missing='skip')
    assert len(one) == 1 and one.source[0] == 'released' and one.train_range[0] == (0, 17) and one.use_robust_reg[0]
    assert one.a_post_se.isna().all()
    both = fit_branches(brs, rel, n_boot=0, missing='select')
    assert list(both.source) == ['released', 'selected']
    with pytest.raises(ValueError, match='second entry'): fit_branches(brs, rel + rel)
    with pytest.raises(ValueError, match='missing='): fit_branches(brs, rel, missing='ignore')


def test_released_fit_is_kept_unless_fallback_asks():
    # a branch that only starts to rise at the end of the released training window: the plain fit ends on the box of A
    x = np.linspace(3, 150, 45)
    y = 70 + sigmoid_gain(x, 4.0, 60, 3.0) + np.random.default_rng(0).normal(0, 0.1, len(x))
    b = dict(scene='late', ckpt=5, x_sft=1.0, p_sft=70.0, x=x, y=y)
    rel = [dict(scene='late', ckpt=5, train_range=[0, 15], val_range=[15, 100], outlier_threshold=2.5,
                use_robust_reg=False, lts_alpha=0.75, free_c0=False)]
    kept = fit_branches([b], rel, n_boot=0).iloc[0]  # the default keeps the authors' fit, flagged
    assert kept.source == 'released' and kept.bound == 'A upper' and kept.at_bound and not kept.identified
    fb = fit_branches([b], rel, n_boot=0, fallback='select').iloc[0]
    assert fb.identified and fb.source == 'fallback' and abs(fb.a_post - 74.0) < 0.3
    with pytest.raises(ValueError, match='fallback='): fit_branches([b], rel, fallback='peak')


def test_regimes_all_four_and_boundaries():
    # L_min = 0.5: stable band L <= 0.51, severe L >= 0.55
    L = [0.9, 0.7, 0.51, 0.5, 0.505, 0.52, 0.51, 0.53, 0.549, 0.55, 0.6]
    assert regimes(range(11), L) == ['adaptive', 'adaptive', 'stable', 'stable', 'stable', 'stable', 'stable',
                                     'mild', 'mild', 'severe', 'severe']
    assert regimes([0, 1, 2], [0.5, 0.51, 0.5100001]) == ['stable', 'stable', 'mild']  # exactly (1 + delta) L_min is stable
    assert regimes([0, 1], [0.4, 0.44]) == ['stable', 'severe']  # exactly (1 + delta2) L_min is severe
    assert regimes([0, 1, 2], [0.4, 0.4, 0.4]) == ['stable'] * 3
    assert regimes([0, 1, 2, 3], [1.0, 0.8, 0.7, 0.75], delta=0.1, delta2=0.2) == ['adaptive', 'adaptive', 'stable', 'stable']
    with pytest.raises(ValueError, match='ascending'): regimes([2, 1], [0.5, 0.6])
    with pytest.raises(ValueError, match='finite'): regimes([0, 1], [0.5, np.nan])
    with pytest.raises(ValueError, match='delta'): regimes([0, 1], [0.5, 0.6], delta=0.2, delta2=0.1)


def test_ceiling_correlation_against_numpy_and_by_hand():
    a, l = [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 1.0, 2.0]
    r = ceiling_correlation(a, l)
    assert r['pearson'] == pytest.approx(np.corrcoef(a, l)[0, 1])
    # ranks of l: (4, 3, 1, 2); d = (-3, -1, 2, 2), sum d^2 = 18; rho = 1 - 6*18 / (4*15) = -0.8
    assert r['spearman'] == pytest.approx(-0.8) and r['n'] == 4 and 0 < r['pearson_p'] < 1
    t5 = ceiling_correlation([77.3, 79.7, 82.6, 82.8, 84.0], [0.51, 0.42, 0.41, 0.39, 0.37])  # PAPER.md Table 5
    assert t5['spearman'] == pytest.approx(-1.0)
    assert t5['pearson'] == pytest.approx(np.corrcoef([77.3, 79.7, 82.6, 82.8, 84.0], [0.51, 0.42, 0.41, 0.39, 0.37])[0, 1])
    with pytest.raises(ValueError, match='>= 3'): ceiling_correlation([1, 2], [2, 1])
    with pytest.raises(ValueError, match='constant'): ceiling_correlation([1, 1, 1], [2, 1, 0])


def test_peak_ceiling():
    assert peak_ceiling([70.1, np.nan, 72.4, 71.0]) == 72.4
    with pytest.raises(ValueError, match='no observed score'): peak_ceiling([np.nan])


# --- the authors' released branches against the paper's printed numbers ---

def _load():
    from plasticity_nb.retu import load_branches, load_fit_settings
    return load_branches(RETU/'cache'), load_fit_settings(RETU/'fit_settings.json')


@need_retu
def test_released_fits_give_the_papers_numbers():
    "Table 4 (SFT889K and Pure-RL) at its printed precision, Fig 3 means, Table 5's best SFT889K ceiling, Fig 8a's ranks"
    bs, rel = _load()
    res = fit_branches(bs, rel, n_boot=0)
    assert len(res) == 33 and (res.source == 'released').all() and res.a_post.notna().all()
    g = res[res.scene == 'general'].set_index('ckpt')
    printed = lambda ours, paper: abs(ours - paper) <= 0.05 + 1e-9  # equal at the paper's one decimal (74.05 prints as 74.1)
    assert all(printed(g.a_post[k], v) for k, v in TABLE4.items()), (g.a_post - pd.Series(TABLE4)).to_dict()
    assert all(printed(g.p_sft[k], v) for k, v in zip(TABLE4_GENERAL.ckpt, TABLE4_GENERAL.p_sft))
    pure = res[res.ckpt == 0].iloc[0]
    assert printed(pure.a_post, PURE_RL['a_post']) and printed(pure.p_sft, PURE_RL['p0'])
    sft = res[res.ckpt > 0]
    means = sft.groupby('scene').a_post.mean()
    # hard102K: one branch of the released cache differs from the data the authors fitted (see tests/test_fit.py)
    assert all(abs(means[s] - v) <= (0.055 if s == 'hard102K' else 0.05) for s, v in FIG3_MEAN.items()), means.to_dict()
    best = sft.groupby('scene').a_post.max()
    assert printed(best['general'], 84.0) and printed(best['s1K'], 77.3) and printed(best['uniform102K'], 79.7)  # Table 5
    loss = dict(s1K=0.51, easy102K=0.44, uniform102K=0.42, hard102K=0.40, general=0.37)  # PAPER.md: Fig 8a, Spearman -1
    assert list(best[sorted(loss, key=loss.get, reverse=True)].rank()) == [1, 2, 3, 4, 5]
    on_bound = set(zip(res.scene[res.at_bound], res.ckpt[res.at_bound]))
    assert on_bound == {('easy102K', 720), ('easy102K', 1080), ('easy102K', 1800), ('general', 360), ('hard102K', 1800),
                        ('uniform102K', 1800)} and (res.bound[res.at_bound] == 'A upper').all()
    # asking for the fallback replaces such a fit (and only such a fit) by a selected one
    fb = fit_branches([b for b in bs if (b['scene'], b['ckpt']) in {('general', 720), ('hard102K', 1800)}], rel, n_boot=0,
                      fallback='select')
    assert list(fb.source) == ['released', 'fallback'] and fb.identified.all()  # general 720, hard102K 1800


@pytest.mark.slow
@need_retu
def test_selected_fits_vs_paper():
    "Settings chosen automatically per branch (the kit's fitter under the paper's score): every Fig 3 mean within 1 point"
    bs, _ = _load()
    res = fit_branches(bs, None, n_boot=0)
    assert (res.source == 'selected').all() and res.identified.all()
    means = res[res.ckpt > 0].groupby('scene').a_post.mean()
    assert all(abs(means[s] - v) < 1.0 for s, v in FIG3_MEAN.items()), means.to_dict()


@need_retu
def test_selected_fits_general_small():
    "The default-run version: SFT889K branches whose released fit is identified and quick to reselect, within 0.5 of Table 4"
    bs, _ = _load()
    steps = [1440, 1800, 7200, 12600]
    g = fit_branches([b for b in bs if b['scene'] == 'general' and b['ckpt'] in steps], None, n_boot=0).set_index('ckpt')
    assert all(abs(g.a_post[k] - TABLE4[k]) <= 0.5 for k in steps), g.a_post.to_dict()
