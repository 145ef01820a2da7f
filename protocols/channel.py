"""The wire and channel layer every mechanism shares (re-exported from :mod:`secagg.channel`).

The core (:class:`Frame`, the in-process :class:`Channel`, the fault hooks) lives in ``secagg`` so that
the masking driver (:mod:`secagg.driver`) may use it under the layering rule (``secagg`` imports no
``protocols``); mechanisms import it from here.
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

__all__ = [
    "MAGIC",
    "SIG_BYTES",
    "Channel",
    "Delivery",
    "Fault",
    "Frame",
    "FrameError",
    "Message",
    "drop",
    "frame_bytes",
    "reorder",
    "replay",
    "tamper",
]
