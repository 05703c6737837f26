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


# --- decoding errors are bad rows, numbered by line (issue 11) ---

def test_bad_byte_is_one_dropped_row_with_its_line(tmp_path):
    good = [json.dumps(r).encode() for r in GOOD]
    f = tmp_path / 'latin1.jsonl'
    f.write_bytes(good[0] + b'\r\n' + b'\r\n' + b'{"prompt": "Caf\xe9?", "completion": "\\\\boxed{1}", "answer": "1"}\r\n'
                  + good[1] + b'\n' + b'{"prompt": "p", "completion": \n' + good[2] + b'\n')
    # lines: 1 good, 2 blank, 3 Latin-1 byte 0xe9, 4 good, 5 malformed JSON, 6 good
    rows, s = load_rows(f)
    assert [r['answer'] for r in rows] == ['5', '7', '0.5']
    assert s['dropped'] == dict(not_utf8=1, invalid_json=1) and s['unit'] == 'line'
    assert [(e['row'], e['reason']) for e in s['examples']] == [(3, 'not_utf8'), (5, 'invalid_json')]
    assert 'byte 0xe9' in s['examples'][0]['detail']
    with pytest.raises(DataError) as e:
        load_rows(f, on_bad='error')
    msg = str(e.value)
    assert msg.startswith(f"{f}: line 3: not_utf8 (not UTF-8 text") and '\n' not in msg and 'on_bad_row = drop' in msg
    f.write_bytes(good[0] + b'\n' + b'{"prompt": "p", "completion": \n')
    with pytest.raises(DataError, match=r"latin1.jsonl: line 2: invalid_json \(invalid JSON: .* at column \d+\)"):
        load_rows(f, on_bad='error')


def test_profile_drop_honoured_for_decoding_errors(tmp_path):
    f = tmp_path / 'train.jsonl'
    f.write_bytes(b''.join(json.dumps(r).encode() + b'\n' for r in GOOD) + b'\xff\xfe garbage\n')
    w, sums = load_profile_data(dict(data_train=str(f), on_bad_row='drop'), return_summary=True)
    assert w['full'] == GOOD and sums['full']['dropped'] == dict(not_utf8=1) and sums['full']['examples'][0]['row'] == 4
    with pytest.raises(DataError, match=r"train.jsonl: line 4: not_utf8"):
        load_profile_data(dict(data_train=str(f), on_bad_row='error'))


def test_binary_file_is_not_blamed_on_the_columns(tmp_path):
    f = tmp_path / 'model.jsonl'
    f.write_bytes(b'\x89PNG\r\n\x1a\n\x00\x00\xff\xd8')
    with pytest.raises(DataError) as e:
        load_rows(f)
    msg = str(e.value)
    assert 'all 3 rows are bad' in msg  # split at b'\\n': three lines and 'accepted: .jsonl' in msg and 'prompt_col' not in msg and '\n' not in msg


# --- .json files ---

def test_json_array_is_read_as_rows_numbered_by_line(tmp_path):
    f = tmp_path / 'rows.json'
    f.write_text('[\n' + json.dumps(GOOD[0]) + ',\n\n' + json.dumps(GOOD[1]) + ',\n  "oops",\n'
                 + json.dumps(dict(prompt='p', completion='x', answer='banana')) + ',\n'
                 + json.dumps(GOOD[2], indent=2) + '\n]\n')
    # lines: 1 '[', 2 GOOD[0], 3 blank, 4 GOOD[1], 5 "oops", 6 banana, 7-11 GOOD[2] (indented), 12 ']'
    fmt, unit, recs, cols = read_records(f)
    assert (fmt, unit, cols) == ('json', 'line', None) and [n for n, _ in recs] == [2, 4, 5, 6, 7]
    rows, s = load_rows(f)
    assert rows == GOOD and s['format'] == 'json'
    assert [(e['row'], e['reason']) for e in s['examples']] == [(5, 'invalid_json'), (6, 'unparsable_answer')]
    assert 'not a JSON object' in s['examples'][0]['detail'] and "'banana'" in s['examples'][1]['detail']
    with pytest.raises(DataError, match=r"rows.json: line 5: invalid_json \(a JSON string, not a JSON object\)"):
        load_rows(f, on_bad='error')


