# ai_gateway_token_service: the original /calculate API, OpenAI's input_tokens and
# Anthropic's count_tokens shapes, health, errors; the directive's placement.
use lib 't/lib';
use Test::AIGateway 'no_plan';

no_root_location();

run_tests();

__DATA__

=== TEST 1: /calculate with text and a model (exact, o200k_base)
--- config
    location / { ai_gateway_token_service; }
--- request
POST /calculate
{"text":"Hello world","model_name":"gpt-4o"}
--- response_headers
Content-Type: application/json
--- response_body
{"encoding":"o200k_base","estimated":false,"model":"gpt-4o","success":true,"token_count":2}



=== TEST 2: /calculate with chat messages: OpenAI's framing (3 per message + 3), cl100k_base for gpt-4
--- config
    location / { ai_gateway_token_service; }
--- request
POST /calculate
{"model":"gpt-4","messages":[{"role":"system","content":"Be brief."},{"role":"user","name":"bob","content":"日本語のテキスト"}]}
--- response_body
{"encoding":"cl100k_base","estimated":false,"model":"gpt-4","success":true,"token_count":24}



=== TEST 3: a model without a public tokenizer: counted with o200k_base, marked estimated
--- config
    location / { ai_gateway_token_service; }
--- request
POST /calculate
{"text":"Hello world","model_name":"Qwen3-32B"}
--- response_body
{"encoding":"o200k_base","estimated":true,"model":"Qwen3-32B","success":true,"token_count":2}



=== TEST 4: special-token text is ordinary text (17 tokens, not 7)
--- config
    location / { ai_gateway_token_service; }
--- request
POST /calculate
{"text":"ignore this <|endoftext|> and <|endofprompt|>","model_name":"gpt-4o-mini"}
--- response_body
{"encoding":"o200k_base","estimated":false,"model":"gpt-4o-mini","success":true,"token_count":17}



=== TEST 5: OpenAI's POST /v1/responses/input_tokens
--- config
    location /v1/ { ai_gateway_token_service; }
--- request
POST /v1/responses/input_tokens
{"model":"gpt-4.1","instructions":"Be brief.","input":"Hello"}
--- response_body
{"encoding":"o200k_base","estimated":false,"input_tokens":15,"object":"response.input_tokens"}



=== TEST 6: Anthropic's POST /v1/messages/count_tokens (an estimate: Claude's tokenizer is not public)
--- config
    location /v1/ { ai_gateway_token_service; }
--- request
POST /v1/messages/count_tokens
{"model":"claude-sonnet-4","system":"Be brief.","messages":[{"role":"user","content":"Hello"}]}
--- response_body
{"encoding":"o200k_base","estimated":true,"input_tokens":14}



=== TEST 7: health
--- config
    location / { ai_gateway_token_service; }
--- request
GET /health
--- response_body
{"encodings":["o200k_base","cl100k_base"],"status":"ok"}



=== TEST 8: malformed JSON: 400, OpenAI-shaped, nothing echoed
--- config
    location / { ai_gateway_token_service; }
--- request
POST /calculate
{"text": "secret prompt
--- error_code: 400
--- response_body_like: ^\{"error":\{"message":"We could not parse the JSON body of your request \(at line 1 column \d+\)\.","type":"invalid_request_error","param":null,"code":"invalid_json"\}\}$
--- response_body_unlike: secret



=== TEST 9: nothing to count: 400 naming the field
--- config
    location / { ai_gateway_token_service; }
--- request
POST /calculate
{"model_name":"gpt-4o"}
--- error_code: 400
--- response_body_like: "param":"text"



=== TEST 10: unknown path 404, wrong method 405, as JSON
--- config
    location / { ai_gateway_token_service; }
--- request eval
["POST /nowhere\n{}", "GET /calculate"]
--- error_code eval
[404, 405]
--- response_body_like eval
[qr/"code":"not_found"/, qr/"code":"method_not_allowed"/]



=== TEST 11: 1 MB runs of spaces: exact for cl100k_base (8192, as OpenAI's tiktoken), counted for o200k_base (where tiktoken itself panics)
--- config
    location / {
        client_max_body_size 2m;
        client_body_buffer_size 2m;
        ai_gateway_token_service;
    }
--- request eval
["POST /calculate\n" . '{"model_name":"gpt-4","text":"' . (" " x 1048576) . '"}',
 "POST /calculate\n" . '{"model_name":"gpt-4o","text":"' . (" " x 1048576) . '"}']
--- response_body_like eval
[qr/"token_count":8192\}/, qr/"token_count":\d+\}/]
--- timeout: 10



=== TEST 12: the token service needs no ai_gateway_config, and is not inherited
--- http_config
--- no_gateway_config
--- config
    location /count/ {
        ai_gateway_token_service;
        location /count/inner/ { return 204; }
    }
--- request
POST /count/inner/calculate
{"text":"x"}
--- error_code: 204



=== TEST 13: duplicate directive
--- config
    location / { ai_gateway_token_service; ai_gateway_token_service; }
--- must_die
--- error_log
"ai_gateway_token_service" directive is duplicate
