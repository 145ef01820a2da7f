"""Privacy: DP-SGD on clients (Opacus), user-level DP-FedAvg, distributed DP, accounting."""
