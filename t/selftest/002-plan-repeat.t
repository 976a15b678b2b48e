# Self-test of t/lib/compat: an exact plan with repeat_each(2), a master and two workers.
use Test::Nginx::Socket;

repeat_each(2);
master_on();
workers(2);
no_shuffle();

plan tests => repeat_each() * (blocks() * 3);

run_tests();

__DATA__

=== TEST 1: status, body, one log pattern per repeat
--- config
    location = /t {
        return 200 "pid-independent\n";
    }
--- request
GET /t
--- response_body
pid-independent
--- no_error_log
[error]



=== TEST 2: the second repeat sees only the lines logged since the first
--- config
    location = /t {
        return 404;
    }
--- request
GET /missing.txt
--- error_code: 404
--- response_body_like: 404 Not Found
--- error_log
No such file or directory



=== TEST 3: a per-block log level
--- log_level: warn
--- config
    location = /t {
        return 200 "x";
    }
--- request
GET /t
--- response_body chomp
x
--- no_error_log
[debug]