def test_json_array_with_a_bad_byte_drops_that_element(tmp_path):
    f = tmp_path / 'a.json'
    f.write_bytes(b'[' + json.dumps(GOOD[0]).encode() + b',\n{"prompt": "Caf\xe9", "completion": "\\\\boxed{1}", "answer": "1"},\n'
                  + json.dumps(GOOD[1]).encode() + b']')
    rows, s = load_rows(f)
    assert rows == GOOD[:2] and s['dropped'] == dict(not_utf8=1) and s['examples'][0]['row'] == 2
    assert 'byte 0xe9 at line 2 column 16' in s['examples'][0]['detail']


@pytest.mark.parametrize("text,where,what", [
    ('[\n{"prompt": "p"},\n{"prompt": \n]', 'line 4 column 1', 'not a valid JSON array (Expecting value)'),  # the value is missing at ']'
    ('[\n{"prompt": "p"}\n{"prompt": "q"}]', 'line 3 column 1', "expected ',' or ']'"),
    ('[{"prompt": "p"}]\n[1]', 'line 2 column 1', "more text after the closing ']'"),
])
def test_broken_json_array_is_one_line_with_line_and_column(tmp_path, text, where, what):
    f = tmp_path / 'b.json'
    f.write_text(text)
    with pytest.raises(DataError) as e:
        load_rows(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: {where}") and what in msg and '\n' not in msg and 'one JSON object per line' in msg


def test_json_lines_in_a_json_file_and_a_single_object(tmp_path):
    f = write_lines(tmp_path / 'hf.json', [json.dumps(r) for r in GOOD])  # what datasets' to_json writes
    rows, s = load_rows(f)
    assert rows == GOOD and s['format'] == 'jsonl'
    one = tmp_path / 'one.json'
    one.write_text(json.dumps(dict(version=2, rows=GOOD), indent=2))
    with pytest.raises(DataError) as e:
        load_rows(one)
    msg = str(e.value)
    assert "one.json: one JSON object (keys: version, rows), not rows; if its 'rows' list holds the rows" in msg and '\n' not in msg


def test_array_in_a_jsonl_file_is_named(tmp_path):
    f = write_lines(tmp_path / 'arr.jsonl', [json.dumps(GOOD)])
    with pytest.raises(DataError, match=r"line 1: a JSON array, not a JSON object \(a whole array of rows is read from a .json file\)"):
        load_rows(f)


# --- answers Math-Verify cannot check ---

def test_word_answers_are_bad_rows_latex_kept(tmp_path):
    answers = ['\\frac{1}{2}', '\\sqrt{2}', '[0, 1)', '(-\\infty, 3]', '2\\sqrt{3}', '\\text{Evelyn}', 'banana', 'yes', '}{']
    f = write_lines(tmp_path / 'ans.jsonl', [json.dumps(dict(prompt='p', completion='x', answer=a)) for a in answers])
    rows, s = load_rows(f)
    assert [r['answer'] for r in rows] == answers[:6]
    assert s['dropped'] == dict(unparsable_answer=3)
    assert [(e['row'], e['field']) for e in s['examples']] == [(7, 'answer'), (8, 'answer'), (9, 'answer')]
    assert "word 'banana' as a product of letters" in s['examples'][0]['detail'] and 'no expression' in s['examples'][2]['detail']
    # a derived answer goes through the same check
    f = write_lines(tmp_path / 'derived.jsonl', [json.dumps(dict(prompt='p', completion='so \\boxed{banana}')), json.dumps(GOOD[0])])
    with pytest.raises(DataError, match=r"derived.jsonl: line 1: field 'answer': unparsable_answer \(Math-Verify reads the word 'banana'"):
        load_rows(f, on_bad='error')
