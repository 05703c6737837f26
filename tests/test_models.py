"Tokenizer, tiny model factory, local loading and the cached base model (plasticity_nb.models)"
import json, tempfile
from pathlib import Path
import pytest, torch
from plasticity_nb.models import (build_tokenizer, build_model, model_from_profile, load_local, load_tokenizer, n_params,
                                  pretrain_base, default_alphabet, full_text, is_model_dir)
from plasticity_nb.config import load_profile
from plasticity_nb.tasks import ALPHABET, build_world

TEXT = "Compute 16*4-23+47.16*4=64\n64-23=41\n41+47=88\n\\boxed{88}"

@pytest.fixture(scope='module')
def tok(): return build_tokenizer()

def test_tokenizer_one_token_per_char(tok):
    ids = tok(TEXT)['input_ids']
    assert ids[0] == tok.bos_token_id and len(ids) == len(TEXT) + 1
    assert tok.convert_ids_to_tokens(ids[1:]) == list(TEXT)          # each character is its own token
    assert tok.decode(ids, skip_special_tokens=True) == TEXT
    assert set(ALPHABET) <= set(default_alphabet())
    assert tok.unk_token_id not in tok(ALPHABET)['input_ids']

def test_tokenizer_unknown_and_specials(tok):
    assert tok('a§b')['input_ids'][2] == tok.unk_token_id
    assert tok('7<eos>')['input_ids'][-1] == tok.eos_token_id         # TRL appends the eos text
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}) == 4
    small = build_tokenizer('01+=', bos=False)
    assert small('1+1=0')['input_ids'] == [small.convert_tokens_to_ids(c) for c in '1+1=0']
    with pytest.raises(ValueError, match='alphabet is empty'): build_tokenizer('')

def test_tokenizer_round_trip_every_world_text(tok, tmp_path):
    w = build_world(dict(world_full=50, world_subset=10, world_s1k=10, world_val=10, world_rl=10, world_bench_scale=0.05), 0)
    texts = [full_text(r) for r in w['full'] + w['s1k']]
    tok.save_pretrained(tmp_path)
    t2 = load_tokenizer(tmp_path)
    for t in texts:
        assert t2(t)['input_ids'] == tok(t)['input_ids']
        assert t2.decode(t2(t)['input_ids'], skip_special_tokens=True) == t
    assert t2.padding_side == 'left' and t2.pad_token_id == tok.pad_token_id

def _hand_count(V, L, H, nh, nkv, F, qkv_bias):
    "parameters of a tied-embedding Qwen2/Llama decoder, counted from the architecture"
    kv = nkv * H // nh
    attn = H*H + H*kv + H*kv + H*H + ((H + 2*kv) if qkv_bias else 0)
    return L * (attn + 3*H*F + 2*H) + V*H + H

@pytest.mark.parametrize('family,bias,cls', [('qwen2', True, 'Qwen2ForCausalLM'), ('llama', False, 'LlamaForCausalLM')])
def test_param_counts_and_shapes(tok, family, bias, cls):
    m = build_model(family, tok, n_layers=4, hidden=128, n_heads=4, n_kv_heads=2, ffn=512, max_len=256)
    assert type(m).__name__ == cls
    assert n_params(m) == _hand_count(len(tok), 4, 128, 4, 2, 512, bias)
    assert 5e5 < n_params(m) < 2e6
    x = torch.tensor([tok(TEXT)['input_ids']] * 3)
    assert m(x).logits.shape == (3, x.shape[1], len(tok))
    assert m.config.eos_token_id == tok.eos_token_id and m.config.pad_token_id == tok.pad_token_id

def test_build_model_seeded_and_checked(tok):
    a, b = (build_model('llama', tok, n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64, seed=s) for s in (0, 0))
    c = build_model('llama', tok, n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64, seed=1)
    assert torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)
    with pytest.raises(ValueError, match="accepted"): build_model('gpt2', tok)
    with pytest.raises(ValueError, match='n_heads % n_kv_heads'): build_model('qwen2', tok, hidden=64, n_heads=4, n_kv_heads=3)

def test_model_from_profile(tok):
    p = load_profile('tiny')
    m = model_from_profile(p, tok)
    assert m.config.num_hidden_layers == p.n_layers and m.config.hidden_size == p.hidden
    assert m.config.model_type == p.model_family

