"""Attacks against fedsec's own aggregators: every attack yields rows the rules can consume."""

from __future__ import annotations

import pytest
import torch

import robust
from robust import attacks as A

N, F, D = 25, 5, 64
RULES = {
    "median": lambda: robust.make("median"),
    "trimmed_mean": lambda: robust.make("trimmed_mean", f=F),
    "multi_krum": lambda: robust.make("multi_krum", f=F),
    "centered_clipping": lambda: robust.make("centered_clipping", tau=1.0, iters=3),
}


def _round(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(D, generator=g)
    return mean + torch.randn(F, D, generator=g), mean + torch.randn(N - F, D, generator=g)


def _attack(name: str, rule: object) -> A.Attack:
    if name == "calibrated":
        return A.Calibrated("alie", rule=rule)  # type: ignore[arg-type]
    return A.make(name)


@pytest.mark.parametrize("rule_name", sorted(RULES))
@pytest.mark.parametrize("attack_name", A.ATTACKS.names())
def test_rules_stay_finite_and_bounded_under_every_attack(rule_name: str, attack_name: str) -> None:
    own, honest = _round()
    rule = RULES[rule_name]()
    atk = _attack(attack_name, rule)
    ctx = A.AttackContext(n=N, f=F, rule=rule, generator=torch.Generator().manual_seed(3))
    byz = atk(own, honest if atk.omniscient else None, ctx=ctx)
    out = rule(torch.cat([honest, byz]))
    assert out.shape == (D,) and torch.isfinite(out).all()
    # f = 5 of 25 rows cannot drag a robust rule far outside the honest rows' range
    spread = float((honest - honest.mean(0)).norm(dim=1).max())
    assert float((out - honest.mean(0)).norm()) < 3 * spread + 1.0


def test_calibration_leaves_centered_clipping_state_untouched() -> None:
    own, honest = _round(1)
    rule = robust.CenteredClipping(tau=1.0, iters=2)
    rule(torch.cat([honest, own]))  # a first round sets the center
    before = rule.state_dict()["center"].clone()
    A.Calibrated("alie", rule=rule)(own, ctx=A.AttackContext(n=N, f=F))
    assert torch.equal(rule.state_dict()["center"], before)


def test_calibrated_alie_hurts_the_library_median_more_than_z_max() -> None:
    g = torch.Generator().manual_seed(2)
    mean = torch.randn(1000, generator=g)
    own, honest = mean + torch.randn(F, 1000, generator=g), mean + torch.randn(N - F, 1000, generator=g)
    rule = robust.Median()
    ctx = A.AttackContext(n=N, f=F, rule=rule)

    def deviation(byz: torch.Tensor) -> float:
        return float((rule(torch.cat([honest, byz])) - honest.mean(0)).norm())

    assert deviation(A.Calibrated("alie")(own, ctx=ctx)) > 1.2 * deviation(A.ALIE()(own, ctx=ctx))
