# Token usage: the provider's numbers read from JSON and event-stream responses as they pass,
# the gateway's own counts when the provider reports none, include_usage added to OpenAI
# streams and taken back out (the client gets the stream it asked for, byte for byte), and
# the $ai_gateway_*_tokens variables. Access log lines go to the error log to be checked.
use lib 't/lib';
use Test::AIGateway 'no_plan';

our $log_format = <<'_EOC_';
    log_format usage 'usage prompt=$ai_gateway_prompt_tokens completion=$ai_gateway_completion_tokens '
                     'total=$ai_gateway_total_tokens cached=$ai_gateway_cached_tokens '
                     'reasoning=$ai_gateway_reasoning_tokens source=$ai_gateway_usage_source';
_EOC_

# A gateway location in front of a fake provider ($TEST_NGINX_RAND_PORT_1, --- tcp_reply).
our $fake_provider = <<'_EOC_';
    location /v1/ {
        ai_gateway on;
        access_log logs/error.log usage;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
_EOC_

our $mock = <<'_EOC_';
    location /v1/ {
        ai_gateway on;
        access_log logs/error.log usage;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
_EOC_

# The mock's stream for {"model":"gpt-4o","stream":true,"max_tokens":4,...} with X-Mock-Seq: 7
# and X-Mock-Created: 1700000000, as it sends it to a client that did not ask for usage.
our $tail = '"created":1700000000,"id":"chatcmpl-mock000000000007","model":"gpt-4o",'
          . '"object":"chat.completion.chunk","system_fingerprint":null}';
our $stream_without_usage = join('', map { "data: $_$tail\n\n" }
    '{"choices":[{"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],',
    '{"choices":[{"delta":{"content":"Hello"},"finish_reason":null,"index":0,"logprobs":null}],',
    '{"choices":[{"delta":{"content":"!"},"finish_reason":null,"index":0,"logprobs":null}],',
    '{"choices":[{"delta":{"content":" This"},"finish_reason":null,"index":0,"logprobs":null}],',
    '{"choices":[{"delta":{"content":" is"},"finish_reason":null,"index":0,"logprobs":null}],',
    '{"choices":[{"delta":{},"finish_reason":"length","index":0,"logprobs":null}],',
) . "data: [DONE]\n\n";

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $log_format . ($block->http_config // ''));
});

sub http_reply {
    my ($type, $body, $extra) = @_;
    $extra //= '';
    return "HTTP/1.1 200 OK\r\nContent-Type: $type\r\n${extra}Content-Length: "
         . length($body) . "\r\nConnection: close\r\n\r\n$body";
}

run_tests();

__DATA__

=== TEST 1: a JSON answer: the provider's usage
--- config eval: $::mock
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- response_body_like: "usage":\{"completion_tokens":38,"prompt_tokens":8,"total_tokens":46\}
--- wait: 0.2
--- error_log
usage prompt=8 completion=38 total=46 cached=- reasoning=- source=provider



=== TEST 2: a stream without include_usage: the gateway asks for it, the client gets exactly the stream it asked for
--- config eval: $::mock
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"max_tokens":4,"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
X-Mock-Seq: 7
X-Mock-Created: 1700000000
--- response_body eval: $::stream_without_usage
--- response_headers
!Content-Length
--- wait: 0.2
--- error_log
usage prompt=8 completion=4 total=12 cached=- reasoning=- source=provider



=== TEST 3: include_usage false is turned to true, and taken back out the same way
--- config eval: $::mock
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"max_tokens":4,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
X-Mock-Seq: 7
X-Mock-Created: 1700000000
--- response_body eval: $::stream_without_usage
--- wait: 0.2
--- error_log
usage prompt=8 completion=4 total=12 cached=- reasoning=- source=provider



=== TEST 4: a client that asks for usage gets it, untouched
--- config eval: $::mock
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"max_tokens":4,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- response_body_like eval
qr/\A(data: \{[^\n]*"usage":null\}\n\n){6}data: \{"choices":\[\],[^\n]*"usage":\{"completion_tokens":4,"prompt_tokens":8,"total_tokens":12\}\}\n\ndata: \[DONE\]\n\n\z/
--- wait: 0.2
--- error_log
usage prompt=8 completion=4 total=12 cached=- reasoning=- source=provider



=== TEST 5: ai_gateway_stream_usage off: the request is left alone and the gateway counts
--- config
    location /v1/ {
        ai_gateway on;
        ai_gateway_stream_usage off;
        access_log logs/error.log usage;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"max_tokens":4,"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
X-Mock-Seq: 7
X-Mock-Created: 1700000000
--- response_body eval: $::stream_without_usage
--- wait: 0.2
--- error_log
usage prompt=8 completion=4 total=12 cached=- reasoning=- source=counted



=== TEST 6: an Anthropic stream: message_start's input, message_delta's running output
--- config eval: $::mock
--- request
POST /v1/messages
{"model":"claude-sonnet-4","max_tokens":3,"stream":true,"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
x-api-key: sk-alpha-1
--- response_body_like: event: message_delta\ndata: \{[^\n]*"output_tokens":3
--- wait: 0.2
--- error_log
usage prompt=8 completion=3 total=11 cached=0 reasoning=- source=provider



=== TEST 7: Anthropic cache tokens are part of the prompt; cache reads are the cached tokens
--- config eval: $::fake_provider
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
::http_reply('text/event-stream', CORE::join '',
  "event: message_start\n",
  qq{data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4","usage":{"input_tokens":25,"cache_creation_input_tokens":5,"cache_read_input_tokens":10,"output_tokens":1}}}\n\n},
  "event: content_block_delta\n",
  qq{data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi \xe6\x97\xa5\xe6\x9c\xac"}}\n\n},
  "event: message_delta\n",
  qq{data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}\n\n},
  "event: message_stop\n",
  qq{data: {"type":"message_stop"}\n\n})
--- request
POST /v1/messages
{"model":"claude-sonnet-4","max_tokens":30,"stream":true,"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
x-api-key: sk-alpha-1
--- response_body_like: "output_tokens":15
--- wait: 0.2
--- error_log
usage prompt=40 completion=15 total=55 cached=10 reasoning=- source=provider



=== TEST 8: an OpenAI Responses stream: usage from response.completed, reasoning tokens
--- config eval: $::fake_provider
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
::http_reply('text/event-stream; charset=utf-8', CORE::join '',
  "event: response.created\n",
  qq{data: {"type":"response.created","response":{"id":"resp_1","status":"in_progress","usage":null}}\n\n},
  "event: response.output_text.delta\n",
  qq{data: {"type":"response.output_text.delta","delta":"Hello"}\n\n},
  "event: response.completed\n",
  qq{data: {"type":"response.completed","response":{"id":"resp_1","status":"completed","usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":32},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":123}}}\n\n})
--- request
POST /v1/responses
{"model":"o4-mini","stream":true,"input":"Hello"}
--- more_headers
Authorization: Bearer sk-alpha-1
--- response_body_like: response\.completed
--- wait: 0.2
--- error_log
usage prompt=36 completion=87 total=123 cached=32 reasoning=64 source=provider



=== TEST 9: no usage from the provider: the gateway counts prompt and completion (o200k_base for gpt-4o)
--- config eval: $::fake_provider
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
::http_reply('application/json',
  '{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello world"},"finish_reason":"stop"}]}')
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- response_body_like: Hello world
--- wait: 0.2
--- error_log
usage prompt=8 completion=2 total=10 cached=- reasoning=- source=counted



=== TEST 10: a model whose tokenizer is not public: an estimate, said so
--- config eval: $::fake_provider
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
::http_reply('application/json',
  '{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello world"},"finish_reason":"stop"}]}')
--- request
POST /v1/chat/completions
{"model":"llama-3-70b","messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- response_body_like: Hello world
--- wait: 0.2
--- error_log
usage prompt=8 completion=2 total=10 cached=- reasoning=- source=estimated



=== TEST 11: a response the gateway cannot read (plain text): the completion is unknown, never 0
--- config eval: $::fake_provider
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
::http_reply('text/plain', 'just text')
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- response_body: just text
--- wait: 0.2
--- error_log
usage prompt=8 completion=- total=- cached=- reasoning=- source=counted



=== TEST 12: a compressed answer is not read (and said so at info)
--- config eval: $::fake_provider
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
::http_reply('application/json', "\x1f\x8b\x08\x00not really gzip", "Content-Encoding: gzip\r\n")
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- wait: 0.2
--- error_log
response is "gzip"-encoded, its usage is not read
usage prompt=8 completion=- total=- cached=- reasoning=- source=counted



=== TEST 13: the client's Accept-Encoding is not passed to the provider
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_2;
        location / { return 200 "ae=[$http_accept_encoding]"; }
    }
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2;
    }
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[]}
--- more_headers
Authorization: Bearer sk-alpha-1
Accept-Encoding: gzip, br
--- response_body: ae=[]



=== TEST 14: a rejected request has no usage
--- config eval: $::mock
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}
--- error_code: 401
--- wait: 0.2
--- error_log
usage prompt=- completion=- total=- cached=- reasoning=- source=-



=== TEST 15: tokens in the metrics: provider usage of a JSON answer and of a stream
--- http_config
    ai_gateway_metrics_zone m 1m;
--- config
    location /v1/ {
        ai_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location = /metrics { ai_gateway_metrics; }
--- request eval
[
  "POST /v1/chat/completions\n" . '{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}',
  "POST /v1/chat/completions\n" . '{"model":"gpt-4o","stream":true,"max_tokens":4,"messages":[{"role":"user","content":"Hello"}]}',
  "GET /metrics",
]
--- more_headers
Authorization: Bearer sk-alpha-1
--- response_body_like eval
[
  qr/"total_tokens":46/,
  qr/data: \[DONE\]/,
  qr/gateway_tokens_total\{namespace="alpha",model="gpt-4o",type="prompt"\} 16\ngateway_tokens_total\{namespace="alpha",model="gpt-4o",type="completion"\} 42\n/,
]



=== TEST 16: ai_gateway_stream_usage takes on or off
--- config
    location /v1/ {
        ai_gateway on;
        ai_gateway_stream_usage maybe;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- must_die
--- error_log
invalid value "maybe" in "ai_gateway_stream_usage" directive, it must be "on" or "off"



=== TEST 17: ai_gateway_stream_usage off is inherited from the server level
--- config
    ai_gateway_stream_usage off;
    location /v1/ {
        ai_gateway on;
        access_log logs/error.log usage;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"max_tokens":4,"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
--- response_body_unlike: usage
--- wait: 0.2
--- error_log
usage prompt=8 completion=4 total=12 cached=- reasoning=- source=counted



=== TEST 18: a stream_options key nested elsewhere in the body does not stop the gateway asking for usage
--- config eval: $::mock
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"max_tokens":4,"metadata":{"stream_options":"x"},"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer sk-alpha-1
X-Mock-Seq: 7
X-Mock-Created: 1700000000
--- response_body eval: $::stream_without_usage
--- wait: 0.2
--- error_log
usage prompt=8 completion=4 total=12 cached=- reasoning=- source=provider
