"""The local Lambda service: runs the function binaries and sits between them, moto and watch.

`cargo lambda watch --only-lambda-apis` emulates Lambda's invoke and runtime APIs; this shim
- answers moto's Lambda calls (moto's Step Functions interpreter sends them to localhost:$MOTO_PORT,
  which is this shim): invocations go to watch under the bare function name (watch answers 404 to
  an ARN), and a handler error (watch: HTTP 500) becomes what Lambda returns (200 with
  X-Amz-Function-Error: Unhandled), so the state machine's Retry and Catch see our error names.
  Everything else is forwarded to moto.
- runs one process per function from STACK/bin/NAME (this checkout's own copies of the binaries)
  with AWS_LAMBDA_RUNTIME_API pointing here, forwards their runtime-API calls to watch and notes the
  invocation each process holds. When a process dies, that invocation fails with Runtime.ExitError
  (as Lambda reports a crashed sandbox) and a new process starts; a process that dies again and
  again right after starting is left down and reported.
- GET /_stack/health answers with every function's state (see Supervisor.health); POST
  /_stack/hold/NAME holds that function's next answer until its process exits (fault tests).
Each running process's pid is in STACK/pids/fn-NAME.pid: tests signal exactly that process.
"""

import argparse
import ctypes
import http.client
import json
import os
import pathlib
import re
import signal
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations")
RUNTIME = re.compile(r"^/\.rt/([^/]+)/2018-06-01/runtime/(invocation/next|invocation/([^/]+)/(response|error)|init/error)$")
REQUEST_ID = "Lambda-Runtime-Aws-Request-Id"
# A process that dies this soon after starting, this many times in a row, is not restarted again.
QUICK_EXIT_SECONDS, QUICK_EXITS = 2.0, 5


