#!/usr/bin/env python3
"""Offline checks of everything in schemas/: the schemas themselves, index.json, the examples and asyncapi.yaml.

Needs Python 3.9+ with `jsonschema` (4.18+) and `PyYAML`:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install jsonschema pyyaml
    /tmp/venv/bin/python schemas/check_schemas.py

Optionally, ASYNCAPI_SPEC_SCHEMA=/path/to/3.0.0-without-$id.json (from the npm package @asyncapi/specs)
also validates asyncapi.yaml against the official AsyncAPI 3.0 meta-schema.

Exits non-zero if any check fails; the last line reads `N passed, N failed`.
"""
import json
import os
import re
import sys
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, FormatChecker, validators

HERE = Path(__file__).resolve().parent
BASE_ID = "https://wschat-check.dev/schemas/v1/"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what}")


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def rel(path):
    return Path(path).resolve().relative_to(HERE).as_posix()


def refs(node, found=None):
    """Every `$ref` string in a document."""
    found = [] if found is None else found
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                found.append(v)
            else:
                refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)
    return found


def validator(schema):
    return Draft202012Validator(schema, format_checker=FormatChecker())


def check_schema_files():
    schemas = {}
    ids = {}
    for path in sorted(HERE.rglob("*.schema.json")):
        name = rel(path)
        try:
            schema = load_json(path)
        except json.JSONDecodeError as e:
            check(False, f"{name}: not JSON: {e}")
            continue
        try:
            Draft202012Validator.check_schema(schema)
            check(True, name)
        except Exception as e:  # SchemaError carries the reason
            check(False, f"{name}: not a valid 2020-12 schema: {e}")
            continue
        check(schema.get("$schema") == DIALECT, f"{name}: $schema must be {DIALECT}")
        check(schema.get("$id") == BASE_ID + name, f"{name}: $id must be {BASE_ID + name}")
        check(schema.get("$id") not in ids, f"{name}: $id already used by {ids.get(schema.get('$id'))}")
        ids[schema.get("$id")] = name
        check(bool(schema.get("title")) and bool(schema.get("description")), f"{name}: needs title and description")
        # The harness compiles each file alone, without network or file resolution.
        external = [r for r in refs(schema) if not r.startswith("#")]
        check(not external, f"{name}: cross-file $ref {external}")
        for i, ex in enumerate(schema.get("examples", [])):
            errs = list(validator(schema).iter_errors(ex))
            check(not errs, f"{name}: examples[{i}] does not validate: {[e.message for e in errs]}")
        schemas[name] = schema
    return schemas


def check_index(schemas):
    index = load_json(HERE / "index.json")
    check(index.get("discriminator") == "type", "index.json: discriminator must be `type`")
    check(set(index) == {"discriminator", "server", "client"}, f"index.json: unexpected keys {sorted(index)}")
    listed = set()
    for side in ("server", "client"):
        for typ, path in index.get(side, {}).items():
            listed.add(path)
            schema = schemas.get(path)
            check(schema is not None, f"index.json: {side}.{typ} -> {path} does not exist or is invalid")
            if schema is None:
                continue
            check(path == f"{side}/{typ}.schema.json", f"index.json: {side}.{typ} -> {path}: expected {side}/{typ}.schema.json")
            check(schema.get("properties", {}).get("type", {}).get("const") == typ, f"{path}: properties.type.const must be {typ!r}")
            check(schema.get("additionalProperties") is False, f"{path}: additionalProperties must be false")
            check("type" in schema.get("required", []), f"{path}: `type` must be required")
    for name in schemas:
        if name.startswith(("server/", "client/")):
            check(name in listed, f"{name}: not listed in index.json")
    both = set(index.get("server", {})) & set(index.get("client", {}))
    check(not both, f"index.json: types on both sides {sorted(both)} (examples are named by type)")
    return index


def check_examples(folder, schema_for, loader):
    """`valid/*` must validate against schema_for(prefix), `invalid/*` must not; prefix = name up to the case."""
    for kind in ("valid", "invalid"):
        files = sorted((folder / kind).glob("*.*"))
        check(bool(files), f"{rel(folder / kind)}: no examples")
        for path in files:
            name = rel(path)
            prefix = path.name.rsplit(".", 2)[0]
            schema = schema_for(prefix)
            if schema is None:
                check(False, f"{name}: no schema for `{prefix}`")
                continue
            try:
                instance = loader(path)
            except Exception as e:
                check(False, f"{name}: does not parse: {e}")
                continue
            errs = list(validator(schema).iter_errors(instance))
            if kind == "valid":
                check(not errs, f"{name}: should be valid: {[f'{e.json_path}: {e.message}' for e in errs][:3]}")
            else:
                check(bool(errs), f"{name}: should be invalid but validates")


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def resolve_pointer(doc, pointer):
    node = doc
    for part in pointer.lstrip("/").split("/") if pointer not in ("", "/") else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node[part]
    return node


