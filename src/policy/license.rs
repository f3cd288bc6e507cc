//! `license`: placeholder, replaced by the policy implementation.
use super::*;
pub struct License;
impl Policy for License {
    fn id(&self) -> &'static str { "license" }
    fn description(&self) -> &'static str { "A license file" }
    fn severity(&self) -> Severity { Severity::Medium }
    fn file_based(&self) -> bool { true }
    fn evaluate(&self, s: &Snapshot, _: &PolicyOptions) -> Vec<Finding> {
        let has = s.files.iter().any(|f| { let l = f.to_ascii_lowercase(); !l.contains('/') && (l.starts_with("license") || l.starts_with("licence") || l.starts_with("copying")) });
        if has { return vec![] }
        vec![Finding { policy: "license".into(), key: "missing".into(), severity: Severity::Medium, title: "No license file".into(), details: "No LICENSE file at the repository root.".into(), remediation: "Add a LICENSE file.".into() }]
    }
}
