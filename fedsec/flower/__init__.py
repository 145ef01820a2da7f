"""fedsec on Flower (``pip install "fedsec[flower]"``): its rules, attacks and DP on Flower's runtime.

* :func:`client_app`: a Flower ``ClientApp`` from a fedsec config. Each SuperNode is one fedsec client,
  its data the partition numbered by the node's ``partition-id`` in the run's Dirichlet (or IID) split;
  it trains as the in-process engine does (:class:`fedsec.training.ClientComputer`), or with DP-SGD
  through Opacus (``dp.mode = "dpsgd"``), and replies with its update.
* :class:`FedsecStrategy`: a Flower ``Strategy`` (message API) whose ``aggregate_train`` runs the
  config's rule or mechanism x rule composition (:func:`fedsec.build.build_protocol`), reporting the
  Byzantine detection rates and the protocol meter as ``MetricRecord``.
* :class:`SecureStrategy` (:mod:`fedsec.flower.secure`): for mechanism ``secagg`` / ``secagg_plus`` with
  rule ``mean``, the cohort's mean by fedsec's secure aggregation over Flower messages, so the ServerApp
  never receives an individual update; :func:`strategy_for` picks it where the composition allows
  (other compositions run simulated: the plain updates reach the server).
* :func:`server_app`: a ``ServerApp`` driving the strategy and writing fedsec's run directory.
* :func:`simulate`: one unit config on Flower's simulation engine (Ray), one SuperNode per client;
  ``fedsec run --engine flower`` calls it.

Byzantine clients: in simulation the configured Byzantine ids train honestly (on their poisoned data when
``attack.data`` is set) and the *server* applies the model-poisoning attack to their rows, as the
in-process engine does, because attacks such as ALIE and IPM need the honest updates; a real
deployment has no such server-side attacker.

The core packages never import ``flwr``; importing this package without it raises
:class:`fedsec.errors.MissingExtraError`.
"""

from __future__ import annotations

from fedsec.errors import MissingExtraError


def require_flwr() -> None:
    """Raise :class:`MissingExtraError` unless ``flwr`` (with its simulation extra) is importable."""
    try:
        import flwr  # noqa: F401
    except ImportError as e:
        raise MissingExtraError(
            f"the Flower engine: got no flwr module ({e}); want the flower extra: "
            f'pip install "fedsec[flower]"'
        ) from e


require_flwr()

from fedsec.flower.client_app import client_app  # noqa: E402
from fedsec.flower.secure import SecureStrategy, strategy_for  # noqa: E402
from fedsec.flower.strategy import FedsecStrategy, flower_rounds, server_app, simulate  # noqa: E402

__all__ = [
    "FedsecStrategy",
    "SecureStrategy",
    "client_app",
    "flower_rounds",
    "require_flwr",
    "server_app",
    "simulate",
    "strategy_for",
]
