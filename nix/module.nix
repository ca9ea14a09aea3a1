# services.deploy-guard: the host side of deploy-guard (docs/nix.md).
#
# On each guarded host it
#   - writes /etc/deploy-guard/manifest.json: the exact backup units this configuration
#     defines, per stage, derived from the backup modules' own options;
#   - creates a guard user that may start, stop and kill exactly those units (polkit rule
#     rendered from ./polkit-rule.js.in, D-Bus policy from ./dbus-policy.conf.in) and read
#     the journal, and nothing else;
#   - optionally adds deploy-guard.service (`deploy-guard run local`) and a pre-switch check
#     that refuses a switch without a recent successful guard run.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.deploy-guard;
  inherit (lib) mkOption types;

  stateDirectory = "/var/lib/deploy-guard";
  receiptPath = "${stateDirectory}/receipts/last-success.json";
  # The backup kinds and the built-in stages, described once for the module and the CLI
  # (deploy_guard/kinds.toml, docs/architecture.md "Backup kinds").
  kindsTable = builtins.fromTOML (builtins.readFile ../deploy_guard/kinds.toml);
  stageOrder = map (stage: stage.name) kindsTable.stages;

  # syncoid names its units with its own escaping (nixpkgs
  # nixos/modules/services/backup/syncoid.nix, escapeUnitName): every run of characters
  # outside [a-zA-Z0-9_.\-] becomes a single "-". Same regex, same builtins, same result.
  escapeSyncoidName =
    name:
    lib.concatMapStrings (part: if builtins.isList part then "-" else part) (
      builtins.split "[^a-zA-Z0-9_.\\-]+" name
    );

  # `or` keeps the module usable with a nixpkgs that lacks one of these modules (e.g.
  # services.pgbackrest before 25.05) and with the option stubs of nix/tests/eval-module.nix.
  services = config.services;
  isEnabled = service: service.enable or false;
  names = attrs: lib.attrNames attrs;

  postgresqlBackupUnits =
    let
      pgBackup = services.postgresqlBackup or { };
      databases = pgBackup.databases or [ ];
    in
    if !(isEnabled pgBackup) then
      [ ]
    # backupAll defaults to `databases == [ ]`: one unit for pg_dumpall.
    else if pgBackup.backupAll or (databases == [ ]) then
      [ "postgresqlBackup.service" ]
    else
      map (database: "postgresqlBackup-${database}.service") databases;

  pgbackrestUnits = lib.optionals (isEnabled (services.pgbackrest or { })) (
    lib.concatLists (
      lib.mapAttrsToList (
        stanza: stanzaConfig:
        map (job: "pgbackrest-${stanza}-${job}.service") (names (stanzaConfig.jobs or { }))
      ) (services.pgbackrest.stanzas or { })
    )
  );

  # The units of one [[kinds]] row of kinds.toml: `derive` says how (the table's header).
  optionAt = path: lib.attrByPath (lib.splitString "." path) { } config;
  escapes = {
    syncoid = escapeSyncoidName;
  };
  customUnits = {
    pgbackrest = pgbackrestUnits;
    postgresqlBackup = postgresqlBackupUnits;
  };
  kindUnits =
    kind:
    let
      nixos = kind.nixos;
      escape = escapes.${nixos.escape or ""} or (name: name);
      unitFor = name: builtins.replaceStrings [ "{name}" ] [ (escape name) ] nixos.unit;
    in
    if nixos.derive == "enabled" then
      lib.optional (isEnabled (optionAt nixos.option)) nixos.unit
    else if nixos.derive == "names" then
      lib.optionals (nixos ? enable -> isEnabled (optionAt nixos.enable)) (
        map unitFor (names (optionAt nixos.option))
      )
    else
      customUnits.${nixos.derive};

  # The units each backup module defines, by the stage that runs them (FIELD-NOTES table).
  derivedUnits = lib.genAttrs stageOrder (
    stage: lib.concatMap kindUnits (lib.filter (kind: kind.stage == stage) kindsTable.kinds)
  );

  stageUnits =
    name:
    let
      stage = cfg.stages.${name};
    in
    lib.filter (unit: !(lib.elem unit stage.excludeUnits)) (
      lib.unique (derivedUnits.${name} ++ stage.extraUnits)
    );

  # Stage 4, verification (issue 16): for each derived backup unit, a oneshot
  # deploy-guard-proof@UNIT.service that lists the backup tool's own records as the backup's
  # user, with the backup unit's environment, and logs one JSON record
  # ({"deploy_guard_proof": 1, "unit", "kind", "invocation", "exit_status", "stdout",
  # "stderr"}). deploy-guard starts it after the backup succeeded and judges the answer
  # (deploy_guard/artifact/KIND.py); each check below is the `argv` of that file.
  backupService = unit: config.systemd.services.${lib.removeSuffix ".service" unit} or { };
  proofUnitName = unit: "deploy-guard-proof@${lib.removeSuffix ".service" unit}.service";
  packageOr = attrs: name: if attrs ? package then attrs.package else pkgs.${name};
  zfsPackage = config.boot.zfs.package or pkgs.zfs;
  zfsList = "${zfsPackage}/bin/zfs list -Hp -t snapshot -o name,creation";
  backupTypes = [ "full" "diff" "incr" ];

  resticProofs = lib.mapAttrsToList (name: backup: {
    unit = "restic-backups-${name}.service";
    kind = "restic";
    params = lib.optionalAttrs ((backup.paths or null) != null && backup.paths != [ ]) {
      paths = backup.paths;
    };
    check = ''exec ${packageOr backup "restic"}/bin/restic --no-cache snapshots --json --latest 1 --host "$(uname -n)"'';
  }) (services.restic.backups or { });

  borgProofs = lib.mapAttrsToList (
    name: job:
    let
      base = job.archiveBaseName or null;
      glob = lib.optionalString (base != null) "${base}-*";
    in
    {
      unit = "borgbackup-job-${name}.service";
      kind = "borg";
      params = lib.optionalAttrs (base != null) { inherit glob; };
      check =
        "date +%z; exec ${packageOr job "borgbackup"}/bin/borg list --last 1 --json"
        + lib.optionalString (base != null) " --glob-archives ${lib.escapeShellArg glob}";
    }
  ) (services.borgbackup.jobs or { });

  pgbackrestProofs = lib.optionals (isEnabled (services.pgbackrest or { })) (
    lib.concatLists (
      lib.mapAttrsToList (
        stanza: stanzaConfig:
        lib.mapAttrsToList (job: jobConfig: {
          unit = "pgbackrest-${stanza}-${job}.service";
          kind = "pgbackrest";
          params = {
            inherit stanza;
          }
          // lib.optionalAttrs (lib.elem (jobConfig.type or job) backupTypes) {
            type = jobConfig.type or job;
          };
          check = "exec ${packageOr services.pgbackrest "pgbackrest"}/bin/pgbackrest info --output=json --stanza=${lib.escapeShellArg stanza}";
        }) (stanzaConfig.jobs or { })
      ) (services.pgbackrest.stanzas or { })
    )
  );

  # deploy_guard/artifact/dump.py: `stat` every file the globs match (IFS empty: no splitting).
  dumpCheck =
    files:
    ''IFS=; for pattern in ${lib.escapeShellArgs files}; do for file in $pattern; do [ -e "$file" ] && stat -L -c "%s %Y %n" -- "$file"; done; done; exit 0'';
  dumpProof = unit: files: {
    inherit unit;
    kind = "dump";
    params = { inherit files; };
    check = dumpCheck files;
  };
  postgresqlBackupLocation = services.postgresqlBackup.location or "/var/backup/postgresql";
  mysqlBackup = services.mysqlBackup or { };
  dumpProofs =
    map (
      unit:
      let
        database = lib.removePrefix "-" (lib.removePrefix "postgresqlBackup" (lib.removeSuffix ".service" unit));
      in
      dumpProof unit [ "${postgresqlBackupLocation}/${if database == "" then "all" else database}.sql*" ]
    ) postgresqlBackupUnits
    ++ lib.optional (isEnabled mysqlBackup) (
      dumpProof "mysql-backup.service" (
        let
          location = mysqlBackup.location or "/var/backup/mysql";
          databases = mysqlBackup.databases or [ ];
        in
        if databases == [ ] then [ "${location}/*" ] else map (db: "${location}/${db}.*") databases
      )
    );

  # sanoid: each dataset's most frequent period, after its templates and sanoid's defaults
  # (sanoid.defaults.conf: hourly 48, daily 90, monthly 6, frequent_period 15 minutes).
  sanoidDefaults = {
    frequently = 0;
    hourly = 48;
    daily = 90;
    weekly = 0;
    monthly = 6;
    yearly = 0;
    frequent_period = 15;
    autosnap = true;
  };
  sanoidPeriods = [
    { name = "hourly"; seconds = 3600; }
    { name = "daily"; seconds = 86400; }
    { name = "weekly"; seconds = 604800; }
    { name = "monthly"; seconds = 2678400; }
    { name = "yearly"; seconds = 31622400; }
  ];
  sanoidValues =
    dataset:
    let
      clean = attrs: lib.filterAttrs (_: value: value != null) ((attrs.settings or { }) // attrs);
      templates = map (name: (services.sanoid.templates or { }).${name} or { }) (
        dataset.useTemplate or [ ]
      );
    in
    lib.foldl' (values: layer: values // clean layer) sanoidDefaults (templates ++ [ dataset ]);
  sanoidPeriod =
    values:
    let
      count = name: lib.toInt (toString (values.${name} or 0));
      periodic = lib.filter (period: count period.name > 0) sanoidPeriods;
    in
    if values.autosnap == false || values.autosnap == "no" then
      null
    else if count "frequently" > 0 then
      lib.toInt (toString values.frequent_period) * 60
    else if periodic != [ ] then
      (lib.head periodic).seconds
    else
      null;
  sanoidDatasets = lib.filterAttrs (_: period: period != null) (
    lib.mapAttrs (_: dataset: sanoidPeriod (sanoidValues dataset)) (services.sanoid.datasets or { })
  );
  sanoidProofs = lib.optional (isEnabled (services.sanoid or { })) {
    unit = "sanoid.service";
    kind = "sanoid";
    params.datasets = sanoidDatasets;
    zfs = true;
    check = ''date +%s; echo "--- zfs"; exec ${zfsList} -d 1 -- ${lib.escapeShellArgs (lib.attrNames sanoidDatasets)}'';
  };

  syncoidProofs = lib.optionals (isEnabled (services.syncoid or { })) (
    lib.mapAttrsToList (
      name: command:
      let
        source = command.source or name;
        args = lib.optionals (command.useCommonArgs or true) (services.syncoid.commonArgs or [ ]) ++ (command.extraArgs or [ ]);
      in
      {
        unit = "syncoid-${escapeSyncoidName name}.service";
        kind = "syncoid";
        params = {
          inherit source;
          no_sync_snap = lib.elem "--no-sync-snap" args;
        };
        zfs = true;
        check = "exec ${zfsList} -d 1 -- ${lib.escapeShellArg source}";
      }
    ) (services.syncoid.commands or { })
  );

  proofSpecs = lib.filter (spec: lib.elem spec.unit inventory) (
    resticProofs ++ borgProofs ++ pgbackrestProofs ++ dumpProofs ++ sanoidProofs ++ syncoidProofs
  );

  proofService =
    spec:
    let
      backup = backupService spec.unit;
      backupConfig = backup.serviceConfig or { };
    in
    {
      description = "deploy-guard: prove that ${spec.unit} left its backup";
      # Only deploy-guard starts it, never a switch.
      restartIfChanged = false;
      environment = backup.environment or { };
      path = [ pkgs.coreutils ];
      script = ''
        out=$(mktemp) err=$(mktemp)
        status=0
        ( ${spec.check} ) >"$out" 2>"$err" || status=$?
        ${jq} -cn --arg unit ${lib.escapeShellArg spec.unit} --arg kind ${spec.kind} \
          --arg invocation "$INVOCATION_ID" --argjson exit_status "$status" \
          --rawfile stdout "$out" --rawfile stderr "$err" \
          '{deploy_guard_proof: 1, unit: $unit, kind: $kind, invocation: $invocation,
            exit_status: $exit_status, stdout: $stdout, stderr: $stderr}'
        rm -f "$out" "$err"
      '';
      serviceConfig = {
        Type = "oneshot";
        PrivateTmp = true;
      }
      # zfs list needs no privilege; the other checks need the backup's own credentials.
      // (
        if spec.zfs or false then
          { DynamicUser = true; }
        else
          lib.filterAttrs (name: _: lib.elem name [ "User" "Group" "EnvironmentFile" ]) backupConfig
      );
    };

  manifest = {
    schema_version = 1;
    stages = map (name: {
      inherit name;
      units = stageUnits name;
      inherit (cfg.stages.${name}) timeout;
      allow_empty = cfg.stages.${name}.allowEmpty;
    }) stageOrder;
    proofs = map (spec: {
      inherit (spec) unit kind params;
      proof_unit = proofUnitName spec.unit;
    }) proofSpecs;
  };

  inventory = lib.concatMap (stage: stageUnits stage) stageOrder;

  # The guard user may start the backups and their proof units, nothing else.
  grantedUnits = inventory ++ map (spec: proofUnitName spec.unit) proofSpecs;

  polkitRule =
    builtins.replaceStrings
      [ "@user@" "@units@" ]
      [ (builtins.toJSON cfg.user) (builtins.toJSON grantedUnits) ]
      (builtins.readFile ./polkit-rule.js.in);

  # systemd's bus policy does not let unprivileged users send EnqueueUnitJob (`systemctl
  # start --show-transaction`); this lets the guard user's message reach systemd, which then
  # asks polkit like for StartUnit. Nothing else changes.
  dbusPolicy = pkgs.writeTextDir "share/dbus-1/system.d/deploy-guard.conf" (
    builtins.replaceStrings [ "@user@" ] [ cfg.user ] (builtins.readFile ./dbus-policy.conf.in)
  );

  # deploy_guard.units.is_valid_unit_name, in POSIX ERE (a backslash is literal in brackets).
  isUnitName =
    unit:
    builtins.match "[A-Za-z0-9:_.\\@-]{1,247}\\.service" unit != null
    && !(lib.hasPrefix "-" unit)
    && !(lib.hasSuffix "@.service" unit);

  # "1h30m" -> 5400; the same spelling as deploy-guard's durations, whole units only.
  durationPattern = "([0-9]+(\\.[0-9]+)?(ms|s|m|h|d))+";
  wholeDurationPattern = "([0-9]+(s|m|h|d))+";
  durationSeconds =
    text:
    let
      factor = {
        s = 1;
        m = 60;
        h = 3600;
        d = 86400;
      };
      parts = builtins.filter builtins.isList (builtins.split "([0-9]+)(s|m|h|d)" text);
    in
    lib.foldl' (total: part: total + lib.toInt (lib.head part) * factor.${lib.last part}) 0 parts;

  jq = lib.getExe pkgs.jq;
  date = "${pkgs.coreutils}/bin/date";
  freshCheck = ''
    receipt=${lib.escapeShellArg receiptPath}
    max_age=${toString (durationSeconds cfg.requireFreshBackup.maxAge)}
    advice="run 'deploy-guard run' (or 'deploy-guard apply') against this host first, or set NIXOS_NO_CHECK=1 to skip every pre-switch check"
    if [ ! -r "$receipt" ]; then
      echo "deploy-guard: no successful guard run is recorded on this host ($receipt is missing): $advice" >&2
      exit 1
    fi
    # "finished_at" (ISO 8601 UTC), else "finished_at_epoch" (seconds), as the CLI writes them.
    if ! finished_at=$(${jq} -er '.finished_at | strings' "$receipt" 2>/dev/null) ||
      ! finished=$(${date} -u -d "$finished_at" +%s 2>/dev/null); then
      if ! finished=$(${jq} -er '.finished_at_epoch | numbers | floor' "$receipt" 2>/dev/null); then
        echo "deploy-guard: $receipt has no readable \"finished_at\" time: $advice" >&2
        exit 1
      fi
      finished_at="@$finished"
    fi
    run_id=$(${jq} -r '.run_id // "unknown"' "$receipt" 2>/dev/null || echo unknown)
    now=$(${date} -u +%s)
    age=$((now - finished))
    if [ "$age" -lt -300 ]; then
      echo "deploy-guard: the last guard run ($run_id) finished in the future ($finished_at): is the clock wrong? $advice" >&2
      exit 1
    fi
    if [ "$age" -gt "$max_age" ]; then
      echo "deploy-guard: the last successful guard run ($run_id) finished $age s ago ($finished_at), more than ${cfg.requireFreshBackup.maxAge}: $advice" >&2
      exit 1
    fi
    echo "deploy-guard: last successful guard run $run_id finished $age s ago" >&2
  '';

  stageOptions = name: {
    extraUnits = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "zfs-snapshot-daily.service" ];
      description = "Units added to the ${name} stage besides those derived from the backup modules.";
    };
    excludeUnits = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "restic-backups-scratch.service" ];
      description = "Derived units left out of the ${name} stage (and so out of the polkit rule).";
    };
    timeout = mkOption {
      type = types.nullOr (types.strMatching durationPattern);
      default = null;
      example = "45m";
      description = ''
        Deadline of each unit of the ${name} stage, counted from its start (`90s`, `5m`,
        `1h30m`). `null` leaves it to the workstation's deploy-guard configuration.
      '';
    };
    allowEmpty = mkOption {
      type = types.bool;
      default = false;
      description = ''
        This host has no backup of the ${name} kind, on purpose: an empty ${name} stage is then
        not a failure even when the workstation's configuration makes the stage critical.
      '';
    };
  };
