"""The delta-import benchmark (issue 25; README "Delta import"), through the local stack:

    scripts/bench --delta [--delta-rows N] [--json FILE] [--timeout S] [--keep]

runs this script with the stack's Python after `scripts/stack reload` (the stack then runs this
checkout's functions). A full feed of N products (scripts/generate-products, keys given a prefix of
their own so every benchmark inserts new products) goes through `scripts/run-local` three times as
one `full` source of its own:

  1. first   the whole file: every product inserted (delta off: no snapshot yet);
  2. same    the identical file again: nothing should reach the database;
  3. changed 1 % of the rows with a new price and 0.5 % of the rows dropped: exactly those
             products updated, exactly those marked stale.

For each run it records the wall time, the report's step timings (`timings.steps`), counts, delta
section and `delta.commands`, the server's `serverStatus.opcounters` before and after (SecantusDB
counts commands, not documents; `command` also counts the drivers' heartbeats, so the idle rate is
measured first), and what changed in the products collection (every document of the feed read
before and after: its bytes, `_rev`, `_sources.<source>.at`, the stale tag). Then the same documents
go through a raw `insert_many` (batches of 1,000, unordered) into fresh collections created with
the products collection's options (validator) and indexes: the documents as the first run stored
them, and as its transform staged them (what `scripts/bench`'s import figures insert). Prints a
table, writes docs/delta-bench.md (and with --json the figures; with --readme the README's table
between its delta-bench markers). Times are measured, never asserted; the exit status is 1 when a
run failed or a correctness check (which documents changed) missed, 0 otherwise.
"""

import argparse
import datetime
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from stack_settings import ACCOUNT, REGION, ROOT, client, function_health, load, say, stack_dir

RAW_BATCH = 1000
MARK_START, MARK_END = "<!-- delta-bench:start -->", "<!-- delta-bench:end -->"


class BenchError(Exception):
    """A step that could not be done: the message says which and why."""


# ---------------------------------------------------------------------------------------------
# The files


def make_files(rows, tag, work):
    """The three files. Keys are `D<tag>-<row>` (generate-products writes `M<rows>-<row>`), so the
    products are new to the database whatever ran before. Returns the paths and the key sets."""
    generated = work / "generated.csv"
    say(f"generating {rows:,} products with scripts/generate-products")
    subprocess.run([sys.executable, str(ROOT / "scripts/generate-products"), str(rows), str(generated)], check=True)
    old_prefix, new_prefix = f"M{rows}-", f"D{tag}-"
    # Run ids start with the file's name: bench-<tag>-… names this benchmark's runs alone.
    first = work / f"bench-{tag}.csv"
    changed_file = work / f"bench-{tag}-changed.csv"
    changed, dropped, keys = set(), set(), []
    with generated.open() as src, first.open("w") as out, changed_file.open("w") as out_changed:
        header = src.readline()
        columns = header.rstrip("\n").split(",")
        if columns[:3] != ["sku", "name", "price"]:
            raise BenchError(f"scripts/generate-products wrote an unexpected header: {header.strip()}")
        out.write(header)
        out_changed.write(header)
        for i, line in enumerate(src):
            if not line.startswith(old_prefix):
                raise BenchError(f"row {i + 1} of the generated file does not start with {old_prefix}")
            line = new_prefix + line[len(old_prefix):]
            out.write(line)
            # Generated names hold no comma, so the fields split plainly.
            fields = line.rstrip("\n").split(",")
            key = fields[0]
            keys.append(key)
            if i % 200 == 13:  # 0.5 % dropped
                dropped.add(key)
                continue
            if i % 100 == 7:  # 1 % with a new price (disjoint from the dropped: i % 100 is 13 there)
                whole, cents = fields[2].split(".")
                fields[2] = f"{int(whole) + 1000}.{cents}"
                changed.add(key)
                line = ",".join(fields) + "\n"
            out_changed.write(line)
    generated.unlink()
    if len(keys) != rows:
        raise BenchError(f"scripts/generate-products wrote {len(keys)} rows, not {rows}")
    say(f"files: {first.name} ({first.stat().st_size:,} bytes), {changed_file.name}: "
        f"{len(changed):,} prices changed, {len(dropped):,} rows dropped")
    return first, changed_file, new_prefix, changed, dropped


