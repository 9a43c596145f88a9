#!/usr/bin/env python3
"""Regenerates the two schema files that apiserver/src/protobuf.rs embeds.

    python3 extract.py KUBECTL_1_32_BINARY K8S_OPENAPI_0_25_SRC_DIR

Needs the `protobuf` Python package (pip install protobuf). Not run by the
build: its outputs are committed.

1. k8s-v1.32.binpb: a google.protobuf.FileDescriptorSet of the Kubernetes
   v1.32 API protobuf schemas (k8s.io/api/<group>/<v1|v2>, and the
   apimachinery meta/v1, runtime, runtime/schema, util/intstr and
   api/resource files).

   Where they come from: every Kubernetes Go package registers its schema
   with the gogo/protobuf runtime, as a gzipped FileDescriptorProto inside
   generated.pb.go (`fileDescriptor_<hash>`), so every client-go program, and
   kubectl, carries them. We take them from a kubectl v1.32 binary: that is
   exactly the schema kubectl encodes request bodies with. Unlike the
   published generated.proto files (which have the gogoproto options stripped),
   these descriptors keep the `(gogoproto.nullable) = false` field option
   (extension 65001) that go-to-protobuf writes on every field whose Go type
   is NOT a pointer. protobuf.rs needs exactly that bit to omit empty values
   the way encoding/json does. The import of gogo.proto itself is dropped
   (the option stays in the descriptor as an unknown field), so the set is
   self-contained.

2. json-fields.txt: what encoding/json does that the schema does not say.
   - `required M F`: scalar JSON field F of message M has no `omitempty` in
     its Go json tag, so encoding/json writes it even when zero
     (`"containerPort": 0`, `"allowed": false`, `"reportingComponent": ""`).
     Decided by the struct tags in the same kubectl binary (Go keeps every
     struct tag as a string) where the (wire type, number, name) of the
     protobuf tag is unambiguous, else by the OpenAPI `required` list of the
     k8s-openapi 0.25 crate's v1_32 sources (required implies no omitempty).
   - `inline M F`: protobuf field F of M is an embedded Go struct
     (`VolumeSource `json:",inline"``) whose fields JSON flattens into M.
   Fields whose protobuf name differs from the JSON name (`aPIGroup` vs
   `apiGroup`) get the JSON name in the descriptor's own `json_name`.
"""
import os
import re
import sys
import zlib

from google.protobuf import descriptor_pb2

GZIP_MAGIC = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
GOGO = "github.com/gogo/protobuf/gogoproto/gogo.proto"
KEEP = re.compile(
    r"^k8s\.io/(api/[a-z0-9]+/v[12]/|apimachinery/pkg/(apis/meta/v1|runtime|runtime/schema|util/intstr|api/resource)/)generated\.proto$"
)


def descriptors(binary):
    data = open(binary, "rb").read()
    found = {}
    for m in re.finditer(re.escape(GZIP_MAGIC), data):
        try:
            # Decompress one gzip member; the bytes after it are ignored.
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[m.start():m.start() + 4_000_000])
        except zlib.error:
            continue
        try:
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
        except Exception:
            continue
        if KEEP.match(fd.name or ""):
            found[fd.name] = fd
    return found


