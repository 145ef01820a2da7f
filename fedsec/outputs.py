"""Run directories written so that nothing half-written looks like a result.

A unit run is written into a hidden sibling ``.<name>.partial-<pid>`` and renamed to ``<name>`` only
when it completes; single files are written to a temporary name and renamed (``os.replace`` is atomic
on POSIX). A directory holding ``summary.json`` is a finished run; partial directories left by a killed
process are removed by :func:`clean_partials`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fedsec.errors import ConfigError

SUMMARY = "summary.json"


def slug(text: str) -> str:
    """A file-name-safe version of a label: ``trimmed_mean(nnm)`` -> ``trimmed_mean-nnm``."""
    s = re.sub(r"[^A-Za-z0-9_.=-]+", "-", text).strip("-.")
    return s or "run"


def jsonable(obj: Any) -> Any:
    """Replace non-finite floats by None (JSON has no NaN) and tuples by lists, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(jsonable(obj), sort_keys=True)


def ensure_writable_dir(path: Path, key: str = "output.dir") -> Path:
    """Create ``path`` (and parents) and check that files can be created in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(
            f"{key}: got {str(path)!r}, which is not writable ({e.strerror}); want a writable directory"
        ) from None
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 (reports hold "±", "β", "ε") through :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    rows = list(rows)
    if not rows:
        return ""
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in jsonable(dict(r)).items()})
    return buf.getvalue()


class RunWriter:
    """Writes one run directory under a temporary name; :meth:`commit` renames it into place."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.tmp = final.parent / f".{final.name}.partial-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self._metrics = (self.tmp / "metrics.jsonl").open("w")

    def path(self, name: str) -> Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_text(self, name: str, text: str) -> None:
        self.path(name).write_text(text)

    def write_json(self, name: str, obj: Any) -> None:
        self.path(name).write_text(json.dumps(jsonable(obj), indent=2, sort_keys=True) + "\n")

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        self._metrics.write(dumps(record) + "\n")
        self._metrics.flush()

    def commit(self) -> Path:
        """Move the finished directory to its final name (replacing an older run of that name)."""
        self._metrics.close()
        old = None
        if self.final.exists():
            old = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
            os.replace(self.final, old)
        os.replace(self.tmp, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def abort(self) -> None:
        if not self._metrics.closed:
            self._metrics.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def clean_partials(root: Path) -> int:
    """Remove partial run directories left under ``root`` by killed processes; returns how many."""
    n = 0
    if not root.is_dir():
        return 0
    for p in root.glob(".*.partial-*"):
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


def is_finished(run_dir: Path, config_hash: str | None = None) -> bool:
    """A finished run has ``summary.json`` (and, if given, the same config hash)."""
    s = run_dir / SUMMARY
    if not s.is_file():
        return False
    if config_hash is None:
        return True
    try:
        return json.loads(s.read_text()).get("config_hash") == config_hash
    except (OSError, json.JSONDecodeError):
        return False


def load_runs(root: Path) -> list[dict[str, Any]]:
    """Every finished unit run at or below ``root`` (depth <= 3): its summary plus ``metrics`` rows."""
    found = []
    cands = [root] + [p for p in root.glob("*") if p.is_dir()] + [p for p in root.glob("*/*") if p.is_dir()]
    for d in cands:
        if d.name.startswith(".") or not (d / SUMMARY).is_file():
            continue
        s = json.loads((d / SUMMARY).read_text())
        s["run_dir"] = str(d)
        m = d / "metrics.jsonl"
        s["metrics"] = (
            [json.loads(line) for line in m.read_text().splitlines() if line] if m.is_file() else []
        )
        found.append(s)
    return sorted(found, key=lambda s: s["run_dir"])
