# ai_gateway_cluster_limits and the policies' cluster fields: nginx -t refuses what cannot
# work and says why (never repeating a Redis password); a node whose Redis does not answer
# at all still serves, limiting each fail_open policy on its own at the fraction and
# answering 503 limits_unavailable for a fail_closed one. The running cluster limits are in
# t/140 (exact) and t/141 (approximate).
use lib 't/lib';
use Test::AIGateway 'no_plan';

run_tests();

__DATA__

=== TEST 1: ai_gateway_cluster_limits needs ai_gateway_redis
--- http_config
    ai_gateway_limit_zone limits 64k;
    ai_gateway_cluster_limits;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway_cluster_limits" needs "ai_gateway_redis" in the http block/



=== TEST 2: and a limit zone
--- http_config
    ai_gateway_redis redis://:s3cret-pw@127.0.0.1:1 prefix=t142;
    ai_gateway_cluster_limits;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway_cluster_limits" needs "ai_gateway_limit_zone"/
--- no_error_log
s3cret-pw



=== TEST 3: bad parameters are named
--- http_config
    ai_gateway_redis redis://127.0.0.1:1 prefix=t142;
    ai_gateway_limit_zone limits 64k;
    ai_gateway_cluster_limits mode=exact fail_open_fraction=1.5;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_cluster_limits: invalid parameter "fail_open_fraction=1\.5"/



=== TEST 4: an unknown mode
--- http_config
    ai_gateway_redis redis://127.0.0.1:1 prefix=t142;
    ai_gateway_limit_zone limits 64k;
    ai_gateway_cluster_limits mode=approx;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_cluster_limits: invalid parameter "mode=approx"/



=== TEST 5: a lease under a second
--- http_config
    ai_gateway_redis redis://127.0.0.1:1 prefix=t142;
    ai_gateway_limit_zone limits 64k;
    ai_gateway_cluster_limits lease=500ms;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_cluster_limits: invalid parameter "lease=500ms"/



=== TEST 6: twice (the second is not read)
--- http_config
    ai_gateway_redis redis://127.0.0.1:1 prefix=t142;
    ai_gateway_limit_zone limits 64k;
    ai_gateway_cluster_limits;
    ai_gateway_cluster_limits breaker=0;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway_cluster_limits" directive is duplicate/



=== TEST 7: a policy's cluster fields are checked with their JSON path
--- http_config
    ai_gateway_config ../html/gw.json;
    ai_gateway_limit_zone limits 64k;
--- user_files
>>> gw.json
{"namespaces": [{"code": "a", "policies": [{"type": "requests", "limit": 10, "window": "1m", "mode": "cluster"}]}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*namespaces\[0\]\.policies\[0\]\.mode: must be "local", "exact" or "approximate", not "cluster"/



=== TEST 8: only counting policies have a cluster mode
--- http_config
    ai_gateway_config ../html/gw.json;
    ai_gateway_limit_zone limits 64k;
--- user_files
>>> gw.json
{"namespaces": [{"code": "a", "policies": [{"type": "models", "allow": ["m*"], "on_failure": "fail_open"}]}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*namespaces\[0\]\.policies\[0\]\.on_failure: only counting policies .* have a cluster mode/



=== TEST 9: a fraction out of range
--- http_config
    ai_gateway_config ../html/gw.json;
    ai_gateway_limit_zone limits 64k;
--- user_files
>>> gw.json
{"namespaces": [{"code": "a", "policies": [{"type": "requests", "limit": 10, "window": "1m", "fail_open_fraction": 0}]}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*namespaces\[0\]\.policies\[0\]\.fail_open_fraction: must be a number above 0 and at most 1/



=== TEST 10: Redis that is not there: fail_open limits the node at the fraction, fail_closed answers 503 JSON with Retry-After; the password is never logged (the breaker's log line is checked in t/140)
--- http_config
    ai_gateway_config ../html/gw.json;
    ai_gateway_limit_zone limits 64k;
    ai_gateway_redis redis://:s3cret-pw@127.0.0.1:1 prefix=t142 timeout=100ms;
    ai_gateway_cluster_limits timeout=50ms breaker=1 probe=30s;
--- user_files
>>> gw.json
{"namespaces": [
 {"code": "open", "matchers": [{"type": "header", "field": "X-Team", "operator": "equals", "value": "open"}],
  "policies": [{"type": "requests", "limit": 4, "window": "1m"}]},
 {"code": "closed", "matchers": [{"type": "header", "field": "X-Team", "operator": "equals", "value": "closed"}],
  "policies": [{"type": "requests", "limit": 4, "window": "1m", "on_failure": "fail_closed"}]}]}
--- config
    location /v1/ {
        ai_gateway on;
        ai_gateway_mock_provider;
    }
--- request eval
my $b = '{"model":"m","messages":[{"role":"user","content":"hi"}]}';
[map { "POST /v1/chat/completions\n$b" } 1 .. 5]
--- more_headers eval
[("X-Team: open\nContent-Type: application/json") x 4, "X-Team: closed\nContent-Type: application/json"]
--- error_code eval
[200, 200, 429, 429, 503]
--- response_headers_like eval
[undef, undef, "Retry-After: \\d+", "Retry-After: \\d+", "Retry-After: \\d+"]
--- response_body_like eval
[qr/"choices"/, qr/"choices"/, qr/"rate_limit_exceeded"/, qr/"rate_limit_exceeded"/, qr/"code":"limits_unavailable"/]
--- no_error_log
s3cret-pw
[alert]
[emerg]
[crit]
