# Prometheus metrics: known traffic gives exact counter values, histogram buckets, labels,
# the series cap with its overflow series, upstream attempts and failovers, and the
# exposition's own rules (content type, methods, what is not counted). Two workers share the
# zone, so every count below is the sum over both. Concurrency, in-flight, client aborts,
# reload survival and promtool are in 061-metrics-workers.t.
use lib 't/lib';
use Test::AIGateway 'no_plan';

master_on();
workers(2);

# A regex matching a body that contains each of @lines as a whole line.
sub has_lines {
    my $re = join '', map { '(?=[\s\S]*^' . quotemeta($_) . '$)' } @_;
    return qr/\A$re/m;
}

# The body of a chat request for `$model`.
sub chat { return qq{POST /v1/chat/completions\n{"model":"$_[0]","messages":[{"role":"user","content":"hi"}]}} }

our $mock = "127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}";

run_tests();

__DATA__

=== TEST 1: the exposition before any traffic
--- http_config
    ai_gateway_metrics_zone gw_metrics 1m;
--- config
    location = /metrics {
        ai_gateway_metrics;
    }
--- request
GET /metrics
--- response_headers
Content-Type: text/plain; version=0.0.4; charset=utf-8
--- response_body_like eval
::has_lines(
    '# TYPE gateway_requests_total counter',
    '# TYPE gateway_request_duration_seconds histogram',
    '# TYPE gateway_upstream_requests_total counter',
    'gateway_overhead_seconds_count 0',
    'gateway_metrics_series 0',
    'gateway_metrics_series_dropped_total 0',
)
--- response_body_unlike: gateway_requests_total\{



=== TEST 2: requests counted by namespace, model and status across both workers
--- http_config
    ai_gateway_metrics_zone gw_metrics 1m;
--- config eval: $::gateway_location . '    location = /metrics { ai_gateway_metrics; }'
--- request eval
[ ::chat("gpt-4o"), ::chat("gpt-4o"), ::chat("gpt-4o"), ::chat("m2"), ::chat("gpt-4o"),
  "POST /v1/chat/completions\n{\"model\":", "GET /metrics" ]
--- more_headers eval
[ "Authorization: Bearer sk-alpha-1", "Authorization: Bearer sk-alpha-2",
  "x-api-key: sk-alpha-1", "Authorization: Bearer sk-beta-1", "", "Authorization: Bearer sk-alpha-1", "" ]
--- error_code eval
[200, 200, 200, 200, 401, 400, 200]
--- response_body_like eval
[ qr/chat\.completion/, qr/chat\.completion/, qr/chat\.completion/, qr/chat\.completion/,
  qr/missing_api_key/, qr/invalid_json/,
  ::has_lines(
    'gateway_requests_total{namespace="alpha",model="gpt-4o",code="200"} 3',
    'gateway_requests_total{namespace="beta",model="m2",code="200"} 1',
    'gateway_requests_total{namespace="",model="",code="401"} 1',
    'gateway_requests_total{namespace="alpha",model="",code="400"} 1',
    'gateway_requests_success_total{namespace="alpha",model="gpt-4o"} 3',
    'gateway_requests_failed_total{namespace="alpha",model="gpt-4o"} 0',
    'gateway_requests_failed_total{namespace="alpha",model=""} 1',
    'gateway_requests_failed_total{namespace="",model=""} 1',
    'gateway_request_duration_seconds_count{namespace="alpha",model="gpt-4o"} 3',
    'gateway_request_duration_seconds_bucket{namespace="alpha",model="gpt-4o",le="+Inf"} 3',
    'gateway_rejections_total{namespace="",reason="missing_api_key"} 1',
    'gateway_rejections_total{namespace="alpha",reason="invalid_json"} 1',
    qq{gateway_upstream_requests_total{upstream="$::mock",code="200"} 4},
    qq{gateway_upstream_duration_seconds_count{upstream="$::mock"} 4},
    qq{gateway_upstream_failovers_total{upstream="$::mock"} 0},
    'gateway_requests_in_flight{namespace="alpha"} 0',
    'gateway_requests_in_flight{namespace="beta"} 0',
    'gateway_requests_in_flight{namespace=""} 0',
    'gateway_overhead_seconds_count 6',
    'gateway_metrics_series 10',
  ) ]



=== TEST 3: durations land in the right histogram buckets
--- http_config
    ai_gateway_metrics_zone gw_metrics 1m;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / { ai_gateway_mock_provider latency=300ms; }
    }
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location = /metrics { ai_gateway_metrics; }
--- request eval
[ ::chat("slow"), ::chat("slow"), "GET /metrics" ]
--- more_headers eval
[ "Authorization: Bearer sk-beta-1", "Authorization: Bearer sk-beta-1", "" ]
--- response_body_like eval
[ qr/chat\.completion/, qr/chat\.completion/,
  ::has_lines(
    'gateway_request_duration_seconds_bucket{namespace="beta",model="slow",le="0.005"} 0',
    'gateway_request_duration_seconds_bucket{namespace="beta",model="slow",le="0.25"} 0',
    'gateway_request_duration_seconds_bucket{namespace="beta",model="slow",le="0.5"} 2',
    'gateway_request_duration_seconds_bucket{namespace="beta",model="slow",le="300"} 2',
    'gateway_request_duration_seconds_bucket{namespace="beta",model="slow",le="+Inf"} 2',
    'gateway_request_duration_seconds_count{namespace="beta",model="slow"} 2',
  ) ]
