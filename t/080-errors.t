# Error pages nginx generates itself inside gateway locations are OpenAI-shaped JSON;
# pages the operator configured with error_page, and other locations, are left alone.
use lib 't/lib';
use Test::AIGateway 'no_plan';

run_tests();

__DATA__

=== TEST 1: provider unreachable: 502 as JSON
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:1;
    }
--- request
GET /v1/models
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 502
--- response_headers
Content-Type: application/json
--- response_body
{"error":{"message":"The gateway could not get a valid response from the upstream provider.","type":"server_error","param":null,"code":"bad_gateway"}}
--- error_log
connect() failed (111: Connection refused)
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 2: provider too slow: 504 as JSON
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/slow/;
        proxy_read_timeout 200ms;
    }
    location /slow/ {
        ai_gateway_mock_provider latency=2s;
    }
--- request
GET /v1/models
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 504
--- response_body_like: ^\{"error":\{"message":"The upstream provider did not respond in time\.","type":"server_error","param":null,"code":"gateway_timeout"\}\}$
--- error_log
upstream timed out
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 3: an operator's error_page is left alone
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:1;
        error_page 502 /custom502.html;
    }
    location = /custom502.html {
        root html;
    }
--- user_files
>>> custom502.html
<p>our own page</p>
--- request
GET /v1/models
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 502
--- response_headers
Content-Type: text/html
--- response_body
<p>our own page</p>
--- error_log
connect() failed
--- no_error_log
[alert]
[crit]



=== TEST 4: outside gateway locations nginx keeps its HTML pages
--- config
    location /plain/ {
        proxy_pass http://127.0.0.1:1;
    }
--- request
GET /plain/x
--- error_code: 502
--- response_headers
Content-Type: text/html
--- response_body_like: <title>502 Bad Gateway</title>
--- error_log
connect() failed
--- no_error_log
[alert]
[crit]



=== TEST 5: a provider's own error response passes through untouched
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
POST /v1/messages
{"model":"claude","messages":[]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 400
--- response_body
{"error":{"message":"max_tokens: Field required","type":"invalid_request_error"},"type":"error"}



=== TEST 6: a gateway rejection ignores an error_page for another status
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
        error_page 502 /custom502.html;
    }
--- request
GET /v1/models
--- error_code: 401
--- response_headers
Content-Type: application/json
--- response_body_like: "code":"missing_api_key"
