"""What the Python scripts share about a local stack: where it is, its settings, its clients.

A stack lives in one directory (STACK: `.dev` for a person's, `.dev/test` for the tests'), and
scripts/stack writes every setting of it to STACK/local.env: ports, endpoints, bucket, database.
The Rust tests read the same file (tests/support).
"""

import json
import os
import pathlib
import socket
import sys
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "123456789012"
FUNCTIONS = ["trigger", "validate", "transform", "import", "report"]


def say(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def stack_dir():
    return pathlib.Path(os.environ.get("CHUTE_STACK_DIR") or ROOT / ".dev")


def load():
    """STACK/local.env as a dict (ports as ints)."""
    values = {}
    for line in (stack_dir() / "local.env").read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            values[k] = int(v) if k.endswith("_PORT") else v
    return values


def client(service, env, port=None, **config):
    import boto3  # only in the stack's venv; the other commands run on any python3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=f"http://127.0.0.1:{port or env['MOTO_SERVER_PORT']}",
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(**config),
    )


def function_health(env):
    """The shim's view of every function process; {} when it is too busy to answer in time (it is
    up), None when nothing answers on its port (it is down)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{env['SHIM_PORT']}/_stack/health", timeout=10) as r:
            return json.loads(r.read())
    except (TimeoutError, socket.timeout):
        return {}
    except urllib.error.URLError as e:
        return {} if isinstance(e.reason, (TimeoutError, socket.timeout)) else None
    except OSError:
        return None


def sent_emails(env):
    """Every email moto's SES accepted (moto keeps the HTML part when both are sent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{env['MOTO_SERVER_PORT']}/moto-api/data.json", timeout=10) as r:
        return json.loads(r.read()).get("ses", {}).get("Message", [])
