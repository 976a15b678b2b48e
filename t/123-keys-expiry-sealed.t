# Client keys that expire (`expires_at`, RFC 3339 or unix seconds) and provider credentials
# sealed with a node key (`{"sealed": "v1:..."}` opened with `ai_gateway_secret_key`): an
# expired key is an unknown key (401, or a matcher), a live one identifies; a sealed
# credential reaches the provider as its header, from the config file, the last-known-good
# file and a snapshot from Redis; every directive and credential error with its [emerg]; and
# no block's log ever shows a node key or an opened credential.
#
# The keys are t/fixtures/seal/node-{a,b}.key (test keys, nothing else uses them), copied
# with the file modes each block needs. The sealed values were made with them and fixed
# nonces by `cargo test --release --locked print_test_vectors -- --ignored --nocapture`; the
# unit test fixture_vectors_are_the_ones_in_t123 (src/core/seal.rs) checks they are here.
use lib 't/lib';
use Test::AIGateway 'no_plan';
use Digest::SHA qw(sha256_hex);
use POSIX qw(strftime);
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use Time::HiRes ();
use Test::AIGateway::Redis;

repeat_each(1);

sub slurp {
    open my $f, '<', $_[0] or die "$_[0]: $!\n";
    my $s = do { local $/; <$f> };
    $s =~ s/\n\z//;
    return $s;
}

our $key_a = slurp("$ENV{TEST_NGINX_FIXTURES}/seal/node-a.key");
our $key_b = slurp("$ENV{TEST_NGINX_FIXTURES}/seal/node-b.key");
# the key id: the first 8 hex digits of the sha256 of the key's 32 bytes
substr(sha256_hex(pack 'H*', $key_a), 0, 8) eq '7bffbd17' or die "node-a.key changed\n";
substr(sha256_hex(pack 'H*', $key_b), 0, 8) eq '03f7babb' or die "node-b.key changed\n";

# "sk-sealed-provider-key" sealed with node-a, and with node-b; "sk-sealed\r\nX-Injected: 1"
# sealed with node-a
our $sealed_a = 'v1:7bffbd17:AQEBAQEBAQEBAQEB9AkZf8TMclcy7iVjwybIUuqsnGq_KtCBz4LIHq1XHhTWDDSSqqU';
our $sealed_b = 'v1:03f7babb:AgICAgICAgICAgICI8tgdlrCD_WmD5MTFzw7_0nl3FTEAz3FshkPNSEBc3Y9NcfsMFo';
our $sealed_crlf = 'v1:7bffbd17:AwMDAwMDAwMDAwMDMdzy6CecO7aeSC6sQvZFmBwPXEI9dXHADsz3SOCAZaFxpLFM96s2Dg';
# one character of the ciphertext changed
(our $tampered = $sealed_a) =~ s/8TMc/8TMd/ or die;

# the key files with the modes the blocks need (git keeps no modes)
# (beside the server root, so that a run with another TEST_NGINX_SERVROOT has its own)
my $servroot = $ENV{TEST_NGINX_SERVROOT} || "$ENV{TEST_NGINX_ROOT}/t/servroot";
$ENV{TEST_NGINX_SEAL_DIR} = "$servroot-seal";
remove_tree($ENV{TEST_NGINX_SEAL_DIR});
make_path($ENV{TEST_NGINX_SEAL_DIR});
for (['a.key', $key_a, 0600], ['b.key', $key_b, 0400], ['a-open.key', $key_a, 0644],
     ['a-again.key', uc($key_a) . "\r\n", 0600]) {
    my ($name, $text, $mode) = @$_;
    open my $f, '>', "$ENV{TEST_NGINX_SEAL_DIR}/$name" or die "$name: $!\n";
    print $f $text eq $key_a || $text eq $key_b ? "$text\n" : $text;
    close $f;
    chmod $mode, "$ENV{TEST_NGINX_SEAL_DIR}/$name";
}
# nginx reads env= keys from the master's environment while it parses its configuration
$ENV{AI_GATEWAY_TEST_SEAL_KEY_B} = $key_b;
$ENV{AI_GATEWAY_TEST_SEAL_KEY_BAD} = 'f' x 63 . 'g';

sub client_hash { sha256_hex($_[0]) }

