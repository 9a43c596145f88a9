//! Server-side apply and field management (kube-apiserver's `fieldmanager`
//! on top of `structured-merge-diff`).
//!
//! `PATCH` with `Content-Type: application/apply-patch+yaml` (`kubectl apply
//! --server-side`, kube-rs `Patch::Apply`) sends the *whole intent* of one
//! field manager (`?fieldManager=`): the fields it wants set, and by
//! omission the fields it no longer wants. The server keeps, per object, who
//! set what in `metadata.managedFields`: one entry per manager and operation
//! (`Apply` or `Update`), each with a `FieldsV1` set of field paths.
//!
//! An apply then:
//! 1. **creates** the object when it does not exist yet (with the applier
//!    owning every field it sent);
//! 2. otherwise looks for **conflicts**: a field the applier sets to a value
//!    different from the live one while another manager owns it. Conflicts
//!    are a 409 naming each manager and field, unless `?force=true`, which
//!    takes those fields over;
//! 3. **merges** the applied configuration into the live object: maps field
//!    by field, lists of objects by their keys (containers by `name`, ports
//!    by port and protocol, ...), other lists and scalars replaced;
//! 4. **removes** the fields this manager applied last time, does not apply
//!    now, and nobody else owns;
//! 5. records the manager's new field set.
//!
//! Other writes (create, update, patch, the status subresource) on an object
//! with managed fields are recorded as `Update` entries: their manager takes
//! over the fields whose values they changed.
//!
//! Where rkube differs: kube-apiserver records `Update` entries from an
//! object's very first write; rkube starts keeping `managedFields` at the
//! first apply, so ordinary writes (the controllers' and agents' status
//! updates, which are most writes) pay nothing for field management. So an
//! apply does not conflict with changes made *before* the object was first
//! applied. List and map semantics come from a table (the same merge keys
//! as strategic merge patch, `patch.rs`) rather than from OpenAPI extensions,
//! which the k8s-openapi schemas do not carry.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::patch::{is_merged_primitive_list, merge_key};

/// The PATCH content type of server-side apply.
pub const CONTENT_TYPE: &str = "application/apply-patch+yaml";
use crate::status::ApiError;

/// Metadata fields that identify or are set by the server: never owned.
const SERVER_METADATA: &[&str] =
    &["name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"];

// ----- field sets ------------------------------------------------------------

/// A set of field paths as a tree. A node is in the set itself (`own`:
/// FieldsV1's `"."`, or an empty leaf) and/or through its children, keyed
/// as FieldsV1 keys them: `f:<field>`, `k:<key fields as JSON>` (an item of
/// a keyed list), `v:<value as JSON>` (an item of a set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    own: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    fn leaf() -> Self {
        FieldSet { own: true, children: BTreeMap::new() }
    }

    pub fn is_empty(&self) -> bool {
        !self.own && self.children.is_empty()
    }

    pub fn from_fields_v1(v: &Value) -> Self {
        let mut s = FieldSet::default();
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m {
                    if k == "." {
                        s.own = true;
                    } else {
                        s.children.insert(k.clone(), FieldSet::from_fields_v1(child));
                    }
                }
            }
            _ => s.own = true,
        }
        s
    }

    /// The FieldsV1 form of a set's children (the root itself is never "own").
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.own && !self.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (k, c) in &self.children {
            m.insert(k.clone(), c.to_fields_v1());
        }
        Value::Object(m)
    }

    pub fn union(&mut self, other: &FieldSet) {
        self.own |= other.own;
        for (k, c) in &other.children {
            self.children.entry(k.clone()).or_default().union(c);
        }
    }

    /// `self` without what `other` has.
    pub fn minus(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet { own: self.own && !other.own, children: BTreeMap::new() };
        for (k, c) in &self.children {
            let rest = match other.children.get(k) {
                Some(o) => c.minus(o),
                None => c.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(k.clone(), rest);
            }
        }
        out
    }

    /// Every path in the set (a node that is its own member).
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.own && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (k, c) in &self.children {
            prefix.push(k.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }

    /// Whether `path` is in the set, or under a node the set owns whole (a
    /// leaf: an atomic value).
    pub fn covers(&self, path: &[String]) -> bool {
        let mut node = self;
        for (i, k) in path.iter().enumerate() {
            match node.children.get(k) {
                Some(c) => node = c,
                None => return i > 0 && node.own && node.children.is_empty(),
            }
        }
        node.own
    }

    /// Whether anything at or under `path` is in the set.
    pub fn touches(&self, path: &[String]) -> bool {
        let mut node = self;
        for k in path {
            match node.children.get(k) {
                Some(c) => node = c,
                None => return false,
            }
        }
        true
    }

    pub fn remove(&mut self, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            self.own = false;
            return;
        };
        if let Some(c) = self.children.get_mut(first) {
            c.remove(rest);
            if c.is_empty() {
                self.children.remove(first);
            }
        }
    }
}

