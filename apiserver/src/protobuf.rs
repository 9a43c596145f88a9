//! Reading Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//!
//! client-go, and so kubectl, sends the bodies of its typed requests
//! (`kubectl create namespace`, `create deployment`, `auth can-i`, ...) in
//! Kubernetes' protobuf encoding. rkube keeps objects as JSON, so this module
//! turns such a body into the JSON object that the *same* Go object would have
//! been marshalled to by `encoding/json`, field for field.
//!
//! # The wire format
//!
//! ```text
//! "k8s\0"                        4-byte magic
//! runtime.Unknown {              k8s.io/apimachinery/pkg/runtime/generated.proto
//!   typeMeta        = 1 { apiVersion = 1, kind = 2 }
//!   raw             = 2          the object's own message, e.g. k8s.io.api.core.v1.Namespace
//!   contentEncoding = 3          always empty in practice
//!   contentType     = 4          always empty in practice
//! }
//! ```
//!
//! The object message never carries apiVersion/kind: they live only in the
//! envelope, and [`decode`] puts them back.
//!
//! # Why a reflective decoder over a descriptor set
//!
//! The object messages are described by the upstream `generated.proto`
//! schemas (~550 messages for the GA groups). Rather than generating Rust
//! structs for all of them (and then a second, JSON-shaped copy of each), we
//! load the schemas once as a `prost_reflect::DescriptorPool` and walk the
//! decoded `DynamicMessage` generically, emitting JSON as we go. One walker,
//! a handful of special cases, and every Kubernetes type works, including
//! ones rkube does not serve yet.
//!
//! The schemas (`apiserver/proto/k8s-v1.32.binpb`) are the compiled
//! descriptors that Kubernetes v1.32 itself registers from its Go packages
//! (see `apiserver/proto/extract.py`). They, unlike the published `.proto`
//! text, keep go-to-protobuf's `(gogoproto.nullable) = false` field option,
//! which says whether the Go field is a value or a pointer: exactly what
//! decides whether encoding/json writes a zero (see [`Schema::is_go_value`]).
//!
//! # How protobuf presence maps to `omitempty`
//!
//! The Go marshaller writes every non-pointer field, zero or not, and a
//! pointer field only when it is non-nil. encoding/json writes a pointer
//! field when non-nil, a struct always, and a scalar/slice/map with
//! `omitempty` only when non-zero. So, for a field present on the wire:
//! - a message (struct) is always written (`"resources": {}` as kubectl does);
//! - a pointer scalar is written even when zero (`"replicas": 0`,
//!   `"automountServiceAccountToken": false`);
//! - a value scalar is written when non-zero, or when it is required
//!   (no `omitempty`: `"containerPort": 0`), from `json-fields.txt`;
//! - lists and maps are written when non-empty (Go can't tell nil from empty
//!   over protobuf either; it writes neither).

use std::collections::HashSet;
use std::sync::OnceLock;

use base64::Engine;
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage, Value as PValue};
use serde_json::{Map, Number, Value};

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The Content-Type kubectl uses for protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// `FieldOptions` extension number of `gogoproto.nullable`.
const GOGOPROTO_NULLABLE: u32 = 65001;

const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";
const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

