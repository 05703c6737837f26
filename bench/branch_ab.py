"""A recipe change measured on one data set's RL branches, against the same branches of a finished registry.

The branches are trained under `--set key=value` overrides into a scratch registry whose base, world and SFT runs are
links to the reference registry's (so only the RL branches train); then, per branch, the generation each drew
(rounds, groups kept / dropped / skipped a step, exaFLOPs, CPU-seconds a step by the run's own clock) and what it
learned (scores at the branch point, last, mean of steps >= 150, the fitted A_post and PL_rl) are printed beside the
reference run's. CPU-seconds compare only runs trained with the same thread layout; the rounds and FLOPs always do.

    python bench/branch_ab.py --dataset s1k --set ds_skip=0.5 --ref runs --scratch /tmp/ab [--settings settings.ini]
"""
import argparse, statistics as st
from pathlib import Path
from plasticity_nb.config import load_profile, find_settings, SettingsError
from plasticity_nb import experiments as E, analysis as A, runs as R

def branch_stats(path:Path)->dict:
    "What one finished RL branch drew and scored, from its metrics and summary"
    run = R.Run(path)
    tr, ev = [r for r in run.read_metrics() if r.get('event') == 'train'], R.eval_rows(run)
    done, m = run.summary(), lambda k: st.mean(r.get(k, 0) for r in tr)
    late = [e['scores']['overall'] for e in ev if e['step'] >= 150] or [ev[-1]['scores']['overall']]
    return dict(rounds=m('ds/rounds'), kept=m('ds/groups_kept'), dropped=m('ds/groups_dropped'), skipped=m('ds/skipped'),
                exaflops=tr[-1]['exaflops'], cpu_s_step=done.get('cpu_seconds_per_step', float('nan')),
                start=ev[0]['scores']['overall'], last=ev[-1]['scores']['overall'], late_mean=st.mean(late))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--dataset', required=True, help="an own-run data set: full, s1k, easy, uniform, hard")
    ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', help='a settings override (repeatable)')
    ap.add_argument('--ref', required=True, help='the reference registry, holding the finished base, SFT and branches')
    ap.add_argument('--scratch', required=True, help='registry for the new branches (created; links to --ref for the rest)')
    ap.add_argument('--settings', default=None); ap.add_argument('--profile', default='tiny-full')
    ap.add_argument('--branches', type=int, default=2)
    a = ap.parse_args()
    bad = [kv for kv in a.set if '=' not in kv]
    if bad: ap.error(f"--set {bad[0]!r}: expected KEY=VALUE, e.g. --set ds_skip=0.5")
    over = dict(kv.split('=', 1) for kv in a.set)  # typed and checked by load_profile, as the settings file would be
    ref, scratch = Path(a.ref).resolve(), Path(a.scratch).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    for d in ref.iterdir():  # everything but the RL-like runs, so that only the branches train
        if d.name.split('-')[0] in ('base', 'sft', 'world') and not (scratch/d.name).exists(): (scratch/d.name).symlink_to(d)
    path = a.settings or find_settings()
    try: prof_ref, prof = load_profile(a.profile, path=path, runs=str(ref)), load_profile(a.profile, path=path, runs=str(scratch), **over)
    except SettingsError as e: ap.error(str(e))
    fits, runs = {}, []
    for name, p in (('reference', prof_ref), (' '.join(a.set) or 'same', prof)):
        c = E.sequential(p, a.dataset, branches=a.branches, pure_rl=False)
        fits[name] = A.fit_curves(c).set_index('ckpt')
        rl = c[c.stage == 'rl'].groupby('branch_step').run.first()  # {branch step: run id} of this registry's branches
        runs.append({int(k): Path(p['runs'])/v for k, v in rl.items()})
    old, new = runs
    sft_run = c[c.stage == 'sft'].run.iloc[0]
    cols = 'rounds kept dropped skipped exaflops cpu_s_step start last late_mean'.split()
    print(f"{a.dataset} branches of {sft_run}; reference {ref}, new {scratch} ({' '.join(a.set)})")
    print(f"{'branch':>6} {'run':<12} " + ' '.join(f'{c:>10}' for c in cols) + f" {'A_post':>7} {'PL_rl':>6}")
    for step in sorted(set(old) & set(new)):
        for (name, f), reg in zip(fits.items(), (old, new)):
            s, fit = branch_stats(reg[step]), f.loc[step]
            print(f"{step:>6} {name[:12]:<12} " + ' '.join(f'{s[c]:>10.3g}' for c in cols) + f" {fit.a_post:>7.2f} {fit.pl_rl:>6.2f}")
        o, n = branch_stats(old[step]), branch_stats(new[step])
        print(f"{step:>6} {'new / ref':<12} " + ' '.join(f'{(n[c] / o[c] if o[c] else float("nan")):>10.2f}' for c in cols))

if __name__ == '__main__': main()
