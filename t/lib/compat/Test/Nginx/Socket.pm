package Test::Nginx::Socket;

# A small runner for OpenResty's data-driven Test::Nginx::Socket format, written for this
# project because the upstream library is not packaged for Debian. Test files written for it
# run unchanged under the upstream library. See t/lib/compat/README.md for what is supported.

use Test::Base -Base;

use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(sleep time);
use File::Path qw(make_path remove_tree);
use File::Basename qw(dirname);
use File::Temp qw(tempfile);
use POSIX qw(WNOHANG);
use Cwd qw(cwd);

our @EXPORT = qw(
    run_tests repeat_each no_shuffle shuffle log_level master_on master_off
    master_process_enabled workers worker_connections no_long_string no_root_location
    add_block_preprocessor env_to_nginx server_port server_root html_dir
);

my $RepeatEach        = 1;
my $LogLevel          = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
my $MasterProcess     = 'off';
my $Workers           = 1;
my $WorkerConnections = 64;
my $NoRootLocation    = 0;
my @Preprocessors;
my @EnvToNginx;

my $NginxBinary = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $ServerPort  = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
my $ServRoot    = $ENV{TEST_NGINX_SERVROOT} || cwd() . '/t/servroot';
$ServRoot = cwd() . "/$ServRoot" unless $ServRoot =~ m{^/};
my $HtmlDir     = "$ServRoot/html";
my $ConfFile    = "$ServRoot/conf/nginx.conf";
my $ErrorLog    = "$ServRoot/logs/error.log";
my $PidFile     = "$ServRoot/logs/nginx.pid";
my $Timeout     = $ENV{TEST_NGINX_TIMEOUT} || 3;

$ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;
$ENV{TEST_NGINX_HTML_DIR}    = $HtmlDir;
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
$ENV{TEST_NGINX_SERVROOT}    = $ServRoot;

sub repeat_each (@) { $RepeatEach = shift if @_; $RepeatEach }
sub no_shuffle () { }
sub shuffle () { }
sub log_level (@) { $LogLevel = shift if @_; $LogLevel }
sub master_on () { $MasterProcess = 'on' }
sub master_off () { $MasterProcess = 'off' }
sub master_process_enabled (@) { $MasterProcess = $_[0] ? 'on' : 'off' if @_; $MasterProcess eq 'on' }
sub workers (@) { $Workers = shift if @_; $Workers }
sub worker_connections (@) { $WorkerConnections = shift if @_; $WorkerConnections }
sub no_long_string () { $Test::LongString::Max = 0 if defined $Test::LongString::Max }
sub no_root_location () { $NoRootLocation = 1 }
sub add_block_preprocessor (&) { push @Preprocessors, shift }
sub env_to_nginx (@) { push @EnvToNginx, @_ }
sub server_port () { $ServerPort }
sub server_root () { $ServRoot }
sub html_dir () { $HtmlDir }

# --- running --------------------------------------------------------------------------

sub run_tests () {
    stop_nginx();
    for my $block (Test::Base::blocks()) {
        $_->($block) for @Preprocessors;
        run_block($block);
    }
    stop_nginx() unless $ENV{TEST_NGINX_NO_CLEAN};
}

sub run_block ($) {
    my $block = shift;
    my $name = $block->name;

    pick_random_ports($block);
    write_files($block);

    if (defined $block->must_die) {
        stop_nginx();
        my $out = start_nginx(1);
        ok(!defined $out->{pid}, "$name - nginx must die");
        check_log_patterns($block, $name, $out->{stderr} . slurp($ErrorLog), '');
        stop_nginx() if defined $out->{pid};
        return;
    }

    my $started = start_nginx(0);
    if (!$started->{pid}) {
        fail("$name - nginx started");
        diag($started->{stderr});
        return;
    }

    for my $rep (1 .. $RepeatEach) {
        my $label = $RepeatEach > 1 ? "$name (repeat $rep)" : $name;
        # the first round also sees what nginx logged while starting
        my $log_start = $rep == 1 ? 0 : (-s $ErrorLog || 0);
        my $tcp = start_tcp_server($block);
        my $res = send_request($block, $label);
        my $query = finish_tcp_server($tcp);
        sleep($block->wait) if $block->wait;
        check_response($block, $label, $res);
        check_tcp_query($block, $label, $query) if $tcp;
        check_log_patterns($block, $label, read_log_from($log_start), 1);
    }
}

