# Passive health across workers and time: a target that fails cools down for every worker
# (the state is in the limit zone), the others serve meanwhile, and once the cool-down has
# passed the target is tried first again. Plain Test::More (two workers, a pause): the
# data-driven format has no section for waiting between requests.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::AIGateway::Process;

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;

my $root   = abs_path(dirname(__FILE__) . '/..');
my $port   = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 55;
my ($bad, $good) = ($port + 1, $port + 2);
my $prefix = "$root/t/servroot-health";

write_conf($prefix, <<"_EOC_");
${\ main_conf($module, 2) }
http {
    access_log off;
    ai_gateway_config gw.json;
    ai_gateway_limit_zone limits 64k;
    upstream ai_gateway_targets { ai_gateway_upstream; keepalive 4; }
    server {
        # reuseport: the kernel spreads new connections over both workers
        listen 127.0.0.1:$port reuseport;
        location /v1/ {
            ai_gateway on;
            include $root/nginx-conf/ai_gateway_proxy.conf;
            add_header X-Target \$ai_gateway_target always;
            add_header X-Attempts \$ai_gateway_attempts always;
            add_header X-Pid \$pid always;
        }
        location \@ai_gateway_failover {
            ai_gateway on;
            include $root/nginx-conf/ai_gateway_proxy.conf;
            add_header X-Target \$ai_gateway_target always;
            add_header X-Attempts \$ai_gateway_attempts always;
            add_header X-Pid \$pid always;
        }
    }
    server { listen 127.0.0.1:$bad;  location / { return 503 "busy"; } }
    server { listen 127.0.0.1:$good; location / { return 200 "good\\n"; } }
}
_EOC_
open my $fh, '>', "$prefix/conf/gw.json" or die $!;
print $fh <<"_EOJ_";
{"namespaces": [{"code": "a", "api_keys": ["033d461ba69fa00769695b91ef3d9187416084607a52805d6ca51f0665bd4fcb"]}],
 "targets": [
   {"name": "bad", "provider": "openai", "base_url": "http://127.0.0.1:$bad/v1",
    "max_failures": 1, "cooldown": "2s"},
   {"name": "good", "provider": "openai", "base_url": "http://127.0.0.1:$good/v1"}
 ],
 "routes": [{"path_prefix": "/v1/", "targets": [{"target": "bad", "weight": 1000}, {"target": "good", "weight": 1}]}]}
_EOJ_
close $fh;

my $pid;
END { stop($pid) if $pid }
is(system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf'), 0, 'gateway started');
$pid = wait_pid("$prefix/logs/nginx.pid");
ok(wait_port($port), 'gateway listens');

my @first = request();
is_deeply([ @first[0, 1, 2] ], [ 200, 'good', 2 ],
    'the first request fails over from "bad" to "good" (attempt 2); "bad" starts cooling down');

# new connections until both workers have answered some (well within the cool-down)
my (%pids, @attempts);
for my $i (1 .. 200) {
    my ($status, $target, $attempts, $p) = request();
    push @attempts, "$status/$target/$attempts";
    $pids{$p}++ if $p;
    last if $i >= 16 && keys %pids >= 2;
}
is(scalar(keys %pids), 2, 'both workers answered: ' . join(', ', map { "$_ x$pids{$_}" } sort keys %pids));
is_deeply([ sort { $a cmp $b } keys %{{ map { $_ => 1 } @attempts }} ], ['200/good/1'],
    'while "bad" cools down, every worker sends requests to "good" first (one attempt each)');

sleep 2.2;
my @after = request();
is_deeply([ @after[0, 1, 2] ], [ 200, 'good', 2 ],
    'after the cool-down "bad" is tried first again (and, still failing, fails over)');

stop($pid);
undef $pid;
my $log = slurp("$prefix/logs/error.log");
like($log, qr/\[warn\] .*ai_gateway: target "bad" cools down for 2 s/, 'the cool-down is logged');
my @bad = grep { /\[(error|alert|crit|emerg)\]/ } split /\n/, $log;
is(scalar(@bad), 0, 'no [error], [alert], [crit] or [emerg]') or diag(join "\n", @bad[0 .. ($#bad < 5 ? $#bad : 5)]);
done_testing();

# one request on a new connection: (status, X-Target, X-Attempts, X-Pid)
sub request {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or return;
    my $body = '{"model":"gpt-4o","messages":[]}';
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "Authorization: Bearer sk-route-a\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    local $/;
    my $resp = <$s> // '';
    my ($status) = $resp =~ m{\AHTTP/1\.1 (\d{3})};
    my ($head) = split /\r\n\r\n/, $resp, 2;
    my %h;
    for (split /\r\n/, $head // '') {
        $h{ lc $1 } = $2 if /^([^:]+):\s*(.*)$/;
    }
    return ($status, $h{'x-target'} // '', $h{'x-attempts'} // '', $h{'x-pid'} // '');
}
