{
  description = "deploy-guard: run every backup on NixOS hosts, prove each one succeeded, then deploy";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      # Hosts (the NixOS module, the VM test) are Linux; the CLI also runs on a Mac.
      linuxSystems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      allSystems = linuxSystems ++ [
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forSystems = systems: f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
    in
    {
      overlays.default = final: _prev: {
        deploy-guard = final.callPackage ./nix/package.nix { };
      };

      packages = forSystems allSystems (
        _system: pkgs: rec {
          deploy-guard = pkgs.callPackage ./nix/package.nix { };
          default = deploy-guard;
        }
      );

      apps = forSystems allSystems (
        system: _pkgs: {
          default = {
            type = "app";
            program = lib.getExe self.packages.${system}.default;
            meta.description = "Run every backup on NixOS hosts, prove each one succeeded, then deploy";
          };
        }
      );

      devShells = forSystems allSystems (
        system: pkgs: {
          default = pkgs.mkShell {
            # Python and the run-time dependencies, as the package has them (from pyproject.toml).
            inputsFrom = [ self.packages.${system}.default ];
            packages = [
              pkgs.python3Packages.pytest
              pkgs.python3Packages.hypothesis
              pkgs.python3Packages.mypy
              pkgs.python3Packages.types-paramiko
              pkgs.ruff
              pkgs.nixfmt
              pkgs.openssh
              pkgs.restic
            ];
            shellHook = ''
              export PYTHONPATH="$PWD''${PYTHONPATH:+:$PYTHONPATH}"
            '';
          };
        }
      );

      nixosModules.default = ./nix/module.nix;

      formatter = forSystems allSystems (_system: pkgs: pkgs.nixfmt);

      checks = forSystems linuxSystems (
        system: pkgs: {
          package = self.packages.${system}.default;
          module-eval = import ./nix/tests/module-eval.nix { inherit pkgs self nixpkgs; };
          vm = pkgs.testers.runNixOSTest (import ./nix/tests/vm.nix { inherit self; });
        }
      );
    };
}
