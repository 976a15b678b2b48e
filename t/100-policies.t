# Namespace policies, one block per policy type (t/fixtures/policies.json): the status and
# OpenAI-shaped error of each refusal, OpenAI's x-ratelimit-* headers, Retry-After, dry-run,
# clamping max_tokens, token reservation and settlement, a full limit zone, and nginx -t
# errors. Counters are per nginx start: each block starts nginx afresh and runs once.
use lib 't/lib';
use Test::AIGateway 'no_plan';

repeat_each(1);

our $chat = '{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}';
sub chat { [map { "POST /v1/chat/completions\n$chat" } 1 .. shift] }

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
    ai_gateway_config $TEST_NGINX_FIXTURES/policies.json;
    ai_gateway_limit_zone limits 64k;
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
        add_header X-Reason $ai_gateway_reason always;
        add_header X-Policy $ai_gateway_policy always;
        add_header X-Dry-Run $ai_gateway_dry_run always;
        add_header X-Max-Tokens $ai_gateway_max_tokens always;
    }
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: requests per window: the limit passes, the next gets 429 with Retry-After and OpenAI's headers
--- request eval
main::chat(4)
--- more_headers
Authorization: Bearer sk-pol-rpm
--- error_code eval
[200, 200, 200, 429]
--- response_headers_like eval
["x-ratelimit-limit-requests: 3\nx-ratelimit-remaining-requests: 2\nx-ratelimit-reset-requests: 1m[0-3]s\nRetry-After: ",
 "x-ratelimit-limit-requests: 3\nx-ratelimit-remaining-requests: 1",
 "x-ratelimit-limit-requests: 3\nx-ratelimit-remaining-requests: 0",
 "x-ratelimit-limit-requests: 3\nx-ratelimit-remaining-requests: 0\nx-ratelimit-reset-requests: 1m[0-3]s\nRetry-After: 6[0-3]\nContent-Type: application/json\nX-Reason: requests_limit\nX-Policy: requests/60s"]
--- response_body_like eval
[qr/"object":"chat.completion"/, qr/"object":"chat.completion"/, qr/"object":"chat.completion"/,
 qr/^\{"error":\{"message":"Rate limit reached for requests: limit 3, used 3, requested 1\. Please retry after the time in the Retry-After header\.","type":"requests","param":null,"code":"rate_limit_exceeded"\}\}$/]



=== TEST 2: rejections are logged at ai_gateway_policy_log_level (here notice) with the excess
--- config
    location /v1/ {
        ai_gateway on;
        ai_gateway_policy_log_level notice;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
POST /v1/chat/completions
{"model":"gpt-4o","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-pol-tpm
--- error_code: 429
--- error_log eval
qr/\[notice\] .*ai_gateway: rejected with 429 tokens_limit, namespace "tpm", policy "tokens\/60s", limit 200, used 0, requested 508, client: /
--- no_error_log
[warn]
[error]



=== TEST 3: models allow-list: 403 model_not_allowed, globs match
--- request eval
["POST /v1/chat/completions\n{\"model\":\"gpt-5\",\"messages\":[]}",
 "POST /v1/chat/completions\n{\"model\":\"gpt-4o-mini\",\"messages\":[]}",
 "POST /v1/chat/completions\n{\"model\":\"mock-gpt\",\"messages\":[]}"]
--- more_headers
Authorization: Bearer sk-pol-models
--- error_code eval
[403, 200, 200]
--- response_headers eval
["X-Reason: model_not_allowed\nX-Policy: models", "X-Reason: \n!x-ratelimit-limit-requests", ""]
--- response_body_like eval
[qr/^\{"error":\{"message":"The requested model is not allowed for this namespace\.","type":"permission_error","param":null,"code":"model_not_allowed"\}\}$/,
 qr/chat\.completion/, qr/chat\.completion/]



=== TEST 4: message rules: a denied header value, an allow rule on a body field (missing field refused)
--- request eval
["POST /v1/chat/completions\n{\"model\":\"m\",\"metadata\":{\"team\":\"red\"},\"messages\":[]}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"metadata\":{\"team\":\"green\"},\"messages\":[]}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"messages\":[]}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"metadata\":{\"team\":\"blue\"},\"messages\":[]}"]
--- more_headers eval
["Authorization: Bearer sk-pol-message\nX-Tag: blocked",
 "Authorization: Bearer sk-pol-message",
 "Authorization: Bearer sk-pol-message",
 "Authorization: Bearer sk-pol-message\nX-Tag: fine"]
--- error_code eval
[403, 403, 403, 200]
--- response_headers eval
["X-Reason: message_denied\nX-Policy: message",
 "X-Reason: message_denied\nX-Policy: team-required",
 "X-Reason: message_denied\nX-Policy: team-required",
 "X-Reason: "]
--- response_body_like eval
[qr/"code":"message_denied"/, qr/"code":"message_denied"/, qr/"type":"permission_error"/, qr/chat\.completion/]



=== TEST 5: input tokens: a prompt above the cap is a 400 context_length_exceeded, counted with the model's encoding
--- request eval
["POST /v1/chat/completions\n{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"one two three four five six seven eight nine ten eleven twelve thirteen fourteen\"}]}",
 "POST /v1/chat/completions\n{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"one two three\"}]}"]
--- more_headers
Authorization: Bearer sk-pol-input
--- error_code eval
[400, 200]
--- response_body_like eval
[qr/^\{"error":\{"message":"This request's input has 21 tokens; this namespace allows at most 20\.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"\}\}$/,
 qr/chat\.completion/]



=== TEST 5b: the log line names the namespace, the policy and the excess
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"one two three four five six seven eight nine ten eleven twelve thirteen fourteen"}]}
--- more_headers
Authorization: Bearer sk-pol-input
--- error_code: 400
--- error_log
ai_gateway: rejected with 400 context_length_exceeded, namespace "input", policy "input_tokens", input 21, max 20, client: 127.0.0.1



