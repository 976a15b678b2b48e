# `nginx -s reload` (SIGHUP) under traffic keeps serving: concurrent clients send keyed and
# unkeyed requests, some of them long streams that cross the reload, while the master is
# reloaded three times. Every request must get its complete, correct answer.
#
# Plain Test::More (the data-driven format has no "reload during a request" section).
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use File::Path qw(make_path remove_tree);
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

my $root     = abs_path(dirname(__FILE__) . '/..');
my $port     = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 10;
my $mockport = $port + 1;
my $prefix   = "$root/t/servroot-reload";

# The provider (the module's mock) runs in its own nginx that is not reloaded, as a real
# provider would; only the gateway is reloaded. The gateway keeps upstream connections alive.
my $mock_prefix = "$root/t/servroot-reload-mock";
write_conf($mock_prefix, <<"_EOC_");
${\ main_conf($module, 1) }
http {
    access_log off;
    server {
        listen 127.0.0.1:$mockport;
        location / { ai_gateway_mock_provider interval=25ms; }
    }
}
_EOC_
write_conf($prefix, <<"_EOC_");
${\ main_conf($module, 2) }
http {
    access_log off;
    ai_gateway_config $root/t/fixtures/gateway.json;
    upstream mock { server 127.0.0.1:$mockport; keepalive 8; }
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            ai_gateway on;
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
_EOC_

is(system($nginx, '-p', "$mock_prefix/", '-c', 'conf/nginx.conf'), 0, 'mock provider started');
my $mock_pid = wait_pid("$mock_prefix/logs/nginx.pid");
is(system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf'), 0, 'gateway started');
my $pid = wait_pid("$prefix/logs/nginx.pid");
ok($pid, "gateway master pid $pid");
wait_port($port);
wait_port($mockport);

my @kinds = (
    [ 'keyed JSON',   "Authorization: Bearer sk-alpha-1\r\n", '{"model":"m","messages":[]}', 200, qr/"object":"chat\.completion"/ ],
    [ 'keyed stream', "x-api-key: sk-beta-1\r\n", '{"model":"m","stream":true,"max_tokens":12,"messages":[]}', 200, qr/data: \[DONE\]\n\n\z/ ],
    [ 'no key',       "", '{"model":"m","messages":[]}', 401, qr/"code":"missing_api_key"/ ],
);

my $clients  = 6;
my $duration = 3.0;
my @pipes;
for my $c (0 .. $clients - 1) {
    pipe(my $r, my $w) or die $!;
    my $child = fork // die $!;
    if (!$child) {
        close $r;
        my $end = time + $duration;
        my $i = $c;
        while (time < $end) {
            my $k = $kinds[$i++ % @kinds];
            my ($status, $body) = request($port, $k->[1], $k->[2]);
            my $ok = defined $status && $status == $k->[3] && $body =~ $k->[4] ? 1 : 0;
            printf $w "%s\t%s\t%s\n", $k->[0], $status // 'none', $ok;
        }
        close $w;
        exit 0;
    }
    close $w;
    push @pipes, $r;
}

my $t0 = time;
for my $at (0.6, 1.3, 2.0) {
    my $wait = $at - (time - $t0);
    sleep($wait) if $wait > 0;
    ok(kill('HUP', $pid), "reload (SIGHUP) at ${at}s");
}

my (%total, %bad);
for my $r (@pipes) {
    while (my $line = <$r>) {
        chomp $line;
        my ($kind, $status, $ok) = split /\t/, $line;
        $total{$kind}++;
        $bad{"$kind -> $status"}++ unless $ok;
    }
}
1 while waitpid(-1, 0) > 0;

my $n = 0;
$n += $_ for values %total;
diag(join ', ', map { "$_: $total{$_}" } sort keys %total);
cmp_ok($n, '>=', 60, "at least 60 requests completed during the reloads ($n)");
is(scalar(keys %bad), 0, 'every request got its complete, correct answer')
    or diag(explain(\%bad));
ok($total{$_}, "some '$_' requests") for map { $_->[0] } @kinds;

for my $p ($pid, $mock_pid) {
    kill 'QUIT', $p;
    for (1 .. 50) { last unless alive($p); sleep 0.1 }
}
ok(!alive($pid), 'gateway stopped');
ok(!alive($mock_pid), 'mock provider stopped');

my $log = do { local $/; open my $l, '<', "$prefix/logs/error.log" or die $!; <$l> };
my $reloads = () = $log =~ /signal 1 \(SIGHUP\) received/g;
is($reloads, 3, 'three reloads in the error log');
unlike($log, qr/\[(alert|crit|emerg)\]/, 'no [alert], [crit] or [emerg]')
    or diag(join "\n", grep { /\[(alert|crit|emerg)\]/ } split /\n/, $log);
unlike($log, qr/\[error\]/, 'no [error]');
my $mock_log = do { local $/; open my $l, '<', "$mock_prefix/logs/error.log" or die $!; <$l> };
unlike($mock_log, qr/\[(error|alert|crit|emerg)\]/, 'the provider logged no errors either');

done_testing();

sub request {
    my ($port, $headers, $body) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or return;
    $s->autoflush(1);
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . $headers . "Content-Length: " . length($body) . "\r\n\r\n" . $body;
    local $/;
    my $resp = eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 10;
        my $r = <$s>;
        alarm 0;
        $r;
    };
    return unless defined $resp && $resp =~ m{\AHTTP/1\.1 (\d{3})};
    my $status = $1;
    my ($head, $rest) = split /\r\n\r\n/, $resp, 2;
    $rest = dechunk($rest) if $head =~ /^Transfer-Encoding: chunked/mi;
    return ($status, $rest);
}

