"""The toy service behind the gateway (README, "Put a gateway in front of a service").

It believes the gateway: whoever reaches it has been let through by authbus's forward
auth, and the X-Authbus-* headers say who that is. So a real service must be reachable only
through its gateway. This toy listens on loopback, where anything on the machine could
reach it directly and claim any principal.

    python examples/gateway/hello.py [port]   # default 9000
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def answer(self) -> None:
        who = {name: self.headers.get(f"X-Authbus-{name.title()}", "") for name in ("principal", "tenant", "roles")}
        body = json.dumps({"hello": who["principal"], "tenant": who["tenant"], "roles": who["roles"], "path": self.path})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) + 1))
        self.end_headers()
        self.wfile.write(body.encode() + b"\n")

    do_GET = do_PUT = do_POST = do_DELETE = answer

    def log_message(self, format: str, *args: object) -> None:  # quiet: the gateway logs requests
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    ThreadingHTTPServer(("127.0.0.1", port), Hello).serve_forever()