in
{
  options.services.deploy-guard = {
    enable = lib.mkEnableOption "the host side of deploy-guard: backup manifest and guard user";

    package = mkOption {
      type = types.package;
      default = pkgs.deploy-guard or (pkgs.callPackage ./package.nix { });
      defaultText = lib.literalExpression "pkgs.deploy-guard or (pkgs.callPackage ./package.nix { })";
      description = "The deploy-guard package, for `onHost` (the workstation needs its own).";
    };

    user = mkOption {
      # useradd's NAME_REGEX: also keeps the name safe inside the polkit rule and D-Bus XML.
      type = types.strMatching "[a-z_][a-z0-9_-]*";
      default = "deploy-guard";
      description = ''
        The account deploy-guard logs in as over SSH. It may start, stop and kill the units
        of the manifest (polkit) and read the journal (`systemd-journal` group), nothing else.
      '';
    };

    group = mkOption {
      type = types.str;
      default = "deploy-guard";
      description = "Primary group of the guard user.";
    };

    authorizedKeys = mkOption {
      type = types.listOf types.singleLineStr;
      default = [ ];
      example = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... deploy@workstation" ];
      description = "SSH public keys allowed to log in as the guard user.";
    };

    stages = lib.genAttrs stageOrder stageOptions;

    onHost = {
      enable = lib.mkEnableOption "deploy-guard.service, running `deploy-guard run local` as the guard user";
      extraArgs = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [
          "--max-age"
          "30m"
        ];
        description = "Arguments appended to `deploy-guard run local`.";
      };
    };

    requireFreshBackup = {
      enable = lib.mkEnableOption ''
        a pre-switch check (`system.preSwitchChecks`) that refuses to switch to a new
        configuration unless ${receiptPath} records a successful guard run younger than
        `maxAge`. `NIXOS_NO_CHECK=1` skips it, like every pre-switch check'';
      maxAge = mkOption {
        type = types.strMatching wholeDurationPattern;
        default = "1h";
        example = "6h";
        description = "Oldest acceptable successful guard run (`30m`, `6h`, `1d`).";
      };
    };

    metrics.textfileDir = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/var/lib/prometheus-node-exporter-text-files";
      description = ''
        node_exporter's textfile directory, where deploy-guard writes `deploy_guard.prom` after
        each run (`[metrics] textfile_dir` on the workstation must name the same directory).
        The guard user gets write access to it through an ACL; nothing else changes there.
      '';
    };

    manifest = mkOption {
      type = types.attrs;
      readOnly = true;
      internal = true;
      default = manifest;
      description = "The manifest written to /etc/deploy-guard/manifest.json (for tests).";
    };

    polkitRule = mkOption {
      type = types.str;
      readOnly = true;
      internal = true;
      default = polkitRule;
      description = "The polkit rule added to security.polkit.extraConfig (for tests).";
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        assertions =
          let
            derived = lib.concatLists (lib.attrValues derivedUnits);
            missing = lib.filter (
              unit: !(config.systemd.services.${lib.removeSuffix ".service" unit}.enable or false)
            ) derived;
            invalid = lib.filter (unit: !(isUnitName unit)) inventory;
            repeated = lib.unique (lib.filter (unit: lib.count (u: u == unit) inventory > 1) inventory);
          in
          [
            {
              assertion = cfg.user != "root";
              message = "services.deploy-guard.user must not be root: the point is a least-privilege account.";
            }
            {
              assertion = missing == [ ];
              message = "services.deploy-guard: the manifest names units this configuration does not define (a backup module changed its unit names?): ${toString missing}";
            }
            {
              assertion = invalid == [ ];
              message = "services.deploy-guard: not startable service unit names: ${toString invalid}";
            }
            {
              assertion = repeated == [ ];
              message = "services.deploy-guard: units listed in more than one stage: ${toString repeated}";
            }
          ];

        environment.etc."deploy-guard/manifest.json".text = builtins.toJSON manifest;

        systemd.services = lib.listToAttrs (
          map (spec: {
            name = lib.removeSuffix ".service" (proofUnitName spec.unit);
            value = proofService spec;
          }) proofSpecs
        );

        users.users.${cfg.user} = {
          isSystemUser = true;
          group = cfg.group;
          extraGroups = [ "systemd-journal" ];
          description = "deploy-guard: runs this host's backups before deploys";
          home = stateDirectory;
          # deploy-guard runs `systemctl`, `journalctl` and `cat` through SSH: a real shell.
          useDefaultShell = true;
          openssh.authorizedKeys.keys = cfg.authorizedKeys;
        };
        users.groups.${cfg.group} = { };

        systemd.tmpfiles.rules = [
          "d ${stateDirectory} 0750 ${cfg.user} ${cfg.group} - -"
          "d ${stateDirectory}/receipts 0750 ${cfg.user} ${cfg.group} - -"
        ]
        ++ lib.optionals (cfg.metrics.textfileDir != null) [
          "d ${cfg.metrics.textfileDir} 0755 root root - -"
          "a+ ${cfg.metrics.textfileDir} - - - - u:${cfg.user}:rwx"
        ];

        security.polkit.enable = true;
        security.polkit.extraConfig = polkitRule;
        services.dbus.packages = [ dbusPolicy ];
      }

      (lib.mkIf cfg.onHost.enable {
        systemd.services.deploy-guard = {
          description = "deploy-guard: run every backup of this host now and prove each succeeded";
          # Never as a side effect of a switch: only `systemctl start deploy-guard`.
          restartIfChanged = false;
          path = [
            config.systemd.package
            pkgs.coreutils
          ];
          environment = {
            HOME = stateDirectory;
            # Reports land in /var/lib/deploy-guard/runs (XDG_STATE_HOME/deploy-guard/runs).
            XDG_STATE_HOME = "/var/lib";
          };
          serviceConfig = {
            Type = "oneshot";
            User = cfg.user;
            Group = cfg.group;
            ExecStart = lib.escapeShellArgs (
              [
                (lib.getExe cfg.package)
                "run"
                "local"
              ]
              ++ cfg.onHost.extraArgs
            );
          };
        };
      })

      (lib.mkIf cfg.requireFreshBackup.enable {
        system.preSwitchChecks.deploy-guard-fresh-backup = freshCheck;
      })
    ]
  );
}
