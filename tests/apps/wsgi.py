"""A WSGI app for gunicorn: answers 200 with X-Pid: <pid> and the pid as body."""
import os


def app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response(
        "200 OK",
        [
            ("X-Pid", str(os.getpid())),
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]