// ----- which fields a value sets ---------------------------------------------

/// The keys of a list's items, when the list is a map keyed by them.
fn list_keys(kind: &str, parent: &str, field: &str) -> Option<Vec<&'static str>> {
    // Server-side apply keys ports by port *and* protocol (strategic merge
    // patch by port only).
    if field == "ports" {
        if kind == "Service" && parent == "spec" {
            return Some(vec!["port", "protocol"]);
        }
        if parent.ends_with("containers") || parent.ends_with("initContainers") || parent.ends_with("ephemeralContainers") {
            return Some(vec!["containerPort", "protocol"]);
        }
    }
    merge_key(kind, parent, field).map(|k| vec![k])
}

/// Maps set or replaced whole (`+structType=atomic`): label selectors of
/// workloads (a Service's `spec.selector` is a plain map).
fn is_atomic_map(kind: &str, field: &str) -> bool {
    field == "selector" && kind != "Service"
}

fn item_key(item: &Value, keys: &[&str]) -> String {
    // FieldsV1 writes the key fields sorted by name.
    let mut sorted: Vec<&&str> = keys.iter().collect();
    sorted.sort();
    let parts: Vec<String> = sorted.iter().map(|k| format!("{}:{}", json!(k), key_value(item, k))).collect();
    format!("k:{{{}}}", parts.join(","))
}

/// A key field's value; a missing `protocol` is its default, TCP (the
/// schema's default, which the server fills in before storing).
fn key_value(item: &Value, key: &str) -> Value {
    match item.get(key) {
        Some(v) => v.clone(),
        None if key == "protocol" => json!("TCP"),
        None => Value::Null,
    }
}

/// The fields `obj` (an object) sets.
pub fn fields_of(obj: &Value, kind: &str, path: &str) -> FieldSet {
    let mut s = FieldSet::default();
    let Some(m) = obj.as_object() else { return s };
    for (k, v) in m {
        if path.is_empty() && (k == "apiVersion" || k == "kind") {
            continue;
        }
        if path == "metadata" && SERVER_METADATA.contains(&k.as_str()) {
            continue;
        }
        let node = field_node(v, kind, path, k);
        if !node.is_empty() {
            s.children.insert(format!("f:{k}"), node);
        }
    }
    s
}

fn child_path(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    }
}

fn field_node(v: &Value, kind: &str, parent: &str, field: &str) -> FieldSet {
    let path = child_path(parent, field);
    match v {
        Value::Object(m) if !m.is_empty() && !is_atomic_map(kind, field) => {
            let s = fields_of(v, kind, &path);
            // (metadata with only server-set fields is nobody's)
            if s.is_empty() && path != "metadata" {
                FieldSet::leaf()
            } else {
                s
            }
        }
        Value::Array(items) => {
            if let Some(keys) = list_keys(kind, parent, field) {
                let mut s = FieldSet::default();
                for it in items {
                    let mut item = fields_of(it, kind, &path);
                    item.own = true;
                    s.children.insert(item_key(it, &keys), item);
                }
                if s.children.is_empty() {
                    s.own = true;
                }
                s
            } else if is_merged_primitive_list(field) {
                let mut s = FieldSet::default();
                for it in items {
                    s.children.insert(format!("v:{it}"), FieldSet::leaf());
                }
                if s.children.is_empty() {
                    s.own = true;
                }
                s
            } else {
                FieldSet::leaf()
            }
        }
        _ => FieldSet::leaf(),
    }
}

