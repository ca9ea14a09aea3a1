"""`[notify]`, `[metrics]` and `[receipts]`: what is reported where after a run."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
)

from deploy_guard.config.base import StrictModel

NotifyOn = Literal["failure", "override", "success"]


def _default_notify_on() -> list[NotifyOn]:
    return ["failure", "override"]


class NotifyConfig(StrictModel):
    """`[notify]`: where run results are sent, through Apprise (docs/observability.md)."""

    urls: list[str] = Field(
        default_factory=list,
        description="Apprise URLs (ntfy://, discord://, mailto://, gotify://, json://, ...); "
        "needs the notify extra: pip install 'deploy-guard[notify]'",
    )
    on: list[NotifyOn] = Field(
        default_factory=_default_notify_on,
        description="Which runs are notified: failure (any host or the deploy failed), "
        "override (the gate was overridden), success",
    )

    @field_validator("urls")
    @classmethod
    def _no_empty_urls(cls, urls: list[str]) -> list[str]:
        if any(not url.strip() for url in urls):
            raise ValueError("empty URLs are not allowed")
        return urls


class MetricsConfig(StrictModel):
    """`[metrics]`: a Prometheus textfile written on each host after each run."""

    textfile_dir: str = Field(
        description="node_exporter's textfile directory on the hosts (absolute); "
        "deploy_guard.prom is replaced there atomically after each run",
    )

    @field_validator("textfile_dir")
    @classmethod
    def _absolute_directory(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in "\n\x00"):
            raise ValueError(
                "expected an absolute directory on the hosts, such as "
                "/var/lib/prometheus-node-exporter-text-files"
            )
        return value


class ReceiptsConfig(StrictModel):
    """`[receipts]`: what each host keeps of each run (/var/lib/deploy-guard/receipts)."""

    enabled: bool = Field(
        True, description="Write RUN_ID.json and last-success.json on each host after each run"
    )
    keep: int = Field(10, ge=1, le=1000, description="How many receipts each host keeps")
    journal: bool = Field(
        True, description="Log each run in the host's journal (SYSLOG_IDENTIFIER=deploy-guard)"
    )


# -- pre-flight checks and post-deploy verification (issue 8; run by preflight.py, verify.py) --

# Any unit type may be required to exist (a mount, a socket), not only services.
