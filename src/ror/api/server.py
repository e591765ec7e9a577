"""How the API is served: uvicorn with ``OPTIONS``, as ``ror serve``, the benchmarks and the tests run it."""

from __future__ import annotations

import uvicorn

# The trust space reads the TLS proxy's headers itself (``ROR_TRUSTED_PROXY_IPS``, ror.api.security): uvicorn's own
# proxy-header handling, which trusted its ``--forwarded-allow-ips`` instead and parsed every request's headers once
# more, is off. No ``Server`` header advertises the software; no WebSocket endpoint exists.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's
OPTIONS = {"ws": "none", "proxy_headers": False, "server_header": False, "access_log": False}


def serve(host: str, port: int, workers: int = 1, log_level: str = "info") -> None:
    """Serve ``ror.bootstrap:app_factory`` with ``OPTIONS``."""
    uvicorn.run("ror.bootstrap:app_factory", factory=True, host=host, port=port, workers=workers, log_level=log_level,
                **OPTIONS)
