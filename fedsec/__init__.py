"""fedsec: robustness, confidentiality and differential privacy evaluated together in federated learning."""

__version__ = "0.1.0"