/// The fields whose values differ between `old` and `new` (`changed`: set
/// or changed in `new`; `gone`: in `old` only).
pub fn diff(old: &Value, new: &Value, kind: &str, path: &str) -> (FieldSet, FieldSet) {
    let (mut changed, mut gone) = (FieldSet::default(), FieldSet::default());
    let empty = Map::new();
    let (om, nm) = (old.as_object().unwrap_or(&empty), new.as_object().unwrap_or(&empty));
    for (k, nv) in nm {
        if (path.is_empty() && (k == "apiVersion" || k == "kind")) || (path == "metadata" && SERVER_METADATA.contains(&k.as_str())) {
            continue;
        }
        let key = format!("f:{k}");
        match om.get(k) {
            None => {
                changed.children.insert(key, field_node(nv, kind, path, k));
            }
            Some(ov) if ov == nv => {}
            Some(ov) => {
                let (c, g) = diff_value(ov, nv, kind, path, k);
                if !c.is_empty() {
                    changed.children.insert(key.clone(), c);
                }
                if !g.is_empty() {
                    gone.children.insert(key, g);
                }
            }
        }
    }
    for (k, ov) in om {
        if !nm.contains_key(k) && !(path == "metadata" && SERVER_METADATA.contains(&k.as_str())) {
            let mut node = field_node(ov, kind, path, k);
            node.own = true;
            gone.children.insert(format!("f:{k}"), node);
        }
    }
    (changed, gone)
}

fn diff_value(ov: &Value, nv: &Value, kind: &str, parent: &str, field: &str) -> (FieldSet, FieldSet) {
    let path = child_path(parent, field);
    match (ov, nv) {
        (Value::Object(o), Value::Object(n)) if !o.is_empty() && !n.is_empty() && !is_atomic_map(kind, field) => diff(ov, nv, kind, &path),
        (Value::Array(o), Value::Array(n)) => {
            if let Some(keys) = list_keys(kind, parent, field) {
                let (mut changed, mut gone) = (FieldSet::default(), FieldSet::default());
                for it in n {
                    let key = item_key(it, &keys);
                    match o.iter().find(|x| item_key(x, &keys) == key) {
                        None => {
                            let mut node = fields_of(it, kind, &path);
                            node.own = true;
                            changed.children.insert(key, node);
                        }
                        Some(prev) if prev == it => {}
                        Some(prev) => {
                            let (c, g) = diff(prev, it, kind, &path);
                            if !c.is_empty() {
                                changed.children.insert(key.clone(), c);
                            }
                            if !g.is_empty() {
                                gone.children.insert(key, g);
                            }
                        }
                    }
                }
                for it in o {
                    let key = item_key(it, &keys);
                    if !n.iter().any(|x| item_key(x, &keys) == key) {
                        let mut node = fields_of(it, kind, &path);
                        node.own = true;
                        gone.children.insert(key, node);
                    }
                }
                (changed, gone)
            } else if is_merged_primitive_list(field) {
                let (mut changed, mut gone) = (FieldSet::default(), FieldSet::default());
                for it in n.iter().filter(|x| !o.contains(x)) {
                    changed.children.insert(format!("v:{it}"), FieldSet::leaf());
                }
                for it in o.iter().filter(|x| !n.contains(x)) {
                    gone.children.insert(format!("v:{it}"), FieldSet::leaf());
                }
                (changed, gone)
            } else {
                (FieldSet::leaf(), FieldSet::default())
            }
        }
        _ => {
            let mut c = field_node(nv, kind, parent, field);
            c.own = true;
            (c, FieldSet::default())
        }
    }
}

// ----- values at paths -------------------------------------------------------

/// The value at a field path, if present (`v:` set items: the item itself).
fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for el in path {
        if el == "." {
            continue;
        }
        cur = if let Some(f) = el.strip_prefix("f:") {
            cur.get(f)?
        } else if let Some(k) = el.strip_prefix("k:") {
            let want: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur.as_array()?.iter().find(|it| want.iter().all(|(kk, kv)| key_value(it, kk) == *kv))?
        } else if let Some(v) = el.strip_prefix("v:") {
            let want: Value = serde_json::from_str(v).ok()?;
            cur.as_array()?.iter().find(|it| **it == want)?
        } else {
            return None;
        };
    }
    Some(cur)
}

