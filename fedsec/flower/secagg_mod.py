"""The node's side of :mod:`fedsec.flower.secagg`: a Flower Mod that answers fedsec's secure aggregation.

Add it to the ClientApp (``ClientApp(mods=[secagg_mod])`` or ``@app.train(mods=[secagg_mod])``). A
``train`` message without the :data:`~fedsec.flower.secagg.RECORD` record passes through untouched. At
``setup`` the mod calls the app's ``train`` function on the message's other records, keeps the update
(encoded at ``advertise_keys``, scaled by its public weight factor) and returns only the node's verify
key, training metrics and config records; the update's arrays never leave the node. Later it hands the
server's bytes to its :class:`secagg.client.SecAggClient` and returns the reply bytes. Its phase moves
only along :data:`NODE_TRANSITIONS`; a message out of order, of another session, or one the client
refuses is answered with an error reply naming the typed error.

Between messages the node's state (its SecAggClient, holding its secret keys and shares) is kept, pickled,
in ``Context.state`` under :data:`STATE`, on the SuperNode only; it is deleted when the round ends or
aborts. Only this mod writes that record, so unpickling it reads the node's own data.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
from flwr.app import ConfigRecord, Context, Error, Message, MessageType, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.constant import ErrorCode

from fedsec.flower.secagg import (
    PAYLOAD,
    RECORD,
    FlowerSecAggError,
    flatten,
    get,
    put_payload,
    read_payload,
    round_config,
)
from secagg import FixedPoint, SecAggError, keys
from secagg.client import SecAggClient, Stage
from secagg.config import RoundConfig
from secagg.errors import AuthenticationError, StageError

#: the ConfigRecord of ``Context.state`` holding the node's pickled protocol state
STATE = "fedsec.secagg.state"

#: node phase -> the phase it may answer next (after ``masked_input``: ``consistency_check`` in the
#: active variant, ``unmasking`` in the passive one; :func:`_check_next`)
NODE_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "setup": ("advertise_keys",),
    "advertise_keys": ("share_keys",),
    "share_keys": ("masked_input",),
    "consistency_check": ("unmasking",),
}


@dataclass
class NodeState:
    """What a node keeps between the messages of one round."""

    cid: int
    cfg: RoundConfig
    update: np.ndarray  # the float update until advertise_keys, then emptied
    enc: FixedPoint
    signer: keys.Signer
    server_key: bytes
    phase: str = "setup"
    client: SecAggClient | None = None


def _reply(phase: str, data: bytes, extra: RecordDict | None = None) -> RecordDict:
    """The reply's protocol record and bytes; at setup also the train function's metric and config
    records (never its arrays)."""
    rd = RecordDict()
    if extra is not None:
        for name, metrics in extra.metric_records.items():
            rd[name] = metrics
        for name, conf in extra.config_records.items():
            if name not in (RECORD, PAYLOAD):
                rd[name] = conf
    rd[RECORD] = ConfigRecord({"phase": phase})
    return put_payload(rd, data)


def _train(
    msg: Message, ctx: Context, call_next: ClientAppCallable, rec: ConfigRecord
) -> tuple[RecordDict, NodeState]:
    """Run the app's train function on the message's other records; return its reply content and the
    node's new state (its encoded update and a fresh signing key)."""
    cfg = round_config(rec)
    cid = get(rec, "cid", int)
    if not 0 <= cid < cfg.n:
        raise FlowerSecAggError(f"setup: got cid={cid}; want an int in [0, {cfg.n})")
    enc = FixedPoint(bits=cfg.bits, clip=get(rec, "clip", float), frac_bits=get(rec, "frac_bits", int))
    server_key = get(rec, "server_key", bytes)
    msg.content = RecordDict({k: v for k, v in msg.content.items() if k not in (RECORD, PAYLOAD)})
    out = call_next(msg, ctx)
    if out.has_error():
        raise FlowerSecAggError(f"setup: the train function failed: {out.error.reason}")
    x = flatten(out.content.array_records.values())
    if x.size != cfg.d:
        raise FlowerSecAggError(f"setup: got an update of {x.size} values; want d={cfg.d}")
    if not np.all(np.isfinite(x)):
        raise FlowerSecAggError("setup: got NaN or infinite values in the update; want finite floats")
    state = NodeState(cid, cfg, x, enc, keys.Signer(), server_key)
    return out.content, state


