"""The Nix side, as far as it can be checked here: every .nix file parses, the flake's lock
is the agreed one, the NixOS module evaluates against a real nixpkgs `lib` (NIXPKGS_LIB) and
derives the right units, the pre-switch check script behaves, and the wheel installs.

Building the package, the module inside a full NixOS system and the VM test needs nixpkgs
itself, which cannot be fetched here: those are the flake's checks (docs/nix.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import venv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, NoReturn

import pytest

from deploy_guard.manifest import load_manifest
from tests.integration.test_polkit import POLKIT_TEMPLATE, render_polkit_rule

REPOSITORY_ROOT: Final = Path(__file__).resolve().parents[2]
NIX_DIRECTORY: Final = REPOSITORY_ROOT / "nix"
EVAL_MODULE: Final = NIX_DIRECTORY / "tests" / "eval-module.nix"
SAMPLE_MANIFEST: Final = NIX_DIRECTORY / "tests" / "sample-host-manifest.json"
SKIPPED_DIRECTORIES: Final = {".git", ".venv", "node_modules", "result"}
NIXPKGS_REV: Final = "8fd9daa3db09ced9700431c5b7ad0e8ba199b575"
NIXPKGS_NAR_HASH: Final = "sha256-Ti+ZBvW6yrWWAg2szExVTwCd4qOJ3KlVr1tFHfyfi8Q="
NIXPKGS_LAST_MODIFIED: Final = 1778430510
STUB_STORE: Final = "/nix/store/00000000000000000000000000000000"
# A host with one backup of each kind that needs a name, written as a NixOS module.
RESTIC = '{ repository = "/srv/restic"; passwordFile = "/etc/restic/password"; paths = [ "/" ]; }'


def nix_files() -> list[Path]:
    return sorted(
        path
        for path in REPOSITORY_ROOT.rglob("*.nix")
        if not SKIPPED_DIRECTORIES.intersection(path.relative_to(REPOSITORY_ROOT).parts)
    )


def unavailable(message: str) -> NoReturn:
    """Skip, or fail when CI=true: CI runs every test (.ci/run provides what they need)."""
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def needs(tool: str, package: str = "nix-bin") -> str:
    path = shutil.which(tool)
    if path is None:
        unavailable(f"{tool} is not installed (Debian: apt-get install {package}; "
                    "scripts/install-deps.sh installs it)")  # fmt: skip
    return path


@pytest.fixture(scope="session")
def nixpkgs_lib() -> Path:
    """The nixpkgs `lib` directory to evaluate the module against, from NIXPKGS_LIB."""
    value = os.environ.get("NIXPKGS_LIB")
    if not value:
        unavailable(
            "NIXPKGS_LIB is not set: set it to a nixpkgs lib directory (e.g. a checkout of "
            "nix-community/nixpkgs.lib: NIXPKGS_LIB=/tmp/nixpkgs-lib/lib) to evaluate "
            "nix/module.nix with lib.evalModules; never commit that checkout (.ci/run sets it)"
        )
    path = Path(value)
    if not (path / "default.nix").is_file() or not (path / "modules.nix").is_file():
        pytest.fail(f"NIXPKGS_LIB={value} is not a nixpkgs lib directory (no modules.nix)")
    needs("nix-instantiate")
    return path


def evaluate(nixpkgs_lib: Path, host_config: str | None = None) -> dict[str, Any]:
    """nix/tests/eval-module.nix with ``host_config`` (a NixOS module, as Nix text).

    Raises:
        AssertionError: the evaluation failed (nix's message attached).
    """
    completed = run_evaluation(nixpkgs_lib, host_config)
    assert completed.returncode == 0, completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def run_evaluation(nixpkgs_lib: Path, host_config: str | None) -> subprocess.CompletedProcess[str]:
    argv = ["nix-instantiate", "--eval", "--strict", "--json", str(EVAL_MODULE),
            "--argstr", "libPath", str(nixpkgs_lib)]  # fmt: skip
    if host_config is not None:
        argv += ["--arg", "hostConfig", host_config]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          cwd=REPOSITORY_ROOT)  # fmt: skip


def stage_units(result: dict[str, Any]) -> dict[str, list[str]]:
    return {stage["name"]: stage["units"] for stage in result["manifest"]["stages"]}


def guarded(body: str) -> str:
    """A host configuration with the module enabled plus ``body``."""
    return f"{{ services.deploy-guard.enable = true; {body} }}"


# -- parsing and the lock ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path", nix_files(), ids=lambda path: str(path.relative_to(REPOSITORY_ROOT))
)
def test_nix_file_parses(path: Path) -> None:
    nix_instantiate = needs("nix-instantiate")
    completed = subprocess.run([nix_instantiate, "--parse", str(path)], capture_output=True,
                               text=True, timeout=60, check=False)  # fmt: skip
    assert completed.returncode == 0, completed.stderr


def test_the_expected_nix_files_exist() -> None:
    names = {str(path.relative_to(REPOSITORY_ROOT)) for path in nix_files()}
    assert {"flake.nix", "nix/package.nix", "nix/module.nix", "nix/tests/vm.nix",
            "nix/tests/eval-module.nix", "nix/tests/module-eval.nix"} <= names  # fmt: skip


def test_flake_lock_pins_nixos_25_11() -> None:
    lock = json.loads((REPOSITORY_ROOT / "flake.lock").read_text())
    assert lock["version"] == 7
    assert lock["root"] == "root"
    assert lock["nodes"]["root"]["inputs"] == {"nixpkgs": "nixpkgs"}
    assert lock["nodes"]["nixpkgs"]["locked"] == {
        "lastModified": NIXPKGS_LAST_MODIFIED,
        "narHash": NIXPKGS_NAR_HASH,
        "owner": "NixOS",
        "repo": "nixpkgs",
        "rev": NIXPKGS_REV,
        "type": "github",
    }
    assert lock["nodes"]["nixpkgs"]["original"] == {
        "owner": "NixOS", "repo": "nixpkgs", "ref": "nixos-25.11", "type": "github",
    }  # fmt: skip
    flake = (REPOSITORY_ROOT / "flake.nix").read_text()
    assert 'inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";' in flake


def test_sample_manifest_is_valid() -> None:
    manifest = load_manifest(SAMPLE_MANIFEST.read_text())
    assert manifest.stage("applications") is not None


# -- the module, evaluated with a real lib ------------------------------------------------


def test_module_writes_the_sample_hosts_manifest(nixpkgs_lib: Path) -> None:
    result = evaluate(nixpkgs_lib)
    expected = json.loads(SAMPLE_MANIFEST.read_text())
    assert result["failedAssertions"] == []
    assert result["manifest"] == expected
    assert json.loads(result["manifestText"]) == expected
    load_manifest(result["manifestText"])  # the CLI's own model accepts what the module writes


def granted_units(polkit_rule: str) -> list[str]:
    """The `units` array of a rendered polkit rule."""
    match = re.search(r"var units = (\[.*?\]);", polkit_rule)
    assert match is not None, polkit_rule
    units: list[str] = json.loads(match.group(1))
    return units


def test_polkit_rule_is_the_shipped_template_rendered_with_the_inventory(nixpkgs_lib: Path) -> None:
    result = evaluate(nixpkgs_lib)
    units = [unit for stage in result["manifest"]["stages"] for unit in stage["units"]]
    units += [proof["proof_unit"] for proof in result["manifest"]["proofs"]]
    assert result["polkitEnabled"] is True
    expected = render_polkit_rule(POLKIT_TEMPLATE.read_text(), "deploy-guard", units)
    assert result["polkitRule"] == expected  # the testbed installs this very text
    assert expected in result["polkitConfig"]
    for unit in units:
        assert f'"{unit}"' in result["polkitRule"]
    assert 'var guardUser = "deploy-guard";' in result["polkitRule"]


def test_guard_user_is_a_journal_reader_with_the_authorized_keys(nixpkgs_lib: Path) -> None:
    result = evaluate(nixpkgs_lib)
    user = result["user"]
    assert user["isSystemUser"] is True
    assert user["useDefaultShell"] is True
    assert user["extraGroups"] == ["systemd-journal"]
    assert user["home"] == "/var/lib/deploy-guard"
    (key,) = user["openssh"]["authorizedKeys"]["keys"]
    assert key.startswith("ssh-ed25519 ")
    assert "deploy-guard" in result["groups"]
    assert "d /var/lib/deploy-guard 0750 deploy-guard deploy-guard - -" in result["tmpfiles"]
    assert (
        "d /var/lib/deploy-guard/receipts 0750 deploy-guard deploy-guard - -" in result["tmpfiles"]
    )


def test_dbus_policy_lets_only_the_guard_user_enqueue_jobs(nixpkgs_lib: Path) -> None:
    result = evaluate(nixpkgs_lib, guarded('services.deploy-guard.user = "backup-guard";'))
    (policy,) = result["dbusPolicies"]
    assert policy["path"] == "share/dbus-1/system.d/deploy-guard.conf"
    assert '<policy user="backup-guard">' in policy["text"]
    assert 'send_member="EnqueueUnitJob"' in policy["text"]
    assert policy["text"].count("<allow ") == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            f'services.restic.backups."my-job" = {RESTIC};',
            {"snapshots": [], "replication": [], "applications": ["restic-backups-my-job.service"]},
            id="restic-only",
        ),
        pytest.param(
            # syncoid's units only exist when it is enabled; sanoid likewise.
            'services.syncoid.commands."tank/a".target = "x"; services.sanoid.datasets.t = { };',
            {"snapshots": [], "replication": [], "applications": []},
            id="syncoid-and-sanoid-disabled",
        ),
        pytest.param(
            "services.sanoid.enable = true; services.syncoid.enable = true;"
            'services.syncoid.commands = { "tank/data".target = "t"; "pool/a b@c:d".target = "t";'
            '  "a\\\\b".target = "t"; "x--y".target = "t"; "/lead".target = "t"; };',
            {
                "snapshots": ["sanoid.service"],
                "replication": [
                    "syncoid--lead.service",
                    "syncoid-a\\b.service",
                    "syncoid-pool-a-b-c-d.service",
                    "syncoid-tank-data.service",
                    "syncoid-x--y.service",
                ],
                "applications": [],
            },
            id="syncoid-escaping",
        ),
        pytest.param(
            "services.pgbackrest.enable = true; services.pgbackrest.stanzas = {"
            ' main.jobs = { full.type = "full"; incr.type = "incr"; };'
            ' second.jobs.daily.type = "diff"; empty = { }; };',
            {
                "snapshots": [],
                "replication": [],
                "applications": [
                    "pgbackrest-main-full.service",
                    "pgbackrest-main-incr.service",
                    "pgbackrest-second-daily.service",
                ],
            },
            id="pgbackrest-jobs",
        ),
        pytest.param(
            "services.postgresqlBackup.enable = true;",
            {"snapshots": [], "replication": [], "applications": ["postgresqlBackup.service"]},
            id="postgresql-backup-all",
        ),
        pytest.param(
            "services.borgbackup.jobs.docs = { }; services.btrbk.instances.btrbk = { };"
            "services.mysqlBackup.enable = true;",
            {
                "snapshots": [],
                "replication": [],
                "applications": [
                    "borgbackup-job-docs.service",
                    "mysql-backup.service",
                    "btrbk-btrbk.service",
                ],
            },
            id="borg-mysql-btrbk",
        ),
        pytest.param(
            f"services.restic.backups = {{ a = {RESTIC}; b = {RESTIC}; }};"
            "services.deploy-guard.stages.applications.excludeUnits ="
            ' [ "restic-backups-b.service" ];'
            'services.deploy-guard.stages.replication.extraUnits = [ "zrepl-push.service" ];',
            {
                "snapshots": [],
                "replication": ["zrepl-push.service"],
                "applications": ["restic-backups-a.service"],
            },
            id="extra-and-exclude",
        ),
    ],
)
def test_manifest_units_derived_from_the_host_configuration(
    nixpkgs_lib: Path, body: str, expected: dict[str, list[str]]
) -> None:
    result = evaluate(nixpkgs_lib, guarded(body))
    assert result["failedAssertions"] == []
    assert stage_units(result) == expected
    load_manifest(result["manifestText"])
    inventory = [unit for units in expected.values() for unit in units]
    proofs = [proof["proof_unit"] for proof in result["manifest"]["proofs"]]
    assert granted_units(result["polkitRule"]) == inventory + proofs


PROOF_HOST = (
    'services.sanoid = { enable = true; datasets."tank/a".hourly = 24;'
    '  datasets."tank/b" = { useTemplate = [ "quick" ]; autosnap = true; };'
    '  datasets."tank/off".autosnap = false;'
    "  templates.quick = { frequently = 4; hourly = 24; settings.frequent_period = 5; }; };"
    'services.syncoid = { enable = true; commonArgs = [ "--no-sync-snap" ];'
    '  commands."tank/a".target = "nas:tank/a";'
    '  commands.keep = { source = "tank/b"; target = "nas:b"; useCommonArgs = false; }; };'
    'services.restic.backups.home = { paths = [ "/home" ]; };'
    'services.borgbackup.jobs.docs.archiveBaseName = "forge-docs";'
    "services.pgbackrest.enable = true;"
    'services.pgbackrest.stanzas.main.jobs.nightly.type = "incr";'
    "services.postgresqlBackup.enable = true;"
    'services.mysqlBackup = { enable = true; databases = [ "shop" ]; };'
    "services.btrbk.instances.local = { };"
    "systemd.services.restic-backups-home = {"
    '  environment.RESTIC_REPOSITORY = "/srv/restic";'
    '  serviceConfig = { User = "backup"; EnvironmentFile = "/etc/restic/env"; Nice = 19; }; };'
)


def test_proof_units_for_each_backup_kind_and_only_them_are_granted(nixpkgs_lib: Path) -> None:
    result = evaluate(nixpkgs_lib, guarded(PROOF_HOST))
    assert result["failedAssertions"] == []
    manifest = load_manifest(result["manifestText"])
    proofs = {proof.unit: (proof.kind, proof.params) for proof in manifest.proofs}
    assert proofs == {
        "sanoid.service": ("sanoid", {"datasets": {"tank/a": 3600, "tank/b": 300}}),
        "syncoid-tank-a.service": ("syncoid", {"source": "tank/a", "no_sync_snap": True}),
        "syncoid-keep.service": ("syncoid", {"source": "tank/b", "no_sync_snap": False}),
        "restic-backups-home.service": ("restic", {"paths": ["/home"]}),
        "borgbackup-job-docs.service": ("borg", {"glob": "forge-docs-*"}),
        "pgbackrest-main-nightly.service": ("pgbackrest", {"stanza": "main", "type": "incr"}),
        "postgresqlBackup.service": ("dump", {"files": ["/var/backup/postgresql/all.sql*"]}),
        "mysql-backup.service": ("dump", {"files": ["/var/backup/mysql/shop.*"]}),
    }
    # btrbk has no built-in proof: no proof unit, and nothing granted for one.
    services = result["proofServices"]
    assert sorted(services) == sorted(
        f"deploy-guard-proof@{unit.removesuffix('.service')}" for unit in proofs
    )
    assert {proof.proof_unit for proof in manifest.proofs} == {
        f"{name}.service" for name in services
    }
    inventory = [unit for stage in manifest.stages for unit in stage.units]
    assert granted_units(result["polkitRule"]) == inventory + [
        p.proof_unit for p in manifest.proofs
    ]
    # The restic check runs as the backup's user, with its environment and credentials only.
    restic = services["deploy-guard-proof@restic-backups-home"]
    assert restic["serviceConfig"] == {
        "Type": "oneshot", "PrivateTmp": True, "User": "backup",
        "EnvironmentFile": "/etc/restic/env",
    }  # fmt: skip
    assert restic["environment"] == {"RESTIC_REPOSITORY": "/srv/restic"}
    assert "restic --no-cache snapshots --json --latest 1 --host" in restic["script"]
    assert restic["restartIfChanged"] is False
    assert "wantedBy" not in restic
    # zfs listings need no privilege at all.
    assert services["deploy-guard-proof@sanoid"]["serviceConfig"]["DynamicUser"] is True
    assert "-d 1 -- tank/a tank/b" in services["deploy-guard-proof@sanoid"]["script"]


def test_excluded_units_are_not_granted(nixpkgs_lib: Path) -> None:
    result = evaluate(nixpkgs_lib, guarded(
        f"services.restic.backups = {{ a = {RESTIC}; b = {RESTIC}; }};"
        "services.deploy-guard.stages.applications.excludeUnits ="
        ' [ "restic-backups-b.service" ];'
    ))  # fmt: skip
    assert '"restic-backups-a.service"' in result["polkitRule"]
    assert "restic-backups-b.service" not in result["polkitRule"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            f"services.restic.backups.home = {RESTIC};"
            "systemd.services.restic-backups-home.enable = false;",
            "does not define (a backup module changed its unit names?): "
            "restic-backups-home.service",
            id="derived-unit-not-defined",
        ),
        pytest.param(
            'services.deploy-guard.stages.snapshots.extraUnits = [ "bad unit.service" ];',
            "not startable service unit names: bad unit.service",
            id="invalid-extra-unit",
        ),
        pytest.param(
            'services.deploy-guard.stages.snapshots.extraUnits = [ "foo@.service" ];',
            "not startable service unit names: foo@.service",
            id="template-extra-unit",
        ),
        pytest.param(
            "services.sanoid.enable = true;"
            'services.deploy-guard.stages.applications.extraUnits = [ "sanoid.service" ];',
            "units listed in more than one stage: sanoid.service",
            id="unit-in-two-stages",
        ),
        pytest.param(
            'services.deploy-guard.user = "root";',
            "must not be root",
            id="root-user",
        ),
    ],
)
def test_module_assertions(nixpkgs_lib: Path, body: str, message: str) -> None:
    result = evaluate(nixpkgs_lib, guarded(body))
    assert any(message in failure for failure in result["failedAssertions"]), result[
        "failedAssertions"
    ]


@pytest.mark.parametrize(
    "body",
    [
        'services.deploy-guard.stages.snapshots.timeout = "5 minutes";',
        'services.deploy-guard.requireFreshBackup = { enable = true; maxAge = "1.5h"; };',
        'services.deploy-guard.user = "Bad\\"User";',
    ],
)
def test_module_rejects_bad_option_values(nixpkgs_lib: Path, body: str) -> None:
    completed = run_evaluation(nixpkgs_lib, guarded(body))
    assert completed.returncode != 0
    assert "is not of type" in completed.stderr


def test_stage_timeouts_reach_the_manifest(nixpkgs_lib: Path) -> None:
    result = evaluate(nixpkgs_lib, guarded(
        'services.deploy-guard.stages.snapshots.timeout = "90s";'
        'services.deploy-guard.stages.applications.timeout = "1h30m";'
    ))  # fmt: skip
    manifest = load_manifest(result["manifestText"])
    timeouts = {stage.name: stage.timeout_seconds for stage in manifest.stages}
    assert timeouts == {"snapshots": 90.0, "replication": None, "applications": 5400.0}


def test_disabled_module_changes_nothing(nixpkgs_lib: Path) -> None:
    result = evaluate(nixpkgs_lib, f"{{ services.restic.backups.home = {RESTIC}; }}")
    assert result["manifestText"] is None
    assert result["polkitEnabled"] is False
    assert result["polkitConfig"] == ""
    assert result["user"] is None
    assert result["preSwitchChecks"] == {}
    assert result["guardService"] is None


def test_on_host_service_runs_the_guard_as_the_guard_user(nixpkgs_lib: Path) -> None:
    result = evaluate(nixpkgs_lib, guarded(
        "services.deploy-guard.onHost.enable = true;"
        'services.deploy-guard.onHost.extraArgs = [ "--max-age" "30m" ];'
    ))  # fmt: skip
    service = result["guardService"]
    assert service["restartIfChanged"] is False
    assert "wantedBy" not in service  # only `systemctl start deploy-guard`, never at boot
    config = service["serviceConfig"]
    assert config["Type"] == "oneshot"
    assert config["User"] == "deploy-guard"
    assert config["ExecStart"] == (
        f"{STUB_STORE}-deploy-guard/bin/deploy-guard run local --max-age 30m"
    )
    assert service["environment"]["XDG_STATE_HOME"] == "/var/lib"


PACKAGE_PROBE: Final = """
let
  lib = import LIB;
  stub = name: {
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
  python3Packages = lib.genAttrs (PYTHON_PACKAGES) stub // {
    buildPythonApplication = a: a;
    # The interpreter: the one running the tests, whose site-packages has deploy_guard.
    python = { sitePackages = "SITE_PACKAGES"; interpreter = "INTERPRETER"; };
  };
  # Building on the platform it runs on (canExecute is what nixpkgs' stdenv answers then).
  stdenv = {
    buildPlatform.canExecute = platform: platform == "x86_64-linux";
    hostPlatform = "x86_64-linux";
  };
  drv = import ./nix/package.nix {
    inherit lib stdenv python3Packages;
    installShellFiles = stub "install-shell-files";
    git = stub "git";
    openssh = stub "openssh";
  };
in {
  inherit (drv) pname version pyproject enabledTestPaths makeWrapperArgs postInstall;
  mainProgram = drv.meta.mainProgram;
  buildSystem = map (p: p.name) drv.build-system;
  nativeBuildInputs = map (p: p.name) drv.nativeBuildInputs;
  dependencies = map (p: p.name) drv.dependencies;
  optional = lib.mapAttrs (_: map (p: p.name)) drv.optional-dependencies;
  checkInputs = map (p: p.name) drv.nativeCheckInputs;
}
"""


def nixpkgs_attribute(requirement: str) -> str:
    """PEP 503 normalisation of a requirement's name, which nixpkgs uses for attributes."""
    name = re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def evaluate_package(nixpkgs_lib: Path, known: set[str]) -> dict[str, Any]:
    """nix/package.nix with stub python packages and stdenv (the fileset needs Nix 2.14+)."""
    expression = (
        PACKAGE_PROBE.replace("LIB", str(nixpkgs_lib))
        .replace("PYTHON_PACKAGES", " ".join(json.dumps(name) for name in sorted(known)).join("[]"))
        .replace("SITE_PACKAGES", "lib/python3/site-packages")
        .replace("INTERPRETER", sys.executable)
    )
    completed = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "-E", expression],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPOSITORY_ROOT,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    package: dict[str, Any] = json.loads(completed.stdout)
    return package