/// A path as structured-merge-diff prints it: `.spec.replicas`,
/// `.spec.containers[name="web"].image`, `.metadata.finalizers[="x"]`.
pub fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

// ----- merge and removal -----------------------------------------------------

/// Merges an applied configuration into `live`.
pub fn merge(live: &mut Value, applied: &Value, kind: &str, path: &str) {
    let Some(am) = applied.as_object() else { return };
    if !live.is_object() {
        *live = Value::Object(Map::new());
    }
    for (k, av) in am {
        if path == "metadata" && SERVER_METADATA.contains(&k.as_str()) {
            continue;
        }
        let lm = live.as_object_mut().expect("made an object above");
        let child = child_path(path, k);
        match (lm.get_mut(k), av) {
            (Some(lv @ Value::Object(_)), Value::Object(m)) if !m.is_empty() && !is_atomic_map(kind, k) => merge(lv, av, kind, &child),
            (Some(Value::Array(list)), Value::Array(items)) if list_keys(kind, path, k).is_some() => {
                let keys = list_keys(kind, path, k).expect("checked");
                for it in items {
                    let key = item_key(it, &keys);
                    match list.iter_mut().find(|x| item_key(x, &keys) == key) {
                        Some(x) => merge(x, it, kind, &child),
                        None => list.push(it.clone()),
                    }
                }
            }
            (Some(Value::Array(list)), Value::Array(items)) if is_merged_primitive_list(k) => {
                for it in items {
                    if !list.contains(it) {
                        list.push(it.clone());
                    }
                }
            }
            _ => {
                lm.insert(k.clone(), av.clone());
            }
        }
    }
}

/// Removes the fields of `gone` from `obj`; a keyed list item or a set item
/// goes only if `others` own nothing in it.
fn remove_fields(obj: &mut Value, gone: &FieldSet, others: &FieldSet) {
    for (k, g) in &gone.children {
        let o = others.children.get(k).cloned().unwrap_or_default();
        if let Some(f) = k.strip_prefix("f:") {
            let Some(m) = obj.as_object_mut() else { continue };
            if g.own && o.is_empty() {
                m.remove(f);
            } else if let Some(child) = m.get_mut(f) {
                let was_empty = child.as_object().is_some_and(|c| c.is_empty());
                remove_fields(child, g, &o);
                // A map emptied by the removal goes too (Go drops empty maps when encoding).
                if !was_empty && child.as_object().is_some_and(|c| c.is_empty()) {
                    m.remove(f);
                }
            }
        } else if k.starts_with("k:") || k.starts_with("v:") {
            let Some(list) = obj.as_array_mut() else { continue };
            let Some(pos) = list.iter().position(|it| matches_item(it, k)) else { continue };
            if g.own && o.is_empty() {
                list.remove(pos);
            } else {
                remove_fields(&mut list[pos], g, &o);
            }
        }
    }
}

fn matches_item(item: &Value, key: &str) -> bool {
    if let Some(k) = key.strip_prefix("k:") {
        let want: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
        want.iter().all(|(kk, kv)| key_value(item, kk) == *kv)
    } else if let Some(v) = key.strip_prefix("v:") {
        serde_json::from_str::<Value>(v).is_ok_and(|w| w == *item)
    } else {
        false
    }
}

// ----- managedFields entries -------------------------------------------------

/// Who writes: a manager, its operation, and the subresource written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manager {
    pub name: String,
    pub operation: &'static str,
    pub subresource: Option<String>,
}

struct Entry {
    manager: String,
    operation: String,
    subresource: Option<String>,
    api_version: String,
    time: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn is(&self, m: &Manager) -> bool {
        self.manager == m.name && self.operation == m.operation && self.subresource == m.subresource
    }

