"""SEARCH/REPLACE parsing and whitespace-tolerant application, with precise per-block errors."""

from __future__ import annotations

import json

import pytest

from autoresearch._types import Edit
from autoresearch.proposers.llm._edits import (
    EditFormatError,
    apply_blocks,
    parse_answer,
    replace_once,
)

PARAMS = "X = 0.0  # first\nY = 0.0  # second\n\n\ndef f():\n    return X + Y\n"
TRAIN = "LR = 0.1\nSTEPS = 100\n"


def answer(
    *blocks: str, description: str = "tune X", hypothesis: str = "X=3 is the optimum"
) -> str:
    head = f"DESCRIPTION: {description}\nHYPOTHESIS: {hypothesis}\n\n"
    return head + "\n\n".join(blocks)


def sr(path: str, search: str, replace: str) -> str:
    return f"{path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE"


def test_one_block_applies_and_returns_a_whole_file_edit() -> None:
    parsed = parse_answer(answer(sr("params.py", "X = 0.0  # first", "X = 3.0  # first")))
    assert parsed.description == "tune X"
    assert parsed.hypothesis == "X=3 is the optimum"
    edits = apply_blocks({"params.py": PARAMS}, parsed.blocks)
    assert edits == (Edit("params.py", content=PARAMS.replace("X = 0.0", "X = 3.0")),)


def test_several_files_and_blocks_in_one_candidate() -> None:
    text = answer(
        sr("params.py", "X = 0.0  # first", "X = 3.0  # first"),
        sr("params.py", "Y = 0.0  # second", "Y = 1.0  # second"),
        sr("train.py", "LR = 0.1", "LR = 0.05"),
    )
    edits = apply_blocks({"params.py": PARAMS, "train.py": TRAIN}, parse_answer(text).blocks)
    by_path = {e.path: e.content for e in edits}
    assert by_path["params.py"] is not None and "X = 3.0" in by_path["params.py"]
    assert "Y = 1.0" in by_path["params.py"]
    assert by_path["train.py"] == "LR = 0.05\nSTEPS = 100\n"


def test_trailing_whitespace_and_blank_lines_in_search_are_tolerated() -> None:
    out = replace_once(PARAMS, "\nX = 0.0  # first   \nY = 0.0  # second\n\n", "X = 1\nY = 2\n")
    assert out.startswith("X = 1\nY = 2\n\n\ndef f():")


def test_indentation_difference_is_tolerated_and_replacement_reindented() -> None:
    # The model quoted the body without its indentation...
    out = replace_once(PARAMS, "return X + Y", "z = X * 2\nreturn z + Y")
    assert out.endswith("def f():\n    z = X * 2\n    return z + Y\n")
    # ...or with too much of it.
    out = replace_once(
        PARAMS, "    def f():\n        return X + Y", "    def f():\n        return X * Y"
    )
    assert out.endswith("\ndef f():\n    return X * Y\n")


def test_a_miss_names_the_block_and_the_closest_lines() -> None:
    text = answer(sr("params.py", "X = 0.5  # first", "X = 3.0  # first"))
    with pytest.raises(EditFormatError) as info:
        apply_blocks({"params.py": PARAMS}, parse_answer(text).blocks)
    msg = str(info.value)
    assert "block 1 (params.py)" in msg
    assert "not found" in msg
    assert "'X = 0.5  # first'" in msg and "'X = 0.0  # first'" in msg
    assert "1| X = 0.0  # first" in msg


def test_every_failing_block_is_reported_not_only_the_first() -> None:
    text = answer(
        sr("params.py", "X = 9", "X = 3"),
        sr("params.py", "Y = 0.0  # second", "Y = 1.0  # second"),
        sr("missing.py", "a = 1", "a = 2"),
    )
    with pytest.raises(EditFormatError) as info:
        apply_blocks({"params.py": PARAMS}, parse_answer(text).blocks, editable_globs=["*.py"])
    problems = info.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("block 1 (params.py)")
    assert problems[1].startswith("block 3 (missing.py)") and "does not exist" in problems[1]


def test_ambiguous_search_asks_for_more_context() -> None:
    with pytest.raises(EditFormatError, match="occurs 2 times"):
        replace_once("a = 1\nb = 2\na = 1\n", "a = 1", "a = 3")


