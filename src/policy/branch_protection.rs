//! `branch-protection`: the default branch cannot be rewritten or changed without review.
//!
//! Needs GitHub: protection is not visible in a checkout, so this policy is not file-based
//! and reports nothing when protection could not be observed ([`Protection::Unknown`], for
//! example with a token lacking admin rights). Each weakness is its own finding with a
//! stable key, so fixing one closes exactly one issue.

use super::{OptionError, Policy, PolicyOptions, finding, parse_options};
use crate::domain::Input;
use crate::domain::{BranchRules, Finding, Protection, Severity, Snapshot};

pub(crate) const ID: &str = "branch-protection";

/// GitHub accepts 0 to 6 required approving reviews; anything else cannot be satisfied.
const MAX_REVIEWS: u64 = 6;

pub(crate) const REMEDIATION: &str = "\
Protect the default branch so that nobody — and no stolen token — can push unreviewed \
code to it or rewrite its history.

1. Open **Settings → Branches** (or **Settings → Rules → Rulesets**) and add a rule for \
the default branch.
2. Turn on **Require a pull request before merging** with at least the required number \
of approvals (and, ideally, **Dismiss stale pull request approvals**).
3. Leave **Allow force pushes** and **Allow deletions** off.
4. Where the organisation asks for it, turn on **Do not allow bypassing the above \
settings** so that the rules apply to administrators too.

See [About protected branches](https://docs.github.com/en/repositories/configuring-branches-and-merges-in-your-repository/managing-protected-branches/about-protected-branches), \
[Managing a branch protection rule](https://docs.github.com/en/repositories/configuring-branches-and-merges-in-your-repository/managing-protected-branches/managing-a-branch-protection-rule) \
and [About rulesets](https://docs.github.com/en/repositories/configuring-branches-and-merges-in-your-repository/managing-rulesets/about-rulesets).";

/// The policy's options with their defaults, parsed from configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Options {
    /// Fewest approving reviews a pull request needs before merge.
    min_approving_reviews: Reviews,
    /// Whether the rules must also bind administrators.
    require_enforce_admins: bool,
    /// Whether force pushes to the default branch are tolerated.
    allow_force_pushes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            min_approving_reviews: Reviews(1),
            require_enforce_admins: false,
            allow_force_pushes: false,
        }
    }
}

/// A number of approving reviews GitHub can require (0 to [`MAX_REVIEWS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reviews(u32);

impl<'de> serde::Deserialize<'de> for Reviews {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Reviews;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "an integer from 0 to {MAX_REVIEWS}")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Reviews, E> {
                u32::try_from(n)
                    .ok()
                    .filter(|n| u64::from(*n) <= MAX_REVIEWS)
                    .map(Reviews)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Reviews, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(n), &self)),
                }
            }
        }
        d.deserialize_u64(Visitor)
    }
}

impl Options {
    fn parse(options: &PolicyOptions) -> Result<Self, OptionError> {
        parse_options(options)
    }
}

pub struct BranchProtection;

impl BranchProtection {
    /// The weaknesses of `rules` under `options`: `(key, title, evidence)` triples.
    fn weaknesses(rules: &BranchRules, options: &Options) -> Vec<(&'static str, String, String)> {
        let mut found = Vec::new();
        let required = rules.required_approving_reviews.unwrap_or(0);
        if required < options.min_approving_reviews.0 {
            let now = match rules.required_approving_reviews {
                None => "does not require pull request reviews".to_owned(),
                Some(n) => format!("requires {n} approving review(s)"),
            };
            found.push((
                "reviews",
                "Default branch requires too few approving reviews".to_owned(),
                format!(
                    "The protection rule {now}; the policy asks for at least {}.",
                    options.min_approving_reviews.0
                ),
            ));
        }
        if rules.allow_force_pushes && !options.allow_force_pushes {
            found.push((
                "force-pushes",
                "Default branch allows force pushes".to_owned(),
                "The protection rule allows force pushes, so the branch history can be rewritten."
                    .to_owned(),
            ));
        }
        if options.require_enforce_admins && !rules.enforce_admins {
            found.push((
                "admins",
                "Default branch protection does not apply to administrators".to_owned(),
                "The protection rule is not enforced for administrators, who can bypass it; \
                 the policy asks for `enforce_admins`."
                    .to_owned(),
            ));
        }
        found
    }
}

