"""prunetui's engine: configs, models, data, masks, pruners, training, metrics, store, report.

Nothing in this package prints or imports a UI library. Modules that need torch import it at
their top; ``errors``, ``catalog``, ``config``, ``events``, ``store`` and ``report`` do not, so
the CLI can validate input and list results without paying torch's import time.
"""

__version__ = "0.1.0"