# RFC 3339 text of unix time $t at an offset of $minutes from UTC (0: "Z")
sub rfc3339 {
    my ($t, $minutes, $fraction) = @_;
    my $text = strftime('%Y-%m-%dT%H:%M:%S', gmtime($t + 60 * $minutes)) . ($fraction // '');
    return "${text}Z" unless $minutes;
    return $text . sprintf('%s%02d:%02d', $minutes < 0 ? '-' : '+', abs($minutes) / 60,
                           abs($minutes) % 60);
}

my $now = time;
our $expiry_config = sprintf <<'_EOJ_',
{"namespaces": [
  {"code": "keyed", "api_keys": [
    {"name": "rfc-past", "sha256": "%s", "expires_at": "%s"},
    {"name": "rfc-future", "sha256": "%s", "expires_at": "%s"},
    {"name": "unix-past", "sha256": "%s", "expires_at": %d},
    {"name": "unix-future", "sha256": "%s", "expires_at": %d},
    {"name": "offset-past", "sha256": "%s", "expires_at": "%s"},
    "%s"]},
  {"code": "by-header", "matchers": [
    {"type": "header", "field": "X-Team", "operator": "equals", "value": "red"}]}]}
_EOJ_
    client_hash('sk-rfc-past'), rfc3339($now - 3600, 0),
    client_hash('sk-rfc-future'), rfc3339($now + 3600, 120),
    client_hash('sk-unix-past'), $now - 60,
    client_hash('sk-unix-future'), $now + 3600,
    client_hash('sk-offset-past'), rfc3339($now - 60, -330, '.500'),
    client_hash('sk-forever');

# the provider: an nginx server that answers with the credential headers it got
our $base_port = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
$ENV{TEST_NGINX_ECHO_PORT} = $base_port + 22;

# A gateway config (or snapshot) with one target named $name whose credential is sealed
# with $sealed, serving every path; the echo server is the provider.
sub sealed_config {
    my ($sealed, %o) = @_;
    my $name = $o{name} // 'sealed';
    my $provider = $o{provider} // 'openai';
    return qq({"version": "$name", "namespaces": [{"code": "a", "api_keys": ["${\ client_hash('sk-client-1')}"]}],
 "targets": [{"name": "$name", "provider": "$provider", "base_url": "http://127.0.0.1:$ENV{TEST_NGINX_ECHO_PORT}",
   "credential": {"sealed": "$sealed"}}],
 "routes": [{"targets": ["$name"]}]}
);
}

# a last-known-good file: its head line (version 5, epoch "e") and the document
sub lkg {
    my ($doc) = @_;
    return qq({"version":5,"sha256":"${\ sha256_hex($doc)}","epoch":"e"}\n$doc);
}

# a private Redis for the blocks whose snapshot comes from Redis
our $redis_port = $base_port + 23;
my $redis_dir = "$servroot-seal-redis";
remove_tree($redis_dir);
make_path($redis_dir);
my $redis_pid = start_redis($redis_port, $redis_dir);
END { local $?; if ($redis_pid) { kill 'KILL', $redis_pid; waitpid($redis_pid, 0) } }
our $prefix = "t123-$$";

# Waits (3 s at most) until this node's status answer matches $re.
sub wait_status {
    my ($re) = @_;
    my $port = $base_port;
    my $last = '';
    for (1 .. 60) {
        if (my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 2)) {
            print $s "GET /status HTTP/1.0\r\nHost: localhost\r\n\r\n";
            local $/;
            $last = <$s> // '';
            return 1 if $last =~ $re;
        }
        Time::HiRes::sleep(0.05);
    }
    die "the status never matched $re: $last\n";
}

our $routed_location = <<'_EOC_';
    location /v1/ {
        ai_gateway on;
        include $TEST_NGINX_ROOT/nginx-conf/ai_gateway_proxy.conf;
        add_header X-Target $ai_gateway_target always;
    }
    location = /status {
        ai_gateway_config_status;
    }
_EOC_

