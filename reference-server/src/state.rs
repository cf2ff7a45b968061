//! State shared by every request and socket: configuration, the store, counters, and the registry of
//! authenticated sockets that admin broadcasts reach.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::auth::VerifiedTokens;
use crate::config::Config;
use crate::store::Store;

/// What the writer task of a socket sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Text(String),
    /// Several text frames in order: a zero-pace token stream queues them in batches, one channel
    /// message and one writer wake-up per batch instead of per token.
    Frames(Vec<String>),
    /// A close frame; the writer stops after it.
    Close(u16, &'static str),
}

impl Outgoing {
    pub fn event(v: &Value) -> Outgoing {
        // The same text as `Value::to_string`, written into a byte buffer rather than through
        // `fmt::Display` piece by piece (~3x the instructions for a small event).
        Outgoing::Text(serde_json::to_string(v).unwrap_or_else(|_| v.to_string()))
    }
}

pub struct AppState {
    pub config: Config,
    /// Verifies tokens with `config.jwt_secret`, remembering the ones that passed.
    pub tokens: VerifiedTokens,
    pub store: Arc<Store>,
    pub started: Instant,
    /// Flips to `true` once: every socket then says `closing {shutdown}` and closes with 1001.
    pub shutdown: watch::Sender<bool>,
    /// Upgraded sockets alive right now (a watch so that shutdown can wait for zero).
    pub active_connections: watch::Sender<usize>,
    pub turns_in_flight: AtomicUsize,
    user_connections: Mutex<HashMap<String, usize>>,
    sockets: Mutex<HashMap<u64, mpsc::Sender<Outgoing>>>,
    next_conn_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AppState {
    pub fn new(config: Config, store: Store) -> Arc<AppState> {
        Arc::new(AppState {
            tokens: VerifiedTokens::new(&config.jwt_secret),
            config,
            store: Arc::new(store),
            started: Instant::now(),
            shutdown: watch::Sender::new(false),
            active_connections: watch::Sender::new(0),
            turns_in_flight: AtomicUsize::new(0),
            user_connections: Mutex::new(HashMap::new()),
            sockets: Mutex::new(HashMap::new()),
            next_conn_id: AtomicU64::new(1),
        })
    }

    /// Runs a store call; with a database it goes to the blocking pool, since redb commits fsync.
    pub async fn with_store<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> R + Send + 'static,
    ) -> R {
        let store = self.store.clone();
        if store.is_persistent() {
            match tokio::task::spawn_blocking(move || f(&store)).await {
                Ok(r) => r,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        } else {
            f(&store)
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Takes one of `user`'s socket slots, or `None` if the user holds the maximum already.
    pub fn reserve_user_slot(self: &Arc<Self>, user: &str) -> Option<UserSlot> {
        let mut m = lock(&self.user_connections);
        let n = m.entry(user.to_owned()).or_insert(0);
        if *n >= self.config.max_connections_per_user {
            return None;
        }
        *n += 1;
        Some(UserSlot {
            state: self.clone(),
            user: user.to_owned(),
        })
    }

    /// Counts a socket for `user` without enforcing the limit (first-message authentication, where
    /// the protocol has no refusal to give once the socket is open).
    pub fn track_user(self: &Arc<Self>, user: &str) -> UserSlot {
        *lock(&self.user_connections)
            .entry(user.to_owned())
            .or_insert(0) += 1;
        UserSlot {
            state: self.clone(),
            user: user.to_owned(),
        }
    }

    pub fn connection_opened(self: &Arc<Self>) -> ConnGuard {
        self.active_connections.send_modify(|n| *n += 1);
        ConnGuard {
            state: self.clone(),
            id: self.next_conn_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn register_socket(&self, id: u64, tx: mpsc::Sender<Outgoing>) {
        lock(&self.sockets).insert(id, tx);
    }

    /// Stops broadcasts to a socket that is ending: the registry's sender would otherwise keep the
    /// socket's writer waiting for more messages until its grace period runs out.
    pub fn unregister_socket(&self, id: u64) {
        lock(&self.sockets).remove(&id);
    }

    pub fn sockets(&self) -> Vec<mpsc::Sender<Outgoing>> {
        lock(&self.sockets).values().cloned().collect()
    }
}

/// One of a user's socket slots; released on drop.
pub struct UserSlot {
    state: Arc<AppState>,
    user: String,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut m = lock(&self.state.user_connections);
        if let Some(n) = m.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

/// An open socket: counted while alive, unregistered from broadcasts on drop.
pub struct ConnGuard {
    state: Arc<AppState>,
    pub id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        lock(&self.state.sockets).remove(&self.id);
        self.state
            .active_connections
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Counts a running turn for `/api/v1/status`.
pub struct TurnGuard(Arc<AppState>);

impl TurnGuard {
    pub fn new(state: &Arc<AppState>) -> TurnGuard {
        state.turns_in_flight.fetch_add(1, Ordering::Relaxed);
        TurnGuard(state.clone())
    }
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        self.0.turns_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_slots_are_limited_and_released() {
        let config = Config {
            max_connections_per_user: 2,
            ..Config::default()
        };
        let st = AppState::new(config, Store::in_memory());
        let a = st.reserve_user_slot("u").unwrap();
        let _b = st.reserve_user_slot("u").unwrap();
        assert!(st.reserve_user_slot("u").is_none());
        assert!(st.reserve_user_slot("other").is_some());
        drop(a);
        assert!(st.reserve_user_slot("u").is_some());
    }

    #[test]
    fn connection_guard_counts_and_unregisters() {
        let st = AppState::new(Config::default(), Store::in_memory());
        let g = st.connection_opened();
        let (tx, _rx) = mpsc::channel(1);
        st.register_socket(g.id, tx);
        assert_eq!(
            (*st.active_connections.borrow(), st.sockets().len()),
            (1, 1)
        );
        drop(g);
        assert_eq!(
            (*st.active_connections.borrow(), st.sockets().len()),
            (0, 0)
        );
    }
}
