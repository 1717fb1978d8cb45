"""Regressions for edit matching and parsing: mid-line hits, tabs, CRLF, dividers, numbering."""

from __future__ import annotations

import pytest

from autoresearch.proposers.llm._edits import (
    EditFormatError,
    apply_blocks,
    parse_answer,
    replace_once,
)

HEAD = "DESCRIPTION: d\nHYPOTHESIS: h\n"


def test_an_exact_hit_inside_a_line_is_not_an_edit_of_that_line() -> None:
    content = "    subtotal = 0\n    total = 1\n"
    with pytest.raises(EditFormatError, match="not found"):
        replace_once(content, "total = 0\n", "total = 5\n")
    with pytest.raises(EditFormatError, match="not found"):
        replace_once("lr = 0.1\nlr_decay = 0.5\n", "lr = 0", "lr = 1")
    assert replace_once("xb = 2\n    b = 2 \n", "b = 2\n", "b = 3\nc = 4\n") == (
        "xb = 2\n    b = 3\n    c = 4\n"
    )
    # A hit after indentation, to the end of its line, is still exact.
    assert replace_once("def f():\n    x = 1\n", "x = 1", "x = 2") == "def f():\n    x = 2\n"


def test_a_tab_indented_file_stays_tab_indented() -> None:
    content = "def f():\n\tif True:\n\t\tx = 1\n\treturn 0\n"
    search = "    if True:\n        x = 1\n"
    replace = "    if True:\n        x = 2\n        y = 3\n"
    result = replace_once(content, search, replace)
    assert result == "def f():\n\tif True:\n\t\tx = 2\n\t\ty = 3\n\treturn 0\n"
    compile(result, "f.py", "exec")


def test_crlf_files_keep_their_line_endings() -> None:
    content = "a = 1\r\nb = 2\r\nc = 3\r\n"
    assert replace_once(content, "b = 2\n", "b = 3\nb2 = 4\n") == (
        "a = 1\r\nb = 3\r\nb2 = 4\r\nc = 3\r\n"
    )


def test_a_divider_line_in_the_content_picks_the_split_that_matches() -> None:
    text = (
        HEAD + "prompt.md\n<<<<<<< SEARCH\nTitle\n=======\n=======\nNew Title\n=======\n"
        ">>>>>>> REPLACE\n"
    )
    blocks = parse_answer(text).blocks
    (edit,) = apply_blocks({"prompt.md": "Title\n=======\nbody\n"}, blocks)
    assert edit.content == "New Title\n=======\nbody\n"
    with pytest.raises(EditFormatError, match="WHOLE block"):
        apply_blocks({"prompt.md": "Other\n"}, blocks)


def test_block_numbers_count_broken_blocks_too() -> None:
    text = (
        HEAD + "a.py\n<<<<<<< SEARCH\nx\n>>>>>>> REPLACE\n"
        "a.py\n<<<<<<< SEARCH\ny\n>>>>>>> REPLACE\n"
    )
    with pytest.raises(EditFormatError) as info:
        parse_answer(text)
    assert "block 1 " in str(info.value) and "block 2 " in str(info.value)


def test_prose_starting_with_delete_is_not_a_delete_block() -> None:
    text = (
        HEAD + "Delete: the unused helper below\n"
        "a.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n"
    )
    assert [b.kind for b in parse_answer(text).blocks] == ["search"]
    assert [b.kind for b in parse_answer(HEAD + "DELETE: `old.py`\n").blocks] == ["delete"]
