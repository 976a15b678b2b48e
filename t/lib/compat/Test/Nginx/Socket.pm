package Test::Nginx::Socket;

=encoding utf-8

=head1 NAME

Test::Nginx::Socket - a small reimplementation of OpenResty's data-driven nginx test
scaffold (t/lib/compat of this project)

=head1 SYNOPSIS

    use Test::Nginx::Socket 'no_plan';    # or: plan tests => repeat_each() * 3 * blocks();

    repeat_each(2);
    run_tests();

    __DATA__

    === TEST 1: hello
    --- config
        location = /t {
            return 200 "hello\n";
        }
    --- request
    GET /t
    --- response_body
    hello
    --- no_error_log
    [error]

A project wrapper subclasses it as with upstream:

    package Test::MyProject;
    use Test::Nginx::Socket -Base;
    add_block_preprocessor(sub { my $block = shift; ... $block->set_value(...) });
    1;

=head1 DESCRIPTION

Same file format, names and semantics as upstream's Test::Nginx::Socket
(L<https://github.com/openresty/test-nginx>), built only on Debian's Perl packages
(Test::Base with Spiffy, Test::More, Test::LongString, Text::Diff). Test files written for
it run unchanged under upstream's library. Each block runs against a freshly started nginx
(or one reloaded with HUP) whose F<nginx.conf> is generated in the server root, requests are
sent over plain sockets, and the response and the error log lines written meanwhile are
checked. Blocks run in random order unless C<no_shuffle()> (as upstream).

=head1 FUNCTIONS

C<run_tests>, C<run_test>, C<repeat_each>, C<workers>, C<worker_connections>, C<log_level>,
C<master_on>, C<master_off>, C<master_process_enabled>, C<no_shuffle>, C<no_root_location>,
C<no_long_string>, C<use_hup>, C<timeout>, C<server_port>, C<server_port_for_client>,
C<server_name>, C<server_addr>, C<server_root>, C<html_dir>, C<env_to_nginx>,
C<config_preamble>, C<check_accum_error_log>, C<add_block_preprocessor>,
C<add_cleanup_handler>, C<add_test_cleanup_handler>, C<add_response_body_check>,
C<bail_out>, C<is_str>; and from Test::Base/Test::More: C<plan>, C<blocks>, C<no_diff>,
C<is>, C<ok>, C<like>, C<unlike>, C<is_deeply>, C<pass>, C<fail>, C<diag>, C<skip>, ...

=head1 SECTIONS

=over

=item nginx configuration

C<config> (inside C<server {}>), C<http_config>, C<main_config>, C<post_main_config>,
C<server_name>, C<log_level>, C<user_files> (C<<<< >>> name [date] >>>> headers, or an
eval'd array of C<[name, body, date]>; relative names go under the html directory),
C<must_die> (nginx must fail to start; a number is the expected exit code), C<init>.

=item requests

C<request> (C<METHOD [URI [HTTP/1.x]]>, then the body; C<Host>, C<Connection: close> and
C<Content-Length> of the whitespace-trimmed body are added unless C<more_headers> has them
or is chunked; with C<eval>: a string, an array of requests, or a request as an array of
packets), C<more_headers> (also an array per request), C<raw_request> (exact bytes; an
eval'd array is sent piece by piece, C<raw_request_middle_delay> seconds apart),
C<pipelined_requests>, C<timeout> (idle seconds, or C<ms>), C<abort>, C<shutdown>, C<wait>.

=item response checks

C<error_code> (default 200), C<error_code_like>, C<ignore_response>, C<response_headers>
(C<Name: value>, C<!Name> for absent), C<response_headers_like> (C<^value$> regexes; only
without C<response_headers>), C<raw_response_headers_like>, C<raw_response_headers_unlike>,
C<response_body> (exact, or a C<qr//> from eval), C<response_body_like>,
C<response_body_unlike> (C</s>).

=item error log and fake upstream

C<error_log>, C<no_error_log> (one substring per line, or an eval'd array of strings and
C<qr//>s), C<grep_error_log> with C<grep_error_log_out>; C<tcp_listen>, C<tcp_reply>
(string, array or code), C<tcp_reply_delay>, C<tcp_query>, C<tcp_query_len>,
C<tcp_no_close>.

=item Test::Base

C<ONLY>, C<SKIP>, C<LAST>, filters such as C<eval>, C<chomp>, C<chop>; C<skip_eval>
(C<N: perl code>) and C<skip_nginx> (C<< N: < 1.19.0 >>).

=back

=head1 TEST COUNTS

As upstream, per repeat and per request: 1 for the status code (unless C<ignore_response>),
1 per distinct C<response_headers> line (else per C<response_headers_like> line), 1 for
C<response_body> (else C<response_body_like>/C<_unlike>), 1 per C<error_log> and
C<no_error_log> pattern (checked after every request), 1 each for C<grep_error_log_out>,
C<raw_response_headers_like>, C<tcp_query>, C<tcp_query_len>; C<must_die> counts 1 plus its
log patterns; a client timeout without C<abort> adds a failure. F<t/lib/compat/README.md>
has the table and the differences from upstream.

=head1 ENVIRONMENT

C<TEST_NGINX_BINARY> (default C<nginx> from C<PATH>), C<TEST_NGINX_SERVER_PORT> or
C<TEST_NGINX_PORT> (default 1984), C<TEST_NGINX_CLIENT_PORT>, C<TEST_NGINX_SERVROOT>
(default F<t/servroot>), C<TEST_NGINX_LOAD_MODULES> (space-separated paths, each a
C<load_module> line at the top of F<nginx.conf>), C<TEST_NGINX_LOG_LEVEL> (default
C<debug>), C<TEST_NGINX_TIMEOUT> (default 3), C<TEST_NGINX_NO_CLEAN>, C<TEST_NGINX_USE_HUP>,
C<TEST_NGINX_NO_SHUFFLE>, C<TEST_NGINX_MASTER_PROCESS>, C<TEST_NGINX_WORKER_USER>,
C<TEST_NGINX_SLEEP>, C<TEST_NGINX_CHECK_ACCUM_ERR_LOG>.

In C<config>, C<http_config>, C<main_config>, C<post_main_config>, C<user_files>,
C<tcp_listen>, C<pipelined_requests>, C<response_body> and C<grep_error_log_out>, every
C<$TEST_NGINX_XXX> is replaced by that environment variable (an unset one bails out), and
C<$TEST_NGINX_RAND_PORT_N> by a free port picked once per block.
C<$TEST_NGINX_SERVER_PORT>, C<$TEST_NGINX_SERVER_ROOT> and C<$TEST_NGINX_HTML_DIR> are
predefined.

=cut

# A small reimplementation of OpenResty's data-driven Test::Nginx::Socket, written for this
# project (the upstream library is not packaged for Debian); see also t/lib/compat/README.md.

# -base (lower case) is Spiffy's subclassing without its source filter; subclasses of this
# module may still use `use Test::Nginx::Socket -Base;` as they do with upstream's.
use Test::Base -base;

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use List::Util qw(shuffle sum);
use Time::HiRes qw(sleep time);
use Test::More ();
use Test::Nginx::Util;

our $VERSION = '0.1';

our @EXPORT = qw(
    env_to_nginx is_str plan run_tests run_test repeat_each config_preamble
    worker_connections master_process_enabled no_long_string workers master_on master_off
    log_level no_shuffle no_root_location use_hup server_name server_addr server_root
    html_dir server_port server_port_for_client timeout check_accum_error_log
    add_block_preprocessor bail_out add_test_cleanup_handler add_cleanup_handler
    add_response_body_check
);

our @ResponseBodyChecks;
our $RandPorts = {};    # the current block's $TEST_NGINX_RAND_PORT_N values
my $FirstBlock = 1;
my $LastResponse;       # shown when a block fails

sub add_response_body_check ($) { push @ResponseBodyChecks, shift }

# Sections of upstream's format this runner does not implement (a block using one warns).
my @Unsupported = qw(
    stap stap_out stap_out_like stap_out_unlike udp_listen udp_reply udp_query
    udp_reply_delay http2 http3 curl access_log no_access_log shutdown_error_log
    no_shutdown_error_log response_body_filters response_body_json_sort charset
    write_resp_body_file error_log_file post_setup_server_root
    reload_fails todo todo_nginx skip_nginx2 skip_openssl skip_slave tcp_shutdown
    tcp_shutdown_delay tcp_query_auto_timeout http09 request_eval response_body_eval
);

# Sections upstream does NOT expand $TEST_NGINX_* in (neither do we).
my @NotExpanded = qw(
    request more_headers raw_request tcp_reply tcp_query error_log no_error_log
    grep_error_log response_body_like response_body_unlike response_headers
    response_headers_like
);

# ==== the loop over blocks ==================================================================

sub run_tests () {
    Test::Nginx::Util::nginx_v();    # bails out now if the nginx binary is missing
    srand($$ + int(time * 1000));
    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $Test::Nginx::Util::NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @Test::Nginx::Util::BlockPreprocessors;
        $block->set_value(name => "$0 " . $block->name);
        warn_about_upstream_differences($block);
        run_test($block);
        $_->($block) for @Test::Nginx::Util::TestCleanupHandlers;
    }
    cleanup();
}

sub run_test ($) {
    my $block = shift;
    return if defined $block->SKIP;
    my $name = $block->name;
    my $failures_before = failure_count();
    $LastResponse = undef;

    $RandPorts = {};
    my $config = expand_env_in_text($block->config, $name, $RandPorts);
    local $Test::Nginx::Util::LogLevel = $block->log_level // $Test::Nginx::Util::LogLevel;
    my ($skip_count, $skip_reason) = tests_to_skip($block);

    my $log_start = 0;
    if (defined $skip_count) {
        for (1 .. repeat_each()) {
            SKIP: { Test::More::skip("$name - $skip_reason", $skip_count) }
        }
        return;
    }
    if (defined $block->must_die) {
        run_must_die($block, $config);
    } else {
        $log_start = start_or_reload($block, $config) // return;
        run_repeats($block, $log_start);
    }
    $FirstBlock = 0;

    if (failure_count() > $failures_before) {
        my $diag = "$name - error.log (last non-debug lines):\n" . error_log_tail($log_start, 30);
        if (defined $LastResponse) {
            my $shown = length $LastResponse > 2000
                ? substr($LastResponse, 0, 2000) . "...\n" : $LastResponse;
            $diag .= "last response:\n$shown\n";
        }
        Test::More::diag($diag);
    }
}

sub failure_count () {
    return scalar grep { !$_ } Test::More->builder->summary;
}

# --- skip_eval: "N: perl code" and skip_nginx: "N: < 1.19.0 [: reason]" skip N tests.
sub tests_to_skip ($) {
    my $block = shift;
    my $name = $block->name;
    if (defined(my $spec = $block->skip_eval)) {
        $spec =~ /^\s*(\d+)\s*:\s*(.*)/s or bail_out("$name - Invalid --- skip_eval spec\n");
        my ($n, $code) = ($1, $2);
        my $skip = eval $code;
        bail_out("$name - skip_eval - failed to eval the Perl code \"$code\": $@") if $@;
        return ($n, 'skip_eval') if $skip;
    }
    if (defined(my $spec = $block->skip_nginx)) {
        $spec =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*))?\s*$/
            or bail_out("$name - Invalid --- skip_nginx spec: $spec\n");
        my ($n, $op, $reason) = ($1, $2, $6 || "nginx version $2 $3.$4.$5");
        my $want = sprintf "%d.%03d%03d", $3, $4, $5;
        my $have = nginx_version();
        return ($n, $reason) if !defined $have ? $op =~ /^</ : eval "$have $op $want";
    }
    return;
}

# Starts nginx afresh (or reloads it with HUP under TEST_NGINX_USE_HUP) with the block's
# files; returns the error.log offset where the block's lines begin, undef on failure.
sub start_or_reload ($$) {
    my ($block, $config) = @_;
    my $name = $block->name;
    if ($Test::Nginx::Util::UseHup && !$FirstBlock && nginx_is_running()) {
        my $version = join '', map { ('a' .. 'z')[rand 26] } 1 .. 10;
        prepare_server_root(1);
        write_user_files($block, $RandPorts);
        write_config_file($block, $config, $RandPorts, $version);
        my $log_start = -s $Test::Nginx::Util::ErrLogFile || 0;
        my ($ok, $why) = reload_nginx($version);
        return $log_start if $ok;
        Test::More::fail("$name - failed to reload the configuration: $why");
        Test::More::diag(error_log_tail($log_start, 30));
        return undef;
    }
    prepare_server_root(0);
    write_user_files($block, $RandPorts);
    write_config_file($block, $config, $RandPorts, '');
    my ($ok, $out) = start_nginx();
    if (!$ok) {
        Test::More::fail("$name - nginx started");
        Test::More::diag("$out\n" . error_log_tail(0, 30));
        return undef;
    }
    print STDERR $out if length $out;    # nginx's own warnings, as upstream shows them
    return 0;
}

# Runs the block's requests repeat_each() times; the first round's error log checks see
# everything logged since $log_start (nginx's startup included).
sub run_repeats ($$) {
    my ($block, $log_start) = @_;
    my $name = $block->name;
    if (defined $block->init) {
        eval $block->init;
        bail_out("$name - init failed: $@") if $@;
    }
    reset_error_log_pos($log_start);
    for my $rep (0 .. repeat_each() - 1) {
        write_user_files($block, $RandPorts) if $rep > 0;
        my $tcp = defined $block->tcp_listen ? start_tcp_server($block, $RandPorts) : undef;
        run_requests($block, $rep);
        check_tcp_query($block, $tcp) if $tcp;
        stop_tcp_server($tcp);
    }
}

# --- must_die: nginx has to fail to start; its stderr counts as error log lines.
sub run_must_die ($$) {
    my ($block, $config) = @_;
    my $name = $block->name;
    my $must_die = $block->must_die;
    prepare_server_root(0);
    write_user_files($block, $RandPorts);
    write_config_file($block, $config, $RandPorts, '');
    reset_error_log_pos(0);
    for my $rep (0 .. repeat_each() - 1) {
        my ($status, $stderr) = run_nginx_to_die();
        if ($status == -1 || ($status >> 8) == 127) {
            Test::More::fail("$name - failed to execute the nginx command line");
        } elsif ($status & 128) {
            Test::More::fail("$name - nginx core dumped");
        } elsif ($must_die =~ /^\s*(\d+)\s*$/) {
            Test::More::is($status >> 8, $1, "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }
        warn "WARNING: $name - nginx must die but it does not\n" if $status == 0;
        check_error_log($block, $rep, 0, [split /^/m, $stderr]);
    }
}

# ==== requests ==============================================================================

sub run_requests ($$) {
    my ($block, $rep) = @_;
    my $name = $block->name;
    my $conns = requests_from_block($block);
    my $timeout = parse_time($block->timeout) // timeout();
    my $total = sum(map { $_->{responses} } @$conns);
    my $need_array = defined $block->pipelined_requests || @$conns > 1;
    my $req_idx = 0;
    for my $conn (@$conns) {
        my ($raw, $timed_out) = send_request($block, $conn->{pieces}, $timeout);
        $LastResponse = $raw;
        if ($timed_out && !defined $block->abort) {
            Test::More::fail("ERROR: client socket timed out - $name");
        }
        for my $k (1 .. $conn->{responses}) {
            if (!defined $block->ignore_response) {
                my ($res, $raw_headers, $left) = parse_response($name, $raw, $conn->{head});
                if ($k < $conn->{responses}) {
                    $raw = $left // '';
                } elsif (defined $left && length $left) {
                    (my $shown = $left) =~ s/([\0-\037\200-\377])/sprintf('\x{%02x}', ord $1)/eg;
                    warn "WARNING: $name - unexpected extra bytes after the response: \"$shown\"\n";
                }
                check_error_code($block, $res, $req_idx, $need_array);
                check_raw_response_headers($block, $raw_headers, $req_idx, $need_array);
                check_response_headers($block, $res, $raw_headers, $req_idx, $need_array);
                check_response_body($block, $res, $req_idx, $rep, $need_array);
            }
            if (++$req_idx < $total) {
                sleep $block->wait if $block->wait;
                check_error_log($block, $rep, $need_array, []);
            }
        }
    }
    sleep $block->wait if $block->wait;
    check_error_log($block, $rep, $need_array, []);
}

# The connections to make: [{ pieces => [{value, delay}], responses => N, head => bool }].
sub requests_from_block ($) {
    my $block = shift;
    my $name = $block->name;
    my $more = $block->more_headers // '';
    my $headers_for = sub {
        my $i = shift;
        my $text = ref $more eq 'ARRAY' ? $more->[$i] : $more;
        bail_out("$name - --- more_headers lacks data for request $i\n") unless defined $text;
        return $text;
    };
    my $connection = sub {
        my @pieces = map { ref $_ eq 'HASH' ? { %$_ } : { value => $_ } } @_;
        my $all = join '', map { $_->{value} // '' } @pieces;
        return { pieces => \@pieces, responses => 1, head => $all =~ /^\s*HEAD\s+/ ? 1 : 0 };
    };

    if (defined(my $raw = $block->raw_request)) {
        return [ $connection->(ref $raw eq 'ARRAY' ? @$raw : $raw) ];
    }
    if (defined(my $reqs = $block->pipelined_requests)) {
        bail_out("$name - invalid entries in --- pipelined_requests\n") unless ref $reqs eq 'ARRAY';
        my $data = '';
        for my $i (0 .. $#$reqs) {
            my $req = expand_env_in_text($reqs->[$i], $name, $RandPorts);
            $data .= build_request($name, $req, $headers_for->($i),
                                   $i == $#$reqs ? 'close' : 'keep-alive');
        }
        my $conn = $connection->($data);
        $conn->{responses} = @$reqs;
        return [$conn];
    }

    my $request = $block->request;
    bail_out("$name - no --- request (nor raw_request, pipelined_requests) section\n")
        unless defined $request;
    if (!ref $request) {
        1 while $request =~ s/^\s*\#[^\n]+\s+|^\s+//gs;    # leading comment lines
    }
    my @conns;
    my @requests = ref $request eq 'ARRAY' ? @$request : ($request);
    for my $i (0 .. $#requests) {
        my $req = $requests[$i];
        if (ref $req eq 'ARRAY') {    # one request as packets sent separately
            my @packets = map { ref $_ eq 'HASH' ? { %$_ } : { value => $_ } } @$req;
            my @values = build_request_packets($name, [map { $_->{value} } @packets],
                                               $headers_for->($i));
            $packets[$_]{value} = $values[$_] for 0 .. $#packets;
            push @conns, $connection->(@packets);
        } elsif (!ref $req) {
            push @conns, $connection->(build_request($name, $req, $headers_for->($i), 'close'));
        } else {
            bail_out("$name - invalid --- request: MUST be a string or an array of requests\n");
        }
    }
    return \@conns;
}

# "Name: value" lines (# comments skipped) to CRLF header text, and whether it is chunked.
sub parse_more_headers ($) {
    my $in = shift;
    my ($out, $chunked) = ('', 0);
    for my $line (split /\n+/, $in) {
        next if $line =~ /^\s*\#/;
        my ($key, $val) = split /:\s*/, $line, 2;
        $val //= '';
        $chunked = 1 if lc $key eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $chunked);
}

# Splits a --- request value into its request line and body (as upstream does).
sub split_request ($$) {
    my ($name, $req) = @_;
    $req =~ s/\A(\s*)//;
    my $lead = length $1;
    my ($first, $content) = $req =~ /\A([^\n]*\n?)(.*)\z/s;
    $first =~ /^(\S+) *(?:(\S+) *)?(?:(\S+) *)?\s*$/
        or bail_out("$name - Request line is not valid. Should be 'meth [url [version]]' "
                    . "but got \"$first\".\n");
    return { method => $1, url => $2 // '/', version => $3 // 'HTTP/1.1',
             content => $content, head_len => $lead + length $first };
}

# A --- request string to the bytes sent: request line, Host and Connection unless given,
# --- more_headers, Content-Length (of the whitespace-trimmed body) unless given or chunked.
sub build_request ($$$$) {
    my ($name, $req, $more, $conn_type) = @_;
    my $r = split_request($name, $req);
    my ($hdr, $chunked) = parse_more_headers($more);
    my $content = $r->{content};
    my $len_header = '';
    if (!$chunked && $content ne '' && $hdr !~ /(?:^|\n)Content-Length:/) {
        # trim like upstream (s/^\s+|\s+$//gs), without its quadratic time on a body
        # holding a long run of whitespace
        $content =~ s/\A\s+//;
        my $end = length $content;
        $end-- while $end > 0 && substr($content, $end - 1, 1) =~ /\s/;
        substr($content, $end) = '';
        $len_header = "Content-Length: " . length($content) . "\r\n";
    }
    my $headers = '';
    $headers .= "Host: $Test::Nginx::Util::ServerName\r\n" if $hdr !~ /(?:^|\n)Host:/msi;
    $headers .= "Connection: $conn_type\r\n" if $hdr !~ /(?:^|\n)Connection/msi;
    return "$r->{method} $r->{url} $r->{version}\r\n$headers$hdr$len_header\r\n$content";
}

# A request given as packets: builds the whole request, then cuts it where the packets were
# cut (a cut in the body stays at the same body offset; headers go with the request line).
sub build_request_packets ($$$) {
    my ($name, $packets, $more) = @_;
    my $whole = join '', @$packets;
    my $r = split_request($name, $whole);
    my $built = build_request($name, $whole, $more, 'close');
    my $body_start = $built =~ /\r\n\r\n/ ? $+[0] : length $built;
    # leading whitespace of the body that build_request trimmed away
    my ($body_lead) = $r->{content} =~ /\A(\s*)/;
    my $trimmed = substr($built, $body_start) eq $r->{content} ? 0 : length $body_lead;
    my ($lead) = $whole =~ /\A(\s*)/;
    my ($prev, $offset, @values) = (0, 0);
    for my $i (0 .. $#$packets) {
        $offset += length $packets->[$i];
        my $cut;
        if ($i == $#$packets) {
            $cut = length $built;
        } elsif ($offset < $r->{head_len}) {    # inside the request line
            $cut = $offset - length $lead;
        } else {                                # headers go with the request line
            my $in_body = $offset - $r->{head_len} - $trimmed;
            $cut = $body_start + ($in_body > 0 ? $in_body : 0);
        }
        $cut = $prev if $cut < $prev;
        $cut = length $built if $cut > length $built;
        push @values, substr($built, $prev, $cut - $prev);
        $prev = $cut;
    }
    return @values;
}

# Sends the pieces (--- raw_request_middle_delay or a piece's delay_before between them) and
# reads until the server closes. A quiet socket for $timeout seconds is a timeout.
sub send_request ($$$) {
    my ($block, $pieces, $timeout) = @_;
    my $name = $block->name;
    my $addr = $block->server_addr_for_client // $Test::Nginx::Util::ServerAddr;
    my $port = server_port_for_client();
    my $sock;
    for my $try (1 .. 20) {
        $sock = IO::Socket::INET->new(PeerAddr => $addr, PeerPort => $port, Proto => 'tcp',
                                      Timeout => $timeout) and last;
        sleep 0.05 * $try;
    }
    if (!$sock) {
        Test::More::fail("$name - Can't connect to $addr:$port: $! (aborted)\n");
        return ('', 0);
    }
    binmode $sock;
    $sock->blocking(0);
    local $SIG{PIPE} = 'IGNORE';
    my $sel = IO::Select->new($sock);
    my $middle_delay = parse_time($block->raw_request_middle_delay);
    my ($resp, $timed_out) = ('', 0);

    PIECE: for my $i (0 .. $#$pieces) {
        my $delay = $pieces->[$i]{delay_before} // $middle_delay;
        sleep $delay if $i > 0 && $delay;
        my ($data, $off) = ($pieces->[$i]{value} // '', 0);
        while ($off < length $data) {
            if (!$sel->can_write($timeout)) { $timed_out = 1; last PIECE }
            my $n = syswrite $sock, $data, length($data) - $off, $off;
            if (!defined $n) {
                next if $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
                last PIECE;    # nginx closed early: read what it said
            }
            $off += $n;
        }
    }
    if (defined(my $how = $block->shutdown)) {
        shutdown $sock, ($how =~ /^\s*$/ ? 1 : $how);
    }
    while (!$timed_out) {
        if (!$sel->can_read($timeout)) { $timed_out = 1; last }
        my $n = sysread $sock, $resp, 65536, length $resp;
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
            last;
        }
        last if $n == 0;
    }
    close $sock;
    return ($resp, $timed_out);
}

# ==== responses =============================================================================

# Returns ({ code, headers => [[name, value]...], content }, raw header text, bytes left).
sub parse_response ($$$) {
    my ($name, $raw, $head_req) = @_;
    my $raw_headers = $raw =~ /(.*?\r\n)\r\n/s ? $1 : '';
    my ($head, $body) = $raw =~ /\A(.*?)\r?\n\r?\n(.*)\z/s ? ($1, $2) : ($raw, '');
    my ($status_line, @lines) = split /\r?\n/, $head;
    my $res = { code => undef, headers => [], content => $body };
    $res->{code} = $1 if ($status_line // '') =~ m{^\S+\s+(\d+)\b};
    for my $line (@lines) {
        if ($line =~ /^\s/ && @{ $res->{headers} }) {    # folded continuation line
            (my $more = $line) =~ s/^\s+|\s+$//g;
            $res->{headers}[-1][1] .= " $more";
        } elsif ($line =~ /^([^:]+?)\s*:\s*(.*?)\s*$/) {
            push @{ $res->{headers} }, [$1, $2];
        }
    }
    my $code = $res->{code} // 0;
    return ($res, $raw_headers) if $code == 304 || $code == 101;

    my $left;
    my $te  = header_value($res, 'Transfer-Encoding');
    my $len = header_value($res, 'Content-Length');
    if (defined $te && $te eq 'chunked') {
        ($res->{content}, $left) = decode_chunked($name, $body);
    } elsif (defined $len && $len =~ /^\d+$/) {
        if (length $body < $len) {
            warn "WARNING: $name - response body truncated: $len expected, but got ",
                length $body, "\n" unless $head_req;
        } elsif (length $body > $len) {
            $left = substr $body, $len;
            $res->{content} = substr $body, 0, $len;
        }
    }
    return ($res, $raw_headers, $left);
}

# Decodes a chunked body; an invalid one fails a test (as upstream) and keeps what decoded.
sub decode_chunked ($$) {
    my ($name, $raw) = @_;
    my $decoded = '';
    pos($raw) = 0;
    while (1) {
        if ($raw =~ /\G[ \t]*([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?\r\n/gc) {
            my $size = hex $1;
            if ($size == 0) {
                1 while $raw =~ /\G[^\r\n]+\r\n/gc;    # trailer fields
                if ($raw !~ /\G\r\n/gc) {
                    Test::More::fail("$name - invalid chunked data received (expected CRLF).");
                    return ($decoded, undef);
                }
                my $rest = substr $raw, pos $raw;
                return ($decoded, length $rest ? $rest : undef);
            }
            if (length($raw) - pos($raw) < $size) {
                Test::More::fail("$name - invalid chunked data received "
                                 . "(not enough octets for the data section)");
                return ($decoded . substr($raw, pos $raw), undef);
            }
            $decoded .= substr $raw, pos($raw), $size;
            pos($raw) += $size;
            next if $raw =~ /\G\r\n/gc;
            Test::More::fail("$name - invalid chunked data received (expected CRLF).");
            return ($decoded, undef);
        }
        if (pos($raw) < length $raw) {
            Test::More::fail("$name - invalid chunked body received: " . substr($raw, pos $raw, 80));
        } else {
            Test::More::fail("$name - no last chunk found - " . substr($raw, 0, 200));
        }
        return ($decoded, undef);
    }
}

# A header's value (all values joined by ", "); names match case-insensitively, "_" as "-".
sub header_value ($$) {
    my ($res, $key) = @_;
    return undef unless $res;
    (my $want = lc $key) =~ tr/_/-/;
    my @values = map { $_->[1] } grep { (my $k = lc $_->[0]) =~ tr/_/-/; $k eq $want }
                 @{ $res->{headers} };
    return @values ? join(', ', @values) : undef;
}

# With several requests in a block, expected values must be arrays indexed by request.
sub get_indexed_value ($$$$) {
    my ($name, $value, $req_idx, $need_array) = @_;
    if ($need_array) {
        return $value->[$req_idx] if ref $value eq 'ARRAY';
        bail_out("$name - You asked for many requests, the expected results should be "
                 . "arrays as well.\n");
    }
    return ref $value eq 'ARRAY' ? $value->[0] : $value;
}

sub check_error_code ($$$$) {
    my ($block, $res, $req_idx, $need_array) = @_;
    my $name = $block->name;
    my $code = ($res && $res->{code}) || '';
    if (defined $block->error_code_like) {
        my $pat = get_indexed_value($name, $block->error_code_like, $req_idx, $need_array);
        Test::More::like($code, qr/$pat/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        Test::More::is($code, get_indexed_value($name, $block->error_code, $req_idx,
                                                $need_array), "$name - status code ok");
    } else {
        Test::More::is($code, 200, "$name - status code ok");
    }
}

sub check_raw_response_headers ($$$$) {
    my ($block, $raw_headers, $req_idx, $need_array) = @_;
    my $name = $block->name;
    if (defined $block->raw_response_headers_like) {
        my $pat = get_indexed_value($name, $block->raw_response_headers_like, $req_idx,
                                    $need_array);
        Test::More::like($raw_headers, qr/$pat/s, "$name - raw resp headers like");
    }
    if (defined $block->raw_response_headers_unlike) {
        my $pat = get_indexed_value($name, $block->raw_response_headers_unlike, $req_idx,
                                    $need_array);
        Test::More::unlike($raw_headers, qr/$pat/s, "$name - raw resp headers unlike");
    }
}

# "Name: value" lines to an ordered list of [name, value]; "!Name" gives [name, undef].
# A name given twice counts once (last value), as in upstream's hash.
sub parse_expected_headers ($) {
    my $text = shift;
    my (@order, %value);
    for my $line (split /\n/, $text // '') {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        my ($key, $val);
        if ($line =~ s/^!\s*//) {
            $key = $line;
        } else {
            ($key, $val) = split /\s*:\s*/, $line, 2;
        }
        push @order, $key unless exists $value{$key};
        $value{$key} = $val;
    }
    return map { [$_, $value{$_}] } @order;
}

sub check_response_headers ($$$$$) {
    my ($block, $res, $raw_headers, $req_idx, $need_array) = @_;
    my $name = $block->name;
    my $port = server_port();
    my $client_port = server_port_for_client();
    if (defined $block->response_headers) {
        my $want = get_indexed_value($name, $block->response_headers, $req_idx, $need_array);
        for my $h (parse_expected_headers($want)) {
            my ($key, $val) = @$h;
            if (!defined $val) {
                Test::More::unlike($raw_headers, qr/^\s*\Q$key\E\s*:/msi,
                                   "$name - header $key not present in the raw headers");
                next;
            }
            $val =~ s/\$ServerPort\b/$port/g;
            $val =~ s/\$ServerPortForClient\b/$client_port/g;
            Test::More::is(header_value($res, $key) // '', $val, "$name - header $key ok");
        }
    } elsif (defined $block->response_headers_like) {
        my $want = get_indexed_value($name, $block->response_headers_like, $req_idx,
                                     $need_array);
        for my $h (parse_expected_headers($want)) {
            my ($key, $val) = @$h;
            Test::More::like(header_value($res, $key) // '', qr/^$val$/,
                             "$name - header $key like ok");
        }
    }
}

sub check_response_body ($$$$$) {
    my ($block, $res, $req_idx, $rep, $need_array) = @_;
    my $name = $block->name;
    my $content = $res ? $res->{content} : undef;
    my $port = server_port();
    my $client_port = server_port_for_client();
    if (defined $block->response_body) {
        my $expected = get_indexed_value($name, $block->response_body, $req_idx, $need_array);
        if (defined $expected && !ref $expected) {
            $expected =~ s/\$ServerPort\b/$port/g;
            $expected =~ s/\$ServerPortForClient\b/$client_port/g;
            $expected = expand_env_in_text($expected, $name, $RandPorts);
        }
        my $what = "(repeated req $rep, req $req_idx)";
        if (ref $expected) {
            Test::More::like($content, $expected, "$name - response_body - like $what");
        } else {
            is_str($content, $expected, "$name - response_body - response is expected $what");
        }
    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my $type = defined $block->response_body_like ? 'like' : 'unlike';
        my $section = "response_body_$type";
        my $pat = get_indexed_value($name, $block->$section, $req_idx, $need_array);
        $pat =~ s/\$ServerPort\b/$port/g unless ref $pat;
        $pat =~ s/\$ServerPortForClient\b/$client_port/g unless ref $pat;
        my $summary = $content // '';
        $summary =~ s/^\s+|\s+$//g;
        $summary =~ s/\s+/ /g;
        $summary = substr($summary, 0, 100) . '...' if length $summary > 100;
        my $cmp = $type eq 'like' ? \&Test::More::like : \&Test::More::unlike;
        $cmp->($content, qr/$pat/s, "$name - response_body_$type - response is expected ($summary)");
    }
    $_->($block, $content, $req_idx, $rep, 0) for @ResponseBodyChecks;
}

# ==== error log and fake upstream checks ====================================================

sub value_contains ($$) {
    my ($val, $pat) = @_;
    return 0 unless defined $val;
    return grep { defined $_ && !ref $_ && index($_, $pat) >= 0 } @$val if ref $val eq 'ARRAY';
    return !ref $val && index($val, $pat) >= 0;
}

# A section's patterns: lines of a string, or the strings and qr//s of an eval'd array.
sub patterns_of ($) {
    my $pats = shift;
    return [] unless defined $pats;
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats] if ref $pats eq 'ARRAY';
    chomp $pats;
    return [split /\n+/, $pats];
}

sub line_matches ($$) {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ /$pat/ : index($line, $pat) >= 0;
}

sub fmt_str ($) {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

# error_log / no_error_log / grep_error_log against the error.log lines written since the
# last check (plus $extra lines: nginx's stderr for must_die).
sub check_error_log ($$$$) {
    my ($block, $rep, $need_array, $extra) = @_;
    my $name = $block->name;
    my $log = error_log_lines();
    my @lines = (@$log, @$extra);

    my $grep_pat = $block->grep_error_log;
    $grep_pat = $grep_pat->[$rep] if ref $grep_pat eq 'ARRAY';
    if (defined $grep_pat) {
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- grep_error_log is defined\n")
            unless defined $expected;
        $expected = $expected->[$rep] if ref $expected eq 'ARRAY';
        $expected = expand_env_in_text($expected, $name, $RandPorts);
        my $matched = '';
        for my $line (@lines) {
            next unless ref $grep_pat ? $line =~ /$grep_pat/ : $line =~ /\Q$grep_pat\E/;
            $matched .= "$&\n" if $& !~ /\n/;
        }
        is_str($matched, $expected, "$name - grep_error_log_out (req $rep)");
    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- grep_error_log_out is defined\n");
    }

    if (defined $block->error_log) {
        my $pats = patterns_of($block->error_log);
        for my $line (@lines) {
            for my $pat (@$pats) {
                next unless defined $pat && line_matches($line, $pat);
                Test::More::pass("$name - pattern \"$pat\" matches a line in error.log (req $rep)");
                undef $pat;
            }
        }
        for my $pat (grep { defined } @$pats) {
            Test::More::fail("$name - pattern \"$pat\" should match a line in error.log (req $rep)");
        }
    }

    if (defined $block->no_error_log) {
        for my $pat (grep { defined } @{ patterns_of($block->no_error_log) }) {
            my ($hit) = grep { line_matches($lines[$_], $pat) } 0 .. $#lines;
            my $p = fmt_str($pat);
            if (defined $hit) {
                my $last = $hit + 9 > $#lines ? $#lines : $hit + 9;
                Test::More::fail("$name - pattern \"$p\" should not match any line in error.log "
                                 . "but matches line \"" . fmt_str($lines[$hit]) . "\" (req $rep)");
                Test::More::diag("the lines after it:\n", @lines[$hit + 1 .. $last]);
            } else {
                Test::More::pass("$name - pattern \"$p\" does not match a line in error.log (req $rep)");
            }
        }
    }

    # like upstream: surface serious log lines that no pattern mentions
    for my $level (qw(alert crit emerg)) {
        next if value_contains($block->error_log, "[$level")
             || value_contains($block->no_error_log, "[$level");
        warn "WARNING: $name - " . fmt_str($_) . "\n" for grep { /\[$level\]/ } @$log;
    }
    for my $line (grep { /\bAssertion .*?failed\b/ } @lines) {
        Test::More::fail("$name - " . fmt_str($line));
    }
}

sub check_tcp_query ($$) {
    my ($block, $tcp) = @_;
    my $name = $block->name;
    my $query = read_tcp_query($tcp);
    is_str($query, $block->tcp_query, "$name - tcp_query ok") if defined $block->tcp_query;
    Test::More::is(length($query), $block->tcp_query_len, "$name - TCP query length ok")
        if defined $block->tcp_query_len;
}

# ==== compatibility warnings ================================================================

# Warns about what would make the block behave differently under upstream's library.
sub warn_about_upstream_differences ($) {
    my $block = shift;
    my $name = $block->name;
    my @unsupported = grep { defined $block->$_ } @Unsupported;
    warn "WARNING: $name - --- @unsupported: not supported by the t/lib/compat runner "
         . "(ignored)\n" if @unsupported;

    for my $section (@NotExpanded) {
        my $v = $block->$section;
        my @vals = ref $v eq 'ARRAY' ? @$v : ($v);
        next unless grep { defined && !ref && /\$TEST_NGINX_\w+/ } @vals;
        warn "WARNING: $name - --- $section: \$TEST_NGINX_* is not expanded in this section "
             . "(as upstream); use an eval section and \$ENV{...}\n";
    }

    if (!defined $block->config) {
        warn "WARNING: $name - no --- config section: upstream would reuse the previous "
             . "block's nginx (or bail out on the first block)\n";
    }
}

1;