=== TEST 6: output tokens, action reject: max_tokens above the cap is a 400
--- request eval
["POST /v1/chat/completions\n{\"model\":\"m\",\"max_tokens\":51,\"messages\":[]}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"max_completion_tokens\":50,\"messages\":[]}"]
--- more_headers
Authorization: Bearer sk-pol-outrej
--- error_code eval
[400, 200]
--- response_body_like eval
[qr/^\{"error":\{"message":"max_tokens is 51; this namespace allows at most 50 output tokens\.","type":"invalid_request_error","param":"max_tokens","code":"max_tokens_too_large"\}\}$/,
 qr/chat\.completion/]



=== TEST 7: output tokens, action clamp: max_tokens is lowered (or set) and the provider stops there
--- request eval
["POST /v1/chat/completions\n{\"model\":\"m\",\"max_tokens\":51,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
 "POST /v1/messages\n{\"model\":\"claude-x\",\"max_tokens\":1000,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"max_tokens\":3,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"]
--- more_headers
Authorization: Bearer sk-pol-outclamp
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["X-Max-Tokens: 51", "X-Max-Tokens: ", "X-Max-Tokens: 1000", "X-Max-Tokens: 3"]
--- response_body_like eval
[qr/"finish_reason":"length".*"completion_tokens":5,/,
 qr/"finish_reason":"length".*"completion_tokens":5,/,
 qr/"stop_reason":"max_tokens".*"output_tokens":5\}/,
 qr/"finish_reason":"length".*"completion_tokens":3,/]



=== TEST 7b: a small output limit in one field does not hide a large one in another
Chat honours max_tokens as well as max_completion_tokens, Messages max_tokens, Responses
max_output_tokens: the largest field the client sent is the one checked (reject) and every
field above the cap is lowered (clamp). The mock's Messages honour max_tokens.
--- request eval
["POST /v1/chat/completions\n{\"model\":\"m\",\"max_tokens\":100000,\"max_completion_tokens\":10,\"messages\":[]}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"max_completion_tokens\":10,\"max_output_tokens\":51,\"messages\":[]}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"max_completion_tokens\":10,\"max_tokens\":50,\"messages\":[]}"]
--- more_headers
Authorization: Bearer sk-pol-outrej
--- error_code eval
[400, 400, 200]
--- response_body_like eval
[qr/"message":"max_tokens is 100000; this namespace allows at most 50 output tokens\.".*"code":"max_tokens_too_large"/,
 qr/"message":"max_tokens is 51; this namespace allows at most 50 output tokens\."/,
 qr/chat\.completion/]