# --- files ----------------------------------------------------------------------------

sub subst_env ($) {
    my $text = shift;
    return $text if !defined $text || ref $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        defined $ENV{$1} ? $ENV{$1}
                         : die "No environment $1 defined (used in a test block).\n"
    }ge;
    return $text;
}

sub pick_random_ports ($) {
    my $block = shift;
    my %wanted;
    for my $section (@{ $block->{_section_order} || [] }, 'http_config', 'config') {
        my $v = $block->$section;
        next unless defined $v && !ref $v;
        $wanted{$1} = 1 while $v =~ /\$TEST_NGINX_RAND_PORT_(\d+)/g;
    }
    for my $n (keys %wanted) {
        $ENV{"TEST_NGINX_RAND_PORT_$n"} = free_port();
    }
}

sub free_port () {
    for (1 .. 100) {
        my $port = 20000 + int(rand(20000));
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                      Listen => 1, ReuseAddr => 1) or next;
        close $s;
        return $port;
    }
    die "no free port found\n";
}

sub write_files ($) {
    my $block = shift;
    remove_tree($HtmlDir);
    make_path("$ServRoot/conf", "$ServRoot/logs", $HtmlDir);
    if (defined(my $files = $block->user_files)) {
        my @files;
        if (ref $files eq 'ARRAY') {
            @files = map { [$_->[0], $_->[1]] } @$files;
        } else {
            $files = subst_env($files);
            while ($files =~ /^>>> (\S+)\n(.*?)(?=^>>> |\z)/msg) {
                push @files, [$1, $2];
            }
        }
        for my $f (@files) {
            my $path = "$HtmlDir/$f->[0]";
            make_path(dirname($path));
            open my $fh, '>', $path or die "$path: $!";
            print $fh $f->[1];
            close $fh;
        }
    }
    open my $fh, '>', $ConfFile or die "$ConfFile: $!";
    print $fh nginx_conf($block);
    close $fh;
}

