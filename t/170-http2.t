# HTTP/2 from clients: the gateway behind `listen ... ssl` with HTTP/2 (a self-signed
# certificate made here with openssl) and behind an h2c listener (HTTP/2 without TLS, prior
# knowledge), driven with curl (`--http2`, `--http2-prior-knowledge`) and with the official
# OpenAI and Anthropic Python SDKs on an HTTP/2 transport (t/sdk/http2.py). Every request is
# checked to have been HTTP/2 on both ends that can tell (curl's %{http_version}, the
# gateway's $server_protocol, httpx's http_version), and the provider side to have stayed
# HTTP/1.1: the gateway proxies to an "inspect" server (plain nginx, no gateway) that logs the
# request it received (Content-Length, body) and passes it on to the built-in mock provider.
#
# Covered over both h2 and h2c: identification (a key; a header matcher, with HTTP/2's lower
# case names; a bad key's 401 JSON; the client's X-AI-Gateway-* headers removed), bodies
# (small; one larger than client_body_buffer_size that nginx spills to a temporary file; one
# uploaded from a pipe in DATA frames without content-length), a stream (every event, `data:
# [DONE]`, the include_usage the gateway adds reaching the provider with a correct
# Content-Length), usage in the access log, 413 as JSON (with and without content-length), a
# requests limit's 429 with Retry-After and the x-ratelimit-* headers, the output clamp's
# rewritten body (also with the include_usage rewrite, without content-length), the output
# cap ending a stream, failover re-sending the body the gateway read to the next target, the
# module's own content handlers (mock provider, token service) answering HTTP/2, and clients
# that leave: curl giving up on a slow stream (connection closed), and streams reset with
# RST_STREAM on a connection that goes on (t/sdk/http2.py), each releasing the concurrency
# slot at once.
#
# nginx >= 1.25.1 enables HTTP/2 with `http2 on;` (`listen ... http2` is deprecated there and
# warns); older nginx (Debian's 1.22.1) only has `listen ... http2`: the syntax follows the
# binary's version. The SDK part needs AI_GATEWAY_PYTHON (`make sdk-deps`; the venv has the
# `h2` package): without it this test FAILS unless AI_GATEWAY_NO_SDK=1 is set.
use strict;
use warnings;
use Test::More;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::AIGateway::Process;
use JSON::PP ();
use Time::HiRes qw(sleep time);

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;

my $python = $ENV{AI_GATEWAY_PYTHON};
my $no_sdk = $ENV{AI_GATEWAY_NO_SDK};

my $root = abs_path(dirname(__FILE__) . '/..');
my $base = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 240;
my ($tls, $h2c, $inspect, $mock) = map { $base + $_ } 0 .. 3;
my ($ltls, $lh2c) = ($base + 4, $base + 5);
my ($rtls, $rh2c) = ($base + 6, $base + 7);
my $prefix  = "$root/t/servroot-http2";
my $lprefix = "$root/t/servroot-http2-limits";
my $rprefix = "$root/t/servroot-http2-routed";

# nginx >= 1.25.1: `http2 on;`; before: `listen ... http2`
my ($maj, $min, $patch) = `$nginx -v 2>&1` =~ m{nginx/(\d+)\.(\d+)\.(\d+)};
ok(defined $patch, "nginx -v gives a version (${\ join '.', grep { defined } $maj, $min, $patch })");
my $http2_on = defined $patch && ($maj * 1_000_000 + $min * 1000 + $patch) >= 1_025_001;
sub listen_h2 {
    my ($port, $ssl) = @_;
    my $s = $ssl ? ' ssl' : '';
    return $http2_on ? "listen 127.0.0.1:$port$s;\n        http2 on;"
                     : "listen 127.0.0.1:$port$s http2;";
}

# --- the certificate (made into the prefix, so every run has a fresh one) ---
write_conf($prefix, '');
my ($cert, $key) = ("$prefix/conf/cert.pem", "$prefix/conf/key.pem");
my $openssl = `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout $key -out $cert 2>&1`;
$? == 0 or diag($openssl), BAIL_OUT('openssl could not make a certificate');

# The gateway's locations, the same in its TLS and h2c servers. /small/ has a 1 KB body cap;
# /slow/ goes to a mock that spaces its events 300 ms apart.
my $gw_log = '{"tag":"$http_x_test","proto":"$server_protocol","status":"$status",'
           . '"cl":"$http_content_length","ns":"$ai_gateway_namespace",'
           . '"body":"$ai_gateway_body_bytes","prompt":"$ai_gateway_prompt_tokens",'
           . '"completion":"$ai_gateway_completion_tokens","source":"$ai_gateway_usage_source",'
           . '"reason":"$ai_gateway_reason","conn":"$connection"}';
my $locations = <<'_EOC_';
        ssl_certificate     cert.pem;
        ssl_certificate_key key.pem;
        access_log logs/access.log gw;
        location /v1/ {
            ai_gateway on;
            proxy_pass http://inspect;
        }
        location /small/v1/ {
            ai_gateway on;
            client_max_body_size 1k;
            proxy_pass http://inspect;
        }
        location /slow/v1/ {
            ai_gateway on;
            proxy_pass http://inspect;
        }
        # has no effect: the gateway has read the body before the proxy starts
        location /unbuffered/v1/ {
            ai_gateway on;
            proxy_request_buffering off;
            proxy_pass http://inspect/v1/;
        }
        # the module's content handlers, answering HTTP/2 themselves
        location /mock/   { ai_gateway_mock_provider interval=5ms; }
        location /tokens/ { ai_gateway_token_service; }
