# A target's max_connections: with one request to it in flight (a slow provider), a second
# request at the same time fails over to the next target at once instead of queueing.
# Plain Test::More: two clients at the same time.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
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
my $port   = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 60;
my ($slow, $good) = ($port + 1, $port + 2);
my $prefix = "$root/t/servroot-maxconn";

# one worker: max_connections counts per worker
write_conf($prefix, <<"_EOC_");
${\ main_conf($module, 1) }
http {
    access_log off;
    ai_gateway_config gw.json;
    upstream ai_gateway_targets { ai_gateway_upstream; }
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            ai_gateway on;
            include $root/nginx-conf/ai_gateway_proxy.conf;
            add_header X-Target \$ai_gateway_target always;
            add_header X-Attempts \$ai_gateway_attempts always;
        }
        location \@ai_gateway_failover {
            ai_gateway on;
            include $root/nginx-conf/ai_gateway_proxy.conf;
            add_header X-Target \$ai_gateway_target always;
            add_header X-Attempts \$ai_gateway_attempts always;
        }
    }
    server { listen 127.0.0.1:$slow; location / { ai_gateway_mock_provider latency=1s; } }
    server { listen 127.0.0.1:$good; location / { return 200 "good\\n"; } }
}
_EOC_
open my $fh, '>', "$prefix/conf/gw.json" or die $!;
print $fh <<"_EOJ_";
{"namespaces": [{"code": "a", "api_keys": ["033d461ba69fa00769695b91ef3d9187416084607a52805d6ca51f0665bd4fcb"]}],
 "targets": [
   {"name": "slow", "provider": "openai", "base_url": "http://127.0.0.1:$slow/v1", "max_connections": 1},
   {"name": "good", "provider": "openai", "base_url": "http://127.0.0.1:$good/v1"}
 ],
 "routes": [{"path_prefix": "/v1/", "targets": [{"target": "slow", "weight": 1000}, {"target": "good", "weight": 1}]}]}
_EOJ_
close $fh;

my $pid;
END { stop($pid) if $pid }
is(system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf'), 0, 'gateway started');
$pid = wait_pid("$prefix/logs/nginx.pid");
ok(wait_port($port), 'gateway listens');

my $first = send_request();
sleep 0.3;
my $t0 = time;
my ($status, $target, $attempts) = read_response(send_request());
my $waited = time - $t0;
is_deeply([ $status, $target, $attempts ], [ 200, 'good', 2 ],
    'while "slow" has its one request in flight, the next one fails over to "good"');
ok($waited < 0.5, sprintf('... at once (%.2f s), without waiting for "slow"', $waited));
my @r = read_response($first);
is_deeply([ @r[0 .. 2] ], [ 200, 'slow', 1 ], 'the first request was answered by "slow"');
my @again = read_response(send_request());
is_deeply([ @again[0 .. 2] ], [ 200, "slow", 1 ], q{once it ended, "slow" takes requests again}) or diag("@again");

stop($pid);
undef $pid;
my $log = slurp("$prefix/logs/error.log");
like($log, qr/\[warn\] .*ai_gateway: target "slow" has 1 requests in flight \(max_connections\)/,
    'the refusal is logged');
my @bad = grep { /\[(alert|crit|emerg)\]/ } split /\n/, $log;
is(scalar(@bad), 0, 'no [alert], [crit] or [emerg]') or diag(join "\n", @bad);
done_testing();

sub send_request {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or die "connect: $!";
    my $body = '{"model":"gpt-4o","messages":[]}';
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "Authorization: Bearer sk-route-a\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    return $s;
}

# (status, X-Target, X-Attempts)
sub read_response {
    my $s = shift;
    local $/;
    my $resp = <$s> // '';
    my ($status) = $resp =~ m{\AHTTP/1\.1 (\d{3})};
    my ($head) = split /\r\n\r\n/, $resp, 2;
    my %h;
    for (split /\r\n/, $head // '') {
        $h{ lc $1 } = $2 if /^([^:]+):\s*(.*)$/;
    }
    return ($status // 0, $h{'x-target'} // '', $h{'x-attempts'} // '');
}
