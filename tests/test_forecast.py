"Forecasting A_post from partial curves (plasticity_nb.forecast): the curve-file contract, interval calibration, the backtest, the commands"
import csv, json, math, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from plasticity_nb.fit import sigmoid_gain
from plasticity_nb.forecast import (Prior, NU_NOISE, NU_SHAPE, GRID_SD, forecast_branch, read_curves, branches_of, cache_branches,
                                    branch_shapes, backtest, backtest_summary, fit_main, forecast_main, prefix, OUT_FIELDS)
from plasticity_nb.cli import main as cli_main

FIELDS = ['branch', 'p_sft', 'pl_rl', 'a_post', 'a_post_lo68', 'a_post_hi68', 'a_post_lo95', 'a_post_hi95']


def own_file(path, names=('ckpt360', '007', 'b c'), n=20, seed=0):
    "A tidy curve file of sigmoid branches with noise; branch names kept as text"
    rng, rows = np.random.default_rng(seed), []
    for k, name in enumerate(names):
        for x in np.r_[0, np.linspace(2, 60, n)]:
            rows.append(dict(branch=name, x=x, score=70 + k + sigmoid_gain(x, 6 - k, 10 + k, 1.5) + (rng.normal(0, 0.3) if x else 0)))
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def run_cli(capsys, argv):
    rc = cli_main(argv); out = capsys.readouterr()
    return rc, out.out, out.err


# --- the curve-file contract ---------------------------------------------------------------------------------

@pytest.mark.parametrize('text, msg', [
    ('branch,x,score\nb,0,70\nb,abc,71\n', "line 3: x = 'abc' is not a finite number >= 0"),
    ('branch,x,score\nb,0,70\nb,-1,71\n', "line 3: x = '-1' is not a finite number >= 0"),
    ('branch,x,score\nb,0,70\nb,1,nan\n', "line 3: score = 'nan' is not a finite number"),
    ('branch,x,score\nb,0,70\n,1,71\n', "line 3: branch = '' is not any non-empty name"),
    ('branch,x,score\nb,0,70\nb,0,71\n', "line 3: branch 'b' has x = 0 twice (first on line 2)"),
    ('branch,step,score\nb,0,70\n', "no column(s) x; a curve file needs branch, x, score"),
])
def test_bad_rows_name_file_line_and_what_is_accepted(tmp_path, text, msg):
    p = tmp_path/'c.csv'; p.write_text(text)
    with pytest.raises(ValueError) as e: read_curves(p)
    assert str(p) in str(e.value) and msg in str(e.value) and '\n' not in str(e.value)


def test_branches_need_the_branch_point_and_enough_points(tmp_path):
    p = tmp_path/'c.csv'; p.write_text('branch,x,score\nb,1,70\nb,2,71\nb,3,72\nb,4,73\n')
    with pytest.raises(ValueError, match=r"branch 'b' \(lines 2-5\) has no x = 0 row; accepted: the branch point"): branches_of(read_curves(p), p)
    p.write_text('branch,x,score\nb,0,70\nb,2,71\n')
    with pytest.raises(ValueError, match=r"has 1 points after x = 0; accepted: at least 3"): branches_of(read_curves(p), p)


def test_csv_and_parquet_read_alike(tmp_path):
    csv = own_file(tmp_path/'c.csv')
    df = pd.read_csv(csv, dtype={'branch': str}); df.to_parquet(tmp_path/'c.parquet')
    a, b = branches_of(read_curves(csv)), branches_of(read_curves(tmp_path/'c.parquet'))
    assert [x['branch'] for x in a] == [x['branch'] for x in b] == ['ckpt360', '007', 'b c']
    for u, v in zip(a, b): np.testing.assert_allclose(u['gain'], v['gain']); assert u['p_sft'] == v['p_sft']
    bad = tmp_path/'c.txt.json'; bad.write_text('{"branch": "b", "x": 0, "score": 70}\n{"branch": "b", "x": "zero", "score": 1}\n')
    with pytest.raises(ValueError, match=r"line 2: x = 'zero' is not"): read_curves(bad)


# --- the commands ---------------------------------------------------------------------------------------------

