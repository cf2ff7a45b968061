//! Recordings as the inference sees them: connections of events, cut into exchanges.
//!
//! An *exchange* is one thing the client sent and every event the server sent after it, until the
//! client sent the next thing. The events before the first send are the connection's *greeting*.
//! An exchange is *complete* when the server had said all it would: the next send came after a
//! pause (a scripted `record --interactive` session waits for silence before it sends again), or
//! its last event is one that ends other complete exchanges of the same request. An exchange cut
//! short (a `cancel` sent mid-stream) only leads to the next one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;

use crate::codec::{self, Codec, Codecs, TextEvent};
use crate::json::pointer_get;
use crate::record::transcript::{CloseRec, Dir, HandshakeRec, HttpRec, Kind, TranscriptFile};

/// A pause this long before the next send means the server had finished (the interactive
/// recorder settles for 500 ms by default).
pub const COMPLETE_GAP_MS: f64 = 200.0;

/// One frame of a connection, with the event it is under the detected codecs.
#[derive(Debug, Clone)]
pub struct Frame {
    pub seq: u64,
    pub t_ms: f64,
    pub dir: Dir,
    pub kind: Kind,
    /// The text of a text frame, as recorded.
    pub text: Option<String>,
    /// The payload of binary, ping and pong frames.
    pub bytes: Option<Vec<u8>>,
    pub close: Option<CloseRec>,
    /// The event (JSON object, or the `$text` / `$binary` view) for text and binary frames; `None`
    /// for control frames and for text that is not JSON under a JSON codec.
    pub event: Option<Value>,
    /// The discriminator value of `event`.
    pub ty: Option<String>,
    /// `event` is a JSON object sent or received as such (not a view).
    pub is_json: bool,
}

/// One WebSocket connection of a recording.
#[derive(Debug, Clone)]
pub struct Connection {
    pub name: String,
    /// The recording it comes from (its file stem).
    pub source: String,
    pub target: String,
    pub handshake: HandshakeRec,
    pub frames: Vec<Frame>,
}

impl Connection {
    pub fn accepted(&self) -> bool {
        self.handshake.response.status == 101
    }
}

/// One HTTP exchange of a recording, with when it was made.
#[derive(Debug, Clone)]
pub struct HttpCall {
    pub t_ms: f64,
    pub rec: HttpRec,
}

/// One recording.
#[derive(Debug, Clone)]
pub struct Recording {
    pub path: PathBuf,
    pub name: String,
    pub connections: Vec<Connection>,
    pub http: Vec<HttpCall>,
}

/// An exchange of a connection (see the module docs): `sent` is the frame index of what the client
/// sent (`None`: the greeting), `replies` the indexes of the server's events after it.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub sent: Option<usize>,
    pub replies: Vec<usize>,
    /// The server's close frame, when it closed during this exchange.
    pub server_close: Option<usize>,
    /// The transport ended without a close frame during this exchange.
    pub ended: bool,
    pub complete: bool,
    /// Pongs received during the exchange.
    pub pongs: Vec<usize>,
}

/// Everything the inference reads: the recordings, the discriminator and codecs it detected, the
/// heartbeat types, and every connection cut into exchanges.
#[derive(Debug, Clone)]
pub struct Observed {
    pub recordings: Vec<Recording>,
    /// JSON pointer of the server's discriminator (`/type`).
    pub discriminator: String,
    /// The client's discriminator; `None` when the client's messages carry none.
    pub client_discriminator: Option<String>,
    pub codecs: Codecs,
    /// Received types that arrive on their own, at a steady pace (server heartbeats).
    pub heartbeats: BTreeSet<String>,
    /// `(recording, connection)` → its exchanges.
    pub exchanges: BTreeMap<(usize, usize), Vec<Exchange>>,
}

impl Observed {
    pub fn conn(&self, r: usize, c: usize) -> &Connection {
        &self.recordings[r].connections[c]
    }

