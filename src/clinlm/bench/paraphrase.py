"""Optional paraphrasing of responses by any OpenAI-compatible chat endpoint, checked and cached.

    clinlm bench build rec/heart --out bench/ --llm-url http://127.0.0.1:8080/v1 --llm-model qwen2.5-7b-instruct

For each instruction row the endpoint (llama.cpp server, vLLM, Ollama, ...) gets the question,
the label facts (`answer`) and the template response, and is asked to rewrite the response in
other words with exactly the same facts. The paraphrase replaces the response (and the chosen
response of the row's preference pair) only when `facts.check_consistency` finds nothing that
contradicts the answer; otherwise it is dropped (counted) and the template response stays.

Calls go to `POST {url}/chat/completions` (with `CLINLM_LLM_API_KEY` as the bearer token when set) (the `/v1` is added when the URL lacks it) with httpx,
temperature 0. Every completion is stored in `out/.llm_cache.jsonl`, one JSON object a line,
keyed by sha256(model + prompt): a re-run reads the cache and makes no new calls. An endpoint
error (connection, HTTP status, malformed reply) keeps the template response and is counted;
the build carries on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import os

import httpx

from clinlm.bench.facts import check_consistency

SYSTEM = (
    "You rewrite the answers of a clinical auscultation assistant. Rewrite the answer in different words, "
    "one to four sentences. Keep every fact exactly as given: findings present or absent, murmur grade, timing, "
    "shape, pitch and quality, sites, times in seconds, diagnoses and their order. Add no finding, site, number "
    "or diagnosis. If the answer says something cannot be determined, say that it cannot be determined from "
    "the available information. Reply with the rewritten answer only."
)


def _endpoint(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if not url.endswith("/v1"):
        url += "/v1"
    return url + "/chat/completions"


class Paraphraser:
    """Holds the HTTP client, the cache and the counts for one build."""

    def __init__(self, url: str, model: str, cache_path: Path, timeout_s: float = 60.0):
        self.url, self.model, self.cache_path = _endpoint(url), model, Path(cache_path)
        # A keyed endpoint (e.g. `clinlm serve --api-key-file`) needs a bearer token: taken from
        # CLINLM_LLM_API_KEY only, so a user's OPENAI_API_KEY is never sent to an arbitrary URL.
        key = os.environ.get("CLINLM_LLM_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(timeout=timeout_s, headers=headers)
        self.cache: dict[str, str] = {}
        if self.cache_path.exists():
            for line in self.cache_path.read_text(encoding="utf-8").splitlines():
                try:
                    item = json.loads(line)
                    self.cache[item["key"]] = item["response"]
                except (ValueError, KeyError):
                    continue  # a line cut short by a killed run: that prompt is simply asked again
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        self._cache_fh = open(self.cache_path, "a", encoding="utf-8")
        self.counts = {"accepted": 0, "rejected": 0, "errors": 0, "calls": 0, "cached": 0}
        self.rejected_examples: list[dict[str, Any]] = []

    def _messages(self, row: dict[str, Any]) -> list[dict[str, str]]:
        question = row["messages"][-2]["content"].replace("<audio>", "").strip()
        facts = json.dumps(row["answer"], ensure_ascii=False, sort_keys=True)
        user = f"Question: {question}\nFacts (ground truth): {facts}\nAnswer to rewrite: {row['messages'][-1]['content']}"
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    def complete(self, messages: list[dict[str, str]]) -> str | None:
        """The endpoint's reply (cached), or None on an endpoint error."""
        key = hashlib.sha256(json.dumps([self.model, messages], sort_keys=True).encode()).hexdigest()
        if key in self.cache:
            self.counts["cached"] += 1
            return self.cache[key]
        try:
            reply = self.client.post(self.url, json={"model": self.model, "messages": messages, "temperature": 0})
            reply.raise_for_status()
            text = reply.json()["choices"][0]["message"]["content"].strip()
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            self.counts["errors"] += 1
            return None
        self.counts["calls"] += 1
        self.cache[key] = text
        self._cache_fh.write(json.dumps({"key": key, "model": self.model, "response": text}, ensure_ascii=False) + "\n")
        self._cache_fh.flush()
        return text

    def apply(self, line: str, pref: str | None) -> tuple[str, str | None, int]:
        """Paraphrase one instruction row (JSON line) and its preference row; return both and the word count."""
        row = json.loads(line)
        text = self.complete(self._messages(row))
        if text:
            problems = check_consistency(text, row["answer"], row["task"])
            if problems:
                self.counts["rejected"] += 1
                if len(self.rejected_examples) < 5:
                    self.rejected_examples.append({"text": text, "problems": problems})
            else:
                self.counts["accepted"] += 1
                row["messages"][-1]["content"] = text
                line = json.dumps(row, ensure_ascii=False)
                if pref is not None:
                    p = json.loads(pref)
                    p["chosen"] = [{"role": "assistant", "content": text}]
                    pref = json.dumps(p, ensure_ascii=False)
        return line, pref, len(row["messages"][-1]["content"].split())

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "model": self.model, **self.counts, "rejected_examples": self.rejected_examples}

    def close(self) -> None:
        self.client.close()
        self._cache_fh.close()
