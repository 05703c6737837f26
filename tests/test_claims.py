"REPORT claims of the sequential figures go through `stats.verdict`: constructed effects just below, at and above twice their SE."
import numpy as np, pandas as pd
import pytest
from plasticity_nb import analysis as A
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
    rows = A.sequential_claims(curves(sft_se=4.0), fits(stable=(a_post, 3.0)))
    r = claim(rows, 'claim: SFT-then-RL beats Pure-SFT')
    assert r['verdict'] == expected, r
    assert r['effect'] == f"{a_post - 50:+.1f} +/- 5.0"


def test_stable_vs_adaptive_has_both_regimes_and_a_real_verdict():
    rows = A.sequential_claims(curves(), fits(stable=(56.0, 1.0), adaptive=(48.0, 1.0)))
    r = claim(rows, 'claim: switching in the Stable regime')
    assert r['ours'] == 'full 56.0 vs 48.0' and r['verdict'] == 'reproduced'
    r = claim(A.sequential_claims(curves(), fits(stable=(56.0, 3.0), adaptive=(52.0, 3.0))), 'claim: switching in the Stable regime')
    assert r['verdict'] == 'partly'  # 4 points, SE 4.2
    r = claim(A.sequential_claims(curves(), fits(stable=(50.0, 1.0), adaptive=(52.0, 1.0))), 'claim: switching in the Stable regime')
    assert r['verdict'] == 'not reproduced'


def test_unknown_se_never_reproduces():
    r = claim(A.sequential_claims(curves(), fits(stable=(70.0, np.nan))), 'claim: SFT-then-RL beats Pure-RL')
    assert r['verdict'] == 'partly' and 'SE unknown' in r['effect']
    assert verdict(70.0 - 10.0, float('nan')) == 'partly'


def test_per_dataset_rows_and_s1k_lowest():
    "Two data sets: each gets its own PL_rl / Pure-SFT / Stable-vs-Adaptive rows; S1K's ceiling against the lowest larger set"
    s1k = curves().assign(dataset='s1k', run='sft-b')
    s1k.loc[s1k.benchmark == 'overall', 'score'] -= 20  # its best SFT score 30
    c = pd.concat([curves(), s1k], ignore_index=True)
    f = pd.concat([fits(stable=(56.0, 1.0), adaptive=(48.0, 1.0)), fits(stable=(33.0, 1.0), adaptive=(31.0, 1.0)).assign(dataset='s1k')
                   .query("paradigm != 'pure_rl'")], ignore_index=True)
    rows = A.sequential_claims(c, f)
    r = claim(rows, 'claim (s1k): SFT-then-RL beats Pure-SFT')
    assert r['ours'] == '33.0 vs 30.0' and r['effect'] == '+3.0 +/- 1.4' and r['verdict'] == 'reproduced'  # SEs 1 and 1
    assert claim(rows, 'claim (full): RL after SFT adds plasticity')['effect'] == '+6.0 +/- 1.1'  # PL_rl 56 - 50; SE sqrt(1 + 0.25)
    assert claim(rows, 'claim (s1k): switching in the Stable regime')['verdict'] == 'partly'  # 2 points, SE 1.41
    r = claim(rows, 'claim: S1K (the smallest set) gives the lowest ceiling')
    assert r['ours'] == 'full 56.0 (lowest of the larger sets) vs s1k 33.0' and r['effect'] == '+23.0 +/- 1.4' and r['verdict'] == 'reproduced'
    assert not [r for r in A.sequential_claims(curves(), fits()) if r['quantity'].startswith('claim (')]  # one data set: no per-set rows


# ------------------------------------------------------------------ the other own-run figures: stats' claim builders
import json, math, re
from pathlib import Path
from plasticity_nb import paper, stats

ROOT = Path(__file__).resolve().parents[1]


def ceilings(a_post:dict, spread=2.0, seeds=4):
    "A `paradigm_ceilings` table: {(panel, paradigm): A_post}; every SE is spread / sqrt(seeds) = 1"
    return pd.DataFrame([dict(dataset=k[0], paradigm=k[1], a_post=v, spread=spread, seeds=seeds) for k, v in a_post.items()])


BASE = {('base', p): 50.0 for p in ('sft', 'grpo', 'dapo_d', 'upt', 'luffy', 'srft')}


