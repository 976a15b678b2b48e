# Cluster-wide limits (ai_gateway_cluster_limits) on three nodes (nginx instances of two
# workers each, `listen ... reuseport` so that connections spread over both workers) sharing
# a private redis-server; the mock provider answers in each node's own /v1/ location:
#
#   1. exactness: 600 requests from 30 concurrent clients, round-robin over the nodes, for a
#      namespace allowed 100 per minute (mode exact, the node's default): exactly 100 pass
#      and see remaining 99 .. 0 once each, 500 get 429 with Retry-After, the limit in
#      x-ratelimit-limit-requests and the local limiter's JSON error; every node and worker
#      answered some; the window in Redis (a hash under <P>:lim:{exact}:<16 hex>, with an
#      expiry) holds 100; Redis calls per request from gateway_redis_calls_total (printed);
#      with a window and a daily quota in one namespace, 120 requests: the quota (40) admits
#      exactly 40 and the window beside it counts only those;
#   2. tokens: 60 requests (JSON and streams with usage, different prompts and max_tokens)
#      over the nodes; once they ended, the namespace's Redis window and monthly token quota
#      both hold exactly the sum of the usage.total_tokens the clients were sent (every
#      reservation settled with actual usage, across nodes);
#   3. concurrency: 30 slow streams at once over the nodes, limit 10: exactly 10 pass, 20 get
#      429 concurrency_limit_exceeded; the node holding most of them is SIGKILLed (master and
#      workers, no chance to give anything back): its slots stay taken for a while, then come
#      back within lease (3 s) + 1.5 s, up to 10 in flight in total; past their lease the
#      running streams still hold their slots (renewed); the survivors' streams finish whole;
#      once every stream ended the lease set is empty;
#   4. latency: sequential admission p50/p99 in exact mode and in a namespace in mode local
#      (printed; exact p50 < 50 ms), nothing of the local one in Redis; while 6 clients send
#      exact requests, a location without the module answers with p99 < 50 ms (the event loop
#      never waits for Redis);
#   5. faults under a bounded load (2 clients per node, 20 requests/s each, for 11 s) on a
#      fail_open namespace allowed 60 per minute and a fail_closed one: Redis SIGSTOPped for
#      5 s, then SIGKILLed: no fail_open request fails (only 200 and 429), the fail_open
#      namespace admits at most nodes x fraction x limit while Redis is gone and refuses the
#      rest, every fail_closed request answers 503 limits_unavailable with Retry-After, no
#      request waits longer than the Redis timeout (+ margin) and few wait at all (the
#      breaker), every node's breaker opened (metrics); Redis restarted empty on the same
#      port: every worker admits through Redis again within probe (1 s) + 2 s, a fresh
#      namespace allowed 5 gets exactly 5 across the nodes, and the fail_open window in the
#      new Redis holds what the nodes admitted without Redis (replayed);
#   6. Redis SIGSTOPped for 2 s, then continued, under load on two fail_open namespaces that
#      never reach their limits: every request 200, none waits more than the timeout; once
#      settled the requests window holds one per 200 (the scripts that ran late were given
#      back, the node's own admissions replayed) and the tokens window the usage the clients
#      were sent;
#   7. a reload (HUP) while 6 streams run on a node: the old workers finish them, and what
#      those requests took is settled before the workers exit: leases released at once (not
#      left to expire), the tokens window holds the usage the clients were sent;
#   8. no [alert], [crit] or [emerg] in any node's error log, and no [error] but one line per
#      breaker opening (each followed by its notice that Redis is back).
#
# Figures (counts, Redis calls per request, settlement time, lease recovery, latencies,
# requests during the outages, recovery time) are printed with diag. About 35 s.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
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
use Test::AIGateway::Load;

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;

my $root  = abs_path(dirname(__FILE__) . '/..');
my $sroot = $ENV{TEST_NGINX_SERVROOT} || "$root/t/servroot";
my $base  = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 200;
my $rport = $base + 9;
my $dir   = "$sroot-cluster-limits";
my $P     = "t140-$$";
my @nodes = map { { name => "n$_", gw => $base + $_, dir => "$dir/n$_" } } 1 .. 3;

# the cluster limits' settings, as in the directive below
my ($TIMEOUT, $FRACTION, $BREAKER, $PROBE, $LEASE) = (0.1, 0.5, 3, 1, 3);
# What a worker logs when its breaker opens (the one [error] section 5 causes; the requests
# decided without Redis are [warn]) and when it closes again
my $REDIS_DOWN = qr/\[error\] \d+#\d+: ai_gateway: Redis unreachable for cluster limits \(.+\): breaker open, limits decided without Redis$/;
my $REDIS_UP   = qr/\[notice\] \d+#\d+: ai_gateway: Redis reachable again: cluster limits back$/;
my $INTERVAL = 0.175;    # between a slow stream's events: 41 events, about 7 s

my %policies = (
    exact   => [ { type => 'requests', limit => 100, window => '1m' } ],
    tok     => [ { type => 'tokens', limit => 100_000_000, window => '1m' },
                 { type => 'quota', limit => 1_000_000_000, period => 'month', unit => 'tokens' } ],
    quota   => [ { type => 'requests', limit => 1000, window => '1m' },
                 { type => 'quota', limit => 40, period => 'day', unit => 'requests' } ],
    conc    => [ { type => 'concurrency', limit => 10 } ],
    latx    => [ { type => 'requests', limit => 1_000_000, window => '1m' } ],
    latl    => [ { type => 'requests', limit => 1_000_000, window => '1m', mode => 'local' } ],
    fopen   => [ { type => 'requests', limit => 60, window => '1m', on_failure => 'fail_open' } ],
    fclosed => [ { type => 'requests', limit => 1_000_000, window => '1m', on_failure => 'fail_closed' } ],
    fresh   => [ { type => 'requests', limit => 5, window => '1m' } ],
    hang    => [ { type => 'requests', limit => 1_000_000, window => '1m', on_failure => 'fail_open' } ],
    hangtok => [ { type => 'tokens', limit => 100_000_000, window => '1m', on_failure => 'fail_open' } ],
    rl      => [ { type => 'tokens', limit => 100_000_000, window => '1m' }, { type => 'concurrency', limit => 100 } ],
);
my $gw_json = JSON::PP->new->canonical->encode({
    version    => 't140-1',
    namespaces => [ map { { code => $_, api_keys => [ sha256_hex("sk-t140-$_") ], policies => $policies{$_} } }
                    sort keys %policies ],
});

