"""The bottom package: small helpers every other package may import (it imports none of them).

Each helper here is the one implementation of something several layers need: L2 row clipping
(:mod:`fedcore.clip`), the centered lift of a ring (:mod:`fedcore.ring`), stack and weight
validation (:mod:`fedcore.validate`). ``secagg``, ``robust``, ``dp``, ``protocols`` and ``fedsec`` import it;
``fedcore`` imports only numpy and torch.
"""

from fedcore.clip import l2_clip_factors

__all__ = ["l2_clip_factors"]
