"""Client-side norm-bound proofs: Pedersen vector commitments on Ed25519 and a zero-knowledge proof that
the committed integer vector has bounded entries and squared L2 norm at most B (see :mod:`normproof`).

>>> import numpy as np
>>> params = NormBoundParams(d=3, entry_bits=4, bound=30)
>>> ctx = ProofContext(session=b"round-id", round=0, client=1)
>>> C, r, proof = commit_and_prove(params, np.array([3, -4, 2]), ctx)
>>> verify(params, C, proof.to_bytes(), ctx)  # None, or raises ProofRejected / MalformedProof
>>> len(proof.to_bytes()) == params.proof_size
True
"""

from secagg.normbound import projection
from secagg.normbound.errors import (
    LinkCheckFailed,
    MalformedProof,
    ParameterError,
    ProofRejected,
    WitnessError,
)
from secagg.normbound.normproof import (
    NormBoundParams,
    NormProof,
    ProofContext,
    check_witness,
    commit_and_prove,
    forge_proof,
    prove,
)
from secagg.normbound.pedersen import CommitmentKey, combine
from secagg.normbound.verifier import verify, verify_batch

__all__ = [
    "CommitmentKey",
    "LinkCheckFailed",
    "MalformedProof",
    "NormBoundParams",
    "NormProof",
    "ParameterError",
    "ProofContext",
    "ProofRejected",
    "WitnessError",
    "check_witness",
    "combine",
    "commit_and_prove",
    "forge_proof",
    "projection",
    "prove",
    "verify",
    "verify_batch",
]
