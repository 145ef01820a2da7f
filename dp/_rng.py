"""Sources of randomness for privacy noise.

Seeds come from libsodium (``nacl.utils.random``, the operating system's CSPRNG), never from a fixed
value unless the caller passes one for reproducibility.
"""

from __future__ import annotations

import nacl.utils
import torch


def secure_seed() -> int:
    """A fresh 63-bit seed from the operating system's CSPRNG (through libsodium)."""
    return int.from_bytes(nacl.utils.random(8), "little") & ((1 << 63) - 1)


def secure_generator(device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded from :func:`secure_seed`.

    Assumption, stated plainly: the seed is unpredictable, but torch's generators (Mersenne Twister
    on the CPU, Philox on CUDA) are not cryptographically secure streams, and floating-point Gaussian
    samples are open to Mironov's (CCS 2012) least-significant-bit attack. This is the usual
    practice of DP training libraries outside their "secure mode"; the discrete noise of
    :mod:`dp.distributed` uses a libsodium ChaCha20 stream instead.
    """
    g = torch.Generator(device=device)
    g.manual_seed(secure_seed())
    return g
