"Tests for plasticity_nb.rewards: boxed extraction, Math-Verify equality, the fast path, DAPO overlong shaping"
import random, threading
import pytest
from plasticity_nb.rewards import (extract_boxed, math_reward, answers_equal, verify_mv, plain_number, parsable, unparsable_reason,
                                   overlong_penalty, overlong_reward_func, completion_text)


@pytest.mark.parametrize("text,expected", [
    ("17+5=22\n\\boxed{22}", "22"),
    ("\\boxed{1}\n\\boxed{2}", "2"),                       # the last box counts
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),  # nested braces
    ("\\boxed{{1,2}}", "{1,2}"),
    ("\\boxed{5} \\boxed{6", "5"),                           # unclosed last box: earlier complete one
    ("no box 12", None), ("", None), (None, None),
])
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize("completion,answer", [
    ("\\boxed{1/2}", "0.5"), ("\\boxed{0.5}", "1/2"), ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("\\boxed{12}", "12"), ("x\n\\boxed{12.0}", "12"), ("\\boxed{0.50}", "0.5"),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}"), ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}"),
])
def test_equivalent_forms_score_one(completion, answer):
    assert math_reward([completion], [answer]) == [1.0]


@pytest.mark.parametrize("completion,answer", [
    ("\\boxed{13}", "12"), ("\\boxed{1/3}", "0.5"), ("\\boxed{\\sqrt{2}}", "2"),
    ("12", "12"),                    # missing box: no answer
    ("the answer is \\boxed{}", "0"),  # empty box
    ("\\boxed{12", "12"),            # unclosed box
    ("\\boxed{12}", ""),             # no reference
])
def test_wrong_or_missing_scores_zero(completion, answer):
    assert math_reward([completion], [answer]) == [0.0]


def test_conversational_and_trl_kwargs():
    comps = [[{"role": "assistant", "content": "3*4=12\n\\boxed{12}"}], [{"role": "assistant", "content": "\\boxed{11}"}]]
    assert math_reward(comps, ["12", "12"], prompts=["a", "b"], completion_ids=[[1], [2]], trainer_state=None) == [1.0, 0.0]
    assert completion_text({"content": "x"}) == "x"


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="one answer per completion"):
        math_reward(["\\boxed{1}"], ["1", "2"])


def test_fast_path_agrees_with_math_verify():
    rng = random.Random(1)
    pairs = []
    for _ in range(200):
        a = rng.randrange(-50, 1000)
        b = a if rng.random() < .5 else a + rng.choice([-1, 1, 10])
        pairs.append((str(a), str(b)))
    pairs += [("0.5", "0.50"), ("0.25", "0.3"), ("1.5", "1.500000"), ("007", "7"), ("-0", "0"), ("100", "100.0")]
    for p, g in pairs:
        assert plain_number(p) and plain_number(g)
        assert answers_equal(p, g) == verify_mv(p, g), (p, g)


def test_plain_number_boundaries():
    assert plain_number("12") and plain_number("-3.5") and plain_number(" 7 ")
    assert not plain_number("1/2") and not plain_number("3.0000001") and not plain_number("1e3") and not plain_number("")


def test_parsable():
    assert parsable("12") and parsable("\\frac{1}{2}") and parsable("\\sqrt{2}")
    assert not parsable("") and not parsable("   ") and not parsable("}{") and not parsable(None) and not parsable("banana")


def test_works_off_the_main_thread():
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", math_reward(["\\boxed{\\frac{1}{2}}"], ["0.5"])))
    t.start(); t.join()
    assert out["r"] == [1.0]


def test_overlong_penalty_matches_dapo_formula():
    L, C = 100, 20  # hand-computed: window starts at 80
    assert overlong_penalty([50, 80, 81, 90, 100, 101], L, C) == [0.0, 0.0, -0.05, -0.5, -1.0, -1.0]
    assert overlong_penalty([100, 101], L, 0) == [0.0, -1.0]
    with pytest.raises(ValueError, match="cache"):
        overlong_penalty([1], 10, -1)


def test_overlong_reward_func_uses_token_ids_else_chars():
    f = overlong_reward_func(10, 4)
    assert f(["abc", "abcdefghi"], completion_ids=[[0] * 3, [0] * 9]) == [0.0, -0.75]
    assert f(["abcdefghij", "ab"]) == [-1.0, 0.0]


@pytest.mark.parametrize("answer", [
    "\\frac{1}{2}", "\\dfrac{3}{4}", "\\sqrt{2}", "2\\sqrt{3}", "\\sqrt[3]{2}", "[0, 1)", "(-\\infty, 3]",
    "(-\\infty,-2]\\cup[3,\\infty)", "\\{1,2\\}", "x^2+1", "2xy", "\\pi r^2", "\\sin x", "5\\%", "90^\\circ",
    "5 meters", "\\text{Evelyn}", "\\text{(C)}", "C", "3+4i", "\\begin{pmatrix} a & b \\end{pmatrix}",
])
def test_latex_answers_stay_parsable(answer):
    assert parsable(answer) and unparsable_reason(answer) is None


@pytest.mark.parametrize("answer,why", [
    ("banana", "the word 'banana' as a product of letters"),   # Math-Verify returns a**3*b*n**2
    ("yes", "the word 'yes'"), ("no solution", "the word 'solution'"), ("sin(x)", "the word 'sin'"),
    ("10 dollars", "the word 'dollars'"),
    ("}{", "no expression"), ("a\\cdot b\\cdot c", "raw text"), ("", "empty"), (None, "empty"),
])
def test_words_and_garbage_are_not_parsable(answer, why):
    assert not parsable(answer) and why in unparsable_reason(answer)


def test_why_words_are_refused():
    "Math-Verify does parse a word, as the product of its letters, so 'banana' would equal 'nabana'"
    from math_verify import parse
    assert str(parse("\\boxed{banana}")[0].doit()) == 'a**3*b*n**2'
    assert answers_equal("nabana", "banana")  # why such a reference is useless
