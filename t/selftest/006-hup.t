# Self-test of t/lib/compat: TEST_NGINX_USE_HUP reloads one master between blocks.
BEGIN { $ENV{TEST_NGINX_USE_HUP} = 1 }
use Test::Nginx::Socket 'no_plan';

no_shuffle();

my %pids;
add_test_cleanup_handler(sub {
    my $pid = do { local (@ARGV, $/) = (server_root() . '/logs/nginx.pid'); <> };
    $pids{$pid}++ if defined $pid;
});

run_tests();

is(scalar keys %pids, 1, 'every block ran under the same master');

__DATA__

=== TEST 1: first configuration
--- config
    location = /t { return 200 "one\n"; }
--- request
GET /t
--- response_body
one
--- error_log
start worker process



=== TEST 2: second configuration, reloaded; the block sees only its own log lines
--- config
    location = /t { return 200 "two\n"; }
--- user_files
>>> f.txt
file two
--- request
GET /t
--- response_body
two
--- error_log
reconfiguring
--- no_error_log
[error]



=== TEST 3: user files are renewed
--- config
    location = /t { return 200 "three\n"; }
--- request
GET /f.txt
--- error_code: 404
