//! The SQL behind `MetricsStore`: aggregates for `/metrics`, written once
//! for both back ends in the way of [`crate::sql`].
//!
//! Scrapes come every few seconds, so each query must stay cheap however
//! many workflows there are: instances are counted from the
//! `workflow_instances_state` index (migration 0005), never from the rows
//! with their JSON; the oldest pending approval is the first one in
//! `approvals_state` (ids are time-ordered). Decisions are people's, so
//! counting the overrides among them scans a small table.

macro_rules! impl_metrics_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl gatehouse_core::store::MetricsStore for $store {
            async fn count_instances_by_state(
                &self,
            ) -> gatehouse_core::store::StoreResult<
                Vec<(gatehouse_core::workflow::InstanceState, u64)>,
            > {
                use gatehouse_core::store::StoreError;
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT state, COUNT(*) FROM workflow_instances GROUP BY state ORDER BY state",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("counting workflow instances"))?;
                rows.into_iter()
                    .map(|(state, count)| {
                        let state = state.parse().map_err(|e| {
                            StoreError::Corrupt(format!("workflow_instances.state: {e}"))
                        })?;
                        Ok((state, u64::try_from(count).unwrap_or(0)))
                    })
                    .collect()
            }

            async fn approval_stats(
                &self,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::store::ApprovalStats> {
                let (pending,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM approvals WHERE state = 'pending'")
                        .fetch_one(&self.pool)
                        .await
                        .map_err(crate::db_error("counting pending approvals"))?;
                let oldest: Option<(time::OffsetDateTime,)> = sqlx::query_as(
                    "SELECT created_at FROM approvals WHERE state = 'pending' ORDER BY id LIMIT 1",
                )
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("finding the oldest pending approval"))?;
                let (overrides,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM approval_decisions WHERE verdict = 'modify'",
                )
                .fetch_one(&self.pool)
                .await
                .map_err(crate::db_error("counting overrides"))?;
                Ok(gatehouse_core::store::ApprovalStats {
                    pending: u64::try_from(pending).unwrap_or(0),
                    oldest_pending_since: oldest.map(|(at,)| at),
                    overrides: u64::try_from(overrides).unwrap_or(0),
                })
            }
        }
    };
}

pub(crate) use impl_metrics_store;
