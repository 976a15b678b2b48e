# Run-time configuration from Redis on three nodes (nginx instances of two workers each) and a
# private redis-server: propagation times (with and without the pub/sub message), revoked
# keys and new namespaces without a reload, refused snapshots (wrong sha256, invalid JSON,
# duplicate keys, a policy error, a missing snapshot, a lower version), a new epoch, counters
# that survive a snapshot change, Redis stopped and killed under load (no failed request),
# a node restarted while Redis is down (serves its last-known-good snapshot), the status
# handler parked on the bridge (timeout, client gone, reload), and nginx -s reload.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(sleep time);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use Digest::SHA qw(sha256_hex);
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::AIGateway::Process;
use Test::AIGateway::Redis;

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;

my $root  = abs_path(dirname(__FILE__) . '/..');
my $base  = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 120;
my $rport = $base + 9;
my $rdir  = "$root/t/servroot-cfg-redis";
my $P     = "t120-$$";
my @nodes = map { { name => "n$_", port => $base + $_, dir => "$root/t/servroot-cfg-n$_" } } 1 .. 3;

remove_tree($rdir);
make_path($rdir);
my $redis_pid;
my @pids;
END {
    local $?;
    stop($_) for grep { $_ } map { $_->{pid} } @nodes;
    if ($redis_pid) { kill 'CONT', $redis_pid; kill 'KILL', $redis_pid; waitpid($redis_pid, 0) }
}
$redis_pid = start_redis($rport, $rdir);

sub key_of { sha256_hex($_[0]) }

# A gateway document: namespace "a" (key sk-a, and sk-x unless revoked), a requests limit of
# 4 per minute on namespace "lim", and namespace "new" once added.
sub doc {
    my (%o) = @_;
    my @a_keys = (key_of('sk-a'));
    push @a_keys, key_of('sk-x') unless $o{revoke_x};
    my $keys = join ',', map { qq("$_") } @a_keys;
    my $ns = qq({"code":"a","api_keys":[$keys]},)
        . qq({"code":"lim","api_keys":["${\ key_of('sk-lim') }"],"policies":[{"name":"rpm","type":"requests","limit":$o{limit},"window":"60s"}]});
    $ns .= qq(,{"code":"new","api_keys":["${\ key_of('sk-new') }"]}) if $o{new};
    $ns .= qq(,{"code":"pad$o{pad}"}) if defined $o{pad};
    return qq({"version":"doc-$o{label}","namespaces":[$ns]});
}

for my $n (@nodes) {
    write_conf($n->{dir}, <<"_EOC_");
${\ main_conf($module, 2) }
http {
    access_log off;
    ai_gateway_config gw.json;
    ai_gateway_redis redis://127.0.0.1:$rport prefix=$P timeout=300ms;
    ai_gateway_config_source redis poll=1s heartbeat=1s lkg=lkg.json node=$n->{name};
    ai_gateway_metrics_zone gw_metrics 1m;
    ai_gateway_limit_zone gw_limits 1m;
    server {
        listen 127.0.0.1:$n->{port};
        location /v1/ { ai_gateway on; ai_gateway_mock_provider; }
        location = /status { ai_gateway_config_status; }
        location = /metrics { ai_gateway_metrics; }
    }
}
_EOC_
    open my $fh, '>', "$n->{dir}/conf/gw.json" or die $!;
    print $fh doc(label => 'file', limit => 4);
    close $fh;
}

sub start_node {
    my $n = shift;
    is(system($nginx, '-p', "$n->{dir}/", '-c', 'conf/nginx.conf'), 0, "$n->{name} started");
    $n->{pid} = wait_pid("$n->{dir}/logs/nginx.pid");
    ok(wait_port($n->{port}), "$n->{name} listens");
}