_EOC_
my $common = <<"_EOC_";
    log_format gw escape=json '$gw_log';
    # a 64 KB body does not fit: nginx spills it to a temporary file
    client_body_buffer_size 16k;
    client_max_body_size 1m;
    # the provider side: HTTP/1.1, pooled connections
    upstream inspect {
        server 127.0.0.1:$inspect;
        keepalive 8;
    }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
_EOC_
my $tls_listen = listen_h2($tls, 1);
my $h2c_listen = listen_h2($h2c, 0);
write_conf($prefix, <<"_EOC_", 1);
${\ main_conf($module, 1) }
http {
    ai_gateway_config $root/t/fixtures/gateway.json;
$common
    log_format inspect escape=json '{"tag":"\$http_x_test","proto":"\$server_protocol",'
        '"cl":"\$http_content_length","te":"\$http_transfer_encoding",'
        '"reqs":"\$connection_requests","uri":"\$request_uri","forged":"\$http_x_ai_gateway_namespace",'
        '"ae":"\$http_accept_encoding","body":"\$request_body"}';
    server {
        $tls_listen
$locations
    }
    server {
        $h2c_listen
$locations
    }
    # what the provider is sent (HTTP/1.1 from the gateway), logged, then the mock
    server {
        listen 127.0.0.1:$inspect;
        client_max_body_size 10m;
        client_body_buffer_size 1m;
        access_log logs/inspect.log inspect;
        location / {
            proxy_pass http://127.0.0.1:$mock;
            proxy_buffering off;
        }
        # a failing provider (the routed gateway's first target)
        location /busy/ { return 503; }
    }
    server {
        listen 127.0.0.1:$mock;
        client_max_body_size 10m;
        access_log off;
        location /       { ai_gateway_mock_provider interval=5ms; }
        location /slow/  { ai_gateway_mock_provider interval=300ms; }
        location /fast/  { ai_gateway_mock_provider; }
    }
}
_EOC_

# the same, with t/fixtures/policies.json (limits, clamp, cap), in front of the same inspect
# server
write_conf($lprefix, <<"_EOC_");
${\ main_conf($module, 1) }
http {
    ai_gateway_config $root/t/fixtures/policies.json;
    ai_gateway_limit_zone limits 64k;
$common
    server {
        ${\ listen_h2($ltls, 1) }
        ssl_certificate     $prefix/conf/cert.pem;
        ssl_certificate_key $prefix/conf/key.pem;
        access_log logs/access.log gw;
        location / {
            ai_gateway on;
            proxy_pass http://inspect;
        }
        location /fast/ {
            ai_gateway on;
            proxy_pass http://127.0.0.1:$mock;
        }
    }
    server {
        ${\ listen_h2($lh2c, 0) }
        access_log logs/access.log gw;
        location / {
            ai_gateway on;
            proxy_pass http://inspect;
        }
        location /fast/ {
            ai_gateway on;
            proxy_pass http://127.0.0.1:$mock;
        }
    }
}
_EOC_

# a routed gateway: the route's first target answers 503, the request fails over to the second
# (the mock, through the inspect server), with the body the gateway read (and rewrote)
write_conf($rprefix, <<"_EOC_");
${\ main_conf($module, 1) }
http {
    ai_gateway_config gw.json;
$common
    upstream ai_gateway_targets {
        ai_gateway_upstream;
        keepalive 8;
    }
    server {
        ${\ listen_h2($rtls, 1) }
        listen 127.0.0.1:$rh2c${\ ($http2_on ? '' : ' http2') };
        ssl_certificate     $prefix/conf/cert.pem;
        ssl_certificate_key $prefix/conf/key.pem;
        access_log logs/access.log gw;
        location /v1/ {
            ai_gateway on;
            include $root/nginx-conf/ai_gateway_proxy.conf;
            add_header X-Attempts \$ai_gateway_attempts always;
            add_header X-Target \$ai_gateway_target always;
        }
        location \@ai_gateway_failover {
            ai_gateway on;
            include $root/nginx-conf/ai_gateway_proxy.conf;
            add_header X-Attempts \$ai_gateway_attempts always;
            add_header X-Target \$ai_gateway_target always;
        }
    }
}
_EOC_
{
    open my $fh, '>', "$rprefix/conf/gw.json" or die $!;
    # the key sk-route-a
    print $fh <<"_EOJ_";
{"namespaces": [{"code": "a", "api_keys": ["033d461ba69fa00769695b91ef3d9187416084607a52805d6ca51f0665bd4fcb"]}],
 "targets": [
   {"name": "busy", "provider": "openai", "base_url": "http://127.0.0.1:$inspect/busy/v1", "credential": {"value": "sk-busy"}},
   {"name": "good", "provider": "openai", "base_url": "http://127.0.0.1:$inspect/v1", "credential": {"value": "sk-good"}}
 ],
 "routes": [{"name": "r", "path_prefix": "/v1/", "targets": [{"target": "busy", "weight": 1000}, {"target": "good", "weight": 1}]}]}
_EOJ_
    close $fh;
}