--- response_body_unlike eval
[ qr/^$/, qr/^$/, qr/gateway_request_duration_seconds_sum\{namespace="beta",model="slow"\} 0\.[0-5]\d*\n/ ]



=== TEST 4: upstream durations and the sum of request durations
--- http_config
    ai_gateway_metrics_zone gw_metrics 1m;
    upstream slow_provider {
        server 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / { ai_gateway_mock_provider latency=300ms; }
    }
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://slow_provider;
    }
    location = /metrics { ai_gateway_metrics; }
--- request eval
[ ::chat("slow"), "GET /metrics" ]
--- more_headers eval
[ "Authorization: Bearer sk-beta-1", "" ]
--- response_body_like eval
[ qr/chat\.completion/,
  qr/(?=[\s\S]*^gateway_upstream_duration_seconds_bucket\{upstream="slow_provider",le="0\.25"\} 0$)(?=[\s\S]*^gateway_upstream_duration_seconds_bucket\{upstream="slow_provider",le="0\.5"\} 1$)(?=[\s\S]*^gateway_upstream_duration_seconds_sum\{upstream="slow_provider"\} 0\.(?:[3-4]\d*)$)(?=[\s\S]*^gateway_request_duration_seconds_sum\{namespace="beta",model="slow"\} 0\.(?:[3-4]\d*)$)(?=[\s\S]*^gateway_upstream_requests_total\{upstream="slow_provider",code="200"\} 1$)/m ]



=== TEST 5: the series cap folds new series into overflow series and counts them
--- http_config
    ai_gateway_metrics_zone gw_metrics 1m max_series=4;
--- config eval: $::gateway_location . '    location = /metrics { ai_gateway_metrics; }'
--- request eval
[ (map { ::chat($_) } qw(a b c d e f)), "GET /metrics" ]
--- more_headers eval
[ ("Authorization: Bearer sk-alpha-1") x 6, "" ]
--- response_body_like eval
[ (qr/chat\.completion/) x 6,
  ::has_lines(
    'gateway_requests_total{namespace="alpha",model="a",code="200"} 1',
    'gateway_requests_total{namespace="alpha",model="b",code="200"} 1',
    'gateway_requests_total{namespace="_overflow",model="_overflow",code="2xx"} 4',
    'gateway_requests_success_total{namespace="_overflow",model="_overflow"} 4',
    'gateway_request_duration_seconds_count{namespace="_overflow",model="_overflow"} 4',
    'gateway_metrics_series 4',
    'gateway_metrics_series_max 4',
    'gateway_metrics_series_dropped_total 4',
  ) ]
--- response_body_unlike eval
[ (qr/^$/) x 6, qr/model="c"/ ]



=== TEST 6: an upstream that refuses connections: attempts, codes and failovers
--- http_config
    ai_gateway_metrics_zone gw_metrics 1m;
    upstream flaky {
        server 127.0.0.1:1 max_fails=0;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT backup;
    }
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://flaky;
    }
    location = /metrics { ai_gateway_metrics; }
