"""An in-process Flower ``Grid`` for testing and measuring secure aggregation over Flower messages.

:class:`LoopbackGrid` serializes every message to Flower's protobuf wire format and back (so no Python
object is shared between the ServerApp and a node), runs the destination node's ``ClientApp`` with that
node's persistent ``Context`` (as a SuperNode keeps it), and meters per node the bytes of the serialized
messages in each direction and the seconds its ClientApp ran. It runs the nodes one after another in
the calling process: the server's own seconds are the wall time of a round minus the nodes' seconds.

``lose(message) -> bool`` lets a test drop a message before delivery (the node never answers it, as
after a crash or a network loss); Flower's ``send_and_receive`` then returns without its reply.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity


@dataclass
class NodeCost:
    """What one node spent: bytes it received and sent (serialized messages) and seconds it ran."""

    bytes_down: int = 0
    bytes_up: int = 0
    seconds: float = 0.0
    messages: int = 0


@dataclass
class LoopbackGrid(Grid):
    """A Grid over ``apps`` (node id -> ClientApp), each node with its own ``Context``.

    Args:
        apps: the ClientApp of each node.
        node_config: per-node ``node_config`` (e.g. ``{"partition-id": i}``); default empty.
        lose: optional predicate; a message it returns True for is never delivered.
    """

    apps: Mapping[int, ClientApp]
    node_config: Mapping[int, dict[str, int | float | str]] = field(default_factory=dict)
    lose: Callable[[Message], bool] | None = None
    costs: dict[int, NodeCost] = field(default_factory=dict)
    contexts: dict[int, Context] = field(default_factory=dict)
    _replies: dict[str, Message] = field(default_factory=dict)
    _run: Run | None = None

    def __post_init__(self) -> None:
        # a Message takes its sender and run from the process's task identity, as in a ServerApp process
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
        for nid in self.apps:
            self.contexts[nid] = Context(
                run_id=1,
                node_id=nid,
                node_config=dict(self.node_config.get(nid, {})),
                state=RecordDict(),
                run_config={},
            )
            self.costs[nid] = NodeCost()

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        if self._run is None:
            self._run = Run.create_empty(run_id=1)
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.apps)

    def _deliver(self, msg: Message) -> None:
        nid = int(msg.metadata.dst_node_id)
        wire = message_to_proto(msg).SerializeToString()
        if self.lose is not None and self.lose(msg):
            return
        cost = self.costs[nid]
        cost.bytes_down += len(wire)
        cost.messages += 1
        t0 = time.perf_counter()
        inbound = message_from_proto(ProtoMessage.FromString(wire))
        reply = self.apps[nid](inbound, self.contexts[nid])
        reply.metadata.__dict__["_message_id"] = str(uuid.uuid4())
        out = message_to_proto(reply).SerializeToString()
        cost.seconds += time.perf_counter() - t0
        cost.bytes_up += len(out)
        self._replies[msg.metadata.message_id] = message_from_proto(ProtoMessage.FromString(out))

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            self._deliver(msg)
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))

    def reset_costs(self) -> None:
        for nid in self.costs:
            self.costs[nid] = NodeCost()
