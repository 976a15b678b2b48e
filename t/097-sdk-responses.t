# The official OpenAI Python SDK against the gateway's Responses and embeddings endpoints,
# the built-in mock behind it (t/sdk/responses.py makes the calls): a Response as JSON, a
# stream read by the SDK's stream helper (events in order, final usage), a stream cut by its
# max_output_tokens, a stream the gateway ends at a namespace's output cap (the SDK must read
# OpenAI's own ending: response.incomplete, reason max_output_tokens), and embeddings (base64,
# as the SDK asks by default, and floats).
#
# The SDK comes from the Python package index into vendor/sdk-venv (`make sdk-deps`, part of
# `make inttest`); AI_GATEWAY_PYTHON names that interpreter. Without it this test FAILS (it
# never skips silently) unless AI_GATEWAY_NO_SDK=1 is set.
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
my $port   = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 75;    # 096: +45..+49
my $mock   = $port + 1;
my $prefix = "$root/t/servroot-sdk-responses";

write_conf($prefix, <<"_EOC_");
${\ main_conf($module, 1) }
http {
    ai_gateway_config $root/t/fixtures/policies.json;
    ai_gateway_limit_zone limits 64k;
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
        location / { ai_gateway_mock_provider interval=2ms; }
    }
}
_EOC_

system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf') == 0 or BAIL_OUT('nginx did not start');
my $pid = wait_pid("$prefix/logs/nginx.pid");
END { stop($pid) if $pid }
ok(wait_port($port) && wait_port($mock), 'the gateway and the mock listen');

my $json = `$python $root/t/sdk/responses.py http://127.0.0.1:$port sk-pol-full sk-pol-outcut 2>&1`;
is($?, 0, 'the SDK calls all succeeded') or diag($json);
my $r = eval { JSON::PP->new->decode($json) } || {};

my $j = $r->{json} || {};
is_deeply([ @$j{qw(object status)} ], [ 'response', 'completed' ], 'responses.create: a completed response');
like($j->{id} // '', qr/^resp_/, '... its id');
like($j->{text} // '', qr/^Hello! This is a mock reply/, '... output_text');
# "Hello" + "Be brief." 14 bytes -> 4, + 3 + 3
is_deeply([ @$j{qw(input output total)} ], [ 10, 38, 48 ], '... usage input, output, total tokens');

my $s = $r->{stream} || {};
is($s->{first}, 'response.created', 'responses.stream: the first event');
is($s->{last}, 'response.completed', '... the last');
is($s->{deltas}, 38, '... one output_text.delta per piece');
like($s->{text} // '', qr/^Hello! This is a mock reply.*model\.$/, '... the text');
is($s->{status}, 'completed', '... get_final_response: status completed');
is($s->{output}, 38, '... and its usage');

is_deeply($r->{stream_limited}, { last => 'response.incomplete', status => 'incomplete',
    reason => 'max_output_tokens', output => 3 },
    'a stream cut by its own max_output_tokens ends with response.incomplete');

my $c = $r->{capped} || {};
is($c->{last}, 'response.incomplete', 'a stream past the output cap: the SDK reads response.incomplete last');
is($c->{status}, 'incomplete', '... status incomplete');
is($c->{reason}, 'max_output_tokens', '... incomplete_details.reason max_output_tokens');
is($c->{output_tokens}, 5, '... usage.output_tokens: the 5 tokens sent');
is($c->{text}, 'Hello! This is a', '... the text sent');
is($c->{output_text}, 'Hello! This is a', '... and the final response\'s output_text');
is($c->{item_status}, 'incomplete', '... the message item is incomplete');
is_deeply($c->{closing}, [ 'response.output_text.done', 'response.content_part.done',
    'response.output_item.done', 'response.incomplete' ], '... closed in OpenAI\'s order');
is_deeply($r->{capped_raw}, { last => 'response.incomplete', status => 'incomplete',
    reason => 'max_output_tokens', sequence_ok => JSON::PP::true },
    'responses.create(stream=True): the same, sequence numbers without a gap');

is_deeply($r->{embeddings}, { count => 3, dims => [ 1536, 1536, 1536 ], same => JSON::PP::true,
    differ => JSON::PP::true, norm => 1, prompt => 3, total => 3 },
    'embeddings.create (base64): a vector per input, same input same vector, unit length, usage');
is($r->{embeddings_float}{dims}, 64, 'embeddings.create with dimensions=64, floats');

# what the gateway logged for the SDK's requests
my $log = '';
for (1 .. 30) { $log = slurp("$prefix/logs/access.log"); last if ($log =~ tr/\n//) >= 7; select undef, undef, undef, 0.1 }
my @lines = grep { /^usage / } split /\n/, $log;
is(scalar(@lines), 7, 'seven SDK requests logged');
# (in the order the requests ended: a capped stream ends once the provider's has)
is((grep { m{^usage /v1/responses prompt=10 completion=38 source=provider$} } @lines), 1,
    'the JSON Response: the provider\'s usage');
is((grep { m{^usage /v1/responses prompt=8 completion=38 source=provider$} } @lines), 3,
    'the full stream and both capped streams: the provider\'s usage (it streamed its whole reply after the cut)');
is((grep { m{^usage /v1/responses prompt=8 completion=3 source=provider$} } @lines), 1,
    'the stream cut by its own max_output_tokens');
is((grep { m{^usage /v1/embeddings prompt=3 } } @lines), 1, 'embeddings: the prompt tokens');

stop($pid);
undef $pid;
my $err = slurp("$prefix/logs/error.log");
like($err, qr/stream ended at the output cap \(5 tokens sent\)/, 'the cut is logged');
unlike($err, qr/\[(error|alert|crit|emerg)\]/, 'no [error]/[alert]/[crit]/[emerg]');
done_testing();