# (status, body) of one request.
sub http {
    my ($port, $method, $path, $key, $body) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or return (0, "connect: $!");
    my $req = "$method $path HTTP/1.0\r\nHost: t\r\n";
    $req .= "Authorization: Bearer $key\r\n" if $key;
    if (defined $body) {
        $req .= "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n";
    }
    print $s "$req\r\n", $body // '';
    local $/;
    my $resp = <$s> // '';
    my ($status) = $resp =~ m{\AHTTP/1\.\d (\d+)};
    my ($rest) = $resp =~ m{\r\n\r\n(.*)\z}s;
    return ($status // 0, $rest // '');
}

sub chat {
    my ($port, $key) = @_;
    my ($st) = http($port, 'POST', '/v1/chat/completions', $key,
        '{"model":"m","messages":[{"role":"user","content":"hi"}]}');
    return $st;
}

# The statuses of $count requests to every node with $key.
sub statuses {
    my ($key, $count) = @_;
    my %seen;
    for my $n (@nodes) { $seen{ chat($n->{port}, $key) }++ for 1 .. $count }
    return join ',', map { "${_}x$seen{$_}" } sort keys %seen;
}

# The heartbeats of every worker: { "n1:0" => {applied => {...}, ...}, ... }.
sub heartbeats {
    my %out;
    for my $n (@nodes) {
        for my $w (0, 1) {
            my $v = eval { redis($rport, 'GET', "$P:node:$n->{name}:$w") };
            $out{"$n->{name}:$w"} = $v;
        }
    }
    return \%out;
}

sub applied_version {
    my $json = shift // return -1;
    return $json =~ /"applied":\{[^}]*"version":(\d+)/ ? $1 : -1;
}

sub applied_epoch {
    my $json = shift // return '';
    return $json =~ /"applied":\{[^}]*"epoch":"([^"]*)"/ ? $1 : '';
}

sub applied_at {
    my $json = shift // return 0;
    return $json =~ /"applied_at_ms":(\d+)/ ? $1 : 0;
}

# Waits until every worker of every node reports version $v (of epoch $epoch when given: a
# new epoch starts again at version 1) (up to $limit s); returns the worst delay from $t0
# (ms, from the workers' own apply times), or undef on timeout.
sub wait_applied {
    my ($v, $t0, $limit, $epoch) = @_;
    my $deadline = time + $limit;
    while (time < $deadline) {
        my $hb = heartbeats();
        if (!grep { applied_version($_) != $v || defined $epoch && applied_epoch($_) ne $epoch }
            values %$hb)
        {
            my $worst = 0;
            for (values %$hb) {
                my $d = applied_at($_) - $t0 * 1000;
                $worst = $d if $d > $worst;
            }
            return $worst;
        }
        sleep 0.005;
    }
    return undef;
}

