# Policies across workers, over time and across reloads:
#
#   1. exactness: 2 workers, 20 concurrent clients (a new connection per request) send 200
#      requests for a namespace allowed 50 per minute: exactly 50 pass, 150 get 429 with
#      Retry-After, and both workers served some of them;
#   2. concurrency: 20 clients start slow requests at once for a namespace allowed 5 in
#      flight: exactly 5 pass; afterwards the slots are free again;
#   3. concurrency is given back however a request ends: a client that aborts a slow request,
#      an upstream that refuses connections (502), an upstream timeout (504);
#   4. `nginx -s reload` keeps the counters: the requests window stays exhausted, and a slow
#      request that started before the reload still holds its slot until it ends in the old
#      worker;
#   5. a reload with a smaller zone starts a new zone; when every slot holds a request in
#      flight, a new counter gets 503 limit_zone_full; once they end, the slots are reused;
#   6. no [error], [alert], [crit] or [emerg] in either nginx's log.
#
# Plain Test::More, like t/061: the data-driven format has no sections for concurrent clients
# or reloads. The mock provider runs in its own nginx.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(sleep time);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::AIGateway::Process;
use POSIX ();

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;

my $root        = abs_path(dirname(__FILE__) . '/..');
my $port        = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 50;
my $mockport    = $port + 1;
my $prefix      = "$root/t/servroot-policy";
my $mock_prefix = "$root/t/servroot-policy-mock";

(my $events = main_conf($module, 1)) =~ s/worker_connections 256/worker_connections 1024/;
write_conf($mock_prefix, <<"_EOC_");
$events
http {
    access_log off;
    server {
        listen 127.0.0.1:$mockport;
        location /       { ai_gateway_mock_provider; }
        location /slow/  { ai_gateway_mock_provider latency=1500ms; }
        location /stuck/ { ai_gateway_mock_provider latency=10s; }
    }
}
_EOC_

sub gateway_conf {
    my $zone = shift;
    (my $main = main_conf($module, 2)) =~ s/worker_connections 256/worker_connections 1024/;
    return <<"_EOC_";
$main
http {
    access_log off;
    ai_gateway_config $root/t/fixtures/policies-workers.json;
    ai_gateway_limit_zone limits $zone;
    lingering_close off;
    upstream mock { server 127.0.0.1:$mockport; keepalive 8; }
    server {
        listen 127.0.0.1:$port;
        location / {
            ai_gateway on;
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header X-Pid \$pid always;
        }
        location /dead/ {
            ai_gateway on;
            proxy_pass http://127.0.0.1:1;
        }
        location /stuck/ {
            ai_gateway on;
            proxy_pass http://mock;
            proxy_read_timeout 300ms;
        }
    }
}
_EOC_
}
write_conf($prefix, gateway_conf('1m'));

my ($pid, $mock_pid);
END { stop($_) for grep { $_ } $pid, $mock_pid }

