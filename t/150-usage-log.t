# Usage and access logs on two nodes (two workers each) with a private redis-server and a
# private mariadbd: every gateway request's record reaches MySQL exactly once through the Redis
# stream and the one ingestor, with the fields the request had (tokens as in the answer, the
# key's id, never the key), the minute/hourly/daily aggregates and their latency histograms
# agree with the rows, and the API filters, pages, finds one log, answers usage by minute
# with latency percentiles and exports CSV. Faults: MySQL stopped 30 s under load (records
# wait in the stream, 0 failed requests, all present once after), Redis stopped (spool, replay,
# exactly once), the ingestor's node killed (the other takes over within the lease), spool and
# buffer full (dropped and counted, requests unaffected), retention dropping day partitions
# (and minute aggregates past 48 hours).
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep time);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use Digest::SHA qw(sha256_hex);
use JSON::PP ();
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

my $root  = abs_path(dirname(__FILE__) . '/..');
my $sroot = $ENV{TEST_NGINX_SERVROOT} || "$root/t/servroot";
my $base  = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 170;
my ($rport, $mport) = ($base + 8, $base + 9);
my $dir   = "$sroot-usage-log";
my $P     = "t150-$$";
my $DB    = 'aigw_t150';
my $PW    = 'usage log admin password';
my $json  = JSON::PP->new->canonical;
my @AGGREGATES = qw(usage_hourly usage_daily usage_hourly_summary usage_daily_summary usage_minutely_summary);
my @nodes = map { { name => "n$_", api => $base + 2 * $_ - 1, gw => $base + 2 * $_, dir => "$dir/n$_" } } 1 .. 2;

remove_tree($dir);
make_path($dir);
my ($redis_pid, $mysql_pid);
END {
    local $?;
    stop($_) for grep { $_ } map { $_->{pid} } @nodes;
    if ($redis_pid) { kill 'CONT', $redis_pid; kill 'KILL', $redis_pid; waitpid($redis_pid, 0) }
    if ($mysql_pid) { kill 'CONT', $mysql_pid; kill 'TERM', $mysql_pid; waitpid($mysql_pid, 0) }
    remove_tree($dir) if Test::More->builder->is_passing;
}
$redis_pid = start_redis($rport, $dir);
$mysql_pid = start_mariadb($mport, "$dir/mysql");
create_db($DB, $mport);

my $gw_json = $json->encode({
    namespaces => [
        { code => 'team-a', api_keys => [ sha256_hex('sk-t150-a') ] },
        { code => 'team-b', api_keys => [ sha256_hex('sk-t150-b') ] },
    ],
});
my %key_id = (a => substr(sha256_hex('sk-t150-a'), 0, 12), b => substr(sha256_hex('sk-t150-b'), 0, 12));

sub node_conf {
    my ($n, $extra) = @_;
    $extra //= '';
    return <<"_EOC_";
${\ main_conf($module, 2) }
http {
    access_log off;
    ai_gateway_config gw.json;
    ai_gateway_metrics_zone gw_metrics 1m;
    ai_gateway_redis redis://127.0.0.1:$rport prefix=$P timeout=300ms;
    ai_gateway_mysql mysql://root\@127.0.0.1:$mport/$DB timeout=1s;
    ai_gateway_admin_bootstrap file=admin.pw;
    ai_gateway_usage_log flush=100ms lease=2s node=$n->{name} spool=$n->{dir}/spool $extra;
    server {
        listen 127.0.0.1:$n->{api};
        location /api/ { ai_gateway_admin; }
        location = /metrics { ai_gateway_metrics; }
    }
    log_format ids '\$ai_gateway_request_id \$status';
    server {
        listen 127.0.0.1:$n->{gw};
        access_log logs/ids.log ids;
        location /v1/ { ai_gateway on; ai_gateway_mock_provider; }
    }
}
_EOC_
}

