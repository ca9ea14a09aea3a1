# A guarded host's backup configuration, written against the real NixOS options of
# nixos-25.11. Evaluated twice: with the real NixOS modules (flake check `module-eval`) and
# with the small option stubs of ./eval-module.nix (tests/integration/test_nix.py).
# The expected manifest is ./sample-host-manifest.json.
{
  services.deploy-guard = {
    enable = true;
    authorizedKeys = [
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeployGuardSampleKeyForTestsOnly0000000000 test"
    ];
    stages.snapshots.extraUnits = [ "zfs-snapshot-daily.service" ];
    stages.applications.timeout = "2h";
    requireFreshBackup = {
      enable = true;
      maxAge = "6h";
    };
  };

  services.sanoid = {
    enable = true;
    datasets."tank/data" = { };
  };

  services.syncoid = {
    enable = true;
    commands."tank/data".target = "backup@nas:tank/data";
    # syncoid escapes its unit names: "/", "@", ":" and " " runs become "-".
    commands."pool/home@remote:back up" = {
      source = "pool/home";
      target = "backup@nas:pool/home";
    };
  };

  services.restic.backups = {
    home = {
      repository = "/var/lib/restic-repo";
      passwordFile = "/etc/restic/password";
      paths = [ "/home" ];
    };
    etc = {
      repository = "/var/lib/restic-repo";
      passwordFile = "/etc/restic/password";
      paths = [ "/etc" ];
    };
  };

  services.pgbackrest = {
    enable = true;
    stanzas.main.jobs = {
      full = {
        schedule = "Sun 03:00";
        type = "full";
      };
      diff = {
        schedule = "Mon..Sat 03:00";
        type = "diff";
      };
    };
  };

  services.borgbackup.jobs.docs = {
    paths = [ "/srv/docs" ];
    repo = "/var/lib/borg";
    # The default is "${config.networking.hostName}-docs"; spelled out so that the option
    # stubs of ./eval-module.nix derive the same proof (issue 16) as the real module.
    archiveBaseName = "forge-docs";
    encryption.mode = "none";
    startAt = "daily";
  };

  services.postgresqlBackup = {
    enable = true;
    databases = [
      "app"
      "wiki"
    ];
  };
}
