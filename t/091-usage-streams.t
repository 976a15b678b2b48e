# Token usage of event streams that arrive in many small pieces, from a fake provider that
# behaves like OpenAI and Anthropic (written here, in Perl: the module's own mock always sends
# whole events):
#
#   1. an OpenAI chat stream whose client did not ask for usage: the gateway asks the provider
#      for it (the provider receives the client's request plus stream_options.include_usage),
#      the client receives byte for byte the stream the provider sends to a client that did
#      not ask (no usage-only chunk, no "usage":null), and the access log has the provider's
#      numbers (source=provider);
#   2. timing: the events reach the client as the provider sends them (a stream spread over
#      about a second is not held back to its end);
#   3. the same with CRLF line ends (pieces cut between CR and LF);
#   4. a client that asked for usage: the provider's bytes unchanged ("usage":null and the
#      usage chunk kept), its request body unchanged;
#   5. an Anthropic Messages stream: bytes unchanged; prompt = input_tokens +
#      cache_read_input_tokens, completion = the final output_tokens, cached = the cache reads;
#   6. a client that closes mid-way through a long stream: nginx (its same worker) keeps
#      running, the request is logged with the gateway's own count (completion > 0, source
#      estimated or counted, not provider), the provider sees its connection closed, and the
#      next request is served byte-exact;
#   7. neither the error log nor the provider's records show a problem: no [error], [alert],
#      [crit] or [emerg].
#
# The provider cuts every response at arbitrary bytes: inside JSON strings, inside multi-byte
# UTF-8 characters (Chinese text, an emoji), inside "usage", between CR and LF, and sleeps a
# few milliseconds between pieces, so nginx reads them one by one.
#
# Plain Test::More, like t/061-metrics-workers.t: the data-driven format has no fake upstream
# that writes slowly, no per-read timing and no client abort.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep time);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::AIGateway::Process;
use JSON::PP ();
use POSIX ();

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;

my $root          = abs_path(dirname(__FILE__) . '/..');
my $port          = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 30;    # 061: +20/+21, 070: +10/+11
my $provider_port = $port + 1;
my $prefix        = "$root/t/servroot-usage-streams";
my $received      = "$prefix/logs/provider.log";    # what the fake provider received and did
my $usage_log     = "$prefix/logs/usage.log";
my $json          = JSON::PP->new->utf8->canonical;

# No proxy_buffering here: the module itself turns buffering off for event streams.
write_conf($prefix, <<"_EOC_");
${\ main_conf($module, 1) }
http {
    ai_gateway_config $root/t/fixtures/gateway.json;
    log_format usage 'id=\$http_x_mock_id status=\$status prompt=\$ai_gateway_prompt_tokens '
                     'completion=\$ai_gateway_completion_tokens total=\$ai_gateway_total_tokens '
                     'cached=\$ai_gateway_cached_tokens reasoning=\$ai_gateway_reasoning_tokens '
                     'source=\$ai_gateway_usage_source';
    access_log logs/usage.log usage;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            ai_gateway on;
            proxy_pass http://127.0.0.1:$provider_port;
        }
    }
}
_EOC_

##########################################################################################
# The streams, as the provider writes them (the test computes the expected bytes from the
# same functions).
##########################################################################################

# Completion text pieces, as they appear inside JSON strings (escapes included): Chinese,
# an emoji (4 bytes), escaped quotes, a \u escape, a newline escape.
my @CONTENT = (
    'Hello', '!', ' 你好', '，世界', '。', ' Here', ' is', ' a', ' \"quoted\"', ' caf\u00e9',
    ' 🙂', '\n', 'Done', '.',
);

