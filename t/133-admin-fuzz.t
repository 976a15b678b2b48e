# The admin API fuzzed against its own OpenAPI document: schemathesis reads GET
# /api/v1/openapi.json from one node (two workers, its own MySQL database, its own
# redis-server) and calls every operation with generated requests as an admin API token, then
# checks each answer: no 5xx (not_a_server_error), a status the document lists for the
# operation (status_code_conformance), the content type it gives (content_type_conformance),
# and a body that matches the response's schema (response_schema_conformance). Any failure
# fails this test, with schemathesis's report (the request that reproduces it) in the output.
#
# The run is deterministic and bounded: deterministic generation (schemathesis then ignores
# the seed, which is still passed and printed), one worker, at most FUZZ_EXAMPLES (default 12)
# generated cases per operation in each of the examples, coverage, fuzzing and stateful
# phases, with data the document allows and data it does not (--mode all: the answers to
# invalid requests must be documented 4xx too). About 10,000 cases in 80 to 130 s on two
# cores; the number of cases and the time are printed at the end.
#
# Left out, so the run does not take its own ground away:
# - DELETE /api/v1/users/{name} and DELETE /api/v1/tokens/{token_id} (the fuzzer's admin and
#   its token),
# - POST /api/v1/auth/logout and POST /api/v1/auth/password (the caller's own session and
#   password).
# The hooks (t/fuzz/aigw_fuzz_hooks.py) also keep PATCH /users/{name} off the fuzzer's admin
# (it could demote or disable it), keep only `*` of the generated If-Match headers (a random
# ETag makes every write a 412), make every other call with path parameters name resources
# that exist (read from the API; the seeded ones are what the document's examples name), and
# give every base_url in a body 127.0.0.1 for a host name: the config center resolves target
# hosts, and generated names must not become DNS queries.
#
# schemathesis comes from the Python package index into vendor/fuzz-venv (`make fuzz-deps`,
# part of `make inttest`); AI_GATEWAY_SCHEMATHESIS names it (default: that venv's). Without
# it this test FAILS (it never skips silently) unless AI_GATEWAY_NO_FUZZ=1 is set. Ports:
# TEST_NGINX_SERVER_PORT + 140 (the API) and + 149 (redis-server).
use strict;
use warnings;
use Test::More;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep time);
use POSIX ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::AIGateway::Process;
use Test::AIGateway::Redis;
use Test::AIGateway::MySQL;
use Test::AIGateway::Admin;

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;
plan skip_all => 'AI_GATEWAY_NO_FUZZ is set' if $ENV{AI_GATEWAY_NO_FUZZ};

my $root = abs_path(dirname(__FILE__) . '/..');
my $st   = $ENV{AI_GATEWAY_SCHEMATHESIS} || "$root/vendor/fuzz-venv/bin/schemathesis";
ok(-x $st, "schemathesis ($st, made by `make fuzz-deps`)")
    or BAIL_OUT('no schemathesis: run `make fuzz-deps` or set AI_GATEWAY_NO_FUZZ=1');

my $base     = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 140;
my $port     = $base;
my $rport    = $base + 9;
my $dir      = "$root/t/servroot-admin-fuzz";
my $db       = "aigw_t133_$$";
my $admin    = 'fz.root-Q7x';
my $password = 'fuzzing admin password 133';
my $examples = $ENV{FUZZ_EXAMPLES} || 12;
my $seed     = 133;

remove_tree($dir);
make_path("$dir/conf", "$dir/logs", "$dir/redis");
my ($nginx_pid, $redis_pid);
END {
    local $?;
    stop($nginx_pid) if $nginx_pid;
    if ($redis_pid) { kill 'KILL', $redis_pid; waitpid($redis_pid, 0) }
    drop_db($db);
}
create_db($db);
$redis_pid = start_redis($rport, "$dir/redis");

sub write_file {
    my ($path, $text, $mode) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh $text;
    close $fh;
    chmod $mode, $path if defined $mode;
}
write_file("$dir/conf/bootstrap.pw", "$password\n", 0600);
# the secret key the config center seals provider keys with
write_file("$dir/conf/seal.key", ('5a' x 32) . "\n", 0600);

my $mport = mysql_port();
write_conf($dir, <<"_EOC_", 1);
${\ main_conf($module, 2) }
http {
    access_log logs/access.log;
    ai_gateway_redis redis://127.0.0.1:$rport prefix=t133 timeout=1s;
    ai_gateway_secret_key seal.key;
    ai_gateway_mysql mysql://root\@127.0.0.1:$mport/$db timeout=5s;
    ai_gateway_admin_bootstrap user=$admin file=bootstrap.pw;
    server {
        listen 127.0.0.1:$port;
        client_max_body_size 256k;
        location /api/ { ai_gateway_admin; }
    }
}
_EOC_

is(system($nginx, '-p', "$dir/", '-c', 'conf/nginx.conf'), 0, 'nginx started') or BAIL_OUT('nginx did not start');
$nginx_pid = wait_pid("$dir/logs/nginx.pid");
ok(wait_port($port), 'the admin API listens');

# the bootstrap admin exists once worker 0 migrated the schema
my $session;
for (1 .. 100) {
    $session = api_login($port, $admin, $password);
    last if $session;
    sleep 0.2;
}
ok($session, 'the bootstrap admin logs in') or BAIL_OUT('no admin session');