    /// How a conflict message names the manager (as kube-apiserver).
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

fn read_entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or("").to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            subresource: e["subresource"].as_str().filter(|s| !s.is_empty()).map(str::to_string),
            api_version: e["apiVersion"].as_str().unwrap_or("").to_string(),
            time: e["time"].as_str().map(str::to_string),
            fields: FieldSet::from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

fn write_entries(obj: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version});
            if let Some(t) = e.time {
                v["time"] = json!(t);
            }
            v["fieldsType"] = json!("FieldsV1");
            v["fieldsV1"] = e.fields.to_fields_v1();
            if let Some(s) = e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if list.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = Value::Array(list);
    }
}

/// Gives `who` the fields in `fields` (replacing its set when `replace`,
/// adding to it otherwise); the time moves only when its set changed.
fn set_entry(entries: &mut Vec<Entry>, who: &Manager, api_version: &str, now: &str, fields: FieldSet, replace: bool) {
    match entries.iter_mut().find(|e| e.is(who)) {
        Some(e) => {
            let mut next = if replace { FieldSet::default() } else { e.fields.clone() };
            next.union(&fields);
            if next != e.fields || e.api_version != api_version {
                e.fields = next;
                e.api_version = api_version.to_string();
                e.time = Some(now.to_string());
            }
        }
        None if !fields.is_empty() => entries.push(Entry {
            manager: who.name.clone(),
            operation: who.operation.to_string(),
            subresource: who.subresource.clone(),
            api_version: api_version.to_string(),
            time: Some(now.to_string()),
            fields,
        }),
        None => {}
    }
}

/// The part of an object a write to `subresource` is about: the status for
/// `status`, everything but the status otherwise.
fn scope(obj: &Value, subresource: Option<&str>, has_status: bool) -> Value {
    let mut v = obj.clone();
    let Some(m) = v.as_object_mut() else { return v };
    match subresource {
        Some("status") => m.retain(|k, _| k == "status"),
        _ if has_status => {
            m.remove("status");
        }
        _ => {}
    }
    v
}

/// The managed fields of an object being created by an apply.
pub fn on_create_by_apply(obj: &mut Value, who: &Manager, kind: &str, has_status: bool, api_version: &str, now: &str) {
    let fields = fields_of(&scope(obj, who.subresource.as_deref(), has_status), kind, "");
    let mut entries = Vec::new();
    set_entry(&mut entries, who, api_version, now, fields, true);
    write_entries(obj, entries);
}

/// Records a write that is not an apply: if the object has managed fields,
/// `who` takes over the fields it changed, and fields it removed are owned
/// by no one. `new` carries the old entries on entry.
pub fn on_update(old: &Value, new: &mut Value, who: &Manager, kind: &str, has_status: bool, api_version: &str, now: &str) {
    let mut entries = read_entries(old);
    if entries.is_empty() {
        return;
    }
    let sub = who.subresource.as_deref();
    let (changed, gone) = diff(&scope(old, sub, has_status), &scope(new, sub, has_status), kind, "");
    for e in entries.iter_mut() {
        e.fields = e.fields.minus(&changed).minus(&gone);
    }
    set_entry(&mut entries, who, api_version, now, changed, false);
    write_entries(new, entries);
}

/// One conflict: the other manager and the field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub path: String,
}

/// kube-apiserver's 409 for apply conflicts.
pub fn conflict_error(conflicts: &[Conflict]) -> ApiError {
    let message = if let [one] = conflicts {
        format!("Apply failed with 1 conflict: conflict with {}: {}", one.manager, one.path)
    } else {
        let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for c in conflicts {
            by.entry(&c.manager).or_default().push(&c.path);
        }
        let mut lines = Vec::new();
        for (m, paths) in by {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(paths.iter().map(|p| format!("- {p}")));
        }
        format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
    };
    let causes: Vec<Value> = conflicts.iter().map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.manager), "field": c.path})).collect();
    let mut e = ApiError::new(409, "Conflict", message);
    e.details = Some(json!({"causes": causes}));
    e
}

