# The monitoring assets in deploy/ (Prometheus config, alerting rules and their unit tests,
# Grafana dashboard) are valid and use exactly the metric names the module serves.
#
# Plain Test::More; needs no nginx. The promtool parts need promtool on PATH (Debian
# package `prometheus`; or PROMTOOL=/path/to/promtool); without it this test FAILS unless
# AI_GATEWAY_NO_PROMTOOL=1 is set, which skips them.
use strict;
use warnings;
use Test::More;
use JSON::PP ();
use CPAN::Meta::YAML ();
use File::Temp qw(tempdir);
use File::Spec;
use Cwd qw(abs_path);
use File::Basename qw(dirname);

my $root   = abs_path(dirname(__FILE__) . '/..');
my $deploy = "$root/deploy";

# The families of /metrics (src/core/metrics/render.rs) and their types.
my %family = (
    gateway_requests_total               => 'counter',
    gateway_requests_success_total       => 'counter',
    gateway_requests_failed_total        => 'counter',
    gateway_request_duration_seconds     => 'histogram',
    gateway_tokens_total                 => 'counter',
    gateway_requests_in_flight           => 'gauge',
    gateway_rejections_total             => 'counter',
    gateway_upstream_requests_total      => 'counter',
    gateway_upstream_duration_seconds    => 'histogram',
    gateway_upstream_failovers_total     => 'counter',
    gateway_overhead_seconds             => 'histogram',
    gateway_up_time_seconds              => 'gauge',
    gateway_config_info                  => 'gauge',
    gateway_build_info                   => 'gauge',
    gateway_metrics_series               => 'gauge',
    gateway_metrics_series_max           => 'gauge',
    gateway_metrics_series_dropped_total => 'counter',
);
my %optional_in_dashboard = (gateway_build_info => 1);

# Series name -> family ("up" is Prometheus's own).
my %series_family = (up => 'up');
for my $f (keys %family) {
    if ($family{$f} eq 'histogram') {
        $series_family{"${f}_$_"} = $f for qw(bucket sum count);
    } else {
        $series_family{$f} = $f;
    }
}

my %file = (
    config     => "$deploy/prometheus.yml",
    rules      => "$deploy/alerts.yml",
    rules_test => "$deploy/alerts.test.yml",
    dashboard  => "$deploy/grafana/ai-gateway-dashboard.json",
    readme     => "$deploy/README.md",
);
for my $k (sort keys %file) {
    ok(-f $file{$k}, "$k exists: " . File::Spec->abs2rel($file{$k}, $root))
        or BAIL_OUT("missing $file{$k}");
}

# ---------------------------------------------------------------------------------------
# promtool
# ---------------------------------------------------------------------------------------
my $promtool = find_promtool();
SKIP: {
    unless ($promtool) {
        if ($ENV{AI_GATEWAY_NO_PROMTOOL}) {
            skip 'promtool not found; AI_GATEWAY_NO_PROMTOOL=1 set', 4;
        }
        fail('promtool found');
        diag('promtool is not on PATH: install it (Debian/Ubuntu: apt-get install prometheus; '
            . 'it is /usr/bin/promtool) or set PROMTOOL=/path/to/promtool, '
            . 'or set AI_GATEWAY_NO_PROMTOOL=1 to skip the promtool checks');
        skip 'promtool not found', 3;
    }
    note("promtool: $promtool");
    promtool_ok([qw(check config), $file{config}], 'promtool check config deploy/prometheus.yml');
    promtool_ok([qw(check rules), $file{rules}], 'promtool check rules deploy/alerts.yml');
    promtool_ok([qw(test rules), $file{rules_test}],
        'promtool test rules deploy/alerts.test.yml (alerts fire on bad data, not on healthy data)');

    # The dashboard's queries are valid PromQL: check them as recording rules, with the
    # Grafana variables replaced by what Grafana would send.
    my $dash = read_json($file{dashboard});
    my @exprs = map { [$_->[0], grafana_to_promql($_->[1])] } dashboard_exprs($dash);
    my $dir = tempdir(CLEANUP => 1);
    my $rules = "$dir/dashboard-queries.yml";
    open(my $fh, '>', $rules) or die "$rules: $!";
    print $fh "groups:\n  - name: dashboard\n    rules:\n";
    my $i = 0;
    for my $e (@exprs) {
        $i++;
        (my $q = $e->[1]) =~ s/\n/ /g;
        print $fh "      - record: dashboard:query_$i\n        expr: |\n          $q\n";
    }
    close $fh;
    promtool_ok([qw(check rules), $rules],
        'promtool check rules on the ' . scalar(@exprs) . ' dashboard queries (valid PromQL)');
}

