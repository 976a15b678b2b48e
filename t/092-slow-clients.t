# Streams the module rewrites, to clients that read slower than the provider writes: a
# provider (t/fixtures/stream_provider.py) sends long OpenAI and Anthropic streams as fast as
# it can; the gateway listens with a small send buffer (sndbuf=32k), so the client's pace
# decides.
#
#   1. the include_usage strip (the client did not ask for usage; the gateway asked the
#      provider and strips it): a client that pauses, then reads at most 8 KB every 10 ms, gets every
#      byte of the stream it asked for, in order;
#   2. the output cap (the provider streams past the max_tokens it was given): the same slow
#      client gets the provider's events up to the cap, then the API's own ending, whole
#      (OpenAI chat, Anthropic messages, OpenAI Responses); one event of 1.5 MB (too large to hold and count)
#      ends the stream at the cap before it;
#   3. a 40 MB rewritten stream to a client that pauses 6 s: the worker's memory does not
#      grow with the stream (nginx stops reading the provider while the client waits), and
#      the client then receives all of it, byte for byte;
#   4. nothing in the error log worse than [info] (no "client timed out", no [error]).
#
# Plain Test::More: the data-driven format has no client that pauses and reads slowly.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use Digest::SHA qw(sha256_hex);
use JSON::PP ();
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::AIGateway::Process;

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;
my $python = 'python3';

my $root     = abs_path(dirname(__FILE__) . '/..');
my $port     = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 35;    # 091: +30/+31
my $provider = $port + 1;
my $prefix   = "$root/t/servroot-slow-clients";
my $script   = "$root/t/fixtures/stream_provider.py";

write_conf($prefix, <<"_EOC_");
${\ main_conf($module, 1) }
http {
    access_log logs/access.log;
    ai_gateway_config gw.json;
    ai_gateway_limit_zone limits 64k;
    send_timeout 10s;
    server {
        listen 127.0.0.1:$port sndbuf=32k;
        location /v1/ {
            ai_gateway on;
            proxy_pass http://127.0.0.1:$provider;
            proxy_http_version 1.1;
            add_header X-Pid \$pid always;
        }
    }
}
_EOC_
open my $fh, '>', "$prefix/conf/gw.json" or die $!;
print $fh <<'_EOJ_';
{"namespaces": [
   {"code": "free", "api_keys": ["033d461ba69fa00769695b91ef3d9187416084607a52805d6ca51f0665bd4fcb"]},
   {"code": "capped", "api_keys": ["8efc96d592e25dfead3d81af2c2d9fc83083a6c431b305ba117de6f359520dbc"],
    "policies": [{"type": "output_tokens", "max": 30000}]}
 ]}
_EOJ_
close $fh;

