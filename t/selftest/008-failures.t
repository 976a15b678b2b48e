# Self-test of t/lib/compat: wrong expectations fail (and only they), with diagnostics;
# an unset $TEST_NGINX_* variable and a missing nginx binary bail out.
use strict;
use warnings;
use Test::More;

# Only meaningful for this runner (upstream's words its diagnostics differently).
my ($lib) = grep { -f "$_/Test/Nginx/Socket.pm" } @INC;
my $source = $lib ? do { local (@ARGV, $/) = ("$lib/Test/Nginx/Socket.pm"); <> } : '';
plan skip_all => 'not the t/lib/compat runner' unless $source =~ m{t/lib/compat};

sub run_file {
    my ($file, %env) = @_;
    local @ENV{keys %env} = values %env;
    my $out = `'$^X' $file 2>&1`;
    return ($out, $? >> 8);
}

my $t = 't/selftest/fail/wrong-expectations.tt';
my ($out, $rc) = run_file($t);

my @failing = (
    qr/TEST 1: wrong status - status code ok/,
    qr/TEST 2: wrong body - response_body - response is expected/,
    qr/TEST 3: .* - pattern "this text is never logged" should match a line in error.log/,
    qr/TEST 3: .* - pattern "\[error\]" should not match any line in error.log but matches line/,
    qr/TEST 4: .* - header x-present not present in the raw headers/,
    qr/TEST 4: .* - header X-Other ok/,
    qr/TEST 4: .* - response_body_like - response is expected/,
    qr/ERROR: client socket timed out - \S+ TEST 5: a client timeout without abort/,
    qr/TEST 6: must_die with a valid configuration - die as expected/,
    qr/TEST 7: tcp_query mismatch - tcp_query ok/,
);
my @not_ok = $out =~ /^not ok \d+ - (.*)$/mg;
is(scalar @not_ok, scalar @failing, 'as many failures as wrong expectations')
    or diag($out);
for my $re (@failing) {
    ok((grep { $_ =~ $re } @not_ok), "fails: $re");
}
like($out, qr/^ok \d+ - .*TEST 1: wrong status - response_body - response is expected/m,
     'the right expectations of a failing block still pass');
like($out, qr/^ok \d+ - .*TEST 7: tcp_query mismatch - status code ok/m,
     'a tcp_query mismatch does not fail the response checks');
like($out, qr/TEST 1: wrong status - error\.log \(last non-debug lines\):/,
     'a failing block shows the tail of error.log');
like($out, qr/got: '200'\n#\s+expected: '404'/, 'a wrong status shows got and expected');
like($out, qr/world/, 'a wrong body shows what was expected');
is($rc, scalar @failing, 'the exit status counts the failures');

($out, $rc) = run_file('t/selftest/fail/bail-env.tt');
like($out, qr/^Bail out!.*No environment TEST_NGINX_SELFTEST_NO_SUCH_VAR defined/m,
     'an unset $TEST_NGINX_* variable bails out');
isnt($rc, 0, '... and the file fails');

($out, $rc) = run_file('t/selftest/fail/bail-env.tt',
                       TEST_NGINX_BINARY => '/nonexistent/nginx');
like($out, qr{^Bail out!.*/nonexistent/nginx}m, 'a missing nginx binary bails out');
isnt($rc, 0, '... and the file fails');

done_testing();
