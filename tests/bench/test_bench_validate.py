"""`clinlm bench validate`: table-driven ill-formed rows, each named by file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_wav
from rich.console import Console
from typer.testing import CliRunner

from clinlm.bench.validate import print_validation, validate_files
from clinlm.cli import app


def good_row(wav: str, **over) -> dict:
    row = {"messages": [{"role": "user", "content": "<audio>Is there a murmur?"}, {"role": "assistant", "content": "Yes."}],
           "audios": [wav], "task": "binary", "record_ids": ["r1"], "patient_id": "p1", "dataset": "d", "split": "train",
           "answer": {"finding": "murmur", "label": "yes"}}
    row.update(over)
    return row


def good_pref(wav: str, **over) -> dict:
    row = {"prompt": [{"role": "user", "content": "<audio>Is there a murmur?"}],
           "chosen": [{"role": "assistant", "content": "Yes."}], "rejected": [{"role": "assistant", "content": "No."}],
           "audios": [wav], "rejected_audios": [{"path": wav, "degrade": "noise", "snr_db": 0}], "patient_id": "p1", "split": "train"}
    row.update(over)
    return row


def msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


# (name, row builder given a good wav path and a broken one, expected field, expected message part)
BAD_ROWS = [
    ("not json", None, "line", "not valid JSON"),
    ("not an object", lambda w, b: [1, 2], "row", "JSON object"),
    ("no messages", lambda w, b: {"audios": [w]}, "messages", "missing"),
    ("empty messages", lambda w, b: good_row(w, messages=[]), "messages", "non-empty list"),
    ("bad role", lambda w, b: good_row(w, messages=msgs(("user", "<audio>q"), ("bot", "a"))), "messages[1].role", "role must be"),
    ("empty content", lambda w, b: good_row(w, messages=msgs(("user", "<audio>q"), ("assistant", "  "))), "messages[1].content", "empty content"),
    ("content not text", lambda w, b: good_row(w, messages=[{"role": "user", "content": "<audio>q"}, {"role": "assistant", "content": 3}]),
     "messages[1].content", "must be a string"),
    ("roles do not alternate", lambda w, b: good_row(w, messages=msgs(("user", "<audio>q"), ("user", "q2"), ("assistant", "a"))),
     "messages[1].role", "alternate"),
    ("ends with user", lambda w, b: good_row(w, messages=msgs(("user", "<audio>q"), ("assistant", "a"), ("user", "q2"))),
     "messages[2].role", "must end with the assistant"),
    ("system not first", lambda w, b: good_row(w, messages=msgs(("user", "<audio>q"), ("system", "s"), ("assistant", "a"))),
     "messages[1].role", "system message"),
    ("more audios than placeholders", lambda w, b: good_row(w, audios=[w, w]), "audios", "2 file(s) but 1 <audio>"),
    ("placeholders without audios", lambda w, b: {k: v for k, v in good_row(w).items() if k != "audios"}, "audios", "missing"),
    ("image placeholder without images", lambda w, b: good_row(w, messages=msgs(("user", "<audio><image>q"), ("assistant", "a"))),
     "images", "missing"),
    ("ecg count", lambda w, b: good_row(w, messages=msgs(("user", "<audio><ecg>q"), ("assistant", "a")), ecgs=[w, w]), "ecgs", "2 file(s) but 1 <ecg>"),
    ("audio missing on disk", lambda w, b: good_row("nowhere.wav"), "audios[0]", "file not found"),
    ("audio does not decode", lambda w, b: good_row(b), "audios[0]", "does not decode"),
    ("audio path not a string", lambda w, b: good_row(w, audios=[None]), "audios[0]", "path string"),
    ("split disagrees with file", lambda w, b: good_row(w, split="test"), "split", "the file is train.jsonl"),
    ("preference without rejected", lambda w, b: {k: v for k, v in good_pref(w).items() if k != "rejected"}, "rejected", "missing"),
    ("preference prompt ends with assistant", lambda w, b: good_pref(w, prompt=msgs(("user", "<audio>q"), ("assistant", "a"))),
     "prompt[1].role", "must end with the user"),
    ("chosen equals rejected", lambda w, b: good_pref(w, rejected=[{"role": "assistant", "content": "Yes."}]), "rejected", "same as chosen"),
    ("rejected audio spec without degrade", lambda w, b: good_pref(w, rejected_audios=[{"path": w}]), "rejected_audios[0]", "needs 'degrade'"),
    ("rejected audio missing", lambda w, b: good_pref(w, rejected_audios=["gone.wav"]), "rejected_audios[0]", "file not found"),
    ("rejected audios count", lambda w, b: good_pref(w, rejected_audios=[]), "rejected_audios", "one entry per audio"),
]


@pytest.fixture()
def media(tmp_path):
    wav = write_wav(tmp_path / "ok.wav", seconds=0.2)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVEfmt nonsense")
    return tmp_path, str(wav), str(broken)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("name,make,fld,message", BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_ill_formed_row_is_named_by_file_line_and_field(media, name, make, fld, message):
    folder, wav, broken = media
    bad = "{not json" if make is None else make(wav, broken)
    path = write_jsonl(folder / "train.jsonl", [good_row(wav), bad])
    report = validate_files([path])
    assert report.errors, name
    hits = [p for p in report.errors if p.line == 2 and p.field == fld and message in p.message and p.file == str(path)]
    assert hits, [str(p) for p in report.errors]
    assert all(p.line == 2 for p in report.errors), "the good first row must not be blamed"


def test_good_rows_pass_with_relative_paths_and_system_message(media):
    folder, wav, _ = media
    rows = [good_row("ok.wav"), good_row(wav, messages=msgs(("system", "You are a clinician."), ("user", "<audio>q"), ("assistant", "a"))),
            good_pref("ok.wav"), good_pref(wav, prompt="<audio>Is there a murmur?", chosen="Yes.", rejected="No.")]
    report = validate_files([write_jsonl(folder / "train.jsonl", rows)])
    assert report.errors == []
    assert report.media_checked == 1  # one file, however many rows name it


def test_patient_in_two_splits_across_files(media):
    folder, wav, _ = media
    train = write_jsonl(folder / "train.jsonl", [good_row(wav), good_row(wav, patient_id="p2")])
    test = write_jsonl(folder / "test.jsonl", [good_row(wav, patient_id="p3", split="test"), good_row(wav, split="test")])
    report = validate_files([train, test])
    leaks = [p for p in report.errors if p.field == "patient_id"]
    assert len(leaks) == 1 and leaks[0].file == str(test) and leaks[0].line == 2
    assert "p1" in leaks[0].message and f"{train}:1" in leaks[0].message


def test_missing_patient_id_is_a_warning(media):
    folder, wav, _ = media
    row = good_row(wav)
    del row["patient_id"]
    report = validate_files([write_jsonl(folder / "mine.jsonl", [row, row])])
    assert report.errors == [] and len(report.warnings) == 1 and "2 row(s)" in report.warnings[0].message


def test_cli_exit_status_and_summary(media):
    folder, wav, _ = media
    good = write_jsonl(folder / "train.jsonl", [good_row(wav)])
    bad = write_jsonl(folder / "val.jsonl", [good_row("missing.wav", split="val", patient_id="p9")])
    runner = CliRunner()
    ok = runner.invoke(app, ["bench", "validate", str(good)])
    assert ok.exit_code == 0 and "valid" in ok.output
    fail = runner.invoke(app, ["bench", "validate", str(good), str(bad)])
    assert fail.exit_code == 1 and "file not found" in fail.output


def test_print_validation_table(media, capsys):
    folder, wav, _ = media
    report = validate_files([write_jsonl(folder / "train.jsonl", [good_row(wav), good_row("x[0].wav")])])
    console = Console(width=200, record=True)
    print_validation(report, console)
    text = console.export_text()
    assert "bench validate" in text and "x[0].wav" in text and "train.jsonl:2: audios[0]" in text