# Reuseport would let a node left over from an interrupted run share a port unseen: refuse
# to start when anything answers on the test's ports.
my @busy = grep { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $_, Timeout => 1) }
    $rport, map { $_->{gw} } @nodes;
BAIL_OUT("something already listens on 127.0.0.1:@busy (a leftover of an interrupted run?)") if @busy;

remove_tree($dir);
make_path($dir);
my $redis_pid;
# an interrupted run still stops what it started (END runs on exit, not on a fatal signal)
$SIG{$_} = sub { exit 1 } for qw(INT TERM HUP);
$SIG{PIPE} = 'IGNORE';
my $main_pid = $$;
END {
    local $?;
    return unless $$ == $main_pid;    # not in a forked client
    stop($_) for grep { $_ } map { $_->{pid} } @nodes;
    if ($redis_pid) { kill 'CONT', $redis_pid; kill 'KILL', $redis_pid; waitpid($redis_pid, 0) }
}
$redis_pid = start_redis($rport, $dir);

for my $n (@nodes) {
    write_conf($n->{dir}, <<"_EOC_");
${\ main_conf($module, 2) }
http {
    access_log off;
    ai_gateway_config gw.json;
    ai_gateway_redis redis://127.0.0.1:$rport prefix=$P timeout=300ms;
    ai_gateway_limit_zone gw_limits 1m;
    ai_gateway_cluster_limits mode=exact timeout=100ms on_failure=fail_open fail_open_fraction=$FRACTION breaker=$BREAKER probe=${PROBE}s lease=${LEASE}s;
    ai_gateway_metrics_zone gw_metrics 1m;
    server {
        listen 127.0.0.1:$n->{gw} reuseport;
        location /v1/ {
            ai_gateway on;
            ai_gateway_mock_provider;
            add_header X-Pid \$pid always;
        }
        location /slow/v1/ {
            ai_gateway on;
            ai_gateway_mock_provider interval=${\ int($INTERVAL * 1000) }ms;
            add_header X-Pid \$pid always;
        }
        location /stream/v1/ {
            ai_gateway on;
            ai_gateway_mock_provider interval=50ms;
            add_header X-Pid \$pid always;
        }
        location = /metrics { ai_gateway_metrics; }
        location = /plain { return 200 "plain\\n"; }
    }
}
_EOC_
    open my $fh, '>', "$n->{dir}/conf/gw.json" or die $!;
    print $fh $gw_json;
    close $fh;
}

for my $n (@nodes) {
    ok(start_node($n), "$n->{name} started and listens")
        or BAIL_OUT("$n->{name}: " . slurp("$n->{dir}/logs/error.log"));
}

##########################################################################################
# 1. Exactness: 100 of 600 across 3 nodes x 2 workers.
##########################################################################################

