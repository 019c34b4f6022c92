//! The audit trail: authentication results, user and grant changes, and denied
//! statements. Every event is logged (target `pond::audit`) and queued for the
//! engine, which stores it in a table superusers can query.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use parking_lot::Mutex;
use serde::Serialize;

/// One audit event. `detail` never holds a secret.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: String,
    /// `login`, `auth_failed`, `user_change`, `grant_change`, `token_change`, `denied`, ...
    pub kind: &'static str,
    pub user: Option<String>,
    /// Client address, when known.
    pub source: Option<String>,
    pub protocol: Option<String>,
    pub success: bool,
    pub detail: String,
}

impl AuditEvent {
    pub fn new(kind: &'static str, success: bool, detail: impl Into<String>) -> Self {
        Self { at: pond_meta::now_rfc3339(), kind, user: None, source: None, protocol: None, success, detail: detail.into() }
    }

    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    pub fn source(mut self, source: Option<&str>) -> Self {
        self.source = source.map(str::to_string);
        self
    }

    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocol = Some(protocol.to_string());
        self
    }
}

/// Where events go: the log at once, the audit table through a bounded queue.
pub struct Audit {
    tx: SyncSender<AuditEvent>,
    rx: Mutex<Option<Receiver<AuditEvent>>>,
    dropped: AtomicU64,
}

impl Default for Audit {
    fn default() -> Self {
        let (tx, rx) = sync_channel(65_536);
        Self { tx, rx: Mutex::new(Some(rx)), dropped: AtomicU64::new(0) }
    }
}

impl Audit {
    pub fn record(&self, event: AuditEvent) {
        tracing::info!(
            target: "pond::audit",
            kind = event.kind,
            user = event.user.as_deref().unwrap_or(""),
            source = event.source.as_deref().unwrap_or(""),
            protocol = event.protocol.as_deref().unwrap_or(""),
            success = event.success,
            detail = %event.detail,
            "audit"
        );
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                // The log line above still has it; say that the table misses some.
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "audit queue full: events are in the log but not in the audit table");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// The receiving end, taken once by the component that stores events.
    pub fn take_receiver(&self) -> Option<Receiver<AuditEvent>> {
        self.rx.lock().take()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
