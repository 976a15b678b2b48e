# A provider that breaks HTTP/1.1 framing on purpose (t/fixtures/hostile_provider.py): more
# bytes than its Content-Length, a second response right after the first (in the same write,
# in a write of its own, after a chunked one), garbage 5 ms after an answer, and answers with
# no status line at all. Its connections are pooled (keepalive) and shared by two namespaces.
#
#   1. one request of each kind from namespace "a", then an honest request from namespace
#      "b": "b" gets its own answer, whichever pooled connection it is given (routed through
#      ai_gateway_upstream, and through a plain upstream block with keepalive);
#   2. an answer without a status line is a failed attempt: the route fails over to the
#      next target (or, with none, the client gets a 502 in JSON), never the bytes as a 200;
#   3. 360 requests of both namespaces, 24 at a time, every kind mixed: every client gets its
#      own answer (its id), none gets another's or the smuggled one;
#   4. the warnings name what happened, and nothing worse than the expected [error] lines is
#      logged.
#
# Plain Test::More: the data-driven format has no provider that misbehaves between requests,
# and no concurrent clients.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::AIGateway::Process;
use JSON::PP ();

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;
my $python = $ENV{AI_GATEWAY_PYTHON} && -x $ENV{AI_GATEWAY_PYTHON} ? $ENV{AI_GATEWAY_PYTHON} : 'python3';

my $root   = abs_path(dirname(__FILE__) . '/..');
my $port   = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 65;
# h1: phases 0-2 (alone on its route); h2: phase 3, routed (backup behind it); h3: phase 3,
# through a plain upstream block; backup: an honest provider
my ($h1, $h2, $h3, $backup) = map { $port + $_ } 1 .. 4;
my $prefix = "$root/t/servroot-hostile";
my $json   = JSON::PP->new->utf8;

