# Configuration errors stop nginx (and `nginx -t`) with an [emerg] that says what is wrong
# and where.
use lib 't/lib';
use Test::AIGateway 'no_plan';

run_tests();

__DATA__

=== TEST 1: a valid config inlined by the block loads
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files
>>> gw.json
{"namespaces": [{"code": "only", "api_keys": ["f5e48d15f875e59f016760a6f67fbaac7cdff7505eb72d295a11ab19edcab26a"]}]}
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
        add_header X-NS $ai_gateway_namespace;
    }
--- request
GET /v1/models
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 200
--- response_headers
X-NS: only



=== TEST 2: an unknown operator is reported with its JSON path
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files
>>> gw.json
{"namespaces": [{"code": "a"}, {"code": "b"},
 {"code": "c", "matchers": [{"type": "header", "field": "x", "operator": "like", "value": "v"}]}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway: invalid config ".*gw\.json": namespaces\[2\]\.matchers\[0\]\.operator: unknown operator "like"/



=== TEST 3: a missing config file
--- http_config
    ai_gateway_config ../html/does-not-exist.json;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway: cannot read config ".*does-not-exist\.json": No such file or directory/



=== TEST 4: a file that is not JSON
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files
>>> gw.json
namespaces: [a, b]
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway: invalid config ".*gw\.json": invalid JSON: expected ident at line 1 column 2/



=== TEST 4b: a key twice in one object is an error naming its path (the last one does not silently win)
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files
>>> gw.json
{"namespaces": [{"code": "a", "api_keys": []}],
 "version": "1",
 "namespaces": [{"code": "b", "api_keys": []}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway: invalid config ".*gw\.json": namespaces: appears twice \(a JSON key must be unique in its object\)/



=== TEST 4c: ... at any depth
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files
>>> gw.json
{"namespaces": [{"code": "a", "code": "b", "api_keys": []}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway: invalid config ".*gw\.json": namespaces\[0\]\.code: appears twice/



=== TEST 5: a plaintext key where a sha256 belongs
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files
>>> gw.json
{"namespaces": [{"code": "a", "api_keys": ["sk-my-secret"]}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*namespaces\[0\]\.api_keys\[0\]: must be 64 hexadecimal characters \(the sha256 of the key, never the key\)/



=== TEST 6: an invalid regex is caught when nginx starts, not on the first request
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files
>>> gw.json
{"namespaces": [{"code": "a", "matchers": [{"type": "query", "field": "t", "operator": "regex", "value": "([a-z]"}]}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*namespaces\[0\]\.matchers\[0\]\.value: invalid regex: /



=== TEST 7: an unknown field (a typo) is an error
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files
>>> gw.json
{"namespaces": [{"code": "a", "status": "enabled", "matcher": []}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*namespaces\[0\]\.matcher: unknown field/



=== TEST 8: the same key hash in two namespaces
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files
>>> gw.json
{"namespaces": [
 {"code": "a", "api_keys": ["f5e48d15f875e59f016760a6f67fbaac7cdff7505eb72d295a11ab19edcab26a"]},
 {"code": "b", "api_keys": ["F5E48D15F875E59F016760A6F67FBAAC7CDFF7505EB72D295A11AB19EDCAB26A"]}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*namespaces\[1\]\.api_keys\[0\]: duplicate key hash \(already used by namespace "a"\)/



=== TEST 9: ai_gateway_config twice
--- http_config
    ai_gateway_config $TEST_NGINX_FIXTURES/gateway.json;
    ai_gateway_config $TEST_NGINX_FIXTURES/gateway.json;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway_config" directive is duplicate/



=== TEST 10: ai_gateway on without any config
--- no_gateway_config: 1
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway" is on but no "ai_gateway_config" is set in the http block/



=== TEST 11: ai_gateway takes on or off
--- config
    location /v1/ {
        ai_gateway yes;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "yes" in "ai_gateway" directive, it must be "on" or "off"/



=== TEST 12: ai_gateway_mock_provider rejects unknown parameters
--- config
    location /mock/ {
        ai_gateway_mock_provider delay=10ms;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid parameter "delay=10ms"/



=== TEST 13: ai_gateway_mock_provider rejects a bad time
--- config
    location /mock/ {
        ai_gateway_mock_provider latency=fast;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid parameter "latency=fast"/



=== TEST 14: ai_gateway_config is not allowed in a location
--- config
    location /v1/ {
        ai_gateway_config gw.json;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway_config" directive is not allowed here/



=== TEST 15: an unmatched_status other than 401 or 404
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files
>>> gw.json
{"unmatched_status": 403, "namespaces": []}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*unmatched_status: must be 401 or 404/



=== TEST 16: ai_gateway_config belongs in the http block, not the main context
--- main_config
    ai_gateway_config gw.json;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway_config" directive is not allowed here/
