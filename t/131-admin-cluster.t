# The config center on two nodes (nginx instances of two workers, each serving the admin API
# and the gateway) with a private mariadbd and a private redis-server: both nodes starting at
# once (one schema migration, one bootstrap admin), a key generated on one node working on
# both within 1 s and revoked within 1 s, a key expiring on both at its time, propagation
# with ?wait_applied, 20 concurrent writers (no lost update), 20 writers with the same
# If-Match (exactly one wins), Redis stopped and flushed (writes commit with published:false,
# the reconciler publishes them), MySQL stopped and killed under gateway load (API 503 within
# its timeout, 0 failed gateway requests, recovery by itself).
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use POSIX qw(strftime);
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

my $root   = abs_path(dirname(__FILE__) . '/..');
my $sroot  = $ENV{TEST_NGINX_SERVROOT} || "$root/t/servroot";
my $base   = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 150;
my ($rport, $mport) = ($base + 8, $base + 9);
my $dir    = "$sroot-admin-cluster";
my $P      = "t131-$$";
my $DB     = 'aigw_t131';
my $PW     = 'cluster admin password';
my @nodes  = map { { name => "n$_", api => $base + 2 * $_ - 1, gw => $base + 2 * $_, dir => "$dir/n$_" } } 1 .. 2;

remove_tree($dir);
make_path($dir);
my ($redis_pid, $mysql_pid);
END {
    local $?;
    stop($_) for grep { $_ } map { $_->{pid} } @nodes;
    if ($redis_pid) { kill 'CONT', $redis_pid; kill 'KILL', $redis_pid; waitpid($redis_pid, 0) }
    if ($mysql_pid) { kill 'CONT', $mysql_pid; kill 'TERM', $mysql_pid; waitpid($mysql_pid, 0) }
}
$redis_pid = start_redis($rport, $dir);
$mysql_pid = start_mariadb($mport, "$dir/mysql");
create_db($DB, $mport);

for my $n (@nodes) {
    write_conf($n->{dir}, <<"_EOC_");
${\ main_conf($module, 2) }
http {
    access_log off;
    ai_gateway_secret_key secret.key;
    ai_gateway_config gw.json;
    ai_gateway_redis redis://127.0.0.1:$rport prefix=$P timeout=300ms;
    ai_gateway_config_source redis poll=1s heartbeat=1s node=$n->{name};
    ai_gateway_mysql mysql://root\@127.0.0.1:$mport/$DB timeout=1s;
    ai_gateway_admin_bootstrap file=admin.pw;
    ai_gateway_limit_zone gw_limits 1m;
    server {
        listen 127.0.0.1:$n->{api};
        location /api/ { ai_gateway_admin; }
    }
    server {
        listen 127.0.0.1:$n->{gw};
        location /v1/ { ai_gateway on; ai_gateway_mock_provider; }
    }
}
_EOC_
    for ([ 'gw.json', '{}' ], [ 'admin.pw', "$PW\n" ], [ 'secret.key', ('ab' x 32) . "\n" ]) {
        open my $fh, '>', "$n->{dir}/conf/$_->[0]" or die $!;
        print $fh $_->[1];
        close $fh;
    }
    chmod 0600, "$n->{dir}/conf/secret.key";
}

# both nodes at once: they race for the migration and the bootstrap
for my $n (@nodes) {
    is(system($nginx, '-p', "$n->{dir}/", '-c', 'conf/nginx.conf'), 0, "$n->{name} started");
}
for my $n (@nodes) {
    $n->{pid} = wait_pid("$n->{dir}/logs/nginx.pid");
    ok(wait_port($n->{api}) && wait_port($n->{gw}), "$n->{name} listens");
}

my $s;
for (1 .. 100) { last if $s = api_login($nodes[0]{api}, 'admin', $PW); sleep 0.1 }
ok($s, 'the bootstrap admin logs in');
my $s2 = api_login($nodes[1]{api}, 'admin', $PW);
ok($s2, '... on the other node too');
my ($count, $max) = split /\t/, sql($DB, 'SELECT COUNT(*), MAX(version) FROM schema_migrations', $mport);
ok($max >= 1 && $count == $max, "every migration applied once by two racing nodes ($count)");
is(sql($DB, 'SELECT COUNT(*) FROM admin_users', $mport), "1\n", 'one bootstrap admin for two racing nodes');

sub call { my ($node, $m, $p, %o) = @_; api_call($nodes[$node]{api}, $m, $p, auth => ($node ? $s2 : $s), %o) }

