"""The standing fuzz suite (issue 21): every test here is marked ``fuzz``; see fuzz_contract."""

from __future__ import annotations

from typing import Any

import pytest
from fuzz_contract import TALLY, TALLY_MODE, table


def pytest_collection_modifyitems(config: Any, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/fuzz/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.fuzz)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY_MODE and TALLY:
        terminalreporter.write_line("\nfuzz campaign (tried / typed / untyped / silently wrong / hung):")
        terminalreporter.write_line(table())
