# The dashboard (dashboard/, static files) in a real browser: one nginx node (two workers)
# with a private redis-server and a private mariadbd serves the gateway (mock provider) and,
# on another port, the dashboard with the config center's API under /api/ on the same origin.
# t/browser/dashboard.mjs drives Debian's chromium through playwright-core (make browser-deps
# installs both) and prints one "ok - ..." or "not ok - ..." line per check, with "# ..."
# diagnostics; each becomes a test here. Screenshots go to t/artifacts/dashboard/.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep time);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use Digest::SHA qw(sha256_hex);
use JSON::PP ();
use POSIX ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::AIGateway::Process;
use Test::AIGateway::Redis;
use Test::AIGateway::MySQL;
use Test::AIGateway::Admin;
use Test::AIGateway::Load;

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;

my $root = abs_path(dirname(__FILE__) . '/..');
my $node_bin = $ENV{AI_GATEWAY_NODE};
my $chromium = $ENV{AI_GATEWAY_CHROMIUM};
plan skip_all => 'set AI_GATEWAY_NODE to Node.js (make inttest does)'
    unless $node_bin && -x $node_bin;
plan skip_all => 'set AI_GATEWAY_CHROMIUM to a Chromium (make inttest does; make browser-deps installs /usr/bin/chromium)'
    unless $chromium && -x $chromium;
plan skip_all => 'no t/browser/node_modules/playwright-core (make browser-deps installs it)'
    unless -d "$root/t/browser/node_modules/playwright-core";

my $sroot     = $ENV{TEST_NGINX_SERVROOT} || "$root/t/servroot";
my $base      = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 190;
my ($dport, $gport, $rport, $mport) = ($base, $base + 1, $base + 8, $base + 9);
my ($mockport, $downport) = ($base + 2, $base + 3);
my $dir       = "$sroot-dashboard";
my $artifacts = "$root/t/artifacts/dashboard";
my $P         = "t160-$$";
my $DB        = 'aigw_t160';
my $PW        = 'dashboard admin password';
my $KEY       = 'sk-t160-a';
my $TIMEOUT   = $ENV{AI_GATEWAY_BROWSER_TIMEOUT} || 300;    # seconds for dashboard.mjs
my $node      = { name => 'n1', dir => "$dir/n1" };

remove_tree($dir, $artifacts);
make_path($dir, $artifacts);
my ($redis_pid, $mysql_pid);
END {
    local $?;
    stop($node->{pid}) if $node->{pid};
    if ($redis_pid) { kill 'KILL', $redis_pid; waitpid($redis_pid, 0) }
    if ($mysql_pid) { kill 'TERM', $mysql_pid; waitpid($mysql_pid, 0) }
    remove_tree($dir) if Test::More->builder->is_passing;
}
$redis_pid = start_redis($rport, $dir);
$mysql_pid = start_mariadb($mport, "$dir/mysql");
create_db($DB, $mport);

# --- the node ---------------------------------------------------------------------------------
write_conf($node->{dir}, <<"_EOC_");
${\ main_conf($module, 2) }
http {
    access_log logs/access.log;
    ai_gateway_secret_key secret.key;
    ai_gateway_config gw.json;
    ai_gateway_redis redis://127.0.0.1:$rport prefix=$P timeout=500ms;
    ai_gateway_config_source redis poll=1s heartbeat=1s node=n1;
    ai_gateway_mysql mysql://root\@127.0.0.1:$mport/$DB timeout=2s;
    ai_gateway_admin_bootstrap user=admin file=admin.pw;
    ai_gateway_usage_log flush=100ms node=n1 spool=$node->{dir}/spool;
    ai_gateway_metrics_zone gw_metrics 1m;
    ai_gateway_limit_zone lz 1m;
    upstream ai_gateway_targets { ai_gateway_upstream; keepalive 4; }
    server {
        listen 127.0.0.1:$gport;
        location /v1/ { ai_gateway on; ai_gateway_mock_provider; }
        # routed (gw.json's route "v2": target "down" first, then "mock"), for the targets' health
        location /v2/ { ai_gateway on; include $root/nginx-conf/ai_gateway_proxy.conf; }
        location \@ai_gateway_failover { ai_gateway on; include $root/nginx-conf/ai_gateway_proxy.conf; }
    }
    server { listen 127.0.0.1:$mockport; location / { ai_gateway_mock_provider; } }
    server { listen 127.0.0.1:$downport; location / { return 503 "busy"; } }
    server {
        listen 127.0.0.1:$dport;
        root $root/dashboard;
        index index.html;
        # ES modules load only with a JavaScript type (nginx's default is text/plain)
        types {
            text/html html;
            text/css css;
            text/javascript js mjs;
            application/json json;
            image/svg+xml svg;
            image/png png;
            font/woff2 woff2;
        }
        default_type application/octet-stream;
        # as nginx-conf/nginx.conf: nothing from another origin, no inline script
        add_header Content-Security-Policy "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'" always;
        location /api/ { ai_gateway_admin; }
        # the browser asks for it on its own; a missing one is no error of the dashboard's
        location = /favicon.ico { log_not_found off; }
    }
}
_EOC_
{
    open my $r, '<', '/dev/urandom' or die $!;
    read $r, my $bytes, 32;
    my $gw_json = JSON::PP->new->canonical->encode({
        namespaces => [ { code => 'team-a', name => 'Team A', api_keys => [ sha256_hex($KEY) ] } ],
        targets    => [
            { name => 'mock', provider => 'openai-compatible', base_url => "http://127.0.0.1:$mockport/v1" },
            { name => 'down', provider => 'openai-compatible', base_url => "http://127.0.0.1:$downport/v1",
              max_failures => 1, cooldown => '60s' },
        ],
        routes => [ { name => 'v2', path_prefix => '/v2/', targets => ['down'], fallback => ['mock'] } ],
    });
    for ([ 'secret.key', unpack('H*', $bytes) . "\n" ], [ 'gw.json', $gw_json ], [ 'admin.pw', "$PW\n" ]) {
        open my $fh, '>', "$node->{dir}/conf/$_->[0]" or die $!;
        print $fh $_->[1];
        close $fh;
    }
    chmod 0600, "$node->{dir}/conf/secret.key", "$node->{dir}/conf/admin.pw";
}
is(system($nginx, '-p', "$node->{dir}/", '-c', 'conf/nginx.conf'), 0, 'nginx started');
$node->{pid} = wait_pid("$node->{dir}/logs/nginx.pid");
ok($node->{pid} && wait_port($gport) && wait_port($dport), 'the gateway and the dashboard listen');

