# Flake check: nix/module.nix inside a real NixOS 25.11 system with the real backup modules
# and the sample host of ./sample-host.nix. Evaluation fails when the manifest differs from
# ./sample-host-manifest.json or when one of the module's assertions fails (a derived unit
# that the backup modules do not define: a unit name changed upstream). The build then
# validates the generated manifest with deploy-guard itself and checks that the generated
# polkit rules name every unit of it.
{
  pkgs,
  self,
  nixpkgs,
}:
let
  inherit (pkgs) lib;
  system = pkgs.stdenv.hostPlatform.system;
  host = nixpkgs.lib.nixosSystem {
    modules = [
      self.nixosModules.default
      ./sample-host.nix
      {
        nixpkgs.hostPlatform = system;
        boot.isContainer = true;
        system.stateVersion = "25.11";
      }
    ];
  };
  inherit (host) config;
  expected = lib.importJSON ./sample-host-manifest.json;
  guardFailures = lib.filter (message: lib.hasPrefix "services.deploy-guard" message) (
    map (assertion: assertion.message) (lib.filter (assertion: !assertion.assertion) config.assertions)
  );
  units = lib.concatMap (stage: stage.units) expected.stages;
in
assert lib.assertMsg (guardFailures == [ ]) (lib.concatStringsSep "\n" guardFailures);
assert lib.assertMsg (lib.hasInfix "/var/lib/deploy-guard/receipts/last-success.json" (
  config.system.preSwitchChecks.deploy-guard-fresh-backup or ""
)) "requireFreshBackup did not add its pre-switch check";
assert lib.assertMsg (config.services.deploy-guard.manifest == expected)
  "the manifest differs from sample-host-manifest.json: ${builtins.toJSON config.services.deploy-guard.manifest}";
pkgs.runCommand "deploy-guard-module-eval"
  {
    nativeBuildInputs = [ self.packages.${system}.default ];
    manifest = config.environment.etc."deploy-guard/manifest.json".source;
    polkitRules = config.environment.etc."polkit-1/rules.d/10-nixos.rules".source;
  }
  ''
    deploy-guard schema manifest --check "$manifest"
    for unit in ${lib.escapeShellArgs units}; do
      grep -qF "\"$unit\"" "$polkitRules" || { echo "polkit rules do not name $unit" >&2; exit 1; }
    done
    grep -qF 'var guardUser = "deploy-guard";' "$polkitRules"
    touch "$out"
  ''