/// Decodes a `k8s\0`-prefixed protobuf body into the JSON object it stands
/// for, with `kind` and `apiVersion` set from the envelope.
///
/// The error is a sentence fit for a 400 Status message.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| "protobuf body does not start with the Kubernetes magic number \"k8s\\x00\"".to_string())?;
    let schema = schema();
    let envelope = DynamicMessage::decode(schema.unknown.clone(), rest)
        .map_err(|e| format!("cannot decode protobuf envelope (runtime.Unknown): {e}"))?;
    let string_of = |m: &DynamicMessage, name: &str| -> String {
        m.get_field_by_name(name).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    };
    let (api_version, kind) = match envelope.get_field_by_name("typeMeta").as_deref().and_then(PValue::as_message) {
        Some(tm) => (string_of(tm, "apiVersion"), string_of(tm, "kind")),
        None => (String::new(), String::new()),
    };
    let encoding = string_of(&envelope, "contentEncoding");
    if !encoding.is_empty() {
        return Err(format!("protobuf envelope contentEncoding {encoding:?} is not supported"));
    }
    let content_type = string_of(&envelope, "contentType");
    let raw = envelope.get_field_by_name("raw").and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
    if content_type == "application/json" {
        // Allowed by runtime.Unknown, never sent by client-go; cheap to honour.
        let mut v: Value = serde_json::from_slice(&raw).map_err(|e| format!("protobuf envelope holds invalid JSON: {e}"))?;
        if let (Some(o), false) = (v.as_object_mut(), kind.is_empty() || api_version.is_empty()) {
            set_type_meta(o, &kind, &api_version);
        }
        return Ok(v);
    }
    if !content_type.is_empty() && content_type != CONTENT_TYPE {
        return Err(format!("protobuf envelope contentType {content_type:?} is not supported"));
    }
    if kind.is_empty() || api_version.is_empty() {
        return Err("protobuf envelope has no apiVersion/kind".to_string());
    }
    let desc = schema
        .message_for(&api_version, &kind)
        .ok_or_else(|| format!("no protobuf schema for {api_version}, Kind={kind}"))?;
    let msg = DynamicMessage::decode(desc, raw.as_ref())
        .map_err(|e| format!("cannot decode protobuf {api_version}, Kind={kind}: {e}"))?;
    let mut obj = Map::new();
    set_type_meta(&mut obj, &kind, &api_version);
    schema.fields_into(&msg, &mut obj)?;
    Ok(Value::Object(obj))
}

/// `kind` and `apiVersion` first, as Go's inline `TypeMeta` writes them.
fn set_type_meta(obj: &mut Map<String, Value>, kind: &str, api_version: &str) {
    let rest = std::mem::take(obj);
    obj.insert("kind".into(), Value::String(kind.into()));
    obj.insert("apiVersion".into(), Value::String(api_version.into()));
    for (k, v) in rest {
        if k != "kind" && k != "apiVersion" {
            obj.insert(k, v);
        }
    }
}

struct Schema {
    pool: DescriptorPool,
    unknown: MessageDescriptor,
    /// Full names of fields whose Go type is a value, not a pointer.
    go_values: HashSet<String>,
    /// (message full name, JSON name) of fields without `omitempty`.
    required: HashSet<(String, String)>,
    /// Full names of embedded-struct fields that JSON flattens.
    inline: HashSet<String>,
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let pool = DescriptorPool::decode(include_bytes!("../proto/k8s-v1.32.binpb").as_slice())
            .expect("apiserver/proto/k8s-v1.32.binpb is a valid descriptor set");
        let unknown = pool.get_message_by_name(UNKNOWN).expect("runtime.Unknown is in the descriptor set");
        let mut go_values = HashSet::new();
        for m in pool.all_messages() {
            for f in m.fields() {
                if f.options().unknown_fields().any(|u| u.number() == GOGOPROTO_NULLABLE) {
                    go_values.insert(f.full_name().to_string());
                }
            }
        }
        let (mut required, mut inline) = (HashSet::new(), HashSet::new());
        for line in include_str!("../proto/json-fields.txt").lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("required"), Some(m), Some(f)) => {
                    required.insert((m.to_string(), f.to_string()));
                }
                (Some("inline"), Some(m), Some(f)) => {
                    inline.insert(format!("{m}.{f}"));
                }
                _ => {}
            }
        }
        Schema { pool, unknown, go_values, required, inline }
    })
}