# (status) of one chat completion on the gateway of node $i with $key
sub chat {
    my ($i, $key) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $nodes[$i]{gw}, Timeout => 5)
        or return 0;
    my $body = '{"model":"m","messages":[{"role":"user","content":"hi"}]}';
    print $sock "POST /v1/chat/completions HTTP/1.0\r\nHost: gw\r\nAuthorization: Bearer $key\r\n"
        . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    local $/;
    my $r = <$sock> // '';
    return $r =~ m{\AHTTP/1\.\d (\d+)} ? $1 : 0;
}

# Seconds until every node's gateway answers $want for $key (undef after $limit s).
sub until_both {
    my ($key, $want, $limit) = @_;
    my $t0 = time;
    while (time - $t0 < $limit) {
        return time - $t0 if chat(0, $key) == $want && chat(1, $key) == $want;
        sleep 0.01;
    }
    return;
}

my $r = call(0, 'POST', '/api/v1/namespaces', body => { code => 'team' });
is($r->{status}, 201, 'a namespace') or diag($r->{body});

# a key made on node 1 works on both nodes within 1 s; revoked, it stops within 1 s
{
    my $r = call(0, 'POST', '/api/v1/namespaces/team/keys', body => { name => 'k1' });
    my $t = time;
    is($r->{status}, 201, 'a key generated');
    my ($key, $id) = ($r->{json}{data}{key}, $r->{json}{data}{id});
    my $up = until_both($key, 200, 1);
    ok(defined $up, sprintf('... works on both nodes within 1 s (%.0f ms after the answer)', ($up // 9) * 1000));
    $r = call(1, 'DELETE', "/api/v1/namespaces/team/keys/$id");
    is($r->{status}, 200, 'revoked on the other node');
    my $down = until_both($key, 401, 1);
    ok(defined $down, sprintf('... 401 on both nodes within 1 s (%.0f ms)', ($down // 9) * 1000));
}

# a key with an expiry stops at its time on both nodes
{
    my $at = int(time) + 3;
    my $r = call(0, 'POST', '/api/v1/namespaces/team/keys?wait_applied=2s',
        body => { name => 'short', expires_at => strftime('%Y-%m-%dT%H:%M:%SZ', gmtime $at) });
    is($r->{status}, 201, 'a key that expires in about 3 s');
    my $key = $r->{json}{data}{key};
    is(chat(0, $key) . ',' . chat(1, $key), '200,200', '... works on both nodes before its expiry');
    sleep 0.01 while time < $at - 0.3;
    is(chat(0, $key) . ',' . chat(1, $key), '200,200', '... still 0.3 s before it');
    sleep 0.01 while time < $at;
    my $lag = until_both($key, 401, 1.5);
    ok(defined $lag, sprintf('... 401 on both nodes %.0f ms after its expiry (nginx time is cached per event loop turn)', ($lag // 9) * 1000));
}

# a rotation: the new key works at once, the old one until its grace ends, on both nodes
{
    my $r = call(0, 'POST', '/api/v1/namespaces/team/keys?wait_applied=2s', body => { name => 'rot' });
    my ($old, $id) = ($r->{json}{data}{key}, $r->{json}{data}{id});
    $r = call(1, 'POST', "/api/v1/namespaces/team/keys/$id/rotate?wait_applied=2s", body => { grace => '2s' });
    my $t = time;
    is($r->{status}, 201, 'a key rotated with a grace of 2 s');
    my $new = $r->{json}{data}{key};
    is(join(',', map { chat($_, $new), chat($_, $old) } 0, 1), '200,200,200,200',
        '... the new key and the old one both work on both nodes');
    my $ends = $t + 2;
    sleep 0.01 while time < $ends - 0.5;
    is(chat(0, $old) . ',' . chat(1, $old), '200,200', '... the old one still 0.5 s before its grace ends');
    my $lag = until_both($old, 401, 3);
    ok(defined $lag && time - $ends < 1.5, sprintf('... then 401 on both nodes (%.1f s after the rotation)', time - $t));
    is(chat(0, $new) . ',' . chat(1, $new), '200,200', '... while the new key keeps working');
}

# propagation: writes that wait until every live worker applied them
{
    my (@waited, @total);
    for my $i (1 .. 20) {
        my $t = time;
        my $r = call($i % 2, 'POST', '/api/v1/namespaces?wait_applied=2s', body => { code => "p$i" });
        push @total, (time - $t) * 1000;
        push @waited, $r->{json}{applied}{waited_ms} // 9999;
        if ($r->{status} != 201 || !$r->{json}{applied}{complete} || @{ $r->{json}{applied}{applied} } != 4) {
            fail("wait_applied $i") ; diag($r->{body}); last;
        }
    }
    is(scalar @total, 20, '20 writes with wait_applied=2s: every one applied by all 4 workers');
    my @w = sort { $a <=> $b } @waited;
    my @t = sort { $a <=> $b } @total;
    diag(sprintf 'wait_applied: waited p50 %d ms, max %d ms; write + propagation p50 %.1f ms, p99 %.1f ms',
        $w[9], $w[-1], $t[9], $t[19]);
    my $pending = call(0, 'GET', '/api/v1/nodes');
    is(scalar @{ $pending->{json}{items} }, 2, 'GET /nodes lists both nodes');
    ok((grep { $_->{current} } @{ $pending->{json}{items} }) == 2, '... both on the current version');
}

# 20 concurrent writers, spread over both nodes: no lost update
{
    my $before = sql($DB, 'SELECT MAX(version) FROM config_revisions', $mport) + 0;
    my @kids;
    for my $i (1 .. 20) {
        my $pid = fork // die;
        if (!$pid) {
            my $r = call($i % 2, 'POST', '/api/v1/namespaces', body => { code => "c$i" });
            if ($r->{status} != 201) { open my $f, '>', "$dir/writer-$i"; print $f "$r->{status} $r->{body}" }
            POSIX::_exit($r->{status} == 201 ? 0 : 1);
        }
        push @kids, $pid;
    }
    my $failed = 0;
    for (@kids) { waitpid($_, 0); $failed++ if $? }
    is($failed, 0, '20 concurrent creations on two nodes: all 201')
        or diag(join '', map { slurp($_) } glob "$dir/writer-*");
    my $after = sql($DB, 'SELECT MAX(version) FROM config_revisions', $mport) + 0;
    is($after - $before, 20, '... 20 revisions, one each');
    is(sql($DB, "SELECT COUNT(*) FROM namespaces WHERE code LIKE 'c%'", $mport), "20\n", '... all 20 namespaces stored');
    my $doc = call(1, 'GET', '/api/v1/config')->{json};
    is(scalar(grep { $_->{code} =~ /^c\d+$/ } @{ $doc->{namespaces} }), 20, '... all 20 in the published document');
}

# 20 writers with the same If-Match: exactly one wins
{
    my $etag = call(0, 'GET', '/api/v1/namespaces/team')->{headers}{etag};
    ok($etag, 'the namespace has an ETag');
    my @kids;
    for my $i (1 .. 20) {
        my $pid = fork // die;
        if (!$pid) {
            my $r = call($i % 2, 'PATCH', '/api/v1/namespaces/team',
                body => { description => "writer $i" }, headers => { 'If-Match' => $etag });
            if ($r->{status} != 200 && $r->{status} != 412) { open my $f, '>', "$dir/match-$i"; print $f "$r->{status} $r->{body}" }
            POSIX::_exit($r->{status} == 200 ? 0 : $r->{status} == 412 ? 1 : 2);
        }
        push @kids, $pid;
    }
    my %by;
    for (@kids) { waitpid($_, 0); $by{ $? >> 8 }++ }
    is($by{0} // 0, 1, 'one writer with the ETag wins') or diag(join ', ', map { "exit $_: $by{$_}" } sort keys %by);
    is($by{1} // 0, 19, 'the 19 others get 412') or diag(join '', map { slurp($_) } glob "$dir/match-*");
}

# Redis stopped: writes commit and say published:false; the reconciler publishes them
{
    kill 'STOP', $redis_pid;
    my $t = time;
    my $r = call(0, 'POST', '/api/v1/namespaces', body => { code => 'offline' });
    my $took = time - $t;
    is($r->{status}, 201, 'Redis stopped: the write commits');
    is($r->{json}{published}, JSON::PP::false, '... and says published: false');
    ok($took < 1.5, sprintf('... within the Redis timeout (%.2f s)', $took));
    my $v = $r->{json}{config_version};
    kill 'CONT', $redis_pid;
    my $seen;
    for (1 .. 60) {
        my $h = eval { redis($rport, 'GET', "$P:cfg:head") } // '';
        if ($h =~ /"version":$v\b/) { $seen = 1; last }
        sleep 0.1;
    }
    ok($seen, "Redis back: version $v is published by the reconciler");
    # Redis restarted empty: the head is published again
    kill 'KILL', $redis_pid;
    waitpid($redis_pid, 0);
    $redis_pid = start_redis($rport, $dir);
    undef $seen;
    for (1 .. 80) {
        my $h = eval { redis($rport, 'GET', "$P:cfg:head") } // '';
        if ($h =~ /"version":$v\b/) { $seen = 1; last }
        sleep 0.1;
    }
    ok($seen, 'Redis restarted empty: the reconciler publishes the head again');
    # the notice is written on the nginx thread after the publish: it may trail the head a little
    my $said;
    for (1 .. 30) {
        $said = join('', map { slurp("$_->{dir}/logs/error.log") } @nodes) =~ /Redis was behind MySQL: republished version $v/;
        last if $said;
        sleep 0.1;
    }
    ok($said, '... and says so in the error log');
    # the head is there but its snapshot key was lost: published again
    redis($rport, 'DEL', "$P:cfg:snap:$v");
    undef $seen;
    for (1 .. 60) {
        if (eval { redis($rport, 'EXISTS', "$P:cfg:snap:$v") }) { $seen = 1; last }
        sleep 0.1;
    }
    ok($seen, 'a lost snapshot key is published again');
}

# MySQL stopped, then killed: the API answers 503 within its timeout, the gateway does not
# notice, and the API recovers by itself
{
    my $key = call(0, 'POST', '/api/v1/namespaces/team/keys?wait_applied=2s', body => { name => 'load' })->{json}{data}{key};
    ok($key, 'a key for the load');
    my ($fails, $n) = (0, 0);
    my $load = sub {
        my $until = time + shift;
        while (time < $until) { for my $i (0, 1) { $n++; $fails++ if chat($i, $key) != 200 } }
    };
    kill 'STOP', $mysql_pid;
    my $t = time;
    my $r = call(1, 'GET', '/api/v1/namespaces');
    my $took = time - $t;
    is($r->{status}, 503, 'MySQL stopped: the API answers 503');
    is($r->{json}{error}{code}, 'store_unavailable', '... as JSON');
    ok($took < 2.5, sprintf('... within its timeout (%.2f s, timeout=1s)', $took));
    $load->(2);
    kill 'CONT', $mysql_pid;
    my $ok;
    for (1 .. 50) { if (call(1, 'GET', '/api/v1/namespaces')->{status} == 200) { $ok = 1; last } sleep 0.1 }
    ok($ok, 'MySQL continued: the API answers again');
    kill 'KILL', $mysql_pid;
    waitpid($mysql_pid, 0);
    undef $mysql_pid;
    $t = time;
    $r = call(0, 'POST', '/api/v1/namespaces', body => { code => 'lost' });
    $took = time - $t;
    is($r->{status}, 503, 'MySQL killed: writes answer 503');
    ok($took < 1.5, sprintf('... at once (%.2f s)', $took));
    $load->(2);
    # a node that starts while MySQL is down: nginx starts, the gateway serves what Redis
    # publishes, the API answers 503 until MySQL is back
    stop($nodes[1]{pid});
    is(system($nginx, '-p', "$nodes[1]{dir}/", '-c', 'conf/nginx.conf'), 0, 'node 2 restarts while MySQL is down');
    $nodes[1]{pid} = wait_pid("$nodes[1]{dir}/logs/nginx.pid");
    ok(wait_port($nodes[1]{api}) && wait_port($nodes[1]{gw}), '... and listens');
    my $serving;
    for (1 .. 100) { if (chat(1, $key) == 200) { $serving = 1; last } sleep 0.05 }
    ok($serving, '... its gateway serves the published configuration');
    is(call(1, 'GET', '/api/v1/namespaces')->{status}, 503, '... its API answers 503');
    $load->(1);
    $mysql_pid = start_mariadb($mport, "$dir/mysql");
    undef $ok;
    for (1 .. 80) { if (call(0, 'GET', '/api/v1/namespaces/team')->{status} == 200) { $ok = 1; last } sleep 0.1 }
    ok($ok, 'MySQL restarted: the API recovers by itself');
    undef $ok;
    for (1 .. 80) { if (call(1, 'GET', '/api/v1/namespaces/team')->{status} == 200) { $ok = 1; last } sleep 0.1 }
    ok($ok, '... on the node that started without it too');
    is($fails, 0, "gateway requests during the MySQL outages: 0 of $n failed");
    is(sql($DB, "SELECT COUNT(*) FROM namespaces WHERE code = 'lost'", $mport), "0\n", 'the refused write left nothing');
}

for my $n (@nodes) {
    my $log = slurp("$n->{dir}/logs/error.log");
    unlike($log, qr/\[(alert|emerg)\]/, "$n->{name}: no alert or emerg in the error log");
    unlike($log, qr/\Q$PW\E/, "$n->{name}: the admin password is never logged");
    stop($n->{pid});
    undef $n->{pid};
}
drop_db($DB, $mport);
done_testing();
