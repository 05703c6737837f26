"Tests for plasticity_nb.tasks: problems checked by an independent evaluator, difficulty ordering, determinism, disjointness"
import ast, operator, random, re
import pytest
from plasticity_nb.tasks import (ALPHABET, LIMIT, RL_LEVELS, make_problem, max_operand, direct_answer_corpus, build_world, check_disjoint,
                                 bench_sizes, BENCH_SIZES, PAPER_SIZES, save_world, load_world, cached_world, world_key,
                                 to_dataset, length_by_difficulty)
from plasticity_nb.rewards import math_reward

OPS = {ast.Add: (operator.add, '+'), ast.Sub: (operator.sub, '-'), ast.Mult: (operator.mul, '*')}


def post_order(prompt):
    "Independent reference: evaluate 'Compute EXPR.' with Python's parser; return the value and each operation in evaluation order"
    m = re.fullmatch(r"Compute (.+)\.\n", prompt)
    assert m, prompt
    steps = []
    def ev(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int): return node.value
        assert isinstance(node, ast.BinOp) and type(node.op) in OPS, ast.dump(node)
        a, b = ev(node.left), ev(node.right)
        f, s = OPS[type(node.op)]
        steps.append(f"{a}{s}{b}={f(a, b)}")
        return f(a, b)
    tree = ast.parse(m.group(1), mode='eval')
    value = ev(tree.body)
    assert value == eval(compile(tree, '<prompt>', 'eval'))  # a second opinion: Python's own evaluation
    return value, steps


def check_chain(row):
    "Every line a op b = c is right, every value in [0, LIMIT), the chain is the expression's evaluation order, the box holds the answer"
    value, steps = post_order(row['prompt'])
    *lines, box = row['completion'].split('\n')
    assert box == f"\\boxed{{{value}}}" and row['answer'] == str(value)
    assert lines == steps
    for line in lines:
        a, s, b, c = re.fullmatch(r"(\d+)([+*-])(\d+)=(\d+)", line).groups()
        assert {'+': int(a) + int(b), '-': int(a) - int(b), '*': int(a) * int(b)}[s] == int(c)
        assert 0 <= int(c) < LIMIT
    assert len(lines) == row['difficulty']
    assert set(row['prompt'] + row['completion']) <= set(ALPHABET)


@pytest.fixture(scope='module')
def world():
    return build_world({}, seed=0)  # the default (tiny profile) sizes


def test_make_problem_many_checked_independently():
    rng = random.Random(123)
    for _ in range(2000):
        d = rng.randint(1, 8)
        check_chain(make_problem(rng, d, max_operand(d)))


def test_example_format():
    r = make_problem(random.Random(3), 3, 50)
    assert r["prompt"].startswith("Compute ") and r["prompt"].endswith(".\n")
    assert re.fullmatch(r"(\d+[+*-]\d+=\d+\n){3}\\boxed\{\d+\}", r['completion'])


def test_every_set_is_correct(world):
    for k, rows in world.items():
        for r in (sum(rows.values(), []) if k == 'benchmarks' else rows):
            if k == 'pretrain' and 'text' in r:
                lines = r['text'].split('\n')
                if re.fullmatch(r'\d+[+*-]\d+=\d+', lines[0]):  # arithmetic facts: every line 'a op b=c' must be right
                    for line in lines:
                        m = re.fullmatch(r'(\d+)([+*-])(\d+)=(\d+)', line)
                        assert m, line
                        a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
                        assert {'+': a + b, '-': a - b, '*': a * b}[op] == c, line
                else:  # an expression reading: the expression, its first value, then each operation in order
                    v = int(lines[1])
                    for line in lines[2:]:
                        m = re.fullmatch(r'([+*-])(\d+)', line)
                        assert m, (line, r['text'])
                        v = {'+': v + int(m[2]), '-': v - int(m[2]), '*': v * int(m[2])}[m[1]]
                    assert v == post_order(f"Compute {lines[0]}.\n")[0], r['text']
            elif k == 'pretrain':
                value, _ = post_order(r['prompt'])
                assert r['completion'] == f"\\boxed{{{value}}}" and r['answer'] == str(value) and r['difficulty'] in (1, 2)
            else: check_chain(r)


def test_math_reward_on_expert_completions(world):
    rows = world['full'] + world['s1k'] + [r for r in world['pretrain'] if 'completion' in r] + sum(world['benchmarks'].values(), [])
    assert math_reward([r['completion'] for r in rows], [r['answer'] for r in rows]) == [1.0] * len(rows)
    wrong = [str(int(r['answer']) + 1) for r in rows[:200]]
    assert math_reward([r['completion'] for r in rows[:200]], wrong) == [0.0] * 200


