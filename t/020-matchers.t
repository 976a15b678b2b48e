# Namespace matchers (t/fixtures/gateway.json): every operator on headers, query arguments
# and JSON body paths, and the evaluation order (priority ascending, then declaration).
use lib 't/lib';
use Test::AIGateway 'no_plan';

# every request twice against the same two workers: nothing may leak between requests
repeat_each(2);
master_on();
workers(2);

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->config) {
        $block->set_value("config", $gateway_location);
    }
    if (!defined $block->error_code) {
        $block->set_value("error_code", 200);
    }
});

run_tests();

__DATA__

=== TEST 1: header equals (header names are case-insensitive)
--- request
GET /v1/models
--- more_headers
x-tenant: eq
--- response_headers
X-NS: hdr-eq
X-Via: matcher



=== TEST 2: header equals is case-sensitive on the value
--- request
GET /v1/models
--- more_headers
X-Tenant: EQ
--- error_code: 401
--- response_headers
!X-Via



=== TEST 3: header contains
--- request
GET /v1/models
--- more_headers
X-Tenant: a-mid-b
--- response_headers
X-NS: hdr-contains



=== TEST 4: header starts_with
--- request
GET /v1/models
--- more_headers
X-Tenant: pre-x
--- response_headers
X-NS: hdr-prefix



=== TEST 5: header ends_with
--- request
GET /v1/models
--- more_headers
X-Tenant: x-suf
--- response_headers
X-NS: hdr-suffix



=== TEST 6: header regex
--- request
GET /v1/models
--- more_headers
X-Tenant: rx-42
--- response_headers
X-NS: hdr-regex



=== TEST 7: header regex that does not match the whole value
--- request
GET /v1/models
--- more_headers
X-Tenant: rx-42x
--- error_code: 401



=== TEST 8: header not_equals matches a present header with another value
--- request
GET /v1/models
--- more_headers
X-Env: staging
--- response_headers
X-NS: hdr-ne



=== TEST 9: header not_equals does not match the excluded value
--- request
GET /v1/models
--- more_headers
X-Env: prod
--- error_code: 401



=== TEST 10: not_equals never matches a missing header
--- request
GET /v1/models
--- error_code: 401



=== TEST 11: query argument equals (percent-decoded)
--- request
GET /v1/models?x=1&tenant=%711
--- response_headers
X-NS: qry



=== TEST 12: body field by dot path
--- request
POST /v1/chat/completions
{"model":"mock-gpt","messages":[],"metadata":{"team":"blue"}}
--- response_headers
X-NS: bdy



=== TEST 13: body path through an array index
--- request
POST /v1/chat/completions
{"model":"mock-gpt","messages":[{"role":"user","name":"caller-7","content":"hi"}]}
--- response_headers
X-NS: bdy-idx



=== TEST 14: a body field of another type does not match a string value
--- request
POST /v1/chat/completions
{"model":"mock-gpt","messages":[],"metadata":{"team":["blue"]}}
--- error_code: 401



=== TEST 15: a lower priority number is tried first (prio-low, 5, beats prio-high, 50)
--- request
GET /v1/models
--- more_headers
X-Prio: p1
--- response_headers
X-NS: prio-low



=== TEST 16: equal priorities are tried in declaration order
--- request
GET /v1/models
--- more_headers
X-Tie: t
--- response_headers
X-NS: tie-a



=== TEST 17: the later namespace of a tie still matches on its own
--- request
GET /v1/models
--- more_headers
X-Tie: tx
--- response_headers
X-NS: tie-b



=== TEST 18: a key beats every matcher
--- request
GET /v1/models
--- more_headers
Authorization: Bearer sk-alpha-1
X-Prio: p1
--- response_headers
X-NS: alpha
X-Via: key
