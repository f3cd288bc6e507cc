//! `codeowners`: every change has people responsible for reviewing it.
//!
//! Satisfied by a `CODEOWNERS` file in `.github/`, at the root or in `docs/`. GitHub
//! recognises only that exact spelling, so a misspelt file does not count; whether its
//! rules cover every path is not judged here.

use super::files::{ROOT, RequiredFile, Tail, WantedFile};
use crate::domain::Severity;

pub struct Codeowners;

impl RequiredFile for Codeowners {
    const ID: &'static str = "codeowners";
    const DESCRIPTION: &'static str =
        "The repository has a `CODEOWNERS` file in `.github/`, at its root or in `docs/`.";
    const SEVERITY: Severity = Severity::Low;
    /// GitHub's own order of precedence: `.github/` first, then the root, then `docs/`.
    const WANTED: WantedFile = WantedFile {
        what: "CODEOWNERS file",
        dirs: &[".github", ROOT, "docs"],
        stems: &["CODEOWNERS"],
        tail: Tail::Extensions(&[]),
        ignore_case: false,
    };
    const REMEDIATION: &'static str = "\
Without code owners, nobody is asked to review changes to sensitive paths, and branch \
protection cannot require their approval.

1. Add `.github/CODEOWNERS` on the default branch (the root or `docs/` work too; the name \
must be exactly `CODEOWNERS`).
2. List owners per path, for example `* @your-org/maintainers` and \
`/.github/workflows/ @your-org/security`; owners need write access.
3. Optionally turn on **Require review from Code Owners** in the default branch's \
protection rule.

See [About code owners](https://docs.github.com/en/repositories/managing-your-repositorys-settings-and-features/customizing-your-repository/about-code-owners).";
}

#[cfg(test)]
mod tests {
    use super::super::test_support::check_file_policy;
    use super::*;

    #[test]
    fn codeowners_in_github_root_or_docs() {
        check_file_policy(
            &Codeowners,
            &["CODEOWNERS", ".github/CODEOWNERS", "docs/CODEOWNERS"],
            &[
                &[],
                &["codeowners"],
                &["CODEOWNERS.md"],
                &[".github/workflows/CODEOWNERS"],
                &["OWNERS"],
            ],
        );
    }
}
