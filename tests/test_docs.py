"`plasticity docs`: the site built offline from the notebooks, one page per module notebook documenting its public API."
import html, importlib, inspect, json, re, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent/'plasticity'

def _modules():
    "(page, module) of every module notebook: the page name is nbdev's (numeric prefix dropped), the module its default_exp"
    out = []
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        m = re.search(r'#\|\s*default_exp\s+([\w.]+)', nb.read_text())
        if m: out.append((re.sub(r'^\d+[a-zA-Z0-9]*_', '', nb.stem) + '.html', f'plasticity_nb.{m.group(1)}'))
    return out

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('docs')/'site'
    r = subprocess.run([str(EXE), 'docs', '--out', str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == f"docs: {out/'index.html'} (static files: open it in a browser)"
    return out

def test_a_page_per_module_documenting_its_public_functions(site):
    mods = _modules()
    assert len(mods) >= 20
    for page, name in mods:
        text = (site/page).read_text()
        mod = importlib.import_module(name)
        public = [n for n in mod.__all__ if (inspect.isfunction(getattr(mod, n)) or inspect.isclass(getattr(mod, n)))
                  and getattr(mod, n).__module__ == name]
        missing = [n for n in public if f'<h3 id="{n.lower()}">' not in text]
        assert not missing, f'{page}: no show_doc for {missing}'
        for n in public[:3]:  # each entry carries the signature and the docstring
            doc = inspect.getdoc(getattr(mod, n))
            if doc: assert html.escape(doc.splitlines()[0].split('`')[0][:30], quote=False) in text, (page, n)

def test_index_gallery_modules_and_search(site):
    index = (site/'index.html').read_text()
    assert '<h2 id="gallery">' in index
    for png in sorted((ROOT/'nbs'/'gallery').glob('*.png')):
        assert f'src="nbs/gallery/{png.name}"' in index and (site/'nbs'/'gallery'/png.name).read_bytes() == png.read_bytes()
    for page, _ in _modules(): assert f'href="{page}"' in index
    entries = json.loads((site/'search_index.js').read_text().removeprefix('window.SEARCH = ').rstrip().rstrip(';'))
    hits = [e for e in entries if e['t'] == 'run_batch']
    assert hits and hits[0]['u'] == 'reproduce.html#run_batch' and 'papermill' in hits[0]['x']

def test_every_link_and_image_resolves_offline(site):
    pages = list(site.rglob('*.html'))
    ids = {p: set(re.findall(r' id="([^"]+)"', p.read_text())) for p in pages}
    bad = []
    for p in pages:
        text = p.read_text()
        assert not re.search(r'<(script|link|img)[^>]+(src|href)="https?:', text), f'{p.name} loads something from the network'
        for u in re.findall(r'<(?:a|img|link|script)\s[^>]*?(?:href|src)="([^"]+)"', text):
            if re.match(r'^(https?:|mailto:|data:)', u): continue
            f, _, anchor = html.unescape(u).partition('#')
            t = (p.parent/f).resolve() if f else p
            if not t.exists() or (anchor and t.suffix == '.html' and anchor not in ids.get(t, set())): bad.append((p.relative_to(site), u))
    assert not bad, bad[:20]

def test_bad_out_is_one_line(tmp_path):
    (tmp_path/'f').write_text('x')
    r = subprocess.run([str(EXE), 'docs', '--out', str(tmp_path/'f')], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and 'not a folder' in r.stderr, r.stderr
