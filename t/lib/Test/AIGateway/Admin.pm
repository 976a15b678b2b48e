package Test::AIGateway::Admin;

# A client of the config center's API for the plain Test::More files: JSON requests with a
# session (cookie + CSRF token) or an API token, answers decoded.

use strict;
use warnings;
use Exporter 'import';
use IO::Socket::INET;
use JSON::PP ();

our @EXPORT = qw(api_call api_login json_of to_json);

# bodies are UTF-8 bytes on the wire: encode to and decode from them
my $json = JSON::PP->new->utf8->canonical->allow_nonref;

sub to_json { $json->encode(shift) }

sub json_of {
    my $text = shift;
    return undef unless defined $text && length $text;
    my $v = eval { $json->decode($text) };
    return $v;
}

# api_call($port, $method, $path, body => $ref_or_text, auth => $session_or_token,
#          headers => {...}, raw => 1, local_addr => '127.0.0.2')
# $auth is {cookie, csrf} (a login) or a token string. Returns {status, headers (lowercase
# names), body (text), json}. local_addr: the client's own address (another loopback
# address is another client address for the API's per-address limits).
sub api_call {
    my ($port, $method, $path, %o) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 30,
        ($o{local_addr} ? (LocalAddr => $o{local_addr}) : ()))
        or return { status => 0, body => "connect: $!", headers => {} };
    my $req = "$method $path HTTP/1.0\r\nHost: admin\r\n";
    my $auth = $o{auth};
    if (ref $auth eq 'HASH') {
        $req .= "Cookie: $auth->{cookie}\r\n";
        $req .= "X-CSRF-Token: $auth->{csrf}\r\n" if $auth->{csrf} && $method ne 'GET';
    } elsif (defined $auth) {
        $req .= "Authorization: Bearer $auth\r\n";
    }
    for my $h (sort keys %{ $o{headers} || {} }) { $req .= "$h: $o{headers}{$h}\r\n" }
    my $body = $o{body};
    $body = to_json($body) if ref $body;
    if (defined $body) {
        $req .= "Content-Type: " . ($o{content_type} // 'application/json') . "\r\n"
            unless exists $o{content_type} && !defined $o{content_type};
        $req .= "Content-Length: " . length($body) . "\r\n";
    }
    print $s "$req\r\n", $body // '';
    local $/;
    my $resp = <$s> // '';
    my ($head, $rest) = split /\r\n\r\n/, $resp, 2;
    my ($status) = ($head // '') =~ m{\AHTTP/1\.\d (\d+)};
    my %h;
    for my $line (split /\r\n/, $head // '') {
        next unless $line =~ /^([^:]+):\s*(.*)$/;
        my $k = lc $1;
        $h{$k} = exists $h{$k} ? "$h{$k}\n$2" : $2;
    }
    return { status => $status // 0, headers => \%h, body => $rest // '', json => json_of($rest) };
}

# Logs in; returns {cookie, csrf, user, role} or undef.
sub api_login {
    my ($port, $user, $password) = @_;
    my $r = api_call($port, 'POST', '/api/v1/auth/login', body => { username => $user, password => $password });
    return undef unless $r->{status} == 200;
    my ($cookie) = ($r->{headers}{'set-cookie'} // '') =~ /^(aigw_session=[^;]+)/;
    return { cookie => $cookie, csrf => $r->{json}{csrf_token}, user => $user, role => $r->{json}{role} };
}

1;