# ---------------------------------------------------------------------------------------------
# The database


def prefix_filter(prefix):
    # A range on the key, which the unique key index answers (a regex may be a collection scan).
    return {"sku": {"$gte": prefix, "$lt": prefix + "\x7f"}}


def opcounters(db):
    counters = db.client.admin.command("serverStatus").get("opcounters")
    if not counters:
        raise BenchError("serverStatus has no opcounters on this server")
    return {k: int(v) for k, v in counters.items() if k in ("insert", "query", "update", "delete", "getmore", "command")}


def minus(after, before):
    return {k: after[k] - before.get(k, 0) for k in after}


TOP_FIELDS = ("queries", "getmore", "insert", "update", "remove", "commands")


def top(db):
    """Operations per collection of the database (the `top` command: SecantusDB answers it as
    MongoDB does), or None where the server lacks it."""
    try:
        totals = db.client.admin.command("top")["totals"]
    except Exception:
        return None
    prefix = db.name + "."
    return {ns[len(prefix):]: sum(int(v.get(f, {}).get("count", 0)) for f in TOP_FIELDS)
            for ns, v in totals.items() if ns.startswith(prefix) and isinstance(v, dict)}


def top_minus(after, before):
    if after is None or before is None:
        return None
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}


def feed_state(collection, prefix, source, keep_to=None):
    """Every document of the feed: key -> (digest of its bytes, _rev, _sources.<source>.at,
    _sources.<source>.stale_run). With keep_to, the documents' bytes are also written there."""
    from bson.raw_bson import RawBSONDocument

    state = {}
    out = keep_to.open("wb") if keep_to else None
    try:
        cursor = collection.with_options(codec_options=collection.codec_options.with_options(document_class=RawBSONDocument))
        for doc in cursor.find(prefix_filter(prefix), batch_size=5000):
            raw = doc.raw
            if out:
                out.write(raw)
            claim = doc.get("_sources", {}).get(source) or {}
            state[doc["sku"]] = (
                hashlib.blake2b(raw, digest_size=16).digest(),
                doc.get("_rev"),
                claim.get("at"),
                claim.get("stale_run"),
            )
    finally:
        if out:
            out.close()
    return state


def compare(before, after):
    """What changed between two feed states: sets of keys."""
    common = before.keys() & after.keys()
    return {
        "new": after.keys() - before.keys(),
        "gone": before.keys() - after.keys(),
        "modified": {k for k in common if before[k][0] != after[k][0]},
        "rev": {k for k in common if before[k][1] != after[k][1]},
        "at": {k for k in common if before[k][2] != after[k][2]},
        "stale": {k for k in after if after[k][3] is not None and (k not in before or before[k][3] != after[k][3])},
    }


def idle_command_rate(db, seconds):
    """Commands per second the server counts with no run going (the drivers' heartbeats)."""
    a = opcounters(db)
    time.sleep(seconds)
    b = opcounters(db)
    d = minus(b, a)
    return d["command"] / seconds, sum(v for k, v in d.items() if k != "command")


# ---------------------------------------------------------------------------------------------
# The functions' memory


def function_pids():
    """The shim's function processes: name -> pids (STACK/pids/fn-NAME.pid, fn-NAME-K.pid)."""
    found = {}
    for path in (stack_dir() / "pids").glob("fn-*.pid"):
        name = re.sub(r"-\d+$", "", path.stem[3:])
        try:
            found.setdefault(name, []).append(int(path.read_text().strip()))
        except (OSError, ValueError):
            pass
    return found