impl Policy for BranchProtection {
    fn id(&self) -> &'static str {
        ID
    }

    fn description(&self) -> &'static str {
        "The default branch is protected: reviews required, no force pushes, optionally binding administrators."
    }

    fn severity(&self) -> Severity {
        Severity::High
    }

    fn file_based(&self) -> bool {
        false
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::Protection]
    }

    fn validate_options(&self, options: &PolicyOptions) -> Result<(), OptionError> {
        Options::parse(options).map(drop)
    }

    fn evaluate(&self, snapshot: &Snapshot, options: &PolicyOptions) -> Vec<Finding> {
        if !snapshot.from_github {
            return Vec::new();
        }
        // Options are validated before any evaluation; should invalid ones slip through,
        // the documented defaults are the safest reading.
        let options = Options::parse(options).unwrap_or_default();
        let branch = &snapshot.default_branch;
        let weaknesses = match &snapshot.protection {
            Protection::Unknown => return Vec::new(),
            Protection::Unprotected => vec![(
                "unprotected",
                "Default branch is not protected".to_owned(),
                "GitHub reports no branch protection rule for this branch: anyone with write \
                 access can push to it directly, force-push or delete it."
                    .to_owned(),
            )],
            Protection::Protected(rules) => Self::weaknesses(rules, &options),
        };
        weaknesses
            .into_iter()
            .map(|(key, title, evidence)| {
                let details = format!(
                    "Default branch `{branch}` of `{}`: {evidence}\n\n- Checked: GitHub's branch protection of `{branch}`.\n- Policy options: at least {} approving review(s), force pushes {}, administrators {}.",
                    snapshot.repo,
                    options.min_approving_reviews.0,
                    if options.allow_force_pushes { "tolerated" } else { "forbidden" },
                    if options.require_enforce_admins { "bound by the rules" } else { "may be exempt" },
                );
                finding(self, key, title, details, REMEDIATION.to_owned())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{keys, keys_with, options, snapshot};
    use super::*;
    use serde_json::json;

    fn protected(rules: BranchRules) -> Snapshot {
        snapshot()
            .github()
            .protection(Protection::Protected(rules))
            .build()
    }

    fn reviewed(n: u32) -> BranchRules {
        BranchRules {
            required_approving_reviews: Some(n),
            ..BranchRules::default()
        }
    }

    #[test]
    fn not_file_based_and_silent_without_github() {
        assert!(!BranchProtection.file_based());
        let local = snapshot().protection(Protection::Unprotected).build();
        assert!(keys(&BranchProtection, &local).is_empty());
        let unknown = snapshot().github().build();
        assert!(keys(&BranchProtection, &unknown).is_empty());
    }

    #[test]
    fn unprotected_branch_is_one_finding() {
        let snap = snapshot()
            .github()
            .protection(Protection::Unprotected)
            .build();
        assert_eq!(keys(&BranchProtection, &snap), ["unprotected"]);
        let archived = snapshot()
            .github()
            .archived()
            .protection(Protection::Unprotected)
            .build();
        assert_eq!(keys(&BranchProtection, &archived), ["unprotected"]);
    }

    #[test]
    fn well_protected_branch_passes() {
        assert!(keys(&BranchProtection, &protected(reviewed(1))).is_empty());
        let strict = options(json!({"min_approving_reviews": 2, "require_enforce_admins": true}));
        let rules = BranchRules {
            enforce_admins: true,
            ..reviewed(2)
        };
        assert!(keys_with(&BranchProtection, &protected(rules), &strict).is_empty());
    }

    #[test]
    fn each_weakness_has_its_own_key() {
        let weak = BranchRules {
            allow_force_pushes: true,
            ..BranchRules::default()
        };
        assert_eq!(
            keys(&BranchProtection, &protected(weak.clone())),
            ["reviews", "force-pushes"]
        );
        let strict = options(json!({"require_enforce_admins": true}));
        assert_eq!(
            keys_with(&BranchProtection, &protected(weak), &strict),
            ["reviews", "force-pushes", "admins"]
        );
    }

    #[test]
    fn options_relax_the_defaults() {
        let lax = options(json!({"min_approving_reviews": 0, "allow_force_pushes": true}));
        let rules = BranchRules {
            allow_force_pushes: true,
            ..BranchRules::default()
        };
        assert!(keys_with(&BranchProtection, &protected(rules), &lax).is_empty());
        let two = options(json!({"min_approving_reviews": 2}));
        assert_eq!(
            keys_with(&BranchProtection, &protected(reviewed(1)), &two),
            ["reviews"]
        );
    }

    #[test]
    fn evidence_names_branch_and_requirement() {
        let snap = protected(reviewed(1));
        let two = options(json!({"min_approving_reviews": 2}));
        let finding = &BranchProtection.evaluate(&snap, &two)[0];
        assert!(finding.details.contains("`main`"));
        assert!(finding.details.contains("requires 1 approving review(s)"));
        assert!(finding.details.contains("at least 2"));
        assert_eq!(finding.fingerprint(), "branch-protection/reviews");
    }

    #[test]
    fn validate_options_names_the_option() {
        let validate = |v| BranchProtection.validate_options(&options(v));
        assert_eq!(validate(json!({})), Ok(()));
        assert_eq!(
            validate(json!({"min_approving_reviews": 6, "allow_force_pushes": false})),
            Ok(())
        );
        for bad in [json!(7), json!(-1), json!(1.5), json!("2"), json!("two")] {
            let err = validate(json!({ "min_approving_reviews": bad })).unwrap_err();
            assert_eq!(err.option, "min_approving_reviews");
            assert!(
                err.problem.contains("expected an integer from 0 to 6"),
                "{err}"
            );
        }
        let err = validate(json!({"require_enforce_admins": "yes"})).unwrap_err();
        assert_eq!(err.option, "require_enforce_admins");
        assert!(err.problem.contains("expected a boolean"), "{err}");
        let err = validate(json!({"allow_force_pushes": 1})).unwrap_err();
        assert_eq!(err.option, "allow_force_pushes");
        let err = validate(json!({"min_reviews": 1})).unwrap_err();
        assert_eq!(err.option, "min_reviews");
        assert!(err.problem.contains("unknown field `min_reviews`"), "{err}");
    }
}
