# A provider's usage numbers are not believed past 10,000,000 tokens (USAGE_MAX): 2^53+1,
# i64::MAX, u64::MAX and numbers past u64 in every usage shape (OpenAI JSON and stream,
# Responses stream, Anthropic JSON and stream) are replaced by the gateway's own count (an
# estimate, logged once at warn); the metrics never wrap and a namespace's token window is
# not locked out by such an answer. A provider's error answer counts no tokens at all.
# Fake providers are nginx `return`s; access log lines go to the error log to be checked.
use lib 't/lib';
use Test::AIGateway 'no_plan';

repeat_each(1);

our $log_format = <<'_EOC_';
    log_format usage 'usage prompt=$ai_gateway_prompt_tokens completion=$ai_gateway_completion_tokens '
                     'total=$ai_gateway_total_tokens cached=$ai_gateway_cached_tokens '
                     'reasoning=$ai_gateway_reasoning_tokens source=$ai_gateway_usage_source';
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $log_format . ($block->http_config // ''));
    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location /v1/ {
        ai_gateway on;
        access_log logs/error.log usage;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
_EOC_
    }
});

# A fake provider answering every request with $body ($type: json or sse).
sub provider {
    my ($type, $body) = @_;
    my $ct = $type eq 'sse' ? 'text/event-stream' : 'application/json';
    return <<"_EOC_";
    server {
        listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_1;
        location / { default_type $ct; return 200 '$body'; }
    }
_EOC_
}

our $chat = '{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}';

# A stream with one event of ~100 KB (past the 64 KiB of an unfinished event the usage reader
# holds: it then reads the stream line by line as it comes), then the usage chunk.
our $big_sse = 'data: {"choices":[{"index":0,"delta":{"content":"' . ('lorem ipsum ' x 8500)
    . '"},"finish_reason":null}],"usage":null}' . "\n\n"
    . 'data: {"choices":[],"usage":{"prompt_tokens":8,"completion_tokens":17000,"total_tokens":17008}}'
    . "\n\ndata: [DONE]\n\n";

run_tests();

__DATA__

=== TEST 1: OpenAI JSON, prompt_tokens u64::MAX: the gateway's count of the prompt, an estimate
--- http_config eval
::provider('json', '{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello world"},"finish_reason":"stop"}],"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":2,"total_tokens":1}}')
--- request eval
"POST /v1/chat/completions\n$::chat"
--- more_headers
Authorization: Bearer sk-alpha-1
--- response_body_like: Hello world
--- wait: 0.2
--- error_log
the provider reported 18446744073709551615 prompt tokens, more than the 10000000 a request can use: its usage is not believed, the gateway's own count is used
usage prompt=8 completion=2 total=10 cached=- reasoning=- source=estimated



