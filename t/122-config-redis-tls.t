# The Redis source over TLS (rediss://) with a password from a file: a node that trusts the
# server's CA (env SSL_CERT_FILE) applies what is published; one that does not refuses the
# certificate and keeps serving its file; a wrong password is reported without the password.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use Digest::SHA qw(sha256_hex);
use POSIX ();
use FindBin ();
use lib "$FindBin::Bin/lib";
use Test::AIGateway::Process;

my $nginx  = $ENV{TEST_NGINX_BINARY};
my $module = $ENV{TEST_NGINX_LOAD_MODULES};
plan skip_all => 'set TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES (make inttest does)'
    unless $nginx && $module;

my $root  = abs_path(dirname(__FILE__) . '/..');
my $base  = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 140;
my $rport = $base + 9;
my $dir   = "$root/t/servroot-cfg-tls";
my $P     = "t122-$$";
remove_tree($dir);
make_path($dir);

# a certificate for 127.0.0.1, its own CA
is(system("openssl req -x509 -newkey rsa:2048 -nodes -keyout $dir/key.pem -out $dir/cert.pem"
    . " -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1"), 0,
    'a server certificate');
my ($bin) = grep { -x } map { "$_/redis-server" } split(/:/, $ENV{PATH}), '/usr/bin';
my $redis_pid = fork // die;
if (!$redis_pid) {
    open STDOUT, '>', "$dir/redis.log";
    open STDERR, '>&', \*STDOUT;
    { exec $bin, '--port', 0, '--tls-port', $rport, '--bind', '127.0.0.1',
        '--tls-cert-file', "$dir/cert.pem", '--tls-key-file', "$dir/key.pem",
        '--tls-ca-cert-file', "$dir/cert.pem", '--tls-auth-clients', 'no',
        '--requirepass', 'pw-t122', '--save', '', '--appendonly', 'no', '--dir', $dir; }
    POSIX::_exit(127);
}
my @nodes;
END {
    local $?;
    stop($_->{pid}) for grep { $_->{pid} } @nodes;
    if ($redis_pid) { kill 'KILL', $redis_pid; waitpid($redis_pid, 0) }
}

sub cli {
    local $ENV{REDISCLI_AUTH} = 'pw-t122';
    my $out = `redis-cli --tls --cacert $dir/cert.pem -h 127.0.0.1 -p $rport --no-auth-warning @_ 2>&1`;
    chomp $out;
    return $out;
}
my $up;
for (1 .. 50) { $up = cli('PING'); last if $up eq 'PONG'; sleep 0.1 }
is($up, 'PONG', 'redis-server answers over TLS');

open my $pw, '>', "$dir/redis.pw" or die;
print $pw "pw-t122\n";
close $pw;
open my $bad, '>', "$dir/wrong.pw" or die;
print $bad "not-the-password\n";
close $bad;

my $key = sha256_hex('sk-t');
my $file = qq({"version":"file","namespaces":[{"code":"a","api_keys":["$key"]}]});
my %cases = (
    trusted   => { trust => 1, pw => 'redis.pw' },
    untrusted => { trust => 0, pw => 'redis.pw' },
    wrongpw   => { trust => 1, pw => 'wrong.pw' },
);
my $i = 0;
for my $name (sort keys %cases) {
    my $c = $cases{$name};
    my $n = { name => $name, port => $base + (++$i), dir => "$dir/$name" };
    my $env = $c->{trust} ? "env SSL_CERT_FILE=$dir/cert.pem;\n" : '';
    write_conf($n->{dir}, <<"_EOC_");
${\ main_conf($module, 1) }
$env
http {
    access_log off;
    ai_gateway_config gw.json;
    ai_gateway_redis rediss://127.0.0.1:$rport prefix=$P timeout=500ms password_file=$dir/$c->{pw};
    ai_gateway_config_source redis poll=1s node=$name;
    server {
        listen 127.0.0.1:$n->{port};
        location /v1/ { ai_gateway on; ai_gateway_mock_provider; }
        location = /status { ai_gateway_config_status; }
    }
}
_EOC_
    open my $fh, '>', "$n->{dir}/conf/gw.json" or die;
    print $fh $file;
    close $fh;
    is(system($nginx, '-p', "$n->{dir}/", '-c', 'conf/nginx.conf'), 0, "$name started");
    $n->{pid} = wait_pid("$n->{dir}/logs/nginx.pid");
    ok(wait_port($n->{port}), "$name listens");
    $cases{$name}{node} = $n;
    push @nodes, $n;
}

sub status {
    my $port = shift;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or return '';
    print $s "GET /status HTTP/1.0\r\n\r\n";
    local $/;
    my $r = <$s> // '';
    return $r;
}

# publish version 1: namespace "b" besides "a"
my $doc = qq({"version":"v1","namespaces":[{"code":"a","api_keys":["$key"]},{"code":"b"}]});
my $docfile = "$dir/v1.json";
open my $d, '>', $docfile or die;
print $d $doc;
close $d;
my $sha = sha256_hex($doc);
is(cli("-x SET $P:cfg:snap:1 < $docfile"), 'OK', 'snapshot 1 stored over TLS');
is(cli("SET $P:cfg:head '{\"version\":1,\"sha256\":\"$sha\",\"epoch\":\"e\"}'"), 'OK', 'head set');
cli("PUBLISH $P:cfg:notify 1");

my $t = $cases{trusted}{node};
my $st = '';
for (1 .. 40) { $st = status($t->{port}); last if $st =~ /"source":"redis","version":1\}/; sleep 0.1 }
like($st, qr/"applied":\{"epoch":"e","label":"1","sha256":"$sha","source":"redis","version":1\}/,
    'the node that trusts the CA applies snapshot 1 over TLS, authenticated from the password file');
like($st, qr/"current":true/, '... and reads the live head');

my $u = $cases{untrusted}{node};
for (1 .. 20) { $st = status($u->{port}); last if $st =~ /"last_error":\{/; sleep 0.1 }
like($st, qr/"source":"file"/, 'the node that does not trust the certificate keeps its file');
like($st, qr/"reason":"unreachable"/, '... and reports Redis unreachable');
like($st, qr/certificate/i, '... because of the certificate');
like(slurp("$u->{dir}/logs/error.log"), qr/\[warn\] .*Redis 127\.0\.0\.1:$rport \(TLS\) unreachable/,
    '... with one warning in the log');

my $w = $cases{wrongpw}{node};
for (1 .. 20) { $st = status($w->{port}); last if $st =~ /"last_error":\{/; sleep 0.1 }
like($st, qr/"source":"file".*"reason":"unreachable"/s, 'a wrong password: the file is served, the error reported');
for my $n (@nodes) {
    my $log = slurp("$n->{dir}/logs/error.log");
    unlike($log . status($n->{port}), qr/pw-t122|not-the-password/, "$n->{name}: no password in the log or the status");
    my @errors = grep { /\[(error|alert|emerg|crit)\]/ } split /\n/, $log;
    is(scalar @errors, 0, "$n->{name}: no error in the log") or diag(join "\n", @errors);
}

done_testing();
