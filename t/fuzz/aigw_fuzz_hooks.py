"""schemathesis hooks of t/133-admin-fuzz.t (loaded through SCHEMATHESIS_HOOKS), applied to
every call before it is sent:

- If-Match: a generated one is a stale ETag (412) almost always, and every configuration write
  would end there; only `*` is kept (which still gives 412 for a resource that does not
  exist), and PUT /api/v1/config, which requires one, always sends `*`.
- The fuzzer's own admin (AIGW_FUZZ_ADMIN) is never the user of PATCH /api/v1/users/{name}
  (a later call could demote or disable it, and its token with it): that call names a user
  that does not exist instead.
- Existing resources: every other call with path parameters names resources that exist
  (read from the API just before: a namespace, its keys, matchers and policies, a target, a
  route, a revision, a user, a token; the n-th such call takes the n-th of each list, so the
  run stays deterministic), so writes reach what they change and not only 404; a target and a
  route are made again when none is left, and the target names in a route's body are those of
  existing targets. Needs AIGW_FUZZ_URL and AIGW_FUZZ_TOKEN.
- Target hosts: the config center resolves every target's host when it checks a
  configuration (as nginx resolves an upstream's servers), and generated host names would
  each cost a DNS query to the machine's resolver. Every `base_url` in a body gets 127.0.0.1
  for a host name (IP literals, which need no lookup, stay), so the fuzzer's traffic stays on
  this machine; scheme, port and path are kept, so URL parsing is still fuzzed.
"""
import json
import os
import re
import urllib.request

import schemathesis

_ADMIN = os.environ.get("AIGW_FUZZ_ADMIN", "")
_API = os.environ.get("AIGW_FUZZ_URL", "")
_TOKEN = os.environ.get("AIGW_FUZZ_TOKEN", "")
_calls = [0]


def _get(path):
    """The JSON of a GET as the fuzzer's admin, or None."""
    req = urllib.request.Request(_API + path, headers={"Authorization": "Bearer " + _TOKEN})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)
    except Exception:
        return None


def _post(path, body):
    req = urllib.request.Request(
        _API + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": "Bearer " + _TOKEN, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10):
            pass
    except Exception:
        pass


def _targets():
    names = _items("/api/v1/targets", "name")
    if not names:
        _post("/api/v1/targets", {"name": "vllm", "provider": "openai-compatible",
                                  "base_url": "http://127.0.0.1:9/v1"})
        names = _items("/api/v1/targets", "name")
    return names


def _routes():
    names = _items("/api/v1/routes", "name")
    if not names and _targets():
        _post("/api/v1/routes", {"name": "gpt", "targets": [_targets()[0]]})
        names = _items("/api/v1/routes", "name")
    return names


def _items(path, key):
    page = _get(path + ("&" if "?" in path else "?") + "limit=1000")
    if not isinstance(page, dict):
        return []
    return [i[key] for i in page.get("items", []) if isinstance(i, dict) and key in i]


def _pick(values, n):
    return values[n % len(values)] if values else None


def _existing(path, params, n):
    """Path parameters naming existing resources (those it can find)."""
    from urllib.parse import quote

    out = {}
    if "{code}" in path:
        code = _pick(_items("/api/v1/namespaces", "code"), n)
        if code is None:
            return out
        out["code"] = code
        ns = "/api/v1/namespaces/" + quote(code, safe="")
        if "{key_id}" in path:
            out["key_id"] = _pick(_items(ns + "/keys", "id"), n)
        elif "/matchers/{id}" in path:
            out["id"] = _pick(_items(ns + "/matchers", "id"), n)
        elif "/policies/{id}" in path:
            out["id"] = _pick(_items(ns + "/policies", "id"), n)
    elif path.startswith("/api/v1/targets/"):
        out["name"] = _pick(_targets(), n)
    elif path.startswith("/api/v1/routes/"):
        out["name"] = _pick(_routes(), n)
    elif path.startswith("/api/v1/config/revisions/"):
        out["version"] = _pick(_items("/api/v1/config/revisions", "version"), n)
    elif path.startswith("/api/v1/users/"):
        out["name"] = _pick([u for u in _items("/api/v1/users", "name") if u != _ADMIN], n)
    elif path.startswith("/api/v1/tokens/"):
        out["token_id"] = _pick(_items("/api/v1/tokens", "id"), n)
    return {k: v for k, v in out.items() if v is not None and k in params}

_URL = re.compile(r"^(https?://)([^/]*)(.*)$", re.S)
# an IP literal (v4, or v6 in brackets), with or without a port
_LITERAL = re.compile(r"^([0-9.]+|\[[0-9A-Fa-f:.]*\])(:[^:]*)?$")


def _local(url):
    m = _URL.match(url)
    if not m:
        return url
    scheme, authority, rest = m.groups()
    if _LITERAL.match(authority):
        return url
    # keep a port (the text after the last ':'), whatever it is
    port = ""
    if ":" in authority:
        port = authority[authority.rindex(":"):]
    return f"{scheme}127.0.0.1{port}{rest}"


def _walk(value):
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "base_url" and isinstance(v, str):
                value[k] = _local(v)
            else:
                _walk(v)
    elif isinstance(value, list):
        for v in value:
            _walk(v)


def _route_body(body, n):
    """A route's targets and fallback name existing targets."""
    names = _targets()
    if not names:
        return
    for key in ("targets", "fallback"):
        v = body.get(key)
        if not isinstance(v, list):
            continue
        for i, t in enumerate(v):
            name = names[(n + i) % len(names)]
            if isinstance(t, dict) and "target" in t:
                t["target"] = name
            elif isinstance(t, str):
                v[i] = name


@schemathesis.hook
def before_call(context, case, kwargs):
    if isinstance(case.body, (dict, list)):
        _walk(case.body)
    method = case.operation.method.upper()
    path = case.operation.path
    headers = case.headers if case.headers is not None else {}
    for name in [h for h in headers if h.lower() == "if-match"]:
        if headers[name] != "*":
            del headers[name]
    if method == "PUT" and path == "/api/v1/config":
        headers["If-Match"] = "*"
    case.headers = headers
    params = case.path_parameters or {}
    if (params or path == "/api/v1/routes") and _API and _TOKEN:
        _calls[0] += 1
        n = _calls[0] // 2
        if _calls[0] % 2 == 0:
            params.update(_existing(path, params, n))
            if path.startswith("/api/v1/routes") and isinstance(case.body, dict):
                _route_body(case.body, n)
    if path == "/api/v1/users/{name}" and _ADMIN and params.get("name") == _ADMIN:
        params["name"] = _ADMIN + "-x"
