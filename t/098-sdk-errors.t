# Every rejection of the gateway as the official SDKs see it (t/sdk/errors.py makes the
# calls): the OpenAI SDK on /v1/chat/completions and the Anthropic SDK on /v1/messages each
# raise the exception class their API documents for the status, and read the gateway's
# message, error type, code and request id where they look for them. Also each SDK's model
# list, answered by the gateway.
#
# The SDKs are in vendor/sdk-venv (`make sdk-deps`); AI_GATEWAY_PYTHON names that
# interpreter. Without it this test FAILS unless AI_GATEWAY_NO_SDK=1 is set.
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

my $root = abs_path(dirname(__FILE__) . '/..');
my $base = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 75;
my ($policies, $mock, $routing, $busy) = ($base, $base + 1, $base + 2, $base + 3);
my $p_prefix = "$root/t/servroot-sdk-errors";
my $r_prefix = "$root/t/servroot-sdk-errors-routing";

write_conf($p_prefix, <<"_EOC_");
${\ main_conf($module, 1) }
http {
    access_log off;
    ai_gateway_config $root/t/fixtures/policies.json;
    ai_gateway_limit_zone limits 64k;
    server {
        listen 127.0.0.1:$policies;
        location /v1/ {
            ai_gateway on;
            proxy_pass http://127.0.0.1:$mock;
        }
        location /slow/v1/ {
            ai_gateway on;
            proxy_pass http://127.0.0.1:$mock;
        }
        location /small/v1/ {
            ai_gateway on;
            client_max_body_size 200;
            proxy_pass http://127.0.0.1:$mock/v1/;
        }
        location /down/v1/ {
            ai_gateway on;
            proxy_pass http://127.0.0.1:1/v1/;
        }
        location /timeout/v1/ {
            ai_gateway on;
            proxy_read_timeout 200ms;
            proxy_pass http://127.0.0.1:$mock/late/v1/;
        }
    }
    server {
        listen 127.0.0.1:$mock;
        location /      { ai_gateway_mock_provider; }
        location /slow/ { ai_gateway_mock_provider latency=1500ms; }
        location /late/ { ai_gateway_mock_provider latency=2s; }
    }
}
_EOC_

write_conf($r_prefix, <<"_EOC_");
${\ main_conf($module, 1) }
http {
    access_log off;
    ai_gateway_config gw.json;
    upstream ai_gateway_targets {
        ai_gateway_upstream;
        keepalive 8;
    }
    server {
        listen 127.0.0.1:$routing;
        location /v1/ {
            ai_gateway on;
            include $root/nginx-conf/ai_gateway_proxy.conf;
        }
        location \@ai_gateway_failover {
            ai_gateway on;
            include $root/nginx-conf/ai_gateway_proxy.conf;
        }
    }
    server {
        listen 127.0.0.1:$busy;
        location / { return 503 "busy"; }
    }
}
_EOC_
open my $gw, '>', "$r_prefix/conf/gw.json" or die $!;
print $gw <<"_EOJ_";
{"namespaces": [
   {"code": "a", "api_keys": ["033d461ba69fa00769695b91ef3d9187416084607a52805d6ca51f0665bd4fcb"]},
   {"code": "off", "status": "disabled",
    "api_keys": ["${\ sha256_hex('sk-route-off') }"]}
 ],
 "targets": [
   {"name": "one", "provider": "openai", "base_url": "http://127.0.0.1:$busy/v1", "credential": {"value": "k1"}},
   {"name": "two", "provider": "anthropic", "base_url": "http://127.0.0.1:$busy/v1", "credential": {"value": "k2"}}
 ],
 "routes": [{"name": "busy", "path_prefix": "/v1/", "models": ["gpt-4o", "claude-haiku-4-5", "gpt-4o-*"],
             "targets": ["one", "two"]}]}
_EOJ_
close $gw;

sub sha256_hex { require Digest::SHA; Digest::SHA::sha256_hex(shift) }

my @pids;
END { stop($_) for grep { $_ } @pids }
for my $prefix ($p_prefix, $r_prefix) {
    system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf') == 0 or BAIL_OUT("nginx did not start in $prefix");
    push @pids, wait_pid("$prefix/logs/nginx.pid");
}
ok(wait_port($policies) && wait_port($routing), 'both gateways listen');

my $json = `$python $root/t/sdk/errors.py http://127.0.0.1:$policies http://127.0.0.1:$routing 2>&1`;
is($?, 0, 'the SDK calls ran') or diag($json);
my $r = eval { JSON::PP->new->decode($json) } || {};

