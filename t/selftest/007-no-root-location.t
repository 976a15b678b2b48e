# Self-test of t/lib/compat: no_root_location() lets a block define `location /`.
use Test::Nginx::Socket 'no_plan';

no_root_location();
run_tests();

__DATA__

=== TEST 1: the block's own root location
--- config
    location / {
        return 200 "mine\n";
    }
--- request
GET /anything
--- response_body
mine
