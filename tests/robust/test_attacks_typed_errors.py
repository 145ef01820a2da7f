"""robust.attacks raises the package's typed errors (issue 21), which keep subclassing the builtins
their callers catch: a bad parameter is a ParameterError (ValueError and TypeError), a bad stack a
StackError (ValueError)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from robust import attacks
from robust.errors import ParameterError, RobustError, StackError

CTX = attacks.AttackContext(n=5, f=2)
OWN = torch.zeros(2, 3)

CASES: dict[str, tuple[Callable[[], Any], type[Exception], type[Exception]]] = {
    "context n=0": (lambda: attacks.AttackContext(n=0, f=0), ParameterError, ValueError),
    "context n float": (lambda: attacks.AttackContext(n=2.5, f=0), ParameterError, TypeError),  # type: ignore[arg-type]
    "context f=n": (lambda: attacks.AttackContext(n=3, f=3), ParameterError, ValueError),
    "context rule": (lambda: attacks.AttackContext(n=3, f=1, rule=3), ParameterError, TypeError),  # type: ignore[arg-type]
    "own a list": (lambda: attacks.SignFlip()([[0.0]], ctx=CTX), ParameterError, TypeError),
    "own 1-D": (lambda: attacks.SignFlip()(torch.zeros(3), ctx=CTX), StackError, ValueError),
    "own int dtype": (
        lambda: attacks.SignFlip()(np.zeros((2, 3), np.int64), ctx=CTX),
        ParameterError,
        TypeError,
    ),
    "own rows != f": (lambda: attacks.SignFlip()(torch.zeros(3, 3), ctx=CTX), StackError, ValueError),
    "honest shape": (
        lambda: attacks.ALIE(omniscient=True)(OWN, torch.zeros(2, 3), ctx=CTX),
        StackError,
        ValueError,
    ),
    "ctx not a context": (lambda: attacks.SignFlip()(OWN, ctx=3), ParameterError, TypeError),  # type: ignore[arg-type]
    "alie z nan": (lambda: attacks.ALIE(z=float("nan"))(OWN, ctx=CTX), ParameterError, ValueError),
    "nonfinite kind": (lambda: attacks.NonFinite(kind="zero"), ParameterError, ValueError),
    "perturbation kind": (
        lambda: attacks.perturbation(torch.zeros(2, 3), "diagonal"),
        ParameterError,
        ValueError,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_misuse_raises_the_typed_error_and_the_builtin(name: str) -> None:
    call, typed, builtin = CASES[name]
    with pytest.raises(typed) as info:
        call()
    assert isinstance(info.value, RobustError) and isinstance(info.value, builtin)
    assert "got" in str(info.value)
