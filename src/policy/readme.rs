//! `readme`: placeholder, replaced by the policy implementation.
use super::*;
pub struct Readme;
impl Policy for Readme {
    fn id(&self) -> &'static str { "readme" }
    fn description(&self) -> &'static str { "todo" }
    fn severity(&self) -> Severity { Severity::Low }
    fn file_based(&self) -> bool { true }
    fn evaluate(&self, _: &Snapshot, _: &PolicyOptions) -> Vec<Finding> { vec![] }
}
