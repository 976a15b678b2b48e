"""Every rejection the gateway makes, as the official SDKs see it: the OpenAI SDK on
/v1/chat/completions and the Anthropic SDK on /v1/messages, each must raise its own exception
class for the status, and read the gateway's message, type and request id from the body it
expects. Also both SDKs' model list. Prints one JSON object (t/098-sdk-errors.t checks it).

usage: errors.py <policies gateway base url> <routing gateway base url>
"""
import json
import sys
import threading
import time

import anthropic
import openai

policies, routing = sys.argv[1:3]
hello = [{"role": "user", "content": "Hello"}]
out = {}


def oai(base, key, path="/v1"):
    return openai.OpenAI(base_url=base + path, api_key=key, max_retries=0)


def ant(base, key, path=""):
    return anthropic.Anthropic(base_url=base + path, api_key=key, max_retries=0)


def seen(e):
    """What an SDK exception says: its class, status, and the error read from its body."""
    got = {"class": type(e).__name__, "status": getattr(e, "status_code", None),
           "request_id": getattr(e, "request_id", None)}
    body = getattr(e, "body", None)
    if isinstance(e, openai.APIStatusError):
        # the OpenAI SDK keeps the inner "error" object as the body
        got.update(message=body.get("message") if isinstance(body, dict) else None,
                   type=e.type, code=e.code)
    elif isinstance(e, anthropic.APIStatusError):
        err = body.get("error", {}) if isinstance(body, dict) else {}
        got.update(message=err.get("message"), type=err.get("type"),
                   code=(err.get("details") or {}).get("error_code"),
                   body_type=body.get("type") if isinstance(body, dict) else None,
                   body_request_id=body.get("request_id") if isinstance(body, dict) else None)
    return got


def openai_call(client, **kw):
    args = dict(model="mock-gpt", messages=hello)
    args.update(kw)
    try:
        client.chat.completions.create(**args)
        return "no error"
    except openai.APIStatusError as e:
        return seen(e)


def anthropic_call(client, **kw):
    args = dict(model="mock-gpt", max_tokens=5, messages=hello)
    args.update(kw)
    try:
        client.messages.create(**args)
        return "no error"
    except anthropic.APIStatusError as e:
        return seen(e)


def both(name, base, key, path="", openai_kw=None, anthropic_kw=None, **kw):
    out[name] = {
        "openai": openai_call(oai(base, key, path + "/v1"), **{**kw, **(openai_kw or {})}),
        "anthropic": anthropic_call(ant(base, key, path), **{**kw, **(anthropic_kw or {})}),
    }


# identification
both("invalid_key", policies, "sk-wrong")
# no key at all: each SDK's own credential header taken out of the request
both("missing_key", policies, "unused",
     openai_kw={"extra_headers": {"Authorization": openai.Omit()}},
     anthropic_kw={"extra_headers": {"x-api-key": anthropic.Omit(),
                                     "Authorization": anthropic.Omit()}})
# the body
both("invalid_field", policies, "sk-pol-models", extra_body={"stream": "yes"})
# policies
both("model_not_allowed", policies, "sk-pol-models", model="claude-x")
both("message_denied", policies, "sk-pol-message", extra_headers={"X-Tag": "blocked"})
long_text = [{"role": "user", "content": "word " * 200}]
both("input_too_long", policies, "sk-pol-input", messages=long_text)
both("output_too_large", policies, "sk-pol-outrej",
     openai_kw={"max_tokens": 100}, anthropic_kw={"max_tokens": 100})

# a requests limit of 3 a minute: three go through, then both SDKs are refused
c = oai(policies, "sk-pol-rpm")
for _ in range(3):
    c.chat.completions.create(model="mock-gpt", messages=hello)
both("requests_limit", policies, "sk-pol-rpm")
# a quota of 2 requests a day
c = oai(policies, "sk-pol-quota")
for _ in range(2):
    c.chat.completions.create(model="mock-gpt", messages=hello)
both("quota", policies, "sk-pol-quota")
# one request in flight at most: a slow one holds the slot
holder = threading.Thread(target=lambda: oai(policies, "sk-pol-conc", "/slow/v1")
                          .chat.completions.create(model="mock-gpt", messages=hello))
holder.start()
time.sleep(0.3)
both("concurrency", policies, "sk-pol-conc")
holder.join()

# nginx's own errors in a gateway location
both("too_large", policies, "sk-pol-models", "/small", messages=long_text)
both("unreachable", policies, "sk-pol-models", "/down")
both("timeout", policies, "sk-pol-models", "/timeout")

# routing: no route for the model, every target busy (503), a disabled namespace
both("no_route", routing, "sk-route-a", model="llama-3")
both("targets_busy", routing, "sk-route-a", model="gpt-4o")
both("disabled", routing, "sk-route-off", model="gpt-4o")

# the gateway's model list, in each SDK's own shape
out["models"] = {
    "openai": [m.id for m in oai(routing, "sk-route-a").models.list()],
    "anthropic": [m.id for m in ant(routing, "sk-route-a").models.list(limit=1)],
}
try:
    oai(routing, "sk-route-a").models.retrieve("gpt-4o-mini")
    out["models"]["openai_unknown"] = "no error"
except openai.APIStatusError as e:
    out["models"]["openai_unknown"] = seen(e)
out["models"]["anthropic_one"] = ant(routing, "sk-route-a").models.retrieve("gpt-4o").id

print(json.dumps(out))