/// Server-side apply of `applied` (one manager's whole intent) onto `live`.
/// Returns the new object, its managed fields updated, or the conflicts.
pub fn apply(live: &Value, applied: &Value, who: &Manager, force: bool, kind: &str, has_status: bool, api_version: &str, now: &str) -> Result<Value, Vec<Conflict>> {
    let sub = who.subresource.as_deref();
    let applied = scope(applied, sub, has_status);
    let fields = fields_of(&applied, kind, "");
    let mut entries = read_entries(live);
    // 2. conflicts: fields others own whose value this apply changes.
    let mut conflicts = Vec::new();
    for path in fields.paths() {
        // A keyed list's item as such (its ".") never conflicts: only its fields can.
        if path.last().is_some_and(|l| l.starts_with("k:")) {
            continue;
        }
        let differs = value_at(live, &path) != value_at(&applied, &path);
        if !differs {
            continue;
        }
        for e in entries.iter_mut().filter(|e| !e.is(who)) {
            if e.fields.covers(&path) {
                if force {
                    e.fields.remove(&path);
                } else {
                    conflicts.push(Conflict { manager: e.describe(), path: path_string(&path) });
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    // 3. merge.
    let mut new = live.clone();
    merge(&mut new, &applied, kind, "");
    // 4. what this manager applied before and no longer does, unless others own it.
    let previous = entries.iter().find(|e| e.is(who)).map(|e| e.fields.clone()).unwrap_or_default();
    let mut others = FieldSet::default();
    for e in entries.iter().filter(|e| !e.is(who)) {
        others.union(&e.fields);
    }
    let gone = previous.minus(&fields).minus(&others);
    remove_fields(&mut new, &gone, &others);
    // 5. the manager's set is what it applied now; shared fields stay shared.
    set_entry(&mut entries, who, api_version, now, fields, true);
    write_entries(&mut new, entries);
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubectl() -> Manager {
        Manager { name: "kubectl".into(), operation: "Apply", subresource: None }
    }

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}}})
    }

    #[test]
    fn fields_v1_of_a_deployment() {
        let f = fields_of(&deploy(2, "nginx"), "Deployment", "").to_fields_v1();
        assert_eq!(
            f,
            json!({"f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:selector": {},
                    "f:template": {"f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}}}}}}}})
        );
        // And back.
        assert_eq!(FieldSet::from_fields_v1(&f), fields_of(&deploy(2, "nginx"), "Deployment", ""));
    }

    fn check_apply(live: Value, applied: Value, force: bool, expected: Result<Value, &str>) {
        let got = apply(&live, &applied, &kubectl(), force, "Deployment", true, "apps/v1", "T");
        match (got, expected) {
            (Ok(mut v), Ok(want)) => {
                v["metadata"].as_object_mut().unwrap().remove("managedFields");
                assert_eq!(v, want);
            }
            (Err(c), Err(msg)) => assert_eq!(conflict_error(&c).message, msg),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    fn owned_by(mut obj: Value, manager: &str, op: &str, fields: Value) -> Value {
        obj["metadata"]["managedFields"] = json!([{"manager": manager, "operation": op, "apiVersion": "apps/v1", "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields}]);
        obj
    }

    #[test]
    fn conflicts_force_and_shared_ownership() {
        let scaled = owned_by(deploy(5, "nginx"), "kubectl-scale", "Update", json!({"f:spec": {"f:replicas": {}}}));
        // Another manager owns replicas and the apply changes them: a conflict.
        check_apply(
            scaled.clone(),
            deploy(2, "nginx"),
            false,
            Err("Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"),
        );
        // The same value: no conflict, the field is shared.
        let shared = apply(&scaled, &deploy(5, "nginx:2"), &kubectl(), false, "Deployment", true, "apps/v1", "T").unwrap();
        let entries = read_entries(&shared);
        assert!(entries.iter().all(|e| e.fields.covers(&["f:spec".into(), "f:replicas".into()])), "both own replicas");
        // force: the apply wins and takes the field.
        let forced = apply(&scaled, &deploy(2, "nginx"), &kubectl(), true, "Deployment", true, "apps/v1", "T").unwrap();
        assert_eq!(forced["spec"]["replicas"], 2);
        let entries = read_entries(&forced);
        assert_eq!(entries.len(), 1, "kubectl-scale owned nothing else: its entry is gone");
        assert_eq!(entries[0].manager, "kubectl");
    }

    #[test]
    fn several_conflicts_are_listed_per_manager() {
        let live = owned_by(deploy(5, "nginx:9"), "edit", "Update", json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {"f:image": {}}}}}}}));
        check_apply(
            live,
            deploy(2, "nginx"),
            false,
            Err("Apply failed with 2 conflicts: conflicts with \"edit\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"web\"].image"),
        );
    }

    #[test]
    fn fields_no_longer_applied_are_removed_unless_others_own_them() {
        let first = apply(&json!({}), &deploy(2, "nginx"), &kubectl(), false, "Deployment", true, "apps/v1", "T").unwrap();
        // Drop the label: it goes.
        let mut second = deploy(2, "nginx");
        second["metadata"].as_object_mut().unwrap().remove("labels");
        let v = apply(&first, &second, &kubectl(), false, "Deployment", true, "apps/v1", "T").unwrap();
        assert!(v["metadata"].get("labels").is_none(), "{v}");
        // A field set by another manager's update stays when the applier drops it.
        let mut edited = first.clone();
        edited["metadata"]["annotations"] = json!({"note": "x"});
        on_update(&first, &mut edited, &Manager { name: "kubectl-annotate".into(), operation: "Update", subresource: None }, "Deployment", true, "apps/v1", "T");
        let v = apply(&edited, &second, &kubectl(), false, "Deployment", true, "apps/v1", "T").unwrap();
        assert_eq!(v["metadata"]["annotations"]["note"], "x");
        // A container dropped from the applied list goes; one added is merged in by name.
        let mut two = deploy(2, "nginx");
        two["spec"]["template"]["spec"]["containers"] = json!([{"name": "side", "image": "busybox"}]);
        let v = apply(&first, &two, &kubectl(), false, "Deployment", true, "apps/v1", "T").unwrap();
        let names: Vec<&str> = v["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["side"]);
    }

    #[test]
    fn updates_take_over_what_they_change() {
        let first = apply(&json!({}), &deploy(2, "nginx"), &kubectl(), false, "Deployment", true, "apps/v1", "T").unwrap();
        let mut scaled = first.clone();
        scaled["spec"]["replicas"] = json!(7);
        on_update(&first, &mut scaled, &Manager { name: "kubectl-scale".into(), operation: "Update", subresource: None }, "Deployment", true, "apps/v1", "T2");
        let entries = read_entries(&scaled);
        let scale = entries.iter().find(|e| e.manager == "kubectl-scale").unwrap();
        assert_eq!(scale.fields.to_fields_v1(), json!({"f:spec": {"f:replicas": {}}}));
        let apply_entry = entries.iter().find(|e| e.manager == "kubectl").unwrap();
        assert!(!apply_entry.fields.covers(&["f:spec".into(), "f:replicas".into()]));
        // Status writes are their own scope: they touch no spec ownership.
        let mut with_status = scaled.clone();
        with_status["status"] = json!({"replicas": 7});
        on_update(&scaled, &mut with_status, &Manager { name: "rkube-controller".into(), operation: "Update", subresource: Some("status".into()) }, "Deployment", true, "apps/v1", "T3");
        let e = read_entries(&with_status);
        assert_eq!(e.iter().find(|e| e.manager == "rkube-controller").unwrap().fields.to_fields_v1(), json!({"f:status": {"f:replicas": {}}}));
        // No managed fields yet: nothing is recorded.
        let mut plain = deploy(1, "x");
        on_update(&deploy(2, "x"), &mut plain, &kubectl(), "Deployment", true, "apps/v1", "T");
        assert!(plain["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn paths_print_as_structured_merge_diff() {
        let p = |s: &[&str]| path_string(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&["f:spec", "f:replicas"]), ".spec.replicas");
        assert_eq!(p(&["f:spec", "f:ports", "k:{\"port\":80,\"protocol\":\"TCP\"}", "f:targetPort"]), ".spec.ports[port=80,protocol=\"TCP\"].targetPort");
        assert_eq!(p(&["f:metadata", "f:finalizers", "v:\"a/b\""]), ".metadata.finalizers[=\"a/b\"]");
    }
}
