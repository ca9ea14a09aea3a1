# The deploy-guard command, built from pyproject.toml (setuptools) with the unit tests run
# in the build: they need no root, no network and no host (tests/unit).
{
  lib,
  python3Packages,
  git,
  openssh,
  installShellFiles,
}:
let
  pyproject = lib.importTOML ../pyproject.toml;
  # A PEP 508 requirement ("prometheus_client>=0.17") -> its nixpkgs attribute
  # (prometheus-client): pyproject.toml stays the one list of dependencies.
  toPackage =
    requirement:
    let
      name = lib.toLower (lib.head (builtins.match "([A-Za-z0-9._-]+).*" requirement));
    in
    python3Packages.${builtins.replaceStrings [ "_" "." ] [ "-" "-" ] name};
  # Extras users may want at run time (`notify`: apprise); `dev` is tools, not features.
  optionalDependencies = lib.mapAttrs (_: map toPackage) (
    removeAttrs (pyproject.project.optional-dependencies or { }) [ "dev" ]
  );
in
python3Packages.buildPythonApplication {
  pname = "deploy-guard";
  inherit (pyproject.project) version;
  pyproject = true;

  # Only what the build and the unit tests read: editing the docs or the module rebuilds
  # nothing. (In a flake, only files tracked by git are seen at all.)
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml
      ../README.md
      ../deploy_guard
      ../tests/__init__.py
      ../tests/unit
      # Read by tests/unit/test_hook.py and tests/unit/test_manifest.py.
      (lib.fileset.maybeMissing ../hooks)
      ./tests/sample-host-manifest.json
    ];
  };

  build-system = [ python3Packages.setuptools ];

  nativeBuildInputs = [ installShellFiles ];

  # deploy-guard(1), generated from the click commands (deploy_guard/cli/manpage.py).
  postInstall = ''
    PYTHONPATH="$out/${python3Packages.python.sitePackages}''${PYTHONPATH:+:$PYTHONPATH}" \
      ${python3Packages.python.interpreter} -m deploy_guard.cli.manpage > deploy-guard.1
    installManPage deploy-guard.1
  '';

  dependencies = map toPackage pyproject.project.dependencies;
  optional-dependencies = optionalDependencies;

  nativeCheckInputs = [
    python3Packages.pytestCheckHook
    python3Packages.hypothesis
    # tests/unit/test_hook.py drives git; test_sshconfig.py runs `ssh -G`.
    git
    openssh
  ]
  ++ lib.concatLists (lib.attrValues optionalDependencies);

  enabledTestPaths = [ "tests/unit" ];

  preCheck = ''
    export HOME="$(mktemp -d)"
    # Some tests run `python -m deploy_guard` from another directory.
    export PYTHONPATH="$PWD''${PYTHONPATH:+:$PYTHONPATH}"
  '';

  pythonImportsCheck = [
    "deploy_guard"
    "deploy_guard.manifest"
  ];

  meta = {
    description = pyproject.project.description;
    license = lib.licenses.mit;
    mainProgram = "deploy-guard";
    platforms = lib.platforms.unix;
  };
}