    /// Every received event (not a heartbeat... included), with its type.
    pub fn received(&self) -> impl Iterator<Item = &Frame> + '_ {
        self.recordings
            .iter()
            .flat_map(|r| r.connections.iter())
            .flat_map(|c| c.frames.iter())
            .filter(|f| f.dir == Dir::Received && f.event.is_some())
    }

    /// Every sent event.
    pub fn sent(&self) -> impl Iterator<Item = &Frame> + '_ {
        self.recordings
            .iter()
            .flat_map(|r| r.connections.iter())
            .flat_map(|c| c.frames.iter())
            .filter(|f| f.dir == Dir::Sent && f.event.is_some())
    }

    /// The number of connections that were accepted.
    pub fn accepted_connections(&self) -> usize {
        self.recordings
            .iter()
            .flat_map(|r| r.connections.iter())
            .filter(|c| c.accepted())
            .count()
    }
}

/// Raw frames of a recording, before codecs are known.
fn raw_connections(t: &TranscriptFile, source: &str) -> Vec<Connection> {
    let mut out = Vec::new();
    for name in t.connection_order() {
        let Some(hs) = t.handshake(&name) else {
            continue;
        };
        let target = if name == crate::record::transcript::MAIN {
            t.header.target.clone()
        } else {
            t.header
                .connections
                .get(&name)
                .map(|c| c.target.clone())
                .unwrap_or_default()
        };
        let frames = t
            .records_of(&name)
            .map(|r| Frame {
                seq: r.seq,
                t_ms: r.t_ms,
                dir: r.dir,
                kind: r.kind,
                text: r.text.clone(),
                bytes: r.base64.as_ref().and_then(|b| B64.decode(b).ok()),
                close: r.close.clone(),
                event: None,
                ty: None,
                is_json: false,
            })
            .collect();
        out.push(Connection {
            name: name.clone(),
            source: source.to_owned(),
            target,
            handshake: hs.clone(),
            frames,
        });
    }
    out
}

/// Builds the observation of `transcripts`: codecs, discriminators, events, heartbeats,
/// exchanges. `discriminator` forces the server's discriminator (a JSON pointer).
pub fn observe(transcripts: &[TranscriptFile], discriminator: Option<&str>) -> Observed {
    let mut recordings: Vec<Recording> = transcripts
        .iter()
        .map(|t| {
            let name = t
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| t.scenario_name());
            Recording {
                path: t.path.clone(),
                connections: raw_connections(t, &name),
                http: t
                    .http_exchanges()
                    .map(|(r, h)| HttpCall {
                        t_ms: r.t_ms,
                        rec: h.clone(),
                    })
                    .collect(),
                name,
            }
        })
        .collect();
    let codecs = detect_codecs(&recordings);
    let parsed = |dir: Dir| -> Vec<Value> {
        recordings
            .iter()
            .flat_map(|r| r.connections.iter())
            .flat_map(|c| c.frames.iter())
            .filter(|f| f.dir == dir && f.kind == Kind::Text)
            .filter_map(|f| f.text.as_deref())
            .filter_map(|t| serde_json::from_str::<Value>(t).ok())
            .filter(Value::is_object)
            .collect()
    };
    let server_objects = parsed(Dir::Received);
    let client_objects = parsed(Dir::Sent);
    let disc = discriminator
        .map(|d| {
            if d.starts_with('/') {
                d.to_owned()
            } else {
                format!("/{d}")
            }
        })
        .or_else(|| super::detect::discriminator(&server_objects))
        .or_else(|| super::detect::discriminator(&client_objects))
        .unwrap_or_else(|| "/type".to_owned());
    let client_disc = super::detect::present_in_most(&client_objects, &disc).then(|| disc.clone());
    for rec in &mut recordings {
        for conn in &mut rec.connections {
            for f in &mut conn.frames {
                let (codec, d) = match f.dir {
                    Dir::Received => (codecs.server, disc.as_str()),
                    Dir::Sent => (codecs.client, client_disc.as_deref().unwrap_or(&disc)),
                };
                match f.kind {
                    Kind::Text => {
                        let text = f.text.as_deref().unwrap_or("");
                        match codec::text_event(codec, d, text, None) {
                            TextEvent::Json(v) if v.is_object() => {
                                f.is_json = true;
                                f.event = Some(v);
                            }
                            TextEvent::Text(v) => f.event = Some(v),
                            _ => {}
                        }
                    }
                    Kind::Binary if codec.binary_events() => {
                        f.event = Some(codec::binary_view(d, f.bytes.as_deref().unwrap_or(&[])));
                    }
                    _ => {}
                }
                let ty_ptr = if f.is_json { d } else { disc.as_str() };
                f.ty = f
                    .event
                    .as_ref()
                    .and_then(|e| pointer_get(e, ty_ptr))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
        }
    }
    let heartbeats = detect_heartbeats(&recordings);
    let mut exchanges = BTreeMap::new();
    for (ri, rec) in recordings.iter().enumerate() {
        for (ci, conn) in rec.connections.iter().enumerate() {
            exchanges.insert((ri, ci), cut(conn, &heartbeats));
        }
    }
    complete_by_terminal(&recordings, &mut exchanges);
    Observed {
        recordings,
        discriminator: disc,
        client_discriminator: client_disc,
        codecs,
        heartbeats,
        exchanges,
    }
}

