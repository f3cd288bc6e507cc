{
  description = "Repo Guardian: policy checks for GitHub repositories, one issue per finding, a stateless worker fleet over NATS JetStream";

  # flake.lock pins nixpkgs to nixos-25.11 at rev 8fd9daa3db09ced9700431c5b7ad0e8ba199b575
  # (lastModified 1778430510) with narHash sha256-Ti+ZBvW6yrWWAg2szExVTwCd4qOJ3KlVr1tFHfyfi8Q=.
  # Where the pin came from: several independent public flake.lock files lock this revision
  # with this narHash. Its rustc is newer than the crate's rust-version (1.88).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      environments = [
        "dev"
        "staging"
        "prod"
      ];
      revision = self.rev or self.dirtyRev or "unknown";

      pkgsFor =
        system:
        import nixpkgs {
          inherit system;
          # Nomad is BUSL-licensed, which nixpkgs counts as unfree: allow it by name only.
          config.allowUnfreePredicate = pkg: builtins.elem (lib.getName pkg) [ "nomad" ];
        };

      forAllSystems = f: lib.genAttrs systems (system: f (pkgsFor system));

      # Everything the outputs are made of, for one system.
      partsFor = pkgs: rec {
        guardian = pkgs.callPackage ./nix/package.nix { inherit revision; };
        guardianWithTests = pkgs.callPackage ./nix/package.nix {
          inherit revision;
          withTests = true;
        };
        # OCI images are Linux images: built on Linux only (a Darwin host needs a Linux builder).
        image = pkgs.callPackage ./nix/image.nix { inherit guardian revision; };
        devApp = pkgs.callPackage ./nix/dev-app.nix { inherit guardian; };
        nomadJobs = lib.genAttrs environments (
          env: pkgs.callPackage ./nix/nomad-job.nix { inherit env; }
        );
      };
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          parts = partsFor pkgs;
        in
        {
          default = parts.guardian;
          guardian = parts.guardian;
        }
        // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux { image = parts.image; }
        // lib.mapAttrs' (env: job: lib.nameValuePair "nomad-${env}" job) parts.nomadJobs
      );

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = lib.getExe (partsFor pkgs).devApp;
          meta.description = "Local all-in-one Repo Guardian fleet (guardian dev)";
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.callPackage ./nix/dev-shell.nix { };
        # Deploying by hand. The deploy workflows do not use it: nixpkgs' Nomad is unfree, so
        # the binary cache has no build and this shell compiles it; they install HashiCorp's
        # signed release with deploy/nomad/install-nomad.sh instead.
        deploy = pkgs.mkShell {
          packages = [
            pkgs.nomad
            pkgs.skopeo
            pkgs.jq
            pkgs.nix
          ];
        };
      });

      checks = forAllSystems (
        pkgs:
        let
          parts = partsFor pkgs;
        in
        pkgs.callPackage ./nix/checks.nix { inherit (parts) guardian guardianWithTests; }
        // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux { image = parts.image; }
      );

      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);
    };
}
