# The module loads, proxies an identified request to the mock provider, and leaves
# locations without `ai_gateway on` alone.
use lib 't/lib';
use Test::AIGateway 'no_plan';

run_tests();

__DATA__

=== TEST 1: the module loads and a keyed chat completion goes through the gateway
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
        add_header X-NS $ai_gateway_namespace;
    }
--- request
POST /v1/chat/completions
{"model":"mock-gpt","messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
Content-Type: application/json
--- error_code: 200
--- response_headers
X-NS: alpha
Content-Type: application/json
--- response_body_like: ^\{"choices":\[\{"finish_reason":"stop".*"object":"chat\.completion".*"usage":\{"completion_tokens":\d+,"prompt_tokens":\d+,"total_tokens":\d+\}\}$
--- error_log eval
qr/\[notice\] .*ai_gateway: ngx_http_ai_gateway_module \d+\.\d+\.\d+ \(built for nginx\/1\.\d+\.\d+\), config ".*gateway\.json" \(version t-1\): namespaces 16, keys 4, matchers 15/



=== TEST 2: a streamed chat completion arrives as server-sent events ending in [DONE]
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
        proxy_buffering off;
    }
--- request
POST /v1/chat/completions
{"model":"mock-gpt","stream":true,"stream_options":{"include_usage":true},"max_tokens":3,"messages":[{"role":"user","content":"Hi"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 200
--- response_headers
Content-Type: text/event-stream
--- response_body_like: \A(data: \{"choices":\[\{"delta":.*\n\n){5}data: \{"choices":\[\],.*"usage":\{"completion_tokens":3,.*\n\ndata: \[DONE\]\n\n\z



=== TEST 3: an Anthropic messages request with x-api-key goes through
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
POST /v1/messages
{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}
--- more_headers
x-api-key: sk-beta-1
anthropic-version: 2023-06-01
--- error_code: 200
--- response_body_like: "type":"message"



=== TEST 4: a location without ai_gateway is untouched (no key needed)
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location /plain/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1/;
    }
--- request
GET /plain/models
--- error_code: 200
--- response_body_like: "object":"list"



=== TEST 5: ai_gateway off inside a gateway server turns it off for one location
--- config
    ai_gateway on;
    location /v1/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location /v1/models {
        ai_gateway off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
GET /v1/models
--- error_code: 200
--- response_body_like: "object":"list"



=== TEST 6: ai_gateway on at server level applies to every location
--- config
    ai_gateway on;
    location /v1/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location /v1/models {
        ai_gateway off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
GET /v1/chat/completions
--- error_code: 401
--- response_body_like: "code":"missing_api_key"