/// Per side: `json` when every text frame is a JSON object (and no binary frame came), `text`
/// when none is, `mixed` otherwise. The client side is `json` as soon as it sent one JSON object
/// (a client that sends broken JSON on purpose still speaks JSON).
fn detect_codecs(recs: &[Recording]) -> Codecs {
    let mut server = (0usize, 0usize, 0usize); // json objects, other text, binary
    let mut client = (0usize, 0usize);
    for f in recs
        .iter()
        .flat_map(|r| r.connections.iter())
        .flat_map(|c| c.frames.iter())
    {
        let is_obj = || {
            f.text
                .as_deref()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
                .is_some_and(|v| v.is_object())
        };
        match (f.dir, f.kind) {
            (Dir::Received, Kind::Text) if is_obj() => server.0 += 1,
            (Dir::Received, Kind::Text) => server.1 += 1,
            (Dir::Received, Kind::Binary) => server.2 += 1,
            (Dir::Sent, Kind::Text) if is_obj() => client.0 += 1,
            (Dir::Sent, Kind::Text) => client.1 += 1,
            _ => {}
        }
    }
    let server = match server {
        (_, 0, 0) => Codec::Json,
        (0, _, _) => Codec::Text,
        _ => Codec::Mixed,
    };
    let client = if client.0 > 0 || client.1 == 0 {
        Codec::Json
    } else {
        Codec::Text
    };
    Codecs { server, client }
}

/// Received types that are heartbeats: named so (`heartbeat`, `keepalive`, `ping`), or arriving
/// at least three times, each after a silence of 400 ms or more, at a steady pace (every interval
/// within 25% of the median).
fn detect_heartbeats(recs: &[Recording]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut times: BTreeMap<&str, Vec<(usize, f64, f64)>> = BTreeMap::new(); // conn id, t, gap before
    let mut conn_id = 0;
    for conn in recs.iter().flat_map(|r| r.connections.iter()) {
        conn_id += 1;
        let mut prev: Option<f64> = None;
        for f in &conn.frames {
            if f.dir == Dir::Received {
                if let Some(ty) = f.ty.as_deref() {
                    let gap = prev.map(|p| f.t_ms - p).unwrap_or(0.0);
                    times.entry(ty).or_default().push((conn_id, f.t_ms, gap));
                }
            }
            prev = Some(f.t_ms);
        }
    }
    for (ty, occ) in times {
        let lower = ty.to_ascii_lowercase();
        if [
            "heartbeat",
            "keepalive",
            "keep_alive",
            "keep-alive",
            "ping",
            "hb",
        ]
        .contains(&lower.as_str())
        {
            out.insert(ty.to_owned());
            continue;
        }
        if occ.len() < 3 || occ.iter().any(|o| o.2 < 400.0) {
            continue;
        }
        let mut intervals: Vec<f64> = occ
            .windows(2)
            .filter(|w| w[0].0 == w[1].0)
            .map(|w| w[1].1 - w[0].1)
            .collect();
        if intervals.len() < 2 {
            continue;
        }
        intervals.sort_by(f64::total_cmp);
        let median = intervals[intervals.len() / 2];
        if median > 0.0
            && intervals
                .iter()
                .all(|i| (i - median).abs() <= 0.25 * median)
        {
            out.insert(ty.to_owned());
        }
    }
    out
}

