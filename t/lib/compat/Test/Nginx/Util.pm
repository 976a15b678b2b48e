package Test::Nginx::Util;

# The nginx side of the t/lib/compat runner: settings, $TEST_NGINX_* expansion, the server
# root and its nginx.conf, starting/reloading/stopping nginx, the error log and the fake TCP
# upstream (--- tcp_listen). Test::Nginx::Socket builds the data-driven runner on top of it.
# Written for this project; see t/lib/compat/README.md and the POD of Test::Nginx::Socket.

use strict;
use warnings;

use Exporter 'import';
use File::Path qw(make_path remove_tree);
use File::Spec;
use File::Temp qw(tempfile);
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Test::More ();

our @EXPORT = qw(
    repeat_each workers worker_connections log_level master_on master_off
    master_process_enabled no_shuffle no_root_location no_long_string use_hup timeout
    server_port server_port_for_client server_name server_addr server_root html_dir
    env_to_nginx add_block_preprocessor add_cleanup_handler add_test_cleanup_handler
    config_preamble check_accum_error_log bail_out is_str

    expand_env_in_text parse_time read_file nginx_version
    prepare_server_root write_user_files write_config_file
    start_nginx reload_nginx stop_nginx run_nginx_to_die nginx_is_running
    error_log_lines error_log_tail reset_error_log_pos
    start_tcp_server stop_tcp_server read_tcp_query cleanup
);

# --- settings (upstream names and defaults) -----------------------------------------------

our $RepeatEach           = 1;
our $Workers              = 1;
our $WorkerConnections    = 64;
our $LogLevel             = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $NoShuffle            = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $UseHup               = $ENV{TEST_NGINX_USE_HUP};
our $Timeout              = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep       = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $CheckAccumErrLog     = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $WorkerUser           = $ENV{TEST_NGINX_WORKER_USER};
our $NginxBinary          = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $LoadModules          = $ENV{TEST_NGINX_LOAD_MODULES} // '';
our $ServerPort           = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient  = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $ServerAddr           = '127.0.0.1';
our $ServerName           = 'localhost';
our $NoRootLocation       = 0;
our $NoLongString;
our $ConfigPreamble       = '';
our (@EnvToNginx, @BlockPreprocessors, @CleanupHandlers, @TestCleanupHandlers);

our $ServRoot   = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT} || 't/servroot');
our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $PidFile    = "$LogDir/nginx.pid";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";

$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
$ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;
# Not predefined by upstream's plain Test::Nginx::Socket (see README.md).
$ENV{TEST_NGINX_HTML_DIR} //= $HtmlDir;

sub repeat_each (@)      { $RepeatEach = shift if @_; $RepeatEach }
sub workers (@)          { $Workers = shift if @_; $Workers }
sub worker_connections (@) { $WorkerConnections = shift if @_; $WorkerConnections }
sub log_level (@)        { $LogLevel = shift if @_; $LogLevel }
sub master_on ()         { $MasterProcessEnabled = 'on' }
sub master_off ()        { $MasterProcessEnabled = 'off' }
sub master_process_enabled (@) {
    $MasterProcessEnabled = $_[0] ? 'on' : 'off' if @_;
    $MasterProcessEnabled;
}
sub no_shuffle ()        { $NoShuffle = 1 }
sub no_root_location ()  { $NoRootLocation = 1 }
sub no_long_string ()    { $NoLongString = 1 }
sub use_hup ()           { $UseHup = 1 }
sub timeout (@)          { $Timeout = shift if @_; $Timeout }
sub server_port (@)      { $ServerPort = shift if @_; $ServerPort }
sub server_port_for_client (@) { $ServerPortForClient = shift if @_; $ServerPortForClient }
sub server_name (@)      { $ServerName = shift if @_; $ServerName }
sub server_addr (@)      { $ServerAddr = shift if @_; $ServerAddr }
sub server_root ()       { $ServRoot }
sub html_dir ()          { $HtmlDir }
sub config_preamble ($)  { $ConfigPreamble = shift }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($)      { unshift @CleanupHandlers, shift }
sub add_test_cleanup_handler ($) { unshift @TestCleanupHandlers, shift }

