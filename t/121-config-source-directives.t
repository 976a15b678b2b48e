# The directives of the Redis configuration source: nginx -t refuses what cannot work and
# says why; the status handler answers without Redis; an unusable last-known-good file is
# skipped with a warning (the config file is served). The running source is in t/120.
use lib 't/lib';
use Test::AIGateway 'no_plan';

run_tests();

__DATA__

=== TEST 1: ai_gateway_redis needs a redis:// or rediss:// URL
--- http_config
    ai_gateway_redis http://127.0.0.1:6379;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_redis: the URL must start with redis:\/\/ or rediss:\/\//



=== TEST 2: ai_gateway_redis refuses unknown parameters
--- http_config
    ai_gateway_redis redis://127.0.0.1:6379 prefx=a;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_redis: invalid parameter "prefx=a"/



=== TEST 3: ai_gateway_redis refuses a bad timeout
--- http_config
    ai_gateway_redis redis://127.0.0.1:6379 timeout=soon;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_redis: invalid timeout "soon"/



=== TEST 4: a password file that cannot be read
--- http_config
    ai_gateway_redis redis://127.0.0.1:6379 password_file=/nonexistent/pw;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_redis: cannot read "\/nonexistent\/pw": No such file or directory/



=== TEST 5: ai_gateway_redis twice
--- http_config
    ai_gateway_redis redis://127.0.0.1:6379;
    ai_gateway_redis redis://127.0.0.1:6379;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway_redis" directive is duplicate/



=== TEST 6: the Redis source needs ai_gateway_redis
--- http_config
    ai_gateway_config_source redis;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway_config_source redis" needs "ai_gateway_redis" in the http block/



=== TEST 7: only the redis source exists
--- http_config
    ai_gateway_redis redis://127.0.0.1:6379;
    ai_gateway_config_source etcd;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_config_source: unknown source "etcd" \(only "redis"\)/



=== TEST 8: a bad poll interval
--- http_config
    ai_gateway_redis redis://127.0.0.1:6379;
    ai_gateway_config_source redis poll=0;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_config_source: invalid parameter "poll=0"/



=== TEST 9: the Redis source needs the config file (served until Redis answers)
--- no_gateway_config: 1
--- http_config
    ai_gateway_redis redis://127.0.0.1:6379;
    ai_gateway_config_source redis;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway_config_source" needs "ai_gateway_config"/



=== TEST 10: the status handler without a Redis source: the file's snapshot
--- config
    location = /status {
        ai_gateway_config_status;
    }
--- request
GET /status
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body_like: "applied":\{"epoch":"","label":"t-1","sha256":"[0-9a-f]{64}","source":"file","version":0\}.*"published":null,"source":"file"



=== TEST 11: the status handler takes GET and HEAD only
--- config
    location = /status {
        ai_gateway_config_status;
    }
--- request
POST /status
x
--- error_code: 405



=== TEST 12: an unusable last-known-good file is skipped with a warning: the file is served
--- http_config
    ai_gateway_redis redis://127.0.0.1:1 timeout=100ms;
    ai_gateway_config_source redis lkg=html/lkg.json node=t121;
--- user_files
>>> lkg.json
{"version":3,"sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","epoch":"e"}
{"namespaces": []}
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
X-NS: alpha
--- error_log eval
qr/\[warn\] .*ai_gateway: the last-known-good file ".*lkg\.json" is not usable \(snapshot 3 has sha256 [0-9a-f]{64}, the head says a{64}\); starting from/
