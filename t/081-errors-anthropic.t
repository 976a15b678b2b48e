# Anthropic's clients get Anthropic's errors: on the Messages API (…/v1/messages,
# …/count_tokens) and for any request that carries `anthropic-version`, every error the
# gateway answers (its rejections and nginx's own 413/502/...) is
# {"type":"error","error":{"type","message","details":{"error_code"}},"request_id"} with
# Anthropic's types (the gateway's code in details.error_code), 503
# becomes Anthropic's 529 overloaded_error, and the request id is in `request-id` (OpenAI's
# errors carry it in `x-request-id`). OpenAI's paths keep OpenAI's shape.
use lib 't/lib';
use Test::AIGateway 'no_plan';

repeat_each(1);

$ENV{TEST_NGINX_ECHO_PORT} = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 23;

our $routed = <<'_EOC_';
    location /v1/ {
        ai_gateway on;
        include $TEST_NGINX_ROOT/nginx-conf/ai_gateway_proxy.conf;
    }
    location @ai_gateway_failover {
        ai_gateway on;
        include $TEST_NGINX_ROOT/nginx-conf/ai_gateway_proxy.conf;
    }
_EOC_

# two targets that answer 503, for routes "busy" (every model of /v1/) and "gpt" (gpt-*)
our $routing = <<'_EOC_';
>>> gw.json
{"namespaces": [{"code": "a", "api_keys": ["033d461ba69fa00769695b91ef3d9187416084607a52805d6ca51f0665bd4fcb"]}],
 "targets": [
   {"name": "one", "provider": "anthropic", "base_url": "http://127.0.0.1:$TEST_NGINX_ECHO_PORT/v1", "credential": {"value": "k1"}},
   {"name": "two", "provider": "openai", "base_url": "http://127.0.0.1:$TEST_NGINX_ECHO_PORT/v1", "credential": {"value": "k2"}}
 ],
 "routes": [{"name": "busy", "path_prefix": "/v1/", "models": ["claude-*", "gpt-*"], "targets": ["one", "two"]}]}
_EOC_

