//! `workflow-permissions`: the `GITHUB_TOKEN` of each workflow has only the permissions
//! its jobs need.
//!
//! Reported, per workflow file:
//! - `default-permissions`: neither the workflow nor some job sets `permissions:`, so the
//!   token gets the repository's or organisation's default, which may be read-write;
//! - `write-all`: `permissions: write-all` at the workflow level or in a job;
//! - `workflow-writes`: write scopes granted at the workflow level to every one of
//!   several jobs, where the job that needs them should ask for them itself.
//!
//! Composite actions have no token of their own and are not concerned.

use github_actions_models::common::{BasePermission, Permission, Permissions};
use github_actions_models::workflow::{Job, Workflow};

use super::PolicyOptions;
use super::workflows::{self, Document, Report, WorkflowCheck};
use crate::domain::{Finding, Severity};

pub(crate) const ID: &str = "workflow-permissions";

pub(crate) const REMEDIATION: &str = "\
Without an explicit `permissions:` block the workflow's `GITHUB_TOKEN` gets the default \
permissions, which are read-write on older repositories and organisations; a compromised \
step or dependency can then push code, publish releases or approve pull requests.

1. Add `permissions: {}` (or `contents: read`) at the top of every workflow.
2. In each job that needs more, grant exactly that: for example `permissions: { contents: \
write }` in the release job only, `pull-requests: write` in the job that comments.
3. Never use `write-all`; set the organisation's and repository's default to read-only \
(**Settings → Actions → General → Workflow permissions**).

