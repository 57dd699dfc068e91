"""Running the agent: its threads plus the local API under waitress, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from waitress.server import create_server

from storecast.edge.agent import Agent
from storecast.edge.api import create_app

__all__ = ["run_agent"]

log = logging.getLogger(__name__)


def run_agent(
    home: Path,
    *,
    host: str | None = None,
    port: int | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Start the agent in ``home`` and serve its API until interrupted, then stop cleanly.

    ``on_ready`` gets the API's URL once the server listens (``port`` 0: any free port).
    """
    agent = Agent(home)
    settings = agent.config.agent
    server: Any = None
    try:
        app = create_app(agent)
        server = create_server(
            app,
            host=host or settings.host,
            port=settings.port if port is None else port,
            threads=settings.threads,
            ident="storecast-edge",
            clear_untrusted_proxy_headers=True,
        )
        url = f"http://{server.effective_host}:{server.effective_port}"
        agent.home.endpoint_file.write_text(url + "\n")
        agent.start()
        _stop_on_sigterm()
        if on_ready is not None:
            on_ready(url)
        log.info("edge agent %s serving on %s", agent.config.device_id, url)
        server.run()
    except KeyboardInterrupt:
        log.info("edge agent stopping")
    finally:
        if server is not None:
            server.close()
        agent.home.endpoint_file.unlink(missing_ok=True)
        agent.stop()


def _stop_on_sigterm() -> None:
    """SIGTERM stops the agent the way Ctrl-C does (only from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
