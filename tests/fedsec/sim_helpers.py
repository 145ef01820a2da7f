"""Tiny experiment configs shared by the simulation, CLI and sweep tests (fast: a few rounds on a
small synthetic task), and the run summaries the report-table tests feed in."""

from __future__ import annotations

from typing import Any

from fedsec.config import Config

TINY: dict[str, Any] = {
    "name": "tiny",
    "data": {
        "dataset": "synthetic",
        "n_clients": 8,
        "partition": "iid",
        "min_samples": 4,
        "options": {"n_samples": 400, "n_features": 8, "n_classes": 3, "class_sep": 3.0},
    },
    "model": {"name": "logreg"},
    "train": {"rounds": 6, "lr": 0.5, "batch_size": 16, "threads": 1},
    "eval": {"every": 2},
    "output": {"plots": False},
}


def tiny_dict(**sections: dict[str, Any]) -> dict[str, Any]:
    """TINY with sections updated key by key; ``defense`` replaces the defense list."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    for sec, table in sections.items():
        if sec == "defense":
            out["defense"] = table
        else:
            out.setdefault(sec, {}).update(table)
    return out


def tiny(**sections: dict[str, Any]) -> Config:
    return Config.from_dict(tiny_dict(**sections))


def tiny_toml(**sections: dict[str, Any]) -> str:
    return tiny(**sections).to_toml()


def run_summary(
    label: str, attack: str, strength: float | None, beta: float, seed: int, acc: float, **fields: Any
) -> dict[str, Any]:
    """A finished run's summary as the report tables read it: a digits FedSGD run in the clear with
    f = 5 and no data attack, max and final accuracy ``acc``; ``fields`` override any entry."""
    return {
        "label": label,
        "dataset": "digits",
        "partition": "dirichlet",
        "beta": beta,
        "attack": attack,
        "attack_data": "none",
        "strength": strength,
        "f": 5,
        "protocol": "plain",
        "mode": "fedsgd",
        "seed": seed,
        "max_accuracy": acc,
        "final_accuracy": acc,
        "agg_seconds_mean": 0.01,
        **fields,
    }
