"""Similar-report retrieval for the impression prompts: neighbours, leave-group-out, votes on ties,
storage, and the copy into a checkpoint that `clinlm ask` reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinlm.bench.impression import SIMILAR_HEADER, add_similar, augment_question, similar_block, user_prompt
from clinlm.bench.retrieval import INDEX_FILE, ImpressionIndex, attach_index, file_sha256

FINDINGS = [
    "The heart is normal in size. The lungs are clear.",  # 0, group 0
    "The heart is normal in size. The lungs are clear.",  # 1, group 0 (a duplicate: same split unit)
    "Large right pleural effusion with atelectasis.",  # 2, group 1
    "Right pleural effusion, large, with adjacent atelectasis.",  # 3, group 2
    "Left upper lobe mass with hilar adenopathy.",  # 4, group 3
]
IMPRESSIONS = ["No acute disease.", "No acute disease.", "Large right effusion.", "Right pleural effusion.", "Left upper lobe mass."]
GROUPS = [0, 0, 1, 2, 3]


def _index(k: int = 2) -> ImpressionIndex:
    return ImpressionIndex.fit(FINDINGS, IMPRESSIONS, GROUPS, k=k)


def test_neighbours_most_similar_first_and_leave_group_out() -> None:
    index = _index()
    (hits,) = index.query(["Large right pleural effusion and atelectasis."], k=2)
    assert [imp for imp, _ in hits] == ["Large right effusion.", "Right pleural effusion."]
    assert hits[0][1] > hits[1][1] > 0
    # A training row never sees its own group: report 2 finds report 3, its duplicates 0/1 find neither 0 nor 1.
    near = index.neighbours(FINDINGS, k=2, exclude=GROUPS)
    assert near[2][0] == 3 and 2 not in near[2]
    assert not {0, 1} & set(near[0]) and not {0, 1} & set(near[1])
    assert all(GROUPS[j] != GROUPS[i] for i, row in enumerate(near) for j in row)


def test_ties_are_ordered_by_vote_then_training_order() -> None:
    text = "Mild cardiomegaly. Lungs clear."
    index = ImpressionIndex.fit([text] * 3 + ["Something else entirely."], ["Cardiomegaly.", "Mild cardiomegaly.", "Mild cardiomegaly!", "Other."])
    # Three equally similar reports: two say "mild cardiomegaly" (equal once normalised), so that impression wins.
    assert index.neighbours([text], k=3)[0].tolist() == [1, 2, 0]
    assert index.query([text], k=1)[0][0][0] == "Mild cardiomegaly."


def test_save_load_roundtrip(tmp_path: Path) -> None:
    index = _index(k=3)
    index.train_sha256 = "abc"
    loaded = ImpressionIndex.load(index.save(tmp_path / INDEX_FILE))
    assert (loaded.k, loaded.train_sha256, loaded.groups) == (3, "abc", GROUPS)
    queries = ["Pleural effusion on the right.", "Hilar mass on the left."]
    assert loaded.neighbours(queries, 3).tolist() == index.neighbours(queries, 3).tolist()
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not an impression index"):
        ImpressionIndex.load(tmp_path / "other.json")
    with pytest.raises(FileNotFoundError, match="bench build"):
        ImpressionIndex.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="one impression per findings"):
        ImpressionIndex.fit(FINDINGS, IMPRESSIONS[:2])


def test_attach_index_copies_only_a_matching_index(tmp_path: Path) -> None:
    bench, ckpt = tmp_path / "bench", tmp_path / "ckpt"
    bench.mkdir()
    ckpt.mkdir()
    train = bench / "train.jsonl"
    assert attach_index(train, ckpt) is None  # no index: nothing to copy (not impression rows)
    train.write_text('{"messages": []}\n')
    index = _index()
    index.train_sha256 = file_sha256(train)
    index.save(bench / INDEX_FILE)
    assert attach_index(train, ckpt) == ckpt / INDEX_FILE
    assert (ckpt / INDEX_FILE).read_bytes() == (bench / INDEX_FILE).read_bytes()
    (ckpt / INDEX_FILE).unlink()
    train.write_text('{"messages": []}\n{"messages": []}\n')  # the rows changed after the index was fitted
    with pytest.warns(UserWarning, match="another version"):
        assert attach_index(train, ckpt) is None
    assert not (ckpt / INDEX_FILE).exists()


def test_questions_get_the_similar_impressions(tmp_path: Path) -> None:
    index = _index(k=2)
    question = "FINDINGS: Large right pleural effusion and atelectasis."
    asked = add_similar(question, index)
    assert asked == question + similar_block(["Large right effusion.", "Right pleural effusion."])
    assert asked == user_prompt("Large right pleural effusion and atelectasis.", similar=["Large right effusion.", "Right pleural effusion."])
    assert asked.endswith(f"{SIMILAR_HEADER}\n- Large right effusion.\n- Right pleural effusion.")
    assert add_similar(asked, index) == asked  # already listed: unchanged
    assert add_similar("Is there a murmur?", index) == "Is there a murmur?"  # not a findings question
    # From a checkpoint folder: with an index it is added, without one the question is unchanged.
    assert augment_question(tmp_path, question) == question
    index.save(tmp_path / INDEX_FILE)
    assert augment_question(tmp_path, question) == asked
