"""routing-laws: executable companion to Clark et al. (2022), *Unified Scaling Laws for Routed LMs*.

Modules (one job each): ``config`` (validated configs, size ladder, profiles), ``data`` (corpus,
tokenizer, batches), ``routers`` / ``moe`` (routing and the routed FFN), ``model`` (Haiku LM and
accounting), ``train`` (optax loop, run records, checkpoints), ``laws`` (scaling-law fitting, no JAX),
``paper`` (the paper's published numbers and raw runs), ``charts`` (altair, offline), ``cli``.
"""

__version__ = "0.1.0"

from routing_laws.errors import RoutingLawsError, ValidationError  # noqa: F401
