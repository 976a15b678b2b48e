"""Calls the gateway with the official OpenAI and Anthropic Python SDKs on an HTTP/2
transport (httpx with http2=True: over TLS, and h2c with prior knowledge); prints one JSON
object of what they saw (t/170-http2.t checks it).

usage: http2.py <gateway https base url> <its CA certificate> <gateway h2c base url> <key>
                <path prefix of a location with client_max_body_size 1k>
                [<limited gateway https base url> <its h2c base url> <key limited to 1
                 request in flight> <path prefix of a slow stream>]

With the limited gateway, a client on the h2 package's own connection resets streams
(RST_STREAM) while keeping the connection: in the middle of a slow stream, in the middle of
its body, right after sending it; each time the next request on the same connection must
find the concurrency slot free.
"""
import json
import socket
import ssl
import sys
import time
from urllib.parse import urlsplit

import anthropic
import h2.config
import h2.connection
import h2.errors
import h2.events
import openai

try:  # the SDKs' own transport package (httpx's successor), else httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx

tls_base, cafile, h2c_base, key, small = sys.argv[1:6]
hello = [{"role": "user", "content": "Hello"}]


def run(name, base, client_args):
    versions = set()

    def seen(response):
        versions.add(response.http_version)

    def client():
        return httpx.Client(event_hooks={"response": [seen]}, timeout=10,
                            headers={"X-Test": "sdk-" + name}, **client_args)

    out = {}
    oai = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, http_client=client())

    # a completion, with the raw response to read the HTTP version it came over
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o", messages=hello)
    r = raw.parse()
    out["raw_version"] = raw.http_response.http_version
    out["openai"] = {"prompt": r.usage.prompt_tokens, "completion": r.usage.completion_tokens}

    # a stream that did not ask for usage (the gateway asked upstream and took it back out)
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=hello, stream=True,
                                              max_tokens=6))
    out["openai_stream"] = {
        "with_usage": sum(1 for c in chunks if getattr(c, "usage", None) is not None),
        "text": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
        "finish": [c.choices[0].finish_reason for c in chunks if c.choices][-1],
    }

    # a stream that asked for it
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=hello, stream=True,
                                              max_tokens=6,
                                              stream_options={"include_usage": True}))
    last = chunks[-1]
    out["openai_stream_usage"] = {"completion": last.usage.completion_tokens
                                  if last.usage else None}

    # an Anthropic stream
    ant = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0, http_client=client())
    with ant.messages.stream(model="claude-sonnet-4", max_tokens=5, messages=hello) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    out["anthropic"] = {"text": text, "output": final.usage.output_tokens}

    # errors keep their shape over HTTP/2
    try:
        openai.OpenAI(base_url=base + "/v1", api_key="sk-wrong", max_retries=0,
                      http_client=client()).chat.completions.create(model="gpt-4o",
                                                                    messages=hello)
        out["bad_key"] = "no error"
    except openai.AuthenticationError as e:
        out["bad_key"] = {"status": e.status_code, "code": e.code}
    try:
        anthropic.Anthropic(base_url=base, api_key="sk-wrong", max_retries=0,
                            http_client=client()).messages.create(
            model="claude-sonnet-4", max_tokens=5, messages=hello)
        out["anthropic_bad_key"] = "no error"
    except anthropic.AuthenticationError as e:
        out["anthropic_bad_key"] = {"status": e.status_code}

    # a body over client_max_body_size: nginx answers 413 (as JSON) before reading it and
    # resets the stream the client is still sending; the answer must reach the SDK
    try:
        openai.OpenAI(base_url=base + small + "/v1", api_key=key, max_retries=0,
                      http_client=client()).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x" * 2000}])
        out["too_large"] = "no error"
    except openai.APIStatusError as e:
        out["too_large"] = {"status": e.status_code, "code": e.code}

    # the same body streamed without content-length (DATA frames as they come)
    def pieces():
        body = json.dumps({"model": "gpt-4o",
                           "messages": [{"role": "user", "content": "x" * 2000}]}).encode()
        for i in range(0, len(body), 500):
            yield body[i:i + 500]

    with client() as c:
        r = c.post(base + small + "/v1/chat/completions", content=pieces(),
                   headers={"Authorization": "Bearer " + key,
                            "Content-Type": "application/json"})
        out["too_large_streamed"] = {"status": r.status_code,
                                     "code": r.json().get("error", {}).get("code")}

    out["versions"] = " ".join(sorted(versions | {out.pop("raw_version")}))
    return out


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
                   ("content-type", "application/json"), ("x-test", "sdk-reset")]
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


def resets(base, conc_key, slow):
    c = RawH2(base, cafile)
    body = json.dumps({"model": "gpt-4o", "stream": True, "messages": hello}).encode()
    plain = json.dumps({"model": "gpt-4o", "messages": hello}).encode()
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


result = {
    "tls": run("tls", tls_base, {"http2": True,
                                 "verify": ssl.create_default_context(cafile=cafile)}),
    # h2c: HTTP/2 without TLS needs prior knowledge (no HTTP/1.1 at all)
    "h2c": run("h2c", h2c_base, {"http1": False, "http2": True}),
}
if len(sys.argv) > 9:
    ltls, lh2c, conc_key, slow = sys.argv[6:10]
    result["resets"] = {"tls": resets(ltls, conc_key, slow), "h2c": resets(lh2c, conc_key, slow)}
print(json.dumps(result))
