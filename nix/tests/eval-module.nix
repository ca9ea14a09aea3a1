# Evaluates nix/module.nix with lib.evalModules against a real nixpkgs `lib`, without the
# rest of nixpkgs: small stubs declare the NixOS options the module sets or reads, and the
# backup modules' stubs define their systemd units under the same names as nixpkgs 25.11
# (nixos/modules/services/backup/*.nix). Used by tests/integration/test_nix.py:
#
#   nix-instantiate --eval --strict --json nix/tests/eval-module.nix \
#     --argstr libPath "$NIXPKGS_LIB" --arg hostConfig 'import nix/tests/sample-host.nix'
{
  libPath,
  hostConfig ? ./sample-host.nix,
}:
let
  lib = import libPath;
  inherit (lib) mkOption types;

  # Just enough of a package for lib.getExe, string interpolation and types.package.
  stubPackage = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    meta.mainProgram = name;
  };
  pkgs = {
    jq = stubPackage "jq";
    coreutils = stubPackage "coreutils";
    deploy-guard = stubPackage "deploy-guard";
    restic = stubPackage "restic";
    borgbackup = stubPackage "borgbackup";
    pgbackrest = stubPackage "pgbackrest";
    zfs = stubPackage "zfs";
    writeTextDir = path: text: stubPackage (baseNameOf path) // { inherit path text; };
  };

  anything = mkOption {
    type = types.anything;
    default = { };
  };
  freeform = types.submodule { freeformType = types.attrsOf types.anything; };
  # A `NAME = { ... }` attribute set of free-form submodules (the shape of most backup jobs).
  named = mkOption {
    type = types.attrsOf freeform;
    default = { };
  };
  enable = lib.mkEnableOption "this service";

  # nixos/modules/services/backup/syncoid.nix, escapeUnitName: what the stub imitates.
  syncoidEscape =
    name:
    lib.concatMapStrings (part: if builtins.isList part then "-" else part) (
      builtins.split "[^a-zA-Z0-9_.\\-]+" name
    );
  unitsOf = names: lib.genAttrs names (_: { });

  nixosStubs =
    { config, ... }:
    {
      options = {
        assertions = mkOption {
          type = types.listOf types.unspecified;
          default = [ ];
        };
        environment.etc = mkOption {
          type = types.attrsOf (
            types.submodule {
              options.text = mkOption {
                type = types.nullOr types.lines;
                default = null;
              };
            }
          );
          default = { };
        };
        users.users = mkOption {
          type = types.attrsOf types.anything;
          default = { };
        };
        users.groups = mkOption {
          type = types.attrsOf types.anything;
          default = { };
        };
        security.polkit.enable = enable;
        security.polkit.extraConfig = mkOption {
          type = types.lines;
          default = "";
        };
        services.dbus.packages = mkOption {
          type = types.listOf types.anything;
          default = [ ];
        };
        systemd.package = mkOption {
          type = types.anything;
          default = stubPackage "systemd";
        };
        systemd.services = mkOption {
          type = types.attrsOf (
            types.submodule {
              freeformType = types.attrsOf types.anything;
              options.enable = mkOption {
                type = types.bool;
                default = true;
              };
            }
          );
          default = { };
        };
        systemd.tmpfiles.rules = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        system.preSwitchChecks = mkOption {
          type = types.attrsOf types.str;
          default = { };
        };

        services.sanoid = {
          inherit enable;
          datasets = named;
          templates = named;
        };
        services.syncoid = {
          inherit enable;
          commands = named;
          commonArgs = mkOption {
            type = types.listOf types.str;
            default = [ ];
          };
        };
        services.restic.backups = named;
        services.pgbackrest = {
          inherit enable;
          stanzas = mkOption {
            type = types.attrsOf (
              types.submodule {
                freeformType = types.attrsOf types.anything;
                options.jobs = named;
              }
            );
            default = { };
          };
        };
        services.borgbackup.jobs = named;
        services.postgresqlBackup = {
          inherit enable;
          databases = mkOption {
            type = types.listOf types.str;
            default = [ ];
          };
          backupAll = mkOption {
            type = types.bool;
            default = config.services.postgresqlBackup.databases == [ ];
          };
        };
        services.mysqlBackup = {
          inherit enable;
          databases = mkOption {
            type = types.listOf types.str;
            default = [ ];
          };
        };
        services.btrbk.instances = named;
        stub = anything;
      };

      # The units the real modules define, by the names nixpkgs gives them.
      config.systemd.services =
        let
          services = config.services;
        in
        lib.mkMerge [
          (lib.mkIf services.sanoid.enable (unitsOf [ "sanoid" ]))
          (lib.mkIf services.syncoid.enable (
            unitsOf (map (name: "syncoid-${syncoidEscape name}") (lib.attrNames services.syncoid.commands))
          ))
          (unitsOf (map (name: "restic-backups-${name}") (lib.attrNames services.restic.backups)))
          (lib.mkIf services.pgbackrest.enable (
            unitsOf (
              lib.concatLists (
                lib.mapAttrsToList (
                  stanza: stanzaConfig: map (job: "pgbackrest-${stanza}-${job}") (lib.attrNames stanzaConfig.jobs)
                ) services.pgbackrest.stanzas
              )
            )
          ))
          (unitsOf (map (name: "borgbackup-job-${name}") (lib.attrNames services.borgbackup.jobs)))
          (lib.mkIf services.postgresqlBackup.enable (
            unitsOf (
              if services.postgresqlBackup.backupAll then
                [ "postgresqlBackup" ]
              else
                map (database: "postgresqlBackup-${database}") services.postgresqlBackup.databases
            )
          ))
          (lib.mkIf services.mysqlBackup.enable (unitsOf [ "mysql-backup" ]))
          (unitsOf (map (name: "btrbk-${name}") (lib.attrNames services.btrbk.instances)))
        ];
    };

  evaluated = lib.evalModules {
    modules = [
      { _module.args.pkgs = pkgs; }
      nixosStubs
      ../module.nix
      hostConfig
    ];
  };
  config = evaluated.config;
  guard = config.services.deploy-guard;
in
{
  inherit (guard) manifest polkitRule;
  manifestText = config.environment.etc."deploy-guard/manifest.json".text or null;
  failedAssertions = map (assertion: assertion.message) (
    lib.filter (assertion: !assertion.assertion) config.assertions
  );
  user = config.users.users.${guard.user} or null;
  groups = lib.attrNames config.users.groups;
  polkitEnabled = config.security.polkit.enable;
  polkitConfig = config.security.polkit.extraConfig;
  dbusPolicies = map (package: { inherit (package) path text; }) config.services.dbus.packages;
  tmpfiles = config.systemd.tmpfiles.rules;
  preSwitchChecks = config.system.preSwitchChecks;
  guardService = config.systemd.services.deploy-guard or null;
  # Stage 4: the proof units the module defines (issue 16).
  proofServices = lib.filterAttrs (name: _: lib.hasPrefix "deploy-guard-proof@" name) (
    config.systemd.services
  );
}