write_conf($prefix, <<"_EOC_");
${\ main_conf($module, 1) }
http {
    access_log logs/access.log;
    ai_gateway_config gw.json;
    upstream ai_gateway_targets { ai_gateway_upstream; keepalive 8; }
    # the README's plain setup: an upstream block of nginx's own, pooled
    upstream plain { server 127.0.0.1:$h3; keepalive 8; }
    server {
        listen 127.0.0.1:$port;
        proxy_buffer_size 4k;
        location /v1/ {
            ai_gateway on;
            include $root/nginx-conf/ai_gateway_proxy.conf;
            add_header X-Target \$ai_gateway_target always;
        }
        location \@ai_gateway_failover {
            ai_gateway on;
            include $root/nginx-conf/ai_gateway_proxy.conf;
            add_header X-Target \$ai_gateway_target always;
        }
        location /plain/ {
            ai_gateway on;
            rewrite ^/plain(/.*)\$ \$1 break;
            proxy_pass http://plain;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
_EOC_
open my $fh, '>', "$prefix/conf/gw.json" or die $!;
print $fh <<"_EOJ_";
{"namespaces": [
   {"code": "a", "api_keys": ["033d461ba69fa00769695b91ef3d9187416084607a52805d6ca51f0665bd4fcb"]},
   {"code": "b", "api_keys": ["8efc96d592e25dfead3d81af2c2d9fc83083a6c431b305ba117de6f359520dbc"]}
 ],
 "targets": [
   {"name": "h1", "provider": "openai", "base_url": "http://127.0.0.1:$h1/v1"},
   {"name": "h2", "provider": "openai", "base_url": "http://127.0.0.1:$h2/v1"},
   {"name": "backup", "provider": "openai", "base_url": "http://127.0.0.1:$backup/v1"}
 ],
 "routes": [
   {"name": "one", "path_prefix": "/v1/one/", "targets": [{"target": "h1"}]},
   {"name": "mix", "path_prefix": "/v1/mix/", "targets": [{"target": "h2", "weight": 1000}, {"target": "backup", "weight": 1}]}
 ]}
_EOJ_
close $fh;

my ($pid, @providers);
my $parent = $$;
END {
    local $?;    # the exit status stays the tests'
    if ($$ == $parent) {
        stop($pid) if $pid;
        for (@providers) { kill 'TERM', $_; waitpid($_, 0) }
    }
}
for my $p ([$h1, ''], [$h2, ''], [$h3, ''], [$backup, 'honest']) {
    my $child = fork // die "fork: $!";
    if (!$child) {
        exec($python, "$root/t/fixtures/hostile_provider.py", $p->[0], "$prefix/logs/provider-$p->[0].pid",
            "$prefix/logs/provider-$p->[0].log", $p->[1] ? $p->[1] : ()) or exit 1;
    }
    push @providers, $child;
}
ok(wait_port($h1) && wait_port($h2) && wait_port($h3) && wait_port($backup), 'the providers listen');
is(system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf'), 0, 'gateway started');
$pid = wait_pid("$prefix/logs/nginx.pid");
ok(wait_port($port), 'gateway listens');

my %KEY = (a => 'sk-route-a', b => 'sk-route-b');
my $SMUGGLED = 'smuggled-from-another-tenant';

# One request on a new connection: (status, body, X-Target).
sub request {
    my ($path, $ns, $mode, $user) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 10)
        or return (0, "connect: $!", '');
    my $body = $json->encode({ model => $mode, user => $user, messages => [] });
    print $s "POST $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "Authorization: Bearer $KEY{$ns}\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body";
    local $/;
    my $resp = <$s> // '';
    my ($head, $rest) = split /\r\n\r\n/, $resp, 2;
    my ($status) = ($head // '') =~ m{\AHTTP/1\.1 (\d{3})};
    my ($target) = ($head // '') =~ m{^X-Target: (\S+)}mi;
    $rest = dechunk($rest) if ($head // '') =~ /^Transfer-Encoding: chunked/mi;
    return ($status // 0, $rest // $resp, $target // '');
}

# Whether a body is the answer to $user: JSON whose id is $user.
sub own_answer {
    my ($body, $user) = @_;
    my $doc = eval { $json->decode($body) } or return 0;
    return ref $doc eq 'HASH' && ($doc->{id} // '') eq $user;
}

# The connections (nginx's ports) the provider on $port saw the requests of these users on.
sub connections_of {
    my ($provider, @users) = @_;
    my %want = map { $_ => 1 } @users;
    my %port;
    for (split /\n/, slurp("$prefix/logs/provider-$provider.log")) {
        my ($mode, $user, $p) = split / /;
        $port{$user} = $p if $want{$user};
    }
    return map { $port{$_} // '?' } @users;
}

##########################################################################################
# 0. An honest provider's connections are kept.
##########################################################################################

my @honest = map { "a-honest-$_" } 1 .. 5;
for my $u (@honest) {
    my ($s, $b) = request('/v1/one/chat/completions', 'a', 'honest', $u);
    ok($s == 200 && own_answer($b, $u), "honest request $u answered");
}
my %seen = map { $_ => 1 } connections_of($h1, @honest);
ok(keys(%seen) <= 2, 'five requests to an honest provider share its pooled connection(s): '
    . join(',', sort keys %seen));

# Nor do answers that end early for reasons of the gateway's own: a client that goes away
# before the answer, an error status the gateway intercepts (a failed attempt).
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 10);
    my $body = $json->encode({ model => 'slow', user => 'a-gone', messages => [] });
    print $s "POST /v1/one/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: Bearer $KEY{a}\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    sleep 0.1;
    close $s;
    sleep 0.6;
    my ($st) = request('/v1/one/chat/completions', 'b', 'busy', 'b-busy');
    is($st, 503, 'an intercepted 503 of the only target: 503');
    my @again = map { "a-honest-again-$_" } 1 .. 5;
    for my $u (@again) {
        my ($s2, $b2) = request('/v1/one/chat/completions', 'a', 'honest', $u);
        ok($s2 == 200 && own_answer($b2, $u), "honest request $u answered");
    }
    my %again = map { $_ => 1 } connections_of($h1, @again);
    ok(keys(%again) <= 2, 'after a client that went away and an intercepted error, connections are still kept: '
        . join(',', sort keys %again));
    unlike(slurp("$prefix/logs/error.log"), qr/not kept/, '... and no provider is distrusted');
}

##########################################################################################
# 1. Each kind of misbehaviour, then an honest request of the other namespace.
##########################################################################################

my $n = 0;
for my $path ('/v1/one/chat/completions', '/plain/v1/chat/completions') {
    for my $mode (qw(exact extra second split chunked late)) {
        my ($s1, $b1) = request($path, 'a', $mode, "a-$mode-" . ++$n);
        is($s1, 200, "$path $mode: the misbehaving answer itself is a 200");
        ok(own_answer($b1, "a-$mode-$n"), "$path $mode: namespace a gets its own answer")
            or diag($b1);
        sleep 0.02;    # the extra bytes of "late" are on the connection now
        my ($s2, $b2) = request($path, 'b', 'honest', "b-after-$mode-" . ++$n);
        is($s2, 200, "$path after $mode: namespace b's request is answered");
        ok(own_answer($b2, "b-after-$mode-$n"), "$path after $mode: namespace b gets its own answer")
            or diag($b2);
        unlike($b2, qr/$SMUGGLED/, "$path after $mode: never the smuggled bytes");
    }
}
my $log = slurp("$prefix/logs/error.log");
like($log, qr/\[warn\] .*ai_gateway: 127\.0\.0\.1:$h1 sent bytes after its response: its connections are not kept for 300 s/,
    'a response that filled the read exactly, with bytes behind it: caught when the connection is given back');
like($log, qr/\[warn\] .*ai_gateway: 127\.0\.0\.1:$h3 sent (bytes after its response|more than its response's framing): its connections are not kept for 300 s/,
    'the same through a plain upstream block');
my @after = map { "b-untrusted-$_" } 1 .. 5;
for my $u (@after) {
    my ($s, $b) = request('/v1/one/chat/completions', 'b', 'honest', $u);
    ok($s == 200 && own_answer($b, $u), "request $u to the caught provider answered");
}
%seen = map { $_ => 1 } connections_of($h1, @after);
is(scalar(keys %seen), 5, 'then each request to it has a connection of its own (none is kept)');

##########################################################################################
# 2. No status line at all.
##########################################################################################

{
    my ($s, $b, $t) = request('/v1/mix/chat/completions', 'a', 'garbage', 'a-garbage');
    is($s, 200, 'an answer without a status line fails over');
    is($t, 'backup', '... to the next target');
    ok(own_answer($b, 'a-garbage'), '... whose answer the client gets');
    ($s, $b) = request('/v1/one/chat/completions', 'a', 'garbage', 'a-garbage-alone');
    is($s, 502, 'with no other target: 502');
    like($b, qr/^\{"error":\{/, '... in JSON');
    unlike($b, qr/raw bytes|$SMUGGLED/, '... never the provider\'s bytes');
    ($s, $b, $t) = request('/v1/mix/chat/completions', 'a', 'http2', 'a-http2');
    ok($s == 200 && $t eq 'backup' && own_answer($b, 'a-http2'),
        'a status line of another HTTP version than 1.x fails over too');
    ($s, $b) = request('/plain/v1/chat/completions', 'b', 'garbage', 'b-garbage-plain');
    is($s, 502, 'through a plain upstream: 502 as well');
    unlike($b, qr/raw bytes|$SMUGGLED/, '... never the provider\'s bytes');
}

##########################################################################################
# 3. 360 requests, 24 at a time, both namespaces, every kind mixed.
##########################################################################################

my @MODES = qw(honest extra second split chunked honest late garbage exact honest);
my $results = "$prefix/logs/results";
unlink $results;
my @kids;
for my $k (0 .. 23) {
    my $child = fork // die "fork: $!";
    if (!$child) {
        open my $out, '>>', $results or exit 1;
        for my $i (0 .. 14) {
            my $ns   = ($k + $i) % 2 ? 'a' : 'b';
            my $mode = $MODES[($k * 7 + $i) % @MODES];
            my $path = ($k % 3 == 0) ? '/plain/v1/chat/completions' : '/v1/mix/chat/completions';
            my $user = "$ns-$k-$i-$mode";
            my ($s, $b) = request($path, $ns, $mode, $user);
            my $verdict = own_answer($b, $user) ? 'own'
                : $b =~ /$SMUGGLED/ ? 'smuggled'
                : (eval { $json->decode($b)->{id} } // '') ne '' ? 'foreign'
                : $b =~ /^\{"error":/ ? 'error' : 'other';
            syswrite $out, "$path $mode $s $verdict\n";
        }
        exit 0;
    }
    push @kids, $child;
}
waitpid($_, 0) for @kids;
my @lines = split /\n/, slurp($results);
is(scalar(@lines), 360, '360 answers');
my %count;
$count{ (split / /)[3] }++ for @lines;
is($count{smuggled} // 0, 0, 'no client got the smuggled bytes');
is($count{foreign} // 0, 0, 'no client got another request\'s answer');
is($count{other} // 0, 0, 'no client got anything but JSON');
my @routed_bad = grep { m{^/v1/} && !/ 200 own$/ } @lines;
is(scalar(@routed_bad), 0, 'every routed request got its own answer (failing over when needed)')
    or diag(join "\n", @routed_bad[0 .. ($#routed_bad < 9 ? $#routed_bad : 9)]);
my @plain_bad = grep { m{^/plain/} && !/ 200 own$/ && !/ 502 error$/ } @lines;
is(scalar(@plain_bad), 0, 'through the plain upstream: its own answer or a JSON 502')
    or diag(join "\n", @plain_bad[0 .. ($#plain_bad < 9 ? $#plain_bad : 9)]);

##########################################################################################
# 4. The log.
##########################################################################################

stop($pid);
undef $pid;
$log = slurp("$prefix/logs/error.log");
like($log, qr/upstream sent no valid HTTP\/1\.0 header/, 'an answer without a status line is logged');
my @bad = grep { /\[(alert|crit|emerg)\]/ || /\[error\]/
        && !/upstream sent no valid HTTP\/1\.0 header|upstream sent a status line of another HTTP version/ }
    split /\n/, $log;
is(scalar(@bad), 0, 'no [alert], [crit], [emerg], and no [error] but the invalid headers')
    or diag(join "\n", @bad[0 .. ($#bad < 5 ? $#bad : 5)]);
done_testing();