def test_forecast_json_fields_and_branch_names(tmp_path, capsys):
    rc, out, err = run_cli(capsys, ['forecast', str(own_file(tmp_path/'c.csv')), '--json'])
    assert rc == 0, err
    recs = json.loads(out)
    assert [r['branch'] for r in recs] == ['ckpt360', '007', 'b c']  # kept as given (text, leading zero and space)
    for r in recs:
        assert list(r) == OUT_FIELDS and set(FIELDS) <= set(r)
        assert r['a_post_lo95'] <= r['a_post_lo68'] <= r['a_post'] <= r['a_post_hi68'] <= r['a_post_hi95']
        assert r['a_post'] == pytest.approx(r['p_sft'] + r['pl_rl'], abs=1e-3)
    # truth: 70 + k + (6 - k) = 76 for every branch, reached to within the noise
    assert all(abs(r['a_post'] - 76) < 1.5 for r in recs)


def test_fit_user_file_quick(tmp_path, capsys):
    rc, out, err = run_cli(capsys, ['fit', str(own_file(tmp_path/'c.csv')), '--json', '--quick', '--figure', str(tmp_path/'f.png')])
    assert rc == 0, err
    recs = json.loads(out)
    assert set(FIELDS + ['c_mid', 'b', 'a_post_bayes']) <= set(recs[0]) and (tmp_path/'f.png').stat().st_size > 1000
    assert all(abs(r['a_post'] - 76) < 1.5 and abs(r['c_mid'] - 10 - i) < 5 for i, r in enumerate(recs))


def test_bad_file_is_one_line_exit_2(tmp_path, capsys):
    p = tmp_path/'c.csv'; p.write_text('branch,x,score\nb,0,70\nb,x1,71\n')
    for cmd in ('fit', 'forecast'):
        rc, out, err = run_cli(capsys, [cmd, str(p)])
        assert rc == 2 and err.count('\n') == 1 and f'plasticity {cmd}: error: {p}: line 3' in err
    with pytest.raises(SystemExit) as e: cli_main(['forecast'])  # a usage error, as argparse reports them
    assert e.value.code == 2 and 'give either a curve file or --cache DIR' in capsys.readouterr().err


def test_fit_released_branches_still_works(retu_dir, capsys):
    rc, out, err = run_cli(capsys, ['fit', '--cache', str(retu_dir/'cache'), '--settings', str(retu_dir/'fit_settings.json'), '--json'])
    assert rc == 0, err
    assert len(json.loads(out)) == 33 and {'scene', 'ckpt', 'a_post'} <= set(json.loads(out)[0])


# --- calibration on simulated curves --------------------------------------------------------------------------

def simulate(prior, p_sft, rng, x):
    "One curve drawn from the forecaster's own model: noise variance, PL given it, a t-distributed shape inside the grid, AR(1) noise"
    s2 = NU_NOISE * prior.noise_var / rng.chisquare(NU_NOISE)
    pl = rng.normal(prior.a_post - p_sft, math.sqrt(s2 / (prior.noise_var / prior.a_post_sd ** 2)))
    L, sd = np.linalg.cholesky(prior.cov), np.sqrt(np.diag(prior.cov))
    while True:
        z = prior.mu + L @ rng.normal(size=2) / math.sqrt(rng.chisquare(NU_SHAPE) / NU_SHAPE)
        if (np.abs(z - prior.mu) < GRID_SD * sd).all(): break
    e = np.zeros(len(x)); e[0] = rng.normal(0, math.sqrt(s2 / (1 - prior.rho ** 2)))
    for i in range(1, len(x)): e[i] = prior.rho * e[i - 1] + rng.normal(0, math.sqrt(s2))
    return pl, sigmoid_gain(x, pl, math.exp(z[1]), math.exp(z[0])) + e


def coverage(n_sims, upto, seed=0):
    prior = Prior(np.array([math.log(1.5), math.log(12.0)]), np.diag([0.4 ** 2, 0.35 ** 2]), 78.0, 1.5, 0.15, 0.2, 10)
    x = np.linspace(2, 60, 30); k = int(upto * len(x)); rng = np.random.default_rng(seed); hit68 = hit95 = 0
    for _ in range(n_sims):
        pl, g = simulate(prior, 72.0, rng, x)
        f = forecast_branch(x[:k], g[:k], 72.0, prior, rounds=0)
        hit68 += f.a_post_lo68 <= 72 + pl <= f.a_post_hi68; hit95 += f.a_post_lo95 <= 72 + pl <= f.a_post_hi95
    return hit68 / n_sims, hit95 / n_sims