def reset_peaks():
    """Resets every function process's peak RSS (VmHWM) so the next reading is one run's."""
    for pids in function_pids().values():
        for pid in pids:
            try:
                pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                pass


def peaks():
    """Peak RSS in MB per function, the largest of its processes (since reset_peaks)."""
    out = {}
    for name, pids in function_pids().items():
        for pid in pids:
            try:
                status = pathlib.Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
            if m:
                out[name] = max(out.get(name, 0), round(int(m.group(1)) / 1024))
    return out


# ---------------------------------------------------------------------------------------------
# One run


def run_local(label, path, source, timeout, work):
    """scripts/run-local on the file as a `full` refresh of `source`; its progress goes to our
    stderr and to a log. Returns (report, wall seconds)."""
    out = work / f"out-{label}"
    log = work / f"{label}.log"
    command = [str(ROOT / "scripts/run-local"), str(path), "--mode", "full", "--source", source,
               "--timeout", str(timeout), "--out", str(out)]
    say(f"run {label}: {' '.join(command[1:])}")
    started = time.monotonic()
    with log.open("w") as log_file:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def relay():
            for line in process.stderr:
                log_file.write(line)
                log_file.flush()
                print(f"    {label}: {line.rstrip()}", file=sys.stderr, flush=True)

        relaying = threading.Thread(target=relay, daemon=True)
        relaying.start()
        try:
            stdout = process.stdout.read()
            process.wait()
        except BaseException:
            process.terminate()
            raise
        relaying.join()
    wall = time.monotonic() - started
    if process.returncode not in (0, 1):
        raise BenchError(f"run {label}: scripts/run-local exited {process.returncode} (see {log})")
    try:
        report = json.loads(stdout)
    except ValueError as e:
        raise BenchError(f"run {label}: run-local printed no report JSON ({e}; see {log})") from None
    if report.get("status") not in ("SUCCEEDED", "PARTIAL"):
        raise BenchError(f"run {label}: the run ended {report.get('status')}: {report.get('reason') or report.get('warnings')}")
    return report, wall


def measure_run(label, path, source, prefix, db, timeout, work, before_state, keep_docs=None):
    collection = db["products"]
    reset_peaks()
    load_before = os.getloadavg()[0]
    top_before = top(db)
    ops_before = opcounters(db)
    report, wall = run_local(label, path, source, timeout, work)
    ops = minus(opcounters(db), ops_before)
    per_collection = top_minus(top(db), top_before)
    memory = peaks()
    say(f"run {label}: {report['status']} in {wall:.1f} s; reading the feed's documents")
    after_state = feed_state(collection, prefix, source, keep_docs)
    changes = compare(before_state, after_state)
    steps = report.get("timings", {}).get("steps", {})
    delta = report.get("delta")
    figures = {
        "label": label,
        "run_id": report["run_id"],
        "status": report["status"],
        "wall_s": round(wall, 1),
        "duration_ms": report.get("timings", {}).get("duration_ms"),
        "steps_ms": steps,
        "import_ms": steps.get("import_ms"),
        "rows": report.get("rows"),
        "written": report.get("written"),
        "stale": report.get("stale"),
        "delta": delta,
        "opcounters": ops,
        "collections": per_collection,
        "peak_rss_mb": memory,
        "load": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "documents": {k: len(v) for k, v in changes.items()},
    }
    return figures, after_state, changes


# ---------------------------------------------------------------------------------------------
# Raw insert_many


def fresh_collection_like(db, name, like="products"):
    """A new collection with `like`'s options (validator, validation level/action) and indexes."""
    from pymongo import IndexModel

    info = next(db.list_collections(filter={"name": like}), None)
    if info is None:
        raise BenchError(f"no collection {like} to copy the set-up of")
    db.drop_collection(name)
    options = {k: v for k, v in info.get("options", {}).items() if k in ("validator", "validationLevel", "validationAction", "collation")}
    db.create_collection(name, **options)
    models = []
    for index in db[like].list_indexes():
        if index["name"] == "_id_":
            continue
        extra = {k: v for k, v in index.items() if k not in ("v", "key", "ns")}
        models.append(IndexModel(list(index["key"].items()), **extra))
    if models:
        db[name].create_indexes(models)
    return db[name], len(models), sorted(options)


