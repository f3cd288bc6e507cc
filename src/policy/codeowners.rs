//! `codeowners`: placeholder, replaced by the policy implementation.
use super::*;
pub struct Codeowners;
impl Policy for Codeowners {
    fn id(&self) -> &'static str { "codeowners" }
    fn description(&self) -> &'static str { "todo" }
    fn severity(&self) -> Severity { Severity::Low }
    fn file_based(&self) -> bool { true }
    fn evaluate(&self, _: &Snapshot, _: &PolicyOptions) -> Vec<Finding> { vec![] }
}