impl Schema {
    /// `apps/v1` + `Deployment` → `k8s.io.api.apps.v1.Deployment`. The proto
    /// package is named after the group's first DNS label
    /// (`rbac.authorization.k8s.io` → `rbac`, core `""` → `core`). Kinds that
    /// every group version shares (`DeleteOptions`, `Status`, ...) live in
    /// meta/v1.
    fn message_for(&self, api_version: &str, kind: &str) -> Option<MessageDescriptor> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let dir = if group.is_empty() { "core" } else { group.split('.').next().unwrap_or(group) };
        let name = |pkg: &str| format!("{pkg}.{kind}");
        let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid(kind) || !valid(version) || !valid(dir) {
            return None;
        }
        self.pool
            .get_message_by_name(&name(&format!("k8s.io.api.{dir}.{version}")))
            .or_else(|| self.pool.get_message_by_name(&name(META)))
    }

    /// Whether the Go field is a value rather than a pointer
    /// (`(gogoproto.nullable) = false`). A value field is always on the wire,
    /// so being there says nothing; a pointer is there only when non-nil,
    /// and encoding/json then writes it even if it points at a zero.
    fn is_go_value(&self, f: &FieldDescriptor) -> bool {
        self.go_values.contains(f.full_name())
    }

    /// Adds the JSON fields of `msg` to `obj`, in schema order.
    fn fields_into(&self, msg: &DynamicMessage, obj: &mut Map<String, Value>) -> Result<(), String> {
        let desc = msg.descriptor();
        for f in desc.fields() {
            let name = f.json_name();
            if f.is_map() {
                let PValue::Map(m) = msg.get_field(&f).into_owned() else { continue };
                if m.is_empty() {
                    continue;
                }
                let value_field = match f.kind() {
                    Kind::Message(entry) => entry.map_entry_value_field(),
                    _ => return Err(format!("map field {} has no entry message", f.full_name())),
                };
                let mut out = Map::new();
                // Sorted keys, as encoding/json writes maps.
                let mut entries: Vec<_> = m.iter().collect();
                entries.sort_by_key(|(k, _)| map_key(k));
                for (k, v) in entries {
                    out.insert(map_key(k), self.value(&value_field, v)?);
                }
                obj.insert(name.to_string(), Value::Object(out));
            } else if f.is_list() {
                let PValue::List(items) = msg.get_field(&f).into_owned() else { continue };
                if items.is_empty() {
                    continue;
                }
                let items = items.iter().map(|v| self.value(&f, v)).collect::<Result<Vec<_>, _>>()?;
                obj.insert(name.to_string(), Value::Array(items));
            } else {
                if !msg.has_field(&f) {
                    continue;
                }
                let v = msg.get_field(&f);
                if let (Kind::Message(_), PValue::Message(inner)) = (f.kind(), v.as_ref()) {
                    if self.inline.contains(f.full_name()) {
                        self.fields_into(inner, obj)?;
                        continue;
                    }
                }
                let zero = is_zero(&v);
                if zero && matches!(f.kind(), Kind::Bytes) {
                    continue; // a nil/empty []byte: omitted (or null) in Go
                }
                if zero
                    && self.is_go_value(&f)
                    && !self.required.contains(&(desc.full_name().to_string(), name.to_string()))
                {
                    continue; // omitempty on a zero Go value
                }
                obj.insert(name.to_string(), self.value(&f, &v)?);
            }
        }
        Ok(())
    }

    /// One value of field `f` (an element, for lists and maps).
    fn value(&self, f: &FieldDescriptor, v: &PValue) -> Result<Value, String> {
        Ok(match v {
            PValue::Bool(b) => Value::Bool(*b),
            PValue::I32(n) => Value::from(*n),
            PValue::I64(n) => Value::from(*n),
            PValue::U32(n) => Value::from(*n),
            PValue::U64(n) => Value::from(*n),
            PValue::F32(x) => Number::from_f64(f64::from(*x)).map(Value::Number).unwrap_or(Value::Null),
            PValue::F64(x) => Number::from_f64(*x).map(Value::Number).unwrap_or(Value::Null),
            PValue::String(s) => Value::String(s.clone()),
            // Go marshals []byte as standard base64 (Secret data, CSR request).
            PValue::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            PValue::EnumNumber(n) => Value::from(*n),
            PValue::Message(m) => self.message(m)?,
            PValue::List(_) | PValue::Map(_) => {
                return Err(format!("field {} holds a nested list or map", f.full_name()));
            }
        })
    }

    /// A message value: the types with their own MarshalJSON first, then any
    /// struct as a JSON object.
    fn message(&self, m: &DynamicMessage) -> Result<Value, String> {
        let int = |name: &str| m.get_field_by_name(name).and_then(|v| v.as_i64().or(v.as_i32().map(i64::from))).unwrap_or(0);
        let string = |name: &str| m.get_field_by_name(name).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let bytes = |name: &str| m.get_field_by_name(name).and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
        Ok(match m.descriptor().full_name() {
            // metav1.Time: RFC 3339 in UTC, whole seconds; the zero time is null.
            "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => rfc3339(int("seconds"), None)?,
            // metav1.MicroTime: the same with exactly six fractional digits.
            "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => rfc3339(int("seconds"), Some(int("nanos")))?,
            // metav1.Duration: Go's time.Duration.String().
            "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => Value::String(go_duration(int("duration"))),
            // resource.Quantity: its canonical string; the zero Quantity is "0".
            "k8s.io.apimachinery.pkg.api.resource.Quantity" | "k8s.io.apimachinery.pkg.api.resource.QuantityValue" => {
                let s = string("string");
                Value::String(if s.is_empty() { "0".into() } else { s })
            }
            // intstr.IntOrString: type 0 is an int, 1 a string.
            "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => match int("type") {
                0 => Value::from(int("intVal")),
                1 => Value::String(string("strVal")),
                t => return Err(format!("IntOrString has unknown type {t}")),
            },
            // runtime.RawExtension / metav1.FieldsV1: embedded JSON bytes
            // (or, inside a protobuf object, an embedded protobuf object).
            "k8s.io.apimachinery.pkg.runtime.RawExtension" => embedded(&bytes("raw"))?,
            "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => embedded(&bytes("Raw"))?,
            // Named Go slice types (`type ExtraValue []string`) are wrapped in
            // a message with one `items` field; JSON has the bare list.
            "k8s.io.apimachinery.pkg.apis.meta.v1.Verbs"
            | "k8s.io.api.authentication.v1.ExtraValue"
            | "k8s.io.api.authorization.v1.ExtraValue"
            | "k8s.io.api.certificates.v1.ExtraValue" => {
                let mut obj = Map::new();
                self.fields_into(m, &mut obj)?;
                obj.remove("items").unwrap_or_else(|| Value::Array(vec![]))
            }
            _ => {
                let mut obj = Map::new();
                self.fields_into(m, &mut obj)?;
                Value::Object(obj)
            }
        })
    }
}

