"""The deployment test's ServerApp: rounds of fedsec's trimmed mean over the nodes' updates, then
(``secure = true``) one round of fedsec's secure aggregation, the mean of the nodes' updates computed by
fedsec's SecAgg server from masked inputs only. It writes what it computed to the JSON file ``out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

import robust
from fedsec.flower.secagg import flatten, secure_mean
from protocols.secagg_sum import SecAggSum

app = ServerApp()


def _wait_for_nodes(grid: Grid, n: int, limit: float = 120.0) -> list[int]:
    end = time.monotonic() + limit
    while len(ids := sorted(grid.get_node_ids())) < n:
        if time.monotonic() > end:
            raise RuntimeError(f"nodes: got {len(ids)} connected; want {n}")
        time.sleep(0.5)
    return ids


@app.main()
def main(grid: Grid, ctx: Context) -> None:
    cfg = ctx.run_config
    dim, rounds = int(cfg["dim"]), int(cfg["rounds"])
    nodes = _wait_for_nodes(grid, int(cfg["nodes"]))
    rule = robust.make("trimmed_mean", f=int(cfg["trim"]))
    w = np.zeros(dim, np.float32)
    out: dict[str, object] = {"nodes": nodes, "history": []}
    for rnd in range(1, rounds + 1):
        msgs = [
            Message(RecordDict({"arrays": ArrayRecord([w])}), v, MessageType.TRAIN, group_id=str(rnd))
            for v in nodes
        ]
        replies = [r for r in grid.send_and_receive(msgs) if not r.has_error()]
        deltas = np.stack([flatten(r.content.array_records.values()) - w for r in replies])
        w = w + rule(torch.from_numpy(deltas).float()).numpy()
        out["history"].append({"round": rnd, "replies": len(replies), "model": w.tolist()})  # type: ignore[attr-defined]
    if bool(cfg["secure"]):
        content = RecordDict({"arrays": ArrayRecord([w]), "secure": ConfigRecord({"on": True})})
        res = secure_mean(grid, nodes, content, SecAggSum(clip=10.0), group_id="secure")
        out |= {"secure_delta": (res.mean - w).tolist(), "survivors": res.survivors, "rejected": res.rejected}
    Path(str(cfg["out"])).write_text(json.dumps(out))