my ($pid, $lpid, $rpid);
END { stop($_) for grep { $_ } $pid, $lpid, $rpid }
for ([$prefix, \$pid], [$lprefix, \$lpid], [$rprefix, \$rpid]) {
    my ($p, $ref) = @$_;
    my $out = `$nginx -p $p/ -c conf/nginx.conf 2>&1`;
    is($?, 0, "nginx starts ($p)") or BAIL_OUT("nginx did not start: $out");
    unlike($out, qr/\[warn\]/, '... without a warning (the HTTP/2 syntax fits the version)')
        or diag($out);
    $$ref = wait_pid("$p/logs/nginx.pid");
}
ok(wait_port($tls) && wait_port($h2c) && wait_port($inspect) && wait_port($ltls)
   && wait_port($lh2c) && wait_port($rtls) && wait_port($rh2c), 'the gateways listen');

# --- curl over HTTP/2 ---

sub shq { my $s = shift; $s =~ s/'/'\\''/g; return "'$s'" }

my $n = 0;
# One curl request. mode: tls | h2c; port: the TLS or h2c port of the gateway (defaults to
# the first gateway); data: the body (sent with content-length); pipe: a shell command whose
# output is the body (sent without content-length, as it comes); key; tag (X-Test);
# max_time. Returns {status, version, headers {lc name => value}, body, rc}.
sub h2 {
    my %a = @_;
    my $tlsmode = $a{mode} eq 'tls';
    my $port = $a{port} // ($tlsmode ? $tls : $h2c);
    my $url = ($tlsmode ? "https" : "http") . "://127.0.0.1:$port$a{path}";
    $n++;
    my ($bodyf, $hdrf, $dataf) = map { "$prefix/curl-$n.$_" } qw(body head data);
    my @cmd = ('curl', '-sS', '-o', $bodyf, '-D', $hdrf, '-w', '%{http_code} %{http_version}',
               $tlsmode ? ('--http2', '--cacert', $cert) : ('--http2-prior-knowledge'));
    push @cmd, '--max-time', $a{max_time} // 10;
    push @cmd, '-H', "Authorization: Bearer $a{key}" if defined $a{key};
    push @cmd, '-H', "X-Test: $a{tag}" if defined $a{tag};
    push @cmd, map { ('-H', $_) } @{ $a{headers} || [] };
    push @cmd, '-H', 'Content-Type: application/json' if defined $a{data} || defined $a{pipe};
    if (defined $a{data}) {
        open my $fh, '>', $dataf or die $!;
        print $fh $a{data};
        close $fh;
        push @cmd, '--data-binary', "\@$dataf";
    } elsif (defined $a{pipe}) {
        # an upload from stdin: sent as it comes, without content-length
        push @cmd, '-X', 'POST', '-T', '-';
    }
    push @cmd, $url;
    my $cmd = join ' ', map { shq($_) } @cmd;
    $cmd = "( $a{pipe} ) | $cmd" if defined $a{pipe};
    my $w = `$cmd 2>&1`;
    my $rc = $? >> 8;
    my ($status, $version) = $w =~ /(\d{3}) (\S+)\s*\z/;
    my %h;
    for (split /\r?\n/, slurp($hdrf)) { $h{lc $1} = $2 if /^([^:\s]+):\s*(.*)$/ }
    return { status => $status // 0, version => $version // '', headers => \%h,
             body => slurp($bodyf), rc => $rc, out => $w };
}

# The JSON lines of a log with this tag (waiting up to 3 s for $want of them).
sub logged {
    my ($file, $tag, $want) = @_;
    $want //= 1;
    my @l;
    for (1 .. 30) {
        @l = grep { $_->{tag} eq $tag }
             map { my $j = eval { JSON::PP->new->decode($_) }; $j ? $j : () }
             split /\n/, slurp($file);
        last if @l >= $want;
        sleep 0.1;
    }
    return @l;
}

