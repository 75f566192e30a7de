//! Conformance of the audit log's storage (`AuditStore` and the outbox), on
//! SQLite and, with `GATEHOUSE_TEST_DATABASE_URL`, on PostgreSQL: records
//! are queued in the transaction of the change they record (or not at all),
//! appends are a compare-and-set on the log's size, and the stored nodes
//! restore the frontier and serve proofs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::sync::Arc;

use gatehouse_audit::{Frontier, Hash, MemoryTree, NodeId, ProofPlan, canonical, leaf_hash};
use gatehouse_core::audit::{AuditCheckpoint, AuditEntry, AuditNode, SYSTEM_LOG};
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::{EventId, WorkflowId};
use gatehouse_core::store::{Store, StoreError};
use gatehouse_core::workflow::{
    DedupKey, EventKind, EventSource, HistoryEntry, InboundEvent, Instance, InstanceState, Progress,
};
use serde_json::json;
use time::{Duration, OffsetDateTime};

struct Case {
    store: Arc<dyn Store>,
    clock: FakeClock,
}

impl Case {
    fn now(&self) -> OffsetDateTime {
        let now = self.clock.now();
        self.clock.advance(Duration::milliseconds(1));
        now
    }

    fn instance(&self) -> Instance {
        let now = self.now();
        Instance {
            id: WorkflowId::generate(now),
            tenant_id: None,
            template: "onboard".into(),
            template_version: 1,
            definition: json!({}),
            state: InstanceState::Running,
            context: json!({}),
            started_by: None,
            created_by: "system".into(),
            created_at: now,
            updated_at: now,
            next_run_at: Some(now),
            version: 1,
        }
    }

    fn progress(&self, instance: &Instance, seqs: &[i64]) -> Progress {
        Progress {
            instance: instance.clone(),
            steps: Vec::new(),
            history: seqs
                .iter()
                .map(|&seq| HistoryEntry {
                    instance_id: instance.id,
                    seq,
                    at: self.now(),
                    kind: format!("kind.{seq}"),
                    step_id: Some("a".into()),
                    actor: "op_x".into(),
                    detail: json!({"seq": seq}),
                })
                .collect(),
            approvals: Vec::new(),
            tasks: Vec::new(),
            notifications: Vec::new(),
        }
    }

    fn event(&self, key: &str) -> InboundEvent {
        let now = self.now();
        InboundEvent {
            id: EventId::generate(now),
            tenant_id: None,
            source: EventSource::parse("psa.test").unwrap(),
            kind: EventKind::parse("psa.deal.won").unwrap(),
            dedup_key: DedupKey::parse(key).unwrap(),
            payload: json!({"secret": "kept in the inbox"}),
            received_at: now,
            outcome: None,
        }
    }

    async fn pending_actions(&self) -> Vec<String> {
        self.store
            .pending_audit(1000)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, r)| format!("{} {}", r.action, r.subject))
            .collect()
    }

    /// Entries `from..from + n` of a log, built the way the sequencer does,
    /// pushed onto `tree`; returns them with the completed nodes.
    fn entries(&self, tree: &mut Frontier, n: u64) -> (Vec<AuditEntry>, Vec<AuditNode>) {
        let mut entries = Vec::new();
        let mut nodes = Vec::new();
        for _ in 0..n {
            let idx = tree.size();
            let leaf = canonical::to_string(&json!({"idx": idx, "action": "test"})).unwrap();
            let hash = leaf_hash(leaf.as_bytes());
            tree.push_with(hash, |id, h| {
                nodes.push(AuditNode {
                    level: id.level,
                    index: id.index,
                    hash: *h.as_bytes(),
                });
            })
            .unwrap();
            entries.push(AuditEntry {
                idx,
                at: self.now(),
                actor: "system".into(),
                action: "test".into(),
                subject: format!("s{idx}"),
                leaf,
                leaf_hash: *hash.as_bytes(),
            });
        }
        (entries, nodes)
    }
}

