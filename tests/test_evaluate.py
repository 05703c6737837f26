"The one evaluation of every paradigm (plasticity_nb.evaluate)"
import pytest, torch
from plasticity_nb.evaluate import evaluate, pick_engine, make_engine, HFEngine, samples_for, samples_from_profile
from plasticity_nb.models import build_tokenizer, build_model
from plasticity_nb.tasks import build_world
from plasticity_nb.curves import overall_score
from plasticity_nb.config import load_profile

@pytest.fixture(scope='module')
def world(): return build_world(dict(world_full=20, world_subset=5, world_s1k=5, world_val=5, world_rl=5, world_bench_scale=0.05), 0)

class Expert:
    "writes the expert solution of every problem"
    def __init__(self, bench): self.sol = {r['prompt']: r['completion'] for rows in bench.values() for r in rows}
    def generate(self, prompts, **kw): return [self.sol[p] for p in prompts]

class OffByOne(Expert):
    "writes the expert steps but boxes answer + 1"
    def generate(self, prompts, **kw):
        return [self.sol[p].rsplit('\\boxed{', 1)[0] + '\\boxed{%d}' % (int(self.sol[p].rsplit('{', 1)[1][:-1]) + 1) for p in prompts]

def test_perfect_scores_100_wrong_scores_0(world):
    bench = world['benchmarks']
    assert set(bench) == {'gsm8k', 'math', 'minerva', 'olympiad_bench', 'aime', 'aime25'}
    k = samples_for(bench, 1, 3)
    perfect = evaluate(None, None, bench, k, engine=Expert(bench))
    assert perfect == {**{b: 100.0 for b in bench}, 'overall': 100.0}
    wrong = evaluate(None, None, bench, k, engine=OffByOne(bench))
    assert wrong == {**{b: 0.0 for b in bench}, 'overall': 0.0}

def test_avg_at_k_and_overall_weights(world):
    bench = {'gsm8k': world['benchmarks']['gsm8k'][:3], 'aime': world['benchmarks']['aime'][:1]}
    calls = []
    class EveryOther(Expert):  # right on every other request, in request order
        def generate(self, prompts, **kw):
            calls.append(len(prompts))
            return [self.sol[p] if i % 2 == 0 else 'I give up' for i,p in enumerate(prompts)]
    s, smp = evaluate(None, None, bench, {'gsm8k': 1, 'aime': 4}, engine=EveryOther(bench), return_samples=True)
    assert calls == [3 + 4]                                    # one batched call, k samples of the aime problem
    assert s['gsm8k'] == pytest.approx(200/3) and s['aime'] == 50.0   # requests: g0 g1 g2 a a a a -> 1,0,1 | 0,1,0,1
    assert s['overall'] == overall_score(s, {'gsm8k': 3, 'aime': 1}) == round((3*200/3 + 50)/4, 2)
    assert [x['sample'] for x in smp if x['benchmark'] == 'aime'] == [0, 1, 2, 3]

def test_bad_inputs(world):
    b = {'gsm8k': world['benchmarks']['gsm8k'][:2]}
    with pytest.raises(ValueError, match=r"samples\['gsm8k'\] = 0"): evaluate(None, None, b, 0, engine=Expert(b))
    with pytest.raises(ValueError, match=r"samples\['gsm8k'\] = None"): evaluate(None, None, b, {'aime': 1}, engine=Expert(b))
    with pytest.raises(ValueError, match="'math' has no rows"): evaluate(None, None, {'math': []}, 1, engine=Expert(b))
    with pytest.raises(ValueError, match='pass the tokenizer'): make_engine(torch.nn.Linear(1, 1), None, 'hf')

def test_one_engine_choice_for_evaluation_sft_and_rl(monkeypatch):
    import importlib.util
    from plasticity_nb import engines, evaluate as ev, trl_hooks
    assert importlib.util.find_spec('vllm') is None
    assert pick_engine is engines.pick_engine and ev.make_engine.__globals__['pick_engine'] is engines.pick_engine
    assert pick_engine('auto') == 'hf' and pick_engine('hf') == 'hf' and pick_engine('fast') == 'fast'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert pick_engine('auto') == 'hf'                         # a GPU alone is not enough for vLLM; fast only by name
    with pytest.raises(engines.EngineUnavailable, match=r"'vllm' cannot run on cuda: vllm is not installed"): pick_engine('vllm')
    from plasticity_nb import engine_choice
    monkeypatch.setattr(engine_choice, '_has_module', lambda name: name == 'vllm')  # the choice is engine_choice's; engines re-exports it
    assert pick_engine('auto') == 'vllm'
    with pytest.raises(engines.EngineUnavailable, match='accepted: auto, hf, compact, fast, cb, vllm'): pick_engine('sglang')