def _check_next(st: NodeState, phase: str, rec: ConfigRecord) -> None:
    if rec.get("session") != st.cfg.session:
        raise StageError(f"node {st.cid}: got a message of another session in phase {phase!r}")
    if st.phase == "masked_input":
        allowed: tuple[str, ...] = ("consistency_check",) if st.cfg.active else ("unmasking",)
    else:
        allowed = NODE_TRANSITIONS.get(st.phase, ())
    if phase not in allowed:
        raise StageError(f"node {st.cid}: got phase {phase!r} after {st.phase!r}; want one of {allowed}")


def _advertise(st: NodeState, rec: ConfigRecord) -> bytes:
    ids, vks = get(rec, "pki_ids", list), get(rec, "pki_keys", list)
    if len(ids) != len(vks) or not all(isinstance(i, int) for i in ids):
        raise FlowerSecAggError("advertise_keys: got a malformed PKI; want equal lists of ids and keys")
    pki = {int(i): bytes(k) for i, k in zip(ids, vks)}
    if pki.get(st.cid) != st.signer.verify_key:
        raise AuthenticationError(f"advertise_keys: node {st.cid}'s own verify key missing or substituted")
    factor = get(rec, "factor", float)
    if not 0.0 < factor <= 1.0:
        raise FlowerSecAggError(f"advertise_keys: got weight factor {factor}; want one in (0, 1]")
    x = st.enc.encode(factor * st.update, n_summands=st.cfg.n)
    st.update = np.zeros(0)
    st.client = SecAggClient(st.cid, x, st.cfg, st.signer, pki, st.server_key)
    return st.client.start()


def _step(st: NodeState, phase: str, rec: ConfigRecord, content: RecordDict) -> bytes:
    _check_next(st, phase, rec)
    if phase == "advertise_keys":
        out = _advertise(st, rec)
    else:
        if st.client is None:
            raise StageError(f"node {st.cid}: got phase {phase!r} before advertise_keys")
        out = st.client.handle(read_payload(content))
    st.phase = phase
    return out


def _load(ctx: Context) -> NodeState:
    rec = ctx.state.config_records.get(STATE)
    blob = None if rec is None else rec.get("blob")
    if not isinstance(blob, bytes):
        raise StageError("got a protocol message without a round in progress; want setup first")
    st = pickle.loads(blob)  # this node's own state, written below
    if not isinstance(st, NodeState):
        raise StageError(f"node state: got {type(st).__name__}; want NodeState")
    return st


def _save(ctx: Context, st: NodeState | None) -> None:
    if st is None:
        ctx.state.config_records.pop(STATE, None)
    else:
        ctx.state.config_records[STATE] = ConfigRecord({"blob": pickle.dumps(st, pickle.HIGHEST_PROTOCOL)})


def secagg_mod(msg: Message, ctx: Context, call_next: ClientAppCallable) -> Message:
    """Flower Mod: answer fedsec's secure aggregation (see the module docstring)."""
    rec = msg.content.config_records.get(RECORD) if msg.has_content() else None
    if rec is None or msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, ctx)
    phase = rec.get("phase")
    st: NodeState | None = None
    try:
        if phase == "setup":
            content, st = _train(msg, ctx, call_next, rec)
            _save(ctx, st)
            return Message(_reply("setup", st.signer.verify_key, content), reply_to=msg)
        st = _load(ctx)
        data = _step(st, str(phase), rec, msg.content)
        _save(ctx, None if phase == "unmasking" else st)
        return Message(_reply(str(phase), data), reply_to=msg)
    except (SecAggError, ValueError) as e:
        # a refused message leaves the saved state as it was; an abort ends the round for this node
        # and its secrets go with it
        if st is not None and st.client is not None and st.client.stage is Stage.ABORTED:
            _save(ctx, None)
        reason = f"{type(e).__name__}: {e}"
        return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=msg)
