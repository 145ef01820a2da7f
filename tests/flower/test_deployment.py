"""A real Flower deployment on loopback: one SuperLink and three SuperNodes as subprocesses (insecure
mode: no TLS, no node authentication; see docs/flower_deployment.md for real use), the app in
``deploy_app/`` submitted with ``flwr run``: fedsec's own ServerApp (``FedsecStrategy``) and ClientApp
(``fedsec.flower.apps``) running ``deploy_app/fedsec.toml``, two rounds of trimmed mean after NNM with one
ALIE attacker, which must write the in-process engine's run round by round. Every process is stopped at
the end, on failure too, and the test checks that none is left.

Secure aggregation over messages is covered on Flower's wire format in ``test_flower_secure.py`` and
``test_flower_secagg.py``; here it would add six ClientApp process starts per node and round.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("flwr")

import torch

from fedsec.config import Config
from fedsec.simulation import simulate

pytestmark = [pytest.mark.flower, pytest.mark.slow]

APP = Path(__file__).parent / "deploy_app"
BIN = Path(sys.executable).parent
NODES = 3
DEADLINE_S = 420.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    end = time.monotonic() + 120
    while time.monotonic() < end:
        assert all(p.poll() is None for p in procs), _tails(logs)
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError("the SuperLink did not listen within 120 s\n" + _tails(logs))


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _strays(home: Path) -> list[int]:
    """Processes of this test still running: those whose environment names its ``FLWR_HOME``."""
    tag = f"FLWR_HOME={home}".encode()
    out = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and tag in (d / "environ").read_bytes().split(b"\0"):
                out.append(int(d.name))
        except OSError:
            continue
    return out


@contextmanager
def _group(home: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started in their own sessions; on exit each whole process group (a SuperNode with its
    SuperExec and ClientApp children, the SuperLink with its ServerApp) gets SIGTERM, then SIGKILL, and
    so does any other process started with this test's ``FLWR_HOME``."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for p in procs:
            if _alive(p.pid):
                os.killpg(p.pid, signal.SIGTERM)
        end = time.monotonic() + 10
        while time.monotonic() < end and any(_alive(p.pid) for p in procs):
            time.sleep(0.2)
        for p in procs:
            if _alive(p.pid):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        for pid in _strays(home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _start(procs: list[subprocess.Popen[bytes]], log: Path, *cmd: str, env: dict[str, str]) -> None:
    with log.open("wb") as fh:
        procs.append(
            subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        )


def _tails(logs: list[Path]) -> str:
    return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-1500:] for p in logs if p.exists())


def test_superlink_and_three_supernodes_run_fedsec_rounds_as_in_process(tmp_path: Path) -> None:
    home, app, out = tmp_path / "flwr-home", tmp_path / "app", tmp_path / "run"
    shutil.copytree(APP, app)
    home.mkdir()
    link = _free_port()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "loopback"\n\n'
        f'[superlink.loopback]\naddress = "127.0.0.1:{link}"\ninsecure = true\n'
    )
    env = {**os.environ, "FLWR_HOME": str(home)}
    logs = [tmp_path / "superlink.log", *(tmp_path / f"supernode{i}.log" for i in range(NODES))]
    with _group(home) as procs:
        _start(
            procs,
            logs[0],
            str(BIN / "flower-superlink"),
            "--insecure",
            "--port",
            str(link),
            "--disable-runtime-dependency-installation",
            env=env,
        )
        _wait_for_port(link, procs, logs)
        for i in range(NODES):
            _start(
                procs,
                logs[1 + i],
                str(BIN / "flower-supernode"),
                "--insecure",
                "--superlink",
                f"127.0.0.1:{link}",
                "--port",
                str(_free_port()),
                "--node-config",
                f"partition-id={i} num-partitions={NODES}",
                env=env,
            )
        run = subprocess.run(
            [str(BIN / "flwr"), "run", str(app), "loopback", "--run-config", f'out="{out}"'],
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout.decode() + run.stderr.decode()
        end = time.monotonic() + DEADLINE_S
        while not (out / "summary.json").exists() and time.monotonic() < end:
            assert all(p.poll() is None for p in procs), _tails(logs)
            time.sleep(0.5)
        assert (out / "summary.json").exists(), "no run directory within the deadline\n" + _tails(logs)
    time.sleep(0.5)
    assert not any(_alive(p.pid) for p in procs) and not _strays(home), "processes left running"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["engine"].startswith("flower/")
    # the same run in this process: the same model after every round (see test_flower_engine.py)
    cfg = Config.from_toml(APP / "fedsec.toml", []).units()[0]
    ref = simulate(cfg, tmp_path / "inprocess")
    assert ref.run_dir is not None
    for t in (1, 2):
        wa, wb = (torch.load(d / "checkpoints" / f"round_{t:05d}.pt")["weights"] for d in (ref.run_dir, out))
        assert torch.allclose(wa, wb, rtol=0, atol=1e-6 * float(wa.abs().max())), f"round {t}"
    assert (out / "report.md").is_file()


def test_a_failing_deployment_leaves_no_process_behind(tmp_path: Path) -> None:
    """The teardown on failure: a process group whose leader has a child (as a SuperNode has its
    ClientApp), and a process that left the group (its own session), are all gone after an error."""
    home = tmp_path / "flwr-home"
    env = {**os.environ, "FLWR_HOME": str(home)}
    escape = (
        "import subprocess, time; subprocess.Popen(['sleep', '300'], start_new_session=True); time.sleep(300)"
    )
    logs = [tmp_path / "leader.log", tmp_path / "escapee.log"]
    with pytest.raises(RuntimeError, match="deployment failed"), _group(home) as procs:
        _start(procs, logs[0], "bash", "-c", "sleep 300 & sleep 300", env=env)
        _start(procs, logs[1], sys.executable, "-c", escape, env=env)
        end = time.monotonic() + 30
        while len(_strays(home)) < 4 and time.monotonic() < end:
            time.sleep(0.1)
        assert len(_strays(home)) >= 4, _strays(home)
        raise RuntimeError("deployment failed")
    time.sleep(0.5)
    assert _strays(home) == []


EXAMPLE = Path(__file__).parents[2] / "examples" / "flower_app"


@pytest.mark.skipif(
    os.environ.get("FEDSEC_FLOWER_EXAMPLE") != "1",
    reason="about 150 s on 2 cores (Ray start-up); set FEDSEC_FLOWER_EXAMPLE=1 to run it",
)
def test_the_example_flower_app_runs_as_documented_on_free_ports(tmp_path: Path) -> None:
    """``flwr run examples/flower_app local --stream`` as the example documents it, with the local
    SuperLink that ``flwr`` starts moved to free ports and its own ``FLWR_HOME`` (so concurrent runs do
    not clash on Flower's fixed defaults 39091/39093); two rounds instead of ten. The SuperLink that
    ``flwr`` leaves running in the background is stopped with every process of this ``FLWR_HOME``."""
    home, out = tmp_path / "flwr-home", tmp_path / "run"
    home.mkdir()
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(_free_port()),
        "FLWR_LOCAL_CONTROL_API_PORT": str(_free_port()),
    }
    cmd = [str(BIN / "flwr"), "run", str(EXAMPLE), "local", "--stream"]
    cmd += ["--federation-config", "num-supernodes=10"]
    cmd += ["--run-config", f'out="{out}" set="train.rounds=2"']
    with _group(home):
        run = subprocess.run(cmd, env=env, capture_output=True, timeout=DEADLINE_S, cwd=tmp_path)
        end = time.monotonic() + 60
        while not (out / "summary.json").exists() and time.monotonic() < end:
            time.sleep(0.5)
        logs = run.stdout.decode(errors="replace")[-3000:] + run.stderr.decode(errors="replace")[-3000:]
        assert run.returncode == 0 and (out / "summary.json").exists(), logs
    time.sleep(0.5)
    assert not _strays(home), "processes left running"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["engine"].startswith("flower/")
    assert summary["defense"] == "multi_krum(nnm)"
