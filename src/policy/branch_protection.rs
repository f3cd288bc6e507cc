//! `branch_protection`: placeholder, replaced by the policy implementation.
use super::*;
pub struct BranchProtection;
impl Policy for BranchProtection {
    fn id(&self) -> &'static str { "branch-protection" }
    fn description(&self) -> &'static str { "todo" }
    fn severity(&self) -> Severity { Severity::Low }
    fn file_based(&self) -> bool { true }
    fn evaluate(&self, _: &Snapshot, _: &PolicyOptions) -> Vec<Finding> { vec![] }
}