def pyproject_packages() -> tuple[dict[str, Any], list[str], dict[str, list[str]]]:
    project = tomllib.loads((REPOSITORY_ROOT / "pyproject.toml").read_text())["project"]
    required = [nixpkgs_attribute(spec) for spec in project["dependencies"]]
    extras = {
        extra: [nixpkgs_attribute(spec) for spec in specs]
        for extra, specs in project.get("optional-dependencies", {}).items()
        if extra not in ("dev", "bench")  # tools for working on deploy-guard, not features
    }
    return project, required, extras


def test_package_follows_pyproject_and_always_has_apprise(nixpkgs_lib: Path) -> None:
    project, required, extras = pyproject_packages()
    known = {"setuptools", "pytestCheckHook", "hypothesis", *required}
    known.update(name for names in extras.values() for name in names)
    package = evaluate_package(nixpkgs_lib, known)
    assert package["pname"] == project["name"]
    assert package["version"] == project["version"]
    assert package["pyproject"] is True
    assert package["buildSystem"] == ["setuptools"]
    # Notifications are a feature: apprise is a run-time dependency, not only an extra.
    assert extras["notify"] == ["apprise"]
    assert package["dependencies"] == [*required, "apprise"]
    assert package["optional"] == extras
    for names in extras.values():
        assert set(names) <= set(package["checkInputs"])  # their tests run in the build
    assert package["enabledTestPaths"] == ["tests/unit"]
    assert package["mainProgram"] == next(iter(project["scripts"]))