my $missing = "You didn't provide an API key. Send it in the Authorization header as 'Bearer YOUR_KEY', or in the x-api-key header.";
my $busy_msg = 'No provider could serve this request (the last answered 503).';
# reason => [status for OpenAI, OpenAI class, status for Anthropic, Anthropic class,
#            Anthropic error type, the gateway's code, message (a regex)]
my %want = (
    invalid_key       => [401, 'AuthenticationError', 401, 'AuthenticationError', 'authentication_error',
                          'invalid_api_key', qr/^Incorrect API key provided\.$/],
    missing_key       => [401, 'AuthenticationError', 401, 'AuthenticationError', 'authentication_error',
                          'missing_api_key', qr/^\Q$missing\E$/],
    invalid_field     => [400, 'BadRequestError', 400, 'BadRequestError', 'invalid_request_error',
                          'invalid_type', qr/^Invalid type for 'stream': expected a boolean\.$/],
    model_not_allowed => [403, 'PermissionDeniedError', 403, 'PermissionDeniedError', 'permission_error',
                          'model_not_allowed', qr/^The requested model is not allowed for this namespace\.$/],
    message_denied    => [403, 'PermissionDeniedError', 403, 'PermissionDeniedError', 'permission_error',
                          'message_denied', qr/^This request is not allowed by a message policy\.$/],
    input_too_long    => [400, 'BadRequestError', 400, 'BadRequestError', 'invalid_request_error',
                          'context_length_exceeded', qr/^This request's input has \d+ tokens; this namespace allows at most 20\.$/],
    output_too_large  => [400, 'BadRequestError', 400, 'BadRequestError', 'invalid_request_error',
                          'max_tokens_too_large', qr/^max_tokens is 100; this namespace allows at most 50 output tokens\.$/],
    requests_limit    => [429, 'RateLimitError', 429, 'RateLimitError', 'rate_limit_error',
                          'rate_limit_exceeded', qr/^Rate limit reached for requests: limit 3, used 3, requested 1\./],
    quota             => [429, 'RateLimitError', 429, 'RateLimitError', 'rate_limit_error',
                          'insufficient_quota', qr/^You exceeded your request quota: limit 2, used 2, requested 1\.$/],
    concurrency       => [429, 'RateLimitError', 429, 'RateLimitError', 'rate_limit_error',
                          'concurrency_limit_exceeded', qr/^Too many concurrent requests: limit 1\./],
    too_large         => [413, 'APIStatusError', 413, 'ContentTooLargeError', 'request_too_large',
                          'request_too_large', qr/^The request body is too large for this gateway/],
    unreachable       => [502, 'InternalServerError', 502, 'InternalServerError', 'api_error',
                          'bad_gateway', qr/^The gateway could not get a valid response/],
    timeout           => [504, 'InternalServerError', 504, 'GatewayTimeoutError', 'api_error',
                          'gateway_timeout', qr/^The upstream provider did not respond in time\.$/],
    no_route          => [404, 'NotFoundError', 404, 'NotFoundError', 'not_found_error',
                          'model_not_found', qr/^The requested model does not exist/],
    targets_busy      => [503, 'InternalServerError', 529, 'OverloadedError', 'overloaded_error',
                          'all_targets_failed', qr/^\Q$busy_msg\E$/],
    disabled          => [403, 'PermissionDeniedError', 403, 'PermissionDeniedError', 'permission_error',
                          'namespace_disabled', qr/^The namespace this request belongs to is disabled\.$/],
);

for my $reason (sort keys %want) {
    my ($o_status, $o_class, $a_status, $a_class, $a_type, $code, $message) = @{ $want{$reason} };
    my $o = ref $r->{$reason}{openai} eq 'HASH' ? $r->{$reason}{openai} : {};
    my $a = ref $r->{$reason}{anthropic} eq 'HASH' ? $r->{$reason}{anthropic} : {};
    is_deeply([ @$o{qw(status class code)} ], [ $o_status, $o_class, $code ],
        "$reason: openai.$o_class ($o_status), code $code")
        or diag(JSON::PP->new->canonical->encode($r->{$reason}{openai} // 'nothing'));
    like($o->{message} // '', $message, "$reason: ... the SDK reads the gateway's message");
    like($o->{request_id} // '', qr/^[0-9a-f]{32}$/, "$reason: ... and its request id (x-request-id)");
    is_deeply([ @$a{qw(status class type code body_type)} ], [ $a_status, $a_class, $a_type, $code, 'error' ],
        "$reason: anthropic.$a_class ($a_status), type $a_type")
        or diag(JSON::PP->new->canonical->encode($r->{$reason}{anthropic} // 'nothing'));
    like($a->{message} // '', $message, "$reason: ... the SDK reads the gateway's message");
    ok(($a->{request_id} // '') =~ /^[0-9a-f]{32}$/ && $a->{request_id} eq ($a->{body_request_id} // ''),
        "$reason: ... its request_id (request-id) is the body's request_id");
}

my $m = $r->{models} || {};
is_deeply($m->{openai}, [qw(claude-haiku-4-5 gpt-4o)], 'openai models.list(): the routes\' literal names');
is_deeply($m->{anthropic}, [qw(claude-haiku-4-5 gpt-4o)],
    'anthropic models.list(limit=1): the SDK follows has_more/last_id through every page');
is_deeply([ @{ $m->{openai_unknown} || {} }{qw(status class code)} ], [ 404, 'NotFoundError', 'model_not_found' ],
    'openai models.retrieve() of a model no route names: NotFoundError');
is($m->{anthropic_one}, 'gpt-4o', 'anthropic models.retrieve()');

stop($_) for @pids;
@pids = ();
for my $prefix ($p_prefix, $r_prefix) {
    my $log = slurp("$prefix/logs/error.log");
    # the 502 is nginx's own connect() error, the 504 its timeout: expected
    $log =~ s/^.*\[error\].*(connect\(\) failed|upstream timed out|client intended to send too large body).*\n//mg;
    unlike($log, qr/\[(error|alert|crit|emerg)\]/, "no other [error]/[alert]/[crit]/[emerg] in $prefix");
}
done_testing();
