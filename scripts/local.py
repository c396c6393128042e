"""Local stack helper: readiness checks, provisioning, and the one-command run.

  local.py wait --mongo PORT --http PORT...     wait until the servers answer
  local.py provision                            bucket, SES identity, state machine (from the ASL file)
  local.py run FILE [--out DIR] [--schema NAME] [--chunk-bytes N] [--team T]

`run` prints only the report JSON on stdout; progress goes to stderr. It talks to the services with
boto3 (the real AWS SDK for Python) through the stack's endpoints.
"""

import argparse
import json
import os
import pathlib
import sys
import time
import urllib.parse
import urllib.request

import boto3
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEV = ROOT / ".dev"
BUCKET = "chute-local"
SENDER = "chute@chute.local"
REGION = "us-east-1"
ACCOUNT = "123456789012"
STATE_MACHINE = "chute"
FUNCTIONS = ["Validate", "Transform", "Import", "Report"]


def say(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ports():
    values = {}
    for line in (DEV / "ports.env").read_text().split():
        k, v = line.split("=", 1)
        values[k] = int(v)
    return values


def client(service, port=None, **config):
    port = port or ports()["MOTO_SERVER_PORT"]
    return boto3.client(
        service,
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(**config),
    )


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
                import socket

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
    moto = ports()["MOTO_SERVER_PORT"]
    # Without this switch moto accepts executions but never runs them.
    moto_api(moto, "config", {"stepfunctions": {"execute_state_machine": True}})
    # moto "restores" every object the first time its status is read; for the parts of a multipart
    # upload (staged chunks) that looks up a bucket they do not name and /moto-api/data.json, where
    # sent emails are read, fails from then on. Objects are never archived here: keep them as stored.
    moto_api(moto, "state-manager/set-transition",
             {"model_name": "s3::keyrestore", "transition": {"progression": "manual", "times": 2**31}})
    s3 = client("s3")
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    # Versioning gives every upload its own version id, so a re-dropped file is a new run.
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    ses = client("sesv2")
    try:
        ses.create_email_identity(EmailIdentity=SENDER)
    except ses.exceptions.AlreadyExistsException:
        pass
    definition = (ROOT / "statemachine" / "chute.asl.json").read_text()
    for name in FUNCTIONS:
        definition = definition.replace("${%sFunctionArn}" % name, f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name.lower()}")
    sfn = client("stepfunctions")
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STATE_MACHINE}"
    role = f"arn:aws:iam::{ACCOUNT}:role/chute-local"
    try:
        sfn.describe_state_machine(stateMachineArn=arn)
        sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role)
    except sfn.exceptions.StateMachineDoesNotExist:
        sfn.create_state_machine(name=STATE_MACHINE, definition=definition, roleArn=role)


def s3_event(key, size, etag, version):
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
                    "bucket": {"name": BUCKET, "ownerIdentity": {"principalId": "LOCAL"}, "arn": f"arn:aws:s3:::{BUCKET}"},
                    "object": {"key": urllib.parse.quote_plus(key, safe="/"), "size": size, "eTag": etag, "versionId": version, "sequencer": "%016X" % time.time_ns()},
                },
            }
        ]
    }


def run(args):
    started = time.time()
    if args.resume:
        return resume(args, started)
    path = pathlib.Path(args.file)
    if not path.is_file():
        say(f"no such file: {path}")
        return 2
    p = ports()
    s3 = client("s3")
    key = "incoming/" + (f"{args.team}/" if args.team else "") + path.name
    metadata = {}
    if args.schema:
        metadata["chute-schema"] = args.schema
    if args.chunk_bytes:
        metadata["chute-chunk-bytes"] = str(args.chunk_bytes)
    put = s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes(), Metadata=metadata)
    etag, version = put["ETag"].strip('"'), put.get("VersionId")
    say(f"uploaded {path} ({path.stat().st_size} bytes) to s3://{BUCKET}/{key}")

    lam = client("lambda", p["LAMBDA_PORT"], retries={"max_attempts": 1}, read_timeout=900, connect_timeout=10)
    event = s3_event(key, path.stat().st_size, etag, version)
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
    sfn = client("stepfunctions")
    run_id = args.resume
    base = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STATE_MACHINE}"
    original = sfn.describe_execution(executionArn=f"{base}:{run_id}")
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
    """Prints the execution's events as they happen, then fetches and prints the report."""
    sfn = client("stepfunctions")
    s3 = client("s3")
    seen = 0
    deadline = time.time() + args.timeout
    while True:
        status = sfn.describe_execution(executionArn=execution)["status"]
        events = sfn.get_execution_history(executionArn=execution, maxResults=1000).get("events", [])
        for e in events[seen:]:
            details = next((v for k, v in e.items() if k.endswith("EventDetails")), {})
            name = details.get("error") or details.get("name") or details.get("resource") or ""
            say(f"  +{time.time() - started:6.1f}s {e['type']} {name}".rstrip())
        seen = len(events)
        if status != "RUNNING":
            break
        if time.time() > deadline:
            say(f"the run did not finish within {args.timeout} s")
            return 2
        time.sleep(0.5)
    say(f"execution {status} after {time.time() - started:.1f}s")

    report_key = f"reports/{run_id}/report.json"
    try:
        report_bytes = s3.get_object(Bucket=BUCKET, Key=report_key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        say(f"no report was written ({report_key}); see .dev/logs/lambda.log for run {run_id}")
        return 2
    report = json.loads(report_bytes)
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_bytes(report_bytes)
        rejects = s3.get_object(Bucket=BUCKET, Key=report["artifacts"]["rejects"])["Body"].read()
        (out / "rejects.csv").write_bytes(rejects)
        email = sent_email(report)
        if email:
            (out / "email.html").write_text(email["body"])
            (out / "email.json").write_text(json.dumps({k: email[k] for k in ("source", "destinations", "subject")}, indent=2))
        say(f"wrote report.json, rejects.csv{', email.html' if email else ''} to {out}")
    print(json.dumps(report, indent=2))
    if report["status"] == "FAILED":
        say(f"FAILED: {report.get('reason', 'see the report')}")
        return 1
    return 0


def sent_email(report):
    """The email as moto's SES received it (moto keeps the HTML part when both are sent)."""
    message_id = (report.get("email") or {}).get("message_id")
    if not message_id:
        return None
    moto = ports()["MOTO_SERVER_PORT"]
    data = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{moto}/moto-api/data.json", timeout=10).read())
    return next((m for m in data.get("ses", {}).get("Message", []) if m.get("id") == message_id), None)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("wait")
    w.add_argument("--mongo", type=int, action="append", default=[])
    w.add_argument("--http", type=int, action="append", default=[])
    sub.add_parser("provision")
    r = sub.add_parser("run")
    r.add_argument("file", nargs="?")
    r.add_argument("--resume", metavar="RUN_ID", help="re-run a failed run; finished chunks are not redone")
    r.add_argument("--out")
    r.add_argument("--schema")
    r.add_argument("--chunk-bytes", type=int)
    r.add_argument("--team", help="drop the file under incoming/TEAM/ (email routing)")
    r.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()
    result = {"wait": wait, "provision": provision, "run": run}[args.command](args)
    sys.exit(result or 0)


if __name__ == "__main__":
    main()
