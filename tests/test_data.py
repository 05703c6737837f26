"Tests for plasticity_nb.data: row validation in drop/error modes, parquet and HF-on-disk round trips, derived answers"
import json
import pytest
from plasticity_nb.data import load_rows, load_profile_data, read_records, DataError
from plasticity_nb.tasks import build_world, save_world, PAPER_SIZES

GOOD = [dict(prompt="Compute 2+3.", completion="2+3=5\n\\boxed{5}", answer="5"),
        dict(prompt="Compute 4*2-1.", completion="4*2=8\n8-1=7\n\\boxed{7}", answer="7"),
        dict(prompt="Half of one?", completion="It is \\boxed{\\frac{1}{2}}", answer="0.5")]


def write_lines(path, lines):
    path.write_text(''.join(l + '\n' for l in lines))
    return path


@pytest.fixture
def bad_jsonl(tmp_path):
    lines = [json.dumps(GOOD[0]),                                                    # line 1 ok
             json.dumps(dict(completion="x \\boxed{1}", answer="1")),                 # 2 missing prompt
             json.dumps(dict(prompt="p", completion="   ", answer="1")),              # 3 empty completion
             json.dumps(dict(prompt="p", completion="\\boxed{1}", answer="}{")),      # 4 unparsable answer
             json.dumps(dict(prompt="p", completion="1+" * 100 + "\\boxed{1}", answer="1")),  # 5 too long: 1 + 200 + 9 = 210 chars
             '{"prompt": "p", "completion": ',                                        # 6 invalid JSON
             '',                                                                      # 7 blank: skipped, still counted
             json.dumps(GOOD[1]),                                                     # 8 ok
             json.dumps(dict(prompt="p", completion="so \\boxed{3}")),                # 9 ok, answer derived
             '[1, 2]',                                                                # 10 not an object
             json.dumps(dict(prompt="p", completion="no box here"))]                  # 11 no answer at all
    return write_lines(tmp_path / 'data.jsonl', lines)


def test_drop_mode_counts_every_reason(bad_jsonl):
    rows, s = load_rows(bad_jsonl, max_len=100)
    assert [r['answer'] for r in rows] == ['5', '7', '3']
    assert s['kept'] == 3 and s['read'] == 10 and s['derived_answer'] == 1
    assert s['dropped'] == dict(missing_field=2, empty_field=1, unparsable_answer=1, too_long=1, invalid_json=2)
    assert [(e['row'], e['reason'], e['field']) for e in s['examples']] == [
        (2, 'missing_field', 'prompt'), (3, 'empty_field', 'completion'), (4, 'unparsable_answer', 'answer'),
        (5, 'too_long', None), (6, 'invalid_json', None)]


@pytest.mark.parametrize("keep_lines,msg", [
    ([1, 2], "line 2: field 'prompt': missing_field"),
    ([1, 3], "line 2: field 'completion': empty_field"),
    ([1, 4], "line 2: field 'answer': unparsable_answer"),
    ([1, 5], "line 2: too_long (210 characters > max_len 100)"),
    ([1, 6], "line 2: invalid_json"),
    ([1, 11], "line 2: field 'answer': missing_field"),
])
def test_error_mode_names_file_line_field(tmp_path, bad_jsonl, keep_lines, msg):
    lines = bad_jsonl.read_text().split('\n')
    f = write_lines(tmp_path / 'one.jsonl', [lines[i - 1] for i in keep_lines])
    with pytest.raises(DataError, match="one.jsonl: " + msg.replace('(', r'\(').replace(')', r'\)')):
        load_rows(f, on_bad='error', max_len=100)


def test_error_mode_passes_good_file(tmp_path):
    f = write_lines(tmp_path / 'g.jsonl', [json.dumps(r) for r in GOOD])
    rows, s = load_rows(f, on_bad='error')
    assert rows == [dict(r, answer=r['answer']) for r in GOOD] and s['dropped'] == {}


def test_token_length_with_a_tokenizer(tmp_path):
    f = write_lines(tmp_path / 't.jsonl', [json.dumps(r) for r in GOOD])
    words = lambda text, add_special_tokens=False: dict(input_ids=text.split())  # one token per word
    rows, s = load_rows(f, max_len=4, tokenizer=words)
    assert [r['prompt'] for r in rows] == ["Compute 2+3.", "Compute 4*2-1."]  # 3 tokens each; the third row has 6
    assert s['dropped'] == dict(too_long=1) and 'tokens' in s['examples'][0]['detail']


def test_derived_answer_when_column_absent(tmp_path):
    f = write_lines(tmp_path / 'r1.jsonl', [json.dumps(dict(question=r['prompt'], response=r['completion'])) for r in GOOD])
    rows, s = load_rows(f, prompt_col='question', completion_col='response')
    assert [r['answer'] for r in rows] == ['5', '7', '\\frac{1}{2}'] and s['derived_answer'] == 3