=== TEST 2: OpenAI stream, completion_tokens i64::MAX: the gateway counts the text it passed
--- http_config eval
::provider('sse', 'data: {"choices":[{"index":0,"delta":{"content":"Hello world"}}],"usage":null}\n\ndata: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":9223372036854775807,"total_tokens":9223372036854775816}}\n\ndata: [DONE]\n\n')
--- config
    location /v1/ {
        ai_gateway on;
        ai_gateway_stream_usage off;
        access_log logs/error.log usage;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- response_body_like: 9223372036854775807
--- wait: 0.2
--- error_log
the provider reported 9223372036854775807 completion tokens
usage prompt=9 completion=2 total=11 cached=- reasoning=- source=estimated



=== TEST 3: Responses stream, input_tokens 2^53 + 1
--- http_config eval
::provider('sse', 'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hello world"}\n\nevent: response.completed\ndata: {"type":"response.completed","response":{"usage":{"input_tokens":9007199254740993,"output_tokens":2,"total_tokens":9007199254740995}}}\n\n')
--- request
POST /v1/responses
{"model":"gpt-4o","stream":true,"input":"Hello"}
--- more_headers
Authorization: Bearer sk-alpha-1
--- wait: 0.2
--- error_log
the provider reported 9007199254740993 prompt tokens
usage prompt=8 completion=2 total=10 cached=- reasoning=- source=estimated



=== TEST 4: Anthropic JSON, output_tokens u64::MAX
--- http_config eval
::provider('json', '{"id":"msg","type":"message","role":"assistant","content":[{"type":"text","text":"Hello world"}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":18446744073709551615}}')
--- request
POST /v1/messages
{"model":"claude-sonnet-4-5","max_tokens":50,"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
x-api-key: sk-alpha-1
--- response_body_like: Hello world
--- wait: 0.2
--- error_log
the provider reported 18446744073709551615 completion tokens
usage prompt=12 completion=2 total=14 cached=- reasoning=- source=estimated



=== TEST 5: Anthropic stream, input_tokens past u64 (held at u64::MAX, not believed)
--- http_config eval
::provider('sse', 'event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":99999999999999999999999,"output_tokens":1}}}\n\nevent: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello world"}}\n\nevent: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}\n\n')
--- request
POST /v1/messages
{"model":"claude-sonnet-4-5","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
x-api-key: sk-alpha-1
--- wait: 0.2
--- error_log eval
["the provider reported 18446744073709551615 prompt tokens",
 qr/usage prompt=\d+ completion=2 total=\d+ cached=- reasoning=- source=estimated/]



=== TEST 6: answers with 2^53 + 1 and u64::MAX completion tokens: the namespace's token window is not locked out, the token metrics do not wrap
The provider writes the client's X-Tokens header into its usage.
--- http_config eval
"    ai_gateway_config ../html/gw.json;\n    ai_gateway_limit_zone limits 64k;\n    ai_gateway_metrics_zone m 1m;\n"
. ::provider('json', '{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello world"},"finish_reason":"stop"}],"usage":{"prompt_tokens":30,"completion_tokens":$http_x_tokens,"total_tokens":1}}')
--- config
    location /v1/ {
        ai_gateway on;
        access_log logs/error.log usage;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location = /metrics { ai_gateway_metrics; }
--- user_files
>>> gw.json
{"namespaces": [{"code": "n", "api_keys": ["033d461ba69fa00769695b91ef3d9187416084607a52805d6ca51f0665bd4fcb"],
  "policies": [{"type": "tokens", "limit": 1000, "window": "1m", "reserve_output": 10}]}]}
--- request eval
["POST /v1/chat/completions\n$::chat", "POST /v1/chat/completions\n$::chat",
 "POST /v1/chat/completions\n$::chat", "POST /v1/chat/completions\n$::chat",
 "POST /v1/chat/completions\n$::chat", "GET /metrics"]
--- more_headers eval
[map({ "Authorization: Bearer sk-route-a\nX-Tokens: $_" }
     '9007199254740993', '9007199254740993', '18446744073709551615', '18446744073709551615', '2'),
 "Authorization: Bearer sk-route-a"]
--- error_code eval
[200, 200, 200, 200, 200, 200]
--- response_headers eval
[("x-ratelimit-limit-tokens: 1000") x 5, ""]
--- response_body_like eval
[(qr/Hello world/) x 5,
 qr/gateway_tokens_total\{namespace="n",model="gpt-4o",type="prompt"\} 150\ngateway_tokens_total\{namespace="n",model="gpt-4o",type="completion"\} 10\n/]



=== TEST 7: a provider that refused the request billed nothing: no tokens in the log, the metrics or the window
--- http_config eval
"    ai_gateway_config ../html/gw.json;\n    ai_gateway_limit_zone limits 64k;\n    ai_gateway_metrics_zone m 1m;\n"
. "    server {\n        listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_1;\n        location / { default_type application/json; return 400 '{\"error\":{\"message\":\"bad\",\"type\":\"invalid_request_error\"}}'; }\n    }\n"
--- config
    location /v1/ {
        ai_gateway on;
        access_log logs/error.log usage;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location = /metrics { ai_gateway_metrics; }
--- user_files
>>> gw.json
{"namespaces": [{"code": "n", "api_keys": ["033d461ba69fa00769695b91ef3d9187416084607a52805d6ca51f0665bd4fcb"],
  "policies": [{"type": "tokens", "limit": 100, "window": "1m", "reserve_output": 10}]}]}
--- request eval
["POST /v1/chat/completions\n$::chat", "POST /v1/chat/completions\n$::chat", "GET /metrics"]
--- more_headers
Authorization: Bearer sk-route-a
--- error_code eval
[400, 400, 200]
--- response_headers eval
["x-ratelimit-remaining-tokens: 75", "x-ratelimit-remaining-tokens: 75", ""]
--- response_body_like eval
[qr/"bad"/, qr/"bad"/, qr/gateway_requests_total\{namespace="n",model="gpt-4o",code="400"\} 2\n(?!.*gateway_tokens_total\{namespace="n")/s]



=== TEST 8: ... and the access log says so (no tokens, usage unknown)
--- http_config eval
"    server {\n        listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_1;\n        location / { default_type application/json; return 429 '{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\"}}'; }\n    }\n"
--- request eval
"POST /v1/chat/completions\n$::chat"
--- more_headers
Authorization: Bearer sk-alpha-1
--- error_code: 429
--- wait: 0.2
--- error_log
usage prompt=- completion=- total=- cached=- reasoning=- source=unknown



=== TEST 9: an event larger than the reader holds: the usage after it is the provider's, every byte passes unchanged
The client asked for usage itself, so the stream is not rewritten: the tracker reads it alone.
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / { default_type text/event-stream; root html; try_files /big.sse =404; error_page 405 =200 /big.sse; }
    }
--- user_files eval
[["big.sse", $::big_sse]]
--- request eval
"POST /v1/chat/completions\n" . '{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}'
--- more_headers
Authorization: Bearer sk-alpha-1
--- response_body eval
$::big_sse
--- wait: 0.2
--- error_log
usage prompt=8 completion=17000 total=17008 cached=- reasoning=- source=provider