def test_package_wrapper_puts_ssh_on_the_path(nixpkgs_lib: Path) -> None:
    _project, required, extras = pyproject_packages()
    known = {"setuptools", "pytestCheckHook", "hypothesis", *required, *extras["notify"]}
    package = evaluate_package(nixpkgs_lib, known)
    # makeWrapper's own argument syntax: --suffix VAR SEP VALUE (the user's ssh comes first).
    assert package["makeWrapperArgs"] == ["--suffix", "PATH", ":", f"{STUB_STORE}-openssh/bin"]


def test_package_installs_completions_for_bash_zsh_and_fish(
    nixpkgs_lib: Path, tmp_path: Path
) -> None:
    """The package's postInstall, run by bash with the real command and an
    installShellCompletion that files each script where nixpkgs' installShellFiles does."""
    _project, required, extras = pyproject_packages()
    known = {"setuptools", "pytestCheckHook", "hypothesis", *required, *extras["notify"]}
    package = evaluate_package(nixpkgs_lib, known)
    assert "install-shell-files" in package["nativeBuildInputs"]
    out = tmp_path / "out"
    (out / "bin").mkdir(parents=True)
    (out / "bin" / "deploy-guard").symlink_to(Path(sys.executable).parent / "deploy-guard")
    # pkgs/by-name/in/installShellFiles/setup-hook.sh: --cmd NAME, then --bash/--zsh/--fish
    # PATH to share/bash-completion/completions/NAME.bash, share/zsh/site-functions/_NAME,
    # share/fish/vendor_completions.d/NAME.fish.
    install_shell_completion = r"""
installShellCompletion() {
  local cmd shell source
  while [ $# -gt 0 ]; do
    case $1 in
      --cmd) cmd=$2; shift 2 ;;
      --bash|--zsh|--fish) shell=${1#--}; source=$2; shift 2
        case $shell in
          bash) target=$out/share/bash-completion/completions/$cmd.bash ;;
          zsh) target=$out/share/zsh/site-functions/_$cmd ;;
          fish) target=$out/share/fish/vendor_completions.d/$cmd.fish ;;
        esac
        mkdir -p "$(dirname "$target")"; cat "$source" > "$target" ;;
      *) echo "unexpected $1" >&2; return 1 ;;
    esac
  done
}
# installManPage PAGE.N files it under share/man/manN (same setup hook).
installManPage() {
  mkdir -p "$out/share/man/man1"; cp "$1" "$out/share/man/man1/"
}
"""
    completed = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", install_shell_completion + package["postInstall"]],
        env={**os.environ, "out": str(out)}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    share = out / "share"
    bash = (share / "bash-completion/completions/deploy-guard.bash").read_text()
    zsh = (share / "zsh/site-functions/_deploy-guard").read_text()
    fish = (share / "fish/vendor_completions.d/deploy-guard.fish").read_text()
    assert "_DEPLOY_GUARD_COMPLETE=bash_complete" in bash
    assert "complete -o nosort -F _deploy_guard_completion deploy-guard" in bash
    assert zsh.startswith("#compdef deploy-guard")
    manual = (share / "man/man1/deploy-guard.1").read_text()
    assert manual.startswith(".TH DEPLOY\\-GUARD 1")
    assert "_DEPLOY_GUARD_COMPLETE=fish_complete" in fish


