"""Client-side norm-bound proofs: Pedersen vector commitments on Ed25519 and a zero-knowledge proof that
the committed integer vector has bounded entries and squared L2 norm at most B (see :mod:`normproof`)."""

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
    "prove",
    "verify",
    "verify_batch",
]