# ---------------------------------------------------------------------------------------
# prometheus.yml
# ---------------------------------------------------------------------------------------
{
    my $cfg = read_yaml($file{config});
    is_deeply($cfg->{rule_files}, ['alerts.yml'], 'prometheus.yml: rule_files is alerts.yml (relative)');
    my @jobs = grep { $_->{job_name} eq 'ai-gateway' } @{ $cfg->{scrape_configs} || [] };
    is(scalar @jobs, 1, 'prometheus.yml: one scrape job ai-gateway');
    my $job = $jobs[0] || {};
    is($job->{scrape_interval} || $cfg->{global}{scrape_interval}, '15s', 'ai-gateway: 15s interval');
    is($job->{metrics_path} || '/metrics', '/metrics', 'ai-gateway: metrics_path /metrics');
    my @targets = map { @{ $_->{targets} || [] } } @{ $job->{static_configs} || [] };
    is_deeply(\@targets, ['127.0.0.1:8080'], 'ai-gateway: target 127.0.0.1:8080');
    ok(!exists $cfg->{alerting}, 'prometheus.yml: no Alertmanager required');
}

# ---------------------------------------------------------------------------------------
# alerts.yml
# ---------------------------------------------------------------------------------------
my %alert;
{
    my $rules = read_yaml($file{rules});
    my @groups = @{ $rules->{groups} || [] };
    is_deeply([map { $_->{name} } @groups], ['ai-gateway'], 'alerts.yml: one group ai-gateway');
    for my $r (map { @{ $_->{rules} || [] } } @groups) {
        my $name = $r->{alert};
        ok($name, 'every rule is an alert') or next;
        ok(!$alert{$name}, "$name: unique") ;
        $alert{$name} = $r;
        like($r->{labels}{severity} || '', qr/\A(?:critical|warning|info)\z/, "$name: severity label");
        for my $k (qw(summary description)) {
            ok(length($r->{annotations}{$k} || ''), "$name: $k annotation");
        }
        like(join(' ', values %{ $r->{annotations} || {} }), qr/\{\{\s*\$(?:labels|value)\b/,
            "$name: annotations use label/value templates");
        metrics_ok($r->{expr}, "alert $name");
    }
    my %want = (
        GatewayHighErrorRatio          => qr/gateway_requests_failed_total.*\/.*gateway_requests_total.*>\s*0\.05/s,
        GatewayHighLatencyP95          => qr/histogram_quantile\(\s*0\.95.*gateway_request_duration_seconds_bucket/s,
        GatewayUpstreamFailures        => qr/gateway_upstream_requests_total\{code=~"5\.\."\}/,
        GatewayUpstreamFailovers       => qr/gateway_upstream_failovers_total/,
        GatewayRejectionsSpike         => qr/sum by \(reason\) \(rate\(gateway_rejections_total/,
        GatewayMetricsSeriesCapReached => qr/increase\(gateway_metrics_series_dropped_total\[\w+\]\)\s*>\s*0/,
        GatewayHighOverhead            => qr/histogram_quantile\(\s*0\.99.*gateway_overhead_seconds_bucket.*>\s*0\.001/s,
        GatewayDown                    => qr/up\{job="ai-gateway"\}\s*==\s*0/,
        GatewayRestarted               => qr/resets\(gateway_up_time_seconds\[\w+\]\)/,
    );
    for my $name (sort keys %want) {
        like($alert{$name} ? $alert{$name}{expr} : '', $want{$name}, "alert $name present");
    }
}

# alerts.test.yml feeds only series the module (or Prometheus) produces.
{
    my $text = slurp($file{rules_test});
    my @names = $text =~ /^\s*-?\s*series:\s*['"]?([A-Za-z_:][A-Za-z0-9_:]*)/mg;
    ok(@names > 0, 'alerts.test.yml: has input series');
    my @unknown = grep { !$series_family{$_} } @names;
    ok(!@unknown, 'alerts.test.yml: input series use known metric names')
        or diag("unknown: @unknown");
    like($text, qr/^rule_files:\s*\n\s*-\s*alerts\.yml\s*$/m, 'alerts.test.yml: tests alerts.yml');
}

# ---------------------------------------------------------------------------------------
# Grafana dashboard
# ---------------------------------------------------------------------------------------
{
    my $dash = read_json($file{dashboard});
    ok($dash, 'dashboard: valid JSON');
    cmp_ok($dash->{schemaVersion} || 0, '>=', 36, 'dashboard: schemaVersion >= 36');
    ok($dash->{title} && $dash->{uid}, 'dashboard: title and uid');

    my %var = map { $_->{name} => $_ } @{ $dash->{templating}{list} || [] };
    my $ds = $var{datasource} || {};
    is($ds->{type}, 'datasource', 'variable datasource: type datasource');
    is($ds->{query}, 'prometheus', 'variable datasource: query prometheus');
    my $ns = $var{namespace} || {};
    is($ns->{type}, 'query', 'variable namespace: type query');
    my $nsq = ref $ns->{query} ? $ns->{query}{query} : $ns->{query};
    like($nsq || '', qr/\Alabel_values\(\s*gateway_requests_total\s*,\s*namespace\s*\)\z/,
        'variable namespace: label_values(gateway_requests_total, namespace)');
    ok($ns->{multi} && $ns->{includeAll}, 'variable namespace: multi and all');
    # Prometheus has no empty label values: "All" must be a regex that also matches the
    # unidentified requests (no namespace label), not the list of known namespaces.
    is($ns->{allValue}, '.*', 'variable namespace: allValue .* (includes unidentified requests)');
    is(($ns->{datasource} || {})->{uid}, '${datasource}', 'variable namespace: datasource ${datasource}');
    for my $v (values %var) {
        for my $q (grep { defined } $v->{definition}, (ref $v->{query} ? $v->{query}{query} : $v->{query})) {
            for my $m ($q =~ /label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,/g) {
                ok($series_family{$m}, "variable $v->{name}: label_values of known metric $m");
            }
        }
    }

    my @panels = flat_panels($dash->{panels} || []);
    my @graphs = grep { $_->{type} ne 'row' } @panels;
    cmp_ok(scalar @graphs, '>=', 14, 'dashboard: at least 14 panels');
    my (%id, @boxes, %used);
    for my $p (@panels) {
        my $t = $p->{title} // '(untitled)';
        ok(defined $p->{id} && !$id{ $p->{id} }++, "panel '$t': unique id");
        my $g = $p->{gridPos} || {};
        ok((4 == grep { defined $g->{$_} && $g->{$_} =~ /\A\d+\z/ } qw(h w x y))
                && $g->{x} + $g->{w} <= 24 && $g->{w} > 0 && $g->{h} > 0,
            "panel '$t': gridPos within 24 columns");
        push @boxes, [$t, $g];
        next if $p->{type} eq 'row';
        is(($p->{datasource} || {})->{uid}, '${datasource}', "panel '$t': datasource \${datasource}");
        my @targets = @{ $p->{targets} || [] };
        ok(@targets, "panel '$t': has targets");
        my %ref;
        for my $tg (@targets) {
            ok($tg->{refId} && !$ref{ $tg->{refId} }++, "panel '$t': unique refId " . ($tg->{refId} // ''));
            is(($tg->{datasource} || {})->{uid}, '${datasource}', "panel '$t' $tg->{refId}: datasource")
                if $tg->{datasource};
            ok(length($tg->{expr} // ''), "panel '$t' $tg->{refId}: expr") or next;
            my @f = metrics_ok($tg->{expr}, "panel '$t' $tg->{refId}");
            $used{$_}++ for @f;
            for my $v ($tg->{expr} =~ /\$\{?(\w+)/g) {
                ok($v =~ /\A__/ || $var{$v}, "panel '$t' $tg->{refId}: variable \$$v is defined");
            }
        }
    }
    my @overlaps;
    for my $i (0 .. $#boxes) {
        for my $j ($i + 1 .. $#boxes) {
            my ($m, $n) = ($boxes[$i][1], $boxes[$j][1]);
            push @overlaps, "'$boxes[$i][0]' / '$boxes[$j][0]'"
                if $m->{x} < $n->{x} + $n->{w} && $n->{x} < $m->{x} + $m->{w}
                && $m->{y} < $n->{y} + $n->{h} && $n->{y} < $m->{y} + $m->{h};
        }
    }
    ok(!@overlaps, 'dashboard: panels do not overlap') or diag("overlapping: @overlaps");

    for my $f (sort keys %family) {
        next if $optional_in_dashboard{$f};
        ok($used{$f}, "dashboard uses $f");
    }
    my @panel_titles = map { lc $_->{title} } @graphs;
    for my $want ('request rate', 'error ratio', 'success', 'latency p50', 'upstream latency p95',
                  'upstream attempts', 'failovers', 'rejections', 'in flight', 'tokens', 'overhead',
                  'series', 'uptime', 'config version') {
        ok((grep { index($_, $want) >= 0 } @panel_titles), "dashboard has a '$want' panel");
    }
}

# README mentions how to validate.
{
    my $readme = slurp($file{readme});
    like($readme, qr{prometheus --config\.file=deploy/prometheus\.yml}, 'README: how to run Prometheus');
    like($readme, qr{promtool check config deploy/prometheus\.yml}, 'README: promtool check config');
    like($readme, qr{promtool check rules deploy/alerts\.yml}, 'README: promtool check rules');
    for my $name (sort keys %alert) {
        like($readme, qr/\b\Q$name\E\b/, "README documents alert $name");
    }
}

done_testing();

# ---------------------------------------------------------------------------------------

# Metric names referenced by a PromQL expression (Grafana variables allowed).
sub metric_refs {
    my ($e) = @_;
    my %kw = map { $_ => 1 } qw(and or unless bool offset inf nan);
    $e =~ s/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`//g;                  # strings
    $e =~ s/\{[^{}]*\}//g;                                                    # matchers
    $e =~ s/\[[^\[\]]*\]//g;                                                  # ranges
    $e =~ s/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)//g;
    $e =~ s/\b(?:group_left|group_right)\b//g;
    $e =~ s/\boffset\s+-?[\w\$]+//g;
    $e =~ s/\$\{?\w+\}?//g;                                                   # variables
    $e =~ s/(?<![\w:])(?:0x[0-9a-f]+|\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?)//gi;
    my @ids;
    while ($e =~ /([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?/g) {
        next if defined $2 || $kw{ lc $1 };
        push @ids, $1;
    }
    return @ids;
}

# Every metric of $expr is known (a gateway_* name anywhere, even in a string, must be one
# of the module's); returns the families used.
sub metrics_ok {
    my ($expr, $what) = @_;
    my @ids = metric_refs($expr);
    my @named = $expr =~ /\b(gateway_[A-Za-z0-9_]*)/g;
    my @unknown = grep { !$series_family{$_} } @ids, @named;
    ok(@ids && !@unknown, "$what: only known metric names")
        or diag("expr: $expr\nreferences: @ids\nunknown: @unknown");
    my %f = map { $series_family{$_} => 1 } grep { $series_family{$_} } @ids;
    return keys %f;
}

sub flat_panels {
    my ($list) = @_;
    return map { ($_, flat_panels($_->{panels} || [])) } @$list;
}

sub dashboard_exprs {
    my ($dash) = @_;
    my @out;
    for my $p (flat_panels($dash->{panels} || [])) {
        for my $t (@{ $p->{targets} || [] }) {
            push @out, ["$p->{title} $t->{refId}", $t->{expr}] if defined $t->{expr};
        }
    }
    return @out;
}

# What Grafana sends for the dashboard's variables.
sub grafana_to_promql {
    my ($e) = @_;
    $e =~ s/\$(?:__rate_interval|__interval|__range)\b|\$\{(?:__rate_interval|__interval|__range)\}/5m/g;
    $e =~ s/\$namespace\b|\$\{namespace(?::regex)?\}/.*/g;
    return $e;
}

sub find_promtool {
    return $ENV{PROMTOOL} if $ENV{PROMTOOL} && -x $ENV{PROMTOOL};
    for my $d (File::Spec->path) {
        my $p = "$d/promtool";
        return $p if -f $p && -x $p;
    }
    return undef;
}

sub promtool_ok {
    my ($args, $name) = @_;
    my $pid = open(my $fh, '-|');
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        open(STDERR, '>&', \*STDOUT);
        exec($promtool, @$args) or do { print "exec $promtool: $!\n"; exit 127 };
    }
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    my $rc = $? >> 8;
    is($rc, 0, $name) or diag("promtool @$args:\n$out");
}

sub slurp {
    my ($path) = @_;
    open(my $fh, '<:raw', $path) or die "$path: $!";
    local $/;
    return scalar <$fh>;
}

sub read_json {
    my ($path) = @_;
    my $d = eval { JSON::PP->new->decode(slurp($path)) };
    diag("$path: $@") if $@;
    return $d;
}

sub read_yaml {
    my ($path) = @_;
    my $y = eval { CPAN::Meta::YAML->read_string(slurp($path)) };
    BAIL_OUT("$path: cannot parse YAML: " . ($@ || CPAN::Meta::YAML->errstr)) unless $y;
    return $y->[0];
}
