//! `security_policy`: placeholder, replaced by the policy implementation.
use super::*;
pub struct SecurityPolicy;
impl Policy for SecurityPolicy {
    fn id(&self) -> &'static str { "security-policy" }
    fn description(&self) -> &'static str { "todo" }
    fn severity(&self) -> Severity { Severity::Low }
    fn file_based(&self) -> bool { true }
    fn evaluate(&self, _: &Snapshot, _: &PolicyOptions) -> Vec<Finding> { vec![] }
}
