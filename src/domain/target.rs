//! What a run checks: `owner/repo`, `org:NAME`, `user:NAME`, or (with a GitHub App)
//! `installations`, validated by GitHub's naming rules before anything is queued, so a
//! typo is answered at once instead of failing later.

use std::fmt;

use super::RepoRef;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Repo(RepoRef),
    Org(String),
    User(String),
    /// Every repository of every installation of the configured GitHub App.
    Installations,
}

/// The spelling of [`Target::Installations`].
pub const INSTALLATIONS: &str = "installations";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target is empty: expected OWNER/REPO, org:NAME, user:NAME or installations")]
    Empty,
    #[error("unknown target form `{0}`: expected OWNER/REPO, org:NAME, user:NAME or installations")]
    UnknownForm(String),
    #[error("invalid owner name `{name}` in target `{target}`: {problem}")]
    InvalidOwner {
        target: String,
        name: String,
        problem: &'static str,
    },
    #[error("invalid repository name `{name}` in target `{target}`: {problem}")]
    InvalidRepo {
        target: String,
        name: String,
        problem: &'static str,
    },
}

impl Target {
    pub fn parse(input: &str) -> Result<Target, TargetError> {
        let target = input.trim();
        if target.is_empty() {
            return Err(TargetError::Empty);
        }
        if target == INSTALLATIONS {
            return Ok(Target::Installations);
        }
        if let Some((kind, name)) = target.split_once(':') {
            check_owner(target, name)?;
            return match kind {
                "org" => Ok(Target::Org(name.to_string())),
                "user" => Ok(Target::User(name.to_string())),
                _ => Err(TargetError::UnknownForm(target.to_string())),
            };
        }
        let parts: Vec<&str> = target.split('/').collect();
        let [owner, name] = parts.as_slice() else {
            return Err(TargetError::UnknownForm(target.to_string()));
        };
        check_owner(target, owner)?;
        check_repo(target, name)?;
        Ok(Target::Repo(RepoRef {
            owner: owner.to_string(),
            name: name.to_string(),
        }))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Repo(r) => write!(f, "{r}"),
            Target::Org(o) => write!(f, "org:{o}"),
            Target::User(u) => write!(f, "user:{u}"),
            Target::Installations => f.write_str(INSTALLATIONS),
        }
    }
}

/// GitHub logins: 1–39 characters, ASCII letters, digits and single hyphens, not at the ends.
fn check_owner(target: &str, name: &str) -> Result<(), TargetError> {
    let bad = |problem| {
        Err(TargetError::InvalidOwner {
            target: target.to_string(),
            name: name.to_string(),
            problem,
        })
    };
    if name.is_empty() || name.len() > 39 {
        return bad("must be 1 to 39 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return bad("only letters, digits and hyphens are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return bad("hyphens may not lead, trail or repeat");
    }
    Ok(())
}

/// Repository names: 1–100 characters of letters, digits, `.`, `-`, `_`; not `.` or `..`.
fn check_repo(target: &str, name: &str) -> Result<(), TargetError> {
    let bad = |problem| {
        Err(TargetError::InvalidRepo {
            target: target.to_string(),
            name: name.to_string(),
            problem,
        })
    };
    if name.is_empty() || name.len() > 100 {
        return bad("must be 1 to 100 characters");
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are reserved");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return bad("only letters, digits, `.`, `-` and `_` are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            Target::parse("octo-org/hello.world").unwrap().to_string(),
            "octo-org/hello.world"
        );
        assert_eq!(
            Target::parse("org:octo-org").unwrap(),
            Target::Org("octo-org".into())
        );
        assert_eq!(
            Target::parse(" user:octocat ").unwrap(),
            Target::User("octocat".into())
        );
        assert_eq!(
            Target::parse("installations").unwrap(),
            Target::Installations
        );
        assert_eq!(Target::Installations.to_string(), "installations");
    }

    #[test]
    fn names_the_problem() {
        let err = |s| Target::parse(s).unwrap_err().to_string();
        assert!(err("team:x").contains("unknown target form `team:x`"));
        assert!(err("a/b/c").contains("unknown target form"));
        assert!(err("octo/").contains("invalid repository name ``"));
        assert!(err("octo/bad name").contains("invalid repository name `bad name`"));
        assert!(err("-octo/x").contains("invalid owner name `-octo`"));
        assert!(err("org:").contains("invalid owner name"));
        assert!(err("").contains("target is empty"));
        assert!(err("octo/..").contains("reserved"));
    }
}
