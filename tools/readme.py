"""Render nbs/index.ipynb to README.md (nbdev-readme needs Quarto, which is not installable here).

Markdown cells are copied; code cells become ```python blocks (cells starting with `#| hide` are skipped).
Usage: python tools/readme.py [--check]   (--check: exit 1 if README.md is out of date)
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def render(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    cells = json.loads(Path(nb_path).read_text())['cells']
    out = ['<!-- generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file -->', '']
    for c in cells:
        src = ''.join(c['source']).strip('\n')
        if not src or src.startswith('#| hide'): continue
        if c['cell_type'] == 'markdown': out += [src, '']
        elif c['cell_type'] == 'code': out += ['```python', src, '```', '']
    return '\n'.join(out).rstrip() + '\n'

if __name__ == '__main__':
    txt, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv:
        ok = readme.exists() and readme.read_text() == txt
        if not ok: print('README.md is out of date with nbs/index.ipynb: run python tools/readme.py', file=sys.stderr)
        sys.exit(0 if ok else 1)
    readme.write_text(txt)
