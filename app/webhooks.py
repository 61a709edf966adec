"""The webhook URL a new task gets: its own (checked against the URL policy now, 422 naming
the problem) or its tenant's default (WEBHOOK_DEFAULT_URLS, the operator's; checked at
delivery like every URL)."""

from __future__ import annotations

from functools import cache

import anyio

from app.errors import ApiError
from taskrecord.settings import Settings
from taskrecord.webhooks import AllowList, WebhookUrlError, check_url


@cache
def _allow_list(entries: tuple[str, ...]) -> AllowList:
    return AllowList.parse(entries)


async def webhook_url_for(settings: Settings, tenant: str, given: str | None) -> str:
    """'' when the task has no webhook (None: the tenant's default; '': explicitly none)."""
    if given is None:
        return settings.webhook_default_urls.get(tenant, "")
    if not given:
        return ""
    allow = _allow_list(tuple(settings.webhook_allowed_hosts))
    wait = settings.webhook_timeout
    try:
        # Resolving a name blocks: off the event loop, and not for longer than an attempt
        # may take. Nothing connects to the URL here.
        with anyio.fail_after(wait):
            await anyio.to_thread.run_sync(check_url, given, allow, abandon_on_cancel=True)
    except WebhookUrlError as exc:
        raise _refused(str(exc)) from None
    except TimeoutError:
        raise _refused(f"its host did not resolve within {wait:g}s") from None
    return given


def _refused(problem: str) -> ApiError:
    return ApiError(422, "invalid_webhook_url", f"webhook_url: {problem}", field="webhook_url")
