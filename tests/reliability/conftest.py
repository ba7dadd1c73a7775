"""The fault and attack suite writes docs/reliability.md from what it observed.

Each test records one row: the fault or attack, what the gateway did, what the client saw, and
whether anything was lost (checked against the ledger and the admission counters, not assumed).
When every case of :data:`tests.reliability.cases.CASES` ran in the session, the table is
written out; a partial run (``-k``) leaves the file alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.helpers import ROOT
from tests.reliability.cases import CASES, render

_rows: dict[str, tuple[str, str, str]] = {}


@dataclass
class Recorder:
    """What a test calls to put its row in the table."""

    def __call__(self, case: str, gateway_did: str, client_saw: str, lost: str) -> None:
        assert case in CASES, f"unknown case {case!r}: add it to tests/reliability/cases.py"
        _rows[case] = (gateway_did, client_saw, lost)


@pytest.fixture
def record() -> Recorder:
    return Recorder()


@pytest.fixture(scope="session", autouse=True)
def _write_table() -> Iterator[None]:
    yield
    if set(CASES) <= set(_rows):
        (ROOT / "docs" / "reliability.md").write_text(render(_rows))
