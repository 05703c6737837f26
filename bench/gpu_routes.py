#!/usr/bin/env python
"""The training routes on the device, each timed, for bench/gpu_session.sh (issue 13).

    python bench/gpu_routes.py smoke --out DIR       # the smoke profile: SFT on `full`, a DAPO branch, Pure-RL, the fits
    python bench/gpu_routes.py rehearsal --out DIR   # the rehearsal profile through `plasticity train sft|rl|syn`

Writes DIR/<route>.json (rewritten after every stage, so a run cut short keeps what it measured). Runs on the CPU too
(slowly); on a GPU the trainers and the evaluation use it. `--engine` sets the profile's rollout_engine.
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys, tempfile, time, traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

def _save(out: Path, name: str, res: dict):
    (out/f'{name}.json').write_text(json.dumps(res, indent=1, default=str))

def _device():
    import torch
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'

def smoke(a):
    from plasticity_nb.config import load_profile, set_offline
    from plasticity_nb import experiments as E, analysis as A, runs as R
    set_offline()
    work = Path(a.work or tempfile.mkdtemp(prefix='smoke_'))
    prof = load_profile('smoke', path=ROOT/'settings.ini', runs=str(work/'runs'), outputs=str(work/'outputs'),
                        **({'rollout_engine': a.engine} if a.engine else {}))
    res = dict(route='smoke', device=_device(), engine=prof['rollout_engine'], stages={})
    t0 = time.time()
    try:
        curves = E.sequential(prof, 'full', branches=1, pure_rl=True)
        res['stages']['sequential_s'] = round(time.time() - t0, 1)
        fits = A.fit_curves(curves)
        res['fits'] = fits[['dataset', 'paradigm', 'ckpt', 'p_sft', 'a_post', 'pl_rl']].round(2).to_dict('records')
        res['curve_rows'] = len(curves)
        for run in R.find_runs(work/'runs'):
            rows = run.read_metrics() if run.metrics_path.exists() else []
            spp = [r.get('sec_per_step') for r in rows if r.get('sec_per_step')] + [r.get('step_time') for r in rows if r.get('step_time')]
            res['stages'][run.name] = dict(status=run.status(), rows=len(rows), sec_per_step=spp[-3:])
        res['ok'] = True
    except Exception as e:
        res.update(ok=False, error=f"{type(e).__name__}: {e}"[:2000]); traceback.print_exc()
    res['seconds'] = round(time.time() - t0, 1)
    _save(a.out, 'smoke', res)
    return res['ok']

def _train(kind, cfg, log):
    t = time.time()
    p = subprocess.run([sys.executable, '-m', 'plasticity_nb.train', kind, '--config', str(cfg)], cwd=ROOT,
                       capture_output=True, text=True)
    log.write(f"==== train {kind} rc={p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}\n"); log.flush()
    last = (p.stdout.strip().splitlines() or [''])[-1]
    return dict(rc=p.returncode, seconds=round(time.time() - t, 1), result=last[:1500])

def rehearsal(a):
    from plasticity_nb import rehearsal as H
    work = Path(a.work or tempfile.mkdtemp(prefix='rehearsal_'))
    res = dict(route='rehearsal', device=_device(), engine=a.engine or 'profile', stages={})
    t0 = time.time()
    log = open(a.out/'rehearsal_train.log', 'w')
    try:
        paths = H.prepare(work/'assets')
        ov = dict(runs=str(work/'runs'), **{k: str(v) for k, v in paths.items()}, **({'rollout_engine': a.engine} if a.engine else {}))
        st = res['stages']
        st['sft'] = _train('sft', H.run_file(work/'sft.yaml', ROOT/'settings.ini', data='full', overrides=ov), log)
        sft_dir = Path(json.loads(st['sft']['result'].replace("'", '"')).get('run')) if st['sft']['rc'] == 0 else None
        _save(a.out, 'rehearsal', res)
        if sft_dir:
            ck = sorted((sft_dir/'checkpoints').glob('checkpoint-*'), key=lambda p: int(p.name.split('-')[1]))[-1]
            recs = [json.loads(l) for l in (sft_dir/'metrics.jsonl').read_text().splitlines() if l.strip()]
            st['sft']['records'] = [dict(step=r['step'], val_loss=r.get('val_loss'), overall=r['scores'].get('overall'),
                                         sec_per_step=r.get('sec_per_step')) for r in recs]
            st['rl'] = _train('rl', H.run_file(work/'rl.yaml', ROOT/'settings.ini', method='dapo', init=str(ck), overrides=ov), log)
            _save(a.out, 'rehearsal', res)
            st['syn'] = _train('syn', H.run_file(work/'syn.yaml', ROOT/'settings.ini', method='luffy', init=str(ck), overrides=ov), log)
        res['ok'] = all(s.get('rc') == 0 for s in st.values()) and len(st) == 3
    except Exception as e:
        res.update(ok=False, error=f"{type(e).__name__}: {e}"[:2000]); traceback.print_exc()
    res['seconds'] = round(time.time() - t0, 1)
    _save(a.out, 'rehearsal', res)
    return res['ok']

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('route', choices=['smoke', 'rehearsal'])
    p.add_argument('--out', type=Path, default=Path(os.environ.get('OUT') or ROOT/'bench'/'out'))
    p.add_argument('--work', default=None, help='folder for runs and files (default: a new temporary folder)')
    p.add_argument('--engine', default=None, help="rollout_engine override ('fast', 'hf', ...)")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    sys.exit(0 if {'smoke': smoke, 'rehearsal': rehearsal}[a.route](a) else 1)
