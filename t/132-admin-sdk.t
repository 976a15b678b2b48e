# The official OpenAI and Anthropic SDKs (t/sdk/check.py, as in t/096) against namespaces,
# keys and policies made through the config center's API: one node with the admin API, the
# gateway following Redis, the token service, a private redis-server and its own database.
use strict;
use warnings;
use Test::More;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep);
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::AIGateway::Process;
use Test::AIGateway::Redis;
use Test::AIGateway::MySQL;
use Test::AIGateway::Admin;
use JSON::PP ();

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;
plan skip_all => 'AI_GATEWAY_NO_SDK is set' if $ENV{AI_GATEWAY_NO_SDK};
my $python = $ENV{AI_GATEWAY_PYTHON};
ok($python && -x $python, 'the SDK interpreter (AI_GATEWAY_PYTHON, made by `make sdk-deps`)')
    or BAIL_OUT('no AI_GATEWAY_PYTHON: run `make sdk-deps` or set AI_GATEWAY_NO_SDK=1');

my $root  = abs_path(dirname(__FILE__) . '/..');
my $sroot = $ENV{TEST_NGINX_SERVROOT} || "$root/t/servroot";
my $base  = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 160;
my ($api, $gw, $mock, $tokens, $rport) = map { $base + $_ } 1 .. 5;
my $dir   = "$sroot-admin-sdk";
my $P     = "t132-$$";
(my $DB   = "aigw_t132_" . ($sroot =~ s/.*servroot//r)) =~ s/[^A-Za-z0-9_]/_/g;
my $PW    = 'sdk test admin password';

remove_tree($dir);
make_path($dir);
my ($redis_pid, $pid);
END {
    local $?;
    stop($pid) if $pid;
    if ($redis_pid) { kill 'KILL', $redis_pid; waitpid($redis_pid, 0) }
    drop_db($DB) if $DB;
}
$redis_pid = start_redis($rport, $dir);
create_db($DB);

write_conf("$dir/node", <<"_EOC_");
${\ main_conf($module, 2) }
http {
    ai_gateway_config gw.json;
    ai_gateway_redis redis://127.0.0.1:$rport prefix=$P timeout=500ms;
    ai_gateway_config_source redis poll=1s heartbeat=1s node=sdk;
    ai_gateway_mysql mysql://root\@127.0.0.1:${\ mysql_port() }/$DB timeout=3s;
    ai_gateway_admin_bootstrap file=admin.pw;
    ai_gateway_limit_zone limits 1m;
    log_format usage 'usage \$request_uri prompt=\$ai_gateway_prompt_tokens '
                     'completion=\$ai_gateway_completion_tokens source=\$ai_gateway_usage_source';
    server {
        listen 127.0.0.1:$api;
        access_log off;
        location /api/ { ai_gateway_admin; }
    }
    server {
        listen 127.0.0.1:$gw;
        location /v1/ {
            ai_gateway on;
            access_log logs/access.log usage;
            proxy_pass http://127.0.0.1:$mock;
        }
        location /slow/v1/ {
            ai_gateway on;
            access_log off;
            proxy_pass http://127.0.0.1:$mock;
        }
    }
    server {
        listen 127.0.0.1:$mock;
        access_log off;
        location /      { ai_gateway_mock_provider interval=5ms; }
        location /slow/ { ai_gateway_mock_provider latency=800ms; }
    }
    server {
        listen 127.0.0.1:$tokens;
        access_log off;
        location / { ai_gateway_token_service; }
    }
}
_EOC_
for ([ 'gw.json', '{}' ], [ 'admin.pw', "$PW\n" ]) {
    open my $fh, '>', "$dir/node/conf/$_->[0]" or die $!;
    print $fh $_->[1];
    close $fh;
}
is(system($nginx, '-p', "$dir/node/", '-c', 'conf/nginx.conf'), 0, 'the node started');
$pid = wait_pid("$dir/node/logs/nginx.pid");
ok(wait_port($api) && wait_port($gw) && wait_port($tokens), 'it listens');

my $s;
for (1 .. 100) { last if $s = api_login($api, 'admin', $PW); sleep 0.1 }
ok($s, 'the admin logs in');
# an API token, as automation would use
my $token = api_call($api, 'POST', '/api/v1/tokens', auth => $s, body => { name => 'sdk-test', role => 'editor' })
    ->{json}{token};
like($token // '', qr/^aigw_/, 'an editor API token');

my %key;
for my $ns ([ 'alpha' ], [ 'rpm', { type => 'requests', limit => 3, window => '1m' } ],
            [ 'conc', { type => 'concurrency', limit => 1 } ]) {
    my ($code, $policy) = @$ns;
    is(api_call($api, 'POST', '/api/v1/namespaces', auth => $token, body => { code => $code })->{status}, 201,
        "namespace $code made through the API");
    if ($policy) {
        is(api_call($api, 'POST', "/api/v1/namespaces/$code/policies", auth => $token, body => $policy)->{status},
            201, "... with a $policy->{type} policy");
    }
    my $r = api_call($api, 'POST', "/api/v1/namespaces/$code/keys?wait_applied=3s", auth => $token,
        body => { name => 'sdk' });
    is($r->{status}, 201, "... and a key, applied by the gateway") or diag($r->{body});
    ok($r->{json}{applied}{complete}, '... on every worker');
    $key{$code} = $r->{json}{data}{key};
}

my $json = `$python $root/t/sdk/check.py http://127.0.0.1:$gw http://127.0.0.1:$tokens $key{alpha} http://127.0.0.1:$gw $key{rpm} $key{conc} 2>&1`;
is($?, 0, 'the SDK calls all succeeded') or diag($json);
my $r = eval { JSON::PP->new->decode($json) } || {};
is($r->{json}{prompt}, 8, 'openai: usage.prompt_tokens of a completion');
is($r->{json}{completion}, 38, 'openai: usage.completion_tokens');
is($r->{stream}{with_usage}, 0, 'openai stream without include_usage: no chunk carries usage');
is($r->{stream_usage}{completion}, 6, 'openai stream with include_usage: usage.completion_tokens 6');
is($r->{anthropic}{output}, 5, 'anthropic stream: usage.output_tokens');
is($r->{count_tokens}, 8, 'anthropic messages.count_tokens on the token service');
is_deeply($r->{bad_key}, { status => 401, code => 'invalid_api_key' }, 'a bad key: AuthenticationError, invalid_api_key');
is_deeply($r->{limits}, { limit => 3, remaining => 2 }, 'the API-made requests policy: x-ratelimit-limit-requests 3, remaining 2');
is_deeply([ @{ $r->{rate_limited} || {} }{qw(status code)} ], [ 429, 'rate_limit_exceeded' ],
    'the 4th request in the minute: RateLimitError');
is_deeply($r->{anthropic_rate_limited}, { status => 429 }, 'the Anthropic SDK raises RateLimitError');
is($r->{retried}{status}, 200, 'the API-made concurrency policy: the SDK\'s own retry succeeds after the 429');

stop($pid);
undef $pid;
my $log = slurp("$dir/node/logs/error.log");
unlike($log, qr/\[(error|alert|crit|emerg)\]/, 'no [error]/[alert]/[crit]/[emerg]');
unlike($log, qr/\Q$_\E/, 'no client key in the error log') for values %key;
done_testing();
