# Failover across providers: an upstream attempt that fails before any byte reached the
# client (a retry status, a refused connection, a timeout) is dispatched again to the next
# target, which has its own host, URI and credential; the client sees one answer. When every
# target failed the gateway answers (502/503/504, or 429 with the provider's Retry-After).
use lib 't/lib';
use Test::AIGateway 'no_plan';

repeat_each(1);

add_block_preprocessor(sub {
    my $block = shift;
    my $http = $block->http_config // '';
    if ($http !~ /ai_gateway_config/) {
        $block->set_value("http_config", <<"_EOC_" . $http);
    ai_gateway_config ../html/gw.json;
    upstream ai_gateway_targets {
        ai_gateway_upstream;
        keepalive 8;
    }
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    proxy_read_timeout 500ms;
    location /v1/ {
        ai_gateway on;
        include $TEST_NGINX_ROOT/nginx-conf/ai_gateway_proxy.conf;
        add_header X-Target $ai_gateway_target always;
        add_header X-Attempts $ai_gateway_attempts always;
    }
    location @ai_gateway_failover {
        ai_gateway on;
        include $TEST_NGINX_ROOT/nginx-conf/ai_gateway_proxy.conf;
        add_header X-Target $ai_gateway_target always;
        add_header X-Attempts $ai_gateway_attempts always;
    }
_EOC_
    }
});

# targets: "bad" (first, weight 1000) and "good"; the key sk-route-a identifies namespace a
sub gw {
    my ($bad_url, %opt) = @_;
    my $retry = $opt{retry_on} ? qq{, "retry_on": $opt{retry_on}} : '';
    my $good = $opt{good} // 'http://localhost:1991/openai/deployments/d';
    my $health = $opt{health} // '';
    return qq{{"namespaces": [{"code": "a", "api_keys": ["033d461ba69fa00769695b91ef3d9187416084607a52805d6ca51f0665bd4fcb"]}],
 "targets": [
   {"name": "bad", "provider": "openai", "base_url": "$bad_url", "credential": {"value": "sk-bad-target"}$health},
   {"name": "good", "provider": "azure", "base_url": "$good", "api_version": "2024-10-21", "credential": {"value": "azure-good"}}
 ],
 "routes": [{"name": "r", "path_prefix": "/v1/", "targets": [{"target": "bad", "weight": 1000}, {"target": "good", "weight": 1}]$retry}]}
};
}

run_tests();

__DATA__

