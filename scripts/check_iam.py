#!/usr/bin/env python3
"""Fails when a function calls an AWS API action that its role in infra/template.yaml does not grant.

The calls come from the code, not from a list kept by hand:
  1. Entry points: each AWS::Serverless::Function's Metadata.BuildProperties.Binary names a binary in
     functions/<binary>/src/main.rs; the `chute::...` paths it mentions (the handler, `serve`) are the
     roots.
  2. A light Rust reader (comments and literals blanked out) collects every `fn` in src/ with its
     module (from the file path and inline `mod`s), its impl type and its body, skipping
     `#[cfg(test)]` modules. From the roots it follows calls through the whole crate: `Type::f(` and
     `Self::f(` to that impl, `module::f(` to free functions of that module, `x.f(` to the methods of
     x's type when x is `self`, a struct field or a parameter whose type is known, else to every
     method named f (over-approximation: a false alarm is possible; only calls hidden in macros or in
     fn values passed by bare name are missed). So the check follows code as it moves between files
     (no file list here).
  3. An AWS SDK call is `.op()` followed in its builder chain by `.send()` or `.presigned(`, where op
     is an operation of one of the SDK crates the project depends on (Cargo.toml), read from the
     crate's own src/operation/ in the cargo registry (Cargo.lock's version).
  4. Operation -> IAM action: service prefix + PascalCase, except the documented cases in EXCEPTIONS
     (Amazon S3 user guide, "Policy actions for Amazon S3": HeadObject is authorised as
     s3:GetObject, multipart parts as s3:PutObject, ListObjectsV2 as s3:ListBucket, ...). A
     presigned request needs the same action (the link is used with the signer's permissions).
  5. Granted actions: the function's Policies (inline statements with Effect Allow, both branches
     of an Fn::If, and SAM policy templates resolved from samtranslator's policy_templates.json).
     Wildcards in actions are honoured. Resources are not compared (keys are computed at run time),
     except for the actions in PINNED, whose every grant must name exactly that one resource.
  6. Every SDK call sits in an adapter room (ADAPTER_ROOMS): one found elsewhere fails the check.
Exit status 1 on a missing grant, with the function, the call path and the missing action.
Run from scripts/lint with the lint venv's python (cfn-lint's loader reads the short-form tags).
"""

import fnmatch
import json
import os
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERBOSE = "-v" in sys.argv[1:]  # print the call path of every call

# IAM service prefix per SDK crate, where it differs from the crate's name.
PREFIX = {"sesv2": "ses", "sfn": "states", "eventbridge": "events"}

