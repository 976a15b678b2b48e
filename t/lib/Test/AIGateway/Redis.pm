package Test::AIGateway::Redis;

# A private redis-server for a test (its own port, nothing on disk, stopped by pid), a
# minimal RESP client, and publishing a gateway snapshot the way nodes expect it
# (<prefix>:cfg:snap:<v>, <prefix>:cfg:head, a message on <prefix>:cfg:notify).

use strict;
use warnings;
use Exporter 'import';
use IO::Socket::INET;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep time);
use POSIX ();

our @EXPORT = qw(start_redis redis publish_snapshot);

# Starts redis-server on 127.0.0.1:$port in the foreground of a child; returns its pid.
sub start_redis {
    my ($port, $dir) = @_;
    my ($bin) = grep { -x } map { "$_/redis-server" } split(/:/, $ENV{PATH}), '/usr/bin', '/usr/sbin';
    die "redis-server is not installed (make deps installs it)\n" unless $bin;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', "$dir/redis.log";
        open STDERR, '>&', \*STDOUT;
        { exec $bin, '--port', $port, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
            '--dir', $dir; }
        POSIX::_exit(127);
    }
    for (1 .. 100) {
        my $r = eval { redis($port, 'PING') };
        return $pid if defined $r && $r eq 'PONG';
        sleep 0.05;
    }
    die "redis-server on $port did not start\n";
}

# Sends one command, returns the reply (arrays as array refs; errors die).
sub redis {
    my ($port, @args) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 2)
        or die "redis $port: $!\n";
    my $req = '*' . @args . "\r\n";
    $req .= '$' . length($_) . "\r\n$_\r\n" for @args;
    print $s $req;
    my $reply = read_reply($s);
    close $s;
    return $reply;
}

sub read_reply {
    my $s = shift;
    my $line = <$s>;
    die "redis: no reply\n" unless defined $line;
    $line =~ s/\r\n\z//;
    my ($t, $rest) = (substr($line, 0, 1), substr($line, 1));
    return $rest if $t eq '+' || $t eq ':';
    die "redis: $rest\n" if $t eq '-';
    if ($t eq '$') {
        return undef if $rest < 0;
        my $buf = '';
        while (length($buf) < $rest + 2) {
            my $n = read($s, $buf, $rest + 2 - length($buf), length($buf));
            die "redis: short read\n" unless $n;
        }
        return substr($buf, 0, $rest);
    }
    if ($t eq '*') {
        return undef if $rest < 0;
        return [ map { read_reply($s) } 1 .. $rest ];
    }
    die "redis: unexpected reply $line\n";
}

# Publishes $doc as version $v of $epoch. Options: notify => 0 (no pub/sub message),
# sha => a sha256 to put in the head instead of the document's, snapshot => 0 (head only).
# Returns the time of publishing (after the last write).
sub publish_snapshot {
    my ($port, $prefix, $v, $epoch, $doc, %o) = @_;
    my $sha = $o{sha} // sha256_hex($doc);
    redis($port, 'SET', "$prefix:cfg:snap:$v", $doc) unless defined $o{snapshot} && !$o{snapshot};
    my $head = qq({"version":$v,"sha256":"$sha","epoch":"$epoch"});
    redis($port, 'SET', "$prefix:cfg:head", $head);
    my $t = time;
    redis($port, 'PUBLISH', "$prefix:cfg:notify", $head) unless defined $o{notify} && !$o{notify};
    return $t;
}

1;
