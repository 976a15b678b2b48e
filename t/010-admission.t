# Every admission outcome of the access phase, each answered with an OpenAI-shaped JSON
# error: 401 missing/unknown key, 403 disabled namespace, 404 when configured, 400 malformed
# JSON or fields, 413 too large; and what reaches the provider when a request is admitted.
use lib 't/lib';
use Test::AIGateway 'no_plan';

repeat_each(2);

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->config) {
        $block->set_value("config", $gateway_location);
    }
});

run_tests();

__DATA__

=== TEST 1: no key and no matcher: 401 missing_api_key
--- request
POST /v1/chat/completions
{"model":"mock-gpt","messages":[]}
--- error_code: 401
--- response_headers
Content-Type: application/json
X-Reason: missing_api_key
--- response_body
{"error":{"message":"You didn't provide an API key. Send it in the Authorization header as 'Bearer YOUR_KEY', or in the x-api-key header.","type":"invalid_request_error","param":null,"code":"missing_api_key"}}
--- error_log
ai_gateway: rejected with 401: missing_api_key



=== TEST 2: an unknown key: 401 invalid_api_key, and the key is never echoed or logged
--- request
POST /v1/chat/completions
{"model":"mock-gpt","messages":[]}
--- more_headers
Authorization: Bearer sk-not-a-real-key-123
--- error_code: 401
--- response_body
{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}
--- no_error_log
sk-not-a-real-key-123
[error]



=== TEST 3: a known key in Authorization: Bearer
--- request
POST /v1/chat/completions
{"model":"mock-gpt","messages":[]}
--- more_headers
Authorization: Bearer sk-alpha-2
--- error_code: 200
--- response_headers
X-NS: alpha
X-Via: key



=== TEST 4: the Bearer scheme is case-insensitive
--- request
GET /v1/models
--- more_headers
Authorization: bearer sk-alpha-1
--- error_code: 200
--- response_headers
X-NS: alpha



=== TEST 5: a key in x-api-key (Anthropic SDKs)
--- request
GET /v1/models
--- more_headers
x-api-key: sk-beta-1
--- error_code: 200
--- response_headers
X-NS: beta



=== TEST 6: a key in api-key (Azure OpenAI SDKs)
--- request
GET /v1/models
--- more_headers
api-key: sk-beta-1
--- error_code: 200
--- response_headers
X-NS: beta



=== TEST 7: Authorization wins over x-api-key
--- request
GET /v1/models
--- more_headers
Authorization: Bearer sk-alpha-1
x-api-key: sk-beta-1
--- error_code: 200
--- response_headers
X-NS: alpha



=== TEST 8: a non-Bearer Authorization falls through to x-api-key
--- request
GET /v1/models
--- more_headers
Authorization: Basic dXNlcjpwYXNz
x-api-key: sk-beta-1
--- error_code: 200
--- response_headers
X-NS: beta



=== TEST 9: an unknown key still reaches its namespace through a matcher
--- request
GET /v1/models
--- more_headers
Authorization: Bearer sk-whatever-the-sdk-sends
X-Team: beta
--- error_code: 200
--- response_headers
X-NS: beta
X-Via: matcher



=== TEST 10: a disabled namespace found by key: 403
--- request
POST /v1/chat/completions
{"model":"mock-gpt","messages":[]}
--- more_headers
Authorization: Bearer sk-off-1
--- error_code: 403
--- response_headers
X-NS: off
X-Reason: namespace_disabled
--- response_body
{"error":{"message":"The namespace this request belongs to is disabled.","type":"permission_error","param":null,"code":"namespace_disabled"}}
--- error_log
ai_gateway: rejected with 403: namespace_disabled, namespace off



=== TEST 11: a disabled namespace found by a matcher: 403
--- request
GET /v1/models
--- more_headers
X-Team: off
--- error_code: 403
--- response_body_like: "code":"namespace_disabled"



=== TEST 12: "unmatched_status": 404 gives the original gateway's namespace_not_found
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files
>>> gw.json
{"unmatched_status": 404, "namespaces": [{"code": "a", "api_keys": ["f5e48d15f875e59f016760a6f67fbaac7cdff7505eb72d295a11ab19edcab26a"]}]}
--- request
GET /v1/models
--- more_headers
Authorization: Bearer sk-unknown
--- error_code: 404
--- response_body
{"error":{"message":"No namespace matches this request.","type":"invalid_request_error","param":null,"code":"namespace_not_found"}}



