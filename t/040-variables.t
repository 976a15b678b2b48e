# $ai_gateway_* variables in log_format, add_header and proxy_set_header.
use lib 't/lib';
use Test::AIGateway 'no_plan';

run_tests();

__DATA__

=== TEST 1: every variable in an access log line (written to the error log to be checked)
--- http_config
    log_format gw 'gwlog ns=$ai_gateway_namespace name="$ai_gateway_namespace_name" '
                  'key=$ai_gateway_key_id via=$ai_gateway_identified_by '
                  'model=$ai_gateway_model stream=$ai_gateway_stream '
                  'max=$ai_gateway_max_tokens body=$ai_gateway_body_bytes '
                  'decision=$ai_gateway_decision reason=$ai_gateway_reason';
--- config
    location /v1/ {
        ai_gateway on;
        access_log logs/error.log gw;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
POST /v1/chat/completions
{"model":"mock-gpt","stream":true,"max_completion_tokens":7,"messages":[]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 200
--- wait: 0.2
--- error_log
gwlog ns=alpha name="Team Alpha" key=f5e48d15f875 via=key model=mock-gpt stream=true max=7 body=74 decision=allowed reason=-



=== TEST 2: a rejected request logs its reason, the key id of the unknown key, never the key
--- http_config
    log_format gw 'gwlog ns=$ai_gateway_namespace key=$ai_gateway_key_id '
                  'decision=$ai_gateway_decision reason=$ai_gateway_reason';
--- config
    location /v1/ {
        ai_gateway on;
        access_log logs/error.log gw;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
GET /v1/models
--- more_headers
Authorization: Bearer sk-nobody
--- error_code: 401
--- wait: 0.2
--- error_log
gwlog ns=- key=2e056850a435 decision=rejected reason=invalid_api_key
--- no_error_log
sk-nobody
[error]



=== TEST 3: a request nginx refused before the gateway decided (413)
--- http_config
    log_format gw 'gwlog decision=$ai_gateway_decision reason=$ai_gateway_reason';
--- config
    location /v1/ {
        client_max_body_size 10;
        ai_gateway on;
        access_log logs/error.log gw;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
POST /v1/chat/completions
{"model":"mock-gpt","messages":[]}
--- error_code: 413
--- wait: 0.2
--- error_log
gwlog decision=rejected reason=request_too_large
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 4: variables are empty ("-") outside gateway locations
--- http_config
    log_format gw 'gwlog ns=$ai_gateway_namespace decision=$ai_gateway_decision';
--- config
    location /plain/ {
        access_log logs/error.log gw;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1/;
    }
--- request
GET /plain/models
--- error_code: 200
--- wait: 0.2
--- error_log
gwlog ns=- decision=-



=== TEST 5: variables in proxy_set_header reach the provider
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo/;
        proxy_set_header X-AI-Gateway-Namespace $ai_gateway_namespace;
        proxy_set_header X-AI-Gateway-Model $ai_gateway_model;
        proxy_set_header X-AI-Gateway-Key-Id $ai_gateway_key_id;
    }
    location /echo/ {
        return 200 "$http_x_ai_gateway_namespace $http_x_ai_gateway_model $http_x_ai_gateway_key_id\n";
    }
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
x-api-key: sk-beta-1
--- error_code: 200
--- response_body
beta gpt-4o 1d2df9ceab14



=== TEST 6: a namespace found by a matcher has no key id
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
        add_header X-NS $ai_gateway_namespace;
        add_header X-Key "[$ai_gateway_key_id]";
        add_header X-Decision $ai_gateway_decision;
    }
--- request
GET /v1/models
--- more_headers
X-Team: beta
--- error_code: 200
--- response_headers
X-NS: beta
X-Key: []
X-Decision: allowed