my $s;
for (1 .. 100) { last if $s = api_login($dport, 'admin', $PW); sleep 0.1 }
ok($s, 'the bootstrap admin logs in through the dashboard port');
my $me = api_call($dport, 'GET', '/api/v1/auth/me');
is($me->{status}, 401, 'without a session, /api/v1/auth/me on the dashboard port answers 401');
ok(ref $me->{json} eq 'HASH', '... in JSON') or diag($me->{body});
my $index = http($dport, 'GET', '/');
is($index->{status}, 200, 'GET / on the dashboard port answers 200 (dashboard/index.html)');
my $chat = http($gport, 'POST', '/v1/chat/completions', "Authorization: Bearer $KEY\r\nContent-Type: application/json\r\n",
    '{"model":"mock-gpt","messages":[{"role":"user","content":"Hello"}]}');
is($chat->{status}, 200, "the gateway answers the namespace's key");

# --- the browser --------------------------------------------------------------------------------
# Runs t/browser/dashboard.mjs in its own process group (so that a timeout kills chromium too);
# each of its check lines becomes a test.
{
    local %ENV = (%ENV,
        DASHBOARD_URL        => "http://127.0.0.1:$dport",
        GATEWAY_URL          => "http://127.0.0.1:$gport",
        GATEWAY_KEY          => $KEY,
        ADMIN_USER           => 'admin',
        ADMIN_PASSWORD       => $PW,
        AI_GATEWAY_ARTIFACTS => $artifacts,
        AI_GATEWAY_CHROMIUM  => $chromium,
        PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD => 1,
    );
    my $stderr = "$dir/browser.stderr";
    my $pid = open(my $out, '-|') // die "fork: $!";
    if (!$pid) {
        POSIX::setsid();
        open STDERR, '>', $stderr;
        open STDIN, '<', '/dev/null';
        { exec $node_bin, "$root/t/browser/dashboard.mjs"; }
        POSIX::_exit(127);
    }
    my ($checks, $last_ok, $timed_out) = (0, 1, 0);
    my $t0 = time;
    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm $TIMEOUT;
        while (my $line = <$out>) {
            chomp $line;
            if ($line =~ /^(not )?ok - (.*)$/) {
                $checks++;
                $last_ok = !$1;
                ok($last_ok, $2);
            } elsif ($line =~ /^# ?(.*)$/) {
                $last_ok ? note($1) : diag($1);
            } else {
                note("dashboard.mjs: $line");
            }
        }
        alarm 0;
        1;
    } or do {
        alarm 0;
        die $@ unless $@ eq "timeout\n";
        $timed_out = 1;
        kill 'KILL', -$pid;
    };
    close $out;
    my $status = $?;
    my $err = slurp($stderr);
    ok(!$timed_out, "dashboard.mjs finished within $TIMEOUT s") or diag("killed after ${\ int(time - $t0) } s");
    ok($status == 0, 'dashboard.mjs exited normally')
        or diag(($status & 127 ? 'killed by signal ' . ($status & 127) : 'exit code ' . ($status >> 8)) . "\n$err");
    cmp_ok($checks, '>', 0, 'dashboard.mjs printed its checks') or diag($err);
    note("dashboard.mjs stderr:\n$err") if length $err && $status == 0;
}

# --- the error log ------------------------------------------------------------------------------
my $log = slurp("$node->{dir}/logs/error.log");
unlike($log, qr/\[(alert|emerg|crit)\]/, 'no alert, crit or emerg in the error log');
my @err = grep { /\[error\]/ } split /\n/, $log;
is(scalar @err, 0, 'no [error] in the error log') or diag(join "\n", @err[0 .. ($#err < 4 ? $#err : 4)]);

done_testing();
