"""qbflow's HTTP server: the JSON API, Intuit's webhook receiver, the OAuth connect flow and the dashboard,
in the same process as the engine (`qbflow serve`, `qbflow up`)."""

from qbflow.server.app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