def test_intervals_are_calibrated_on_400_simulated_curves():
    c68, c95 = coverage(400, 0.5)  # measured 0.6875 and 0.9475 (2026-12-04)
    # about 2 binomial SEs each side (0.023 and 0.011 at n = 400): bounds 1.7x too wide would cover ~99.7% and fail
    assert abs(c68 - 0.68) <= 0.05 and abs(c95 - 0.95) <= 0.025, (c68, c95)


@pytest.mark.slow
def test_intervals_are_calibrated_at_every_fraction():
    for upto in (0.3, 0.7, 1.0):
        c68, c95 = coverage(600, upto, seed=1)
        assert abs(c68 - 0.68) <= 0.05 and abs(c95 - 0.95) <= 0.025, (upto, c68, c95)


# --- the backtest on the authors' 33 branches (issue 12's yardstick) --------------------------------------------

def test_backtest_on_the_released_branches(retu_dir):
    bs, fits = cache_branches(retu_dir/'cache', retu_dir/'fit_settings.json')
    shapes = branch_shapes(bs, fits); targets = [b['p_sft'] + f.pl for b, f in zip(bs, fits)]
    half = backtest_summary(backtest(bs, shapes, targets, 0.5))
    assert half['branches'] == 33 and half['median_abs_error'] <= 0.8 and 0.55 <= half['cover68'] <= 0.85, half
    assert backtest_summary(backtest(bs, shapes, targets, 0.3))['median_abs_error'] <= 1.4
    # the prior never sees the branch it forecasts: moving that branch's own shape changes nothing
    far = shapes.copy(); far.loc[far['branch'] == bs[0]['branch'], ['u', 'v', 'a_post']] = [3.0, 9.0, 200.0]
    a, b = backtest(bs[:1], shapes, targets[:1], 0.5), backtest(bs[:1], far, targets[:1], 0.5)
    assert a['a_post'].iloc[0] == b['a_post'].iloc[0]


def _half_file(path, bs, grouped):
    "The first half of each released branch as a user's curve file: branch, x, score (and the data set as group)"
    with open(path, 'w', newline='') as fh:
        w = csv.writer(fh); w.writerow(['branch', 'x', 'score'] + (['group'] if grouped else []))
        for b in bs:
            h = prefix(b, 0.5)
            for x, g in zip(h['x'], h['gain']): w.writerow([b['branch'], x, b['p_sft'] + g] + ([b['group']] if grouped else []))
    return path


def test_forecast_of_a_plain_curve_file_from_half_of_each_released_branch(retu_dir, tmp_path, capsys):
    bs, fits = cache_branches(retu_dir/'cache', retu_dir/'fit_settings.json')
    truth = {b['branch']: b['p_sft'] + f.pl for b, f in zip(bs, fits)}  # the authors' full-curve ceilings
    got = {}
    for grouped in (False, True):
        assert forecast_main([str(_half_file(tmp_path/f'half{grouped}.csv', bs, grouped)), '--json']) == 0
        rows = json.loads(capsys.readouterr().out)
        e = np.array([abs(r['a_post'] - truth[r['branch']]) for r in rows])
        in68 = np.array([r['a_post_lo68'] <= truth[r['branch']] <= r['a_post_hi68'] for r in rows])
        got[grouped] = (len(rows), float(np.median(e)), float(in68.mean()), int(((e > 4) & ~in68).sum()))
    # measured 2026-12-04: plain 0.62 points, 68% covers 64%, no miss over 4 (it was 0.85 with misses to 4.5);
    # with the data set as group 0.78, 58% (it was 0.83, a miss of 13.9)
    n, med, cov, bad = got[False]
    assert n == 33 and med <= 0.7 and 0.55 <= cov <= 0.85 and bad == 0, got
    assert got[True][1] <= 0.85 and got[True][3] == 0, got