=== TEST 7c: clamp: every output field above the cap is lowered, whichever the client combined
--- request eval
["POST /v1/messages\n{\"model\":\"claude-x\",\"max_tokens\":100000,\"max_completion_tokens\":3,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
 "POST /v1/messages\n{\"model\":\"claude-x\",\"max_output_tokens\":2,\"max_tokens\":4000,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"]
--- more_headers
Authorization: Bearer sk-pol-outclamp
--- error_code eval
[200, 200]
--- response_headers eval
["X-Max-Tokens: 100000", "X-Max-Tokens: 4000"]
--- response_body_like eval
[qr/"stop_reason":"max_tokens".*"output_tokens":5\}/,
 qr/"stop_reason":"max_tokens".*"output_tokens":5\}/]



=== TEST 8: tokens per window: prompt + max_tokens reserved at admission, settled with the provider's usage
The prompt is reserved as its upper bound (text bytes and framing: 12) until the exact count
(8) is needed. The first request reserves 12 + 80 (remaining 108) and used 7 + 38 = 45 (the
provider's usage); the second sees 45 used and reserves 92 (remaining 63); the third 45 + 45
+ 92 (remaining 18); the fourth does not fit with the bound, is counted exactly (8 + 80 = 88)
and still does not fit in the 65 left: 429, type "tokens".
--- request eval
[map { "POST /v1/chat/completions\n{\"model\":\"gpt-4o\",\"max_tokens\":80,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" } 1 .. 4]
--- more_headers
Authorization: Bearer sk-pol-tpm
--- error_code eval
[200, 200, 200, 429]
--- response_headers_like eval
["x-ratelimit-limit-tokens: 200\nx-ratelimit-remaining-tokens: 108\nx-ratelimit-reset-tokens: 1m[0-3]s",
 "x-ratelimit-remaining-tokens: 63",
 "x-ratelimit-remaining-tokens: 18",
 "x-ratelimit-remaining-tokens: 65\nRetry-After: 6[0-3]\nX-Reason: tokens_limit\nX-Policy: tokens/60s"]
--- response_body_like eval
[qr/"total_tokens":45/, qr/"total_tokens":45/, qr/"total_tokens":45/,
 qr/^\{"error":\{"message":"Rate limit reached for tokens: limit 200, used 135, requested 88\. Please retry after the time in the Retry-After header\.","type":"tokens","param":null,"code":"rate_limit_exceeded"\}\}$/]



=== TEST 9: a request larger than the whole token window is told so
--- request
POST /v1/chat/completions
{"model":"gpt-4o","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-pol-tpm
--- error_code: 429
--- response_body_like: ^\{"error":\{"message":"Request too large for the tokens limit: limit 200, requested 508 \(prompt and max_tokens\)\. Lower max_tokens or the input\.","type":"tokens"
--- error_log
[warn]
ai_gateway: rejected with 429 tokens_limit, namespace "tpm", policy "tokens/60s", limit 200, used 0, requested 508



=== TEST 10: a daily request quota: 429 insufficient_quota until the UTC day ends
--- request eval
main::chat(3)
--- more_headers
Authorization: Bearer sk-pol-quota
--- error_code eval
[200, 200, 429]
--- response_headers_like eval
["x-ratelimit-limit-requests: 2\nx-ratelimit-remaining-requests: 1\nx-ratelimit-reset-requests: (\\d+h)?(\\d+m)?\\d+s",
 "x-ratelimit-remaining-requests: 0",
 "x-ratelimit-remaining-requests: 0\nRetry-After: \\d+\nX-Reason: requests_quota\nX-Policy: quota/day/requests"]
--- response_body_like eval
[qr/chat\.completion/, qr/chat\.completion/,
 qr/^\{"error":\{"message":"You exceeded your request quota: limit 2, used 2, requested 1\.","type":"insufficient_quota","param":null,"code":"insufficient_quota"\}\}$/]
--- response_body_unlike
Retry-After: 0\b



=== TEST 11: dry run: logged, counted and shown in variables, never refused
--- request eval
main::chat(3)
--- more_headers
Authorization: Bearer sk-pol-dryrun
--- error_code eval
[200, 200, 200]
--- response_headers eval
["X-Dry-Run: \nX-Policy: \nX-Reason: \nx-ratelimit-remaining-requests: 0",
 "X-Dry-Run: requests_limit\nX-Policy: rpm-trial\nX-Reason: \nx-ratelimit-remaining-requests: 0\n!Retry-After",
 "X-Dry-Run: requests_limit\nX-Policy: rpm-trial"]



=== TEST 11b: dry run of a stateless rule: the request goes through, the log says what would have happened
--- http_config
    ai_gateway_config ../html/gw.json;
--- user_files
>>> gw.json
{"namespaces": [{"code": "trial", "api_keys": ["871abd44cf4c03caeeea6674bbb29c0edc4037e0eff2108a5f94bf2f98417fd4"],
  "policies": [{"type": "models", "allow": ["gpt-4o*"], "dry_run": true}]}]}
--- request
POST /v1/chat/completions
{"model":"mock-gpt","messages":[]}
--- more_headers
Authorization: Bearer sk-pol-dryrun
--- error_code: 200
--- response_headers
X-Dry-Run: model_not_allowed
X-Policy: models
X-Reason:
--- error_log
[warn]
ai_gateway: dry run, would reject with 403 model_not_allowed, namespace "trial", policy "models"



=== TEST 12: a full limit zone: idle counters are reused; with every slot busy, 503 limit_zone_full
A 32k zone holds 162 slots, of which 3/4 are used before a lookup fails; the per-model
concurrency counters of finished requests are idle and are reused, so sequential requests
with 200 distinct models all pass.
--- http_config
    ai_gateway_config $TEST_NGINX_FIXTURES/policies.json;
    ai_gateway_limit_zone limits 32k;
--- request eval
[map { "POST /v1/chat/completions\n{\"model\":\"model-$_\",\"messages\":[]}" } 1 .. 200]
--- more_headers
Authorization: Bearer sk-pol-full
--- error_code eval
[(200) x 200]



=== TEST 13: counting policies need ai_gateway_limit_zone
--- http_config
    ai_gateway_config $TEST_NGINX_FIXTURES/policies.json;
--- config
--- must_die
--- error_log
the gateway config has counting policies (requests, tokens, quota, concurrency) but no "ai_gateway_limit_zone" is set in the http block



=== TEST 14: policy config errors name the JSON path
--- http_config
    ai_gateway_config ../html/gw.json;
    ai_gateway_limit_zone limits 64k;
--- user_files
>>> gw.json
{"namespaces": [{"code": "a", "policies": [{"type": "requests", "limit": 10}]}]}
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*ai_gateway: invalid config ".*gw\.json": namespaces\[0\]\.policies\[0\]\.window: is required/



=== TEST 15: directive errors
--- http_config
    ai_gateway_config $TEST_NGINX_FIXTURES/policies.json;
    ai_gateway_limit_zone limits 64k;
    ai_gateway_policy_log_level debug;
--- config
--- must_die
--- error_log
invalid value "debug" in "ai_gateway_policy_log_level" directive, it must be "info", "notice", "warn" or "error"



=== TEST 16: rejections are counted by reason in the metrics
--- http_config
    ai_gateway_config $TEST_NGINX_FIXTURES/policies.json;
    ai_gateway_limit_zone limits 64k;
    ai_gateway_metrics_zone metrics 256k;
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location = /metrics {
        ai_gateway_metrics;
    }
--- request eval
[@{main::chat(5)}, "GET /metrics"]
--- more_headers
Authorization: Bearer sk-pol-rpm
--- error_code eval
[200, 200, 200, 429, 429, 200]
--- response_body_like eval
[qr/chat/, qr/chat/, qr/chat/, qr/rate_limit_exceeded/, qr/rate_limit_exceeded/,
 qr/gateway_rejections_total\{namespace="rpm",reason="requests_limit"\} 2\n/]



=== TEST 17: a provider streaming past the output cap: the stream ends cleanly at the cap (OpenAI: finish_reason length, then [DONE])
The client sends no max_tokens and the policy rejects rather than clamps, so the provider
is not told the cap and streams its whole reply.
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-pol-outcut
--- error_code: 200
--- response_body_like eval
qr/\A(data: \{"choices":\[\{"delta":\{"content":"[^"]*"(,"refusal":null,"role":"assistant")?\},"finish_reason":null,"index":0,"logprobs":null\}\],"created":\d+,"id":"chatcmpl-mock\d+","model":"gpt-4o","object":"chat\.completion\.chunk","system_fingerprint":null\}\n\n){6}data: \{"id":"chatcmpl-mock\d+","object":"chat\.completion\.chunk","created":\d+,"model":"gpt-4o","choices":\[\{"index":0,"delta":\{\},"logprobs":null,"finish_reason":"length"\}\]\}\n\ndata: \[DONE\]\n\n\z/
--- error_log
ai_gateway: stream ended at the output cap (5 tokens sent)



=== TEST 17b: ... and the provider's usage sent after the cap's ending still counts
The client gets 5 tokens, the provider streamed (and billed) its whole reply (the mock's 38 pieces): the gateway
added include_usage, reads the bytes the client never gets, and logs the provider's numbers.
--- http_config
    ai_gateway_config $TEST_NGINX_FIXTURES/policies.json;
    ai_gateway_limit_zone limits 64k;
    log_format gw 'gwlog completion=$ai_gateway_completion_tokens source=$ai_gateway_usage_source';
--- config
    location /v1/ {
        ai_gateway on;
        access_log logs/error.log gw;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-pol-outcut
--- error_code: 200
--- response_body_like: "finish_reason":"length"\}\]\}\n\ndata: \[DONE\]\n\n\z
--- wait: 0.2
--- error_log
ai_gateway: stream ended at the output cap (5 tokens sent)
gwlog completion=38 source=provider



=== TEST 18: the same for Anthropic Messages (content_block_stop, message_delta max_tokens, message_stop)
The gateway clamps max_tokens to 5; a location standing in for a provider that ignores it
puts 1000 back before the mock provider answers.
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ignoring/;
        add_header X-Completion $ai_gateway_completion_tokens always;
    }
    location /ignoring/ {
        proxy_set_body '{"model":"claude-x","stream":true,"max_tokens":1000,"messages":[{"role":"user","content":"hi"}]}';
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1/;
    }
--- request
POST /v1/messages
{"model":"claude-x","stream":true,"max_tokens":1000,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-pol-outclamp
--- error_code: 200
--- response_body_like eval
qr/\Aevent: message_start\n.*?(event: content_block_delta\ndata: [^\n]*\n\n){5}event: content_block_stop\ndata: \{"type":"content_block_stop","index":0\}\n\nevent: message_delta\ndata: \{"type":"message_delta","delta":\{"stop_reason":"max_tokens","stop_sequence":null\},"usage":\{"output_tokens":5\}\}\n\nevent: message_stop\ndata: \{"type":"message_stop"\}\n\n\z/s
--- error_log
ai_gateway: stream ended at the output cap (5 tokens sent)



=== TEST 19: dry-run hits are counted in the metrics (and are not rejections)
--- http_config
    ai_gateway_config $TEST_NGINX_FIXTURES/policies.json;
    ai_gateway_limit_zone limits 64k;
    ai_gateway_metrics_zone metrics 256k;
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location = /metrics {
        ai_gateway_metrics;
    }
--- request eval
[@{main::chat(3)}, "GET /metrics"]
--- more_headers
Authorization: Bearer sk-pol-dryrun
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/chat/, qr/chat/, qr/chat/,
 qr/\ngateway_policy_dry_run_total\{namespace="dryrun",reason="requests_limit"\} 2\n(?![\s\S]*gateway_rejections_total\{namespace="dryrun")/]



=== TEST 20: the provider's own x-ratelimit-* headers (its account with the provider) are replaced by the namespace's
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/provider/;
    }
    location /provider/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1/;
        add_header x-ratelimit-limit-requests 10000;
        add_header x-ratelimit-remaining-requests 9999;
        add_header x-ratelimit-limit-tokens 30000000;
        add_header X-Provider yes;
    }
--- request
POST /v1/chat/completions
{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-pol-rpm
--- error_code: 200
--- response_headers
x-ratelimit-limit-requests: 3
x-ratelimit-remaining-requests: 2
x-ratelimit-limit-tokens:
X-Provider: yes



=== TEST 21: a namespace without policies gets no x-ratelimit-* headers of the gateway (the provider's pass)
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/provider/;
    }
    location /provider/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1/;
        add_header x-ratelimit-limit-requests 10000;
    }
--- http_config
    ai_gateway_config $TEST_NGINX_FIXTURES/gateway.json;
--- request
POST /v1/chat/completions
{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 200
--- response_headers
x-ratelimit-limit-requests: 10000