@pytest.mark.parametrize('sat, expected', [(52.82, 'partly'), (52.83, 'reproduced'), (49.9, 'not reproduced')])
def test_sequential_beats_every_paradigm_at_the_two_se_line(sat, expected):
    # SE of each mean: 2 / sqrt(4) = 1; of the difference sqrt(2) = 1.414: the line is at 50 + 2.828
    rows = stats.paradigm_claims(ceilings({**BASE, ('base', 'luffy'): 49.0, ('saturated', 'dapo_d'): sat}))
    r = claim(rows, 'claim: sequential SFT-then-RL (saturated SFT + DAPO_d) beats the best paradigm')
    assert r['verdict'] == expected and r['effect'] == f'{sat - 50:+.1f} +/- 1.4'
    assert r['published'] == '78.1 vs 76.9 (SFT peak)'
    r = claim(rows, 'claim: sequential SFT-then-RL (saturated SFT + DAPO_d) beats the best synchronized')
    assert r['ours'].endswith('vs upt 50.0 ± 1.0')  # the first of the best synchronized from the base (LUFFY is lower)


def test_srft_spread_is_a_log_ratio_with_its_se():
    t = pd.concat([ceilings({('base', 'dapo_d'): 50.0}, spread=1.0, seeds=3), ceilings({('base', 'srft'): 50.0}, spread=4.0, seeds=3)])
    r = claim(stats.paradigm_claims(t), 'claim: SRFT is the least stable')
    # ln 4 = 1.386; SE of a log sd from 3 seeds: 1/sqrt(2 x 2) = 0.5 each, 0.707 together: 1.386 < 1.414
    assert r['effect'] == '+1.4 +/- 0.7' and r['verdict'] == 'partly' and r['ours'].startswith('4.0x')
    t.loc[t.paradigm == 'srft', 'spread'] = 4.2  # ln 4.2 = 1.435 > 1.414
    assert claim(stats.paradigm_claims(t), 'claim: SRFT is the least stable')['verdict'] == 'reproduced'
    one = pd.concat([ceilings({('base', 'dapo_d'): 50.0}, seeds=1), ceilings({('base', 'srft'): 50.0}, seeds=1)])
    assert not [r for r in stats.paradigm_claims(one) if 'SRFT is the least stable' in r['quantity']]  # one seed: no spread to compare


def test_claims_need_their_panels_and_one_seed_has_no_se():
    only_base = stats.paradigm_claims(ceilings(BASE, seeds=1, spread=0.0))
    # Fig 6 without a sequential reference and without SEs: only Pure-RL vs synchronized, and it cannot be reproduced
    assert [r['quantity'] for r in only_base if 'verdict' in r] == ['claim: the best Pure-RL beats the best synchronized method (from the base)']
    assert [r['verdict'] for r in only_base if 'verdict' in r] != ['reproduced']
    assert only_base[0]['ours'] == '50.0 (SE unknown)'
    rows = stats.paradigm_claims(ceilings({**BASE, ('strong', 'upt'): 54.0}))
    r = claim(rows, 'claim: UPT depends on the base')
    assert r['verdict'] == 'reproduced' and r['effect'] == '+4.0 +/- 1.4'


@pytest.mark.parametrize('top, expected', [(52.82, 'partly'), (52.83, 'reproduced'), (50.0, 'not reproduced')])
def test_scale_claim_at_the_two_se_line(top, expected):
    r = stats.scale_claim([50.0, 53.0, top], [1.0, 5.0, 1.0], [0.5, 0.45, 0.4])
    assert r['verdict'] == expected and r['published'] == paper.CLAIMS['scale_raises_ceiling']
    assert 'A_post 50.0 ± 1.0 / 53.0 ± 5.0' in r['ours'] and 'min val loss 0.500 / 0.450 / 0.400' in r['ours']


def test_switch_claims_compare_neighbouring_switch_points():
    t = pd.DataFrame(dict(regime=['base', 'adaptive', 'stable'], max_p_post=[40.0, 43.0, 43.5], max_p_post_se=[0.5, 0.5, 0.5]))
    a, b = stats.switch_claims(t)
    assert a['quantity'].startswith('claim: switching in the Stable regime beats the Adaptive') and a['verdict'] == 'partly'
    assert b['verdict'] == 'reproduced' and b['effect'] == '+3.0 +/- 0.7' and b['published'] == '78.8 vs 74.5 (Qwen2.5-14B)'


