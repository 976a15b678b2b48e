# Self-test of t/lib/compat: a project wrapper made with `use Test::Nginx::Socket -Base;`
# re-exports everything, and its add_block_preprocessor edits blocks.
use lib 't/selftest/lib';
use Test::SelfWrapper 'no_plan';

repeat_each(1);
env_to_nginx('SELFTEST_VAR');

is(server_port(), $ENV{TEST_NGINX_SERVER_PORT}, 'server_port() is exported');
like(html_dir(), qr{/html$}, 'html_dir() is exported');
is(wrapper_helper(), 'helper', 'the wrapper exports its own functions');

run_tests();

my $conf = do { local (@ARGV, $/) = (server_root() . '/conf/nginx.conf'); <> };
like($conf, qr/^env SELFTEST_VAR;$/m, 'env_to_nginx writes an env line');

__DATA__

=== TEST 1: the preprocessor's default no_error_log and http_config apply
--- config
    location = /t {
        return 200 "$wrapper_var\n";
    }
--- request
GET /t
--- response_body
from the wrapper



=== TEST 2: the wrapper's exported config snippet
--- config eval
$Test::SelfWrapper::location
--- request
GET /shared
--- response_body
shared
--- no_error_log
[alert]



=== TEST 3: a block's own no_error_log wins over the preprocessor's
--- config
--- request
GET /missing.txt
--- error_code: 404
--- no_error_log
[crit]
--- error_log
[error]
