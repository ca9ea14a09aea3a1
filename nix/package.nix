# The deploy-guard command, built from pyproject.toml (setuptools) with the unit tests run
# in the build: they need no root, no network and no host (tests/unit).
{
  lib,
  stdenv,
  python3Packages,
  installShellFiles,
  git,
  openssh,
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
  # Extras users may want at run time (`notify`: apprise); `dev` and `bench` are tools.
  # `dev` (checks) and `bench` (benchmark plots) are tools for working on deploy-guard.
  optionalDependencies = lib.mapAttrs (_: map toPackage) (
    removeAttrs (pyproject.project.optional-dependencies or { }) [
      "dev"
      "bench"
    ]
  );
  # Notifications are a feature of the command (README, Observability), not an extra to
  # remember: the package always has apprise.
  runtimeExtras = [ "notify" ];
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
      # Read by tests/unit/deploy/test_hook.py and tests/unit/test_manifest.py.
      (lib.fileset.maybeMissing ../hooks)
      ./tests/sample-host-manifest.json
    ];
  };

  build-system = [ python3Packages.setuptools ];
  nativeBuildInputs = [ installShellFiles ];

  dependencies =
    map toPackage pyproject.project.dependencies
    ++ lib.concatMap (extra: optionalDependencies.${extra}) runtimeExtras;
  optional-dependencies = optionalDependencies;

  # deploy-guard runs `ssh -G` to read ssh_config as OpenSSH does (transport/sshconfig.py):
  # the wrapper appends openssh to PATH, so the user's own ssh, when there is one, still wins.
  makeWrapperArgs = [
    "--suffix"
    "PATH"
    ":"
    (lib.makeBinPath [ openssh ])
  ];

  # deploy-guard(1) is generated from the click commands (deploy_guard/cli/manpage.py); click
  # writes the completion scripts (`_DEPLOY_GUARD_COMPLETE=bash_source deploy-guard`). Both need
  # the program to run, so not when cross-compiling.
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    # The wrapper comes later (postFixup): until then the package itself is not on the path.
    export PYTHONPATH="$out/${python3Packages.python.sitePackages}''${PYTHONPATH:+:$PYTHONPATH}"
    ${python3Packages.python.interpreter} -m deploy_guard.cli.manpage > deploy-guard.1
    installManPage deploy-guard.1
    installShellCompletion --cmd deploy-guard \
      --bash <(_DEPLOY_GUARD_COMPLETE=bash_source $out/bin/deploy-guard) \
      --zsh <(_DEPLOY_GUARD_COMPLETE=zsh_source $out/bin/deploy-guard) \
      --fish <(_DEPLOY_GUARD_COMPLETE=fish_source $out/bin/deploy-guard)
  '';

  nativeCheckInputs = [
    python3Packages.pytestCheckHook
    python3Packages.hypothesis
    # tests/unit/deploy/test_hook.py drives git; test_sshconfig.py runs `ssh -G`.
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
