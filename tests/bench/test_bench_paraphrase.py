"""LLM paraphrasing against a tiny local OpenAI-style server: checked, dropped when contradicting, cached."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from bench_records import heart, write_records

from clinlm.bench.build import build_bench
from clinlm.bench.facts import check_consistency
from clinlm.records import SPLITS

PARAPHRASE_YES = "Yes - a heart murmur can be heard on this recording."
CONTRADICTION = "A murmur is clearly present."  # wrong for every row whose label is not "yes"


class CannedChat(BaseHTTPRequestHandler):
    """POST /v1/chat/completions: a faithful paraphrase for "yes" answers, a contradiction otherwise."""

    calls: list[dict] = []
    fail = False

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append(body)
        if self.path != "/v1/chat/completions" or type(self).fail:
            self.send_response(500)
            self.end_headers()
            return
        answer = body["messages"][-1]["content"].split("Answer to rewrite:", 1)[1].strip()
        text = PARAPHRASE_YES if answer.lower().startswith(("yes", "a murmur")) else CONTRADICTION
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture()
def server():
    CannedChat.calls, CannedChat.fail = [], False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), CannedChat)  # port 0: a free port
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def records(tmp_path):
    recs = [heart("1", "MV"), heart("1", "AV"), heart("2", "MV", murmur="absent"), heart("3", "TV", murmur="unknown", split="test")]
    return write_records(recs, tmp_path / "rec")


def rows(folder):
    return [json.loads(line) for s in SPLITS for line in (folder / f"{s}.jsonl").read_text().splitlines()]


def test_paraphrases_checked_dropped_and_cached(server, records, tmp_path):
    out = tmp_path / "b"
    stats = build_bench([records], out, tasks=["binary"], llm_url=server, llm_model="canned", workers=1)
    p = stats["paraphrase"]
    assert p["calls"] == len(CannedChat.calls) == stats["rows"] == 4 and p["cached"] == 0
    assert p["accepted"] == 2 and p["rejected"] == 2 and p["errors"] == 0  # 2 murmur=yes rows, 1 no, 1 unknown
    assert CannedChat.calls[0]["model"] == "canned" and '"label": "' in CannedChat.calls[0]["messages"][-1]["content"]
    written = rows(out)
    paraphrased = [r for r in written if r["messages"][-1]["content"] == PARAPHRASE_YES]
    assert len(paraphrased) == 2 and all(r["answer"]["label"] == "yes" for r in paraphrased)
    assert not any(r["messages"][-1]["content"] == CONTRADICTION for r in written)
    for r in written:
        assert check_consistency(r["messages"][-1]["content"], r["answer"], r["task"]) == []
    prefs = [json.loads(line) for s in SPLITS for line in (out / "preference" / f"{s}.jsonl").read_text().splitlines()]
    assert sum(p["chosen"][0]["content"] == PARAPHRASE_YES for p in prefs) == 2
    assert "2 dropped because they contradicted" in (out / "card.md").read_text()

    # A re-run makes no new calls and writes the same rows.
    before = (out / "train.jsonl").read_bytes()
    again = build_bench([records], out, tasks=["binary"], llm_url=server, llm_model="canned", workers=1)
    assert len(CannedChat.calls) == 4 and again["paraphrase"]["cached"] == 4 and again["paraphrase"]["calls"] == 0
    assert (out / "train.jsonl").read_bytes() == before
    # Another model name is another cache key.
    build_bench([records], out, tasks=["binary"], llm_url=server + "/v1", llm_model="other", workers=1)
    assert len(CannedChat.calls) == 8


def test_endpoint_errors_keep_template_responses(server, records, tmp_path):
    CannedChat.fail = True
    stats = build_bench([records], tmp_path / "b", tasks=["binary"], llm_url=server, llm_model="canned", workers=1)
    assert stats["paraphrase"]["errors"] == 4 and stats["paraphrase"]["accepted"] == 0
    assert not (tmp_path / "b" / ".llm_cache.jsonl").read_text().strip()  # failures are not cached
    assert len(rows(tmp_path / "b")) == 4


def test_unreachable_endpoint_is_counted_not_fatal(records, tmp_path):
    stats = build_bench([records], tmp_path / "b", tasks=["binary"], llm_url="http://127.0.0.1:9", llm_model="m", workers=1)
    assert stats["paraphrase"]["errors"] == stats["rows"] == 4
