"""Credentials read the same way at the gateway and the alert service."""

from __future__ import annotations

import doctest

import pytest
import suptech.common.credentials as credentials
from suptech.common.credentials import (
    MalformedAuthorization,
    TokenTable,
    bearer_token,
    certificate_identity,
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


def test_docstring_examples_run() -> None:
    assert doctest.testmod(credentials).failed == 0
