"""Tokenisation with chat templates: labels on assistant tokens only, placeholders, padding."""

from __future__ import annotations

import json

import pytest
import torch
from clinlm_toys import CORPUS, make_llama_folder, make_qwen2_folder

from clinlm.models.language_model import AUDIO_TOKEN, build_language_model
from clinlm.train.collator import IGNORE, Collator, encode_prompt, encode_row
from clinlm.train.data import read_rows

N = 3  # audio tokens per placeholder

ROW = {
    "messages": [
        {"role": "user", "content": "<audio>\nIs there a murmur?"},
        {"role": "assistant", "content": "Yes, a murmur is present."},
    ],
    "audios": ["/x/a.wav"],
    "record_ids": ["toy/1_AV"],
}
MULTI = {
    "messages": [
        {"role": "system", "content": "You are a cardiologist."},
        {"role": "user", "content": "Compare <audio> with <audio>."},
        {"role": "assistant", "content": "The second recording has a murmur."},
        {"role": "user", "content": "Where is it loudest?"},
        {"role": "assistant", "content": "No, it is heard at the mitral site."},
    ],
    "audios": ["/x/a.wav", "/x/b.wav"],
    "record_ids": ["toy/1_AV", "toy/1_MV"],
}


@pytest.fixture(scope="module", params=["embedded", "qwen2", "llama"])
def tokenizer(request, tmp_path_factory):
    if request.param == "embedded":
        return build_language_model("tiny", texts=CORPUS)[1]
    make = make_qwen2_folder if request.param == "qwen2" else make_llama_folder
    return build_language_model(str(make(tmp_path_factory.mktemp(request.param))))[1]


def labelled_text(tok, item):
    return tok.decode([t for t, lab in zip(item["input_ids"], item["labels"]) if lab != IGNORE])


@pytest.mark.parametrize("row", [ROW, MULTI], ids=["single", "multi-turn"])
def test_labels_cover_exactly_the_assistant_turns(tokenizer, row):
    item = encode_row(row, tokenizer, num_audio_tokens=N)
    eos = tokenizer.eos_token
    answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
    # Every assistant answer, each followed by the template's end-of-turn token, and nothing else.
    text = labelled_text(tokenizer, item)
    assert text.replace("\n", "") == "".join(a + eos for a in answers)
    # labels are the token ids themselves where they are set (the LM shifts them)
    assert all(lab in (IGNORE, t) for t, lab in zip(item["input_ids"], item["labels"]))
    audio_id = tokenizer.convert_tokens_to_ids(AUDIO_TOKEN)
    audio_positions = [i for i, t in enumerate(item["input_ids"]) if t == audio_id]
    assert len(audio_positions) == N * len(row["audios"])
    assert all(item["labels"][i] == IGNORE for i in audio_positions)
    for m in row["messages"]:
        if m["role"] != "assistant":
            assert m["content"].replace(AUDIO_TOKEN, "")[:10] not in text


def test_prompt_tokens_at_inference_are_the_training_prefix(tokenizer):
    full = encode_row(ROW, tokenizer, num_audio_tokens=N)
    prompt = encode_prompt(ROW, tokenizer, num_audio_tokens=N)
    first_label = next(i for i, lab in enumerate(full["labels"]) if lab != IGNORE)
    assert prompt["input_ids"] == full["input_ids"][:first_label]


def test_text_only_strips_placeholders_and_audio(tokenizer):
    item = encode_row(MULTI, tokenizer, num_audio_tokens=N, text_only=True)
    assert tokenizer.convert_tokens_to_ids(AUDIO_TOKEN) not in item["input_ids"] and item["audios"] == []
    assert "Compare with." in tokenizer.decode(item["input_ids"])


def test_placeholder_mismatch_names_the_row(tokenizer):
    bad = {**ROW, "audios": ["/x/a.wav", "/x/b.wav"]}
    with pytest.raises(ValueError, match=r"toy/1_AV.*1 <audio> placeholder\(s\).*2 audio"):
        encode_row(bad, tokenizer, num_audio_tokens=N)
    # and a batch whose token count was tampered with is caught by the collator, naming the row
    item = encode_row(ROW, tokenizer, num_audio_tokens=N)
    item["audios"] = ["/x/a.wav", "/x/b.wav"]
    collate = Collator(tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids(AUDIO_TOKEN), N, features=lambda p: torch.zeros(4, 2))
    with pytest.raises(ValueError, match="toy/1_AV"):
        collate([item])


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_and_audio_order(side):
    tok = build_language_model("tiny", texts=CORPUS)[1]
    items = [encode_row(MULTI, tok, N), encode_row(ROW, tok, N)]
    seen = []
    collate = Collator(tok.pad_token_id, tok.convert_tokens_to_ids(AUDIO_TOKEN), N, features=lambda p: seen.append(p) or torch.zeros(5, 4), padding_side=side)
    batch = collate(items)
    long, short = len(items[0]["input_ids"]), len(items[1]["input_ids"])
    assert batch["input_ids"].shape == batch["labels"].shape == (2, long)
    assert batch["attention_mask"].sum(1).tolist() == [long, short]
    real = batch["attention_mask"][1].bool()
    assert batch["input_ids"][1][real].tolist() == items[1]["input_ids"]
    assert (batch["labels"][1][~real] == IGNORE).all() and (batch["input_ids"][1][~real] == tok.pad_token_id).all()
    assert bool(real[-1] if side == "left" else real[0])
    assert seen == ["/x/a.wav", "/x/b.wav", "/x/a.wav"]  # row order, then placeholder order
    assert batch["audio_features"].shape == (3, 5, 4)


def test_read_rows_resolves_audio_paths_and_names_bad_lines(tmp_path):
    (tmp_path / "audio").mkdir()
    row = {**ROW, "audios": ["audio/a.wav"]}
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "task": "other"}) + "\n")
    rows = read_rows(path)
    assert rows[0]["audios"] == [str(tmp_path / "audio" / "a.wav")]
    assert len(read_rows(path, tasks=["other"])) == 1
    path.write_text(json.dumps(row) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"train.jsonl:2"):
        read_rows(path)
    path.write_text(json.dumps({**row, "messages": [{"role": "doctor", "content": "hi"}]}) + "\n")
    with pytest.raises(ValueError, match="toy/1_AV.*role"):
        read_rows(path)