def split_bson(data):
    """Concatenated BSON documents -> raw document byte strings."""
    docs, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at:at + 4], "little")
        if size < 5 or at + size > len(data):
            raise BenchError(f"staged BSON truncated at byte {at}")
        docs.append(data[at:at + size])
        at += size
    return docs


def with_object_id(raw):
    """A staged document (no `_id`) with a new ObjectId first, as a driver adds one."""
    from bson import ObjectId

    element = b"\x07_id\x00" + ObjectId().binary
    return (len(raw) + len(element)).to_bytes(4, "little") + element + raw[4:]


def raw_insert(db, name, docs):
    """insert_many of `docs` (raw bytes) in batches of RAW_BATCH, unordered, into a fresh collection
    set up like products; returns documents per second."""
    from bson.raw_bson import RawBSONDocument

    collection, indexes, options = fresh_collection_like(db, name)
    documents = [RawBSONDocument(d) for d in docs]
    say(f"raw insert_many of {len(documents):,} documents into {name} (options {', '.join(options) or 'none'}, "
        f"{indexes} indexes besides _id)")
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    for at in range(0, len(documents), RAW_BATCH):
        collection.insert_many(documents[at:at + RAW_BATCH], ordered=False)
    elapsed = time.monotonic() - started
    load = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    count = collection.estimated_document_count()
    db.drop_collection(name)
    if count != len(documents):
        raise BenchError(f"raw insert_many into {name} stored {count} documents of {len(documents)}")
    return {"documents": len(documents), "seconds": round(elapsed, 1), "docs_per_s": round(len(documents) / elapsed), "load": load}