my ($pid, $provider_pid);
my $parent = $$;
END {
    local $?;    # the exit status stays the tests'
    if ($$ == $parent) {
        stop($pid) if $pid;
        if ($provider_pid) { kill 'TERM', $provider_pid; waitpid($provider_pid, 0) }
    }
}
$provider_pid = fork // die "fork: $!";
if (!$provider_pid) {
    exec($python, $script, 'serve', $provider, "$prefix/logs/provider.pid") or exit 1;
}
ok(wait_port($provider), 'the provider listens');
is(system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf'), 0, 'gateway started');
$pid = wait_pid("$prefix/logs/nginx.pid");
ok(wait_port($port), 'gateway listens');

# What the provider sends for (api, events, include_usage).
sub expected {
    my ($api, $events, $usage) = @_;
    open my $p, '-|', $python, $script, 'expect', $api, $events, $usage ? 1 : 0 or die $!;
    binmode $p;
    local $/;
    my $s = <$p>;
    close $p;
    return $s;
}

sub rss_kb {
    my $p = shift;
    my ($kb) = slurp("/proc/$p/status") =~ /^VmRSS:\s+(\d+) kB/m;
    return $kb // 0;
}

# A streamed request read slowly: after the header, `pause` seconds of nothing, then `piece`
# bytes every `every` seconds. Returns (status, body, worker pid, worker RSS in kB at the end
# of the pause).
sub slow_stream {
    my %o = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 30)
        or die "connect: $!";
    my $body = $o{api} eq 'anthropic'
        ? '{"model":"claude-sonnet-4-5","max_tokens":64000,"stream":true,"messages":[{"role":"user","content":"go"}]}'
        : $o{api} eq 'responses'
        ? '{"model":"gpt-4o","stream":true,"input":"go"}'
        : '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"go"}]}';
    my $path = { anthropic => '/v1/messages', responses => '/v1/responses' }->{$o{api}}
        // '/v1/chat/completions';
    print $s "POST $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "Authorization: Bearer $o{key}\r\nContent-Type: application/json\r\nX-Events: $o{events}\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body";
    my $resp = '';
    while ($resp !~ /\r\n\r\n/) { sysread($s, $resp, 4096, length $resp) or last }
    my ($head) = $resp =~ /\A(.*?\r\n\r\n)/s;
    my ($worker) = $head =~ /^X-Pid: (\d+)/mi;
    sleep $o{pause};
    my $rss = $worker ? rss_kb($worker) : 0;
    my @pieces = (substr($resp, length $head));
    while (1) {
        my $n = sysread($s, my $piece, $o{piece});
        last unless $n;
        push @pieces, $piece;
        sleep $o{every} if $o{every};
    }
    my ($status) = $resp =~ m{\AHTTP/1\.1 (\d{3})};
    my $raw = join '', @pieces;
    return ($status, $head =~ /^Transfer-Encoding: chunked/mi ? dechunk_long($raw) : $raw, $worker, $rss);
}

# A chunked body decoded in one pass (the shared dechunk cuts from the front: slow for 40 MB).
sub dechunk_long {
    my $in = shift;
    my ($at, @out) = (0);
    while ($in =~ /\G([0-9a-fA-F]+)\r\n/gc) {
        my $len = hex $1;
        last if $len == 0;
        push @out, substr($in, pos($in), $len);
        $at = pos($in) + $len + 2;
        pos($in) = $at;
    }
    return join '', @out;
}

##########################################################################################
# 1. The include_usage strip, to a slow client.
##########################################################################################

{
    my $want = expected('openai', 2000, 0);
    ok(length($want) > 250_000, 'a stream of ' . length($want) . ' bytes');
    my $t0 = time;
    my ($status, $got) = slow_stream(api => 'openai', key => 'sk-route-a', events => 2000,
        pause => 1, piece => 8192, every => 0.01);
    is($status, 200, 'include_usage strip, slow client: 200');
    is(length($got), length($want), "every byte arrives (in " . sprintf('%.1f', time - $t0) . " s)");
    ok($got eq $want, 'byte for byte the stream the client asked for (no usage chunk, no "usage":null)');
}

##########################################################################################
# 2. The output cap, to a slow client.
##########################################################################################