def check_asyncapi(index):
    name = "asyncapi.yaml"
    try:
        doc = load_yaml(HERE / name)
    except yaml.YAMLError as e:
        check(False, f"{name}: not YAML: {e}")
        return
    check(doc.get("asyncapi") == "3.0.0", f"{name}: asyncapi must be 3.0.0")
    allowed = {"asyncapi", "id", "info", "servers", "defaultContentType", "channels", "operations", "components"}
    check(set(doc) <= allowed, f"{name}: unknown top-level keys {sorted(set(doc) - allowed)}")
    info = doc.get("info", {})
    check(bool(info.get("title")) and bool(info.get("version")), f"{name}: info.title and info.version are required")
    for path in ("/api/v1/sessions", "/api/v1/status", "/api/v1/admin/broadcast", "/healthz", "/api/v1/skills", "/api/v1/dev/token"):
        check(path in info.get("description", ""), f"{name}: info.description should describe REST endpoint {path}")

    for sname, server in doc.get("servers", {}).items():
        check({"host", "protocol"} <= set(server), f"{name}: servers.{sname} needs host and protocol")
        check(server.get("protocol") in ("ws", "wss"), f"{name}: servers.{sname}.protocol must be ws or wss")

    # Every $ref resolves: local pointers in this document, relative files beside it.
    for r in refs(doc):
        target, _, fragment = r.partition("#")
        try:
            if target:
                resolve_pointer(load_json(HERE / target), fragment)
            else:
                resolve_pointer(doc, fragment)
            check(True, r)
        except Exception as e:
            check(False, f"{name}: $ref {r} does not resolve: {e!r}")

    channels = doc.get("channels", {})
    for cname, ch in channels.items():
        address = ch.get("address", "")
        check(address == "/api/v1/chat/ws/{session_id}", f"{name}: channels.{cname}.address is {address!r}")
        placeholders = set(re.findall(r"\{([^}]+)\}", address))
        check(placeholders == set(ch.get("parameters", {})), f"{name}: channels.{cname}.parameters must be {sorted(placeholders)}")
        ws = ch.get("bindings", {}).get("ws", {})
        check(set(ws) <= {"method", "query", "headers", "bindingVersion"}, f"{name}: ws binding has unknown keys")
        check(ws.get("method") == "GET", f"{name}: ws binding method must be GET")
        for k in ("query", "headers"):
            check(ws.get(k, {}).get("type") == "object", f"{name}: ws binding {k} must be an object schema")
        check("token" in ws.get("query", {}).get("properties", {}), f"{name}: ws binding query must describe `token`")

    components = doc.get("components", {}).get("messages", {})
    for side in ("client", "server"):
        for typ, path in index[side].items():
            msg = components.get(typ)
            check(msg is not None, f"{name}: components.messages.{typ} missing")
            if msg:
                check(msg.get("payload") == {"$ref": f"./{path}"}, f"{name}: components.messages.{typ}.payload must $ref ./{path}")
            check(typ in channels.get("chat", {}).get("messages", {}), f"{name}: channel chat lacks message {typ}")

    sent, received = set(), set()
    for oname, op in doc.get("operations", {}).items():
        check(op.get("action") in ("send", "receive"), f"{name}: operations.{oname}.action must be send or receive")
        ch_ref = op.get("channel", {}).get("$ref", "")
        check(ch_ref.startswith("#/channels/"), f"{name}: operations.{oname}.channel must $ref a channel")
        for m in op.get("messages", []) + op.get("reply", {}).get("messages", []):
            check(m.get("$ref", "").startswith(ch_ref + "/messages/"), f"{name}: operations.{oname}: {m} is not a message of its channel")
        types = {m.get("$ref", "").rsplit("/", 1)[-1] for m in op.get("messages", [])}
        (sent if op.get("action") == "send" else received).update(types)
    check(sent == set(index["client"]), f"{name}: send operations cover {sorted(sent)}, expected the client messages")
    check(received == set(index["server"]), f"{name}: receive operations cover {sorted(received)}, expected the server events")

    spec = os.environ.get("ASYNCAPI_SPEC_SCHEMA")
    if spec:
        meta = load_json(spec)
        errs = list(validators.validator_for(meta)(meta).iter_errors(doc))
        check(not errs, f"{name}: invalid against {spec}: {[e.message[:200] for e in errs][:3]}")


def main():
    for path in sorted(HERE.rglob("*.json")):
        try:
            load_json(path)
        except json.JSONDecodeError as e:
            check(False, f"{rel(path)}: not JSON: {e}")
    schemas = check_schema_files()
    index = check_index(schemas)
    ex = HERE / "examples"

    def event_schema(typ):
        path = index["server"].get(typ) or index["client"].get(typ)
        return schemas.get(path) if path else None

    check_examples(ex, event_schema, load_json)
    check_examples(ex / "rest", lambda p: schemas.get(f"rest/{p}.schema.json"), load_json)
    check_examples(ex / "report", lambda p: schemas.get(f"{p}.schema.json"), load_json)
    check_examples(ex / "files", lambda p: schemas.get(f"{p}.schema.json"), load_yaml)
    # Every event type has at least one valid and one invalid example.
    for side in ("server", "client"):
        for typ in index[side]:
            for kind in ("valid", "invalid"):
                check(any((ex / kind).glob(f"{typ}.*.json")), f"examples/{kind}: no example for {typ}")
    check_asyncapi(index)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
