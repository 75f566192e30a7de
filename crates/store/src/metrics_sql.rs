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
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl gatehouse_core::store::MetricsStore for $store {
            async fn count_instances_by_state(
                &self,
                within: Option<&[gatehouse_core::id::TenantId]>,
            ) -> gatehouse_core::store::StoreResult<
                Vec<(gatehouse_core::workflow::InstanceState, u64)>,
            > {
                use gatehouse_core::store::StoreError;
                let text = format!(
                    "SELECT state, COUNT(*) FROM workflow_instances {} GROUP BY state ORDER BY state",
                    crate::metrics_sql::scoped::<$db>("WHERE", within),
                );
                let rows: Vec<(String, i64)> = crate::metrics_sql::bind_scope(sqlx::query_as(&text), within)
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
                within: Option<&[gatehouse_core::id::TenantId]>,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::store::ApprovalStats> {
                use crate::metrics_sql::{bind_scope, scoped};
                let scope = scoped::<$db>("AND", within);
                let text = format!("SELECT COUNT(*) FROM approvals WHERE state = 'pending' {scope}");
                let (pending,): (i64,) = bind_scope(sqlx::query_as(&text), within)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(crate::db_error("counting pending approvals"))?;
                let text = format!(
                    "SELECT created_at FROM approvals WHERE state = 'pending' {scope} ORDER BY id LIMIT 1"
                );
                let oldest: Option<(time::OffsetDateTime,)> = bind_scope(sqlx::query_as(&text), within)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("finding the oldest pending approval"))?;
                let text = match within {
                    None => "SELECT COUNT(*) FROM approval_decisions WHERE verdict = 'modify'".to_owned(),
                    Some(_) => format!(
                        "SELECT COUNT(*) FROM approval_decisions d JOIN approvals a ON a.id = d.approval_id
                         WHERE d.verdict = 'modify' AND {}",
                        <$db as crate::placeholders::IdSet>::within("a.tenant_id", "$1"),
                    ),
                };
                let (overrides,): (i64,) = bind_scope(sqlx::query_as(&text), within)
                .fetch_one(&self.pool)
                .await
                .map_err(crate::db_error("counting overrides"))?;
                Ok(gatehouse_core::store::ApprovalStats {
                    pending: u64::try_from(pending).unwrap_or(0),
                    oldest_pending_since: oldest.map(|(at,)| at),
                    overrides: u64::try_from(overrides).unwrap_or(0),
                })
            }

            async fn instance_days(
                &self,
                since: time::OffsetDateTime,
                within: Option<&[gatehouse_core::id::TenantId]>,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::store::InstanceDay>> {
                use crate::placeholders::{Dialect, IdSet};
                use gatehouse_core::store::StoreError;
                let text = format!(
                    "SELECT {day} AS day, template, state, COUNT(*) AS n,
                            AVG(CASE WHEN state = 'completed' THEN {secs} END) AS mean_secs
                     FROM workflow_instances
                     WHERE created_at >= $1 AND {within}
                     GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                    day = <$db as Dialect>::day_of("created_at"),
                    secs = <$db as Dialect>::seconds_between("created_at", "updated_at"),
                    within = <$db as IdSet>::within("tenant_id", "$2"),
                );
                let rows: Vec<(String, String, String, i64, Option<f64>)> = sqlx::query_as(&text)
                    .bind(crate::engine_sql::SortableTime(since))
                    .bind(crate::placeholders::id_set(within))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("counting workflow runs by day"))?;
                let corrupt = |what: &str, e: &dyn std::fmt::Display| {
                    StoreError::Corrupt(format!("workflow_instances.{what}: {e}"))
                };
                let day_format = time::macros::format_description!("[year]-[month]-[day]");
                rows.into_iter()
                    .map(|(day, template, state, count, mean_secs)| {
                        Ok(gatehouse_core::store::InstanceDay {
                            day: time::Date::parse(&day, &day_format)
                                .map_err(|e| corrupt("created_at", &e))?,
                            template,
                            state: state.parse().map_err(|e| corrupt("state", &e))?,
                            count: u64::try_from(count).unwrap_or(0),
                            mean_secs,
                        })
                    })
                    .collect()
            }
        }
    };
}

pub(crate) use impl_metrics_store;

/// The condition limiting an aggregate to `within`'s tenants, after
/// `keyword` (`WHERE` or `AND`), as parameter `$1`; nothing without a
/// limit, so `/metrics` keeps its plain indexed queries.
pub(crate) fn scoped<DB: crate::placeholders::IdSet>(
    keyword: &str,
    within: Option<&[gatehouse_core::id::TenantId]>,
) -> String {
    match within {
        None => String::new(),
        Some(_) => format!("{keyword} {}", DB::within("tenant_id", "$1")),
    }
}

/// Binds what [`scoped`] asked for, if anything.
pub(crate) fn bind_scope<'q, DB, O>(
    query: sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>,
    within: Option<&[gatehouse_core::id::TenantId]>,
) -> sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    match within {
        None => query,
        Some(ids) => query.bind(crate::placeholders::id_set(Some(ids))),
    }
}
