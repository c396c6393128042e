//! Who gets a run's email: the team whose folder the file was dropped in (`incoming/<team>/…`),
//! else the default list, plus the success or failure list for the outcome.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::report::Status;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    #[serde(default)]
    pub default: Vec<String>,
    #[serde(default)]
    pub success: Vec<String>,
    #[serde(default)]
    pub failure: Vec<String>,
    /// Team folder → addresses.
    #[serde(default)]
    pub teams: BTreeMap<String, Vec<String>>,
}

impl Routing {
    /// Recipients for a file at `key` (under `prefix`) with `status`, de-duplicated, in order.
    pub fn recipients(&self, prefix: &str, key: &str, status: Status) -> Vec<String> {
        let team = key
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('/'))
            .map(|(folder, _)| folder)
            .and_then(|folder| self.teams.get(folder));
        let outcome = if status == Status::Succeeded {
            &self.success
        } else {
            &self.failure
        };
        let mut to: Vec<String> = Vec::new();
        for address in team.unwrap_or(&self.default).iter().chain(outcome) {
            if !to.iter().any(|a| a.eq_ignore_ascii_case(address)) {
                to.push(address.clone());
            }
        }
        to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> Routing {
        Routing {
            default: vec!["data@shop.test".into()],
            success: vec!["audit@shop.test".into()],
            failure: vec!["oncall@shop.test".into(), "DATA@shop.test".into()],
            teams: BTreeMap::from([("shoes".into(), vec!["shoes@shop.test".into()])]),
        }
    }

    #[test]
    fn team_folder_picks_the_team_list() {
        assert_eq!(
            routing().recipients("incoming/", "incoming/shoes/a.csv", Status::Succeeded),
            ["shoes@shop.test", "audit@shop.test"]
        );
    }

    #[test]
    fn unknown_folders_and_top_level_files_go_to_the_default_list() {
        let r = routing();
        assert_eq!(
            r.recipients("incoming/", "incoming/hats/a.csv", Status::Partial),
            ["data@shop.test", "oncall@shop.test"]
        );
        assert_eq!(
            r.recipients("incoming/", "incoming/a.csv", Status::Failed),
            ["data@shop.test", "oncall@shop.test"]
        );
    }
}
