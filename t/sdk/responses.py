"""Calls the gateway's OpenAI Responses and embeddings endpoints (the built-in mock behind
it) with the official OpenAI Python SDK; prints one JSON object of what it saw
(t/097-sdk-responses.t checks it).

usage: responses.py <gateway base url> <client key> <key of a namespace whose output is
                    capped at 5 tokens without clamping>
"""
import json
import sys

import openai

gateway, key, capped_key = sys.argv[1:4]
out = {}

oai = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)

# 1. a Response as JSON: the SDK's model, its output_text, the usage
r = oai.responses.create(model="gpt-4o", input="Hello", instructions="Be brief.")
out["json"] = {"object": r.object, "status": r.status, "id": r.id, "text": r.output_text,
               "input": r.usage.input_tokens, "output": r.usage.output_tokens,
               "total": r.usage.total_tokens}

# 2. a streamed Response, read through the SDK's stream helper (it accumulates the events
#    and checks their order and identities), ended by response.completed with the usage
names = []
with oai.responses.stream(model="gpt-4o",
                          input=[{"role": "user", "content": "Hello"}]) as s:
    text = ""
    for e in s:
        names.append(e.type)
        if e.type == "response.output_text.delta":
            text += e.delta
    final = s.get_final_response()
out["stream"] = {"first": names[0], "last": names[-1], "deltas": names.count("response.output_text.delta"),
                 "text": text, "status": final.status,
                 "reason": final.incomplete_details.reason if final.incomplete_details else None,
                 "output": final.usage.output_tokens if final.usage else None}

# ... and one cut by its own max_output_tokens (the mock ends it as OpenAI does)
events = list(oai.responses.create(model="gpt-4o", input="Hello", stream=True,
                                   max_output_tokens=3))
out["stream_limited"] = {"last": events[-1].type, "status": events[-1].response.status,
                         "reason": events[-1].response.incomplete_details.reason,
                         "output": events[-1].response.usage.output_tokens}

# 3. an unbounded stream through a namespace whose output is capped at 5 tokens (policy
#    "reject": the provider is not told, streams on, and the gateway ends the stream): the
#    SDK sees OpenAI's own ending, response.incomplete with reason max_output_tokens
capped = openai.OpenAI(base_url=gateway + "/v1", api_key=capped_key, max_retries=0)
names, text, last = [], "", None
with capped.responses.stream(model="gpt-4o", input="Hello") as s:
    for e in s:
        names.append(e.type)
        if e.type == "response.output_text.delta":
            text += e.delta
        last = e
resp = last.response
out["capped"] = {"last": last.type, "status": resp.status,
                 "reason": resp.incomplete_details.reason if resp.incomplete_details else None,
                 "output_tokens": resp.usage.output_tokens if resp.usage else None,
                 "text": text, "output_text": resp.output_text,
                 "item_status": resp.output[0].status if resp.output else None,
                 "closing": names[-4:]}

# ... and the same with the plain event iterator of responses.create(stream=True)
events = list(capped.responses.create(model="gpt-4o", input="Hello", stream=True))
seqs = [e.sequence_number for e in events]
out["capped_raw"] = {"last": events[-1].type, "status": events[-1].response.status,
                     "reason": events[-1].response.incomplete_details.reason,
                     "sequence_ok": seqs == list(range(len(seqs)))}

# 4. embeddings: the SDK asks for base64 and decodes it
e = oai.embeddings.create(model="text-embedding-3-small", input=["one", "two", "one"])
out["embeddings"] = {"count": len(e.data), "dims": [len(d.embedding) for d in e.data],
                     "same": e.data[0].embedding == e.data[2].embedding,
                     "differ": e.data[0].embedding != e.data[1].embedding,
                     "norm": round(sum(x * x for x in e.data[1].embedding), 3),
                     "prompt": e.usage.prompt_tokens, "total": e.usage.total_tokens}
e = oai.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=64,
                          encoding_format="float")
out["embeddings_float"] = {"dims": len(e.data[0].embedding)}

print(json.dumps(out))
