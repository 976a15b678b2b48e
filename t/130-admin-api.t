# The config center's admin REST API on one node (nginx with 2 workers), against the real
# MariaDB (a database of this test's own, dropped at the end) and a private redis-server:
# logging in and out, every resource's CRUD, one revision and one audit row per write (none
# for a no-op or a dry run), rollback and diff, If-Match, the three roles with sessions and
# API tokens, CSRF, login lockout and the per-address limit, bad input (nothing half
# written), a key made through the API working on the gateway port, and no secret in the
# error log, the API's answers or MySQL.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use POSIX ();
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use Digest::SHA qw(sha256_hex);
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
plan skip_all => 'MariaDB does not answer on 127.0.0.1:' . mysql_port() . ' (make mariadb starts one)'
    unless eval { sql('', 'SELECT 1'); 1 };

# a server that answers before it read the whole request (413) must not kill the test
$SIG{PIPE} = 'IGNORE';

my $root     = abs_path(dirname(__FILE__) . '/..');
my $servroot = $ENV{TEST_NGINX_SERVROOT} || "$root/t/servroot";
my $dir      = "$servroot-admin-api";
my $base     = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 130;
my ($aport, $gport, $rport) = ($base, $base + 1, $base + 9);
my $db       = "aigw_t130_$$";
my $P        = "t130-$$";
my $bootstrap_pw = 'bootstrap-' . unpack('H*', pack('N2', $$, int(time * 1000) % 4e9));
# a provider key the nodes (and the config center, which loads what it accepts) read from
# their environment
my $env_secret = "sk-env-t130-$$-QRS7";
$ENV{AIGW_T130_ENV_KEY} = $env_secret;

my ($redis_pid, $nginx_pid, $db_made);
END {
    local $?;
    stop($nginx_pid) if $nginx_pid;
    if ($redis_pid) { kill 'KILL', $redis_pid; waitpid($redis_pid, 0) }
    drop_db($db) if $db_made;
}

# the node
write_conf($dir, <<"_EOC_");
${\ main_conf($module, 2) }
env AIGW_T130_ENV_KEY;
http {
    access_log logs/access.log;
    ai_gateway_secret_key secret.key;
    ai_gateway_config gw.json;
    ai_gateway_redis redis://127.0.0.1:$rport prefix=$P timeout=500ms;
    ai_gateway_config_source redis poll=1s heartbeat=1s node=n1;
    ai_gateway_mysql mysql://root\@127.0.0.1:${\ mysql_port() }/$db timeout=2s;
    ai_gateway_admin_bootstrap file=admin.pw;
    ai_gateway_limit_zone lz 1m;
    server {
        listen 127.0.0.1:$aport;
        location /api/ { client_max_body_size 64k; ai_gateway_admin; }
    }
    server {
        listen 127.0.0.1:$gport;
        location /v1/ { ai_gateway on; ai_gateway_mock_provider; }
    }
}
_EOC_
sub put_file {
    my ($name, $text, $mode) = @_;
    open my $fh, '>', "$dir/conf/$name" or die "$name: $!";
    print $fh $text;
    close $fh;
    chmod $mode, "$dir/conf/$name" if defined $mode;
}
{
    open my $r, '<', '/dev/urandom' or die $!;
    read $r, my $bytes, 32;
    put_file('secret.key', unpack('H*', $bytes) . "\n", 0600);
}
put_file('gw.json', '{}');
put_file('admin.pw', "$bootstrap_pw\n", 0600);

create_db($db);
$db_made = 1;
$redis_pid = start_redis($rport, $dir);
is(system($nginx, '-p', "$dir/", '-c', 'conf/nginx.conf'), 0, 'nginx started');
$nginx_pid = wait_pid("$dir/logs/nginx.pid");
ok(wait_port($aport) && wait_port($gport), 'both servers listen');
{
    my $users = 0;
    for (1 .. 100) {
        $users = eval { (sql($db, 'SELECT COUNT(*) FROM admin_users') =~ /(\d+)/)[0] } // 0;
        last if $users;
        sleep 0.1;
    }
    is($users, 1, 'the schema is migrated and the bootstrap admin created');
}

# ---------------------------------------------------------------------------------------
# helpers

my $S;          # the bootstrap admin's session
my @answers;    # every answer's body (the secrets scan at the end)

sub call {
    my ($method, $path, %o) = @_;
    my $auth = exists $o{auth} ? delete $o{auth} : $S;
    my $r = api_call($aport, $method, $path, auth => $auth, %o);
    push @answers, $r->{body};
    return $r;
}

