"""Flower components for ``flwr run``: ``[tool.flwr.app.components]`` may point here directly.

``serverapp = "fedsec.flower.apps:serverapp"`` and ``clientapp = "fedsec.flower.apps:clientapp"``; the
app's run config names the fedsec config (``config = "fedsec.toml"``; relative paths from the working
directory, else from the app's directory) and, optionally, overrides (``set = "train.rounds=5"``) and the
run directory (``out``). The federation needs one SuperNode per client (``data.n_clients``).
See ``examples/flower_app``.
"""

from __future__ import annotations

from fedsec.flower.client_app import client_app
from fedsec.flower.strategy import server_app

serverapp = server_app()
clientapp = client_app()
