//! `readme`: the repository explains what it is, how to use it and whom to ask.
//!
//! Satisfied by a README where GitHub renders one on the repository page: the root,
//! `.github/` or `docs/`. Its content is not judged.

use super::files::{COMMUNITY_DIRS, RequiredFile, Tail, WantedFile};
use crate::domain::Severity;

pub struct Readme;

impl RequiredFile for Readme {
    const ID: &'static str = "readme";
    const DESCRIPTION: &'static str =
        "The repository has a README at its root, in `.github/` or in `docs/`.";
    const SEVERITY: Severity = Severity::Low;
    /// Any extension: GitHub renders `README.md`, `.rst`, `.adoc`, `.org`, plain text and more.
    const WANTED: WantedFile = WantedFile {
        what: "README",
        dirs: COMMUNITY_DIRS,
        stems: &["README"],
        tail: Tail::AnyExtension,
        ignore_case: true,
    };
    const REMEDIATION: &'static str = "\
A README is the first thing users and contributors read; without it they cannot tell \
what the repository is for or whether it is maintained.

1. Add `README.md` at the root of the default branch (or in `.github/` or `docs/`).
2. Say what the project does, how to install and use it, how to get help, who maintains \
it, and where to report problems.

See [About READMEs](https://docs.github.com/en/repositories/managing-your-repositorys-settings-and-features/customizing-your-repository/about-readmes).";
}

#[cfg(test)]
mod tests {
    use super::super::test_support::check_file_policy;
    use super::*;

    #[test]
    fn readme_at_root_github_or_docs() {
        check_file_policy(
            &Readme,
            &[
                "README",
                "README.md",
                "readme.rst",
                "ReadMe.txt",
                "README.adoc",
                ".github/README.md",
                "docs/README.md",
            ],
            &[
                &[],
                &["LICENSE"],
                &["src/README.md"],
                &["docs/api/README.md"],
                &["READ_ME.md"],
            ],
        );
    }
}
