"""A real WSGI upstream for scopegate's tests: Python's standard-library wsgiref server with an
app that answers every request with its WSGI environ (the string entries) as JSON.

wsgiref builds HTTP_* names the CGI way: upper case, '-' replaced by '_', so `X-Auth-Subject`
and `X_Auth_Subject` are both HTTP_X_AUTH_SUBJECT, and two such headers are joined with ','.

Usage: python3 wsgi_echo.py   -> prints "PORT <n>" once listening on 127.0.0.1:<n> (port 0).
"""
import json
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server


def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    body = json.dumps({k: v for k, v in environ.items() if isinstance(v, str)}).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def main():
    server = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    print(f"PORT {server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
