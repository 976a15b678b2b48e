# Prometheus metrics across workers, over time and across reloads:
#
#   1. two workers share one metrics zone: concurrent clients (a new connection per request)
#      send known traffic, both workers serve some of it (X-Pid), and one scrape of /metrics
#      shows the exact totals of both (requests by namespace/model/code, success/failed,
#      rejections, upstream attempts, histogram counts, cumulative buckets, in-flight 0);
#   2. the in-flight gauge: 1 while a slow stream runs, back to the right value after a client
#      aborts a stream mid-way (the pool cleanup releases it), 0 when everything has ended;
#   3. `promtool check metrics` finds the exposition lint-clean (after traffic, so every family
#      that can have samples has some);
#   4. SIGHUP reloads: with the same zone name and size the exposition is unchanged (only
#      up_time moves, and it is not reset); a new max_series applies at once and keeps the
#      counters; a new zone size starts a new zone from zero (the documented behaviour);
#   5. neither nginx logged [error], [alert], [crit] or [emerg].
#
# Plain Test::More, like t/070-reload.t: the data-driven format (Test::Nginx) has no sections
# for concurrent clients, requests that stay open across other requests, or reloads.
#
# The mock provider runs in its own nginx that is never reloaded; only the gateway is.
# promtool: PROMTOOL=/path, else `promtool` on PATH (Debian package `prometheus`, installed by
# `make deps`); without it this test FAILS unless AI_GATEWAY_NO_PROMTOOL is set (then skipped).
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep time);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::AIGateway::Process;
use POSIX qw(ceil);

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;

my $root        = abs_path(dirname(__FILE__) . '/..');
my $port        = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 20;    # 070 uses +10 and +11
my $mockport    = $port + 1;
my $prefix      = "$root/t/servroot-metrics";
my $mock_prefix = "$root/t/servroot-metrics-mock";

# The nginx version the exposition's gateway_build_info must name (the module is built for
# the nginx it is loaded into).
my ($nginx_version) = `$nginx -v 2>&1` =~ m{nginx/(\S+)};

# Two mock locations: /v1/ answers streams quickly (25 ms between events), /slow/ slowly
# (100 ms: a 20-token stream lasts about 2.2 s) for the in-flight checks.
write_conf($mock_prefix, <<"_EOC_");
${\ main_conf($module, 1) }
http {
    access_log off;
    server {
        listen 127.0.0.1:$mockport;
        location /      { ai_gateway_mock_provider interval=25ms; }
        location /slow/ { ai_gateway_mock_provider interval=100ms; }
    }
}
_EOC_

# The gateway; section 4 rewrites it with another max_series, then another zone size.
sub gateway_conf {
    my ($size, $max) = @_;
    return <<"_EOC_";
${\ main_conf($module, 2) }
http {
    access_log off;
    ai_gateway_config $root/t/fixtures/gateway.json;
    ai_gateway_metrics_zone gw_metrics $size max_series=$max;
    upstream mock { server 127.0.0.1:$mockport; keepalive 8; }
    server {
        listen 127.0.0.1:$port;
        # nginx closes a request that had a body "lingering": it shuts down its side (the
        # client sees EOF) and frees the request, log phase included, only once the client
        # has closed too. Off, the log phase runs before the close, so a client that has
        # read its whole answer can scrape and find it counted, without polling.
        lingering_close off;
        location /v1/ {
            ai_gateway on;
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            add_header X-Pid \$pid always;
        }
        location /slow/ {
            ai_gateway on;
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            add_header X-Pid \$pid always;
        }
        location = /metrics {
            ai_gateway_metrics;
            add_header X-Pid \$pid always;
        }
    }
}
_EOC_
}
write_conf($prefix, gateway_conf('1m', 500));

my ($pid, $mock_pid);
# whatever happens (a die in the middle), leave no nginx behind
END { stop($_) for grep { $_ } $pid, $mock_pid }