def staged_documents(env, run_id):
    s3 = client("s3", env)
    bucket = env["CHUTE_BUCKET"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"staging/{run_id}/")
    keys = sorted(o["Key"] for o in listed.get("Contents", []) if re.search(r"/chunk-\d+\.bson$", o["Key"]))
    if not keys:
        raise BenchError(f"no staged BSON under s3://{bucket}/staging/{run_id}/")
    docs = []
    for key in keys:
        docs.extend(split_bson(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    return [with_object_id(d) for d in docs]


# ---------------------------------------------------------------------------------------------
# Checks, table, files


def checks(rows, runs, changed, dropped, changes):
    """(what, expected, measured, met, kind): kind `exact` misses fail the benchmark; `target`
    ones (times, command counts) are reported only."""
    first, same, delta = runs
    out = []

    def exact(what, expected, measured):
        out.append({"check": what, "expected": expected, "measured": measured, "met": expected == measured, "kind": "exact"})

    def target(what, expected, measured, met):
        out.append({"check": what, "expected": expected, "measured": measured, "met": bool(met), "kind": "target"})

    c1, c2, c3 = changes
    exact("first run: products inserted", rows, (first["written"] or {}).get("inserted"))
    exact("first run: documents of the feed in the collection", rows, len(c1["new"]))
    exact("same file: documents modified (any byte)", 0, len(c2["modified"]))
    exact("same file: `_rev` changed", 0, len(c2["rev"]))
    exact(f"same file: `_sources.<source>.at` changed", 0, len(c2["at"]))
    exact("same file: products marked stale", 0, len(c2["stale"]))
    updated = c3["modified"] - c3["stale"]
    exact("1 % changed: documents modified, stale ones aside", len(changed), len(updated))
    exact("1 % changed: modified documents are exactly the changed rows", True, updated == changed)
    exact("1 % changed: `_rev` changed on exactly the changed and dropped rows", True, c3["rev"] == changed | dropped)
    exact("1 % changed: marked stale", len(dropped), len(c3["stale"]))
    exact("1 % changed: stale ones are exactly the dropped rows", True, c3["stale"] == dropped)
    exact("1 % changed: report `written.updated`", len(changed), (delta["written"] or {}).get("updated"))
    exact("1 % changed: report `stale.marked`", len(dropped), (delta["stale"] or {}).get("marked"))
    for run, label in ((same, "same file"), (delta, "1 % changed")):
        d = run["delta"]
        exact(f"{label}: report has a delta section, status on", "on", d.get("status") if d else None)
    if delta["delta"]:
        d = delta["delta"]
        exact("1 % changed: delta.changed", len(changed), d.get("changed"))
        exact("1 % changed: delta.stale", len(dropped), d.get("stale"))
        exact("1 % changed: delta.unchanged", rows - len(changed) - len(dropped), d.get("unchanged"))
    if same["delta"]:
        exact("same file: delta.unchanged", rows, same["delta"].get("unchanged"))
    commands = (same["delta"] or {}).get("commands")
    target("same file: database commands chute sent (`delta.commands`)", "≤ a few dozen (48)",
           commands, commands is not None and commands <= 48)
    products = (same["collections"] or {}).get("products")
    target("same file: operations on the products collection (server's `top`)", "≤ a few dozen (48)",
           products, products is not None and products <= 48)
    total = sum(same["opcounters"].values())
    target("same file: everything the server counted (opcounters: heartbeats and run-local's ledger polling included)",
           "≤ a few dozen (48)", total, total <= 48)
    if first["import_ms"] and same["import_ms"] is not None:
        speedup = first["import_ms"] / max(same["import_ms"], 1)
        target("same file: import phase faster than the first's", "≥ 20×", f"{speedup:.1f}×", speedup >= 20)
    return out


def fmt(n):
    if n is None:
        return "—"
    if isinstance(n, bool):
        return "yes" if n else "no"
    return f"{n:,}" if isinstance(n, int) else str(n)


def load_text(figures):
    pair = figures.get("load")
    return f"{pair[0]} → {pair[1]}" if pair else "—"


def render(result):
    runs = result["runs"]
    lines = [
        f"Run of {result['date']}: {result['rows']:,} products (`scripts/generate-products`), one `full` source, "
        f"through the local stack (debug builds of the functions, SecantusDB) on this {result['cpus']}-core machine; "
        f"the server counted {result['idle_commands_per_s']:.2f} commands/s with no run going (heartbeats). "
        f"The machine is shared: the 1-minute load average before and after each measurement is given, since the "
        f"ratios compare measurements taken minutes apart.",
        "",
        "| run | wall | import phase | written (ins / upd / unch) | stale marked | delta (status: new / changed / unchanged / stale) | chute's commands | products collection ops (`top`) | server opcounters: reads + writes / commands (of which est. heartbeats) | documents modified (`_rev` / `at`) | peak RSS: transform / import / report | load before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = {"first": "first import", "same": "same file again", "changed": "1 % changed, 0.5 % removed"}
    for r in runs:
        w = r["written"] or {}
        d = r["delta"]
        delta = (f"{d.get('status')}: {fmt(d.get('new'))} / {fmt(d.get('changed'))} / {fmt(d.get('unchanged'))} / {fmt(d.get('stale'))}"
                 if d else "absent")
        if d and d.get("reason"):
            delta += f" ({d['reason']})"
        ops = r["opcounters"]
        rw = sum(v for k, v in ops.items() if k != "command")
        docs = r["documents"]
        modified = docs["new"] + docs["modified"]
        lines.append(
            f"| {names[r['label']]} | {r['wall_s']:.1f} s | {r['import_ms'] / 1000:.1f} s | "
            f"{fmt(w.get('inserted'))} / {fmt(w.get('updated'))} / {fmt(w.get('unchanged'))} | "
            f"{fmt((r['stale'] or {}).get('marked'))} | {delta} | {fmt(d.get('commands') if d else None)} | "
            f"{fmt((r.get('collections') or {}).get('products'))} | "
            f"{rw:,} (ins {ops['insert']}, query {ops['query']}, upd {ops['update']}, del {ops['delete']}, getmore {ops['getmore']}) / "
            f"{ops['command']:,} (~{r['heartbeats_estimated']:,}) | {modified:,} ({docs['rev']:,} / {docs['at']:,}) | "
            + " / ".join(f"{r['peak_rss_mb'].get(f, '—')} MB" for f in ("transform", "import", "report"))
            + f" | {load_text(r)} |"
        )
    raw = result.get("raw") or {}
    first = runs[0]
    first_rate = round(first["written"]["inserted"] / (first["import_ms"] / 1000)) if first["import_ms"] else None
    lines += ["", "| import vs raw `insert_many` (same validator and indexes, batches of 1,000, unordered) | docs/s | first import is | load before → after |",
              "|---|---|---|---|",
              f"| first import (import phase, {first['written']['inserted']:,} inserted) | {fmt(first_rate)} | | {load_text(first)} |"]
    for kind, text in (("stored", "raw insert_many of the documents as the first run stored them"),
                       ("staged", "raw insert_many of the documents as its transform staged them (as `scripts/bench`)")):
        if kind in raw:
            rate = raw[kind]["docs_per_s"]
            ratio = f"{first_rate / rate:.2f}× (target ≥ 0.9×: {'met' if first_rate / rate >= 0.9 else '**missed**'})" if first_rate else "—"
            lines.append(f"| {text} | {rate:,} | {ratio} | {load_text(raw[kind])} |")
    lines += ["", "| check | expected | measured | |", "|---|---|---|---|"]
    for c in result["checks"]:
        verdict = "met" if c["met"] else ("**missed**" if c["kind"] == "exact" else "**missed** (target)")
        lines.append(f"| {c['check']} | {fmt(c['expected'])} | {fmt(c['measured'])} | {verdict} |")
    return "\n".join(lines) + "\n"


def write_doc(path, table, result):
    path.write_text(
        "# Delta import benchmark\n\n"
        "Written by `scripts/bench --delta` (scripts/bench_delta.py); README \"Delta import\" explains the design. "
        "A full feed imported, the same file again, then 1 % of prices changed and 0.5 % of the rows dropped, "
        "each with `scripts/run-local --mode full` as one source, beside a raw `insert_many` of the same documents. "
        "\"chute's commands\" is the report's `delta.commands` (what chute's store sent: validate, every import "
        "invocation, the report step); \"products collection ops\" the server's own count of operations on the "
        "products collection over the run (the `top` command); the opcounters columns are `serverStatus.opcounters` "
        "differences over the run, which SecantusDB counts per command (an `insert` of 1,000 documents is 1), and which "
        "also count every client's heartbeats (estimated from the idle rate measured before the runs) and "
        "`scripts/run-local`'s own progress polling of the `import_runs` ledger (every 0.5 s while chunks run). "
        "\"Documents modified\" compares every document of the feed, read before and after the run, byte for byte. "
        "Peak RSS is each function's largest process over the run (VmHWM, reset before each run). The figures of each "
        "run, `top` per collection included, are in the `--json` file (docs/delta-bench.json for the README's run).\n\n"
        + table
    )


def update_readme(path, table):
    text = path.read_text()
    if MARK_START not in text or MARK_END not in text:
        raise BenchError(f"{path} has no {MARK_START} … {MARK_END} section to rewrite")
    head, rest = text.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    path.write_text(f"{head}{MARK_START}\n{table}{MARK_END}{tail}")


# ---------------------------------------------------------------------------------------------


def cleanup(env, db, prefix, source):
    """Removes what the benchmark left: its products, its source's snapshot record, lease, pieces
    and per-source indexes (every benchmark uses a source and keys of its own)."""
    say(f"cleaning up: products {prefix}*, source {source}'s snapshot, lease and indexes "
        "(deleting the products takes SecantusDB a few minutes at 200,000)")
    # An interrupted benchmark leaves its run going in the stack: stop it before deleting under it.
    sfn = client("stepfunctions", env)
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:chute"
    tag = prefix[1:-1]  # the keys' prefix is D<tag>-, the files bench-<tag>…
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine, statusFilter="RUNNING"):
        for execution in page["executions"]:
            if execution["name"].startswith(f"bench-{tag}"):
                sfn.stop_execution(executionArn=execution["executionArn"], cause="scripts/bench --delta interrupted")
                say(f"stopped run {execution['name']}")
    # A stopped execution does not end the invocation a function holds for it: wait for those, or
    # they would write products after the delete.
    waited = time.monotonic()
    while True:
        held = [f"{name} ({s['inflight'].get('run')})" for name, f in (function_health(env) or {}).items()
                for s in f.get("sandboxes", []) if (s.get("inflight") or {}).get("run", "").startswith(f"bench-{tag}")]
        if not held:
            break
        if time.monotonic() - waited > 900:
            say(f"warning: invocations of the benchmark's runs still in flight after 900 s: {', '.join(held)}")
            break
        say(f"waiting for the invocations in flight to end: {', '.join(held)}")
        time.sleep(10)
    db["products"].delete_many(prefix_filter(prefix))
    manifest = db["chute_snapshots"].find_one({"_id": f"products/{source}"})
    # Every snapshot the source committed (replaced ones are not deleted by chute yet) lives under
    # <snapshot prefix><collection>/<source>/<run>/: the source's folder is one level up.
    prefixes = {m["prefix"].rstrip("/").rsplit("/", 1)[0] + "/"
                for m in (manifest or {}).values() if isinstance(m, dict) and m.get("prefix")}
    db["chute_snapshots"].delete_one({"_id": f"products/{source}"})
    db["chute_leases"].delete_one({"_id": f"products/{source}"})
    for index in db["products"].list_indexes():
        if index["name"].startswith(f"_sources_{source.replace('-', '_')}_") or f"_sources.{source}." in "".join(index["key"]):
            db["products"].drop_index(index["name"])
    s3 = client("s3", env)
    for p in prefixes:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=env["CHUTE_BUCKET"], Prefix=p):
            for o in page.get("Contents", []):
                s3.delete_object(Bucket=env["CHUTE_BUCKET"], Key=o["Key"])


def interrupted(signum, frame):
    raise KeyboardInterrupt


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200000)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--doc", default=str(ROOT / "docs/delta-bench.md"), help="the Markdown page to write ('' for none)")
    parser.add_argument("--readme", help="rewrite this README's table between the delta-bench markers")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds each run may take (run-local --timeout)")
    parser.add_argument("--idle-seconds", type=int, default=30, help="how long to measure the server's idle command rate")
    parser.add_argument("--skip-raw", action="store_true", help="leave out the raw insert_many figures")
    parser.add_argument("--keep", action="store_true", help="keep the work dir and the benchmark's products, snapshot and indexes")
    parser.add_argument("--render", metavar="JSON", help="only rewrite the table (stdout, --doc, --readme) from a --json file")
    args = parser.parse_args()
    if args.render:
        result = json.loads(pathlib.Path(args.render).read_text())
        table = render(result)
        print(table)
        if args.doc:
            write_doc(pathlib.Path(args.doc), table, result)
        if args.readme:
            update_readme(pathlib.Path(args.readme), table)
        return 0
    if args.rows < 1000:
        parser.error("--rows must be at least 1000 (1 % and 0.5 % of it must be rows)")

    import pymongo

    try:
        env = load()
    except OSError as e:
        say(f"error: no local stack settings ({e}); start it with scripts/stack up")
        return 1
    db = pymongo.MongoClient(env["CHUTE_MONGODB_URI"], serverSelectionTimeoutMS=10000)[env["CHUTE_DATABASE"]]
    try:
        db.command("ping")
    except pymongo.errors.PyMongoError as e:
        say(f"error: the stack's MongoDB does not answer at {env['CHUTE_MONGODB_URI']} ({e}); scripts/stack status")
        return 1
    # SIGTERM (a killed benchmark) unwinds like Ctrl-C, so the cleanup below still runs.
    signal.signal(signal.SIGTERM, interrupted)
    tag = format(int(time.time()), "x")
    source = f"bench-delta-{tag}"
    work = pathlib.Path(tempfile.mkdtemp(prefix="chute-bench-delta-"))
    say(f"work dir {work}; source {source}; database {env['CHUTE_DATABASE']} on {env['CHUTE_MONGODB_URI']}")
    ok = False
    prefix = None
    try:
        first_file, changed_file, prefix, changed, dropped = make_files(args.rows, tag, work)
        say(f"measuring the server's idle command rate for {args.idle_seconds} s")
        idle_rate, idle_rw = idle_command_rate(db, args.idle_seconds)
        if idle_rw:
            say(f"warning: the server counted {idle_rw} reads/writes with no run going: something else uses it")
        state = feed_state(db["products"], prefix, source)
        if state:
            raise BenchError(f"the collection already holds {len(state)} products with the prefix {prefix}")
        runs, changes = [], []
        first_docs = work / "first-docs.bson"
        for label, path, keep in (("first", first_file, first_docs), ("same", first_file, None), ("changed", changed_file, None)):
            figures, state, change = measure_run(label, path, source, prefix, db, args.timeout, work, state, keep)
            beats = round(idle_rate * figures["wall_s"])
            figures["heartbeats_estimated"] = beats
            figures["commands_attributable"] = max(0, sum(figures["opcounters"].values()) - beats)
            runs.append(figures)
            changes.append(change)
            say(f"run {label}: import phase {figures['import_ms']} ms, written {figures['written']}, "
                f"delta {figures['delta']}, server {figures['opcounters']}, documents {figures['documents']}")
        raw = {}
        if not args.skip_raw:
            raw["stored"] = raw_insert(db, f"bench_raw_{tag}", split_bson(first_docs.read_bytes()))
            raw["staged"] = raw_insert(db, f"bench_raw_{tag}", staged_documents(env, runs[0]["run_id"]))
        result = {
            "date": datetime.date.today().isoformat(),
            "rows": args.rows,
            "cpus": os.cpu_count(),
            "source": source,
            "idle_commands_per_s": round(idle_rate, 3),
            "changed_rows": len(changed),
            "dropped_rows": len(dropped),
            "runs": runs,
            "raw": raw,
        }
        result["checks"] = checks(args.rows, runs, changed, dropped, changes)
        table = render(result)
        print(table)
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
            say(f"wrote {args.json}")
        if args.doc:
            write_doc(pathlib.Path(args.doc), table, result)
            say(f"wrote {args.doc}")
        if args.readme:
            update_readme(pathlib.Path(args.readme), table)
            say(f"rewrote the table in {args.readme}")
        missed = [c["check"] for c in result["checks"] if c["kind"] == "exact" and not c["met"]]
        if missed:
            say(f"{len(missed)} correctness checks missed: " + "; ".join(missed))
            return 1
        ok = True
        return 0
    except BenchError as e:
        say(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as e:
        traceback.print_exc()
        say(f"error: {e!r}")
        return 1
    finally:
        if not args.keep and prefix:
            try:
                cleanup(env, db, prefix, source)
            except Exception as e:  # a cleanup failure must not hide the measurements
                say(f"warning: cleanup failed: {e}")
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"work dir kept: {work}")


if __name__ == "__main__":
    sys.exit(main())