=== TEST 1: a 503 from the first target: the request goes to the next, with its own credential and URI
--- http_config
    server {
        listen 127.0.0.1:1990;
        location / { return 503 "busy"; }
    }
    server {
        listen 127.0.0.1:1991;
        location / { return 200 "port=$server_port auth=$http_authorization api-key=$http_api_key uri=$request_uri\n"; }
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1990/v1")
--- request
POST /v1/chat/completions?x=1
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-route-a
--- error_code: 200
--- response_headers
X-Target: good
X-Attempts: 2
--- response_body
port=1991 auth= api-key=azure-good uri=/openai/deployments/d/chat/completions?x=1&api-version=2024-10-21
--- error_log
ai_gateway: target "bad" failed with 503, trying "good" (attempt 2)



=== TEST 2: a 429 moves on too
--- http_config
    server {
        listen 127.0.0.1:1990;
        location / { add_header Retry-After 7 always; return 429 "slow down"; }
    }
    server {
        listen 127.0.0.1:1991;
        location / { return 200 "port=$server_port auth=$http_authorization api-key=$http_api_key uri=$request_uri\n"; }
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1990/v1")
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-route-a
--- response_headers
X-Target: good
X-Attempts: 2
--- response_body_like: ^port=1991 



=== TEST 3: a refused connection moves on
--- http_config
    server {
        listen 127.0.0.1:1991;
        location / { return 200 "port=$server_port auth=$http_authorization api-key=$http_api_key uri=$request_uri\n"; }
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1989/v1")
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-route-a
--- response_headers
X-Target: good
X-Attempts: 2
--- response_body_like: ^port=1991 
--- no_error_log
[alert]
[emerg]
--- error_log
connect() failed (111: Connection refused) while connecting to upstream



=== TEST 4: a timeout moves on
--- http_config
    server {
        listen 127.0.0.1:1990;
        location / { ai_gateway_mock_provider latency=2s; }
    }
    server {
        listen 127.0.0.1:1991;
        location / { return 200 "port=$server_port auth=$http_authorization api-key=$http_api_key uri=$request_uri\n"; }
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1990/v1")
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-route-a
--- response_headers
X-Target: good
X-Attempts: 2
--- response_body_like: ^port=1991 
--- no_error_log
[alert]
[emerg]
--- error_log
upstream timed out (110: Connection timed out) while reading response header from upstream



=== TEST 5: a status the route does not retry on (400) is the answer, from the first target
--- http_config
    server {
        listen 127.0.0.1:1990;
        location / { return 400 '{"error":{"message":"bad","type":"invalid_request_error"}}'; }
    }
    server {
        listen 127.0.0.1:1991;
        location / { return 200 "port=$server_port auth=$http_authorization api-key=$http_api_key uri=$request_uri\n"; }
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1990/v1")
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-route-a
--- error_code: 400
--- response_headers
X-Target: bad
X-Attempts: 1
--- response_body: {"error":{"message":"bad","type":"invalid_request_error"}}



=== TEST 6: retry_on without 503: a 503 is the answer (as JSON, the provider's body being intercepted)
--- http_config
    server {
        listen 127.0.0.1:1990;
        location / { return 503 "busy"; }
    }
    server {
        listen 127.0.0.1:1991;
        location / { return 200 "port=$server_port auth=$http_authorization api-key=$http_api_key uri=$request_uri\n"; }
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1990/v1", retry_on => "[429]")
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-route-a
--- error_code: 503
--- response_headers
X-Attempts: 1
--- response_body
{"error":{"message":"No provider could serve this request (the last answered 503).","type":"server_error","param":null,"code":"all_targets_failed"}}
--- no_error_log
[error]
[alert]



=== TEST 7: every target fails with 429: 429 with the last provider's Retry-After
--- http_config
    server {
        listen 127.0.0.1:1990;
        listen 127.0.0.1:1991;
        location / { add_header Retry-After 7 always; return 429 "slow down"; }
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1990/v1")
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-route-a
--- error_code: 429
--- response_headers
Retry-After: 7
X-Attempts: 2
--- response_body
{"error":{"message":"Every provider for this request is rate limited; please retry later.","type":"server_error","param":null,"code":"all_targets_failed"}}
--- error_log
no target left after 2 attempts



=== TEST 8: every target refuses the connection: 502 all_targets_failed
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1989/v1", good => "http://127.0.0.1:1988/x")
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-route-a
--- error_code: 502
--- response_body_like: "code":"all_targets_failed"
--- no_error_log
[alert]
[emerg]



=== TEST 9: a stream through failover: the body is sent again and the second target's whole stream reaches the client
--- http_config
    server {
        listen 127.0.0.1:1990;
        location / { return 502; }
    }
    server {
        listen 127.0.0.1:1991;
        location / { ai_gateway_mock_provider; }
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1990/v1", good => "http://127.0.0.1:1991/v1")
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"max_tokens":3,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-route-a
--- response_headers
X-Target: good
X-Attempts: 2
--- response_body_like: \A(data: \{[^\n]*\n\n){5}data: \[DONE\]\n\n\z



=== TEST 10: the gateway's own rejections do not fail over
--- http_config
    server {
        listen 127.0.0.1:1991;
        location / { return 200 "port=$server_port auth=$http_authorization api-key=$http_api_key uri=$request_uri\n"; }
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1990/v1")
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-unknown
--- error_code: 401
--- response_body_like: "code":"invalid_api_key"



=== TEST 11: passive health: a target that failed max_failures times cools down, shared through the limit zone; later requests go to the healthy target first
--- http_config
    ai_gateway_config ../html/gw.json;
    ai_gateway_limit_zone limits 64k;
    upstream ai_gateway_targets {
        ai_gateway_upstream;
        keepalive 8;
    }
    server {
        listen 127.0.0.1:1990;
        location / { return 503 "busy"; }
    }
    server {
        listen 127.0.0.1:1991;
        location / { return 200 "port=$server_port\n"; }
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1990/v1", health => ', "max_failures": 2, "cooldown": "60s"')
--- request eval
[map { "POST /v1/chat/completions\n{\"model\":\"gpt-4o\",\"messages\":[]}" } 1 .. 4]
--- more_headers
Authorization: Bearer sk-route-a
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["X-Target: good\nX-Attempts: 2", "X-Target: good\nX-Attempts: 2", "X-Target: good\nX-Attempts: 1", "X-Target: good\nX-Attempts: 1"]



=== TEST 12: a provider's Retry-After starts a cool-down at once, for as long as it asks (logged)
--- http_config
    ai_gateway_config ../html/gw.json;
    ai_gateway_limit_zone limits 64k;
    upstream ai_gateway_targets {
        ai_gateway_upstream;
    }
    server {
        listen 127.0.0.1:1990;
        location / { add_header Retry-After 120 always; return 429 "slow down"; }
    }
    server {
        listen 127.0.0.1:1991;
        location / { return 200 "port=$server_port\n"; }
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1990/v1")
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-route-a
--- response_headers
X-Target: good
X-Attempts: 2
--- error_log
target "bad" cools down for 120 s



=== TEST 13: ... and the next request goes to the other target first
--- http_config
    ai_gateway_config ../html/gw.json;
    ai_gateway_limit_zone limits 64k;
    upstream ai_gateway_targets {
        ai_gateway_upstream;
    }
    server {
        listen 127.0.0.1:1990;
        location / { add_header Retry-After 120 always; return 429 "slow down"; }
    }
    server {
        listen 127.0.0.1:1991;
        location / { return 200 "port=$server_port\n"; }
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1990/v1")
--- request eval
[map { "POST /v1/chat/completions\n{\"model\":\"gpt-4o\",\"messages\":[]}" } 1 .. 2]
--- more_headers
Authorization: Bearer sk-route-a
--- response_headers eval
["X-Target: good\nX-Attempts: 2", "X-Target: good\nX-Attempts: 1"]



=== TEST 14: metrics: each attempt is counted under its target's name, the failed one as a failover
--- http_config
    ai_gateway_config ../html/gw.json;
    ai_gateway_metrics_zone metrics 256k;
    upstream ai_gateway_targets {
        ai_gateway_upstream;
    }
    server {
        listen 127.0.0.1:1990;
        location / { return 503 "busy"; }
    }
    server {
        listen 127.0.0.1:1991;
        location / { return 200 "ok\n"; }
    }
--- config
    location /v1/ {
        ai_gateway on;
        include $TEST_NGINX_ROOT/nginx-conf/ai_gateway_proxy.conf;
    }
    location @ai_gateway_failover {
        ai_gateway on;
        include $TEST_NGINX_ROOT/nginx-conf/ai_gateway_proxy.conf;
    }
    location = /metrics {
        ai_gateway_metrics;
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1990/v1")
--- request eval
["POST /v1/chat/completions\n{\"model\":\"gpt-4o\",\"messages\":[]}", "GET /metrics"]
--- more_headers
Authorization: Bearer sk-route-a
--- response_body_like eval
["^ok\n\\z",
 qr/(?=[\s\S]*\ngateway_upstream_requests_total\{upstream="bad",code="503"\} 1\n)(?=[\s\S]*\ngateway_upstream_requests_total\{upstream="good",code="200"\} 1\n)(?=[\s\S]*\ngateway_upstream_failovers_total\{upstream="bad"\} 1\n)(?=[\s\S]*\ngateway_upstream_failovers_total\{upstream="good"\} 0\n)/]



=== TEST 15: a target's own read timeout (the location's is a minute): the slow target is left after 300 ms
--- http_config
    server {
        listen 127.0.0.1:1990;
        location / { ai_gateway_mock_provider latency=3s; }
    }
    server {
        listen 127.0.0.1:1991;
        location / { return 200 "port=$server_port\n"; }
    }
--- config
    proxy_read_timeout 60s;
    location /v1/ {
        ai_gateway on;
        include $TEST_NGINX_ROOT/nginx-conf/ai_gateway_proxy.conf;
        add_header X-Target $ai_gateway_target always;
        add_header X-Attempts $ai_gateway_attempts always;
    }
    location @ai_gateway_failover {
        ai_gateway on;
        include $TEST_NGINX_ROOT/nginx-conf/ai_gateway_proxy.conf;
        add_header X-Target $ai_gateway_target always;
        add_header X-Attempts $ai_gateway_attempts always;
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1990/v1", health => ', "timeouts": {"read": "300ms"}')
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-route-a
--- timeout: 2
--- response_headers
X-Target: good
X-Attempts: 2
--- response_body
port=1991
--- no_error_log
[alert]
[emerg]
--- error_log
upstream timed out (110: Connection timed out) while reading response header from upstream



=== TEST 16: no retry once the response has begun: a stream that stalls after its first event is cut, not sent again
The client gets a truncated stream (no last chunk), which the runner cannot parse; the log
shows the timeout and no failover.
--- http_config
    server {
        listen 127.0.0.1:1990;
        location / { ai_gateway_mock_provider interval=2s; }
    }
    server {
        listen 127.0.0.1:1991;
        location / { return 200 "port=$server_port\n"; }
    }
--- user_files eval
">>> gw.json\n" . main::gw("http://127.0.0.1:1990/v1", health => ', "timeouts": {"read": "300ms"}')
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-route-a
--- timeout: 3
--- ignore_response
--- no_error_log
[alert]
[emerg]
failed with
trying "good"
--- error_log
upstream timed out (110: Connection timed out) while reading upstream
