#!/usr/bin/env python3
"""Static checks of the protocol packs under examples/ (no network, no cargo).

For every pack (a folder holding wschat-suite.yaml):
  - every JSON file parses; every schema under schemas/ is a valid draft 2020-12 schema, declares
    `$schema` 2020-12 and has no cross-file `$ref`; index.json names existing files;
  - every YAML file parses; the suite config, the rules file and the scenarios validate against the
    repository's schemas/suite.schema.json, rules.schema.json and scenario.schema.json;
  - every fixture (fixtures/*.jsonl) follows docs/TRANSCRIPT.md, and its frames validate against the
    pack's schemas (received: `server`, sent JSON: `client`; a `*` entry is the schema for frames
    without the discriminator). A fixture whose header says {"expect": {"verdict": "fail",
    "kind": "schema", "seq": N}} must fail schema validation exactly at frame N; other fixtures must
    pass it. Rule verdicts need the harness (`wschat-check check`, not implemented yet).

Prints one line per failure and ends with `N passed, N failed`; exit status 1 if anything failed.
Mismatches with the repository's schemas/*.schema.json are printed as WARN (those schemas may lag the
harness loader); `--strict-repo-schemas` counts them as failures.
Needs `jsonschema` and `PyYAML`:  python3 -m venv .venv && .venv/bin/pip install jsonschema pyyaml
"""
import glob
import json
import os
import sys

try:
    import jsonschema
    import yaml
except ImportError as e:  # pragma: no cover
    sys.exit(f"missing module: {e.name} (pip install jsonschema pyyaml)")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DRAFT = "https://json-schema.org/draft/2020-12/schema"
KINDS = {"text": "text", "binary": "base64", "ping": "base64", "pong": "base64", "close": "close", "end": None}
FRAME_FIELDS = {"seq", "t_ms", "conn", "dir", "kind", "text", "base64", "close", "error", "truncated"}
HEADER_REQUIRED = {"wschat_transcript", "tool", "recorded_at", "scenario", "target", "handshake"}
HEADER_FIELDS = HEADER_REQUIRED | {"discriminator", "connections", "description", "expect"}


class Tally:
    def __init__(self, strict_repo):
        self.passed = 0
        self.failed = 0
        self.warnings = 0
        self.strict_repo = strict_repo

    def repo(self, cond, where, msg):
        """A mismatch with the repository's schemas/ (which may lag the harness loader)."""
        if cond or self.strict_repo:
            return self.ok(cond, where, msg)
        self.warnings += 1
        print(f"WARN {os.path.relpath(where, REPO)}: {msg}")
        return False

    def ok(self, cond, where, msg):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {os.path.relpath(where, REPO)}: {msg}")
        return cond


def load_json(path, t):
    try:
        with open(path, encoding="utf-8") as f:
            v = json.load(f)
        t.ok(True, path, "")
        return v
    except (OSError, ValueError) as e:
        t.ok(False, path, f"invalid JSON: {e}")
        return None


def load_yaml(path, t):
    try:
        with open(path, encoding="utf-8") as f:
            v = yaml.safe_load(f)
        t.ok(True, path, "")
        return v
    except (OSError, yaml.YAMLError) as e:
        t.ok(False, path, f"invalid YAML: {e}")
        return None


def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def pointer(doc, ptr):
    if ptr == "":
        return doc
    cur = doc
    for part in ptr.lstrip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def repo_validator(name):
    path = os.path.join(REPO, "schemas", name)
    with open(path, encoding="utf-8") as f:
        return jsonschema.Draft202012Validator(json.load(f))


def check_yaml_against(path, doc, validator, t, what):
    errs = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    detail = "; ".join(f"/{'/'.join(map(str, e.absolute_path))}: {e.message[:160]}" for e in errs[:3])
    t.repo(not errs, path, f"does not validate against schemas/{what}: {detail}")


