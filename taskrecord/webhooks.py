"""Completion webhooks, the pure parts: URL policy, payload, signing, retry schedule.

Shared by the gateway (checks a task's `webhook_url` at submit, builds a resend) and the
workers (check the URL again right before each attempt, sign, send). No I/O here except
the resolver, which callers may replace.

The URL is parsed by httpx, the library that sends the request, so the host checked is the
host connected to (no parser differential). A host name is resolved and every address it
resolves to must be allowed; the request then goes to the checked address (the Host header
and TLS SNI keep the name), so a DNS answer that changes after the check is never used.
"""

from __future__ import annotations

import ipaddress
import json
import random
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from taskrecord.record import TaskRecord
from taskrecord.states import TaskState

WEBHOOK_QUEUE = "webhooks"  # the Celery queue of delivery attempts (every worker consumes it)
WEBHOOK_TASK = "openclaw.webhook"
MAX_URL_CHARS = 2048
EVENT_TYPES: dict[str, str] = {  # by state
    TaskState.SUCCEEDED: "task.succeeded",
    TaskState.FAILED: "task.failed",
    TaskState.CANCELLED: "task.cancelled",
    TaskState.TIMED_OUT: "task.timed_out",
}
_ID_NAMESPACE = uuid.UUID("6f1d4c1e-6a38-4c2e-9a55-1d5b0c6c2a11")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


class WebhookUrlError(ValueError):
    """A URL the policy refuses; the message names the problem, never userinfo or query."""


@dataclass(frozen=True)
class AllowList:
    """WEBHOOK_ALLOWED_HOSTS: host names (exact) and addresses or CIDRs."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (e.strip().lower().rstrip(".") for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def covers(self, address: IPAddress) -> bool:
        forms = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            forms.append(address.ipv4_mapped)
        return any(form in net for form in forms for net in self.networks)


@dataclass(frozen=True)
class Target:
    """A URL that passed the policy, and the address to connect to."""

    url: httpx.URL
    host: str  # as resolved (IDNA ASCII), for the Host header and TLS SNI
    address: str  # the checked address the request goes to

    def request_url(self) -> httpx.URL:
        return self.url.copy_with(host=self.address)


def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (blocking: run it off an event loop)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).partition("%")[0] for info in infos))


def refusal(address: IPAddress) -> str | None:
    """Why a webhook may not reach `address` (None: a public address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-public", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def parse_url(raw: str) -> httpx.URL:
    if len(raw) > MAX_URL_CHARS:
        raise WebhookUrlError(f"longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise WebhookUrlError("contains whitespace or control characters")
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise WebhookUrlError("is not a valid URL") from None
    if url.scheme not in ("http", "https"):
        raise WebhookUrlError("must be an http:// or https:// URL")
    if not url.raw_host:
        raise WebhookUrlError("has no host")
    return url


def check_url(raw: str, allow: AllowList, resolve: Resolver = resolve_host) -> Target:
    """The URL if the policy lets a webhook reach it, with the address to connect to."""
    url = parse_url(raw)
    host = url.raw_host.decode("ascii").lower().rstrip(".")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = [ipaddress.ip_address(a) for a in resolve(host, port)]
        except (OSError, UnicodeError, ValueError):
            raise WebhookUrlError(f"host {host} does not resolve") from None
        if not addresses:
            raise WebhookUrlError(f"host {host} does not resolve")
    named = literal is None and host in allow.hosts
    for address in addresses:
        why = None if named or allow.covers(address) else refusal(address)
        if why is not None:
            where = f"host {host}" if literal is not None else f"host {host} resolves to {address}"
            raise WebhookUrlError(
                f"{where}, a {why} address; webhooks go to public addresses only "
                "(operators may allow more in WEBHOOK_ALLOWED_HOSTS)"
            )
    return Target(url, host, str(addresses[0]))


def log_url(raw: str) -> str:
    """What logs may show of a URL: scheme, host and port only (no userinfo, path, query)."""
    try:
        url = httpx.URL(raw)
        port = f":{url.port}" if url.port else ""
        return f"{url.scheme}://{url.raw_host.decode('ascii')}{port}"
    except (httpx.InvalidURL, ValueError, TypeError, UnicodeError):
        return "(unparseable URL)"


def shown_url(raw: str) -> str:
    """What the API shows of a delivery's URL: no userinfo, query elided."""
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError, TypeError):
        return log_url(raw)
    return log_url(raw) + url.path + ("?..." if url.query else "")


@dataclass(frozen=True)
class TaskFacts:
    """What a completion webhook says about a task (nothing secret: no request, no tenant)."""

    task_id: str
    state: str
    attempts: int
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    result: Any = None
    error: Any = None


def facts_from_live(fields: Mapping[str, str]) -> TaskFacts:
    """From a task's live record (its Redis hash)."""
    record = TaskRecord.from_hash(fields)
    return TaskFacts(
        task_id=record.id,
        state=record.state,
        attempts=record.attempts,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        result=record.result,
        error=record.error,
    )


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def build_payload(facts: TaskFacts) -> dict[str, Any]:
    """`{type, timestamp, data}` as Standard Webhooks has it; timestamp = when it ended."""
    data: dict[str, Any] = {
        "task_id": facts.task_id,
        "state": facts.state,
        "attempts": facts.attempts,
        "created_at": iso(facts.created_at),
        "started_at": iso(facts.started_at),
        "finished_at": iso(facts.finished_at),
    }
    if facts.state == TaskState.SUCCEEDED:
        data["result"] = facts.result
    else:
        data["error"] = facts.error
    return {
        "type": EVENT_TYPES.get(facts.state, f"task.{facts.state}"),
        "timestamp": iso(facts.finished_at),
        "data": data,
    }


def encode_body(payload: Mapping[str, Any]) -> str:
    """The exact text that is signed and sent (kept, so every retry sends the same body)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def delivery_id_for(task_id: str, finished_at: str) -> str:
    """The webhook-id of one end of a task: the same however often it is derived (a
    maintenance round that died half-way makes the same delivery again, not a second)."""
    return "msg_" + uuid.uuid5(_ID_NAMESPACE, f"{task_id}|{finished_at}").hex


def new_delivery_id() -> str:
    return "msg_" + uuid.uuid4().hex


def signed_headers(secret: str, msg_id: str, body: str, now: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (each attempt is signed anew)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


@dataclass(frozen=True)
class RetrySchedule:
    """Exponential backoff with equal jitter, within WEBHOOK_MAX_ATTEMPTS and _MAX_AGE."""

    base_delay: float
    max_delay: float
    max_attempts: int
    max_age: float

    def exhausted(self, attempts_done: int, created_at: float, now: float) -> bool:
        return attempts_done >= self.max_attempts or now >= created_at + self.max_age

    def next_attempt(
        self, attempts_done: int, created_at: float, now: float, rng: random.Random | None = None
    ) -> float | None:
        """When to try again after a failed attempt, or None: the delivery has failed.
        The last attempt falls at the end of the window rather than after it."""
        if self.exhausted(attempts_done, created_at, now):
            return None
        deadline = created_at + self.max_age
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(0, attempts_done - 1))
        delay = (rng or random).uniform(ceiling / 2, ceiling)
        return min(now + delay, deadline)