sub setup_node {
    my ($n, $extra) = @_;
    write_conf($n->{dir}, node_conf($n, $extra), 1);
    for ([ 'gw.json', $gw_json ], [ 'admin.pw', "$PW\n" ]) {
        open my $fh, '>', "$n->{dir}/conf/$_->[0]" or die $!;
        print $fh $_->[1];
        close $fh;
    }
}

sub start_node {
    my $n = shift;
    return 0 if system($nginx, '-p', "$n->{dir}/", '-c', 'conf/nginx.conf') != 0;
    $n->{pid} = wait_pid("$n->{dir}/logs/nginx.pid") or return 0;
    return wait_port($n->{gw}) && wait_port($n->{api});
}

for my $n (@nodes) {
    setup_node($n);
    ok(start_node($n), "$n->{name} started");
}

my $s;
for (1 .. 100) { last if $s = api_login($nodes[0]{api}, 'admin', $PW); sleep 0.1 }
ok($s, 'the bootstrap admin logs in');

# One chat completion on node $i; returns the status (0: no answer).
sub chat {
    my ($i, $key, %o) = @_;
    my $body = $json->encode({ model => $o{model} // 'gpt-4o-mini', stream => ($o{stream} ? JSON::PP::true : JSON::PP::false),
        messages => [ { role => 'user', content => 'hello there' } ] });
    my $r = http($nodes[$i]{gw}, 'POST', '/v1/chat/completions',
        ($key ? "Authorization: Bearer $key\r\n" : '') . "Content-Type: application/json\r\n", $body);
    return wantarray ? ($r->{status}, $r) : $r->{status};
}

