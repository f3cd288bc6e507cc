//! Build script: the source revision for `guardian --version` and `guardian_build_info`.
//!
//! `GUARDIAN_REVISION` from the build environment wins (the Nix build sets it, and a
//! source tarball has no Git); otherwise `git rev-parse` names the commit, and outside a
//! Git checkout the revision is `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=GUARDIAN_REVISION");
    let revision = match std::env::var("GUARDIAN_REVISION") {
        Ok(r) if !r.trim().is_empty() => r.trim().to_string(),
        _ => {
            // Rebuild when HEAD moves (a commit, a checkout), not on every build.
            if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                println!("cargo:rerun-if-changed={dir}/HEAD");
                println!("cargo:rerun-if-changed={dir}/logs/HEAD");
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=GUARDIAN_REVISION={revision}");
}
