//! Sessions, their history, and skills. Always held in memory; with a data folder every change is also
//! written to an embedded redb database, so a restart finds everything again (section 10).
//!
//! Mutating calls write through to the database synchronously: callers on the async runtime run them
//! through `tokio::task::spawn_blocking` when a database is open (see [`Store::is_persistent`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const SESSIONS: TableDefinition<&str, &str> = TableDefinition::new("sessions");
const SKILLS: TableDefinition<&str, &str> = TableDefinition::new("skills");
const DB_FILE: &str = "wschat-reference.redb";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Db {
        path: PathBuf,
        source: Box<redb::Error>,
    },
    #[error("database {path}: corrupt record '{key}': {source}")]
    Corrupt {
        path: PathBuf,
        key: String,
        source: serde_json::Error,
    },
    #[error("database is closed")]
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub role: Role,
    pub content: String,
    pub turn_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub session_id: String,
    pub user_id: String,
    /// RFC 3339, UTC, whole seconds.
    pub created_at: String,
    pub title: Option<String>,
    pub history: Vec<HistoryEntry>,
    /// Counters behind `turn-N` and `req-N`; persisted so ids stay unique across restarts.
    pub turns_started: u64,
    pub requests_issued: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skill {
    pub name: String,
    pub keywords: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A skill as stored: `seq` keeps the registration order that `skill_match` events follow.
#[derive(Serialize, Deserialize)]
struct StoredSkill {
    seq: u64,
    #[serde(flatten)]
    skill: Skill,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    skills: Vec<Skill>,
}

pub struct Store {
    inner: Mutex<Inner>,
    /// `None` in memory-only mode, and after [`Store::close`].
    db: Mutex<Option<Database>>,
    path: Option<PathBuf>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving rather than cascade.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    pub fn in_memory() -> Store {
        Store {
            inner: Mutex::new(Inner::default()),
            db: Mutex::new(None),
            path: None,
        }
    }

    /// Opens (or creates) the database in `data_dir` and loads everything it holds.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let dberr = |e: redb::Error| StoreError::Db {
            path: path.clone(),
            source: Box::new(e),
        };
        let db = Database::create(&path).map_err(|e| dberr(e.into()))?;
        // Create both tables up front so that reads never meet a missing table.
        let tx = db.begin_write().map_err(|e| dberr(e.into()))?;
        tx.open_table(SESSIONS).map_err(|e| dberr(e.into()))?;
        tx.open_table(SKILLS).map_err(|e| dberr(e.into()))?;
        tx.commit().map_err(|e| dberr(e.into()))?;

        let mut inner = Inner::default();
        let rx = db.begin_read().map_err(|e| dberr(e.into()))?;
        let sessions = rx.open_table(SESSIONS).map_err(|e| dberr(e.into()))?;
        for row in sessions.iter().map_err(|e| dberr(e.into()))? {
            let (k, v) = row.map_err(|e| dberr(e.into()))?;
            let s: Session =
                serde_json::from_str(v.value()).map_err(|source| StoreError::Corrupt {
                    path: path.clone(),
                    key: k.value().to_owned(),
                    source,
                })?;
            inner.sessions.insert(s.session_id.clone(), s);
        }
        let skills = rx.open_table(SKILLS).map_err(|e| dberr(e.into()))?;
        let mut stored = Vec::new();
        for row in skills.iter().map_err(|e| dberr(e.into()))? {
            let (k, v) = row.map_err(|e| dberr(e.into()))?;
            let s: StoredSkill =
                serde_json::from_str(v.value()).map_err(|source| StoreError::Corrupt {
                    path: path.clone(),
                    key: k.value().to_owned(),
                    source,
                })?;
            stored.push(s);
        }
        stored.sort_by_key(|s| s.seq);
        inner.skills = stored.into_iter().map(|s| s.skill).collect();
        drop(sessions);
        drop(skills);
        drop(rx);
        Ok(Store {
            inner: Mutex::new(inner),
            db: Mutex::new(Some(db)),
            path: Some(path),
        })
    }

    pub fn is_persistent(&self) -> bool {
        lock(&self.db).is_some()
    }

    /// Releases the database file (a later `open` of the same folder in this process needs that).
    pub fn close(&self) {
        lock(&self.db).take();
    }

    /// Writes one record. Must be called with the database lock held (`db` is its content).
    fn write_locked(
        &self,
        db: &Option<Database>,
        table: TableDefinition<&str, &str>,
        key: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        let Some(db) = db.as_ref() else {
            return if self.path.is_some() {
                Err(StoreError::Closed)
            } else {
                Ok(())
            };
        };
        let path = self.path.clone().unwrap_or_default();
        let dberr = |e: redb::Error| StoreError::Db {
            path: path.clone(),
            source: Box::new(e),
        };
        let tx = db.begin_write().map_err(|e| dberr(e.into()))?;
        {
            let mut t = tx.open_table(table).map_err(|e| dberr(e.into()))?;
            t.insert(key, value).map_err(|e| dberr(e.into()))?;
        }
        tx.commit().map_err(|e| dberr(e.into()))
    }

    /// Applies `f` to a session and persists the result. Records are whole-session snapshots, so the
    /// database lock is held across the change and the write: two writers can then never store an
    /// older snapshot over a newer one.
    fn update_session<R>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Session) -> R,
    ) -> Result<Option<R>, StoreError> {
        let db = lock(&self.db);
        let (r, json) = {
            let mut inner = lock(&self.inner);
            let Some(s) = inner.sessions.get_mut(id) else {
                return Ok(None);
            };
            let r = f(s);
            (r, serde_json::to_string(s).expect("session serializes"))
        };
        self.write_locked(&db, SESSIONS, id, &json)?;
        Ok(Some(r))
    }

    pub fn create_session(
        &self,
        user_id: &str,
        title: Option<String>,
    ) -> Result<Session, StoreError> {
        let s = Session {
            session_id: uuid::Uuid::new_v4().to_string(),
            user_id: user_id.to_owned(),
            created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            title,
            history: Vec::new(),
            turns_started: 0,
            requests_issued: 0,
        };
        self.update_session_insert(&s)?;
        Ok(s)
    }

    fn update_session_insert(&self, s: &Session) -> Result<(), StoreError> {
        let db = lock(&self.db);
        lock(&self.inner)
            .sessions
            .insert(s.session_id.clone(), s.clone());
        self.write_locked(
            &db,
            SESSIONS,
            &s.session_id,
            &serde_json::to_string(s).expect("session serializes"),
        )
    }

    pub fn session(&self, id: &str) -> Option<Session> {
        lock(&self.inner).sessions.get(id).cloned()
    }

    pub fn session_owner(&self, id: &str) -> Option<String> {
        lock(&self.inner)
            .sessions
            .get(id)
            .map(|s| s.user_id.clone())
    }

    pub fn history_len(&self, id: &str) -> Option<usize> {
        lock(&self.inner).sessions.get(id).map(|s| s.history.len())
    }

    pub fn session_count(&self) -> usize {
        lock(&self.inner).sessions.len()
    }

    /// Allocates the next turn id and appends the user's entry. `None` if the session is gone.
    pub fn begin_turn(
        &self,
        session_id: &str,
        content: &str,
    ) -> Result<Option<String>, StoreError> {
        self.update_session(session_id, |s| {
            s.turns_started += 1;
            let turn_id = format!("turn-{}", s.turns_started);
            s.history.push(HistoryEntry {
                role: Role::User,
                content: content.to_owned(),
                turn_id: turn_id.clone(),
            });
            turn_id
        })
    }

    pub fn finish_turn(
        &self,
        session_id: &str,
        turn_id: &str,
        answer: &str,
    ) -> Result<(), StoreError> {
        self.update_session(session_id, |s| {
            s.history.push(HistoryEntry {
                role: Role::Assistant,
                content: answer.to_owned(),
                turn_id: turn_id.to_owned(),
            })
        })
        .map(|_| ())
    }

    /// The next `req-N` of a session. Persisted with the session's next write.
    pub fn next_request_id(&self, session_id: &str) -> String {
        let mut inner = lock(&self.inner);
        match inner.sessions.get_mut(session_id) {
            Some(s) => {
                s.requests_issued += 1;
                format!("req-{}", s.requests_issued)
            }
            None => format!("req-{}", uuid::Uuid::new_v4()),
        }
    }

    /// Registers a skill; a second registration under the same name replaces its keywords but keeps
    /// its place in the registration order.
    pub fn add_skill(&self, skill: Skill) -> Result<(), StoreError> {
        let db = lock(&self.db);
        let seq = {
            let mut inner = lock(&self.inner);
            match inner.skills.iter().position(|s| s.name == skill.name) {
                Some(i) => {
                    inner.skills[i] = skill.clone();
                    i
                }
                None => {
                    inner.skills.push(skill.clone());
                    inner.skills.len() - 1
                }
            }
        };
        let json = serde_json::to_string(&StoredSkill {
            seq: seq as u64,
            skill: skill.clone(),
        })
        .expect("skill serializes");
        self.write_locked(&db, SKILLS, &skill.name, &json)
    }

    pub fn skills(&self) -> Vec<Skill> {
        lock(&self.inner).skills.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wschat-store-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn memory_store_tracks_history_and_ids() {
        let st = Store::in_memory();
        let s = st.create_session("alice", Some("t".into())).unwrap();
        assert!(s.created_at.ends_with('Z'), "{}", s.created_at);
        assert_eq!(
            st.begin_turn(&s.session_id, "hi").unwrap().as_deref(),
            Some("turn-1")
        );
        st.finish_turn(&s.session_id, "turn-1", "You said: hi")
            .unwrap();
        assert_eq!(
            st.begin_turn(&s.session_id, "again").unwrap().as_deref(),
            Some("turn-2")
        );
        assert_eq!(st.history_len(&s.session_id), Some(3));
        assert_eq!(st.next_request_id(&s.session_id), "req-1");
        assert_eq!(st.next_request_id(&s.session_id), "req-2");
        assert_eq!(st.begin_turn("nope", "x").unwrap(), None);
        assert_eq!(st.session_owner(&s.session_id).as_deref(), Some("alice"));
    }

    #[test]
    fn skills_keep_registration_order_and_replace_by_name() {
        let st = Store::in_memory();
        for n in ["b", "a", "c"] {
            st.add_skill(Skill {
                name: n.into(),
                keywords: vec![n.into()],
                description: None,
            })
            .unwrap();
        }
        st.add_skill(Skill {
            name: "a".into(),
            keywords: vec!["z".into()],
            description: None,
        })
        .unwrap();
        let names: Vec<_> = st
            .skills()
            .into_iter()
            .map(|s| (s.name, s.keywords[0].clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("b".into(), "b".into()),
                ("a".into(), "z".into()),
                ("c".into(), "c".into())
            ]
        );
    }

    #[test]
    fn persistent_store_survives_reopen() {
        let dir = temp_dir("reopen");
        let id = {
            let st = Store::open(&dir).unwrap();
            assert!(st.is_persistent());
            let s = st.create_session("bob", None).unwrap();
            st.begin_turn(&s.session_id, "hello").unwrap();
            st.finish_turn(&s.session_id, "turn-1", "You said: hello")
                .unwrap();
            for n in ["x", "y"] {
                st.add_skill(Skill {
                    name: n.into(),
                    keywords: vec!["k".into()],
                    description: Some("d".into()),
                })
                .unwrap();
            }
            st.close();
            assert!(matches!(
                st.begin_turn(&s.session_id, "late"),
                Err(StoreError::Closed)
            ));
            s.session_id
        };
        let st = Store::open(&dir).unwrap();
        let s = st.session(&id).unwrap();
        // The turn attempted after close is in memory only, never on disk.
        assert_eq!(s.history.len(), 2);
        assert_eq!(s.history[1].role, Role::Assistant);
        assert_eq!(s.turns_started, 1);
        assert_eq!(
            st.skills()
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["x", "y"]
        );
        st.close();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