FLAKE_PROBE: Final = """
let
  lib = import LIB;
  flake = import ./flake.nix;
  stubPackage = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    meta.mainProgram = name;
  };
  stubPkgs = system: {
    inherit lib;
    stdenv.hostPlatform.system = system;
    callPackage = path: args: stubPackage (baseNameOf (toString path)) // {
      inherit args;
      meta.mainProgram = "deploy-guard";
    };
    mkShell = attrs: stubPackage "shell" // { inherit attrs; };
    nixfmt = stubPackage "nixfmt";
    testers.runNixOSTest = test: stubPackage "vm" // { inherit test; };
  };
  nixpkgs = {
    inherit lib;
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" "x86_64-darwin"
      "aarch64-darwin" ] stubPkgs;
  };
  self = flake.outputs { inherit self nixpkgs; };
  systems = attrs: builtins.attrNames attrs;
in {
  outputs = builtins.attrNames self;
  packages = lib.mapAttrs (_: builtins.attrNames) self.packages;
  apps = lib.mapAttrs (_: app: { inherit (app.default) type program; }) self.apps;
  devShells = systems self.devShells;
  formatter = lib.mapAttrs (_: f: f.name) self.formatter;
  checks = lib.mapAttrs (_: builtins.attrNames) self.checks;
  vmName = (self.checks.x86_64-linux.vm.test { config = { }; }).name;
  module = toString self.nixosModules.default;
  overlay = (self.overlays.default (stubPkgs "x86_64-linux") { }).deploy-guard.name;
}
"""