fn map_key(k: &MapKey) -> String {
    match k {
        MapKey::String(s) => s.clone(),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
    }
}

fn is_zero(v: &PValue) -> bool {
    match v {
        PValue::Bool(b) => !b,
        PValue::I32(n) => *n == 0,
        PValue::I64(n) => *n == 0,
        PValue::U32(n) => *n == 0,
        PValue::U64(n) => *n == 0,
        PValue::F32(x) => *x == 0.0,
        PValue::F64(x) => *x == 0.0,
        PValue::String(s) => s.is_empty(),
        PValue::Bytes(b) => b.is_empty(),
        PValue::EnumNumber(n) => *n == 0,
        PValue::List(l) => l.is_empty(),
        PValue::Map(m) => m.is_empty(),
        // Structs are never "empty" to encoding/json.
        PValue::Message(_) => false,
    }
}

/// `RawExtension.Raw` as JSON: nil is `null`, a nested `k8s\0` body is decoded.
fn embedded(raw: &[u8]) -> Result<Value, String> {
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    if raw.starts_with(MAGIC) {
        return decode(raw);
    }
    serde_json::from_slice(raw).map_err(|e| format!("embedded object is neither protobuf nor JSON: {e}"))
}

/// metav1.Time (`micro_nanos: None`) or MicroTime as Go's JSON writes them.
fn rfc3339(seconds: i64, micro_nanos: Option<i64>) -> Result<Value, String> {
    let nanos = micro_nanos.unwrap_or(0);
    if seconds == 0 && nanos == 0 {
        return Ok(Value::Null); // Go's zero time.Time marshals as null
    }
    let t = chrono::DateTime::from_timestamp(seconds, 0).ok_or_else(|| format!("time {seconds}s is out of range"))?;
    Ok(Value::String(match micro_nanos {
        None => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(n) => format!("{}.{:06}Z", t.format("%Y-%m-%dT%H:%M:%S"), n.clamp(0, 999_999_999) / 1000),
    }))
}

