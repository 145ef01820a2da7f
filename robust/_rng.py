"""Seeding of the non-cryptographic generators the rules keep (DnC's coordinates, bucketing's
permutation). An explicit ``seed`` gives reproducible runs; ``seed=None`` draws the seed from libsodium
so that clients cannot predict the server's random choices."""

from __future__ import annotations

import nacl.utils
import torch

from robust.base import check_f


def resolve_seed(seed: int | None) -> int:
    if seed is None:
        return int.from_bytes(nacl.utils.random(8), "little") >> 1
    return check_f(seed, "seed")


def make_generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g
