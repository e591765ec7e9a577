"""Automatic feeds: FINESS, RPPS and the regional extracts, consolidated into one national store.

Every source module exposes a ``Feed`` (``ror.feeds.model``) that streams ``Record``s — what one source
record says, as FHIR resources keyed by identity — and ``Problem``s. ``ror.feeds.runs`` turns records
into national resources: identity matching (``identity``), precedence between sources (``precedence``),
batched writes through the store, run bookkeeping and disappearance handling. See docs/feeds.md.
"""
