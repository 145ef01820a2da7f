"""``fedsec audit``: every mechanism at tiny n and d, bytes against each mechanism's analytic formula,
the network model, growth exponents, extrapolation and the command's outputs."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocols
import robust
from fedsec.audit import (
    WORST_DROP_PHASE,
    AuditError,
    AuditSpec,
    Network,
    audit,
    audit_stack,
    build,
    fit_exponent,
    measure,
    parse_bandwidth,
    parse_network,
    parse_rtt,
    summarize,
)
from fedsec.cli import build_parser, main
from protocols._secure_sum import simulated_dropouts
from protocols.channel import frame_bytes
from protocols.ckks.mean import upload_bytes_bounds
from protocols.ckks.params import CKKSParams
from protocols.mechanisms import MECHANISMS
from protocols.paillier_mean import PaillierParams, upload_bytes
from protocols.plain import client_frame_bytes
from protocols.secagg_ddp import ddp_client_round_bytes
from protocols.secagg_normbound import normbound_client_round_bytes
from protocols.secagg_sum import plus_client_round_bytes
from secagg import SecAggError
from secagg.messages import client_round_bytes


def _client_bytes(meter: dict[str, dict[str, float]], field: str) -> float:
    return sum(c[field] for key, c in meter.items() if key.startswith("client/") and key != "client/setup")


@pytest.mark.parametrize("mechanism", MECHANISMS.names())
def test_every_mechanism_is_audited_at_tiny_size(mechanism: str) -> None:
    cases, refused = audit(AuditSpec([mechanism], robust.Mean(), clients=[3], dims=[8], repeats=1))
    assert refused == [] and len(cases) == 1
    rows = cases[0].rows()
    roles = {r["role"] for r in rows}
    assert "client" in roles and roles - {"client"}, roles
    s = summarize(rows, Network({"*": 1e8}, 0.05))
    assert s["client_bytes_sent"] >= 4 * 8  # no mechanism uploads less than the plain float32 update
    assert s["comm_rounds"] >= 1 and s["network_seconds"] >= 0.05
    assert s["expansion"] > 1.0  # every upload carries at least a frame header
    if mechanism == "plain":
        assert s["client_bytes_sent"] == np.mean([client_frame_bytes(i, 8) for i in range(3)])
        assert s["comm_rounds"] == 1
    # The leakage record is reported as data: the party that computed the rule's statistic is named.
    assert any("statistic" in keys for keys in cases[0].leakage.values())


@pytest.mark.parametrize(("n", "d"), [(3, 1), (4, 37), (7, 200)])
def test_plain_bytes_are_the_float32_upload(n: int, d: int) -> None:
    meter, leak = measure(protocols.make("plain", rule=robust.Mean()), n, d)
    frames = [client_frame_bytes(i, d) for i in range(n)]  # 4 d bytes of float32 in a channel frame
    assert meter["client/upload"]["bytes_sent"] == pytest.approx(sum(frames) / n)
    assert meter["server/upload"]["bytes_received"] == sum(frames)
    assert leak["server"]["updates"] == "all" and leak["server"]["statistic"] == "the raw rows"


@pytest.mark.parametrize(("n", "d", "bits"), [(3, 1, 32), (5, 20, 32), (6, 333, 48)])
def test_secagg_bytes_match_the_formula(n: int, d: int, bits: int) -> None:
    proto = protocols.make("secagg", rule=robust.Mean(), bits=bits)
    meter, _ = measure(proto, n, d)
    per_client = [client_round_bytes(n, d, 4 if bits <= 32 else 8, i) for i in range(n)]
    want_sent, want_received = np.mean(per_client, axis=0)  # frame headers name each client
    assert _client_bytes(meter, "bytes_sent") == pytest.approx(want_sent, abs=1e-9)
    assert _client_bytes(meter, "bytes_received") == pytest.approx(want_received, abs=1e-9)


@pytest.mark.parametrize(("n", "k", "d"), [(12, 4, 16), (20, 4, 5), (14, None, 9), (5, None, 3)])
def test_secagg_plus_bytes_match_the_neighbourhood_formula(n: int, k: int | None, d: int) -> None:
    proto = protocols.make("secagg_plus", rule=robust.Mean(), **({} if k is None else {"k": k}))
    degree = proto.inner.plan(n).k  # the protocol's own plan (complete graph: k = n - 1)
    meter, _ = measure(proto, n, d)
    sent, received = np.mean([plus_client_round_bytes(n, degree, d, 4, i) for i in range(n)], axis=0)
    assert _client_bytes(meter, "bytes_sent") == pytest.approx(sent)
    assert _client_bytes(meter, "bytes_received") == pytest.approx(received)
    if degree < n - 1:  # a sparse graph costs a client less than the complete one
        assert sent < client_round_bytes(n, d, 4)[0]


@pytest.mark.parametrize(("n", "d", "bits"), [(3, 8, 20), (6, 20, 20), (4, 33, 40)])
def test_secagg_ddp_bytes_match_the_padded_formula(n: int, d: int, bits: int) -> None:
    proto = protocols.make("secagg_ddp", rule=robust.Mean(), bits=bits)
    meter, _ = measure(proto, n, d)
    sent, received = np.mean([ddp_client_round_bytes(n, d, bits, i) for i in range(n)], axis=0)
    assert _client_bytes(meter, "bytes_sent") == pytest.approx(sent)
    assert _client_bytes(meter, "bytes_received") == pytest.approx(received)
    assert meter["client/rotation_seed"]["bytes_received"] == frame_bytes(
        "server", "client[0]", "rotation_seed", 32
    )


@pytest.mark.parametrize(("n", "d", "key_bits"), [(3, 8, 1024), (4, 100, 1024), (3, 20, 2048)])
def test_paillier_upload_is_whole_ciphertexts_in_a_signed_frame(n: int, d: int, key_bits: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 1024-bit test keys warn loudly
        proto = protocols.make("paillier", rule=robust.Mean(), key_bits=key_bits)
        meter, _ = measure(proto, n, d)
        want = upload_bytes(PaillierParams(key_bits=key_bits), n, d)
    assert meter["client/upload"]["bytes_sent"] == want
    assert meter["server/upload"]["bytes_received"] == n * want


@pytest.mark.parametrize(("n", "d"), [(3, 8), (6, 20), (4, 100)])
def test_secagg_normbound_bytes_are_commitment_proof_and_masked_limbs(n: int, d: int) -> None:
    proto = protocols.make("secagg_normbound", rule=robust.Mean(), bound=1.0)
    meter, _ = measure(proto, n, d)
    cfg = proto.inner.config
    sent, received = np.mean([normbound_client_round_bytes(cfg, n, d, i) for i in range(n)], axis=0)
    assert _client_bytes(meter, "bytes_sent") == pytest.approx(sent)
    assert _client_bytes(meter, "bytes_received") == pytest.approx(received)
    commit = frame_bytes("client[0]", "server", "commit_prove", 32 + cfg.params(d).proof_size)
    assert meter["client/commit_prove"]["bytes_sent"] == commit


@pytest.mark.parametrize(("n", "d"), [(3, 8), (4, 20)])
def test_prio_upload_is_the_pine_report_length(n: int, d: int) -> None:
    proto = protocols.make("prio", rule=robust.Mean())
    meter, _ = measure(proto, n, d)
    want = proto.inner.describe(d)["upload_bytes"]  # Pine.upload_bytes + nonces + public share
    frames = [frame_bytes(f"client[{i}]", srv, "report", 0) for i in range(n) for srv in ("leader", "helper")]
    assert meter["client/upload"]["bytes_sent"] == pytest.approx(want + sum(frames) / n)
    assert meter["leader/upload"]["bytes_received"] + meter["helper/upload"][
        "bytes_received"
    ] == n * want + sum(frames)


@pytest.mark.parametrize("d", [10, 5000])
def test_ckks_upload_lies_within_the_ciphertext_size_bounds(d: int) -> None:
    proto = protocols.make("ckks", rule=robust.Mean())
    meter, _ = measure(proto, 3, d)
    low, high = upload_bytes_bounds(CKKSParams(), d)
    assert low <= meter["client/upload"]["bytes_sent"] <= high
    # The key holder returns the aggregate in float64: 8 d bytes and a frame of under 256 bytes.
    assert 8 * d <= meter["key_holder/decrypt"]["bytes_sent"] < 8 * d + 256


@pytest.mark.parametrize("mechanism", ["secagg", "secagg_plus", "secagg_ddp", "secagg_normbound"])
def test_audited_dropouts_leave_after_sharing_keys_and_force_mask_recovery(mechanism: str) -> None:
    n = 10
    proto = build(mechanism, robust.Mean(), dropout=0.2)
    assert proto.inner.drop_phase == WORST_DROP_PHASE[mechanism] == "masked_input"
    res = proto.run(audit_stack(n, 8), rng=np.random.default_rng(3))
    dropped = sorted(set(range(n)) - set(res.accepted))
    assert len(dropped) == math.ceil(0.2 * n)  # exactly 20% of the clients, not a random count
    costs = res.meter.costs
    for i in dropped:  # each shared its keys (so its pairwise masks must be rebuilt) and sent no input
        assert costs[(f"client[{i}]", "share_keys")].bytes_sent > 0
        sent_input = costs.get((f"client[{i}]", "masked_input"))
        assert sent_input is None or sent_input.bytes_sent == 0
    # The server rebuilt their masks: the aggregate is the mean over the survivors only (DDP adds noise).
    x = audit_stack(n, 8).numpy()
    if mechanism != "secagg_ddp":
        np.testing.assert_allclose(res.aggregate.numpy(), x[res.accepted].mean(axis=0), atol=0.05)


def test_a_drop_phase_outside_the_protocol_is_refused() -> None:
    with pytest.raises(SecAggError, match="drop_phase: got 'nowhere'"):
        simulated_dropouts(5, 0.2, False, np.random.default_rng(0), "nowhere")
    assert simulated_dropouts(5, 0.0, False, None, "masked_input") == {}
    drops = simulated_dropouts(25, 0.1, False, np.random.default_rng(0), "masked_input")
    assert len(drops) == 3 and set(drops.values()) == {"masked_input"}


def test_units_parse_and_bad_units_are_refused() -> None:
    assert parse_bandwidth("100Mbit") == 1e8 and parse_bandwidth("1Gbit/s") == 1e9
    assert parse_rtt("50ms") == pytest.approx(0.05) and parse_rtt("0.2s") == pytest.approx(0.2)
    net = parse_network("client=20Mbit,server=1Gbit", "10ms")
    assert net.bits_per_s("client") == 2e7 and net.bits_per_s("server") == 1e9
    assert net.bits_per_s("key_holder") == 2e7  # any other role: the slowest link named
    for bad in ("fast", "-3Mbit", "0bit", "100MB"):  # bytes are not bits: refused, not misread
        with pytest.raises(AuditError, match="got"):
            parse_bandwidth(bad)
    with pytest.raises(AuditError, match="want a duration"):
        parse_rtt("50")


def test_network_model_sums_the_slowest_role_per_phase_and_one_rtt_per_communication_round() -> None:
    def row(role: str, phase: str, s: float, sent: float, recv: float) -> dict[str, object]:
        return {"mechanism": "m", "label": "l", "n": 2, "d": 4, "dropout": 0.0, "role": role,
                "phase": phase, "seconds": s, "bytes_sent": sent, "bytes_received": recv,
                "comm_rounds": int(sent + recv > 0), "one_time": False, "extrapolated": False}  # fmt: skip

    rows = [
        row("client", "upload", 0.5, 1000, 0),  # 0.5 s + 8000 bit / 8000 bit/s = 1.5 s
        row("server", "upload", 0.1, 0, 2000),  # 0.1 + 2 = 2.1 s  <- slowest
        row("server", "aggregate", 0.3, 0, 0),  # no bytes: no rtt
    ]
    s = summarize(rows, Network({"*": 8000.0}, rtt_s=0.25))
    assert s["network_seconds"] == pytest.approx(2.1 + 0.25 + 0.3)
    assert s["comm_rounds"] == 1 and s["expansion"] == pytest.approx(1000 / 16)


@settings(max_examples=25, deadline=None)
@given(
    a=st.floats(-2.0, 3.0),
    c=st.floats(1e-3, 1e3),
    xs=st.lists(st.integers(2, 10**6), min_size=2, max_size=6, unique=True),
)
def test_fit_exponent_recovers_a_power_law(a: float, c: float, xs: list[int]) -> None:
    assert fit_exponent(xs, [c * x**a for x in xs]) == pytest.approx(a, abs=1e-6)


def test_fit_exponent_needs_two_sizes() -> None:
    assert math.isnan(fit_exponent([5, 5], [1.0, 2.0]))


def test_a_case_over_budget_is_extrapolated_and_marked() -> None:
    spec = AuditSpec(["plain", "secagg"], robust.Mean(), clients=[3], dims=[4096], repeats=1, budget_s=0.0)
    cases, _ = audit(spec)
    for case in cases:
        assert case.extrapolated_from == 4096 // 16
        assert all(r["extrapolated"] for r in case.rows())
    plain = summarize(cases[0].rows(), Network({"*": 1e8}, 0.0))
    assert plain["client_bytes_sent"] == pytest.approx(client_frame_bytes(0, 4096))  # affine in d: exact
    secagg = summarize(cases[1].rows(), Network({"*": 1e8}, 0.0))
    want = client_round_bytes(3, 4096, 4)[0]  # affine in d: exact
    assert secagg["client_bytes_sent"] == pytest.approx(want)
    # Microsecond pilots fit any slope; the prediction's exponent is clamped, so plain runs for real.
    measured, _ = audit(
        AuditSpec(["plain"], robust.Mean(), clients=[3], dims=[4096], repeats=1, budget_s=5.0)
    )
    assert measured[0].extrapolated_from is None


def test_audit_stack_rows_have_norm_one_half() -> None:
    x = audit_stack(5, 100).numpy()
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 0.5, rtol=1e-5)


def test_bad_spec_is_refused() -> None:
    with pytest.raises(AuditError, match="repeats"):
        AuditSpec(["plain"], robust.Mean(), [3], [4], repeats=0)
    with pytest.raises(AuditError, match="dropout"):
        AuditSpec(["plain"], robust.Mean(), [3], [4], dropout=1.0)


def test_command_writes_tables_figures_and_leakage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "audit"
    code = main(["audit", "--mechanisms", "plain,secagg", "--rule", "median", "--clients", "3,4",
                 "--dim", "8,16", "--repeats", "2", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    obj = json.loads((out / "audit.json").read_text())
    assert {r["label"] for r in obj["rows"]} == {"median @ plain"}  # secagg refuses the median
    assert any("secagg" in line and "want" in line for line in obj["refused"])
    assert len(obj["summary"]) == 4
    with open(out / "audit.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(obj["rows"])
    md = (out / "audit.md").read_text()
    assert "## What each party learns" in md and "| median @ plain | server | updates |" in md
    assert "Not audited" in md
    for png in ("audit_phases.png", "audit_bytes.png", "audit_scaling.png"):
        assert (out / png).stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out


def test_command_with_dropout_and_an_unknown_mechanism(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["audit", "--mechanisms", "secagg,plain", "--clients", "6", "--dim", "8", "--repeats", "1",
                 "--dropout", "0.2", "--out", str(tmp_path), "--quiet", "--no-plots"])  # fmt: skip
    assert code == 0
    obj = json.loads((tmp_path / "audit.json").read_text())
    assert {(s["label"], s["dropout"]) for s in obj["summary"]} == {
        ("mean @ secagg", 0.0),
        ("mean @ secagg", 0.2),
        ("mean @ plain", 0.0),
    }
    assert any(line.startswith("plain: takes no dropout") for line in obj["refused"])
    assert {s["drop_phase"] for s in obj["summary"] if s["dropout"]} == {"masked_input"}
    assert "| 0.2 at masked_input |" in (tmp_path / "audit.md").read_text()
    assert main(["audit", "--mechanisms", "nope", "--dim", "4", "--out", str(tmp_path), "--quiet"]) == 2
    assert "fedsec: error: mechanisms: got ['nope']; want some of" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("rule_arg", "message"),
    [("f=one", "f must be an int; got 'one'"), ("f=[1,", "f must be an int; got '[1,'")],
)
def test_a_rule_arg_that_is_not_toml_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rule_arg: str, message: str
) -> None:
    """--rule-arg values are parsed as --set values are (a bare word is a string), so the rule refuses
    them typed; they used to end in a tomllib traceback."""
    argv = ["audit", "--mechanisms", "plain", "--rule", "trimmed_mean", "--rule-arg", rule_arg]
    assert main([*argv, "--clients", "3", "--dim", "4", "--out", str(tmp_path), "--quiet", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedsec: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["audit", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--mechanisms", "--rule", "--clients", "--dim", "--model", "--dropout", "--repeats",
                "--bandwidth", "--rtt", "--no-extrapolate", "--out"):  # fmt: skip
        assert opt in out


_CONFIG = """
name = "audit-config"
[data]
dataset = "{dataset}"
n_clients = 6
[model]
name = "mlp"
[train]
clients_per_round = 5
[[defense]]
rule = "mean"
mechanism = "plain"
[[defense]]
rule = "mean"
mechanism = "secagg"
"""


def test_command_takes_its_defaults_from_a_config_and_options_override_them(tmp_path: Path) -> None:
    from fedsec.models import make_model, num_parameters

    cfg = tmp_path / "exp.toml"
    cfg.write_text(_CONFIG.format(dataset="digits"))
    out = tmp_path / "a"
    assert main(["audit", str(cfg), "--repeats", "1", "--out", str(out), "--quiet", "--no-plots"]) == 0
    obj = json.loads((out / "audit.json").read_text())
    d_mlp = num_parameters(make_model("mlp", (1, 8, 8), 10))  # the config's model on its dataset
    assert {(s["label"], s["n"], s["d"]) for s in obj["summary"]} == {
        ("mean @ plain", 5, d_mlp),  # n: the config's clients per round
        ("mean @ secagg", 5, d_mlp),
    }
    out2 = tmp_path / "b"
    argv = ["audit", str(cfg), "--mechanisms", "plain", "--rule", "median", "--clients", "3", "--dim", "8"]
    assert main([*argv, "--repeats", "1", "--out", str(out2), "--quiet", "--no-plots"]) == 0
    obj = json.loads((out2 / "audit.json").read_text())
    assert {(s["label"], s["n"], s["d"]) for s in obj["summary"]} == {("median @ plain", 3, 8)}


def test_a_config_without_a_known_input_shape_needs_a_dim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "exp.toml"
    cfg.write_text(_CONFIG.format(dataset="synthetic"))
    assert main(["audit", str(cfg), "--out", str(tmp_path), "--quiet", "--no-plots"]) == 2
    assert "config dataset: got 'synthetic'; want one of" in capsys.readouterr().err