our $echo_server = <<'_EOC_';
    upstream ai_gateway_targets {
        ai_gateway_upstream;
        keepalive 8;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_ECHO_PORT;
        location / { return 200 "auth=[$http_authorization] x-api-key=[$http_x_api_key]\n"; }
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    # the module never prints a node key, nor what a sealed credential holds
    my $secrets = join '', map { "$_\n" } $key_a, uc($key_a), $key_b, 'sk-sealed-provider-key',
        'X-Injected', 'f' x 63 . 'g';
    $block->set_value("no_error_log", ($block->no_error_log // '') . $secrets);
});

run_tests();

__DATA__

=== TEST 1: expires_at: expired keys (RFC 3339, unix seconds, an offset) are unknown keys, live ones identify; an expired key falls back to the matchers
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files eval
[["gw.json" => $::expiry_config]]
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
        add_header X-NS $ai_gateway_namespace always;
        add_header X-Via $ai_gateway_identified_by always;
        add_header X-Reason $ai_gateway_reason always;
    }
--- request eval
[map { "GET /v1/models" } 1 .. 7]
--- more_headers eval
["Authorization: Bearer sk-rfc-future",
 "Authorization: Bearer sk-rfc-past",
 "Authorization: Bearer sk-unix-future",
 "x-api-key: sk-unix-past",
 "Authorization: Bearer sk-offset-past",
 "Authorization: Bearer sk-forever",
 "Authorization: Bearer sk-unix-past\nX-Team: red"]
--- error_code eval
[200, 401, 200, 401, 401, 200, 200]
--- response_headers eval
["X-NS: keyed\nX-Via: key", "!X-NS\nX-Reason: invalid_api_key", "X-NS: keyed\nX-Via: key",
 "!X-NS\nX-Reason: invalid_api_key", "!X-NS\nX-Reason: invalid_api_key", "X-NS: keyed\nX-Via: key",
 "X-NS: by-header\nX-Via: matcher"]
--- response_body_like eval
[qr/"object":"list"/, qr/^\{"error":\{"message":"Incorrect API key provided\.","type":"invalid_request_error","param":null,"code":"invalid_api_key"\}\}$/,
 qr/"object":"list"/, qr/"code":"invalid_api_key"/, qr/"code":"invalid_api_key"/,
 qr/"object":"list"/, qr/"object":"list"/]
--- no_error_log
[error]
sk-rfc-past
sk-unix-past



