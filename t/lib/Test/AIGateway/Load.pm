package Test::AIGateway::Load;

# HTTP for the plain Test::More files that drive several nodes at once (t/140): one request
# on a new connection with its client-side time, a request whose head is read while its body
# (a slow stream) keeps coming, forked clients released together that hand their results
# back as JSON, /metrics parsed into series, and percentiles. Every read has a deadline.

use strict;
use warnings;
use Exporter 'import';
use IO::Socket::INET;
use IO::Select;
use JSON::PP ();
use Time::HiRes qw(time sleep);
use POSIX ();
use Test::AIGateway::Process qw(dechunk);

our @EXPORT = qw(http send_request read_head read_rest spawn collect parallel metrics metric_sum percentile);

my $json = JSON::PP->new->canonical;

# Sends one request on a new connection to 127.0.0.1:$port; returns the socket (undef when
# the connection is refused). $headers is a string of "Name: value\r\n" lines.
sub send_request {
    my ($port, $method, $path, $headers, $body) = @_;
    $body //= '';
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 2)
        or return;
    $s->autoflush(1);
    my $req = "$method $path HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n" . ($headers // '')
        . (length $body || $method eq 'POST' ? 'Content-Length: ' . length($body) . "\r\n" : '')
        . "\r\n$body";
    return unless defined syswrite($s, $req);
    return $s;
}

# Reads until the end of the response head (at most until $deadline, an absolute time).
# Returns {status, headers (lower-case names), rest (body bytes read so far)}; status 0 when
# the connection closed or the deadline passed first.
sub read_head {
    my ($s, $deadline) = @_;
    my $buf = '';
    my $sel = IO::Select->new($s);
    while ($buf !~ /\r\n\r\n/) {
        my $left = $deadline - time;
        last if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
    return { status => 0, headers => {}, rest => $buf } unless defined $rest;
    my ($status) = $head =~ m{\AHTTP/1\.[01] (\d{3})};
    my %h;
    for (split /\r\n/, $head) { $h{ lc $1 } = $2 if /^([^:]+):\s*(.*)$/ }
    return { status => $status // 0, headers => \%h, rest => $rest };
}

# Reads the rest of a response whose head read_head returned, until EOF or $deadline; sets
# body (de-chunked), complete (EOF seen) and closes the socket.
sub read_rest {
    my ($s, $r, $deadline) = @_;
    my $buf = $r->{rest};
    my $sel = IO::Select->new($s);
    my $eof = 0;
    while (1) {
        my $left = $deadline - time;
        last if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        if (!$n) { $eof = 1; last }
    }
    close $s;
    $r->{complete} = $eof;
    $r->{body} = ($r->{headers}{'transfer-encoding'} // '') =~ /chunked/i ? dechunk($buf) : $buf;
    return $r;
}

# One request on a new connection: {status (0: no answer), headers, body, json (the body
# decoded when it is JSON), t (time sent), ms (until the whole answer was read)}.
sub http {
    my ($port, $method, $path, $headers, $body, $timeout) = @_;
    my $t = time;
    my $deadline = $t + ($timeout // 10);
    my $s = send_request($port, $method, $path, $headers, $body);
    my $r = $s ? read_rest($s, read_head($s, $deadline), $deadline)
               : { status => 0, headers => {}, body => '' };
    $r->{t} = $t;
    $r->{ms} = (time - $t) * 1000;
    delete $r->{rest};
    $r->{json} = eval { $json->decode($r->{body}) } if ($r->{body} // '') =~ /\A\s*\{/;
    return $r;
}

# Runs $code->($i) for $i in 0 .. $n-1, each in a forked child; the children start together
# (released by closing a pipe once all exist). Each returns a list of plain hashes (no
# sockets). Returns a handle for collect(); the children run meanwhile.
sub spawn {
    my ($n, $code) = @_;
    pipe(my $go_r, my $go_w) or die "pipe: $!";
    my @kids;
    for my $i (0 .. $n - 1) {
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            close $rd;
            close $go_w;
            sysread($go_r, my $x, 1);    # EOF once the parent closes its end
            my @out = eval { $code->($i) };
            @out = ({ error => "$@" }) if $@;
            print $wr $json->encode(\@out);
            close $wr;
            POSIX::_exit(0);
        }
        close $wr;
        push @kids, [ $pid, $rd ];
    }
    close $go_r;
    close $go_w;
    return \@kids;
}

# Waits for the children of spawn() and returns their results, child by child (a child that
# died gives {error => ...}).
sub collect {
    my $kids = shift;
    my @all;
    for (@$kids) {
        my ($pid, $rd) = @$_;
        local $/;
        my $text = <$rd>;
        close $rd;
        waitpid($pid, 0);
        my $out = eval { $json->decode($text // '') };
        push @all, ref $out eq 'ARRAY' ? @$out : { error => 'child gave no result' };
    }
    return @all;
}

# spawn() and collect() at once.
sub parallel { return collect(spawn(@_)) }

# The series of a Prometheus text page on 127.0.0.1:$port$path (default /metrics): a list of
# [name, {labels}, value]; empty when it does not answer.
sub metrics {
    my ($port, $path) = @_;
    my $r = http($port, 'GET', $path // '/metrics', '', '', 5);
    return [] unless $r->{status} == 200;
    my @series;
    for (split /\n/, $r->{body}) {
        next if /^#/ || !/\S/;
        my ($name, $labels, $value) = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/ or next;
        my %l;
        while (($labels // '') =~ /(\w+)="((?:[^"\\]|\\.)*)"/g) { $l{$1} = $2 }
        push @series, [ $name, \%l, $value + 0 ];
    }
    return \@series;
}

# The sum over a list of metrics() pages (an array ref) of the series named $name whose
# labels include %want.
sub metric_sum {
    my ($pages, $name, %want) = @_;
    my $sum = 0;
    for my $page (@$pages) {
        SERIES: for my $s (@$page) {
            next unless $s->[0] eq $name;
            for (keys %want) { next SERIES unless ($s->[1]{$_} // '') eq $want{$_} }
            $sum += $s->[2];
        }
    }
    return $sum;
}

# The $p-th percentile (nearest rank) of a list of numbers.
sub percentile {
    my ($p, @v) = @_;
    return 0 unless @v;
    @v = sort { $a <=> $b } @v;
    my $i = POSIX::ceil($p / 100 * @v) - 1;
    return $v[ $i < 0 ? 0 : $i ];
}

1;
