"REPORT claims of the sequential figures go through `stats.verdict`: constructed effects just below, at and above twice their SE."
import numpy as np, pandas as pd
import pytest
from plasticity_nb import experiments as E
from plasticity_nb.stats import verdict


def curves(sft_peak=50.0, sft_se=1.0):
    "SFT rows of one data set: loss falls (Adaptive) to a floor (Stable) at steps 40-50; the best SFT score has SE `sft_se`"
    rows = []
    for step, loss, score in [(10, 1.0, 30.0), (20, 0.6, 40.0), (30, 0.40, 45.0), (40, 0.301, sft_peak), (50, 0.30, 49.0)]:
        for b, v in [('overall', score), ('overall_se', sft_se)]:
            rows.append(dict(run='sft-a', dataset='full', paradigm='sft', branch_step=np.nan, stage='sft', step=step,
                             exaflops=step / 10, sft_exaflops=step / 10, benchmark=b, score=v, val_loss=loss, seed=0))
    return pd.DataFrame(rows)


def fits(stable=(56.0, 1.0), adaptive=(48.0, 1.0), pure=(10.0, 1.0)):
    "Fit rows as `fit_curves` makes them: (a_post, a_post_se) per branch"
    row = lambda par, ck, a, se, p: dict(dataset='full', paradigm=par, ckpt=ck, a_post=a, a_post_se=se, p_sft=p, pl_rl=a - p, p_sft_se=0.5)
    return pd.DataFrame([row('sft_then_rl', 40, *stable, 50.0), row('sft_then_rl', 20, *adaptive, 40.0), row('pure_rl', 0, *pure, 5.0)])


def claim(rows, start):
    (r,) = [r for r in rows if r['quantity'].startswith(start)]
    return r


@pytest.mark.parametrize('a_post, expected', [(59.99, 'partly'), (60.0, 'partly'), (60.01, 'reproduced'), (49.0, 'not reproduced')])
def test_beats_pure_sft_at_the_two_se_line(a_post, expected):
    # effect = best A_post - best SFT score (50); combined SE = sqrt(3^2 + 4^2) = 5: the line is at 60
    rows = E.sequential_claims(curves(sft_se=4.0), fits(stable=(a_post, 3.0)))
    r = claim(rows, 'claim: SFT-then-RL beats Pure-SFT')
    assert r['verdict'] == expected, r
    assert r['effect'] == f"{a_post - 50:+.1f} +/- 5.0"


def test_stable_vs_adaptive_has_both_regimes_and_a_real_verdict():
    rows = E.sequential_claims(curves(), fits(stable=(56.0, 1.0), adaptive=(48.0, 1.0)))
    r = claim(rows, 'claim: switching in the Stable regime')
    assert r['ours'] == 'full 56.0 vs 48.0' and r['verdict'] == 'reproduced'
    r = claim(E.sequential_claims(curves(), fits(stable=(56.0, 3.0), adaptive=(52.0, 3.0))), 'claim: switching in the Stable regime')
    assert r['verdict'] == 'partly'  # 4 points, SE 4.2
    r = claim(E.sequential_claims(curves(), fits(stable=(50.0, 1.0), adaptive=(52.0, 1.0))), 'claim: switching in the Stable regime')
    assert r['verdict'] == 'not reproduced'


def test_unknown_se_never_reproduces():
    r = claim(E.sequential_claims(curves(), fits(stable=(70.0, np.nan))), 'claim: SFT-then-RL beats Pure-RL')
    assert r['verdict'] == 'partly' and 'SE unknown' in r['effect']
    assert verdict(70.0 - 10.0, float('nan')) == 'partly'