# Actions the code uses on one fixed resource, so the grant must name exactly that resource (not
# "*"): the run-finished event goes to the account's default bus and nowhere else.
PINNED = {"events:PutEvents": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default"}

# Operations authorised by another action than their own name (service: op -> actions).
EXCEPTIONS = {
    "s3": {
        "head_object": ["s3:GetObject"],
        "get_object_attributes": ["s3:GetObject"],
        "create_multipart_upload": ["s3:PutObject"],
        "upload_part": ["s3:PutObject"],
        "complete_multipart_upload": ["s3:PutObject"],
        "upload_part_copy": ["s3:PutObject", "s3:GetObject"],
        "copy_object": ["s3:PutObject", "s3:GetObject"],
        "list_objects": ["s3:ListBucket"],
        "list_objects_v2": ["s3:ListBucket"],
        "list_object_versions": ["s3:ListBucketVersions"],
        "head_bucket": ["s3:ListBucket"],
        "list_parts": ["s3:ListMultipartUploadParts"],
        "list_multipart_uploads": ["s3:ListBucketMultipartUploads"],
        "delete_objects": ["s3:DeleteObject"],
    },
}
# Reading a given version needs the *Version action as well (the chain sets .version_id()).
VERSIONED = {"get_object": "s3:GetObjectVersion", "head_object": "s3:GetObjectVersion",
             "delete_object": "s3:DeleteObjectVersion"}

KEYWORDS = {"if", "while", "for", "match", "loop", "return", "fn", "let", "in", "as", "move",
            "async", "await", "Some", "Ok", "Err", "None", "Box", "Vec", "where", "impl", "mut",
            "ref", "else", "unsafe", "dyn", "pub", "crate", "super", "self", "Self"}


def fail(message):
    print(f"check_iam: {message}", file=sys.stderr)
    sys.exit(2)


# --- Rust reading ---------------------------------------------------------------------------------

def blank(text):
    """Comments, string and char literals replaced by spaces (offsets kept; newlines kept)."""
    out = list(text)
    i, n = 0, len(text)

    def wipe(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            wipe(i, j)
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            wipe(i, j)
            i = j
        elif (m := re.compile(r'b?r(#*)"').match(text, i)) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = '"' + m.group(1)
            j = text.find(end, m.end())
            j = n if j < 0 else j + len(end)
            wipe(m.end(), j - len(end))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            wipe(i + 1, j)
            i = j + 1
        elif c == "'":
            if i + 1 < n and text[i + 1] == "\\":
                j = text.find("'", i + 2)
                wipe(i + 1, j)
                i = j + 1
            elif i + 2 < n and text[i + 2] == "'":
                wipe(i + 1, i + 2)
                i += 3
            else:
                i += 1  # a lifetime
        else:
            i += 1
    return "".join(out)


def matching(s, i, open_="{", close="}"):
    """Index just past the bracket that closes the one at s[i]."""
    depth = 0
    for j in range(i, len(s)):
        if s[j] == open_:
            depth += 1
        elif s[j] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(s)


def strip_generics(s):
    out, depth = [], 0
    for c in s:
        if c == "<":
            depth += 1
        elif c == ">":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(c)
    return "".join(out)


def type_name(text):
    """Last identifier of a type: `&'a mut crate::lambda::Env` -> Env, `Option<Blob>` -> Option."""
    ids = re.findall(r"[A-Za-z_]\w*", strip_generics(text.replace("&", " ").replace("mut ", " ")))
    ids = [x for x in ids if x not in ("dyn", "impl", "mut")]
    return ids[-1] if ids else None


def module_of(path):
    rel = path.relative_to(ROOT / "src").with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return "::".join(parts)


# The modules of src/ that may call the AWS SDK (the rest call them).
ADAPTER_ROOMS = {"blob", "notify", "workflow", "secrets"}

ITEM = re.compile(r"\b(mod|impl|trait|fn)\b")
# trait -> the types implementing it, so a call on `&impl Trait` / `&dyn Trait` reaches each impl.
TRAIT_IMPLS = {}


class Fn:
    def __init__(self, name, module, impl, header, body, file, line):
        self.name, self.module, self.impl, self.header, self.body = name, module, impl, header, body
        self.file, self.line = file, line

    def label(self):
        where = f"{self.impl}::{self.name}" if self.impl else f"{self.module}::{self.name}".lstrip(":")
        return f"{where} ({self.file}:{self.line})"


def parse_items(s, i, end, module, impl, file, fns, raw):
    while True:
        m = ITEM.search(s, i, end)
        if not m:
            return
        kw = m.group(1)
        if kw == "mod":
            mm = re.compile(r"mod\s+(\w+)\s*([{;])").match(s, m.start())
            if not mm:
                i = m.end()
                continue
            if mm.group(2) == ";":
                i = mm.end()
                continue
            body_end = matching(s, mm.end() - 1)
            if not re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s*)?$", s[max(0, m.start() - 80):m.start()]):
                parse_items(s, mm.end(), body_end - 1, f"{module}::{mm.group(1)}".lstrip(":"), None, file, fns, raw)
            i = body_end
        elif kw in ("impl", "trait"):
            j = s.find("{", m.end(), end)
            semi = s.find(";", m.end(), end)
            if j < 0 or (0 <= semi < j):
                i = m.end()
                continue
            header = strip_generics(s[m.end():j])
            header = header.split(" where ")[0]
            target = header.split(" for ")[-1] if kw == "impl" else header
            if kw == "impl" and " for " in header:
                TRAIT_IMPLS.setdefault(type_name(header.split(" for ")[0]), set()).add(type_name(target))
            body_end = matching(s, j)
            parse_items(s, j + 1, body_end - 1, module, type_name(target), file, fns, raw)
            i = body_end
        else:  # fn
            mm = re.compile(r"fn\s+([A-Za-z_]\w*)").match(s, m.start())
            if not mm:
                i = m.end()
                continue
            # header runs to the body's `{` or a `;` (trait method without a body), outside parens
            j, depth = mm.end(), 0
            while j < end:
                c = s[j]
                if c in "([":
                    depth += 1
                elif c in ")]":
                    depth -= 1
                elif depth == 0 and c in "{;":
                    break
                j += 1
            if j >= end or s[j] == ";":
                i = j + 1
                continue
            body_end = matching(s, j)
            line = s.count("\n", 0, m.start()) + 1
            fns.append(Fn(mm.group(1), module, impl, s[mm.end():j], s[j:body_end], file, line))
            i = body_end


def read_crate():
    fns = []
    for path in sorted((ROOT / "src").rglob("*.rs")):
        s = blank(path.read_text())
        parse_items(s, 0, len(s), module_of(path), None, str(path.relative_to(ROOT)), fns, None)
    return fns


# --- SDK operations -------------------------------------------------------------------------------

def sdk_operations():
    """{crate short name: set of operation names} for the aws-sdk-* crates the project depends on."""
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    wanted = [d for d in manifest.get("dependencies", {}) if d.startswith("aws-sdk-")]
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    versions = {p["name"]: p["version"] for p in lock["package"] if p["name"] in wanted}
    registry = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "registry" / "src"
    ops = {}
    for crate in wanted:
        dirs = sorted(registry.glob(f"*/{crate}-{versions.get(crate, '?')}/src/operation"))
        if not dirs:
            fail(f"no sources for {crate} {versions.get(crate)} under {registry} (run `cargo fetch`)")
        ops[crate.removeprefix("aws-sdk-")] = {p.name for p in dirs[0].iterdir() if p.is_dir()}
    return ops


CHAIN_END = ("send", "presigned")


def sdk_calls(fn, ops, client_types):
    """[(service, op, presigned, versioned)] made directly in fn's body, and the offsets of the
    builder-chain method names (`.bucket(`, `.send(`), which are no calls into the crate."""
    s, found, chain_names = fn.body, [], set()
    for m in re.finditer(r"\.\s*([a-z_]\w*)\s*\(\s*\)", s):
        op = m.group(1)
        services = [svc for svc, names in ops.items() if op in names]
        if not services:
            continue
        # walk the builder chain: .a(..).b(..)?.await ... until .send() / .presigned(
        j, presigned, versioned, ended = m.end(), False, False, False
        while True:
            k = re.compile(r"\s*(\?\s*)?\.\s*([a-z_]\w*)\s*").match(s, j)
            if not k:
                break
            name, j = k.group(2), k.end()
            chain_names.add(k.start(2))
            if j < len(s) and s[j] == "(":
                j = matching(s, j, "(", ")")
            if name == "version_id" or name == "set_version_id":
                versioned = True
            if name in CHAIN_END:
                ended, presigned = True, name == "presigned"
                break
        if not ended:
            continue
        if len(services) > 1:
            receiver = re.findall(r"(\w+)\s*(?:\(\s*\))?\s*\.\s*$", s[:m.start() + 1].rstrip(". \n"))
            pick = [client_types.get(r) for r in receiver]
            services = [svc for svc in services if svc in pick] or services
            if len(services) > 1:
                fail(f"{fn.label()}: `.{op}()` exists in several SDK crates {services}; cannot tell which client")
        found.append((services[0], op, presigned, versioned))
    return found, chain_names


def actions_for(service, op, versioned):
    prefix = PREFIX.get(service, service)
    acts = EXCEPTIONS.get(service, {}).get(op) or [prefix + ":" + "".join(w.capitalize() for w in op.split("_"))]
    if versioned and op in VERSIONED and service == "s3":
        acts = acts + [VERSIONED[op]]
    return acts


# --- call graph -----------------------------------------------------------------------------------

def build_index(fns):
    by_name, methods, free, impls = {}, {}, {}, {}
    for f in fns:
        by_name.setdefault(f.name, []).append(f)
        if f.impl:
            methods.setdefault(f.name, []).append(f)
            impls.setdefault(f.impl, {}).setdefault(f.name, []).append(f)
        else:
            free.setdefault(f.name, []).append(f)
    return methods, free, impls


def params_of(f):
    """name -> type of f's parameters (`env: &Env`)."""
    if "(" not in f.header:
        return {}
    start = f.header.find("(")
    params = f.header[start + 1: matching(f.header, start, "(", ")") - 1]
    return {m.group(1): type_name(m.group(2)) for m in re.finditer(r"([a-z_]\w*)\s*:\s*([^,]+)", params)}


def field_types(fns):
    """name -> type for struct fields and fn parameters across the crate (`blob: Blob`)."""
    types = {}
    for path in (ROOT / "src").rglob("*.rs"):
        s = blank(path.read_text())
        for m in re.finditer(r"\bstruct\s+\w+[^{;]*\{", s):
            body = s[m.end():matching(s, m.end() - 1) - 1]
            for fm in re.finditer(r"(?:pub(?:\([^)]*\))?\s+)?([a-z_]\w*)\s*:\s*([^,]+)", body):
                types.setdefault(fm.group(1), type_name(fm.group(2)))
    for f in fns:
        for name, ty in params_of(f).items():
            types.setdefault(name, ty)
    return types


def client_types_of(fns):
    """field or method name -> SDK service, from `x: aws_sdk_s3::Client` and `fn x(..) -> &aws_sdk_s3::Client`."""
    out = {}
    for path in (ROOT / "src").rglob("*.rs"):
        s = blank(path.read_text())
        for m in re.finditer(r"([a-z_]\w*)\s*(?::|\([^)]*\)\s*->)\s*&?\s*aws_sdk_(\w+)::Client\b", s):
            out[m.group(1)] = m.group(2)
    return out


def imported(f, name, free):
    """Free fns `name(` can mean from f: its own module's, else those a `use` in its file names."""
    own = [g for g in free.get(name, []) if g.module == f.module]
    if own:
        return own
    uses = USES.setdefault(f.file, " ".join(re.findall(r"\buse\s+([^;]+);", blank((ROOT / f.file).read_text()))))
    named = [g for g in free.get(name, [])
             if re.search(r"\b%s\b" % name, uses) and g.module.split("::")[-1] in re.findall(r"\w+", uses)]
    return named or free.get(name, [])


USES = {}


def callees(f, methods, free, impls, types, modules, chain_names):
    s, out = f.body, set()
    local = {**types, **params_of(f)}
    for m in re.finditer(r"(\w+)\s*\.\s*([a-z_]\w*)\s*(?:::\s*<[^()]*>)?\s*\(|\)\s*\??\s*\.\s*([a-z_]\w*)\s*(?:::\s*<[^()]*>)?\s*\(", s):
        receiver, name = (m.group(1), m.group(2)) if m.group(2) else (None, m.group(3))
        if m.start(2 if m.group(2) else 3) in chain_names:
            continue
        if receiver == "self" and f.impl and name in impls.get(f.impl, {}):
            out.update(impls[f.impl][name])
        elif receiver and local.get(receiver) in impls and name in impls[local[receiver]]:
            out.update(impls[local[receiver]][name])
        elif receiver and local.get(receiver) in TRAIT_IMPLS:
            for ty in TRAIT_IMPLS[local[receiver]]:
                out.update(impls.get(ty, {}).get(name, []))
        elif receiver and local.get(receiver) and local[receiver] not in impls and local[receiver] != "Self":
            pass  # a std or dependency type (`event: &Value`, `metadata: HashMap<..>`): not this crate
        else:  # type unknown (closure argument, chained call): every method of that name (over-reports)
            out.update(methods.get(name, []))
    for m in re.finditer(r"(\w+)\s*::\s*([a-z_]\w*)\b", s):
        qual, name = m.groups()
        if qual == "Self" and f.impl:
            out.update(impls.get(f.impl, {}).get(name, []))
        elif qual in impls:
            out.update(impls[qual].get(name, []))
        elif qual in modules:
            out.update(g for g in free.get(name, []) if g.module.split("::")[-1] == qual)
    for m in re.finditer(r"(?<![\w.:])([a-z_]\w*)\s*(?:::\s*<[^()]*>)?\s*\(", s):
        name = m.group(1)
        if name not in KEYWORDS:
            out.update(imported(f, name, free))
    out.discard(f)
    return out


def entry_points(binary, fns):
    main = ROOT / "functions" / binary / "src" / "main.rs"
    if not main.exists():
        fail(f"functions/{binary}/src/main.rs not found")
    roots = []
    for path in re.findall(r"\bchute((?:::\w+)+)", blank(main.read_text())):
        parts = path.strip(":").split("::")
        name, module = parts[-1], "::".join(parts[:-1])
        hit = [f for f in fns if f.name == name and not f.impl and f.module == module]
        # a re-export (`pub use`) after a move: the free fn of that name under a module of that segment
        hit = hit or [f for f in fns if f.name == name and not f.impl and parts[-2:-1] and parts[-2] in f.module.split("::")]
        if not hit:
            fail(f"{main.relative_to(ROOT)} names chute{path}, which is not a fn in src/")
        roots.extend(hit)
    if not roots:
        fail(f"{main.relative_to(ROOT)} calls nothing in chute::")
    return roots


def reachable_calls(roots, graph, direct):
    """{(service, op, presigned, versioned): call path} over everything reachable from roots."""
    seen, calls, queue = {id(r): [r] for r in roots}, {}, list(roots)
    while queue:
        f = queue.pop(0)
        for call in direct[id(f)]:
            calls.setdefault(call, seen[id(f)])
        for g in graph[id(f)]:
            if id(g) not in seen:
                seen[id(g)] = seen[id(f)] + [g]
                queue.append(g)
    return calls


# --- template -------------------------------------------------------------------------------------

def policy_templates():
    import samtranslator
    path = Path(samtranslator.__file__).parent / "policy_templates_data" / "policy_templates.json"
    return json.loads(path.read_text())["Templates"]


def statements_of(policy, templates):
    """Allow statements in one entry of a SAM Policies list (both branches of an Fn::If)."""
    if isinstance(policy, dict) and "Fn::If" in policy:
        return [st for branch in policy["Fn::If"][1:] for st in statements_of(branch, templates)]
    if isinstance(policy, dict) and "Statement" in policy:
        sts = policy["Statement"]
        return sts if isinstance(sts, list) else [sts]
    if isinstance(policy, dict) and len(policy) == 1 and next(iter(policy)) in templates:
        return statements_of(templates[next(iter(policy))]["Definition"], templates)
    return []  # a managed policy ARN or name: not resolvable offline


def granted(function, templates):
    policies = function.get("Properties", {}).get("Policies", [])
    policies = policies if isinstance(policies, list) else [policies]
    actions = []
    for policy in policies:
        for st in statements_of(policy, templates):
            if st.get("Effect") != "Allow":
                continue
            acts = st.get("Action", [])
            actions.extend(acts if isinstance(acts, list) else [acts])
    return actions


def pinned_problems(logical, function, templates):
    """Grants of a PINNED action on anything but its one resource."""
    policies = function.get("Properties", {}).get("Policies", [])
    problems = []
    for policy in policies if isinstance(policies, list) else [policies]:
        for st in statements_of(policy, templates):
            acts = st.get("Action", [])
            acts = acts if isinstance(acts, list) else [acts]
            for action, resource in PINNED.items():
                if st.get("Effect") != "Allow" or not allows(acts, action):
                    continue
                named = st.get("Resource")
                named = named if isinstance(named, list) else [named]
                if named != [{"Fn::Sub": resource}]:
                    problems.append(f"{logical} grants {action} on {named}; grant it on {resource} only")
    return problems


def allows(patterns, action):
    return any(isinstance(p, str) and fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)


def main():
    from cfnlint.decode import decode
    template_path = ROOT / "infra" / "template.yaml"
    template, matches = decode(str(template_path))
    if matches:
        fail(f"cannot read {template_path}: {matches}")
    templates = policy_templates()
    fns = read_crate()
    methods, free, impls = build_index(fns)
    modules = {part for f in fns for part in f.module.split("::") if part}
    types, ops = field_types(fns), sdk_operations()
    clients = client_types_of(fns)
    direct, chains = {}, {}
    for f in fns:
        direct[id(f)], chains[id(f)] = sdk_calls(f, ops, clients)
    graph = {id(f): callees(f, methods, free, impls, types, modules, chains[id(f)]) for f in fns}
    # Every AWS call sits in an adapter room, where a reader (and a reviewer of a new grant) finds it.
    strays = [f"{f.label()} calls {service} {op}" for f in fns
              for (service, op, _, _) in direct[id(f)] if f.module.split("::")[0] not in ADAPTER_ROOMS]
    if strays:
        fail("AWS calls outside the adapter rooms (" + ", ".join(sorted(ADAPTER_ROOMS)) + "): " + "; ".join(strays))

    problems, functions = [], 0
    for logical, res in template["Resources"].items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if not binary:
            fail(f"{logical} has no Metadata.BuildProperties.Binary")
        functions += 1
        grants = granted(res, templates)
        calls = reachable_calls(entry_points(binary, fns), graph, direct)
        needed = set()
        for (service, op, presigned, versioned), path in sorted(calls.items()):
            how = f"{'presigned ' if presigned else ''}{service} {op}"
            for action in actions_for(service, op, versioned):
                needed.add(action)
                ok = allows(grants, action)
                via = " -> ".join(f.label() for f in path)
                print(f"  {logical:<18} {how:<34} {action:<30} {'ok' if ok else 'MISSING'}")
                if VERBOSE:
                    print(f"      via {via}")
                if not ok:
                    problems.append(f"{logical} ({binary}) calls {how} via {via}, which needs {action}; "
                                    f"its role in infra/template.yaml does not grant it")
        problems.extend(pinned_problems(logical, res, templates))
        extra = [g for g in grants if not any(fnmatch.fnmatchcase(a.lower(), str(g).lower()) for a in needed)]
        if extra:
            print(f"  {logical:<18} granted without a call in the code (kept for a reason?): {', '.join(map(str, extra))}")
    if functions == 0:
        fail("no AWS::Serverless::Function in the template")
    for p in problems:
        print(f"check_iam: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"check_iam: every AWS call of the {functions} functions is granted by its role")


if __name__ == "__main__":
    main()