is(system($nginx, '-p', "$mock_prefix/", '-c', 'conf/nginx.conf'), 0, 'mock provider started');
$mock_pid = wait_pid("$mock_prefix/logs/nginx.pid");
is(system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf'), 0, 'gateway started');
$pid = wait_pid("$prefix/logs/nginx.pid");
ok(wait_port($port) && wait_port($mockport), 'both listen');

my $chat = sub { qq{{"model":"$_[0]","messages":[{"role":"user","content":"hi"}]}} };
sub key { "Authorization: Bearer sk-w-$_[0]\r\n" }

##########################################################################################
# 1. Exactly the allowed number per window, across two workers.
##########################################################################################

my @r = clients(20, 10, sub { ['/v1/chat/completions', key('exact'), $chat->('m')] });
my %status;
$status{ $_->{status} // 'none' }++ for @r;
is_deeply(\%status, { 200 => 50, 429 => 150 }, '200 requests from 20 clients: exactly 50 passed, 150 got 429')
    or diag(explain(\%status));
my %pids;
$pids{ $_->{headers}{'x-pid'} }++ for grep { $_->{headers}{'x-pid'} } @r;
is(scalar(keys %pids), 2, 'both workers answered: ' . join(', ', map { "$_ x$pids{$_}" } sort keys %pids));
my @limited = grep { ($_->{status} // 0) == 429 } @r;
is(scalar(grep { ($_->{headers}{'retry-after'} // '') =~ /^(5[6-9]|6[0-3])$/ } @limited), 150,
    'every 429 says Retry-After: about a minute (the first bucket leaves the window)');
is(scalar(grep { $_->{body} =~ /"code":"rate_limit_exceeded"/ && $_->{body} =~ /"type":"requests"/ } @limited), 150,
    'every 429 is an OpenAI rate_limit_exceeded error of type requests');
my @remaining = sort { $a <=> $b } map { $_->{headers}{'x-ratelimit-remaining-requests'} }
    grep { $_->{status} == 200 } @r;
is_deeply(\@remaining, [0 .. 49], 'the 50 admitted requests saw remaining 49 .. 0, each once');

##########################################################################################
# 2. Concurrency: exactly the limit in flight.
##########################################################################################

my $t0 = time;
@r = clients(20, 1, sub { ['/slow/v1/chat/completions', key('conc'), $chat->('m')] });
%status = ();
$status{ $_->{status} // 'none' }++ for @r;
is_deeply(\%status, { 200 => 5, 429 => 15 }, '20 slow requests at once, limit 5: exactly 5 passed')
    or diag(explain(\%status));
is(scalar(grep { $_->{body} =~ /"code":"concurrency_limit_exceeded"/ && ($_->{headers}{'retry-after'} // '') eq '1' } grep { $_->{status} == 429 } @r),
    15, 'the others: 429 concurrency_limit_exceeded, Retry-After: 1');
@r = clients(5, 1, sub { ['/slow/v1/chat/completions', key('conc'), $chat->('m')] });
is(scalar(grep { $_->{status} == 200 } @r), 5, 'once they ended, 5 more pass at once');

##########################################################################################
# 3. Every way a request ends gives the slot back (limit 1).
##########################################################################################

my $s = send_only('/slow/v1/chat/completions', key('one'), $chat->('m'));
sleep 0.3;
is(status_of(request('/v1/chat/completions', key('one'), $chat->('m'))), 429,
    'while a slow request runs, the next one gets 429');
close $s;
ok(wait_for(sub { status_of(request('/v1/chat/completions', key('one'), $chat->('m'))) == 200 }),
    'after the client aborted the slow request, the slot is free');

my ($st, $h, $body) = request('/dead/v1/chat/completions', key('one'), $chat->('m'));
is($st, 502, 'an upstream that refuses connections: 502');
like($body // '', qr/"code":"bad_gateway"/, '... as an OpenAI-shaped error');
is(status_of(request('/v1/chat/completions', key('one'), $chat->('m'))), 200,
    'after the 502, the slot is free');
($st) = request('/stuck/v1/chat/completions', key('one'), $chat->('m'));
is($st, 504, 'an upstream that does not answer in time: 504');
is(status_of(request('/v1/chat/completions', key('one'), $chat->('m'))), 200,
    'after the 504, the slot is free');

##########################################################################################
# 4. A reload keeps the counters.
##########################################################################################

$s = send_only('/slow/v1/chat/completions', key('one'), $chat->('m'));
sleep 0.3;
ok(reload($pid), 'reloaded (same zone name and size)');
($st, $h) = request('/v1/chat/completions', key('exact'), $chat->('m'));
is($st, 429, 'after the reload the requests window is still exhausted');
is($h->{'x-ratelimit-remaining-requests'}, 0, '... remaining 0');
is(status_of(request('/v1/chat/completions', key('one'), $chat->('m'))), 429,
    'the slow request that began before the reload still holds its concurrency slot');
my ($slow_status) = read_response($s);
is($slow_status, 200, 'the slow request finished in the old worker');
ok(wait_for(sub { status_of(request('/v1/chat/completions', key('one'), $chat->('m'))) == 200 }),
    'its slot was given back to the zone the new workers use');

##########################################################################################
# 5. A full zone: 503 limit_zone_full while every slot is in use, reuse afterwards.
##########################################################################################

write_conf($prefix, gateway_conf('32k'), 1);
ok(reload($pid, 1), 'reloaded with a 32k zone (a new zone), the old workers have exited');
my ($capacity) = slurp("$prefix/logs/error.log") =~ /.*ai_gateway_limit_zone "limits": \d+ counters \(up to (\d+) in use at once\)/s;
ok($capacity && $capacity < 140, "the 32k zone holds $capacity counters in use at once");
is(status_of(request('/v1/chat/completions', key('exact'), $chat->('m'))), 200,
    'a new zone size starts from zero: the requests window is open again');
my $n = 0;
@r = clients(140, 1, sub { ['/slow/v1/chat/completions', key('full'), $chat->('model-' . $n++)] });
%status = ();
$status{ $_->{status} // 'none' }++ for @r;
ok(($status{503} // 0) >= 140 - $capacity && ($status{200} // 0) <= $capacity && ($status{200} + $status{503}) == 140,
    "140 concurrent requests, each with its own per-model counter: $status{200} passed, "
    . ($status{503} // 0) . ' got 503 (zone full)')
    or diag(explain(\%status));
is(scalar(grep { $_->{body} =~ /"code":"limit_zone_full"/ } grep { $_->{status} == 503 } @r),
    $status{503} // 0, '... each an OpenAI-shaped limit_zone_full error');
@r = clients(10, 1, sub { ['/v1/chat/completions', key('full'), $chat->('other-' . $n++)] });
is(scalar(grep { $_->{status} == 200 } @r), 10, 'once they ended, their slots are reused');

##########################################################################################
# 6. Logs.
##########################################################################################

stop($pid);
undef $pid;
for my $log ("$prefix/logs/error.log", "$mock_prefix/logs/error.log") {
    # nginx's own lines about the refused and the timed-out upstream of section 3
    my @bad = grep { /\[(error|alert|crit|emerg)\]/
                     && !/\[error\] .*(connect\(\) failed \(111: Connection refused\) while connecting to upstream|upstream timed out \(110: Connection timed out\) while reading response header from upstream)/ }
        split /\n/, slurp($log);
    is(scalar(@bad), 0, "no [error], [alert], [crit] or [emerg] in $log") or diag(join "\n", @bad[0 .. ($#bad < 5 ? $#bad : 5)]);
}
my $log = slurp("$prefix/logs/error.log");
like($log, qr/\[warn\] .*ai_gateway: rejected with 429 requests_limit, namespace "exact", policy "requests\/60s", limit 50, used 50, requested 1/,
    'rejections are logged at warn with the excess');
like($log, qr/\[warn\] .*ai_gateway: rejected with 503 limit_zone_full, namespace "full"/, 'a full zone is logged');

done_testing();

##########################################################################################
# helpers
##########################################################################################

# $n forked clients, each sending $each requests (a new connection each) built by $make
# (path, headers, body); returns every response as {status, headers, body}.
sub clients {
    my ($n, $each, $make) = @_;
    my @jobs = map { [ map { $make->() } 1 .. $each ] } 1 .. $n;
    my @pipes;
    for my $job (@jobs) {
        pipe(my $rd, my $wr) or die $!;
        my $child = fork // die $!;
        if (!$child) {
            close $rd;
            for my $req (@$job) {
                my ($status, $h, $body) = request(@$req);
                $body //= '';
                $body =~ s/\n/ /g;
                printf $wr "%s\t%s\t%s\t%s\t%s\n", $status // '', $h->{'x-pid'} // '',
                    $h->{'retry-after'} // '', $h->{'x-ratelimit-remaining-requests'} // '', $body;
            }
            close $wr;
            POSIX::_exit(0);
        }
        close $wr;
        push @pipes, [ $child, $rd ];
    }
    my @out;
    for (@pipes) {
        my ($child, $rd) = @$_;
        while (my $line = <$rd>) {
            chomp $line;
            my ($status, $p, $ra, $rem, $body) = split /\t/, $line, 5;
            my %h;
            $h{'x-pid'} = $p if $p ne '';
            $h{'retry-after'} = $ra if $ra ne '';
            $h{'x-ratelimit-remaining-requests'} = $rem if $rem ne '';
            push @out, { status => ($status eq '' ? undef : $status), headers => \%h, body => $body };
        }
        waitpid($child, 0);
    }
    return @out;
}

sub request {
    my ($path, $headers, $body) = @_;
    my $s = send_only($path, $headers, $body) or return;
    return read_response($s);
}

sub send_only {
    my ($path, $headers, $body) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or return;
    $s->autoflush(1);
    print $s "POST $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n$headers"
        . "Content-Length: " . length($body) . "\r\n\r\n$body";
    return $s;
}

sub read_response {
    my $s = shift;
    local $/;
    my $resp = eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 15;
        my $r = <$s>;
        alarm 0;
        $r;
    };
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

sub status_of { return $_[0] // 0 }

# Polls $cond for up to 5 s.
sub wait_for {
    my $cond = shift;
    for (1 .. 50) {
        return 1 if $cond->();
        sleep 0.1;
    }
    return 0;
}

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

# SIGHUP, then wait until two new workers run; with $all_gone, until the old ones have
# exited too (an old worker accepts connections until it gets its shutdown signal).
sub reload {
    my ($master, $all_gone) = @_;
    my %old = map { $_ => 1 } workers($master);
    kill 'HUP', $master or return;
    for (1 .. 200) {
        my @w = workers($master);
        return 1 if (grep { !$old{$_} } @w) >= 2 && (!$all_gone || !grep { $old{$_} } @w);
        sleep 0.05;
    }
    return;
}
