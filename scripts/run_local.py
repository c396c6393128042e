"""The one-command local run: scripts/run-local FILE [--out DIR] [--schema NAME] [--chunk-bytes N] [--import-budget-ms MS] [--team T]
[--source NAME] [--mode incremental|full] [--dry-run] [--reapply] [--force-stale] [--meta KEY=VALUE]

Prints only the report JSON on stdout; progress goes to stderr. It talks to the services with boto3
(the real AWS SDK for Python) through the endpoints in STACK/local.env. While it follows a run it
watches the stack too: a Lambda service or function that is down stops it with exit 2 and says how
to recover. It prints the run's progress as it goes and follows it for as long as it progresses
(see `follow`).
"""

import argparse
import json
import pathlib
import sys
import time
import urllib.parse
import urllib.request

from lambda_shim import template_timeouts
from stack_settings import ACCOUNT, REGION, client, function_health, load, say, sent_emails, stack_dir

STATE_MACHINE = "chute"
# A running run's progress line is printed at least this often.
PROGRESS_SECONDS = 20


def s3_event(bucket, key, size, etag, version):
    """An S3 notification as S3 sends it (keys URL-encoded, spaces as '+')."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": now,
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:LOCAL"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "LOCAL", "x-amz-id-2": "LOCAL"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "chute-incoming",
                    "bucket": {"name": bucket, "ownerIdentity": {"principalId": "LOCAL"}, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": urllib.parse.quote_plus(key, safe="/"), "size": size, "eTag": etag, "versionId": version, "sequencer": "%016X" % time.time_ns()},
                },
            }
        ]
    }


def run(args):
    env = load()
    args.env = env
    started = time.time()
    if args.resume:
        return resume(args, started)
    path = pathlib.Path(args.file)
    if not path.is_file():
        say(f"no such file: {path}")
        return 2
    s3 = client("s3", env)
    bucket = env["CHUTE_BUCKET"]
    key = "incoming/" + (f"{args.team}/" if args.team else "") + path.name
    metadata = {}
    if args.schema:
        metadata["chute-schema"] = args.schema
    if args.chunk_bytes:
        metadata["chute-chunk-bytes"] = str(args.chunk_bytes)
    if args.import_budget_ms is not None:
        metadata["chute-import-budget-ms"] = str(args.import_budget_ms)
    if args.source:
        metadata["chute-source"] = args.source
    if args.dry_run:
        metadata["chute-mode"] = "dry-run"
    elif args.mode:
        metadata["chute-mode"] = args.mode
    elif args.reapply:
        metadata["chute-mode"] = "reapply"
    if args.force_stale:
        metadata["chute-force-stale"] = "true"
    for pair in args.meta or []:
        name, _, value = pair.partition("=")
        metadata[name] = value
    put = s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), Metadata=metadata)
    etag, version = put["ETag"].strip('"'), put.get("VersionId")
    say(f"uploaded {path} ({path.stat().st_size} bytes) to s3://{bucket}/{key}")

    lam = client("lambda", env, env["LAMBDA_PORT"], retries={"max_attempts": 1}, read_timeout=900, connect_timeout=10)
    event = s3_event(bucket, key, path.stat().st_size, etag, version)
    response = lam.invoke(FunctionName="trigger", Payload=json.dumps(event).encode())
    payload = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError") or "errorType" in payload:
        say(f"trigger failed: {payload}")
        return 2
    if not payload.get("started"):
        say(f"trigger started nothing: {payload}")
        return 2
    run_id = payload["started"][0]["run_id"]
    say(f"run {run_id} started")

    execution = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STATE_MACHINE}:{run_id}"
    return follow(args, run_id, execution, started)


def resume(args, started):
    """Re-runs a failed run under its run id (what RedriveExecution does in AWS): a new execution
    with the same input, so the import ledger turns every finished chunk into a no-op."""
    sfn = client("stepfunctions", args.env)
    run_id = args.resume
    base = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STATE_MACHINE}"
    try:
        original = sfn.describe_execution(executionArn=f"{base}:{run_id}")
    except sfn.exceptions.ExecutionDoesNotExist:
        say(f"no run {run_id} on this stack ({stack_dir()}); run ids are in the reports and in `scripts/run-local` output")
        return 2
    for attempt in range(1, 10):
        name = f"{run_id}-r{attempt}"  # run ids are at most 77 characters; names 80
        try:
            sfn.describe_execution(executionArn=f"{base}:{name}")
        except sfn.exceptions.ExecutionDoesNotExist:
            break
    else:
        say(f"run {run_id} was resumed 9 times already")
        return 2
    execution = sfn.start_execution(stateMachineArn=original["stateMachineArn"], name=name, input=original["input"])["executionArn"]
    say(f"run {run_id} resumed as execution {name}")
    return follow(args, run_id, execution, started)


def follow(args, run_id, execution, started):
    """Prints the execution's events as they happen and the run's progress at least every
    PROGRESS_SECONDS, then fetches and prints the report. It follows the run for as long as it makes
    progress: it gives up when nothing changed (events, the ledger, the run's invocations in flight)
    for longer than any invocation may last (the longest Timeout of infra/template.yaml, after which
    the shim has ended it), or at --timeout when one is given."""
    sfn = client("stepfunctions", args.env)
    s3 = client("s3", args.env)
    progress = Progress(args.env, run_id, started)
    seen = 0
    changed_at = time.time()
    while True:
        problem = stack_problem(args.env)
        if problem:
            say(f"run {run_id} cannot make progress: {problem}")
            say(f"recover with `scripts/stack up`, then `scripts/run-local --resume {run_id}`")
            return 2
        status = sfn.describe_execution(executionArn=execution)["status"]
        events = sfn.get_execution_history(executionArn=execution, maxResults=1000).get("events", [])
        for e in events[seen:]:
            details = next((v for k, v in e.items() if k.endswith("EventDetails")), {})
            name = details.get("error") or details.get("name") or details.get("resource") or ""
            say(f"  +{time.time() - started:6.1f}s {e['type']} {name}".rstrip())
            progress.saw(e, details)
        if progress.poll(len(events)):
            changed_at = time.time()
        seen = len(events)
        if status != "RUNNING":
            break
        if time.time() - changed_at > args.stall_seconds:
            say(f"run {run_id} made no progress for {args.stall_seconds} s (no event, no chunk written, no invocation "
                f"started or ended); see {stack_dir()}/logs/shim.log and fn-*.log")
            return 2
        if args.timeout and time.time() - started > args.timeout:
            say(f"the run did not finish within --timeout {args.timeout} s; it goes on: "
                f"`scripts/run-local --resume {run_id}` after it ended, or follow it in {stack_dir()}/logs/")
            return 2
        time.sleep(0.5)
    say(f"execution {status} after {time.time() - started:.1f}s")

    report_key = f"reports/{run_id}/report.json"
    try:
        report_bytes = s3.get_object(Bucket=args.env["CHUTE_BUCKET"], Key=report_key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        say(f"no report was written ({report_key}); see {stack_dir()}/logs/fn-*.log for run {run_id}")
        return 2
    report = json.loads(report_bytes)
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_bytes(report_bytes)
        rejects = s3.get_object(Bucket=args.env["CHUTE_BUCKET"], Key=report["artifacts"]["rejects"])["Body"].read()
        (out / "rejects.csv").write_bytes(rejects)
        if report["artifacts"].get("stale"):
            stale = s3.get_object(Bucket=args.env["CHUTE_BUCKET"], Key=report["artifacts"]["stale"])["Body"].read()
            (out / "stale.csv").write_bytes(stale)
        email = sent_email(args.env, report)
        if email:
            (out / "email.html").write_text(email["body"])
            (out / "email.json").write_text(json.dumps({k: email[k] for k in ("source", "destinations", "subject")}, indent=2))
        stale_note = ", stale.csv" if report["artifacts"].get("stale") else ""
        say(f"wrote report.json, rejects.csv{stale_note}{', email.html' if email else ''} to {out}")
    print(json.dumps(report, indent=2))
    if report["status"] == "FAILED":
        say(f"FAILED: {report.get('reason', 'see the report')}")
        return 1
    return 0


class Progress:
    """What a running run has done so far, from its execution history (the step, the plan's chunk
    and row counts), its import_runs ledger document (chunks done, documents written as each
    import invocation ends) and the shim's record of its invocations in flight; printed every
    PROGRESS_SECONDS."""

    def __init__(self, env, run_id, started):
        import pymongo  # only in the stack's venv, like boto3

        self.ledger = pymongo.MongoClient(env["CHUTE_MONGODB_URI"], serverSelectionTimeoutMS=5000)[env["CHUTE_DATABASE"]]["import_runs"]
        self.env = env
        self.run_id = run_id
        self.started = started
        self.step = "starting"
        self.chunks = self.rows = None
        self.map_started = None
        self.printed_at = time.time()
        self.last = None

    def saw(self, event, details):
        if event["type"].endswith("StateEntered"):
            self.step = details.get("name", self.step)
            if self.step == "ImportChunks":
                self.map_started = time.time()
        output = details.get("output")
        if event["type"].endswith("StateExited") and details.get("name") == "Validate" and output:
            plan = json.loads(output).get("plan") or {}
            self.chunks, self.rows = plan.get("chunk_count"), plan.get("rows")

    def written(self):
        """(chunks done, documents written) as the ledger has them; None while MongoDB does not answer."""
        try:
            run = self.ledger.find_one({"_id": self.run_id}, {"chunks": 1, "progress": 1}) or {}
        except Exception:  # a MongoDB outage is the run's problem to report, not the follower's
            return None
        chunks = run.get("chunks") or {}
        documents = sum(c.get("inserted", 0) + c.get("updated", 0) + c.get("unchanged", 0) for c in chunks.values())
        documents += sum(p.get("documents", 0) for k, p in (run.get("progress") or {}).items() if k not in chunks)
        return len(chunks), documents

    def in_flight(self):
        """{function: request ids of the run's invocations in flight}, from the shim's record."""
        health = function_health(self.env) or {}
        return {name: sorted(s["inflight"]["request_id"] for s in f.get("sandboxes", [])
                             if s.get("inflight") and s["inflight"].get("run") == self.run_id)
                for name, f in health.items()}

    def poll(self, events):
        """Prints the progress line when due; True when anything moved since the last poll."""
        written = self.written()
        in_flight = self.in_flight()
        state = (events, written, in_flight)
        moved = state != self.last
        self.last = state
        if time.time() - self.printed_at >= PROGRESS_SECONDS:
            self.printed_at = time.time()
            say(self.line(written, in_flight))
        return moved

    def line(self, written, in_flight):
        elapsed = time.time() - self.started
        text = f"progress +{elapsed:.0f}s: {self.step}"
        if written is None:
            return text + "; MongoDB does not answer"
        done, documents = written
        text += f", chunks {done}/{self.chunks if self.chunks is not None else '?'} done"
        busy = [f"{len(ids)} {name}" for name, ids in in_flight.items() if ids]
        text += f" ({', '.join(busy)} in flight)" if busy else ""
        # The ledger counts a chunk's documents when an import invocation ends (a chunk or a budget).
        text += f", {documents} documents written"
        if self.map_started and documents:
            rate = documents / (time.time() - self.map_started)
            text += f" ({rate:.0f}/s"
            if self.rows:
                text += f", about {max(self.rows - documents, 0) / rate:.0f} s left"
            text += ")"
        return text


def stack_problem(env):
    """What stops a run from progressing: the Lambda shim not running (from the stack's own
    records), or a function the shim left down. A shim slow to answer is busy, not down."""
    pids = stack_dir() / "pids"
    if not alive(pids / "shim.pid"):
        return "the local Lambda service (scripts/lambda_shim.py, which runs the functions) is not running"
    down = [f"{name} ({f['last_exit']})" for name, f in (function_health(env) or {}).items() if f["state"] == "crashed"]
    if down:
        return f"function {', '.join(down)} keeps exiting at start; see {stack_dir()}/logs/fn-*.log"
    return None


def alive(pid_file):
    """Running, not a zombie (a killed service init has not reaped yet)."""
    try:
        stat = pathlib.Path(f"/proc/{int(pid_file.read_text())}/stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rsplit(") ", 1)[1][:1] not in ("Z", "X")


def sent_email(env, report):
    """The email as moto's SES received it (moto keeps the HTML part when both are sent)."""
    message_id = (report.get("email") or {}).get("message_id")
    if not message_id:
        return None
    return next((m for m in sent_emails(env) if m.get("id") == message_id), None)


def main():
    parser = argparse.ArgumentParser()
    r = parser
    r.add_argument("file", nargs="?")
    r.add_argument("--resume", metavar="RUN_ID", help="re-run a failed run; finished chunks are not redone")
    r.add_argument("--out")
    r.add_argument("--schema")
    r.add_argument("--chunk-bytes", type=int)
    r.add_argument("--import-budget-ms", type=int, help="time budget of one import invocation (chute-import-budget-ms): a tiny one makes each chunk import over several invocations")
    r.add_argument("--team", help="drop the file under incoming/TEAM/ (email routing; also the file's source unless --source)")
    r.add_argument("--source", help="the feed source that sent the file (chute-source); default: the team folder, else 'default'")
    r.add_argument("--mode", choices=["incremental", "full"], help="override the source's configured mode (chute-mode)")
    r.add_argument("--dry-run", action="store_true", help="run everything but the writes (chute-mode: dry-run); the report says what would change")
    r.add_argument("--reapply", action="store_true", help="send every row to the database whatever the source's snapshot says (chute-mode: reapply; the source's configured mode)")
    r.add_argument("--force-stale", action="store_true", help="a full refresh marks its stale products even above max_stale_percent (chute-force-stale: true)")
    r.add_argument("--meta", action="append", metavar="KEY=VALUE", help="object metadata, repeatable (chute-encoding=windows-1252, chute-delimiter=auto, …)")
    r.add_argument("--timeout", type=int, default=0, help="give up after this many seconds even while the run progresses (default: never)")
    r.add_argument("--stall-seconds", type=int, default=max(template_timeouts().values()) + 60,
                   help="give up when the run made no progress for this long (default: the longest function Timeout + 60 s)")
    args = parser.parse_args()
    sys.exit(run(args) or 0)


if __name__ == "__main__":
    main()