sub env_to_nginx (@) {
    die "env_to_nginx: no arguments specified\n" unless @_;
    for my $v (@_) {
        die "env_to_nginx: bad argument value: $v\n" unless $v =~ /^[A-Za-z_]/;
        push @EnvToNginx, $v;
    }
}

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

# Equality test of two strings (or a match when the expected value is a qr//): a
# Test::LongString comparison by default, Test::Base's diffing `is` after no_long_string().
sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return Test::More::like($got, $expected, $desc) if ref $expected eq 'Regexp';
    return Test::Base::is($got, $expected, $desc) if $NoLongString;
    require Test::LongString;
    return Test::LongString::is_string($got, $expected, $desc);
}

sub parse_time ($) {
    my $t = shift;
    return undef unless defined $t;
    return $1 / 1000 if $t =~ /^\s*([\d.]+)\s*ms\s*$/;
    return $1 if $t =~ /^\s*([\d.]+)\s*s?\s*$/;
    return $t;
}

sub read_file ($) {
    my $file = shift;
    open my $fh, '<', $file or return undef;
    binmode $fh;
    local $/;
    my $data = <$fh>;
    return $data // '';
}

# --- $TEST_NGINX_* expansion ---------------------------------------------------------------

# A free TCP port on 127.0.0.1 that is neither the server port nor already taken in %$used.
sub gen_rand_port ($) {
    my $used = shift;
    for (1 .. 1000) {
        my $port = 1988 + int rand(65535 - 1988);
        next if $used->{$port} || $port == $ServerPort;
        my $sock = IO::Socket::INET->new(LocalAddr => $ServerAddr, LocalPort => $port,
                                         Proto => 'tcp', Listen => 1, ReuseAddr => 1)
            or next;
        close $sock;
        return $port;
    }
    return undef;
}

# Replaces every $TEST_NGINX_XXX in $text by the environment variable's value, and
# $TEST_NGINX_RAND_PORT_N by a free port picked once per block (kept in %$rand_ports).
sub expand_env_in_text ($$$) {
    my ($text, $name, $rand_ports) = @_;
    return $text if !defined $text || ref $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            if (!defined $rand_ports->{$var}) {
                my %used = map { $_ => 1 } values %$rand_ports;
                $rand_ports->{$var} = gen_rand_port(\%used) // bail_out(
                    "$name - Cannot find an available listening port number for $var.\n");
            }
            $rand_ports->{$var};
        } else {
            defined $ENV{$var} ? $ENV{$var} : bail_out("$name - No environment $var defined.\n");
        }
    }ge;
    return $text;
}

# --- server root and nginx.conf ------------------------------------------------------------

my ($NginxV, $NginxVersion);

