package Test::AIGateway;

# Project defaults for the t/ suite, on top of Test::Nginx::Socket (OpenResty's data-driven
# format; t/lib/compat has our runner, the upstream library works too):
#
# - every block checks the error log: `--- no_error_log` defaults to [error] [alert]
#   [emerg] [crit] unless the block sets its own (or expects nginx to die);
# - the module's built-in mock provider listens on $TEST_NGINX_MOCK_PORT (added to
#   http_config), so a gateway location can `proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT`;
# - `ai_gateway_config` defaults to t/fixtures/gateway.json when a block's http_config does
#   not name one (blocks can inline their own with --- user_files and `../html/<file>`);
# - $TEST_NGINX_ROOT is the project root, $TEST_NGINX_FIXTURES the fixtures directory;
# - the error log level is info.

use Test::Nginx::Socket -Base;
use Cwd qw(abs_path);
use File::Basename qw(dirname);

my $root = abs_path(dirname(__FILE__) . '/../../..');
$ENV{TEST_NGINX_ROOT}     ||= $root;
$ENV{TEST_NGINX_FIXTURES} ||= "$root/t/fixtures";
$ENV{TEST_NGINX_MOCK_PORT} ||= ($ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984) + 1;

# A gateway location forwarding to the mock provider that echoes the identification back
# in response headers; files use it as their default `--- config`.
our $gateway_location = <<'_EOC_';
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
        add_header X-NS $ai_gateway_namespace always;
        add_header X-Via $ai_gateway_identified_by always;
        add_header X-Reason $ai_gateway_reason always;
    }
_EOC_

our @EXPORT = qw($gateway_location);

no_long_string();

# nginx's own debug log (Debian's nginx is built --with-debug) prints every request header,
# keys included; the module's messages are at info and above.
log_level('info');

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->no_error_log && !defined $block->must_die) {
        $block->set_value("no_error_log", "[error]\n[alert]\n[emerg]\n[crit]\n");
    }

    my $http_config = $block->http_config // '';
    if ($http_config !~ /\bai_gateway_config\b/ && !$block->no_gateway_config) {
        $http_config = "    ai_gateway_config \$TEST_NGINX_FIXTURES/gateway.json;\n"
                     . $http_config;
    }
    if (!$block->no_mock) {
        $http_config .= <<'_EOC_';

    server {
        listen 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        client_max_body_size 10m;
        location / {
            ai_gateway_mock_provider;
        }
    }
_EOC_
    }
    $block->set_value("http_config", $http_config);
});

1;