def test_rollout_engine_fast_reaches_the_static_cache_engine(world, monkeypatch):
    "`rollout_engine = fast`: evaluation samples through engines.generate's fast engine, RL gets a trainer with FastRolloutMixin"
    from trl import GRPOTrainer
    from plasticity_nb import evaluate as ev, trl_hooks
    tok = build_tokenizer()
    m = build_model('qwen2', tok, n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64, seed=3)
    bench = {'gsm8k': world['benchmarks']['gsm8k'][:4]}
    hf = evaluate(m, tok, bench, 1, temperature=0, max_new_tokens=12, engine='hf')
    calls, real = [], ev.generate
    def spy(*a, **k): r = real(*a, **k); calls.append(r.engine); return r
    monkeypatch.setattr(ev, 'generate', spy)
    assert evaluate(m, tok, bench, 1, temperature=0, max_new_tokens=12, engine='fast') == hf  # greedy: the same scores
    assert calls == ['fast'] and isinstance(make_engine(m, tok, 'fast'), ev.TextEngine)
    assert trl_hooks.FastRolloutMixin in trl_hooks.with_rollout_engine(GRPOTrainer, pick_engine('fast')).__mro__

def test_samples_from_profile():
    p = load_profile('tiny')
    s = samples_from_profile(p, ['gsm8k', 'aime', 'aime25'])
    assert s == {'gsm8k': p.eval_samples, 'aime': p.eval_samples_small, 'aime25': p.eval_samples_small}

def test_hf_engine_deterministic_and_isolated(world):
    tok = build_tokenizer()
    m = build_model('qwen2', tok, n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64, seed=3)
    m.train()
    prompts = [r['prompt'] for r in world['benchmarks']['gsm8k']][:5] + ['Compute 1+1.']
    eng = HFEngine(m, tok, batch_size=4)
    torch.manual_seed(7); ref = torch.rand(3)
    torch.manual_seed(7)
    a = eng.generate(prompts, temperature=0.7, max_new_tokens=10, seed=11)
    assert torch.equal(torch.rand(3), ref)                     # the caller's random stream is untouched
    assert m.training                                          # the training mode is restored
    assert eng.generate(prompts, temperature=0.7, max_new_tokens=10, seed=11) == a
    assert eng.generate(prompts, temperature=0.7, max_new_tokens=10, seed=12) != a
    assert all(len(tok(c, add_special_tokens=False)['input_ids']) <= 10 for c in a)
    # greedy decoding equals a hand-written argmax loop on one prompt (independent check of padding / caching)
    g = eng.generate(prompts, temperature=0, max_new_tokens=6)
    ids = tok(prompts[0], return_tensors='pt')['input_ids']
    with torch.no_grad():
        for _ in range(6):
            nxt = m(ids).logits[0, -1].argmax()
            if nxt.item() == tok.eos_token_id: break
            ids = torch.cat([ids, nxt.view(1, 1)], 1)
    assert g[0] == tok.decode(ids[0], skip_special_tokens=True)[len(prompts[0]):]

def test_evaluate_real_model_seeded(world):
    tok = build_tokenizer()
    m = build_model('llama', tok, n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64)
    b = {'gsm8k': world['benchmarks']['gsm8k'][:4], 'aime': world['benchmarks']['aime'][:2]}
    r1 = evaluate(m, tok, b, {'gsm8k': 1, 'aime': 2}, max_new_tokens=8, seed=5, return_samples=True)
    r2 = evaluate(m, tok, b, {'gsm8k': 1, 'aime': 2}, max_new_tokens=8, seed=5, return_samples=True)
    assert r1 == r2 and set(r1[0]) == {'gsm8k', 'aime', 'overall'}