def test_load_local_round_trip_and_errors(tok, tmp_path):
    m = build_model('qwen2', tok, n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64)
    m.save_pretrained(tmp_path/'m'); tok.save_pretrained(tmp_path/'m')
    assert is_model_dir(tmp_path/'m')
    m2, t2 = load_local(tmp_path/'m')
    x = torch.tensor([t2(TEXT)['input_ids']])
    assert torch.allclose(m2(x).logits, m(x).logits, atol=1e-6)
    with pytest.raises(FileNotFoundError, match='nope'): load_local(tmp_path/'nope')
    (tmp_path/'empty').mkdir()
    with pytest.raises(ValueError, match=r"empty.*not a transformers model folder"): load_local(tmp_path/'empty')
    (tmp_path/'cfg').mkdir(); (tmp_path/'cfg'/'config.json').write_text('{}')
    with pytest.raises(ValueError, match=r"found \['config.json'\]"): load_local(tmp_path/'cfg')

def test_pretrain_base_cached(tok, tmp_path):
    corpus = [{'prompt': f'Compute {a}+{b}.', 'completion': f'\\boxed{{{a+b}}}'} for a in range(6) for b in range(6)]
    m = build_model('qwen2', tok, n_layers=1, hidden=32, n_heads=2, n_kv_heads=1, ffn=64)
    w0 = m.model.embed_tokens.weight.detach().clone()
    p = pretrain_base(m, tok, corpus, steps=4, out_dir=tmp_path/'base', batch=8, max_len=32)
    meta = json.loads((p/'pretrain.json').read_text())
    assert meta['steps'] == 4 and meta['n_rows'] == len(corpus) and meta['train_loss'] > 0
    mb, tb = load_local(p)
    assert not torch.equal(mb.model.embed_tokens.weight, w0)          # it trained
    assert sorted(x.name for x in tmp_path.iterdir()) == ['base']      # no temporary folder left
    mtime = (p/'model.safetensors').stat().st_mtime
    assert pretrain_base(m, tok, corpus, steps=4, out_dir=p, batch=8, max_len=32) == p
    assert (p/'model.safetensors').stat().st_mtime == mtime           # reused, not retrained
    with pytest.raises(ValueError, match="'steps': \\(4, 5\\)"): pretrain_base(m, tok, corpus, steps=5, out_dir=p, batch=8)
    (tmp_path/'junk').mkdir(); (tmp_path/'junk'/'x').write_text('x')
    with pytest.raises(ValueError, match='no complete base model'): pretrain_base(m, tok, corpus, 4, tmp_path/'junk')
    with pytest.raises(ValueError, match="row 0: needs 'text'"): pretrain_base(m, tok, [{'q': 1}], 4, tmp_path/'b2')

def test_base_model_path(tmp_path):
    from plasticity_nb.models import base_model_path
    corpus = [{'prompt': f'Compute {a}+1.\n', 'completion': f'\\boxed{{{a+1}}}'} for a in range(16)]
    p = load_profile('tiny', pretrain_steps='2', n_layers='1', hidden='32', n_heads='2', n_kv_heads='1', ffn='64')
    out = base_model_path(p, corpus, tmp_path/'base')
    m, t = load_local(out)
    assert m.config.num_hidden_layers == 1 and json.loads((out/'pretrain.json').read_text())['steps'] == 2
    q = load_profile('tiny', model_path=str(tmp_path/'missing'))
    with pytest.raises(FileNotFoundError, match='missing'): base_model_path(q, corpus, tmp_path/'b2')
    assert base_model_path(load_profile('tiny', model_path=str(out)), corpus, tmp_path/'b3') == out

def test_pieces_tokenizer_round_trip_and_base(tmp_path):
    "The `pieces` tokenizer: the same text back from every world row, rows ~1.5x shorter, and a base model that keeps it"
    from plasticity_nb.models import base_model_path, world_tokenizer
    from plasticity_nb.tasks import TOKEN_PIECES
    pt, ct = world_tokenizer('pieces'), world_tokenizer('chars')
    w = build_world(dict(world_full=200, world_subset=10, world_s1k=10, world_val=10, world_rl=200, world_bench_scale=0.05), 0)
    texts = [full_text(r) for r in w['full'] + w['rl']]
    n_p, n_c = (sum(len(t(x)['input_ids']) for x in texts) for t in (pt, ct))
    for x in texts: assert pt.decode(pt(x)['input_ids'], skip_special_tokens=True) == x and pt.unk_token_id not in pt(x)['input_ids']
    assert 1.3 < n_c / n_p < 1.8, (n_c, n_p)  # numbers 10-99 and the wrapper whole (the tiny world's rows: 1.53x)
    p = load_profile('tiny', pretrain_steps='2', n_layers='1', hidden='32', n_heads='2', n_kv_heads='1', ffn='64', tokenizer='pieces')
    out = base_model_path(p, [{'prompt': 'Compute 12+1.\n', 'completion': '\\boxed{13}'}] * 4, tmp_path/'base')
    m, t = load_local(out)
    assert len(t) == len(ct) + len(TOKEN_PIECES) == m.config.vocab_size
    assert t.convert_ids_to_tokens(t('Compute 12+1.\n')['input_ids'])[1:3] == ['Compute ', '12']
