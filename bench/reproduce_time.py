"""Time the main job: the whole papermill batch from empty run/output folders, then again with everything cached.

    .venv/bin/python bench/reproduce_time.py [--profile tiny] [--jobs 2] [--only fig3,...] [--keep DIR]

Prints the two wall times and their ratio (the issue's budgets: <= 30 min cold, < 1 min cached, on 2 CPU cores).
The cold run uses fresh folders under DIR (default: a temporary folder), so the repository's runs/ is untouched.
"""
import argparse, configparser, os, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from plasticity_nb import reproduce as R

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--profile', default='tiny'); ap.add_argument('--jobs', type=int, default=2)
    ap.add_argument('--only'); ap.add_argument('--keep', help='folder for the fresh runs/ and outputs/ (kept)')
    a = ap.parse_args()
    d = Path(a.keep or tempfile.mkdtemp(prefix='plasticity-bench-')); d.mkdir(parents=True, exist_ok=True)
    cp = configparser.ConfigParser(interpolation=None); cp.read(ROOT/'settings.ini')
    cp['DEFAULT']['outputs'] = str(d/'outputs'); cp['DEFAULT']['runs'] = str(d/'runs')
    for k in ('retu_cache', 'retu_fit_settings'): cp['DEFAULT'][k] = str((ROOT/cp['DEFAULT'][k]).resolve())
    s = d/'settings.ini'
    with open(s, 'w') as f: cp.write(f)
    times = []
    for label in ('cold', 'cached'):
        t0 = time.time(); outs = R.run_batch(a.profile, a.only, None, str(s), jobs=a.jobs); times.append(time.time() - t0)
        print(f"{label}: {times[-1]:.1f} s; " + ', '.join(f'{o.name} {o.status} {o.seconds:.0f}s' for o in outs), flush=True)
    print(f"profile {a.profile}, jobs {a.jobs}, {os.cpu_count()} CPUs: cold {times[0]/60:.1f} min, cached {times[1]:.1f} s, "
          f"cold / cached = {times[0]/times[1]:.1f}x; outputs in {d/'outputs'/a.profile}")

if __name__ == '__main__': main()
