package Test::AIGateway::Process;

# Helpers of the plain Test::More files that run their own nginx (t/061, t/070, t/091):
# writing a prefix's nginx.conf, waiting for pid files and ports, stopping processes by pid,
# reading files, and de-chunking a raw HTTP body.

use strict;
use warnings;
use Exporter 'import';
use IO::Socket::INET;
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep);

our @EXPORT = qw(main_conf write_conf slurp alive stop wait_pid wait_port dechunk);

# The top of an nginx.conf that loads the module: $workers worker processes (as root,
# running them as root too), info-level error log, pid file, events.
sub main_conf {
    my ($module, $workers) = @_;
    my $user = $> == 0 ? "user root root;\n" : "";
    return "load_module $module;\n${user}worker_processes $workers;\n"
         . "error_log logs/error.log info;\npid logs/nginx.pid;\n"
         . "events { worker_connections 256; }";
}

# Writes $dir/conf/nginx.conf (and makes $dir/logs); the prefix starts empty unless $keep.
sub write_conf {
    my ($dir, $text, $keep) = @_;
    remove_tree($dir) unless $keep;
    make_path("$dir/conf", "$dir/logs");
    open my $fh, '>', "$dir/conf/nginx.conf" or die $!;
    print $fh $text;
    close $fh;
}

sub slurp {
    local $/;
    open my $fh, '<', shift or return '';
    return <$fh>;
}

# Whether a process exists and is not a zombie (a daemon nobody reaps, in a container, stays a
# zombie: that counts as gone).
sub alive {
    my $pid = shift;
    return 0 unless kill 0, $pid;
    open my $f, '<', "/proc/$pid/stat" or return 0;
    return <$f> !~ /^\d+ \(.*\) Z/;
}

# QUIT, then KILL after 5 s; true once the process is gone.
sub stop {
    my $p = shift;
    kill 'QUIT', $p;
    for (1 .. 50) { return 1 unless alive($p); sleep 0.1 }
    kill 'KILL', $p;
    for (1 .. 10) { return 1 unless alive($p); sleep 0.1 }
    return 0;
}

# The pid in a pid file, waiting up to 5 s for it.
sub wait_pid {
    my $file = shift;
    for (1 .. 50) {
        if (open my $f, '<', $file) { my $p = <$f>; chomp $p if defined $p; return $p if $p }
        sleep 0.1;
    }
    return;
}

# True once 127.0.0.1:$port accepts connections (up to 5 s).
sub wait_port {
    my $port = shift;
    for (1 .. 50) {
        return 1 if IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port);
        sleep 0.1;
    }
    return;
}

# A chunked body, decoded.
sub dechunk {
    my $in = shift;
    my $out = '';
    while ($in =~ s/\A([0-9a-fA-F]+)\r\n//) {
        my $len = hex $1;
        last if $len == 0;
        $out .= substr($in, 0, $len, '');
        $in =~ s/\A\r\n//;
    }
    return $out;
}

1;