def check_pack(pack, t, suite_v, rules_v, scen_v):
    suite_path = os.path.join(pack, "wschat-suite.yaml")
    suite = load_yaml(suite_path, t)
    if suite is None:
        return
    check_yaml_against(suite_path, suite, suite_v, t, "suite.schema.json")
    disc = suite.get("discriminator", "type")
    disc = disc if disc.startswith("/") else "/" + disc
    rules_path = os.path.join(pack, suite.get("rules", "rules.yaml"))
    rules = load_yaml(rules_path, t) if t.ok(os.path.isfile(rules_path), rules_path, "rules file missing") else None
    if rules is not None:
        check_yaml_against(rules_path, rules, rules_v, t, "rules.schema.json")
    scen_files = sorted(glob.glob(os.path.join(pack, "scenarios", "**", "*.yaml"), recursive=True))
    t.ok(3 <= len(scen_files) <= 6, pack, f"has {len(scen_files)} scenarios (want 3 to 6)")
    names = set()
    for sf in scen_files:
        doc = load_yaml(sf, t)
        if doc is None:
            continue
        check_yaml_against(sf, doc, scen_v, t, "scenario.schema.json")
        names.add(doc.get("name"))
    t.ok(os.path.isfile(os.path.join(pack, "README.md")), pack, "README.md missing")

    # Schemas.
    sdir = os.path.join(pack, suite.get("schemas", "schemas"))
    index = load_json(os.path.join(sdir, "index.json"), t)
    if not isinstance(index, dict):
        return
    validators = {"server": {}, "client": {}}
    for side in ("server", "client"):
        for typ, rel in index.get(side, {}).items():
            path = os.path.join(sdir, rel)
            if not t.ok(os.path.isfile(path), path, f"index.json {side}.{typ} names a missing file"):
                continue
            sch = load_json(path, t)
            if sch is None:
                continue
            t.ok(sch.get("$schema") == DRAFT, path, "`$schema` must be draft 2020-12")
            try:
                jsonschema.Draft202012Validator.check_schema(sch)
                t.ok(True, path, "")
            except jsonschema.SchemaError as e:
                t.ok(False, path, f"not a valid 2020-12 schema: {e.message}")
                continue
            bad = [r for r in refs(sch) if not r.startswith("#")]
            t.ok(not bad, path, f"cross-file $ref {bad} (packs keep each schema self-contained)")
            if typ != "*":
                const = pointer(sch, "/properties" + disc.replace("/", "/", 1) + "/const") if disc.count("/") == 1 else None
                t.ok(const in (None, typ), path, f"discriminator const {const!r} differs from index key {typ!r}")
            validators[side][typ] = jsonschema.Draft202012Validator(sch)
    listed = {os.path.normpath(os.path.join(sdir, r)) for s in ("server", "client") for r in index.get(s, {}).values()}
    for f in glob.glob(os.path.join(sdir, "**", "*.schema.json"), recursive=True):
        t.ok(os.path.normpath(f) in listed, f, "schema file not named by index.json")

    # Fixtures.
    fixtures = sorted(glob.glob(os.path.join(pack, "fixtures", "*.jsonl")))
    t.ok(any(os.path.basename(f).startswith("broken-") for f in fixtures), pack, "no fixtures/broken-*.jsonl")
    covered = set()
    for fx in fixtures:
        scen = check_fixture(fx, disc, validators, t)
        if scen and not os.path.basename(fx).startswith("broken-"):
            covered.add(scen)
    for n in sorted(names - covered):
        t.ok(False, pack, f"scenario {n!r} has no conformant fixture")


