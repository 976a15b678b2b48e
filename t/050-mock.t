# The built-in mock provider (ai_gateway_mock_provider), on its own.
use lib 't/lib';
use Test::AIGateway 'no_plan';

run_tests();

__DATA__

=== TEST 1: OpenAI chat completion JSON with usage
--- config
    location /v1/ {
        ai_gateway_mock_provider;
    }
--- request
POST /v1/chat/completions
{"model":"gpt-4o-mini","messages":[{"role":"user","content":"12345678"}],"max_tokens":2}
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"choices":\[\{"finish_reason":"length","index":0,"logprobs":null,"message":\{"content":"Hello!","refusal":null,"role":"assistant"\}\}\],"created":\d+,"id":"chatcmpl-mock[0-9a-f]{12}","model":"gpt-4o-mini","object":"chat\.completion","system_fingerprint":null,"usage":\{"completion_tokens":2,"prompt_tokens":8,"total_tokens":10\}\}$



=== TEST 2: latency delays the response header
--- http_config
    log_format t 'mocklog rt=$request_time';
--- config
    location /v1/ {
        ai_gateway_mock_provider latency=300ms;
        access_log logs/error.log t;
    }
--- request
GET /v1/models
--- error_code: 200
--- response_body_like: "object":"list"
--- wait: 0.2
--- error_log eval
qr/mocklog rt=0\.(29[5-9]|[3-9])/



=== TEST 3: streamed events are paced by the interval (6 events, 5 gaps of 100 ms)
--- http_config
    log_format t 'mocklog rt=$request_time';
--- config
    location /v1/ {
        ai_gateway_mock_provider interval=100ms;
        access_log logs/error.log t;
    }
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"max_tokens":3,"messages":[]}
--- error_code: 200
--- response_headers
Content-Type: text/event-stream
Cache-Control: no-cache
--- response_body_like: \A(data: \{.*\}\n\n){5}data: \[DONE\]\n\n\z
--- wait: 0.2
--- error_log eval
qr/mocklog rt=0\.(49[5-9]|[5-9])/



=== TEST 4: Anthropic messages stream with its event names
--- config
    location /v1/ {
        ai_gateway_mock_provider;
    }
--- request
POST /v1/messages
{"model":"claude","max_tokens":1,"stream":true,"messages":[{"role":"user","content":"hi"}]}
--- error_code: 200
--- response_body_like: \Aevent: message_start\ndata: .*\n\nevent: content_block_start\n.*event: ping\n.*event: content_block_delta\ndata: \{"delta":\{"text":"Hello","type":"text_delta"\}.*event: content_block_stop\n.*event: message_delta\ndata: \{"delta":\{"stop_reason":"max_tokens".*"usage":\{"output_tokens":1\}\}\n\nevent: message_stop\ndata: \{"type":"message_stop"\}\n\n\z



=== TEST 5: Anthropic errors come in Anthropic's shape
--- config
    location /v1/ {
        ai_gateway_mock_provider;
    }
--- request
POST /v1/messages
{"model":"claude","messages":[]}
--- error_code: 400
--- response_body
{"error":{"message":"max_tokens: Field required","type":"invalid_request_error"},"type":"error"}



=== TEST 6: unknown paths and methods
--- config
    location /v1/ {
        ai_gateway_mock_provider;
    }
--- request
DELETE /v1/chat/completions
--- error_code: 405
--- response_body_like: "code":"method_not_allowed"
