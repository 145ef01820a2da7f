"""fedsec: robustness, confidentiality and differential privacy evaluated together in federated learning.

>>> import fedsec
>>> cfg = fedsec.Config.from_dict({"data": {"dataset": "synthetic"}})
>>> cfg.data.dataset
'synthetic'
"""

__version__ = "0.1.0"

from fedsec.config import Config
from fedsec.run import RunResult, run

__all__ = ["Config", "RunResult", "__version__", "run"]
