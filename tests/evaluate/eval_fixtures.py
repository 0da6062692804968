"""Helpers for the evaluator tests: tiny instruction rows in the bench schema (answers per
`clinlm.bench.facts`; the reference response is the answer written out by the majority baseline's
renderer unless given) and a local OpenAI-compatible judge server with canned replies.
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clinlm.evaluate.baselines import render


def row(task: str, answer: dict[str, Any], patient: str, reference: str = "", dataset: str = "circor", question: str = "<audio>Question?") -> dict[str, Any]:
    n_audio = question.count("<audio>")
    return {
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": reference or render(task, answer)}],
        "audios": [f"/nonexistent/{patient}_{i}.wav" for i in range(n_audio)],
        "task": task, "answer": answer, "patient_id": patient, "dataset": dataset,
        "record_ids": [f"{patient}_r{i}" for i in range(max(n_audio, 1))], "split": "test",
    }


def binary(label: str, patient: str, finding: str = "murmur", dataset: str = "circor") -> dict[str, Any]:
    return row("binary", {"finding": finding, "label": label}, patient, dataset=dataset)


def detection(present: list[str], absent: list[str], patient: str, unknown: list[str] | None = None) -> dict[str, Any]:
    return row("detection", {"present": present, "absent": absent, "unknown": unknown or [], "events": [], "timing": {}}, patient, dataset="icbhi")


HEART_REPORT = {
    "modality": "heart", "site": "mitral", "abnormal": "yes", "diagnosis": [], "heart_rate_bpm": 80, "murmur": "yes",
    "most_audible": "mitral", "systolic": {"timing": "holosystolic", "shape": "plateau", "grade": 2, "pitch": "high", "quality": "harsh"},
    "diastolic": None,
}
LUNG_REPORT = {"modality": "lung", "site": "trachea", "abnormal": "yes", "diagnosis": ["copd"], "crackle": "yes", "wheeze": "no"}


def one_of_each(patient: str) -> list[dict[str, Any]]:
    """One row of every task for a patient, with answers the renderers and parser handle."""
    return [
        binary("yes", patient),
        detection(["crackle"], ["wheeze"], patient),
        row("reporting", HEART_REPORT, patient),
        row("reasoning", {"question": "diagnosis", "conclusion": "copd", "findings": {"crackle": "yes"}, "diagnosis": ["copd"]}, patient, dataset="icbhi"),
        row("differential", {"candidates": ["copd", "pneumonia", "asthma"], "labelled": ["copd"], "findings": {"crackle": "yes"}}, patient, dataset="icbhi"),
        row("comparison", {"question": "which", "finding": "murmur", "first": "yes", "second": "no", "answer": "first", "sites": ["mitral", "aortic"]},
            patient, question="<audio><audio>Which recording has a murmur?"),
        row("location", {"question": "most_audible", "site": "mitral", "sites": ["mitral", "tricuspid"], "findings": {"murmur": "yes"}}, patient),
    ]


# ---- a local OpenAI-compatible judge that returns canned judgements ---------------------------

def canned_reply(response: str) -> str:
    """The judge's reply for the response under judgement, in three styles real judges produce."""
    if "holosystolic" in response or response.startswith("Yes"):
        return '{"score": 92, "reason": "matches the facts"}'
    if "no murmur" in response.lower():
        return "<think>the facts say present</think>Score: 10/100 - contradicts the label."
    return "I cannot grade this."


class _Judge(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body})
        if "model-missing" in body["model"]:
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b'{"error": "model not found"}')
            return
        case = body["messages"][-1]["content"].split("Assistant's response:\n")[-1]
        out = {"choices": [{"index": 0, "message": {"role": "assistant", "content": canned_reply(case)}, "finish_reason": "stop"}]}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep test output quiet
        pass


@contextlib.contextmanager
def judge_server():
    """(base URL ".../v1", list of received requests) of a judge server on 127.0.0.1 in a thread."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", httpd.requests
    finally:
        httpd.shutdown()
        httpd.server_close()
