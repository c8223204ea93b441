"""Credentials read the same way at the gateway and the alert service."""

from __future__ import annotations

import doctest
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import suptech.common.credentials as credentials
from suptech.common.credentials import (
    MalformedAuthorization,
    ReloadingFile,
    TokenTable,
    bearer_token,
    certificate_identity,
    parse_expiry,
)


def test_bearer_token_is_read_and_malformed_headers_are_refused() -> None:
    assert bearer_token([("x-other", "1"), ("authorization", "Bearer  abc ")]) == "abc"
    assert bearer_token([("Authorization", b"bearer abc")]) == "abc"
    assert bearer_token([("x-other", "1")]) is None
    assert bearer_token(None) is None
    for bad in ("Basic abc", "Bearer", "Bearer   ", "abc"):
        with pytest.raises(MalformedAuthorization):
            bearer_token([("authorization", bad)])


def test_certificate_identity_prefers_the_common_name_then_the_first_san() -> None:
    assert certificate_identity({"x509_common_name": [b"bank-a"]}) == "bank-a"
    assert (
        certificate_identity(
            {"x509_common_name": [b""], "x509_subject_alternative_name": [b"bank-b", b"x"]}
        )
        == "bank-b"
    )
    assert certificate_identity({}) is None
    assert certificate_identity(None) is None


def test_token_table_finds_only_exact_tokens() -> None:
    table = TokenTable({"token-aaaaaaaaaaaa": "bank-a", "token-bbbbbbbbbbbb": "bank-b"})
    assert table.find("token-bbbbbbbbbbbb") == "bank-b"
    assert table.find("token-bbbbbbbbbbb") is None
    assert table.find("") is None
    assert len(table) == 2


def test_expiry_needs_an_iso_time_with_a_zone() -> None:
    assert parse_expiry(None) is None
    assert parse_expiry("2027-01-01T00:00:00Z") == datetime(2027, 1, 1, tzinfo=UTC)
    for bad, reason in (
        ("2027-01-01T00:00:00", "time zone"),
        ("soon", "ISO 8601"),
        (20270101, "ISO 8601"),
        ("9999-12-31T23:59:59-23:00", "out of range"),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_expiry(bad)


def _write(path: Path, doc: Any, stamp: int) -> None:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    # Distinct modification times even on a coarse-grained file system.
    os.utime(path, ns=(stamp * 10**9, stamp * 10**9))


def _load(path: Path) -> dict[str, str]:
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict):
        raise ValueError("not an object")
    return doc


def test_reloading_file_follows_changes_and_keeps_the_last_good_contents(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "f.json"
    _write(path, {"k": "one"}, 1)
    now = [0.0]
    f = ReloadingFile(path, _load, check_every_s=1.0, clock=lambda: now[0])
    assert f.current() == {"k": "one"}
    _write(path, {"k": "two"}, 2)
    now[0] = 0.5  # not looked at again yet
    assert f.current() == {"k": "one"}
    now[0] = 1.5
    assert f.current() == {"k": "two"} and f.error == ""

    caplog.set_level(logging.ERROR, logger="suptech.common.credentials")
    _write(path, "[]", 3)
    for t in (3.0, 4.5, 6.0):  # refused, logged once, not re-read while unchanged
        now[0] = t
        assert f.current() == {"k": "two"}
    assert f.error == "not an object"
    assert caplog.text.count("rejected, the previous contents stay in force") == 1
    path.unlink()
    now[0] = 7.5
    assert f.current() == {"k": "two"} and "cannot read" in f.error
    _write(path, {"k": "three"}, 4)
    now[0] = 9.0
    assert f.current() == {"k": "three"} and f.error == ""


def test_reloading_file_refuses_to_start_on_a_bad_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ReloadingFile(tmp_path / "absent.json", _load, check_every_s=1.0)
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(ValueError, match="not an object"):
        ReloadingFile(tmp_path / "bad.json", _load, check_every_s=1.0)


def test_docstring_examples_run() -> None:
    assert doctest.testmod(credentials).failed == 0
