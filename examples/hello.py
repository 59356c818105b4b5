"""A Python web app on the socket herdsman passes (systemd socket activation), with the standard library
only: the listening socket is fd 3 when LISTEN_FDS is set and LISTEN_PID is this process. It tells
herdsman it is ready with sd_notify's READY=1, as gunicorn does."""
import http.server
import os
import socket
import socketserver

SD_LISTEN_FDS_START = 3


def inherited_socket():
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        raise SystemExit("hello.py expects a socket from herdsman (start it with --listen)")
    return socket.socket(fileno=SD_LISTEN_FDS_START)


def notify_ready():
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.sendto(b"READY=1", address)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from python worker {os.environ.get('HERDSMAN_INSTANCE')} (pid {os.getpid()})\n".encode()
        self.send_response(200)
        self.send_header("X-Pid", str(os.getpid()))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", flush=True)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def __init__(self, sock):
        super().__init__(sock.getsockname(), Handler, bind_and_activate=False)
        self.socket = sock


if __name__ == "__main__":
    server = Server(inherited_socket())
    notify_ready()
    server.serve_forever()
