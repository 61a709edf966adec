"""What the launcher prints once the system is up. Pure: builds text only."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from deploy.endpoints import Endpoints
from deploy.layout import Layout
from taskrecord.settings import Settings

READY_LINE = "OpenClaw V2 is up."

_DEV_FLOWER_PASSWORD = Settings.model_fields["flower_password"].default.get_secret_value()


def connect_host(host: str) -> str:
    """The address a client on this machine uses to reach a server listening on `host`."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def gateway_url(settings: Settings) -> str:
    return f"http://{connect_host(settings.gateway_host)}:{settings.gateway_port}"


def redact_url(url: str) -> str:
    """`url` with any password replaced, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def ready_banner(
    settings: Settings, endpoints: Endpoints, layout: Layout, supervisorctl: str
) -> str:
    gateway = gateway_url(settings)
    websocket = "ws" + gateway.removeprefix("http") + "/v1/ws"
    flower = f"http://127.0.0.1:{settings.flower_port}"
    if settings.flower_password.get_secret_value() == _DEV_FLOWER_PASSWORD:
        flower_auth = (
            f"user {settings.flower_user}, password {_DEV_FLOWER_PASSWORD}: the development default"
        )
    else:
        flower_auth = f"user {settings.flower_user}, password: FLOWER_PASSWORD"
    if endpoints.embedded_valkey:
        redis = f"{endpoints.redis_url}  (embedded Valkey, data in {_show(layout.valkey_dir)})"
    else:
        redis = f"{redact_url(endpoints.redis_url)}  (external, REDIS_URL)"
    if endpoints.simulated_v1:
        v1 = f"{endpoints.v1_url}  (SIMULATOR: the bundled V1 simulator, not a real OpenClaw V1)"
    else:
        v1 = f"{redact_url(endpoints.v1_url)}  (V1_URL)"
    if settings.environment == "development" and settings.api_keys:
        api_key = next(iter(settings.api_keys))
    else:
        api_key = "$API_KEY"  # a production key is the operator's to know, not ours to print
    auth = f"-H 'Authorization: Bearer {api_key}'"
    return "\n".join(
        [
            READY_LINE,
            f"  Gateway    {gateway}",
            f"  WebSocket  {websocket}",
            f"  Flower     {flower}  ({flower_auth})",
            f"  Redis      {redis}",
            f"  V1         {v1}",
            f"  Logs       {_show(layout.log_dir)}/",
            "Try it:",
            f"  curl -s -X POST {gateway}/v1/tasks {auth} "
            """-H 'Content-Type: application/json' -d '{"message":"hello"}'""",
            f"  curl -s {gateway}/v1/tasks/<task_id> {auth}",
            f"Status:  {supervisorctl} -c {_show(layout.conf_file)} status",
            "Stop:    Ctrl+C",
        ]
    )


def _show(path: Path) -> str:
    """`path` relative to the working directory when under it: shorter to read and copy."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