/// Cuts a connection into its greeting and exchanges; completeness by timing only.
fn cut(conn: &Connection, heartbeats: &BTreeSet<String>) -> Vec<Exchange> {
    let new = |sent| Exchange {
        sent,
        replies: Vec::new(),
        server_close: None,
        ended: false,
        complete: false,
        pongs: Vec::new(),
    };
    let mut out = vec![new(None)];
    for (i, f) in conn.frames.iter().enumerate() {
        let cur = out.last_mut().expect("one exchange at least");
        match (f.dir, f.kind) {
            (Dir::Sent, Kind::Text | Kind::Binary | Kind::Ping | Kind::Close) => {
                out.push(new(Some(i)))
            }
            (Dir::Received, Kind::Pong) => cur.pongs.push(i),
            (Dir::Received, Kind::Close) => cur.server_close = Some(i),
            (_, Kind::End) => cur.ended = true,
            (Dir::Received, _) if f.event.is_some() => {
                if !f.ty.as_deref().is_some_and(|t| heartbeats.contains(t)) {
                    cur.replies.push(i);
                }
            }
            _ => {}
        }
    }
    // Timing: complete when what followed the last reply came after a pause (or nothing followed).
    let n = out.len();
    for k in 0..n {
        let last = out[k]
            .replies
            .last()
            .copied()
            .or(out[k].sent)
            .map(|i| conn.frames[i].t_ms);
        let next = out
            .get(k + 1)
            .and_then(|x| x.sent)
            .map(|i| conn.frames[i].t_ms);
        out[k].complete = match (last, next) {
            (_, None) => true,
            (Some(l), Some(nx)) => nx - l >= COMPLETE_GAP_MS,
            (None, Some(_)) => true,
        } || out[k].server_close.is_some()
            || out[k].ended;
    }
    out
}

/// The type of an exchange's request: the sent frame's type, `$text` for text, `$binary`, `ping`,
/// `close`; `None` for the greeting.
pub fn request_type(conn: &Connection, x: &Exchange) -> Option<String> {
    let f = &conn.frames[x.sent?];
    Some(match f.kind {
        Kind::Ping => "$ping".to_owned(),
        Kind::Close => "$close".to_owned(),
        _ => f.ty.clone().unwrap_or_else(|| {
            if f.kind == Kind::Binary {
                "$binary".to_owned()
            } else {
                "$not-json".to_owned()
            }
        }),
    })
}

/// Second pass: an exchange whose last reply has a type that ends complete exchanges of the same
/// request type (and never appears before their end) is complete too, whatever the timing (a
/// recording made by `record` from scenarios sends again without a pause).
fn complete_by_terminal(recs: &[Recording], all: &mut BTreeMap<(usize, usize), Vec<Exchange>>) {
    let mut ends: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut inner: BTreeSet<String> = BTreeSet::new();
    for (&(r, c), xs) in all.iter() {
        let conn = &recs[r].connections[c];
        for x in xs.iter().filter(|x| x.complete) {
            let Some(req) = request_type(conn, x) else {
                continue;
            };
            if let Some((&last, rest)) = x.replies.split_last() {
                if let Some(t) = &conn.frames[last].ty {
                    ends.entry(req).or_default().insert(t.clone());
                }
                for &i in rest {
                    if let Some(t) = &conn.frames[i].ty {
                        inner.insert(t.clone());
                    }
                }
            }
        }
    }
    for (&(r, c), xs) in all.iter_mut() {
        let conn = &recs[r].connections[c];
        for x in xs.iter_mut().filter(|x| !x.complete) {
            let Some(req) = request_type(conn, x) else {
                continue;
            };
            let Some(&last) = x.replies.last() else {
                continue;
            };
            if let Some(t) = &conn.frames[last].ty {
                if ends.get(&req).is_some_and(|e| e.contains(t)) && !inner.contains(t) {
                    x.complete = true;
                }
            }
        }
    }
}

/// The turns of a connection: each complete exchange together with the cut ones just before it
/// (a message cut short by its `cancel` is one turn with the cancel). Indexes into `xs`; the
/// greeting is never part of a turn. A trailing run of cut exchanges is a turn of its own.
pub fn turns(xs: &[Exchange]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for (i, x) in xs.iter().enumerate().skip(1) {
        cur.push(i);
        if x.complete {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The replies of a turn, in order.
pub fn turn_replies(xs: &[Exchange], turn: &[usize]) -> Vec<usize> {
    turn.iter()
        .flat_map(|&i| xs[i].replies.iter().copied())
        .collect()
}
