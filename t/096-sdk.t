# The official OpenAI and Anthropic Python SDKs against the gateway and the token service
# (t/sdk/check.py makes the calls): a completion, a stream that did not ask for usage (the
# SDK must see an ordinary stream: the gateway's include_usage is taken back out), a stream
# that asked for it, an Anthropic stream, both SDKs' token-counting calls, and an error.
#
# The SDKs come from the Python package index into vendor/sdk-venv (`make sdk-deps`, part of `make inttest`);
# AI_GATEWAY_PYTHON names that interpreter. Without it this test FAILS (it never skips
# silently) unless AI_GATEWAY_NO_SDK=1 is set.
use strict;
use warnings;
use Test::More;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::AIGateway::Process;
use JSON::PP ();

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;
plan skip_all => 'AI_GATEWAY_NO_SDK is set' if $ENV{AI_GATEWAY_NO_SDK};

my $python = $ENV{AI_GATEWAY_PYTHON};
ok($python && -x $python, 'the SDK interpreter (AI_GATEWAY_PYTHON, made by `make sdk-deps`)')
    or BAIL_OUT('no AI_GATEWAY_PYTHON: run `make sdk-deps` or set AI_GATEWAY_NO_SDK=1');

my $root   = abs_path(dirname(__FILE__) . '/..');
my $port   = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 45;    # +40 (2024) is often taken
my ($mock, $tokens) = ($port + 1, $port + 2);
my $prefix = "$root/t/servroot-sdk";
# a second gateway with the policies fixture, for the limits (its own mock: /slow/ answers
# after 800 ms)
my ($limited, $limited_mock) = ($port + 3, $port + 4);
my $limited_prefix = "$root/t/servroot-sdk-limits";

write_conf($prefix, <<"_EOC_");
${\ main_conf($module, 1) }
http {
    ai_gateway_config $root/t/fixtures/gateway.json;
    log_format usage 'usage \$request_uri prompt=\$ai_gateway_prompt_tokens '
                     'completion=\$ai_gateway_completion_tokens source=\$ai_gateway_usage_source';
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            ai_gateway on;
            access_log logs/access.log usage;
            proxy_pass http://127.0.0.1:$mock;
        }
    }
    server {
        listen 127.0.0.1:$mock;
        access_log off;
        location / { ai_gateway_mock_provider interval=5ms; }
    }
    server {
        listen 127.0.0.1:$tokens;
        access_log off;
        location / { ai_gateway_token_service; }
    }
}
_EOC_

write_conf($limited_prefix, <<"_EOC_");
${\ main_conf($module, 1) }
http {
    access_log off;
    ai_gateway_config $root/t/fixtures/policies.json;
    ai_gateway_limit_zone limits 64k;
    server {
        listen 127.0.0.1:$limited;
        location /v1/ {
            ai_gateway on;
            proxy_pass http://127.0.0.1:$limited_mock;
        }
        location /slow/v1/ {
            ai_gateway on;
            proxy_pass http://127.0.0.1:$limited_mock;
        }
    }
    server {
        listen 127.0.0.1:$limited_mock;
        location /      { ai_gateway_mock_provider; }
        location /slow/ { ai_gateway_mock_provider latency=800ms; }
    }
}
_EOC_

system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf') == 0 or BAIL_OUT('nginx did not start');
my $pid = wait_pid("$prefix/logs/nginx.pid");
system($nginx, '-p', "$limited_prefix/", '-c', 'conf/nginx.conf') == 0 or BAIL_OUT('nginx did not start');
my $limited_pid = wait_pid("$limited_prefix/logs/nginx.pid");
END { stop($_) for grep { $_ } $pid, $limited_pid }
ok(wait_port($port) && wait_port($tokens) && wait_port($limited), 'gateways and token service listen');

my $json = `$python $root/t/sdk/check.py http://127.0.0.1:$port http://127.0.0.1:$tokens sk-alpha-1 http://127.0.0.1:$limited sk-pol-rpm sk-pol-conc 2>&1`;
is($?, 0, 'the SDK calls all succeeded') or diag($json);
my $r = eval { JSON::PP->new->decode($json) } || {};

is($r->{json}{prompt}, 8, 'openai: usage.prompt_tokens of a completion');
is($r->{json}{completion}, 38, 'openai: usage.completion_tokens');
like($r->{json}{content} // '', qr/^Hello! This is a mock reply/, 'openai: the reply text');

my $s = $r->{stream} || {};
is($s->{with_usage}, 0, 'openai stream without include_usage: no chunk carries usage');
is($s->{without_choices}, 0, '... and no chunk without choices (the usage chunk was taken out)');
is($s->{text}, 'Hello! This is a mock', '... the streamed text');
is($s->{finish}, 'length', '... finish_reason length (max_tokens 6)');

is($r->{stream_usage}{last_choices}, 0, 'openai stream with include_usage: the last chunk has no choices');
is($r->{stream_usage}{completion}, 6, '... and usage.completion_tokens 6');

is($r->{anthropic}{text}, 'Hello! This is a', 'anthropic stream: text');
is($r->{anthropic}{output}, 5, 'anthropic stream: usage.output_tokens');

is($r->{count_tokens}, 8, 'anthropic messages.count_tokens on the token service');
is($r->{input_tokens}, 8, 'openai responses.input_tokens.count on the token service');
is_deeply($r->{bad_key}, { status => 401, code => 'invalid_api_key' },
    'a bad key: openai.AuthenticationError, code invalid_api_key');
is_deeply($r->{limits}, { limit => 3, remaining => 2 },
    'limits: the SDK\'s raw response has x-ratelimit-limit-requests 3, remaining 2');
my $rl = $r->{rate_limited} || {};
is_deeply([ @$rl{qw(status code type)} ], [ 429, 'rate_limit_exceeded', 'requests' ],
    'the 4th request in the minute: openai.RateLimitError, code rate_limit_exceeded, type requests');
like($rl->{retry_after} // '', qr/^(5[6-9]|6[0-3])$/, '... with Retry-After about a minute');
is_deeply($r->{anthropic_rate_limited}, { status => 429 }, 'the Anthropic SDK raises anthropic.RateLimitError');
my $rt = $r->{retried} || {};
is($rt->{status}, 200, 'concurrency 1: the SDK\'s own retry (max_retries=2) succeeds after the 429');
ok(($rt->{waited} // 0) >= 0.9, "... having waited for Retry-After: 1 (${\ ($rt->{waited} // '?')} s)");
ok($rt->{first_done}, '... and the request that held the slot completed');

# what the gateway logged for the SDK's requests
my $log = '';
for (1 .. 30) { $log = slurp("$prefix/logs/access.log"); last if ($log =~ tr/\n//) >= 5; select undef, undef, undef, 0.1 }
my @lines = grep { /^usage / } split /\n/, $log;
is(scalar(@lines), 5, 'five SDK requests logged (4 through the gateway + the rejected one)');
like($lines[1] // '', qr{prompt=8 completion=6 source=provider$},
    'the stream without include_usage was settled with the provider\'s usage');

stop($_) for $pid, $limited_pid;
undef $pid;
undef $limited_pid;
unlike(slurp("$prefix/logs/error.log"), qr/\[(error|alert|crit|emerg)\]/, 'no [error]/[alert]/[crit]/[emerg]');
unlike(slurp("$limited_prefix/logs/error.log"), qr/\[(error|alert|crit|emerg)\]/,
    'no [error]/[alert]/[crit]/[emerg] in the limited gateway\'s log');
done_testing();
