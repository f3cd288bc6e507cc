//! Demo data: an organization whose repositories exercise every policy, used by
//! `github-double --seed demo` and by the guardian's demo mode.
//!
//! The mix is deliberate: one fully compliant repository (so the demo shows that clean
//! repositories get no issues), several with one or two gaps each, an archived and a
//! forked repository (which policies usually skip), and a user account with a repository
//! so org/user discovery can be shown too.

use crate::{GithubDouble, ProtectionRules, RepoOptions};

const MIT: &str = "MIT License\n\nCopyright (c) 2024 Demo Org\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\nof this software and associated documentation files (the \"Software\"), to deal\nin the Software without restriction.\n";
const APACHE: &str = "                                 Apache License\n                           Version 2.0, January 2004\n                        http://www.apache.org/licenses/\n";
const GPL: &str = "                    GNU GENERAL PUBLIC LICENSE\n                       Version 3, 29 June 2007\n";
const SECURITY: &str =
    "# Security Policy\n\nPlease report vulnerabilities to security@demo-org.example.\n";
const CODEOWNERS: &str = "* @demo-org/maintainers\n";
const CI: &str = "name: ci\non: [push, pull_request]\npermissions:\n  contents: read\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: make test\n";

fn readme(name: &str) -> String {
    format!("# {name}\n\nPart of the demo organization.\n")
}

fn strong() -> ProtectionRules {
    ProtectionRules {
        required_approving_reviews: Some(2),
        dismiss_stale_reviews: true,
        require_code_owner_reviews: true,
        enforce_admins: true,
        allow_force_pushes: false,
        allow_deletions: false,
        required_status_checks: vec!["ci/test".into()],
    }
}

/// Seeds organization `demo-org` with eight varied repositories and user `demo-user`
/// with one.
pub fn seed_demo(double: &GithubDouble) {
    let org = "demo-org";
    double.add_org(org);
    let repo = |name: &str, opts: RepoOptions, files: &[(&str, &str)]| {
        double.add_repo(org, name, opts);
        for (path, content) in files {
            double.put_file(org, name, path, content);
        }
    };

    // Fully compliant.
    repo(
        "api-gateway",
        RepoOptions {
            description: Some("Edge API gateway".into()),
            ..Default::default()
        },
        &[
            ("README.md", &readme("api-gateway")),
            ("LICENSE", MIT),
            ("SECURITY.md", SECURITY),
            (".github/CODEOWNERS", CODEOWNERS),
            (".github/workflows/ci.yml", CI),
            ("src/main.rs", "fn main() {}\n"),
        ],
    );
    double.set_protection(org, "api-gateway", Some(strong()));

    // Weak protection and no security policy.
    repo(
        "web-frontend",
        RepoOptions {
            description: Some("Customer web app".into()),
            ..Default::default()
        },
        &[
            ("README.md", &readme("web-frontend")),
            ("LICENSE", APACHE),
            (".github/workflows/ci.yml", CI),
            (
                "package.json",
                "{\"name\": \"web-frontend\", \"private\": true}\n",
            ),
        ],
    );
    double.set_protection(
        org,
        "web-frontend",
        Some(ProtectionRules {
            required_approving_reviews: Some(1),
            allow_force_pushes: true,
            ..Default::default()
        }),
    );

    // No license, unprotected.
    repo(
        "billing-service",
        RepoOptions::default(),
        &[
            ("README.md", &readme("billing-service")),
            ("CODEOWNERS", CODEOWNERS),
            ("go.mod", "module example.com/billing\n\ngo 1.22\n"),
        ],
    );

    // Archived: policies usually skip it.
    repo(
        "legacy-monolith",
        RepoOptions {
            archived: true,
            ..Default::default()
        },
        &[("README.md", &readme("legacy-monolith"))],
    );

    // License that is neither MIT nor Apache, no CODEOWNERS, default branch "master".
    repo(
        "docs-site",
        RepoOptions {
            default_branch: "master".into(),
            ..Default::default()
        },
        &[
            ("README.md", &readme("docs-site")),
            ("COPYING", GPL),
            ("SECURITY.md", SECURITY),
            ("docs/index.md", "# Docs\n"),
        ],
    );

    // Private, no README.
    repo(
        "infra-terraform",
        RepoOptions {
            private: true,
            ..Default::default()
        },
        &[
            ("SECURITY.md", SECURITY),
            (".github/CODEOWNERS", CODEOWNERS),
            ("main.tf", "terraform {}\n"),
        ],
    );
    double.set_protection(org, "infra-terraform", Some(strong()));

    // A fork.
    repo(
        "forked-lib",
        RepoOptions {
            fork: true,
            ..Default::default()
        },
        &[("README.md", &readme("forked-lib")), ("LICENSE", MIT)],
    );

    // Nearly empty.
    repo(
        "data-pipeline",
        RepoOptions::default(),
        &[("pipeline.py", "print('etl')\n")],
    );

    double.add_user("demo-user");
    double.add_repo("demo-user", "dotfiles", RepoOptions::default());
    double.put_file("demo-user", "dotfiles", "README.md", &readme("dotfiles"));
}
