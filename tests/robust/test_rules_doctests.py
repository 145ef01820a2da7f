"""The examples in the docstrings of the robust rules run (CI does not collect module doctests)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "robust",
    "robust.base",
    "robust.coordinate",
    "robust.distance",
    "robust.geometric",
    "robust.pipeline",
    "robust.pre",
    "robust.selection",
    "robust.spectral",
    "robust.trust",
]

WITH_EXAMPLES = {
    "robust",
    "robust.coordinate",
    "robust.distance",
    "robust.geometric",
    "robust.pipeline",
    "robust.pre",
}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if name in WITH_EXAMPLES:
        assert result.attempted > 0