def test_peak_with_se_and_fisher_z():
    # the peak is the second evaluation of run b: its SE is read at that step, not at the run's first
    rows = [dict(run=r, stage='rl', step=s, benchmark=b, score=v) for r, s, o, e in [('a', 1, 40.0, 1.0), ('b', 1, 47.0, 1.5), ('b', 2, 48.0, 2.0)]
            for b, v in [('overall', o), ('overall_se', e)]]
    assert stats.peak_with_se(pd.DataFrame(rows)) == (48.0, 2.0)
    e, se = stats.fisher_z(-0.96, 5)
    assert math.isclose(e, 0.5 * math.log(1.96 / 0.04)) and math.isclose(se, 1 / math.sqrt(2))
    assert verdict(e, se) == 'reproduced' and verdict(*stats.fisher_z(-0.85, 5)) == 'partly'


def _code(nb:Path)->str:
    return '\n'.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code')


def test_figure_notebooks_decide_no_verdict_themselves():
    for nb in sorted((ROOT/'nbs'/'figures').glob('*.ipynb')):
        bad = re.findall(r"verdict\s*=|['\"](?:reproduced|partly|not reproduced)['\"]", _code(nb))
        assert not bad, f'{nb.name}: a verdict decided in the notebook ({bad}); use stats.claim_row / a claim function of stats'


def test_published_numbers_live_in_paper_only():
    "No published score (two digits and a decimal, e.g. 79.7) is written out in a figure notebook or a claim-building module"
    pub = set()
    for v in vars(paper).values():
        vals = v.to_numpy().ravel().tolist() if isinstance(v, pd.DataFrame) else list(v.values()) if isinstance(v, dict) else []
        pub |= {f'{x:.1f}' for x in vals if isinstance(x, (int, float)) and not isinstance(x, bool) and abs(x) >= 10}
    files = sorted((ROOT/'nbs'/'figures').glob('*.ipynb')) + [ROOT/'plasticity_nb'/'experiments.py', ROOT/'plasticity_nb'/'analysis.py', ROOT/'plasticity_nb'/'stats.py']
    for f in files:
        text = _code(f) if f.suffix == '.ipynb' else f.read_text()
        hits = set(re.findall(r'(?<![\w.])\d{2,3}\.\d(?![\d])', text)) & pub
        assert not hits, f'{f.name}: published numbers {sorted(hits)} written out; take them from plasticity_nb.paper'


@pytest.mark.parametrize('seq, expected', [(53.83, 'reproduced'), (53.8, 'partly'), (50.5, 'not reproduced')])
def test_sequential_reference_against_the_best_pure_rl(seq, expected):
    # the best Pure-RL from the base is dapo_d at 51 (grpo 50); SEs 1 each: the 2-SE line is 51 + 2.828
    rows = stats.paradigm_claims(ceilings({**BASE, ('base', 'dapo_d'): 51.0}), sequential=('fig3 full-set branch', seq, 1.0))
    r = claim(rows, 'claim: sequential SFT-then-RL (fig3 full-set branch) beats the best Pure-RL')
    assert r['verdict'] == expected and r['ours'] == f'{seq:.1f} ± 1.0 vs dapo_d 51.0 ± 1.0'
    assert r['published'] == '78.1 vs 74.3 (DAPO_d)'


@pytest.mark.parametrize('luffy, expected', [(47.17, 'reproduced'), (47.2, 'partly'), (51.0, 'not reproduced')])
def test_pure_rl_beats_the_best_synchronized(luffy, expected):
    # synchronized: upt, luffy, srft at 45 except luffy; Pure-RL best 50; SE of the difference sqrt(2) -> line at 50 - 2.828
    t = ceilings({**BASE, ('base', 'upt'): 45.0, ('base', 'srft'): 45.0, ('base', 'luffy'): luffy})
    r = claim(stats.paradigm_claims(t), 'claim: the best Pure-RL beats the best synchronized')
    assert r['verdict'] == expected and r['effect'] == f'{50 - luffy:+.1f} +/- 1.4'
    assert r['published'] == '74.3 (DAPO_d) vs 72.7 (LUFFY)' and f'luffy {luffy:.1f}' in r['ours']