def test_flake_outputs(nixpkgs_lib: Path) -> None:
    """flake.nix's outputs function with a stub nixpkgs: the outputs and systems it declares."""
    expression = FLAKE_PROBE.replace("LIB", str(nixpkgs_lib))
    completed = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "-E", expression],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPOSITORY_ROOT,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    flake = json.loads(completed.stdout)
    linux = ["aarch64-linux", "x86_64-linux"]
    every = ["aarch64-darwin", "aarch64-linux", "x86_64-darwin", "x86_64-linux"]
    assert flake["outputs"] == [
        "apps", "checks", "devShells", "formatter", "nixosModules", "overlays", "packages",
    ]  # fmt: skip
    assert flake["packages"] == {system: ["default", "deploy-guard"] for system in every}
    assert flake["apps"]["x86_64-linux"] == {
        "type": "app",
        "program": f"{STUB_STORE}-package.nix/bin/deploy-guard",
    }
    assert sorted(flake["apps"]) == every
    assert flake["devShells"] == every
    assert flake["formatter"] == dict.fromkeys(every, "nixfmt")
    assert flake["checks"] == {system: ["module-eval", "package", "vm"] for system in linux}
    assert flake["vmName"] == "deploy-guard"
    assert flake["module"] == str(NIX_DIRECTORY / "module.nix")
    assert flake["overlay"] == "package.nix"