sub gw_log { my ($tag, $p) = @_; my @l = logged(($p // $prefix) . '/logs/access.log', $tag); $l[-1] || {} }
sub up_log { my @l = logged("$prefix/logs/inspect.log", shift); $l[-1] || {} }
sub up_logs { my ($tag, $want) = @_; logged("$prefix/logs/inspect.log", $tag, $want) }

my $hello = '{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}';
my $stream_hello = '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hello"}]}';

for my $mode (qw(tls h2c)) {
    my $m = "[$mode]";

    # a completion
    my $r = h2(mode => $mode, path => '/v1/chat/completions', key => 'sk-alpha-1',
               tag => "$mode-json", data => $hello);
    is("$r->{status} $r->{version}", '200 2', "$m a completion: 200 over HTTP/2") or diag($r->{out});
    my $body = eval { JSON::PP->new->decode($r->{body}) } || {};
    is($body->{usage}{completion_tokens}, 38, "$m ... the provider's answer");
    my $g = gw_log("$mode-json");
    is_deeply([ @$g{qw(proto status ns prompt completion source)} ],
              [ 'HTTP/2.0', 200, 'alpha', 8, 38, 'provider' ],
              "$m ... logged: \$server_protocol HTTP/2.0, namespace, usage from the provider");
    my $u = up_log("$mode-json");
    is_deeply([ @$u{qw(proto cl body)} ], [ 'HTTP/1.1', length($hello), $hello ],
              "$m ... the provider got it over HTTP/1.1, the body unchanged");

    # a matcher on a header (HTTP/2 sends header names in lower case); the gateway's own
    # X-AI-Gateway-* headers and Accept-Encoding are not passed on
    $r = h2(mode => $mode, path => '/v1/chat/completions', tag => "$mode-matcher", data => $hello,
            headers => ['X-Team: beta', 'X-AI-Gateway-Namespace: forged', 'Accept-Encoding: gzip']);
    is("$r->{status} $r->{version}", '200 2', "$m no key, a header matcher: 200 over HTTP/2");
    is(gw_log("$mode-matcher")->{ns}, 'beta', "$m ... namespace beta (x-team: beta)");
    $u = up_log("$mode-matcher");
    is_deeply([ @$u{qw(forged ae)} ], [ '', '' ],
              "$m ... the client's X-AI-Gateway-Namespace and Accept-Encoding were removed");

    # a bad key: 401 as JSON over HTTP/2
    $r = h2(mode => $mode, path => '/v1/chat/completions', key => 'sk-wrong',
            tag => "$mode-badkey", data => $hello);
    is("$r->{status} $r->{version}", '401 2', "$m a bad key: 401 over HTTP/2");
    like($r->{headers}{'content-type'} // '', qr{^application/json}, "$m ... as JSON");
    $body = eval { JSON::PP->new->decode($r->{body}) } || {};
    is($body->{error}{code}, 'invalid_api_key', "$m ... code invalid_api_key");
    is(gw_log("$mode-badkey")->{reason}, 'invalid_api_key', "$m ... logged");

    # a body larger than client_body_buffer_size (16k): a temporary file
    my $big = '{"model":"gpt-4o","messages":[{"role":"user","content":"'
            . ('lorem ipsum ' x 5500) . '"}],"max_tokens":4}';
    $r = h2(mode => $mode, path => '/v1/chat/completions', key => 'sk-alpha-1',
            tag => "$mode-big", data => $big);
    is("$r->{status} $r->{version}", '200 2', "$m a ${\ length $big }-byte body: 200 over HTTP/2");
    $g = gw_log("$mode-big");
    is_deeply([ @$g{qw(body completion)} ], [ length($big), 4 ],
              "$m ... the gateway read all of it (from its temporary file)");
    $u = up_log("$mode-big");
    ok($u->{cl} == length($big) && $u->{body} eq $big,
       "$m ... and the provider got it whole, Content-Length $u->{cl}");

    # a body in several DATA frames, without content-length (curl reads it from a pipe)
    my ($p1, $p2) = ('{"model":"gpt-4o","max_tokens":3,"messages":[{"role":"user",',
                     '"content":"Hello"}]}');
    $r = h2(mode => $mode, path => '/v1/chat/completions', key => 'sk-alpha-1',
            tag => "$mode-pipe", pipe => "printf '%s' '$p1'; sleep 0.3; printf '%s' '$p2'");
    is("$r->{status} $r->{version}", '200 2',
       "$m a body sent in two parts 300 ms apart, no content-length: 200") or diag($r->{out});
    $g = gw_log("$mode-pipe");
    is_deeply([ @$g{qw(cl body completion)} ], [ '', length("$p1$p2"), 3 ],
              "$m ... no Content-Length from the client; the gateway read the whole body");
    $u = up_log("$mode-pipe");
    is_deeply([ @$u{qw(cl te body)} ], [ length("$p1$p2"), '', "$p1$p2" ],
              "$m ... the provider got it with a Content-Length (not chunked)");

    # proxy_request_buffering off changes nothing (nginx has the whole body already): the
    # temporary file's body, a body without content-length, a rewritten stream's body
    for my $case (['big', data => $big], ['pipe', pipe => "printf '%s' '$p1'; sleep 0.3; printf '%s' '$p2'"],
                  ['stream', data => $stream_hello]) {
        my ($what, @body) = @$case;
        my $tag = "$mode-unbuffered-$what";
        $r = h2(mode => $mode, path => '/unbuffered/v1/chat/completions', key => 'sk-alpha-1',
                tag => $tag, @body);
        $u = up_log($tag);
        my $want = { big => $big, pipe => "$p1$p2" }->{$what};
        my $sent = eval { JSON::PP->new->decode($u->{body} // '') } || {};
        ok($r->{status} == 200 && $r->{version} eq '2' && $u->{te} eq ''
           && $u->{cl} == length($u->{body})
           && (defined $want ? $u->{body} eq $want : $sent->{stream_options}{include_usage}),
           "$m proxy_request_buffering off, $what: 200, the provider got the whole body "
           . "(Content-Length $u->{cl})") or diag(explain([ $r->{status}, { %$u, body => substr($u->{body} // '', 0, 100) } ]));
    }

    # a stream: every event, [DONE]; the include_usage the gateway adds reaches the provider
    $r = h2(mode => $mode, path => '/v1/chat/completions', key => 'sk-alpha-1',
            tag => "$mode-stream", data => $stream_hello);
    is("$r->{status} $r->{version}", '200 2', "$m a stream: 200 over HTTP/2");
    like($r->{headers}{'content-type'} // '', qr{^text/event-stream}, "$m ... an event stream");
    my @events = $r->{body} =~ /^data: (.*)\n\n/mg;
    my @chunks = map { eval { JSON::PP->new->decode($_) } || () } @events;
    is(scalar(@events), 41, "$m ... 41 events (the role, 38 pieces, the finish, [DONE])");
    is($events[-1] // '', '[DONE]', "$m ... the last is data: [DONE]");
    is(scalar(grep { exists $_->{usage} } @chunks), 0,
       "$m ... no usage chunk (the client did not ask for it)");
    $g = gw_log("$mode-stream");
    is_deeply([ @$g{qw(proto prompt completion source)} ], [ 'HTTP/2.0', 8, 38, 'provider' ],
              "$m ... usage from the provider, logged");
    $u = up_log("$mode-stream");
    my $sent = eval { JSON::PP->new->decode($u->{body} // '') } || {};
    ok($sent->{stream_options}{include_usage} && $u->{cl} == length($u->{body}),
       "$m ... the provider got include_usage, Content-Length $u->{cl} = the new body's length");

    # 413 from client_max_body_size, as JSON, with and without content-length. nginx answers
    # as soon as it knows (the headers' content-length, or the bytes received), then resets
    # the stream the client is still sending (NO_ERROR, as HTTP/2 allows); curl 7.88 may
    # report that reset as "Stream error in the HTTP/2 framing layer" (exit 92) or "Empty reply
    # from server" (52) instead of the answer (it does so with nginx alone too): then only the
    # log is checked here (t/sdk/http2.py checks the answer with httpx).
    my $k2 = '{"model":"gpt-4o","messages":[{"role":"user","content":"' . ('x' x 2000) . '"}]}';
    for my $how ('with', 'without') {
        my $tag = "$mode-413-$how";
        $r = h2(mode => $mode, path => '/small/v1/chat/completions', key => 'sk-alpha-1',
                tag => $tag, $how eq 'with' ? (data => $k2) : (pipe => "printf '%s' '$k2'"));
        SKIP: {
            skip "$m curl 7.88 reported nginx's RST_STREAM NO_ERROR after the 413 as an error", 2
                if grep { $r->{rc} == $_ } 16, 52, 92;
            is("$r->{status} $r->{version}", '413 2',
               "$m a 2 KB body $how content-length where 1 KB is allowed: 413");
            $body = eval { JSON::PP->new->decode($r->{body}) } || {};
            is($body->{error}{code}, 'request_too_large', "$m ... a JSON error")
                or diag($r->{body});
        }
        $g = gw_log($tag);
        is_deeply([ @$g{qw(proto status reason)} ], [ 'HTTP/2.0', 413, 'request_too_large' ],
                  "$m ... logged: 413 request_too_large ($how content-length)");
    }
}

# --- the module's content handlers over HTTP/2: the mock provider (timers between events)
# and the token service (it reads the body in its content handler) ---
for my $mode (qw(tls h2c)) {
    my $m = "[$mode]";
    my $r = h2(mode => $mode, path => '/mock/v1/chat/completions', tag => "$mode-mock",
               data => $stream_hello);
    my @events = $r->{body} =~ /^data: (.*)\n\n/mg;
    is_deeply([ $r->{status}, $r->{version}, scalar(@events), $events[-1] ],
              [ 200, 2, 41, '[DONE]' ], "$m the mock provider streams over HTTP/2 (41 events)");
    my $t = '{"model":"gpt-4","messages":[{"role":"user","content":"Hello"}]}';
    for my $how ('data', 'pipe') {
        $r = h2(mode => $mode, path => '/tokens/calculate', tag => "$mode-tokens",
                $how eq 'data' ? (data => $t) : (pipe => "printf '%s' '$t'"));
        my $j = eval { JSON::PP->new->decode($r->{body}) } || {};
        is_deeply([ $r->{status}, $r->{version}, $j->{token_count} ], [ 200, 2, 8 ],
                  "$m the token service over HTTP/2 (body ${\ ($how eq 'data' ? 'with' : 'without') } content-length): 8 tokens");
    }
}

# --- the policies gateway ---
for my $mode (qw(tls h2c)) {
    my $m = "[$mode]";
    my $port = $mode eq 'tls' ? $ltls : $lh2c;

    # the output clamp: max_tokens 100 becomes 5 in the body the provider gets
    my $req = '{"model":"gpt-4o","max_tokens":100,"messages":[{"role":"user","content":"Hello"}]}';
    my $r = h2(mode => $mode, port => $port, path => '/v1/chat/completions',
               key => 'sk-pol-outclamp', tag => "$mode-clamp", data => $req);
    is("$r->{status} $r->{version}", '200 2', "$m the output clamp: 200 over HTTP/2");
    my $body = eval { JSON::PP->new->decode($r->{body}) } || {};
    is($body->{usage}{completion_tokens}, 5, "$m ... 5 completion tokens");
    my $u = up_log("$mode-clamp");
    my $sent = eval { JSON::PP->new->decode($u->{body} // '') } || {};
    ok($sent->{max_tokens} == 5 && $u->{cl} == length($u->{body}),
       "$m ... the provider got max_tokens 5 with Content-Length $u->{cl} = the new body's length");

    # ... a clamped stream: both rewrites (max_tokens, include_usage), sent without
    # content-length by the client
    $req = '{"model":"gpt-4o","stream":true,"max_tokens":100,"messages":[{"role":"user","content":"Hello"}]}';
    $r = h2(mode => $mode, port => $port, path => '/v1/chat/completions',
            key => 'sk-pol-outclamp', tag => "$mode-clamp-stream", pipe => "printf '%s' '$req'");
    is("$r->{status} $r->{version}", '200 2', "$m a clamped stream without content-length: 200");
    my @events = $r->{body} =~ /^data: (.*)\n\n/mg;
    is_deeply([ scalar(@events), $events[-1] ], [ 8, '[DONE]' ],
              "$m ... the role, 5 pieces, the finish, [DONE]");
    $u = up_log("$mode-clamp-stream");
    $sent = eval { JSON::PP->new->decode($u->{body} // '') } || {};
    ok($sent->{max_tokens} == 5 && $sent->{stream_options}{include_usage}
       && $u->{cl} == length($u->{body}),
       "$m ... the provider got max_tokens 5 and include_usage, Content-Length $u->{cl}");
    my $g = gw_log("$mode-clamp-stream", $lprefix);
    is_deeply([ @$g{qw(proto completion source)} ], [ 'HTTP/2.0', 5, 'provider' ], "$m ... logged");

    # the output cap ends a stream that goes past it, cleanly (a provider that sends its
    # whole answer at once, straight to the gateway: the usage after the cap is read too; when
    # the rest of the provider's stream arrives after the cut, the request has ended already
    # and its usage is the gateway's count of what was sent, over HTTP/1.1 alike)
    $r = h2(mode => $mode, port => $port, path => '/fast/v1/chat/completions',
            key => 'sk-pol-outcut', tag => "$mode-cut", data => $stream_hello);
    is("$r->{status} $r->{version} $r->{rc}", '200 2 0', "$m the output cap on a stream: 200, curl content");
    like($r->{body}, qr/"finish_reason":"length"\}\]\}\n\ndata: \[DONE\]\n\n\z/,
         "$m ... the stream ends with finish_reason length and [DONE]");
    $g = gw_log("$mode-cut", $lprefix);
    is_deeply([ @$g{qw(completion source)} ], [ 38, 'provider' ],
              "$m ... the provider's whole usage still counted");
}

# --- the routed gateway: failover re-sends the body the gateway read ---
for my $mode (qw(tls h2c)) {
    my $m = "[$mode]";
    my $port = $mode eq 'tls' ? $rtls : $rh2c;
    my $big = '{"model":"gpt-4o","max_tokens":4,"messages":[{"role":"user","content":"'
            . ('dolor sit amet ' x 4500) . '"}]}';
    for my $case (['json', data => $hello], ['stream', data => $stream_hello],
                  ['big', data => $big], ['pipe', pipe => "printf '%s' '$hello'"]) {
        my ($what, @body) = @$case;
        my $tag = "$mode-route-$what";
        my $r = h2(mode => $mode, port => $port, path => '/v1/chat/completions',
                   key => 'sk-route-a', tag => $tag, @body);
        is(join(' ', $r->{status}, $r->{version}, $r->{headers}{'x-target'} // '-',
                $r->{headers}{'x-attempts'} // '-'), '200 2 good 2',
           "$m routed, $what: the 503 target, then the good one: 200 over HTTP/2") or diag($r->{out});
        my @u = up_logs($tag, 2);
        my ($busy, $good) = @u[-2, -1];
        my $sent = $good->{body} // '';
        my $ok = $good->{uri} =~ m{^/v1/chat/completions} && $busy->{uri} =~ m{^/busy/}
              && $good->{cl} == length($sent) && $good->{te} eq '';
        if ($what eq 'stream') {
            my $j = eval { JSON::PP->new->decode($sent) } || {};
            $ok &&= $j->{stream_options}{include_usage} && $busy->{cl} == $good->{cl};
            my @events = $r->{body} =~ /^data: (.*)\n\n/mg;
            is_deeply([ scalar(@events), $events[-1] ], [ 41, '[DONE]' ], "$m ... every event");
        } else {
            my $want = $what eq 'big' ? $big : $hello;
            $ok &&= $sent eq $want && $busy->{cl} == length($want);
        }
        ok($ok, "$m ... both targets were sent the whole body, Content-Length $good->{cl}")
            or diag(explain([ $busy, { %$good, body => substr($sent, 0, 200) } ]));
    }
}

# a requests limit (3 a minute): the 4th and 5th requests get 429 with Retry-After
{
    my @r = map {
        h2(mode => $_ % 2 ? 'tls' : 'h2c', port => $_ % 2 ? $ltls : $lh2c,
           path => '/v1/chat/completions', key => 'sk-pol-rpm', tag => "rpm-$_", data => $hello)
    } 1 .. 5;
    is(join(' ', map { "$_->{status}/$_->{version}" } @r), '200/2 200/2 200/2 429/2 429/2',
       'requests limit over h2 and h2c: 3 pass, then 429');
    is_deeply([ @{ $r[0]{headers} }{qw(x-ratelimit-limit-requests x-ratelimit-remaining-requests)} ],
              [ 3, 2 ], '... the x-ratelimit-* headers the gateway adds, over HTTP/2');
    like($r[3]{headers}{'retry-after'} // '', qr/^(5[6-9]|6[0-3])$/, '... Retry-After about a minute (TLS)');
    like($r[4]{headers}{'retry-after'} // '', qr/^(5[6-9]|6[0-3])$/, '... and h2c');
    my $body = eval { JSON::PP->new->decode($r[3]{body}) } || {};
    is($body->{error}{code}, 'rate_limit_exceeded', '... code rate_limit_exceeded');
}

# a client that gives up on a slow stream releases its concurrency slot (limit 1)
for my $mode (qw(tls h2c)) {
    my $m = "[$mode]";
    my $port = $mode eq 'tls' ? $ltls : $lh2c;
    my $slow = "$prefix/slow-$mode.body";
    # the slow stream in the background: curl gives up after 2 s
    unlink $slow;
    my $bg = fork // die;
    if (!$bg) {
        exec 'curl', '-sS', '-o', $slow, '--max-time', '2',
             $mode eq 'tls' ? ('--http2', '--cacert', $cert) : ('--http2-prior-knowledge'),
             '-H', 'Authorization: Bearer sk-pol-conc', '-H', 'Content-Type: application/json',
             '-H', "X-Test: $mode-conc-slow",
             '--data-binary', $stream_hello,
             ($mode eq 'tls' ? 'https' : 'http') . "://127.0.0.1:$port/slow/v1/chat/completions";
        exit 127;
    }
    # admitted once its first event arrived
    for (1 .. 30) { last if -s $slow; sleep 0.05 }
    my $r = h2(mode => $mode, port => $port, path => '/v1/chat/completions', key => 'sk-pol-conc',
               tag => "$mode-conc-busy", data => $hello);
    is("$r->{status} $r->{version}", '429 2', "$m concurrency 1: while a slow stream runs, 429");
    waitpid($bg, 0);
    isnt($? >> 8, 0, "$m ... the slow stream's client gave up (curl timed out)");
    like(slurp($slow), qr/^data: /, "$m ... after receiving some of it");
    my $after;
    my $t0 = time;
    for (1 .. 20) {
        $after = h2(mode => $mode, port => $port, path => '/v1/chat/completions',
                    key => 'sk-pol-conc', tag => "$mode-conc-after", data => $hello);
        last if $after->{status} == 200;
        sleep 0.1;
    }
    is("$after->{status} $after->{version}", '200 2', "$m ... and then the slot is free again");
    ok(time - $t0 < 1.5, sprintf("$m ... at once (%.2f s)", time - $t0));
    my $g = gw_log("$mode-conc-slow", $lprefix);
    ok($g->{proto} eq 'HTTP/2.0' && $g->{completion} > 0 && $g->{source} eq 'estimated',
       "$m ... its usage settled from what it was sent ($g->{completion} completion tokens, $g->{source})");
}

# --- the SDKs on an HTTP/2 transport ---
SKIP: {
    skip 'AI_GATEWAY_NO_SDK is set', 1 if $no_sdk;
    ok($python && -x $python, 'the SDK interpreter (AI_GATEWAY_PYTHON, made by `make sdk-deps`)')
        or BAIL_OUT('no AI_GATEWAY_PYTHON: run `make sdk-deps` or set AI_GATEWAY_NO_SDK=1');
    my $out = `$python $root/t/sdk/http2.py https://127.0.0.1:$tls $cert http://127.0.0.1:$h2c sk-alpha-1 /small 2>&1`;
    is($?, 0, 'the SDK calls over HTTP/2 all succeeded') or diag($out);
    my $r = eval { JSON::PP->new->decode($out) } || {};
    for my $t (qw(tls h2c)) {
        my $s = $r->{$t} || {};
        is($s->{versions}, 'HTTP/2', "[$t] every SDK response came over HTTP/2") or diag($out);
        is_deeply([ @{ $s->{openai} || {} }{qw(prompt completion)} ], [ 8, 38 ],
                  "[$t] openai: a completion's usage");
        is($s->{openai_stream}{text}, 'Hello! This is a mock', "[$t] openai: a stream's text");
        is($s->{openai_stream}{finish}, 'length', "[$t] ... finish_reason length");
        is($s->{openai_stream}{with_usage}, 0, "[$t] ... no usage chunk (not asked for)");
        is($s->{openai_stream_usage}{completion}, 6, "[$t] openai: a stream with include_usage: usage on its last chunk");
        is($s->{anthropic}{text}, 'Hello! This is a', "[$t] anthropic: a stream");
        is($s->{anthropic}{output}, 5, "[$t] ... usage.output_tokens");
        is_deeply($s->{bad_key}, { status => 401, code => 'invalid_api_key' },
                  "[$t] openai: a bad key is an AuthenticationError");
        is_deeply($s->{anthropic_bad_key}, { status => 401 },
                  "[$t] anthropic: a bad key is an AuthenticationError");
        is_deeply($s->{too_large}, { status => 413, code => 'request_too_large' },
                  "[$t] openai: a body over client_max_body_size: APIStatusError 413 request_too_large");
        is_deeply($s->{too_large_streamed}, { status => 413, code => 'request_too_large' },
                  "[$t] httpx: the same body streamed without content-length: 413 as JSON");
        is_deeply($s->{mux}, [ 2, 'Hello', 4, 'Hello! This', 6, 'Hello! This is a', 8,
                               'Hello! This is a mock reply' ],
                  "[$t] eight requests at once from one SDK client (streams and completions): "
                  . "each got its own answer");
        my @l = logged("$prefix/logs/access.log", "mux-$t", 8);
        my %conns = map { $_->{conn} => 1 } @l;
        ok(@l == 8 && keys(%conns) == 1
           && join(',', sort { $a <=> $b } map { $_->{completion} } @l) eq '1,2,3,4,5,6,7,8',
           "[$t] ... multiplexed on one connection (${\ scalar @l } requests on "
           . "${\ scalar keys %conns } connection(s)), each with its usage: "
           . join(',', map { $_->{completion} } @l));
    }
    my @sdk = grep { $_->{tag} =~ /^sdk-/ }
              map { my $j = eval { JSON::PP->new->decode($_) }; $j ? $j : () }
              split /\n/, slurp("$prefix/logs/access.log");
    ok(@sdk >= 16 && !grep({ $_->{proto} ne 'HTTP/2.0' } @sdk),
       "the gateway logged the SDKs' ${\ scalar @sdk } requests as HTTP/2.0");
}

# --- RST_STREAM on a connection that goes on (t/sdk/h2_reset.py drives HTTP/2 by hand) ---
SKIP: {
    skip 'AI_GATEWAY_NO_SDK is set', 6 if $no_sdk;
    for my $t (qw(tls h2c)) {
        my $url = $t eq 'tls' ? "https://127.0.0.1:$ltls" : "http://127.0.0.1:$lh2c";
        my $out = `$python $root/t/sdk/h2_reset.py resets $url $cert sk-pol-conc /slow 2>&1`;
        my $x = eval { JSON::PP->new->decode($out) } || {};
        is_deeply($x->{mid_stream}, { stream => 200, events => 2, busy => 429, after => 200 },
                  "[$t] RST_STREAM in the middle of a slow stream (the connection kept): "
                  . "the next request on the connection has the concurrency slot") or diag($out);
        is($x->{mid_body}, 200, "[$t] ... RST_STREAM in the middle of a body: the same");
        is($x->{at_once}, 200, "[$t] ... RST_STREAM right after the request: the same");
    }
}

# --- ... and while the admission waits on Redis (cluster limits, Redis paused) ---
my ($cpid, $redis_pid);
END { kill 'TERM', $redis_pid if $redis_pid; stop($_) for grep { $_ } $cpid, $redis_pid }
my $cprefix = "$root/t/servroot-http2-cluster";
SKIP: {
    skip 'AI_GATEWAY_NO_SDK is set', 7 if $no_sdk;
    my ($redis) = grep { -x } map { "$_/redis-server" } split /:/, $ENV{PATH} // '';
    ok($redis, 'redis-server is installed (`make deps`)') or skip 'no redis-server', 5;
    my ($ctls, $ch2c, $rport) = ($base + 8, $base + 9, $base + 10);
    write_conf($cprefix, <<"_EOC_");
${\ main_conf($module, 1) }
http {
    ai_gateway_config $root/t/fixtures/policies.json;
    ai_gateway_limit_zone limits 64k;
    ai_gateway_redis redis://127.0.0.1:$rport prefix=h2t: timeout=3s;
    ai_gateway_cluster_limits mode=exact timeout=3s on_failure=fail_closed;
$common
    server {
        ${\ listen_h2($ctls, 1) }
        listen 127.0.0.1:$ch2c${\ ($http2_on ? '' : ' http2') };
        ssl_certificate     $prefix/conf/cert.pem;
        ssl_certificate_key $prefix/conf/key.pem;
        access_log logs/access.log gw;
        location / {
            ai_gateway on;
            proxy_pass http://inspect;
        }
    }
}
_EOC_
    system($redis, '--port', $rport, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
           '--daemonize', 'yes', '--dir', $cprefix, '--pidfile', "$cprefix/redis.pid",
           '--logfile', "$cprefix/logs/redis.log") == 0 or BAIL_OUT('redis-server did not start');
    $redis_pid = wait_pid("$cprefix/redis.pid");
    my $out = `$nginx -p $cprefix/ -c conf/nginx.conf 2>&1`;
    is($?, 0, 'a gateway with cluster limits (Redis) starts') or BAIL_OUT("nginx did not start: $out");
    $cpid = wait_pid("$cprefix/logs/nginx.pid");
    wait_port($ch2c) && wait_port($rport);
    for my $t (qw(tls h2c)) {
        my $url = $t eq 'tls' ? "https://127.0.0.1:$ctls" : "http://127.0.0.1:$ch2c";
        $out = `$python $root/t/sdk/h2_reset.py parked $url $cert sk-pol-conc $rport 2>&1`;
        my $x = eval { JSON::PP->new->decode($out) } || {};
        ok(($x->{after_reset} // 0) == 200 && ($x->{waited} // 0) >= 1.5,
           "[$t] a request reset while its admission waits on Redis: once Redis is back, the "
           . "next request on the connection finds the slot free (${\ ($x->{waited} // '?') } s)")
            or diag($out);
        is($x->{after_close}, 200,
           "[$t] a connection closed while its request waits on Redis: the slot is free afterwards");
    }
    stop($cpid);
    undef $cpid;
    my $log = slurp("$cprefix/logs/error.log");
    unlike($log, qr/\[(error|alert|crit|emerg)\]/, 'no [error]/[alert]/[crit]/[emerg] (cluster gateway)')
        or diag(join "\n", grep { /\[(error|alert|crit|emerg)\]/ } split /\n/, $log);
}

# the provider side reused its connections (keepalive over HTTP/1.1)
my @up = map { my $j = eval { JSON::PP->new->decode($_) }; $j ? $j : () }
         split /\n/, slurp("$prefix/logs/inspect.log");
ok((grep { $_->{reqs} > 1 } @up), 'the gateway reused its HTTP/1.1 connections to the provider');
ok(!grep({ $_->{proto} ne 'HTTP/1.1' } @up), '... every request to it was HTTP/1.1');

stop($_) for $pid, $lpid, $rpid;
undef $_ for $pid, $lpid, $rpid;
for my $p ($prefix, $lprefix, $rprefix) {
    # nginx's own [error] for a 413
    my $log = join "\n", grep { !/\[error\].*client intended to send too large( chunked)? body/ }
                          split /\n/, slurp("$p/logs/error.log");
    unlike($log, qr/\[(error|alert|crit|emerg)\]/, "no [error]/[alert]/[crit]/[emerg] ($p)")
        or diag(join "\n", grep { /\[(error|alert|crit|emerg)\]/ } split /\n/, $log);
}
like(slurp("$prefix/logs/error.log"), qr/a client request body is buffered to a temporary file/,
     'the large bodies went through temporary files');
like(slurp("$lprefix/logs/error.log"), qr/ai_gateway: stream ended at the output cap \(5 tokens sent\)/,
     'the output cap was logged');
done_testing();