my $r = api_call($port, 'POST', '/api/v1/tokens', auth => $session,
    body => { name => 'schemathesis', role => 'admin' });
is($r->{status}, 201, 'an admin API token is made through the API');
my $token = $r->{json}{token} // '';
like($token, qr/^aigw_/, 'the token is in the answer');
is(api_call($port, 'GET', '/api/v1/auth/me', auth => $token)->{json}{role}, 'admin', 'the token acts as an admin');

# what the document's examples name (namespace team-a with key 0b006f9beb97, policy 1 and
# matcher 2, target vllm, route gpt, user viewer-1), so calls reach existing resources too; the
# route keeps the namespace and the target from being deleted early
my @seed = (
    ['POST', '/api/v1/namespaces', { code => 'team-a', name => 'Team A' }],
    ['POST', '/api/v1/namespaces/team-a/keys',
        { name => 'seed', sha256 => '0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55' }],
    ['POST', '/api/v1/namespaces/team-a/policies', { type => 'requests', limit => 60, window => '1m' }],
    ['POST', '/api/v1/namespaces/team-a/matchers',
        { type => 'header', field => 'X-Team', operator => 'equals', value => 'a' }],
    ['POST', '/api/v1/targets', { name => 'vllm', provider => 'openai-compatible', base_url => 'http://127.0.0.1:9/v1' }],
    ['POST', '/api/v1/routes', { name => 'gpt', path_prefix => '/v1/', namespaces => ['team-a'], targets => ['vllm'] }],
    ['POST', '/api/v1/users', { name => 'viewer-1', role => 'viewer', password => 'a viewer password' }],
);
for my $s (@seed) {
    my ($m, $path, $body) = @$s;
    is(api_call($port, $m, $path, auth => $token, body => $body)->{status}, 201, "seeded $path");
}
is(api_call($port, 'GET', '/api/v1/namespaces/team-a/policies/1', auth => $token)->{status}, 200, 'policy 1');
is(api_call($port, 'GET', '/api/v1/namespaces/team-a/matchers/2', auth => $token)->{status}, 200, 'matcher 2');
is(api_call($port, 'GET', '/api/v1/namespaces/team-a/keys/0b006f9beb97', auth => $token)->{status}, 200, 'key 0b006f9beb97');

# the document the fuzzer reads is the one the API serves
$r = api_call($port, 'GET', '/api/v1/openapi.json');
is($r->{status}, 200, 'GET /api/v1/openapi.json');
is($r->{json}{openapi}, '3.1.0', 'an OpenAPI 3.1 document');

my @cmd = (
    $st, 'run', "http://127.0.0.1:$port/api/v1/openapi.json",
    '--url', "http://127.0.0.1:$port",
    '--header', "Authorization: Bearer $token",
    '--checks', 'not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance',
    '--phases', 'examples,coverage,fuzzing,stateful',
    '--mode', 'all',
    '--max-examples', $examples,
    '--seed', $seed,
    '--generation-deterministic',
    '--workers', '1',
    '--request-timeout', '20',
    '--exclude-operation-id', 'deleteUser',
    '--exclude-operation-id', 'deleteToken',
    '--exclude-operation-id', 'logout',
    '--exclude-operation-id', 'changePassword',
    '--report', 'junit',
    '--report-dir', "$dir/report",
    '--no-color',
    '--output-sanitize', 'true',
);
local $ENV{SCHEMATHESIS_HOOKS} = 'aigw_fuzz_hooks';
local $ENV{PYTHONDONTWRITEBYTECODE} = 1;
local $ENV{AIGW_FUZZ_ADMIN}    = $admin;
local $ENV{AIGW_FUZZ_URL}      = "http://127.0.0.1:$port";
local $ENV{AIGW_FUZZ_TOKEN}    = $token;
local $ENV{PYTHONPATH} = join ':', grep { length } "$root/t/fuzz", $ENV{PYTHONPATH} // '';
# the token is not shown in the command line that is printed
note('running: ', join(' ', map { /^Authorization: / ? 'Authorization: Bearer <token>' : $_ } @cmd));
my $t0  = time;
my $pid = open(my $out, '-|') // die "fork: $!";
if (!$pid) {
    open STDERR, '>&', \*STDOUT;
    chdir $dir;
    { exec @cmd; }
    POSIX::_exit(127);
}
my $output = do { local $/; <$out> } // '';
close $out;
my $rc      = $? >> 8;
my $elapsed = time - $t0;
$output =~ s/\Q$token\E/<token>/g;

# schemathesis's closing summary: "Test cases: N generated, N passed, ..."
my ($cases) = $output =~ /Test cases:\s*(\d+)\s+generated/;
my ($failed) = $output =~ /Test cases:.*?(\d+)\s+failed/;
ok(defined $cases && $cases > 0, 'schemathesis generated test cases') or diag($output);
is($rc, 0, 'schemathesis found no failure') or diag($output);
ok(!$failed, 'no test case failed') or diag($output);
diag(sprintf('schemathesis: %s test cases in %.0f s (seed %d, at most %d per operation)',
    $cases // '?', $elapsed, $seed, $examples));
note($output);

# the node is still up and its log has no alert or crash
ok(kill(0, $nginx_pid), 'nginx still runs');
my $log = slurp("$dir/logs/error.log");
unlike($log, qr/\[(alert|emerg|crit)\]|panicked|exited on signal/, 'no alert, crash or panic in the error log');

done_testing();
