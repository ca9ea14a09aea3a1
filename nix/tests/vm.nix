# Flake check `vm` (pkgs.testers.runNixOSTest): a workstation runs deploy-guard over SSH, as
# the module's least-privilege guard user, against a host with the module, a real restic
# backup and stand-ins for sanoid and syncoid (same unit names and types; no ZFS in a VM).
{ self }:
{ config, ... }:
let
  # nixpkgs' well-known test key pair: this VM test only.
  sshKeys = pkgs: import "${pkgs.path}/nixos/tests/ssh-keys.nix" pkgs;
in
{
  name = "deploy-guard";

  nodes.guarded =
    { pkgs, ... }:
    {
      imports = [ self.nixosModules.default ];

      services.openssh.enable = true;

      services.deploy-guard = {
        enable = true;
        authorizedKeys = [ (sshKeys pkgs).snakeOilPublicKey ];
        # The stand-ins below are not derived from services.sanoid/syncoid: list them.
        stages.snapshots.extraUnits = [ "sanoid.service" ];
        stages.replication.extraUnits = [ "syncoid-tank-data.service" ];
        onHost.enable = true;
        requireFreshBackup.enable = true;
      };

      # Derived by the module: restic-backups-home.service, a real restic backup.
      services.restic.backups.home = {
        repository = "/var/lib/restic-repo";
        passwordFile = "${pkgs.writeText "restic-password" "deploy-guard-vm-test"}";
        paths = [ "/etc/os-release" ];
        initialize = true;
      };

      # Stand-ins: NixOS runs sanoid and syncoid as Type=simple units.
      systemd.services.sanoid = {
        serviceConfig.Type = "simple";
        script = "sleep 1; echo 'snapshot taken (stand-in)'";
      };
      systemd.services.syncoid-tank-data = {
        serviceConfig.Type = "simple";
        script = "sleep 2; echo 'replicated (stand-in)'";
      };
      # Not in the inventory: the guard user must not be able to start it.
      systemd.services.not-a-backup = {
        serviceConfig.Type = "oneshot";
        script = "true";
      };
    };

  nodes.workstation =
    { pkgs, ... }:
    {
      environment.systemPackages = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
    };

  testScript =
    let
      privateKey = (sshKeys config.hostPkgs).snakeOilPrivateKey;
    in
    ''
      import json
      import shlex

      start_all()
      guarded.wait_for_unit("multi-user.target")
      guarded.wait_for_unit("sshd.service")
      workstation.wait_for_unit("multi-user.target")

      with subtest("the manifest lists the host's own backup units"):
          manifest = json.loads(guarded.succeed("cat /etc/deploy-guard/manifest.json"))
          units = {stage["name"]: stage["units"] for stage in manifest["stages"]}
          assert units == {
              "snapshots": ["sanoid.service"],
              "replication": ["syncoid-tank-data.service"],
              "applications": ["restic-backups-home.service"],
          }, units
          workstation.succeed(
              f"echo {shlex.quote(json.dumps(manifest))} > /tmp/manifest.json",
              "deploy-guard schema manifest --check /tmp/manifest.json",
          )

      with subtest("requireFreshBackup refuses a switch without a recent guard receipt"):
          guarded.fail("/run/current-system/bin/switch-to-configuration test")
          guarded.succeed("NIXOS_NO_CHECK=1 /run/current-system/bin/switch-to-configuration test")
          guarded.succeed(
              "printf '{\"run_id\": \"vm\", \"finished_at\": \"%s\"}' \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\""
              " > /var/lib/deploy-guard/receipts/last-success.json"
          )
          guarded.succeed("/run/current-system/bin/switch-to-configuration test")
          guarded.succeed("rm /var/lib/deploy-guard/receipts/last-success.json")

      workstation.succeed(
          "mkdir -p -m 700 /root/.ssh",
          "install -m 600 ${privateKey} /root/.ssh/id_ecdsa",
          "printf 'Host guarded\\n  User deploy-guard\\n  IdentityFile /root/.ssh/id_ecdsa\\n"
          "  IdentitiesOnly yes\\n' > /root/.ssh/config",
          "ssh-keyscan -t ed25519 guarded > /root/.ssh/known_hosts",
      )

      with subtest("the guard user may start, stop and kill the inventory units, nothing else"):
          workstation.succeed("ssh guarded id -un | grep -x deploy-guard")
          workstation.succeed("ssh guarded systemctl --no-ask-password start restic-backups-home.service")
          workstation.fail("ssh guarded systemctl --no-ask-password stop sshd.service")
          workstation.fail("ssh guarded systemctl --no-ask-password start not-a-backup.service")
          workstation.fail("ssh guarded systemctl --no-ask-password restart restic-backups-home.service")
          guarded.succeed("systemctl is-active sshd.service")
          workstation.succeed("ssh guarded journalctl -q -n 1 -u restic-backups-home.service")

      with subtest("a full guard over SSH as the guard user succeeds"):
          workstation.succeed("deploy-guard run guarded --json > /tmp/report.json")
          report = json.loads(workstation.succeed("cat /tmp/report.json"))
          outcomes = {
              unit["unit"]: unit["outcome"]
              for entry in report["hosts"]
              for stage in entry["stages"]
              for unit in stage["units"]
          }
          assert report["exit_code"] == 0, report
          assert outcomes == {
              "sanoid.service": "succeeded",
              "syncoid-tank-data.service": "succeeded",
              "restic-backups-home.service": "succeeded",
          }, outcomes

      with subtest("deploy-guard.service guards the host from the host itself"):
          guarded.succeed("systemctl start deploy-guard.service")
          guarded.succeed("ls /var/lib/deploy-guard/runs/*.json")
    '';
}
