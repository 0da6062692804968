"""The LLM judge against a local OpenAI-compatible test server that returns canned judgements."""

from __future__ import annotations

import pytest
from eval_fixtures import judge_server

from clinlm.evaluate.judge import (
    CACHE_FILE,
    PROMPT_FILE,
    RUBRIC,
    chat_url,
    judge,
    parse_score,
)


@pytest.fixture()
def server():
    with judge_server() as (url, requests):
        yield url, requests


CASES = [
    {"question": "Is there a murmur?", "reference": "Yes, a holosystolic murmur.", "facts": {"murmur": "present"}, "response": "Yes: a holosystolic murmur, grade 2."},
    {"question": "Is there a murmur?", "reference": "Yes, a holosystolic murmur.", "facts": {"murmur": "present"}, "response": "There is no murmur."},
    {"question": "Is there a murmur?", "reference": "Yes.", "facts": {"murmur": "present"}, "response": "Maybe."},
]


def test_judge_scores_parses_and_caches(server, tmp_path):
    server, requests = server
    results = judge(CASES, server, "judge-1", tmp_path)
    assert [r["score"] for r in results] == [92.0, 10.0, None]  # the third reply has no score
    assert not any(r["cached"] for r in results)
    assert len(requests) == 3
    sent = requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["temperature"] == 0.0 and sent["body"]["model"] == "judge-1"
    assert sent["body"]["messages"][0]["content"] == RUBRIC
    assert '"murmur": "present"' in sent["body"]["messages"][1]["content"]  # the label facts are given
    assert RUBRIC in (tmp_path / PROMPT_FILE).read_text()

    again = judge(CASES, server, "judge-1", tmp_path)  # a re-run asks nothing new
    assert len(requests) == 3
    assert [r["score"] for r in again] == [92.0, 10.0, None] and all(r["cached"] for r in again)

    judge(CASES[:1], server, "judge-2", tmp_path)  # another judge model is another cache entry
    assert len(requests) == 4
    assert len((tmp_path / CACHE_FILE).read_text().splitlines()) == 4


def test_judge_errors_say_what_to_do(server, tmp_path):
    server, _ = server
    with pytest.raises(ValueError, match="HTTP 404.*--judge-model"):
        judge(CASES[:1], server, "model-missing", tmp_path)
    with pytest.raises(ValueError, match="could not be reached.*--judge-url"):
        judge(CASES[:1], "http://127.0.0.1:9/v1", "judge-1", tmp_path, timeout_s=2)


@pytest.mark.parametrize(
    "reply, score",
    [
        ('{"score": 73, "reason": "ok"}', 73.0),
        ('Here you go: ```json\n{"score": 40}\n```', 40.0),
        ("Score: 85/100", 85.0),
        ("clinical accuracy score = 55", 55.0),
        ("85", 85.0),
        ("85/100", 85.0),
        ('{"score": 140}', None),  # out of range is not clipped into a score
        ("The response gets 3 of 5 facts and 2 wrong", None),  # ambiguous numbers
        ("", None),
        (None, None),
    ],
)
def test_parse_score(reply, score):
    assert parse_score(reply) == score


def test_chat_url():
    assert chat_url("http://h:1/v1") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1/v1/chat/completions/") == "http://h:1/v1/chat/completions"


def test_judge_scores_become_a_metric_with_a_ci():
    from eval_fixtures import binary

    from clinlm.evaluate.run import JUDGE_METRIC, score_predictions

    rows = [binary("yes", p) for p in "abcd"]
    out = score_predictions(rows, ["Yes."] * 4, judge_scores=[90, 70, None, 50], n_boot=100, text_similarity=False)
    judged = {r["task"]: r for r in out if r["metric"] == JUDGE_METRIC}
    assert set(judged) == {"binary", "all"}
    assert judged["binary"]["value"] == pytest.approx(0.70)  # mean of the parsed scores / 100
    assert judged["binary"]["n"] == 3  # an unparsed judge reply is left out, not scored 0
    assert judged["binary"]["ci_low"] <= 0.70 <= judged["binary"]["ci_high"]


def test_judge_prompt_names_media_in_words_not_placeholders():
    from clinlm.evaluate.judge import judge_messages

    messages = judge_messages("<audio>Is there a murmur?", "Yes.", {"label": "yes"}, "Yes, a murmur.")
    text = " ".join(m["content"] for m in messages)
    assert "<audio>" not in text and "[audio recording]" in text