our $busy = <<'_EOC_';
    ai_gateway_config ../html/gw.json;
    upstream ai_gateway_targets {
        ai_gateway_upstream;
        keepalive 8;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_ECHO_PORT;
        location / { return 503 "busy"; }
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: no key on the Messages API: 401 authentication_error, the id in the body and in request-id
--- config eval: $::gateway_location
--- request
POST /v1/messages
{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}
--- error_code: 401
--- response_headers_like
Content-Type: application/json
request-id: [0-9a-f]{32}
--- response_body_like: ^\{"type":"error","error":\{"type":"authentication_error","message":"You didn't provide an API key\. [^"]+ header\.","details":\{"error_code":"missing_api_key"\}\},"request_id":"[0-9a-f]{32}"\}$



=== TEST 2: the id in the body is the one in the header, and $ai_gateway_request_id
--- http_config
    log_format ids 'ids header=$sent_http_request_id var=$ai_gateway_request_id';
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
        access_log logs/error.log ids;
    }
--- request
POST /v1/messages/count_tokens
{"model":"claude-haiku-4-5","messages":[]}
--- more_headers
x-api-key: sk-unknown
--- error_code: 401
--- response_body_like: "request_id":"([0-9a-f]{32})"
--- error_log eval
qr/ids header=([0-9a-f]{32}) var=\1/



=== TEST 3: anthropic-version on another path: Anthropic's shape too
--- config eval: $::gateway_location
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
x-api-key: sk-unknown
anthropic-version: 2023-06-01
--- error_code: 401
--- response_body_like: ^\{"type":"error","error":\{"type":"authentication_error","message":"Incorrect API key provided\.","details":\{"error_code":"invalid_api_key"\}\},"request_id":"[0-9a-f]{32}"\}$



=== TEST 4: OpenAI's paths keep OpenAI's shape, with x-request-id
--- config eval: $::gateway_location
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-unknown
--- error_code: 401
--- response_headers_like
x-request-id: [0-9a-f]{32}
request-id:
--- response_body
{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}



=== TEST 5: OpenAI's threads/{id}/messages is not Anthropic's
--- config eval: $::gateway_location
--- request
POST /v1/threads/thread_1/messages
{"role":"user","content":"x"}
--- error_code: 401
--- response_body_like: ^\{"error":\{"message":"You didn't provide an API key



=== TEST 6: a disabled namespace: 403 permission_error
--- config eval: $::gateway_location
--- request
POST /v1/messages
{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}
--- more_headers
X-Team: off
--- error_code: 403
--- response_body_like: ^\{"type":"error","error":\{"type":"permission_error","message":"The namespace this request belongs to is disabled\.","details":\{"error_code":"namespace_disabled"\}\}



=== TEST 7: a body that is not JSON: 400 invalid_request_error
--- config eval: $::gateway_location
--- request
POST /v1/messages
{"model":
--- more_headers
x-api-key: sk-alpha-1
--- error_code: 400
--- response_body_like: ^\{"type":"error","error":\{"type":"invalid_request_error","message":"We could not parse the JSON body



=== TEST 8: nginx's 413 (client_max_body_size): request_too_large
--- config
    location /v1/ {
        ai_gateway on;
        client_max_body_size 10;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
POST /v1/messages
{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}
--- more_headers
x-api-key: sk-alpha-1
--- error_code: 413
--- response_body_like: ^\{"type":"error","error":\{"type":"request_too_large","message":"The request body is too large
--- error_log
client intended to send too large body
--- no_error_log
[alert]
[emerg]



=== TEST 9: a provider that cannot be reached: 502 api_error
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:1;
    }
--- request
POST /v1/messages
{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}
--- more_headers
x-api-key: sk-alpha-1
--- error_code: 502
--- response_body_like: ^\{"type":"error","error":\{"type":"api_error","message":"The gateway could not get a valid response
--- error_log
connect() failed (111: Connection refused)
--- no_error_log
[alert]
[emerg]



=== TEST 10: every target answered 503: Anthropic's 529 overloaded_error (the status line says so)
--- http_config eval: $::busy
--- config eval: $::routed
--- user_files eval: $::routing
--- raw_request eval
"POST /v1/messages HTTP/1.1\r
Host: localhost\r
x-api-key: sk-route-a\r
Content-Type: application/json\r
Content-Length: 57\r
Connection: close\r
\r
{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"messages\":[]}"
--- raw_response_headers_like: ^HTTP/1\.1 529 Overloaded\r\n
--- error_code: 529
--- response_body_like: ^\{"type":"error","error":\{"type":"overloaded_error","message":"No provider could serve this request \(the last answered 503\)\.","details":\{"error_code":"all_targets_failed"\}\},"request_id":"[0-9a-f]{32}"\}$



=== TEST 11: the same failure for an OpenAI client: 503 server_error, and the log sees what was sent
--- http_config eval: $::busy . "    log_format st 'sent status=\$status';"
--- config eval: $::routed =~ s/ai_gateway on;/ai_gateway on;\n        access_log logs\/error.log st;/gr
--- user_files eval: $::routing
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-route-a
--- error_code: 503
--- response_body
{"error":{"message":"No provider could serve this request (the last answered 503).","type":"server_error","param":null,"code":"all_targets_failed"}}
--- error_log
sent status=503



=== TEST 12: no route for the model: 404 not_found_error
--- http_config eval: $::busy
--- config eval: $::routed
--- user_files eval: $::routing
--- request
POST /v1/messages
{"model":"llama-3","max_tokens":5,"messages":[]}
--- more_headers
x-api-key: sk-route-a
--- error_code: 404
--- response_body_like: ^\{"type":"error","error":\{"type":"not_found_error","message":"The requested model does not exist



=== TEST 13: policies: models 403 permission_error, requests 429 rate_limit_error with Retry-After
--- http_config
    ai_gateway_config $TEST_NGINX_FIXTURES/policies.json;
    ai_gateway_limit_zone limits 64k;
--- config eval: $::gateway_location
--- request eval
["POST /v1/messages\n{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"messages\":[]}",
 "POST /v1/messages\n{\"model\":\"mock-gpt\",\"max_tokens\":5,\"messages\":[]}"]
--- more_headers eval
["x-api-key: sk-pol-models", "x-api-key: sk-pol-models"]
--- error_code eval
[403, 200]
--- response_body_like eval
['^\{"type":"error","error":\{"type":"permission_error","message":"The requested model is not allowed for this namespace\.","details":\{"error_code":"model_not_allowed"\}\}',
 '"type":"message"']



=== TEST 14: a requests limit: 429 rate_limit_error with Retry-After
--- http_config
    ai_gateway_config $TEST_NGINX_FIXTURES/policies.json;
    ai_gateway_limit_zone limits 64k;
--- config eval: $::gateway_location
--- request eval
[map { "POST /v1/messages\n{\"model\":\"m\",\"max_tokens\":5,\"messages\":[]}" } 1 .. 4]
--- more_headers eval
[("x-api-key: sk-pol-rpm") x 4]
--- error_code eval
[200, 200, 200, 429]
--- response_headers_like eval
["", "", "", "Retry-After: \\d+"]
--- response_body_like eval
['"type":"message"', '"type":"message"', '"type":"message"',
 '^\{"type":"error","error":\{"type":"rate_limit_error","message":"Rate limit reached for requests: limit 3, used 3, requested 1\.']



=== TEST 15: the token service's count_tokens: Anthropic's shape, OpenAI's for input_tokens
--- config
    location /v1/ {
        ai_gateway_token_service;
    }
--- request eval
["POST /v1/messages/count_tokens\n{", "POST /v1/responses/input_tokens\n{"]
--- error_code eval
[400, 400]
--- response_body_like eval
['^\{"type":"error","error":\{"type":"invalid_request_error","message":"We could not parse the JSON body[^"]*","details":\{"error_code":"invalid_json"\}\},"request_id":"[0-9a-f]{32}"\}$',
 '^\{"error":\{"message":"We could not parse the JSON body']