{
    my $m0 = all_metrics();
    my $t0 = time;
    my @r = parallel(30, sub {
        my $c = shift;
        map { my $n = ($c + $_) % 3; slim(chat($n, 'exact'), $n) } 0 .. 19;
    });
    my $took = time - $t0;
    my %status;
    $status{ $_->{status} // 'none' }++ for @r;
    is_deeply(\%status, { 200 => 100, 429 => 500 }, '600 requests from 30 clients over 3 nodes, limit 100: exactly 100 passed, 500 got 429')
        or diag(explain(\%status), explain([ grep { $_->{error} } @r ]));
    my @ok = grep { $_->{status} == 200 } @r;
    my @limited = grep { $_->{status} == 429 } @r;
    is(scalar(grep { ($_->{ra} // '') =~ /^\d+$/ && $_->{ra} >= 1 && $_->{ra} <= 63 } @limited), scalar @limited,
        '... every 429 has Retry-After between 1 and 63 s');
    is(scalar(grep { ($_->{lim} // '') eq '100' } @limited), scalar @limited, '... and x-ratelimit-limit-requests: 100');
    my $body = qr/^\{"error":\{"message":"Rate limit reached for requests: limit 100, used 100, requested 1\. Please retry after the time in the Retry-After header\.","type":"requests","param":null,"code":"rate_limit_exceeded"\}\}\s*$/;
    is(scalar(grep { ($_->{body} // '') =~ $body } @limited), scalar @limited, "... and the local limiter's JSON error")
        or diag((grep { ($_->{body} // '') !~ $body } @limited)[0]{body});
    is_deeply([ sort { $a <=> $b } map { $_->{rem} // -1 } @ok ], [ 0 .. 99 ],
        'the 100 admitted saw x-ratelimit-remaining-requests 99 .. 0, each once');
    my %per;
    $per{"$_->{node}/$_->{status}"}++ for @r;
    is(scalar(grep { $per{"$_/200"} && $per{"$_/429"} } 0 .. 2), 3,
        'every node admitted some and refused some: ' . join(', ', map { "n" . ($_ + 1) . ' ' . ($per{"$_/200"} // 0) . '/' . ($per{"$_/429"} // 0) } 0 .. 2));
    my %pids = map { $_->{pid} => 1 } grep { $_->{pid} } @r;
    is(scalar(keys %pids), 6, 'all 6 workers answered');

    my @all = @{ redis($rport, 'KEYS', "$P:lim:*") };
    my @bad = grep { !/^\Q$P\E:lim:\{[a-z]+\}:([0-9a-f]{16}|done:\S+)$/ } @all;
    is(scalar(@bad), 0, 'every key is a counter <P>:lim:{<namespace>}:<16 hex digits> (or a settlement marker)')
        or diag("@bad");
    my @keys = lim_keys();
    my @exact = lim_keys('exact');
    is(scalar(@exact), 1, 'one key for the namespace');
    is(hash_sum($exact[0]), 100, '... a hash whose buckets hold 100') if @exact;
    my @no_ttl = grep { redis($rport, 'PTTL', $_) < 0 } @all;
    is(scalar(@no_ttl), 0, 'every limit key expires') or diag("@no_ttl");

    my $m1 = all_metrics();
    my $calls = delta($m0, $m1, 'gateway_redis_calls_total');
    my %by_op = map { my $op = $_; $op => delta($m0, $m1, 'gateway_redis_calls_total', op => $op) } qw(admit finish renew);
    is(delta($m0, $m1, 'gateway_redis_calls_total', result => 'ok'), $calls, "Redis calls: all ok ($calls)");
    ok($by_op{admit} >= 600, "... at least one admit call per request ($by_op{admit})");
    diag(sprintf '1. exactness: 600 requests in %.2f s: %d admitted, %d refused; per node (200/429) %s; '
        . 'Redis calls %d (admit %d, finish %d, renew %d): %.2f per request, %.2f per admitted request',
        $took, scalar @ok, scalar @limited, join(' ', map { ($per{"$_/200"} // 0) . '/' . ($per{"$_/429"} // 0) } 0 .. 2),
        $calls, @by_op{qw(admit finish renew)}, $calls / 600, $calls / (@ok || 1));
}

# two counters in one script: a daily quota of 40 requests refuses, the window beside it
# (1000 a minute) takes nothing from a refused request
{
    my @r = parallel(12, sub {
        my $c = shift;
        map { my $n = ($c + $_) % 3; slim(chat($n, 'quota'), $n) } 0 .. 9;
    });
    my %status;
    $status{ $_->{status} // 'none' }++ for @r;
    is_deeply(\%status, { 200 => 40, 429 => 80 }, '120 requests from 12 clients, daily quota 40: exactly 40 passed')
        or diag(explain(\%status));
    is(scalar(grep { ($_->{body} // '') =~ /"code":"insufficient_quota"/ } grep { $_->{status} == 429 } @r), 80,
        '... the others an OpenAI-shaped quota error') or diag((grep { $_->{status} == 429 } @r)[0]{body});
    my @k = lim_keys('quota');
    is(join(',', map { hash_sum($_) } @k), '40,40', '... the quota and the window in Redis hold 40 each (a refusal takes from neither)');
}

##########################################################################################
# 2. Tokens: the Redis window holds what the responses reported.
##########################################################################################

{
    my $t0 = time;
    my @r = parallel(6, sub {
        my $c = shift;
        map {
            my $i = $c * 10 + $_;
            my $n = $i % 3;
            my %body = (model => 'mock-gpt', messages => [ { role => 'user', content => 'tokens ' x (1 + 3 * $i) } ]);
            $body{max_tokens} = 1 + $i % 9 if $i % 2;
            if ($i % 3 == 0) {
                $body{stream} = JSON::PP::true;
                $body{stream_options} = { include_usage => JSON::PP::true };
            }
            my $r = chat($n, 'tok', JSON::PP->new->encode(\%body));
            my $s = slim($r, $n);
            $s->{stream} = $body{stream} ? 1 : 0;
            $s->{total} = total_tokens($r);
            $s;
        } 0 .. 9;
    });
    my $sent = time - $t0;
    my @ok = grep { $_->{status} == 200 } @r;
    is(scalar @ok, 60, '60 token-counted requests over 3 nodes: all 200');
    my @missing = grep { !defined $_->{total} } @ok;
    is(scalar @missing, 0, '... each reported usage.total_tokens (20 of them in a stream)');
    my $sum = 0;
    $sum += $_->{total} // 0 for @ok;
    my @k = lim_keys('tok');
    is(scalar @k, 2, 'two Redis keys: the tokens window and the monthly token quota');
    my (@held, $waited);
    my $t1 = time;
    while (@k) {
        @held = map { hash_sum($_) } @k;
        if (!grep { $_ != $sum } @held) { $waited = time - $t1; last }
        last if time - $t1 > 3;
        sleep 0.02;
    }
    is(join(',', @held), join(',', map { $sum } @k), "both hold the sum of the usage the clients saw ($sum tokens)");
    my $held = @held ? join('/', @held) : undef;
    my $markers = @{ redis($rport, 'KEYS', "$P:lim:{tok}:done:*") };
    diag(sprintf '2. tokens: 60 requests (20 streamed) in %.2f s, %d tokens reported; the Redis window/quota held %s %s; '
        . '%d settlement markers left in Redis (TTL %s ms)',
        $sent, $sum, $held // 'nothing',
        defined $waited ? sprintf('%.0f ms after the last response', $waited * 1000) : '(not equal after 3 s)',
        $markers, $markers ? redis($rport, 'PTTL', redis($rport, 'KEYS', "$P:lim:{tok}:done:*")->[0]) : '-');
}

##########################################################################################
# 3. Concurrency across nodes; a SIGKILLed node's leases expire.
##########################################################################################

{
    my $req = '{"model":"mock-gpt","messages":[{"role":"user","content":"slow"}],"stream":true}';
    my $open = sub {
        my $n = shift;
        my $s = send_request($nodes[$n]{gw}, 'POST', '/slow/v1/chat/completions', key('conc'), $req);
        my $h = $s ? read_head($s, time + 3) : { status => 0, headers => {}, rest => '' };
        return { node => $n, s => $s, h => $h, t => time };
    };
    my $m0 = all_metrics();
    my $t_start = time;
    my @st = map { { node => $_ % 3, s => send_request($nodes[$_ % 3]{gw}, 'POST', '/slow/v1/chat/completions', key('conc'), $req) } } 0 .. 29;
    for (@st) { $_->{h} = $_->{s} ? read_head($_->{s}, $t_start + 3) : { status => 0, headers => {} } }
    my @held = grep { $_->{h}{status} == 200 } @st;
    my @refused = grep { $_->{h}{status} == 429 } @st;
    is(scalar @held, 10, '30 slow streams at once over 3 nodes, limit 10: exactly 10 admitted');
    is(scalar @refused, 20, '... 20 got 429')
        or diag(join ' ', map { $_->{h}{status} } @st);
    read_rest($_->{s}, $_->{h}, time + 2) for @refused;
    is(scalar(grep { $_->{h}{body} =~ /"code":"concurrency_limit_exceeded"/ && ($_->{h}{headers}{'retry-after'} // '') =~ /^[1-9]\d*$/ } @refused),
        scalar @refused, '... each a concurrency_limit_exceeded error with Retry-After');
    my @count = map { my $n = $_; scalar grep { $_->{node} == $n } @held } 0 .. 2;
    my ($victim) = sort { $count[$b] <=> $count[$a] } 0 .. 2;
    my @survivors = grep { $_ != $victim } 0 .. 2;
    my $k = $count[$victim];
    my @conc = lim_keys('conc');
    is(scalar @conc, 1, 'one Redis key for the leases');
    is(@conc ? redis($rport, 'ZCARD', $conc[0]) : -1, 10, '... a sorted set of 10 leases');

    # the node holding most of them dies at once, master and workers
    my $master = $nodes[$victim]{pid};
    my @procs = ($master, workers($master));
    my $pgid = (split ' ', slurp("/proc/$master/stat") =~ s/^.*\) //sr)[2];
    kill 'KILL', ($pgid && $pgid == $master ? -$master : $master), @procs;
    my $t_kill = time;
    my $gone;
    for (1 .. 50) { if (!grep { alive($_) } @procs) { $gone = 1; last } sleep 0.02 }
    ok($gone, "n" . ($victim + 1) . " (holding $k of the 10 streams) SIGKILLed with its workers");
    undef $nodes[$victim]{pid};
    close $_->{s} for grep { $_->{node} == $victim } @held;
    @held = grep { $_->{node} != $victim } @held;

    # new streams on the survivors until the dead node's slots are back
    my (@new, @other, $first, $back);
    my $i = 0;
    while (@new < $k && time < $t_kill + $LEASE + 3) {
        my $o = $open->($survivors[$i++ % 2]);
        if ($o->{h}{status} == 200) { push @new, $o; $first //= $o->{t} - $t_kill }
        else {
            push @other, $o->{h}{status} if $o->{h}{status} != 429;
            read_rest($o->{s}, $o->{h}, time + 1) if $o->{s};
        }
        sleep 0.05;
    }
    $back = $new[-1]{t} - $t_kill if @new == $k;
    is(scalar @new, $k, "the dead node's $k slots came back to the survivors");
    ok(defined $back && $back <= $LEASE + 1.5,
        sprintf('... within lease + 1.5 s (all %s s after the kill, the first %s s)',
            map { defined $_ ? sprintf('%.2f', $_) : 'never' } $back, $first));
    ok(defined $first && $first >= 0.5, '... not at once: a dead node\'s lease outlives it');
    is(scalar @other, 0, '... every other attempt meanwhile got 429') or diag("@other");
    my @more = map { $open->($_) } @survivors;
    is(join(',', map { $_->{h}{status} } @more), '429,429', 'then 10 in flight again: the next ones get 429');
    read_rest($_->{s}, $_->{h}, time + 1) for grep { $_->{s} } @more;
    # the survivors' first streams are older than a lease by now: renewed, they still count
    sleep_until($t_start + $LEASE + 2);
    my @late = map { $open->($_) } @survivors;
    is(join(',', map { $_->{h}{status} } @late), '429,429',
        sprintf('%.1f s after they started (lease %d s), the running streams still hold their slots (renewed)', time - $t_start, $LEASE));
    read_rest($_->{s}, $_->{h}, time + 1) for grep { $_->{s} } @late;

    # the new streams are abandoned by their clients; the survivors' own streams finish whole
    close $_->{s} for @new;
    read_rest($_->{s}, $_->{h}, $t_start + 12) for @held;
    is(scalar(grep { $_->{h}{complete} && $_->{h}{body} =~ /data: \[DONE\]\n\n\z/ } @held), scalar @held,
        sprintf("the survivors' %d streams finished whole (%.1f s)", scalar @held, time - $t_start));
    my $zcard;
    for (1 .. 60) { $zcard = @conc ? redis($rport, 'ZCARD', $conc[0]) : 0; last unless $zcard; sleep 0.05 }
    is($zcard, 0, 'every stream ended (finished or abandoned): no lease left');
    my @fast = parallel(10, sub { my $n = $survivors[ $_[0] % 2 ]; slim(chat($n, 'conc'), $n) });
    is(scalar(grep { $_->{status} == 200 } @fast), 10, '10 requests at once on the survivors pass again');
    my $renewed = delta($m0, all_metrics(), 'gateway_redis_calls_total', op => 'renew', result => 'ok');
    diag(sprintf "3. concurrency: 10 of 30 admitted (per node %s); n%d killed holding %d: first slot back after %s s, all %d after %s s (lease %d s); %d lease renewals by the survivors",
        join('/', @count), $victim + 1, $k, (defined $first ? sprintf('%.2f', $first) : 'never'), $k,
        (defined $back ? sprintf('%.2f', $back) : 'never'), $LEASE, $renewed);

    unlink "$nodes[$victim]{dir}/logs/nginx.pid";
    ok(start_node($nodes[$victim]), "n" . ($victim + 1) . ' restarted');
}

##########################################################################################
# 4. Latency of admission, exact and local; the event loop does not wait.
##########################################################################################

{
    my %ms;
    for my $ns (qw(latl latx)) {
        for my $i (0 .. 299) {
            my $r = chat($i % 3, $ns);
            push @{ $ms{$ns} }, $r->{status} == 200 ? $r->{ms} : 1e9;
        }
    }
    is(scalar(grep { $_ < 1e9 } @{ $ms{latx} }, @{ $ms{latl} }), 600, '300 sequential requests in mode exact, 300 in mode local: all 200');
    my ($x50, $x99, $l50, $l99) = ((map { percentile($_, @{ $ms{latx} }) } 50, 99), (map { percentile($_, @{ $ms{latl} }) } 50, 99));
    ok($x50 < 50, sprintf('exact admission p50 %.2f ms < 50 ms', $x50));
    is(scalar(lim_keys('latl')), 0, 'the namespace in mode local has nothing in Redis');
    is(scalar(lim_keys('latx')), 1, '... the exact one has its window there');

    my $until = time + 3;
    my @r = parallel(7, sub {
        my $c = shift;
        my @out;
        if ($c == 0) {
            my $i = 0;
            while (time < $until) {
                my $r = http($nodes[$i++ % 3]{gw}, 'GET', '/plain', '', '', 5);
                push @out, { plain => 1, status => $r->{status}, ms => $r->{ms} };
                sleep 0.005;
            }
        } else {
            while (time < $until) {
                my $r = chat($c % 3, 'latx');
                push @out, { status => $r->{status}, ms => $r->{ms} };
            }
        }
        return @out;
    });
    my @plain = grep { $_->{plain} } @r;
    my @load = grep { !$_->{plain} } @r;
    is(scalar(grep { $_->{status} != 200 } @r), 0, sprintf('%d exact requests from 6 clients and %d to a plain location meanwhile: all 200',
        scalar @load, scalar @plain));
    my ($p50, $p99) = map { percentile($_, map { $_->{ms} } @plain) } 50, 99;
    ok($p99 < 50, sprintf('... the plain location p99 %.2f ms < 50 ms while exact requests wait for Redis', $p99));
    diag(sprintf '4. latency (client side, new connection each): exact p50 %.2f ms p99 %.2f ms; local p50 %.2f ms p99 %.2f ms; '
        . 'under exact load (%.0f requests/s, p50 %.2f ms p99 %.2f ms) a plain location answered p50 %.2f ms p99 %.2f ms',
        $x50, $x99, $l50, $l99, @load / 3, (map { percentile($_, map { $_->{ms} } @load) } 50, 99), $p50, $p99);
}

##########################################################################################
# 5. Redis stopped, then killed, under load; then restarted empty.
##########################################################################################

{
    # The bound on fail_open: while Redis is gone each node admits on its own, in its zone,
    # at most limit x fraction = 60 x 0.5 = 30 per window. That count starts from what the
    # node admitted without Redis before (nothing here), not from what the cluster window
    # held: the 60 Redis admitted before the outage do not lower it. Requests sent after
    # the SIGSTOP cannot be admitted by Redis (it never runs again), so those admitted among
    # them are at most 3 x 30 = 90, and the namespace admits at most 60 (Redis, before) + 90
    # = 150 in that minute: 2.5 x its limit, the price of fail_open with this fraction. The
    # load (60 requests/s on the namespace) exceeds both, so the local limit is what refuses.
    my ($A_LIMIT, $N) = (60, scalar @nodes);
    my $bound = $N * $FRACTION * $A_LIMIT;
    my @m0 = map { metrics($_->{gw}) } @nodes;
    my $t0 = time;
    my $end = $t0 + 11;
    my $kids = spawn(6, sub {
        my $c = shift;
        my $n = $c % 3;
        my @out;
        my $next = time;
        while ($next < $end) {
            sleep_until($next);
            my $ns = @out % 2 ? 'fclosed' : 'fopen';
            push @out, slim(chat($n, $ns, undef, 5), $n, $ns);
            $next += 0.05;
        }
        return @out;
    });
    sleep_until($t0 + 1.5);
    my ($a_key) = lim_keys('fopen');
    my $pre = $a_key ? hash_sum($a_key) : 0;
    kill 'STOP', $redis_pid;
    my $t_stop = time;
    sleep_until($t_stop + 5);
    kill 'KILL', $redis_pid;
    waitpid($redis_pid, 0);
    my $t_dead = time;
    undef $redis_pid;
    my @r = collect($kids);
    my @m1 = map { metrics($_->{gw}) } @nodes;

    is(scalar(grep { $_->{error} } @r), 0, 'the load ran') or diag(explain([ grep { $_->{error} } @r ]));
    my @A = grep { $_->{ns} eq 'fopen' } @r;
    my @B = grep { $_->{ns} eq 'fclosed' } @r;
    my @A_out = grep { $_->{t} > $t_stop } @A;
    my @B_out = grep { $_->{t} > $t_stop } @B;
    my %a_st;
    $a_st{ $_->{status} }++ for @A;
    is(scalar(grep { $_->{status} != 200 && $_->{status} != 429 } @A), 0,
        sprintf('fail_open: %d requests, none failed (%s)', scalar @A, join(', ', map { "$_: $a_st{$_}" } sort keys %a_st)));
    # A request sent just before the SIGSTOP may still wait for it: its call times out and
    # it is decided without Redis too (it took about the timeout). Those count with the
    # outage's.
    my $waited = sub { $_[0]{ms} >= $TIMEOUT * 1000 * 0.9 };
    my @A_edge = grep { $_->{t} <= $t_stop && $waited->($_) } @A;
    my $a_in = grep { $_->{t} <= $t_stop && !$waited->($_) && $_->{status} == 200 } @A;
    my $a_out = grep { $_->{status} == 200 } @A_out, @A_edge;
    my $a_out_429 = grep { $_->{status} == 429 } @A_out;
    ok($a_in <= $A_LIMIT, "... before the outage Redis admitted at most the limit ($a_in)");
    is($pre, $A_LIMIT, '... and its window in Redis was full when Redis stopped');
    ok($a_out > 0 && $a_out <= $bound, "... without Redis $a_out of " . (@A_out + @A_edge)
        . " admitted (" . scalar(@A_edge) . " sent just before it stopped): some, at most $N nodes x $FRACTION x $A_LIMIT = $bound");
    ok($a_out_429 > 0, "... the others refused by the local limit ($a_out_429 got 429)");
    my @B_in_bad = grep { $_->{t} <= $t_stop && $_->{status} != 200
                          && !($waited->($_) && $_->{status} == 503 && ($_->{code} // '') eq 'limits_unavailable') } @B;
    is(scalar @B_in_bad, 0, 'fail_closed: 200 before the outage (or 503 limits_unavailable after waiting for it)');
    my @B_503 = grep { $_->{status} == 503 && ($_->{code} // '') eq 'limits_unavailable' && ($_->{ra} // '') =~ /^[1-9]\d*$/ } @B_out;
    is(scalar @B_503, scalar @B_out,
        sprintf('... during it all %d answered 503 limits_unavailable with Retry-After', scalar @B_out))
        or diag(explain([ (grep { $_->{status} != 503 || ($_->{code} // '') ne 'limits_unavailable' || !$_->{ra} } @B_out)[0 .. 2] ]));
    like($B_out[0]{body} // '', qr/^\{"error":\{"message":"[^"]+","type":"[a-z_]+","param":null,"code":"limits_unavailable"\}\}\s*$/,
        '... as an OpenAI-shaped JSON error');

    my @out = (@A_out, @B_out);
    my @ms = map { $_->{ms} } @out;
    my $max = percentile(100, @ms);
    my $slow = grep { $_ >= $TIMEOUT * 1000 * 0.9 } @ms;
    # each worker pays the timeout until its breaker opens, then once per probe
    my $slow_bound = 6 * ($BREAKER + POSIX::ceil(($end - $t_stop) / $PROBE) + 1) + 6;
    ok($max < $TIMEOUT * 1000 + 400, sprintf('no request waited more than the Redis timeout + margin (max %.0f ms)', $max));
    ok($slow <= $slow_bound, "... $slow of " . scalar(@out) . " waited about the timeout (at most $slow_bound: the breaker)");
    for my $i (0 .. $#nodes) {
        my $opened = metric_sum([ $m1[$i] ], 'gateway_redis_breaker_opened_total') - metric_sum([ $m0[$i] ], 'gateway_redis_breaker_opened_total');
        ok($opened >= 1, "$nodes[$i]{name}: gateway_redis_breaker_opened_total went up ($opened)");
    }
    my %d = map { $_ => delta(\@m0, \@m1, 'gateway_cluster_limit_degraded_total', on_failure => $_) } qw(fail_open fail_closed);
    my $b_503 = grep { $_->{status} == 503 } @B;
    is($d{fail_closed}, $b_503, "gateway_cluster_limit_degraded_total{on_failure=\"fail_closed\"}: one per 503 ($b_503)");
    ok($d{fail_open} >= @A_out, "... {on_failure=\"fail_open\"}: at least every fail_open request of the outage ($d{fail_open} >= " . scalar(@A_out) . ')');
    my %res = map { $_ => delta(\@m0, \@m1, 'gateway_redis_calls_total', result => $_) } qw(ok error timeout);
    ok($res{timeout} > 0, "gateway_redis_calls_total: timeout $res{timeout} (Redis stopped), error $res{error} (killed), ok $res{ok}");
    my $hist = delta(\@m0, \@m1, 'gateway_redis_call_duration_seconds_count');
    my $buckets = grep { $_->[0] eq 'gateway_redis_call_duration_seconds_bucket' } @{ $m1[0] };
    ok($buckets > 1 && $hist > 0, "gateway_redis_call_duration_seconds: $buckets buckets, $hist calls observed");

    # Redis back, empty, on the same port
    $redis_pid = start_redis($rport, $dir);
    my $t_back = time;
    my %want = map { my $i = $_; map { $_ => $i } workers($nodes[$i]{pid}) } 0 .. $#nodes;
    my (%seen, $recovered, $tries);
    while (time < $t_back + $PROBE + 5) {
        my $n = $tries++ % 3;
        my $r = chat($n, 'fclosed');
        $seen{ $r->{headers}{'x-pid'} } = 1 if $r->{status} == 200 && $r->{headers}{'x-pid'};
        if (!grep { !$seen{$_} } keys %want) { $recovered = time - $t_back; last }
        sleep 0.01;
    }
    ok(defined $recovered && $recovered <= $PROBE + 2,
        sprintf('Redis restarted: all 6 workers admit through Redis again after %s s (probe %d s)',
            defined $recovered ? sprintf('%.2f', $recovered) : 'never (' . join(',', sort keys %seen) . ')', $PROBE));
    my @f = parallel(15, sub { my $n = $_[0] % 3; slim(chat($n, 'fresh'), $n) });
    my %fs;
    $fs{ $_->{status} }++ for @f;
    is_deeply(\%fs, { 200 => 5, 429 => 10 }, '... a fresh namespace allowed 5: exactly 5 of 15 concurrent requests over 3 nodes pass')
        or diag(explain(\%fs));
    my @fk = lim_keys('fresh');
    is(@fk ? hash_sum($fk[0]) : 0, 5, '... and its window in the new Redis holds 5');
    # What the nodes admitted without Redis is replayed into the new one: the fail_open
    # window holds every 200 but the 60 the old Redis admitted (and took with it).
    my $a_all = grep { $_->{status} == 200 } @A;
    my ($replayed, $t_replayed);
    for (1 .. 60) {
        my ($k) = lim_keys('fopen');
        $replayed = $k ? hash_sum($k) : 0;
        if ($replayed == $a_all - $A_LIMIT) { $t_replayed = time - $t_back; last }
        sleep 0.05;
    }
    is($replayed, $a_all - $A_LIMIT, "... the fail_open window holds the admissions made without Redis, replayed ($a_all 200s - $A_LIMIT)");

    my $outage = $end - $t_stop;
    diag(sprintf '5. faults: load of %d requests in 11 s; Redis SIGSTOPped at %.1f s for 5 s, then SIGKILLed; during the outage (%.1f s): '
        . 'fail_open %d requests (and %d sent just before that waited for Redis), %d admitted without Redis (bound %d), %d refused, %d failed; '
        . 'fail_closed %d requests, %d answered 503; latency max %.0f ms, %d waited about the timeout; before it Redis admitted %d of the fail_open namespace; '
        . 'Redis calls ok %d / timeout %d / error %d; breaker opened %s; degraded fail_open %d fail_closed %d; '
        . 'after the restart every worker admitted through Redis within %s s, the %d admissions made without it were replayed within %s s',
        scalar @r, $t_stop - $t0, $outage, scalar @A_out, scalar @A_edge, $a_out, $bound, $a_out_429,
        scalar(grep { $_->{status} != 200 && $_->{status} != 429 } @A), scalar @B_out, scalar @B_503,
        $max, $slow, $a_in, @res{qw(ok timeout error)},
        join('/', map { metric_sum([ $m1[$_] ], 'gateway_redis_breaker_opened_total') - metric_sum([ $m0[$_] ], 'gateway_redis_breaker_opened_total') } 0 .. 2),
        @d{qw(fail_open fail_closed)}, defined $recovered ? sprintf('%.2f', $recovered) : 'never',
        $a_all - $A_LIMIT, defined $t_replayed ? sprintf('%.2f', $t_replayed) : 'never');
}

##########################################################################################
# 6. Redis hung, then continued: every admission counted once, tokens as used.
##########################################################################################

{
    # Two fail_open namespaces whose limits are never reached, so every request is admitted:
    # by Redis in time, or on the node while Redis hangs (replayed when it is back). The
    # scripts queued on the hung connections run when Redis continues, after their requests
    # were decided without them: what they took is given back. Once settled, the requests
    # window holds one per 200 and the tokens window the usage the clients were sent.
    my @m0 = map { metrics($_->{gw}) } @nodes;
    my $t0 = time;
    my $end = $t0 + 4.5;
    my $kids = spawn(6, sub {
        my $c = shift;
        my $n = $c % 3;
        my @out;
        my $next = time;
        while ($next < $end) {
            sleep_until($next);
            my $ns = @out % 2 ? 'hangtok' : 'hang';
            my $r = chat($n, $ns, undef, 5);
            my $s = slim($r, $n, $ns);
            $s->{total} = total_tokens($r);
            push @out, $s;
            $next += 0.05;
        }
        return @out;
    });
    sleep_until($t0 + 1);
    kill 'STOP', $redis_pid;
    my $t_stop = time;
    sleep_until($t_stop + 2);
    kill 'CONT', $redis_pid;
    my $t_cont = time;
    my @r = collect($kids);
    my $t_end = time;
    is(scalar(grep { $_->{error} } @r), 0, 'the load ran') or diag(explain([ grep { $_->{error} } @r ]));
    my @H = grep { $_->{ns} eq 'hang' } @r;
    my @T = grep { $_->{ns} eq 'hangtok' } @r;
    is(scalar(grep { $_->{status} != 200 } @r), 0,
        sprintf('Redis SIGSTOPped for 2 s, then continued: all %d requests of two fail_open namespaces (never at their limits) answered 200', scalar @r));
    my $max = percentile(100, map { $_->{ms} } @r);
    ok($max < $TIMEOUT * 1000 + 400, sprintf('... none waited more than the Redis timeout + margin (max %.0f ms)', $max));
    my $want_h = grep { $_->{status} == 200 } @H;
    my $want_t = 0;
    $want_t += $_->{total} // 0 for grep { $_->{status} == 200 } @T;
    my ($got_h, $got_t, $settled);
    while (time < $t_end + 5) {
        my ($kh) = lim_keys('hang');
        my ($kt) = lim_keys('hangtok');
        ($got_h, $got_t) = (($kh ? hash_sum($kh) : 0), ($kt ? hash_sum($kt) : 0));
        if ($got_h == $want_h && $got_t == $want_t) { $settled = time - $t_end; last }
        sleep 0.1;
    }
    my @m1 = map { metrics($_->{gw}) } @nodes;
    my $degraded = delta(\@m0, \@m1, 'gateway_cluster_limit_degraded_total', on_failure => 'fail_open');
    my $slow = grep { $_->{ms} >= $TIMEOUT * 1000 * 0.9 } @r;
    is($got_h, $want_h, "once settled, the requests window holds one per 200 ($want_h; $degraded requests were decided without Redis)");
    is($got_t, $want_t, "... and the tokens window the usage the clients were sent ($want_t tokens)");
    # a node admitting on its own says so: x-ratelimit-limit-tokens is limit x fraction
    my @alone = grep { $_->{status} == 200 && ($_->{limt} // 0) == $policies{hangtok}[0]{limit} * $FRACTION } @T;
    my $alone_used = 0;
    $alone_used += $_->{total} // 0 for @alone;
    diag(sprintf '6. Redis hung 2 s then continued: %d requests (%d during the hang), all 200, max %.0f ms, %d waited about the timeout, '
        . '%d decided without Redis; after %s: requests window %d (want %d), tokens window %d (want %d; %d tokens requests '
        . 'were admitted without Redis, using %d tokens)',
        scalar @r, scalar(grep { $_->{t} > $t_stop && $_->{t} < $t_cont } @r), $max, $slow, $degraded,
        defined $settled ? sprintf('%.2f s', $settled) : '5 s (not settled)', $got_h, $want_h, $got_t, $want_t,
        scalar @alone, $alone_used);
}

##########################################################################################
# 7. A reload while streams run: what the old workers' last requests took is settled.
##########################################################################################

{
    # Streams of about 2 s on one node, on a namespace with a tokens window and a
    # concurrency policy; `nginx -s reload` (HUP) while they run: the old workers finish them
    # and exit. Their settlements (actual tokens, lease released) must reach Redis: the
    # leases are gone well before they could expire (lease 3 s) and the window holds the
    # usage the clients were sent.
    my $n = 0;
    my $body = '{"model":"mock-gpt","messages":[{"role":"user","content":"reload"}],"stream":true,"stream_options":{"include_usage":true}}';
    my @st = map { { s => send_request($nodes[$n]{gw}, 'POST', '/stream/v1/chat/completions', key('rl'), $body) } } 1 .. 6;
    my $t0 = time;
    $_->{h} = $_->{s} ? read_head($_->{s}, $t0 + 3) : { status => 0, headers => {} } for @st;
    is(join(',', map { $_->{h}{status} } @st), join(',', (200) x 6), '6 streams of about 2 s on n1');
    my %old = map { $_ => 1 } workers($nodes[$n]{pid});
    kill 'HUP', $nodes[$n]{pid};
    read_rest($_->{s}, $_->{h}, $t0 + 10) for grep { $_->{s} } @st;
    my $t_end = time;
    my $sum = 0;
    $sum += total_tokens($_->{h}) // 0 for @st;
    is(scalar(grep { $_->{h}{complete} && $_->{h}{body} =~ /data: \[DONE\]\n\n\z/ } @st), 6,
        sprintf('... reloaded while they ran: all 6 finished whole in the old workers (%.1f s)', $t_end - $t0));
    my ($kt) = grep { redis($rport, 'TYPE', $_) eq 'hash' } lim_keys('rl');
    my ($kc) = grep { redis($rport, 'TYPE', $_) eq 'zset' } lim_keys('rl');
    my ($zcard, $held, $freed, $settled);
    while (time < $t_end + 2.5) {
        $zcard = $kc ? redis($rport, 'ZCARD', $kc) : 0;
        $held = $kt ? hash_sum($kt) : 0;
        $freed //= time - $t_end if !$zcard;
        $settled //= time - $t_end if $held == $sum;
        last if defined $freed && defined $settled;
        sleep 0.05;
    }
    ok(defined $freed && $freed < 1, sprintf('... their leases were released (%s)',
        defined $freed ? sprintf('%.2f s after the last ended', $freed) : "$zcard left 2.5 s after they ended"));
    is($held, $sum, "... the tokens window holds the usage they were sent ($sum)");
    my $gone;
    for (1 .. 50) { if (!grep { alive($_) } keys %old) { $gone = 1; last } sleep 0.1 }
    ok($gone, '... and the old workers have exited');
    is(chat($n, 'rl')->{status}, 200, 'the new workers serve');
    diag(sprintf '7. reload with 6 streams running: leases released %s, tokens window %d of %d',
        defined $freed ? sprintf('%.2f s after the streams ended', $freed) : 'not within 2.5 s (they expire after lease)',
        $held, $sum);
}

##########################################################################################
# 8. Logs.
##########################################################################################

for my $n (@nodes) {
    stop($n->{pid}) if $n->{pid};
    undef $n->{pid};
    my @lines = split /\n/, slurp("$n->{dir}/logs/error.log");
    my @bad = grep { /\[(alert|crit|emerg)\]/ } @lines;
    is(scalar @bad, 0, "$n->{name}: no [alert], [crit] or [emerg] in the error log") or diag(join "\n", @bad[0 .. ($#bad < 5 ? $#bad : 5)]);
    my @err = grep { /\[error\]/ && !/$REDIS_DOWN/ } @lines;
    is(scalar @err, 0, "$n->{name}: no [error] but a worker's breaker opening in section 5") or diag(join "\n", @err[0 .. ($#err < 5 ? $#err : 5)]);
    my ($down, $up) = (scalar(grep { /$REDIS_DOWN/ } @lines), scalar(grep { /$REDIS_UP/ } @lines));
    ok($down >= 1 && $down == $up, "... a breaker opened $down times, and logged 'cluster limits back' as often ($up)");
}

done_testing();

##########################################################################################
# helpers
##########################################################################################


sub sleep_until {
    my $left = shift() - time;
    sleep $left if $left > 0;
}

sub key { "Authorization: Bearer sk-t140-$_[0]\r\nContent-Type: application/json\r\n" }

# A chat completion on node $n for namespace $ns (default body: a short prompt).
sub chat {
    my ($n, $ns, $body, $timeout) = @_;
    $body //= '{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}';
    return http($nodes[$n]{gw}, 'POST', '/v1/chat/completions', key($ns), $body, $timeout // 10);
}

# What the checks need of a response (forked clients hand it back as JSON).
sub slim {
    my ($r, $n, $ns) = @_;
    my $h = $r->{headers};
    return {
        node => $n, ns => $ns, status => $r->{status}, t => $r->{t}, ms => $r->{ms},
        ra => $h->{'retry-after'}, lim => $h->{'x-ratelimit-limit-requests'},
        limt => $h->{'x-ratelimit-limit-tokens'},
        rem => $h->{'x-ratelimit-remaining-requests'}, pid => $h->{'x-pid'},
        code => ($r->{json} && ref $r->{json}{error} eq 'HASH' ? $r->{json}{error}{code} : undef),
        ($r->{status} == 200 ? () : (body => $r->{body})),
    };
}

# usage.total_tokens of a JSON completion or of a stream's usage chunk.
sub total_tokens {
    my $r = shift;
    return $r->{json}{usage}{total_tokens} if $r->{json} && ref $r->{json}{usage} eq 'HASH';
    for (reverse split /\n/, $r->{body} // '') {
        next unless /^data: (\{.*)/;
        my $c = eval { JSON::PP->new->decode($1) } or next;
        return $c->{usage}{total_tokens} if ref $c->{usage} eq 'HASH';
    }
    return;
}

sub start_node {
    my $n = shift;
    return 0 if system($nginx, '-p', "$n->{dir}/", '-c', 'conf/nginx.conf') != 0;
    $n->{pid} = wait_pid("$n->{dir}/logs/nginx.pid") or return 0;
    return wait_port($n->{gw}) && workers($n->{pid}) == 2;
}

# The worker processes of an nginx master (waiting up to 5 s for two).
sub workers {
    my $master = shift;
    my @w;
    for (1 .. 50) {
        @w = ();
        for my $stat (glob '/proc/[0-9]*/stat') {
            my $line = slurp($stat) or next;
            my ($p, $state, $ppid) = $line =~ /^(\d+) \(.*\) (\S) (\d+)/ or next;
            push @w, $p if $ppid == $master && $state ne 'Z';
        }
        last if @w >= 2;
        sleep 0.1;
    }
    return @w;
}

# The counter keys of the test's prefix (of one namespace), not the settlement markers
# (<P>:lim:{<namespace>}:done:<id>).
sub lim_keys {
    my $ns = shift;
    my $keys = redis($rport, 'KEYS', defined $ns ? "$P:lim:{$ns}:*" : "$P:lim:*");
    my @sorted = sort grep { /:[0-9a-f]{16}$/ } @$keys;
    return @sorted;
}

sub hash_sum {
    my %h = @{ redis($rport, 'HGETALL', shift) // [] };
    my $sum = 0;
    $sum += $_ for values %h;
    return $sum;
}

sub all_metrics { return [ map { $_->{pid} ? metrics($_->{gw}) : [] } @nodes ] }

# How much the sum of a metric's series grew between two lists of pages.
sub delta {
    my ($before, $after, $name, %want) = @_;
    return metric_sum($after, $name, %want) - metric_sum($before, $name, %want);
}
