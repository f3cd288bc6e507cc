# `nix develop`: everything to build, test, lint and operate Repo Guardian locally.
{
  mkShell,
  rustc,
  cargo,
  clippy,
  rustfmt,
  rust-analyzer,
  cargo-nextest,
  cargo-deny,
  cargo-llvm-cov,
  llvmPackages,
  nats-server,
  natscli,
  nomad,
  prometheus,
  nodejs,
  nixfmt,
  nix,
  actionlint,
  zizmor,
  jq,
  skopeo,
}:
let
  # cargo-llvm-cov needs the llvm-cov/llvm-profdata of rustc's own LLVM version.
  llvm = (rustc.llvmPackages or llvmPackages).llvm;
in
mkShell {
  packages = [
    rustc
    cargo
    clippy
    rustfmt
    rust-analyzer
    cargo-nextest
    cargo-deny
    cargo-llvm-cov
    llvm
    nats-server
    natscli
    nomad
    prometheus
    (prometheus.cli or prometheus)
    nodejs
    nixfmt
    nix
    actionlint
    zizmor
    jq
    skopeo
  ];
  LLVM_COV = "${llvm}/bin/llvm-cov";
  LLVM_PROFDATA = "${llvm}/bin/llvm-profdata";
  shellHook = ''
    echo "repo-guardian dev shell: cargo test, guardian dev, nats, nomad, promtool"
  '';
  meta.description = "Development shell of Repo Guardian";
}
