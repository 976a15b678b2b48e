"""Resets HTTP/2 streams (RST_STREAM) at chosen moments on a connection driven by hand (the
h2 package) that goes on afterwards; prints one JSON object of what followed (t/170-http2.t
checks it).

usage: h2_reset.py resets <gateway base url> <CA certificate> <key limited to 1 request in
                          flight> <path prefix of a slow stream>
         a slow stream reset after two events, a body reset halfway, a slow stream reset as
         soon as it is sent: each time the next request on the connection must find the
         concurrency slot free
       h2_reset.py parked <gateway base url> <CA certificate> <key limited to 1 request in
                          flight> <redis port>
         with Redis paused (CLIENT PAUSE) the gateway's admission waits on it: a request reset
         while it waits, then one on a connection closed while it waits; once Redis is back,
         the next request (on the same connection after the reset) must find the slot free
"""
import json
import socket
import ssl
import subprocess
import sys
import time
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events

hello = [{"role": "user", "content": "Hello"}]
PLAIN = json.dumps({"model": "gpt-4o", "messages": hello}).encode()


class RawH2:
    """One HTTP/2 connection driven by hand (the h2 package), to reset streams at will."""

    def __init__(self, base, cafile):
        u = urlsplit(base)
        sock = socket.create_connection((u.hostname, u.port), timeout=5)
        if u.scheme == "https":
            ctx = ssl.create_default_context(cafile=cafile)
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname=u.hostname)
            assert sock.selected_alpn_protocol() == "h2"
        self.sock, self.scheme, self.authority = sock, u.scheme, u.netloc
        self.sock.settimeout(0.1)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()
        self.next_id = 1

    def flush(self):
        self.sock.sendall(self.conn.data_to_send())

    def start(self, path, key, body, end=True):
        sid, self.next_id = self.next_id, self.next_id + 2
        headers = [(":method", "POST"), (":path", path), (":scheme", self.scheme),
                   (":authority", self.authority), ("authorization", "Bearer " + key),
                   ("content-type", "application/json"), ("x-test", "h2-reset")]
        if end:
            headers.append(("content-length", str(len(body))))
        self.conn.send_headers(sid, headers)
        self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def reset(self, sid):
        self.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        self.flush()

    def wait(self, sid, events=None, seconds=5):
        """Reads until stream sid ends (or has `events` SSE events); returns its status,
        the bytes received and whether it ended."""
        status, data, ended = None, b"", False
        deadline = time.time() + seconds
        while time.time() < deadline and not ended:
            if events and data.count(b"data: ") >= events:
                break
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            if not chunk:
                break
            for ev in self.conn.receive_data(chunk):
                if getattr(ev, "stream_id", None) != sid:
                    continue
                if isinstance(ev, h2.events.ResponseReceived):
                    status = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    ended = True
            self.flush()
        return status, data, ended


def resets(base, cafile, conc_key, slow):
    c = RawH2(base, cafile)
    body = json.dumps({"model": "gpt-4o", "stream": True, "messages": hello}).encode()
    plain = PLAIN
    out = {}
    # 1. a slow stream: two events, then RST_STREAM; the connection goes on
    sid = c.start(slow + "/v1/chat/completions", conc_key, body)
    status, data, _ = c.wait(sid, events=2)
    busy = c.wait(c.start("/v1/chat/completions", conc_key, plain))[0]
    c.reset(sid)
    time.sleep(0.1)
    out["mid_stream"] = {"stream": status, "events": data.count(b"data: "), "busy": busy,
                         "after": c.wait(c.start("/v1/chat/completions", conc_key, plain))[0]}
    # 2. half a body (no content-length), then RST_STREAM
    sid = c.start("/v1/chat/completions", conc_key, plain[:20], end=False)
    time.sleep(0.2)
    c.reset(sid)
    out["mid_body"] = c.wait(c.start("/v1/chat/completions", conc_key, plain))[0]
    # 3. a slow stream reset as soon as it is sent
    sid = c.start(slow + "/v1/chat/completions", conc_key, body)
    c.reset(sid)
    time.sleep(0.3)
    out["at_once"] = c.wait(c.start("/v1/chat/completions", conc_key, plain))[0]
    c.sock.close()
    return out


def pause_redis(port, ms):
    subprocess.run(["redis-cli", "-p", port, "CLIENT", "PAUSE", str(ms), "ALL"], check=True,
                   capture_output=True)


def parked(base, cafile, conc_key, redis_port):
    out = {}
    c = RawH2(base, cafile)
    pause_redis(redis_port, 1500)
    started = time.time()
    sid = c.start("/v1/chat/completions", conc_key, PLAIN)
    time.sleep(0.3)
    c.reset(sid)
    # the slot Redis gives the reset request once it is back is released at once (a request
    # queued right behind it may still find it taken: Redis answers both before the release)
    time.sleep(1.4)
    out["after_reset"] = c.wait(c.start("/v1/chat/completions", conc_key, PLAIN))[0]
    out["waited"] = round(time.time() - started, 1)
    c.sock.close()

    c = RawH2(base, cafile)
    pause_redis(redis_port, 1000)
    c.start("/v1/chat/completions", conc_key, PLAIN)
    time.sleep(0.3)
    c.sock.close()
    time.sleep(1)
    c = RawH2(base, cafile)
    out["after_close"] = c.wait(c.start("/v1/chat/completions", conc_key, PLAIN))[0]
    c.sock.close()
    return out


if sys.argv[1] == "resets":
    print(json.dumps(resets(*sys.argv[2:6])))
elif sys.argv[1] == "parked":
    print(json.dumps(parked(*sys.argv[2:6])))
else:
    sys.exit(__doc__)
