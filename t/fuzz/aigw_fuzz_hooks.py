"""schemathesis hooks of t/133-admin-fuzz.t (loaded through SCHEMATHESIS_HOOKS), applied to
every call before it is sent:

- If-Match: a generated one is a stale ETag (412) almost always, and every configuration write
  would end there; only `*` is kept (which still gives 412 for a resource that does not
  exist), and PUT /api/v1/config, which requires one, always sends `*`.
- The fuzzer's own admin (AIGW_FUZZ_ADMIN) is never the user of PATCH /api/v1/users/{name}
  (a later call could demote or disable it, and its token with it): that call names a user
  that does not exist instead.
- Target hosts: the config center resolves every target's host when it checks a
  configuration (as nginx resolves an upstream's servers), and generated host names would
  each cost a DNS query to the machine's resolver. Every `base_url` in a body gets 127.0.0.1
  for a host name (IP literals, which need no lookup, stay), so the fuzzer's traffic stays on
  this machine; scheme, port and path are kept, so URL parsing is still fuzzed.
"""
import os
import re

import schemathesis

_ADMIN = os.environ.get("AIGW_FUZZ_ADMIN", "")

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
    if path == "/api/v1/users/{name}" and _ADMIN and params.get("name") == _ADMIN:
        params["name"] = _ADMIN + "-x"
