//! `security-policy`: the repository tells people how to report a vulnerability privately.
//!
//! Satisfied by a `SECURITY` file (Markdown, text, reStructuredText or no extension) at the
//! root, in `.github/` or in `docs/` — the places GitHub reads it from.

use super::files::{COMMUNITY_DIRS, RequiredFile, Tail, WantedFile};
use crate::domain::Severity;

pub struct SecurityPolicy;

impl RequiredFile for SecurityPolicy {
    const ID: &'static str = "security-policy";
    const DESCRIPTION: &'static str = "The repository has a security policy (`SECURITY.md`) at its root, in `.github/` or in `docs/`.";
    const SEVERITY: Severity = Severity::Medium;
    const WANTED: WantedFile = WantedFile {
        what: "security policy",
        dirs: COMMUNITY_DIRS,
        stems: &["SECURITY"],
        tail: Tail::Extensions(&["md", "txt", "rst"]),
        ignore_case: true,
    };
    const REMEDIATION: &'static str = "\
Without a security policy, people who find a vulnerability report it in a public issue, \
or not at all.

1. Add `SECURITY.md` at the root, in `.github/` or in `docs/` of the default branch; on \
GitHub, **Security → Security policy → Start setup** creates it.
2. Say which versions receive security fixes, how to report a vulnerability privately \
(an address, or GitHub's private vulnerability reporting), and what reporters can expect.
3. Consider turning on private vulnerability reporting.

See [Adding a security policy to your repository](https://docs.github.com/en/code-security/getting-started/adding-a-security-policy-to-your-repository) \
and [Configuring private vulnerability reporting](https://docs.github.com/en/code-security/security-advisories/working-with-repository-security-advisories/configuring-private-vulnerability-reporting-for-a-repository).";
}

#[cfg(test)]
mod tests {
    use super::super::test_support::check_file_policy;
    use super::*;

    #[test]
    fn security_policy_in_community_dirs() {
        check_file_policy(
            &SecurityPolicy,
            &[
                "SECURITY.md",
                "security.md",
                "SECURITY",
                "Security.txt",
                "SECURITY.rst",
                ".github/SECURITY.md",
                "docs/SECURITY.md",
            ],
            &[
                &[],
                &["README.md"],
                &["SECURITY.html"],
                &["src/SECURITY.md"],
                &[".github/ISSUE_TEMPLATE/SECURITY.md"],
            ],
        );
    }
}
