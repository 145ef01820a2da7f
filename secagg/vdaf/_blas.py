"""One BLAS thread for the exact float64 products of secagg.vdaf (gram.field_matmul, pine.signed_dot).

These products are small and memory-bound; on a busy machine OpenBLAS's worker threads can spin
against other processes and make a (20 x 61,706) @ (61,706 x 20) product take seconds instead of
milliseconds. The limit is scoped to the ``with`` body (threadpoolctl, which scikit-learn also uses).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_CONTROLLER: list[Any] = []


@contextmanager
def one_blas_thread() -> Iterator[None]:
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    with _CONTROLLER[0].limit(limits=1, user_api="blas"):
        yield
