"""Calls the gateway with the official OpenAI and Anthropic Python SDKs on an HTTP/2
transport (httpx with http2=True: over TLS, and h2c with prior knowledge); prints one JSON
object of what they saw (t/170-http2.t checks it).

usage: http2.py <gateway https base url> <its CA certificate> <gateway h2c base url> <key>
                <path prefix of a location with client_max_body_size 1k>
"""
import json
import ssl
import sys
from concurrent.futures import ThreadPoolExecutor

import anthropic
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

    def client(tag="sdk-"):
        return httpx.Client(event_hooks={"response": [seen]}, timeout=10,
                            headers={"X-Test": tag + name}, **client_args)

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

    # eight requests at once from one client: streams on one HTTP/2 connection, side by side
    mux = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0,
                        http_client=client("mux-"))

    def one(i):
        if i % 2:
            chunks = list(mux.chat.completions.create(model="gpt-4o", messages=hello,
                                                      stream=True, max_tokens=i))
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return mux.chat.completions.create(model="gpt-4o", messages=hello,
                                           max_tokens=i + 2).usage.completion_tokens

    with ThreadPoolExecutor(8) as pool:
        out["mux"] = list(pool.map(one, range(8)))

    out["versions"] = " ".join(sorted(versions | {out.pop("raw_version")}))
    return out


result = {
    "tls": run("tls", tls_base, {"http2": True,
                                 "verify": ssl.create_default_context(cafile=cafile)}),
    # h2c: HTTP/2 without TLS needs prior knowledge (no HTTP/1.1 at all)
    "h2c": run("h2c", h2c_base, {"http1": False, "http2": True}),
}
print(json.dumps(result))
