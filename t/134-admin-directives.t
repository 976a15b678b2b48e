# The config center's directives: nginx -t refuses what cannot work and says why (never
# repeating a password), nginx starts while MySQL is unreachable (the API answers 503 JSON,
# the gateway serves), and the API's own errors need no database. The running config
# center is in t/130 (one node), t/131 (two nodes, faults) and t/132 (the SDKs).
use lib 't/lib';
use Test::AIGateway 'no_plan';

run_tests();

__DATA__

=== TEST 1: ai_gateway_mysql needs a mysql:// URL
--- http_config
    ai_gateway_mysql postgres://127.0.0.1/db;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_mysql: the URL must start with mysql:\/\//



=== TEST 2: ai_gateway_mysql needs a database in the URL
--- http_config
    ai_gateway_mysql mysql://root@127.0.0.1:3306;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_mysql: the URL must name a database/



=== TEST 3: a URL that does not parse is refused without repeating it (it may hold a password)
--- http_config
    ai_gateway_mysql mysql://root:s3cret-pw@[::1/db;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_mysql: invalid URL \(cannot parse it\)/
--- no_error_log
s3cret-pw



=== TEST 4: unknown parameters, a bad pool, a bad timeout
--- http_config
    ai_gateway_mysql mysql://root@127.0.0.1/db pool=0;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_mysql: invalid pool "0" \(1 to 64 connections per worker\)/



=== TEST 5: a bad timeout
--- http_config
    ai_gateway_mysql mysql://root@127.0.0.1/db timeout=soon;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_mysql: invalid timeout "soon"/



=== TEST 6: an unknown parameter
--- http_config
    ai_gateway_mysql mysql://root@127.0.0.1/db pol=2;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_mysql: invalid parameter "pol=2"/



=== TEST 7: a password file that cannot be read
--- http_config
    ai_gateway_mysql mysql://root@127.0.0.1/db password_file=/nonexistent/pw;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_mysql: cannot read "\/nonexistent\/pw": No such file or directory/



=== TEST 8: ai_gateway_mysql twice
--- http_config
    ai_gateway_mysql mysql://root@127.0.0.1/db;
    ai_gateway_mysql mysql://root@127.0.0.1/db;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway_mysql" directive is duplicate/



=== TEST 9: ai_gateway_admin needs ai_gateway_mysql
--- config
    location /api/ { ai_gateway_admin; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"ai_gateway_admin" needs "ai_gateway_mysql" in the http block/



=== TEST 10: the bootstrap admin needs a password from a file or the environment
--- http_config
    ai_gateway_admin_bootstrap user=admin;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_admin_bootstrap: needs file=<path> or env=<NAME>/



=== TEST 11: a bootstrap password from an unset environment variable
--- http_config
    ai_gateway_admin_bootstrap env=AI_GATEWAY_T134_UNSET;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_admin_bootstrap: environment variable "AI_GATEWAY_T134_UNSET" is not set/



=== TEST 12: a bootstrap password too short is refused without being repeated
--- http_config
    ai_gateway_admin_bootstrap file=../html/pw;
--- user_files
>>> pw
short-pw
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_admin_bootstrap: the password in ".*pw" must be 12 to 1024 characters/
--- no_error_log
short-pw



=== TEST 13: a bad user name
--- http_config
    ai_gateway_admin_bootstrap user=a/b file=../html/pw;
--- user_files
>>> pw
long enough password
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway_admin_bootstrap: invalid user "a\/b"/



=== TEST 14: MySQL unreachable at start: nginx starts, the API answers 503 JSON
--- http_config
    ai_gateway_mysql mysql://root@127.0.0.1:1/ai_gateway timeout=300ms;
--- config
    location /api/ { ai_gateway_admin; }
--- request
GET /api/v1/namespaces
--- error_code: 503
--- response_headers
Content-Type: application/json
Retry-After: 1
--- response_body_like: ^\{"error":\{"code":"store_unavailable","details":\[\],"message":"MySQL: .*"\}\}$
--- no_error_log
[alert]
[emerg]



=== TEST 15: ... while the gateway in the same nginx serves
--- http_config
    ai_gateway_mysql mysql://root@127.0.0.1:1/ai_gateway timeout=300ms;
--- config eval
"    location /api/ { ai_gateway_admin; }\n" . $Test::AIGateway::gateway_location
--- request
GET /v1/models
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 200
--- response_headers
X-NS: alpha



=== TEST 16: the OpenAPI document needs no database
--- http_config
    ai_gateway_mysql mysql://root@127.0.0.1:1/ai_gateway timeout=300ms;
--- config
    location /api/ { ai_gateway_admin; }
--- request
GET /api/v1/openapi.json
--- error_code: 200
--- response_body_like: "openapi":"3\.1\.\d+"



=== TEST 17: an unknown path is a 404 JSON, a wrong method a 405 with Allow
--- http_config
    ai_gateway_mysql mysql://root@127.0.0.1:1/ai_gateway timeout=300ms;
--- config
    location /api/ { ai_gateway_admin; }
--- request eval
["GET /api/v1/nothing-here", "DELETE /api/v1/settings"]
--- error_code eval
[404, 405]
--- response_body_like eval
['^\{"error":\{"code":"not_found"', '^\{"error":\{"code":"method_not_allowed"']



=== TEST 18: a body over client_max_body_size is a 413 in the API's JSON
--- http_config
    ai_gateway_mysql mysql://root@127.0.0.1:1/ai_gateway timeout=300ms;
--- config
    location /api/ {
        client_max_body_size 1k;
        ai_gateway_admin;
    }
--- request eval
"POST /api/v1/namespaces\n" . ("x" x 4096)
--- more_headers
Content-Type: application/json
--- error_code: 413
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"error":\{"code":"request_too_large","details":\[\],"message":"the request body is larger than this location's client_max_body_size"\}\}$
--- no_error_log
[alert]
[emerg]
