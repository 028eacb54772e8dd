//! The optimization run: its lifecycle and the one place where legal status
//! changes are decided.

use serde::{Deserialize, Serialize};

/// Where a run is in its life: `pending -> running -> succeeded | failed |
/// cancelled`; a pending or running run can also be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// No change leaves a finished run.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// Whether a run may go from `self` to `next`.
    pub fn can_become(self, next: RunStatus) -> bool {
        use RunStatus::*;
        matches!(
            (self, next),
            (Pending, Running)
                | (Pending, Cancelled)
                | (Running, Succeeded)
                | (Running, Failed)
                | (Running, Cancelled)
        )
    }
}

/// How a run is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    OneShot,
    Continuous,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::OneShot => "one_shot",
            RunMode::Continuous => "continuous",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::OneShot, Self::Continuous]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    pub id: String,
    pub fleet_id: String,
    pub name: String,
    pub mode: RunMode,
    pub status: RunStatus,
    /// Objectives, constraints, horizon and optional inline problem, as given.
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    pub error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

#[cfg(test)]
mod tests {
    use super::RunStatus::*;
    use super::*;

    #[test]
    fn only_the_designed_transitions_are_legal() {
        let all = [Pending, Running, Succeeded, Failed, Cancelled];
        let legal: Vec<_> = all
            .iter()
            .flat_map(|&a| all.iter().map(move |&b| (a, b)))
            .filter(|&(a, b)| a.can_become(b))
            .collect();
        assert_eq!(
            legal,
            vec![
                (Pending, Running),
                (Pending, Cancelled),
                (Running, Succeeded),
                (Running, Failed),
                (Running, Cancelled)
            ]
        );
        assert!(all
            .iter()
            .filter(|s| s.is_final())
            .all(|s| all.iter().all(|n| !s.can_become(*n))));
        for s in all {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(RunStatus::parse("done"), None);
    }
}
