# Self-test of t/lib/compat: the fake upstream (tcp_listen/tcp_reply/tcp_query) and
# requests sent in pieces.
use Test::Nginx::Socket 'no_plan';
use Time::HiRes qw(time);

no_shuffle();

# The pieces of TEST 2 really are sent apart: that block takes at least the delay.
my %started;
add_block_preprocessor(sub { $started{ $_[0]->seq_num } = time });
add_test_cleanup_handler(sub {
    my $block = shift;
    return unless $block->name =~ /TEST 2:/;
    cmp_ok(time - $started{ $block->seq_num }, '>=', 0.5, $block->name . ' - took the delay');
});

run_tests();

__DATA__

=== TEST 1: tcp_query is exactly what nginx forwarded; tcp_reply is what it got back
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/up;
        proxy_set_header Host upstream.test;
    }
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nX-Up: 1\r\n\r\nfrom upstream\n"
--- request
POST /t
{"model":"x"}
--- tcp_query eval
"POST /up HTTP/1.0\r
Host: upstream.test\r
Connection: close\r
Content-Length: 13\r
\r
{\"model\":\"x\"}"
--- response_headers
X-Up: 1
--- response_body
from upstream
--- no_error_log
[error]



=== TEST 2: a chunked request body sent in two pieces 0.5s apart reaches the upstream whole
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_set_header Host upstream.test;
    }
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
--- raw_request eval
["POST /t HTTP/1.1\r
Host: localhost\r
Connection: close\r
Transfer-Encoding: chunked\r
\r
5\r
hello\r
",
"6\r
 world\r
0\r
\r
"]
--- raw_request_middle_delay: 0.5
--- tcp_query eval
"POST /t HTTP/1.0\r
Host: upstream.test\r
Connection: close\r
Content-Length: 11\r
\r
hello world"
--- response_body
ok



=== TEST 3: a chunked response is decoded; tcp_query_len counts the bytes received
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_http_version 1.1;
        proxy_set_header Host up;
        proxy_set_header Connection "";
    }
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
--- raw_request eval
"GET /t HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
--- tcp_query_len: 29
--- response_headers
Transfer-Encoding: chunked
--- response_body chomp
hello world



=== TEST 4: tcp_reply as code (gets the query) and as an array of pieces
--- config
    location = /code {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
sub {
    my $query = shift;
    my ($line) = $query =~ /^(\S+ \S+)/;
    return ["HTTP/1.0 200 OK\r\n\r\n", "got [$line]\n"];
}
--- request
GET /code
--- response_body
got [GET /code]



=== TEST 5: an upstream that never answers; the client gives up (abort) after --- timeout
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_read_timeout 10s;
    }
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply:
--- tcp_no_close
--- request
GET /t
--- timeout: 500ms
--- abort
--- ignore_response
--- no_error_log
[alert]



=== TEST 6: tcp_listen on a unix domain socket
--- config
    location = /t {
        proxy_pass http://unix:$TEST_NGINX_SERVER_ROOT/logs/up.sock:/unix;
    }
--- tcp_listen: $TEST_NGINX_SERVER_ROOT/logs/up.sock
--- tcp_reply eval
"HTTP/1.0 200 OK\r\n\r\nvia unix\n"
--- request
GET /t
--- tcp_query eval
"GET /unix HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
--- response_body
via unix
