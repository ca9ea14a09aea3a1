"""Every nixpkgs attribute that flake.nix, nix/package.nix and nix/module.nix use, written
down with where nixpkgs defines it.

nixpkgs cannot be fetched here, so these were read in the public nixpkgs sources with the
search tools (the file, and the commit of the stored version read). The flake pins
nixos-25.11 at 8fd9daa3db09ced9700431c5b7ad0e8ba199b575 (flake.lock); that exact commit is
not among the stored versions, so each fact names the version it was read in. A new
attribute in the Nix files fails this test until it is looked up and added here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Final

REPOSITORY_ROOT: Final = Path(__file__).resolve().parents[2]
# Core builders present in every nixpkgs release for years; located, no version compared.
CORE: Final = "core builder"

# attribute -> (file in nixpkgs that defines it, commit of the version read)
PACKAGES: Final = {
    "callPackage": ("pkgs/top-level/splice.nix", CORE),
    "mkShell": ("pkgs/build-support/mkshell/default.nix", CORE),
    "installShellFiles": ("pkgs/by-name/in/installShellFiles/setup-hook.sh",
                          "7d0bfd857694ecfc614b5c2b347612893a7594d0"),
    "openssh": ("pkgs/tools/networking/openssh/common.nix",
                "98ff4dfc86e711ced288a6c9abe9905dd94cb016"),
    "git": ("pkgs/by-name/gi/git/package.nix", "7669554adb8138c791b516a4a409589cd12c87c5"),
    "jq": ("pkgs/by-name/jq/jq/package.nix", "c88f01bd74dc7a349bc8e39e6edfe217fd5b089d"),
    "coreutils": ("pkgs/tools/misc/coreutils/default.nix",
                  "b27cf66ee28bc9fdec9a36fb00e019d5c0b57402"),
    "restic": ("pkgs/by-name/re/restic/package.nix", "7ea809cb438597a3b29e21fba24339cf77ee2ee7"),
    # The proofs of sanoid and syncoid list snapshots with `config.boot.zfs.package or
    # pkgs.zfs`; pkgs.zfs is the current zfs_2_x (here 2.3) of all-packages.nix.
    "zfs": ("pkgs/os-specific/linux/zfs/2_3.nix", "b9b90f07d7d476954ea61592be63757fcd17e438"),
    "ruff": ("pkgs/by-name/ru/ruff/package.nix", "8bddfbc6b3a012f211a852e121c8263c5c62b16b"),
    "nixfmt": ("pkgs/by-name/ni/nixfmt/package.nix", "7d0bfd857694ecfc614b5c2b347612893a7594d0"),
    "writeTextDir": ("pkgs/build-support/trivial-builders/default.nix", CORE),
    "testers.runNixOSTest": ("pkgs/build-support/testers/default.nix", CORE),
    # `pkgs.deploy-guard or (...)`: our own overlay's attribute, absent from nixpkgs.
    "deploy-guard": ("flake.nix overlays.default (this repository)", "-"),
}  # fmt: skip
PYTHON_PACKAGES: Final = {
    "buildPythonApplication": "pkgs/development/interpreters/python/python-packages-base.nix",
    "pytestCheckHook": "pkgs/development/interpreters/python/hooks/default.nix",
    "setuptools": "pkgs/development/python-modules/setuptools/default.nix",
    "hypothesis": "pkgs/development/python-modules/hypothesis/default.nix",
    "pytest": "pkgs/development/python-modules/pytest/default.nix",
    "mypy": "pkgs/development/python-modules/mypy/default.nix",
    # commit bbb7dd4995d2086f7cd151101cb4ac8c123776ee
    "types-paramiko": "pkgs/development/python-modules/types-paramiko/default.nix",
    # commit e54ebecf8752fbb0d690f63b9926aeab216e4bac
    "click": "pkgs/development/python-modules/click/default.nix",
    # commit 388ee7a0195454ccd5e679afda2c1bada09d550f
    "pydantic": "pkgs/development/python-modules/pydantic/default.nix",
    # commit 20408ac035e0c350c5b43ed434a51623ea9dca0c
    "paramiko": "pkgs/development/python-modules/paramiko/default.nix",
    # commit e8275f0d772d21094ab02c81101eca3e9ce86def
    "rich": "pkgs/development/python-modules/rich/default.nix",
    # commit 1597341de966c8063b16497900297cefe41354da
    "prometheus-client": "pkgs/development/python-modules/prometheus-client/default.nix",
    # commit f63ac2eb01fed8ae059ef860a9b24e71f2bc9b12
    "apprise": "pkgs/development/python-modules/apprise/default.nix",
    # commit 0148e16d1446003704803ecabb5a00cfea7d8568: `python = toPythonModule python;`, the
    # interpreter (its sitePackages and interpreter, for the manual page in postInstall)
    "python": "pkgs/development/interpreters/python/python-packages-base.nix",
}
# NixOS options the module reads (the backup modules it derives units from) or sets.
NIXOS_OPTIONS: Final = {
    "services.sanoid": "nixos/modules/services/backup/sanoid.nix",
    "services.syncoid.commands": "nixos/modules/services/backup/syncoid.nix",
    "services.restic.backups": "nixos/modules/services/backup/restic.nix",
    # stanzas.<name>.jobs.<job> -> pgbackrest-<stanza>-<job>.service (commit 08932bc95b96)
    "services.pgbackrest.stanzas": "nixos/modules/services/backup/pgbackrest.nix",
    "services.borgbackup.jobs": "nixos/modules/services/backup/borgbackup.nix",
    "services.postgresqlBackup": "nixos/modules/services/backup/postgresql-backup.nix",
    "services.mysqlBackup": "nixos/modules/services/backup/mysql-backup.nix",
    "services.btrbk.instances": "nixos/modules/services/backup/btrbk.nix",
    # attrsOf str, each run in a subshell before the switch (commit 087f644ff9de)
    "system.preSwitchChecks": "nixos/modules/system/activation/pre-switch-check.nix",
    "security.polkit": "nixos/modules/security/polkit.nix",
    "services.dbus.packages": "nixos/modules/services/system/dbus.nix",
    "systemd.tmpfiles.rules": "nixos/modules/system/boot/systemd/tmpfiles.nix",
    "users.users": "nixos/modules/config/users-groups.nix",
    "environment.etc": "nixos/modules/system/etc/etc.nix",
    "systemd.services": "nixos/modules/system/boot/systemd.nix",
    "systemd.package": "nixos/modules/system/boot/systemd.nix",
}


def text(path: str) -> str:
    return (REPOSITORY_ROOT / path).read_text()


def test_every_pkgs_attribute_used_is_a_known_fact() -> None:
    used = set()
    for path in ("flake.nix", "nix/module.nix"):
        for match in re.finditer(
            r"\bpkgs\.([A-Za-z][A-Za-z0-9_-]*(?:\.runNixOSTest)?)", text(path)
        ):
            used.add(match.group(1))
    used -= {"python3Packages", "legacyPackages", "url"}  # handled below, or not attributes
    # nix/package.nix takes its packages as arguments (callPackage fills them in).
    header = text("nix/package.nix").split("}:", 1)[0]
    used |= set(re.findall(r"^\s*([A-Za-z][A-Za-z0-9_-]*),$", header, re.MULTILINE))
    used -= {"lib", "stdenv", "python3Packages"}
    assert used, "the pattern found nothing"
    assert sorted(used - PACKAGES.keys()) == []


def test_every_python_package_used_is_a_known_fact() -> None:
    used = set(re.findall(r"python3Packages\.([A-Za-z][A-Za-z0-9_-]*)",
                          text("nix/package.nix") + text("flake.nix")))  # fmt: skip
    # The run-time dependencies come from pyproject.toml through the PEP 503 name.
    project = tomllib.loads(text("pyproject.toml"))["project"]
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["notify"]]:
        name = re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0]
        used.add(re.sub(r"[-_.]+", "-", name).lower())
    assert {"apprise", "prometheus-client", "buildPythonApplication"} <= used
    assert sorted(used - PYTHON_PACKAGES.keys()) == []


def test_every_nixos_option_the_module_touches_is_a_known_fact() -> None:
    module = text("nix/module.nix")
    read = {f"services.{name}" for name in re.findall(r"\bservices\.([A-Za-z]+)\b", module)}
    read -= {"services.deploy-guard", "services.deploy"}
    for option in read:
        assert any(fact == option or fact.startswith(f"{option}.") for fact in NIXOS_OPTIONS), (
            option
        )
    for option in ("system.preSwitchChecks", "security.polkit", "systemd.tmpfiles.rules",
                   "environment.etc", "users.users", "systemd.package"):  # fmt: skip
        assert option in module
        assert option in NIXOS_OPTIONS
