"""Calls the gateway and the token service with the official OpenAI and Anthropic Python
SDKs; prints one JSON object of what they saw (t/096-sdk.t checks it).

usage: check.py <gateway base url> <token service base url> <client key>
                [<limited gateway base url> <key limited to 3 requests/minute>
                 <key limited to 1 request in flight>]
"""
import json
import sys
import threading
import time

import anthropic
import openai

gateway, tokens, key = sys.argv[1:4]
out = {}
hello = [{"role": "user", "content": "Hello"}]

oai = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)

# 1. a plain completion: the provider's usage reaches the SDK untouched
r = oai.chat.completions.create(model="gpt-4o", messages=hello)
out["json"] = {"content": r.choices[0].message.content, "prompt": r.usage.prompt_tokens,
               "completion": r.usage.completion_tokens}

# 2. a stream that does not ask for usage: the gateway asks for it upstream and takes it
#    back out, so the SDK must see a normal stream: no usage, no chunk without choices
chunks = list(oai.chat.completions.create(model="gpt-4o", messages=hello, stream=True,
                                          max_tokens=6))
out["stream"] = {
    "chunks": len(chunks),
    "with_usage": sum(1 for c in chunks if getattr(c, "usage", None) is not None),
    "without_choices": sum(1 for c in chunks if not c.choices),
    "text": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
    "finish": [c.choices[0].finish_reason for c in chunks if c.choices][-1],
}

# 3. a stream that asks for usage gets it on its last chunk
chunks = list(oai.chat.completions.create(model="gpt-4o", messages=hello, stream=True,
                                          max_tokens=6,
                                          stream_options={"include_usage": True}))
last = chunks[-1]
out["stream_usage"] = {"last_choices": len(last.choices),
                       "completion": last.usage.completion_tokens if last.usage else None}

# 4. Anthropic Messages, streamed, through the gateway
ant = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
with ant.messages.stream(model="claude-sonnet-4", max_tokens=5, messages=hello) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
out["anthropic"] = {"text": text, "output": final.usage.output_tokens,
                    "input": final.usage.input_tokens}

# 5. the token service, with each SDK's own counting call
tok_ant = anthropic.Anthropic(base_url=tokens, api_key="unused", max_retries=0)
out["count_tokens"] = tok_ant.messages.count_tokens(model="claude-sonnet-4",
                                                    messages=hello).input_tokens
tok_oai = openai.OpenAI(base_url=tokens + "/v1", api_key="unused", max_retries=0)
out["input_tokens"] = tok_oai.responses.input_tokens.count(model="gpt-4.1",
                                                           input="Hello").input_tokens

# 6. errors keep their shape: a bad key is an AuthenticationError with the gateway's code
try:
    openai.OpenAI(base_url=gateway + "/v1", api_key="sk-wrong", max_retries=0) \
        .chat.completions.create(model="gpt-4o", messages=hello)
    out["bad_key"] = "no error"
except openai.AuthenticationError as e:
    out["bad_key"] = {"status": e.status_code, "code": e.code}

# 7. limits: OpenAI's headers, a RateLimitError with Retry-After, and the SDK's own retry
if len(sys.argv) > 6:
    limited, rpm_key, conc_key = sys.argv[4:7]
    c = openai.OpenAI(base_url=limited + "/v1", api_key=rpm_key, max_retries=0)
    raw = c.chat.completions.with_raw_response.create(model="mock-gpt", messages=hello)
    out["limits"] = {"limit": raw.headers.get("x-ratelimit-limit-requests"),
                     "remaining": raw.headers.get("x-ratelimit-remaining-requests")}
    for _ in range(2):
        c.chat.completions.create(model="mock-gpt", messages=hello)
    try:
        c.chat.completions.create(model="mock-gpt", messages=hello)
        out["rate_limited"] = "no error"
    except openai.RateLimitError as e:
        out["rate_limited"] = {"status": e.status_code, "code": e.code, "type": e.type,
                               "retry_after": e.response.headers.get("retry-after")}
    try:
        anthropic.Anthropic(base_url=limited, api_key=rpm_key, max_retries=0).messages.create(
            model="claude-x", max_tokens=5, messages=hello)
        out["anthropic_rate_limited"] = "no error"
    except anthropic.RateLimitError as e:
        out["anthropic_rate_limited"] = {"status": e.status_code}

    # one request in flight is allowed: a second one gets 429 with Retry-After: 1, and the
    # SDK (max_retries=2) waits and retries by itself once the first has finished
    slow = openai.OpenAI(base_url=limited + "/slow/v1", api_key=conc_key, max_retries=0)
    first = {}
    t = threading.Thread(target=lambda: first.setdefault(
        "r", slow.chat.completions.create(model="mock-gpt", messages=hello)))
    t.start()
    time.sleep(0.3)
    started = time.time()
    retrying = openai.OpenAI(base_url=limited + "/v1", api_key=conc_key, max_retries=2)
    raw = retrying.chat.completions.with_raw_response.create(model="mock-gpt", messages=hello)
    t.join()
    out["retried"] = {"status": raw.http_response.status_code,
                      "waited": round(time.time() - started, 1),
                      "first_done": "r" in first}

print(json.dumps(out))
