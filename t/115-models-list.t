# GET /v1/models and /v1/models/{id} in a routing location are answered by the gateway: the
# models the calling namespace may use (names routes give exactly, and names its `models`
# policy gives that a route serves), in OpenAI's list shape or, for Anthropic's clients
# (anthropic-version), Anthropic's, paged. The providers never see these requests; no policy
# counts them; identification applies as to any request.
use lib 't/lib';
use Test::AIGateway 'no_plan';

repeat_each(1);

$ENV{TEST_NGINX_ECHO_PORT} = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 24;

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
    ai_gateway_config ../html/gw.json;
    ai_gateway_limit_zone limits 64k;
    upstream ai_gateway_targets {
        ai_gateway_upstream;
        keepalive 8;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_ECHO_PORT;
        location / { return 200 "provider saw $request_method $request_uri\n"; }
    }
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location /v1/ {
        ai_gateway on;
        include $TEST_NGINX_ROOT/nginx-conf/ai_gateway_proxy.conf;
    }
_EOC_
    }
    if (!defined $block->user_files) {
        $block->set_value("user_files", $main::gw);
    }
});

# sk-route-a: namespace "a" (no policy but a requests limit of 1 a minute);
# sk-route-b: namespace "b" (a models policy)
our $gw = <<'_EOC_';
>>> gw.json
{"namespaces": [
   {"code": "a", "api_keys": ["033d461ba69fa00769695b91ef3d9187416084607a52805d6ca51f0665bd4fcb"],
    "policies": [{"type": "requests", "limit": 1, "window": "1m"}]},
   {"code": "b", "api_keys": ["8efc96d592e25dfead3d81af2c2d9fc83083a6c431b305ba117de6f359520dbc"],
    "policies": [{"type": "models", "allow": ["claude-haiku-4-5", "gpt-4o-mini", "llama-*"]}]}
 ],
 "targets": [
   {"name": "claude", "provider": "anthropic", "base_url": "http://127.0.0.1:$TEST_NGINX_ECHO_PORT/v1", "credential": {"value": "k1"}},
   {"name": "openai", "provider": "openai", "base_url": "http://127.0.0.1:$TEST_NGINX_ECHO_PORT/v1", "credential": {"value": "k2"}}
 ],
 "routes": [
   {"name": "claude", "path_prefix": "/v1/messages", "models": ["claude-haiku-4-5", "claude-sonnet-4-5"], "targets": ["claude"]},
   {"name": "gpt", "path_prefix": "/v1/", "models": ["gpt-4o", "gpt-4o-*"], "targets": ["openai"]}
 ]}
_EOC_