=== TEST 2: a bad expires_at stops nginx -t, naming its JSON path
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files
>>> gw.json
{"namespaces": [{"code": "a", "api_keys": [
  "4343759ea8049c902c9f114b8cec9dce568787e5728f4bd3eb0d67137e24adf5",
  {"sha256": "0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55", "expires_at": "2026-02-29T00:00:00Z"}]}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway: invalid config ".*gw\.json": namespaces\[0\]\.api_keys\[1\]\.expires_at: must be an RFC 3339 time \(e\.g\. "2026-12-31T00:00:00Z"\) or unix seconds/



=== TEST 3: a sealed credential from the config file reaches the provider as its header; a 0600 key file gets no warning
--- http_config eval
"    ai_gateway_secret_key \$TEST_NGINX_SEAL_DIR/a.key;\n    ai_gateway_config ../html/gw.json;\n$::echo_server"
--- user_files eval
[["gw.json" => main::sealed_config($::sealed_a)]]
--- config eval: $::routed_location
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- more_headers
Authorization: Bearer sk-client-1
--- response_body
auth=[Bearer sk-sealed-provider-key] x-api-key=[]
--- response_headers
X-Target: sealed
--- error_log eval
qr/\[notice\] .*ai_gateway: ngx_http_ai_gateway_module .*config ".*gw\.json" \(version sealed\): namespaces 1, keys 1, matchers 0, policies 0, secret keys 7bffbd17$/m
--- no_error_log
[error]
[warn]
sk-client-1



=== TEST 4: two keys (one from the environment): each opens what it sealed, found by key id; an Anthropic target gets x-api-key
--- http_config eval
"    ai_gateway_secret_key env=AI_GATEWAY_TEST_SEAL_KEY_B;
    ai_gateway_secret_key \$TEST_NGINX_SEAL_DIR/a.key;
    ai_gateway_config ../html/gw.json;
$::echo_server"
--- user_files eval
[["gw.json" => qq({"namespaces": [{"code": "a", "api_keys": ["${\ main::client_hash('sk-client-1')}"]}],
 "targets": [
   {"name": "by-a", "provider": "openai", "base_url": "http://127.0.0.1:$ENV{TEST_NGINX_ECHO_PORT}",
    "credential": {"sealed": "$::sealed_a"}},
   {"name": "by-b", "provider": "anthropic", "base_url": "http://127.0.0.1:$ENV{TEST_NGINX_ECHO_PORT}",
    "credential": {"sealed": "$::sealed_b"}}],
 "routes": [{"path_prefix": "/v1/messages", "targets": ["by-b"]}, {"targets": ["by-a"]}]})]]
--- config eval: $::routed_location
--- request eval
["POST /v1/chat/completions\n{\"model\":\"m\",\"messages\":[]}",
 "POST /v1/messages\n{\"model\":\"m\",\"max_tokens\":5,\"messages\":[]}"]
--- more_headers eval
["Authorization: Bearer sk-client-1", "x-api-key: sk-client-1"]
--- response_body eval
["auth=[Bearer sk-sealed-provider-key] x-api-key=[]\n", "auth=[] x-api-key=[sk-sealed-provider-key]\n"]
--- response_headers eval
["X-Target: by-a", "X-Target: by-b"]



=== TEST 4b: the configuration's notice names the node's key ids (in directive order), never the keys
--- http_config eval
"    ai_gateway_secret_key env=AI_GATEWAY_TEST_SEAL_KEY_B;
    ai_gateway_secret_key \$TEST_NGINX_SEAL_DIR/a.key;
    ai_gateway_config ../html/gw.json;
$::echo_server"
--- user_files eval
[["gw.json" => main::sealed_config($::sealed_a)]]
--- config eval: $::routed_location
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- more_headers
Authorization: Bearer sk-client-1
--- response_body
auth=[Bearer sk-sealed-provider-key] x-api-key=[]
--- error_log eval
qr/\[notice\] .*\(version sealed\): namespaces 1, keys 1, matchers 0, policies 0, secret keys 03f7babb 7bffbd17$/



=== TEST 5: a key file open to group or others is used, with a warning
--- http_config eval
"    ai_gateway_secret_key \$TEST_NGINX_SEAL_DIR/a-open.key;\n    ai_gateway_config ../html/gw.json;\n$::echo_server"
--- user_files eval
[["gw.json" => main::sealed_config($::sealed_a)]]
--- config eval: $::routed_location
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- more_headers
Authorization: Bearer sk-client-1
--- response_body
auth=[Bearer sk-sealed-provider-key] x-api-key=[]
--- error_log eval
qr/\[warn\] .*ai_gateway_secret_key: ".*-seal\/a-open\.key" is open to group or others \(mode 0644\); make it 0600 or 0400/



=== TEST 6: a key file that does not exist
--- http_config
    ai_gateway_secret_key $TEST_NGINX_SEAL_DIR/nope.key;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_secret_key: cannot read ".*-seal\/nope\.key": No such file or directory/



=== TEST 7: a key file that is not 64 hex digits (relative to the conf directory); the message does not repeat it
--- http_config
    ai_gateway_secret_key ../html/bad.key;
--- user_files
>>> bad.key
not-a-key-0123456789
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_secret_key: ".*\/conf\/\.\.\/html\/bad\.key" must hold 64 hexadecimal digits \(a 32-byte key\) on one line/
--- no_error_log
not-a-key



=== TEST 8: a key file with a second line
--- http_config
    ai_gateway_secret_key ../html/two-lines.key;
--- user_files eval
[["two-lines.key" => "$::key_a\n$::key_b\n"]]
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_secret_key: ".*two-lines\.key" must hold 64 hexadecimal digits \(a 32-byte key\) on one line/



=== TEST 9: the same key twice (here once in upper case with CR/LF): a key id twice is an error
--- http_config
    ai_gateway_secret_key $TEST_NGINX_SEAL_DIR/a.key;
    ai_gateway_secret_key $TEST_NGINX_SEAL_DIR/a-again.key;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_secret_key: ".*\/a-again\.key" holds key id 7bffbd17, which an earlier "ai_gateway_secret_key" already has/



=== TEST 10: env= names a variable that is not set
--- http_config
    ai_gateway_secret_key env=AI_GATEWAY_TEST_SEAL_KEY_UNSET;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_secret_key: environment variable "AI_GATEWAY_TEST_SEAL_KEY_UNSET" is not set/



=== TEST 11: env= names a variable that holds no key (its value is not repeated)
--- http_config
    ai_gateway_secret_key env=AI_GATEWAY_TEST_SEAL_KEY_BAD;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_secret_key: environment variable "AI_GATEWAY_TEST_SEAL_KEY_BAD" must hold 64 hexadecimal digits \(a 32-byte key\) on one line/



=== TEST 12: env= without a name
--- http_config
    ai_gateway_secret_key env=;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_secret_key: invalid parameter "env="/



=== TEST 13: ai_gateway_secret_key belongs in the http block
--- http_config
--- config
    location /v1/ {
        ai_gateway_secret_key /dev/null;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway_secret_key" directive is not allowed here/



=== TEST 14: a sealed credential and no key
--- http_config eval
"    ai_gateway_config ../html/gw.json;\n$::echo_server"
--- user_files eval
[["gw.json" => main::sealed_config($::sealed_a)]]
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway: invalid config ".*gw\.json": targets\[0\]\.credential\.sealed: no "ai_gateway_secret_key" to open it \(the directive must come before "ai_gateway_config" in the http block\)/



=== TEST 15: the key after ai_gateway_config is too late for the file's sealed credentials
--- http_config eval
"    ai_gateway_config ../html/gw.json;\n    ai_gateway_secret_key \$TEST_NGINX_SEAL_DIR/a.key;\n$::echo_server"
--- user_files eval
[["gw.json" => main::sealed_config($::sealed_a)]]
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*targets\[0\]\.credential\.sealed: no "ai_gateway_secret_key" to open it \(the directive must come before "ai_gateway_config" in the http block\)/



=== TEST 16: a credential sealed with another key than the node's
--- http_config eval
"    ai_gateway_secret_key \$TEST_NGINX_SEAL_DIR/a.key;\n    ai_gateway_config ../html/gw.json;\n$::echo_server"
--- user_files eval
[["gw.json" => main::sealed_config($::sealed_b)]]
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway: invalid config ".*gw\.json": targets\[0\]\.credential\.sealed: sealed with key id 03f7babb, this node has 7bffbd17/



=== TEST 17: a tampered sealed credential
--- http_config eval
"    ai_gateway_secret_key \$TEST_NGINX_SEAL_DIR/a.key;\n    ai_gateway_config ../html/gw.json;\n$::echo_server"
--- user_files eval
[["gw.json" => main::sealed_config($::tampered)]]
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway: invalid config ".*gw\.json": targets\[0\]\.credential\.sealed: does not decrypt with key 7bffbd17 \(tampered or another key\)/



=== TEST 18: a plain key where a sealed value belongs (its text is not repeated)
--- http_config eval
"    ai_gateway_secret_key \$TEST_NGINX_SEAL_DIR/a.key;\n    ai_gateway_config ../html/gw.json;\n$::echo_server"
--- user_files eval
[["gw.json" => main::sealed_config('sk-plain-provider-key')]]
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway: invalid config ".*gw\.json": targets\[0\]\.credential\.sealed: not a sealed value \(expected v1:<key id>:<data>\)/
--- no_error_log
sk-plain-provider-key



=== TEST 19: a sealed credential that opens to two lines fails as an inline one would (without showing it)
--- http_config eval
"    ai_gateway_secret_key \$TEST_NGINX_SEAL_DIR/a.key;\n    ai_gateway_config ../html/gw.json;\n$::echo_server"
--- user_files eval
[["gw.json" => main::sealed_config($::sealed_crlf)]]
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*targets\[0\]\.credential\.sealed: the opened key has a line break \(one value, one line\)/
--- no_error_log
sk-sealed



=== TEST 20: the last-known-good file's sealed credentials open with the node's keys (Redis does not answer)
--- http_config eval
"    ai_gateway_secret_key \$TEST_NGINX_SEAL_DIR/a.key;
    ai_gateway_secret_key \$TEST_NGINX_SEAL_DIR/b.key;
    ai_gateway_config ../html/gw.json;
    ai_gateway_redis redis://127.0.0.1:1 timeout=100ms;
    ai_gateway_config_source redis lkg=html/lkg.json node=t123;
$::echo_server"
--- user_files eval
[["gw.json" => main::sealed_config($::sealed_a, name => 'file')],
 ["lkg.json" => main::lkg(main::sealed_config($::sealed_b, name => 'lkg'))]]
--- config eval: $::routed_location
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- more_headers
Authorization: Bearer sk-client-1
--- response_body
auth=[Bearer sk-sealed-provider-key] x-api-key=[]
--- response_headers
X-Target: lkg
--- no_error_log
[error]
last-known-good file



=== TEST 21: a last-known-good file sealed with a key this node lacks is skipped with a warning: the file is served
--- http_config eval
"    ai_gateway_secret_key \$TEST_NGINX_SEAL_DIR/a.key;
    ai_gateway_config ../html/gw.json;
    ai_gateway_redis redis://127.0.0.1:1 timeout=100ms;
    ai_gateway_config_source redis lkg=html/lkg.json node=t123;
$::echo_server"
--- user_files eval
[["gw.json" => main::sealed_config($::sealed_a, name => 'file')],
 ["lkg.json" => main::lkg(main::sealed_config($::sealed_b, name => 'lkg'))]]
--- config eval: $::routed_location
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- more_headers
Authorization: Bearer sk-client-1
--- response_body
auth=[Bearer sk-sealed-provider-key] x-api-key=[]
--- response_headers
X-Target: file
--- error_log eval
qr/\[warn\] .*ai_gateway: the last-known-good file ".*lkg\.json" is not usable \(targets\[0\]\.credential\.sealed: sealed with key id 03f7babb, this node has 7bffbd17\); starting from ".*gw\.json"/



=== TEST 22: a snapshot from Redis: its sealed credential opens with the node's keys
--- http_config eval
"    ai_gateway_secret_key \$TEST_NGINX_SEAL_DIR/a.key;
    ai_gateway_secret_key env=AI_GATEWAY_TEST_SEAL_KEY_B;
    ai_gateway_config ../html/gw.json;
    ai_gateway_redis redis://127.0.0.1:$::redis_port prefix=$::prefix-22;
    ai_gateway_config_source redis node=t123;
$::echo_server"
--- user_files eval
[["gw.json" => main::sealed_config($::sealed_a, name => 'file')]]
--- config eval: $::routed_location
--- init
my $doc = main::sealed_config($::sealed_b, name => 'redis');
Test::AIGateway::Redis::publish_snapshot($::redis_port, "$::prefix-22", 1, 'e', $doc);
main::wait_status(qr/"applied":\{[^{}]*"source":"redis"/);
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- more_headers
Authorization: Bearer sk-client-1
--- response_body
auth=[Bearer sk-sealed-provider-key] x-api-key=[]
--- response_headers
X-Target: redis
--- error_log eval
qr/\[notice\] .*ai_gateway: applied configuration snapshot 1 \(was file file\)/



=== TEST 23: a snapshot from Redis sealed with a key the node lacks is refused: the node keeps its snapshot
--- http_config eval
"    ai_gateway_secret_key \$TEST_NGINX_SEAL_DIR/a.key;
    ai_gateway_config ../html/gw.json;
    ai_gateway_redis redis://127.0.0.1:$::redis_port prefix=$::prefix-23;
    ai_gateway_config_source redis node=t123;
$::echo_server"
--- user_files eval
[["gw.json" => main::sealed_config($::sealed_a, name => 'file')]]
--- config eval: $::routed_location
--- init
my $doc = main::sealed_config($::sealed_b, name => 'redis');
Test::AIGateway::Redis::publish_snapshot($::redis_port, "$::prefix-23", 1, 'e', $doc);
main::wait_status(qr/"reason":"invalid"/);
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- more_headers
Authorization: Bearer sk-client-1
--- response_body
auth=[Bearer sk-sealed-provider-key] x-api-key=[]
--- response_headers
X-Target: file
--- error_log eval
qr/\[error\] .*ai_gateway: refused snapshot 1 \(epoch "e"\): targets\[0\]\.credential\.sealed: sealed with key id 03f7babb, this node has 7bffbd17/
--- no_error_log
[alert]
[crit]