sub nginx_conf ($) {
    my $block = shift;
    my $main_config = subst_env($block->main_config // '');
    my $http_config = subst_env($block->http_config // '');
    my $config      = subst_env($block->config // '');
    my $modules = join '', map { "load_module $_;\n" }
                          split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} // '');
    my $user = $> == 0 ? "user root root;\n" : '';
    my $env = join '', map { "env $_;\n" } @EnvToNginx;
    my $root_location = ($NoRootLocation || $config =~ m{\blocation\s+/\s*\{})
        ? '' : "        location / {\n            root html;\n            index index.html index.htm;\n        }\n";
    return <<"_EOC_";
${modules}daemon on;
master_process $MasterProcess;
worker_processes $Workers;
${user}error_log logs/error.log $LogLevel;
pid logs/nginx.pid;
$env
$main_config

events {
    accept_mutex off;
    worker_connections $WorkerConnections;
}

http {
    access_log logs/access.log;
    default_type text/plain;
    keepalive_timeout 68;

$http_config

    server {
        listen $ServerPort;
        server_name localhost;
        client_max_body_size 30M;

$config

$root_location    }
}
_EOC_
}

sub slurp ($) {
    my $file = shift;
    open my $fh, '<', $file or return '';
    local $/;
    my $s = <$fh>;
    return $s // '';
}

sub read_log_from ($) {
    my $offset = shift;
    open my $fh, '<', $ErrorLog or return '';
    seek $fh, $offset, 0;
    local $/;
    return <$fh> // '';
}

# --- nginx process --------------------------------------------------------------------

sub read_pid () {
    my $pid = slurp($PidFile);
    return $pid =~ /^(\d+)/ ? $1 : undef;
}

sub start_nginx ($) {
    my $expect_death = shift;
    my $running = read_pid();
    if ($ENV{TEST_NGINX_USE_HUP} && $running && alive($running)) {
        my $check = `$NginxBinary -p $ServRoot/ -c $ConfFile -t 2>&1`;
        if ($? != 0) {
            return { pid => undef, stderr => $check };
        }
        kill 'HUP', $running;
        sleep 0.3;
        return { pid => $running, stderr => '' };
    }
    stop_nginx();
    unlink $ErrorLog;
    my $stderr = `$NginxBinary -p $ServRoot/ -c $ConfFile 2>&1`;
    my $rc = $?;
    if ($rc != 0) {
        return { pid => undef, stderr => $stderr };
    }
    my $pid;
    for (1 .. 100) {
        $pid = read_pid();
        last if $pid;
        sleep 0.02;
    }
    return { pid => undef, stderr => $stderr . "no pid file\n" } unless $pid;
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ServerPort);
        if ($s) { close $s; last }
        sleep 0.02;
    }
    return { pid => $pid, stderr => $stderr };
}

# A daemonized nginx is not our child; where nobody reaps orphans (containers), it stays a
# zombie after exiting, so "gone" means no process or a zombie.
sub alive ($) {
    my $pid = shift;
    return 0 unless kill 0, $pid;
    my $stat = slurp("/proc/$pid/stat");
    return $stat !~ /^\d+ \(.*\) Z/s;
}

sub stop_nginx () {
    my $pid = read_pid();
    return unless $pid && alive($pid);
    kill 'QUIT', $pid;
    for (1 .. 250) {
        return unlink $PidFile if !alive($pid);
        sleep 0.02;
    }
    kill 'KILL', $pid;
    sleep 0.1;
    unlink $PidFile;
}

# --- fake TCP upstream (tcp_listen / tcp_reply / tcp_query) ----------------------------

sub start_tcp_server ($) {
    my $block = shift;
    return unless defined $block->tcp_listen;
    my $port = subst_env($block->tcp_listen);
    my $listener = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                         Listen => 5, ReuseAddr => 1)
        or die "cannot listen on $port: $!\n";
    my ($fh, $file) = tempfile();
    close $fh;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        my $reply = $block->tcp_reply;
        $reply = subst_env($reply) unless ref $reply;
        my $sel = IO::Select->new($listener);
        my $conn = $sel->can_read(10) ? $listener->accept : undef;
        my $query = '';
        if ($conn) {
            $query = read_query($conn, $block->tcp_query_len);
            open my $out, '>', $file;
            print $out $query;
            close $out;
            if (defined $reply) {
                print $conn (ref $reply eq 'ARRAY' ? join('', @$reply) : $reply);
            }
            sleep 0.05;
            close $conn unless $block->tcp_no_close;
        }
        POSIX::_exit(0);
    }
    close $listener;
    return { pid => $pid, file => $file };
}

sub read_query ($$) {
    my ($conn, $want) = @_;
    my $buf = '';
    my $sel = IO::Select->new($conn);
    while ($sel->can_read(1)) {
        my $n = sysread $conn, $buf, 65536, length $buf;
        last unless $n;
        last if defined $want && length $buf >= $want;
        next if defined $want;
        if ($buf =~ /\A(.*?\r\n\r\n)/s) {
            my $head = $1;
            if ($head =~ /^Content-Length:\s*(\d+)/mi) {
                last if length($buf) >= length($head) + $1;
            } elsif ($head =~ /^Transfer-Encoding:\s*chunked/mi) {
                last if $buf =~ /\r\n0\r\n\r\n\z/;
            } else {
                last;
            }
        }
    }
    return $buf;
}

sub finish_tcp_server ($) {
    my $tcp = shift;
    return unless $tcp;
    for (1 .. 200) {
        last if waitpid($tcp->{pid}, WNOHANG) != 0;
        sleep 0.02;
    }
    kill 'KILL', $tcp->{pid};
    waitpid($tcp->{pid}, 0);
    my $q = slurp($tcp->{file});
    unlink $tcp->{file};
    return $q;
}

# --- HTTP client ----------------------------------------------------------------------