sub pct {
    my ($p, @v) = @_;
    @v = sort { $a <=> $b } @v;
    return $v[ int($p / 100 * $#v + 0.5) ];
}

start_node($_) for @nodes;

# nothing published yet: the file's snapshot
{
    my $hb;
    for (1 .. 50) { $hb = heartbeats(); last unless grep { !defined } values %$hb; sleep 0.1 }
    is(scalar(grep { defined && /"source":"file"/ } values %$hb), 6,
        'every worker of the three nodes reports, serving the file');
    is(scalar(grep { defined && /"targets":\[\],"targets_at_ms":[1-9]/ } values %$hb), 6,
        '... with its targets\' health: an empty list (no targets)');
    is(statuses('sk-x', 4), '200x12', 'the file\'s keys work');
    is(statuses('sk-new', 2), '401x6', 'namespace "new" does not exist yet');
}

# propagation: 100 changes, each published with its notification
my $v = 0;
my @delays;
for my $i (1 .. 100) {
    $v++;
    my $t0 = publish_snapshot($rport, $P, $v, 'e1', doc(label => $v, limit => 4, pad => $i));
    my $d = wait_applied($v, $t0, 5);
    if (!defined $d) { fail("version $v applied everywhere"); last }
    push @delays, $d;
}
is(scalar @delays, 100, '100 changes applied by all 6 workers');
my ($p50, $p99, $max) = (pct(50, @delays), pct(99, @delays), pct(100, @delays));
diag(sprintf 'propagation publish -> applied on all 6 workers (pub/sub): p50 %.1f ms, p99 %.1f ms, max %.1f ms',
    $p50, $p99, $max);
ok($p99 < 1000, "p99 under 1 s ($p99 ms)");

# the notification lost: the poll (1 s) finds it
my @polled;
for my $i (1 .. 5) {
    $v++;
    my $t0 = publish_snapshot($rport, $P, $v, 'e1', doc(label => $v, limit => 4), notify => 0);
    my $d = wait_applied($v, $t0, 5);
    if (!defined $d) { fail("version $v applied without notification"); last }
    push @polled, $d;
}
diag(sprintf 'propagation without the pub/sub message (poll=1s): p50 %.0f ms, max %.0f ms',
    pct(50, @polled), pct(100, @polled));
ok(pct(100, @polled) < 1500, 'without the message, within the poll interval (+ margin)');

# a revoked key and a new namespace, without a reload
$v++;
my $t0 = publish_snapshot($rport, $P, $v, 'e1', doc(label => $v, limit => 4, revoke_x => 1, new => 1));
ok(defined wait_applied($v, $t0, 2), "version $v (sk-x revoked, namespace new) applied");
is(statuses('sk-x', 6), '401x18', 'the revoked key gets 401 on every worker of every node');
is(statuses('sk-new', 6), '200x18', 'the new namespace works everywhere, without a reload');
is(statuses('sk-a', 2), '200x6', 'the other key still works');
my $good = $v;

# counters survive a snapshot that does not change their policy
is(chat($nodes[0]{port}, 'sk-lim'), 200, 'lim: request 1 of 4');
is(chat($nodes[0]{port}, 'sk-lim'), 200, 'lim: request 2 of 4');
$v++;
$t0 = publish_snapshot($rport, $P, $v, 'e1', doc(label => $v, limit => 4, revoke_x => 1, new => 1, pad => 'x'));
ok(defined wait_applied($v, $t0, 2), "version $v (another namespace added) applied");
is(chat($nodes[0]{port}, 'sk-lim'), 200, 'lim: request 3 of 4 (the count survived)');
is(chat($nodes[0]{port}, 'sk-lim'), 200, 'lim: request 4 of 4');
is(chat($nodes[0]{port}, 'sk-lim'), 429, 'lim: request 5 is refused: the window was not reset');
$good = $v;

# refused snapshots: the old one stays, the error is reported once
my %bad = (
    sha256           => sub { publish_snapshot($rport, $P, $_[0], 'e1', doc(label => 'bad', limit => 4), sha => 'a' x 64) },
    invalid          => sub { publish_snapshot($rport, $P, $_[0], 'e1', '{"namespaces": [') },
    invalid_dup      => sub { publish_snapshot($rport, $P, $_[0], 'e1', '{"version":"1","version":"2","namespaces":[]}') },
    invalid_policy   => sub { publish_snapshot($rport, $P, $_[0], 'e1', doc(label => 'bad', limit => '"many"')) },
    missing_snapshot => sub { publish_snapshot($rport, $P, $_[0], 'e1', '{}', snapshot => 0) },
);
my %says = (
    sha256           => qr/has sha256 [0-9a-f]{64}, the head says a{64}/,
    invalid          => qr/EOF while parsing/,
    invalid_dup      => qr/version: appears twice/,
    invalid_policy   => qr/namespaces\[1\]\.policies\[0\]\.limit/,
    missing_snapshot => qr/cfg:snap:\d+ does not exist/,
);
for my $case (sort keys %bad) {
    $v++;
    $bad{$case}->($v);
    my $reason = $case =~ s/_.*//r;
    $reason = 'missing_snapshot' if $case eq 'missing_snapshot';
    # on node 2 (its status) and node 3 (whose metrics count the refusals below): the next
    # head must not come before node 3 has seen this one
    my ($seen, $body);
    for my $node (@nodes[1, 2]) {
        undef $seen;
        for (1 .. 40) {
            (undef, $body) = http($node->{port}, 'GET', '/status');
            if ($body =~ /"last_error":\{"at_ms":\d+,"message":"((?:[^"\\]|\\.)*)","reason":"$reason"\}/
                && (my $m = $1) =~ $says{$case}) { $seen = $m; last }
            sleep 0.1;
        }
        last unless defined $seen;
    }
    ok(defined $seen, "$case: refused, reported as $reason with what is wrong") or diag($body);
    is(applied_version(heartbeats()->{'n2:0'}), $good, "$case: version $good still served");
    is(statuses('sk-new', 2), '200x6', "$case: the old snapshot keeps answering");
}
# a lower version is ignored; a good higher one is taken after the refusals
my $refused_head = $v;
publish_snapshot($rport, $P, $good - 1, 'e1', doc(label => 'lower', limit => 4));
sleep 1.5;
is(applied_version(heartbeats()->{'n3:1'}), $good, 'a lower version is ignored');
$v++;
$t0 = publish_snapshot($rport, $P, $v, 'e1', doc(label => $v, limit => 4, revoke_x => 1, new => 1, pad => 'x'));
ok(defined wait_applied($v, $t0, 2), "a good version ($v) after the refused ones is applied");
{
    my ($st, $m) = http($nodes[2]{port}, 'GET', '/metrics');
    like($m, qr/^gateway_config_info\{version="$v",source="redis",sha256="[0-9a-f]{64}"\} 1$/m,
        'gateway_config_info names the applied version');
    for my $r (qw(sha256 invalid missing_snapshot)) {
        my ($n) = $m =~ /^gateway_config_sync_errors_total\{reason="$r"\} (\d+)$/m;
        ok(($n // 0) >= 1, "gateway_config_sync_errors_total{reason=\"$r\"} counted ($n)");
    }
    my ($inv) = $m =~ /^gateway_config_sync_errors_total\{reason="invalid"\} (\d+)$/m;
    ok($inv <= 6, "each bad head counted once per worker, not at every poll ($inv for 3 heads x 2 workers)");
    like($m, qr/^gateway_config_seconds_behind 0$/m, 'not behind');
    like($m, qr/^gateway_config_last_success_timestamp_seconds (\d+)$/m, 'last success time');
}
# a new epoch: any version is taken
$t0 = publish_snapshot($rport, $P, 1, 'e2', doc(label => 'epoch2', limit => 4, new => 1));
ok(defined wait_applied(1, $t0, 2, 'e2'), 'a new epoch is taken at version 1');
is(statuses('sk-x', 2), '200x6', 'its content is served (sk-x back)');
$v = 1;

# the status handler: parked on the bridge while Redis answers
{
    my @socks = map {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $nodes[0]{port});
        print $s "GET /status HTTP/1.0\r\n\r\n";
        $s
    } 1 .. 100;
    my $ok = 0;
    for my $s (@socks) { local $/; my $r = <$s> // ''; $ok++ if $r =~ m{\AHTTP/1\.1 200} && $r =~ /"current":true/ }
    is($ok, 100, '100 status requests at once read the live head: all current');
}

# Redis stopped (SIGSTOP): requests never wait for it
kill 'STOP', $redis_pid;
{
    my ($fails, $slow, $n) = (0, 0, 0);
    my $until = time + 2.5;
    while (time < $until) {
        for my $node (@nodes) {
            my $t = time;
            my $st = chat($node->{port}, 'sk-x');
            $n++;
            $fails++ if $st != 200;
            $slow++ if time - $t > 0.2;
        }
    }
    is($fails, 0, "Redis stopped: 0 of $n requests failed");
    is($slow, 0, 'and none waited for Redis');
    my $t = time;
    my ($st, $body) = http($nodes[0]{port}, 'GET', '/status');
    my $took = time - $t;
    is($st, 504, 'the status handler answers 504 when Redis does not answer');
    like($body, qr/"code":"store_timeout"/, '... as JSON');
    ok($took >= 0.25 && $took < 1, sprintf('... after its timeout (%.2f s, timeout=300ms)', $took));
    # a client that goes away while its request is parked
    for (1 .. 5) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $nodes[0]{port});
        print $s "GET /status HTTP/1.0\r\n\r\n";
        close $s;
    }
    # parked requests across a reload: the old workers answer them before they exit
    my @socks = map {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $nodes[1]{port});
        print $s "GET /status HTTP/1.0\r\n\r\n";
        $s
    } 1 .. 20;
    sleep 0.05;
    kill 'HUP', $nodes[1]{pid};
    my $answered = 0;
    for my $s (@socks) { local $/; my $r = <$s> // ''; $answered++ if $r =~ m{\AHTTP/1\.1 504} }
    is($answered, 20, 'requests parked during a reload get their answer (504) from the old workers');
}
kill 'CONT', $redis_pid;
sleep 1.5;
{
    my ($st, $body) = http($nodes[0]{port}, 'GET', '/status');
    like($body, qr/"parked_requests":0/, 'no request is left parked (the aborted ones were released)');
    like($body, qr/"current":true/, 'Redis back: the node is current');
}