# -- requireFreshBackup: the pre-switch check, run by bash -----------------------------------


@pytest.fixture
def fresh_check(nixpkgs_lib: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The module's pre-switch check (maxAge 6h), wrapped as nixpkgs runs it, with the real
    jq and date and the receipt moved to tmp_path; returns (script, receipt)."""
    jq = needs("jq", package="jq")
    date = needs("date", package="coreutils")
    result = evaluate(nixpkgs_lib)
    text = result["preSwitchChecks"]["deploy-guard-fresh-backup"]
    receipt = tmp_path / "last-success.json"
    assert "receipt=/var/lib/deploy-guard/receipts/last-success.json\n" in text
    text = (
        text.replace("/var/lib/deploy-guard/receipts/last-success.json", str(receipt))
        .replace(f"{STUB_STORE}-jq/bin/jq", jq)
        .replace(f"{STUB_STORE}-coreutils/bin/date", date)
    )
    # nixos/modules/system/activation/pre-switch-check.nix: writeShellApplication (errexit,
    # nounset, pipefail) running each check in a subshell.
    script = tmp_path / "pre-switch-checks"
    script.write_text(
        "#!/usr/bin/env bash\nset -o errexit\nset -o nounset\nset -o pipefail\n"
        f"set +e\n(\nset -e\n{text})\n_rc=$?\nset -e\n"
        "if [ \"$_rc\" -ne 0 ]; then echo \"Pre-switch check 'deploy-guard-fresh-backup' failed\""
        " >&2; exit 1; fi\n"
    )  # fmt: skip
    return script, receipt


def run_check(script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30,
                          check=False, env={**os.environ, "LC_ALL": "C"})  # fmt: skip


def iso(seconds_ago: float) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_fresh_check_passes_shellcheck(fresh_check: tuple[Path, Path]) -> None:
    # writeShellApplication runs shellcheck in the build.
    shellcheck = needs("shellcheck", package="shellcheck")
    script, _receipt = fresh_check
    completed = subprocess.run([shellcheck, str(script)], capture_output=True, text=True,
                               check=False)  # fmt: skip
    assert completed.returncode == 0, completed.stdout


@pytest.mark.parametrize(
    ("receipt_text", "passes", "message"),
    [
        (None, False, "no successful guard run is recorded"),
        (f'{{"run_id": "r1", "finished_at": "{iso(60)}"}}', True, "r1 finished"),
        (f'{{"run_id": "r2", "finished_at": "{iso(7 * 3600)}"}}', False, "more than 6h"),
        (f'{{"run_id": "r3", "finished_at": "{iso(-3600)}"}}', False, "in the future"),
        ('{"run_id": "r4"}', False, 'no readable "finished_at"'),
        (f'{{"run_id": "r6", "finished_at_epoch": {int(time.time()) - 60}}}', True, "r6 finished"),
        (f'{{"run_id": "r7", "finished_at_epoch": {int(time.time()) - 9 * 3600}}}', False, "6h"),
        ('{"run_id": "r5", "finished_at": "yesterday-ish"}', False, 'no readable "finished_at"'),
        ("not json", False, 'no readable "finished_at"'),
    ],
)  # fmt: skip
def test_fresh_check_refuses_a_switch_without_a_recent_receipt(
    fresh_check: tuple[Path, Path], receipt_text: str | None, passes: bool, message: str
) -> None:
    script, receipt = fresh_check
    if receipt_text is not None:
        receipt.write_text(receipt_text)
    completed = run_check(script)
    assert (completed.returncode == 0) is passes, completed.stderr
    assert message in completed.stderr
    if not passes:
        assert "NIXOS_NO_CHECK=1" in completed.stderr


# -- the wheel --------------------------------------------------------------------------------


def pip(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(python), "-m", "pip", "--disable-pip-version-check", *args]
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False,
                               cwd=cwd)  # fmt: skip
    if completed.returncode != 0 and "Could not find a version" in completed.stderr + (
        completed.stdout
    ):
        unavailable(f"the package index is unreachable: {completed.stderr.strip()[-300:]}")
    return completed


def test_wheel_installs_and_runs_in_a_clean_virtualenv(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPOSITORY_ROOT / name, source / name)
    shutil.copytree(REPOSITORY_ROOT / "deploy_guard", source / "deploy_guard",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    dist = tmp_path / "dist"
    built = pip(Path(sys.executable), "wheel", "--no-deps", "-w", str(dist), str(source),
                cwd=tmp_path)  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("deploy_guard-*.whl")
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    installed = pip(python, "install", str(wheel), cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"  # not the repository: only the wheel can be imported
    elsewhere.mkdir()
    command = environment / "bin" / "deploy-guard"
    helped = subprocess.run([str(command), "--help"], capture_output=True, text=True,
                            cwd=elsewhere, timeout=60, check=False)  # fmt: skip
    assert helped.returncode == 0, helped.stderr
    assert "schema" in helped.stdout
    printed = subprocess.run([str(command), "schema", "manifest"], capture_output=True,
                             text=True, cwd=elsewhere, timeout=60, check=False)  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["title"] == "Manifest"
    located = subprocess.run(
        [str(python), "-c", "import deploy_guard; print(deploy_guard.__file__)"],
        capture_output=True, text=True, cwd=elsewhere, check=True,
    )  # fmt: skip
    assert str(environment) in located.stdout
    # The backup kinds table is data, not code: the wheel must ship it (pyproject package-data).
    stages = subprocess.run(
        [str(python), "-c", "from deploy_guard.config import default_stages as d; "
         "print(' '.join(s.name for s in d()))"],
        capture_output=True, text=True, cwd=elsewhere, check=False,
    )  # fmt: skip
    assert stages.stdout.split() == ["snapshots", "replication", "applications"], stages.stderr