mod cases {
    use super::*;

    pub async fn progress_and_events_queue_their_records_in_their_transaction(c: &Case) {
        let a = c.instance();
        c.store
            .commit_progress(&[c.progress(&a, &[1, 2])])
            .await
            .unwrap();
        let pending = c.store.pending_audit(10).await.unwrap();
        assert_eq!(pending.len(), 2);
        assert!(pending[0].0 < pending[1].0, "oldest first");
        let (_, first) = &pending[0];
        assert_eq!(first.action, "workflow.kind.1");
        assert_eq!(first.subject, a.id.to_string());
        assert_eq!(first.actor, "op_x");
        assert_eq!(first.log(), SYSTEM_LOG);
        assert_eq!(first.details["history_seq"], 1);
        assert_eq!(first.details["template"], "onboard");

        // A stale batch (the instance's version is not the next) writes
        // no record, even for its valid items.
        let b = c.instance();
        let mut stale = c.progress(&a, &[3]);
        stale.instance.version = 5;
        let err = c
            .store
            .commit_progress(&[c.progress(&b, &[1]), stale])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Stale(_)), "{err}");
        assert_eq!(c.pending_actions().await.len(), 2);

        // A new event is recorded, a duplicate is not.
        let event = c.event("deal-1");
        assert!(c.store.record_event(&event).await.unwrap().1);
        assert!(!c.store.record_event(&c.event("deal-1")).await.unwrap().1);
        let started = c.instance();
        let second = c.event("deal-2");
        let answers = c
            .store
            .submit_events(&[
                (c.event("deal-1"), Vec::new()),
                (second.clone(), vec![c.progress(&started, &[1])]),
            ])
            .await
            .unwrap();
        assert_eq!(answers.iter().filter(|(_, new)| *new).count(), 1);
        assert!(
            !c.store
                .submit_event(&c.event("deal-2"), &[])
                .await
                .unwrap()
                .1
        );
        let actions = c.pending_actions().await;
        assert_eq!(
            actions[2..],
            [
                format!("event.received {}", event.id),
                format!("event.received {}", second.id),
                format!("workflow.kind.1 {}", started.id),
            ]
        );
        let records = c.store.pending_audit(10).await.unwrap();
        assert!(
            records[2].1.details.get("payload").is_none(),
            "the payload stays in the inbox"
        );
    }

    pub async fn appends_are_a_compare_and_set_on_the_size(c: &Case) {
        let log = "tenant-a";
        for _ in 0..3 {
            c.store
                .commit_progress(&[c.progress(&c.instance(), &[1])])
                .await
                .unwrap();
        }
        let ids: Vec<i64> = c
            .store
            .pending_audit(10)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(c.store.audit_head(log).await.unwrap().size, 0);

        let mut tree = Frontier::new();
        let (first, first_nodes) = c.entries(&mut tree, 5);
        c.store
            .append_audit(log, 0, &first, &first_nodes, &ids[..2])
            .await
            .unwrap();
        assert_eq!(c.store.pending_audit(10).await.unwrap().len(), 1);

        // A second sequencer that read size 0 is stale and writes nothing.
        let mut other = Frontier::new();
        let (racing, racing_nodes) = c.entries(&mut other, 2);
        let err = c
            .store
            .append_audit(log, 0, &racing, &racing_nodes, &ids[2..])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Stale("audit log")), "{err}");
        assert_eq!(c.store.pending_audit(10).await.unwrap().len(), 1);
        // So is one that consumes records already consumed.
        let (more, more_nodes) = c.entries(&mut tree.clone(), 1);
        let err = c
            .store
            .append_audit(log, 5, &more, &more_nodes, &ids[..1])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Stale("audit outbox")), "{err}");
        // Indexes must follow on from the size.
        let err = c
            .store
            .append_audit(log, 4, &more, &more_nodes, &[])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");

        // The head restores the frontier.
        let head = c.store.audit_head(log).await.unwrap();
        assert_eq!(head.size, 5);
        let restored = Frontier::restore(
            head.size,
            head.frontier
                .iter()
                .map(|n| Hash::from_bytes(n.hash))
                .collect(),
        )
        .unwrap();
        assert_eq!(restored, tree);

        let (second, second_nodes) = c.entries(&mut tree, 6);
        c.store
            .append_audit(log, 5, &second, &second_nodes, &ids[2..])
            .await
            .unwrap();
        assert!(c.store.pending_audit(10).await.unwrap().is_empty());
        assert_eq!(
            c.store.audit_logs().await.unwrap(),
            vec![(log.to_owned(), 11)]
        );

        // Entries page in index order and round-trip.
        let page = c.store.audit_entries(log, 3, 4).await.unwrap();
        assert_eq!(page.iter().map(|e| e.idx).collect::<Vec<_>>(), [3, 4, 5, 6]);
        assert_eq!(page[0], first[3]);
        assert_eq!(page[2], second[0]);

        // The stored nodes serve proofs like an in-memory tree.
        let mut memory = MemoryTree::new();
        for e in first.iter().chain(&second) {
            memory.push(Hash::from_bytes(e.leaf_hash)).unwrap();
        }
        let plan = ProofPlan::inclusion(4, 11).unwrap();
        let ids: Vec<(u8, u64)> = plan.nodes().iter().map(|n| (n.level, n.index)).collect();
        let hashes: Vec<Hash> = c
            .store
            .audit_nodes(log, &ids)
            .await
            .unwrap()
            .into_iter()
            .map(Hash::from_bytes)
            .collect();
        assert_eq!(
            plan.assemble(&hashes).unwrap(),
            memory.inclusion_proof(4, 11).unwrap()
        );
        // Stored subtrees (height 3 and up) and subtrees hashed from the
        // entries' leaf hashes, asked for together, as an in-memory tree
        // has them.
        let leaves: Vec<Hash> = first
            .iter()
            .chain(&second)
            .map(|e| Hash::from_bytes(e.leaf_hash))
            .collect();
        let hashes = c
            .store
            .audit_nodes(log, &[(3, 0), (0, 10), (1, 4), (2, 1), (1, 0)])
            .await
            .unwrap();
        let expected = [
            gatehouse_audit::merkle::root(&leaves[0..8]),
            leaves[10],
            gatehouse_audit::merkle::root(&leaves[8..10]),
            gatehouse_audit::merkle::root(&leaves[4..8]),
            gatehouse_audit::merkle::root(&leaves[0..2]),
        ];
        assert_eq!(
            hashes.into_iter().map(Hash::from_bytes).collect::<Vec<_>>(),
            expected
        );
        // A subtree not complete in the log, stored or hashed, is not found.
        for missing in [
            NodeId { level: 3, index: 1 },
            NodeId {
                level: 0,
                index: 11,
            },
            NodeId { level: 1, index: 5 },
            NodeId { level: 2, index: 2 },
            NodeId {
                level: 2,
                index: u64::MAX,
            },
        ] {
            let err = c
                .store
                .audit_nodes(log, &[(0, 1), (missing.level, missing.index)])
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::NotFound("audit node")),
                "{missing:?}: {err}"
            );
        }
        let head = c.store.audit_head(log).await.unwrap();
        let restored = Frontier::restore(
            head.size,
            head.frontier
                .iter()
                .map(|n| Hash::from_bytes(n.hash))
                .collect(),
        )
        .unwrap();
        assert_eq!(restored.root(), memory.root());
    }

    /// The sequencer reads its next page from the ids above the page it is
    /// appending: in id order, nothing at or below the cursor, and an
    /// empty answer past the end.
    pub async fn the_outbox_reads_on_from_a_cursor(c: &Case) {
        for _ in 0..5 {
            c.store
                .commit_progress(&[c.progress(&c.instance(), &[1])])
                .await
                .unwrap();
        }
        let all: Vec<i64> = c
            .store
            .pending_audit(100)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert!(all.len() >= 5, "{all:?}");
        assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
        let after = |cursor: i64, limit: u32| {
            let store = c.store.clone();
            async move {
                store
                    .pending_audit_after(cursor, limit)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect::<Vec<i64>>()
            }
        };
        assert_eq!(after(all[1], 2).await, all[2..4]);
        assert_eq!(after(all[1], 100).await, all[2..]);
        assert_eq!(after(i64::MIN, 100).await, all);
        assert!(after(all[all.len() - 1], 100).await.is_empty());
    }

    /// `queue_audit` takes any number of records, one statement or several
    /// (a transaction of their own), and nothing for none; the outbox holds
    /// them all, in the order queued.
    pub async fn queued_records_keep_their_order(c: &Case) {
        let record = |i: usize| gatehouse_core::audit::AuditRecord {
            at: c.now(),
            tenant_id: None,
            actor: "system".into(),
            action: "test.queued".into(),
            subject: format!("r{i}"),
            details: json!({"n": i}),
        };
        c.store.queue_audit(&[]).await.unwrap();
        assert!(c.pending_actions().await.is_empty());
        // One record, then 600 (three statements of at most 256, the
        // store's `MAX_ROWS`), then exactly one statement's worth.
        let mut queued = 0;
        for count in [1, 600, 256] {
            let records: Vec<_> = (queued..queued + count).map(record).collect();
            c.store.queue_audit(&records).await.unwrap();
            queued += count;
        }
        let pending = c.store.pending_audit(1000).await.unwrap();
        assert!(pending.windows(2).all(|w| w[0].0 < w[1].0));
        let subjects: Vec<String> = pending.into_iter().map(|(_, r)| r.subject).collect();
        let expected: Vec<String> = (0..queued).map(|i| format!("r{i}")).collect();
        assert_eq!(subjects, expected);
    }

    pub async fn checkpoints_are_one_per_size(c: &Case) {
        let log = "system";
        let mut tree = Frontier::new();
        let (entries, nodes) = c.entries(&mut tree, 2);
        c.store
            .append_audit(log, 0, &entries, &nodes, &[])
            .await
            .unwrap();
        let at = c.now();
        let checkpoint = |size: u64, note: &str| AuditCheckpoint {
            log: log.to_owned(),
            size,
            note: note.to_owned(),
            created_at: at,
        };
        c.store.put_checkpoint(&checkpoint(2, "two")).await.unwrap();
        c.store.put_checkpoint(&checkpoint(1, "one")).await.unwrap();
        let err = c
            .store
            .put_checkpoint(&checkpoint(2, "copy"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let err = c
            .store
            .put_checkpoint(&AuditCheckpoint {
                log: "nobody".into(),
                ..checkpoint(1, "x")
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound("audit log")), "{err}");
        assert_eq!(
            c.store.list_checkpoints(log).await.unwrap(),
            vec![checkpoint(1, "one"), checkpoint(2, "two")]
        );
        assert!(c.store.list_checkpoints("other").await.unwrap().is_empty());
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = gatehouse_store::testing::TestDatabase::sqlite().await.unwrap();
                    let case = super::Case { store: db.store.clone(), clock: super::FakeClock::default() };
                    super::cases::$case(&case).await;
                    db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = gatehouse_store::testing::TestDatabase::postgres(stringify!($case)).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    let case = super::Case { store: db.store.clone(), clock: super::FakeClock::default() };
                    super::cases::$case(&case).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    progress_and_events_queue_their_records_in_their_transaction,
    appends_are_a_compare_and_set_on_the_size,
    the_outbox_reads_on_from_a_cursor,
    checkpoints_are_one_per_size,
    queued_records_keep_their_order,
);