/// Go's `time.Duration.String()`: "1h2m3.5s", "1.5ms", "0s".
fn go_duration(d: i64) -> String {
    // Built right to left, as Go does.
    fn frac(out: &mut Vec<char>, mut v: u64, prec: usize) -> u64 {
        let mut print = false;
        for _ in 0..prec {
            let digit = v % 10;
            print = print || digit != 0;
            if print {
                out.push(char::from(b'0' + digit as u8));
            }
            v /= 10;
        }
        if print {
            out.push('.');
        }
        v
    }
    fn int(out: &mut Vec<char>, mut v: u64) {
        loop {
            out.push(char::from(b'0' + (v % 10) as u8));
            v /= 10;
            if v == 0 {
                break;
            }
        }
    }
    let mut u = d.unsigned_abs();
    let mut out = vec!['s'];
    if u < 1_000_000_000 {
        let prec = match u {
            0 => return "0s".into(),
            u if u < 1_000 => {
                out.push('n');
                0
            }
            u if u < 1_000_000 => {
                out.push('µ');
                3
            }
            _ => {
                out.push('m');
                6
            }
        };
        u = frac(&mut out, u, prec);
        int(&mut out, u);
    } else {
        u = frac(&mut out, u, 9);
        int(&mut out, u % 60);
        u /= 60;
        if u > 0 {
            out.push('m');
            int(&mut out, u % 60);
            u /= 60;
            if u > 0 {
                out.push('h');
                int(&mut out, u);
            }
        }
    }
    if d < 0 {
        out.push('-');
    }
    out.iter().rev().collect()
}

#[cfg(test)]
mod tests {
    //! Fixtures in `apiserver/proto/testdata/`: `NAME.pb` is the body that
    //! kubectl v1.32 POSTed for a command (recorded by a proxy between
    //! kubectl and rkube-apiserver), and `NAME.json` what the same kubectl
    //! printed for that command with `--dry-run=client -o json`, i.e. Go's
    //! encoding/json of the very same object. Decoding the first must give
    //! the second.
    //!
    //! | fixture | command |
    //! |---|---|
    //! | namespace | `kubectl create namespace demo` |
    //! | deployment | `kubectl create deployment web --image=busybox:1 --replicas=3 --port=80` |
    //! | deployment-zero-replicas | `kubectl create deployment idle --image=busybox:1 --replicas=0` |
    //! | configmap | `kubectl create configmap c --from-literal=a=b --from-literal=empty=` |
    //! | configmap-binary | `kubectl create configmap bin --from-file=blob=FILE` (bytes 00 01 fe ff) |
    //! | secret | `kubectl create secret generic s --from-literal=k=v` |
    //! | service-nodeport | `kubectl create service nodeport web --tcp=80:8080` |
    //! | service-headless | `kubectl create service clusterip db --clusterip=None --tcp=5432` |
    //! | serviceaccount | `kubectl create serviceaccount sa1` |
    //! | cronjob | `kubectl create cronjob cj --image=busybox:1 --schedule='*/5 * * * *'` |
    //! | role | `kubectl create role r --verb=get,list --resource=pods,deployments.apps` |
    //! | rolebinding | `kubectl create rolebinding rb --role=r --user=alice --serviceaccount=default:sa1` |
    //! | clusterrole | `kubectl create clusterrole cr --verb=get --non-resource-url=/healthz` |
    //! | priorityclass | `kubectl create priorityclass high --value=1000 --preemption-policy=Never --description=x` |
    //! | quota | `kubectl create quota q --hard=cpu=1,memory=1Gi,pods=10` |
    //! | pdb | `kubectl create poddisruptionbudget p --selector=app=web --min-available=50%` |
    //! | ingress | `kubectl create ingress ing --rule='foo.example/bar=svc:8080'` |
    //!
    //! `auth can-i` has no dry run: its expected JSON is written out below.
    use super::*;
    use serde_json::json;

