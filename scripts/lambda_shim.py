"""The local Lambda service: Lambda's invoke API and runtime API, and the function processes behind them.

Lambda runs each invocation in a sandbox: a process of the function that asks the runtime API for
its next invocation, handles it, and answers. This shim is that service for the local stack:
- The invoke API (`POST /2015-03-31/functions/NAME/invocations`, on SHIM_PORT, where moto's Step
  Functions interpreter sends its Lambda calls, and on LAMBDA_PORT for scripts and `cargo lambda
  invoke`; an ARN is reduced to its function name) queues the invocation with its function and
  answers as Lambda does: 200 with the payload, or with `X-Amz-Function-Error: Unhandled` and the
  error, so the state machine's Retry and Catch see our error names. Other requests go to moto.
- Each function has a pool of sandboxes (one process each, STACK/bin/NAME, this checkout's copy of
  the binary), grown on demand up to its concurrency: CHUTE_MAP_CONCURRENCY for transform and
  import (what the Map runs at once), CHUTE_LOCAL_CONCURRENCY (default 3) for the others. Every
  process has its own runtime API session (AWS_LAMBDA_RUNTIME_API names its function, slot and
  generation), so an invocation is only ever handed to a process that is waiting for it: a process
  that dies while it waits takes nothing with it, and one that dies holding an invocation fails
  exactly that invocation with Runtime.ExitError, as a crashed sandbox does. Its slot starts a new
  process; one that dies again and again right after starting is left down and reported.
- Every invocation gets its function's Timeout from infra/template.yaml as its deadline
  (Lambda-Runtime-Deadline-Ms) and is ended there: the process is killed and the invocation fails
  with Sandbox.Timedout, "Task timed out after N seconds", as Lambda reports it.
- GET /_stack/health answers with every function's pool (see Supervisor.health). For fault tests:
  POST /_stack/hold/NAME?answers=N holds that function's next N answers (each until its process
  exits or /_stack/release/NAME), POST /_stack/timeout/NAME?seconds=S shortens its timeout for the
  invocations handed out from then on (no `seconds`: the template's again).
The pid of slot 1's process is in STACK/pids/fn-NAME.pid, slot K's in fn-NAME-K.pid: tests signal
exactly that process.
"""

import argparse
import collections
import ctypes
import http.client
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations")
RUNTIME = re.compile(r"^/\.rt/([^/]+)/(\d+)-(\d+)/2018-06-01/runtime/(invocation/next|invocation/([^/]+)/(response|error)|init/error)$")
REGION, ACCOUNT = "us-east-1", "123456789012"
# A process that dies this soon after starting, this many times in a row, is not restarted again.
QUICK_EXIT_SECONDS, QUICK_EXITS = 2.0, 5
TEMPLATE = pathlib.Path(__file__).resolve().parent.parent / "infra" / "template.yaml"


def say(message):
    # One write per line: threads' lines never interleave.
    sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stdout.flush()


def die_with_parent():
    """Function processes end when the shim ends, however it ends (PR_SET_PDEATHSIG = 1)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def template_timeouts(path=TEMPLATE):
    """{binary: Timeout seconds} from the SAM template: Globals.Function.Timeout, overridden by a
    function's own Properties.Timeout. Read line by line (the template's short-form tags such as
    !Ref are not plain YAML), relying on its two-space indentation."""
    default, timeouts, resource, own = None, {}, None, {}
    section = None
    for line in path.read_text().splitlines():
        top = re.match(r"^(\w+):", line)
        if top:
            section = top.group(1)
            continue
        if section == "Globals":
            m = re.match(r"^    Timeout: (\d+)", line)
            if m:
                default = int(m.group(1))
        elif section == "Resources":
            m = re.match(r"^  (\w+):", line)
            if m:
                resource = m.group(1)
            m = re.match(r"^        Binary: (\w+)", line)
            if m:
                own.setdefault(resource, {})["binary"] = m.group(1)
            m = re.match(r"^      Timeout: (\d+)", line)
            if m:
                own.setdefault(resource, {})["timeout"] = int(m.group(1))
    for fields in own.values():
        if "binary" in fields:
            timeouts[fields["binary"]] = fields.get("timeout", default)
    return timeouts


class Invocation:
    def __init__(self, function, payload):
        self.function = function
        self.request_id = str(uuid.uuid4())
        self.payload = payload
        self.tags = invocation_tags(payload)
        self.deadline = None  # epoch seconds, set when a sandbox takes it
        self.timeout = None  # the seconds that deadline was given
        self.timer = None
        self.done = threading.Event()
        self.result = None  # (function error or None, payload bytes)

    def finish(self, error, payload):
        """The invocation's outcome; the first one wins (an answer racing a crash or the deadline)."""
        if self.done.is_set():
            return False
        self.result = (error, payload)
        if self.timer:
            self.timer.cancel()
        self.done.set()
        return True

    def tags_text(self):
        return "".join(f" {k}={v}" for k, v in self.tags.items())

    def record(self):
        return {"request_id": self.request_id, **self.tags, "deadline_ms": int(self.deadline * 1000) if self.deadline else None}