def say(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def die_with_parent():
    """Function processes end when the shim ends, however it ends (PR_SET_PDEATHSIG = 1)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class Function:
    def __init__(self, name):
        self.name = name
        self.process = None
        self.generation = 0
        self.started_at = 0.0
        self.restarts = 0
        self.quick_exits = 0
        self.last_exit = None
        self.crashed = False
        self.inflight = None  # request id of the invocation this process holds
        self.hold_next = False  # hold this function's next answer until its process exits (tests)
        self.holding = None  # request id whose answer is held
        self.exited = threading.Event()


class Supervisor:
    def __init__(self, stack, names, env, lambda_port, shim_port):
        self.stack = pathlib.Path(stack)
        self.env = env
        self.lambda_port = lambda_port
        self.shim_port = shim_port
        self.lock = threading.Lock()
        self.functions = {name: Function(name) for name in names}

    def start_all(self):
        for function in self.functions.values():
            threading.Thread(target=self.keep_running, args=(function,), daemon=True).start()

    def spawn(self, function):
        env = dict(self.env)
        env.update(
            AWS_LAMBDA_FUNCTION_NAME=function.name,
            AWS_LAMBDA_FUNCTION_VERSION="1",
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"),
            AWS_LAMBDA_RUNTIME_API=f"http://127.0.0.1:{self.shim_port}/.rt/{function.name}",
        )
        log = open(self.stack / "logs" / f"fn-{function.name}.log", "ab")
        # Started in the stack's bin directory, which has no schemas/ folder: as on AWS, where only the
        # bootstrap is shipped, the functions use the schemas compiled into them.
        process = subprocess.Popen([str(self.stack / "bin" / function.name)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, cwd=self.stack / "bin")
        log.close()
        (self.stack / "pids" / f"fn-{function.name}.pid").write_text(f"{process.pid}\n")
        with self.lock:
            function.process = process
            function.generation += 1
            function.started_at = time.time()
            function.inflight = None
            function.exited = threading.Event()
        say(f"{function.name}: started (pid {process.pid})")

    def keep_running(self, function):
        while True:
            try:
                self.spawn(function)
            except OSError as e:
                code, lived = f"could not start: {e}", 0.0
            else:
                returncode = function.process.wait()
                lived = time.time() - function.started_at
                code = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
            with self.lock:
                held, function.inflight = function.inflight, None
                function.holding = None
                function.exited.set()
                function.last_exit = code
                function.quick_exits = function.quick_exits + 1 if lived < QUICK_EXIT_SECONDS else 0
                function.crashed = function.quick_exits >= QUICK_EXITS
            if held:
                self.fail_invocation(function.name, held, f"Runtime exited ({code})")
            say(f"{function.name}: process {'' if function.process is None else function.process.pid} {code}"
                + (f" holding invocation {held}: failed it with Runtime.ExitError" if held else ""))
            if function.crashed:
                say(f"{function.name}: exited {QUICK_EXITS} times within {QUICK_EXIT_SECONDS:.0f} s of starting; "
                    f"left down (see logs/fn-{function.name}.log; `scripts/stack up` starts it again)")
                (self.stack / "pids" / f"fn-{function.name}.pid").unlink(missing_ok=True)
                return
            with self.lock:
                function.restarts += 1

    def fail_invocation(self, name, request_id, message):
        body = json.dumps({"errorType": "Runtime.ExitError", "errorMessage": f"RequestId: {request_id} Error: {message}"})
        conn = http.client.HTTPConnection("127.0.0.1", self.lambda_port, timeout=30)
        try:
            conn.request("POST", f"/.rt/{name}/2018-06-01/runtime/invocation/{request_id}/error", body=body,
                         headers={"Content-Type": "application/json", "Lambda-Runtime-Function-Error-Type": "Runtime.ExitError"})
            conn.getresponse().read()
        except OSError as e:
            say(f"{name}: could not fail invocation {request_id}: {e}")
        finally:
            conn.close()

    def generation(self, name):
        with self.lock:
            return self.functions[name].generation

    def handed_out(self, name, generation, request_id):
        """Records the invocation a process received; False when that process is gone already."""
        with self.lock:
            function = self.functions[name]
            if function.generation != generation or function.process is None or function.process.poll() is not None:
                return False
            function.inflight = request_id
            return True

    def hold(self, name):
        with self.lock:
            self.functions[name].hold_next = True

    def held_until_exit(self, name, request_id):
        """With a hold set, keeps this answer from watch until the process exits (then the
        invocation fails as a crash does): a test's fault lands exactly here, after the handler
        finished and before Lambda heard of it. False when no hold is set."""
        with self.lock:
            function = self.functions[name]
            if not function.hold_next or function.inflight != request_id:
                return False
            function.hold_next = False
            function.holding = request_id
            exited = function.exited
        say(f"{name}: holding the answer to invocation {request_id} until the process exits")
        exited.wait()
        return True

    def answered(self, name, request_id):
        with self.lock:
            function = self.functions[name]
            if function.inflight == request_id:
                function.inflight = None

    def health(self):
        with self.lock:
            out = {}
            for f in self.functions.values():
                running = f.process is not None and f.process.poll() is None and not f.crashed
                out[f.name] = {
                    "state": "running" if running else ("crashed" if f.crashed else "starting"),
                    "pid": f.process.pid if running else None,
                    "restarts": f.restarts,
                    "last_exit": f.last_exit,
                    "inflight": f.inflight,
                    "holding": f.holding,
                }
            return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--moto", type=int, required=True)
    parser.add_argument("--lambda", dest="lambda_port", type=int, required=True)
    parser.add_argument("--stack", required=True, help="the stack's directory (bin/, pids/, logs/)")
    parser.add_argument("--env-file", required=True, help="KEY=VALUE lines: the functions' environment")
    parser.add_argument("functions", nargs="+")
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    for line in pathlib.Path(args.env_file).read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    supervisor = Supervisor(args.stack, args.functions, env, args.lambda_port, args.port)

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

        def upstream(self, port, path, body, timeout):
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            try:
                conn.request(self.command, path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read(), resp.getheaders()
            finally:
                conn.close()

        def forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/_stack/health":
                return self.reply(200, json.dumps(supervisor.health()).encode(), [("Content-Type", "application/json")])
            if self.path.startswith("/_stack/hold/") and self.path[len("/_stack/hold/"):] in supervisor.functions:
                supervisor.hold(self.path[len("/_stack/hold/"):])
                return self.reply(200, b"{}")
            runtime = RUNTIME.match(self.path)
            if runtime:
                return self.runtime(runtime, body)
            match = INVOKE.match(self.path)
            if not match:
                try:
                    return self.reply(*self.upstream(args.moto, self.path, body, 120))
                except OSError as e:
                    return self.reply(502, json.dumps({"message": f"moto: {e}"}).encode())
            # arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] -> NAME
            target = urllib.parse.unquote(match.group(1))
            name = target.split(":function:")[1].split(":")[0] if ":function:" in target else target
            try:
                status, payload, headers = self.upstream(args.lambda_port, f"/2015-03-31/functions/{name}/invocations", body, 900)
            except OSError as e:
                status, payload, headers = 502, json.dumps({"errorType": "Lambda.ServiceException", "errorMessage": str(e)}).encode(), []
            outcome = "ok"
            if status >= 500:
                # Lambda reports a handler error as 200 with this header; the payload names the error.
                headers = [*headers, ("X-Amz-Function-Error", "Unhandled")]
                status = 200
                try:
                    outcome = json.loads(payload).get("errorType", "error")
                except ValueError:
                    outcome = "error"
            say(f"{name}/invocations: {outcome}{invocation_tags(body)}")
            self.reply(status, payload, headers)

        def runtime(self, match, body):
            name, action, request_id = match.group(1), match.group(2), match.group(3)
            if name not in supervisor.functions:
                return self.reply(404, b"{}")
            generation = supervisor.generation(name)
            if request_id and action != "invocation/next" and supervisor.held_until_exit(name, request_id):
                return self.reply(502, b"{}")
            try:
                # `next` is a long poll: it waits for the next invocation however long that takes.
                status, payload, headers = self.upstream(args.lambda_port, self.path, body, None if action == "invocation/next" else 60)
            except OSError as e:
                return self.reply(502, json.dumps({"message": f"watch: {e}"}).encode())
            if action == "invocation/next" and status == 200:
                received = dict((k.lower(), v) for k, v in headers).get(REQUEST_ID.lower())
                if received and not supervisor.handed_out(name, generation, received):
                    # The process that asked died while it waited: the invocation dies with it.
                    supervisor.fail_invocation(name, received, "Runtime exited before the invocation started")
                    say(f"{name}: invocation {received} arrived for a process that had exited: Runtime.ExitError")
                    return
            elif request_id:
                supervisor.answered(name, request_id)
            try:
                self.reply(status, payload, headers)
            except OSError:
                if action == "invocation/next":
                    received = dict((k.lower(), v) for k, v in headers).get(REQUEST_ID.lower())
                    if received:
                        supervisor.answered(name, received)
                        supervisor.fail_invocation(name, received, "Runtime exited before the invocation started")

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = forward

        def log_message(self, fmt, *a):
            if not self.path.startswith(("/.rt/", "/_stack/", "/2015-03-31/functions/")):
                print(f"{self.command} {self.path} {fmt % a}", flush=True)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Shim)
    server.daemon_threads = True
    supervisor.start_all()
    server.serve_forever()


def invocation_tags(body):
    """` run=… chunk=…` from an invocation's input, so a log line can be tied to its run."""
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return ""
    if not isinstance(payload, dict):
        return ""
    chunk = payload.get("chunk")
    if isinstance(chunk, dict):
        chunk = chunk.get("index")
    tags = [f"run={payload['run_id']}"] if "run_id" in payload else []
    tags += [f"chunk={chunk}"] if chunk is not None else []
    return (" " + " ".join(tags)) if tags else ""


if __name__ == "__main__":
    main()
