# Routing to provider targets (t/fixtures/routing.json) through one `upstream {}` block with
# `ai_gateway_upstream` and `keepalive`: weights, each provider type's credential header
# (the client's key never reaches a provider), the upstream URI (base path, rewrite, Azure's
# api-version, query kept), Host, connection reuse, per-namespace routes, no route (404),
# the routing variables, and config errors. The "providers" are nginx servers that echo what
# they received; one of them speaks TLS with a certificate made for the run.
use lib 't/lib';
use Test::AIGateway 'no_plan';

repeat_each(1);

# a self-signed certificate for "localhost", made for this run
$ENV{TEST_NGINX_TLS_DIR} = "$ENV{TEST_NGINX_ROOT}/t/servroot-tls";
mkdir $ENV{TEST_NGINX_TLS_DIR};
system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
       . "-addext subjectAltName=DNS:localhost -keyout $ENV{TEST_NGINX_TLS_DIR}/key.pem "
       . "-out $ENV{TEST_NGINX_TLS_DIR}/cert.pem 2>/dev/null") == 0
    or die "openssl could not make a test certificate\n";

our $echo = 'return 200 "port=$server_port host=$http_host uri=$request_uri auth=$http_authorization api-key=$http_api_key x-api-key=$http_x_api_key version=$http_anthropic_version conn=$connection_requests\n";';

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
    ai_gateway_config \$TEST_NGINX_FIXTURES/routing.json;
    upstream ai_gateway_targets {
        ai_gateway_upstream;
        keepalive 8;
    }
    server {
        listen 127.0.0.1:1990;
        listen 127.0.0.1:1991;
        listen 127.0.0.1:1992;
        listen 127.0.0.1:1993;
        location / { $main::echo }
    }
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location /v1/ {
        ai_gateway on;
        include $TEST_NGINX_ROOT/nginx-conf/ai_gateway_proxy.conf;
        add_header X-Route $ai_gateway_route always;
        add_header X-Target $ai_gateway_target always;
        add_header X-Attempts $ai_gateway_attempts always;
        add_header X-Reason $ai_gateway_reason always;
    }
_EOC_
    }
});

# a key with a line break in it, for TEST 9d (nginx inherits the environment)
$ENV{AI_GATEWAY_TEST_KEY_WITH_NEWLINE} = "sk-new-key\nsk-old-rotated-key";

run_tests();

__DATA__

=== TEST 1: weights 3:1, spread within each cycle; OpenAI and Azure credentials, URIs and Host
--- request eval
[map { "POST /v1/chat/completions?trace=$_\n{\"model\":\"gpt-4o\",\"messages\":[]}" } 1 .. 8]
--- more_headers
Authorization: Bearer sk-route-a
--- error_code eval
[(200) x 8]
--- response_body eval
["port=1990 host=127.0.0.1:1990 uri=/v1/chat/completions?trace=1 auth=Bearer sk-provider-one api-key= x-api-key= version= conn=1\n",
 "port=1990 host=127.0.0.1:1990 uri=/v1/chat/completions?trace=2 auth=Bearer sk-provider-one api-key= x-api-key= version= conn=2\n",
 "port=1991 host=localhost:1991 uri=/openai/deployments/gpt-4o/chat/completions?trace=3&api-version=2024-10-21 auth= api-key=azure-key-two x-api-key= version= conn=1\n",
 "port=1990 host=127.0.0.1:1990 uri=/v1/chat/completions?trace=4 auth=Bearer sk-provider-one api-key= x-api-key= version= conn=3\n",
 "port=1990 host=127.0.0.1:1990 uri=/v1/chat/completions?trace=5 auth=Bearer sk-provider-one api-key= x-api-key= version= conn=4\n",
 "port=1990 host=127.0.0.1:1990 uri=/v1/chat/completions?trace=6 auth=Bearer sk-provider-one api-key= x-api-key= version= conn=5\n",
 "port=1991 host=localhost:1991 uri=/openai/deployments/gpt-4o/chat/completions?trace=7&api-version=2024-10-21 auth= api-key=azure-key-two x-api-key= version= conn=2\n",
 "port=1990 host=127.0.0.1:1990 uri=/v1/chat/completions?trace=8 auth=Bearer sk-provider-one api-key= x-api-key= version= conn=6\n"]
--- response_headers eval
["X-Route: gpt\nX-Target: p1\nX-Attempts: 1", "X-Target: p1", "X-Target: p2", "X-Target: p1",
 "X-Target: p1", "X-Target: p1", "X-Target: p2", "X-Target: p1"]



=== TEST 2: Anthropic: x-api-key and a default anthropic-version; the path rewritten; the client's key is not forwarded
--- request eval
["POST /v1/messages\n{\"model\":\"claude-sonnet-4\",\"max_tokens\":5,\"messages\":[]}",
 "POST /v1/messages?beta=true\n{\"model\":\"claude-sonnet-4\",\"max_tokens\":5,\"messages\":[]}"]