See [Controlling permissions for GITHUB_TOKEN](https://docs.github.com/en/actions/writing-workflows/choosing-what-your-workflow-does/controlling-permissions-for-github_token) \
and [Automatic token authentication](https://docs.github.com/en/actions/security-for-github-actions/security-guides/automatic-token-authentication#permissions-for-the-github_token).";

pub struct WorkflowPermissions;

fn permissions_of(job: &Job) -> &Permissions {
    match job {
        Job::NormalJob(j) => &j.permissions,
        Job::ReusableWorkflowCallJob(j) => &j.permissions,
    }
}

fn is_default(p: &Permissions) -> bool {
    matches!(p, Permissions::Base(BasePermission::Default))
}

impl WorkflowCheck for WorkflowPermissions {
    const ID: &'static str = ID;
    const DESCRIPTION: &'static str = "Every workflow sets `permissions:` and grants no write scope more broadly than one job needs.";
    const SEVERITY: Severity = Severity::Medium;

    fn check(&self, report: &Report<'_>, _: &PolicyOptions) -> Vec<Finding> {
        match &report.source.document {
            Document::Workflow(w) => Self::check_workflow(report, w),
            _ => Vec::new(),
        }
    }
}

impl WorkflowPermissions {
    fn check_workflow(report: &Report<'_>, workflow: &Workflow) -> Vec<Finding> {
        let source = report.source;
        let loc = &source.locator;
        let top = loc.child(&loc.whole(), "permissions");
        let mut out = Vec::new();
        let report = |key: String, title: String, evidence: String, at: (u32, u32)| {
            let details = format!("{evidence}\n\n{}", source.quote(&[at.0]));
            report.finding(&key, title, details, REMEDIATION.to_owned(), at)
        };
        // A workflow run only by `workflow_call` gets its caller's token, which it can only
        // narrow: the caller is where the permissions are set (and checked).
        let called_only =
            workflow.on.events.workflow_call.is_present() && workflow.on.events.count() == 1;
        if is_default(&workflow.permissions) && !called_only {
            let bare: Vec<&str> = workflow
                .jobs
                .iter()
                .filter(|(_, j)| is_default(permissions_of(j)))
                .map(|(id, _)| id.as_str())
                .collect();
            if let Some(first) = bare.first() {
                let at = loc.start_of(&source.job_region(first));
                let jobs = workflows::code_list(bare.iter().copied());
                out.push(report(
                    format!("default-permissions:{}", source.path),
                    format!("`{}` runs with the default token permissions", source.path),
                    format!(
                        "`{}` sets no `permissions:` at the workflow level, and neither do \
                         job(s) {jobs}: their `GITHUB_TOKEN` gets the default permissions, \
                         which may be read-write.",
                        source.path
                    ),
                    at,
                ));
            }
        }
        if matches!(
            workflow.permissions,
            Permissions::Base(BasePermission::WriteAll)
        ) {
            let at = top.as_ref().map(|r| loc.start_of(r)).unwrap_or((1, 1));
            out.push(report(
                format!("write-all:{}", source.path),
                format!("`{}` grants `write-all` to every job", source.path),
                "The workflow sets `permissions: write-all`: every job's token may write to \
                 every scope of the repository."
                    .to_owned(),
                at,
            ));
        }
        for (id, job) in &workflow.jobs {
            if matches!(
                permissions_of(job),
                Permissions::Base(BasePermission::WriteAll)
            ) {
                let region = source.job_region(id);
                let at = loc
                    .child(&region, "permissions")
                    .map(|r| loc.start_of(&r))
                    .unwrap_or_else(|| loc.start_of(&region));
                out.push(report(
                    format!("write-all:{}:{id}", source.path),
                    format!("Job `{id}` of `{}` grants `write-all`", source.path),
                    format!(
                        "Job `{id}` sets `permissions: write-all`: its token may write to every \
                         scope of the repository."
                    ),
                    at,
                ));
            }
        }
        if let Permissions::Explicit(scopes) = &workflow.permissions
            && workflow.jobs.len() > 1
        {
            let writes: Vec<&str> = scopes
                .iter()
                .filter(|(_, p)| matches!(p, Permission::Write))
                .map(|(s, _)| s.as_str())
                .collect();
            if !writes.is_empty() {
                let at = top
                    .as_ref()
                    .and_then(|r| loc.find(r, &format!("{}:", writes[0])))
                    .or_else(|| top.as_ref().map(|r| loc.start_of(r)))
                    .unwrap_or((1, 1));
                let scopes: Vec<String> = writes.iter().map(|w| format!("{w}: write")).collect();
                let list = workflows::code_list(scopes.iter().map(String::as_str));
                out.push(report(
                    format!("workflow-writes:{}", source.path),
                    format!("`{}` grants write scopes to all of its jobs", source.path),
                    format!(
                        "The workflow grants {list} at the workflow level, so all {} jobs get \
                         them; grant them in the job that needs them instead.",
                        workflow.jobs.len()
                    ),
                    at,
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{keys, snapshot};
    use super::super::workflows::Workflows;
    use super::super::{Policy, PolicyOptions};
    use super::*;

    fn workflow(yaml: &str) -> Vec<String> {
        let snap = snapshot().file(".github/workflows/w.yml", yaml).build();
        keys(&Workflows(WorkflowPermissions), &snap)
    }

    const JOB: &str = "    runs-on: ubuntu-latest\n    steps:\n      - run: make\n";

    #[test]
    fn missing_permissions_anywhere_is_reported_once() {
        assert_eq!(
            workflow(&format!("on: push\njobs:\n  a:\n{JOB}  b:\n{JOB}")),
            ["default-permissions:.github/workflows/w.yml"]
        );
        let one_job_set = format!(
            "on: push\njobs:\n  a:\n    permissions:\n      contents: read\n{JOB}  b:\n{JOB}"
        );
        assert_eq!(
            workflow(&one_job_set),
            ["default-permissions:.github/workflows/w.yml"]
        );
        let every_job_set = format!(
            "on: push\njobs:\n  a:\n    permissions: read-all\n{JOB}  b:\n    permissions: {{}}\n{JOB}"
        );
        assert!(workflow(&every_job_set).is_empty());
        assert!(workflow(&format!("on: push\npermissions: {{}}\njobs:\n  a:\n{JOB}")).is_empty());
    }

    #[test]
    fn a_reusable_workflow_takes_its_callers_permissions() {
        assert!(workflow(&format!("on: workflow_call\njobs:\n  a:\n{JOB}")).is_empty());
        // Callable and also run on its own: its own runs get the default token.
        assert_eq!(
            workflow(&format!("on: [workflow_call, push]\njobs:\n  a:\n{JOB}")),
            ["default-permissions:.github/workflows/w.yml"]
        );
    }

    #[test]
    fn write_all_at_either_level() {
        assert_eq!(
            workflow(&format!(
                "on: push\npermissions: write-all\njobs:\n  a:\n{JOB}"
            )),
            ["write-all:.github/workflows/w.yml"]
        );
        assert_eq!(
            workflow(&format!(
                "on: push\npermissions: {{}}\njobs:\n  a:\n    permissions: write-all\n{JOB}"
            )),
            ["write-all:.github/workflows/w.yml:a"]
        );
    }

    #[test]
    fn workflow_level_writes_only_matter_with_several_jobs() {
        let grants = "on: push\npermissions:\n  contents: read\n  packages: write\njobs:\n";
        assert!(workflow(&format!("{grants}  a:\n{JOB}")).is_empty());
        let snap = snapshot()
            .file(
                ".github/workflows/w.yml",
                &format!("{grants}  a:\n{JOB}  b:\n{JOB}"),
            )
            .build();
        let findings = Workflows(WorkflowPermissions).evaluate(&snap, &PolicyOptions::new());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].key, "workflow-writes:.github/workflows/w.yml");
        let at = findings[0].location.as_ref().expect("located");
        assert_eq!((at.line, at.column), (4, 3));
        assert!(findings[0].details.contains("`packages: write`"));
    }

    #[test]
    fn reusable_workflow_jobs_count_and_actions_do_not() {
        let call = "on: push\njobs:\n  call:\n    uses: octo/ci/.github/workflows/build.yml@v1\n";
        assert_eq!(
            workflow(call),
            ["default-permissions:.github/workflows/w.yml"]
        );
        let action =
            "name: a\nruns:\n  using: composite\n  steps:\n    - run: echo\n      shell: bash\n";
        let snap = snapshot().file("action.yml", action).build();
        assert!(keys(&Workflows(WorkflowPermissions), &snap).is_empty());
    }
}
