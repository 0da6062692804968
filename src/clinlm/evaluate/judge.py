"""Optional LLM judge of clinical accuracy through any OpenAI-compatible chat endpoint.

`clinlm eval ... --judge-url http://127.0.0.1:8080/v1 --judge-model NAME` asks a judge model
(llama.cpp, vLLM, Ollama, or a hosted API) to rate each response 0-100 for clinical accuracy
against the reference answer and the structured label facts, with one fixed rubric (saved to
`DIR/judge_prompt.txt` so a reader sees exactly what was asked). Requests are greedy
(temperature 0) and cached in `DIR/judge_cache.jsonl` keyed by model and prompt, so a re-run makes
no new calls. A reply is parsed leniently (JSON `{"score": 73}`, "Score: 73/100", a lone number);
a reply with no score in 0-100 is recorded as unparsed and counted, never guessed. `clinlm eval`
judges every system (model, majority, text-only) and sends `CLINLM_JUDGE_API_KEY` as the bearer
token when it is set (for hosted endpoints).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import httpx

RUBRIC = """You are a senior clinician grading an AI assistant's answer about a clinical recording.

You are given the question, a reference answer written from the recording's labels, the label
facts themselves (structured ground truth), and the assistant's response.

Rate the CLINICAL ACCURACY of the response from 0 to 100:
- 100: every clinical statement agrees with the label facts; nothing important is missing.
- 70-99: correct main finding; minor omissions or imprecise wording.
- 40-69: partly correct: the main finding is right but a detail (grade, location, timing,
  an event) is wrong, or the main finding is hedged when the facts are clear.
- 1-39: the main finding is wrong or a finding is asserted that the facts contradict.
- 0: unrelated, empty, or entirely wrong.
Where the facts say a value is unknown, a response that says it cannot be determined is correct;
a confident guess is an error. Judge content, not style or length.

Reply with one JSON object and nothing else: {"score": <integer 0-100>, "reason": "<one sentence>"}"""

USER_TEMPLATE = """Question:
{question}

Reference answer:
{reference}

Label facts (JSON):
{facts}

Assistant's response:
{response}"""

PROMPT_FILE = "judge_prompt.txt"
CACHE_FILE = "judge_cache.jsonl"


_MEDIA_TEXT = {"<audio>": "[audio recording]", "<ecg>": "[ECG]", "<image>": "[image]"}


def _media_as_text(text: str) -> str:
    """The judge reads text only: a literal `<audio>` would ask a multimodal endpoint (such as
    `clinlm serve`) for media that the judge does not send, so name the media in words instead."""
    for placeholder, words in _MEDIA_TEXT.items():
        text = text.replace(placeholder, words)
    return text


def judge_messages(question: str, reference: str, facts: Any, response: str) -> list[dict[str, str]]:
    """The chat messages sent for one response: the fixed rubric, then the case."""
    user = USER_TEMPLATE.format(
        question=_media_as_text(question.strip()),
        reference=reference.strip(),
        facts=json.dumps(facts, ensure_ascii=False, sort_keys=True, default=str),
        response=response.strip() or "(empty response)",
    )
    return [{"role": "system", "content": RUBRIC}, {"role": "user", "content": user}]


def prompt_text() -> str:
    """What `judge_prompt.txt` holds: the rubric and the template every case is filled into."""
    return f"[system]\n{RUBRIC}\n\n[user]\n{USER_TEMPLATE}\n"


_JSON_OBJ = re.compile(r"\{[^{}]*\}", re.S)
_SCORE_WORD = re.compile(r"score\W{0,5}(\d{1,3}(?:\.\d+)?)", re.I)
_NUMBER = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)(?![\d.])")


def parse_score(text: str | None) -> float | None:
    """The 0-100 score in a judge reply, or None when there is none (never a guess)."""
    if not text:
        return None
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S | re.I)  # reasoning models' scratchpad
    for blob in _JSON_OBJ.findall(text):
        try:
            obj = json.loads(blob)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "score" in obj:
            return _in_range(obj["score"])
    match = _SCORE_WORD.search(text)
    if match:
        return _in_range(match.group(1))
    numbers = _NUMBER.findall(text)
    # a lone number ("85", "85/100") is the score; several unlabelled numbers are ambiguous
    if len(numbers) == 1 or (len(numbers) == 2 and numbers[1] == "100" and "/" in text):
        return _in_range(numbers[0])
    return None


def _in_range(value: Any) -> float | None:
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return score if 0.0 <= score <= 100.0 else None


def chat_url(base_url: str) -> str:
    """`http://host:port/v1` -> `http://host:port/v1/chat/completions` (a full URL is kept)."""
    base = base_url.rstrip("/")
    return base if base.endswith("/chat/completions") else f"{base}/chat/completions"


def _cache_key(model: str, messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps([model, messages], sort_keys=True).encode("utf-8")).hexdigest()


def _read_cache(path: Path) -> dict[str, str]:
    cache: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                cache[entry["key"]] = entry["reply"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a killed run: that case is simply asked again
    return cache


def judge(
    cases: Iterable[dict[str, Any]],
    url: str,
    model: str,
    out_dir: Path,
    timeout_s: float = 120.0,
    api_key: str | None = None,
    progress=None,
) -> list[dict[str, Any]]:
    """Rate each case ({question, reference, facts, response}); returns [{score, reply, cached}].

    `score` is 0-100 or None (unparsed reply). Writes the rubric to `out_dir/judge_prompt.txt` and
    appends every new reply to `out_dir/judge_cache.jsonl` as soon as it arrives, so a killed run
    loses nothing. `progress(i)` is called after each case when given.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / PROMPT_FILE).write_text(prompt_text(), encoding="utf-8")
    cache_path = out_dir / CACHE_FILE
    cache = _read_cache(cache_path)
    endpoint = chat_url(url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    results = []
    with httpx.Client(timeout=timeout_s, headers=headers) as client, cache_path.open("a", encoding="utf-8") as cache_fh:
        for i, case in enumerate(cases):
            messages = judge_messages(case["question"], case["reference"], case.get("facts"), case["response"])
            key = _cache_key(model, messages)
            cached = key in cache
            if not cached:
                cache[key] = _ask(client, endpoint, model, messages)
                cache_fh.write(json.dumps({"key": key, "model": model, "reply": cache[key]}, ensure_ascii=False) + "\n")
                cache_fh.flush()
            results.append({"score": parse_score(cache[key]), "reply": cache[key], "cached": cached})
            if progress is not None:
                progress(i)
    return results


def _ask(client: httpx.Client, endpoint: str, model: str, messages: Sequence[dict[str, str]]) -> str:
    body = {"model": model, "messages": list(messages), "temperature": 0.0, "max_tokens": 200}
    try:
        response = client.post(endpoint, json=body)
    except httpx.HTTPError as exc:
        raise ValueError(f"the judge at {endpoint} could not be reached ({exc}); check --judge-url and that the server runs") from exc
    if response.status_code != 200:
        raise ValueError(
            f"the judge at {endpoint} answered HTTP {response.status_code}: {response.text[:200]!r}; "
            "check --judge-url and --judge-model"
        )
    try:
        return response.json()["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"the judge at {endpoint} did not answer in the OpenAI chat format: {response.text[:200]!r}") from exc