def test_parquet_round_trip_and_verl_layout(tmp_path):
    import pyarrow as pa, pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(GOOD), tmp_path / 'a.parquet')
    rows, s = load_rows(tmp_path / 'a.parquet')
    assert rows == GOOD and s['format'] == 'parquet'
    # verl's RL parquet: chat prompt, nested reference answer, no completion
    verl = [dict(data_source='gsm8k', prompt=[dict(role='user', content=r['prompt'])],
                 reward_model=dict(style='rule', ground_truth=r['answer'])) for r in GOOD]
    verl.append(dict(data_source='gsm8k', prompt=[dict(role='user', content='q')], reward_model=dict(style='rule', ground_truth='')))
    pq.write_table(pa.Table.from_pylist(verl), tmp_path / 'rl.parquet')
    rows, s = load_rows(tmp_path / 'rl.parquet', answer_col='reward_model.ground_truth', require_completion=False)
    assert rows == [dict(prompt=r['prompt'], answer=r['answer']) for r in GOOD]
    assert s['dropped'] == dict(empty_field=1) and s['examples'][0]['row'] == 4
    with pytest.raises(DataError, match=r"rl.parquet: row 4: field 'answer': empty_field"):
        load_rows(tmp_path / 'rl.parquet', answer_col='reward_model.ground_truth', require_completion=False, on_bad='error')
    with pytest.raises(DataError, match="no column 'completion' for the completion"):
        load_rows(tmp_path / 'rl.parquet', answer_col='reward_model.ground_truth')


def test_hf_disk_round_trip(tmp_path):
    from datasets import Dataset, DatasetDict
    Dataset.from_list(GOOD).save_to_disk(str(tmp_path / 'ds'))
    rows, s = load_rows(tmp_path / 'ds')
    assert rows == GOOD and s['format'] == 'hf_disk'
    DatasetDict(train=Dataset.from_list(GOOD[:2]), test=Dataset.from_list(GOOD[2:])).save_to_disk(str(tmp_path / 'dd'))
    assert load_rows(tmp_path / 'dd')[0] == GOOD[:2]
    DatasetDict(a=Dataset.from_list(GOOD[:2]), b=Dataset.from_list(GOOD[2:])).save_to_disk(str(tmp_path / 'ab'))
    with pytest.raises(DataError, match=r"splits \['a', 'b'\]"):
        load_rows(tmp_path / 'ab')


def test_missing_or_wrong_format_is_one_line(tmp_path):
    (tmp_path / 'x.csv').write_text("a,b\n")
    (tmp_path / 'broken.parquet').write_text("not parquet")
    (tmp_path / 'folder').mkdir()
    for p, msg in [(tmp_path / 'nope.jsonl', 'no such file'), (tmp_path / 'x.csv', "unsupported format '.csv'"),
                   (tmp_path / 'broken.parquet', 'cannot read it'), (tmp_path / 'folder', 'not a saved Hugging Face dataset')]:
        with pytest.raises(DataError) as e:
            load_rows(p)
        text = str(e.value)
        assert str(p) in text and msg in text and '\n' not in text
        if msg != 'not a saved Hugging Face dataset': assert 'accepted: .jsonl' in text
    with pytest.raises(ValueError, match="on_bad='skip'"):
        load_rows(tmp_path / 'x.csv', on_bad='skip')


def test_all_rows_bad_is_an_error(tmp_path):
    f = write_lines(tmp_path / 'q.jsonl', [json.dumps(dict(question=r['prompt'], completion=r['completion'])) for r in GOOD])
    with pytest.raises(DataError, match="all 3 rows are bad"):
        load_rows(f)


def test_jsonl_line_numbers_count_blank_lines(tmp_path):
    f = write_lines(tmp_path / 'b.jsonl', ['', json.dumps(GOOD[0]), '', 'oops'])
    assert [n for n, _ in read_records(f)[2]] == [2, 4]


SMALL = dict(world_full=80, world_subset=20, world_s1k=5, world_val=10, world_rl=20, world_bench_scale=0.1)


def test_profile_tiny_world_cached(tmp_path):
    w = load_profile_data(dict(SMALL, runs=str(tmp_path), seed=2))
    assert w == build_world(SMALL, 2)
    assert len(list(tmp_path.glob('world-*'))) == 1


def test_profile_real_files(tmp_path):
    w = build_world(SMALL, 0)
    save_world(w, tmp_path / 'w')
    bad = tmp_path / 'w' / 'rl_bad.jsonl'
    bad.write_text((tmp_path / 'w' / 'rl.jsonl').read_text() + '{"prompt": "p", "answer": ""}\n')
    prof = dict(data_train=str(tmp_path / 'w' / 'full.jsonl'), data_rl=str(bad), data_bench=str(tmp_path / 'w' / 'bench'),
                on_bad_row='drop', seed=0)
    real, sums = load_profile_data(prof, return_summary=True)
    assert set(real) == {'full', 'rl', 'mix', 'benchmarks'}  # only the configured sets
    assert real['full'] == w['full'] and real['rl'] == w['rl'] and real['mix'] == w['rl']
    assert list(real['benchmarks']) == list(PAPER_SIZES) and real['benchmarks'] == w['benchmarks']
    assert sums['rl']['dropped'] == dict(empty_field=1)
    with pytest.raises(DataError, match=f"line {len(w['rl']) + 1}: field 'answer'"):
        load_profile_data(dict(prof, on_bad_row='error'))
    with pytest.raises(DataError, match="no benchmark files"):
        load_profile_data(dict(prof, data_bench=str(tmp_path)))
