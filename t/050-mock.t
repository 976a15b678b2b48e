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



=== TEST 7: OpenAI Responses JSON: a response object with a message, status and usage
--- config
    location /v1/ {
        ai_gateway_mock_provider;
    }
--- request
POST /v1/responses
{"model":"gpt-4o-mini","input":"12345678","instructions":"1234"}
--- more_headers
X-Mock-Seq: 42
X-Mock-Created: 1800000000
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"background":false,"created_at":1800000000,"error":null,"id":"resp_mock000000000000002a","incomplete_details":null,"instructions":"1234","max_output_tokens":null,"metadata":\{\},"model":"gpt-4o-mini","object":"response","output":\[\{"content":\[\{"annotations":\[\],"logprobs":\[\],"text":"Hello! This is a mock reply[^"]*","type":"output_text"\}\],"id":"msg_mock000000000000002a","role":"assistant","status":"completed","type":"message"\}\],.*"status":"completed",.*"usage":\{"input_tokens":9,"input_tokens_details":\{"cached_tokens":0\},"output_tokens":38,"output_tokens_details":\{"reasoning_tokens":0\},"total_tokens":47\},"user":null\}$



=== TEST 8: OpenAI Responses stream cut by max_output_tokens: the real event names, sequence numbers, response.incomplete
--- config
    location /v1/ {
        ai_gateway_mock_provider;
    }
--- request
POST /v1/responses
{"model":"m","stream":true,"max_output_tokens":2,"input":[{"role":"user","content":"hi"}]}
--- error_code: 200
--- response_headers
Content-Type: text/event-stream
--- response_body_like eval
qr/\Aevent: response\.created\ndata: \{.*"sequence_number":0,.*"type":"response\.created"\}\n\nevent: response\.in_progress\n.*event: response\.output_item\.added\n.*event: response\.content_part\.added\n.*event: response\.output_text\.delta\ndata: \{"content_index":0,"delta":"Hello",.*"sequence_number":4,"type":"response\.output_text\.delta"\}\n\nevent: response\.output_text\.delta\ndata: \{"content_index":0,"delta":"!",.*\n\nevent: response\.output_text\.done\ndata: [^\n]*"text":"Hello!"[^\n]*\n\nevent: response\.content_part\.done\n.*event: response\.output_item\.done\ndata: [^\n]*"status":"incomplete"[^\n]*\n\nevent: response\.incomplete\ndata: \{"response":\{.*"incomplete_details":\{"reason":"max_output_tokens"\}.*"status":"incomplete",.*"usage":\{"input_tokens":7,.*"output_tokens":2,.*"sequence_number":9,"type":"response\.incomplete"\}\n\n\z/s



=== TEST 9: embeddings: one vector per input, of the dimensions asked, with usage
--- config
    location /v1/ {
        ai_gateway_mock_provider;
    }
--- request
POST /v1/embeddings
{"model":"text-embedding-3-small","input":["hello","world!!"],"dimensions":3}
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"object":"list","data":\[\{"object":"embedding","index":0,"embedding":\[-?0\.\d+(e-?\d+)?,-?0\.\d+(e-?\d+)?,-?0\.\d+(e-?\d+)?\]\},\{"object":"embedding","index":1,"embedding":\[[^\]]+\]\}\],"model":"text-embedding-3-small","usage":\{"prompt_tokens":4,"total_tokens":4\}\}$



=== TEST 10: embeddings in base64 (little-endian float32s, as the OpenAI SDK asks by default)
--- config
    location /v1/ {
        ai_gateway_mock_provider;
    }
--- request
POST /v1/embeddings
{"model":"m","input":"hello","dimensions":4,"encoding_format":"base64"}
--- error_code: 200
--- response_body_like: ^\{"object":"list","data":\[\{"object":"embedding","index":0,"embedding":"[A-Za-z0-9+/]{22}=="\}\],"model":"m","usage":\{"prompt_tokens":2,"total_tokens":2\}\}$



=== TEST 11: Responses and embeddings errors come in OpenAI's shape
--- config
    location /v1/ {
        ai_gateway_mock_provider;
    }
--- request eval
["POST /v1/responses\n{\"input\":\"hi\"}",
 "POST /v1/embeddings\n{\"model\":\"m\",\"input\":\"\"}",
 "GET /v1/embeddings"]
--- error_code eval
[400, 400, 405]
--- response_body_like eval
[qr/^\{"error":\{"code":"missing_required_parameter","message":"Missing required parameter: 'model'\.","param":null,"type":"invalid_request_error"\}\}$/,
 qr/^\{"error":\{"code":"invalid_input","message":"'\$\.input' is invalid\.","param":null,"type":"invalid_request_error"\}\}$/,
 qr/"code":"method_not_allowed"/]