# (revisions, audit rows, head version)
sub counts {
    my ($row) = sql_rows($db, 'SELECT (SELECT COUNT(*) FROM config_revisions),
        (SELECT COUNT(*) FROM audit_logs), (SELECT version FROM config_head WHERE id = 1)');
    return @$row;
}

# Every row of the configuration's tables and the head, as text.
sub dump_config {
    return sql($db, join ' ', map { "SELECT * FROM $_ ORDER BY 1;" }
        qw(config_head settings namespaces api_keys matchers policies targets routes config_revisions));
}

# Whether two dumps are the same (else the first lines that differ, as a diagnostic).
sub same_rows {
    my ($before, $after, $name) = @_;
    return pass("$name: no row changed") if $before eq $after;
    my @a = split /\n/, $before;
    my @b = split /\n/, $after;
    my $i = 0;
    $i++ while $i < @a && $i < @b && $a[$i] eq $b[$i];
    fail("$name: no row changed");
    diag('before: ' . substr($a[$i] // '(none)', 0, 300) . "\nafter:  " . substr($b[$i] // '(none)', 0, 300));
}

sub last_audit {
    my ($row) = sql_rows($db, 'SELECT action, resource, version, actor FROM audit_logs ORDER BY id DESC LIMIT 1');
    return $row;
}

sub err_of { my $r = shift; return ($r->{json} && ref $r->{json}{error} eq 'HASH') ? $r->{json}{error} : {} }

sub is_json_error {
    my ($r, $status, $code, $name) = @_;
    my $e = err_of($r);
    is($r->{status}, $status, "$name: $status") or diag($r->{body});
    like($r->{headers}{'content-type'} // '', qr{^application/json}, "$name: JSON");
    is($e->{code}, $code, "$name: code $code") if defined $code;
    ok(defined $e->{message} && ref $e->{details} eq 'ARRAY', "$name: {code, message, details}");
    return $e;
}

# A write that changes the configuration: its status, one revision and one audit row, the
# version up by one, the answer's version and header.
sub write_ok {
    my ($name, $method, $path, $body, %o) = @_;
    my $want = delete $o{status} // ($method eq 'POST' ? 201 : 200);
    my ($rev0, $aud0, $v0) = counts();
    my $r = call($method, $path, (defined $body ? (body => $body) : ()), %o);
    is($r->{status}, $want, "$name: $want") or diag($r->{body});
    my ($rev1, $aud1, $v1) = counts();
    is_deeply([$rev1 - $rev0, $aud1 - $aud0, $v1 - $v0], [1, 1, 1],
        "$name: one revision, one audit row, version + 1");
    my $j = $r->{json} || {};
    ok($j->{changed} && !$j->{dry_run} && $j->{published}, "$name: changed, not a dry run, published");
    is($j->{config_version}, $v1, "$name: the answer says version $v1");
    is($r->{headers}{'x-config-version'}, $v1, "$name: X-Config-Version $v1");
    my $a = last_audit();
    is($a->[2], $v1, "$name: the audit row names version $v1");
    return $r;
}

# A write that changes nothing: 200, changed false, no revision, no audit row.
sub write_noop {
    my ($name, $method, $path, $body, %o) = @_;
    my ($rev0, $aud0, $v0) = counts();
    my $before = dump_config();
    my $r = call($method, $path, (defined $body ? (body => $body) : ()), %o);
    is($r->{status}, 200, "$name: 200") or diag($r->{body});
    ok($r->{json} && !$r->{json}{changed}, "$name: changed false");
    is($r->{json} && $r->{json}{config_version}, $v0, "$name: the version stays $v0");
    is_deeply([counts()], [$rev0, $aud0, $v0], "$name: no revision, no audit row");
    same_rows($before, dump_config(), $name);
    return $r;
}

# A write that fails: the status and error code, the detail's path, and nothing written.
sub write_fails {
    my ($name, $method, $path, $body, $status, $code, $detail_path, %o) = @_;
    my @c0 = counts();
    my $before = dump_config();
    my $r = call($method, $path, (defined $body ? (body => $body) : ()), %o);
    my $e = is_json_error($r, $status, $code, $name);
    if (defined $detail_path) {
        my @paths = map { $_->{path} } @{ $e->{details} || [] };
        ok((grep { $_ eq $detail_path } @paths), "$name: names the path \"$detail_path\"")
            or diag("paths: @paths; $r->{body}");
    }
    is_deeply([counts()], \@c0, "$name: no revision, no audit row");
    same_rows($before, dump_config(), $name);
    return $r;
}

# (status, body) of a chat completion on the gateway port.
sub chat {
    my ($key, $model) = @_;
    my $body = '{"model":"' . ($model // 'gpt-4o') . '","messages":[{"role":"user","content":"hi"}]}';
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $gport, Timeout => 5)
        or return (0, "connect: $!");
    print $s "POST /v1/chat/completions HTTP/1.0\r\nHost: gw\r\nAuthorization: Bearer $key\r\n"
        . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    local $/;
    my $resp = <$s> // '';
    my ($status) = $resp =~ m{\AHTTP/1\.\d (\d+)};
    my ($rest) = $resp =~ m{\r\n\r\n(.*)\z}s;
    return ($status // 0, $rest // '');
}

# a document without its version (what a rollback restores)
sub doc_of_revision {
    my $v = shift;
    my $r = call('GET', "/api/v1/config/revisions/$v");
    my $d = $r->{json} ? $r->{json}{document} : undef;
    delete $d->{version} if ref $d eq 'HASH';
    return $d;
}

my $true  = JSON::PP::true();
my $false = JSON::PP::false();

# ---------------------------------------------------------------------------------------
# 1. logging in and out

{
    my $r = call('POST', '/api/v1/auth/login', auth => undef,
        body => { username => 'admin', password => 'not the password' });
    is_json_error($r, 401, 'invalid_credentials', 'a wrong password');
    ok(!$r->{headers}{'set-cookie'}, 'a wrong password: no cookie');

    $r = call('POST', '/api/v1/auth/login', auth => undef,
        body => { username => 'nobody', password => $bootstrap_pw });
    is_json_error($r, 401, 'invalid_credentials', 'an unknown user (same answer)');

    $r = call('GET', '/api/v1/namespaces', auth => undef);
    is_json_error($r, 401, 'unauthenticated', 'no credential');
    $r = call('GET', '/api/v1/namespaces', auth => 'aigw_not-a-token');
    is_json_error($r, 401, 'invalid_token', 'an unknown API token');
    $r = call('GET', '/api/v1/namespaces', auth => { cookie => 'aigw_session=forged' });
    is_json_error($r, 401, undef, 'a forged session cookie');

    $r = call('POST', '/api/v1/auth/login', auth => undef,
        body => { username => 'admin', password => $bootstrap_pw });
    is($r->{status}, 200, 'the bootstrap admin logs in');
    my $cookie = $r->{headers}{'set-cookie'} // '';
    like($cookie, qr/^aigw_session=[^;]+;/, 'a session cookie');
    like($cookie, qr/HttpOnly/, 'HttpOnly');
    like($cookie, qr/SameSite=Strict/, 'SameSite=Strict');
    is($r->{json}{role}, 'admin', 'role admin');
    ok(length($r->{json}{csrf_token} // '') >= 20, 'a CSRF token');
    is($r->{headers}{'cache-control'}, 'no-store', 'the login answer is not cached');
    my ($c) = $cookie =~ /^(aigw_session=[^;]+)/;
    $S = { cookie => $c, csrf => $r->{json}{csrf_token} };

    $r = call('GET', '/api/v1/auth/me');
    is($r->{status}, 200, '/auth/me');
    is_deeply([@{ $r->{json} }{qw(user role via csrf_token)}], ['admin', 'admin', 'session', $S->{csrf}],
        '/auth/me: who, role, how, the CSRF token');

    my ($n) = sql_rows($db, "SELECT failed_logins FROM admin_users WHERE username = 'admin'");
    is($n->[0], 0, 'a successful login resets the failed logins');

    # a second session, logged out
    my $other = api_login($aport, 'admin', $bootstrap_pw);
    ok($other && $other->{cookie} && $other->{cookie} ne $S->{cookie}, 'a second session');
    is(call('GET', '/api/v1/auth/me', auth => $other)->{status}, 200, 'it works');
    my ($sessions) = sql_rows($db, 'SELECT COUNT(*) FROM admin_sessions');
    $r = call('POST', '/api/v1/auth/logout', auth => $other);
    is($r->{status}, 200, 'logout');
    like($r->{headers}{'set-cookie'} // '', qr/aigw_session=;.*Max-Age=0/, 'logout clears the cookie');
    my ($after) = sql_rows($db, 'SELECT COUNT(*) FROM admin_sessions');
    is($after->[0], $sessions->[0] - 1, 'the session row is gone');
    is_json_error(call('GET', '/api/v1/auth/me', auth => $other), 401, 'session_expired',
        'the logged-out cookie');
    is(call('GET', '/api/v1/auth/me')->{status}, 200, 'the first session still works');

    my @actions = map { $_->[0] } sql_rows($db, 'SELECT action FROM audit_logs ORDER BY id');
    is_deeply([grep { /^auth\./ } @actions],
        [qw(auth.login_failed auth.login_failed auth.login auth.login auth.logout)],
        'logins, failures and the logout are in the audit log');

    $r = call('GET', '/api/v1/openapi.json', auth => undef);
    is($r->{status}, 200, 'openapi.json needs no login');
    like($r->{json}{openapi} // '', qr/^3\.1/, 'OpenAPI 3.1');
}

# ---------------------------------------------------------------------------------------
# 2-3. every resource, one revision and one audit row per write

my %secret;    # plaintext => the index in @answers of the one answer allowed to show it
my $provider_secret = 'sk-provider-' . unpack('H*', pack('N', $$)) . 'XYZ9';

# namespaces
{
    my $r = write_ok('create namespace team-a', 'POST', '/api/v1/namespaces',
        { code => 'team-a', name => 'Team A', description => 'first' });
    is($r->{headers}{location}, '/api/v1/namespaces/team-a', 'Location');
    is_deeply([@{ $r->{json}{data} }{qw(code name description status key_count)}],
        ['team-a', 'Team A', 'first', 'enabled', 0], 'the created namespace');
    my $created_etag = $r->{headers}{etag};
    is_deeply(last_audit(), ['namespace.create', 'namespaces/team-a', (counts())[2], 'admin'],
        'the audit row: action, resource, version, actor');
    my ($row) = sql_rows($db, "SELECT code, name, description, enabled FROM namespaces WHERE code = 'team-a'");
    is_deeply($row, ['team-a', 'Team A', 'first', 1], 'the namespaces row');

    write_ok('create namespace team-b', 'POST', '/api/v1/namespaces', { code => 'team-b' });
    write_ok('create namespace team-c', 'POST', '/api/v1/namespaces', { code => 'team-c', name => 'Gamma' });

    $r = call('GET', '/api/v1/namespaces/team-a');
    is($r->{status}, 200, 'GET a namespace');
    is($r->{json}{name}, 'Team A', 'its name');
    is($r->{headers}{etag}, $created_etag, 'its ETag is the one the create answered');
    ok($r->{headers}{'x-config-version'}, 'X-Config-Version on a read');

    # pagination
    my (@codes, $cursor, $pages);
    do {
        $r = call('GET', '/api/v1/namespaces?limit=1' . (defined $cursor ? "&cursor=$cursor" : ''));
        is($r->{status}, 200, 'a page of namespaces') or last;
        is(scalar @{ $r->{json}{items} }, 1, 'one item a page');
        push @codes, map { $_->{code} } @{ $r->{json}{items} };
        $cursor = $r->{json}{next_cursor};
        $pages++;
    } while (defined $cursor && $pages < 10);
    is_deeply(\@codes, [qw(team-a team-b team-c)], 'three pages of one, in code order, then no cursor');
    $r = call('GET', '/api/v1/namespaces');
    is_deeply([map { $_->{code} } @{ $r->{json}{items} }], [qw(team-a team-b team-c)], 'the whole list');
    ok(!defined $r->{json}{next_cursor}, 'no next_cursor on the last page');
    is_json_error(call('GET', '/api/v1/namespaces?limit=0'), 400, 'validation_failed', 'limit=0');
    is_json_error(call('GET', '/api/v1/namespaces?cursor=%21%21'), 400, 'validation_failed', 'a bad cursor');

    # search
    $r = call('GET', '/api/v1/namespaces?q=team-b');
    is_deeply([map { $_->{code} } @{ $r->{json}{items} }], ['team-b'], '?q= by code');
    $r = call('GET', '/api/v1/namespaces?q=gAMMA');
    is_deeply([map { $_->{code} } @{ $r->{json}{items} }], ['team-c'], '?q= by name, any case');
    $r = call('GET', '/api/v1/namespaces?q=nothing-like-it');
    is_deeply($r->{json}{items}, [], '?q= without a match');

    # PUT, PATCH, no-op, DELETE
    $r = write_ok('PUT namespace team-c', 'PUT', '/api/v1/namespaces/team-c',
        { name => 'Gamma', description => 'third', status => 'disabled' });
    is_deeply([@{ $r->{json}{data} }{qw(name description status)}], ['Gamma', 'third', 'disabled'], 'replaced');
    ($row) = sql_rows($db, "SELECT enabled, description FROM namespaces WHERE code = 'team-c'");
    is_deeply($row, [0, 'third'], 'the row says disabled');
    write_noop('the same PUT again', 'PUT', '/api/v1/namespaces/team-c',
        { name => 'Gamma', description => 'third', status => 'disabled' });
    $r = write_ok('PATCH namespace team-c', 'PATCH', '/api/v1/namespaces/team-c', { description => undef });
    is_deeply([@{ $r->{json}{data} }{qw(name description status)}], ['Gamma', undef, 'disabled'],
        'PATCH removes what is null, keeps the rest');
    write_noop('the same PATCH again', 'PATCH', '/api/v1/namespaces/team-c', { description => undef });
    my $view = call('GET', '/api/v1/namespaces/team-a')->{json};
    write_noop('PUT back what GET shows', 'PUT', '/api/v1/namespaces/team-a', $view);
    write_noop('PATCH with what GET shows', 'PATCH', '/api/v1/namespaces/team-a', $view);

    # text beyond ASCII (JSON escapes, a character outside the BMP) is stored as it is
    $r = write_ok('a name beyond ASCII', 'POST', '/api/v1/namespaces', '{"code":"utf","name":"caf\u00e9 \ud83d\ude00"}');
    is($r->{json}{data}{name}, "caf\x{e9} \x{1F600}", 'answered as sent');
    is(call('GET', '/api/v1/namespaces/utf')->{json}{name}, "caf\x{e9} \x{1F600}", 'read back');
    ($row) = sql_rows($db, "SELECT HEX(name) FROM namespaces WHERE code = 'utf'");
    is($row->[0], uc unpack('H*', "caf\xc3\xa9 \xf0\x9f\x98\x80"), 'stored as UTF-8 (utf8mb4)');
    write_ok('DELETE it', 'DELETE', '/api/v1/namespaces/utf');
    $r = call('GET', '/api/v1/namespaces?status=disabled');
    is_deeply([map { $_->{code} } @{ $r->{json}{items} }], ['team-c'], '?status=disabled');
    write_ok('DELETE namespace team-c', 'DELETE', '/api/v1/namespaces/team-c');
    is_json_error(call('GET', '/api/v1/namespaces/team-c'), 404, 'not_found', 'the deleted namespace');
    ($row) = sql_rows($db, "SELECT COUNT(*) FROM namespaces WHERE code = 'team-c'");
    is($row->[0], 0, 'its row is gone');
    write_fails('DELETE it again', 'DELETE', '/api/v1/namespaces/team-c', undef, 404, 'not_found');

    # dry run
    my @c0 = counts();
    $r = call('POST', '/api/v1/namespaces?dry_run=true', body => { code => 'dry' });
    is($r->{status}, 201, 'a dry-run create answers what would happen (201)');
    ok($r->{json}{dry_run} && $r->{json}{changed} && !$r->{json}{published}, 'dry_run, changed, not published');
    is($r->{json}{config_version}, $c0[2] + 1, 'the version it would make');
    is($r->{json}{data}{code}, 'dry', 'the namespace it would make');
    is_deeply([counts()], \@c0, 'a dry run writes no revision, no audit row');
    is_json_error(call('GET', '/api/v1/namespaces/dry'), 404, 'not_found', 'no namespace made by the dry run');
    $r = call('POST', '/api/v1/namespaces?dry_run=true', body => { code => 'team-a' });
    is($r->{status}, 409, 'a dry run finds the conflict');
}

# keys
my ($key_a, $key_a_id, $imported_id, $rotated_plain, $rotated_id);
{
    my $r = write_ok('generate a key', 'POST', '/api/v1/namespaces/team-a/keys', { name => 'ci' });
    my $d = $r->{json}{data};
    my $gen_etag = $r->{headers}{etag};
    $key_a = $d->{key} // '';
    $secret{$key_a} = $#answers;
    like($key_a, qr/^sk-gw-[A-Za-z0-9_-]{40,}$/, 'the plaintext key, once');
    is($d->{sha256}, sha256_hex($key_a), 'its sha256');
    $key_a_id = $d->{id};
    is($key_a_id, substr(sha256_hex($key_a), 0, 12), 'its id: the first 12 hex digits of the hash');
    is($d->{prefix}, substr($key_a, 0, 10), 'its display prefix');
    is($r->{headers}{'cache-control'}, 'no-store', 'the answer with a plaintext key is not cached');
    is($r->{headers}{location}, "/api/v1/namespaces/team-a/keys/$key_a_id", 'Location');
    my ($row) = sql_rows($db, "SELECT sha256, prefix, enabled FROM api_keys WHERE id = '$key_a_id'");
    is_deeply($row, [sha256_hex($key_a), substr($key_a, 0, 10), 1], 'the api_keys row: hash and prefix');

    $r = call('GET', "/api/v1/namespaces/team-a/keys/$key_a_id");
    is($r->{status}, 200, 'GET the key');
    ok(!exists $r->{json}{key}, 'no plaintext in GET');
    is($r->{json}{status}, 'active', 'active');
    is($r->{headers}{etag}, $gen_etag, 'its ETag is the one the generating answer had');

    $r = write_ok('import a key hash', 'POST', '/api/v1/namespaces/team-a/keys',
        { sha256 => sha256_hex('sk-imported-one'), name => 'imported', prefix => 'sk-imp' });
    ok(!exists $r->{json}{data}{key}, 'an imported key has no plaintext in the answer');
    $imported_id = $r->{json}{data}{id};
    is(last_audit()->[0], 'key.import', 'audit action key.import');
    write_fails('the same hash again', 'POST', '/api/v1/namespaces/team-a/keys',
        { sha256 => sha256_hex('sk-imported-one') }, 409, 'conflict', 'sha256');
    write_fails('a hash that is not one', 'POST', '/api/v1/namespaces/team-a/keys',
        { sha256 => 'sk-plaintext' }, 400, 'validation_failed', 'sha256');

    $r = write_ok('disable the imported key', 'PATCH', "/api/v1/namespaces/team-a/keys/$imported_id",
        { enabled => $false });
    is($r->{json}{data}{status}, 'disabled', 'disabled');
    my $doc = call('GET', '/api/v1/config')->{json};
    my ($ns) = grep { $_->{code} eq 'team-a' } @{ $doc->{namespaces} || [] };
    my @hashes = map { ref $_ ? $_->{sha256} : $_ } @{ $ns->{api_keys} || [] };
    ok(!(grep { $_ eq sha256_hex('sk-imported-one') } @hashes), 'a disabled key is not in the document');
    ok((grep { $_ eq sha256_hex($key_a) } @hashes), 'the enabled one is');
    write_noop('disable it again', 'PATCH', "/api/v1/namespaces/team-a/keys/$imported_id", { enabled => $false });

    $r = write_ok('give it an expiry', 'PATCH', "/api/v1/namespaces/team-a/keys/$imported_id",
        { expires_at => '2099-01-01T00:00:00Z' });
    is($r->{json}{data}{expires_at}, '2099-01-01T00:00:00Z', 'the expiry');
    ($row) = sql_rows($db, "SELECT expires_at FROM api_keys WHERE id = '$imported_id'");
    is($row->[0], 4070908800000, 'stored as unix ms');
    $r = write_ok('rename it', 'PATCH', "/api/v1/namespaces/team-a/keys/$imported_id", { name => 'renamed' });
    is_deeply([@{ $r->{json}{data} }{qw(name expires_at enabled)}], ['renamed', '2099-01-01T00:00:00Z', $false],
        'a rename keeps the expiry and the state');
    write_fails('an expiry in the past', 'PATCH', "/api/v1/namespaces/team-a/keys/$imported_id",
        { expires_at => '2001-01-01T00:00:00Z' }, 400, 'validation_failed', 'expires_at');
    write_fails('an expiry that is no time', 'PATCH', "/api/v1/namespaces/team-a/keys/$imported_id",
        { expires_at => 'tomorrow' }, 400, 'validation_failed', 'expires_at');
    write_fails('PATCH an unknown field', 'PATCH', "/api/v1/namespaces/team-a/keys/$imported_id",
        { sha256 => sha256_hex('x') }, 400, 'validation_failed', 'sha256');

    # rotate with a grace period
    my $old = write_ok('a key to rotate', 'POST', '/api/v1/namespaces/team-a/keys', { name => 'rot' });
    my $old_plain = $old->{json}{data}{key};
    $secret{$old_plain} = $#answers;
    my $old_id = $old->{json}{data}{id};
    my $t0 = time;
    $r = write_ok('rotate it with grace 1h', 'POST', "/api/v1/namespaces/team-a/keys/$old_id/rotate",
        { grace => '1h' });
    $d = $r->{json}{data} || {};
    $rotated_plain = $d->{key} // '';
    $secret{$rotated_plain} = $#answers;
    like($rotated_plain, qr/^sk-gw-/, 'the new plaintext, once');
    $rotated_id = $d->{new}{id};
    is($d->{new}{sha256}, sha256_hex($rotated_plain), 'the new key\'s hash');
    is($d->{old}{rotated_to}, $rotated_id, 'the old key points at the new one');
    is($r->{headers}{location}, "/api/v1/namespaces/team-a/keys/$rotated_id", 'Location: the new key');
    ($row) = sql_rows($db, "SELECT expires_at, rotated_to FROM api_keys WHERE id = '$old_id'");
    ok(abs($row->[0] / 1000 - ($t0 + 3600)) < 10, 'the old key expires in an hour');
    is($row->[1], $rotated_id, 'rotated_to stored');
    $r = call('GET', '/api/v1/namespaces/team-a/keys');
    my %listed = map { $_->{id} => $_ } @{ $r->{json}{items} || [] };
    ok($listed{$old_id} && $listed{$rotated_id}, 'both keys listed');
    ok($listed{$old_id}{expires_at} && !$listed{$rotated_id}{expires_at}, 'the old one has expires_at, the new one none');
    is($listed{$old_id}{status}, 'active', 'the old one works during the grace period');
    unlike($r->{body}, qr/\Q$old_plain\E|\Q$rotated_plain\E|\Q$key_a\E/, 'no plaintext in the list');
    write_fails('a grace of 31 days', 'POST', "/api/v1/namespaces/team-a/keys/$rotated_id/rotate",
        { grace => '31d' }, 400, 'validation_failed', 'grace');

    $r = write_ok('generate a key with an expiry', 'POST', '/api/v1/namespaces/team-b/keys',
        { name => 'exp', expires_at => 4102444800 });
    $secret{ $r->{json}{data}{key} // '' } = $#answers;
    is($r->{json}{data}{expires_at}, '2100-01-01T00:00:00Z', 'unix seconds, shown as RFC 3339');
    my $doc2 = call('GET', '/api/v1/config')->{json};
    my ($nsb) = grep { $_->{code} eq 'team-b' } @{ $doc2->{namespaces} || [] };
    is_deeply($nsb->{api_keys}, [{ name => 'exp', sha256 => $r->{json}{data}{sha256}, expires_at => '2100-01-01T00:00:00Z' }],
        'the document carries the expiry (every node stops the key on time)');
    write_ok('delete it', 'DELETE', "/api/v1/namespaces/team-b/keys/$r->{json}{data}{id}");
    write_fails('a key that expired already', 'POST', '/api/v1/namespaces/team-b/keys',
        { expires_at => '2001-01-01T00:00:00Z' }, 400, 'validation_failed', 'expires_at');
    write_ok('delete the rotated-out key', 'DELETE', "/api/v1/namespaces/team-a/keys/$old_id");
    is_json_error(call('GET', "/api/v1/namespaces/team-a/keys/$old_id"), 404, 'not_found', 'the deleted key');
    write_fails('a key of a missing namespace', 'POST', '/api/v1/namespaces/nope/keys', {}, 404, 'not_found');
}

# matchers
{
    my $m1 = write_ok('create a matcher', 'POST', '/api/v1/namespaces/team-a/matchers',
        { type => 'header', field => 'X-Team', operator => 'equals', value => 'a', priority => 10 });
    my $id1 = $m1->{json}{data}{id};
    is($m1->{json}{data}{position}, 0, 'position 0');
    my $m2 = write_ok('create a matcher at the front', 'POST', '/api/v1/namespaces/team-a/matchers',
        { type => 'query', field => 'team', operator => 'starts_with', value => 'a', position => 0 });
    my $id2 = $m2->{json}{data}{id};
    my $r = call('GET', '/api/v1/namespaces/team-a/matchers');
    is_deeply([map { [$_->{id}, $_->{position}] } @{ $r->{json}{items} }], [[$id2, 0], [$id1, 1]],
        'listed in their order');
    my @rows = sql_rows($db, "SELECT id, position FROM matchers WHERE namespace = 'team-a' ORDER BY position");
    is_deeply(\@rows, [[$id2, 0], [$id1, 1]], 'the rows\' positions');
    $r = write_ok('PUT a matcher', 'PUT', "/api/v1/namespaces/team-a/matchers/$id1",
        { type => 'header', field => 'X-Team', operator => 'regex', value => '^a$', priority => 10 });
    is($r->{json}{data}{operator}, 'regex', 'replaced');
    $r = write_ok('PATCH a matcher', 'PATCH', "/api/v1/namespaces/team-a/matchers/$id1", { priority => 5 });
    is_deeply([@{ $r->{json}{data} }{qw(operator priority position)}], ['regex', 5, 1], 'patched');
    write_noop('the same PATCH again', 'PATCH', "/api/v1/namespaces/team-a/matchers/$id1", { priority => 5 });
    write_fails('an unknown operator', 'PATCH', "/api/v1/namespaces/team-a/matchers/$id1",
        { operator => 'like' }, 400, 'validation_failed', 'operator');
    write_fails('a regex that does not compile', 'POST', '/api/v1/namespaces/team-a/matchers',
        { type => 'header', field => 'X', operator => 'regex', value => '(' }, 400, 'validation_failed', 'value');
    write_ok('DELETE a matcher', 'DELETE', "/api/v1/namespaces/team-a/matchers/$id2");
    $r = call('GET', "/api/v1/namespaces/team-a/matchers/$id1");
    is($r->{json}{position}, 0, 'the other moved up');
    is_json_error(call('GET', "/api/v1/namespaces/team-a/matchers/$id2"), 404, 'not_found', 'the deleted matcher');
}

# policies: every type of README "Policies"
my ($v_policies_before, $v_policies_after, $requests_policy);
{
    my @policies = (
        { type => 'requests', limit => 60, window => '1m' },
        { type => 'tokens', limit => 100000, window => '1m', reserve_output => 100 },
        { type => 'quota', limit => 2000000, period => 'day' },
        { type => 'quota', limit => 10000, period => 'month', unit => 'requests' },
        { type => 'concurrency', limit => 10 },
        { type => 'input_tokens', max => 32000 },
        { type => 'output_tokens', max => 4096, action => 'clamp' },
        { type => 'models', allow => ['gpt-4o*', 'claude-*'] },
        { type => 'message', source => 'header', field => 'X-Env', operator => 'equals', value => 'prod',
          action => 'allow' },
        { type => 'requests', limit => 5, window => '1s', models => ['gpt-4.1*'], per_model => $true,
          name => 'gpt-4.1-burst', dry_run => $true },
    );
    my @ids;
    for my $p (@policies) {
        my $r = write_ok("create a $p->{type} policy", 'POST', '/api/v1/namespaces/team-b/policies', $p);
        push @ids, $r->{json}{data}{id};
        my %shown = %{ $r->{json}{data} || {} };
        delete @shown{qw(id namespace position created_at updated_at)};
        is_deeply(\%shown, $p, "the $p->{type} policy as sent");
    }
    $requests_policy = $ids[0];
    my $r = call('GET', '/api/v1/namespaces/team-b/policies');
    is_deeply([map { $_->{type} } @{ $r->{json}{items} }], [map { $_->{type} } @policies], 'all ten listed in order');
    my $doc = call('GET', '/api/v1/config')->{json};
    my ($ns) = grep { $_->{code} eq 'team-b' } @{ $doc->{namespaces} || [] };
    is_deeply($ns->{policies}, \@policies, 'the document has them as sent');
    my ($n) = sql_rows($db, "SELECT COUNT(*) FROM policies WHERE namespace = 'team-b'");
    is($n->[0], 10, 'ten policy rows');

    $v_policies_before = (counts())[2];
    $r = write_ok('PATCH a policy\'s limit', 'PATCH', "/api/v1/namespaces/team-b/policies/$ids[0]", { limit => 120 });
    $v_policies_after = (counts())[2];
    is($r->{json}{data}{limit}, 120, 'the new limit');
    write_fails('a limit that is no number', 'PATCH', "/api/v1/namespaces/team-b/policies/$ids[0]",
        { limit => 'many' }, 400, 'validation_failed', 'limit');
    write_fails('an unknown policy type', 'POST', '/api/v1/namespaces/team-b/policies',
        { type => 'colour', limit => 1 }, 400, 'validation_failed', 'type');
    write_fails('a policy on a missing namespace', 'POST', '/api/v1/namespaces/nope/policies',
        { type => 'requests', limit => 1, window => '1m' }, 404, 'not_found');
    write_fails('a second policy with the same name', 'POST', '/api/v1/namespaces/team-b/policies',
        { type => 'requests', limit => 7, window => '1s', name => 'gpt-4.1-burst' }, 400, 'validation_failed');
    write_ok('DELETE a policy', 'DELETE', "/api/v1/namespaces/team-b/policies/$ids[-1]");
    ($n) = sql_rows($db, "SELECT COUNT(*) FROM policies WHERE namespace = 'team-b'");
    is($n->[0], 9, 'nine policy rows');
}

# diff between the two versions around the PATCH of the limit
{
    my $r = call('GET', "/api/v1/config/diff?from=$v_policies_before&to=$v_policies_after");
    is($r->{status}, 200, 'GET /config/diff');
    is_deeply($r->{json}{changes}, [{ path => 'namespaces[team-b].policies[0].limit', op => 'changed',
        from => 60, to => 120 }], 'the diff names the one change by path');
    $r = call('GET', "/api/v1/config/diff?from=$v_policies_after&to=$v_policies_before");
    is_deeply([map { [$_->{path}, $_->{from}, $_->{to}] } @{ $r->{json}{changes} }],
        [['namespaces[team-b].policies[0].limit', 120, 60]], 'and backwards');
    is_json_error(call('GET', '/api/v1/config/diff?from=99999&to=1'), 404, 'not_found', 'a diff with a missing revision');
    is_json_error(call('GET', '/api/v1/config/diff?from=x'), 400, 'validation_failed', 'a diff of no number');
}

# targets: the credential is write-only
{
    my $r = write_ok('create target mock-a', 'POST', '/api/v1/targets',
        { name => 'mock-a', provider => 'openai', base_url => "http://127.0.0.1:$gport/v1",
          credential => { value => $provider_secret } });
    is_deeply($r->{json}{data}{credential}, { set => $true, kind => 'value', last4 => 'XYZ9' },
        'the credential shown as set, with its last 4');
    unlike($r->{body}, qr/\Q$provider_secret\E/, 'never the credential');
    my ($row) = sql_rows($db, "SELECT credential_kind, credential_last4, credential FROM targets WHERE name = 'mock-a'");
    is_deeply([@$row[0, 1]], ['sealed', 'XYZ9'], 'the row: sealed, last 4');
    like($row->[2], qr/^v1:[0-9a-f]{8}:/, 'the stored credential is sealed');
    my $doc = call('GET', '/api/v1/config')->{json};
    my ($t) = grep { $_->{name} eq 'mock-a' } @{ $doc->{targets} || [] };
    like($t->{credential}{sealed} // '', qr/^v1:/, 'the document carries it sealed');

    $r = call('GET', '/api/v1/targets/mock-a');
    is($r->{status}, 200, 'GET the target');
    is_deeply($r->{json}{credential}, { set => $true, kind => 'value', last4 => 'XYZ9' }, 'shown as set');

    $r = write_ok('PUT the target without a credential', 'PUT', '/api/v1/targets/mock-a',
        { provider => 'openai', base_url => "http://127.0.0.1:$gport/v1", max_failures => 5 });
    is_deeply($r->{json}{data}{credential}, { set => $true, kind => 'value', last4 => 'XYZ9' }, 'keeps its credential');
    is($r->{json}{data}{max_failures}, 5, 'the new field');
    my %view = %{ call('GET', '/api/v1/targets/mock-a')->{json} || {} };
    write_noop('PUT back what GET shows', 'PUT', '/api/v1/targets/mock-a', \%view);
    $r = write_ok('PATCH the target', 'PATCH', '/api/v1/targets/mock-a', { timeouts => { read => '30s' } });
    is_deeply([$r->{json}{data}{timeouts}, $r->{json}{data}{max_failures}], [{ read => '30s' }, 5], 'patched');
    $r = write_ok('remove the credential', 'PATCH', '/api/v1/targets/mock-a', { credential => undef });
    is_deeply($r->{json}{data}{credential}, { set => $false }, 'credential: null removes it');
    ($row) = sql_rows($db, "SELECT credential_kind, credential FROM targets WHERE name = 'mock-a'");
    is_deeply($row, ['NULL', 'NULL'], 'the row has none');
    $r = write_ok('set it again by PUT', 'PUT', '/api/v1/targets/mock-a',
        { provider => 'openai', base_url => "http://127.0.0.1:$gport/v1", credential => { value => $provider_secret } });
    is($r->{json}{data}{credential}{last4}, 'XYZ9', 'set again');
    $r = write_ok('create target mock-b (env credential)', 'POST', '/api/v1/targets',
        { name => 'mock-b', provider => 'anthropic', base_url => "http://127.0.0.1:$gport/v1",
          credential => { env => 'AIGW_T130_ENV_KEY' } });
    is_deeply($r->{json}{data}{credential}, { set => $true, kind => 'env', env => 'AIGW_T130_ENV_KEY' },
        'an env credential shows its name');
    write_fails('an env credential the nodes do not have', 'POST', '/api/v1/targets',
        { name => 'mock-d', provider => 'openai', base_url => "http://127.0.0.1:$gport/v1",
          credential => { env => 'AIGW_T130_NOT_SET' } }, 400, 'validation_failed', 'credential.env');
    write_ok('create target mock-c (no credential)', 'POST', '/api/v1/targets',
        { name => 'mock-c', provider => 'openai-compatible', base_url => "http://127.0.0.1:$gport/v1" });
    write_fails('a credential with a line break', 'POST', '/api/v1/targets',
        { name => 'mock-d', provider => 'openai', base_url => "http://127.0.0.1:$gport/v1",
          credential => { value => "sk-a\r\nX-Injected: 1" } }, 400, 'validation_failed', 'credential.value');
    write_fails('an unknown provider', 'POST', '/api/v1/targets',
        { name => 'mock-d', provider => 'acme', base_url => "http://127.0.0.1:$gport/v1" },
        400, 'validation_failed', 'provider');
    $r = call('GET', '/api/v1/targets');
    is_deeply([map { $_->{name} } @{ $r->{json}{items} }], [qw(mock-a mock-b mock-c)], 'the targets listed');
    unlike($r->{body}, qr/\Q$provider_secret\E/, 'no credential in the list');
}

# routes: order, weights, fallback, rewrite
{
    my $r = write_ok('create route r-gpt', 'POST', '/api/v1/routes',
        { name => 'r-gpt', path_prefix => '/v1/', models => ['gpt-*'],
          targets => [{ target => 'mock-a', weight => 3 }, { target => 'mock-b', weight => 1 }],
          fallback => ['mock-c'], rewrite => { from => '/v1/', to => '/' }, retry_on => [429, 503],
          max_attempts => 3 });
    is($r->{json}{data}{position}, 0, 'position 0');
    write_ok('create route r-all', 'POST', '/api/v1/routes',
        { name => 'r-all', path_prefix => '/v1/', targets => ['mock-c'] });
    $r = write_ok('create route r-first at position 0', 'POST', '/api/v1/routes',
        { name => 'r-first', path_prefix => '/v1/messages', targets => ['mock-b'], position => 0 });
    is($r->{json}{data}{position}, 0, 'inserted first');
    $r = call('GET', '/api/v1/routes');
    is_deeply([map { [$_->{name}, $_->{position}] } @{ $r->{json}{items} }],
        [['r-first', 0], ['r-gpt', 1], ['r-all', 2]], 'listed by position');
    my @rows = sql_rows($db, 'SELECT name, position FROM routes ORDER BY position');
    is_deeply(\@rows, [['r-first', 0], ['r-gpt', 1], ['r-all', 2]], 'the rows\' positions');
    my $doc = call('GET', '/api/v1/config')->{json};
    is_deeply([map { $_->{name} } @{ $doc->{routes} || [] }], [qw(r-first r-gpt r-all)], 'the document\'s order');
    my ($gpt) = grep { $_->{name} eq 'r-gpt' } @{ $doc->{routes} || [] };
    is_deeply([$gpt->{targets}, $gpt->{fallback}, $gpt->{rewrite}],
        [[{ target => 'mock-a', weight => 3 }, { target => 'mock-b', weight => 1 }], ['mock-c'],
         { from => '/v1/', to => '/' }], 'weights, fallback and rewrite in the document');

    $r = write_ok('move r-first to the end', 'PATCH', '/api/v1/routes/r-first', { position => 2 });
    $r = call('GET', '/api/v1/routes');
    is_deeply([map { $_->{name} } @{ $r->{json}{items} }], [qw(r-gpt r-all r-first)], 'moved');
    $r = write_ok('PUT r-gpt with new weights', 'PUT', '/api/v1/routes/r-gpt',
        { path_prefix => '/v1/', models => ['gpt-*'],
          targets => [{ target => 'mock-a', weight => 1 }, { target => 'mock-b', weight => 2 }],
          fallback => ['mock-c'] });
    is_deeply($r->{json}{data}{targets}, [{ target => 'mock-a', weight => 1 }, { target => 'mock-b', weight => 2 }],
        'new weights');
    ok(!exists $r->{json}{data}{rewrite}, 'PUT replaces: no rewrite any more');
    is($r->{json}{data}{position}, 0, 'PUT without a position keeps it');
    write_fails('a weight of 0', 'PATCH', '/api/v1/routes/r-gpt',
        { targets => [{ target => 'mock-a', weight => 0 }] }, 400, 'validation_failed', 'targets[0].weight');
    write_fails('a route to an unknown target', 'POST', '/api/v1/routes',
        { name => 'r-bad', targets => ['nope'] }, 400, 'validation_failed', 'targets[0]');
    write_fails('a route renamed', 'PATCH', '/api/v1/routes/r-gpt', { name => 'other' }, 400,
        'validation_failed', 'name');
    my $etag = call('GET', '/api/v1/routes/r-first')->{headers}{etag};
    write_ok('PATCH r-first (its ETag changes)', 'PATCH', '/api/v1/routes/r-first', { max_attempts => 2 });
    write_fails('DELETE r-first with its old ETag', 'DELETE', '/api/v1/routes/r-first', undef, 412,
        'precondition_failed', undef, headers => { 'If-Match' => $etag });
    write_ok('DELETE r-first with its current ETag', 'DELETE', '/api/v1/routes/r-first', undef,
        headers => { 'If-Match' => call('GET', '/api/v1/routes/r-first')->{headers}{etag} });
    @rows = sql_rows($db, 'SELECT name, position FROM routes ORDER BY position');
    is_deeply(\@rows, [['r-gpt', 0], ['r-all', 1]], 'two routes left');

    write_ok('a route for namespace team-b only', 'POST', '/api/v1/routes',
        { name => 'r-b', path_prefix => '/v1/', namespaces => ['team-b'], targets => ['mock-c'] });
    write_fails('deleting a namespace a route names', 'DELETE', '/api/v1/namespaces/team-b', undef, 409, 'conflict');
    write_fails('a route for a missing namespace', 'PATCH', '/api/v1/routes/r-b', { namespaces => ['ghost'] },
        400, 'validation_failed', 'namespaces[0]');
    write_ok('DELETE r-b', 'DELETE', '/api/v1/routes/r-b');
}

# every list, one item a page: the pages add up to the whole list
for my $list (qw(/api/v1/namespaces /api/v1/namespaces/team-a/keys /api/v1/namespaces/team-b/policies
                 /api/v1/targets /api/v1/routes /api/v1/config/revisions /api/v1/audit-logs)) {
    my $all = call('GET', "$list?limit=1000")->{json}{items} || [];
    my (@paged, $cursor);
    for (1 .. 200) {
        my $r = call('GET', "$list?limit=1" . (defined $cursor ? "&cursor=$cursor" : ''));
        last unless $r->{status} == 200 && $r->{json};
        push @paged, @{ $r->{json}{items} };
        $cursor = $r->{json}{next_cursor};
        last unless defined $cursor;
    }
    ok(@$all > 1, "$list: more than one item (" . scalar(@$all) . ')');
    is_deeply(\@paged, $all, "$list: the pages of one are the whole list");
}

# writes at the same time are serialized on the config head: 8 namespaces created by 8
# clients at once make 8 revisions with 8 versions
{
    my @c0 = counts();
    my %pid;
    for my $i (1 .. 8) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $r = api_call($aport, 'POST', "/api/v1/namespaces", auth => $S, body => { code => "par-$i" });
            POSIX::_exit($r->{status} == 201 ? 0 : 1);
        }
        $pid{$pid} = $i;
    }
    my $ok = 0;
    for (keys %pid) { waitpid($_, 0); $ok++ if $? == 0 }
    is($ok, 8, '8 concurrent creations: 201 each');
    my @c1 = counts();
    is_deeply([map { $c1[$_] - $c0[$_] } 0 .. 2], [8, 8, 8], '8 revisions, 8 audit rows, version + 8');
    my @vs = map { $_->[0] } sql_rows($db, "SELECT version FROM config_revisions WHERE version > $c0[2] ORDER BY version");
    is_deeply(\@vs, [map { $c0[2] + $_ } 1 .. 8], 'versions one after the other');
    my ($n) = sql_rows($db, "SELECT COUNT(*) FROM namespaces WHERE code LIKE 'par-%'");
    is($n->[0], 8, 'all 8 namespaces stored');
    my $doc = doc_of_revision($c1[2]);
    is(scalar(grep { $_->{code} =~ /^par-/ } @{ $doc->{namespaces} || [] }), 8, 'all 8 in the last document');
    for my $i (1 .. 8) {
        my $r = call('DELETE', "/api/v1/namespaces/par-$i");
        $r->{status} == 200 or fail("delete par-$i: $r->{status}");
    }
}

# settings
{
    my $r = call('GET', '/api/v1/settings');
    is_deeply($r->{json}, { unmatched_status => 401 }, 'the default settings');
    $r = write_ok('PUT settings', 'PUT', '/api/v1/settings', { unmatched_status => 404 });
    is($r->{json}{data}{unmatched_status}, 404, 'unmatched_status 404');
    my ($row) = sql_rows($db, "SELECT value FROM settings WHERE name = 'unmatched_status'");
    is($row->[0], 404, 'the settings row');
    write_noop('PATCH the same', 'PATCH', '/api/v1/settings', { unmatched_status => 404 });
    write_fails('a status it does not take', 'PATCH', '/api/v1/settings', { unmatched_status => 402 },
        400, 'validation_failed', 'unmatched_status');
    write_fails('an unknown setting', 'PATCH', '/api/v1/settings', { colour => 'red' },
        400, 'validation_failed', 'colour');
    write_ok('PATCH settings back', 'PATCH', '/api/v1/settings', { unmatched_status => 401 });
}

# revisions, audit logs, rollback
{
    my $r = call('GET', '/api/v1/config/revisions?limit=2');
    is($r->{status}, 200, 'GET /config/revisions');
    my $v = (counts())[2];
    is_deeply([map { $_->{version} } @{ $r->{json}{items} }], [$v, $v - 1], 'newest first');
    ok($r->{json}{next_cursor}, 'with a next_cursor');
    $r = call('GET', "/api/v1/config/revisions?limit=2&cursor=$r->{json}{next_cursor}");
    is_deeply([map { $_->{version} } @{ $r->{json}{items} }], [$v - 2, $v - 3], 'the next page');
    $r = call('GET', "/api/v1/config/revisions/$v");
    is($r->{json}{action}, 'settings.update', 'a revision: its action');
    is($r->{json}{actor}, 'admin', 'its actor');
    is($r->{json}{sha256}, sha256_hex(sql($db, "SELECT document FROM config_revisions WHERE version = $v") =~ s/\n\z//r),
        'its sha256 is its document\'s');
    ok($r->{json}{published_at}, 'published');
    is($r->{json}{document}{version}, $v, 'the document has the version');
    is_json_error(call('GET', '/api/v1/config/revisions/99999'), 404, 'not_found', 'a missing revision');

    $r = call('GET', '/api/v1/audit-logs?action=namespace.&resource=namespaces/team-c&limit=100');
    is_deeply([map { $_->{action} } @{ $r->{json}{items} }],
        ['namespace.delete', 'namespace.update', 'namespace.update', 'namespace.create'],
        'the audit log filtered by action and resource, newest first');
    is_deeply([map { $_->{actor} } @{ $r->{json}{items} }], [('admin') x 4], 'the actor');
    $r = call('GET', '/api/v1/audit-logs?action=auth.login_failed');
    ok(@{ $r->{json}{items} || [] } >= 2 && !(grep { $_->{action} ne 'auth.login_failed' } @{ $r->{json}{items} }),
        'failed logins are in the audit log');
    my ($n) = sql_rows($db, "SELECT COUNT(*) FROM audit_logs WHERE version IS NOT NULL");
    my ($revs) = sql_rows($db, 'SELECT COUNT(*) FROM config_revisions');
    is($n->[0], $revs->[0], 'as many audit rows with a version as revisions');

    my $v_a = 0 + (counts())[2];
    my $doc_a = doc_of_revision($v_a);
    write_ok('a namespace to roll back', 'POST', '/api/v1/namespaces', { code => 'rb-1' });
    write_ok('a policy to roll back', 'POST', '/api/v1/namespaces/team-a/policies', { type => 'concurrency', limit => 3 });
    $r = write_ok("rollback to version $v_a", 'POST', '/api/v1/config/rollback', { version => $v_a }, status => 200);
    my $v_new = $r->{json}{config_version};
    is($v_new, $v_a + 3, 'a new version');
    is(last_audit()->[0], 'config.rollback', 'audit action config.rollback');
    is_deeply(doc_of_revision($v_new), $doc_a, 'its document is the old one\'s (but the version)');
    is_json_error(call('GET', '/api/v1/namespaces/rb-1'), 404, 'not_found', 'the namespace is gone');
    $r = call('GET', "/api/v1/config/diff?from=$v_a&to=$v_new");
    is_deeply($r->{json}{changes}, [], 'no difference between the old and the new');
    $r = call('GET', "/api/v1/config/diff?from=" . ($v_a + 2) . "&to=$v_new");
    is_deeply([sort map { "$_->{op} $_->{path}" } @{ $r->{json}{changes} }],
        ['removed namespaces[rb-1]', 'removed namespaces[team-a].policies[0]'], 'the rollback\'s diff');
    write_noop('rollback to the same again', 'POST', '/api/v1/config/rollback', { version => $v_a });
    my @c0 = counts();
    my $before = dump_config();
    $r = call('POST', '/api/v1/config/rollback?dry_run=true', body => { version => $v_a - 1 });
    is($r->{status}, 200, 'a dry-run rollback');
    ok($r->{json}{dry_run} && $r->{json}{changed}, 'it would change the configuration');
    $r = call('DELETE', '/api/v1/namespaces/team-a?dry_run=1');
    is($r->{status}, 200, 'a dry-run DELETE');
    ok($r->{json}{dry_run} && $r->{json}{changed}, 'it would delete');
    is_deeply([counts()], \@c0, 'dry runs: no revision, no audit row');
    same_rows($before, dump_config(), 'dry runs');
    write_fails('rollback to a missing revision', 'POST', '/api/v1/config/rollback', { version => 99999 },
        404, 'not_found');
    write_fails('rollback without a version', 'POST', '/api/v1/config/rollback', {}, 400,
        'validation_failed', 'version');
}

# ---------------------------------------------------------------------------------------
# 4. If-Match

{
    my $r = call('GET', '/api/v1/namespaces/team-a');
    my $e1 = $r->{headers}{etag};
    like($e1 // '', qr/^"[0-9a-f]+"$/, 'a strong ETag');
    $r = write_ok('PATCH with the current ETag', 'PATCH', '/api/v1/namespaces/team-a', { description => 'v2' },
        headers => { 'If-Match' => $e1 });
    my $e2 = $r->{headers}{etag};
    isnt($e2, $e1, 'a new ETag');
    is(call('GET', '/api/v1/namespaces/team-a')->{headers}{etag}, $e2, 'the one GET shows');
    write_fails('PATCH with the stale ETag', 'PATCH', '/api/v1/namespaces/team-a', { description => 'v3' },
        412, 'precondition_failed', undef, headers => { 'If-Match' => $e1 });
    is(call('GET', '/api/v1/namespaces/team-a')->{json}{description}, 'v2', 'nothing changed');
    write_fails('a weak ETag', 'PATCH', '/api/v1/namespaces/team-a', { description => 'v3' },
        412, 'precondition_failed', undef, headers => { 'If-Match' => "W/$e2" });
    write_fails('If-Match on a missing resource', 'PATCH', '/api/v1/namespaces/nope', { description => 'v3' },
        412, 'precondition_failed', undef, headers => { 'If-Match' => '*' });

    # the whole configuration
    $r = call('GET', '/api/v1/config');
    my $etag = $r->{headers}{etag};
    my $v = (counts())[2];
    is($etag, "\"v$v\"", 'GET /config: ETag of the version');
    my $doc = $r->{json};
    push @{ $doc->{namespaces} }, { code => 'imported', name => 'Imported', api_keys => [], matchers => [], policies => [] };
    write_fails('PUT /config without If-Match', 'PUT', '/api/v1/config', $doc, 428, 'precondition_required');
    write_fails('PUT /config with a stale If-Match', 'PUT', '/api/v1/config', $doc, 412, 'precondition_failed', undef,
        headers => { 'If-Match' => '"v' . ($v - 1) . '"' });
    $r = write_ok('PUT /config with the ETag of GET /config', 'PUT', '/api/v1/config', $doc,
        headers => { 'If-Match' => $etag });
    is(call('GET', '/api/v1/namespaces/imported')->{json}{name}, 'Imported', 'the imported namespace');
    is(last_audit()->[0], 'config.import', 'audit action config.import');
    my $t = call('GET', '/api/v1/targets/mock-a')->{json};
    is_deeply($t->{credential}, { set => $true, kind => 'value', last4 => 'XYZ9' },
        'a sealed credential survives export and import');
    $r = call('GET', "/api/v1/config/diff");
    is_deeply([map { "$_->{op} $_->{path}" } @{ $r->{json}{changes} }], ['added namespaces[imported]'],
        'the import changed only what the document changed');
    $r = call('POST', '/api/v1/config/validate', body => $doc);
    is($r->{status}, 200, 'validate a document');
    ok($r->{json}{valid}, 'valid');
    my @c0 = counts();
    $r = call('POST', '/api/v1/config/validate', body => { namespaces => [{ code => 'x', policies => [{ type => 'requests' }] }] });
    is_json_error($r, 400, 'validation_failed', 'validate an invalid document');
    like(join(' ', map { $_->{path} } @{ err_of($r)->{details} || [] }), qr/^namespaces\[0\]\.policies\[0\]/,
        'the path in the document');
    is_deeply([counts()], \@c0, 'validate writes nothing');
}

# ---------------------------------------------------------------------------------------
# 5. roles

my ($admin_token, $editor_token, $viewer_token, $editor_pw);
{
    $editor_pw = 'editor-password-' . $$;
    my $rev_before_users = (counts())[0];
    my $r = call('POST', '/api/v1/users', body => { name => 'ed', role => 'editor', password => $editor_pw });
    is($r->{status}, 201, 'an editor created') or diag($r->{body});
    ok(!grep({ /password/ } keys %{ $r->{json} || {} }), 'no password (hash) in the answer');
    $r = call('POST', '/api/v1/users', body => { name => 'vi', role => 'viewer', password => "viewer-password-$$" });
    is($r->{status}, 201, 'a viewer created');
    is_json_error(call('POST', '/api/v1/users', body => { name => 'vi', role => 'viewer', password => "viewer-password-$$" }),
        409, 'conflict', 'the same user again');
    is_json_error(call('POST', '/api/v1/users', body => { name => 'x', role => 'root', password => "some-password-$$" }),
        400, 'validation_failed', 'an unknown role');
    is_json_error(call('POST', '/api/v1/users', body => { name => 'short', role => 'viewer', password => 'short' }),
        400, 'validation_failed', 'a short password');
    is((counts())[0], $rev_before_users, 'users make no configuration revision');
    my ($h) = sql_rows($db, "SELECT password_hash FROM admin_users WHERE username = 'ed'");
    like($h->[0], qr/^\$argon2id\$/, 'stored as an argon2id hash');

    for ([\$admin_token, 'admin', undef], [\$editor_token, 'ed', undef], [\$viewer_token, 'vi', undef]) {
        my ($ref, $user) = @$_;
        $r = call('POST', '/api/v1/tokens', body => { name => "t-$user", user => $user });
        is($r->{status}, 201, "a token for $user") or diag($r->{body});
        $$ref = $r->{json}{token} // '';
        $secret{$$ref} = $#answers;
        like($$ref, qr/^aigw_/, 'the token, once');
        is($r->{headers}{'cache-control'}, 'no-store', 'not cached');
        my ($row) = sql_rows($db, "SELECT sha256 FROM api_tokens WHERE id = '$r->{json}{id}'");
        is($row->[0], sha256_hex($$ref), 'stored as its hash');
    }
    is_json_error(call('POST', '/api/v1/tokens', body => { name => 'up', user => 'vi', role => 'editor' }),
        400, 'validation_failed', 'a token above its user\'s role');
    $r = call('GET', '/api/v1/tokens');
    is(scalar @{ $r->{json}{items} || [] }, 3, 'three tokens listed');
    unlike($r->{body}, qr/\Q$admin_token\E|\Q$editor_token\E|\Q$viewer_token\E/, 'never the tokens');
    $r = call('GET', '/api/v1/auth/me', auth => $viewer_token);
    is_deeply([@{ $r->{json} }{qw(user role via)}], ['vi', 'viewer', 'token'], 'a token acts as its user');

    # every family: reads
    my @reads = qw(/api/v1/namespaces /api/v1/namespaces/team-a /api/v1/namespaces/team-a/keys
        /api/v1/namespaces/team-a/matchers /api/v1/namespaces/team-b/policies /api/v1/targets
        /api/v1/targets/mock-a /api/v1/routes /api/v1/settings /api/v1/config /api/v1/config/revisions
        /api/v1/config/diff /api/v1/nodes /api/v1/audit-logs /api/v1/auth/me);
    for my $who (['viewer', $viewer_token], ['editor', $editor_token], ['admin', $admin_token]) {
        my @bad = grep { call('GET', $_, auth => $who->[1])->{status} != 200 } @reads;
        is_deeply(\@bad, [], "$who->[0]: every GET answers 200");
    }
    $r = call('GET', '/api/v1/targets/mock-a', auth => $viewer_token);
    is_deeply($r->{json}{credential}, { set => $true, kind => 'value', last4 => 'XYZ9' }, 'a viewer sees set + last 4 only');

    # writes: the viewer is refused everything, the editor the users and tokens
    my $v = (counts())[2];
    my @writes = (
        ['POST', '/api/v1/namespaces', { code => 'by-ROLE' }],
        ['PATCH', '/api/v1/namespaces/team-a', { description => 'by ROLE' }],
        ['POST', '/api/v1/namespaces/team-a/keys', { name => 'by ROLE', sha256 => 'HASH' }],
        ['POST', '/api/v1/namespaces/team-a/matchers', { type => 'header', field => 'X-ROLE', operator => 'equals', value => 'x' }],
        ['POST', '/api/v1/namespaces/team-a/policies', { type => 'requests', limit => 1000, window => '1h', name => 'ROLE' }],
        ['POST', '/api/v1/targets', { name => 't-ROLE', provider => 'openai', base_url => "http://127.0.0.1:$gport/v1" }],
        ['POST', '/api/v1/routes', { name => 'r-ROLE', path_prefix => '/ROLE/', targets => ['mock-c'] }],
        ['PATCH', '/api/v1/settings', { unmatched_status => 401 }],
        ['POST', '/api/v1/config/validate', { namespaces => [] }],
        ['POST', '/api/v1/config/rollback', { version => 'CURRENT' }],
    );
    my $fill = sub {
        my ($body, $role) = @_;
        my $j = to_json($body);
        $j =~ s/ROLE/$role/g;
        $j =~ s/HASH/sha256_hex("k-$role")/e;
        my $cur = (counts())[2];
        $j =~ s/"CURRENT"/$cur/;
        return json_of($j);
    };
    my @c0 = counts();
    my $before = dump_config();
    for my $w (@writes) {
        my $r = call($w->[0], $w->[1], auth => $viewer_token, body => $fill->($w->[2], 'viewer'));
        is_json_error($r, 403, 'forbidden', "viewer: $w->[0] $w->[1]");
    }
    is_json_error(call('PUT', '/api/v1/config', auth => $viewer_token, body => { namespaces => [] },
        headers => { 'If-Match' => "\"v$c0[2]\"" }), 403, 'forbidden', 'viewer: PUT /api/v1/config');
    is_json_error(call('DELETE', '/api/v1/namespaces/imported', auth => $viewer_token), 403, 'forbidden',
        'viewer: DELETE a namespace');
    is_json_error(call('POST', "/api/v1/namespaces/team-a/keys/$key_a_id/rotate", auth => $viewer_token, body => {}),
        403, 'forbidden', 'viewer: rotate a key');
    is_deeply([counts()], \@c0, 'the viewer wrote nothing');
    same_rows($before, dump_config(), 'the viewer\'s calls');
    for my $w (@writes) {
        my $r = call($w->[0], $w->[1], auth => $editor_token, body => $fill->($w->[2], 'editor'));
        ok($r->{status} == 200 || $r->{status} == 201, "editor: $w->[0] $w->[1] allowed") or diag($r->{body});
    }
    my $last_audit = last_audit();
    is($last_audit->[3], "ed (token " . substr(sha256_hex($editor_token), 0, 12) . ")",
        'the audit log names the editor and the token');
    $r = call('GET', '/api/v1/config', auth => $editor_token);
    my $doc = $r->{json};
    push @{ $doc->{namespaces} }, { code => 'by-editor-import' };
    $r = call('PUT', '/api/v1/config', auth => $editor_token, body => $doc, headers => { 'If-Match' => $r->{headers}{etag} });
    is($r->{status}, 200, 'editor: PUT /api/v1/config allowed');
    is(call('DELETE', '/api/v1/namespaces/by-editor-import', auth => $editor_token)->{status}, 200,
        'editor: DELETE allowed');
    for my $c (['GET', '/api/v1/users'], ['POST', '/api/v1/users', { name => 'x2', role => 'viewer', password => "x-password-$$" }],
               ['PATCH', '/api/v1/users/vi', { role => 'editor' }], ['DELETE', '/api/v1/users/vi'],
               ['GET', '/api/v1/tokens'], ['POST', '/api/v1/tokens', { name => 'mine' }],
               ['DELETE', '/api/v1/tokens/' . substr(sha256_hex($viewer_token), 0, 12)]) {
        is_json_error(call($c->[0], $c->[1], auth => $editor_token, ($c->[2] ? (body => $c->[2]) : ())),
            403, 'forbidden', "editor: $c->[0] $c->[1]");
        is_json_error(call($c->[0], $c->[1], auth => $viewer_token, ($c->[2] ? (body => $c->[2]) : ())),
            403, 'forbidden', "viewer: $c->[0] $c->[1]");
    }
    my ($users) = sql_rows($db, 'SELECT COUNT(*), GROUP_CONCAT(role ORDER BY username) FROM admin_users');
    is_deeply($users, [3, 'admin,editor,viewer'], 'users unchanged by the refused calls');
    $r = call('GET', '/api/v1/users', auth => $admin_token);
    is_deeply([map { "$_->{name}:$_->{role}" } @{ $r->{json}{items} || [] }], ['admin:admin', 'ed:editor', 'vi:viewer'],
        'admin: GET /users');
    ok($r->{body} !~ /argon2|password_hash/, 'no password hash in the list');
    $r = call('PATCH', '/api/v1/namespaces/team-a', auth => $admin_token, body => { description => 'by admin token' });
    is($r->{status}, 200, 'admin token: a config write');

    # CSRF: a cookie session's write needs the header
    my $ed_session = api_login($aport, 'ed', $editor_pw);
    ok($ed_session, 'the editor logs in');
    @c0 = counts();
    for my $csrf (undef, 'wrong-token') {
        $r = call('PATCH', '/api/v1/namespaces/team-a', auth => { cookie => $ed_session->{cookie}, csrf => $csrf },
            body => { description => 'csrf' });
        is_json_error($r, 403, 'csrf_failed', 'a cookie session\'s write ' . ($csrf ? 'with a wrong' : 'without the') . ' X-CSRF-Token');
    }
    is_json_error(call('DELETE', '/api/v1/namespaces/imported', auth => { cookie => $S->{cookie} }), 403, 'csrf_failed',
        'an admin session\'s DELETE without the header');
    is_deeply([counts()], \@c0, 'nothing written without the CSRF token');
    is(call('GET', '/api/v1/namespaces', auth => { cookie => $ed_session->{cookie} })->{status}, 200,
        'a GET needs no CSRF token');
    $r = call('PATCH', '/api/v1/namespaces/team-a', auth => $ed_session, body => { description => 'csrf ok' });
    is($r->{status}, 200, 'with it, the write goes through');

    # a disabled user's token
    $r = call('PATCH', '/api/v1/users/vi', body => { enabled => $false });
    is($r->{status}, 200, 'disable the viewer');
    is_json_error(call('GET', '/api/v1/namespaces', auth => $viewer_token), 401, 'invalid_token', 'a disabled user\'s token');
    is_json_error(call('POST', '/api/v1/auth/login', auth => undef, body => { username => 'vi', password => "viewer-password-$$" }),
        401, 'invalid_credentials', 'a disabled user cannot log in');
    is(call('PATCH', '/api/v1/users/vi', body => { enabled => $true })->{status}, 200, 'enable it again');
    is(call('GET', '/api/v1/namespaces', auth => $viewer_token)->{status}, 200, 'the token works again');

    is_json_error(call('POST', '/api/v1/tokens', body => { name => 'old', user => 'vi', expires_at => '2001-01-01T00:00:00Z' }),
        400, 'validation_failed', 'a token that expired already');

    # one's own password
    my $ed = api_login($aport, 'ed', $editor_pw);
    my $ed2 = api_login($aport, 'ed', $editor_pw);
    is_json_error(call('POST', '/api/v1/auth/password', auth => $ed,
        body => { current_password => 'not it', new_password => "editor-new-password-$$" }),
        400, 'validation_failed', 'a password change with the wrong current password');
    $r = call('POST', '/api/v1/auth/password', auth => $ed,
        body => { current_password => $editor_pw, new_password => "editor-new-password-$$" });
    is($r->{status}, 200, 'the editor changes its password');
    is(call('GET', '/api/v1/auth/me', auth => $ed)->{status}, 200, 'its session goes on');
    is_json_error(call('GET', '/api/v1/auth/me', auth => $ed2), 401, 'session_expired', 'its other session ended');
    ok(!api_login($aport, 'ed', $editor_pw), 'the old password no longer logs in');
    ok(api_login($aport, 'ed', "editor-new-password-$$"), 'the new one does');
    $editor_pw = "editor-new-password-$$";
    is(call('GET', '/api/v1/namespaces', auth => $editor_token)->{status}, 200, 'its API token still works');

    # a deleted token
    my $tid = substr(sha256_hex($viewer_token), 0, 12);
    is(call('DELETE', "/api/v1/tokens/$tid")->{status}, 200, 'an admin deletes a token');
    is_json_error(call('GET', '/api/v1/namespaces', auth => $viewer_token), 401, 'invalid_token', 'the deleted token');

    # the last admin
    is_json_error(call('DELETE', '/api/v1/users/admin'), 409, 'conflict', 'deleting the last admin');
    is_json_error(call('PATCH', '/api/v1/users/admin', body => { role => 'editor' }), 409, 'conflict', 'demoting the last admin');
    is_json_error(call('PATCH', '/api/v1/users/admin', body => { enabled => $false }), 409, 'conflict', 'disabling the last admin');
    my ($a) = sql_rows($db, "SELECT role, enabled FROM admin_users WHERE username = 'admin'");
    is_deeply($a, ['admin', 1], 'the admin is still there');
    is(call('GET', '/api/v1/auth/me')->{status}, 200, 'and still logged in');
}

# ---------------------------------------------------------------------------------------
# 6. login lockout, the per-address limit

{
    my @st;
    for (1 .. 5) {
        push @st, call('POST', '/api/v1/auth/login', auth => undef, body => { username => 'ed', password => "wrong-$_" })->{status};
    }
    is("@st", '401 401 401 401 401', 'five wrong passwords: 401 each');
    my $r = call('POST', '/api/v1/auth/login', auth => undef, body => { username => 'ed', password => $editor_pw });
    is_json_error($r, 403, 'account_locked', 'the sixth, with the right password');
    ok(($r->{headers}{'retry-after'} // 0) > 60, 'with Retry-After (' . ($r->{headers}{'retry-after'} // '') . ' s)');
    my ($row) = sql_rows($db, "SELECT failed_logins, locked_until > UNIX_TIMESTAMP() * 1000 FROM admin_users WHERE username = 'ed'");
    is_deeply($row, [5, 1], 'the row: five failures, locked');
    $r = call('GET', '/api/v1/users/ed');
    ok($r->{json}{locked_until}, 'GET /users/ed shows locked_until');
    is(call('GET', '/api/v1/namespaces', auth => $editor_token)->{status}, 200, 'the user\'s token still works');
    $r = call('PATCH', '/api/v1/users/ed', body => { unlock => $true });
    is($r->{status}, 200, 'an admin unlocks');
    ok(!$r->{json}{locked_until}, 'unlocked');
    ok(api_login($aport, 'ed', $editor_pw), 'the user logs in again');

    # a lock that has ended: the count starts again (one wrong password does not relock)
    call('POST', '/api/v1/auth/login', auth => undef, body => { username => 'ed', password => "wrong-$_" }) for 1 .. 5;
    sql($db, "UPDATE admin_users SET locked_until = UNIX_TIMESTAMP() * 1000 - 1000 WHERE username = 'ed'");
    $r = call('POST', '/api/v1/auth/login', auth => undef, body => { username => 'ed', password => 'wrong again' });
    is($r->{status}, 401, 'after the lock ended, a wrong password is a 401');
    ($row) = sql_rows($db, "SELECT failed_logins, locked_until FROM admin_users WHERE username = 'ed'");
    is_deeply($row, [1, 0], '... counted from zero again, not locked');
    ok(api_login($aport, 'ed', $editor_pw), '... and the right one logs in');

    # 20 failures from one address: the 21st attempt waits
    my $bad = 0;
    for (1 .. 20) {
        $bad++ if call('POST', '/api/v1/auth/login', auth => undef, local_addr => '127.0.0.2',
            body => { username => "nobody-$_", password => 'wrong password' })->{status} == 401;
    }
    is($bad, 20, '20 failed logins from 127.0.0.2');
    $r = call('POST', '/api/v1/auth/login', auth => undef, local_addr => '127.0.0.2',
        body => { username => 'admin', password => $bootstrap_pw });
    is_json_error($r, 429, 'too_many_attempts', 'the 21st, even with the right password');
    ok(($r->{headers}{'retry-after'} // 0) > 0, 'with Retry-After');
    ok(!$r->{headers}{'set-cookie'}, 'no session');
    ok(api_login($aport, 'admin', $bootstrap_pw), 'another address (127.0.0.1) still logs in');
}

# ---------------------------------------------------------------------------------------
# 7. bad input: a 4xx JSON naming the path, nothing half written

{
    write_fails('malformed JSON', 'POST', '/api/v1/namespaces', '{"code": "x",', 400, 'invalid_json', '');
    write_fails('a key twice in an object', 'POST', '/api/v1/namespaces', '{"code": "x", "code": "y"}',
        400, 'invalid_json', 'code');
    write_fails('a key twice, nested', 'POST', '/api/v1/namespaces/team-a/policies',
        '{"type": "models", "allow": ["a"], "x": {"y": 1, "y": 2}}', 400, 'invalid_json', 'x.y');
    write_fails('wrong Content-Type', 'POST', '/api/v1/namespaces', '{"code": "x"}', 415, 'unsupported_media_type',
        undef, content_type => 'text/plain');
    write_fails('no Content-Type', 'POST', '/api/v1/namespaces', '{"code": "x"}', 415, 'unsupported_media_type',
        undef, content_type => undef);
    write_fails('not an object', 'POST', '/api/v1/namespaces', '[1, 2]', 400, 'validation_failed', '');
    write_fails('an unknown field', 'POST', '/api/v1/namespaces', { code => 'x', colour => 'red' },
        400, 'validation_failed', 'colour');
    write_fails('an unknown field of a policy', 'POST', '/api/v1/namespaces/team-a/policies',
        { type => 'requests', limit => 1, window => '1m', colour => 'red' }, 400, 'validation_failed', 'colour');
    write_fails('an unknown field of a target', 'POST', '/api/v1/targets',
        { name => 't-x', provider => 'openai', base_url => 'http://127.0.0.1:9/v1', colour => 'red' },
        400, 'validation_failed', 'colour');
    write_fails('an unknown field of a route', 'POST', '/api/v1/routes',
        { name => 'r-x', targets => ['mock-c'], colour => 'red' }, 400, 'validation_failed', 'colour');
    write_fails('a wrong type', 'POST', '/api/v1/namespaces', { code => 5 }, 400, 'validation_failed', 'code');
    write_fails('a wrong type in a policy', 'POST', '/api/v1/namespaces/team-a/policies',
        { type => 'requests', limit => 'ten', window => '1m' }, 400, 'validation_failed', 'limit');
    write_fails('a wrong type in a route', 'POST', '/api/v1/routes', { name => 'r-x', targets => 'mock-c' },
        400, 'validation_failed', 'targets');
    write_fails('an invalid namespace code', 'POST', '/api/v1/namespaces', { code => 'a b' }, 400,
        'validation_failed', 'code');
    write_fails('a route to an unknown target', 'POST', '/api/v1/routes', { name => 'r-x', targets => ['mock-c', 'ghost'] },
        400, 'validation_failed', 'targets[1]');
    write_fails('a fallback to an unknown target', 'POST', '/api/v1/routes',
        { name => 'r-x', targets => ['mock-c'], fallback => ['ghost'] }, 400, 'validation_failed', 'fallback[0]');
    write_fails('a policy on a missing namespace', 'POST', '/api/v1/namespaces/ghost/policies',
        { type => 'requests', limit => 1, window => '1m' }, 404, 'not_found');
    write_fails('a matcher of a missing namespace', 'PATCH', '/api/v1/namespaces/ghost/matchers/1',
        { priority => 1 }, 404, 'not_found');
    write_fails('a missing policy', 'PATCH', '/api/v1/namespaces/team-a/policies/99999', { limit => 1 }, 404, 'not_found');
    write_fails('a namespace name of 256 characters', 'POST', '/api/v1/namespaces', { code => 'long', name => 'n' x 256 },
        400, 'validation_failed', 'name');
    write_fails('a target name of 256 characters', 'POST', '/api/v1/targets',
        { name => 't' x 256, provider => 'openai', base_url => 'http://127.0.0.1:9/v1' }, 400, 'validation_failed', 'name');
    write_fails('a target name no URL can reach', 'POST', '/api/v1/targets',
        { name => 'x/y', provider => 'openai', base_url => 'http://127.0.0.1:9/v1' }, 400, 'validation_failed', 'name');
    write_fails('a route name no URL can reach', 'POST', '/api/v1/routes', { name => 'r/1', targets => ['mock-c'] },
        400, 'validation_failed', 'name');
    write_fails('a control character in a name', 'POST', '/api/v1/namespaces', { code => 'ctl', name => "a\r\nb" },
        400, 'validation_failed', 'name');
    write_fails('a duplicate namespace code', 'POST', '/api/v1/namespaces', { code => 'team-a' }, 409, 'conflict', 'code');
    write_fails('a duplicate target', 'POST', '/api/v1/targets',
        { name => 'mock-a', provider => 'openai', base_url => 'http://127.0.0.1:9/v1' }, 409, 'conflict', 'name');
    write_fails('a duplicate route', 'POST', '/api/v1/routes', { name => 'r-all', targets => ['mock-c'] }, 409, 'conflict', 'name');
    write_fails('deleting a target a route uses', 'DELETE', '/api/v1/targets/mock-c', undef, 409, 'conflict');
    write_fails('deleting a target a fallback uses', 'DELETE', '/api/v1/targets/mock-b', undef, 409, 'conflict');
    write_fails('an invalid dry_run', 'POST', '/api/v1/namespaces?dry_run=perhaps', { code => 'x' }, 400,
        'validation_failed', '?dry_run');
    write_fails('an invalid wait_applied', 'POST', '/api/v1/namespaces?wait_applied=forever', { code => 'x' }, 400,
        'validation_failed', '?wait_applied');

    my $big = to_json({ code => 'big', description => 'x' x 70000 });
    write_fails('a body above client_max_body_size (64k)', 'POST', '/api/v1/namespaces', $big, 413, 'request_too_large');

    my $r = call('GET', '/api/v1/no-such-thing');
    is_json_error($r, 404, 'not_found', 'an unknown path');
    is_json_error(call('GET', '/api/v2/namespaces'), 404, 'not_found', 'another API version');
    is_json_error(call('GET', '/api/v1/namespaces/team-a/colours'), 404, 'not_found', 'an unknown list');
    $r = call('DELETE', '/api/v1/settings');
    is_json_error($r, 405, 'method_not_allowed', 'DELETE /settings');
    is($r->{headers}{allow}, 'GET, PUT, PATCH, HEAD', 'Allow');
    $r = call('POST', '/api/v1/config/revisions', body => {});
    is_json_error($r, 405, 'method_not_allowed', 'POST /config/revisions');
    is($r->{headers}{allow}, 'GET, HEAD', 'Allow');
    $r = call('GET', '/api/v1/auth/login', auth => undef);
    is_json_error($r, 405, 'method_not_allowed', 'GET /auth/login');
    is($r->{headers}{allow}, 'POST', 'Allow');
}

# ---------------------------------------------------------------------------------------
# 8. the gateway

{
    my $r = write_ok('a key for the gateway (wait_applied=2s)', 'POST', '/api/v1/namespaces/team-a/keys?wait_applied=2s',
        { name => 'gw' });
    my $plain = $r->{json}{data}{key} // '';
    $secret{$plain} = $#answers;
    my $id = $r->{json}{data}{id};
    ok($r->{json}{applied} && $r->{json}{applied}{complete}, 'applied on every worker before the answer')
        or diag($r->{body});
    is_deeply([sort @{ $r->{json}{applied}{applied} || [] }], ['n1:0', 'n1:1'], 'both workers of n1');
    my ($st, $body) = chat($plain);
    is($st, 200, 'the new key works on the gateway') or diag($body);
    like($body, qr/"choices"/, 'the mock provider answered');
    ($st) = chat($key_a);
    is($st, 200, 'the first key too');

    $r = write_ok('revoke it (wait_applied=2s)', 'PATCH', "/api/v1/namespaces/team-a/keys/$id?wait_applied=2s",
        { enabled => $false });
    ok($r->{json}{applied}{complete}, 'applied');
    ($st, $body) = chat($plain);
    is($st, 401, 'the revoked key: 401');
    like($body, qr/invalid_api_key/, 'invalid_api_key');
    ($st) = chat($key_a);
    is($st, 200, 'the other key still works');
    $r = write_ok('delete the first key (wait_applied=2s)', 'DELETE', "/api/v1/namespaces/team-a/keys/$key_a_id?wait_applied=2s");
    ($st) = chat($key_a);
    is($st, 401, 'a deleted key: 401');

    # policies through the API reach the gateway: team-b allows only gpt-4o* and claude-*
    $r = write_ok('a key of team-b', 'POST', '/api/v1/namespaces/team-b/keys?wait_applied=2s', {});
    my $kb = $r->{json}{data}{key} // '';
    $secret{$kb} = $#answers;
    ($st, $body) = chat($kb, 'llama-3');
    is($st, 403, 'team-b\'s models policy refuses llama-3');

    $r = call('GET', '/api/v1/nodes');
    is($r->{status}, 200, 'GET /nodes');
    my ($n1) = grep { $_->{node} eq 'n1' } @{ $r->{json}{items} || [] };
    ok($n1 && $n1->{current}, 'node n1 serves the current version');
    is($n1 && $n1->{applied_version}, (counts())[2], 'its applied version');
    is($r->{json}{published}{version}, (counts())[2], 'Redis has the current version');
    # the targets' passive health (from the node's limit zone): none was tried, all healthy
    my @names = sort map { $_->{name} } @{ call('GET', '/api/v1/targets')->{json}{items} || [] };
    my $health = sub { join ',', map { "$_->{target}=$_->{state}/$_->{failures}/" . ($_->{cooling_until} // '-') } @_ };
    is($health->(sort { $a->{target} cmp $b->{target} } @{ $n1 && $n1->{targets} || [] }),
        join(',', map { "$_=healthy/0/-" } @names), "the node's targets (@names), healthy");
    like($n1 && $n1->{targets_at} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$/, '... as of targets_at');
    is(scalar(grep { ref $_->{targets} eq 'ARRAY' && $_->{targets_at_ms} > 0 } @{ $n1 && $n1->{workers} || [] }), 2,
        '... and in each of its two workers\' heartbeats');
}

# ---------------------------------------------------------------------------------------
# 9. no secret in the error log, the API's answers or the store

{
    stop($nginx_pid);
    undef $nginx_pid;
    my $log = slurp("$dir/logs/error.log") . slurp("$dir/logs/access.log");
    ok(length $log, 'the logs are there');
    my @bad = slurp("$dir/logs/error.log") =~ /^(.*\[(?:alert|crit|emerg)\].*)$/mg;
    is_deeply(\@bad, [], 'no alert, crit or emerg in the error log (no socket left open at exit)');
    my @plain = grep { length } keys %secret;
    ok(@plain >= 8, scalar(@plain) . ' plaintext keys and tokens made');
    for my $s (@plain, $bootstrap_pw, $editor_pw, $provider_secret, $env_secret) {
        my $what = substr($s, 0, 8) . '...';
        ok(index($log, $s) < 0, "the logs do not hold $what");
    }
    for my $s ($bootstrap_pw, $editor_pw, $provider_secret, $env_secret) {
        ok(!(grep { index($_, $s) >= 0 } @answers), 'no API answer holds ' . substr($s, 0, 8) . '...');
    }
    for my $s (@plain) {
        my @where = grep { index($answers[$_], $s) >= 0 } 0 .. $#answers;
        is_deeply(\@where, [$secret{$s}], 'only the answer that made ' . substr($s, 0, 10) . '... holds it');
    }
    my $all = join '', map { sql($db, "SELECT * FROM $_") } qw(namespaces api_keys targets config_revisions
        audit_logs admin_users admin_sessions api_tokens);
    my $redis = join '', map { eval { redis($rport, 'GET', $_) } // '' } @{ redis($rport, 'KEYS', "$P:*") || [] };
    for my $s (@plain, $bootstrap_pw, $editor_pw, $provider_secret, $env_secret) {
        ok(index($all, $s) < 0 && index($redis, $s) < 0, 'neither MySQL nor Redis holds ' . substr($s, 0, 8) . '...');
    }
}

done_testing();