our $models_http = <<'_EOC_';
    ai_gateway_config ../html/gw.json;
    ai_gateway_limit_zone limits 64k;
    log_format models 'models ns=$ai_gateway_namespace status=$status upstream=$upstream_addr.';
    upstream ai_gateway_targets {
        ai_gateway_upstream;
        keepalive 8;
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: OpenAI's list: the literal names of the routes (globs are not expanded)
--- request
GET /v1/models
--- more_headers
Authorization: Bearer sk-route-a
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body
{"data":[{"created":0,"id":"claude-haiku-4-5","object":"model","owned_by":"anthropic"},{"created":0,"id":"claude-sonnet-4-5","object":"model","owned_by":"anthropic"},{"created":0,"id":"gpt-4o","object":"model","owned_by":"openai"}],"object":"list"}



=== TEST 2: a models policy narrows the list, and names a model a glob route serves
--- request
GET /v1/models/
--- more_headers
Authorization: Bearer sk-route-b
--- error_code: 200
--- response_body
{"data":[{"created":0,"id":"claude-haiku-4-5","object":"model","owned_by":"anthropic"},{"created":0,"id":"gpt-4o-mini","object":"model","owned_by":"openai"}],"object":"list"}



=== TEST 3: one model, and the ones the namespace may not use are not found
--- request eval
["GET /v1/models/gpt-4o-mini", "GET /v1/models/gpt-4o", "GET /v1/models/llama-3"]
--- more_headers eval
[("Authorization: Bearer sk-route-b") x 3]
--- error_code eval
[200, 404, 404]
--- response_body eval
["{\"created\":0,\"id\":\"gpt-4o-mini\",\"object\":\"model\",\"owned_by\":\"openai\"}\n",
 "{\"error\":{\"message\":\"The requested model does not exist or this gateway has no route to it.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"model_not_found\"}}\n",
 "{\"error\":{\"message\":\"The requested model does not exist or this gateway has no route to it.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"model_not_found\"}}\n"]



=== TEST 4: Anthropic's clients get Anthropic's list, paged with limit and after_id
--- request eval
["GET /v1/models", "GET /v1/models?limit=2", "GET /v1/models?limit=2&after_id=claude-sonnet-4-5",
 "GET /v1/models?limit=1&before_id=gpt-4o", "GET /v1/models/claude-sonnet-4-5"]
--- more_headers eval
[("x-api-key: sk-route-a\nanthropic-version: 2023-06-01") x 5]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body eval
['{"data":[{"created_at":"1970-01-01T00:00:00Z","display_name":"claude-haiku-4-5","id":"claude-haiku-4-5","type":"model"},{"created_at":"1970-01-01T00:00:00Z","display_name":"claude-sonnet-4-5","id":"claude-sonnet-4-5","type":"model"},{"created_at":"1970-01-01T00:00:00Z","display_name":"gpt-4o","id":"gpt-4o","type":"model"}],"first_id":"claude-haiku-4-5","has_more":false,"last_id":"gpt-4o"}
',
 '{"data":[{"created_at":"1970-01-01T00:00:00Z","display_name":"claude-haiku-4-5","id":"claude-haiku-4-5","type":"model"},{"created_at":"1970-01-01T00:00:00Z","display_name":"claude-sonnet-4-5","id":"claude-sonnet-4-5","type":"model"}],"first_id":"claude-haiku-4-5","has_more":true,"last_id":"claude-sonnet-4-5"}
',
 '{"data":[{"created_at":"1970-01-01T00:00:00Z","display_name":"gpt-4o","id":"gpt-4o","type":"model"}],"first_id":"gpt-4o","has_more":false,"last_id":"gpt-4o"}
',
 '{"data":[{"created_at":"1970-01-01T00:00:00Z","display_name":"claude-sonnet-4-5","id":"claude-sonnet-4-5","type":"model"}],"first_id":"claude-sonnet-4-5","has_more":true,"last_id":"claude-sonnet-4-5"}
',
 '{"created_at":"1970-01-01T00:00:00Z","display_name":"claude-sonnet-4-5","id":"claude-sonnet-4-5","type":"model"}
']



=== TEST 5: a bad limit, a model the namespace may not use: Anthropic's errors
--- request eval
["GET /v1/models?limit=0", "GET /v1/models/gpt-4o"]
--- more_headers eval
[("x-api-key: sk-route-b\nanthropic-version: 2023-06-01") x 2]
--- error_code eval
[400, 404]
--- response_body_like eval
['^\{"type":"error","error":\{"type":"invalid_request_error","message":"Invalid type for \'limit\': expected an integer from 1 to 1000\.","details":\{"error_code":"invalid_type"\}\}',
 '^\{"type":"error","error":\{"type":"not_found_error","message":"The requested model does not exist or this gateway has no route to it\.","details":\{"error_code":"model_not_found"\}\}']



=== TEST 6: identification applies: no key is 401, an unknown key 401
--- request eval
["GET /v1/models", "GET /v1/models"]
--- more_headers eval
["", "Authorization: Bearer sk-nobody"]
--- error_code eval
[401, 401]
--- response_body_like eval
['"code":"missing_api_key"', '"code":"invalid_api_key"']



=== TEST 7: listing costs no request of the namespace's limit; the first completion goes through, the second is limited
--- request eval
["GET /v1/models", "GET /v1/models", "GET /v1/models/gpt-4o",
 "POST /v1/chat/completions\n{\"model\":\"gpt-4o\",\"messages\":[]}",
 "POST /v1/chat/completions\n{\"model\":\"gpt-4o\",\"messages\":[]}"]
--- more_headers eval
[("Authorization: Bearer sk-route-a") x 5]
--- error_code eval
[200, 200, 200, 200, 429]
--- response_body_like eval
['"object":"list"', '"object":"list"', '"id":"gpt-4o"', '^provider saw POST /v1/chat/completions', '"code":"rate_limit_exceeded"']
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 8: HEAD answers the headers only; other methods go to the provider as before
--- request eval
["HEAD /v1/models", "POST /v1/models/gpt-4o\n{\"model\":\"gpt-4o\"}"]
--- more_headers eval
[("Authorization: Bearer sk-route-a") x 2]
--- error_code eval
[200, 200]
--- response_body eval
["", "provider saw POST /v1/models/gpt-4o\n"]



=== TEST 9: the variables and the log see the gateway's answer
--- http_config eval: $::models_http
--- config
    location /v1/ {
        ai_gateway on;
        include $TEST_NGINX_ROOT/nginx-conf/ai_gateway_proxy.conf;
        access_log logs/error.log models;
    }
--- request
GET /v1/models
--- more_headers
Authorization: Bearer sk-route-b
--- error_code: 200
--- error_log
models ns=b status=200 upstream=-.



=== TEST 10: a location that does not route still asks its provider
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
GET /v1/models
--- more_headers
Authorization: Bearer sk-route-a
--- error_code: 200
--- response_body_like: "id":"mock-gpt"
