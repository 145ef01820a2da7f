"""The round driver shared by the CKKS protocols: party setup, uploads, the final decryption.

A driver wires parties together and holds no algorithm code (STYLE.md, thin orchestrators). Every
message goes through :meth:`CKKSRound.send`, which accounts it in the round's :class:`Meter` and
appends it to :attr:`CKKSRound.transcript` (so tests can inspect exactly what each party received).
Parties and keys persist across rounds of one protocol object; the ``"setup"`` phase (key generation
and distribution) is metered in the round that performs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fedcore import validate
from protocols.base import Meter
from protocols.channel import Channel, Message
from protocols.ckks.checks import ByzantineInputError
from protocols.ckks.messages import Identity, Kind
from protocols.ckks.params import CKKSParameterError, CKKSParams
from protocols.ckks.parties import (
    CKKSClient,
    CKKSKeyHolder,
    CKKSServer,
    Update,
    read_excluded,
    read_plaintext,
)
from protocols.ckks.setup import seal_setup


def as_params(params: CKKSParams | dict[str, Any] | None) -> CKKSParams:
    """Accept a :class:`CKKSParams`, a dict of its fields (from a TOML config) or ``None`` (defaults)."""
    if params is None:
        return CKKSParams()
    if isinstance(params, CKKSParams):
        return params
    if isinstance(params, dict):
        kw = dict(params)
        if "coeff_mod_bit_sizes" in kw:
            kw["coeff_mod_bit_sizes"] = tuple(kw["coeff_mod_bit_sizes"])
        try:
            return CKKSParams(**kw)
        except TypeError as e:
            raise CKKSParameterError(f"got params keys {sorted(kw)}; want fields of CKKSParams ({e})") from e
    raise CKKSParameterError(f"got params of type {type(params).__name__}; want CKKSParams, dict or None")


def as_stack(stack: torch.Tensor | np.ndarray) -> np.ndarray:
    """The ``(n, d)`` stack as float64 numpy on the CPU (the clients' plaintexts).

    Validated by :func:`fedcore.validate.as_stack` (``ValueError`` naming the shape or dtype).
    """
    return validate.as_stack(stack).to("cpu", torch.float64).numpy()


def as_weights(weights: torch.Tensor | np.ndarray | None, n: int) -> np.ndarray | None:
    """Normalized client weights ``w / sum(w)`` (:func:`fedcore.validate.as_weights`), or ``None``."""
    if weights is None:
        return None
    w = validate.as_weights(weights, n, device="cpu").numpy()
    return w / w.sum()


def refuse_weights(name: str, weights: object, why: str) -> None:
    """Raise ``ValueError`` when a protocol that takes no client weights is given some."""
    if weights is not None:
        raise ValueError(f"{name}: got weights; want None ({why})")


class CKKSRound:
    """Base of the CKKS protocols: holds the parties and the transcript of the last round.

    Subclasses set ``name``, ``rotations`` (whether the server needs Galois keys), ``depth`` and
    implement ``run``. ``run``'s ``rng`` is accepted for the common interface and unused: keys, blinding
    masks and signatures draw from libsodium only.
    """

    name = "ckks"
    rotations = False
    depth = 1

    def __init__(self, params: CKKSParams | dict[str, Any] | None = None) -> None:
        self.params = as_params(params)
        self.key_holder: CKKSKeyHolder | None = None
        self.server: CKKSServer | None = None
        self.clients: dict[int, CKKSClient] = {}
        self.transcript: list[Message] = []
        self.meter = Meter()
        #: Transport hook: ``intercept(message) -> bytes`` may rewrite, replay or corrupt a message in
        #: flight (fault injection in tests); ``None`` delivers messages unchanged.
        self.intercept: Callable[[Message], bytes] | None = None
        #: Round counter, stamped on every frame: a message replayed from another round is refused.
        self.round_id = 0
        #: Clients excluded in the last round because a value decrypted from their input left its range.
        self.excluded: list[int] = []

    # -- plumbing ---------------------------------------------------------------------------------------
    def send(self, sender: str, receiver: str, phase: str, payload: bytes) -> bytes:
        """Deliver one message: meter it, pass it through :attr:`intercept`, record what arrived."""
        channel = Channel(self.meter, self.transcript, intercept=self.intercept)
        return channel.deliver(sender, receiver, phase, payload)

    def received_by(self, party: str) -> list[Message]:
        """Messages of the last round whose receiver is ``party``."""
        return [m for m in self.transcript if m.receiver == party]

    def _setup(self, n: int) -> tuple[CKKSKeyHolder, CKKSServer]:
        meter = self.meter
        if self.key_holder is None or self.server is None:
            with meter.time("key_holder", "setup"):
                kh = CKKSKeyHolder(self.params, Identity.generate("key_holder"), rotations=self.rotations)
                server_ctx = kh.server_context()
                server_ctx = seal_setup(kh.identity, Kind.CONTEXT, server_ctx)
            server_id = Identity.generate("server")
            kh.server_vk = self.send("server", "key_holder", "setup", server_id.verify_key)
            ctx_msg = self.send("key_holder", "server", "setup", server_ctx)
            # Identity keys are authentic by assumption (a PKI, out of band); the message is metered only.
            self.send("key_holder", "server", "setup", kh.identity.verify_key)
            with meter.time("server", "setup"):
                self.server = CKKSServer(self.params, ctx_msg, server_id, kh.identity.verify_key)
            self.key_holder = kh
            self._client_ctx = seal_setup(kh.identity, Kind.CONTEXT, kh.client_context())
        kh, server = self.key_holder, self.server
        for i in range(n):
            if i in self.clients:
                continue
            name = f"client[{i}]"
            ctx_msg = self.send("key_holder", name, "setup", self._client_ctx)
            with meter.time(name, "setup"):
                client = CKKSClient(i, self.params, ctx_msg, Identity.generate(name), kh.identity.verify_key)
            server.client_vks[i] = self.send(name, "server", "setup", client.identity.verify_key)
            self.clients[i] = client
        return kh, server

    def _upload(self, server: CKKSServer, x: np.ndarray) -> list[Update]:
        n, d = x.shape
        updates = []
        for i in range(n):
            name = f"client[{i}]"
            with self.meter.time(name, "upload"):
                msg = self.clients[i].encrypt(x[i])
            msg = self.send(name, "server", "upload", msg)
            with self.meter.time("server", "upload"):
                updates.append(server.load_update(i, msg, d))
        return updates

    def _decrypt_aggregate(
        self,
        kh: CKKSKeyHolder,
        server: CKKSServer,
        agg: Update,
        d: int,
        check: Callable[[np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """Server -> key holder: the aggregate ciphertexts; key holder -> server: their plaintext, noise
        flooded (``CKKSParams.flood_std``; :mod:`protocols.ckks.flooding`), after ``check`` (the
        key holder's range check of the exact decryption, :mod:`protocols.ckks.checks`)."""
        levels = agg[0].ciphertext()[0].coeff_modulus_size()
        with self.meter.time("server", "decrypt"):
            msg = server.seal(Kind.AGGREGATE, agg)
        msg = self.send("server", "key_holder", "decrypt", msg)
        with self.meter.time("key_holder", "decrypt"):
            reply = kh.release_aggregate(msg, len(agg), levels, d, check)  # flooded, never exact
        reply = self.send("key_holder", "server", "decrypt", reply)
        with self.meter.time("server", "decrypt"):
            return read_plaintext(server, reply, d)

    def _exclude(
        self, kh: CKKSKeyHolder, server: CKKSServer, culprits: list[int], n: int, phase: str
    ) -> list[int]:
        """Key holder -> server: the clients whose decryptions left their range; returns the kept ones.

        Raises :class:`ByzantineInputError` naming them when no client would be left. The server learns
        who was excluded (recorded in the leakage as ``excluded``)."""
        self.excluded = sorted(culprits)
        if len(culprits) >= n:
            raise ByzantineInputError(
                f"{self.name}: every client's input is out of range; want at least one", culprits
            )
        msg = self.send("key_holder", "server", phase, kh.excluded(culprits))
        with self.meter.time("server", phase):
            out = set(read_excluded(server, msg, n))
        return [i for i in range(n) if i not in out]

    def _begin(self, stack: torch.Tensor | np.ndarray) -> tuple[np.ndarray, CKKSKeyHolder, CKKSServer]:
        x = as_stack(stack)
        self.transcript = []
        self.excluded = []
        self.meter = Meter()
        self._check_params(x)
        kh, server = self._setup(x.shape[0])
        self.round_id += 1
        for ident in [kh.identity, server.identity, *(c.identity for c in self.clients.values())]:
            ident.round = self.round_id
        return x, kh, server

    def _begin_unweighted(
        self, stack: torch.Tensor | np.ndarray, weights: object, why: str
    ) -> tuple[np.ndarray, CKKSKeyHolder, CKKSServer]:
        """:meth:`_begin` for a protocol without client weights: ``weights`` must be ``None`` (``why``
        says why, in the ``ValueError`` otherwise)."""
        refuse_weights(self.name, weights, why)
        return self._begin(stack)

    def _begin_weighted(
        self, stack: torch.Tensor | np.ndarray, weights: torch.Tensor | np.ndarray | None
    ) -> tuple[np.ndarray, CKKSKeyHolder, CKKSServer, np.ndarray | None]:
        """:meth:`_begin`, then the normalized client weights (:func:`as_weights`; ``None``: the mean)."""
        x, kh, server = self._begin(stack)
        return x, kh, server, as_weights(weights, x.shape[0])

    def _check_params(self, x: np.ndarray) -> None:
        """Depth and range check for this protocol at this ``(n, d)``; see :meth:`max_magnitude`."""
        n, d = x.shape
        self.params.require(depth=self.depth, max_magnitude=self.max_magnitude(n, d), what=self.name)

    def max_magnitude(self, n: int, d: int) -> float:
        """Largest value any ciphertext of this protocol may hold, for honest inputs in range."""
        return float(n) * self.params.value_range