sub rows { sql($DB, shift, $mport) }
sub count_rows { my $w = shift // '1'; my $n = rows("SELECT COUNT(*) FROM access_logs WHERE $w"); chomp $n; $n }

# Waits until the table holds $want rows (where $w); returns the count.
sub until_rows {
    my ($want, $limit, $w) = @_;
    my $t0 = time;
    my $n = 0;
    while (time - $t0 < $limit) {
        $n = eval { count_rows($w) } // 0;
        return $n if $n >= $want;
        sleep 0.2;
    }
    return $n;
}

sub node_metrics { metrics($nodes[shift]{api}, '/metrics') }

# --- 1. records reach MySQL once, with the request's fields --------------------------------
my %sent;
my @plan = ((map { [ 0, 'sk-t150-a', 0 ] } 1 .. 6), (map { [ 1, 'sk-t150-b', 1 ] } 1 .. 4), [ 0, undef, 0 ], [ 1, 'sk-wrong', 0 ]);
my @answers;
for my $p (@plan) {
    my ($status, $r) = chat($p->[0], $p->[1], stream => $p->[2]);
    push @answers, [ $p, $status, $r ];
}
is(scalar(grep { $_->[1] == 200 } @answers), 10, '10 requests with keys answered 200');
is(scalar(grep { $_->[1] == 401 } @answers), 2, '2 requests without a known key answered 401');
is(until_rows(12, 10), 12, 'all 12 requests are in access_logs');
my @r = map { [ split /\t/ ] } split /\n/, rows("SELECT namespace, key_id, model, status, error, stream, prompt_tokens, completion_tokens, usage_source, node, attempts, LENGTH(request_id) FROM access_logs ORDER BY ts");
is(scalar(grep { $_->[0] eq 'team-a' && $_->[1] eq $key_id{a} && $_->[3] == 200 && $_->[5] == 0 && $_->[9] eq 'n1' } @r), 6,
    "team-a's 6 requests: its namespace, its key's id, 200, not streamed, node n1");
is(scalar(grep { $_->[0] eq 'team-b' && $_->[1] eq $key_id{b} && $_->[5] == 1 && $_->[9] eq 'n2' } @r), 4,
    "team-b's 4 streamed requests on node n2");
is(scalar(grep { $_->[0] eq '' && $_->[3] == 401 && $_->[4] ne '' } @r), 2, 'the 401s: no namespace, their error code');
ok(!(grep { $_->[6] eq 'NULL' || $_->[7] eq 'NULL' || $_->[8] eq 'unknown' } grep { $_->[3] == 200 } @r),
    'every answered request has its prompt and completion tokens and their source');
is(scalar(grep { $_->[11] == 32 } @r), 12, 'each row has a 32-digit request id');
my %logged = map { (split / /)[0] => 1 } map { split /\n/, slurp("$_->{dir}/logs/ids.log") } @nodes;
my %stored = map { $_ => 1 } split /\n/, rows('SELECT request_id FROM access_logs');
is_deeply([ sort keys %logged ], [ sort keys %stored ], "nginx's access log (\$ai_gateway_request_id) names the same 12 requests");
my $dump = rows('SELECT * FROM access_logs');
ok($dump !~ /sk-t150|hello there/, 'no key and no prompt in the table');
my ($rows_tokens) = split /\n/, rows("SELECT SUM(prompt_tokens) + SUM(completion_tokens) FROM access_logs WHERE status = 200");
my $answer_tokens = 0;
for (grep { $_->[1] == 200 && !$_->[0][2] } @answers) {
    my $b = eval { $json->decode($_->[2]{body}) } or next;
    $answer_tokens += $b->{usage}{total_tokens};
}
my ($rows_a) = split /\n/, rows("SELECT SUM(prompt_tokens) + SUM(completion_tokens) FROM access_logs WHERE namespace = 'team-a'");
is($rows_a, $answer_tokens, "team-a's rows hold the tokens its answers reported ($answer_tokens)");
my ($hourly) = split /\n/, rows("SELECT SUM(requests), SUM(prompt_tokens) + SUM(completion_tokens) FROM usage_hourly");
my ($daily) = split /\n/, rows("SELECT SUM(requests), SUM(prompt_tokens) + SUM(completion_tokens) FROM usage_daily");
my ($raw) = split /\n/, rows("SELECT COUNT(*), SUM(IFNULL(prompt_tokens, 0)) + SUM(IFNULL(completion_tokens, 0)) FROM access_logs");
is($hourly, $raw, "the hourly aggregates agree with the rows ($raw)");
is($daily, $raw, 'the daily aggregates too');
for my $t (qw(usage_hourly_summary usage_daily_summary usage_minutely_summary)) {
    my ($sum) = split /\n/, rows("SELECT SUM(requests), SUM(prompt_tokens) + SUM(completion_tokens) FROM $t");
    is($sum, $raw, "... and $t (by namespace and model)");
}
my $hist = join(' + ', map { "SUM($_)" } qw(latency_le_50 latency_le_100 latency_le_250 latency_le_500 latency_le_1000
    latency_le_2500 latency_le_5000 latency_le_10000 latency_le_30000 latency_le_60000 latency_le_120000 latency_gt_120000));
for my $t (@AGGREGATES) {
    my ($n) = split /\n/, rows("SELECT $hist FROM $t");
    is($n, 12, "$t: the latency histogram counts the 12 requests");
}
# by minute through the API: the last hour by default, p50 <= p95 <= max in every item
my $min = api_call($nodes[0]{api}, 'GET', '/api/v1/usage?interval=minute&group_by=namespace,model', auth => $s);
is($min->{status}, 200, 'GET usage?interval=minute');
is($min->{json}{interval}, 'minute', '... by minute');
my $min_requests = 0;
$min_requests += $_->{requests} for @{ $min->{json}{items} };
is($min_requests, 12, "... its items' requests are the 12 requests");
note('an item: ' . $json->encode((grep { $_->{namespace} eq 'team-a' } @{ $min->{json}{items} })[0] // {}));
for my $u ($min, api_call($nodes[0]{api}, 'GET', '/api/v1/usage?interval=hour&group_by=namespace,key_id,status_class', auth => $s)) {
    my @bad = grep {
        my $i = $_;
        $i->{requests} > 0 && !(defined $i->{latency_p50_ms} && defined $i->{latency_p95_ms}
            && $i->{latency_p50_ms} <= $i->{latency_p95_ms} && $i->{latency_p95_ms} <= $i->{latency_ms_max})
    } @{ $u->{json}{items} };
    is(scalar @bad, 0, "$u->{json}{interval}: every item has latency_p50_ms <= latency_p95_ms <= latency_ms_max")
        or diag($json->encode(\@bad));
}
my $min_old = api_call($nodes[0]{api}, 'GET', '/api/v1/usage?interval=minute&since=' . int(time() - 3 * 86400), auth => $s);
is($min_old->{status}, 400, 'interval=minute over 3 days is a 400');
is($min_old->{json}{error}{details}[0]{path}, '?since', '... on ?since');
my $min_csv = api_call($nodes[0]{api}, 'GET', '/api/v1/usage?interval=minute&format=csv', auth => $s);
like((split /\r\n/, $min_csv->{body})[0] // '', qr/,latency_ms_max,latency_p50_ms,latency_p95_ms$/, '... and as CSV, with the percentiles');

# --- 2. the API -----------------------------------------------------------------------------
sub call { my ($m, $p, %o) = @_; api_call($nodes[0]{api}, $m, $p, auth => $s, %o) }
my $page = call('GET', '/api/v1/access-logs?limit=5');
is($page->{status}, 200, 'GET access-logs');
is(scalar @{ $page->{json}{items} }, 5, '... a page of 5');
ok($page->{json}{next_cursor}, '... with a next cursor');
my @all = @{ $page->{json}{items} };
my $cursor = $page->{json}{next_cursor};
while ($cursor) {
    my $next = call('GET', "/api/v1/access-logs?limit=5&cursor=$cursor");
    push @all, @{ $next->{json}{items} };
    $cursor = $next->{json}{next_cursor};
}
is(scalar @all, 12, 'the pages hold all 12 logs');
my %ids = map { $_->{request_id} => 1 } @all;
is(scalar keys %ids, 12, '... each once');
my @times = map { $_->{time} } @all;
is_deeply(\@times, [ sort { $b cmp $a } @times ], '... newest first');
my $one = call('GET', "/api/v1/access-logs/$all[0]{request_id}");
is($one->{json}{request_id}, $all[0]{request_id}, 'GET one log by request id');
is(call('GET', '/api/v1/access-logs/0123456789abcdef')->{status}, 404, 'an unknown request id is 404');
my $ta = call('GET', '/api/v1/access-logs?namespace=team-b&status=2xx');
is(scalar @{ $ta->{json}{items} }, 4, 'filtered by namespace and status class');
is(scalar(grep { $_->{stream} } @{ $ta->{json}{items} }), 4, '... streamed');
is(scalar @{ call('GET', "/api/v1/access-logs?key_id=$key_id{a}")->{json}{items} }, 6, 'filtered by key id');
is(scalar @{ call('GET', '/api/v1/access-logs?status=401')->{json}{items} }, 2, 'filtered by status');
is(scalar @{ call('GET', '/api/v1/access-logs?since=' . (time() + 3600))->{json}{items} }, 0, 'a time range after now has none');
is(call('GET', '/api/v1/access-logs?status=6xx')->{status}, 400, 'a bad filter is a 400');
my $usage = call('GET', '/api/v1/usage?interval=hour&group_by=namespace');
is($usage->{status}, 200, 'GET usage');
my %by_ns = map { $_->{namespace} => $_ } @{ $usage->{json}{items} };
is($by_ns{'team-a'}{requests}, 6, "team-a's requests in the hour");
is($by_ns{''}{errors}, 2, 'the unidentified requests are errors');
my $daily_api = call('GET', '/api/v1/usage?interval=day&group_by=namespace,key_id');
is(scalar(grep { ($_->{key_id} // '') eq $key_id{b} && $_->{requests} == 4 } @{ $daily_api->{json}{items} }), 1, 'usage by day and key');
my $csv = api_call($nodes[0]{api}, 'GET', '/api/v1/access-logs?format=csv', auth => $s);
is($csv->{status}, 200, 'CSV export');
like($csv->{headers}{'content-type'} // '', qr{^text/csv}, '... as text/csv');
my @lines = split /\r\n/, $csv->{body};
is(scalar @lines, 13, '... a header and 12 rows');
like($lines[0], qr/^request_id,time,node,namespace,key_id,model/, '... its header');

# --- 3. MySQL stopped 30 s under load ------------------------------------------------------
# Bounded load on both nodes: 4 clients, each a request every 50 ms for 34 s (MySQL stopped
# from 2 s to 32 s). The records wait in the Redis stream; nothing fails, nothing is lost.
sub load {
    my ($seconds, $clients, $pause, $nodes) = @_;
    my $h = spawn($clients, sub {
        my $i = shift;
        my @out;
        my $t0 = time;
        while (time - $t0 < $seconds) {
            my $n = $nodes->[$i % @$nodes];
            my $key = $i % 2 ? 'sk-t150-b' : 'sk-t150-a';
            push @out, { status => scalar chat($n, $key), node => $n };
            sleep $pause;
        }
        return @out;
    });
    return $h;
}
sub quiet_count { my $t0 = time; my $last = -1; while (time - $t0 < 20) { my $n = count_rows(); return $n if $n == $last; $last = $n; sleep 1 } $last }

my $before = quiet_count();
my $h = load(34, 4, 0.05, [ 0, 1 ]);
sleep 2;
kill 'STOP', $mysql_pid;
my $stopped_at = time;
sleep 30;
my $rows_while_stopped = $before;
kill 'CONT', $mysql_pid;
my @res = collect($h);
my $sent = scalar @res;
my $failed = grep { $_->{status} != 200 } @res;
cmp_ok($sent, '>', 500, "$sent requests on two nodes while MySQL was stopped 30 s");
is($failed, 0, '... none failed');
my $t_back = time;
my $after = until_rows($before + $sent, 60);
is($after - $before, $sent, sprintf('all %d records are in MySQL %.1f s after it came back', $sent, time - $t_back));
my ($total, $distinct) = split /\t/, rows('SELECT COUNT(*), COUNT(DISTINCT request_id) FROM access_logs');
chomp $distinct;
is($distinct, $total, '... each once');
for my $t (@AGGREGATES) {
    my ($agg) = split /\n/, rows("SELECT SUM(requests) FROM $t");
    is($agg, $total, "... and counted once in $t");
}

# --- 4. Redis stopped: spool, replay, exactly once ------------------------------------------
$before = quiet_count();
my $m0 = [ map { node_metrics($_) } 0, 1 ];
$h = load(8, 2, 0.05, [ 0, 1 ]);
sleep 1;
kill 'STOP', $redis_pid;
sleep 5;
kill 'CONT', $redis_pid;
@res = collect($h);
$sent = scalar @res;
is(scalar(grep { $_->{status} != 200 } @res), 0, "$sent requests while Redis was stopped 5 s: none failed");
$after = until_rows($before + $sent, 30);
is($after - $before, $sent, "all $sent records reached MySQL after Redis came back");
($total, $distinct) = split /\t/, rows('SELECT COUNT(*), COUNT(DISTINCT request_id) FROM access_logs');
chomp $distinct;
is($distinct, $total, '... each once');
my $m1 = [ map { node_metrics($_) } 0, 1 ];
my $spooled = metric_sum($m1, 'gateway_log_spooled_total') - metric_sum($m0, 'gateway_log_spooled_total');
my $replayed = metric_sum($m1, 'gateway_log_replayed_total') - metric_sum($m0, 'gateway_log_replayed_total');
cmp_ok($spooled, '>', 0, "records were spooled while Redis was away ($spooled)");
is($replayed, $spooled, '... and all replayed');
is(metric_sum($m1, 'gateway_log_dropped_total'), 0, 'nothing dropped so far');

# --- 5. the ingestor's node killed -----------------------------------------------------------
my $holder = redis($rport, 'GET', "$P:{log}:ingestor") // '';
my ($hname) = $holder =~ /^(n\d):/;
ok($hname, "a node holds the ingestor lease ($hname)");
my ($dead) = grep { $_->{name} eq ($hname // '') } @nodes;
my ($live) = grep { $_->{name} ne ($hname // '') } @nodes;
my $live_i = $live->{name} eq 'n1' ? 0 : 1;
$before = quiet_count();
my @kids = grep { my $st = slurp("/proc/$_/stat"); $st =~ /^\d+ \(.*?\) \S (\d+)/ && $1 == $dead->{pid} } map { m{/proc/(\d+)/} ? $1 : () } glob('/proc/[0-9]*/stat');
kill 'KILL', $dead->{pid}, @kids;
my $killed_at = time;
for (1 .. 10) { is(chat($live_i, 'sk-t150-a'), 200, "request $_ on $live->{name} after $dead->{name} was killed") }
$after = until_rows($before + 10, 15);
my $takeover = time - $killed_at;
is($after - $before, 10, sprintf('its records reached MySQL %.1f s after the ingestor was killed (lease 2 s)', $takeover));
cmp_ok($takeover, '<', 6, '... within the lease and a poll');
like(redis($rport, 'GET', "$P:{log}:ingestor") // '', qr/^$live->{name}:/, "$live->{name} holds the lease now");
waitpid($dead->{pid}, 0);
unlink "$dead->{dir}/logs/nginx.pid";
ok(start_node($dead), "$dead->{name} started again");

# --- 6. buffer and spool full: dropped and counted, requests unaffected ----------------------
my $n2 = $nodes[1];
stop($n2->{pid});
setup_node($n2, 'batch=1 buffer=2 spool_size=1k');
ok(start_node($n2), 'n2 with a 2-record buffer and a 1 KiB spool');
my $n2_before = count_rows("node = 'n2'");
kill 'STOP', $redis_pid;
my $hp = spawn(8, sub { map { sleep 0.1; { status => scalar chat(1, 'sk-t150-a') } } 1 .. 10 });
my @r6 = collect($hp);
is(scalar(grep { $_->{status} == 200 } @r6), 80, '80 requests on n2 while its buffer and spool overflowed: all 200');
kill 'CONT', $redis_pid;
sleep 2;
my $m = [ node_metrics(1) ];
my $dropped_buffer = metric_sum($m, 'gateway_log_dropped_total', reason => 'buffer_full');
my $dropped_spool = metric_sum($m, 'gateway_log_dropped_total', reason => 'spool_full');
cmp_ok($dropped_buffer, '>', 0, "records dropped and counted when the buffer was full ($dropped_buffer)");
cmp_ok($dropped_spool, '>', 0, "... and when the spool was ($dropped_spool)");
my $n2_rows = until_rows($n2_before + 80 - $dropped_buffer - $dropped_spool, 20, "node = 'n2'") - $n2_before;
is($n2_rows, 80 - $dropped_buffer - $dropped_spool, "every record not counted as dropped is in MySQL ($n2_rows)");
($total, $distinct) = split /\t/, rows('SELECT COUNT(*), COUNT(DISTINCT request_id) FROM access_logs');
chomp $distinct;
is($distinct, $total, '... once');

# --- 7. retention drops whole day partitions -------------------------------------------------
my $today = int(time() / 86400);
rows("INSERT INTO access_logs (day, ts, request_id, node, namespace, key_id, model, route, target, status, error, latency_ms, usage_source, attempts, stream) VALUES "
    . join(', ', map { "($_->[0], $_->[0] * 86400000 + 1000, 'old-$_->[1]', 'x', 'old', '', '', '', '', 200, '', 1, 'unknown', 0, 0)" } [ $today - 10, 10 ], [ $today - 1, 1 ]));
# minute aggregates of 49 and 47 hours ago: only the first is past the 48 hours kept
my $minute_now = int(time() / 60);
rows("INSERT INTO usage_minutely_summary (minute, namespace, key_id, model, target, status_class, requests, errors, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, latency_ms_sum, latency_ms_max) VALUES "
    . join(', ', map { "($_, 'old', '', '', '', 0, 1, 0, 0, 0, 0, 0, 1, 1)" } $minute_now - 49 * 60, $minute_now - 47 * 60));
sub old_minutes { my $n = rows("SELECT COUNT(*), MIN(minute) FROM usage_minutely_summary WHERE namespace = 'old'"); chomp $n; $n }
for my $n (@nodes) {
    setup_node($n, 'retention=5d');
    kill 'HUP', $n->{pid};
}
my $gone;
for (1 .. 100) { $gone = count_rows("namespace = 'old'") == 1; last if $gone; sleep 0.2 }
ok($gone, 'after a reload with retention=5d, the row of 10 days ago is gone and the one of yesterday kept');
for (1 .. 50) { last if old_minutes() =~ /^1\t/; sleep 0.2 }
is(old_minutes(), "1\t" . ($minute_now - 47 * 60), '... and the minute aggregates of 49 hours ago are gone, those of 47 hours ago kept');
my @parts = map { (split /\t/)[0] } split /\n/, rows("SELECT PARTITION_NAME, PARTITION_DESCRIPTION FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = '$DB' AND TABLE_NAME = 'access_logs' ORDER BY PARTITION_ORDINAL_POSITION");
is($parts[-1], 'pmax', 'partitions end with pmax');
is(scalar @parts, 5 + 3 + 1, '... after the 5 kept days and 3 ahead (' . join(' ', @parts) . ')');

# --- 8. without Redis a node writes its own batches to MySQL ---------------------------------
my $n3 = { name => 'n3', api => $base + 5, gw => $base + 6, dir => "$dir/n3" };
push @nodes, $n3;
(my $conf3 = node_conf($n3)) =~ s/^\s*ai_gateway_redis .*\n//m;
write_conf($n3->{dir}, $conf3, 1);
for ([ 'gw.json', $gw_json ], [ 'admin.pw', "$PW\n" ]) { open my $fh, '>', "$n3->{dir}/conf/$_->[0]" or die $!; print $fh $_->[1]; close $fh }
ok(start_node($n3), 'n3: MySQL, no Redis');
for (1 .. 5) { chat(2, 'sk-t150-b') }
is(until_rows(5, 10, "node = 'n3'"), 5, "n3's 5 records are in MySQL");
# the log counts reach the metrics zone on the worker's next flush after the shipper's answer
my $shipped = 0;
for (1 .. 30) {
    $shipped = metric_sum([ node_metrics(2) ], 'gateway_log_shipped_total', to => 'mysql');
    last if $shipped >= 5;
    sleep 0.2;
}
is($shipped, 5, '... shipped straight to MySQL');

for my $n (@nodes) {
    my $log = slurp("$n->{dir}/logs/error.log");
    unlike($log, qr/\[(alert|emerg|crit)\]/, "$n->{name}: no alert, crit or emerg in the error log");
    my @err = grep { /\[error\]/ } split /\n/, $log;
    is(scalar @err, 0, "$n->{name}: no [error] in the error log") or diag(join "\n", @err[0 .. ($#err < 4 ? $#err : 4)]);
}

done_testing();
