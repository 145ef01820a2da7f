"""The wire and channel layer every mechanism shares (re-exported from :mod:`secagg.channel` and
:mod:`secagg.tcp_channel`).

The core (:class:`Frame`, the in-process :class:`Channel`, the fault hooks) and the loopback
:class:`TcpChannel` live in ``secagg`` so that the masking driver (:mod:`secagg.driver`) may use them
under the layering rule (``secagg`` imports no ``protocols``); mechanisms import them from here and
take ``transport="inproc" | "tcp"`` (:func:`open_channel`).
"""

from secagg.channel import (
    MAGIC,
    SIG_BYTES,
    Channel,
    Delivery,
    Fault,
    Frame,
    FrameError,
    Message,
    drop,
    frame_bytes,
    reorder,
    replay,
    tamper,
)
from secagg.tcp_channel import TRANSPORTS, TcpChannel, open_channel

__all__ = [
    "MAGIC",
    "SIG_BYTES",
    "TRANSPORTS",
    "Channel",
    "Delivery",
    "Fault",
    "Frame",
    "FrameError",
    "Message",
    "TcpChannel",
    "drop",
    "frame_bytes",
    "open_channel",
    "reorder",
    "replay",
    "tamper",
]