class Sandbox:
    """One slot of a function's pool: the process running there now and what it holds."""

    def __init__(self, slot):
        self.slot = slot
        self.process = None
        self.generation = 0
        self.state = "starting"  # starting | idle (waiting for work) | busy | crashed
        self.started_at = 0.0
        self.restarts = 0
        self.quick_exits = 0
        self.last_exit = None
        self.invocation = None
        self.holding = False
        self.timed_out = None  # the invocation this process was killed for
        self.exited = threading.Event()


class Pool:
    def __init__(self, name, concurrency, timeout):
        self.name = name
        self.concurrency = concurrency
        self.template_timeout = timeout
        self.timeout = timeout
        self.queue = collections.deque()
        self.sandboxes = {}
        self.hold_answers = 0
        self.timeouts = 0


class Supervisor:
    def __init__(self, stack, pools, env, shim_port):
        self.stack = pathlib.Path(stack)
        self.env = env
        self.shim_port = shim_port
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.pools = pools

    def start_all(self):
        for pool in self.pools.values():
            with self.lock:
                sandbox = self.add_sandbox(pool)
            self.launch(pool, sandbox)

    def add_sandbox(self, pool):
        """A new slot (under the lock); `launch` starts its process outside it."""
        sandbox = Sandbox(len(pool.sandboxes) + 1)
        pool.sandboxes[sandbox.slot] = sandbox
        return sandbox

    def launch(self, pool, sandbox):
        threading.Thread(target=self.keep_running, args=(pool, sandbox), daemon=True).start()

    def pid_file(self, pool, sandbox):
        suffix = "" if sandbox.slot == 1 else f"-{sandbox.slot}"
        return self.stack / "pids" / f"fn-{pool.name}{suffix}.pid"

    def spawn(self, pool, sandbox):
        with self.lock:
            generation = sandbox.generation + 1
        env = dict(self.env)
        env.update(
            AWS_LAMBDA_FUNCTION_NAME=pool.name,
            AWS_LAMBDA_FUNCTION_VERSION="1",
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"),
            AWS_LAMBDA_RUNTIME_API=f"http://127.0.0.1:{self.shim_port}/.rt/{pool.name}/{sandbox.slot}-{generation}",
        )
        log = open(self.stack / "logs" / f"fn-{pool.name}.log", "ab")
        # Started in the stack's bin directory, which has no schemas/ folder: as on AWS, where only the
        # bootstrap is shipped, the functions use the schemas compiled into them.
        process = subprocess.Popen([str(self.stack / "bin" / pool.name)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, cwd=self.stack / "bin")
        log.close()
        self.pid_file(pool, sandbox).write_text(f"{process.pid}\n")
        with self.lock:
            sandbox.process = process
            sandbox.generation = generation
            sandbox.started_at = time.time()
            sandbox.state = "starting"
            sandbox.invocation = None
            sandbox.timed_out = None
            sandbox.exited = threading.Event()
            self.changed.notify_all()
        say(f"{pool.name}[{sandbox.slot}]: started (pid {process.pid})")

    def keep_running(self, pool, sandbox):
        while True:
            try:
                self.spawn(pool, sandbox)
            except OSError as e:
                code, lived, pid = f"could not start: {e}", 0.0, None
            else:
                returncode = sandbox.process.wait()
                lived, pid = time.time() - sandbox.started_at, sandbox.process.pid
                code = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
            with self.lock:
                held, sandbox.invocation = sandbox.invocation, None
                timed_out = sandbox.timed_out
                sandbox.holding = False
                sandbox.exited.set()
                sandbox.last_exit = code
                sandbox.quick_exits = sandbox.quick_exits + 1 if lived < QUICK_EXIT_SECONDS and not timed_out else 0
                sandbox.state = "crashed" if sandbox.quick_exits >= QUICK_EXITS else "starting"
                self.changed.notify_all()
            if held and held.finish("Unhandled", error_body("Runtime.ExitError", held.request_id, f"Runtime exited ({code})")):
                say(f"{pool.name}[{sandbox.slot}]: process {pid} {code} holding invocation {held.request_id}: "
                    "failed it with Runtime.ExitError")
            elif timed_out:
                say(f"{pool.name}[{sandbox.slot}]: process {pid} {code} at the deadline of invocation {timed_out.request_id}")
            else:
                say(f"{pool.name}[{sandbox.slot}]: process {pid} {code}")
            if sandbox.state == "crashed":
                say(f"{pool.name}[{sandbox.slot}]: exited {QUICK_EXITS} times within {QUICK_EXIT_SECONDS:.0f} s of starting; "
                    f"left down (see logs/fn-{pool.name}.log; `scripts/stack up` starts it again)")
                self.pid_file(pool, sandbox).unlink(missing_ok=True)
                return
            with self.lock:
                sandbox.restarts += 1

    # --- the invoke API -----------------------------------------------------------------------

    def invoke(self, name, payload):
        """Queues an invocation, grows the pool when no sandbox is free for it, waits for its outcome."""
        pool = self.pools[name]
        invocation = Invocation(name, payload)
        new = None
        with self.lock:
            pool.queue.append(invocation)
            free = sum(1 for s in pool.sandboxes.values() if s.state in ("starting", "idle"))
            if len(pool.queue) > free and len(pool.sandboxes) < pool.concurrency:
                new = self.add_sandbox(pool)
            self.changed.notify_all()
        if new:
            self.launch(pool, new)
        invocation.done.wait()
        return invocation

    # --- the runtime API, one session per process ------------------------------------------

    def session(self, name, slot, generation):
        """The sandbox whose current process this session is, or None (a process that is gone)."""
        pool = self.pools.get(name)
        sandbox = pool and pool.sandboxes.get(slot)
        if sandbox is None or sandbox.generation != generation or sandbox.exited.is_set():
            return None, None
        return pool, sandbox

    def next_invocation(self, name, slot, generation):
        """Blocks until an invocation is queued and hands it to this process; None when the
        process is gone first (its wait is withdrawn: nothing was handed to it)."""
        with self.lock:
            pool, sandbox = self.session(name, slot, generation)
            if sandbox is None:
                return None
            sandbox.state = "idle"
            self.changed.notify_all()
            while not pool.queue:
                self.changed.wait()
                if self.session(name, slot, generation)[1] is None:
                    return None
            invocation = pool.queue.popleft()
            sandbox.state = "busy"
            sandbox.invocation = invocation
            invocation.timeout = pool.timeout
            invocation.deadline = time.time() + pool.timeout
            invocation.timer = threading.Timer(pool.timeout, self.time_out, args=(pool, sandbox, generation, invocation))
            invocation.timer.daemon = True
            invocation.timer.start()
            return invocation

    def not_delivered(self, pool, sandbox, invocation):
        """The process did not receive the invocation it was handed (its connection was gone):
        back to the front of the queue for another process."""
        with self.lock:
            if sandbox.invocation is invocation and not invocation.done.is_set():
                sandbox.invocation = None
                invocation.timer.cancel()
                invocation.deadline = None
                pool.queue.appendleft(invocation)
                self.changed.notify_all()

    def time_out(self, pool, sandbox, generation, invocation):
        """Lambda ends an invocation at its deadline: the process is killed, the invocation fails."""
        with self.lock:
            if sandbox.invocation is not invocation or sandbox.generation != generation:
                return
            sandbox.invocation = None
            sandbox.timed_out = invocation
            pool.timeouts += 1
            process = sandbox.process
        invocation.finish("Unhandled", error_body("Sandbox.Timedout", invocation.request_id,
                                                  f"Task timed out after {invocation.timeout:.2f} seconds"))
        say(f"{pool.name}[{sandbox.slot}]: invocation {invocation.request_id}{invocation.tags_text()} timed out after "
            f"{invocation.timeout} s: killing process {process.pid}")
        process.kill()

    def answer(self, name, slot, generation, request_id, error, payload):
        """A process's answer. With a hold set, the answer waits until the process exits (then the
        invocation fails as a crash does) or the hold is released: a test's fault lands exactly
        here, after the handler finished and before Lambda heard of it. False when the answer does
        not belong to an invocation this process holds (it timed out, or the hold ended in a crash)."""
        with self.lock:
            pool, sandbox = self.session(name, slot, generation)
            invocation = sandbox and sandbox.invocation
            if invocation is None or invocation.request_id != request_id:
                return False
            if pool.hold_answers > 0:
                pool.hold_answers -= 1
                sandbox.holding = True
                say(f"{name}[{slot}]: holding the answer to invocation {request_id} until the process exits or a release")
                while sandbox.holding and not sandbox.exited.is_set():
                    self.changed.wait()
                if sandbox.exited.is_set() or sandbox.invocation is not invocation:
                    return False
            sandbox.invocation = None
            sandbox.state = "idle"  # it asks for the next one right away
        return invocation.finish(error, payload)

    def hold(self, name, answers):
        with self.lock:
            self.pools[name].hold_answers = answers

    def release(self, name):
        with self.lock:
            pool = self.pools[name]
            pool.hold_answers = 0
            for sandbox in pool.sandboxes.values():
                sandbox.holding = False
            self.changed.notify_all()

    def set_timeout(self, name, seconds):
        with self.lock:
            pool = self.pools[name]
            pool.timeout = pool.template_timeout if seconds is None else seconds
        say(f"{name}: timeout {pool.timeout} s for the invocations handed out from now on")

    def health(self):
        with self.lock:
            out = {}
            for pool in self.pools.values():
                sandboxes = []
                for s in pool.sandboxes.values():
                    running = s.process is not None and not s.exited.is_set()
                    sandboxes.append({
                        "slot": s.slot,
                        "state": s.state,
                        "pid": s.process.pid if running else None,
                        "restarts": s.restarts,
                        "last_exit": s.last_exit,
                        "inflight": s.invocation.record() if s.invocation else None,
                        "holding": s.holding,
                    })
                states = {s["state"] for s in sandboxes}
                out[pool.name] = {
                    "state": "crashed" if "crashed" in states else ("starting" if states <= {"starting"} else "running"),
                    "concurrency": pool.concurrency,
                    "timeout_seconds": pool.timeout,
                    "queued": len(pool.queue),
                    "timeouts": pool.timeouts,
                    "sandboxes": sandboxes,
                }
            return out


def error_body(error_type, request_id, message):
    return json.dumps({"errorType": error_type, "errorMessage": f"RequestId: {request_id} Error: {message}"}).encode()


def invocation_tags(body):
    """{run, chunk} from an invocation's input, so a log line or the in-flight record names its run."""
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return {}
    if not isinstance(payload, dict):
        return {}
    chunk = payload.get("chunk")
    if isinstance(chunk, dict):
        chunk = chunk.get("index")
    tags = {"run": payload["run_id"]} if "run_id" in payload else {}
    if chunk is not None:
        tags["chunk"] = chunk
    return tags


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True, help="moto's Lambda endpoint (MOTO_PORT) and the runtime API")
    parser.add_argument("--invoke-port", type=int, required=True, help="the invoke API for scripts (LAMBDA_PORT)")
    parser.add_argument("--moto", type=int, required=True)
    parser.add_argument("--stack", required=True, help="the stack's directory (bin/, pids/, logs/)")
    parser.add_argument("--env-file", required=True, help="KEY=VALUE lines: the functions' environment")
    parser.add_argument("functions", nargs="+")
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    for line in pathlib.Path(args.env_file).read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    timeouts = template_timeouts()
    map_concurrency = int(env.get("CHUTE_MAP_CONCURRENCY", "4"))
    others = int(env.get("CHUTE_LOCAL_CONCURRENCY", "3"))
    pools = {name: Pool(name, map_concurrency if name in ("transform", "import") else others, timeouts[name])
             for name in args.functions}
    supervisor = Supervisor(args.stack, pools, env, args.port)
    for pool in pools.values():
        say(f"{pool.name}: up to {pool.concurrency} processes, timeout {pool.timeout} s (infra/template.yaml)")

    class Shim(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, status, payload, headers=()):
            self.send_response(status)
            for k, v in headers:
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def to_moto(self, body):
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
            conn = http.client.HTTPConnection("127.0.0.1", args.moto, timeout=120)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                return self.reply(resp.status, resp.read(), resp.getheaders())
            except OSError as e:
                return self.reply(502, json.dumps({"message": f"moto: {e}"}).encode())
            finally:
                conn.close()

        def forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            if url.path == "/_stack/health":
                return self.reply(200, json.dumps(supervisor.health()).encode(), [("Content-Type", "application/json")])
            control = re.match(r"^/_stack/(hold|release|timeout)/([^/]+)$", url.path)
            if control and control.group(2) in pools:
                action, name = control.groups()
                if action == "hold":
                    supervisor.hold(name, int(query.get("answers", ["1"])[0]))
                elif action == "release":
                    supervisor.release(name)
                else:
                    supervisor.set_timeout(name, float(query["seconds"][0]) if "seconds" in query else None)
                return self.reply(200, b"{}")
            runtime = RUNTIME.match(url.path)
            if runtime:
                return self.runtime(runtime, body)
            match = INVOKE.match(url.path)
            if not match:
                return self.to_moto(body)
            # arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] -> NAME
            target = urllib.parse.unquote(match.group(1))
            name = target.split(":function:")[1].split(":")[0] if ":function:" in target else target
            if name not in pools:
                message = f"Function not found: arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
                return self.reply(404, json.dumps({"Type": "User", "message": message}).encode(),
                                  [("x-amzn-ErrorType", "ResourceNotFoundException")])
            invocation = supervisor.invoke(name, body)
            error, payload = invocation.result
            outcome = "ok" if error is None else json.loads(payload).get("errorType", "error")
            say(f"{name}/invocations: {outcome}{invocation.tags_text()}")
            headers = [("Content-Type", "application/json"), ("X-Amz-Executed-Version", "$LATEST")]
            self.reply(200, payload, headers + ([("X-Amz-Function-Error", error)] if error else []))

        def runtime(self, match, body):
            name, slot, generation, action, request_id = match.group(1), int(match.group(2)), int(match.group(3)), match.group(4), match.group(5)
            if action == "init/error":
                say(f"{name}[{slot}]: init error {body[:500]!r}")
                return self.reply(202, b'{"status":"OK"}')
            if action != "invocation/next":
                # A handler error is Lambda's "Unhandled" function error; its body names the error.
                accepted = supervisor.answer(name, slot, generation, request_id,
                                             "Unhandled" if match.group(6) == "error" else None, body)
                return self.reply(202 if accepted else 410, b'{"status":"OK"}' if accepted else b'{"message":"not in flight"}')
            invocation = supervisor.next_invocation(name, slot, generation)
            if invocation is None:
                return self.reply(410, b'{"message":"this process is gone"}')
            headers = [
                ("Content-Type", "application/json"),
                ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
                ("Lambda-Runtime-Deadline-Ms", str(int(invocation.deadline * 1000))),
                ("Lambda-Runtime-Invoked-Function-Arn", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"),
                ("Lambda-Runtime-Trace-Id", f"Root=1-{int(time.time()):08x}-{invocation.request_id.replace('-', '')[:24]}"),
            ]
            try:
                self.reply(200, invocation.payload, headers)
            except OSError:
                pool, sandbox = supervisor.session(name, slot, generation)
                if sandbox:
                    supervisor.not_delivered(pool, sandbox, invocation)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = forward

        def handle_one_request(self):
            # A process killed while it waited (or a caller that gave up) has closed its end.
            try:
                super().handle_one_request()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def log_message(self, fmt, *a):
            if not self.path.startswith(("/.rt/", "/_stack/", "/2015-03-31/functions/")):
                say(f"{self.command} {self.path} {fmt % a}")

    servers = [ThreadingHTTPServer(("127.0.0.1", port), Shim) for port in (args.port, args.invoke_port)]
    for server in servers:
        server.daemon_threads = True
    supervisor.start_all()
    threading.Thread(target=servers[1].serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
