"Every module notebook's examples run and their assertions hold (nbdev-test), one test per notebook; JupyterLab serves and runs them."
import asyncio, json, os, re, secrets, socket, subprocess, sys, time, urllib.request, uuid
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NBS = sorted(p.name for p in (ROOT/'nbs').glob('[0-9]*.ipynb')) + ['index.ipynb']

@pytest.mark.parametrize('nb', NBS)
def test_notebook(nb):
    r = subprocess.run([str(BIN/'nbdev-test'), f'nbs/{nb}'], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

def test_nbdev_test_skips_the_figure_notebooks():
    "nbs/figures/.notest: a plain `nbdev-test` runs the module notebooks, never the training batch"
    assert (ROOT/'nbs'/'figures'/'.notest').exists()
    r = subprocess.run([str(BIN/'nbdev-test'), 'nbs/figures'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'No files were eligible for testing' in r.stdout, r.stdout + r.stderr

# forecast_backtest's closing note discusses its baseline and writes no claim rows with verdicts: exempt from the closing check only
NO_CLOSING_CLAIMS = {'forecast_backtest'}

def test_figure_notebooks_teach():
    "Every figure notebook has at least 120 words of markdown prose and ends its prose with how to read the claims it writes"
    nbs = sorted((ROOT/'nbs'/'figures').glob('*.ipynb'))
    assert nbs
    bad = []
    for p in nbs:
        md = [''.join(c['source']) for c in json.loads(p.read_text())['cells'] if c['cell_type'] == 'markdown']
        words = sum(len(re.findall(r'\w+', m)) for m in md)
        if words < 120: bad.append(f'{p.name}: {words} words of markdown (< 120)')
        if p.stem not in NO_CLOSING_CLAIMS and not (md and 'claims' in md[-1].lower()):
            bad.append(f'{p.name}: the last markdown cell does not say how to read the claims')
    assert not bad, '\n'.join(bad)

# JupyterLab: the server the README's set-up installs, on localhost, driving the project's kernel

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _api(base, token, path, method='GET', body=None):
    req = urllib.request.Request(f'{base}{path}', method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={'Authorization': f'token {token}', 'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=30) as r:
        data = r.read()
        return r.status, (json.loads(data) if data and r.headers.get_content_type() == 'application/json' else data.decode())

async def _execute(ws_url, token, cells):
    "Run each source on the kernel behind `ws_url` (Jupyter's JSON websocket protocol); the execute_reply of each"
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect
    ws = await websocket_connect(HTTPRequest(ws_url, headers={'Authorization': f'token {token}'}))
    session, replies = uuid.uuid4().hex, []
    for src in cells:
        msg_id = uuid.uuid4().hex
        ws.write_message(json.dumps(dict(channel='shell', buffers=[], parent_header={}, metadata={},
            header=dict(msg_id=msg_id, msg_type='execute_request', session=session, username='test', version='5.3'),
            content=dict(code=src, silent=False, store_history=True, user_expressions={}, allow_stdin=False, stop_on_error=True))))
        while True:
            m = json.loads(await asyncio.wait_for(ws.read_message(), timeout=120))
            if m['channel'] == 'shell' and m['parent_header'].get('msg_id') == msg_id:
                replies.append(m['content']); break
    ws.close()
    return replies

def test_jupyterlab_serves_nbs_and_runs_a_notebook(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    base = f'http://127.0.0.1:{port}'
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(tmp_path/'config'), 'JUPYTER_RUNTIME_DIR': str(tmp_path/'runtime')}
    srv = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
                            '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={ROOT}',
                            *(['--allow-root'] if os.geteuid() == 0 else [])],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path/'server.log', 'w'))
    try:
        t0 = time.time()
        while True:
            try:
                if _api(base, token, '/api/status')[0] == 200: break
            except OSError: pass
            assert srv.poll() is None and time.time() - t0 < 90, (tmp_path/'server.log').read_text()[-3000:]
            time.sleep(0.5)
        status, lab = _api(base, token, '/lab')
        assert status == 200 and 'JupyterLab' in lab
        _, listing = _api(base, token, '/api/contents/nbs')
        names = {c['name'] for c in listing['content']}
        assert set(NBS) <= names and 'figures' in names
        # open nbs/00_config.ipynb in a session (its kernel starts in nbs/, as in JupyterLab) and run every code cell
        _, nb = _api(base, token, '/api/contents/nbs/00_config.ipynb')
        cells = [c['source'] for c in nb['content']['cells'] if c['cell_type'] == 'code']
        _, sess = _api(base, token, '/api/sessions', 'POST', dict(path='nbs/00_config.ipynb', type='notebook', kernel=dict(name='python3')))
        ws_url = f"ws://127.0.0.1:{port}/api/kernels/{sess['kernel']['id']}/channels?session_id={uuid.uuid4().hex}"
        replies = asyncio.run(_execute(ws_url, token, cells + [f"import os, plasticity_nb\nassert os.path.samefile(os.getcwd(), {str(ROOT/'nbs')!r}), os.getcwd()\n"
                                                          f"assert plasticity_nb.__file__.startswith({str(ROOT)!r}), plasticity_nb.__file__"]))
        bad = [(i, r.get('ename'), r.get('evalue')) for i, r in enumerate(replies) if r['status'] != 'ok']
        assert not bad and len(replies) == len(cells) + 1, bad
        _api(base, token, f"/api/sessions/{sess['id']}", 'DELETE')
        _api(base, token, '/api/shutdown', 'POST')
        assert srv.wait(timeout=60) == 0
    finally:
        if srv.poll() is None: srv.terminate(); srv.wait(timeout=30)
