"""The local stack's tooling, called by scripts/stack (the run CLI is scripts/run_local.py).

  stack_tools.py ports FILE                 pick four free ports once (kept in FILE)
  stack_tools.py wait --mongo PORT --http PORT...
  stack_tools.py provision                  bucket, SES identity, state machine (from the ASL file)
  stack_tools.py health [--json]            every function's processes from the shim; exit 1 if one is down
  stack_tools.py emails                     the emails moto's SES accepted (JSON)
  stack_tools.py history RUN_ID             the events of the run's execution (JSON)
  stack_tools.py run-events                 the run-finished events the default bus delivered (JSON)
  stack_tools.py hold FUNCTION [--answers N] hold its next N answers, each until its process exits or a release
  stack_tools.py release FUNCTION           let its held answers go
  stack_tools.py timeout FUNCTION [SECONDS] shorten its timeout (fault tests); no SECONDS: the template's
  stack_tools.py cargo-executable NAME      reads `cargo … --message-format=json` on stdin

Settings come from STACK/local.env (written by scripts/stack; `stack.load()`).
"""

import argparse
import json
import pathlib
import socket
import sys
import time
import urllib.request

from stack_settings import ACCOUNT, FUNCTIONS, REGION, ROOT, client, function_health, load, say, sent_emails

SENDER = "chute@chute.local"
STATE_MACHINE = "chute"
# Where the stack's rule on the default bus delivers chute's run events (moto keeps them there).
RUN_EVENTS_RULE = "chute-run-events"
RUN_EVENTS_LOG_GROUP = "/chute/run-events"


def ports(args):
    path = pathlib.Path(args.file)
    if path.exists():
        return
    socks = [socket.socket() for _ in range(4)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    names = ["MONGO_PORT", "MOTO_SERVER_PORT", "SHIM_PORT", "LAMBDA_PORT"]
    path.write_text("".join(f"{name}={s.getsockname()[1]}\n" for name, s in zip(names, socks)))


def wait(args):
    deadline = time.time() + 120
    pending = [("mongo", p) for p in args.mongo] + [("http", p) for p in args.http]
    while pending:
        kind, port = pending[0]
        try:
            if kind == "mongo":
                import pymongo

                pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=500).admin.command("ping")
            else:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            pending.pop(0)
        except Exception:
            if time.time() > deadline:
                say(f"{kind} on port {port} did not answer within 120 s")
                sys.exit(1)
            time.sleep(0.2)


def moto_api(port, path, body):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/moto-api/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).read()


def provision(_args):
    env = load()
    moto = env["MOTO_SERVER_PORT"]
    # Without this switch moto accepts executions but never runs them.
    moto_api(moto, "config", {"stepfunctions": {"execute_state_machine": True}})
    # moto "restores" every object the first time its status is read; for the parts of a multipart
    # upload (staged chunks) that looks up a bucket they do not name and /moto-api/data.json, where
    # sent emails are read, fails from then on. Objects are never archived here: keep them as stored.
    moto_api(moto, "state-manager/set-transition",
             {"model_name": "s3::keyrestore", "transition": {"progression": "manual", "times": 2**31}})
    s3 = client("s3", env)
    try:
        s3.create_bucket(Bucket=env["CHUTE_BUCKET"])
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    # Versioning gives every upload its own version id, so a re-dropped file is a new run.
    s3.put_bucket_versioning(Bucket=env["CHUTE_BUCKET"], VersioningConfiguration={"Status": "Enabled"})
    ses = client("sesv2", env)
    try:
        ses.create_email_identity(EmailIdentity=SENDER)
    except ses.exceptions.AlreadyExistsException:
        pass
    # The template's DefinitionSubstitutions, made as CloudFormation makes them.
    definition = (ROOT / "statemachine" / "chute.asl.json").read_text().replace("${Partition}", "aws")
    for name in FUNCTIONS:
        if name != "trigger":
            definition = definition.replace("${%sFunctionArn}" % name.capitalize(), f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
    # The run-finished events, as a deployment's rule would route them: every event of source
    # `chute` on the default bus into a log group (moto delivers to log groups and queues; a log
    # group keeps every event for any number of readers).
    logs = client("logs", env)
    try:
        logs.create_log_group(logGroupName=RUN_EVENTS_LOG_GROUP)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    events = client("events", env)
    events.put_rule(Name=RUN_EVENTS_RULE, EventPattern=json.dumps({"source": ["chute"]}), State="ENABLED")
    events.put_targets(Rule=RUN_EVENTS_RULE, Targets=[
        {"Id": "log-group", "Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{RUN_EVENTS_LOG_GROUP}"}])
    sfn = client("stepfunctions", env)
    arn = env["CHUTE_STATE_MACHINE_ARN"]
    role = f"arn:aws:iam::{ACCOUNT}:role/chute-local"
    try:
        sfn.describe_state_machine(stateMachineArn=arn)
        sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role)
    except sfn.exceptions.StateMachineDoesNotExist:
        sfn.create_state_machine(name=STATE_MACHINE, definition=definition, roleArn=role)