def main():
    binary, openapi_src = sys.argv[1], sys.argv[2]
    here = os.path.dirname(os.path.abspath(__file__))
    files = descriptors(binary)
    for fd in files.values():
        deps = [d for d in fd.dependency if d != GOGO]
        for d in deps:
            if d not in files:
                sys.exit(f"{fd.name} imports {d}, which was not found")
        del fd.dependency[:]
        fd.dependency.extend(deps)
        # Each file options holds gogo file-level options (marshaler etc.):
        # irrelevant for decoding, keep only go_package.
        go_package = fd.options.go_package
        fd.options.Clear()
        fd.options.go_package = go_package
    # Dependencies first (protoc's order), so any reader can load in one pass.
    done, order = set(), []

    def add(name):
        if name in done:
            return
        for d in files[name].dependency:
            add(d)
        done.add(name)
        order.append(name)

    for name in sorted(files):
        add(name)
    # What encoding/json does that the schema alone does not say, from the
    # k8s-openapi sources (one file per type; `"<json name>" => Field::Key_`
    # lists the JSON properties, `required: [...]` the required ones).
    properties, required = {}, {}
    for root, _, names in os.walk(openapi_src):
        for n in names:
            if not n.endswith(".rs"):
                continue
            text = open(os.path.join(root, n), encoding="utf-8").read()
            sm = re.search(r'fn schema_name\(\) -> std::string::String \{\s*"io\.k8s\.([A-Za-z0-9_.]+)"', text)
            if not sm:
                continue
            message = "k8s.io." + sm.group(1)
            properties[message] = set(re.findall(r'"([^"]+)" => Field::Key_', text))
            rq = re.search(r"required: \[(.*?)\]\.into\(\)", text, re.S)
            required[message] = re.findall(r'"([A-Za-z0-9_]+)"\.into\(\)', rq.group(1)) if rq else []

    tags = go_json_tags(binary)
    lines = []
    for fd in files.values():
        for m in fd.message_type:
            message = f"{fd.package}.{m.name}"
            props = properties.get(message)
            for field in m.field:
                if props is not None and field.name not in props:
                    same = [p for p in props if p.lower() == field.name.lower()]
                    if len(same) == 1:
                        # e.g. proto `aPIGroup`, JSON `apiGroup`: the JSON name goes
                        # where protobuf keeps it, FieldDescriptorProto.json_name.
                        field.json_name = same[0]
                    elif field.type == field.TYPE_MESSAGE and message_has_go_name(field, field.type_name.rsplit(".", 1)[1]):
                        # An embedded Go struct (`VolumeSource `json:",inline"``):
                        # protobuf nests it, JSON flattens it into the parent.
                        lines.append(f"inline {message} {field.name}")
                # Only scalars can be "empty" and still written: structs are
                # always written, lists/maps/[]byte are left out when empty.
                scalar = field.type not in (field.TYPE_MESSAGE, field.TYPE_BYTES) and field.label != field.LABEL_REPEATED
                if scalar and writes_zero(tags, field, required.get(message, [])):
                    lines.append(f"required {message} {field.json_name}")
    # Built only now: FileDescriptorSet.file.extend copies, and the json_name
    # edits above must be in it.
    fds = descriptor_pb2.FileDescriptorSet()
    fds.file.extend(files[n] for n in order)
    with open(os.path.join(here, "k8s-v1.32.binpb"), "wb") as f:
        f.write(fds.SerializeToString(deterministic=True))
    with open(os.path.join(here, "json-fields.txt"), "w") as f:
        f.write("# Generated by extract.py from kubectl v1.32 and k8s-openapi 0.25 (v1_32). Read by src/protobuf.rs.\n")
        f.write("# required M F: JSON field F of message M has no `omitempty`: written even when zero.\n")
        f.write("# inline M F: protobuf field F of M is an embedded Go struct whose fields JSON flattens into M.\n")
        f.write("\n".join(sorted(set(lines))) + "\n")
    print(f"{len(fds.file)} files, {len(lines)} json-fields lines")


WIRE = {"TYPE_DOUBLE": "fixed64", "TYPE_FLOAT": "fixed32", "TYPE_STRING": "bytes", "TYPE_BYTES": "bytes",
        "TYPE_MESSAGE": "bytes"}


def go_json_tags(binary):
    """The Go struct tags in the binary that carry both a json and a protobuf
    key, as {(wire, number, proto name): {json tag has omitempty}}. Go's type
    data keeps every struct tag as a string, but not which struct it is on, so
    a key can be ambiguous (`name`, field 1, is `json:"name"` on Container and
    `json:"name,omitempty"` on ContainerPort)."""
    data = open(binary, "rb").read()
    found = {}
    for j, p in re.findall(rb'json:"([^"]*)"(?: [A-Za-z]+:"[^"]*")*? protobuf:"([^"]*)"', data):
        parts = p.decode().split(",")
        name = next((x[5:] for x in parts if x.startswith("name=")), None)
        if name is None or len(parts) < 2:
            continue
        found.setdefault((parts[0], parts[1], name), set()).add("omitempty" in j.decode().split(",")[1:])
    return found


def writes_zero(tags, field, required):
    """Whether encoding/json writes this field when it holds its zero value.
    The struct tag decides when it is unambiguous; otherwise the OpenAPI
    `required` list (required implies no omitempty) does."""
    type_name = descriptor_pb2.FieldDescriptorProto.Type.Name(field.type)
    omitempty = tags.get((WIRE.get(type_name, "varint"), str(field.number), field.name), set())
    if len(omitempty) == 1:
        return not next(iter(omitempty))
    return field.json_name in required


def message_has_go_name(field, type_name):
    """True when gogoproto.customname (extension 65004) names the Go field
    after its type, which is what an embedded struct looks like."""
    return b"\xe2\xde\x1f" + bytes([len(type_name)]) + type_name.encode() in field.options.SerializeToString()


main()
