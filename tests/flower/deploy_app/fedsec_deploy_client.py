"""The deployment test's ClientApp: a node whose update is fixed by its partition id.

Partition i adds ``0.1 (i + 1)`` to every coordinate of the model it receives; the last partition is
Byzantine in the plaintext rounds and adds :data:`BYZANTINE` instead. In the secure round (messages that
carry fedsec's secure-aggregation record) every node is honest and fedsec's ``secagg_mod`` answers.

A SuperNode starts one ClientApp process per message, so this module imports only numpy and Flower;
fedsec (and torch with it) is imported by the secure round's messages alone.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable

BYZANTINE = 1000.0
SECAGG_RECORD = "fedsec.secagg"  # fedsec.flower.secagg.RECORD


def step(pid: int, dim: int) -> np.ndarray:
    """The honest update of partition ``pid``."""
    return np.full(dim, 0.1 * (pid + 1), np.float32)


def fedsec_secagg(msg: Message, ctx: Context, call_next: ClientAppCallable) -> Message:
    """fedsec's secagg_mod, imported on the first message that needs it."""
    if not msg.has_content() or SECAGG_RECORD not in msg.content.config_records:
        return call_next(msg, ctx)
    from fedsec.flower.secagg_mod import secagg_mod

    return secagg_mod(msg, ctx, call_next)


app = ClientApp(mods=[fedsec_secagg])


@app.train()
def train(msg: Message, ctx: Context) -> Message:
    pid, nodes = int(ctx.node_config["partition-id"]), int(ctx.node_config["num-partitions"])
    w = np.concatenate([a.ravel() for r in msg.content.array_records.values() for a in r.to_numpy_ndarrays()])
    honest = "secure" in msg.content.config_records or pid < nodes - 1
    delta = step(pid, w.size) if honest else np.full(w.size, BYZANTINE, np.float32)
    content = RecordDict({"arrays": ArrayRecord([w + delta]), "metrics": MetricRecord({"pid": pid})})
    return Message(content, reply_to=msg)
