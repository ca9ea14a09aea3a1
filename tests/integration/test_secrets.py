"""Secrets a backup prints never leave the host unmasked (issue 14): a real restic run on the
testbed fails and prints its repository URL with the S3 credentials in it; the report on
stdout and on disk, the receipt on the host and the webhook body carry only ``***``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.http_receiver import receiver  # noqa: F401 (fixture)
from tests.integration.guard import guard, oneshot, write_config
from tests.testbed.host import TestHost

ETC = "restic-backups-etc.service"
KEY, SECRET, PASSWORD = "AKIAEXAMPLEKEY", "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRET", "correct-horse"
# restic 0.14 prints an s3 repository as given, credentials and all, when it cannot open it.
REPOSITORY = f"s3:https://{KEY}:{SECRET}@127.0.0.1:1/bucket"
RECEIPTS = "/var/lib/deploy-guard/receipts"


def leaky_restic(host: TestHost) -> None:
    command = f"env | grep ^RESTIC_PASSWORD=; restic -r {REPOSITORY} --no-lock snapshots"
    host.install_unit(ETC, oneshot(command, extra_service=(
        f"Environment=RESTIC_PASSWORD={PASSWORD}\nEnvironment=HOME=/root")))  # fmt: skip
    host.daemon_reload()


def assert_masked(text: str, where: str) -> None:
    for secret in (KEY, SECRET, PASSWORD):
        assert secret not in text, f"{secret} in the {where}: {text}"


def test_credentials_printed_by_restic_are_masked_everywhere(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path,
    receiver: tuple[int, list[dict[str, Any]]],  # noqa: F811
) -> None:  # fmt: skip
    port, received = receiver
    leaky_restic(host)
    config = write_config(tmp_path, f'[notify]\nurls = ["json://127.0.0.1:{port}/"]\n')
    env = {**dg_env, "XDG_STATE_HOME": str(tmp_path / "state")}

    result = guard(env, "run", "forge", config=config)

    assert result.code == 1, result.stderr
    tail = "\n".join(result.units()[ETC]["log_tail"])
    assert "s3:https://***@127.0.0.1:1/bucket" in tail  # the URL stays, its credentials go
    assert "RESTIC_PASSWORD=***" in tail
    assert result.report is not None
    run_id = result.report["run_id"]
    assert_masked(json.dumps(result.report), "report on stdout")
    assert_masked((tmp_path / "state/deploy-guard/runs" / f"{run_id}.json").read_text(),
                  "saved report")  # fmt: skip
    receipt = host.ssh(f"cat {RECEIPTS}/{run_id}.json").stdout
    assert "s3:https://***@" in receipt
    assert_masked(receipt, "receipt on the host")
    (payload,) = received
    assert "s3:https://***@127.0.0.1:1/bucket" in payload["message"]
    assert_masked(json.dumps(payload), "webhook body")
    assert_masked(result.stderr, "summary on stderr")
