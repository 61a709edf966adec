"""`python -m app`: run the gateway with uvicorn on GATEWAY_HOST:GATEWAY_PORT, in
GATEWAY_WORKERS processes (uvicorn's workers share the listening socket; the first process
only supervises them)."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

from app.main import create_app
from taskrecord.settings import get_settings
from taskrecord.store.db import create_store_engine

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def worker_app() -> FastAPI:
    """The app of one worker process (a fresh interpreter: its logging is set up here)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    return create_app(get_settings())


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    workers = settings.gateway_workers if settings.gateway_workers > 1 else None
    if workers:
        # The SQL schema is created here, once: workers creating it together race (one
        # of them fails with "table already exists", and uvicorn stops them all).
        create_store_engine(settings.database_url).dispose()
    # Several workers: each builds its own app; this process only supervises them.
    app = "app.__main__:worker_app" if workers else create_app(settings)
    uvicorn.run(
        app,
        factory=workers is not None,
        workers=workers,
        host=settings.gateway_host,
        port=settings.gateway_port,
        access_log=False,  # request lines carry task ids only, but keep logs lean under load
        log_level="info",
    )


if __name__ == "__main__":
    main()
