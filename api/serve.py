"""Running the API: uvicorn with uvloop and httptools (twice the throughput of plain h11)."""

from __future__ import annotations

import logging

from ptl.settings import Settings

log = logging.getLogger("ptl.api")


def run(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve the API over the configured store until interrupted (one worker process; run
    more replicas behind a load balancer to scale out)."""
    import uvicorn

    from api.app import create_app

    app = create_app(settings)
    host = host or settings.host
    port = port or settings.port
    log.info("serving the API", extra={"host": host, "port": port})
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False, server_header=False, proxy_headers=False)