# An OpenAI chat completions stream. %o: id, include_usage (what the request asked for),
# crlf, repeat (how many times the content pieces come), prompt, completion, cached.
sub openai_stream {
    my %o    = @_;
    my $eol  = $o{crlf} ? "\r\n" : "\n";
    my $head = qq({"id":"chatcmpl-$o{id}","object":"chat.completion.chunk","created":1700000000,)
             . qq("model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_f33640a400",);
    my $null = $o{include_usage} ? ',"usage":null' : '';    # OpenAI's last member
    my @deltas = ('{"role":"assistant","content":"","refusal":null}',
                  map { qq({"content":"$_"}) } (@CONTENT) x ($o{repeat} || 1));
    my @chunks = map {
        $head . qq("choices":[{"index":0,"delta":$_,"logprobs":null,"finish_reason":null}]$null})
    } @deltas;
    push @chunks,
        $head . qq("choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]$null});
    if ($o{include_usage}) {
        my $total = $o{prompt} + $o{completion};
        push @chunks, $head . qq("choices":[],"usage":{"prompt_tokens":$o{prompt},)
            . qq("completion_tokens":$o{completion},"total_tokens":$total,)
            . qq("prompt_tokens_details":{"cached_tokens":$o{cached},"audio_tokens":0},)
            . qq("completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,)
            . qq("accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}});
    }
    return join('', map { "data: $_$eol$eol" } @chunks) . "data: [DONE]$eol$eol";
}

# An Anthropic Messages stream. %o: id, prompt (input_tokens), cache_read, completion (the
# final output_tokens).
sub anthropic_stream {
    my %o = @_;
    my @events = (
        [ message_start => qq({"type":"message_start","message":{"id":"msg_$o{id}","type":"message",)
            . qq("role":"assistant","model":"claude-sonnet-4-20250514","content":[],"stop_reason":null,)
            . qq("stop_sequence":null,"usage":{"input_tokens":$o{prompt},"cache_creation_input_tokens":0,)
            . qq("cache_read_input_tokens":$o{cache_read},"output_tokens":1,"service_tier":"standard"}}}) ],
        [ content_block_start =>
            '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}' ],
        [ ping => '{"type": "ping"}' ],
        (map { [ content_block_delta =>
            qq({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"$_"}}) ] }
            @CONTENT),
        [ content_block_stop => '{"type":"content_block_stop","index":0}' ],
        [ message_delta => qq({"type":"message_delta","delta":{"stop_reason":"end_turn",)
            . qq("stop_sequence":null},"usage":{"output_tokens":$o{completion}}}) ],
        [ message_stop => '{"type":"message_stop"}' ],
    );
    return join '', map { "event: $_->[0]\ndata: $_->[1]\n\n" } @events;
}

# Where the provider cuts a body: after a cycle of odd sizes, and besides inside every
# multi-byte UTF-8 character (after its first byte and before its last), between every CR
# and LF, inside every "usage" key, and between every "data:" and its space.
my @SIZES = (1, 29, 3, 61, 7, 2, 45, 13, 90, 5, 37, 1, 71, 19, 4, 120);

sub pieces {
    my $body = shift;
    my %cut;
    my ($at, $i) = (0, 0);
    while ($at < length $body) { $at += $SIZES[$i++ % @SIZES]; $cut{$at} = 1 }
    while ($body =~ /([\xc0-\xf7])|\r\n|"usage"|data: /g) {
        my $m = substr $body, $-[0], 1;
        if (defined $1) {
            my $n = ord($1) >= 0xf0 ? 4 : ord($1) >= 0xe0 ? 3 : 2;
            $cut{ $-[0] + $_ } = 1 for 1, $n - 1;
        } elsif ($m eq '"') {
            $cut{ $-[0] + 3 } = 1;    # "us|age"
        } elsif ($m eq 'd') {
            $cut{ $-[0] + 5 } = 1;    # data:| (before the optional space)
        } else {
            $cut{ $-[0] + 1 } = 1;    # \r|\n
        }
    }
    my @at = sort { $a <=> $b } grep { $_ > 0 && $_ < length $body } keys %cut;
    my ($prev, @p) = (0);
    for (@at, length $body) { push @p, substr($body, $prev, $_ - $prev); $prev = $_ }
    return @p;
}

##########################################################################################
# The fake provider: a child process answering one connection after another.
##########################################################################################

# Request headers it reads: X-Mock-Id (names the stream), X-Mock-Pace (ms between pieces),
# X-Mock-Repeat (content repeats), X-Mock-Crlf, X-Mock-Usage (prompt,completion,cached or,
# for Anthropic, input,output,cache_read). It appends to $received a line
# "REQ <id> <path> <body>" when a request is in and "END <id> <complete|broken> <bytes>"
# when it is done (broken: a write failed, the gateway closed the connection).
sub provider {
    my $listen = shift;
    $SIG{PIPE} = 'IGNORE';
    while (1) {
        my $c = $listen->accept or next;
        eval { serve($c); 1 } or record("ERR", $@ =~ s/\s+/ /gr);
        close $c;
    }
}

sub serve {
    my $c = shift;
    setsockopt($c, IPPROTO_TCP, TCP_NODELAY, 1);
    local $SIG{ALRM} = sub { die "timeout reading the request\n" };
    alarm 5;
    my $buf = '';
    while ($buf !~ /\r\n\r\n/) { sysread($c, $buf, 65536, length $buf) or die "EOF in header\n" }
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($path) = $head =~ m{\A[A-Z]+ (\S+) HTTP/1\.[01]\r\n} or die "bad request line\n";
    my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () } split /\r\n/, $head;
    my $len = $h{'content-length'} // die "no Content-Length\n";
    while (length $body < $len) { sysread($c, $body, 65536, length $body) or die "EOF in body\n" }
    alarm 0;
    my $id = $h{'x-mock-id'} // 'none';
    record("REQ", $id, $path, $body);

    my ($u1, $u2, $u3) = split /,/, $h{'x-mock-usage'} // '1,1,0';
    my ($type, $stream);
    if ($path =~ m{/messages$}) {
        $type   = 'text/event-stream; charset=utf-8';
        $stream = anthropic_stream(id => $id, prompt => $u1, completion => $u2, cache_read => $u3);
    } else {
        $type   = 'text/event-stream';
        $stream = openai_stream(id => $id, prompt => $u1, completion => $u2, cached => $u3,
            include_usage => scalar($body =~ /"include_usage"\s*:\s*true/),
            crlf => $h{'x-mock-crlf'}, repeat => $h{'x-mock-repeat'});
    }
    my $pace = ($h{'x-mock-pace'} // 5) / 1000;
    my $sent = 0;
    my $ok   = syswrite($c, "HTTP/1.1 200 OK\r\nContent-Type: $type\r\nCache-Control: no-cache\r\n"
                          . "Connection: close\r\n\r\n");
    for my $p (pieces($stream)) {
        last unless $ok;
        sleep $pace;
        $ok = syswrite($c, $p);
        $sent += length $p if $ok;
    }
    record("END", $id, $ok ? 'complete' : 'broken', $sent);
}

sub record {
    open my $f, '>>', $received or return;
    print $f join("\t", @_), "\n";
    close $f;
}

##########################################################################################
# Start.
##########################################################################################

my ($pid, $provider_pid);
my $parent = $$;
END {
    if ($$ == $parent) {
        stop($pid) if $pid;
        if ($provider_pid) { kill 'TERM', $provider_pid; waitpid($provider_pid, 0) }
    }
}

my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $provider_port,
    Listen => 16, ReuseAddr => 1) or die "listen on $provider_port: $!";
$provider_pid = fork // die "fork: $!";
if (!$provider_pid) {
    provider($listen);
    POSIX::_exit(0);
}
close $listen;

is(system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf'), 0, 'gateway started');
$pid = wait_pid("$prefix/logs/nginx.pid");
ok($pid, "gateway master pid " . ($pid // 'none'));
ok(wait_port($port), 'gateway listens');
my @worker = wait_workers($pid, 1);
is(scalar(@worker), 1, "one worker (@worker)");

my $alpha = "Authorization: Bearer sk-alpha-1\r\n";
my $chat  = '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Say hello in two languages"}]}';

##########################################################################################
# 1.-2. OpenAI, the client did not ask for usage; timing.
##########################################################################################

my $r = stream_request('/v1/chat/completions',
    "${alpha}X-Mock-Id: plain\r\nX-Mock-Pace: 7\r\nX-Mock-Usage: 17,21,6\r\n", $chat);
my %plain = (id => 'plain', prompt => 17, completion => 21, cached => 6);
check_response($r, openai_stream(%plain), 'text/event-stream', 'plain');
isnt(openai_stream(%plain, include_usage => 1), openai_stream(%plain),
    '(the provider\'s stream with usage differs from the one without)');
my $req = provider_request('plain');
is($req && $req->{path}, '/v1/chat/completions', 'plain: the provider got the request');
is_deeply(eval { $json->decode($req->{body}) },
    { %{ $json->decode($chat) }, stream_options => { include_usage => JSON::PP::true } },
    'plain: ... with the client\'s body plus "stream_options":{"include_usage":true}')
    or diag("received: " . ($req && $req->{body}));
like($req && $req->{body}, qr/"include_usage":true/, 'plain: include_usage:true verbatim');
is(provider_end('plain'), 'complete ' . length(openai_stream(%plain, include_usage => 1)),
    'plain: the provider sent its whole stream with usage');
is(log_line('plain'),
    'id=plain status=200 prompt=17 completion=21 total=38 cached=6 reasoning=0 source=provider',
    'plain: the log has the provider\'s usage');

# 2. Timing: the provider spreads the stream over about 1.5 s (~200 pieces, 7 ms apart).
SKIP: {
    skip 'no response to time', 5 unless $r->{body};
    my $d = $r->{t_end} - $r->{t_sent};
    cmp_ok($d, '>=', 0.6, sprintf('the stream took %.2f s (the provider\'s pace)', $d));
    my @events = event_arrivals($r);
    is(scalar(@events), 2 + @CONTENT + 1, 'every event arrived (role, content, finish, [DONE])');
    my ($first) = grep { $_->[1] =~ /"content":"Hello"/ } @events;
    my $t_first = $first ? $first->[0] - $r->{t_sent} : $d;
    cmp_ok($t_first, '<', 0.3 * $d,
        sprintf('the first content event arrived at %.2f s of %.2f s', $t_first, $d));
    my $t_mid = $events[ int(@events / 2) ][0] - $r->{t_sent};
    ok($t_mid > 0.2 * $d && $t_mid < 0.8 * $d,
        sprintf('the middle event arrived at %.2f s, mid-stream', $t_mid));
    cmp_ok($r->{reads}, '>=', 10, "the client got the body in $r->{reads} reads, not at once");
}

##########################################################################################
# 3. The same with CRLF line ends.
##########################################################################################

$r = stream_request('/v1/chat/completions',
    "${alpha}X-Mock-Id: crlf\r\nX-Mock-Crlf: 1\r\nX-Mock-Pace: 2\r\nX-Mock-Usage: 18,22,0\r\n", $chat);
my %crlf = (id => 'crlf', crlf => 1, prompt => 18, completion => 22, cached => 0);
check_response($r, openai_stream(%crlf), 'text/event-stream', 'crlf');
like(provider_request('crlf')->{body} // '', qr/"include_usage":true/,
    'crlf: the provider was asked for usage');
is(log_line('crlf'),
    'id=crlf status=200 prompt=18 completion=22 total=40 cached=0 reasoning=0 source=provider',
    'crlf: the log has the provider\'s usage');

##########################################################################################
# 4. The client asked for usage: everything passes unchanged.
##########################################################################################

my $chat_usage = '{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},'
    . '"messages":[{"role":"user","content":"Say hello in two languages"}]}';
$r = stream_request('/v1/chat/completions',
    "${alpha}X-Mock-Id: asked\r\nX-Mock-Pace: 2\r\nX-Mock-Usage: 19,23,0\r\n", $chat_usage);
my %asked = (id => 'asked', include_usage => 1, prompt => 19, completion => 23, cached => 0);
check_response($r, openai_stream(%asked), 'text/event-stream', 'asked');
is(provider_request('asked')->{body}, $chat_usage, 'asked: the provider got the client\'s body unchanged');
is(log_line('asked'),
    'id=asked status=200 prompt=19 completion=23 total=42 cached=0 reasoning=0 source=provider',
    'asked: the log has the provider\'s usage');

##########################################################################################
# 5. Anthropic Messages.
##########################################################################################

my $messages = '{"model":"claude-sonnet-4-20250514","max_tokens":256,"stream":true,'
    . '"messages":[{"role":"user","content":"Say hello in two languages"}]}';
$r = stream_request('/v1/messages',
    "x-api-key: sk-alpha-1\r\nanthropic-version: 2023-06-01\r\nX-Mock-Id: claude\r\n"
    . "X-Mock-Pace: 3\r\nX-Mock-Usage: 25,31,1200\r\n", $messages);
my %claude = (id => 'claude', prompt => 25, completion => 31, cache_read => 1200);
check_response($r, anthropic_stream(%claude), 'text/event-stream; charset=utf-8', 'claude');
is(provider_request('claude')->{body}, $messages, 'claude: the provider got the client\'s body unchanged');
is(log_line('claude'),
    'id=claude status=200 prompt=1225 completion=31 total=1256 cached=1200 reasoning=- source=provider',
    'claude: prompt = input + cache reads, completion = the final output_tokens, cached = cache reads');

##########################################################################################
# 6. The client goes away mid-way through a long stream.
##########################################################################################

my %long = (id => 'abort', repeat => 6, prompt => 40, completion => 170, cached => 0);
my $long_len = length openai_stream(%long, include_usage => 1);
$r = stream_request('/v1/chat/completions',
    "${alpha}X-Mock-Id: abort\r\nX-Mock-Repeat: 6\r\nX-Mock-Pace: 5\r\nX-Mock-Usage: 40,170,0\r\n",
    $chat, 4);
ok($r->{aborted}, sprintf('abort: the client closed after %d events, %.2f s into the stream',
    $r->{events} // 0, ($r->{t_end} // 0) - ($r->{t_sent} // 0)));
is($r->{status}, 200, 'abort: it had a 200 answer');
is(substr(openai_stream(%long), 0, length($r->{body} // '')), $r->{body} // '',
    'abort: what it received is the start of the stream without usage');

my $end = provider_end('abort', 15);
like($end // '', qr/^broken (\d+)$/, 'abort: the provider saw its connection closed')
    or diag("provider: " . ($end // 'no END record'));
my ($sent) = ($end // '') =~ /(\d+)$/;
cmp_ok($sent // $long_len, '<', $long_len,
    'abort: ... before the end (' . ($sent // '?') . " of $long_len bytes)");

my $line = log_line('abort', 10) // '';
note(sprintf('abort: logged %.2f s after the client closed: %s', time - $r->{t_end}, $line));
my %f = map { /^(\w+)=(.*)$/ } split / /, $line;
like($f{status} // '', qr/^(?:200|499)$/, "abort: logged, status $f{status}")
    or diag("log line: '$line'");
like($f{completion} // '', qr/^[1-9]\d*$/, 'abort: completion is the gateway\'s count, > 0');
like($f{prompt} // '', qr/^[1-9]\d*$/, 'abort: prompt is the gateway\'s count, > 0');
is($f{total}, ($f{prompt} // 0) + ($f{completion} // 0), 'abort: total = prompt + completion');
like($f{source} // '', qr/^(?:estimated|counted)$/, "abort: source $f{source}, not provider");

ok(alive($pid), 'nginx is running');
is_deeply([ workers($pid) ], \@worker, 'with the same worker (none crashed)');

$r = stream_request('/v1/chat/completions',
    "${alpha}X-Mock-Id: after\r\nX-Mock-Pace: 1\r\nX-Mock-Usage: 20,24,2\r\n", $chat);
my %after = (id => 'after', prompt => 20, completion => 24, cached => 2);
check_response($r, openai_stream(%after), 'text/event-stream', 'after');
is(log_line('after'),
    'id=after status=200 prompt=20 completion=24 total=44 cached=2 reasoning=0 source=provider',
    'after: the log has the provider\'s usage');

##########################################################################################
# 7. Stop; the logs.
##########################################################################################

ok(stop($pid), 'gateway stopped');
$pid = undef;
kill 'TERM', $provider_pid;
waitpid($provider_pid, 0);
$provider_pid = undef;

my @lines = split /\n/, slurp($usage_log);
is(scalar(@lines), 6, 'six requests, six access log lines') or diag(join "\n", @lines);
my @records = split /\n/, slurp($received);
is_deeply([ grep { /^ERR/ } @records ], [], 'the provider had no trouble reading requests');
is_deeply([ map { (split /\t/)[1] } grep { /^END/ } @records ],
    [qw(plain crlf asked claude abort after)], 'the provider served the six requests in order');
my @bad = grep { /\[(error|alert|crit|emerg)\]/ } split /\n/, slurp("$prefix/logs/error.log");
is(scalar(@bad), 0, 'no [error], [alert], [crit] or [emerg] in the error log')
    or diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);

done_testing();

##########################################################################################
# helpers
##########################################################################################

# POSTs $body on a new connection and reads the answer, noting when each read came. With
# $abort_after, closes the connection once that many events of the body are in.
# Returns {status, headers, body, complete (chunked framing ended), reads, aborted, events,
# t_sent, t_end, segments (body offset -> time)}.
sub stream_request {
    my ($path, $headers, $body, $abort_after) = @_;
    my %r;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or return \%r;
    $s->autoflush(1);
    print $s "POST $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\n$headers"
        . "Content-Length: " . length($body) . "\r\n\r\n" . $body;
    $r{t_sent} = time;
    my $sel = IO::Select->new($s);
    my ($raw, @reads) = ('');
    my $deadline = time + 20;
    while (1) {
        my $left = $deadline - time;
        last if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($s, $raw, 65536, length $raw);
        last unless $n;
        push @reads, [ length $raw, time ];
        if ($abort_after) {
            my (undef, undef, $so_far) = parse_raw($raw);
            my $events = () = ($so_far // '') =~ /\n\n/g;
            if ($events >= $abort_after) {
                @r{qw(aborted events)} = (1, $events);
                last;
            }
        }
    }
    $r{t_end} = time;
    close $s;
    @r{qw(status headers body complete segments)} = parse_raw($raw);
    $r{reads} = scalar grep { $_->[0] > ($r{headers}{_head_len} // 0) } @reads;
    $r{read_times} = \@reads;
    return \%r;
}

# The response in $raw: (status, {lowercased header => value, _head_len}, body, complete,
# [[body offset, raw offset, length], ...]). A chunked body is de-chunked strictly: complete
# only when the last chunk (0) came, and every chunk is well-formed.
sub parse_raw {
    my $raw = shift;
    my $at = index $raw, "\r\n\r\n";
    return if $at < 0;
    my $head = substr $raw, 0, $at;
    my ($status) = $head =~ m{\AHTTP/1\.1 (\d{3}) } or return;
    my %h = (_head_len => $at + 4);
    for (split /\r\n/, $head) { $h{ lc $1 } = $2 if /^([^:]+):\s*(.*)$/ }
    my $pos = $at + 4;
    if (($h{'transfer-encoding'} // '') ne 'chunked') {
        return ($status, \%h, substr($raw, $pos), undef, [ [ 0, $pos, length($raw) - $pos ] ]);
    }
    my ($body, @seg, $complete) = ('');
    while (substr($raw, $pos) =~ /\A([0-9a-fA-F]+)\r\n/) {
        my $len = hex $1;
        my $data = $pos + length($1) + 2;
        if ($len == 0) { $complete = substr($raw, $data) eq "\r\n"; last }
        my $got = length($raw) - $data < $len ? length($raw) - $data : $len;
        push @seg, [ length $body, $data, $got ];
        $body .= substr $raw, $data, $got;
        last if $got < $len;
        last unless substr($raw, $data + $len, 2) eq "\r\n";
        $pos = $data + $len + 2;
    }
    return ($status, \%h, $body, $complete, \@seg);
}

# [time, event text] for each complete event of the body: the time of the read that brought
# its last byte.
sub event_arrivals {
    my $r = shift;
    my @out;
    my $body = $r->{body};
    while ($body =~ /\G(.*?\n\n)/gs) {
        my $end = pos($body) - 1;
        my ($seg) = grep { $end >= $_->[0] && $end < $_->[0] + $_->[2] } @{ $r->{segments} };
        my $raw_at = $seg->[1] + $end - $seg->[0];
        my ($read) = grep { $_->[0] > $raw_at } @{ $r->{read_times} };
        push @out, [ $read->[1], $1 ];
    }
    return @out;
}

# Status, headers, complete chunked body, exact bytes.
sub check_response {
    my ($r, $expected, $type, $name) = @_;
    is($r->{status}, 200, "$name: 200");
    is($r->{headers}{'content-type'}, $type, "$name: Content-Type $type");
    ok(!exists $r->{headers}{'content-length'} && $r->{complete},
        "$name: chunked, no Content-Length, complete");
    my $got = $r->{body} // '';
    ok($got eq $expected, sprintf("$name: the client got the expected %d bytes", length $expected))
        or diag(first_difference($got, $expected));
    note("$name: the body came in $r->{reads} reads");
}

sub first_difference {
    my ($got, $exp) = @_;
    my $i = 0;
    $i++ while $i < length($got) && $i < length($exp) && substr($got, $i, 1) eq substr($exp, $i, 1);
    my $from = $i > 60 ? $i - 60 : 0;
    return sprintf("%d bytes received, %d expected; first difference at byte %d:\n"
        . "  got:      %s\n  expected: %s", length $got, length $exp, $i,
        map { my $t = substr($_, $from, 160); $t =~ s/\r/\\r/g; $t =~ s/\n/\\n/g; $t } $got, $exp);
}

# The provider's record of a request: {path, body}.
sub provider_request {
    my $id = shift;
    for (split /\n/, slurp($received)) {
        my ($kind, $rid, $path, $body) = split /\t/, $_, 4;
        return { path => $path, body => $body } if $kind eq 'REQ' && $rid eq $id;
    }
    return {};
}

# "complete <bytes>" or "broken <bytes>", waiting up to $wait seconds for it.
sub provider_end {
    my ($id, $wait) = @_;
    my $until = time + ($wait // 3);
    while (1) {
        for (split /\n/, slurp($received)) {
            my ($kind, $rid, $how, $bytes) = split /\t/;
            return "$how $bytes" if $kind eq 'END' && $rid eq $id;
        }
        return if time > $until;
        sleep 0.1;
    }
}

# The access log line of a request, waiting up to $wait seconds for it (nginx writes it once
# the client connection is closed).
sub log_line {
    my ($id, $wait) = @_;
    my $until = time + ($wait // 5);
    while (1) {
        my ($l) = grep { /^id=\Q$id\E / } split /\n/, slurp($usage_log);
        return $l if defined $l;
        return if time > $until;
        sleep 0.05;
    }
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
    return sort { $a <=> $b } @w;
}

sub wait_workers {
    my ($master, $n) = @_;
    for (1 .. 50) {
        my @w = workers($master);
        return @w if @w == $n;
        sleep 0.1;
    }
    return workers($master);
}

