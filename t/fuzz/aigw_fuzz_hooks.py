"""schemathesis hooks of t/133-admin-fuzz.t (loaded through SCHEMATHESIS_HOOKS).

The config center resolves every target's host when it checks a configuration (as nginx
resolves an upstream's servers). Generated host names would each cost a DNS query to the
machine's resolver: before a call is sent, every `base_url` in its body gets 127.0.0.1 for
a host name (IP literals, which need no lookup, stay), so the fuzzer's traffic stays on this
machine. Scheme, port and path are kept, so URL parsing is still fuzzed.
"""
import re

import schemathesis

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