=== TEST 13: malformed JSON from an identified client: 400 invalid_json, no content echoed
--- request
POST /v1/chat/completions
{"model":"mock-gpt","messages":[{"role":"user","content":"secret prompt text"
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 400
--- response_headers
Content-Type: application/json
X-NS: alpha
--- response_body
{"error":{"message":"We could not parse the JSON body of your request (unexpected end of input at line 1 column 77).","type":"invalid_request_error","param":null,"code":"invalid_json"}}
--- no_error_log
secret prompt text
[error]



=== TEST 14: malformed JSON from an unidentified client is a 401 first
--- request
POST /v1/chat/completions
{"model":
--- error_code: 401
--- response_body_like: "code":"missing_api_key"



=== TEST 15: a body that is JSON but not an object
--- request
POST /v1/chat/completions
["model","mock-gpt"]
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 400
--- response_body_like: "message":"We could not parse the JSON body of your request \(the body must be a JSON object\)\."



=== TEST 16: a field of the wrong type: 400 with param
--- request
POST /v1/chat/completions
{"model":"mock-gpt","stream":"yes","messages":[]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 400
--- response_body
{"error":{"message":"Invalid type for 'stream': expected a boolean.","type":"invalid_request_error","param":"stream","code":"invalid_type"}}



=== TEST 16b: a model with a line break (it would start a header of its own wherever $ai_gateway_model goes): 400
--- config
    location /v1/ {
        ai_gateway on;
        proxy_set_header X-Model $ai_gateway_model;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
        add_header X-Model $ai_gateway_model always;
    }
--- request
POST /v1/chat/completions
{"model":"mock-gpt\r\nX-Injected: 1","messages":[]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 400
--- response_headers
X-Injected:
--- response_body
{"error":{"message":"Invalid type for 'model': expected a string without control characters.","type":"invalid_request_error","param":"model","code":"invalid_type"}}



=== TEST 17: max_tokens must be a non-negative integer
--- request
POST /v1/chat/completions
{"model":"mock-gpt","max_tokens":-5,"messages":[]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 400
--- response_body_like: "param":"max_tokens"



=== TEST 18: a body over client_max_body_size (Content-Length): 413 as JSON
--- config
    location /v1/ {
        client_max_body_size 100;
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
        add_header X-Reason $ai_gateway_reason always;
    }
--- request eval
"POST /v1/chat/completions\n" . '{"model":"mock-gpt","messages":[{"role":"user","content":"' . ("x" x 200) . '"}]}'
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 413
--- response_headers
Content-Type: application/json
X-Reason: request_too_large
--- response_body
{"error":{"message":"The request body is too large for this gateway (client_max_body_size).","type":"invalid_request_error","param":null,"code":"request_too_large"}}
--- no_error_log
[alert]
[emerg]
[crit]



=== TEST 19: a HEAD request that is rejected has no body but the JSON headers
--- request
HEAD /v1/models
--- error_code: 401
--- response_headers
Content-Type: application/json
--- response_body



=== TEST 20: client headers in the gateway's own family are removed before proxying
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo/;
    }
    location /echo/ {
        return 200 "ns=[$http_x_ai_gateway_namespace] other=[$http_x_ai_gateway_other] keep=[$http_x_keep] auth=[$http_authorization]\n";
    }
--- request
GET /v1/models
--- more_headers
X-AI-Gateway-Namespace: forged
Authorization: Bearer sk-alpha-1
x-ai-gateway-other: 1
X-Keep: yes
X-Ai-Gateway-Namespace: forged-again
--- error_code: 200
--- response_body
ns=[] other=[] keep=[yes] auth=[Bearer sk-alpha-1]



=== TEST 21: the gateway's own header set with proxy_set_header reaches the provider
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo/;
        proxy_set_header X-AI-Gateway-Namespace $ai_gateway_namespace;
        proxy_set_header Authorization "";
    }
    location /echo/ {
        return 200 "ns=[$http_x_ai_gateway_namespace] auth=[$http_authorization]\n";
    }
--- request
GET /v1/models
--- more_headers
X-AI-Gateway-Namespace: forged
Authorization: Bearer sk-alpha-1
--- error_code: 200
--- response_body
ns=[alpha] auth=[]



=== TEST 22: the body reaches the provider byte for byte
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_set_header Host provider.test;
        proxy_set_header Authorization "";
    }
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
--- raw_request eval
"POST /v1/chat/completions HTTP/1.1\r
Host: localhost\r
Connection: close\r
Authorization: Bearer sk-alpha-1\r
Content-Length: 67\r
\r
{\"model\" : \"mock-gpt\",\t\"messages\":[ ], \"extra\": {\"keep\": \"\\u00e9\"}}"
--- tcp_query eval
"POST /v1/chat/completions HTTP/1.0\r
Host: provider.test\r
Connection: close\r
Content-Length: 67\r
\r
{\"model\" : \"mock-gpt\",\t\"messages\":[ ], \"extra\": {\"keep\": \"\\u00e9\"}}"
--- error_code: 200
--- response_body: {}



=== TEST 23: removal keeps every other header when the list spans several parts
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo/;
    }
    location /echo/ {
        return 200 "$http_h1 $http_h17 $http_h18 $http_h19 $http_h20 $http_h21 $http_h22 $http_h23 $http_h30 [$http_x_ai_gateway_a$http_x_ai_gateway_b$http_x_ai_gateway_c$http_x_ai_gateway_d]\n";
    }
--- request
GET /v1/models
--- more_headers eval
my @h = ("Authorization: Bearer sk-alpha-1", "X-AI-Gateway-A: 1");
push @h, "H$_: v$_" for 1 .. 30;
splice @h, 19, 0, "X-AI-Gateway-B: 1";   # last slot of the first part (20 per part)
splice @h, 20, 0, "X-AI-Gateway-C: 1";   # first slot of the second part
push @h, "X-AI-Gateway-D: 1";            # the very last header
my $text = ""; $text .= "$_\n" for @h; $text
--- error_code: 200
--- response_body
v1 v17 v18 v19 v20 v21 v22 v23 v30 []
