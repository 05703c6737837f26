"""Record the rates (FLOP/s per kind of run) that each profile's finished runs achieved on this machine, so that
`plasticity plan` and `plasticity reproduce` can price a batch on a fresh clone, where nothing has finished yet.

usage: .venv/bin/python bench/cpu_rates.py [--profiles tiny,tiny-full] [--settings settings.ini] [--out bench/cpu_rates.json]
Reads the run registry of each profile (its finished runs only) and writes, per profile, `plan.cpu_rates` over the
runs its plan names, with this machine's description and the runs counted. A profile with no finished run here keeps
what the file already holds for it. Run it on the reference machine after a batch has finished: the rates are what
`plan` divides its FLOP estimates by.
"""
import argparse, datetime, json, os, platform
from pathlib import Path
from plasticity_nb.config import load_profile
from plasticity_nb.plan import _family, cpu_rates, plan_batch


def cpu_name()->str:
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or 'unknown CPU'


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--profiles', default='tiny,tiny-full')
    ap.add_argument('--settings', default=None, help='a settings file whose `runs` holds the finished runs (default: the project\'s)')
    ap.add_argument('--out', default=str(Path(__file__).parent/'cpu_rates.json'))
    a = ap.parse_args(argv)
    old = json.loads(Path(a.out).read_text()).get('profiles', {}) if Path(a.out).exists() else {}
    here = dict(machine=f'{cpu_name()}, {os.cpu_count()} cores', measured=datetime.date.today().isoformat())
    out = dict(profiles=dict(old))
    for name in a.profiles.split(','):
        prof = load_profile(name, path=a.settings)
        rows = [r for r in plan_batch(prof) if r.status == 'done']
        done, kinds = {r.run: r.exaflops for r in rows}, {_family(r.kind) for r in rows}
        rates = {k: v for k, v in cpu_rates(prof['runs'], done).items() if v and k in kinds} if done else {}  # its own kinds only
        if not rates: print(f'{name}: no finished run here, ' + ('the recorded rates kept' if name in old else 'left out')); continue
        out['profiles'][name] = dict(**here, runs=len(done), rates=rates)
        print(f"{name}: {len(done)} finished runs; " + ', '.join(f'{k} {v / 1e9:.1f} GFLOP/s' for k, v in sorted(rates.items())))
    tmp = Path(a.out).with_suffix('.tmp'); tmp.write_text(json.dumps(out, indent=1) + '\n'); tmp.replace(a.out)
    print(f'-> {a.out}')


if __name__ == '__main__':
    main()
