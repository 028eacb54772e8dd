//! A rebalancing operation: moves an operator decided to execute, from a
//! run's recommendations or given explicitly, and its lifecycle.

use serde::{Deserialize, Serialize};

/// `planned -> in_progress -> completed`; planned or in-progress operations
/// can be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RebalancingStatus {
    Planned,
    InProgress,
    Completed,
    Cancelled,
}

impl RebalancingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RebalancingStatus::Planned => "planned",
            RebalancingStatus::InProgress => "in_progress",
            RebalancingStatus::Completed => "completed",
            RebalancingStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Planned,
            Self::InProgress,
            Self::Completed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Whether an operation may go from `self` to `next`.
    pub fn can_become(self, next: RebalancingStatus) -> bool {
        use RebalancingStatus::*;
        matches!(
            (self, next),
            (Planned, InProgress)
                | (Planned, Cancelled)
                | (InProgress, Completed)
                | (InProgress, Cancelled)
        )
    }
}

/// One move of an operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannedMove {
    #[schema(min_length = 1)]
    pub from: String,
    #[schema(min_length = 1)]
    pub to: String,
    #[schema(minimum = 1, maximum = 4_294_967_295_u32)]
    pub vehicles: u32,
}

/// A stored rebalancing operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rebalancing {
    pub id: String,
    pub fleet_id: String,
    pub run_id: Option<String>,
    pub status: RebalancingStatus,
    pub moves: Vec<PlannedMove>,
    /// The recommendations this operation accepted (empty for explicit moves).
    pub recommendation_ids: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[cfg(test)]
mod tests {
    use super::RebalancingStatus::*;

    #[test]
    fn only_the_designed_transitions_are_legal() {
        let all = [Planned, InProgress, Completed, Cancelled];
        let legal: Vec<_> = all
            .iter()
            .flat_map(|&a| all.iter().map(move |&b| (a, b)))
            .filter(|&(a, b)| a.can_become(b))
            .collect();
        assert_eq!(
            legal,
            vec![
                (Planned, InProgress),
                (Planned, Cancelled),
                (InProgress, Completed),
                (InProgress, Cancelled)
            ]
        );
    }
}