for my $api ('openai', 'anthropic', 'responses') {
    my $full = expected($api, 5000, 0);
    my ($status, $got) = slow_stream(api => $api, key => 'sk-route-b', events => 5000,
        pause => 1, piece => 8192, every => 0.01);
    is($status, 200, "$api output cap, slow client: 200");
    my @events = split /(?<=\n\n)/, $got;
    my $ending = { openai => 2, anthropic => 3, responses => 4 }->{$api};    # the cap's own events
    my $kept = join '', @events[0 .. $#events - $ending];
    ok(length($kept) > 10_000 && substr($full, 0, length $kept) eq $kept,
        "$api: the provider's events up to the cap, unchanged (" . length($kept) . ' bytes)');
    ok(length($got) < length($full), "$api: the stream was cut at the cap");
    if ($api eq 'openai') {
        like($got, qr/"finish_reason":"length"\}\]\}\n\ndata: \[DONE\]\n\n\z/,
            'openai: ends with finish_reason length and [DONE], whole');
    } elsif ($api eq 'anthropic') {
        like($got, qr/"stop_reason":"max_tokens".*\n\nevent: message_stop\ndata: \{"type":"message_stop"\}\n\n\z/s,
            'anthropic: ends with stop_reason max_tokens and message_stop, whole');
    } else {
        my @names = map { /\Aevent: (\S+)/ ? $1 : '?' } @events[$#events - 3 .. $#events];
        is_deeply(\@names, [ 'response.output_text.done', 'response.content_part.done',
            'response.output_item.done', 'response.incomplete' ], 'responses: OpenAI\'s ending');
        my $data = sub { JSON::PP->new->decode(($_[0] =~ /^data: (.*)$/m)[0]) };
        my $sent = join '', map { $data->($_)->{delta} } grep { /\Aevent: response\.output_text\.delta\n/ } @events;
        my $done = $data->($events[-4]);
        ok(length($sent) > 10_000 && $done->{text} eq $sent,
            'responses: output_text.done repeats the text sent (' . length($sent) . ' bytes), whole');
        my $last = $data->($events[-1]);
        is($last->{response}{incomplete_details}{reason}, 'max_output_tokens',
            'responses: response.incomplete, reason max_output_tokens');
        is($last->{sequence_number}, $done->{sequence_number} + 3, 'responses: sequence numbers go on');
    }
}

# one event of 1.5 MB (the cap cannot hold it to count it): the stream ends before it
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 30)
        or die "connect: $!";
    my $body = '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"go"}]}';
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "Authorization: Bearer sk-route-b\r\nContent-Type: application/json\r\nX-Events: 10\r\n"
        . "X-Big-Event: 1500000\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    my @pieces;
    while (sysread($s, my $piece, 65536)) { push @pieces, $piece }
    my ($head, $raw) = split /\r\n\r\n/, join('', @pieces), 2;
    my $got = dechunk_long($raw);
    like($head, qr{\AHTTP/1\.1 200}, 'a 1.5 MB event under the cap: 200');
    ok(length($got) < 4096, 'none of the big event reaches the client (' . length($got) . ' bytes)');
    like($got, qr/"content": ?" 0 word0.*"finish_reason":"length"\}\]\}\n\ndata: \[DONE\]\n\n\z/s,
        'the events before it, then the cap\'s ending, whole');
}

##########################################################################################
# 3. 40 MB to a client that pauses 6 s.
##########################################################################################

{
    my $events = 170_000;    # about 40 MB
    my $want = expected('openai', $events, 0);
    my ($status, $got, $worker, $rss_paused);
    my $before = 0;
    # the worker's RSS before: read from a first short request's pid
    my (undef, undef, $w0) = slow_stream(api => 'openai', key => 'sk-route-a', events => 10,
        pause => 0, piece => 65536, every => 0);
    $before = rss_kb($w0);
    ($status, $got, $worker, $rss_paused) = slow_stream(api => 'openai', key => 'sk-route-a',
        events => $events, pause => 6, piece => 65536, every => 0);
    my $after = rss_kb($worker);
    is($status, 200, '40 MB rewritten stream after a 6 s pause: 200');
    is(length($got), length($want), 'all ' . length($want) . ' bytes arrive');
    is(sha256_hex($got), sha256_hex($want), '... byte for byte');
    my $growth = $rss_paused - $before;
    diag("worker RSS: $before kB before, $rss_paused kB during the pause, $after kB after");
    ok($growth < 8 * 1024, "the worker's memory did not grow with the stream while the client paused (+$growth kB)");
    ok($after - $before < 8 * 1024, 'nor once it was sent (+' . ($after - $before) . ' kB)');
}

##########################################################################################
# 4. The log.
##########################################################################################

stop($pid);
undef $pid;
my $log = slurp("$prefix/logs/error.log");
unlike($log, qr/timed out/, 'no "client timed out"');
my @bad = grep { /\[(error|alert|crit|emerg)\]/ } split /\n/, $log;
is(scalar(@bad), 0, 'no [error], [alert], [crit] or [emerg]') or diag(join "\n", @bad[0 .. ($#bad < 5 ? $#bad : 5)]);
done_testing();