def health(args):
    """Prints each function's pool, one line per process (or JSON); exit 1 when a function is left
    down or the shim is silent."""
    functions = function_health(load())
    if args.json:
        print(json.dumps(functions))
        sys.exit(0 if functions else 1)
    if functions is None:
        print("functions: unknown (the shim does not answer)")
        sys.exit(1)
    if not functions:
        print("functions: busy (the shim did not answer within 10 s; it is running)")
        return
    down = False
    for name, f in functions.items():
        # "starting" is the moment between a process's exit and its successor: not down.
        down = down or f["state"] == "crashed"
        queued = f", {f['queued']} queued" if f["queued"] else ""
        timeouts = f", {f['timeouts']} timed out" if f["timeouts"] else ""
        print(f"function {name}: {f['state']} ({len(f['sandboxes'])} of {f['concurrency']} processes, "
              f"timeout {f['timeout_seconds']:g} s{queued}{timeouts})")
        for s in f["sandboxes"]:
            if s["pid"]:
                inflight = s["inflight"]
                busy = f", invocation {inflight['request_id']}{tags(inflight)} in flight" if inflight else ""
                print(f"  {name}[{s['slot']}]: {s['state']} (pid {s['pid']}, {s['restarts']} restarts{busy})")
            else:
                print(f"  {name}[{s['slot']}]: {s['state']} (last exit: {s['last_exit']})")
    sys.exit(1 if down else 0)


def tags(inflight):
    return "".join(f" {k}={inflight[k]}" for k in ("run", "chunk") if k in inflight)


def shim_control(action, function, query=""):
    port = load()["SHIM_PORT"]
    url = f"http://127.0.0.1:{port}/_stack/{action}/{function}{query}"
    urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=10).read()


def hold(args):
    """Asks the shim to hold FUNCTION's next N answers, each until its process exits or a release (fault tests)."""
    shim_control("hold", args.function, f"?answers={args.answers}")


def release(args):
    """Lets FUNCTION's held answers go and cancels the holds not yet used."""
    shim_control("release", args.function)


def timeout(args):
    """Sets FUNCTION's timeout for the invocations handed out from now on; without SECONDS, the template's again."""
    shim_control("timeout", args.function, "" if args.seconds is None else f"?seconds={args.seconds}")


def emails(_args):
    """Every email moto's SES accepted, as JSON."""
    print(json.dumps(sent_emails(load())))


def history(args):
    """Every event of the execution named RUN_ID (trigger names executions by run id), as JSON."""
    sfn = client("stepfunctions", load())
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STATE_MACHINE}:{args.run_id}"
    events, token = [], None
    while True:
        page = sfn.get_execution_history(executionArn=arn, maxResults=1000, **({"nextToken": token} if token else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    print(json.dumps(events, default=str))


def run_events(_args):
    """Every run-finished event the stack's rule delivered, oldest first, as EventBridge shapes them
    (`source`, `detail-type`, `detail`, …), as JSON."""
    logs = client("logs", load())
    found, token = [], None
    while True:
        page = logs.filter_log_events(logGroupName=RUN_EVENTS_LOG_GROUP, **({"nextToken": token} if token else {}))
        found += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    found.sort(key=lambda e: e["timestamp"])
    print(json.dumps([json.loads(e["message"]) for e in found]))


def cargo_executable(args):
    """The executable cargo built for target NAME (a bench harness's file name carries a hash).
    Reads cargo's messages to the end: leaving at the first match closed the pipe, and cargo
    stopped the rest of the build (other binaries) with a broken pipe."""
    found = None
    for line in sys.stdin:
        m = json.loads(line)
        if found is None and m.get("reason") == "compiler-artifact" and m["target"]["name"] == args.name and m.get("executable"):
            found = m["executable"]
    if found is None:
        sys.exit(1)
    print(found)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ports").add_argument("file")
    w = sub.add_parser("wait")
    w.add_argument("--mongo", type=int, action="append", default=[])
    w.add_argument("--http", type=int, action="append", default=[])
    sub.add_parser("provision")
    sub.add_parser("health").add_argument("--json", action="store_true")
    sub.add_parser("emails")
    sub.add_parser("history").add_argument("run_id")
    sub.add_parser("run-events")
    h = sub.add_parser("hold")
    h.add_argument("function")
    h.add_argument("--answers", type=int, default=1)
    sub.add_parser("release").add_argument("function")
    t = sub.add_parser("timeout")
    t.add_argument("function")
    t.add_argument("seconds", type=float, nargs="?")
    sub.add_parser("cargo-executable").add_argument("name")
    args = parser.parse_args()
    commands = {"ports": ports, "wait": wait, "provision": provision, "health": health, "emails": emails, "history": history, "run-events": run_events, "hold": hold, "release": release, "timeout": timeout, "cargo-executable": cargo_executable}
    sys.exit(commands[args.command](args) or 0)


if __name__ == "__main__":
    main()
