"The tidy curve table: headline score by hand, validation errors, views"
import numpy as np, pandas as pd, pytest
from plasticity_nb.curves import (CURVE_COLUMNS, PAPER_BENCH_SIZES, overall_score, add_overall, check_curves,
                                  headline, best_per_run, total_exaflops)

BASE = dict(gsm8k=67.81, olympiad_bench=12.71, math=23.21, minerva=8.02, aime=4.5, aime25=1.75)  # Qwen2.5-7B, RETU


def test_paper_sizes():
    assert PAPER_BENCH_SIZES == dict(gsm8k=1317, olympiad_bench=291, math=237, minerva=262, aime=25, aime25=25)
    assert sum(PAPER_BENCH_SIZES.values()) == 2157  # PAPER.md: 2,157 problems


def test_overall_by_hand():
    ws = 67.81*1317 + 12.71*291 + 23.21*237 + 8.02*262 + 4.5*25 + 1.75*25  # = 100762.64
    assert abs(ws - 100762.64) < 1e-6
    assert overall_score(BASE) == round(100762.64 / 2157, 2) == 46.71  # the paper's P0 46.7
    assert overall_score(dict(gsm8k=90, aime=10)) == round((90*1317 + 10*25) / 1342, 2) == 88.51
    with pytest.raises(ValueError, match='no benchmark'):
        overall_score(dict(gpqa=50))


def rows(run, stage, step, scores, **kw):
    base = dict(run=run, dataset='d', paradigm='sft' if stage == 'sft' else 'sft_then_rl', stage=stage, step=step,
                branch_step=np.nan if stage == 'sft' else 100, exaflops=step / 10, val_loss=np.nan, seed=0)
    base['sft_exaflops'] = base['exaflops'] if stage == 'sft' else 10.0
    return [{**base, **kw, 'benchmark': b, 'score': s} for b, s in scores.items()]


def table():
    r = rows('a', 'sft', 0, BASE) + rows('a', 'sft', 100, dict(gsm8k=80, math=40)) + rows('a/rl', 'rl', 1, dict(gsm8k=90, aime=10))
    return pd.DataFrame(r)[CURVE_COLUMNS]


def test_add_overall():
    df = add_overall(table())
    check_curves(df)
    ov = headline(df)
    assert list(ov.run) == ['a', 'a', 'a/rl'] and list(ov.step) == [0, 100, 1]
    assert list(ov.score) == [46.71, round((80*1317 + 40*237) / 1554, 2), 88.51]
    assert list(ov.score)[1] == 73.9
    assert list(ov.exaflops) == [0.0, 10.0, 0.1] and list(ov.sft_exaflops) == [0.0, 10.0, 10.0]
    assert add_overall(df).equals(df)  # recomputed, not doubled
    with_extra = pd.concat([table(), pd.DataFrame(rows('a', 'sft', 0, dict(gpqa=99.)))[CURVE_COLUMNS]])
    assert headline(add_overall(with_extra)).score.iloc[0] == 46.71  # benchmarks outside the sizes are ignored


def test_check_curves_errors():
    df = table()
    check_curves(df)
    with pytest.raises(ValueError, match=r"lacks columns \['val_loss'\]"):
        check_curves(df.drop(columns='val_loss'))
    bad = df.copy(); bad.loc[7, 'stage'] = 'ppo'
    with pytest.raises(ValueError, match=r"column 'stage' row 7 .*'ppo' is not one of"):
        check_curves(bad)
    bad = df.copy(); bad.loc[3, 'score'] = 0.7 - 1
    with pytest.raises(ValueError, match=r"column 'score' row 3"):
        check_curves(bad)
    bad = df.copy(); bad.loc[8, 'score'] = np.nan
    with pytest.raises(ValueError, match=r"column 'score' row 8"):
        check_curves(bad)
    bad = df.copy(); bad.loc[9, 'exaflops'] = -0.5
    with pytest.raises(ValueError, match=r"column 'exaflops' row 9 \(run 'a/rl'\)"):
        check_curves(bad)
    bad = df.copy(); bad.loc[9, 'branch_step'] = np.nan
    with pytest.raises(ValueError, match=r"column 'branch_step' row 9"):
        check_curves(bad)
    bad = df.copy(); bad.loc[2, 'sft_exaflops'] = 5.0
    with pytest.raises(ValueError, match=r"column 'sft_exaflops' row 2"):
        check_curves(bad)
    bad = df.copy(); bad['score'] = bad['score'].astype(str)
    with pytest.raises(ValueError, match=r"column 'score' has dtype"):
        check_curves(bad)
    bad = df.copy(); bad.loc[4, 'benchmark'] = None
    with pytest.raises(ValueError, match=r"column 'benchmark' row 4"):
        check_curves(bad)
    bad = df.astype({"step": float}); bad.loc[5, "step"] = 2.5
    with pytest.raises(ValueError, match=r"column 'step' row 5"):
        check_curves(bad)


def test_views():
    df = add_overall(table())
    b = best_per_run(df)
    assert list(zip(b.run, b.step, b.score)) == [('a', 100, 73.9), ('a/rl', 1, 88.51)]
    g = best_per_run(df, 'gsm8k')
    assert list(g.score) == [80, 90]
    assert list(total_exaflops(headline(df))) == [0.0, 10.0, 10.1]