--- request eval
[ ::chat("m"), ::chat("m"), "GET /metrics" ]
--- more_headers eval
[ "Authorization: Bearer sk-alpha-1", "Authorization: Bearer sk-beta-1", "" ]
--- response_body_like eval
[ qr/chat\.completion/, qr/chat\.completion/,
  ::has_lines(
    'gateway_upstream_requests_total{upstream="flaky",code="200"} 2',
    'gateway_upstream_requests_total{upstream="flaky",code="502"} 2',
    'gateway_upstream_failovers_total{upstream="flaky"} 2',
    'gateway_upstream_duration_seconds_count{upstream="flaky"} 4',
    'gateway_requests_total{namespace="alpha",model="m",code="200"} 1',
    'gateway_requests_total{namespace="beta",model="m",code="200"} 1',
  ) ]
--- no_error_log
[alert]
[emerg]
[crit]



=== TEST 7: a request sent on by error_page is counted once, with its namespace
--- http_config
    ai_gateway_metrics_zone gw_metrics 1m;
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:1;
        error_page 502 = @fallback;
    }
    location @fallback {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
        add_header X-NS $ai_gateway_namespace always;
    }
    location = /metrics { ai_gateway_metrics; }
--- request eval
[ ::chat("m"), "GET /metrics" ]
--- more_headers eval
[ "Authorization: Bearer sk-alpha-1", "" ]
--- response_headers eval
[ "X-NS: alpha", "" ]
--- response_body_like eval
[ qr/chat\.completion/,
  ::has_lines(
    'gateway_requests_total{namespace="alpha",model="m",code="200"} 1',
    'gateway_upstream_requests_total{upstream="127.0.0.1:1",code="502"} 1',
    'gateway_upstream_failovers_total{upstream="127.0.0.1:1"} 1',
    qq{gateway_upstream_requests_total{upstream="$::mock",code="200"} 1},
    'gateway_overhead_seconds_count 1',
  ) ]
--- no_error_log
[alert]
[emerg]
[crit]



=== TEST 8: only gateway locations are counted
--- http_config
    ai_gateway_metrics_zone gw_metrics 1m;
--- config
    location /plain/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1/;
    }
    location = /metrics { ai_gateway_metrics; }
--- request eval
[ "GET /plain/models", "GET /metrics", "GET /metrics" ]
--- response_body_like eval
[ qr/"object":"list"/, qr/gateway_metrics_series 0\n/, qr/gateway_metrics_series 0\n/ ]



=== TEST 9: the exposition answers GET and HEAD only
--- http_config
    ai_gateway_metrics_zone gw_metrics 1m;
--- config
    location = /metrics { ai_gateway_metrics; }
--- request eval
[ "POST /metrics\nx", "HEAD /metrics" ]
--- error_code eval
[ 405, 200 ]
--- response_body eval
[ qr/405 Not Allowed/, "" ]



=== TEST 10: ai_gateway_metrics needs a zone
--- config
    location = /metrics { ai_gateway_metrics; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway_metrics" is used but no "ai_gateway_metrics_zone" is set in the http block/



=== TEST 11: a zone below 8 pages
--- http_config
    ai_gateway_metrics_zone gw_metrics 16k;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*zone "gw_metrics" is too small/



=== TEST 12: max_series above what the zone holds
--- http_config
    ai_gateway_metrics_zone gw_metrics 64k max_series=100000;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_metrics_zone "gw_metrics" holds at most \d+ series, max_series=100000 is too large/



=== TEST 13: bad arguments
--- http_config
    ai_gateway_metrics_zone gw_metrics 1m max_series=0;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid parameter "max_series=0"/



=== TEST 14: one metrics zone per http block
--- http_config
    ai_gateway_metrics_zone a 1m;
    ai_gateway_metrics_zone b 1m;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway_metrics_zone" directive is duplicate/



=== TEST 15: a bad size
--- http_config
    ai_gateway_metrics_zone gw_metrics lots;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid zone size "lots"/



=== TEST 16: the exposition is served without a key where ai_gateway is on for the server
--- http_config
    ai_gateway_metrics_zone gw_metrics 1m;
--- config
    ai_gateway on;
    location = /metrics { ai_gateway_metrics; }
    location /v1/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
[ ::chat("m"), "GET /metrics" ]
--- error_code eval
[ 401, 200 ]
--- response_body_like eval
[ qr/missing_api_key/,
  ::has_lines('gateway_requests_total{namespace="",model="",code="401"} 1', 'gateway_metrics_series 3') ]
