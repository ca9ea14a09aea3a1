"""Host selection: flake inventory JSON to hosts, merging with [hosts], and HOST arguments."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from deploy_guard.config import Config, parse_config
from deploy_guard.errors import ConfigError, ExitCode, UsageError
from deploy_guard.hosts.inventory import InventoryHost, nix_eval_argv, parse_inventory
from deploy_guard.hosts.selection import KnownHost, known_hosts, select_hosts

# -- parse_inventory -----------------------------------------------------------------------


def colmena_node(**fields: Any) -> dict[str, Any]:
    return {"targetHost": None, "targetUser": None, "targetPort": None, "tags": []} | fields


@pytest.mark.parametrize(
    ("node", "destination", "tags"),
    [
        (colmena_node(targetHost="forge.lan", targetUser="root", targetPort=2222, tags=["nas"]),
         "root@forge.lan:2222", ("nas",)),
        (colmena_node(targetHost="forge.lan"), "forge.lan", ()),
        (colmena_node(targetHost="forge.lan", targetUser="admin"), "admin@forge.lan", ()),
        (colmena_node(targetHost="10.0.0.5", targetPort=22), "10.0.0.5:22", ()),
        # An IPv6 address with a port is bracketed, as sshconfig.parse_destination expects.
        (colmena_node(targetHost="fd00::5", targetUser="root", targetPort=2222),
         "root@[fd00::5]:2222", ()),
        (colmena_node(targetHost="fd00::5"), "fd00::5", ()),
        # targetHost = null: no destination, but the name and tags are kept.
        (colmena_node(targetUser="root", targetPort=22, tags=["a", "b"]), None, ("a", "b")),
        ({"targetHost": "forge.lan"}, "forge.lan", ()),
    ],
)  # fmt: skip
def test_colmena_node_becomes_destination_and_tags(
    node: dict[str, Any], destination: str | None, tags: tuple[str, ...]
) -> None:
    expected = InventoryHost("forge", destination, tags)

    assert parse_inventory("colmena", {"forge": node}) == {"forge": expected}


@pytest.mark.parametrize(
    ("node", "destination"),
    [
        ({"hostname": "web.lan", "sshUser": "deploy"}, "deploy@web.lan"),
        ({"hostname": "web.lan", "sshUser": None}, "web.lan"),
        ({"hostname": "web.lan"}, "web.lan"),
        ({"hostname": None, "sshUser": "deploy"}, None),
    ],
)
def test_deploy_rs_node_becomes_user_at_hostname(
    node: dict[str, Any], destination: str | None
) -> None:
    assert parse_inventory("deploy-rs", {"web": node}) == {"web": InventoryHost("web", destination)}


def test_nixos_configurations_are_names_without_destination() -> None:
    assert parse_inventory("nixosConfigurations", ["forge", "web"]) == {
        "forge": InventoryHost("forge", None),
        "web": InventoryHost("web", None),
    }


def test_empty_inventories_have_no_hosts() -> None:
    assert parse_inventory("colmena", {}) == {}
    assert parse_inventory("deploy-rs", {}) == {}
    assert parse_inventory("nixosConfigurations", []) == {}


def test_invalid_host_names_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    data = ["forge", "-oProxyCommand=x", "has space", ".hidden", "web-1.lan_2"]

    with caplog.at_level(logging.WARNING, logger="deploy_guard.hosts.inventory"):
        hosts = parse_inventory("nixosConfigurations", data)

    assert list(hosts) == ["forge", "web-1.lan_2"]
    assert "'-oProxyCommand=x'" in caplog.text
    assert "'has space'" in caplog.text
    assert "'.hidden'" in caplog.text


@pytest.mark.parametrize(
    ("source", "data", "fragment"),
    [
        ("colmena", ["forge"], "expected an attribute set of nodes"),
        ("colmena", None, "expected an attribute set of nodes"),
        ("colmena", {"forge": None}, "colmenaHive.deploymentConfig.forge: expected an attr"),
        ("colmena", {"forge": colmena_node(targetHost=5)}, "forge.targetHost: expected a non"),
        ("colmena", {"forge": colmena_node(targetHost="")}, "forge.targetHost: expected a non"),
        ("colmena", {"forge": colmena_node(targetHost="a", targetPort="22")}, "targetPort"),
        ("colmena", {"forge": colmena_node(targetHost="a", targetPort=True)}, "targetPort"),
        ("colmena", {"forge": colmena_node(targetHost="a", targetPort=0)}, "targetPort"),
        ("colmena", {"forge": colmena_node(targetHost="a", tags="nas")}, "forge.tags"),
        ("colmena", {"forge": colmena_node(targetHost="a", tags=[1])}, "forge.tags"),
        ("colmena", {"forge": colmena_node(targetUser=["root"])}, "forge.targetUser"),
        ("deploy-rs", [], "deploy.nodes: expected an attribute set of nodes"),
        ("deploy-rs", {"web": "web.lan"}, "deploy.nodes.web: expected an attribute set"),
        ("deploy-rs", {"web": {"hostname": 1}}, "deploy.nodes.web.hostname"),
        ("deploy-rs", {"web": {"hostname": "w", "sshUser": 1}}, "deploy.nodes.web.sshUser"),
        ("nixosConfigurations", {"forge": {}}, "expected a list of names"),
        ("nixosConfigurations", ["forge", 1], "expected a list of names"),
    ],
)
def test_malformed_inventory_output_is_a_config_error(
    source: str, data: object, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_inventory(source, data)

    assert fragment in str(caught.value)
    assert f"inventory from {source}: unexpected output" in str(caught.value)
    assert caught.value.exit_code == ExitCode.CONFIG


def test_long_values_are_cut_in_error_messages() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_inventory("colmena", ["x" * 500])

    assert len(str(caught.value)) < 200


def test_unknown_source_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown source 'nixops'"):
        parse_inventory("nixops", {})
    with pytest.raises(ConfigError, match="unknown source 'nixops'"):
        nix_eval_argv("nixops", ".")


@pytest.mark.parametrize(
    ("source", "attribute"),
    [
        ("colmena", ".#colmenaHive.deploymentConfig"),
        ("deploy-rs", ".#deploy.nodes"),
        ("nixosConfigurations", ".#nixosConfigurations"),
    ],
)
def test_nix_eval_argv_is_a_list_with_flakes_enabled_and_an_apply(
    source: str, attribute: str
) -> None:
    argv = nix_eval_argv(source, ".", nix="/usr/bin/nix")

    assert argv[:2] == ["/usr/bin/nix", "eval"]
    assert "--json" in argv
    assert argv[argv.index("--extra-experimental-features") + 1] == "nix-command flakes"
    assert attribute in argv
    assert argv[-2] == "--apply"


# -- known_hosts ---------------------------------------------------------------------------


def config_with_hosts(hosts: dict[str, Any]) -> Config:
    return parse_config({"hosts": hosts})


def test_config_only_hosts_default_to_their_name() -> None:
    config = config_with_hosts({"forge": {}, "web": {"ssh": "root@web.lan", "tags": ["www"]}})

    assert known_hosts(config, {}) == {
        "forge": KnownHost("forge", "forge", ()),
        "web": KnownHost("web", "root@web.lan", ("www",)),
    }


def test_flake_hosts_without_destination_use_their_name() -> None:
    flake = {"forge": InventoryHost("forge", None, ("nas",))}

    assert known_hosts(config_with_hosts({}), flake) == {
        "forge": KnownHost("forge", "forge", ("nas",))
    }


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param({}, KnownHost("forge", "root@forge.lan:2222", ("nas",)), id="empty-entry"),
        pytest.param(
            {"ssh": "admin@10.0.0.5"},
            KnownHost("forge", "admin@10.0.0.5", ("nas",)),
            id="ssh-replaces-destination",
        ),
        pytest.param(
            {"tags": ["db", "prod"]},
            KnownHost("forge", "root@forge.lan:2222", ("db", "prod")),
            id="tags-replace-not-extend",
        ),
        pytest.param(
            {"tags": [], "become": "sudo"},
            KnownHost("forge", "root@forge.lan:2222", ("nas",)),
            id="empty-tags-keep-the-flake-tags",
        ),
    ],
)
def test_config_entry_overrides_the_flake_host_field_by_field(
    entry: dict[str, Any], expected: KnownHost
) -> None:
    flake = {"forge": InventoryHost("forge", "root@forge.lan:2222", ("nas",))}

    assert known_hosts(config_with_hosts({"forge": entry}), flake) == {"forge": expected}


def test_flake_hosts_come_first_then_config_only_hosts() -> None:
    flake = {"b": InventoryHost("b", None), "a": InventoryHost("a", None)}

    known = known_hosts(config_with_hosts({"c": {}, "a": {}}), flake)

    assert list(known) == ["b", "a", "c"]


# -- select_hosts --------------------------------------------------------------------------

KNOWN: dict[str, KnownHost] = {
    host.name: host
    for host in (
        KnownHost("web-2", "web-2", ("www",)),
        KnownHost("forge", "root@forge.lan", ("nas", "prod")),
        KnownHost("web-1", "web-1", ("www", "prod")),
        KnownHost("db", "db", ()),
    )
}


@pytest.mark.parametrize(
    ("expressions", "expected"),
    [
        (["forge"], ["forge"]),
        (["forge", "db"], ["forge", "db"]),
        (["unknown.example"], ["unknown.example"]),
        (["root@10.0.0.5:2222"], ["root@10.0.0.5:2222"]),
        (["root@[fd00::5]:2222"], ["root@[fd00::5]:2222"]),
        (["[fd00::5]:22"], ["[fd00::5]:22"]),
        (["local"], ["local"]),
        (["@www"], ["web-1", "web-2"]),
        (["@prod"], ["forge", "web-1"]),
        (["web-*"], ["web-1", "web-2"]),
        (["web-?"], ["web-1", "web-2"]),
        (["web-[2]"], ["web-2"]),
        (["*"], ["db", "forge", "web-1", "web-2"]),
        (["forge,db"], ["forge", "db"]),
        (["forge, @www ,local"], ["forge", "web-1", "web-2", "local"]),
        ([",forge,,", ""], ["forge"]),
        (["web-2", "@www"], ["web-2", "web-1"]),
        (["forge", "forge", "@nas"], ["forge"]),
        (["@prod", "web-*", "db"], ["forge", "web-1", "web-2", "db"]),
    ],
)
def test_select_hosts_expands_tags_and_globs_in_first_mention_order(
    expressions: list[str], expected: list[str]
) -> None:
    assert select_hosts(expressions, KNOWN) == expected


def test_all_selects_every_known_host_sorted_by_name() -> None:
    assert select_hosts([], KNOWN, all_hosts=True) == ["db", "forge", "web-1", "web-2"]


def test_glob_matching_is_case_sensitive() -> None:
    with pytest.raises(UsageError, match="no known host matches 'WEB-\\*'"):
        select_hosts(["WEB-*"], KNOWN)


@pytest.mark.parametrize(
    ("expressions", "all_hosts", "known", "fragments"),
    [
        ([], False, KNOWN, ["name at least one HOST", "--all"]),
        ([",", " "], False, KNOWN, ["name at least one HOST"]),
        (["@db"], False, KNOWN, ["'@db'", "known tags: @nas, @prod, @www"]),
        (["db-*"], False, KNOWN, ["'db-*'", "known hosts: db, forge, web-1, web-2"]),
        (["@x", "forge", "y*"], False, KNOWN, ["'@x'", "'y*'"]),
        (["@nas"], False, {}, ["'@nas'", "known tags: none"]),
        (["forge"], True, KNOWN, ["--all", "forge"]),
        ([], True, {}, ["--all", "no host is known"]),
    ],
)
def test_selection_problems_are_usage_errors(
    expressions: list[str],
    all_hosts: bool,
    known: dict[str, KnownHost],
    fragments: list[str],
) -> None:
    with pytest.raises(UsageError) as caught:
        select_hosts(expressions, known, all_hosts=all_hosts)

    for fragment in fragments:
        assert fragment in str(caught.value)
    assert caught.value.exit_code == ExitCode.CONFIG


def test_known_hosts_in_an_error_are_cut_after_twenty() -> None:
    many = {f"h{index:02}": KnownHost(f"h{index:02}", f"h{index:02}", ()) for index in range(25)}

    with pytest.raises(UsageError) as caught:
        select_hosts(["x*"], many)

    assert "h19 and 5 more" in str(caught.value)
    assert "h20" not in str(caught.value)
