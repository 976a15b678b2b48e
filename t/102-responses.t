# The output_tokens policy on the OpenAI Responses API (t/fixtures/policies.json): a clamp
# lowers (or adds) max_output_tokens, and a provider streaming past the cap gets its stream
# ended with OpenAI's own ending for a max_output_tokens stop (the *.done events of what is
# open, then response.incomplete with reason max_output_tokens). The built-in mock answers
# /v1/responses and echoes the max_output_tokens it was given. Each block starts nginx afresh.
use lib 't/lib';
use Test::AIGateway 'no_plan';

repeat_each(1);

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
    }
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: clamp: a Responses request's max_output_tokens above the cap is lowered (the provider gets 5)
--- request
POST /v1/responses
{"model":"gpt-4o","max_output_tokens":1000,"input":"hi"}
--- more_headers
Authorization: Bearer sk-pol-outclamp
--- error_code: 200
--- response_body_like: "incomplete_details":\{"reason":"max_output_tokens"\},.*"max_output_tokens":5,.*"status":"incomplete",.*"output_tokens":5,



=== TEST 2: clamp: without max_output_tokens, the Responses API's own field is added
--- request
POST /v1/responses
{"model":"gpt-4o","input":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer sk-pol-outclamp
--- error_code: 200
--- response_body_like: "max_output_tokens":5,.*"output_tokens":5,



=== TEST 3: a provider streaming past the output cap: the stream ends with OpenAI's max_output_tokens ending
The policy rejects rather than clamps and the client sends no max_output_tokens, so the
provider is not told the cap and streams its whole reply.
--- request
POST /v1/responses
{"model":"gpt-4o","stream":true,"input":"hi"}
--- more_headers
Authorization: Bearer sk-pol-outcut
--- error_code: 200
--- response_body_like eval
qr/\Aevent: response\.created\n.*?(event: response\.output_text\.delta\ndata: [^\n]*\n\n){5}event: response\.output_text\.done\ndata: \{"content_index":0,"item_id":"msg_mock[0-9a-f]{16}","logprobs":\[\],"output_index":0,"sequence_number":9,"text":"Hello! This is a","type":"response\.output_text\.done"\}\n\nevent: response\.content_part\.done\ndata: \{"content_index":0,"item_id":"msg_mock[0-9a-f]{16}","output_index":0,"part":\{"annotations":\[\],"logprobs":\[\],"text":"Hello! This is a","type":"output_text"\},"sequence_number":10,"type":"response\.content_part\.done"\}\n\nevent: response\.output_item\.done\ndata: \{"item":\{"content":\[\{"annotations":\[\],"logprobs":\[\],"text":"Hello! This is a","type":"output_text"\}\],"id":"msg_mock[0-9a-f]{16}","role":"assistant","status":"incomplete","type":"message"\},"output_index":0,"sequence_number":11,"type":"response\.output_item\.done"\}\n\nevent: response\.incomplete\ndata: \{"response":\{"created_at":\d+,"error":null,"id":"resp_mock[0-9a-f]{16}","incomplete_details":\{"reason":"max_output_tokens"\},"model":"gpt-4o","object":"response","output":\[\{[^\n]*"status":"incomplete","type":"message"\}\],"status":"incomplete","usage":\{"input_tokens":\d+,"input_tokens_details":\{"cached_tokens":0\},"output_tokens":5,"output_tokens_details":\{"reasoning_tokens":0\},"total_tokens":\d+\}\},"sequence_number":12,"type":"response\.incomplete"\}\n\n\z/s
--- error_log
ai_gateway: stream ended at the output cap (5 tokens sent)



=== TEST 4: ... and the provider's usage sent after the cut still counts
The client gets 5 tokens; the provider streamed (and billed) its whole reply (38 pieces): the
gateway reads the bytes the client never gets, response.completed included.
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
POST /v1/responses
{"model":"gpt-4o","stream":true,"input":"hi"}
--- more_headers
Authorization: Bearer sk-pol-outcut
--- error_code: 200
--- response_body_like: "type":"response\.incomplete"\}\n\n\z
--- wait: 0.2
--- error_log
ai_gateway: stream ended at the output cap (5 tokens sent)
gwlog completion=38 source=provider



=== TEST 5: a provider that ignores the clamped max_output_tokens is cut at the cap all the same
A location standing in for such a provider puts 1000 back before the mock answers.
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ignoring/;
    }
    location /ignoring/ {
        proxy_set_body '{"model":"gpt-4o","stream":true,"max_output_tokens":1000,"input":"hi"}';
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1/;
    }
--- request
POST /v1/responses
{"model":"gpt-4o","stream":true,"max_output_tokens":1000,"input":"hi"}
--- more_headers
Authorization: Bearer sk-pol-outclamp
--- error_code: 200
--- response_body_like eval
qr/(event: response\.output_text\.delta\ndata: [^\n]*\n\n){5}event: response\.output_text\.done\n.*"text":"Hello! This is a".*event: response\.incomplete\ndata: [^\n]*"output_tokens":5,[^\n]*\n\n\z/s
--- error_log
ai_gateway: stream ended at the output cap (5 tokens sent)



=== TEST 6: a Responses stream within the cap passes unchanged (the provider's own incomplete ending)
--- request
POST /v1/responses
{"model":"gpt-4o","stream":true,"max_output_tokens":3,"input":"hi"}
--- more_headers
Authorization: Bearer sk-pol-outclamp
--- error_code: 200
--- response_body_like eval
qr/\Aevent: response\.created\n(?:.*?\n\n){4}(event: response\.output_text\.delta\ndata: [^\n]*\n\n){3}event: response\.output_text\.done\n.*event: response\.incomplete\ndata: \{"response":\{[^\n]*"max_output_tokens":3,[^\n]*"output_tokens":3,[^\n]*\},"sequence_number":10,"type":"response\.incomplete"\}\n\n\z/s
--- no_error_log
[error]
stream ended at the output cap