sub nginx_v () {
    return $NginxV if defined $NginxV;
    my $bin = $NginxBinary;
    if ($bin !~ m{/}) {
        ($bin) = grep { -x "$_/$NginxBinary" } split /:/, ($ENV{PATH} // '');
        bail_out("Cannot find the nginx executable '$NginxBinary' in PATH "
                 . "(set TEST_NGINX_BINARY)\n") unless defined $bin;
        $bin .= "/$NginxBinary";
    }
    bail_out("The nginx executable '$bin' (TEST_NGINX_BINARY) does not exist or "
             . "is not executable\n") unless -f $bin && -x _;
    $NginxV = `'$bin' -V 2>&1`;
    return $NginxV;
}

# The nginx version as a number like upstream's (1.022001 for 1.22.1), or undef.
sub nginx_version () {
    return $NginxVersion if defined $NginxVersion;
    return $NginxVersion = nginx_v() =~ m{nginx/(\d+)\.(\d+)\.(\d+)}
        ? sprintf("%d.%03d%03d", $1, $2, $3) : undef;
}

# Empties the server root for a fresh nginx (never removes the directory itself); for a
# reload (HUP) only the html directory is renewed.
sub prepare_server_root ($) {
    my $for_reload = shift;
    stop_nginx() unless $for_reload;    # while its pid file is still there
    remove_tree($HtmlDir);
    remove_tree($ConfDir, $LogDir, "$ServRoot/cache", glob("$ServRoot/*_temp"),
                glob("$ServRoot/*_cache")) unless $for_reload;
    make_path($LogDir, $HtmlDir, $ConfDir);
    open my $out, '>', "$HtmlDir/index.html" or bail_out("Cannot write $HtmlDir/index.html: $!\n");
    print $out '<html><head><title>It works!</title></head><body>It works!</body></html>';
    close $out;
}

# --- user_files: ">>> name" headers (optionally followed by a touch -t date) or an array
# of [name, body, date]; relative names live under the html directory.
sub write_user_files ($$) {
    my ($block, $rand_ports) = @_;
    my $name  = $block->name;
    my $files = $block->user_files;
    return unless $files;
    if (!ref $files) {
        my @list;
        for my $line (split /^/m, $files) {
            if ($line =~ />>> (\S+)(?:\s+(.+))?/) {    # (unanchored, as upstream)
                push @list, [$1, '', $2];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    }
    bail_out("$name - user_files must be a string or an ARRAY\n") unless ref $files eq 'ARRAY';
    for my $file (@$files) {
        my ($fname, $body, $date) = @$file;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        make_path($1) if $path =~ m{(.*)/} && !-d $1;
        open my $out, '>', $path or bail_out("$name - Cannot open $path for writing: $!\n");
        binmode $out;
        print $out expand_env_in_text($body // '', $name, $rand_ports);
        close $out;
        if ($date) {
            local $ENV{TZ} = 'GMT';
            system('touch', '-t', $date, $path) == 0
                or bail_out("$name - Failed to touch -t '$date' $path\n");
        }
    }
}

sub write_config_file ($$$$) {
    my ($block, $config, $rand_ports, $config_version) = @_;
    my $name = $block->name;
    my $expand = sub { expand_env_in_text($_[0] // '', $name, $rand_ports) };
    my $http_config      = $expand->($block->http_config);
    my $main_config      = $expand->($block->main_config);
    my $post_main_config = $expand->($block->post_main_config);
    my $server_name      = $block->server_name // $ServerName;
    my $master           = $UseHup ? 'on' : $MasterProcessEnabled;
    $config //= '';

    my $modules = join '', map { "load_module $_;\n" } split ' ', $LoadModules;
    my $env = join '', map { "env " . (/\s/ ? "'$_'" : $_) . ";\n" } @EnvToNginx;
    my $user = defined $WorkerUser ? "user $WorkerUser;\n" : $> == 0 ? "user root;\n" : '';

    my $nginx_v = nginx_v();
    my $temp_paths = '';
    for my $kind (qw(client_body proxy fastcgi scgi uwsgi)) {
        next if $nginx_v =~ /--without-http_${kind}_module/;
        next if $http_config =~ /\b${kind}_temp_path\b/;
        $temp_paths .= "\n    ${kind}_temp_path $ServRoot/${kind}_temp;";
    }

    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    my $version_server = !$UseHup ? '' : <<"_EOC_";
    server {
        listen          $ServerPort;
        server_name     'Test-Nginx';

        location = /ver {
            return 200 '$config_version';
        }
    }
_EOC_

    # load_module must come before anything that uses a module, so it opens the file.
    open my $out, '>', $ConfFile or bail_out("Can't open $ConfFile for writing: $!\n");
    print $out <<"_EOC_";
${modules}worker_processes  $Workers;
daemon on;
master_process $master;
error_log $ErrLogFile $LogLevel;
pid       $PidFile;
$user$env
$main_config

http {
    access_log $AccLogFile;$temp_paths

    default_type text/plain;
    keepalive_timeout  68000ms;

$http_config

    server {
        listen          $ServerPort;
        server_name     '$server_name';
        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_location    }

$version_server}

$post_main_config

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}
_EOC_
    close $out;
}

# --- the nginx process ------------------------------------------------------------------------

sub read_pid () {
    my $pid = read_file($PidFile) // '';
    return $pid =~ /^\s*(\d+)/ ? $1 : undef;
}

# A daemonized nginx is not our child; where nobody reaps orphans (containers) it stays a
# zombie after exiting, so "running" means: exists and is not a zombie.
sub is_running ($) {
    my $pid = shift;
    return 0 unless $pid && kill 0, $pid;
    my $stat = read_file("/proc/$pid/stat") // '';
    return $stat !~ /^\d+ \(.*\) Z/s;
}

sub nginx_is_running () { is_running(read_pid()) }

# Whether a socket listens on the TCP port, from /proc/net/tcp{,6} (true without /proc).
sub port_is_listening ($) {
    my $port = shift;
    my $seen_proc;
    for my $file ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $in, '<', $file or next;
        $seen_proc = 1;
        while (<$in>) {
            # sl local_address rem_address st ...; st 0A is LISTEN
            return 1 if /^\s*\d+:\s+[0-9A-Fa-f]+:([0-9A-Fa-f]+)\s+\S+\s+0A\s/ && hex($1) == $port;
        }
    }
    return !$seen_proc;
}

# Runs the nginx command line (it daemonizes and exits). Returns its wait status and
# everything it printed on stderr.
sub run_nginx_command () {
    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);
    # -e (nginx >= 1.19.5) sends errors found before error_log is read to the log too
    splice @cmd, 1, 0, '-e', $ErrLogFile if (nginx_version() // 0) >= 1.019005;
    my ($err_fh, $err_file) = tempfile();
    my $pid = fork // bail_out("fork() failed: $!\n");
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>&', $err_fh;
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    close $err_fh;
    my $deadline = time + 30;    # the command exits once nginx has daemonized
    while (waitpid($pid, WNOHANG) == 0) {
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            last;
        }
        sleep 0.005;
    }
    my $status = $?;
    my $stderr = read_file($err_file) // '';
    unlink $err_file;
    return ($status, $stderr);
}

# Starts nginx from scratch; waits for its pid file and its listening port.
# Returns (1, $stderr) or (0, $why).
sub start_nginx () {
    stop_nginx();
    my ($status, $stderr) = run_nginx_command();
    return (0, "nginx exited with status " . ($status >> 8) . ":\n$stderr") if $status != 0;
    my $deadline = time + 5;
    while (!nginx_is_running()) {
        return (0, "nginx did not write a running pid to $PidFile\n$stderr") if time > $deadline;
        sleep 0.01;
    }
    # (not by connecting: a probe connection would leave lines in the error log)
    while (!port_is_listening($ServerPort)) {
        return (0, "nginx does not listen on port $ServerPort\n$stderr") if time > $deadline;
        sleep 0.01;
    }
    sleep $TestNginxSleep;
    return (1, $stderr);
}

# Runs nginx expecting it to fail: returns its wait status and stderr; an nginx that
# started anyway is stopped again.
sub run_nginx_to_die () {
    stop_nginx();
    my ($status, $stderr) = run_nginx_command();
    if ($status == 0) {
        for (1 .. 20) { last if read_pid(); sleep $TestNginxSleep }
        stop_nginx();
    }
    return ($status, $stderr);
}

# Sends HUP to the running master after the new files are written, then waits until the
# version server answers with $version (the new configuration is live).
sub reload_nginx ($) {
    my $version = shift;
    my $pid = read_pid();
    return (0, "no running nginx to reload") unless is_running($pid);
    kill 'HUP', $pid or return (0, "cannot send HUP to $pid: $!");
    my ($hits, $deadline) = (0, time + 2 * $Timeout);
    while (time < $deadline) {
        my $got = http_get_version();
        $hits = defined $got && $got eq $version ? $hits + 1 : 0;
        return (1, '') if $hits >= 5;
        sleep $hits ? $TestNginxSleep : 0.05;
    }
    return (0, "nginx did not load the new configuration after HUP (see error.log)");
}

sub http_get_version () {
    my $sock = IO::Socket::INET->new(PeerAddr => $ServerAddr, PeerPort => $ServerPort,
                                     Proto => 'tcp', Timeout => 1) or return undef;
    print $sock "GET /ver HTTP/1.0\r\nHost: Test-Nginx\r\n\r\n";
    my ($resp, $sel) = ('', IO::Select->new($sock));
    while ($sel->can_read(1)) {
        my $n = sysread $sock, $resp, 4096, length $resp;
        last unless $n;
    }
    close $sock;
    return $resp =~ m{\AHTTP/\d\.\d 200 .*?\r\n\r\n(.*)\z}s ? $1 : undef;
}

# SIGQUIT, then SIGKILL after 5 seconds.
sub stop_nginx () {
    my $pid = read_pid();
    if (is_running($pid)) {
        kill 'QUIT', $pid;
        my $deadline = time + 5;
        sleep 0.01 while is_running($pid) && time < $deadline;
        if (is_running($pid)) {
            warn "WARNING: nginx $pid did not quit in 5 seconds; killing it\n";
            kill 'KILL', $pid;
            sleep 0.05;
        }
    }
    unlink $PidFile if -e $PidFile;
}

# --- the error log ---------------------------------------------------------------------------

my $ErrLogPos = 0;

sub reset_error_log_pos (@) { $ErrLogPos = shift // 0 }

# The error.log lines written since the last call (all of them with check_accum_error_log).
sub error_log_lines () {
    sleep $TestNginxSleep * 3;    # lines logged after the connection was closed
    open my $in, '<', $ErrLogFile or return [];
    seek $in, $ErrLogPos, 0 if !$CheckAccumErrLog && $ErrLogPos > 0;
    my @lines = <$in>;
    $ErrLogPos = tell $in unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

# The last $n lines of error.log that are not debug lines (nor their continuation lines),
# for failure diagnostics.
sub error_log_tail ($$) {
    my ($from, $n) = @_;
    open my $in, '<', $ErrLogFile or return "(no $ErrLogFile)\n";
    seek $in, $from, 0 if $from;
    my ($show, @lines) = (0);
    while (my $line = <$in>) {
        $show = $line !~ /\[debug\]/ if $line =~ m{^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[};
        push @lines, $line if $show;
    }
    close $in;
    splice @lines, 0, @lines - $n if @lines > $n;
    return join '', @lines;
}

# --- the fake TCP upstream (--- tcp_listen) -------------------------------------------------

# Listens on the block's tcp_listen port and forks a server that accepts one connection,
# reads the query, sends --- tcp_reply and closes (or not, with --- tcp_no_close).
sub start_tcp_server ($$) {
    my ($block, $rand_ports) = @_;
    my $name = $block->name;
    my $target = expand_env_in_text($block->tcp_listen, $name, $rand_ports);
    $target =~ s/^\s+|\s+$//g;
    bail_out("$name - bad tcp_listen target: $target\n") unless $target =~ /^\d+$|\.sock$/;
    my $reply = $block->tcp_reply;
    bail_out("$name - no --- tcp_reply specified but --- tcp_listen is specified\n")
        unless defined $reply;

    my $want;    # how many bytes to wait for before replying
    if (defined $block->tcp_query_len) {
        $want = $block->tcp_query_len;
    } elsif (defined $block->tcp_query && !ref $block->tcp_query) {
        $want = length $block->tcp_query;
    }

    my $listener;
    if ($target !~ /^\d+$/) {    # a unix domain socket
        unlink $target;
        $listener = IO::Socket::UNIX->new(Local => $target, Type => SOCK_STREAM, Listen => 5);
    }
    for (1 .. 30) {
        last if $listener;
        $listener = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $target,
                                          Proto => 'tcp', Listen => 5, ReuseAddr => 1);
        last if $listener || $! !~ /in use/i;
        sleep 0.1;
    }
    bail_out("$name - failed to create the tcp listening socket on $target: $!\n")
        unless $listener;

    my (undef, $query_file) = tempfile(UNLINK => 0);
    my $timeout = parse_time($block->timeout) // $Timeout;
    my $pid = fork // bail_out("$name - fork() failed: $!\n");
    if ($pid == 0) {
        $SIG{ALRM} = sub { POSIX::_exit(0) };
        alarm(30 + 10 * $timeout);    # never outlive a runner that died
        serve_one_tcp_client($block, $listener, $query_file, $want, $reply, $timeout);
        POSIX::_exit(0);
    }
    close $listener;
    return { pid => $pid, query_file => $query_file, target => $target };
}

sub serve_one_tcp_client ($$$$$$) {
    my ($block, $listener, $query_file, $want, $reply, $timeout) = @_;
    my $client = $listener->accept or return;
    binmode $client;
    my $sel = IO::Select->new($client);
    my $buf = '';
    # without an expected length, a pause of 0.1s after some data ends the query
    while ($sel->can_read((length($buf) && !defined $want) ? 0.1 : $timeout)) {
        my $n = sysread $client, $buf, 65536, length $buf;
        last unless $n;
        # flush to the file at once, atomically: the parent may read it any time
        open my $out, '>', "$query_file.tmp" or last;
        binmode $out;
        print $out $buf;
        close $out;
        rename "$query_file.tmp", $query_file;
        last if defined $want ? length $buf >= $want : http_message_complete($buf);
    }
    my $delay = parse_time($block->tcp_reply_delay);
    sleep $delay if $delay;
    $reply = $reply->($buf) if ref $reply eq 'CODE';
    local $SIG{PIPE} = 'IGNORE';
    for my $piece (ref $reply eq 'ARRAY' ? @$reply : ($reply)) {
        syswrite $client, $piece if defined $piece && length $piece;
    }
    sleep 1 while defined $block->tcp_no_close;    # until stop_tcp_server kills us
    close $client;
}

# Whether $buf holds a whole HTTP request (head plus Content-Length or chunked body).
sub http_message_complete ($) {
    my $buf = shift;
    return 0 unless $buf =~ /\A(.*?\r\n\r\n)/s;
    my $head = $1;
    return length($buf) >= length($head) + $1 if $head =~ /^Content-Length:\s*(\d+)/mi;
    return $buf =~ /\r\n0[ \t]*(?:;[^\r\n]*)?\r\n(?:[^\r\n]+\r\n)*\r\n\z/
        if $head =~ /^Transfer-Encoding:\s*chunked/mi;
    return 1;
}

sub read_tcp_query ($) {
    my $server = shift;
    return read_file($server->{query_file}) // '';
}

sub stop_tcp_server ($) {
    my $server = shift;
    return unless $server && $server->{pid};
    kill 'KILL', $server->{pid};    # its reply is in: the response was read
    waitpid($server->{pid}, 0);
    unlink $server->{query_file}, "$server->{query_file}.tmp";
    unlink $server->{target} if $server->{target} =~ /\.sock$/;
    $server->{pid} = undef;
}

# --- end of the run ---------------------------------------------------------------------------

my $MainPid = $$;
my $CleanedUp;

sub cleanup () {
    return if $CleanedUp++;
    $_->() for @CleanupHandlers;
}

END {
    if ($$ == $MainPid) {
        local $?;    # keep the test's exit status
        cleanup();
        stop_nginx() unless $ENV{TEST_NGINX_NO_CLEAN};
    }
}

1;
