# Self-test of t/lib/compat: the common sections, used directly with 'no_plan'
# (blocks run shuffled, as upstream's default).
use Test::Nginx::Socket 'no_plan';

run_tests();

__DATA__

=== TEST 1: exact body, status, headers present and absent
--- config
    location = /t {
        add_header X-Seen yes;
        return 200 "hello\n";
    }
--- request
GET /t
--- error_code: 200
--- response_headers
Content-Type: text/plain
x-seen: yes
!X-Absent
--- response_body
hello
--- no_error_log
[error]
[alert]



=== TEST 2: one-line sections, body regex, status regex, chomp
--- config
    location = /t {
        return 201 "created /t";
    }
--- request: GET /t
--- error_code_like: ^20[01]$
--- response_headers_like
Content-Length: \d+
Content-Type: text/.*
--- response_body chomp
created /t



=== TEST 3: response_body_like is matched with /s
--- config
    location = /t {
        return 200 "line one\nline two\n";
    }
--- request
GET /t
--- response_body_like: ^line one.line two$



=== TEST 4: a body gets Content-Length of its trimmed text; more_headers are sent
--- config
    location = /t {
        return 200 "cl=$http_content_length x=$http_x_foo host=$host conn=$http_connection\n";
    }
--- request
POST /t
  hello world  
--- more_headers
X-Foo: bar
# a comment line is skipped
--- response_body
cl=11 x=bar host=localhost conn=close



=== TEST 5: request eval, HTTP/1.0 request line
--- config
    location = /t {
        return 200 "$request_uri $server_protocol\n";
    }
--- request eval
"GET /t?a=" . (1 + 1) . " HTTP/1.0"
--- response_body
/t?a=2 HTTP/1.0



=== TEST 6: user_files land under the html directory, served by the root location
--- config
--- user_files
>>> foo.txt
foo file
>>> sub/bar.html
<p>bar</p>
--- request
GET /sub/bar.html
--- response_headers
Content-Type: text/html
--- response_body
<p>bar</p>



=== TEST 7: error_log with strings and regexes; $TEST_NGINX_* in config
--- config
    location = /port {
        return 200 "$TEST_NGINX_SERVER_PORT\n";
    }
--- request
GET /missing.txt
--- error_code: 404
--- error_log eval
[qr/open\(\) "[^"]+missing\.txt" failed \(2: No such file or directory\)/, "[error]",
 "No such file or directory"]



=== TEST 8: grep_error_log with grep_error_log_out ($TEST_NGINX_SERVER_ROOT expanded there)
--- config
--- request
GET /missing.txt
--- error_code: 404
--- grep_error_log eval
qr/open\(\) "[^"]+" failed/
--- grep_error_log_out
open() "$TEST_NGINX_SERVER_ROOT/html/missing.txt" failed



=== TEST 9: grep_error_log with a plain string
--- config
--- request
GET /missing.txt
--- error_code: 404
--- grep_error_log chop
No such file or directory
--- grep_error_log_out
No such file or directory



=== TEST 10: must_die with an unknown directive; stderr and error.log are checked
--- config
    location = /t {
        bogus_directive on;
    }
--- must_die
--- error_log
unknown directive "bogus_directive"
[emerg]



=== TEST 11: must_die with the expected exit code
--- http_config
    no_such_http_directive;
--- config
--- must_die: 1
--- error_log eval
[qr/\[emerg\] .*no_such_http_directive/, "[emerg]"]



=== TEST 12: raw_request is sent exactly; a Content-Length body is cut there
--- config
    location = /t {
        return 200 "raw $request_method\n";
    }
--- raw_request eval
"GET /t HTTP/1.0\r\nHost: x\r\n\r\n"
--- response_headers
Connection: close
--- response_body
raw GET



=== TEST 13: main_config and http_config, RAND_PORT picked per block
--- main_config
    worker_rlimit_nofile 1024;
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / { return 200 "inner\n"; }
    }
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/;
    }
--- request
GET /t
--- response_body
inner



=== TEST 14: HEAD request has no body
--- config
    location = /t {
        return 200 "not sent\n";
    }
--- request
HEAD /t
--- response_headers
Content-Length: 9
--- response_body