is(system($nginx, '-p', "$mock_prefix/", '-c', 'conf/nginx.conf'), 0, 'mock provider started');
$mock_pid = wait_pid("$mock_prefix/logs/nginx.pid");
my $started = time;
is(system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf'), 0, 'gateway started');
$pid = wait_pid("$prefix/logs/nginx.pid");
ok($pid, "gateway master pid $pid");
ok(wait_port($port), 'gateway listens');
ok(wait_port($mockport), 'mock provider listens');
ok(wait_workers($pid, 2), 'gateway has two workers');

##########################################################################################
# 1. Known traffic from concurrent clients, served by both workers, counted exactly.
##########################################################################################

# name, path, headers, body, status, response check
my $json  = sub { qq{{"model":"$_[0]","messages":[{"role":"user","content":"hi"}]}} };
my @kinds = (
    [ 'alpha JSON m1', '/v1/chat/completions', "Authorization: Bearer sk-alpha-1\r\n",
      $json->('m1'), 200, qr/\A\{(?=.*"object":"chat\.completion")(?=.*"model":"m1")/s ],
    [ 'alpha-2 JSON m1', '/v1/chat/completions', "Authorization: Bearer sk-alpha-2\r\n",
      $json->('m1'), 200, qr/\A\{(?=.*"object":"chat\.completion")(?=.*"model":"m1")/s ],
    [ 'beta JSON m2', '/v1/chat/completions', "Authorization: Bearer sk-beta-1\r\n",
      $json->('m2'), 200, qr/\A\{(?=.*"object":"chat\.completion")(?=.*"model":"m2")/s ],
    [ 'no key', '/v1/chat/completions', "",
      $json->('m1'), 401, qr/"code":"missing_api_key"/ ],
    # role chunk, 5 content chunks, finish chunk, [DONE]
    [ 'beta stream m2', '/v1/chat/completions', "Authorization: Bearer sk-beta-1\r\n",
      '{"model":"m2","stream":true,"max_tokens":5,"messages":[]}', 200,
      qr/\A(?:data: \{[^\n]*"object":"chat\.completion\.chunk"[^\n]*\n\n){7}data: \[DONE\]\n\n\z/ ],
);
# Every client sends each kind the same number of times (starting at a different one), so a
# burst's totals are fixed: 8 clients x 10 requests = 80 requests, 16 of each kind.
my $clients    = 8;
my $per_client = 2 * @kinds;
my %per_burst;    # kind name -> requests per burst
$per_burst{ $kinds[$_ % @kinds][0] }++ for 0 .. $clients * $per_client - 1;

my (%sent, %bad, %pids);
my $bursts = 0;
while ($bursts < 5) {
    $bursts++;
    burst();
    last if keys %pids >= 2;
    diag("burst $bursts: only pid(s) " . join(',', sort keys %pids) . ' answered; sending another');
}
is_deeply(\%sent, { map { $_ => $per_burst{$_} * $bursts } keys %per_burst },
    "$bursts burst(s): every request was answered")
    or diag(explain(\%sent));
is(scalar(keys %bad), 0, 'every request got its complete, correct answer') or diag(explain(\%bad));
my @workers = workers($pid);
is(scalar(keys %pids), 2, 'both workers served requests: ' . join(', ', map { "$_ x$pids{$_}" } sort keys %pids));
is_deeply([ sort keys %pids ], [ sort @workers ], 'the X-Pid values are the gateway\'s worker pids');

# One scrape: every count is the sum over both workers.
my $n_alpha  = ($per_burst{'alpha JSON m1'} + $per_burst{'alpha-2 JSON m1'}) * $bursts;
my $n_beta   = ($per_burst{'beta JSON m2'} + $per_burst{'beta stream m2'}) * $bursts;
my $n_nokey  = $per_burst{'no key'} * $bursts;
my $n_all    = $n_alpha + $n_beta + $n_nokey;
my $n_proxy  = $n_alpha + $n_beta;
my ($m, $text, $mpid) = scrape();
ok($m, 'scraped /metrics');
ok(exists $pids{$mpid}, "/metrics answered by a worker ($mpid)");

is_deeply(family($m, 'gateway_requests_total'), {
    'gateway_requests_total{namespace="alpha",model="m1",code="200"}' => $n_alpha,
    'gateway_requests_total{namespace="beta",model="m2",code="200"}'  => $n_beta,
    'gateway_requests_total{namespace="",model="",code="401"}'        => $n_nokey,
}, "gateway_requests_total: $n_alpha alpha/m1/200, $n_beta beta/m2/200, $n_nokey unidentified/401");
is_deeply(family($m, 'gateway_requests_success_total'), {
    'gateway_requests_success_total{namespace="alpha",model="m1"}' => $n_alpha,
    'gateway_requests_success_total{namespace="beta",model="m2"}'  => $n_beta,
    'gateway_requests_success_total{namespace="",model=""}'        => 0,
}, 'gateway_requests_success_total');
is_deeply(family($m, 'gateway_requests_failed_total'), {
    'gateway_requests_failed_total{namespace="alpha",model="m1"}' => 0,
    'gateway_requests_failed_total{namespace="beta",model="m2"}'  => 0,
    'gateway_requests_failed_total{namespace="",model=""}'        => $n_nokey,
}, 'gateway_requests_failed_total');
is_deeply(family($m, 'gateway_rejections_total'), {
    'gateway_rejections_total{namespace="",reason="missing_api_key"}' => $n_nokey,
}, 'gateway_rejections_total: only the missing keys');
is_deeply(family($m, 'gateway_upstream_requests_total'), {
    'gateway_upstream_requests_total{upstream="mock",code="200"}' => $n_proxy,
}, "gateway_upstream_requests_total: $n_proxy attempts at upstream \"mock\"");
is($m->{'gateway_upstream_failovers_total{upstream="mock"}'}, 0, 'no failovers');
is($m->{'gateway_upstream_duration_seconds_count{upstream="mock"}'}, $n_proxy,
    'gateway_upstream_duration_seconds_count');
is($m->{'gateway_request_duration_seconds_count{namespace="alpha",model="m1"}'}, $n_alpha,
    'request duration count alpha/m1');
is($m->{'gateway_request_duration_seconds_count{namespace="beta",model="m2"}'}, $n_beta,
    'request duration count beta/m2');
is($m->{'gateway_request_duration_seconds_count{namespace="",model=""}'}, $n_nokey,
    'request duration count unidentified');
is($m->{'gateway_overhead_seconds_count'}, $n_all, "gateway_overhead_seconds_count $n_all");
check_histograms($text, 'after the bursts');
is_deeply(family($m, 'gateway_requests_in_flight'), {
    'gateway_requests_in_flight{namespace="alpha"}' => 0,
    'gateway_requests_in_flight{namespace="beta"}'  => 0,
    'gateway_requests_in_flight{namespace=""}'      => 0,
}, 'gateway_requests_in_flight is 0 for every namespace once all clients are done');
# Tokens: the mock reports usage in JSON answers (prompt 7 = its own count of one "hi"
# message, completion 38 = its whole reply); the streams do not ask for usage (no
# stream_options) and the mock sends none, so the gateway counts them itself: prompt 3 (an
# empty message list: the reply priming), completion = o200k_base tokens of the 5 streamed
# pieces ("Hello! This is a") = 5.
my $n_stream = $per_burst{'beta stream m2'} * $bursts;
my $n_beta_json = $per_burst{'beta JSON m2'} * $bursts;
is_deeply(family($m, 'gateway_tokens_total'), {
    'gateway_tokens_total{namespace="alpha",model="m1",type="prompt"}'     => 7 * $n_alpha,
    'gateway_tokens_total{namespace="alpha",model="m1",type="completion"}' => 38 * $n_alpha,
    'gateway_tokens_total{namespace="beta",model="m2",type="prompt"}'      => 7 * $n_beta_json + 3 * $n_stream,
    'gateway_tokens_total{namespace="beta",model="m2",type="completion"}'  => 38 * $n_beta_json + 5 * $n_stream,
}, 'gateway_tokens_total: provider usage of the JSON answers + the gateway\'s counts of the streams')
    or diag(explain(family($m, 'gateway_tokens_total')));
# 3 request series, 1 upstream, 1 rejection, 3 in-flight
is($m->{gateway_metrics_series}, 8, 'gateway_metrics_series 8');
is($m->{gateway_metrics_series_max}, 500, 'gateway_metrics_series_max 500');
is($m->{gateway_metrics_series_dropped_total}, 0, 'nothing dropped');
my ($info) = grep { /^gateway_config_info\{/ } keys %$m;
like($info // '', qr/^gateway_config_info\{version="t-1",source="file",sha256="[0-9a-f]{64}"\}$/,
    'gateway_config_info names the fixture\'s version, its source and sha256');
my ($build) = grep { /^gateway_build_info\{/ } keys %$m;
like($build // '', qr/^gateway_build_info\{version="[^"]+",nginx_version="\Q$nginx_version\E"\}$/,
    "gateway_build_info names nginx $nginx_version");

##########################################################################################
# 2. The in-flight gauge: a running stream, a client abort, the end.
##########################################################################################

my $slow = '/slow/v1/chat/completions';
my $s1 = open_stream($slow, "Authorization: Bearer sk-beta-1\r\n",
    '{"model":"slow","stream":true,"max_tokens":20,"messages":[]}');
ok($s1, 'a slow beta stream started (header and first event received)');
($m) = scrape();
is_deeply(family($m, 'gateway_requests_in_flight'), {
    'gateway_requests_in_flight{namespace="alpha"}' => 0,
    'gateway_requests_in_flight{namespace="beta"}'  => 1,
    'gateway_requests_in_flight{namespace=""}'      => 0,
}, 'in flight while the stream runs: beta 1');

my $s2 = open_stream($slow, "Authorization: Bearer sk-alpha-1\r\n",
    '{"model":"abort","stream":true,"max_tokens":20,"messages":[]}');
ok($s2, 'a second (alpha) stream started');
($m) = scrape();
is($m->{'gateway_requests_in_flight{namespace="alpha"}'}, 1, 'in flight: alpha 1 ...');
is($m->{'gateway_requests_in_flight{namespace="beta"}'}, 1, '... and beta 1');

# The client goes away mid-stream; nginx notices (closed connection or failed write), ends
# the request, and the request pool's cleanup releases the gauge.
close $s2->{sock} if $s2;
my $t_abort = time;
for (1 .. 30) {
    ($m) = scrape();
    last if ($m->{'gateway_requests_in_flight{namespace="alpha"}'} // -1) == 0;
    sleep 0.1;
}
my $released = time - $t_abort;
is($m->{'gateway_requests_in_flight{namespace="alpha"}'}, 0,
    sprintf('the aborted stream left in-flight (%.2fs after the close)', $released));
is($m->{'gateway_requests_in_flight{namespace="beta"}'}, 1, 'the running stream is still in flight');

my ($st1, $body1) = finish_stream($s1);
is($st1, 200, 'the slow stream completed with 200');
like($body1 // '', qr/(?:data: \{[^\n]*\n\n){22}data: \[DONE\]\n\n\z/,
    'the slow stream has its 22 events and [DONE]');

($m, $text) = scrape();
is_deeply(family($m, 'gateway_requests_in_flight'), {
    'gateway_requests_in_flight{namespace="alpha"}' => 0,
    'gateway_requests_in_flight{namespace="beta"}'  => 0,
    'gateway_requests_in_flight{namespace=""}'      => 0,
}, 'in flight: 0 everywhere once both streams ended');
is($m->{'gateway_requests_total{namespace="beta",model="slow",code="200"}'}, 1,
    'the slow stream is counted once, 200');
# The aborted stream's code: its 200 header was sent before the client left, and nginx keeps
# that status (as $status does); 499 is only for a client gone before any answer.
my %abort = %{ family($m, 'gateway_requests_total', qr/namespace="alpha",model="abort"/) };
is(scalar(keys %abort), 1, 'the aborted stream is counted once')
    or diag(explain(\%abort));
my ($abort_series) = keys %abort;
like($abort_series // '', qr/code="(?:200|499)"\}$/, 'with code 200 (or 499)');
is($abort_series ? $abort{$abort_series} : undef, 1, 'with count 1');
note("aborted stream recorded as: $abort_series") if $abort_series;
is(sum(values %{ family($m, 'gateway_upstream_requests_total') }), $n_proxy + 2,
    'both streams counted as upstream attempts')
    or diag(explain(family($m, 'gateway_upstream_requests_total')));
is(sum(values %{ family($m, 'gateway_requests_total') }), $n_all + 2, 'requests total grew by 2');
check_histograms($text, 'after the streams');

##########################################################################################
# 3. promtool: the exposition (after traffic) is lint-clean.
##########################################################################################

SKIP: {
    my $promtool = $ENV{PROMTOOL} || which('promtool');
    skip 'promtool missing and AI_GATEWAY_NO_PROMTOOL set', 2
        if !$promtool && $ENV{AI_GATEWAY_NO_PROMTOOL};
    ok($promtool, 'promtool found (install Debian\'s "prometheus" package, `make deps` does; '
        . 'or set PROMTOOL=/path, or AI_GATEWAY_NO_PROMTOOL=1 to skip)')
        or skip 'no promtool', 1;
    my $tmp = "$prefix/metrics.txt";
    open my $fh, '>', $tmp or die $!;
    print $fh $text;
    close $fh;
    my $out = `'$promtool' check metrics < '$tmp' 2>&1`;
    my $rc = $? >> 8;
    ok($rc == 0 && $out eq '', "promtool check metrics: exit 0, no output")
        or diag("exit $rc: $out");
}

##########################################################################################
# 4. Reloads: same zone -> unchanged; new max_series -> applied, counters kept; new size ->
#    a new zone from zero.
##########################################################################################

my ($before, undef, undef) = scrape();
my $up_before = $before->{gateway_up_time_seconds};
my $reloads = 0;

ok(reload($pid), 'reload 1 (same configuration): new workers up, old ones gone');
$reloads++;
my ($after, undef, $apid) = scrape();
ok((grep { $_ == $apid } workers($pid)), "/metrics answered by a new worker ($apid)");
cmp_ok($after->{gateway_up_time_seconds}, '>=', $up_before,
    "gateway_up_time_seconds not reset ($up_before -> $after->{gateway_up_time_seconds})");
cmp_ok($after->{gateway_up_time_seconds}, '>=', int(time - $started) - 1,
    'gateway_up_time_seconds counts from the first start');
is_deeply(without($after, 'gateway_up_time_seconds'), without($before, 'gateway_up_time_seconds'),
    'the whole exposition is unchanged but for up_time (every counter kept)');
is_deeply(family($after, 'gateway_requests_total'), family($before, 'gateway_requests_total'),
    'every gateway_requests_total value unchanged');

write_conf($prefix, gateway_conf('1m', 700), 'keep logs');
ok(reload($pid), 'reload 2 (max_series=700, same size)');
$reloads++;
($after) = scrape();
is($after->{gateway_metrics_series_max}, 700, 'gateway_metrics_series_max is the new cap');
is_deeply(without($after, 'gateway_up_time_seconds', 'gateway_metrics_series_max'),
    without($before, 'gateway_up_time_seconds', 'gateway_metrics_series_max'),
    'every counter kept across the max_series change');
cmp_ok($after->{gateway_up_time_seconds}, '>=', $up_before, 'up_time still not reset');

write_conf($prefix, gateway_conf('2m', 700), 'keep logs');
my $t_resize = time;
ok(reload($pid), 'reload 3 (zone size 2m)');
$reloads++;
($after, $text) = scrape();
is_deeply(family($after, 'gateway_requests_total'), {}, 'a new size is a new zone: no requests counted');
is_deeply(family($after, 'gateway_upstream_requests_total'), {}, '... no upstream attempts');
is_deeply(family($after, 'gateway_requests_in_flight'), {}, '... no in-flight series');
is($after->{gateway_overhead_seconds_count}, 0, '... overhead count 0');
is($after->{gateway_metrics_series}, 0, '... gateway_metrics_series 0');
is($after->{gateway_metrics_series_max}, 700, '... the cap as configured');
cmp_ok($after->{gateway_up_time_seconds}, '<=', ceil(time - $t_resize) + 1,
    "... and up_time restarted ($after->{gateway_up_time_seconds})");
my ($st, $hdr, $body) = request('/v1/chat/completions', "Authorization: Bearer sk-alpha-1\r\n", $json->('m1'));
is($st, 200, 'a request after the resize');
($after, $text) = scrape();
is_deeply(family($after, 'gateway_requests_total'), {
    'gateway_requests_total{namespace="alpha",model="m1",code="200"}' => 1,
}, 'counting starts from zero in the new zone');
is_deeply(family($after, 'gateway_upstream_requests_total'), {
    'gateway_upstream_requests_total{upstream="mock",code="200"}' => 1,
}, '... upstream attempts too');
is($after->{'gateway_requests_in_flight{namespace="alpha"}'}, 0, '... in flight 0');
check_histograms($text, 'in the new zone');

##########################################################################################
# 5. Stop; the logs.
##########################################################################################

ok(stop($pid), 'gateway stopped');
ok(stop($mock_pid), 'mock provider stopped');
($pid, $mock_pid) = ();

my $log = slurp("$prefix/logs/error.log");
my $hups = () = $log =~ /signal 1 \(SIGHUP\) received/g;
is($hups, $reloads, "$reloads reloads in the error log");
my $reconf = () = $log =~ /\[notice\] \d+#\d+: reconfiguring$/mg;    # not the "signal ..., reconfiguring" line
is($reconf, $reloads, '... each one "reconfiguring"');
unlike($log, qr/held another layout/, 'no zone was reset for a layout mismatch');
for my $l ([ gateway => $log ], [ 'mock provider' => slurp("$mock_prefix/logs/error.log") ]) {
    my @bad = grep { /\[(error|alert|crit|emerg)\]/ } split /\n/, $l->[1];
    is(scalar(@bad), 0, "$l->[0]: no [error], [alert], [crit] or [emerg]")
        or diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
}

done_testing();

##########################################################################################
# helpers
##########################################################################################

# One burst: $clients forked clients, each sending $per_client requests (a new connection
# each); results (kind, status, ok, X-Pid) come back through pipes.
sub burst {
    my @pipes;
    for my $c (0 .. $clients - 1) {
        pipe(my $r, my $w) or die $!;
        my $child = fork // die $!;
        if (!$child) {
            close $r;
            for my $i (0 .. $per_client - 1) {
                my $k = $kinds[($c + $i) % @kinds];
                my ($status, $h, $body) = request($k->[1], $k->[2], $k->[3]);
                my $ok = defined $status && $status == $k->[4] && $body =~ $k->[5] ? 1 : 0;
                printf $w "%s\t%s\t%s\t%s\n", $k->[0], $status // 'none', $ok,
                    ($h && $h->{'x-pid'}) // '';
            }
            close $w;
            POSIX::_exit(0);    # no END blocks, no Test::More summary in the child
        }
        close $w;
        push @pipes, [ $child, $r ];
    }
    for (@pipes) {
        my ($child, $r) = @$_;
        while (my $line = <$r>) {
            chomp $line;
            my ($kind, $status, $ok, $p) = split /\t/, $line, -1;
            $sent{$kind}++;
            $bad{"$kind -> $status"}++ unless $ok;
            $pids{$p}++ if $p;
        }
        waitpid($child, 0);
    }
}

# A request on a new connection; returns (status, {lowercased header => value}, body).
sub request {
    my ($path, $headers, $body, $method) = @_;
    $method //= 'POST';
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or return;
    $s->autoflush(1);
    my $req = "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" . $headers;
    $req .= "Content-Length: " . length($body) . "\r\n" if defined $body;
    print $s $req . "\r\n" . ($body // '');
    local $/;
    my $resp = eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 10;
        my $r = <$s>;
        alarm 0;
        $r;
    };
    return parse_response($resp);
}

sub parse_response {
    my $resp = shift;
    return unless defined $resp && $resp =~ m{\AHTTP/1\.1 (\d{3})};
    my $status = $1;
    my ($head, $rest) = split /\r\n\r\n/, $resp, 2;
    my %h;
    for (split /\r\n/, $head) {
        $h{ lc $1 } = $2 if /^([^:]+):\s*(.*)$/;
    }
    $rest = dechunk($rest // '') if ($h{'transfer-encoding'} // '') =~ /chunked/i;
    return ($status, \%h, $rest);
}

# Sends a streaming request and returns once the response header and the first event are in
# ({sock, buf}); the stream then runs on while the test does other things.
sub open_stream {
    my ($path, $headers, $body) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or return;
    $s->autoflush(1);
    print $s "POST $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" . $headers
        . "Content-Length: " . length($body) . "\r\n\r\n" . $body;
    my $sel = IO::Select->new($s);
    my $buf = '';
    my $end = time + 5;
    while ($buf !~ /\r\n\r\n[\s\S]*data: /) {
        my $left = $end - time;
        return if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($s, $buf, 4096, length $buf);
        return unless $n;
    }
    return { sock => $s, buf => $buf };
}

# Reads an open stream to its end; returns (status, body).
sub finish_stream {
    my $st = shift or return;
    my ($s, $buf) = @{$st}{qw(sock buf)};
    my $sel = IO::Select->new($s);
    my $end = time + 10;
    while (1) {
        my $left = $end - time;
        last if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    close $s;
    my ($status, undef, $body) = parse_response($buf);
    return ($status, $body);
}

# GET /metrics; returns ({series => value}, the exposition, the pid that answered).
sub scrape {
    my ($status, $h, $body) = request('/metrics', '', undef, 'GET');
    if (($status // 0) != 200
        || ($h->{'content-type'} // '') ne 'text/plain; version=0.0.4; charset=utf-8') {
        diag('GET /metrics failed: ' . ($status // 'no response'));
        return ({}, '', '');
    }
    my %m;
    for (split /\n/, $body) {
        next if /^#/;
        my ($series, $value) = /^(\S+(?:\{.*\})?) (\S+)$/ or die "bad exposition line: $_";
        die "duplicate series $series" if exists $m{$series};
        $m{$series} = $value;
    }
    return (\%m, $body, $h->{'x-pid'});
}

# The samples of one family (exact name, so gateway_requests_total leaves out
# gateway_requests_success_total), optionally only those whose labels match $re.
sub family {
    my ($m, $name, $re) = @_;
    return { map { $_ => $m->{$_} }
             grep { /^\Q$name\E(?:\{|$)/ && (!$re || /$re/) } keys %$m };
}

sub without {
    my ($m, @drop) = @_;
    my %c = %$m;
    delete @c{@drop};
    return \%c;
}

sub sum { my $s = 0; $s += $_ for @_; return $s }

# Every histogram in the exposition: `le` ascending and ending at +Inf, buckets cumulative
# (non-decreasing), +Inf equal to _count, _sum present and not negative.
sub check_histograms {
    my ($text, $when) = @_;
    my (%buckets, @order);
    for (split /\n/, $text) {
        my ($name, $labels, $le, $v) = /^(\w+)_bucket\{(.*?),?le="([^"]+)"\} (\d+)$/ or next;
        my $id = "$name\{$labels\}";
        push @order, $id unless $buckets{$id};
        push @{ $buckets{$id} }, [ $le, $v ];
    }
    my %m = map { /^(\S+) (\S+)$/ ? ($1 => $2) : () } grep { !/^#/ } split /\n/, $text;
    my @problems;
    for my $id (@order) {
        my ($name, $labels) = $id =~ /^(\w+)\{(.*)\}$/;
        my $suffix = $labels eq '' ? '' : "{$labels}";
        my @b = @{ $buckets{$id} };
        push @problems, "$id: last bucket is le=\"$b[-1][0]\"" unless $b[-1][0] eq '+Inf';
        for my $i (1 .. $#b) {
            push @problems, "$id: le=\"$b[$i][0]\" after le=\"$b[$i-1][0]\""
                unless $b[$i][0] eq '+Inf' || $b[$i][0] > $b[$i - 1][0];
            push @problems, "$id: bucket le=\"$b[$i][0]\" $b[$i][1] < $b[$i-1][1]"
                if $b[$i][1] < $b[$i - 1][1];
        }
        my $count = $m{"${name}_count$suffix"};
        push @problems, "$id: +Inf $b[-1][1] != _count " . ($count // 'missing')
            unless defined $count && $count == $b[-1][1];
        my $sum = $m{"${name}_sum$suffix"};
        push @problems, "$id: _sum " . ($sum // 'missing')
            unless defined $sum && $sum =~ /^[0-9.e+-]+$/ && $sum >= 0;
    }
    ok(@order >= 1 && !@problems,
        sprintf('%d histograms %s: cumulative, monotonic, +Inf == _count', scalar(@order), $when))
        or diag(join "\n", @problems);
}

sub which {
    my $cmd = shift;
    for (split /:/, $ENV{PATH} // '') {
        return "$_/$cmd" if -x "$_/$cmd";
    }
    return;
}

# The live (non-zombie) children of the master: its workers.
sub workers {
    my $master = shift;
    my @w;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $f, '<', $stat or next;
        my $line = <$f> // next;
        my ($p, $state, $ppid) = $line =~ /^(\d+) \(.*\) (\S) (\d+)/ or next;
        push @w, $p if $ppid == $master && $state ne 'Z';
    }
    return @w;
}

sub wait_workers {
    my ($master, $n) = @_;
    for (1 .. 50) {
        return 1 if workers($master) == $n;
        sleep 0.1;
    }
    return;
}

# SIGHUP, then wait until the master runs two workers none of which is an old one.
sub reload {
    my $master = shift;
    my %old = map { $_ => 1 } workers($master);
    kill 'HUP', $master or return;
    for (1 .. 100) {
        my @w = workers($master);
        return 1 if @w == 2 && !grep { $old{$_} } @w;
        sleep 0.05;
    }
    return;
}

