# Self-test of t/lib/compat: several requests per block, pipelining, requests sent as
# packets, SKIP/LAST and skip_eval.
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: an array of requests wants arrays of expectations
--- config
    location = /a { return 200 "a\n"; }
--- request eval
["GET /a", "GET /nothing-here"]
--- error_code eval
[200, 404]
--- response_body_like eval
["^a\$", "404 Not Found"]
--- no_error_log
[alert]



=== TEST 2: pipelined requests share one connection
--- config
    location = /a { return 200 "a\n"; }
    location = /b { return 200 "$http_connection\n"; }
--- pipelined_requests eval
["GET /a", "GET /b"]
--- response_body eval
["a\n", "close\n"]
--- no_error_log
[error]



=== TEST 3: a request as packets, cut inside the request line and inside the body
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_set_header Host up;
    }
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
"HTTP/1.0 200 OK\r\n\r\nok\n"
--- request eval
[["POST /", "t\n hello", " world"]]
--- raw_request_middle_delay: 0.1
--- tcp_query eval
"POST /t HTTP/1.0\r\nHost: up\r\nConnection: close\r\nContent-Length: 11\r\n\r\nhello world"
--- response_body
ok



=== TEST 4: a skipped block is not run
--- SKIP
--- config
    location = /t { return 500; }
--- request
GET /t
--- response_body
never



=== TEST 5: skip_eval skips the given number of tests
--- skip_eval: 2: 1
--- config
    location = /t { return 500; }
--- request
GET /t
--- response_body
never



=== TEST 6: the last block run
--- LAST
--- config
    location = /t { return 200 "last\n"; }
--- request
GET /t
--- response_body
last



=== TEST 7: after LAST: never run
--- config
    location = /t { return 500; }
--- request
GET /t
--- response_body
never