--- more_headers eval
["x-api-key: sk-route-a", "x-api-key: sk-route-a\nanthropic-version: 2024-01-01"]
--- response_body eval
["port=1992 host=127.0.0.1:1992 uri=/v1/messages auth= api-key= x-api-key=anthropic-key-three version=2023-06-01 conn=1\n",
 "port=1992 host=127.0.0.1:1992 uri=/v1/messages?beta=true auth= api-key= x-api-key=anthropic-key-three version=2024-01-01 conn=2\n"]
--- no_error_log
sk-route-a
anthropic-key-three
[error]



=== TEST 3: a route for one namespace; a target without a credential sends none
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-route-b
--- response_body
port=1993 host=127.0.0.1:1993 uri=/api/chat/completions auth= api-key= x-api-key= version= conn=1
--- response_headers
X-Route: team-b-local
X-Target: local



=== TEST 4: no route for the model: 404 model_not_found
--- request
POST /v1/chat/completions
{"model":"llama-3","messages":[]}
--- more_headers
Authorization: Bearer sk-route-a
--- error_code: 404
--- response_headers
X-Reason: model_not_found
X-Target:
--- response_body
{"error":{"message":"The requested model does not exist or this gateway has no route to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}



=== TEST 5: connections to a provider are reused: 20 requests, one connection
--- request eval
[map { "POST /v1/messages\n{\"model\":\"claude-x\",\"max_tokens\":5,\"messages\":[]}" } 1 .. 20]
--- more_headers
x-api-key: sk-route-a
--- response_body_like eval
[map { qr/ conn=$_\n\z/ } 1 .. 20]



=== TEST 6: without keepalive in the upstream block, a new connection per request
--- http_config
    ai_gateway_config $TEST_NGINX_FIXTURES/routing.json;
    upstream ai_gateway_targets {
        ai_gateway_upstream;
    }
    server {
        listen 127.0.0.1:1992;
        location / { return 200 "conn=$connection_requests\n"; }
    }
--- request eval
[map { "POST /v1/messages\n{\"model\":\"claude-x\",\"max_tokens\":5,\"messages\":[]}" } 1 .. 3]
--- more_headers
x-api-key: sk-route-a
--- response_body eval
["conn=1\n", "conn=1\n", "conn=1\n"]



=== TEST 7: a credential from a missing environment variable stops nginx -t
--- http_config
    ai_gateway_config ../html/gw.json;
    upstream ai_gateway_targets { ai_gateway_upstream; }
--- user_files
>>> gw.json
{"targets": [{"name": "x", "provider": "openai", "base_url": "http://127.0.0.1:1990",
  "credential": {"env": "AI_GATEWAY_TEST_UNSET_VARIABLE"}}],
 "routes": [{"targets": ["x"]}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway: invalid config ".*gw\.json": targets\[0\]\.credential\.env: environment variable "AI_GATEWAY_TEST_UNSET_VARIABLE" is not set/



=== TEST 8: an unknown target in a route stops nginx -t
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files
>>> gw.json
{"targets": [{"name": "x", "provider": "openai", "base_url": "http://127.0.0.1:1990"}],
 "routes": [{"targets": ["y"]}]}
--- config
--- must_die
--- error_log eval
qr/routes\[0\]\.targets\[0\]: unknown target "y"/



=== TEST 9: a credential from a file (its one trailing line break is not part of the key)
--- http_config
    ai_gateway_config ../html/gw.json;
    upstream ai_gateway_targets { ai_gateway_upstream; }
    server {
        listen 127.0.0.1:1990;
        location / { return 200 "auth=[$http_authorization]\n"; }
    }
--- user_files eval
[["gw.json" => '{"namespaces": [{"code": "a", "api_keys": ["033d461ba69fa00769695b91ef3d9187416084607a52805d6ca51f0665bd4fcb"]}],
 "targets": [{"name": "x", "provider": "openai", "base_url": "http://127.0.0.1:1990",
  "credential": {"file": "key.txt"}}],
 "routes": [{"targets": ["x"]}]}'],
 ["key.txt" => "sk-from-a-file\r\n"]]
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- more_headers
Authorization: Bearer sk-route-a
--- response_body
auth=[Bearer sk-from-a-file]



=== TEST 9b: an inline credential with CR/LF stops nginx -t (the value is not logged)
--- http_config
    ai_gateway_config ../html/gw.json;
    upstream ai_gateway_targets { ai_gateway_upstream; }
--- user_files
>>> gw.json
{"targets": [{"name": "x", "provider": "openai", "base_url": "http://127.0.0.1:1990",
  "credential": {"value": "sk-inline\r\nX-Injected: 1"}}],
 "routes": [{"targets": ["x"]}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway: invalid config ".*gw\.json": targets\[0\]\.credential\.value: the key has a line break \(one value, one line\)/
--- no_error_log
X-Injected
sk-inline



=== TEST 9c: a credential file with two lines (a new key above an old one) stops nginx -t
--- http_config
    ai_gateway_config ../html/gw.json;
    upstream ai_gateway_targets { ai_gateway_upstream; }
--- user_files eval
[["gw.json" => '{"targets": [{"name": "x", "provider": "openai", "base_url": "http://127.0.0.1:1990",
  "credential": {"file": "key.txt"}}], "routes": [{"targets": ["x"]}]}'],
 ["key.txt" => "sk-new-key\nsk-old-rotated-key\n"]]
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*targets\[0\]\.credential\.file: the key in "key\.txt" has a line break \(one value, one line\) \(one line, at most one line break at its end\)/
--- no_error_log
sk-new-key
sk-old-rotated-key



=== TEST 9d: an environment variable with a line break stops nginx -t
--- http_config
    ai_gateway_config ../html/gw.json;
    upstream ai_gateway_targets { ai_gateway_upstream; }
--- user_files
>>> gw.json
{"targets": [{"name": "x", "provider": "openai", "base_url": "http://127.0.0.1:1990",
  "credential": {"env": "AI_GATEWAY_TEST_KEY_WITH_NEWLINE"}}],
 "routes": [{"targets": ["x"]}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*targets\[0\]\.credential\.env: the key in environment variable "AI_GATEWAY_TEST_KEY_WITH_NEWLINE" has a line break/
--- no_error_log
sk-new-key



=== TEST 9e: a credential file with spaces around the key stops nginx -t
--- http_config
    ai_gateway_config ../html/gw.json;
    upstream ai_gateway_targets { ai_gateway_upstream; }
--- user_files eval
[["gw.json" => '{"targets": [{"name": "x", "provider": "openai", "base_url": "http://127.0.0.1:1990",
  "credential": {"file": "key.txt"}}], "routes": [{"targets": ["x"]}]}'],
 ["key.txt" => "  sk-from-a-file\n"]]
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*targets\[0\]\.credential\.file: the key in "key\.txt" has a space or tab/



=== TEST 9f: other strings that reach headers or the request line: names, api_version, base_url, paths
--- http_config
    ai_gateway_config ../html/gw.json;
    upstream ai_gateway_targets { ai_gateway_upstream; }
--- user_files
>>> gw.json
{"targets": [{"name": "x\r\nX-Evil: 1", "provider": "openai", "base_url": "http://127.0.0.1:1990"}],
 "routes": [{"targets": ["x"]}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*targets\[0\]\.name: must not contain control characters/



=== TEST 10: an https provider: TLS with SNI, the certificate verified against the target's host name, connections reused
--- http_config
    ai_gateway_config ../html/gw.json;
    upstream ai_gateway_targets {
        ai_gateway_upstream;
        keepalive 8;
    }
    server {
        listen 127.0.0.1:1994 ssl;
        server_name localhost;
        ssl_certificate $TEST_NGINX_TLS_DIR/cert.pem;
        ssl_certificate_key $TEST_NGINX_TLS_DIR/key.pem;
        location / {
            return 200 "sni=$ssl_server_name host=$http_host uri=$request_uri auth=$http_authorization conn=$connection_requests\n";
        }
    }
--- config
    location /v1/ {
        ai_gateway on;
        include $TEST_NGINX_ROOT/nginx-conf/ai_gateway_proxy.conf;
        proxy_ssl_verify on;
        proxy_ssl_trusted_certificate $TEST_NGINX_TLS_DIR/cert.pem;
        proxy_ssl_session_reuse on;
    }
--- user_files
>>> gw.json
{"namespaces": [{"code": "a", "api_keys": ["033d461ba69fa00769695b91ef3d9187416084607a52805d6ca51f0665bd4fcb"]}],
 "targets": [{"name": "tls", "provider": "openai", "base_url": "https://localhost:1994/v1",
   "credential": {"value": "sk-over-tls"}}],
 "routes": [{"path_prefix": "/v1/", "targets": ["tls"]}]}
--- request eval
[map { "POST /v1/chat/completions\n{\"model\":\"m\",\"messages\":[]}" } 1 .. 3]
--- more_headers
Authorization: Bearer sk-route-a
--- response_body eval
["sni=localhost host=localhost:1994 uri=/v1/chat/completions auth=Bearer sk-over-tls conn=1\n",
 "sni=localhost host=localhost:1994 uri=/v1/chat/completions auth=Bearer sk-over-tls conn=2\n",
 "sni=localhost host=localhost:1994 uri=/v1/chat/completions auth=Bearer sk-over-tls conn=3\n"]



=== TEST 11: ai_gateway_route without routes in the config stops nginx -t
--- http_config
    ai_gateway_config $TEST_NGINX_FIXTURES/gateway.json;
    upstream ai_gateway_targets { ai_gateway_upstream; }
--- config
    location /v1/ {
        ai_gateway on;
        include $TEST_NGINX_ROOT/nginx-conf/ai_gateway_proxy.conf;
    }
--- must_die
--- error_log
"ai_gateway_route" is on but the gateway config has no "routes"