def test_sizes(world):
    sizes = {k: len(v) for k, v in world.items() if k != 'benchmarks'}
    assert sizes == dict(full=8000, uniform=2000, easy=2000, hard=2000, s1k=250, uniform2x=4000, uniform4x=8000,
                         val=200, rl=2000, mix=360, pretrain=8000)
    assert {k: len(v) for k, v in world['benchmarks'].items()} == BENCH_SIZES
    assert 200 <= sum(BENCH_SIZES.values()) <= 300
    # proportional to the paper's sizes where above the floor, ordered like them
    assert list(BENCH_SIZES) == list(PAPER_SIZES)
    assert BENCH_SIZES['gsm8k'] / BENCH_SIZES['olympiad_bench'] == pytest.approx(1317 / 291, rel=0.05)
    assert sum(bench_sizes(2.0).values()) > sum(BENCH_SIZES.values())


def test_subsets_come_from_full(world):
    full = [r['prompt'] for r in world['full']]
    assert len(set(full)) == len(full)  # unique problems
    for k in ('uniform', 'easy', 'hard', 'uniform2x', 'uniform4x', 'mix'):
        assert {r['prompt'] for r in world[k]} <= set(full), k
        assert len({r['prompt'] for r in world[k]}) == len(world[k]), k
    assert not {r['prompt'] for r in world['s1k']} & set(full)
    # the RL pool is fresh (one pool for every branch, as in the paper): no SFT prompt, at the RL difficulties
    assert not {r['prompt'] for r in world['rl']} & (set(full) | {r['prompt'] for r in world['s1k']})
    assert {r['difficulty'] for r in world['rl']} == set(RL_LEVELS)


def test_difficulty_ordering(world):
    mean = lambda rows, f: sum(map(f, rows)) / len(rows)
    diff = lambda k: mean(world[k], lambda r: r['difficulty'])
    clen = lambda k: mean(world[k], lambda r: len(r['completion']))
    assert diff('easy') < diff('uniform') < diff('hard') < diff('s1k')
    assert clen('easy') < clen('uniform') < clen('hard') < clen('s1k')
    # easy = lowest difficulties of full, hard = highest
    assert max(r['difficulty'] for r in world['easy']) <= min(r['difficulty'] for r in world['hard'])
    lens = length_by_difficulty(world['full'] + world['s1k'])
    assert list(lens) == list(range(1, 8)) and all(a < b for a, b in zip(list(lens.values()), list(lens.values())[1:]))
    b = world['benchmarks']
    bdiff = [mean(b[k], lambda r: r['difficulty']) for k in ('gsm8k', 'math', 'minerva', 'olympiad_bench', 'aime25')]
    assert bdiff == sorted(bdiff)


def test_determinism(world):
    assert build_world({}, seed=0) == world
    other = build_world({}, seed=1)
    assert other['full'] != world['full'] and other['benchmarks'] != world['benchmarks']
    # benchmarks depend only on the seed and the scale, not on the training sizes
    assert build_world(dict(world_full=500, world_subset=100, world_rl=100), seed=0)['benchmarks'] == world['benchmarks']


def test_disjoint(world):
    held = {r['prompt'] for r in world['val']} | {r['prompt'] for v in world['benchmarks'].values() for r in v}
    n_held = len(world['val']) + sum(len(v) for v in world['benchmarks'].values())
    assert len(held) == n_held  # val and the six benchmarks are pairwise disjoint
    for k, rows in world.items():
        if k not in ('val', 'benchmarks'): assert not held & {r['prompt'] for r in rows if 'prompt' in r}, k
    bad = dict(world, rl=world['rl'] + world['val'][:1])
    with pytest.raises(ValueError, match="'val' shares 1 prompts with 'rl'"):
        check_disjoint(bad)


def test_direct_answer_corpus_excludes():
    rows = direct_answer_corpus(0, 300)
    ex = {rows[0]['prompt']}
    assert all(r['prompt'] not in ex for r in direct_answer_corpus(0, 300, exclude=ex))
    assert all(re.fullmatch(r"\\boxed\{\d+\}", r['completion']) for r in rows)


def test_impossible_size_is_a_clear_error():
    # values below 30 and operands up to 9 allow about 520 distinct one-step problems; 6000 rows need 1000 of them
    with pytest.raises(ValueError, match="could not draw .* distinct problems.*world_limit=30, world_max_operand=9"):
        build_world(dict(world_full=6000, world_limit=30, world_max_operand=9), seed=0)


def test_save_load_cache(tmp_path, world):
    small = dict(world_full=300, world_subset=60, world_s1k=20, world_val=30, world_rl=50, world_bench_scale=0.2)
    w = cached_world(small, 3, root=tmp_path)
    (folder,) = tmp_path.glob('world-*')
    assert folder.name == f"world-{world_key(small, 3)}"
    stamp = (folder / 'meta.json').stat().st_mtime_ns
    assert cached_world(small, 3, root=tmp_path) == w == build_world(small, 3)
    assert (folder / 'meta.json').stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert load_world(save_world(w, tmp_path / 'copy')) == w
    assert not [p for p in tmp_path.iterdir() if '.tmp' in p.name]
    assert to_dataset(w['rl']).num_rows == 50
