//! What a registry call answers, for the server to render (JSON, or a
//! Table for kubectl): one object, a list, or a stream of watch events.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::status::ApiError;
use crate::storage::cache::{CachedObject, EventType};

pub enum Output {
    Object { code: u16, obj: Value, warnings: Vec<String> },
    List { rv: i64, items: Vec<Arc<CachedObject>>, continue_token: Option<String> },
    Watch(mpsc::Receiver<WatchEvent>),
}

/// One event on a watch stream.
pub enum WatchEvent {
    Event(EventType, Arc<CachedObject>),
    Bookmark(i64),
    Error(ApiError),
}
