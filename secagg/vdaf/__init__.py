"""Verifiable distributed aggregation (draft-irtf-cfrg-vdaf-20): fields, XOF, FLP, Prio3, PINE.

Layers, bottom up (as libprio-rs): ``field`` (Field64, Field128, NTT, Lagrange-basis polynomials),
``xof`` (XofTurboShake128, domain-separation tags), ``flp`` (the BBCGGI19 fully linear proof with
gadgets Mul / PolyEval / ParallelSum), ``circuits`` (Count, Sum, SumVec), ``prio3`` (shard, verify,
aggregate, unshard, byte-exact with the draft's test vectors) and ``pine`` (PINE's L2-norm circuit).
"""
