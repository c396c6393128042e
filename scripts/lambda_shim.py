"""Between moto's Step Functions interpreter and `cargo lambda watch`.

moto sends Lambda invocations to localhost:$MOTO_PORT; that port is this shim. Invocations go to
`cargo lambda watch` under the bare function name (watch answers 404 to an ARN), and a handler error
(watch: HTTP 500) becomes what Lambda really returns (200 with X-Amz-Function-Error: Unhandled), so
the state machine's Retry and Catch see our error names. Everything else is forwarded to moto.
"""

import argparse
import http.client
import json
import re
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--moto", type=int, required=True)
    parser.add_argument("--lambda", dest="lambda_port", type=int, required=True)
    args = parser.parse_args()

    class Shim(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            match = INVOKE.match(self.path)
            if match:
                # arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] -> NAME
                target = urllib.parse.unquote(match.group(1))
                name = target.split(":function:")[1].split(":")[0] if ":function:" in target else target
                port, path, timeout = args.lambda_port, f"/2015-03-31/functions/{name}/invocations", 900
            else:
                port, path, timeout = args.moto, self.path, 120
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            try:
                conn.request(self.command, path, body=body, headers=headers)
                resp = conn.getresponse()
                status, payload, resp_headers = resp.status, resp.read(), resp.getheaders()
            except OSError as e:
                # Dropped mid-invocation: the function process died (as Lambda reports a crashed
                # runtime). Not reachable at all: watch is down, a service error.
                died = isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                error = "Runtime.ExitError" if died else "Lambda.ServiceException"
                status, payload, resp_headers = 502, json.dumps({"errorType": error, "errorMessage": str(e)}).encode(), []
                print(f"{path}: {error}: {e}", flush=True)
            finally:
                conn.close()
            extra = {}
            if match and status >= 500:
                extra["X-Amz-Function-Error"] = "Unhandled"
                status = 200
            self.send_response(status)
            for k, v in resp_headers:
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                    self.send_header(k, v)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = forward

        def log_message(self, fmt, *a):
            print(f"{self.command} {self.path} {fmt % a}", flush=True)

    ThreadingHTTPServer(("127.0.0.1", args.port), Shim).serve_forever()


if __name__ == "__main__":
    main()