# Redis killed: the nodes keep their snapshot; a node restarted meanwhile serves its LKG
kill 'KILL', $redis_pid;
waitpid($redis_pid, 0);
$redis_pid = undef;
{
    my ($fails, $n) = (0, 0);
    for (1 .. 30) { for my $node (@nodes) { $n++; $fails++ if chat($node->{port}, 'sk-x') != 200 } }
    is($fails, 0, "Redis killed: 0 of $n requests failed");
}
stop($nodes[2]{pid});
$nodes[2]{pid} = undef;
start_node($nodes[2]);
{
    my ($st, $m);
    for (1 .. 30) {
        ($st, $m) = http($nodes[2]{port}, 'GET', '/metrics');
        last if $m =~ /^gateway_config_sync_errors_total\{reason="unreachable"\} [1-9]/m;
        sleep 0.1;
    }
    like($m, qr/^gateway_config_info\{version="1",source="lkg",sha256="[0-9a-f]{64}"\} 1$/m,
        'a node restarted while Redis is down serves its last-known-good snapshot');
    is(statuses('sk-new', 2), '200x6', 'with its content');
    like($m, qr/^gateway_config_sync_errors_total\{reason="unreachable"\} [1-9]/m,
        'Redis unreachable is counted');
}

# Redis back, empty (it keeps nothing): the nodes keep what they serve until a publish
$redis_pid = start_redis($rport, $rdir);
sleep 1.5;
is(statuses('sk-new', 2), '200x6', 'an empty Redis does not make a node forget its snapshot');
$t0 = publish_snapshot($rport, $P, 1, 'e3', doc(label => 'e3', limit => 4, revoke_x => 1));
ok(defined wait_applied(1, $t0, 3, 'e3'), 'after the outage, a new publish reaches every node');
is(statuses('sk-new', 2), '401x6', 'and is served');

# nginx -s reload: new workers start from the last-known-good snapshot, then follow Redis
kill 'HUP', $nodes[0]{pid};
sleep 1;
is(statuses('sk-new', 2), '401x6', 'after a reload, the applied snapshot is still served');

# the error logs: only the expected errors
for my $n (@nodes) {
    my $log = slurp("$n->{dir}/logs/error.log");
    my @bad = grep { /\[(error|alert|emerg|crit)\]/ && !/refused snapshot/ } split /\n/, $log;
    is(scalar @bad, 0, "$n->{name}: no unexpected error in the log") or diag(join "\n", @bad[0 .. ($#bad < 5 ? $#bad : 5)]);
    unlike($log, qr/open socket .* left/, "$n->{name}: no socket left open at a worker's exit");
}
like(slurp("$nodes[1]{dir}/logs/error.log"), qr/refused snapshot \d+ \(epoch "e1"\): snapshot \d+ has sha256/,
    'a refused snapshot is logged with its reason');

done_testing();
