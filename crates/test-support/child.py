"""A supervised child for the supervision tests (orchestrator, supervisor, api-server): serves GET /health on a port, and on
request starts a grandchild, prints lines, ignores SIGTERM, or exits after a while."""
import argparse
import http.server
import os
import signal
import subprocess
import sys
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--grandchild-pid-file")
parser.add_argument("--ignore-term", action="store_true")
parser.add_argument("--exit-after", type=float)
parser.add_argument("--lines", type=int, default=0)
parser.add_argument("--started-file")
args = parser.parse_args()

if args.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if args.started_file:
    with open(args.started_file, "a") as started:
        started.write(f"{os.getpid()} {time.time()}\n")
if args.grandchild_pid_file:
    grandchild = subprocess.Popen(["sleep", "1000"])
    with open(args.grandchild_pid_file, "w") as pid_file:
        pid_file.write(str(grandchild.pid))
for n in range(args.lines):
    print(f"line {n}", flush=True)
print("child started", flush=True)
print("a warning", file=sys.stderr, flush=True)
if args.exit_after is not None:
    threading.Timer(args.exit_after, lambda: os._exit(1)).start()


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_):
        pass


if args.port:
    http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Health).serve_forever()
else:
    while True:
        time.sleep(3600)