def check_fixture(path, disc, validators, t):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not t.ok(len(lines) >= 1, path, "empty file"):
        return None
    try:
        recs = [json.loads(x) for x in lines]
    except ValueError as e:
        t.ok(False, path, f"a line is not JSON: {e}")
        return None
    head, frames = recs[0], recs[1:]
    problems = []
    if not isinstance(head, dict):
        problems.append("header is not an object")
        head = {}
    missing = HEADER_REQUIRED - head.keys()
    extra = head.keys() - HEADER_FIELDS
    if missing:
        problems.append(f"header lacks {sorted(missing)}")
    if extra:
        problems.append(f"header has unknown fields {sorted(extra)}")
    if head.get("wschat_transcript") != 1:
        problems.append("wschat_transcript must be 1")
    hs = head.get("handshake", {})
    if not (isinstance(hs.get("request"), dict) and isinstance(hs.get("response"), dict)):
        problems.append("handshake needs request and response")
    elif hs["response"].get("status") != 101 and frames and not all(f.get("conn", "main") != "main" for f in frames):
        problems.append("a refused handshake has no frames on main")
    conns = {"main"} | set(head.get("connections", {}).keys())
    fixture_disc = head.get("discriminator", disc)
    last_t = -1.0
    for i, fr in enumerate(frames):
        where = f"line {i + 2}"
        if fr.get("seq") != i:
            problems.append(f"{where}: seq {fr.get('seq')} (want {i})")
        tm = fr.get("t_ms")
        if not isinstance(tm, (int, float)) or tm < last_t:
            problems.append(f"{where}: t_ms {tm} missing or decreasing")
        else:
            last_t = tm
        if fr.get("conn", "main") not in conns:
            problems.append(f"{where}: conn {fr.get('conn')!r} not in header connections")
        if fr.get("dir") not in ("sent", "received"):
            problems.append(f"{where}: dir {fr.get('dir')!r}")
        kind = fr.get("kind")
        if kind not in KINDS:
            problems.append(f"{where}: kind {kind!r}")
            continue
        unknown = fr.keys() - FRAME_FIELDS
        payloads = {"text", "base64", "close"} & fr.keys()
        want = {KINDS[kind]} if KINDS[kind] else set()
        if unknown or payloads != want:
            problems.append(f"{where}: kind {kind} needs exactly {sorted(want)}, has {sorted(payloads | unknown)}")
    t.ok(not problems, path, "; ".join(problems[:5]))
    if problems:
        return head.get("scenario")

    # Frames against schemas.
    expect = head.get("expect", {"verdict": "pass"})
    want_schema_fail = expect.get("verdict") == "fail" and expect.get("kind") == "schema"
    schema_failures = []
    for fr in frames:
        if fr["kind"] != "text":
            continue
        side = "server" if fr["dir"] == "received" else "client"
        try:
            ev = json.loads(fr["text"])
        except ValueError:
            if side == "server":
                schema_failures.append((fr["seq"], "received text is not JSON"))
            continue  # sent non-JSON text: a deliberate bad frame
        typ = pointer(ev, fixture_disc) if isinstance(ev, dict) else None
        v = validators[side].get(typ) if isinstance(typ, str) else None
        if v is None:
            v = validators[side].get("*")
        if v is None and side == "client":
            print(f"info {os.path.relpath(path, REPO)}: seq {fr['seq']}: sent frame type {typ!r} has no client schema (deliberate?)")
            continue
        if v is None:
            schema_failures.append((fr["seq"], f"{side} frame type {typ!r} has no schema"))
            continue
        errs = list(v.iter_errors(ev))
        if errs and side == "client":
            # Scenarios send invalid messages on purpose (error flows); like the harness, the
            # checker never blames the client, it only says so.
            e = errs[0]
            print(f"info {os.path.relpath(path, REPO)}: seq {fr['seq']}: sent frame does not match its client schema"
                  f" (deliberate?): /{'/'.join(map(str, e.absolute_path))}: {e.message[:120]}")
        elif errs:
            e = errs[0]
            schema_failures.append((fr["seq"], f"{typ}: /{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"))
    if want_schema_fail:
        seqs = [s for s, _ in schema_failures]
        t.ok(seqs and (expect.get("seq") is None or seqs == [expect["seq"]]), path,
             f"expected a schema failure at seq {expect.get('seq')}, got {schema_failures or 'none'}")
    else:
        t.ok(not schema_failures, path, "; ".join(f"seq {s}: {m}" for s, m in schema_failures[:3]))
    return head.get("scenario")


def main():
    # Mismatches with schemas/*.schema.json are warnings unless --strict-repo-schemas: those schemas
    # may lag the loader, which is the authority (`wschat-check validate`).
    t = Tally("--strict-repo-schemas" in sys.argv[1:])
    suite_v = repo_validator("suite.schema.json")
    rules_v = repo_validator("rules.schema.json")
    scen_v = repo_validator("scenario.schema.json")
    packs = sorted(p for p in glob.glob(os.path.join(HERE, "*")) if os.path.isfile(os.path.join(p, "wschat-suite.yaml")))
    if not t.ok(bool(packs), HERE, "no packs found"):
        pass
    for p in packs:
        check_pack(p, t, suite_v, rules_v, scen_v)
    print(f"{t.passed} passed, {t.failed} failed" + (f" ({t.warnings} warnings)" if t.warnings else ""))
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
