"""Completion webhooks, the pure parts: which URLs a webhook may reach, what it says, how
it is signed, when it is retried. No servers; a resolver stand-in answers for host names
(the ones that use the real resolver are numeric or `localhost`: no DNS query leaves)."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from taskrecord.settings import DEV_WEBHOOK_SECRET, get_settings
from taskrecord.webhooks import (
    AllowList,
    RetrySchedule,
    TaskFacts,
    WebhookUrlError,
    build_payload,
    check_url,
    delivery_id_for,
    encode_body,
    facts_from_live,
    log_url,
    shown_url,
    signed_headers,
)

SECRET = "whsec_" + base64.b64encode(b"unit-test-webhook-secret-0123456789").decode()
NONE = AllowList.parse([])


def answers(mapping: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, _port: int) -> list[str]:
        if host not in mapping:
            raise OSError("no such host")
        return mapping[host]

    return resolve


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.0.0.1/hook", "private"),
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[fc00::1]/", "private"),
        ("http://192.168.1.10/", "private"),
        ("http://100.64.0.1/", "non-public"),
        ("http://240.0.0.1/", "reserved"),
    ],
)
def test_private_and_special_addresses_are_refused_without_resolving(url: str, why: str) -> None:
    def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError("an address literal must not be resolved")

    with pytest.raises(WebhookUrlError, match=f"a {why} address"):
        check_url(url, NONE, no_dns)


@pytest.mark.parametrize(
    "url",
    ["http://localhost/hook", "http://127.1/hook", "http://2130706433/", "http://0x7f000001/"],
)
def test_names_and_odd_numerals_for_loopback_are_refused_after_resolving(url: str) -> None:
    # The real resolver: these resolve from /etc/hosts or numerically, without DNS.
    with pytest.raises(WebhookUrlError, match=r"resolves to 127\.0\.0\.1, a loopback address"):
        check_url(url, NONE)


def test_a_name_is_refused_if_any_of_its_addresses_is_private() -> None:
    resolve = answers({"hooks.example.com": ["93.184.215.14", "10.1.2.3"]})
    with pytest.raises(WebhookUrlError, match=r"resolves to 10\.1\.2\.3, a private address"):
        check_url("https://hooks.example.com/x", NONE, resolve)


def test_a_public_name_is_pinned_to_the_checked_address() -> None:
    resolve = answers({"hooks.example.com": ["93.184.215.14"]})
    target = check_url("https://user:pw@hooks.example.com:8443/x?token=t", NONE, resolve)
    assert target.address == "93.184.215.14"
    assert target.host == "hooks.example.com"
    sent = target.request_url()
    assert sent.host == "93.184.215.14" and sent.port == 8443 and sent.path == "/x"
    assert target.url.netloc == b"hooks.example.com:8443"  # the Host header: no userinfo


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http:///nohost", "no host"),
        ("http://exa mple.com/", "whitespace"),
        ("https://" + "a" * 2050 + ".com/", "longer than 2048"),
        ("http://nowhere.invalid/", "does not resolve"),
    ],
)
def test_malformed_or_unresolvable_urls_name_the_problem(url: str, problem: str) -> None:
    with pytest.raises(WebhookUrlError, match=problem):
        check_url(url, NONE, answers({}))


def test_the_allow_list_admits_named_hosts_and_cidrs_only() -> None:
    allow = AllowList.parse(["127.0.0.1", "10.0.0.0/8", "Hooks.Internal."])
    assert check_url("http://127.0.0.1:9/x", allow).address == "127.0.0.1"
    assert check_url("http://10.9.8.7/x", allow).address == "10.9.8.7"
    resolve = answers({"hooks.internal": ["192.168.0.5"], "other.internal": ["192.168.0.6"]})
    assert check_url("http://hooks.internal/x", allow, resolve).address == "192.168.0.5"
    with pytest.raises(WebhookUrlError, match="private"):
        check_url("http://other.internal/x", allow, resolve)
    with pytest.raises(WebhookUrlError, match="loopback"):
        check_url("http://127.0.0.2/x", allow)


def test_what_logs_and_the_api_show_of_a_url_keeps_out_userinfo_and_query() -> None:
    url = "https://user:pw-secret@hooks.example.com:8443/path/x?token=query-secret"
    assert log_url(url) == "https://hooks.example.com:8443"
    assert shown_url(url) == "https://hooks.example.com:8443/path/x?..."
    with pytest.raises(WebhookUrlError) as refused:
        check_url(url.replace("hooks.example.com", "10.0.0.1"), NONE)
    assert "secret" not in str(refused.value)


FIELDS = {
    "id": "6f0c0000-0000-4000-8000-000000000001",
    "tenant": "alpha",
    "state": "succeeded",
    "attempts": "2",
    "created_at": "1700000000.000000",
    "started_at": "1700000001.500000",
    "finished_at": "1700000003.250000",
    "result": json.dumps({"content": "hi", "usage": None, "finish_reason": "stop"}),
    "error": "",
    "request": json.dumps({"messages": [{"role": "user", "content": "private text"}]}),
    "webhook_url": "https://user:pw@example.com/?k=v",
}


def test_the_payload_names_the_terminal_state_with_result_or_error_and_no_secrets() -> None:
    payload = build_payload(facts_from_live(FIELDS))
    assert payload["type"] == "task.succeeded"
    assert payload["timestamp"] == "2023-11-14T22:13:23.250000Z"
    data = payload["data"]
    assert data["state"] == "succeeded" and data["attempts"] == 2
    assert data["result"]["content"] == "hi" and "error" not in data
    assert data["started_at"] == "2023-11-14T22:13:21.500000Z"
    body = encode_body(payload)
    for secret in ("private text", "pw", "k=v", "alpha"):
        assert secret not in body
    failed = build_payload(
        TaskFacts("t", "timed_out", 1, 1.0, None, 2.0, error={"type": "timed_out"})
    )
    assert failed["type"] == "task.timed_out" and failed["data"]["error"] == {"type": "timed_out"}
    assert "result" not in failed["data"]


def test_signed_headers_verify_with_the_standard_webhooks_library() -> None:
    body = encode_body(build_payload(facts_from_live(FIELDS)))
    headers = signed_headers(SECRET, "msg_abc", body, datetime.now(UTC))
    assert Webhook(SECRET).verify(body, headers)["type"] == "task.succeeded"
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(body.replace("hi", "ho"), headers)


def test_one_end_of_a_task_has_one_webhook_id_and_another_end_another() -> None:
    first = delivery_id_for("task-1", "1700000003.250000")
    assert first == delivery_id_for("task-1", "1700000003.250000")
    assert first != delivery_id_for("task-1", "1700000099.000000")
    assert first.startswith("msg_")


def test_retries_back_off_exponentially_within_the_attempt_and_age_caps() -> None:
    schedule = RetrySchedule(base_delay=5, max_delay=60, max_attempts=10, max_age=3600)
    rng = random.Random(7)
    for done in range(1, 9):
        ceiling = min(60, 5 * 2 ** (done - 1))
        delay = schedule.next_attempt(done, 0.0, 100.0, rng)
        assert delay is not None and ceiling / 2 <= delay - 100.0 <= ceiling
    assert schedule.next_attempt(10, 0.0, 100.0) is None  # attempts used up
    assert schedule.next_attempt(1, 0.0, 3600.0) is None  # 24 h (here 1 h) gone
    assert schedule.next_attempt(9, 0.0, 3590.0) == 3600.0  # the last try at the deadline


def test_settings_refuse_a_malformed_secret_and_the_dev_secret_in_production() -> None:
    with pytest.raises(ValueError, match="WEBHOOK_SECRET must be") as refused:
        get_settings(webhook_secret="whsec_c2hvcnQ=")
    assert "c2hvcnQ" not in str(refused.value)  # the input is not echoed
    production = {
        "environment": "production", "api_keys": "k:t", "admin_api_keys": "a",
        "v1_token": "t", "v1_session_secret": "s", "flower_password": "p",
    }  # fmt: skip
    with pytest.raises(ValueError, match="set WEBHOOK_SECRET"):
        get_settings(**production)
    assert get_settings(**production, webhook_secret=SECRET).webhook_secret
    assert DEV_WEBHOOK_SECRET != SECRET


def test_tenant_default_urls_and_the_allow_list_parse_from_the_environment_form() -> None:
    settings = get_settings(
        webhook_default_urls="alpha=https://a.example/h, beta=http://b.example/h?x=1",
        webhook_allowed_hosts="127.0.0.1, 10.0.0.0/8 ,hooks.internal",
    )
    assert settings.webhook_default_urls == {
        "alpha": "https://a.example/h",
        "beta": "http://b.example/h?x=1",
    }
    assert settings.webhook_allowed_hosts == ["127.0.0.1", "10.0.0.0/8", "hooks.internal"]
    with pytest.raises(ValueError, match="WEBHOOK_DEFAULT_URLS"):
        get_settings(webhook_default_urls="alpha=ftp://x")