sub build_request ($) {
    my $block = shift;
    if (defined(my $raw = $block->raw_request)) {
        return ref $raw eq 'ARRAY' ? [map { subst_env($_) } @$raw] : [subst_env($raw)];
    }
    my $req = $block->request;
    die "block has no request\n" unless defined $req;
    $req = subst_env($req) unless ($block->_section_map->{request}{filters} // '') =~ /eval/;
    $req =~ s/\A\s+//;
    my ($first, $body) = split /\n/, $req, 2;
    $body //= '';
    $body =~ s/\n\z//;
    $first =~ s/\s+\z//;
    $first .= ' HTTP/1.1' unless $first =~ m{ HTTP/\d\.\d\z};
    my @headers;
    my $more = subst_env($block->more_headers // '');
    for my $line (split /\n/, $more) {
        next unless $line =~ /\S/;
        push @headers, $line;
    }
    my %has = map { /^([^:]+):/ ? (lc $1 => 1) : () } @headers;
    unshift @headers, 'Connection: close' unless $has{connection};
    unshift @headers, 'Host: localhost' unless $has{host};
    push @headers, 'Content-Length: ' . length($body)
        if length($body) && !$has{'content-length'} && !$has{'transfer-encoding'};
    return [join('', map { "$_\r\n" } $first, @headers) . "\r\n" . $body];
}

sub send_request ($$) {
    my ($block, $label) = @_;
    my $pieces = build_request($block);
    my $timeout = $block->timeout // $Timeout;
    my $delay = $block->raw_request_middle_delay // 0;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ServerPort,
                                  Timeout => $timeout)
        or return { error => "cannot connect: $!" };
    binmode $s;
    my $deadline = time + $timeout;
    for my $i (0 .. $#$pieces) {
        sleep($delay) if $i > 0 && $delay;
        my $data = $pieces->[$i];
        while (length $data) {
            my $n = syswrite $s, $data;
            last unless defined $n;
            substr($data, 0, $n, '');
        }
    }
    my $resp = '';
    my $sel = IO::Select->new($s);
    my $timed_out = 0;
    while (1) {
        my $left = $deadline - time;
        if ($left <= 0 || !$sel->can_read($left)) {
            $timed_out = 1;
            last;
        }
        my $n = sysread $s, $resp, 65536, length $resp;
        last unless $n;
    }
    close $s;
    my $res = parse_response($resp);
    $res->{timed_out} = $timed_out;
    return $res;
}

sub parse_response ($) {
    my $raw = shift;
    my %res = (raw => $raw, headers => {}, body => '');
    my ($head, $rest) = split /\r\n\r\n/, $raw, 2;
    return { %res, error => 'empty response' } unless length($raw // '');
    my @lines = split /\r\n/, $head;
    my $status_line = shift @lines;
    ($res{status}) = $status_line =~ m{^HTTP/\d\.\d (\d{3})};
    for my $line (@lines) {
        my ($k, $v) = $line =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        push @{ $res{headers}{lc $k} }, $v;
    }
    $rest //= '';
    if (grep { lc($_) eq 'chunked' } @{ $res{headers}{'transfer-encoding'} || [] }) {
        my $body = '';
        while ($rest =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $len = hex $1;
            last if $len == 0;
            $body .= substr($rest, 0, $len, '');
            $rest =~ s/\A\r\n//;
        }
        $res{body} = $body;
    } else {
        $res{body} = $rest;
    }
    return \%res;
}

# --- checks ---------------------------------------------------------------------------

sub check_response ($$$) {
    my ($block, $name, $res) = @_;
    if ($res->{timed_out} && !$block->abort) {
        fail("$name - timed out waiting for the response");
        diag(tail_log());
        return;
    }
    if ($res->{error}) {
        fail("$name - $res->{error}");
        diag(tail_log());
        return;
    }
    return if $block->abort && $res->{timed_out};
    if (!$block->ignore_response) {
        if (defined $block->error_code_like) {
            my $pat = $block->error_code_like;
            like($res->{status}, qr/$pat/, "$name - status code ok");
        } else {
            my $want = $block->error_code // 200;
            is($res->{status}, $want, "$name - status code ok")
                or diag("response:\n$res->{raw}\n" . tail_log());
        }
    }
    for my $line (split /\n/, subst_env($block->response_headers // '')) {
        next unless $line =~ /\S/;
        if ($line =~ /^\s*!\s*([^:\s]+)\s*$/) {
            ok(!exists $res->{headers}{lc $1}, "$name - header $1 absent");
        } elsif ($line =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/) {
            my $got = $res->{headers}{lc $1};
            is(defined $got ? join(', ', @$got) : undef, $2, "$name - header $1 ok");
        }
    }
    for my $line (split /\n/, subst_env($block->response_headers_like // '')) {
        next unless $line =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/;
        my $got = $res->{headers}{lc $1};
        like(defined $got ? join(', ', @$got) : '', qr/$2/, "$name - header $1 like");
    }
    if (defined $block->response_body) {
        my $want = $block->response_body;
        $want = subst_env($want) unless ref $want;
        is_string($res->{body}, ref $want eq 'ARRAY' ? $want->[0] : $want,
                  "$name - response_body - response is expected");
    }
    if (defined $block->response_body_like) {
        my $pat = $block->response_body_like;
        $pat = ref $pat eq 'ARRAY' ? $pat->[0] : $pat;
        $pat = subst_env($pat) unless ref $pat;
        chomp $pat unless ref $pat;
        my $re = ref $pat eq 'Regexp' ? $pat : qr/$pat/s;
        like($res->{body}, $re, "$name - response_body_like - response is expected");
    }
}

sub is_string ($$$) {
    my ($got, $want, $name) = @_;
    return is($got, $want, $name) if length($want // '') < 200;
    my $ok = ok(defined $got && $got eq $want, $name);
    if (!$ok) {
        require Text::Diff;
        diag(Text::Diff::diff(\$want, \($got // ''), { STYLE => 'Unified' }));
    }
    return $ok;
}

sub check_tcp_query ($$$) {
    my ($block, $name, $query) = @_;
    if (defined $block->tcp_query) {
        my $want = $block->tcp_query;
        $want = subst_env($want) unless ref $want;
        is_string($query, $want, "$name - tcp_query ok");
    }
    if (defined $block->tcp_query_len) {
        is(length($query // ''), $block->tcp_query_len, "$name - tcp_query length ok");
    }
}

sub patterns ($) {
    my $v = shift;
    return () unless defined $v;
    return @$v if ref $v eq 'ARRAY';
    return ($v) if ref $v eq 'Regexp';
    return grep { /\S/ } split /\n/, subst_env($v);
}

sub check_log_patterns ($$$$) {
    my ($block, $name, $log, $check_no) = @_;
    for my $pat (patterns($block->error_log)) {
        my $found = ref $pat eq 'Regexp' ? $log =~ $pat : index($log, $pat) >= 0;
        ok($found, "$name - pattern \"$pat\" should match a line in error.log")
            or diag(tail_log());
    }
    for my $pat (patterns($block->no_error_log)) {
        my @hits = grep { ref $pat eq 'Regexp' ? $_ =~ $pat : index($_, $pat) >= 0 }
                   split /\n/, $log;
        ok(!@hits, "$name - pattern \"$pat\" does not match a line in error.log")
            or diag("matched: $hits[0]");
    }
    if (defined $block->grep_error_log) {
        my $pat = $block->grep_error_log;
        my $re = ref $pat eq 'Regexp' ? $pat : qr/\Q@{[ (patterns($pat))[0] ]}\E/;
        my $out = join '', map { "$_\n" } ($log =~ /($re)/g);
        my $want = $block->grep_error_log_out // '';
        $want = $want->[0] if ref $want eq 'ARRAY';
        is_string($out, $want, "$name - grep_error_log_out ok");
    }
}

sub tail_log () {
    my @lines = split /\n/, slurp($ErrorLog);
    my @tail = grep { !/\[debug\]/ } @lines;
    splice(@tail, 0, @tail - 20) if @tail > 20;
    return "error.log (last non-debug lines):\n" . join("\n", @tail);
}

1;
