"""The one token reader the predictor, the client and the receiver share."""

from __future__ import annotations

import os

import pytest

from services.core.tokens import TokenFile, from_header, parse

pytestmark = pytest.mark.unit


def test_a_token_file_holds_one_token_a_line_comments_and_blanks_aside():
    assert parse("# rotated 2026-12\nnew-token\n\n  old-token  \n") == ["new-token", "old-token"]


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc ", "abc"),
        ("BEARER abc", "abc"),
        ("Basic abc", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_the_bearer_token_of_a_header(header, token):
    assert from_header(header) == token


def test_every_token_of_the_file_is_accepted_and_the_first_is_sent(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("new-token\nold-token\n")
    tokens = TokenFile(path)
    assert tokens.first() == "new-token"
    assert tokens.accepts("new-token") and tokens.accepts("old-token")
    assert not tokens.accepts("other") and not tokens.accepts("") and not tokens.accepts(None)


def test_a_replaced_file_is_read_again(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("first-token\n")
    tokens = TokenFile(path)
    staged = tmp_path / "staged"
    staged.write_text("second-token\n")
    os.replace(staged, path)  # as a Secret's update swaps its files
    assert tokens.accepts("second-token") and not tokens.accepts("first-token")


def test_a_file_gone_mid_rotation_keeps_the_tokens_read_before(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("kept-token\n")
    tokens = TokenFile(path)
    path.unlink()
    assert tokens.accepts("kept-token")


def test_a_file_without_a_token_is_refused_at_once(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# nothing yet\n")
    with pytest.raises(ValueError, match="holds no token"):
        TokenFile(path)