    fn fixture(name: &str, ext: &str) -> Vec<u8> {
        let path = format!("{}/proto/testdata/{name}.{ext}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn check(bytes_file: &str, expected: Value) {
        let got = decode(&fixture(bytes_file, "pb")).unwrap_or_else(|e| panic!("{bytes_file}: {e}"));
        assert_eq!(got, expected, "{bytes_file}:\n got {got:#}\nwant {expected:#}");
    }

    #[test]
    fn kubectl_bodies_decode_to_the_json_kubectl_would_send() {
        for name in [
            "namespace",
            "deployment",
            "deployment-zero-replicas",
            "configmap",
            "configmap-binary",
            "secret",
            "service-nodeport",
            "service-headless",
            "serviceaccount",
            "cronjob",
            "role",
            "rolebinding",
            "clusterrole",
            "priorityclass",
            "quota",
            "pdb",
            "ingress",
        ] {
            check(name, serde_json::from_slice(&fixture(name, "json")).unwrap());
        }
    }

    #[test]
    fn kubectl_auth_can_i_bodies() {
        check(
            "selfsubjectaccessreview",
            json!({
                "kind": "SelfSubjectAccessReview",
                "apiVersion": "authorization.k8s.io/v1",
                "metadata": {"creationTimestamp": null},
                "spec": {"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}},
                "status": {"allowed": false}
            }),
        );
        check(
            "selfsubjectaccessreview-scale",
            json!({
                "kind": "SelfSubjectAccessReview",
                "apiVersion": "authorization.k8s.io/v1",
                "metadata": {"creationTimestamp": null},
                "spec": {"resourceAttributes": {
                    "namespace": "kube-system", "verb": "update", "group": "apps",
                    "resource": "deployments", "subresource": "scale"
                }},
                "status": {"allowed": false}
            }),
        );
    }

    /// A body as client-go builds it: `object` (protobuf text format) is
    /// encoded as the `apiVersion`/`kind` message and wrapped in runtime.Unknown.
    fn body(api_version: &str, kind: &str, object: &str) -> Vec<u8> {
        use prost_reflect::prost::Message;
        let s = schema();
        let desc = s.message_for(api_version, kind).expect("known kind");
        let raw = DynamicMessage::parse_text_format(desc, object).expect("valid text format").encode_to_vec();
        let text = format!(
            "typeMeta {{ apiVersion: {api_version:?} kind: {kind:?} }} raw: \"{}\" contentEncoding: \"\" contentType: \"\"",
            raw.iter().map(|b| format!("\\{b:03o}")).collect::<String>()
        );
        let mut out = MAGIC.to_vec();
        out.extend(DynamicMessage::parse_text_format(s.unknown.clone(), &text).unwrap().encode_to_vec());
        out
    }

    fn check_built(api_version: &str, kind: &str, object: &str, expected: Value) {
        let got = decode(&body(api_version, kind, object)).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(got, expected, "{kind}:\n got {got:#}\nwant {expected:#}");
    }

    #[test]
    fn special_types_come_out_as_kubernetes_json() {
        // Time and MicroTime; pointer fields that hold zero values are kept.
        check_built(
            "coordination.k8s.io/v1",
            "Lease",
            r#"metadata { name: "l" namespace: "kube-system" creationTimestamp { seconds: 1767225600 nanos: 999 } }
               spec { holderIdentity: "" leaseDurationSeconds: 0
                      acquireTime { seconds: 1767225600 nanos: 123456789 } renewTime { seconds: 1767225661 } }"#,
            json!({"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
                   "metadata": {"name": "l", "namespace": "kube-system", "creationTimestamp": "2026-01-01T00:00:00Z"},
                   "spec": {"holderIdentity": "", "leaseDurationSeconds": 0,
                            "acquireTime": "2026-01-01T00:00:00.123456Z", "renewTime": "2026-01-01T00:01:01.000000Z"}}),
        );
        // Zero times are null; zero non-pointer scalars are omitted unless
        // their json tag has no omitempty (reportingComponent).
        check_built(
            "v1",
            "Event",
            r#"metadata { name: "e" creationTimestamp {} } involvedObject { kind: "Pod" name: "p" }
               reason: "Started" count: 0 firstTimestamp {} lastTimestamp { seconds: 1767225600 } eventTime {}
               reportingComponent: "" reportingInstance: """#,
            json!({"kind": "Event", "apiVersion": "v1", "metadata": {"name": "e", "creationTimestamp": null},
                   "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started",
                   "firstTimestamp": null, "lastTimestamp": "2026-01-01T00:00:00Z", "eventTime": null,
                   "reportingComponent": "", "reportingInstance": ""}),
        );
        // Embedded structs are flattened (Volume.volumeSource, Probe.handler),
        // IntOrString in both forms, required zeros kept (containerPort),
        // false pointer kept (runAsNonRoot), false value omitted (hostNetwork).
        check_built(
            "v1",
            "Pod",
            r#"metadata { name: "p" }
               spec { hostNetwork: false
                 volumes { name: "scratch" volumeSource { emptyDir { medium: "Memory" sizeLimit { string: "64Mi" } } } }
                 containers { name: "c" image: "busybox:1" ports { containerPort: 0 hostPort: 0 }
                   readinessProbe { handler { httpGet { path: "/healthz" port { type: 1 strVal: "http" } } } periodSeconds: 5 }
                   livenessProbe { handler { tcpSocket { port { type: 0 intVal: 8080 } } } }
                   securityContext { runAsNonRoot: false }
                   resources { limits { key: "cpu" value { string: "500m" } } } } }"#,
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"},
                   "spec": {
                     "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
                     "containers": [{"name": "c", "image": "busybox:1", "ports": [{"containerPort": 0}],
                       "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
                       "livenessProbe": {"tcpSocket": {"port": 8080}},
                       "securityContext": {"runAsNonRoot": false},
                       "resources": {"limits": {"cpu": "500m"}}}]}}),
        );
        // RawExtension and FieldsV1 hold JSON; int64 is a number.
        check_built(
            "apps/v1",
            "ControllerRevision",
            r#"metadata { name: "r" generation: 9007199254740993
                 managedFields { manager: "kubectl" operation: "Update" fieldsType: "FieldsV1"
                                 fieldsV1 { Raw: "{\"f:data\":{}}" } time { seconds: 1767225600 } } }
               data { raw: "{\"spec\":{\"replicas\":2}}" } revision: 2"#,
            json!({"kind": "ControllerRevision", "apiVersion": "apps/v1",
                   "metadata": {"name": "r", "generation": 9007199254740993_i64,
                     "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
                                        "fieldsV1": {"f:data": {}}, "time": "2026-01-01T00:00:00Z"}]},
                   "data": {"spec": {"replicas": 2}}, "revision": 2}),
        );
        // Named slices (ExtraValue) are bare lists; required bool kept.
        check_built(
            "authorization.k8s.io/v1",
            "SubjectAccessReview",
            r#"spec { user: "alice" groups: "dev" extra { key: "scopes" value { items: "a" items: "b" } }
                      nonResourceAttributes { path: "/healthz" verb: "get" } }
               status { allowed: false }"#,
            json!({"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                   "spec": {"user": "alice", "groups": ["dev"], "extra": {"scopes": ["a", "b"]},
                            "nonResourceAttributes": {"path": "/healthz", "verb": "get"}},
                   "status": {"allowed": false}}),
        );
        // Proto field names that differ from the JSON name (aPIGroup).
        check_built(
            "networking.k8s.io/v1",
            "IngressClass",
            r#"metadata { name: "nginx" } spec { controller: "x/y" parameters { aPIGroup: "k8s.example" kind: "P" name: "n" } }"#,
            json!({"kind": "IngressClass", "apiVersion": "networking.k8s.io/v1", "metadata": {"name": "nginx"},
                   "spec": {"controller": "x/y", "parameters": {"apiGroup": "k8s.example", "kind": "P", "name": "n"}}}),
        );
        // Kinds shared by every group version resolve to meta/v1.
        check_built(
            "apps/v1",
            "DeleteOptions",
            r#"gracePeriodSeconds: 0 propagationPolicy: "Foreground" dryRun: "All""#,
            json!({"kind": "DeleteOptions", "apiVersion": "apps/v1", "gracePeriodSeconds": 0,
                   "propagationPolicy": "Foreground", "dryRun": ["All"]}),
        );
    }

    #[test]
    fn envelope_holding_json() {
        use prost_reflect::prost::Message;
        let text = r#"typeMeta { apiVersion: "v1" kind: "ConfigMap" } raw: "{\"metadata\":{\"name\":\"x\"}}" contentType: "application/json""#;
        let mut body = MAGIC.to_vec();
        body.extend(DynamicMessage::parse_text_format(schema().unknown.clone(), text).unwrap().encode_to_vec());
        assert_eq!(decode(&body).unwrap(), json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}}));
    }

    #[test]
    fn go_duration_strings() {
        fn check(nanos: i64, expected: &str) {
            assert_eq!(go_duration(nanos), expected, "{nanos}ns");
        }
        check(0, "0s");
        check(1, "1ns");
        check(1_500, "1.5µs");
        check(1_500_000, "1.5ms");
        check(1_000_000_000, "1s");
        check(90_000_000_000, "1m30s");
        check(3_600_000_000_000, "1h0m0s");
        check(3_723_500_000_000, "1h2m3.5s");
        check(-2_500_000_000, "-2.5s");
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        fn check(input: &[u8], expected_error: &str) {
            let err = decode(input).expect_err(&format!("{input:?} decoded"));
            assert!(err.contains(expected_error), "{input:?}: error {err:?} does not mention {expected_error:?}");
        }
        check(b"", "magic");
        check(br#"{"kind":"Namespace","apiVersion":"v1"}"#, "magic");
        check(b"k8s\x01\x0a\x00", "magic");
        check(b"k8s\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "cannot decode protobuf envelope");
        check(b"k8s\x00\x0a\x05\x0a\x02v1", "cannot decode protobuf envelope");
        check(b"k8s\x00", "no apiVersion/kind");
        check(&body("v1", "Namespace", r#"metadata { name: "x" }"#)[..20], "cannot decode");
        let ns = fixture("namespace", "pb");
        check(&ns[..ns.len() - 1], "cannot decode");
        // An envelope naming a kind we have no schema for.
        let mut unknown_kind = ns.clone();
        let at = unknown_kind.windows(9).position(|w| w == b"Namespace").unwrap();
        unknown_kind[at..at + 9].copy_from_slice(b"Nonexists");
        check(&unknown_kind, "no protobuf schema for v1, Kind=Nonexists");
        // IntOrString with a type Go does not know.
        check(
            &body("v1", "Service", r#"spec { ports { port: 80 targetPort { type: 7 } } }"#),
            "IntOrString has unknown type 7",
        );
        // Every prefix of every fixture: an answer, never a panic.
        for name in ["namespace", "deployment", "service-nodeport", "selfsubjectaccessreview"] {
            let full = fixture(name, "pb");
            for n in 0..full.len() {
                let _ = decode(&full[..n]);
            }
        }
    }
}
