//! `license`: the repository states its license, so others know whether they may use it.
//!
//! Satisfied by a license file at the root, by a REUSE `LICENSES/` directory, or — on a
//! snapshot taken from GitHub — by the license GitHub detected. Which license it is, is
//! not this policy's business.

use super::files::{ROOT, RequiredFile, Tail, WantedFile};
use crate::domain::{Severity, Snapshot};

/// The REUSE specification keeps one file per license in this root directory.
const REUSE_DIR: &str = "licenses/";

pub struct License;

/// A root file named after its license, as GitHub's detector (licensee) accepts:
/// `MIT-LICENSE`, `BSD_LICENCE.txt`, `GPL-COPYING`.
fn named_license(path: &str) -> bool {
    if path.contains('/') {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    let stem = lower.split('.').next().unwrap_or(&lower);
    ["license", "licence", "copying", "copyright"]
        .iter()
        .any(|name| {
            stem.strip_suffix(name)
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with(['-', '_']))
        })
}

impl RequiredFile for License {
    const ID: &'static str = "license";
    const DESCRIPTION: &'static str = "The repository has a license file at its root (or a REUSE `LICENSES/` directory, or a license GitHub detected).";
    const SEVERITY: Severity = Severity::Medium;
    /// Root only: GitHub and most tools look for the license at the root, nowhere else.
    const WANTED: WantedFile = WantedFile {
        what: "license file",
        dirs: &[ROOT],
        stems: &[
            "LICENSE",
            "LICENCE",
            "UNLICENSE",
            "UNLICENCE",
            "COPYING",
            "COPYRIGHT",
            "OFL",
        ],
        tail: Tail::AnySuffix,
        ignore_case: true,
    };
    const REMEDIATION: &'static str = "\
Without a license, nobody may legally use, change or share the code.

1. Choose a license with your legal team or with <https://choosealicense.com/>.
2. Add it as `LICENSE` (or `LICENSE.md`) at the root of the default branch; on GitHub, \
**Add file → Create new file**, type `LICENSE` and pick **Choose a license template**.
3. Projects under several licenses may use `LICENSE-MIT`/`LICENSE-APACHE`, or a \
`LICENSES/` directory as the REUSE specification describes (<https://reuse.software/>).

See [Adding a license to a repository](https://docs.github.com/en/communities/setting-up-your-project-for-healthy-contributions/adding-a-license-to-a-repository) \
and [Licensing a repository](https://docs.github.com/en/repositories/managing-your-repositorys-settings-and-features/customizing-your-repository/licensing-a-repository).";

    fn alternatives(snapshot: &Snapshot) -> Result<(), Vec<String>> {
        // GitHub's detection only exists for GitHub snapshots; `NOASSERTION` still means
        // GitHub saw a license file it could not classify, which is enough here.
        let detected = snapshot
            .license_spdx
            .as_deref()
            .is_some_and(|spdx| snapshot.from_github && !spdx.is_empty());
        let reuse = snapshot
            .files
            .iter()
            .any(|f| f.to_ascii_lowercase().starts_with(REUSE_DIR));
        let prefixed = snapshot.files.iter().any(|f| named_license(f));
        if detected || reuse || prefixed {
            return Ok(());
        }
        let mut checked = vec![
            "Also looked for: a name ending in `-LICENSE` or `_LICENSE` (`MIT-LICENSE`), and a \
             REUSE `LICENSES/` directory."
                .to_owned(),
        ];
        if snapshot.from_github {
            checked.push("GitHub detected no license for this repository.".to_owned());
        }
        Err(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{check_file_policy, keys, snapshot};
    use super::super::{Policy, PolicyOptions};
    use super::*;

    #[test]
    fn license_files_at_the_root() {
        check_file_policy(
            &License,
            &[
                "LICENSE",
                "license.md",
                "LICENSE.txt",
                "Licence",
                "LICENSE-APACHE",
                "COPYING",
                "COPYING.LESSER",
                "LICENSES/MIT.txt",
                "MIT-LICENSE",
                "mit-license.txt",
                "UNLICENSE",
                "COPYRIGHT",
                "copyright.md",
                "LICENSE-MIT",
                "OFL.txt",
                "licence.rst",
                "BSD_LICENSE",
            ],
            &[
                &[],
                &["README.md"],
                &["docs/LICENSE"],
                &["LICENSEE.md"],
                &["src/licenses/mit.txt"],
                &["docs/MIT-LICENSE"],
                &["-LICENSE"],
                &["src/OFL.txt", "OFLINE.md"],
            ],
        );
    }

    #[test]
    fn github_detection_counts_only_on_github_snapshots() {
        let github = snapshot().github().license_spdx("MIT").build();
        assert!(keys(&License, &github).is_empty());
        let unclassified = snapshot().github().license_spdx("NOASSERTION").build();
        assert!(keys(&License, &unclassified).is_empty());
        let local = snapshot().license_spdx("MIT").build();
        assert_eq!(keys(&License, &local), ["missing"]);
    }

    #[test]
    fn evidence_says_what_was_looked_for() {
        let snap = snapshot().github().build();
        let finding = &License.evaluate(&snap, &PolicyOptions::new())[0];
        assert_eq!(finding.title, "No license file");
        assert!(finding.details.contains(
            "`LICENSE`, `LICENCE`, `UNLICENSE`, `UNLICENCE`, `COPYING`, `COPYRIGHT` or `OFL`"
        ));
        assert!(finding.details.contains("REUSE `LICENSES/`"));
        assert!(finding.details.contains("GitHub detected no license"));
    }
}
