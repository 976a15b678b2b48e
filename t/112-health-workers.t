# Passive health across workers and time: a target that fails cools down for every worker
# (the state is in the limit zone), the others serve meanwhile, and once the cool-down has
# passed the target is tried first again. Each worker reports its targets' health (healthy,
# cooling with its end) in its heartbeat (a private redis-server) and its status handler.
# Plain Test::More (two workers, a pause): the data-driven format has no section for
# waiting between requests.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use Time::Local qw(timegm);
use JSON::PP ();
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::AIGateway::Process;
use Test::AIGateway::Redis;

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;

my $root   = abs_path(dirname(__FILE__) . '/..');
my $port   = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 55;
my ($bad, $good, $rport) = ($port + 1, $port + 2, $port + 3);
my $prefix = "$root/t/servroot-health";
my $P      = "t112-$$";

# every routed location (and the failover) is the same
my $routed = <<"_EOR_";
            ai_gateway on;
            include $root/nginx-conf/ai_gateway_proxy.conf;
            add_header X-Target \$ai_gateway_target always;
            add_header X-Attempts \$ai_gateway_attempts always;
            add_header X-Pid \$pid always;
_EOR_
write_conf($prefix, <<"_EOC_");
${\ main_conf($module, 2) }
http {
    access_log off;
    ai_gateway_config gw.json;
    ai_gateway_limit_zone limits 64k;
    ai_gateway_redis redis://127.0.0.1:$rport prefix=$P timeout=300ms;
    ai_gateway_config_source redis poll=1s heartbeat=1s node=h1;
    upstream ai_gateway_targets { ai_gateway_upstream; keepalive 4; }
    server {
        # reuseport: the kernel spreads new connections over both workers
        listen 127.0.0.1:$port reuseport;
        location /v1/ {
$routed        }
        location /v2/ {
$routed        }
        location = /status { ai_gateway_config_status; }
        location \@ai_gateway_failover {
$routed        }
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
   {"name": "good", "provider": "openai", "base_url": "http://127.0.0.1:$good/v1"},
   {"name": "down", "provider": "openai", "base_url": "http://127.0.0.1:$bad/v1",
    "max_failures": 1, "cooldown": "60s"}
 ],
 "routes": [{"path_prefix": "/v1/", "targets": [{"target": "bad", "weight": 1000}, {"target": "good", "weight": 1}]},
            {"path_prefix": "/v2/", "targets": ["down"], "fallback": ["good"]}]}
_EOJ_
close $fh;

my ($pid, $redis_pid);
END {
    local $?;
    stop($pid) if $pid;
    if ($redis_pid) { kill 'KILL', $redis_pid; waitpid($redis_pid, 0) }
}
$redis_pid = start_redis($rport, "$prefix/logs");
is(system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf'), 0, 'gateway started');
$pid = wait_pid("$prefix/logs/nginx.pid");
ok(wait_port($port), 'gateway listens');

# the heartbeats: every target healthy before any request
{
    my $hb = heartbeats_after(0, 5);
    is(scalar(keys %$hb), 2, 'both workers write heartbeats');
    is_deeply({ map { $_ => states($hb->{$_}) } keys %$hb },
        { map { $_ => 'bad=healthy/0/-,good=healthy/0/-,down=healthy/0/-' } 'h1:0', 'h1:1' },
        '... listing every target, healthy, in the configuration\'s order');
}

# a target that fails once (max_failures 1) cools down for 60 s: every worker's next
# heartbeat says so (the limit zone is shared), the others stay healthy
{
    my @r = request('/v2/chat/completions');
    is_deeply([ @r[0, 1, 2] ], [ 200, 'good', 2 ], '"down" fails, "good" answers (attempt 2)');
    my $failed = time;
    my $hb = heartbeats_after($failed, 5);
    diag(sprintf 'heartbeats with the cool-down %.1f s after the failure', time - $failed);
    is(scalar(keys %$hb), 2, 'both workers report after the failure, within 5 s');
    is_deeply({ map { $_ => states($hb->{$_}) } keys %$hb },
        { map { $_ => 'bad=healthy/0/-,good=healthy/0/-,down=cooling/0/until' } 'h1:0', 'h1:1' },
        '... "down" is cooling in both, the others healthy');
    for my $w (sort keys %$hb) {
        my ($down) = grep { $_->{target} eq 'down' } @{ $hb->{$w}{targets} };
        my $until = rfc3339($down->{cooling_until});
        ok($until && $until > $failed + 55 && $until < time + 61,
            "$w: cooling_until $down->{cooling_until} is the failure + 60 s");
    }
    my (undef, $body) = http_get('/status');
    my $st = eval { JSON::PP->new->decode($body) } // {};
    is(states($st), 'bad=healthy/0/-,good=healthy/0/-,down=cooling/0/until',
        'the status handler reads the same, live');
    ok(abs(($st->{targets_at_ms} // 0) / 1000 - time) < 2, '... as of now');
}

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

# The heartbeats in Redis of both workers whose targets were read after $since (unix s),
# waiting up to $limit s: { "h1:0" => {...}, ... } (decoded).
sub heartbeats_after {
    my ($since, $limit) = @_;
    my $deadline = time + $limit;
    my %out;
    while (time < $deadline && keys %out < 2) {
        for my $w (0, 1) {
            my $text = eval { redis($rport, 'GET', "$P:node:h1:$w") } // next;
            my $v = eval { JSON::PP->new->decode($text) } or next;
            $out{"h1:$w"} = $v if ($v->{targets_at_ms} // 0) > $since * 1000;
        }
        sleep 0.05;
    }
    return \%out;
}

# "name=state/failures/until,..." of a status's targets ("-" when cooling_until is null).
sub states {
    my $st = shift;
    return join ',', map { "$_->{target}=$_->{state}/$_->{failures}/" . (defined $_->{cooling_until} ? 'until' : '-') }
        @{ $st->{targets} || [] };
}

# Unix seconds of an RFC 3339 UTC time (`2026-12-07T10:00:00.250Z`).
sub rfc3339 {
    my ($y, $mo, $d, $h, $mi, $s, $ms) = (shift // '') =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{3}))?Z$/
        or return undef;
    return timegm($s, $mi, $h, $d, $mo - 1, $y) + ($ms // 0) / 1000;
}

# (status, body) of a GET.
sub http_get {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or return (0, '');
    print $s "GET $_[0] HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $resp = <$s> // '';
    my ($status) = $resp =~ m{\AHTTP/1\.1 (\d{3})};
    my (undef, $body) = split /\r\n\r\n/, $resp, 2;
    return ($status // 0, $body // '');
}

# one request on a new connection: (status, X-Target, X-Attempts, X-Pid)
sub request {
    my $path = shift // '/v1/chat/completions';
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or return;
    my $body = '{"model":"gpt-4o","messages":[]}';
    print $s "POST $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
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
