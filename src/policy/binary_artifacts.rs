//! `binary-artifacts`: no compiled binaries or archives checked into the tree, where
//! nobody can review what they do (Scorecard's *Binary-Artifacts*).
//!
//! Files are recognised by extension everywhere, and — where the snapshot carries a file's
//! first bytes (local checkouts, for files without an extension) — by magic bytes: ELF,
//! Mach-O, PE, Java class files, WebAssembly. The `allow` option lists path globs that are
//! accepted (test data, a verified `gradle-wrapper.jar`). One finding lists every binary,
//! so the issue follows the list as it shrinks.

use globset::GlobSet;

use super::{OptionError, Policy, PolicyOptions, finding, glob_option, parse_options};
use crate::domain::{Finding, Severity, Snapshot};

pub(crate) const ID: &str = "binary-artifacts";

/// Extensions of compiled code and of archives that usually carry it (lower-case).
const EXTENSIONS: &[&str] = &[
    "exe", "dll", "so", "dylib", "a", "o", "obj", "lib", "elf", "bin", "class", "jar", "war",
    "ear", "pyc", "pyo", "whl", "egg", "apk", "aab", "dex", "ipa", "msi", "deb", "rpm", "crx",
    "wasm", "efi", "sys", "drv", "ocx", "nupkg", "gem", "zip", "tar", "tgz", "gz", "bz2", "xz",
    "7z", "rar",
];

/// Magic numbers of executable formats, for files without an extension.
pub(crate) const MAGIC: &[(&[u8], &str)] = &[
    (b"\x7fELF", "ELF executable"),
    (b"\xcf\xfa\xed\xfe", "Mach-O executable"),
    (b"\xce\xfa\xed\xfe", "Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", "Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "Java class or Mach-O universal binary"),
    (b"MZ", "Windows PE executable"),
    (b"\x00asm", "WebAssembly module"),
];

pub(crate) const REMEDIATION: &str = "\
A binary in the repository cannot be reviewed: nobody can tell what it does or whether it \
matches its source, and it may run in CI or on users' machines.

1. Remove the binaries from the default branch and build them from source in CI instead.
2. Publish build outputs as release assets or packages, with provenance (for example \
`actions/attest-build-provenance`).
3. For binaries that must stay (test fixtures, a verified Gradle wrapper), list their \
paths in the policy's `allow` option or suppress the finding in `.github/repo-guardian.yml`.

See [About releases](https://docs.github.com/en/repositories/releasing-projects-on-github/about-releases) \
and [Using artifact attestations](https://docs.github.com/en/actions/security-for-github-actions/using-artifact-attestations/using-artifact-attestations-to-establish-provenance-for-builds).";

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Options {
    /// Path globs of binaries that are accepted.
    allow: Vec<String>,
}

impl Options {
    fn globs(options: &PolicyOptions) -> Result<GlobSet, OptionError> {
        let parsed: Options = parse_options(options)?;
        glob_option("allow", &parsed.allow)
    }
}

/// What kind of binary `path` is by its extension, if any.
fn by_extension(path: &str) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let (_, ext) = name.rsplit_once('.')?;
    let ext = ext.to_ascii_lowercase();
    EXTENSIONS
        .contains(&ext.as_str())
        .then(|| format!("`.{ext}` file"))
}

pub struct BinaryArtifacts;

impl Policy for BinaryArtifacts {
    fn id(&self) -> &'static str {
        ID
    }

    fn description(&self) -> &'static str {
        "No compiled binaries or archives are checked into the repository."
    }

    fn severity(&self) -> Severity {
        Severity::High
    }

    fn file_based(&self) -> bool {
        true
    }

    fn validate_options(&self, options: &PolicyOptions) -> Result<(), OptionError> {
        Options::globs(options).map(drop)
    }

    fn evaluate(&self, snapshot: &Snapshot, options: &PolicyOptions) -> Vec<Finding> {
        let allowed = Options::globs(options).unwrap_or_else(|_| GlobSet::empty());
        let found: Vec<(String, String)> = snapshot
            .files
            .iter()
            .filter(|p| !allowed.is_match(p.as_str()))
            .filter_map(|p| {
                by_extension(p)
                    .or_else(|| snapshot.magic.get(p).cloned())
                    .map(|kind| (p.clone(), kind))
            })
            .collect();
        if found.is_empty() {
            return Vec::new();
        }
        let mut details = format!(
            "{} binary file(s) are checked into the repository:\n\n",
            found.len()
        );
        for (path, kind) in &found {
            details.push_str(&format!("- `{path}` ({kind})\n"));
        }
        vec![finding(
            self,
            "present",
            "Binary artifacts are checked in".to_owned(),
            details,
            REMEDIATION.to_owned(),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{keys, keys_with, options, snapshot};
    use super::*;
    use serde_json::json;

    #[test]
    fn binaries_by_extension_and_magic_with_an_allow_list() {
        let snap = snapshot()
            .files(&[
                "src/main.rs",
                "tools/protoc.EXE",
                "lib/vendor.jar",
                "README.md",
            ])
            .build();
        assert_eq!(keys(&BinaryArtifacts, &snap), ["present"]);
        let mut snap = snapshot().files(&["bin/tool", "docs/guide.md"]).build();
        snap.magic
            .insert("bin/tool".into(), "ELF executable".into());
        let findings = BinaryArtifacts.evaluate(&snap, &PolicyOptions::new());
        assert!(findings[0].details.contains("`bin/tool` (ELF executable)"));
        let allow = options(json!({"allow": ["bin/*"]}));
        assert!(keys_with(&BinaryArtifacts, &snap, &allow).is_empty());
        let clean = snapshot()
            .files(&["src/lib.rs", "Cargo.toml", "logo.png"])
            .build();
        assert!(keys(&BinaryArtifacts, &clean).is_empty());
    }

    #[test]
    fn bad_allow_patterns_are_named() {
        let err = BinaryArtifacts
            .validate_options(&options(json!({"allow": ["a/["]})))
            .unwrap_err();
        assert_eq!(err.option, "allow[0]");
    }
}