def test_whole_file_block_and_its_size_limit() -> None:
    text = answer("params.py\n<<<<<<< WHOLE\nX = 3.0\nY = 1.0\n>>>>>>> WHOLE")
    edits = apply_blocks({"params.py": PARAMS}, parse_answer(text).blocks)
    assert edits == (Edit("params.py", content="X = 3.0\nY = 1.0\n"),)
    with pytest.raises(EditFormatError, match="more than the 3 allowed for a WHOLE block"):
        apply_blocks({"params.py": PARAMS}, parse_answer(text).blocks, whole_file_max_lines=3)


def test_new_file_with_empty_search_and_delete() -> None:
    text = answer(sr("extra.py", "", "A = 1"), "DELETE: train.py")
    edits = apply_blocks(
        {"params.py": PARAMS, "train.py": TRAIN}, parse_answer(text).blocks, editable_globs=["*.py"]
    )
    assert set(edits) == {Edit("extra.py", content="A = 1\n"), Edit("train.py", delete=True)}


def test_paths_outside_the_globs_or_the_folder_are_refused() -> None:
    for path in ("../evil.py", "/etc/passwd", "run.py"):
        text = answer(sr(path, "", "x = 1"))
        with pytest.raises(EditFormatError) as info:
            apply_blocks(
                {"params.py": PARAMS}, parse_answer(text).blocks, editable_globs=["params.py"]
            )
        assert f"({path})" in str(info.value)


def test_decorated_file_names_and_code_fences_are_understood() -> None:
    text = (
        "**Description:** move X\nHypothesis: closer to 3\n\n"
        "File: `params.py`\n```python\n<<<<<<< SEARCH\nX = 0.0  # first\n=======\n"
        "X = 2.0  # first\n>>>>>>> REPLACE\n```\n"
    )
    parsed = parse_answer(text)
    assert parsed.description == "move X"
    assert [b.path for b in parsed.blocks] == ["params.py"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("HYPOTHESIS: h\n" + sr("params.py", "X", "Y"), "DESCRIPTION"),
        ("DESCRIPTION: d\n" + sr("params.py", "X", "Y"), "HYPOTHESIS"),
        ("DESCRIPTION: d\nHYPOTHESIS: h\nI would change X.", "no edit blocks"),
        (answer("params.py\n<<<<<<< SEARCH\nX\n>>>>>>> REPLACE"), "exactly one '======='"),
        (answer("params.py\n<<<<<<< SEARCH\nX\n=======\nY\n"), "missing the '>>>>>>> REPLACE'"),
        (answer("<<<<<<< SEARCH\nX\n=======\nY\n>>>>>>> REPLACE"), "no file name"),
        ('{"description": "d", "hypothesis": "h"', "not valid JSON"),
        ('{"description": "d", "hypothesis": "h", "edits": [{"path": "p"}]}', "edit 1 (p)"),
    ],
)
def test_malformed_answers_say_what_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(EditFormatError) as info:
        parse_answer(text)
    assert needle in str(info.value)


def test_json_form() -> None:
    data = {
        "description": "tune both",
        "hypothesis": "closer to the optimum",
        "edits": [
            {"path": "params.py", "search": "X = 0.0  # first", "replace": "X = 3.0  # first"},
            {"path": "train.py", "content": "LR = 1\n"},
        ],
    }
    parsed = parse_answer("```json\n" + json.dumps(data) + "\n```")
    edits = apply_blocks({"params.py": PARAMS, "train.py": TRAIN}, parsed.blocks)
    assert {e.path for e in edits} == {"params.py", "train.py"}


def test_an_edit_that_changes_nothing_is_an_error() -> None:
    text = answer(sr("params.py", "X = 0.0  # first", "X = 0.0  # first"))
    with pytest.raises(EditFormatError, match="unchanged"):
        apply_blocks({"params.py": PARAMS}, parse_answer(text).blocks)


def test_fields_may_follow_the_blocks() -> None:
    text = (
        sr("params.py", "X = 0.0  # first", "X = 1.0  # first")
        + "\n\nDESCRIPTION: d\nHYPOTHESIS: h\n"
    )
    parsed = parse_answer(text)
    assert (parsed.description, parsed.hypothesis, len(parsed.blocks)) == ("d", "h", 1)
